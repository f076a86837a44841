"""``python -m penet_tf.inpaint`` on real photographs with a thin generator."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from conftest import load_once
from PIL import Image
from skimage import data
from sklearn.datasets import load_sample_images

from penet_tf import inpaint as inpaint_cli
from penet_tf import inpainting
from penet_tf.inpaint import build_parser, main
from penet_tf.inpainting import inpaint_files, load_inpainter
from penet_tf.io_utils import PID_SPACE
from penet_tf.models import load_generator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _photos():
    """Real photographs: various sizes, two sharing a size (batched together), some not
    multiples of 64."""
    china, flower = load_sample_images().images
    return {
        "astronaut": data.astronaut()[100:228, 150:278],  # 128 x 128
        "coffee": data.coffee()[50:150, 200:330],  # 100 x 130
        "rocket": data.rocket()[200:300, 300:430],  # 100 x 130, same size as coffee
        "chelsea": data.chelsea()[60:156, 150:310],  # 96 x 160
        "china": china[100:172, 200:290],  # 72 x 90
        "flower": flower[150:250, 200:330],  # 100 x 130
    }


def _mask(shape, seed):
    """A brush mask: a 255 rectangle with an antialiased edge (200: a hole) and a faint
    halo (60: known), and a band at 200; the "china" mask (seed 4) is a 0/1 mask."""
    rng = np.random.default_rng(seed)
    h, w = shape[:2]
    mask = np.zeros((h, w), np.uint8)
    top, left = rng.integers(0, h // 2), rng.integers(0, w // 2)
    mask[max(top - 2, 0) : top + h // 3 + 2, max(left - 2, 0) : left + w // 3 + 2] = 60
    mask[max(top - 1, 0) : top + h // 3 + 1, max(left - 1, 0) : left + w // 3 + 1] = 200
    mask[top : top + h // 3, left : left + w // 3] = 255
    mask[h // 2 : h // 2 + 6, :] = 200
    if seed == 4:
        mask = (mask >= 128).astype(np.uint8)  # 0/1 masks work too
    return mask


def _hole(mask):
    """The documented mask rule, written out: >= 128, or the 1s of a 0/1 mask."""
    return mask == 1 if mask.max() <= 1 else mask >= 128


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, thin_weights, thin_savedmodel):
    """Photos (PNG and one JPEG), masks, and the session's thin generator: its weights +
    config and its export (max_pixels 300 x 300)."""
    root = tmp_path_factory.mktemp("inpaint")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    photos = _photos()
    originals, mask_arrays = {}, {}
    for seed, (name, photo) in enumerate(photos.items()):
        path = images / (f"{name}.jpg" if name == "chelsea" else f"{name}.png")
        Image.fromarray(photo).save(path)
        originals[name] = np.asarray(Image.open(path).convert("RGB"))  # JPEG as decoded
        mask_arrays[name] = _mask(photo.shape, seed)
        mask = mask_arrays[name]
        if name == "flower":  # an RGBA mask drawn in blue: the largest channel counts
            mask = np.stack([0 * mask, 0 * mask, mask, np.full_like(mask, 128)], axis=-1)
        Image.fromarray(mask).save(masks / f"{name}.png")
    return {
        "root": root,
        "images": images,
        "masks": masks,
        "weights": str(thin_weights),
        "saved_model": thin_savedmodel,
        "generator": load_generator(thin_weights),
        "originals": originals,
        "masks_array": mask_arrays,
    }


@pytest.fixture(scope="module")
def inpainter(workspace):
    return load_inpainter(workspace["weights"])


@pytest.fixture(autouse=True)
def _weights_loaded_once(request, loads, monkeypatch):
    """The module's weights loaded once per set of arguments (``conftest.load_once``)."""
    if "workspace" in request.fixturenames:
        weights = request.getfixturevalue("workspace")["weights"]
        load_once(monkeypatch, inpaint_cli, weights, loads)


def _read(path):
    return np.asarray(Image.open(path))


def test_inpaints_a_folder_in_batches_with_grids(workspace, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["--model", workspace["weights"], "--images", str(workspace["images"])]
    args += ["--masks", str(workspace["masks"]), "--out", str(out), "--batch-size", "3", "--grid"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert "inpainted 6 image(s)" in captured.out and "skipped 0" in captured.out
    assert "6/6" in captured.out and "/image" in captured.out  # the progress bar (Progbar)
    names = sorted(workspace["originals"])
    assert sorted(os.listdir(out)) == sorted(
        [f"{n}.png" for n in names] + [f"{n}_grid.png" for n in names]
    )
    for name in names:
        original, hole = workspace["originals"][name], _hole(workspace["masks_array"][name])
        output = _read(out / f"{name}.png")
        assert output.shape == original.shape, name
        np.testing.assert_array_equal(output[~hole], original[~hole], err_msg=name)
        assert (output[hole] != original[hole]).any(), name  # the hole was really filled
        grid = _read(out / f"{name}_grid.png")
        width = original.shape[1]
        assert grid.shape == (original.shape[0], 3 * width, 3)
        assert (grid[:, :width][hole] == 255).all()  # masked input: holes white
        np.testing.assert_array_equal(grid[:, :width][~hole], original[~hole])
        np.testing.assert_array_equal(grid[:, width : 2 * width], output)
        np.testing.assert_array_equal(grid[:, 2 * width :], original)

    # Batch 1 gives the same pixels (pairing inside batches is right).
    single = tmp_path / "single"
    assert main(args[:-5] + ["--out", str(single), "--quiet"]) == 0
    for name in names:
        difference = np.abs(_read(single / f"{name}.png").astype(int) - _read(out / f"{name}.png"))
        assert difference.max() <= 1, name


def test_the_output_is_the_generator_composite(workspace, inpainter, tmp_path):
    # Independent path: the generator called directly on the padded image.
    from penet_tf.inference import inpaint

    name = "coffee"  # 100 x 130: reflect-padded to 128 x 192 inside
    image = workspace["originals"][name]
    hole = _hole(workspace["masks_array"][name]).astype(np.float32)[None, ..., None]
    _, composite = inpaint(workspace["generator"], image[None] / 127.5 - 1.0, hole)
    expected = np.clip(np.round((composite[0].numpy() + 1) * 127.5), 0, 255)
    written, skipped, _ = inpaint_files(
        inpainter,
        workspace["images"] / f"{name}.png",
        tmp_path,
        masks=workspace["masks"] / f"{name}.png",
        progress=False,
    )
    assert skipped == [] and written == [str(tmp_path / f"{name}.png")]
    assert np.abs(_read(written[0]).astype(int) - expected).max() <= 1


def test_a_model_loader_runs_after_the_checks_while_the_first_photo_is_read(
    workspace, inpainter, tmp_path, monkeypatch
):
    name = "coffee"
    image, mask = workspace["images"] / f"{name}.png", workspace["masks"] / f"{name}.png"
    calls = []
    with pytest.raises(ValueError, match="is the --images folder"):  # refused: never loaded
        inpaint_files(
            lambda: calls.append(1),
            workspace["images"],
            workspace["images"],
            masks=workspace["masks"],
        )
    assert calls == []
    read = inpainting.read_rgb
    order = []

    def read_rgb(*args, **kwargs):
        order.append("read")
        return read(*args, **kwargs)

    def load():
        order.append("load")
        return inpainter

    monkeypatch.setattr(inpainting, "read_rgb", read_rgb)
    written, skipped, _ = inpaint_files(load, image, tmp_path / "a", masks=mask, progress=False)
    assert sorted(order) == ["load", "read"] and not skipped  # (in either order: in parallel)
    loaded, _, _ = inpaint_files(inpainter, image, tmp_path / "b", masks=mask, progress=False)
    np.testing.assert_array_equal(_read(written[0]), _read(loaded[0]))


def test_generated_masks_are_deterministic(workspace, inpainter, tmp_path):
    image = workspace["images"] / "astronaut.png"
    original = workspace["originals"]["astronaut"]
    runs = {}
    for label, mask_type, seed in (("a", "strokes", 3), ("b", "strokes", 3), ("c", "strokes", 4)):
        out = tmp_path / label
        written, skipped, _ = inpaint_files(
            inpainter, image, out, mask_type=mask_type, seed=seed, grid=True, progress=False
        )
        assert len(written) == 1 and not skipped
        runs[label] = _read(out / "astronaut_grid.png")
    np.testing.assert_array_equal(runs["a"], runs["b"])
    assert (runs["a"] != runs["c"]).any()
    hole = (runs["a"][:, :128] == 255).all(axis=-1) & (original != 255).any(axis=-1)
    assert 0.05 < hole.mean() < 0.45  # strokes cover 10-40 % of the image

    written, _, _ = inpaint_files(inpainter, image, tmp_path / "centre", mask_type="centre")
    output = _read(written[0])
    changed = (output != original).any(axis=-1)
    rows, cols = np.nonzero(changed)
    assert changed.any() and rows.min() >= 32 and rows.max() < 96
    assert cols.min() >= 32 and cols.max() < 96  # only the centred 64 x 64 block


def test_skips_missing_and_unreadable_files(workspace, tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    for name in ("astronaut", "coffee", "flower"):
        shutil.copy(workspace["images"] / f"{name}.png", images)
        shutil.copy(workspace["masks"] / f"{name}.png", masks)
    (images / "broken.png").write_bytes(b"definitely not a PNG")
    Image.fromarray(workspace["originals"]["china"]).save(images / "nomask.png")
    Image.fromarray(workspace["originals"]["china"]).save(images / "wrongsize.png")
    Image.fromarray(workspace["masks_array"]["coffee"]).save(masks / "wrongsize.png")
    # A truncated JPEG: its header reads, its pixels do not (fails while decoding).
    jpeg = workspace["images"] / "chelsea.jpg"
    (images / "truncated.jpg").write_bytes(jpeg.read_bytes()[:400])
    Image.fromarray(workspace["masks_array"]["chelsea"]).save(masks / "truncated.png")
    (images / "notes.txt").write_text("not an image: ignored")
    os.mkfifo(images / "pipe.png")  # opening it waited for a writer: the CLI hung
    # A mask named in Latin-1 that cannot be read: its error text (with its name) could
    # not become a tf.string, and the whole run stopped with a 100-line traceback.
    Image.fromarray(workspace["originals"]["china"]).save(
        os.path.join(os.fsencode(images), b"caf\xe9.png")
    )
    with open(os.path.join(os.fsencode(masks), b"caf\xe9.png"), "wb") as handle:
        handle.write((masks / "coffee.png").read_bytes()[:60])
    # Pillow reads AVIF and JFIF: they were left out of a folder without a word.
    shutil.copy(jpeg, images / "photo.jfif")
    Image.fromarray(workspace["masks_array"]["chelsea"]).save(masks / "photo.png")

    out = tmp_path / "out"
    code = main(
        ["--model", workspace["weights"], "--images", str(images), "--masks", str(masks)]
        + ["--out", str(out), "--batch-size", "2"]
    )
    assert code == 1
    err = capsys.readouterr().err
    skipped = {line.split(":")[0] for line in err.splitlines() if line.startswith("skipped ")}
    latin = os.fsdecode(os.path.join(os.fsencode(images), b"caf\xe9.png"))
    assert skipped == {
        f"skipped {images / name}"
        for name in ("broken.png", "nomask.png", "wrongsize.png", "truncated.jpg", "pipe.png")
    } | {f"skipped {latin}".replace("\udce9", "\\xe9")}  # (the name's byte, shown)
    assert "pipe.png: not a regular file (a pipe, socket or device)" in err
    assert "no mask named nomask.*" in err
    assert "mask" in err and "but the image is 90x72" in err
    assert sorted(os.listdir(out)) == ["astronaut.png", "coffee.png", "flower.png", "photo.png"]


def test_an_output_folder_named_in_latin_1_is_reported(workspace, tmp_path, capsys):
    """The results were written, then the summary line raised UnicodeEncodeError on a
    strict UTF-8 stdout (pytest's, or en_US.UTF-8): exit 2 after the work."""
    out = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"r\xe9sultats"))
    args = ["--model", workspace["weights"], "--images", str(workspace["images"] / "coffee.png")]
    args += ["--masks", str(workspace["masks"] / "coffee.png"), "--out", out]
    assert main(args) == 0
    assert "r\\xe9sultats" in capsys.readouterr().out  # (its byte; was \\udce9)
    assert os.listdir(out) == ["coffee.png"]


def test_saved_model_gives_the_same_outputs(workspace, inpainter, tmp_path):
    base = workspace["saved_model"].parent
    out_saved, out_weights = tmp_path / "saved", tmp_path / "weights"
    # The base directory: the highest numeric version is used.
    args = ["--images", str(workspace["images"]), "--masks", str(workspace["masks"])]
    assert main(["--model", str(base), *args, "--out", str(out_saved), "--batch-size", "2"]) == 0
    written, _, _ = inpaint_files(
        inpainter, workspace["images"], out_weights, masks=workspace["masks"], progress=False
    )
    assert len(written) == len(os.listdir(out_saved)) == 6
    for path in written:
        name = os.path.basename(path)
        np.testing.assert_array_equal(_read(out_saved / name), _read(path))


def test_usage_errors_exit_2_without_traceback(workspace, tmp_path, capsys):
    args = ["--images", str(workspace["images"]), "--mask-type", "centre", "--out", str(tmp_path)]
    assert main(["--model", str(tmp_path / "missing.weights.h5"), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.weights.h5" in err and "Traceback" not in err
    assert main(["--model", str(tmp_path), *args]) == 2  # a folder without a SavedModel
    assert "saved_model.pb" in capsys.readouterr().err
    empty = tmp_path / "empty"
    empty.mkdir()
    no_photos = ["--images", str(empty), "--mask-type", "centre", "--out", str(tmp_path / "o")]
    assert main(["--model", workspace["weights"], *no_photos]) == 2
    assert capsys.readouterr().err.startswith("error: no images (.png")
    with pytest.raises(SystemExit) as exit_info:
        main(["--model", workspace["weights"], *args, "--batch-size", "0"])
    assert exit_info.value.code == 2
    with pytest.raises(SystemExit):  # --masks and --mask-type exclude each other
        main(["--model", workspace["weights"], *args, "--masks", str(workspace["masks"])])


def test_a_pipe_given_as_the_mask_is_refused(workspace, tmp_path, capsys):
    os.mkfifo(tmp_path / "mask.png")
    image = workspace["images"] / "astronaut.png"
    args = ["--model", workspace["weights"], "--images", str(image), "--out", str(tmp_path / "o")]
    assert main([*args, "--masks", str(tmp_path / "mask.png")]) == 2
    assert "mask.png: not a regular file (a pipe, socket or device)" in capsys.readouterr().err


def test_help_documents_every_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0 and "--mask-from-alpha" in capsys.readouterr().out
    parser = build_parser()
    text = parser.format_help()
    flags = [flag for action in parser._actions for flag in action.option_strings]
    for flag in ("--model", "--images", "--masks", "--mask-type", "--out", "--batch-size"):
        assert flag in flags
    for flag in ("--grid", "--seed", "--quiet"):
        assert flag in flags
    for action in parser._actions:
        for flag in action.option_strings:
            assert flag in text
        assert action.help, action.option_strings


def test_command_line_entry_point(workspace, tmp_path):
    """The real ``python -m`` entry point: a missing image is reported, exit status 1."""
    out = tmp_path / "out"
    result = subprocess.run(
        [sys.executable, "-m", "penet_tf.inpaint", "--model", workspace["weights"]]
        + ["--images", str(tmp_path / "gone.png"), "--mask-type", "centre", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    assert f"skipped {tmp_path / 'gone.png'}: no such file" in result.stderr
    assert "inpainted 0 image(s)" in result.stdout


def test_saved_model_refusing_a_large_photo_names_the_limit(
    workspace, tmp_path, capsys, monkeypatch
):
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(workspace["images"] / "china.png", images)  # (one: three runs inpaint it)
    Image.fromarray(data.astronaut()[:290, :300]).save(images / "large.png")
    args = ["--images", str(images), "--mask-type", "centre", "--out", str(tmp_path / "o")]
    read, original = [], inpainting.read_rgb
    monkeypatch.setattr(
        inpainting, "read_rgb", lambda path, *a: read.append(path) or original(path, *a)
    )
    assert main(["--model", str(workspace["saved_model"]), *args, "--quiet"]) == 1
    err = capsys.readouterr().err
    # 300x290 runs as 320x320 = 102400 pixels, over the export's 90000
    line = next(line for line in err.splitlines() if "large.png" in line)
    assert "300x290" in line and "102400 pixels" in line and "limit of 90000" in line
    assert "--max-pixels 102400" in line and "Graph execution error" not in err
    assert read and not [path for path in read if path.endswith("large.png")]  # not decoded
    assert os.listdir(tmp_path / "o") == ["china.png"]  # the other was inpainted
    # A crop / resize / auto export's photo limit is --max-photo-pixels: the advice named
    # --max-pixels (the network input's bound), which would change nothing.
    auto = tmp_path / "auto" / "1"
    shutil.copytree(workspace["saved_model"], auto)
    config = auto / "assets.extra" / "penet_tf.json"
    recorded = json.loads(config.read_text())
    recorded["strategy"] = {**recorded["strategy"], "name": "auto"}
    config.write_text(json.dumps(recorded))
    assert main(["--model", str(auto), *args[:-1], str(tmp_path / "a"), "--quiet"]) == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if "large.png" in line)
    assert "limit of 90000" in line and "--max-photo-pixels 102400" in line, line
    # The export runs the strategy it was exported with (full): another is refused. (The
    # option checks below run on large.png alone: refused from its header, no model run.)
    large = tmp_path / "large"
    large.mkdir()
    shutil.move(images / "large.png", large / "large.png")
    args = ["--images", str(large), "--mask-type", "centre"]
    strategy_args = ["--model", str(workspace["saved_model"]), *args]
    assert main([*strategy_args, "--out", str(tmp_path / "s"), "--strategy", "crop"]) == 2
    err = capsys.readouterr().err
    assert "exported with --strategy full --model-size 256" in err and "re-export" in err
    assert "cannot run --strategy crop" in err and "Traceback" not in err
    # Options typed with the export's own values pass (--margin 128 alone was refused as
    # "--strategy auto ... --margin 128", the defaults filling the rest); another value
    # is named; for a full export the other options mean nothing.
    recorded["strategy"] = {**recorded["strategy"], "name": "crop", "margin": 64}
    config.write_text(json.dumps(recorded))
    crop_args = ["--model", str(auto), *args, "--quiet"]
    for typed in (["--margin", "64"], ["--strategy", "crop", "--margin", "64"]):
        assert main([*crop_args, "--out", str(tmp_path / "c"), *typed]) == 1  # large.png
        assert "cannot run" not in capsys.readouterr().err
    assert main([*crop_args, "--out", str(tmp_path / "c"), "--strategy", "crop"]) == 1
    assert main([*crop_args, "--out", str(tmp_path / "c"), "--margin", "128"]) == 2
    err = capsys.readouterr().err
    assert "exported with --strategy crop --model-size 256 --margin 64" in err
    assert "it cannot run --margin 128:" in err
    full = [*strategy_args, "--out", str(tmp_path / "f"), "--strategy", "full", "--margin", "0"]
    assert main(full) == 1  # runs (large.png over the limit)
    assert "cannot run" not in capsys.readouterr().err
    # Bad strategy values are named by their options.
    for option, value in (("--model-size", "100"), ("--margin", "-1"), ("--trigger", "0")):
        assert main([*strategy_args, "--out", str(tmp_path / "s"), option, value]) == 2
        assert capsys.readouterr().err.startswith(f"error: {option} must be")


def test_the_library_s_mask_rule_does_not_depend_on_the_strategy(workspace):
    """Inpainter with generator weights: full applied the mask rule (>= 128) in the graph,
    crop took every nonzero value as a hole, so a faint area was a hole only in photos
    large enough for crop."""
    from penet_tf.high_resolution import PhotoStrategy

    photo = workspace["originals"]["china"][None]
    mask = np.zeros(photo.shape[:3] + (1,), np.uint8)
    mask[0, 20:40, 20:60] = 255
    mask[0, 60:80, 20:60] = 60  # faint: not a hole
    results = {
        name: load_inpainter(workspace["weights"], PhotoStrategy(name))(photo, mask)
        for name in ("full", "crop", "resize")
    }
    for name, result in results.items():
        changed = np.any(result != photo, axis=-1)[0]
        assert not changed[60:80].any(), name
        assert changed[20:40, 20:60].mean() > 0.5, name


def test_the_library_refuses_what_it_cannot_inpaint_whatever_the_size(workspace):
    """A float or uint16 photo was cast to uint8 by the ``full`` path (a 0-1 photo came
    back black, uint16 wrapped around) and refused over 512 px; masks without their
    channel or batch were TypeErrors or InvalidArgumentErrors, or accepted, by size."""
    inpainter = load_inpainter(workspace["weights"])
    photo = workspace["originals"]["china"][None]
    mask = np.zeros(photo.shape[:3] + (1,), np.uint8)
    mask[0, 20:40, 20:60] = 255
    for wrong, message in (
        ((photo / 255.0, mask), "image must be uint8 \\[B, H, W, 3\\], got float64"),
        ((photo.astype(np.uint16), mask), "got uint16"),
        ((photo[0], mask), "got uint8 \\[72, 90, 3\\]"),
        ((photo, mask[..., 0]), "mask must be \\[B, H, W, 1\\]"),
        ((np.concatenate([photo, photo]), mask), "with the image's B, H, W \\[2, 72, 90\\]"),
    ):
        with pytest.raises(ValueError, match=message):
            inpainter(*wrong)
    soft = mask / 255.0
    soft[0, 19, 20:60] = 0.2  # a soft [0, 1] edge: every nonzero pixel was a hole elsewhere
    with pytest.raises(ValueError, match="mask is a soft \\[0, 1\\] float mask"):
        inpainter(photo, soft)
    with pytest.raises(ValueError, match="got int64 with values outside 0-255"):
        inpainter(photo, mask.astype(np.int64) - 1)
    with pytest.raises(ValueError, match="at least one photo"):  # (TensorFlow's error)
        inpainter(photo[:0], mask[:0])
    expected = inpainter(photo, mask)
    for values in (mask.astype(np.int64), mask.astype(np.float32)):  # 0-255 numbers
        np.testing.assert_array_equal(inpainter(photo, values), expected)
    np.testing.assert_array_equal(inpainter(photo, mask > 0), expected)
    np.testing.assert_array_equal(inpainter(photo, (mask > 0).astype(np.float32)), expected)


def test_a_saved_model_s_strategy_is_compared_before_it_loads(workspace, tmp_path, capsys):
    """A strategy the export did not record was refused only after the SavedModel had
    loaded (11 s and 1 GB for a thin one); a missing --model only after the first read."""
    export = tmp_path / "export" / "1"
    (export / "assets.extra").mkdir(parents=True)
    (export / "saved_model.pb").write_bytes(b"not a SavedModel: never loaded")
    config = {"strategy": {"name": "crop"}, "max_photo_pixels": 10**6}
    (export / "assets.extra" / "penet_tf.json").write_text(json.dumps(config))
    args = ["--images", str(workspace["images"]), "--masks", str(workspace["masks"])]
    args += ["--out", str(tmp_path / "out"), "--quiet"]
    assert main(["--model", str(export.parent), *args, "--strategy", "full"]) == 2
    assert "was exported with --strategy crop" in capsys.readouterr().err
    assert main(["--model", str(tmp_path / "missing.weights.h5"), *args]) == 2
    assert "missing.weights.h5: no such file or directory" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_strategy_options_on_a_large_photo(workspace, tmp_path, capsys):
    """--strategy crop / --model-size / --margin / --no-residual-aggregation reach
    penet_tf.high_resolution; the default (auto) crops photos over the trigger."""
    from penet_tf.high_resolution import PhotoStrategy, inpaint_photo

    folder = tmp_path / "large"
    folder.mkdir()
    photo = np.asarray(Image.fromarray(data.astronaut()).resize((640, 600)))
    mask = np.zeros((600, 640), np.uint8)
    mask[200:260, 300:380] = 255
    mask[500:520, 40:60] = 255
    Image.fromarray(photo).save(folder / "big.png")
    Image.fromarray(mask).save(tmp_path / "big_mask.png")
    common = ["--model", workspace["weights"], "--images", str(folder), "--quiet"]
    common += ["--masks", str(tmp_path / "big_mask.png")]
    for options, strategy in (
        ([], PhotoStrategy()),
        (
            ["--strategy", "crop", "--model-size", "128", "--margin", "64"],
            PhotoStrategy("crop", model_size=128, margin=64),
        ),
        (
            ["--strategy", "resize", "--no-residual-aggregation"],
            PhotoStrategy("resize", residual_aggregation=False),
        ),
    ):
        out = tmp_path / f"out{len(options)}"
        assert main([*common, "--out", str(out), *options]) == 0
        expected = inpaint_photo(workspace["generator"], photo, mask, strategy)
        np.testing.assert_array_equal(_read(out / "big.png"), expected)
    assert main([*common, "--out", str(tmp_path / "x"), "--model-size", "100"]) == 2
    assert "multiple of 64" in capsys.readouterr().err


def test_out_equal_to_an_input_folder_is_refused_before_any_work(workspace, tmp_path, capsys):
    images, masks = tmp_path / "images", tmp_path / "masks"
    shutil.copytree(workspace["images"], images)
    shutil.copytree(workspace["masks"], masks)
    before = {path: path.read_bytes() for path in [*images.iterdir(), *masks.iterdir()]}
    # A model path that does not exist: the refusal comes before the model is loaded.
    args = ["--model", str(tmp_path / "never-loaded.weights.h5"), "--images", str(images)]
    for flag, folder in (("--images", images), ("--masks", masks)):
        assert main([*args, "--masks", str(masks), "--out", str(folder), "--grid"]) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"error: --out {folder} is the {flag} folder {folder}")
        assert "never-loaded" not in err and "Traceback" not in err
    assert {path: path.read_bytes() for path in [*images.iterdir(), *masks.iterdir()]} == before


def test_a_photo_is_never_its_own_mask(workspace, tmp_path, capsys):
    """--masks the --images folder paired each photo with itself (75 % of a photo
    "inpainted", exit status 0); a mask file kept among the photos was inpainted as one."""
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = workspace["originals"]["china"]
    mask = workspace["masks_array"]["china"]
    Image.fromarray(photo).save(photos / "cat.png")
    Image.fromarray(mask).save(photos / "cat_mask.png")
    args = ["--model", workspace["weights"], "--quiet"]
    out = tmp_path / "out"
    assert main([*args, "--images", str(photos), "--masks", str(photos), "--out", str(out)]) == 2
    assert "is the --images folder: each photo would be its own mask" in capsys.readouterr().err
    # the photo given alone, its folder as --masks: it would pair with itself
    single = ["--images", str(photos / "cat.png"), "--masks", str(photos)]
    assert main([*args, *single, "--out", str(out)]) == 1
    assert "its mask would be the photo itself" in capsys.readouterr().err
    # the one mask of every photo, kept among them: a mask, not one of the photos
    shared = ["--images", str(photos), "--masks", str(photos / "cat_mask.png")]
    assert main([*args, *shared, "--out", str(out)]) == 0
    assert sorted(os.listdir(out)) == ["cat.png"]
    result = _read(out / "cat.png")
    np.testing.assert_array_equal(result[mask == 0], photo[mask == 0])


def test_names_too_long_for_the_file_system_are_refused_or_written(workspace, tmp_path, capsys):
    """A photo named with 250 characters: its result's temporary (.tmp-<pid>-<name>) was
    over 255 bytes, and the run stopped with "File name too long" after loading, with the
    photos after it never done; a result name itself over 255 is refused before any work."""
    images = tmp_path / "images"
    images.mkdir()
    photo = workspace["originals"]["china"]
    for name in ("a", "x" * 250, "z"):
        Image.fromarray(photo).save(images / f"{name}.png")
    args = ["--model", workspace["weights"], "--images", str(images), "--mask-type", "centre"]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out)) == sorted(f"{n}.png" for n in ("a", "x" * 250, "z"))
    assert main([*args, "--out", str(tmp_path / "grids"), "--grid", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "the result's name is 259 bytes, longer than the file system takes (255)" in err
    assert not (tmp_path / "grids").exists()


def test_no_output_is_written_twice_or_onto_an_input(workspace, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    photo = workspace["originals"]["china"]
    Image.fromarray(photo).save(images / "p.png")
    Image.fromarray(photo[::-1]).save(images / "p_grid.png")
    args = ["--model", workspace["weights"], "--images", str(images), "--mask-type", "centre"]
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--grid", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert f"{out / 'p_grid.png'} would be written for both" in err and "rename one" in err
    assert not out.exists()  # refused before the first write
    # Without --grid both have their own output; a subfolder is named, not searched.
    (images / "more").mkdir()
    Image.fromarray(photo).save(images / "more" / "q.png")
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out)) == ["p.png", "p_grid.png"]
    err = capsys.readouterr().err
    assert f"note: --images reads the images of {images}, not its 1 subfolder(s): more" in err
    assert "replace" not in err
    # Run again: the earlier results are replaced, and the run says so (it did not).
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    message = (
        f"note: 2 result(s) replace files of the same name already in {out}: p.png, p_grid.png"
    )
    assert message in capsys.readouterr().err
    # --out inside --images, twice: the note names "more", not the run's own output folder.
    for _ in range(2):
        assert main([*args, "--out", str(images / "results"), "--quiet"]) == 0
        assert "subfolder(s): more\n" in capsys.readouterr().err
    # One image file as --images, written into its own folder: it would be replaced.
    single = ["--images", str(images / "p.png"), "--mask-type", "centre"]
    assert main(["--model", workspace["weights"], *single, "--out", str(images)]) == 2
    assert "is the --images folder" in capsys.readouterr().err
    np.testing.assert_array_equal(_read(images / "p.png"), photo)


def test_names_that_differ_only_in_case_are_one_name_where_the_file_system_says_so(
    workspace, tmp_path, capsys, monkeypatch
):
    """On macOS and Windows (and their drives mounted on Linux, WSL's /mnt/c) Beach.png
    and beach.jpg gave two results of one file name: the second replaced the first
    ("inpainted 2", exit status 0). A phone's IMG_1.PNG found no mask img_1.png, nor
    café.png (NFC) its mask café.png written in NFD (as macOS' older volumes store it)."""
    import unicodedata

    from penet_tf import inpainting
    from penet_tf.io_utils import case_blind

    images, masks = tmp_path / "images", tmp_path / "masks"
    images.mkdir()
    masks.mkdir()
    photo = workspace["originals"]["china"]
    cafe = unicodedata.normalize("NFC", "café")
    for name in ("Beach.png", "beach.jpg", "IMG_1.PNG", f"{cafe}.png"):
        Image.fromarray(photo).save(images / name)
    mask = np.zeros(photo.shape[:2], np.uint8)
    mask[20:40, 20:50] = 255
    for name in ("Beach", "img_1", unicodedata.normalize("NFD", "café")):
        Image.fromarray(mask).save(masks / f"{name}.png")
    own = np.zeros_like(mask)  # (beach.jpg's own: Beach.png is the photo Beach's)
    own[50:60, 10:30] = 255
    Image.fromarray(own).save(masks / "beach.png")
    args = ["--model", workspace["weights"], "--images", str(images), "--masks", str(masks)]
    # Here (case-sensitive) four results; every photo paired with a mask.
    assert not case_blind(tmp_path)
    out = tmp_path / "out"
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    results = ["Beach.png", "IMG_1.png", "beach.png", f"{cafe}.png"]
    assert sorted(os.listdir(out)) == sorted(results)
    first = _read(out / "Beach.png")
    assert (first != photo).any()
    for name in ("IMG_1.png", f"{cafe}.png"):
        np.testing.assert_array_equal(_read(out / name), first)
    jpeg, hole = _read(images / "beach.jpg"), own > 0  # paired with its own mask
    result = _read(out / "beach.png")
    np.testing.assert_array_equal(result[~hole], jpeg[~hole])
    assert (result[hole] != jpeg[hole]).any()
    # Where the output folder's file system folds case: refused before any work.
    monkeypatch.setattr(inpainting, "case_blind", lambda folder: True)
    assert main([*args, "--out", str(tmp_path / "folded"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "beach.png would be written for both" in err and "names differing only in case" in err
    assert not (tmp_path / "folded").exists()


def test_an_output_folder_that_cannot_be_one_is_refused_before_any_work(
    workspace, tmp_path, capsys
):
    (tmp_path / "afile.png").write_bytes(b"a user's file")
    (tmp_path / "afile").write_bytes(b"another")
    out = tmp_path / "out"
    (out / "china.png").mkdir(parents=True)  # a folder where a result goes
    args = ["--images", str(workspace["images"]), "--masks", str(workspace["masks"])]
    refusals = {
        str(tmp_path / "afile.png"): "names a file, but --images",
        str(tmp_path / "afile"): "is a file, not a folder",
        str(tmp_path / "afile.png" / "sub"): "afile.png is a file, not a folder",
        "": "--out is empty",
        str(out): f"{out / 'china.png'} is a folder: the result for",
    }
    for target, reason in refusals.items():
        assert main(["--model", workspace["weights"], *args, "--out", target, "--quiet"]) == 2
        err = capsys.readouterr().err
        assert reason in err and "Traceback" not in err, err
    assert os.listdir(out) == ["china.png"]  # nothing was written before the refusal
    assert (tmp_path / "afile.png").read_bytes() == b"a user's file"
    # A model that cannot be loaded leaves no output folder behind.
    broken = tmp_path / "broken.weights.h5"
    broken.write_bytes(b"not HDF5")
    fresh = tmp_path / "fresh"
    assert main(["--model", str(broken), *args, "--out", str(fresh), "--quiet"]) == 2
    assert "cannot read it as a weights file" in capsys.readouterr().err
    assert not fresh.exists()


def test_a_mask_without_a_hole_is_noted_and_the_photo_kept(workspace, tmp_path, capsys):
    photo = workspace["originals"]["china"]
    image = workspace["images"] / "china.png"
    faint = tmp_path / "faint.png"  # drawn at 100 of 255: under the rule's 128, no hole
    Image.fromarray(np.full(photo.shape[:2], 100, np.uint8)).save(faint)
    args = ["--model", workspace["weights"], "--images", str(image), "--masks", str(faint)]
    assert main([*args, "--out", str(tmp_path / "out"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert f"note: the mask {faint} has no hole" in err and f"{image} is written unchanged" in err
    np.testing.assert_array_equal(_read(tmp_path / "out" / "china.png"), photo)


def test_one_image_to_a_named_png(workspace, tmp_path, capsys):
    image, mask = workspace["images"] / "china.png", workspace["masks"] / "china.png"
    args = ["--model", workspace["weights"], "--images", str(image), "--masks", str(mask)]
    out = tmp_path / "results" / "fixed.png"  # was a folder named fixed.png
    assert main([*args, "--out", str(out), "--grid", "--quiet"]) == 0
    assert sorted(os.listdir(out.parent)) == ["fixed.png", "fixed_grid.png"]
    in_folder = tmp_path / "folder"
    assert main([*args, "--out", str(in_folder), "--quiet"]) == 0
    np.testing.assert_array_equal(_read(out), _read(in_folder / "china.png"))
    for target, reason in (
        (tmp_path / "fixed.jpg", "the result is written as a PNG; name it NAME.png"),
        (image, "would replace the input"),
    ):
        assert main([*args, "--out", str(target), "--quiet"]) == 2
        assert reason in capsys.readouterr().err


def test_a_mask_drawn_on_a_phone_photo_as_stored_is_explained(workspace, tmp_path, capsys):
    photo = workspace["originals"]["china"][:40, :64]
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned a quarter: 40 wide, 64 high
    Image.fromarray(photo).save(tmp_path / "phone.jpg", exif=exif)
    Image.fromarray(_mask(photo.shape, 1)).save(tmp_path / "phone_mask.png")  # 64 x 40
    args = ["--model", workspace["weights"], "--images", str(tmp_path / "phone.jpg")]
    args += ["--masks", str(tmp_path / "phone_mask.png"), "--out", str(tmp_path / "out")]
    assert main([*args, "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "is 64x40 (WxH) but the image is 40x64 as displayed" in err
    assert "phone.jpg is turned by its EXIF orientation; draw the mask on the photo" in err


def test_one_mask_for_a_folder_serves_only_photos_of_its_shape(workspace, tmp_path, capsys):
    """One mask file for a folder was resized to every photo whatever its shape: drawn on
    a 64 x 40 photo, it was stretched over a phone photo shown 40 x 64 (exit status 0)."""
    photos = tmp_path / "photos"
    photos.mkdir()
    photo = workspace["originals"]["china"][:40, :64]
    mask = _mask(photo.shape, 1)  # 64 x 40 (W x H)
    Image.fromarray(mask).save(tmp_path / "mask.png")
    Image.fromarray(photo).save(photos / "same.png")
    big = np.asarray(Image.fromarray(photo).resize((128, 80)))  # same shape, twice the size
    Image.fromarray(big).save(photos / "twice.png")
    Image.fromarray(photo[:, :50]).save(photos / "narrow.png")  # 50 x 40: another shape
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 64 x 40, shown turned a quarter: 40 x 64
    Image.fromarray(photo).save(photos / "phone.jpg", exif=exif)
    # twice the mask's size, turned: the hint asked for the mask's exact size swapped
    Image.fromarray(big).save(photos / "phone_big.jpg", exif=exif)
    out = tmp_path / "out"
    args = ["--model", workspace["weights"], "--images", str(photos), "--quiet"]
    assert main([*args, "--masks", str(tmp_path / "mask.png"), "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert sorted(os.listdir(out)) == ["same.png", "twice.png"]
    narrow = next(line for line in err.splitlines() if "narrow.png" in line)
    assert "is 64x40 (WxH), another shape than the image's 50x40" in narrow
    assert "--masks FOLDER" in narrow
    phone = next(line for line in err.splitlines() if "phone.jpg" in line)
    assert "another shape than the image's 40x64" in phone
    assert "phone.jpg is turned by its EXIF orientation; draw the mask" in phone
    big_phone = next(line for line in err.splitlines() if "phone_big.jpg" in line)
    assert "phone_big.jpg is turned by its EXIF orientation; draw the mask" in big_phone
    result = _read(out / "twice.png")
    hole = np.asarray(Image.fromarray(mask).resize((128, 80), Image.Resampling.NEAREST)) >= 128
    np.testing.assert_array_equal(result[~hole], big[~hole])
    assert (result[hole] != big[hole]).any()
    # with a resize, the mask is resized to it as the photos are: no shape to keep
    items, skipped = inpainting.collect_items(photos, tmp_path / "mask.png", resize=(64, 64))
    assert len(items) == 5 and not skipped
    # an unreadable mask for the folder is named once, before any photo
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert main([*args, "--masks", str(tmp_path / "broken.png"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "cannot read mask" in err and "broken.png" in err and "Traceback" not in err


def test_ctrl_c_while_tensorflow_imports_is_one_line(tmp_path):
    """``python -m penet_tf.inpaint`` interrupted in its first second, while TensorFlow
    imports (a few seconds on 2 cores): a KeyboardInterrupt traceback through importlib
    before; now the commands' usual one line and status 130."""
    process = subprocess.Popen(
        [sys.executable, "-m", "penet_tf.inpaint", "--model", "m", "--images", "i"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    # Once its stderr filter runs (started after the start-up's Ctrl-C handler, before
    # TensorFlow imports), not after a fixed 0.7 s: a slow start-up took the signal
    # before the handler, a fast one after the import.
    children = f"/proc/{process.pid}/task/{process.pid}/children"
    deadline = time.monotonic() + 60
    while process.poll() is None and time.monotonic() < deadline:
        with open(children) as listed:
            if listed.read().split():
                break
        time.sleep(0.005)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, err[-2000:]
    assert err.strip().splitlines()[-1] == "interrupted" and "Traceback" not in err


def test_a_program_run_with_dash_m_that_imports_penet_tf_keeps_its_ctrl_c(tmp_path):
    """A user's service started as ``python -m svc``, whose package imports penet_tf
    (runpy imports it while ``sys.argv[0]`` is "-m", as for penet_tf's own commands),
    kept the commands' start-up Ctrl-C handler for its whole life: ``os._exit(130)``,
    its own ``except KeyboardInterrupt`` / ``finally`` clean-up never ran."""
    package = tmp_path / "svc"
    package.mkdir()
    (package / "__init__.py").write_text("import penet_tf  # noqa: F401\n")
    (package / "__main__.py").write_text(
        "import os, signal, time\n"
        "try:\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    time.sleep(30)\n"
        "except KeyboardInterrupt:\n"
        "    print('draining requests')\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "svc"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert (result.returncode, result.stdout) == (0, "draining requests\n"), result.stderr


def test_a_command_s_one_line_error_is_not_preceded_by_tensorflow_s_start_up_lines(tmp_path):
    """TensorFlow's absl start-up lines ("WARNING: All log messages before
    absl::InitializeLog() ...", oneDNN, CUDA probing: five lines, whatever
    TF_CPP_MIN_LOG_LEVEL says) came before the command's one-line error."""
    result = subprocess.run(
        [sys.executable, "-m", "penet_tf.inpaint", "--model", "m.weights.h5"]
        + ["--images", "x.png", "--masks", "y.png", "--out", "o.png"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        # (the most TensorFlow prints: its INFO lines, one of them on two lines)
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "0"},
    )
    assert result.returncode == 2
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: ") and "no such file" in result.stderr


def test_what_kills_the_start_up_is_still_shown(tmp_path):
    """The start-up filter dropped everything written while TensorFlow imported when the
    import then died: a CPU without AVX got exit status 134 and no line at all."""
    fake = tmp_path / "fake" / "keras"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "import os\n"
        "os.write(2, b'I0000 00:00:1 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'W0000 00:00:1 dso.cc:1] Could not load dynamic library x\\n')\n"
        "os.write(2, b'F0000 00:00:1 cpu_feature_guard.cc:90] compiled to use AVX\\n')\n"
        "os.abort()\n"
    )
    result = subprocess.run(
        [sys.executable, "-m", "penet_tf.inpaint", "--help"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(fake.parent), REPO])},
    )
    assert result.returncode == -signal.SIGABRT
    assert result.stderr.splitlines() == [
        "W0000 00:00:1 dso.cc:1] Could not load dynamic library x",
        "F0000 00:00:1 cpu_feature_guard.cc:90] compiled to use AVX",
    ]


def test_a_graph_error_is_reported_by_its_first_meaningful_line():
    from penet_tf.inpainting import _graph_message

    error = tf.errors.InvalidArgumentError(
        None,
        None,
        "Graph execution error:\n\nDetected at node range defined at (most recent call "
        "last):\n<stack traces unavailable>\nRequires start <= limit when delta > 0: "
        "0/-1863462592\n\t [[{{node range}}]]",
    )
    # was "<stack traces unavailable>", the whole of what inpaint reported
    assert _graph_message(error) == "Requires start <= limit when delta > 0: 0/-1863462592"


def test_leftovers_of_a_killed_run_are_swept(workspace, tmp_path, dead_pid):
    out = tmp_path / "out"
    out.mkdir()
    (out / f".tmp-{dead_pid}.{PID_SPACE}-china.png").write_bytes(b"half a PNG")  # process gone
    # a folder of the user's named like an older version's temporary: it was removed
    # with its files ("2023" taken for a pid that no longer runs)
    (out / ".tmp-2023-holiday-edits").mkdir()
    (out / ".tmp-2023-holiday-edits" / "beach.png").write_bytes(b"the user's")
    image = workspace["images"] / "china.png"
    args = ["--model", workspace["weights"], "--images", str(image), "--mask-type", "centre"]
    assert main([*args, "--out", str(out), "--quiet"]) == 0
    assert sorted(os.listdir(out)) == [".tmp-2023-holiday-edits", "china.png"]
    assert (out / ".tmp-2023-holiday-edits" / "beach.png").read_bytes() == b"the user's"


def _inpaint_with_writes_failing(workspace, out, failure, *extra, let_through=2):
    """Inpaints the workspace's photos (centre masks) into ``out`` with a ``write_png``
    that writes ``let_through`` files, then runs ``failure(path)``: (exit status, the
    paths it was given)."""
    import penet_tf.inpainting as inpainting

    real_write, calls = inpainting.write_png, []

    def write(path, array, *profile):
        calls.append(path)
        if len(calls) <= let_through:
            return real_write(path, array, *profile)
        failure(path)

    args = ["--model", workspace["weights"], "--images", str(workspace["images"])]
    args += ["--mask-type", "centre", "--out", str(out), "--quiet", *extra]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(inpainting, "write_png", write)
        return main(args), calls


def test_a_full_disk_names_the_file_and_what_was_written(workspace, tmp_path, capsys):
    import errno

    def full(path):
        raise OSError(errno.ENOSPC, "No space left on device")

    out = tmp_path / "out"
    status, calls = _inpaint_with_writes_failing(workspace, out, full)
    assert status == 2
    # (was "error: [Errno 28] No space left on device")
    assert capsys.readouterr().err.strip().splitlines() == [
        f"error: [Errno 28] {calls[2]} could not be written: No space left on device "
        "(2 of 6 results were written before it, and are complete)"
    ]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(path) for path in calls[:2])


def test_a_closed_stdout_does_not_stop_a_command(workspace, tmp_path, capsys, monkeypatch):
    # `... >&-` (a daemon, a scheduler): sys.stdout is None; the progress bar's isatty()
    # was an AttributeError traceback, 0 of 6 images written (training's Keras progress too)
    monkeypatch.setattr(sys, "stdout", None)
    out = tmp_path / "out"
    args = ["--model", workspace["weights"], "--images", str(workspace["images"])]
    assert main([*args, "--mask-type", "centre", "--out", str(out)]) == 0
    assert len(os.listdir(out)) == 6


def test_ctrl_c_ends_in_one_line_and_leaves_complete_files_only(workspace, tmp_path, capsys):
    from penet_tf.io_utils import atomic_path

    def ctrl_c(path):
        with atomic_path(path) as temporary:  # Ctrl-C in the middle of the third write
            open(temporary, "wb").write(b"\x89PNG half")
            raise KeyboardInterrupt

    out = tmp_path / "out"
    status, calls = _inpaint_with_writes_failing(workspace, out, ctrl_c)
    assert status == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted after 2 of 6 images; those written are complete"]
    assert sorted(os.listdir(out)) == sorted(os.path.basename(path) for path in calls[:2])
    for path in calls[:2]:
        assert _read(path).shape[2] == 3  # complete PNGs
    # With --grid, Ctrl-C at the first grid: the first result is complete, and counted.
    status, _ = _inpaint_with_writes_failing(
        workspace, tmp_path / "grid", ctrl_c, "--grid", let_through=1
    )
    assert status == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["interrupted after 1 of 6 images; those written are complete"]


def test_a_mask_named_after_another_photo_is_not_taken_for_one_differing_in_case(tmp_path):
    """Photos a.png and A.png with the one mask a.png (Linux: two names): A.png was
    inpainted with a.png's hole, exit status 0, and Img.png and IMG.png both with img.png.
    A name that differs only in case pairs only when no other photo's name is alike
    (IMG_1.PNG with img_1.png still does)."""
    from penet_tf import inpainting

    images, masks, predictions = (tmp_path / name for name in ("images", "masks", "results"))
    for folder in (images, masks, predictions):
        folder.mkdir()
    pixels = np.zeros((8, 8, 3), np.uint8)
    for name in ("a.png", "A.png", "IMG_1.PNG", "Img.png", "IMG.png"):
        Image.fromarray(pixels).save(images / name)
    for name in ("a.png", "img_1.png", "img.png"):
        Image.fromarray(pixels).save(masks / name)
        Image.fromarray(pixels).save(predictions / name)
    items, skipped = inpainting.collect_items(images, masks)
    assert {item.name: os.path.basename(item.mask) for item in items} == {
        "IMG_1": "img_1.png",
        "a": "a.png",
    }
    taken = "is not taken for it: another image's name differs from it only in case"
    assert sorted((os.path.basename(s.name), s.reason.split(" (")[0]) for s in skipped) == [
        ("A.png", f"no mask named A.* in {masks}"),
        ("IMG.png", f"no mask named IMG.* in {masks}"),
        ("Img.png", f"no mask named Img.* in {masks}"),
    ]
    assert all(taken in s.reason for s in skipped)
    items, skipped = inpainting.collect_items(images, predictions=predictions)
    assert sorted(item.name for item in items) == ["IMG_1", "a"]
    assert "no prediction named A.*" in skipped[0].reason and len(skipped) == 3
