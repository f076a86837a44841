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
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from conversion_helpers import converted, hole_mask, photo, saved_model_output, thin_export
from PIL import Image

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


def test_demo_refuses_a_directory_without_model(tmp_path, capsys):
    from penet_tf import demo

    assert demo.main(["--model", str(tmp_path), "--port", "0"]) == 2
    assert "No model.json" in capsys.readouterr().err


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


def _reflect(size, padded):
    """Indices of a mirror extension (penet_tf.inference.reflect_indices)."""
    period = max(2 * (size - 1), 1)
    position = np.arange(padded) % period
    return np.where(position < size, position, period - position)


def test_browser_inpaints_full_size_photo_by_regions_like_the_saved_model(
    server, tmp_path, tmp_path_factory
):
    height, width = 400, 800  # larger than the 256 x 256 model, not square
    picture = photo(height, width)
    Image.fromarray(picture).save(tmp_path / "photo.png")
    shot = tmp_path / "web-demo.png"
    result = subprocess.run(
        ["node", "tests/browser_test.mjs", "--url", server, "--image", str(tmp_path / "photo.png"),
         "--out", str(tmp_path / "run.json"), "--screenshot", str(shot)],
        cwd=WEB, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
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

    # Two regions (the strokes are far apart), with disjoint crops covering every hole pixel:
    # the large stroke's crop is twice its size, clipped to the photo's height (not square:
    # resized and padded); the small one's is the model's size (no resizing).
    regions = page["run"]["regions"]
    assert len(regions) == 2
    covered = np.zeros((height, width), int)
    for region in regions:
        crop = region["crop"]
        assert crop["x"] >= 0 and crop["y"] >= 0
        assert crop["x"] + crop["width"] <= width and crop["y"] + crop["height"] <= height
        covered[crop["y"] : crop["y"] + crop["height"], crop["x"] : crop["x"] + crop["width"]] += 1
    assert covered.max() == 1 and covered[hole].all()
    large, small = sorted(regions, key=lambda region: -region["crop"]["width"])
    box = large["box"]
    assert large["crop"]["width"] == 2 * max(box["x1"] - box["x0"], box["y1"] - box["y0"])
    assert large["crop"]["height"] == height
    scaled_height = int(height * size / large["crop"]["width"] + 0.5)  # JavaScript's rounding
    assert large["scaled"] == {"width": size, "height": scaled_height} and scaled_height < size
    assert small["crop"]["width"] == small["crop"]["height"] == size
    assert small["scaled"] == {"width": size, "height": size}

    # Each model input is the photo's crop (and mask) resized as documented, then padded
    # by reflection to size x size.
    images, masks, outputs = [], [], []
    for region in regions:
        crop, scaled = region["crop"], region["scaled"]
        rows = slice(crop["y"], crop["y"] + crop["height"])
        cols = slice(crop["x"], crop["x"] + crop["width"])
        pad_rows, pad_cols = _reflect(scaled["height"], size), _reflect(scaled["width"], size)
        expected = _resize(picture[rows, cols], scaled["height"], scaled["width"])
        expected_mask = _resize(mask[rows, cols, None], scaled["height"], scaled["width"]) > 0
        image = _decode(region["image"], (size, size, 3))
        region_mask = _decode(region["mask"], (size, size))
        assert np.abs(image - expected[pad_rows][:, pad_cols]).max() <= 1
        np.testing.assert_array_equal(region_mask, expected_mask[pad_rows][:, pad_cols, 0])
        if scaled == {"width": size, "height": size}:  # no resizing: the photo's pixels
            np.testing.assert_array_equal(image, picture[rows, cols])
        images.append(image)
        masks.append(region_mask)
        outputs.append(_decode(region["output"], (size, size, 3)))
    images, masks, outputs = np.stack(images), np.stack(masks)[..., None], np.stack(outputs)

    # Each crop's output: the SavedModel's serving_default for the same input.
    export = thin_export(tmp_path_factory.getbasetemp())
    reference = saved_model_output(export, images, masks)
    model_hole = np.broadcast_to(masks > 0, images.shape)
    np.testing.assert_array_equal(outputs[~model_hole], images[~model_hole])
    for index in range(len(regions)):
        assert reference[index][model_hole[index]].astype(float).std() > 10  # not trivial
    difference = np.abs(outputs.astype(int) - reference.astype(int))[model_hole]
    share = (difference <= 1).mean()
    assert share >= 0.999, f"only {share:.5f} of hole values within 1/255 of the SavedModel"

    # The full-size result (canvas and download): the photo outside the painted pixels,
    # each crop's output resized back inside them.
    canvas = _decode(page["result"], (height, width, 4))
    assert (canvas[..., 3] == 255).all()
    result_rgb = canvas[..., :3]
    with Image.open(io.BytesIO(base64.b64decode(page["downloadPng"]))) as download:
        assert download.format == "PNG" and download.size == (width, height)
        np.testing.assert_array_equal(np.asarray(download.convert("RGB")), result_rgb)
    assert page["downloadName"] == "photo-inpainted.png"
    np.testing.assert_array_equal(result_rgb[~hole], picture[~hole])
    assert (result_rgb != picture).any(axis=-1)[hole].mean() > 0.9
    for region, output in zip(regions, outputs, strict=True):
        crop, scaled = region["crop"], region["scaled"]
        rows = slice(crop["y"], crop["y"] + crop["height"])
        cols = slice(crop["x"], crop["x"] + crop["width"])
        back = _resize(output[: scaled["height"], : scaled["width"]], crop["height"], crop["width"])
        inside = hole[rows, cols]
        error = np.abs(result_rgb[rows, cols][inside] - np.clip(np.rint(back), 0, 255)[inside])
        assert error.max() <= 1
    print(
        f"\nbrowser (wasm) vs SavedModel: max |diff| {difference.max()}/255; {width}x{height} "
        f"photo, regions {[r['crop'] for r in regions]} in {[r['ms'] for r in regions]} ms"
    )

    # Keep the screenshot for the README (only from a passing run), as a small palette PNG.
    with Image.open(shot) as screenshot:
        assert screenshot.size[0] >= 700 and screenshot.size[1] >= 400
        small_png = screenshot.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
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
  const regions = planRegions(mask, width, height, size);
  const pixels = { data: new Uint8ClampedArray(width * height * 4).fill(200), width, height };
  return regions.map((region) => {
    const input = modelInput(pixels, mask, region.crop, size);
    return { ...region, scaled: input.scaled, holes: input.mask.reduce((a, b) => a + b, 0) };
  });
});
console.log(JSON.stringify(out));
"""


def _plan(cases):
    result = subprocess.run(
        ["node", "--input-type=module", "-e", _PLAN, json.dumps(cases)],
        cwd=WEB, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_crop_plan_merges_overlapping_regions_and_stays_inside_the_photo():
    """demos/web/crop.js: merging, borders, and photos smaller than the model."""
    photo = {"width": 1000, "height": 700, "size": 256}
    near, far, border, small = _plan(
        [
            # two holes whose crops (256 squares) overlap -> one region, their union box
            {**photo, "boxes": [[100, 100, 140, 130], [300, 150, 330, 190]]},
            # the same holes far apart -> two regions
            {**photo, "boxes": [[100, 100, 140, 130], [800, 500, 830, 540]]},
            # a 300 x 60 hole at the bottom-right corner -> a 600 x 600 crop shifted inside
            {**photo, "boxes": [[700, 640, 1000, 700]]},
            # a photo smaller than the model -> the whole photo, enlarged and padded
            {"width": 200, "height": 120, "size": 256, "boxes": [[50, 40, 90, 70]]},
        ]
    )
    assert len(near) == 1 and near[0]["box"] == {"x0": 100, "y0": 100, "x1": 330, "y1": 190}
    assert near[0]["crop"]["width"] == near[0]["crop"]["height"] == 2 * 230
    assert len(far) == 2 and [r["crop"]["width"] for r in far] == [256, 256]
    assert all(r["scaled"] == {"width": 256, "height": 256} for r in far)
    (corner,) = border
    assert corner["crop"] == {"x": 400, "y": 100, "width": 600, "height": 600}
    assert corner["scaled"] == {"width": 256, "height": 256}
    (whole,) = small
    assert whole["crop"] == {"x": 0, "y": 0, "width": 200, "height": 120}
    assert whole["scaled"] == {"width": 256, "height": 154}
    for plan in (near, far, border, small):
        for region in plan:
            crop, box = region["crop"], region["box"]
            assert crop["x"] <= box["x0"] and box["x1"] <= crop["x"] + crop["width"]
            assert crop["y"] <= box["y0"] and box["y1"] <= crop["y"] + crop["height"]
            assert region["holes"] > 0


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
    result = subprocess.run(
        ["node", "tests/run_model_page.mjs", "--url", server, "--backend", "webgl",
         "--input", str(tmp_path / "input.bin"), "--output", str(tmp_path / "output.bin")],
        cwd=WEB, capture_output=True, text=True, timeout=400,
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "wasm"
    assert "WebGL skipped" in report["note"] and "19.6 M" in report["note"]
    assert report["note"] in report["status"]
    # It inpainted (on wasm, whose numbers the other tests compare with the SavedModel).
    output = np.frombuffer((tmp_path / "output.bin").read_bytes(), np.uint8).reshape(image.shape)
    hole = np.broadcast_to(mask > 0, image.shape)
    np.testing.assert_array_equal(output[~hole], image[~hole])
    assert (output != image)[hole].mean() > 0.9
