"""One image reader for every path: real-world files through the CLI, the gRPC client with
the served graph (``serving_default`` and ``inpaint_bytes``) give identical pixels.

Each kind of file (16-bit grey and RGB PNG, palette, grey + alpha, RGBA, CMYK JPEG, an
EXIF-rotated phone JPEG, an antialiased mask, a hole taken from the alpha channel) runs
through ``python -m penet_tf.inpaint`` (in-process), the client's ``serving_default``
path and its ``inpaint_bytes`` path against the TF Serving test double, all on one thin
export. The known pixels must equal an independent decoding of the file (NumPy / TF,
not Pillow), and the three results must be identical.
"""

import functools
import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import tensorflow as tf
from conftest import load_once
from PIL import Image
from serving_double import ServingDouble

from penet_tf import image_io
from penet_tf.inference import hole_mask
from penet_tf.inpaint import main as inpaint_main
from penet_tf.serving import InpaintClient
from penet_tf.serving.client import inpaint_files as client_inpaint_files

SIZE = 64
MODEL = "thin"


def _photo(height=SIZE, width=SIZE):
    from conversion_helpers import photo

    return photo(height, width)


def _square_mask(height=SIZE, width=SIZE):
    mask = np.zeros((height, width), np.uint8)
    mask[height // 4 : height // 2, width // 3 : 2 * width // 3] = 255
    return mask


def _accurate_jpeg(data):
    """A JPEG as libjpeg's accurate integer DCT decodes it (TF, not Pillow)."""
    return tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE").numpy()


def _exif_rotated_jpeg(photo):
    """A phone photo: stored landscape, EXIF orientation 6 (shown rotated 90° clockwise)."""
    stored = np.ascontiguousarray(np.rot90(photo, k=1))  # what the sensor wrote
    exif = Image.Exif()
    exif[image_io.EXIF_ORIENTATION] = 6
    buffer = io.BytesIO()
    Image.fromarray(stored).save(buffer, "JPEG", quality=92, exif=exif)
    data = buffer.getvalue()
    shown = np.rot90(_accurate_jpeg(data), k=-1)  # orientation 6: rotate 90° clockwise
    return data, shown


def _kinds():
    """{name: (file bytes, suffix, mask (H, W) 0/255 array or None, expected RGB, hole)}."""
    rng = np.random.default_rng(5)
    photo = _photo()
    square = _square_mask()
    hole = square > 0
    kinds = {}

    def png(array, mode=None, **options):
        buffer = io.BytesIO()
        Image.fromarray(array, mode).save(buffer, "PNG", **options)
        return buffer.getvalue()

    grey16 = (photo[..., 1].astype(np.uint16) * 257 + rng.integers(0, 257, (SIZE, SIZE))).astype(
        np.uint16
    )
    expected = np.repeat((grey16 >> 8).astype(np.uint8)[..., None], 3, -1)
    kinds["grey16"] = (png(grey16), ".png", square, expected, hole)
    rgb16 = photo.astype(np.uint16) * 257 + rng.integers(0, 257, photo.shape).astype(np.uint16)
    data = tf.io.encode_png(tf.constant(rgb16)).numpy()
    kinds["rgb16"] = (data, ".png", square, (rgb16 >> 8).astype(np.uint8), hole)
    palette = Image.fromarray(photo).quantize(32)
    buffer = io.BytesIO()
    palette.save(buffer, "PNG", transparency=0)
    colours = np.array(palette.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    kinds["palette"] = (buffer.getvalue(), ".png", square, colours[np.asarray(palette)], hole)
    # TensorFlow read these otherwise than Pillow (a GIF's transparent colour as black, a
    # palette BMP's indices as grey) or aborted the server (an animated WebP): the client
    # sends them as PNG, the served graph refuses them (below).
    buffer = io.BytesIO()
    palette.save(buffer, "GIF", transparency=0)
    kinds["transparent_gif"] = (
        buffer.getvalue(),
        ".gif",
        square,
        colours[np.asarray(palette)],
        hole,
    )
    buffer = io.BytesIO()
    palette.save(buffer, "BMP")
    kinds["palette_bmp"] = (buffer.getvalue(), ".bmp", square, colours[np.asarray(palette)], hole)
    buffer = io.BytesIO()
    frames = [Image.fromarray(photo), Image.fromarray(255 - photo)]
    frames[0].save(buffer, "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    kinds["animated_webp"] = (buffer.getvalue(), ".webp", square, photo, hole)
    buffer = io.BytesIO()
    Image.fromarray(photo[..., 1]).save(buffer, "BMP")  # 8 bits, the grey ramp: read right
    kinds["grey_bmp"] = (buffer.getvalue(), ".bmp", square, np.repeat(photo[..., 1:2], 3, -1), hole)
    grey = photo[..., 0]
    alpha = rng.integers(0, 256, (SIZE, SIZE), dtype=np.uint8)
    la = png(np.dstack([grey, alpha]), "LA")
    kinds["grey_alpha"] = (la, ".png", square, np.repeat(grey[..., None], 3, -1), hole)
    kinds["rgba"] = (png(np.dstack([photo, alpha]), "RGBA"), ".png", square, photo, hole)
    buffer = io.BytesIO()
    Image.fromarray(photo).convert("CMYK").save(buffer, "JPEG", quality=92)
    cmyk = buffer.getvalue()
    kinds["cmyk_jpeg"] = (cmyk, ".jpg", square, _accurate_jpeg(cmyk), hole)
    rotated, shown = _exif_rotated_jpeg(_photo(SIZE, 48))  # shown 48 wide, 64 high
    square_tall = _square_mask(SIZE, 48)
    kinds["exif_jpeg"] = (rotated, ".jpg", square_tall, shown, square_tall > 0)
    # An antialiased brush: 255 inside, an edge ramp and a faint halo around it.
    brush = np.zeros((SIZE, SIZE), np.uint8)
    rows, cols = np.mgrid[:SIZE, :SIZE]
    distance = np.hypot(rows - 30, cols - 34)
    brush[distance < 16] = 40  # faint halo: known
    brush[distance < 13] = 127  # just under half: known
    brush[distance < 11] = 128  # half: a hole
    brush[distance < 9] = 255
    kinds["antialiased_mask"] = (png(photo), ".png", brush, photo, brush >= 128)
    return kinds


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("image_io")
    images, masks = root / "images", root / "masks"
    images.mkdir()
    masks.mkdir()
    kinds = _kinds()
    for name, (data, suffix, mask, _, _) in kinds.items():
        (images / f"{name}{suffix}").write_bytes(data)
        Image.fromarray(mask).save(masks / f"{name}.png")
    # A hole from the alpha channel (transparent = hole), with a soft edge.
    alpha = np.full((SIZE, SIZE), 255, np.uint8)
    alpha[20:40, 10:30] = 0
    alpha[19, 10:30] = 127  # under half opaque: a hole
    alpha[18, 10:30] = 128  # half opaque: known
    photo = _photo()
    alpha_dir = root / "alpha"
    alpha_dir.mkdir()
    Image.fromarray(np.dstack([photo, alpha]), "RGBA").save(alpha_dir / "cutout.png")
    return {
        "root": root,
        "images": images,
        "masks": masks,
        "kinds": kinds,
        "alpha": (alpha_dir / "cutout.png", photo, alpha < 128),
    }


@pytest.fixture(scope="module")
def served(thin_savedmodel):
    with ServingDouble(thin_savedmodel.parent, MODEL) as double:
        yield double.address


@pytest.fixture()
def saved_model_loaded_once(thin_savedmodel, loads, monkeypatch):
    """``inpaint_main``'s loads of the session's thin export, shared by this module's
    tests (each loaded the SavedModel and instantiated its signature again: seconds per
    call). The same arguments give the same Inpainter (it holds no state between calls);
    loading itself is tested in test_inpaint_cli."""
    from penet_tf import inpaint as cli

    load_once(monkeypatch, cli, thin_savedmodel, loads)


def _read(path):
    return np.asarray(Image.open(path).convert("RGB"))


def _check(name, outputs, expected, hole):
    """All paths agree exactly; the known pixels are the file's own, decoded right."""
    first_path, first = next(iter(outputs.items()))
    assert first.shape == expected.shape, name
    known = ~hole
    for path, output in outputs.items():
        np.testing.assert_array_equal(output, first, err_msg=f"{name}: {path} vs {first_path}")
        np.testing.assert_array_equal(output[known], expected[known], err_msg=f"{name}: {path}")
    assert (first[hole] != expected[hole]).any(), name  # the hole was filled


def test_every_kind_of_file_gives_identical_pixels_on_every_path(
    files, served, thin_savedmodel, tmp_path, saved_model_loaded_once
):
    out = tmp_path / "cli"
    args = ["--model", str(thin_savedmodel), "--images", str(files["images"])]
    assert inpaint_main([*args, "--masks", str(files["masks"]), "--out", str(out), "--quiet"]) == 0
    with InpaintClient(served, MODEL, timeout=60) as client:
        for name, (_, suffix, _, expected, hole) in files["kinds"].items():
            image = files["images"] / f"{name}{suffix}"
            mask = files["masks"] / f"{name}.png"
            outputs = {"cli": _read(out / f"{name}.png")}
            for signature in ("serving_default", "inpaint_bytes"):
                path = tmp_path / f"{name}-{signature}.png"
                client_inpaint_files(client, image, mask, path, signature)
                outputs[f"client {signature}"] = _read(path)
            _check(name, outputs, expected, hole)


def test_mask_from_alpha_on_every_path(
    files, served, thin_savedmodel, tmp_path, capsys, saved_model_loaded_once
):
    path, photo, hole = files["alpha"]
    out = tmp_path / "cli"
    args = ["--model", str(thin_savedmodel), "--images", str(path), "--mask-from-alpha"]
    assert inpaint_main([*args, "--out", str(out), "--quiet"]) == 0
    outputs = {"cli": _read(out / "cutout.png")}
    with InpaintClient(served, MODEL, timeout=60) as client:
        for signature in ("serving_default", "inpaint_bytes"):
            result = tmp_path / f"{signature}.png"
            client_inpaint_files(client, path, None, result, signature, mask_from_alpha=True)
            outputs[f"client {signature}"] = _read(result)
    _check("alpha", outputs, photo, hole[..., None].repeat(3, -1))
    # An image without alpha: refused by name, before the model runs.
    opaque = tmp_path / "opaque.png"
    Image.fromarray(photo).save(opaque)
    args = ["--model", str(thin_savedmodel), "--images", str(opaque), "--mask-from-alpha"]
    assert inpaint_main([*args, "--out", str(tmp_path / "o"), "--quiet"]) == 1
    assert f"skipped {opaque}: has no alpha channel: --mask-from-alpha" in capsys.readouterr().err


def test_a_photo_s_colour_profile_is_kept_in_the_result(
    served, thin_savedmodel, tmp_path, saved_model_loaded_once
):
    """Pixels are read as stored; results lost the photo's ICC profile, so viewers showed
    a Display P3 photo's known pixels in sRGB (up to 42 levels off). Every writer keeps an
    RGB profile; a grey or CMYK one (not the result's colours) is left out."""
    from PIL import ImageCms

    profile = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    assert profile[16:20] == b"RGB "
    photo = _photo(SIZE, SIZE)
    image = tmp_path / "in" / "p3.jpg"
    image.parent.mkdir()
    Image.fromarray(photo).save(image, quality=95, icc_profile=profile)
    mask = np.zeros((SIZE, SIZE), np.uint8)
    mask[20:40, 20:44] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    args = ["--model", str(thin_savedmodel), "--images", str(image), "--grid"]
    args += ["--masks", str(tmp_path / "mask.png"), "--out", str(tmp_path / "cli"), "--quiet"]
    assert inpaint_main(args) == 0
    results = [tmp_path / "cli" / "p3.png", tmp_path / "cli" / "p3_grid.png"]
    with InpaintClient(served, MODEL, timeout=60) as client:
        for signature, suffix in (("serving_default", "webp"), ("inpaint_bytes", "png")):
            results.append(tmp_path / f"{signature}.{suffix}")
            client_inpaint_files(client, image, tmp_path / "mask.png", results[-1], signature)
    expected = image_io.read_rgb(image)
    for path in results:
        with Image.open(path) as result:
            assert result.info.get("icc_profile") == profile, path
        if "grid" not in path.name:
            np.testing.assert_array_equal(_read(path)[mask == 0], expected[mask == 0])
    assert image_io.colour_profile(tmp_path / "mask.png") is None
    grey = ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()
    Image.fromarray(photo).save(tmp_path / "lab.jpg", icc_profile=grey)
    assert image_io.colour_profile(tmp_path / "lab.jpg") is None


def _rgb_profile(size):
    """Bytes shaped as an RGB ICC profile's header (its size, 'RGB ', 'acsp')."""
    profile = bytearray((np.arange(size) * 31 % 256).astype(np.uint8).tobytes())
    profile[0:4], profile[16:20], profile[36:40] = size.to_bytes(4, "big"), b"RGB ", b"acsp"
    return bytes(profile)


def test_a_profile_pillow_could_not_read_back_from_a_png_is_left_out(tmp_path):
    """A JPEG's 2-MiB profile (Pillow reads it) went into the result's iCCP chunk, which
    Pillow's PNG reader refuses past 1 MiB: results that read_rgb could not open."""
    photo = _photo(SIZE, SIZE)
    png = image_io.encode_png(photo)
    for size in (image_io.MAX_PROFILE_BYTES, image_io.MAX_PROFILE_BYTES + 1, 2 << 20):
        profile = _rgb_profile(size)
        path = tmp_path / f"{size}.jpg"
        Image.fromarray(photo).save(path, icc_profile=profile)
        with Image.open(path) as image:
            assert image.info["icc_profile"] == profile
        kept = image_io.colour_profile(path)
        assert kept == (profile if size <= image_io.MAX_PROFILE_BYTES else None), size
        result = tmp_path / f"{size}.png"
        result.write_bytes(image_io.with_colour_profile(png, kept))
        np.testing.assert_array_equal(image_io.read_rgb(result), photo)
        with Image.open(result) as image:
            assert image.info.get("icc_profile") == kept


# What TensorFlow's decoders would read otherwise: the served graph refuses these.
REFUSED = {
    "transparent_gif": "a GIF with a transparent colour is not decoded here",
    "palette_bmp": "a BMP of 1, 4, 16 or 8 bits with a colour palette, compressed, with an OS/2",
    "animated_webp": "an animated WebP is not decoded here",  # (it aborted the server)
}


def test_raw_bytes_decode_in_the_served_graph_as_in_python(files, thin_savedmodel):
    """``inpaint_bytes`` fed the files themselves (no client): the same pixels as the
    Python reader, or INVALID_ARGUMENT for what TensorFlow would read otherwise."""
    signatures = tf.saved_model.load(str(thin_savedmodel)).signatures
    for name, (data, _, mask, expected, _) in files["kinds"].items():
        if name == "exif_jpeg":
            continue  # the graph shows it as stored: the client sends an oriented PNG
        if name in REFUSED:
            mask_png = tf.io.encode_png(mask[..., None]).numpy()
            with pytest.raises(tf.errors.InvalidArgumentError, match=REFUSED[name]):
                signatures["inpaint_bytes"](
                    image_bytes=tf.constant([data]), mask_bytes=tf.constant([mask_png])
                )
            with pytest.raises(tf.errors.InvalidArgumentError, match=REFUSED[name]):
                signatures["inpaint_bytes"](  # as a mask too
                    image_bytes=tf.constant([tf.io.encode_png(expected).numpy()]),
                    mask_bytes=tf.constant([data]),
                )
            continue
        mask_png = tf.io.encode_png(mask[..., None]).numpy()
        result = signatures["inpaint_bytes"](
            image_bytes=tf.constant([data]), mask_bytes=tf.constant([mask_png])
        )["inpainted_bytes"].numpy()[0]
        output = tf.io.decode_png(result).numpy()
        served = signatures["serving_default"](
            image=tf.constant(expected[None]), mask=tf.constant(mask[None, ..., None])
        )["inpainted"].numpy()[0]
        np.testing.assert_array_equal(output, served, err_msg=name)


def test_encoded_bytes_decode_as_their_files(files):
    """``decode_rgb`` (TFDS records) gives every kind of file the pixels ``read_rgb``
    gives the same bytes on disk, and names what it cannot read."""
    for name, (data, suffix, _, _, _) in files["kinds"].items():
        from_file = image_io.read_rgb(str(files["images"] / f"{name}{suffix}"))
        np.testing.assert_array_equal(image_io.decode_rgb(data, name), from_file, err_msg=name)
    with pytest.raises(image_io.ImageReadError, match="cannot read image record 7: not an image"):
        image_io.decode_rgb(b"", "record 7")


def test_sixteen_bit_grey_is_scaled_not_clipped(tmp_path):
    values = np.arange(0, 65536, 64, dtype=np.uint16).reshape(32, 32)
    Image.fromarray(values).save(tmp_path / "grey16.png")
    image = image_io.read_rgb(tmp_path / "grey16.png")
    np.testing.assert_array_equal(image[..., 0], values >> 8)
    assert (image == 255).mean() < 0.01  # Pillow's convert("RGB") clips 99 % to 255
    decoded = tf.io.decode_image((tmp_path / "grey16.png").read_bytes(), channels=3).numpy()
    np.testing.assert_array_equal(image, decoded)


def _mask_files():
    """{name: (encoded mask, expected hole [H, W])} in formats and modes users send."""
    rng = np.random.default_rng(9)
    hole = rng.random((24, 40)) < 0.3
    ramp = rng.integers(0, 256, (24, 40)).astype(np.uint8)  # the rule: >= 128 is a hole

    def encoded(array, kind="PNG", mode=None):
        buffer = io.BytesIO()
        Image.fromarray(array, mode).save(buffer, kind)
        return buffer.getvalue()

    def png16(array):
        return tf.io.encode_png(tf.constant(array.astype(np.uint16))).numpy()

    colour = np.zeros((24, 40, 3), np.uint8)
    colour[hole] = (200, 30, 0)  # red strokes: the largest channel counts
    alpha = rng.integers(0, 256, (24, 40), dtype=np.uint8)  # alpha is not the mask
    return {
        "png 0/255": (encoded(hole.astype(np.uint8) * 255), hole),
        "png 0/1": (encoded(hole.astype(np.uint8)), hole),
        "png ramp": (encoded(ramp), ramp >= 128),
        "png16 0/1": (encoded(hole.astype(np.uint16)), hole),  # 1 >> 8 would be 0: no hole
        "png16 0/65535": (encoded(hole.astype(np.uint16) * 65535), hole),
        "png16 ramp": (encoded(ramp.astype(np.uint16) * 256 + 200), ramp >= 128),
        # 16-bit colour: Pillow reads the high bytes only (a 0/1 mask had no hole)
        "png16 rgb 0/1": (png16(np.dstack([hole, hole * 0, hole])), hole),
        "png16 rgba 0/1": (png16(np.dstack([hole * 0, hole, hole * 0, hole * 0 + 65535])), hole),
        "png16 rgb 0/65535": (png16(np.dstack([hole * 65535] * 3)), hole),
        "png colour": (encoded(colour), hole),
        "png grey+alpha": (
            encoded(np.dstack([hole * 255, alpha]).astype(np.uint8), mode="LA"),
            hole,
        ),
        "bmp 0/1": (encoded(hole.astype(np.uint8), "BMP"), hole),
        "gif 0/255": (encoded(hole.astype(np.uint8) * 255, "GIF"), hole),
        "webp 0/255": (encoded(np.dstack([hole * 255] * 3).astype(np.uint8), "WEBP"), hole),
    }


def test_mask_files_follow_one_rule_in_python_and_in_the_served_graph(tmp_path):
    from penet_tf.data.masks import load_mask_file
    from penet_tf.export import _decode_mask

    for name, (data, hole) in _mask_files().items():
        path = tmp_path / "mask"
        path.write_bytes(data)
        np.testing.assert_array_equal(image_io.read_mask(path)[..., 0], hole, err_msg=name)
        values = _decode_mask(tf.constant(data), "mask_bytes", 10**6)
        graph = hole_mask(values[None]).numpy()[0, ..., 0]
        np.testing.assert_array_equal(graph, hole, err_msg=name)
        if name.startswith("png"):  # training's mask files (PNGs, decoded in the graph)
            # (training took any nonzero value as a hole: "png ramp" was all hole)
            trained = load_mask_file(str(path)).numpy()[..., 0]
            np.testing.assert_array_equal(trained, hole, err_msg=f"training, {name}")


def test_the_size_probe_reads_a_png_s_orientation_without_decoding_it(tmp_path, monkeypatch):
    """Pillow's getexif decodes a whole PNG whose EXIF is not before its pixels (to reach
    the chunks after them): every photo's and mask's header-only size probe was a full
    decode (a 60-MP PNG: 2.2 s, 644 MiB). Orientations after the pixels still count."""
    import struct
    import zlib

    from PIL import PngImagePlugin

    def chunk(kind, data):
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    exif = Image.Exif()
    exif[image_io.EXIF_ORIENTATION] = 6  # a quarter turn: 30 x 20 stored, 20 x 30 shown
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, "PNG")
    plain = buffer.getvalue()
    end = plain.index(b"IEND") - 4
    xmp = b'<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    files = {
        "plain.png": (plain, (20, 30)),
        "exif_after.png": (plain[:end] + chunk(b"eXIf", exif.tobytes()) + plain[end:], (30, 20)),
        "xmp_after.png": (
            plain[:end] + chunk(b"iTXt", b"XML:com.adobe.xmp\0\0\0\0\0" + xmp) + plain[end:],
            (30, 20),
        ),
    }
    buffer = io.BytesIO()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(buffer, "PNG", exif=exif)
    files["exif_before.png"] = (buffer.getvalue(), (30, 20))
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    shown = {name: image_io.open_image(tmp_path / name).size[::-1] for name in files}
    decodes = []
    load = PngImagePlugin.PngImageFile.load
    monkeypatch.setattr(
        PngImagePlugin.PngImageFile, "load", lambda self: decodes.append(1) or load(self)
    )
    for name, (_, size) in files.items():
        assert shown[name] == size, name  # what a viewer shows, decoded
        assert image_io.probe_size(tmp_path / name) == size, name
        assert image_io.turned_by_exif(tmp_path / name) == (size != (20, 30)), name
    assert not decodes


def test_a_16_bit_grey_alpha_0_1_mask_is_refused_where_it_cannot_be_read(tmp_path):
    """Pillow reads a 16-bit grey + alpha PNG's high bytes only: a 0/1 mask had no hole in
    Python while training's reader (16 bits, in the graph) found one. Refused by name."""
    from penet_tf.data.masks import load_mask_file

    hole = np.zeros((6, 8), bool)
    hole[2:4, 3:6] = True
    values = np.dstack([hole, np.full_like(hole, True)]).astype(np.uint16) * [1, 65535]
    path = tmp_path / "la16.png"
    path.write_bytes(tf.io.encode_png(tf.constant(values.astype(np.uint16))).numpy())
    with pytest.raises(image_io.ImageReadError, match="16-bit grey \\+ alpha PNG"):
        image_io.read_mask(path)
    np.testing.assert_array_equal(load_mask_file(str(path)).numpy()[..., 0], hole)
    values[..., 0] *= 65535  # a 0/65535 one reads as every other mask
    path.write_bytes(tf.io.encode_png(tf.constant(values.astype(np.uint16))).numpy())
    np.testing.assert_array_equal(image_io.read_mask(path)[..., 0], hole)


def _png_header(width, height):
    """A PNG of only a header declaring ``width`` x ``height`` RGB pixels (and IEND)."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def test_a_decompression_bomb_is_an_unreadable_file_not_a_traceback(tmp_path):
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(100_000, 100_000))  # 10^10 pixels in 57 bytes
    for read in (image_io.read_rgb, image_io.read_mask, image_io.check_image_file):
        with pytest.raises(image_io.ImageReadError, match="bomb.png: too large to decode"):
            read(bomb)
    # A 200-MP phone photo is not one (Pillow's own cap refused it over 179 MP, and
    # warned on stderr over 89 MP), read from its header without a warning:
    photo = tmp_path / "phone.png"
    photo.write_bytes(_png_header(16320, 12240))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert image_io.probe_size(photo) == (12240, 16320)
    # Between Pillow's warning and its refusal (1-2 GP), its warning printed its own
    # source line and site-packages path on stderr (a fresh process: the filter is set
    # on import, which pytest's collection undoes for the tests).
    huge = tmp_path / "huge.png"
    huge.write_bytes(_png_header(40000, 40000))
    script = (
        "import sys; from penet_tf import image_io; "
        "print(image_io.probe_size(sys.argv[1])); image_io.read_rgb(sys.argv[1])"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, str(huge)], capture_output=True, text=True, check=False
    )
    assert result.stdout.startswith("(40000, 40000)")
    assert "huge.png" in result.stderr  # (a header and nothing else: cannot be decoded)
    assert "DecompressionBombWarning" not in result.stderr


def test_a_pipe_is_refused_by_every_reader_without_waiting_for_a_writer(tmp_path):
    pipe = tmp_path / "photo.png"
    os.mkfifo(pipe)
    for read in (image_io.open_image, image_io.check_image_file, image_io.probe_size):
        with pytest.raises(image_io.ImageReadError, match="not a regular file"):
            read(str(pipe))
    assert image_io.turned_by_exif(str(pipe)) is False


def test_a_palette_with_transparency_per_colour_is_read_without_a_warning(tmp_path):
    photo = _photo(32, 48)
    palette = Image.fromarray(photo).quantize(32)
    palette.save(tmp_path / "p.png", transparency=bytes(range(0, 256, 8)))  # alpha per entry
    colours = np.array(palette.getpalette()[: 3 * 256], np.uint8).reshape(-1, 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # Pillow warned on stderr ("... converted to RGBA")
        image = image_io.read_rgb(tmp_path / "p.png")
    np.testing.assert_array_equal(image, colours[np.asarray(palette)])


def test_exif_rotation_is_applied_to_images_and_sizes(tmp_path):
    data, shown = _exif_rotated_jpeg(_photo(SIZE, 48))
    (tmp_path / "phone.jpg").write_bytes(data)
    assert image_io.probe_size(tmp_path / "phone.jpg") == (SIZE, 48)
    np.testing.assert_array_equal(image_io.read_rgb(tmp_path / "phone.jpg"), shown)


@pytest.mark.parametrize("compression", [None, "tiff_lzw"])
def test_a_tiff_s_orientation_is_applied_once_whatever_its_mode(tmp_path, compression):
    """Pillow (11+) turns a TIFF by its orientation itself and gives the turned size at
    open: ``probe_size`` turned it again (the photo was skipped, "60x40 once read,
    expected 40x60"), and an uncompressed grey, RGBA or CMYK TIFF, read through Pillow's
    memory map, came out as scrambled rows of the wrong size."""
    shown = _photo(40, 60)  # (H, W) as a viewer shows it
    exif = Image.Exif()
    exif[image_io.EXIF_ORIENTATION] = 6  # stored turned: shown = stored turned 90 clockwise
    for mode in ("RGB", "L", "RGBA", "CMYK"):
        path = tmp_path / f"{mode}.tif"
        displayed = Image.fromarray(shown).convert(mode)
        stored = displayed.transpose(Image.Transpose.ROTATE_90)
        stored.save(path, exif=exif, compression=compression)
        assert image_io.probe_size(path) == (40, 60), mode
        expected = np.asarray(displayed.convert("RGB"))
        np.testing.assert_array_equal(image_io.read_rgb(path), expected, err_msg=mode)
        assert image_io.read_mask(path).shape == (40, 60, 1), mode


def test_float_and_32_bit_integer_pixels_are_refused_by_name(tmp_path):
    """A 0-1 float TIFF (scientific and HDR tools write them) was clipped to 0 by Pillow's
    conversion: inpainted as a black photo, exit status 0."""
    ramp = np.linspace(0.2, 0.84, 48 * 64, dtype=np.float32).reshape(48, 64)
    Image.fromarray(ramp).save(tmp_path / "scan.tif")
    Image.fromarray((ramp * 1e6).astype(np.int32)).save(tmp_path / "counts.tif")
    # (read_rgb with a resize, as evaluate --protocol reads its 256^2 images, still
    # converted the float TIFF to a black photo)
    resized = functools.partial(image_io.read_rgb, resize=(256, 256))
    for name, reason in (("scan.tif", "32-bit floating-point"), ("counts.tif", "32-bit integer")):
        for read in (image_io.read_rgb, image_io.read_mask, resized):
            with pytest.raises(image_io.PixelFormatError, match=reason) as info:
                read(tmp_path / name)
            assert image_io.read_error_reason(info.value).startswith(reason)
    # A TIFF of 32-bit samples holding 8-bit values read as 16-bit ones: black, no word.
    # (A 16-bit PGM, which Pillow opens in the same mode "I", is still read.)
    Image.fromarray((ramp * 255).astype(np.int32)).save(tmp_path / "eight.tif")
    with pytest.raises(image_io.PixelFormatError, match=r"32-bit integer pixels \(51 to 214\)"):
        image_io.read_rgb(tmp_path / "eight.tif")
    values = (ramp * 65535).astype(np.uint16)
    (tmp_path / "deep.pgm").write_bytes(b"P5\n64 48\n65535\n" + values.astype(">u2").tobytes())
    np.testing.assert_array_equal(image_io.read_rgb(tmp_path / "deep.pgm")[..., 0], values >> 8)


def test_signed_8_and_16_bit_tiff_samples_are_refused_by_name(tmp_path):
    """A TIFF of signed samples (SampleFormat 2, scientific cameras write them): the 8-bit
    ones were read wrapped (-1 as 255, a dark region read bright, without a word) and the
    16-bit ones refused as "32-bit integer pixels", which the file does not hold."""
    import tifffile

    ramp = np.linspace(-100, 99, 48 * 64).reshape(48, 64)
    tifffile.imwrite(tmp_path / "s8.tif", ramp.astype(np.int8))
    tifffile.imwrite(tmp_path / "s16.tif", (ramp * 200).astype(np.int16))
    for bits in (8, 16):
        path = tmp_path / f"s{bits}.tif"
        reason = rf"signed {bits}-bit integer samples \(TIFF SampleFormat 2\)"
        for read in (image_io.read_rgb, image_io.read_mask):
            with pytest.raises(image_io.PixelFormatError, match=reason):
                read(path)
        with pytest.raises(image_io.PixelFormatError, match=reason):
            image_io.decode_rgb(path.read_bytes(), str(path))
    # Unsigned 8-bit samples are read as they are.
    tifffile.imwrite(tmp_path / "u8.tif", (ramp + 100).astype(np.uint8))
    np.testing.assert_array_equal(
        image_io.read_rgb(tmp_path / "u8.tif")[..., 1], (ramp + 100).astype(np.uint8)
    )


def test_a_16_bit_png_s_transparent_colour_is_its_hole(tmp_path):
    """--mask-from-alpha on a 16-bit grey or RGB PNG whose transparency is one colour (its
    tRNS chunk): the key was compared with Pillow's 8-bit pixels, and no pixel was a hole."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    def png16(array, colour_type, key):
        rows = b"".join(b"\0" + row.astype(">u2").tobytes() for row in array)
        header = struct.pack(">IIBBBBB", array.shape[1], array.shape[0], 16, colour_type, 0, 0, 0)
        return b"".join(
            [
                image_io.PNG_SIGNATURE,
                chunk(b"IHDR", header),
                chunk(b"tRNS", struct.pack(">" + "H" * len(key), *key)),
                chunk(b"IDAT", zlib.compress(rows)),
                chunk(b"IEND", b""),
            ]
        )

    hole = np.zeros((8, 10), bool)
    hole[2:4, 3:6] = True
    grey = np.where(hole, 1234, 40000).astype(np.uint16)
    colour = np.where(hole[..., None], [1234, 2345, 3456], [40000, 2345, 3456]).astype(np.uint16)
    for name, data in (
        ("grey", png16(grey, 0, (1234,))),
        ("rgb", png16(colour, 2, (1234, 2345, 3456))),
    ):
        (tmp_path / f"{name}.png").write_bytes(data)
        found = image_io.read_alpha_mask(tmp_path / f"{name}.png")[..., 0]
        np.testing.assert_array_equal(found, hole, err_msg=name)


def test_the_mask_rule_is_the_same_in_numpy_and_in_the_graph():
    values = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    zero_one = (np.arange(256) % 3 == 0).astype(np.uint8).reshape(1, 16, 16, 1)
    empty = np.zeros((1, 16, 16, 1), np.uint8)
    batch = np.concatenate([values, zero_one, empty])
    graph = hole_mask(tf.constant(batch)).numpy().astype(np.uint8)
    numpy = np.stack([image_io.binary_mask(mask) for mask in batch])
    np.testing.assert_array_equal(graph, numpy)
    np.testing.assert_array_equal(numpy[0].ravel(), np.arange(256) >= 128)  # 0/255: >= 128
    np.testing.assert_array_equal(numpy[1], zero_one[0])  # 0/1 masks: 1 = hole
    assert not numpy[2].any()
    assert "128" in image_io.MASK_RULE


@pytest.mark.parametrize("shape", [(37, 53), (37, 53, 1), (37, 53, 3), (5, 7, 4), (1, 9, 3)])
@pytest.mark.parametrize("threads", [1, 2, 3, 64])
def test_encode_png_is_read_back_exactly_by_pillow_and_tensorflow(shape, threads):
    rng = np.random.default_rng(len(shape) + threads)
    smooth = np.cumsum(rng.integers(0, 3, size=shape), axis=0)  # exercises the Up filter's wrap
    array = ((smooth + rng.integers(0, 256, size=shape[-1:])) % 256).astype(np.uint8)
    data = image_io.encode_png(array, threads=threads)
    expected = array[..., 0] if array.ndim == 3 and array.shape[-1] == 1 else array
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), expected)
    decoded = tf.io.decode_png(data).numpy()
    np.testing.assert_array_equal(decoded, expected.reshape(decoded.shape))


def test_encode_png_deflates_runs():
    """Deflate looks for runs only (zlib's Z_RLE): faster on photos and smaller on flat
    rows (a mask: 2.7 times the bytes with zlib's default matching)."""
    mask = np.zeros((900, 1200), np.uint8)
    mask[300:450, 450:780] = 255
    data = image_io.encode_png(mask, threads=2)
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(data))), mask)
    assert len(data) < 4000, len(data)  # 2,698 bytes; 7,266 with the default strategy


def test_write_png_is_atomic_and_refuses_what_png_cannot_hold(tmp_path):
    photo = np.random.default_rng(0).integers(0, 256, (300, 400, 3)).astype(np.uint8)
    path = tmp_path / "out.png"
    image_io.write_png(path, photo)
    np.testing.assert_array_equal(np.asarray(Image.open(path)), photo)
    assert os.listdir(tmp_path) == ["out.png"]
    with pytest.raises(ValueError, match="uint8"):
        image_io.encode_png(photo.astype(np.float32))
    with pytest.raises(ValueError, match=r"\[H, W\]"):
        image_io.encode_png(np.zeros((4, 4, 5), np.uint8))


def test_phone_formats_that_are_not_read_are_named_not_passed_over(tmp_path):
    """An iPhone's HEIC photo (also one renamed .jpg) and a JPEG XL image were "not an
    image file that can be read (unknown or corrupt format)"; in an --images folder, HEIC
    and JPEG XL files were left out without a word (a folder of them had "no images")."""
    from penet_tf.inpainting import collect_items

    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    (tmp_path / "IMG_0001.HEIC").write_bytes(heic)
    (tmp_path / "renamed.jpg").write_bytes(heic.replace(b"ftypheic", b"ftypmif1"))
    (tmp_path / "x.jxl").write_bytes(b"\xff\x0a" + bytes(100))
    (tmp_path / "junk.png").write_bytes(b"junk" * 10)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "ok.png")
    (tmp_path / "ok.HEIC").write_bytes(heic)  # (the photo's other copy, as phones keep it)
    items, skipped = collect_items(str(tmp_path))
    assert [item.name for item in items] == ["ok"]
    assert len(skipped) == 4  # (not ok.HEIC: it hid ok.png as "the same name")
    reasons = {os.path.basename(item.name): item.reason for item in skipped}
    heif = "a HEIC / HEIF photo (iPhones' and many phones' format), which penet_tf does not "
    assert (
        reasons["IMG_0001.HEIC"]
        == reasons["renamed.jpg"]
        == heif + ("read: convert it to JPEG or PNG")
    )
    assert reasons["x.jxl"].startswith("a JPEG XL image, which penet_tf does not read")
    assert reasons["junk.png"] == "not an image file that can be read (unknown or corrupt format)"
    with pytest.raises(image_io.ImageReadError, match="HEIC / HEIF photo"):
        image_io.open_image(str(tmp_path / "renamed.jpg"))


def _tiff_bytes(array, **tags):
    """A TIFF of ``array`` with extra IFD0 ``tags`` (``t254=1``: tag 254; bytes as BYTE)."""
    from PIL import TiffImagePlugin

    directory = TiffImagePlugin.ImageFileDirectory_v2()
    for name, value in tags.items():
        directory[int(name[1:])] = value
        if isinstance(value, bytes):
            directory.tagtype[int(name[1:])] = 1  # BYTE
    data = io.BytesIO()
    Image.fromarray(array).save(data, format="TIFF", tiffinfo=directory)
    return data.getvalue()


def _with_cr2_marker(tiff):
    """A little-endian TIFF with Canon's CR2 marker ("CR", version 2) at byte 8, as a
    CR2's header holds it: the first IFD (at byte 8) copied to the end and pointed at."""
    import struct

    entries = struct.unpack("<H", tiff[8:10])[0]
    directory = tiff[8 : 8 + 2 + 12 * entries + 4]
    data = bytearray(tiff + bytes(len(tiff) % 2))  # (an IFD starts on a word boundary)
    data[4:8] = struct.pack("<I", len(data))
    data[8:12] = b"CR\x02\x00"
    return bytes(data + directory)


def test_camera_raw_files_are_named_not_read_as_their_preview(tmp_path):
    """Pillow opens a DNG (Apple ProRAW, Android RAW) and the TIFF-based raw files (NEF,
    ARW, CR2) as TIFFs and reads their first image, in many DNGs a small preview: it was
    inpainted in place of the photo, without a word; in folders raw files were passed
    over, and Pillow cannot identify the others (ORF, RW2, RAF, CR3)."""
    from penet_tf.inpainting import collect_items

    preview = np.full((12, 18, 3), 90, np.uint8)
    dng = _tiff_bytes(preview, t254=1, t50706=b"\x01\x04\x00\x00")  # NewSubfileType, DNGVersion
    (tmp_path / "IMG_0001.DNG").write_bytes(dng)
    (tmp_path / "renamed.tif").write_bytes(dng)  # a DNG by its tag, whatever its name
    (tmp_path / "DSC_0002.NEF").write_bytes(_tiff_bytes(preview, t254=1))
    (tmp_path / "DSC_0003.arw").write_bytes(_tiff_bytes(preview))  # (a raw by its name)
    (tmp_path / "P0004.ORF").write_bytes(b"IIRO\x08\x00\x00\x00" + bytes(100))
    (tmp_path / "x.cr3").write_bytes(b"\x00\x00\x00\x18ftypcrx \x00\x00\x00\x01" + bytes(100))
    # A TIFF whose first page is a thumbnail of the next (NewSubfileType bit 0); a lone
    # image flagged so is read.
    import tifffile

    with tifffile.TiffWriter(tmp_path / "paged.tif") as tiff:
        tiff.write(preview, subfiletype=1)
        tiff.write(np.zeros((24, 36, 3), np.uint8))
    (tmp_path / "lone.tif").write_bytes(_tiff_bytes(preview, t254=1))
    # A HEIC named .dng is a HEIC; a HEIC beside a DNG of its name: each named for itself
    # (it was "another image has the same name; rename one").
    heic = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(200)
    (tmp_path / "phone.dng").write_bytes(heic)
    (tmp_path / "IMG_0001.HEIC").write_bytes(heic)
    (tmp_path / "plain.tif").write_bytes(_tiff_bytes(preview, t254=0))
    Image.fromarray(preview).save(tmp_path / "IMG_0005.JPG")
    (tmp_path / "IMG_0005.CR2").write_bytes(_tiff_bytes(preview))  # (a camera's RAW + JPEG)
    # A CR2 renamed .tif (Canon's "CR" marker at byte 8, no flag, no DNG tag) was read.
    (tmp_path / "canon.tif").write_bytes(_with_cr2_marker(_tiff_bytes(preview)))
    items, skipped = collect_items(str(tmp_path))
    assert sorted(item.name for item in items) == ["IMG_0005", "lone", "plain"]
    reasons = {os.path.basename(item.name): item.reason for item in skipped}
    develop = (
        "which penet_tf does not read{}: develop it (export it from the camera's or a raw "
        "editor's software) as JPEG, PNG or TIFF"
    )
    first = develop.format(" (only its first image, a 18 x 12 preview, could be)")
    heif = "a HEIC / HEIF photo (iPhones' and many phones' format), which penet_tf does not "
    assert reasons == {
        "phone.dng": heif + "read: convert it to JPEG or PNG",
        "IMG_0001.HEIC": heif + "read: convert it to JPEG or PNG",
        "IMG_0001.DNG": "a camera raw file (DNG), " + first,
        "renamed.tif": "a camera raw file (DNG), " + first,
        "DSC_0002.NEF": "a camera raw file (NEF), " + first,
        "DSC_0003.arw": "a camera raw file (ARW), " + first,
        "canon.tif": "a camera raw file (CR2), " + first,
        "P0004.ORF": "a camera raw file (ORF), " + develop.format(""),
        "x.cr3": "a camera raw file (CR3), " + develop.format(""),
        "paged.tif": "its first image is a 18 x 12 reduced-resolution copy (a preview) of "
        "another image in the file, which penet_tf does not read: save the photo on its own "
        "as PNG, JPEG or TIFF",
    }
    # Every reader refuses them alike: as a photo, a mask, their size, from bytes.
    dng_path = str(tmp_path / "IMG_0001.DNG")
    for read in (image_io.read_rgb, image_io.read_mask, image_io.probe_size):
        with pytest.raises(image_io.ImageReadError, match=r"camera raw file \(DNG\)"):
            read(dng_path)
    with pytest.raises(image_io.ImageReadError, match=r"^cannot read mask .*\(DNG\)"):
        image_io.check_image_file(dng_path, "mask")
    with pytest.raises(image_io.ImageReadError, match=r"camera raw file \(DNG\)"):
        image_io.decode_rgb(dng, "upload")
    assert image_io.read_rgb(str(tmp_path / "plain.tif")).shape == (12, 18, 3)


def test_tiff_layouts_pillow_leaves_as_stored_are_read_as_a_viewer_shows_them(tmp_path):
    """A 16-bit grey TIFF whose 0 is white (WhiteIsZero; Pillow inverts only 8-bit ones)
    was read as its negative, a mask's holes swapped with its known pixels, without a
    word; grey with premultiplied alpha (ImageMagick's default) failed with Pillow's
    "conversion from La to L not supported"; TIFF layouts Pillow has no mode for were
    "unknown or corrupt format"."""
    import skimage.data
    import tifffile

    shown = np.asarray(Image.fromarray(skimage.data.camera()).resize((48, 32)))
    tifffile.imwrite(tmp_path / "w16.tif", (255 - shown).astype(np.uint16) * 257, photometric=0)
    tifffile.imwrite(tmp_path / "w8.tif", 255 - shown, photometric=0)
    for name in ("w16.tif", "w8.tif"):
        np.testing.assert_array_equal(image_io.read_rgb(str(tmp_path / name))[..., 0], shown)
    hole = np.zeros((32, 48), np.uint16)
    hole[8:20, 10:30] = 1  # white (a hole) as shown
    tifffile.imwrite(tmp_path / "m16.tif", (1 - hole) * 65535, photometric=0)
    np.testing.assert_array_equal(image_io.read_mask(str(tmp_path / "m16.tif"))[..., 0], hole)

    alpha = np.tile(np.linspace(0, 255, 48).round().astype(np.uint8), (32, 1))
    premultiplied = (shown.astype(np.float64) * alpha / 255).round().astype(np.uint8)
    path = str(tmp_path / "la.tif")
    tifffile.imwrite(path, np.dstack([premultiplied, alpha]), photometric=1, extrasamples=[1])
    grey = image_io.read_rgb(path)
    opaque = alpha >= 128
    assert np.abs(grey[..., 0].astype(int) - shown)[opaque].max() <= 1  # un-premultiplied
    np.testing.assert_array_equal(image_io.read_alpha_mask(path)[..., 0], ~opaque)
    assert image_io.read_mask(path).shape == (32, 48, 1)

    cmyk = np.zeros((8, 8, 5), np.uint8)
    tifffile.imwrite(tmp_path / "cmyka.tif", cmyk, photometric="separated", extrasamples=[2])
    with pytest.raises(
        image_io.ImageReadError, match="a TIFF, damaged or of a pixel layout penet_tf does not read"
    ):
        image_io.read_rgb(str(tmp_path / "cmyka.tif"))
