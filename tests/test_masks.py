"""Mask generators: ranges, binary values, files, mixtures, determinism."""

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from penet_tf.data.masks import (
    MaskGenerator,
    centre,
    load_mask_file,
    resize_nearest,
    rotate_expanded,
    strokes,
)


def _seed(i):
    return tf.constant([11, i], tf.int64)


def _binary(mask):
    values = np.unique(mask.numpy())
    return set(values.tolist()) <= {0.0, 1.0}


# (0.2, 0.3) at 64 x 64 ended below 0.2 for 8 of 40 seeds (down to 0.16), (0.3, 0.35) at
# 64 x 96 for 16: a dilation that passed the maximum was not taken, and nothing else was.
@pytest.mark.parametrize(
    "hole_ratio, size",
    [((0.1, 0.3), (96, 128)), ((0.3, 0.5), (96, 128)), ((0.2, 0.3), (64, 64))]
    + [((0.3, 0.35), (64, 96)), ((0.1, 0.4), (5, 300))],
)
def test_stroke_hole_ratio_stays_in_range(hole_ratio, size):
    ratios = []
    draw = tf.function(lambda seed: strokes(*size, seed, hole_ratio=hole_ratio))  # traced once
    for i in range(40):
        mask = draw(_seed(i))
        assert mask.shape == (*size, 1) and _binary(mask)
        ratios.append(float(tf.reduce_mean(mask)))
    assert min(ratios) >= hole_ratio[0] and max(ratios) <= hole_ratio[1]
    if size != (5, 300):  # (brushes under a pixel: every mask grows to the minimum)
        assert np.std(ratios) > 0.01  # really random, not one mask


@pytest.mark.parametrize("hole_ratio, size", [((0.3, 0.6), (64, 64)), ((0.1, 0.4), (96, 128))])
def test_stroke_holes_reach_their_drawn_target(hole_ratio, size):
    """Twelve strokes rarely cover 0.4 of an image; the fallback dilation stopped at the
    range's minimum, so every (0.3, 0.6) mask came out under 0.39 (none in the upper half)
    where the docstring promises a target drawn uniformly from the range."""
    draw = tf.function(lambda seed: strokes(*size, seed, hole_ratio=hole_ratio))
    pixels = size[0] * size[1]
    ratios, upper = [], 0
    for i in range(40):
        ratio = float(tf.reduce_mean(draw(_seed(i))))
        # the target as strokes() draws it (its last seed of max_strokes + 1)
        last = tf.random.experimental.stateless_split(_seed(i), 12 + 1)[-1]
        target = float(tf.random.stateless_uniform([], last, *hole_ratio))
        wanted = min(np.ceil(np.float32(target) * pixels), np.floor(hole_ratio[1] * pixels))
        assert wanted / pixels <= ratio + 1e-9 <= hole_ratio[1] + 1e-9, (i, target, ratio)
        ratios.append(ratio)
        upper += ratio > sum(hole_ratio) / 2
    assert upper >= 12, sorted(ratios)  # about half above the middle, as the targets


@pytest.mark.parametrize("size", [(3, 200), (4, 4), (2, 3), (511, 3), (1, 1)])
def test_strokes_on_images_a_few_pixels_high(size):
    """A SYMMETRIC pad cannot pad one coarse sample to 3 or 4 pixels: evaluate and inpaint
    --mask-type strokes stopped with a TensorFlow traceback on a 3 x 200 strip."""
    mask = strokes(*size, _seed(1)).numpy()
    assert mask.shape == (*size, 1) and set(np.unique(mask)) <= {0.0, 1.0}
    pixels = size[0] * size[1]
    if np.ceil(0.1 * pixels) <= 0.4 * pixels:  # some hole count falls in (0.1, 0.4)
        assert 0.1 <= mask.mean() <= 0.4


def test_strokes_are_deterministic_per_seed():
    a = strokes(64, 64, _seed(3))
    np.testing.assert_array_equal(a.numpy(), strokes(64, 64, _seed(3)).numpy())
    assert not np.array_equal(a.numpy(), strokes(64, 64, _seed(4)).numpy())


def test_square_masks():
    evaluation = MaskGenerator({"type": "square"}, 64, 96, training=False)(_seed(0))
    np.testing.assert_array_equal(evaluation.numpy(), centre(64, 96).numpy())
    assert evaluation.numpy()[16:48, 24:72].all() and evaluation.numpy().sum() == 32 * 48
    plain = MaskGenerator({"type": "square", "augment": False}, 64, 64)
    for i in range(20):
        mask = plain(_seed(i)).numpy()[..., 0]
        rows, cols = np.nonzero(mask)
        assert mask.sum() == 32 * 32 and np.ptp(rows) == 31 and np.ptp(cols) == 31
        assert rows.min() <= 32 and cols.min() <= 32
    augmented = MaskGenerator({"type": "square"}, 64, 64)
    ratios = [float(tf.reduce_mean(augmented(_seed(i)))) for i in range(20)]
    assert all(0.05 < r < 0.5 for r in ratios)
    assert _binary(augmented(_seed(1)))


def test_nearest_resize_is_pillows_to_the_pixel():
    """The release resizes every mask with ``mask.resize((w, h), Image.NEAREST)``;
    ``tf.image.resize`` scales in float32 and took rows or columns from the neighbour
    for 640 -> 192, 896 -> 320 and 1024 -> 384 (0.12-0.32 % of a stroke mask's pixels,
    up to 17 % of a random one's)."""
    rng = np.random.default_rng(5)
    pairs = [((640, 640), (192, 192)), ((896, 896), (320, 320)), ((1024, 1024), (384, 384))]
    pairs += [((512, 512), (256, 256)), ((63, 97), (64, 64)), ((1, 5), (3, 2))]
    pairs += [
        ((int(rng.integers(1, 1500)), int(rng.integers(1, 1500))), (192, 320)) for _ in range(30)
    ]
    resize = tf.function(resize_nearest, reduce_retracing=True)
    before = 0
    for (height, width), (out_h, out_w) in pairs:
        mask = (rng.random((height, width)) < 0.5).astype(np.uint8) * 255
        expected = np.asarray(Image.fromarray(mask).resize((out_w, out_h), Image.NEAREST))
        ours = resize(tf.constant(mask[..., None]), out_h, out_w).numpy()[..., 0]
        np.testing.assert_array_equal(
            ours, expected, err_msg=f"{(height, width)} -> {(out_h, out_w)}"
        )
        old = tf.image.resize(mask[..., None], [out_h, out_w], method="nearest").numpy()[..., 0]
        before += not np.array_equal(old, expected)
    assert before >= 3  # (the float32 scale's)


def test_rotation_is_pil_rotate_expand_to_the_pixel():
    """The release rotates its masks with PIL's rotate(degrees, expand=True). With
    ceil(extent) for the canvas and TensorFlow's projective transform the canvas was a
    pixel short on 66 of 138 square masks and 0.15 % of a 256^2 mask's pixels differed;
    Pillow's float64 geometry and 16.16 fixed-point sampling give its pixels exactly."""
    rng = np.random.default_rng(0)
    rotate = tf.function(rotate_expanded, reduce_retracing=True)
    for shape in ((64, 64), (63, 63), (50, 70), (71, 33), (1, 1), (7, 5), (300, 301)):
        for degrees in range(0, 46, 3 if shape[0] == 300 else 1):
            mask = (rng.random(shape) > 0.5).astype(np.uint8) * 255
            expected = np.asarray(Image.fromarray(mask).rotate(degrees, expand=True)) > 127
            radians = tf.constant(degrees * np.pi / 180, tf.float64)
            got = rotate(tf.constant(mask[..., None] / 255, tf.float32), radians)
            np.testing.assert_array_equal(
                got.numpy()[..., 0] > 0.5, expected, str((shape, degrees))
            )


def test_files_mode_reads_pngs(tmp_path):
    for i in range(3):
        array = np.zeros((50, 70), np.uint8)
        array[5 : 20 + 10 * i, 10:40] = 255
        Image.fromarray(array).save(tmp_path / f"{i:05d}.png")
    (tmp_path / "notes.txt").write_text("not a mask")
    evaluation = MaskGenerator({"type": "files", "path": str(tmp_path)}, 50, 70, training=False)
    for i in range(3):
        expected = np.zeros((50, 70), np.float32)
        expected[5 : 20 + 10 * i, 10:40] = 1
        np.testing.assert_array_equal(evaluation(_seed(0), i).numpy()[..., 0], expected)
    training = MaskGenerator({"type": "files", "path": str(tmp_path)}, 64, 64)
    for i in range(5):
        mask = training(_seed(i))
        assert mask.shape == (64, 64, 1) and _binary(mask) and float(tf.reduce_sum(mask)) > 0


def test_mask_files_are_augmented_at_their_own_size_as_released(tmp_path):
    """The release flips, rotates (canvas expanded) and dilates a mask file at its own
    size, then resizes it (core/dataset.py); resized first, a 512^2 mask's 3 x 3 dilation
    was twice as thick at 256^2."""
    from penet_tf.data.masks import augment, load_mask_file

    array = np.zeros((512, 512), np.uint8)
    for row in range(100, 400, 20):  # 15 lines two pixels wide
        array[row : row + 2, 50:460] = 255
    Image.fromarray(array).save(tmp_path / "lines.png")
    path = str(tmp_path / "lines.png")
    masks = MaskGenerator({"type": "files", "path": str(tmp_path)}, 256, 256)
    native, resized = load_mask_file(path), load_mask_file(path, 256, 256)
    ours, resized_first = [], []
    for i in range(8):
        mask = masks(_seed(i)).numpy()
        np.testing.assert_array_equal(mask, augment(native, _seed(i), 256, 256).numpy())
        ours.append(mask.mean())
        resized_first.append(augment(resized, _seed(i), 256, 256).numpy().mean())
    assert np.mean(ours) < 0.8 * np.mean(resized_first)  # thinner lines, as released


def test_the_dilation_is_pillow_s_max_filter():
    """The release dilates with PIL's ImageFilter.MaxFilter(3) (core/dataset.py); the
    separable max equals it and max pooling at the borders and at odd sizes."""
    from PIL import ImageFilter

    from penet_tf.data.masks import dilate_3x3

    rng = np.random.default_rng(5)
    for shape in ((97, 131), (1, 7), (5, 1), (64, 64)):
        array = (rng.random(shape) > 0.85).astype(np.uint8) * 255
        array[0, 0] = 255  # a hole in a corner
        expected = np.asarray(Image.fromarray(array).filter(ImageFilter.MaxFilter(3)))
        mask = tf.constant(array[..., None] / 255, tf.float32)
        ours = dilate_3x3(mask).numpy()[..., 0]
        np.testing.assert_array_equal(ours * 255, expected)
        pooled = tf.nn.max_pool2d(mask[None], 3, 1, "SAME")[0].numpy()[..., 0]
        np.testing.assert_array_equal(ours, pooled)


def test_files_mode_leaves_out_files_that_cannot_be_read(tmp_path, caplog):
    array = np.zeros((40, 40), np.uint8)
    array[10:30, 5:25] = 255
    Image.fromarray(array).save(tmp_path / "good.png")
    whole = (tmp_path / "good.png").read_bytes()
    # Each of these stopped training at the step that first drew it (DecodePng errors).
    (tmp_path / "half.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "last_byte.png").write_bytes(whole[:-1])
    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.png").write_text("not a mask")
    (tmp_path / "trailer.png").write_bytes(whole + b"bytes after IEND")  # decodes: kept
    Image.fromarray(array).save(tmp_path / "webp.png", "WEBP")  # Pillow reads it, TF did not
    Image.fromarray(array).save(tmp_path / "jpeg.png", "JPEG")  # decode_png reads JPEG: kept
    with caplog.at_level("WARNING", logger="penet_tf.data"):
        generator = MaskGenerator({"type": "files", "path": str(tmp_path)}, 32, 32)
    names = [path.decode().rsplit("/", 1)[-1] for path in generator.files.numpy()]
    assert names == ["good.png", "jpeg.png", "trailer.png"]
    assert "leaving out 5 of 8 mask files" in caplog.text and "last_byte.png" in caplog.text
    assert "webp.png (a WEBP file named .png: save it as a PNG)" in caplog.text
    draw = tf.function(generator)
    for i in range(10):
        assert float(tf.reduce_sum(draw(_seed(i)))) > 0
    for name in ("good.png", "trailer.png", "half.png", "jpeg.png"):
        (tmp_path / name).unlink()
    with pytest.raises(ValueError, match=r"None of the 4 mask PNGs .* can be read"):
        MaskGenerator({"type": "files", "path": str(tmp_path)}, 32, 32)


def test_mask_files_that_are_not_pngs_are_named(tmp_path, caplog):
    """A .jpg or .bmp beside the mask PNGs was left out without a word (masks are decoded
    as PNGs), and a folder of JPEG masks was "No mask PNGs"."""
    array = np.zeros((32, 32), np.uint8)
    array[4:20, 4:20] = 255
    Image.fromarray(array).save(tmp_path / "a.png")
    Image.fromarray(array).save(tmp_path / "b.jpg")
    Image.fromarray(array).save(tmp_path / "c.bmp")
    with caplog.at_level("INFO", logger="penet_tf.data"):
        generator = MaskGenerator({"type": "files", "path": str(tmp_path)}, 32, 32)
    assert generator.paths == [str(tmp_path / "a.png")]
    assert "2 other image file(s) (b.jpg, c.bmp) left out: masks are read as PNGs" in caplog.text
    assert f"1 mask PNG(s) under {tmp_path}" in caplog.text
    (tmp_path / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"No mask PNGs under .*: 2 other image file"):
        MaskGenerator({"type": "files", "path": str(tmp_path)}, 32, 32)


def test_mixture_uses_every_component_by_weight(tmp_path):
    config = {
        "type": "mixture",
        "components": [{"type": "square", "augment": False}, {"type": "strokes"}],
        "weights": [3, 1],
    }
    generator = tf.function(MaskGenerator(config, 64, 64))  # traced once, not 80 eager runs
    squares = sum(float(tf.reduce_sum(generator(_seed(i)))) == 32 * 32 for i in range(80))
    assert 40 <= squares <= 75  # ~60 expected


@pytest.mark.parametrize(
    "weights,share",  # share: of the square component; float32 took 1e-50 to 0, 1e39 to
    # inf, and two of 1e308 summed to inf in float64
    [([1e-50, 0.0], 1.0), ([1e-50, 1e-50], 0.5), ([1e39, 1.0], 1.0), ([1e308, 1e308], 0.5)],
)
def test_mixture_weights_of_any_magnitude(weights, share):
    config = {
        "type": "mixture",
        "components": [{"type": "square", "augment": False}, {"type": "strokes"}],
        "weights": weights,
    }
    generator = tf.function(MaskGenerator(config, 64, 64))
    squares = sum(float(tf.reduce_sum(generator(_seed(i)))) == 32 * 32 for i in range(40))
    assert abs(squares / 40 - share) <= 0.25  # always the last component before


def test_masks_in_a_tf_data_pipeline():
    generator = MaskGenerator({"type": "strokes"}, 32, 32)
    dataset = tf.data.Dataset.range(4).map(
        lambda i: generator(tf.stack([tf.constant(1, tf.int64), i]))
    )
    masks = list(dataset)
    assert len(masks) == 4 and all(m.shape == (32, 32, 1) for m in masks)


@pytest.mark.parametrize(
    "config,message",
    [
        ({"type": "circles"}, "Unknown mask type 'circles'"),
        ({"type": "strokes", "hole_ratio": [0.5, 0.2]}, "hole_ratio"),
        ({"type": "strokes", "hole_ratio": [0, 0]}, r"hole_ratio .*max > 0"),
        ({"type": "square", "size": 3}, "Unknown options for square masks"),
        ({"type": "mixture", "components": []}, "non-empty 'components'"),
        (
            {"type": "mixture", "components": [{"type": "square"}], "weights": [float("inf")]},
            "must be a finite number",
        ),
        ({"type": "files", "path": "/nonexistent/masks"}, "does not exist"),
        ({"type": "files", "path": __file__}, "is a file: give the folder of mask PNGs"),
    ],
)
def test_bad_mask_configs(config, message):
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        MaskGenerator(config, 64, 64)


def test_mask_files_holes_are_those_of_a_binary_mask_at_8_and_16_bits(tmp_path):
    hole = np.random.default_rng(3).random((20, 30)) < 0.3
    for name, array in {
        "eight": hole.astype(np.uint8) * 255,
        "zero_one": hole.astype(np.uint8),
        "sixteen_zero_one": hole.astype(np.uint16),  # once decoded to 8 bits: no hole
        "sixteen": hole.astype(np.uint16) * 65535,
    }.items():
        Image.fromarray(array).save(tmp_path / f"{name}.png")
        mask = load_mask_file(str(tmp_path / f"{name}.png"), 20, 30).numpy()[..., 0]
        np.testing.assert_array_equal(mask, hole, err_msg=name)
