"""The in-browser demo (demos/web) in headless Chromium, against the SavedModel.

``python -m penet_tf.demo`` serves the page with a thin converted TF.js model (256 x 256);
``demos/web/tests/browser_test.mjs`` (playwright-core driving Debian's /usr/bin/chromium)
uploads an 800 x 400 photo, paints strokes with the mouse, exercises Undo and Clear,
clicks Inpaint and hands back the page's state: every painted region's crop, the model's
input and output for it, the full-size result canvas and the downloaded PNG. The
assertions are here: the photo comes back at its own size and changed only inside the
painted region; each crop's model input is the photo's crop resized as documented
(demos/web/crop.js), its output equals the SavedModel's ``serving_default`` output for
that input, and the result's hole pixels are that output resized back.

Tolerance: TF.js (wasm backend) and TensorFlow both compute in float32 but with
different kernels (summation order, fused ops), which moves the prediction by about
1e-6; a value within that distance of a rounding boundary then lands on the neighbouring
uint8 value. So hole values may differ by 1/255, on at most 0.1 % of them (as for TFLite
and ONNX); anything more is a real discrepancy. The page's resampling (JavaScript, float
weights, round half up) may differ from TensorFlow's by 1/255 for the same reason.
Known pixels must be bit-identical.
"""

import base64
import io
import json
import os
import re
import struct
import subprocess
import sys
import urllib.error
import urllib.request
import zlib

import numpy as np
import pytest
from conversion_helpers import converted, hole_mask, photo, saved_model_output, thin_export
from PIL import Image
from scipy import ndimage

from penet_tf.high_resolution import MANY_HOLES, hole_boxes_near, hole_groups

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "demos", "web")
SCREENSHOT = os.path.join(REPO, "docs", "web-demo.png")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return converted(tmp_path_factory.getbasetemp(), "tfjs")


@pytest.fixture(scope="module")
def server(model_dir):
    """``python -m penet_tf.demo --model DIR --port 0``; yields its URL."""
    process = subprocess.Popen(
        [sys.executable, "-m", "penet_tf.demo", "--model", str(model_dir), "--port", "0"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        line = process.stdout.readline()  # the URL, printed once the socket is bound
        match = re.search(r"http://127\.0\.0\.1:\d+/", line)
        assert match, f"penet_tf.demo printed {line!r} (exit code {process.poll()})"
        yield match.group(0)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _page_test(script, *args, timeout=300):
    """Runs one of demos/web/tests' node scripts; the last line it printed, as JSON (or
    None: a script that writes its report to a file)."""
    result = subprocess.run(
        ["node", script, *map(str, args)],
        cwd=WEB, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    lines = result.stdout.strip().splitlines()
    return json.loads(lines[-1]) if lines and lines[-1].startswith("{") else None


def _get(url):
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status, response.headers, response.read()


def test_demo_server_serves_page_model_and_wasm(server):
    status, headers, body = _get(server)
    assert status == 200 and b'<canvas id="paint"' in body
    assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"  # wasm threads
    status, headers, body = _get(server + "crop.js")
    assert headers["Content-Type"] == "text/javascript" and b"export function planRegions" in body
    status, headers, body = _get(server + "model/model.json")
    assert json.loads(body)["format"] == "graph-model"
    wasm = "node_modules/@tensorflow/tfjs-backend-wasm/dist/tfjs-backend-wasm-simd.wasm"
    status, headers, body = _get(server + wasm)
    assert headers["Content-Type"] == "application/wasm" and body[:4] == b"\0asm"
    with pytest.raises(urllib.error.HTTPError):
        _get(server + "model/../../../etc/passwd")
    for path in ("app.js%00", "model/%00"):  # open() raised: no answer and a traceback
        with pytest.raises(urllib.error.HTTPError, match="404"):
            _get(server + path)


def test_demo_refuses_a_directory_without_model(tmp_path, capsys):
    from penet_tf import demo

    assert demo.main(["--model", str(tmp_path), "--port", "0"]) == 2
    assert "No model.json" in capsys.readouterr().err
    # (both said "No model.json in ...")
    assert demo.main(["--model", str(tmp_path / "missing"), "--port", "0"]) == 2
    assert capsys.readouterr().err.endswith("missing does not exist\n")
    (tmp_path / "model.json").write_text("{}")
    assert demo.main(["--model", str(tmp_path / "model.json"), "--port", "0"]) == 2
    assert "is a file: give the folder that holds model.json" in capsys.readouterr().err
    # A missing shard, or a link out of the folder: the server started, the page got 404s.
    model = tmp_path / "model"
    model.mkdir()
    manifest = {"format": "graph-model", "weightsManifest": [{"paths": ["shard1.bin"]}]}
    (model / "model.json").write_text(json.dumps(manifest))
    assert demo.main(["--model", str(model), "--port", "0"]) == 2
    assert "shard1.bin, which" in capsys.readouterr().err
    (tmp_path / "elsewhere.bin").write_bytes(b"\0" * 8)
    (model / "shard1.bin").symlink_to(tmp_path / "elsewhere.bin")
    assert demo.main(["--model", str(model), "--port", "0"]) == 2
    assert "elsewhere.bin, outside" in capsys.readouterr().err
    (model / "model.json").write_text("{")
    assert demo.main(["--model", str(model), "--port", "0"]) == 2
    assert "is not a TF.js model.json" in capsys.readouterr().err


def test_demo_serves_nothing_outside_its_folders_and_lists_none(model_dir, tmp_path, capsys):
    """A link in the model folder to /etc/passwd was served, and folders were listed."""
    import shutil
    import threading

    from penet_tf import demo

    model = tmp_path / "model"
    shutil.copytree(model_dir, model)
    (tmp_path / "secret.txt").write_text("not the model's")
    (model / "secret.txt").symlink_to(tmp_path / "secret.txt")
    server = demo.make_server(model, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        assert json.loads(_get(url + "model/model.json")[2])["format"] == "graph-model"
        for path in ("model/secret.txt", "model/", "node_modules/", "tests/"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                _get(url + path)
        # a port in use: one line with the way out (was "[Errno 98] Address already in use")
        assert demo.main(["--model", str(model), "--port", str(server.server_port)]) == 2
        assert "is in use: choose another with --port (0 = any free one)" in capsys.readouterr().err
    finally:
        server.shutdown()
        server.server_close()


def test_demo_ports_and_ipv6_hosts(tmp_path, capsys):
    """--port 70000 ended in an OverflowError traceback; --host ::1 was refused ("Address
    family for hostname not supported")."""
    import socket

    from penet_tf import demo

    for port in ("70000", "-1"):
        with pytest.raises(SystemExit) as info:
            demo.main(["--model", str(tmp_path), "--port", port])
        assert info.value.code == 2
        assert f"argument --port: {port} is not a port (0-65535" in capsys.readouterr().err
    assert demo._server_class("::1").address_family == socket.AF_INET6
    assert demo._server_class("127.0.0.1").address_family == socket.AF_INET


def _decode(text, shape):
    return np.frombuffer(base64.b64decode(text), np.uint8).reshape(shape)


def _distance_to_polyline(points, height, width):
    """Distance from every pixel centre of a height x width grid to the polyline."""
    y, x = np.mgrid[:height, :width] + 0.5
    best = np.full((height, width), np.inf)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        best = np.minimum(best, np.hypot(x - (x0 + t * dx), y - (y0 + t * dy)))
    return best


def _resize(image, height, width):
    """What crop.js computes: TensorFlow's area resize to shrink, bilinear to enlarge."""
    import tensorflow as tf

    if image.shape[:2] == (height, width):
        return image.astype(np.float64)
    method = "area" if height <= image.shape[0] else "bilinear"
    resized = tf.image.resize(image[None].astype(np.float32), (height, width), method=method)
    return resized[0].numpy().astype(np.float64)


MARGIN = 128  # demos/web/crop.js: photo pixels of context around a hole group


def _near(a, b, margin):
    """Whether two boxes' margin-enlarged boxes overlap (crop.js merges them)."""
    return (
        max(a["x0"], b["x0"]) < min(a["x1"], b["x1"]) + 2 * margin
        and max(a["y0"], b["y0"]) < min(a["y1"], b["y1"]) + 2 * margin
    )


def _plan(box, width, height, size, margin=MARGIN):
    """The window and square region crop.js gives a hole group's box (its header, 2-3)."""
    window_w = min(box["x1"] - box["x0"] + 2 * margin, width)
    window_h = min(box["y1"] - box["y0"] + 2 * margin, height)
    window = {
        "x": min(max(box["x0"] - margin, 0), width - window_w),
        "y": min(max(box["y0"] - margin, 0), height - window_h),
        "width": window_w,
        "height": window_h,
    }
    cells = size // 4
    tile = max(4, -(-window_w // cells), -(-window_h // cells))
    side = tile * cells
    region = {
        "x": min(max(window["x"] - (side - window_w) // 2, 0), max(width - side, 0)),
        "y": min(max(window["y"] - (side - window_h) // 2, 0), max(height - side, 0)),
        "side": side,
        "tile": tile,
    }
    return {"window": window, "region": region}


def _reflect(size, padded):
    """Indices of a mirror extension (penet_tf.inference.reflect_indices)."""
    period = max(2 * (size - 1), 1)
    position = np.arange(padded) % period
    return np.where(position < size, position, period - position)


def _fake_profile(size, colour_space=b"RGB "):
    """Bytes shaped as an ICC profile's header (the size, the colour space, 'acsp')."""
    profile = bytearray((np.arange(size) * 31 % 256).astype(np.uint8).tobytes())
    profile[0:4] = size.to_bytes(4, "big")
    profile[16:20], profile[36:40] = colour_space, b"acsp"
    return bytes(profile)


def test_a_model_that_cannot_load_stays_named_after_a_photo_is_opened(server, tmp_path):
    """The load error was replaced by "Paint what should disappear." once a photo was
    opened, while Inpaint stayed disabled with nothing saying why."""
    Image.fromarray(photo(60, 80)).save(tmp_path / "photo.png")
    (tmp_path / "bad.png").write_bytes(b"not an image")
    Image.fromarray(photo(100, 12000)).save(tmp_path / "strip.png")
    # A PNG header of 10000 x 5000 pixels (50 MP) and no pixels: refused from the header
    # (it was decoded first: a 400-MP PNG took 6 s and 1.6 GB; past about 536 MP the
    # decode failed and the page said only "Cannot read").
    header = struct.pack(">IIBBBBB", 10000, 5000, 8, 2, 0, 0, 0)
    chunk = struct.pack(">I", 13) + b"IHDR" + header
    chunk += struct.pack(">I", zlib.crc32(b"IHDR" + header))
    (tmp_path / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + chunk)
    page = _page_test(
        "tests/model_error_test.mjs", "--url", server,
        "--image", tmp_path / "photo.png", "--bad", tmp_path / "bad.png",
        "--strip", tmp_path / "strip.png", "--huge", tmp_path / "huge.png",
    )  # fmt: skip
    assert page["loaded"]["error"].startswith("No model at missing/model.json")
    opened = page["opened"]
    assert opened["error"] == page["loaded"]["error"] and opened["statusIsError"]
    assert opened["status"].startswith("photo.png: 80 × 60, but it cannot be inpainted: No model")
    assert opened["inpaintDisabled"]
    refused = page["refused"]  # (a refused file's message alone hid it again)
    assert refused["status"].startswith("Cannot read bad.png as an image. No model at")
    assert refused["error"] == refused["status"] and refused["inpaintDisabled"]
    assert page["huge"]["status"].startswith(
        "huge.png is 10000 × 5000 pixels (50.0 MP); this page takes photos up to 40 MP."
    )
    # The paint layer covers the strip's photo exactly (it was up to 1.6 CSS pixels wider:
    # a stroke 55 photo pixels off at the strip's end).
    photo_box, paint_box = page["boxes"]["photo"], page["boxes"]["paint"]
    assert abs(photo_box["width"] - paint_box["width"]) * 12000 / photo_box["width"] < 1.0
    assert abs(photo_box["height"] - paint_box["height"]) < 0.05


def test_a_photo_picked_while_another_decodes(server, tmp_path):
    """Inpaint stayed enabled while a photo decoded: a run then painted the earlier
    photo's result, offered for download under the new photo's name; of two quick picks
    the one decoded last was shown."""
    Image.fromarray(photo(60, 80)).save(tmp_path / "slow.png")
    Image.fromarray(photo(40, 50)).save(tmp_path / "fast.png")
    page = _page_test(
        "tests/photo_race_test.mjs", "--url", server,
        "--slow", tmp_path / "slow.png", "--fast", tmp_path / "fast.png",
    )  # fmt: skip
    assert not page["before"]["inpaintDisabled"]
    assert page["decoding"]["inpaintDisabled"]
    settled = page["settled"]
    assert settled["photo"] == "fast.png" and not settled["inpaintDisabled"]
    assert settled["photosLoaded"] == page["before"]["photosLoaded"] + 1
    # A stroke begun while the next photo decoded went on painting it, outside its undo
    # history: 2671 pixels that Clear and Undo left.
    assert page["stroke"] == {"painted": 0, "undoDepth": 0}


def test_browser_inpaints_full_size_photo_by_regions_like_the_saved_model(
    server, tmp_path, tmp_path_factory
):
    height, width = 400, 800  # larger than the 256 x 256 model, not square
    picture = photo(height, width)
    profile = _fake_profile(3000)  # an RGB ICC profile, for the download
    Image.fromarray(picture).save(tmp_path / "photo.png", icc_profile=profile)
    shot = tmp_path / "web-demo.png"
    _page_test(
        "tests/browser_test.mjs", "--url", server, "--image", tmp_path / "photo.png",
        "--out", tmp_path / "run.json", "--screenshot", shot, timeout=400,
    )  # fmt: skip
    page = json.loads((tmp_path / "run.json").read_text())
    assert page["problems"] == []
    assert page["backend"] == "wasm" and page["run"]["backend"] == "wasm"
    assert page["backendInfo"]["simd"] is True and page["crossOriginIsolated"] is True
    assert page["photoSize"] == {"width": width, "height": height}
    size = page["size"]
    assert size == 256

    # The page holds exactly the uploaded photo, at its own size.
    np.testing.assert_array_equal(_decode(page["photo"], (height, width, 4))[..., :3], picture)

    # The mask is the painted strokes: brush-wide around the mouse paths, nothing elsewhere
    # (the undone stroke and tap are gone). Mouse positions are whole CSS pixels, so the
    # edge may move by half a CSS pixel (scale / 2 photo pixels) besides antialiasing.
    mask = _decode(page["maskPainted"], (height, width))
    distance = np.minimum(*(_distance_to_polyline(s, height, width) for s in page["strokes"]))
    radius, tolerance = page["brushPixels"] / 2, 1.0 + page["scale"]
    assert mask[distance <= radius - tolerance].all()
    assert not mask[distance > radius + tolerance].any()
    hole = mask > 0

    # Two hole groups (the strokes are farther apart than two margins). Each region is the
    # group's box plus the margin, enlarged to a square of `tile` photo pixels per
    # attention cell: the large stroke's is taller than the photo (mirrored past its
    # bottom edge), both are shrunk to the model's size.
    groups = page["run"]["regions"]
    assert len(groups) == 2
    labels, count = ndimage.label(mask, structure=np.ones((3, 3)))
    boxes = [
        {"x0": c.start, "y0": r.start, "x1": c.stop, "y1": r.stop}
        for r, c in ndimage.find_objects(labels)
    ]
    corners = ("x0", "y0", "x1", "y1")
    page_boxes = sorted(tuple(group["box"][k] for k in corners) for group in groups)
    assert count == 2 and page_boxes == sorted(tuple(box[k] for k in corners) for box in boxes)
    first, second = (g["box"] for g in groups)
    assert not _near(first, second, MARGIN)  # else they would be one group
    for group in groups:
        assert {"window": group["window"], "region": group["region"]} == _plan(
            group["box"], width, height, size
        )
    large, small = sorted(groups, key=lambda group: -group["region"]["side"])
    assert large["region"]["side"] > height and large["region"]["y"] == 0
    assert small["region"]["tile"] > 4 and small["region"]["side"] <= height

    # Each model input is the photo's region (and mask) shrunk as documented.
    images, masks, outputs = [], [], []
    for group in groups:
        region = group["region"]
        rows = _reflect(height, region["y"] + region["side"])[region["y"] :]
        cols = _reflect(width, region["x"] + region["side"])[region["x"] :]
        expected = _resize(picture[rows][:, cols], size, size)
        expected_mask = _resize(mask[rows][:, cols, None], size, size)[..., 0] > 0
        image = _decode(group["image"], (size, size, 3))
        group_mask = _decode(group["mask"], (size, size))
        assert np.abs(image - expected).max() <= 1
        np.testing.assert_array_equal(group_mask, expected_mask)
        images.append(image)
        masks.append(group_mask)
        outputs.append(_decode(group["output"], (size, size, 3)))
    images, masks, outputs = np.stack(images), np.stack(masks)[..., None], np.stack(outputs)

    # Each region's output: the SavedModel's serving_default for the same input.
    export = thin_export(tmp_path_factory.getbasetemp())
    reference = saved_model_output(export, images, masks)
    model_hole = np.broadcast_to(masks > 0, images.shape)
    np.testing.assert_array_equal(outputs[~model_hole], images[~model_hole])
    for index in range(len(groups)):
        assert reference[index][model_hole[index]].astype(float).std() > 10  # not trivial
    difference = np.abs(outputs.astype(int) - reference.astype(int))[model_hole]
    share = (difference <= 1).mean()
    assert share >= 0.999, f"only {share:.5f} of hole values within 1/255 of the SavedModel"

    # The full-size result (canvas and download): the photo outside the painted pixels,
    # each region's output enlarged back inside its group's painted pixels.
    canvas = _decode(page["result"], (height, width, 4))
    assert (canvas[..., 3] == 255).all()
    result_rgb = canvas[..., :3]
    with Image.open(io.BytesIO(base64.b64decode(page["downloadPng"]))) as download:
        assert download.format == "PNG" and download.size == (width, height)
        np.testing.assert_array_equal(np.asarray(download.convert("RGB")), result_rgb)
        assert download.info["icc_profile"] == profile  # the photo's (photo_file.js)
    assert page["downloadName"] == "photo-inpainted.png"
    np.testing.assert_array_equal(result_rgb[~hole], picture[~hole])
    assert (result_rgb != picture).any(axis=-1)[hole].mean() > 0.9
    for group, output in zip(groups, outputs, strict=True):
        box, region = group["box"], group["region"]
        back = _resize(output, region["side"], region["side"])
        rows, cols = slice(box["y0"], box["y1"]), slice(box["x0"], box["x1"])
        local = back[box["y0"] - region["y"] : box["y1"] - region["y"]][
            :, box["x0"] - region["x"] : box["x1"] - region["x"]
        ]
        inside = hole[rows, cols]
        error = np.abs(result_rgb[rows, cols][inside] - np.clip(np.rint(local), 0, 255)[inside])
        assert error.max() <= 1
    print(
        f"\nbrowser (wasm) vs SavedModel: max |diff| {difference.max()}/255; {width}x{height} "
        f"photo, regions {[g['region'] for g in groups]} in {[g['ms'] for g in groups]} ms"
    )

    # The screenshot for the README is refreshed from a passing run only when asked
    # (PENET_TF_UPDATE_SCREENSHOT=1), as a small palette PNG: a test run leaves the tree as is.
    with Image.open(shot) as screenshot:
        assert screenshot.size[0] >= 700 and screenshot.size[1] >= 400
        small_png = screenshot.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    if os.environ.get("PENET_TF_UPDATE_SCREENSHOT") != "1":
        return
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    small_png.save(SCREENSHOT + ".tmp.png", optimize=True)
    os.replace(SCREENSHOT + ".tmp.png", SCREENSHOT)


_PLAN = """
import { planRegions, modelInput } from './crop.js';
const cases = JSON.parse(process.argv[1]);
const out = cases.map(({ width, height, size, boxes }) => {
  const mask = new Uint8Array(width * height);
  for (const [x0, y0, x1, y1] of boxes) {
    for (let y = y0; y < y1; y += 1) mask.fill(1, y * width + x0, y * width + x1);
  }
  const data = new Uint8ClampedArray(width * height * 4).map((_, i) => (i * 7) % 251);
  return planRegions(mask, width, height, size).map((group) => {
    const input = modelInput({ data, width, height }, mask, group.region, size);
    return { ...group, image: Buffer.from(input.image).toString('base64'),
             mask: Buffer.from(input.mask).toString('base64') };
  });
});
console.log(JSON.stringify(out));
"""


def _run_plan(cases):
    result = subprocess.run(
        ["node", "--input-type=module", "-e", _PLAN, json.dumps(cases)],
        cwd=WEB, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_crop_plan_groups_holes_and_mirrors_regions_past_the_photo():
    """demos/web/crop.js: grouping, borders, and photos smaller than the model."""
    photo = {"width": 1000, "height": 700, "size": 256}
    cases = [
        # two holes closer than two margins -> one group, their union box
        {**photo, "boxes": [[100, 100, 140, 130], [300, 150, 330, 190]]},
        # the same holes far apart -> two groups
        {**photo, "boxes": [[100, 100, 140, 130], [800, 500, 830, 540]]},
        # a 300 x 60 hole in the bottom-right corner -> window and region shifted inside
        {**photo, "boxes": [[700, 640, 1000, 700]]},
        # a photo smaller than the model -> the whole photo at its own resolution, mirrored
        {"width": 200, "height": 120, "size": 256, "boxes": [[50, 40, 90, 70]]},
    ]
    near, far, border, small = _run_plan(cases)
    assert len(near) == 1 and near[0]["box"] == {"x0": 100, "y0": 100, "x1": 330, "y1": 190}
    assert near[0]["region"] == {"x": 0, "y": 0, "side": 512, "tile": 8}
    assert len(far) == 2 and [g["region"]["side"] for g in far] == [320, 320]
    (corner,) = border
    assert corner["window"] == {"x": 444, "y": 384, "width": 556, "height": 316}
    assert corner["region"] == {"x": 424, "y": 124, "side": 576, "tile": 9}
    (whole,) = small
    assert whole["window"] == {"x": 0, "y": 0, "width": 200, "height": 120}
    assert whole["region"] == {"x": 0, "y": 0, "side": 256, "tile": 4}
    for case, plan in zip(cases, (near, far, border, small), strict=True):
        for group in plan:
            box, window, region = group["box"], group["window"], group["region"]
            expected = _plan(box, case["width"], case["height"], case["size"])
            assert {"window": window, "region": region} == expected
            assert window["x"] <= box["x0"] and box["x1"] <= window["x"] + window["width"]
            assert window["y"] <= box["y0"] and box["y1"] <= window["y"] + window["height"]
            assert region["x"] <= window["x"] and region["y"] <= window["y"]
            assert window["x"] + window["width"] <= region["x"] + region["side"]
            assert window["y"] + window["height"] <= region["y"] + region["side"]
            assert _decode(group["mask"], (256, 256)).any()
    # At tile 4 the model sees the photo's own pixels, mirrored past its edges.
    picture = (np.arange(200 * 120 * 4) * 7 % 251).reshape(120, 200, 4)[..., :3]
    mirrored = picture[_reflect(120, 256)][:, _reflect(200, 256)]
    np.testing.assert_array_equal(_decode(whole["image"], (256, 256, 3)), mirrored)
    hole = np.zeros((120, 200), bool)
    hole[40:70, 50:90] = True
    mask = _decode(whole["mask"], (256, 256))
    np.testing.assert_array_equal(mask, hole[_reflect(120, 256)][:, _reflect(200, 256)])


_PIECES = """
import { planRegions, modelInput, pasteBack, blendCuts } from './crop.js';
const cases = JSON.parse(process.argv[1]);
const out = cases.map(({ width, height, size, margin, boxes }) => {
  const mask = new Uint8Array(width * height);
  for (const [x0, y0, x1, y1] of boxes) {
    for (let y = y0; y < y1; y += 1) mask.fill(1, y * width + x0, y * width + x1);
  }
  const data = new Uint8ClampedArray(width * height * 4).map((_, i) => (i * 7) % 251);
  const composite = { data: Uint8ClampedArray.from(data), width, height };
  const blends = new Map();
  const plan = planRegions(mask, width, height, size, margin);
  plan.forEach((group, i) => {
    modelInput({ data, width, height }, mask, group.region, size);
    // A stand-in model: one flat colour per region, so every blend is a known mean.
    const colour = [(37 * i + 20) % 256, (91 * i + 50) % 256, (53 * i + 100) % 256];
    const output = new Uint8Array(size * size * 3).map((_, j) => colour[j % 3]);
    pasteBack(composite, mask, group, output, size, blends);
  });
  blendCuts(composite, mask, blends);
  return { plan, composite: Buffer.from(composite.data).toString('base64') };
});
console.log(JSON.stringify(out));
"""


def test_crop_js_cuts_a_thin_panoramas_stroke_into_blended_pieces():
    """A stroke along a thin panorama ran in one square region, mostly mirror (a 2000 x 150
    strip: 2048^2, the stroke 2.5 model pixels tall); crop.js now cuts it as
    penet_tf.high_resolution.region_pieces does and blends the pieces across each cut."""
    width, height, size = 2000, 150, 256
    # One group: two strokes 10 rows apart, left half and right half of the strip.
    boxes = [[20, 60, 1000, 80], [1000, 90, 1980, 100]]
    cases = [
        {"width": width, "height": height, "size": size, "margin": MARGIN, "boxes": boxes},
        # a margin long against the short side: the pieces would cost more, kept whole
        {"width": width, "height": height, "size": size, "margin": 1000, "boxes": boxes},
        # a portrait strip: cut along its rows
        {"width": 150, "height": 2000, "size": size, "margin": MARGIN,
         "boxes": [[60, 20, 80, 1980]]},
    ]  # fmt: skip
    result = subprocess.run(
        ["node", "--input-type=module", "-e", _PIECES, json.dumps(cases)],
        cwd=WEB, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    cut_run, whole_run, portrait_run = json.loads(result.stdout)

    # The whole group's region: 2048 photo pixels a side over a 150-pixel strip.
    group = {"x0": 20, "y0": 60, "x1": 1980, "y1": 100}
    assert _plan(group, width, height, size)["region"]["side"] == 2048
    (whole,) = whole_run["plan"]
    assert whole["cut"] is None and whole["box"] == group

    # Cut: 16 equal intervals (a window of 256 = 64 cells of 4 pixels, the 150-pixel side
    # rounded up, less two margins, at least half of it: 128 pixels), each piece shrunk to
    # its painted rows, its square region 384 a side; blended over 61 pixels each side of
    # a cut (half the margin, at most half the shortest piece).
    pieces = cut_run["plan"]
    edges = [20 + 1960 * i // 16 for i in range(17)]
    assert [p["index"] for p in sorted(pieces, key=lambda p: p["box"]["x0"])] == list(range(16))
    hole = np.zeros((height, width), bool)
    for x0, y0, x1, y1 in boxes:
        hole[y0:y1, x0:x1] = True
    for piece in pieces:
        cut, index = piece["cut"], piece["index"]
        assert cut == {"box": group, "axis": "x", "edges": edges, "overlap": 61}
        first, end = edges[index], edges[index + 1]
        rows = np.flatnonzero(hole[:, first:end].any(axis=1))
        assert piece["box"] == {"x0": first, "y0": int(rows[0]), "x1": end, "y1": int(rows[-1]) + 1}
        plan = _plan(piece["box"], width, height, size)
        assert {"window": piece["window"], "region": piece["region"]} == plan
        assert piece["region"]["side"] == 384
    assert len(pieces) * 384**2 < 2048**2

    # The result: unpainted pixels as they were; painted ones the piece's colour, or
    # within 61 pixels of a cut the weighted mean of the two pieces' colours, the left
    # piece's weight falling linearly from 1 to 0 across the zone.
    data = (np.arange(height * width * 4) * 7 % 251).reshape(height, width, 4)
    composite = _decode(cut_run["composite"], (height, width, 4)).astype(np.float64)
    np.testing.assert_array_equal(composite[~hole], data[~hole])
    order = sorted(range(len(pieces)), key=lambda i: pieces[i]["box"]["x0"])
    colours = np.array([[(37 * i + 20) % 256, (91 * i + 50) % 256, (53 * i + 100) % 256]
                        for i in order], np.float64)  # fmt: skip
    expected = np.zeros((width, 3))
    for column in range(20, 1980):
        piece = int(np.searchsorted(edges, column, side="right")) - 1
        expected[column] = colours[piece]
        for k, edge in enumerate(edges[1:-1], start=1):
            if edge - 61 <= column < edge + 61:
                right = np.clip((column + 0.5 - (edge - 61)) / 122, 0, 1)
                expected[column] = (1 - right) * colours[k - 1] + right * colours[k]
    ys, xs = np.nonzero(hole)
    difference = np.abs(composite[ys, xs, :3] - np.floor(expected[xs] + 0.5))
    assert difference.max() <= 1 and (difference == 0).mean() > 0.99
    near_cut = np.abs(xs - edges[8]) < 30  # blended: neither piece's own colour
    assert (composite[ys[near_cut], xs[near_cut], :3] != colours[7]).any(axis=1).all()
    assert (composite[ys[near_cut], xs[near_cut], :3] != colours[8]).any(axis=1).all()

    assert {p["cut"]["axis"] for p in portrait_run["plan"]} == {"y"}
    assert len(portrait_run["plan"]) == 16


_PHOTO_FILE = """
import { readFileSync, writeFileSync } from 'node:fs';
import { colourProfile, photoSize, withColourProfile } from './photo_file.js';
const [files, png, out] = JSON.parse(process.argv[1]);
const found = [];
for (const file of files) {
  const bytes = new Uint8Array(readFileSync(file));
  const profile = await colourProfile(bytes);
  const text = profile && Buffer.from(profile).toString('base64');
  found.push({ profile: text, size: photoSize(bytes) });
}
const profile = await colourProfile(new Uint8Array(readFileSync(files[0])));
const download = await withColourProfile(new Blob([readFileSync(png)]), profile);
writeFileSync(out, new Uint8Array(await download.arrayBuffer()));
console.log(JSON.stringify(found));
"""


def _jpeg_segments(data):
    """A JPEG's bytes cut into [SOI, segment, ..., the rest from the first scan]."""
    parts, at = [data[:2]], 2
    while data[at + 1] != 0xDA:
        length = struct.unpack(">H", data[at + 2 : at + 4])[0]
        parts.append(data[at : at + 2 + length])
        at += 2 + length
    return [*parts, data[at:]]


def _exif_byte_order_swapped(jpeg):
    """``jpeg`` with its EXIF IFD0 (short and ASCII entries) in the other byte order."""
    at = jpeg.index(b"Exif\0\0") + 6
    tiff = bytearray(jpeg[at:])
    old, new = ("<", ">") if tiff[:2] == b"II" else (">", "<")
    tiff[:2] = b"MM" if new == ">" else b"II"
    ifd = struct.unpack(old + "I", tiff[4:8])[0]
    tiff[2:8] = struct.pack(new + "HI", 42, ifd)
    count = struct.unpack(old + "H", tiff[ifd : ifd + 2])[0]
    tiff[ifd : ifd + 2] = struct.pack(new + "H", count)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        tag, kind, number = struct.unpack(old + "HHI", tiff[entry : entry + 8])
        value = bytes(tiff[entry + 8 : entry + 12])
        if kind == 3:  # SHORT, left in the 4 bytes
            value = struct.pack(new + "H", struct.unpack(old + "H", value[:2])[0]) + b"\0\0"
        elif number > 4:  # an offset
            value = struct.pack(new + "I", struct.unpack(old + "I", value)[0])
        tiff[entry : entry + 12] = struct.pack(new + "HHI", tag, kind, number) + value
    end = ifd + 2 + 12 * count  # the next IFD's offset
    tiff[end : end + 4] = struct.pack(new + "I", struct.unpack(old + "I", tiff[end : end + 4])[0])
    return jpeg[:at] + bytes(tiff)


def test_photo_files_give_their_size_and_colour_profile_and_the_download_keeps_it(tmp_path):
    """The page saved its result without the photo's ICC profile: a Display P3 or Adobe
    RGB photo's stored values were then shown as sRGB, every pixel's colour moved (the
    CLIs write the profile: penet_tf.image_io.colour_profile / with_colour_profile).
    demos/web/photo_file.js reads it as Pillow does from a JPEG (APP2 segments: here one
    over 64 KB, so three of them; none when one is missing or doubled), a PNG (iCCP), a
    WebP (ICCP) or an AVIF (colr), writes it into the download PNG, and reads each
    format's size from its header (to refuse a photo over the limit before decoding)."""
    from PIL import ImageCms

    picture = photo(40, 60)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    large, grey = _fake_profile(150_000), _fake_profile(600, b"GRAY")
    cases = [
        ("p.jpg", large, {"quality": 95}),
        ("progressive.jpg", srgb, {"progressive": True}),
        ("p.png", srgb, {}),
        ("p.webp", srgb, {"lossless": True}),
        ("lossy.webp", None, {"quality": 80}),
        ("p.avif", srgb, {}),
        ("p.gif", None, {}),
        ("p.bmp", None, {}),
        ("grey.png", grey, {}),
        ("none.jpg", None, {}),
    ]
    files = []
    for name, profile, options in cases:
        path = tmp_path / name
        extra = {"icc_profile": profile} if profile else {}
        Image.fromarray(picture).save(path, **extra, **options)
        with Image.open(path) as image:  # what Pillow (and so the CLIs) reads
            assert image.info.get("icc_profile") == profile, name
        files.append(str(path))
    # The large profile's JPEG with a segment left out, with one doubled (Pillow: no
    # profile), and with junk bytes before a segment (Pillow: the profile).
    parts = _jpeg_segments((tmp_path / "p.jpg").read_bytes())
    icc = [i for i, part in enumerate(parts) if part[1] == 0xE2 and b"ICC_PROFILE" in part]
    assert len(icc) == 3
    variants = {
        "missing.jpg": [part for i, part in enumerate(parts) if i != icc[1]],
        "doubled.jpg": parts[: icc[1] + 1] + parts[icc[1] :],
        "junk.jpg": parts[: icc[1]] + [b"\x00junk"] + parts[icc[1] :],
    }
    for name, variant in variants.items():
        (tmp_path / name).write_bytes(b"".join(variant))
        with Image.open(tmp_path / name) as image:
            cases.append((name, image.info.get("icc_profile"), {}))
        files.append(str(tmp_path / name))
    assert [profile for name, profile, _ in cases[-3:]] == [None, None, large]
    # An OS/2 BMP (a 12-byte header, 16-bit sizes: read as 32 bits it was "30924570.6 MP"),
    # an AVIF whose major brand is 'mif1' ('avif' among its compatible brands), a WebP
    # followed by padding.
    rows = picture[::-1, :, ::-1].tobytes()  # bottom-up BGR rows of 180 bytes (no padding)
    core = struct.pack("<IHHHH", 12, 60, 40, 1, 24)
    (tmp_path / "os2.bmp").write_bytes(
        b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26) + core + rows
    )
    avif = bytearray((tmp_path / "p.avif").read_bytes())
    assert avif[8:12] == b"avif" and b"mif1" in avif[16 : struct.unpack(">I", avif[:4])[0]]
    avif[8:12] = b"mif1"
    (tmp_path / "mif1.avif").write_bytes(bytes(avif))
    (tmp_path / "padded.webp").write_bytes((tmp_path / "p.webp").read_bytes() + bytes(1 << 20))
    for name, profile in (("os2.bmp", None), ("mif1.avif", srgb), ("padded.webp", srgb)):
        with Image.open(tmp_path / name) as image:
            assert image.size == (60, 40)
        cases.append((name, profile, {}))
        files.append(str(tmp_path / name))
    # An iCCP that inflates past Pillow's 1 MiB (a 1-MB PNG's inflated to 1 GiB, and the
    # download could not be opened by Pillow), one whose CRC is wrong and one with a byte
    # after its zlib stream (read by Pillow; Chromium's DecompressionStream throws there);
    # a WebP whose VP8X header says it has no profile (Chromium ignores its ICCP); a GIF
    # whose screen says 1 x 1 and whose first frame is 60 x 40 (decoded 60 x 40).
    plain = tmp_path / "plain.png"
    Image.fromarray(picture).save(plain)
    plain = plain.read_bytes()

    def with_iccp(data, crc=None):
        body = b"iCCP" + b"ICC profile\0\0" + data
        crc = zlib.crc32(body) if crc is None else crc
        chunk = struct.pack(">I", len(body) - 4) + body + struct.pack(">I", crc)
        return plain[:33] + chunk + plain[33:]

    made = {
        "inflates.png": (with_iccp(zlib.compress(_fake_profile((1 << 20) + 1))), None),
        "bad-crc.png": (with_iccp(zlib.compress(srgb), crc=0), None),
        "trailing.png": (with_iccp(zlib.compress(srgb) + b"\0"), srgb),
    }
    webp = bytearray((tmp_path / "p.webp").read_bytes())
    assert webp[12:16] == b"VP8X" and webp[20] & 0x20
    webp[20] &= ~0x20
    gif = bytearray((tmp_path / "p.gif").read_bytes())
    gif[6:10] = struct.pack("<HH", 1, 1)
    made |= {"no-flag.webp": (bytes(webp), None), "screen.gif": (bytes(gif), None)}
    # EXIF orientation 6: shown (and sized, for the limits' message) 40 wide, 60 high; its
    # TIFF header as Pillow writes it and with the other byte order
    exif = Image.Exif()
    exif[0x0112], exif[0x010F] = 6, "camera"
    data = io.BytesIO()
    Image.fromarray(picture).save(data, "JPEG", exif=exif.tobytes())
    made["turned-pillow.jpg"] = (data := data.getvalue(), None)
    made["turned-swapped.jpg"] = (_exif_byte_order_swapped(data), None)
    for name in ("turned-pillow.jpg", "turned-swapped.jpg"):
        with Image.open(io.BytesIO(made[name][0])) as image:
            assert image.getexif()[0x0112] == 6 and image.size == (60, 40)
    for name, (data, profile) in made.items():
        (tmp_path / name).write_bytes(data)
        cases.append((name, profile, {}))
        files.append(str(tmp_path / name))
    # An encoder's PNG with a colour chunk of its own: replaced, not doubled.
    Image.fromarray(picture).save(tmp_path / "result.png", icc_profile=srgb)
    out = tmp_path / "download.png"
    result = subprocess.run(
        ["node", "--input-type=module", "-e", _PHOTO_FILE,
         json.dumps([files, str(tmp_path / "result.png"), str(out)])],
        cwd=WEB, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    found = json.loads(result.stdout)
    for (name, profile, _), read in zip(cases, found, strict=True):
        expected = profile if profile and profile[16:20] == b"RGB " else None
        assert (read["profile"] and base64.b64decode(read["profile"])) == expected, name
        turned = name.startswith("turned")
        assert read["size"] == (
            {"width": 40, "height": 60} if turned else {"width": 60, "height": 40}
        ), name
    with Image.open(out) as download:
        download.load()
        assert download.info["icc_profile"] == large
        np.testing.assert_array_equal(np.asarray(download.convert("RGB")), picture)
    chunks = out.read_bytes()
    assert chunks.count(b"iCCP") == 1 and chunks.index(b"iCCP") < chunks.index(b"IDAT")


_SLICES = """
import * as tf from '@tensorflow/tfjs';
import '@tensorflow/tfjs-backend-wasm';
import { installFastSlices } from './wasm_kernels.js';
await tf.setBackend('wasm');
const cases = [
  ['slice', [66, 67, 66, 67], [1, 2, 1, 2], [64, 64, 64, 64]],
  ['slice', [1, 4422, 4423], [0, 0, 0], [1, 4355, 4423]],
  ['slice', [2, 3, 4, 5, 6], [1, 0, 2, 1, 3], [1, 3, 2, 4, 2]],
  ['slice', [7], [3], [0]],
  ['strided', [1, 65, 67, 4, 8], [0, 1, 2, 1, 0], [1, 65, 66, 2, 8], [1, 1, 1, 1, 1], 8],
  ['strided', [9, 11, 16], [1, 2, 0], [9, 10, 16], [1, 1, 1], 0],
  ['strided', [8, 8, 3], [1, 0, 0], [8, 8, 3], [2, 2, 1], 0],
  ['strided', [5, 6], [0, 0], [5, 6], [1, 1], 0],
];
const run = () => cases.map(([kind, shape, begin, a, b, shrink]) => {
  const y = tf.tidy(() => {
    const x = tf.range(0, shape.reduce((p, q) => p * q), 1, 'float32').reshape(shape);
    return kind === 'slice' ? tf.slice(x, begin, a)
      : tf.stridedSlice(x, begin, a, b, 0, 0, 0, 0, shrink);
  });
  const result = { shape: y.shape, values: y.dataSync() };
  y.dispose();
  return result;
});
const before = run();
const installed = installFastSlices(tf);
const after = run();
const equal = (r, q) => JSON.stringify(r.shape) === JSON.stringify(q.shape)
  && r.values.length === q.values.length && r.values.every((v, j) => v === q.values[j]);
const same = before.every((r, i) => equal(r, after[i]));
console.log(JSON.stringify({ installed, same, shapes: after.map((r) => r.shape) }));
"""


def test_fast_wasm_slices_equal_the_backends_own():
    """demos/web/wasm_kernels.js: the same values as TF.js's Slice/StridedSlice kernels."""
    result = subprocess.run(
        ["node", "--input-type=module", "-e", _SLICES],
        cwd=WEB, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["installed"] is True and report["same"] is True
    assert report["shapes"][0] == [64, 64, 64, 64] and report["shapes"][4] == [1, 64, 64, 8]


def test_webgl_is_refused_for_a_model_it_would_compute_wrongly(server, tmp_path, tmp_path_factory):
    """``?backend=webgl`` on the 256 model: the page says why and runs on WebAssembly.

    TF.js's WebGL shaders index some tensors through float32 arithmetic, exact up to 2^24
    elements; the 256 model's finest attention has 19.6 M (4422 x 4423). Compared node by
    node with wasm in Chromium's WebGL (SwiftShader, the same shaders as on a GPU), values
    past index 2^24 came out wrong from the first such reshape on (0.94 of the output's
    hole values within 1/255), while a 192 model (6.5 M) matched everywhere. The
    conversion records the largest tensor (``userDefinedMetadata.penet_tf``); the page
    reads it before choosing a backend.
    """
    model = json.loads(
        (converted(tmp_path_factory.getbasetemp(), "tfjs") / "model.json").read_text()
    )
    largest = model["userDefinedMetadata"]["penet_tf"]["largest_tensor_elements"]
    assert largest == 4422 * 4423 > 2**24
    image, mask = photo()[None], hole_mask()[None]
    binary = (mask[0, ..., 0] > 0).astype(np.uint8)
    (tmp_path / "input.bin").write_bytes(image.tobytes() + binary.tobytes())
    report = _page_test(
        "tests/run_model_page.mjs", "--url", server, "--backend", "webgl",
        "--input", tmp_path / "input.bin", "--output", tmp_path / "output.bin", timeout=400,
    )  # fmt: skip
    assert report["backend"] == "wasm"
    assert "WebGL skipped" in report["note"] and "19.6 M" in report["note"]
    assert report["note"] in report["status"]
    # It inpainted (on wasm, whose numbers the other tests compare with the SavedModel).
    output = np.frombuffer((tmp_path / "output.bin").read_bytes(), np.uint8).reshape(image.shape)
    hole = np.broadcast_to(mask > 0, image.shape)
    np.testing.assert_array_equal(output[~hole], image[~hole])
    assert (output != image)[hole].mean() > 0.9


def _node_module(script, cases, timeout=120):
    """What an ES-module ``script`` run by node in demos/web prints for ``cases`` (given
    as its JSON argument), read as JSON."""
    result = subprocess.run(
        ["node", "--input-type=module", "-e", script, json.dumps(cases)],
        cwd=WEB, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


_GROUPS = """
import { holeGroups } from './crop.js';
const cases = JSON.parse(process.argv[1]);
const out = cases.map(({ boxes, margin }) =>
  holeGroups(boxes.map(([y0, x0, y1, x1]) => ({ x0, y0, x1, y1 })), margin)
    .map(({ x0, y0, x1, y1 }) => [y0, x0, y1, x1]));
console.log(JSON.stringify(out));
"""


_BACKENDS = """
import { backendOrder } from './backends.js';
const cases = JSON.parse(process.argv[1]);
console.log(JSON.stringify(cases.map(([backend, largest, gpu]) =>
  backendOrder(backend, largest ?? undefined, gpu))));
"""


def test_webgl_is_left_out_for_a_model_of_unknown_size():
    """A conversion without ``largest_tensor_elements`` (penet_tf's before 2026-12-02 17:00 UTC)
    counted as 0 elements, so on a GPU the page ran the 256 model on WebGL, which gets
    tensors past 2^24 elements wrong."""
    cases = [
        ["auto", 4422 * 4423, True],
        ["auto", None, True],
        ["webgl", None, False],
        ["auto", 6_500_000, True],
        ["auto", None, False],
        ["cpu", None, True],
    ]
    result = subprocess.run(
        ["node", "--input-type=module", "-e", _BACKENDS, json.dumps(cases)],
        cwd=WEB, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    big, unknown, asked, small, no_gpu, cpu = json.loads(result.stdout)
    assert big["order"] == unknown["order"] == ["wasm", "cpu"] == asked["order"]
    assert "19.6 M elements" in big["note"]
    assert "does not record its largest tensor" in unknown["note"] == asked["note"]
    assert small == {"order": ["webgl", "wasm", "cpu"], "note": ""}
    assert no_gpu == {"order": ["wasm", "cpu"], "note": ""}
    assert cpu == {"order": ["cpu", "wasm"], "note": ""}


def test_crop_js_groups_holes_as_the_python_strategy():
    """crop.js merged a near pair and started over (seconds for a few thousand specks);
    it now sweeps and joins as penet_tf.high_resolution.hole_groups, with its groups."""
    rng = np.random.default_rng(7)
    cases = []
    for _ in range(200):
        count, margin = int(rng.integers(1, 30)), int(rng.integers(0, 60))
        tops, lefts = rng.integers(0, 500, count), rng.integers(0, 700, count)
        sizes = rng.integers(1, 50, (count, 2))
        boxes = [
            [int(t), int(x), int(t + h), int(x + w)]
            for t, x, (h, w) in zip(tops, lefts, sizes, strict=True)
        ]
        cases.append({"boxes": boxes, "margin": margin})
    rows, cols = rng.integers(0, 3000, 2000), rng.integers(0, 4000, 2000)
    specks = [[int(y), int(x), int(y) + 1, int(x) + 1] for y, x in zip(rows, cols, strict=True)]
    cases.append({"boxes": specks, "margin": 16})
    for case, groups in zip(cases, _node_module(_GROUPS, cases), strict=True):
        expected = hole_groups([tuple(box) for box in case["boxes"]], case["margin"])
        assert [tuple(group) for group in groups] == expected
    assert 1000 < len(groups) < 2000  # the specks: many groups, some merged


_NEAR = """
import { componentsNear, holeGroups } from './crop.js';
const cases = JSON.parse(process.argv[1]);
console.log(JSON.stringify(cases.map(({ width, height, specks, margin }) => {
  const mask = new Uint8Array(width * height);
  for (const [y, x] of specks) mask[y * width + x] = 1;
  const near = componentsNear(mask, width, height, margin);
  const box = ({ x0, y0, x1, y1 }) => [y0, x0, y1, x1];
  return { near: near.map(box), groups: holeGroups(near, margin).map(box) };
})));
"""


def test_crop_js_merges_a_speckled_masks_pixels_first_as_the_python_strategy():
    """A dithered or speckled mask of tens of thousands of components took crop.js's sweep
    minutes (187,500 specks on 12 MP: 71 s, Python 1.3 s): like ``hole_boxes_near``, it
    now joins them by their grown pixels first, with the same boxes and groups."""
    rng = np.random.default_rng(11)
    cases = []
    for height, width, count, margin in [
        (300, 500, 4000, 3),
        (257, 411, 3000, 8),
        (90, 2000, 1500, 1),
    ]:
        specks = np.stack([rng.integers(0, height, count), rng.integers(0, width, count)], 1)
        cases.append(
            {"width": width, "height": height, "specks": specks.tolist(), "margin": margin}
        )
    for case, got in zip(cases, _node_module(_NEAR, cases), strict=True):
        hole = np.zeros((case["height"], case["width"]), bool)
        hole[tuple(np.array(case["specks"]).T)] = True
        specks = len(ndimage.find_objects(ndimage.label(hole, np.ones((3, 3)))[0]))
        assert specks > MANY_HOLES
        near = hole_boxes_near(hole, case["margin"])
        assert sorted(map(tuple, got["near"])) == sorted(near)
        assert len(near) < specks  # merged by their pixels
        assert [tuple(group) for group in got["groups"]] == hole_groups(near, case["margin"])


def test_an_installed_package_says_where_the_page_is(tmp_path):
    """From a wheel the default web root (beside the package) does not exist: the error
    named no way out."""
    from penet_tf import demo

    (tmp_path / "model.json").write_text("{}")
    with pytest.raises(FileNotFoundError, match="pass --web-root CHECKOUT/demos/web"):
        demo.check_layout(str(tmp_path), str(tmp_path / "site-packages" / "demos" / "web"))


def test_demo_serves_no_link_out_of_the_page_s_folder_and_outlives_bad_requests(tmp_path, capsys):
    """The server's own behaviour, with a page folder and a model of placeholder files: a
    link in the page's folder to a file outside it was served (only --model's were
    checked), "/%ed%a0%80" got no answer and a printed traceback, a browser leaving
    mid-download printed a ConnectionResetError traceback, and a bad --host was
    "[Errno 99] Cannot assign requested address" or "Name or service not known"."""
    import socket
    import threading

    from penet_tf import demo

    web, model = tmp_path / "web", tmp_path / "model"
    for bundle in (demo.TFJS_BUNDLE, demo.WASM_BUNDLE):
        (web / bundle).parent.mkdir(parents=True, exist_ok=True)
        (web / bundle).write_text("// placeholder")
    (web / "index.html").write_text("<html></html>")
    (web / "big.bin").write_bytes(bytes(32 << 20))
    model.mkdir()
    (model / "model.json").write_text('{"format": "graph-model"}')
    (tmp_path / "secret.txt").write_text("not the page's")
    (web / "node_modules" / "leak.txt").symlink_to(tmp_path / "secret.txt")
    (web / "node_modules" / "outside").symlink_to(tmp_path, target_is_directory=True)
    (web / "node_modules" / "inside.js").symlink_to(web / demo.TFJS_BUNDLE)  # (as .bin's)
    server = demo.make_server(model, port=0, web_root=web)
    assert server.request_queue_size >= 128  # (5: a page's burst of requests waited)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        assert _get(url + "node_modules/inside.js")[2] == b"// placeholder"
        for path in ("node_modules/leak.txt", "node_modules/outside/secret.txt", "%ed%a0%80"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                _get(url + path)
        for _ in range(3):  # a browser that goes away mid-download (RST, not FIN)
            with socket.create_connection(("127.0.0.1", server.server_port)) as client:
                client.sendall(b"GET /big.bin HTTP/1.1\r\nHost: x\r\n\r\n")
                client.recv(1024)
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        assert _get(url)[0] == 200  # and the server goes on
    finally:
        server.shutdown()
        server.server_close()
    assert "Traceback" not in capsys.readouterr().err
    # A page whose TF.js bundle links out of its folder (the server would 404 it).
    (web / demo.TFJS_BUNDLE).unlink()
    (web / demo.TFJS_BUNDLE).symlink_to(tmp_path / "secret.txt")
    with pytest.raises(FileNotFoundError, match="serves only files inside --web-root"):
        demo.check_layout(str(model), str(web))
    (web / demo.TFJS_BUNDLE).unlink()
    (web / demo.TFJS_BUNDLE).write_text("// placeholder")
    args = ["--model", str(model), "--web-root", str(web), "--port", "0", "--host"]
    for host, message in [
        ("192.0.2.55", "--host 192.0.2.55: not an address of this machine"),
        ("http://localhost", "--host http://localhost: not a host name or address"),
    ]:
        assert demo.main([*args, host]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.splitlines()) == 1, err
    server = demo.make_server(model, "[127.0.0.1]", port=0, web_root=web)  # (as URLs write)
    server.server_close()
    assert demo.main([*args, "[]"]) == 2  # (not "": every address)
    assert "--host []: not a host name or address" in capsys.readouterr().err
