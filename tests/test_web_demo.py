"""The in-browser demo (demos/web) in headless Chromium, against the SavedModel.

``python -m penet_tf.demo`` serves the page with a thin converted TF.js model;
``demos/web/tests/browser_test.mjs`` (playwright-core driving Debian's /usr/bin/chromium)
uploads a photo, paints strokes with the mouse, exercises Undo and Clear, clicks Inpaint
and hands back the page's inputs, the model output and the result canvas. The assertions
are here: the output changed only inside the painted region and equals the SavedModel's
``serving_default`` output for the same image and mask.

Tolerance: TF.js (wasm backend) and TensorFlow both compute in float32 but with
different kernels (summation order, fused ops), which moves the prediction by about
1e-6; a value within that distance of a rounding boundary then lands on the neighbouring
uint8 value. So hole values may differ by 1/255, on at most 0.1 % of them (as for TFLite
and ONNX); anything more is a real discrepancy. Known pixels must be bit-identical.
"""

import base64
import json
import os
import re
import subprocess
import sys
import urllib.error
import urllib.request

import numpy as np
import pytest
from conversion_helpers import converted, photo, saved_model_output, thin_export
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


def _distance_to_polyline(points, size):
    """Distance from every pixel centre of a size x size grid to the polyline."""
    y, x = np.mgrid[:size, :size] + 0.5
    best = np.full((size, size), np.inf)
    for (x0, y0), (x1, y1) in zip(points[:-1], points[1:], strict=True):
        dx, dy = x1 - x0, y1 - y0
        t = np.clip(((x - x0) * dx + (y - y0) * dy) / max(dx * dx + dy * dy, 1e-9), 0, 1)
        best = np.minimum(best, np.hypot(x - (x0 + t * dx), y - (y0 + t * dy)))
    return best


def test_browser_inpaints_only_the_painted_region_like_the_saved_model(
    server, tmp_path, tmp_path_factory
):
    size = 256
    picture = photo(size, size)
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
    assert page["size"] == size and page["crossOriginIsolated"] is True
    assert page["download"].startswith("blob:")

    # The page used exactly the uploaded photo (no resampling at the model's size).
    photo_canvas = _decode(page["photo"], (size, size, 4))
    np.testing.assert_array_equal(photo_canvas[..., :3], picture)
    image = _decode(page["run"]["image"], (size, size, 3))
    np.testing.assert_array_equal(image, picture)

    # The mask is the painted stroke: brush-wide around the mouse path, nothing elsewhere.
    mask = _decode(page["run"]["mask"], (size, size))
    assert page["run"]["mask"] == page["maskAfterStroke1"]  # the undone stroke is gone
    distance = _distance_to_polyline(page["stroke"], size)
    radius = page["brush"] / 2
    assert mask[distance <= radius - 1.5].all()
    assert not mask[distance > radius + 1.5].any()
    hole = np.broadcast_to(mask[..., None] > 0, image.shape)

    # The result canvas shows the model's output, opaque.
    output = _decode(page["run"]["output"], (size, size, 3))
    canvas = _decode(page["result"], (size, size, 4))
    np.testing.assert_array_equal(canvas[..., :3], output)
    assert (canvas[..., 3] == 255).all()

    # Unchanged outside the painted region, changed inside it.
    np.testing.assert_array_equal(output[~hole], image[~hole])
    assert (output != image).any(axis=-1)[mask > 0].mean() > 0.9

    # The same numbers as the SavedModel's serving_default for the same input.
    export = thin_export(tmp_path_factory.getbasetemp())
    reference = saved_model_output(export, image[None], mask[None, ..., None])[0]
    assert reference[hole].astype(float).std() > 10  # not a trivial fill
    difference = np.abs(output.astype(int) - reference.astype(int))[hole]
    share = (difference <= 1).mean()
    assert share >= 0.999, f"only {share:.5f} of hole values within 1/255 of the SavedModel"
    print(
        f"\nbrowser (wasm) vs SavedModel: max |diff| {difference.max()}/255, "
        f"{page['run']['ms']} ms for {size}x{size}"
    )

    # Keep the screenshot for the README (only from a passing run), as a small palette PNG.
    with Image.open(shot) as screenshot:
        assert screenshot.size[0] >= 700 and screenshot.size[1] >= 400
        small = screenshot.convert("RGB").quantize(colors=128, method=Image.Quantize.MEDIANCUT)
    os.makedirs(os.path.dirname(SCREENSHOT), exist_ok=True)
    small.save(SCREENSHOT + ".tmp.png", optimize=True)
    os.replace(SCREENSHOT + ".tmp.png", SCREENSHOT)
