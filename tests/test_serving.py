"""The gRPC client against a real export served by the TF Serving test double.

``tests/serving_double.py`` stands in for ``tensorflow_model_server`` (which cannot be
installed here): real gRPC on 127.0.0.1, TF Serving's PredictionService protocol and
error codes, over ``tf.saved_model.load`` of the export.
"""

import io
import os
import pathlib
import queue
import subprocess
import sys
import threading
import time
from concurrent import futures

import grpc
import numpy as np
import pytest
import tensorflow as tf
from conversion_helpers import MAX_PIXELS as THIN_MAX_PIXELS
from PIL import Image
from serving_double import ServingDouble, closed_port
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from penet_tf.serving import InpaintClient, ServingError, read_mask
from penet_tf.serving.client import main

MODEL = "thin"
MAX_PIXELS = THIN_MAX_PIXELS  # 300 x 300
INVALID = grpc.StatusCode.INVALID_ARGUMENT


@pytest.fixture(scope="module")
def served(thin_savedmodel):
    """The session's thin export (max_pixels 300 x 300), served by the test double."""
    base = thin_savedmodel.parent
    with ServingDouble(base, MODEL) as double:
        # The reference: the served SavedModel's own signatures, called directly.
        direct = tf.saved_model.load(str(thin_savedmodel)).signatures
        yield {"address": double.address, "direct": direct, "double": double, "base": str(base)}


@pytest.fixture()
def client(served):
    with InpaintClient(served["address"], MODEL, timeout=60) as client:
        yield client


def _case(height=48, width=40, seed=0, batch=None):
    rng = np.random.default_rng(seed)
    shape = (height, width) if batch is None else (batch, height, width)
    image = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    mask = np.zeros((*shape, 1), np.uint8)
    mask[..., height // 4 : height // 2, width // 3 : 2 * width // 3, :] = 255
    return image, mask


def _direct(served, image, mask):
    batch = image.ndim == 4
    result = served["direct"]["serving_default"](
        image=image if batch else image[None], mask=mask if batch else mask[None]
    )["inpainted"].numpy()
    return result if batch else result[0]


def _png(array):
    buffer = io.BytesIO()
    Image.fromarray(array.squeeze(-1) if array.shape[-1] == 1 else array).save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(array):
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def test_inpaint_equals_the_direct_signature_call(served, client):
    image, mask = _case(37, 61)
    result = client.inpaint(image, mask)
    np.testing.assert_array_equal(result, _direct(served, image, mask))
    known = mask[..., 0] == 0
    np.testing.assert_array_equal(result[known], image[known])
    # 0/1 and boolean [H, W] masks are the same request.
    np.testing.assert_array_equal(client.inpaint(image, (mask[..., 0] > 0)), result)


def test_batch_request(served, client):
    image, mask = _case(32, 48, seed=1, batch=3)
    np.testing.assert_array_equal(client.inpaint(image, mask), _direct(served, image, mask))


def test_inpaint_bytes_equals_the_direct_signature_call(served, client):
    images, masks = zip(*(_case(40 + 8 * i, 50, seed=i) for i in range(2)), strict=True)
    pngs = client.inpaint_bytes([_png(i) for i in images], [_png(m) for m in masks])
    expected = served["direct"]["inpaint_bytes"](
        image_bytes=[_png(i) for i in images], mask_bytes=[_png(m) for m in masks]
    )["inpainted_bytes"].numpy()
    assert pngs == list(expected)
    for png, image, mask in zip(pngs, images, masks, strict=True):
        np.testing.assert_array_equal(
            np.asarray(Image.open(io.BytesIO(png))), _direct(served, image, mask)
        )
    assert client.inpaint_bytes(_png(images[0]), _png(masks[0])) == pngs[0]


def test_predict_float_and_metadata(served, client):
    image, mask = _case(24, 24, seed=2)
    x, m = image.astype(np.float32) / 127.5 - 1, (mask > 0).astype(np.float32)
    output, inpainted = client.predict_float(x, m)
    direct = served["direct"]["predict_float"](image=x[None], mask=m[None])
    np.testing.assert_array_equal(output, direct["output"].numpy()[0])
    np.testing.assert_array_equal(inpainted, direct["inpainted"].numpy()[0])
    metadata = client.metadata()
    assert sorted(metadata) == ["inpaint_bytes", "predict_float", "serving_default"]
    assert metadata["serving_default"] == {
        "inputs": {"image": ("uint8", [-1, -1, -1, 3]), "mask": ("uint8", [-1, -1, -1, 1])},
        "outputs": {"inpainted": ("uint8", [-1, -1, -1, 3])},
    }


def test_50_concurrent_clients(served):
    cases = [_case(24 + 8 * (i % 4), 40 - 4 * i, seed=10 + i) for i in range(6)]
    expected = [_direct(served, image, mask) for image, mask in cases]

    def one_client(index):
        with InpaintClient(served["address"], MODEL, timeout=90) as client:
            for request in range(4):
                k = (index + request) % len(cases)
                np.testing.assert_array_equal(client.inpaint(*cases[k]), expected[k])
        return index

    before = served["double"].service.requests
    with futures.ThreadPoolExecutor(max_workers=50) as pool:
        done = [
            future.result(timeout=240) for future in [pool.submit(one_client, i) for i in range(50)]
        ]
    assert sorted(done) == list(range(50))
    assert served["double"].service.requests - before == 200


def _gif(height, width, screen=None, comments=0):
    """A GIF of ``height`` x ``width``; ``screen`` (W, H) overwrites its logical screen
    (a frame larger than the screen), ``comments`` one-byte comment blocks go before it."""
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    if screen is not None:
        data[6:10] = np.array(screen, "<u2").tobytes()
    start = 13 + (3 * 2 ** ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    return bytes(data[:start] + b"\x21\xfe\x01#\x00" * comments + data[start:])


def _image(h, w, channels=3, dtype=np.uint8, batch=1):
    return np.full((batch, h, w, channels), 100, dtype)


def _mask(h, w, batch=1):
    mask = np.zeros((batch, h, w, 1), np.uint8)
    mask[:, : h // 2] = 255
    return mask


_NOISE = np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)

BAD_REQUESTS = {
    "float image": (
        "serving_default",
        {"image": _image(32, 32, dtype=np.float32), "mask": _mask(32, 32)},
        "Expects arg 'image' to be uint8 but float is provided",
    ),
    "4 channels": (
        "serving_default",
        {"image": _image(32, 32, channels=4), "mask": _mask(32, 32)},
        "image must have 3 channels (RGB): [batch, H, W, 3]",
    ),
    "no batch axis": (  # TF Serving feeds it unchecked: the graph refuses it
        "serving_default",
        {"image": _image(32, 32)[0], "mask": _mask(32, 32)},
        "image must have rank 4: [batch, H, W, 3] (one image is a batch of 1)",
    ),
    "scalar bytes": (
        "inpaint_bytes",
        {"image_bytes": np.array(b"x", object), "mask_bytes": np.array([b"x"], object)},
        "image_bytes must be a list of encoded images: [batch]",
    ),
    "size mismatch": (
        "serving_default",
        {"image": _image(32, 32), "mask": _mask(32, 40)},
        "image and mask height/width differ",
    ),
    "batch mismatch": (
        "serving_default",
        {"image": _image(32, 32, batch=2), "mask": _mask(32, 32, batch=3)},
        "image and mask batch sizes differ",
    ),
    "empty batch": (
        "serving_default",
        {"image": _image(32, 32, batch=0), "mask": _mask(32, 32, batch=0)},
        "empty batch: send at least one image",
    ),
    "too large": (
        "serving_default",
        {"image": _image(301, 300), "mask": _mask(301, 300)},
        f"image is larger than the server limit of {MAX_PIXELS} pixels per image",
    ),
    "padded size over the budget": (  # 1 x 2000 runs as 64 x 2048 = 131072 > 90000
        "serving_default",
        {"image": _image(1, 2000), "mask": _mask(1, 2000)},
        f"image is larger than the server limit of {MAX_PIXELS} pixels per image",
    ),
    "NaN floats": (
        "predict_float",
        {
            "image": np.full((1, 16, 16, 3), np.nan, np.float32),
            "mask": np.zeros((1, 16, 16, 1), np.float32),
        },
        "image must hold finite floats in [-1, 1]",
    ),
    "0-255 floats": (
        "predict_float",
        {
            "image": _image(16, 16, dtype=np.float32),
            "mask": np.zeros((1, 16, 16, 1), np.float32),
        },
        "image must hold finite floats in [-1, 1]",
    ),
    "0-255 float mask": (
        "predict_float",
        {
            "image": np.zeros((1, 16, 16, 3), np.float32),
            "mask": _mask(16, 16).astype(np.float32),
        },
        "mask must hold finite floats in [0, 1]",
    ),
    "missing mask": (
        "serving_default",
        {"image": _image(32, 32)},
        "Missing but required: {mask}",
    ),
    "garbage bytes": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([b"\x00garbage"], object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])], object),
        },
        "image_bytes[0]: not an encoded image",
    ),
    "garbage mask bytes": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(16, 16)[0])], object),
            "mask_bytes": np.array([b"garbage"], object),
        },
        "mask_bytes[0]: not an encoded image",
    ),
    # TensorFlow's decoders said "Invalid PNG data, size 40" for either input.
    "truncated png": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(16, 16)[0])[:40]], object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])], object),
        },
        "image_bytes[0]: the encoded data cannot be decoded (a damaged or truncated file",
    ),
    "truncated mask png": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(16, 16)[0])], object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])[:-20]], object),
        },
        "mask_bytes[0]: the encoded data cannot be decoded (a damaged or truncated file",
    ),
    # a phone photo's mask drawn as a viewer shows it: "height/width differ" before
    "mask turned a quarter": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(16, 24)[0])], object),
            "mask_bytes": np.array([_png(_mask(24, 16)[0])], object),
        },
        "mask_bytes[0] is image_bytes[0] turned a quarter (height and width swapped): this "
        "server "
        "reads the pixels of a photo as stored, without its EXIF orientation",
    ),
    "half a jpeg": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_jpeg(_NOISE)[: len(_jpeg(_NOISE)) // 2]], object),
            "mask_bytes": np.array([_png(_mask(64, 64)[0])], object),
        },
        "image_bytes[0]: the encoded data cannot be decoded (a damaged or truncated file",
    ),
    # cut before its frame header: TensorFlow's "Invalid JPEG data, size 20", either input
    "jpeg mask cut before its frame header": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(64, 64)[0])], object),
            "mask_bytes": np.array([_jpeg(_NOISE)[:20]], object),
        },
        "mask_bytes[0]: a JPEG whose frame header cannot be read (a damaged or truncated file)",
    ),
    "too large png": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(400, 400)[0])], object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])], object),
        },
        f"image_bytes[0]: image is larger than the server limit of {MAX_PIXELS} pixels",
    ),
    "gif frame larger than its screen": (  # 8 x 8 screen, 400 x 400 frame (TF's canvas)
        "inpaint_bytes",
        {
            "image_bytes": np.array([_gif(400, 400, screen=(8, 8))], object),
            "mask_bytes": np.array([_png(_mask(8, 8)[0])], object),
        },
        f"image_bytes[0]: image is larger than the server limit of {MAX_PIXELS} pixels",
    ),
    "gif of too many blocks to walk": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_gif(16, 16, comments=3400)], object),  # 3 steps each
            "mask_bytes": np.array([_png(_mask(16, 16)[0])], object),
        },
        "image_bytes[0]: a GIF of more than 10000 runs of data sub-blocks is not decoded",
    ),
    "png without its header chunk": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([b"\x89PNG\r\n\x1a\n" + b"\xff" * 40], object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])], object),
        },
        "image_bytes[0]: not a valid PNG (its first chunk is not IHDR)",  # was: over the limit
    ),
    # the third photo of three is damaged: which one was not said ("image_bytes: ...")
    "truncated png third in its batch": (
        "inpaint_bytes",
        {
            "image_bytes": np.array(
                [_png(_image(16, 16)[0])] * 2 + [_png(_image(16, 16)[0])[:40]], object
            ),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])] * 3, object),
        },
        "image_bytes[2]: the encoded data cannot be decoded (a damaged or truncated file",
    ),
    "mask second in its batch over the limit": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(16, 16)[0])] * 2, object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0]), _png(_mask(400, 400)[0])], object),
        },
        f"mask_bytes[1]: image is larger than the server limit of {MAX_PIXELS} pixels",
    ),
    "bytes batch mismatch": (
        "inpaint_bytes",
        {
            "image_bytes": np.array([_png(_image(16, 16)[0])] * 2, object),
            "mask_bytes": np.array([_png(_mask(16, 16)[0])], object),
        },
        "image_bytes and mask_bytes batch sizes differ",
    ),
}


@pytest.mark.parametrize("name", BAD_REQUESTS)
def test_bad_request_is_invalid_argument_and_server_survives(served, client, name):
    signature, inputs, message = BAD_REQUESTS[name]
    with pytest.raises(ServingError) as caught:
        client.predict(inputs, signature)
    assert caught.value.code == INVALID
    assert message in caught.value.details
    assert str(caught.value).startswith("the server rejected the request: ")
    image, mask = _case(16, 24, seed=3)  # the next good request is answered
    np.testing.assert_array_equal(client.inpaint(image, mask), _direct(served, image, mask))


def _memory_kib(pid, field):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def test_an_animated_gif_and_one_with_comments_are_inpainted(client):
    """The GIF walk reads past every frame and past 100 comment blocks; the first frame
    is inpainted, its known pixels kept."""
    image, mask = _case(16, 24, seed=5)
    buffer = io.BytesIO()
    frames = [Image.fromarray(image), Image.fromarray(255 - image)]
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:])
    first_frame = np.asarray(Image.open(buffer).convert("RGB"))
    known = mask[..., 0] == 0
    for data, shown in ((buffer.getvalue(), first_frame), (_gif(16, 24, comments=100), 0)):
        result = np.asarray(Image.open(io.BytesIO(client.inpaint_bytes(data, _png(mask)))))
        np.testing.assert_array_equal(result[known], np.broadcast_to(shown, result.shape)[known])


def _lines(process):
    """A queue of ``process``'s stdout lines, read by a thread ("" at its end)."""
    lines = queue.Queue()

    def read():
        for line in process.stdout:
            lines.put(line)
        lines.put("")

    threading.Thread(target=read, daemon=True).start()
    return lines


def _line(lines, process, seconds=120):
    """The next line of ``lines``, or a failure after ``seconds`` (a double that is slow
    or stuck failed nothing: the suite waited on its ``readline`` for ever)."""
    try:
        return lines.get(timeout=seconds)
    except queue.Empty:
        process.kill()
        pytest.fail(f"the serving double printed nothing for {seconds} s")


def test_a_15_mb_bad_request_is_refused_cheaply(served):
    """1 x 5,000,000 uint8 (15 MB image + 5 MB mask): refused with memory bounded by about
    the request's size (was 21 s and 9.7 GB: cast, padded and run).

    The double runs in its own process, a fresh TensorFlow process without penet_tf (as
    tensorflow_model_server has none) that answers as the signatures do here; so its
    memory is the server's alone. It logs the
    signature's time and peak RSS growth (VmHWM, reset through /proc/self/clear_refs);
    the whole process's growth also counts gRPC's buffer, the parsed request and its
    tensors (three copies the protocol makes before any graph runs). Memory bounds, not
    timed ones (a timed bound fails on a busy machine: 79 ms against 50 ms once in CI; the
    times are printed): a cast, a pad or a run would raise the peak past them.
    """
    double = subprocess.Popen(
        [
            sys.executable,
            os.path.join(os.path.dirname(__file__), "serving_double.py"),
            served["base"],
            MODEL,
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    printed = _lines(double)
    try:
        started = _line(printed, double)
        assert started.startswith("penet_tf-imported False address "), started
        address = started.split()[-1]
        image = np.full((1, 1, 5_000_000, 3), 7, np.uint8)
        mask = np.zeros((1, 1, 5_000_000, 1), np.uint8)
        request_bytes = image.nbytes + mask.nbytes
        with InpaintClient(address, MODEL, timeout=120) as client:
            small, small_mask = _case(16, 16)
            # Warm-up (graph instantiated, buffers allocated), and the same answer.
            answer = client.inpaint(small, small_mask)
            np.testing.assert_array_equal(answer, _direct(served, small, small_mask))
            assert _line(printed, double).startswith("request serving_default")
            baseline = _memory_kib(double.pid, "VmRSS")
            with open(f"/proc/{double.pid}/clear_refs", "w") as clear:
                clear.write("5")  # reset the process's peak (VmHWM) to its current RSS
            start = time.perf_counter()
            with pytest.raises(ServingError) as caught:
                client.predict({"image": image, "mask": mask})
            round_trip = time.perf_counter() - start
        process_growth = (_memory_kib(double.pid, "VmHWM") - baseline) * 1024
        _, _, seconds, outcome, graph_growth = _line(printed, double).split()
    finally:
        double.stdin.close()
        double.wait(timeout=60)
    seconds, graph_growth = float(seconds), int(graph_growth)
    print(
        f"15 MB refusal: {seconds * 1000:.1f} ms and +{graph_growth / 2**20:.1f} MiB in the "
        f"graph; {round_trip * 1000:.0f} ms and +{process_growth / 2**20:.1f} MiB for the "
        f"server process, for a {request_bytes / 2**20:.1f} MiB request"
    )
    assert caught.value.code == INVALID
    assert f"server limit of {MAX_PIXELS} pixels" in caught.value.details
    assert outcome == "refused"
    assert graph_growth <= 2 * request_bytes
    assert process_growth <= 6 * request_bytes  # gRPC + parsing + tensors, then nothing


def test_unknown_model_signature_and_version(served):
    image, mask = _case(16, 16)
    with InpaintClient(served["address"], "nope", timeout=30) as client:
        with pytest.raises(ServingError, match="does not serve model 'nope'") as caught:
            client.inpaint(image, mask)
        assert caught.value.code == grpc.StatusCode.NOT_FOUND
    with InpaintClient(served["address"], MODEL, timeout=30, version=99) as client:
        with pytest.raises(ServingError, match=r"Specific\(thin, 99\)"):
            client.metadata()
    with InpaintClient(served["address"], MODEL, timeout=30, version=1) as client:
        with pytest.raises(ServingError, match='signature key "nope" not found') as caught:
            client.predict({"image": image[None]}, "nope")
        assert caught.value.code == grpc.StatusCode.FAILED_PRECONDITION
        assert client.inpaint(image, mask).shape == image.shape  # version 1 is served


def test_client_side_checks(served, client):
    image, mask = _case(16, 16)
    # No images: never sent (a TF Serving padding batches to allowed_batch_sizes aborts)
    requests = served["double"].service.requests
    for call, arguments in [
        (client.inpaint, (image[None][:0], mask[None][:0])),
        (client.inpaint_bytes, ([], [])),
        (client.predict_float, (np.zeros((0, 16, 16, 3)), np.zeros((0, 16, 16, 1)))),
    ]:
        with pytest.raises(ValueError, match="empty batch: send at least one image"):
            call(*arguments)
    assert served["double"].service.requests == requests
    # A soft float mask and an int16 -1 were sent as holes; paths and a memoryview were
    # "string argument without an encoding", "not iterable", or a list of byte values.
    soft = (mask[..., 0] / 255.0) * 0.9 + 0.05
    with pytest.raises(ValueError, match=r"soft \[0, 1\] float mask"):
        client.inpaint(image, soft)
    with pytest.raises(ValueError, match="values outside 0-255"):
        client.inpaint(image, np.full((16, 16), -1, np.int16))
    with pytest.raises(ValueError, match=r"soft \[0, 1\] float mask"):  # judged mask by mask
        client.inpaint(np.stack([image, image]), np.stack([soft, mask[..., 0] * 1.0]))
    png = _png(image)
    for wrong, message in [
        ("a.png", "image_bytes must be encoded image bytes, got str: read the file first"),
        (pathlib.Path("a.png"), "got PosixPath: read the file first"),
        ([png, "b.png"], r"image_bytes\[1\] must be encoded image bytes, got str"),
        (7, "image_bytes must be encoded image bytes or a list of them, got int"),
    ]:
        with pytest.raises(TypeError, match=message):
            client.inpaint_bytes(wrong, [_png(mask)] * (2 if isinstance(wrong, list) else 1))
    with pytest.raises(ValueError, match="2 images but 1 masks"):  # (not 1 mask per byte)
        client.inpaint_bytes([png, png], _png(mask))
    assert served["double"].service.requests == requests
    view = client.inpaint_bytes(memoryview(png), memoryview(_png(mask)))
    assert view == client.inpaint_bytes(png, _png(mask))
    assert client.inpaint_bytes((b for b in [png]), iter([_png(mask)])) == [view]
    with pytest.raises(ValueError, match="image and mask sizes differ"):
        client.inpaint(image, mask[:8])
    with pytest.raises(ValueError, match="image must be uint8"):
        client.inpaint(image.astype(np.float32), mask)
    with pytest.raises(ValueError, match="RGB"):
        client.inpaint(np.zeros((16, 16, 4), np.uint8), mask)
    with pytest.raises(ValueError, match="HOST:PORT"):
        InpaintClient("localhost", MODEL)
    with pytest.raises(ValueError, match="the port must be 1 to 65535"):
        InpaintClient("localhost:99999", MODEL)  # gRPC took it as port 34463
    # inf, nan and 1e10 (past gRPC's int64 nanoseconds): every request failed at once
    for timeout in (0, float("inf"), float("nan"), 1e10):
        with pytest.raises(ValueError, match="timeout must be a positive number of seconds"):
            InpaintClient("localhost:8500", MODEL, timeout=timeout)


def test_deadline_exceeded_is_reported(served):
    image, mask = _case(200, 200)  # a larger request than 1 ms allows
    with InpaintClient(served["address"], MODEL, timeout=0.001) as client:
        with pytest.raises(ServingError, match="no answer from TF Serving at .* within 0.001 s"):
            client.inpaint(image, mask)
    # the same client after its with block (gRPC: "Cannot invoke RPC on closed channel!")
    with pytest.raises(ValueError, match="this InpaintClient for .* is closed"):
        client.inpaint(image, mask)


def test_read_mask_any_mode(tmp_path):
    hole = np.zeros((6, 5), bool)
    hole[1:3, 2:4] = True
    images = {
        "1": Image.fromarray(hole),
        "L": Image.fromarray(hole.astype(np.uint8)),  # a 0/1 mask
        "RGB": Image.fromarray(
            np.stack([np.zeros_like(hole), np.zeros_like(hole), hole], -1).astype(np.uint8) * 200
        ),
        "RGBA": Image.fromarray(
            np.dstack([np.repeat(hole[..., None] * 255, 3, -1), np.full(hole.shape, 255)]).astype(
                np.uint8
            )
        ),
        "P": Image.fromarray(hole.astype(np.uint8) * 255).convert("P"),
        "I;16": Image.fromarray(hole.astype(np.uint16) * 65535),
        # antialiased: a faint halo (< 128) around the hole is not a hole
        "halo": Image.fromarray((hole * 255 + (~hole) * 60).astype(np.uint8)),
    }
    for mode, image in images.items():
        path = tmp_path / f"{mode.replace(';', '')}.png"
        image.save(path)
        mask = read_mask(path)
        assert mask.shape == (6, 5, 1) and mask.dtype == np.uint8, mode
        np.testing.assert_array_equal(mask[..., 0], hole * 255, err_msg=mode)


def _files(tmp_path, height=45, width=70):
    image, mask = _case(height, width, seed=7)
    Image.fromarray(image).save(tmp_path / "a.png")
    Image.fromarray(mask[..., 0] // 255).save(tmp_path / "m.png")  # a 0/1 mask
    return image, mask


def test_cli_end_to_end(served, tmp_path):
    image, mask = _files(tmp_path)
    out = tmp_path / "out.png"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "penet_tf.serving.client",
            "--server",
            served["address"],
            "--model",
            MODEL,
            "--image",
            str(tmp_path / "a.png"),
            "--mask",
            str(tmp_path / "m.png"),
            "--out",
            str(out),
            "--timeout",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"wrote {out} (70x45)" in result.stdout
    written = np.asarray(Image.open(out))
    np.testing.assert_array_equal(written, _direct(served, image, mask))
    known = mask[..., 0] == 0
    np.testing.assert_array_equal(written[known], image[known])
    assert sorted(os.listdir(tmp_path)) == ["a.png", "m.png", "out.png"]  # no temporary left


def test_cli_inpaint_bytes_signature(served, tmp_path, capsys):
    image, mask = _files(tmp_path, 33, 52)
    out = tmp_path / "out.png"
    argv = [
        "--server",
        served["address"],
        "--model",
        MODEL,
        "--image",
        str(tmp_path / "a.png"),
        "--mask",
        str(tmp_path / "m.png"),
        "--out",
        str(out),
        "--signature",
        "inpaint_bytes",
    ]
    assert main(argv) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(Image.open(out)), _direct(served, image, mask))


def test_cli_sends_a_cmyk_jpeg_as_the_pixels_it_read(served, tmp_path, capsys):
    """A CMYK JPEG without Adobe's APP14 marker is inverted by Pillow (penet_tf.image_io)
    and not by TensorFlow: its own bytes came back with every known pixel inverted (255
    off) under --signature inpaint_bytes."""
    image, mask = _files(tmp_path, 33, 52)
    buffer = io.BytesIO()
    Image.fromarray(image).convert("CMYK").save(buffer, "JPEG", quality=95)
    data = buffer.getvalue()
    at = data.find(b"\xff\xee")  # the APP14 (Adobe) segment, dropped
    data = data[:at] + data[at + 2 + int.from_bytes(data[at + 2 : at + 4], "big") :]
    (tmp_path / "cmyk.jpg").write_bytes(data)
    from penet_tf.image_io import read_rgb

    expected = _direct(served, read_rgb(tmp_path / "cmyk.jpg"), mask)
    out = tmp_path / "out.png"
    argv = ["--server", served["address"], "--model", MODEL, "--image", str(tmp_path / "cmyk.jpg")]
    argv += ["--mask", str(tmp_path / "m.png"), "--out", str(out), "--signature", "inpaint_bytes"]
    assert main(argv) == 0, capsys.readouterr().err
    np.testing.assert_array_equal(np.asarray(Image.open(out)), expected)


def test_cli_refuses_an_over_long_out_name_before_sending(served, tmp_path, capsys):
    """Found at the rename, after the server's work, naming the temporary."""
    _files(tmp_path, 33, 52)
    requests = served["double"].service.requests
    out = tmp_path / ("a" * 252 + ".png")
    argv = ["--server", served["address"], "--model", MODEL, "--image", str(tmp_path / "a.png")]
    argv += ["--mask", str(tmp_path / "m.png"), "--out", str(out)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "its name is 256 bytes, longer than the 255 its file system takes" in error
    assert ".tmp-" not in error and served["double"].service.requests == requests  # not sent


def test_cli_mask_from_alpha(served, tmp_path, capsys):
    image, mask = _files(tmp_path, 33, 52)
    alpha = np.where(mask[..., 0] > 0, 0, 255).astype(np.uint8)  # transparent = hole
    Image.fromarray(np.dstack([image, alpha]), "RGBA").save(tmp_path / "cutout.png")
    out = tmp_path / "out.png"
    argv = ["--server", served["address"], "--model", MODEL, "--image"]
    argv += [str(tmp_path / "cutout.png"), "--mask-from-alpha", "--out", str(out)]
    assert main(argv) == 0, capsys.readouterr().err  # was "give either a mask file or ..."
    np.testing.assert_array_equal(np.asarray(Image.open(out)), _direct(served, image, mask))


def test_cli_errors_are_one_line_messages(served, tmp_path, capsys):
    _files(tmp_path)
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(tmp_path / "small.png")
    common = ["--server", served["address"], "--model", MODEL, "--out", str(tmp_path / "o.png")]
    cases = [
        (
            ["--image", str(tmp_path / "missing.png"), "--mask", str(tmp_path / "m.png")],
            2,
            "image file not found",
        ),
        (
            ["--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "small.png")],
            2,
            "image and mask sizes differ",
        ),
        (
            [
                "--image",
                str(tmp_path / "a.png"),
                "--mask",
                str(tmp_path / "m.png"),
                "--version",
                "5",
            ],
            1,
            "does not serve model 'thin version 5'",
        ),
    ]
    for args, status, message in cases:
        assert main(common + args) == status
        error = capsys.readouterr().err
        assert error.startswith("error: ") and message in error, error
    assert not (tmp_path / "o.png").exists()
    # --out the photo itself: refused before the request (it replaced the photo).
    before = (tmp_path / "a.png").read_bytes()
    argv = ["--server", served["address"], "--model", MODEL, "--image", str(tmp_path / "a.png")]
    assert main([*argv, "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "a.png")]) == 2
    assert "would replace the input" in capsys.readouterr().err
    assert (tmp_path / "a.png").read_bytes() == before


def test_cli_output_formats(served, tmp_path, capsys):
    """A format Pillow cannot write RGB in was found after the server had answered; WebP
    was written lossy (known pixels up to 211 levels off)."""
    image, mask = _files(tmp_path)
    argv = ["--server", served["address"], "--model", MODEL, "--image", str(tmp_path / "a.png")]
    argv += ["--mask", str(tmp_path / "m.png")]
    assert main([*argv, "--out", str(tmp_path / "o.txt")]) == 2
    assert "unknown image extension '.txt'" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # ("error: Value out of range: ...", no option named)
        main([*argv, "--out", str(tmp_path / "o.png"), "--version", str(2**64)])
    assert "argument --version: must be 0 to 2^63 - 1" in capsys.readouterr().err
    # Written with "wrote" and exit status 0: a 64 x 9 thumbnail (.ico), a palette (.gif,
    # known pixels up to 22 levels off), lossy (.jpg, .avif), no image (.pdf, .xbm: 1 bit,
    # .h5: Pillow cannot write it).
    for name in ("o.ico", "o.gif", "o.jpg", "o.avif", "o.pdf", "o.xbm", "o.h5", "o.pbm"):
        assert main([*argv, "--out", str(tmp_path / name)]) == 2
        assert "would not keep the photo's pixels" in capsys.readouterr().err, name
        assert not (tmp_path / name).exists()
    assert main([*argv, "--out", str(tmp_path / "o.webp")]) == 0
    written = np.asarray(Image.open(tmp_path / "o.webp").convert("RGB"))
    known = mask[..., 0] == 0
    np.testing.assert_array_equal(written[known], image[known])


def test_a_model_without_the_exports_outputs_is_one_line(tmp_path, capsys):
    """Another model served under the name: its answer without 'inpainted' was a KeyError
    traceback."""

    class Other(tf.Module):
        @tf.function(
            input_signature=[
                tf.TensorSpec([None, None, None, 3], tf.uint8),
                tf.TensorSpec([None, None, None, 1], tf.uint8),
            ]
        )
        def serve(self, image, mask):
            return {"output_0": image}

    other = Other()
    tf.saved_model.save(
        other, str(tmp_path / "other" / "1"), signatures={"serving_default": other.serve}
    )
    image, mask = _files(tmp_path)
    with ServingDouble(tmp_path / "other", "other") as double:
        with InpaintClient(double.address, "other", timeout=60) as client:
            with pytest.raises(ServingError, match="answered serving_default without 'inpainted'"):
                client.inpaint(image, mask)
        argv = ["--server", double.address, "--model", "other", "--out", str(tmp_path / "o.png")]
        argv += ["--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png")]
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert "its outputs: ['output_0']" in err and "Traceback" not in err, err


def test_an_unreachable_server_behind_a_proxy_says_so(monkeypatch):
    """gRPC sends every connection through grpc_proxy / https_proxy / http_proxy unless
    no_proxy names the host: a shell with a company's proxy could not reach the TF
    Serving beside it, and the error did not say why. Said where gRPC's details show it
    went there, naming the proxy without its user name and password."""
    from penet_tf.serving.client import _proxy_note

    refused = "failed to connect to all addresses; last error: UNKNOWN: ipv4:{}: Failed"
    for name in ("grpc_proxy", "https_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    server = "127.0.0.1:8500"
    assert _proxy_note(refused.format("127.0.0.1:8500"), server) == ""
    monkeypatch.setenv("http_proxy", "http://me:p@ss@proxy.corp:3128")
    assert _proxy_note(refused.format("10.0.0.7:3128"), server) == (
        " (gRPC went through the proxy proxy.corp:3128 of $http_proxy: if the server is not "
        "reached that way, add its host to no_proxy)"
    )
    assert _proxy_note(refused.format("127.0.0.1:8500"), server) == ""  # (not through it)
    monkeypatch.setenv("https_proxy", "me:secret@other:8080")  # (no scheme; before http's)
    forbidden = "ipv4:10.0.0.8:8080: HTTP proxy returned response code 403"
    assert "proxy other:8080 of $https_proxy" in _proxy_note(forbidden, server)
    assert "secret" not in _proxy_note(forbidden, server)
    monkeypatch.setenv("grpc_proxy", "")  # (set and empty: gRPC uses no proxy)
    assert _proxy_note(forbidden, server) == ""


def test_an_export_from_before_the_variable_fix_is_named_as_one():
    """Exports written before 2026-12-06 22:00 UTC fail in TF Serving with its TF1 session's
    "Could not find variable generator/up_conv05/bias" (README): the client passed that
    on and did not say what to do."""

    class Failed(grpc.RpcError):
        def code(self):
            return grpc.StatusCode.FAILED_PRECONDITION

        def details(self):
            return "Could not find variable generator/up_conv05/bias. This could mean ..."

    client = InpaintClient("127.0.0.1:8500", MODEL)
    try:
        error = client._error(Failed())
    finally:
        client.close()
    assert error.code == grpc.StatusCode.FAILED_PRECONDITION
    assert str(error).endswith(
        "(an export written by penet_tf before 2026-12-06 22:00 UTC fails so in TF Serving: export "
        "its weights again with python -m penet_tf.export)"
    )


def test_cli_unreachable_server(tmp_path, capsys):
    _files(tmp_path)
    with closed_port() as port:
        argv = ["--server", f"127.0.0.1:{port}", "--model", MODEL, "--timeout", "5"]
        argv += ["--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png")]
        assert main([*argv, "--out", str(tmp_path / "o.png")]) == 1
    error = capsys.readouterr().err
    assert error.startswith("error: cannot reach TF Serving at 127.0.0.1:")
    assert "Traceback" not in error and len(error.splitlines()) == 1
    assert not (tmp_path / "o.png").exists()


class _Answers(prediction_service_pb2_grpc.PredictionServiceServicer):
    """A PredictionService in this process that answers ``self.answer(request)`` (another
    model or a broken export under the name) and counts the requests it received."""

    def __init__(self):
        self.requests = 0
        self.answer = None

    def Predict(self, request, context):  # noqa: N802 - gRPC's name
        self.requests += 1
        response = predict_pb2.PredictResponse()
        for name, value in self.answer(request).items():
            response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
        return response


@pytest.fixture()
def answers():
    service = _Answers()
    server = grpc.server(futures.ThreadPoolExecutor(2))
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(service, server)
    service.address = f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"
    server.start()
    yield service
    server.stop(None)


def test_an_answer_not_of_the_export_s_form_is_a_serving_error(answers, tmp_path, capsys):
    """A served model answering another size, dtype or rank (another model, a broken
    export): a 40 x 32 image for an 80 x 64 photo was written ("wrote", exit status 0), a
    float answer or an empty batch was a traceback, a non-PNG answer exit status 2."""

    def pixels(request):
        return tf.make_ndarray(request.inputs["image"])

    def encoded(array):
        return {"inpainted_bytes": np.array([_png(array)], object)}

    image, mask = _files(tmp_path, height=40, width=32)
    wrong = {
        "half the size": lambda r: {"inpainted": pixels(r)[:, ::2, ::2]},
        "float": lambda r: {"inpainted": pixels(r) / np.float32(255)},
        "RGBA": lambda r: {"inpainted": np.concatenate([pixels(r), pixels(r)[..., :1]], -1)},
        "no batch": lambda r: {"inpainted": pixels(r)[0]},
        "empty": lambda r: {"inpainted": pixels(r)[:0]},
    }
    with InpaintClient(answers.address, "other", timeout=30) as client:
        for answer in wrong.values():
            answers.answer = answer
            with pytest.raises(ServingError, match="is it a penet_tf export") as error:
                client.inpaint(image, mask)
            assert "'inpainted'" in str(error.value) and "uint8 [1, 40, 32, 3]" in str(error.value)
        answers.answer = lambda r: {"output": pixels(r)[:, :4] / 255, "inpainted": pixels(r) / 255}
        with pytest.raises(
            ServingError, match=r"'output' float32 \[1, 4, 32, 3\], not float32 \[1, 40"
        ):
            client.predict_float(image / 127.5 - 1, mask[..., 0] / 255)
        bytes_wrong = {
            "with a 16x20 PNG for a 32x40 image": lambda r: encoded(image[::2, ::2]),
            "with data that is not an 8-bit RGB PNG": lambda r: {
                "inpainted_bytes": np.array([b"not a png"], object)
            },
            "an RGBA PNG": lambda r: encoded(np.dstack([image, mask])),
            "empty": lambda r: {"inpainted_bytes": np.array([], object)},
        }
        for case, answer in bytes_wrong.items():
            answers.answer = answer
            with pytest.raises(ServingError, match="is it a penet_tf export") as error:
                client.inpaint_bytes(_png(image), _png(mask))
            if case.startswith("with"):
                assert f"answered inpaint_bytes[0] {case}" in str(error.value)
        answers.answer = lambda r: encoded(image)  # (the right form is taken)
        assert client.inpaint_bytes(_png(image), _png(mask)) == _png(image)
    for signature, answer in [
        ("serving_default", wrong["half the size"]),
        ("inpaint_bytes", bytes_wrong["with a 16x20 PNG for a 32x40 image"]),
    ]:
        answers.answer = answer
        argv = ["--server", answers.address, "--model", "other", "--signature", signature]
        argv += ["--image", str(tmp_path / "a.png"), "--mask", str(tmp_path / "m.png")]
        assert main([*argv, "--out", str(tmp_path / "o.png")]) == 1
        err = capsys.readouterr().err
        assert "is it a penet_tf export?" in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "o.png").exists()


def test_messages_over_the_client_s_limit_are_named_as_its_own(answers, monkeypatch):
    """A request over the client's 512 MiB per message (a 12000 x 12000 photo through
    serving_default) was "TF Serving ... is out of resources", the server never asked;
    and so was an answer over it. The request is refused before sending."""
    from penet_tf.serving import client as client_module

    monkeypatch.setattr(client_module, "MAX_MESSAGE_BYTES", 4096)  # (read when used)
    big, mask = _case(40, 40)
    with InpaintClient(answers.address, "other", timeout=30) as client:
        with pytest.raises(
            ValueError, match=r"over the 0.00390625 MiB .*: send fewer images per request"
        ):
            client.inpaint(big, mask)
        assert answers.requests == 0
        small, mask = _case(8, 8)
        answers.answer = lambda r: {"inpainted": np.zeros((1, 40, 40, 3), np.uint8)}
        with pytest.raises(ServingError, match="the answer of TF Serving at .* is over the"):
            client.inpaint(small, mask)
        assert answers.requests == 1


def test_the_cli_names_a_turned_photo_and_a_mask_without_a_hole(answers, tmp_path, capsys):
    """As the inpaint CLI does: a mask drawn on a phone photo as stored (not as shown) was
    only "sizes differ", and a mask without a hole wrote the photo unchanged unsaid."""
    image, mask = _case(30, 20)
    exif = Image.Exif()
    exif[0x0112] = 6  # turned a quarter: shown 30 wide, 20 high
    Image.fromarray(image).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    Image.fromarray(mask[..., 0]).save(tmp_path / "m.png")  # 20 x 30, as stored
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(tmp_path / "none.png")
    answers.answer = lambda r: {"inpainted": tf.make_ndarray(r.inputs["image"])}
    argv = ["--server", answers.address, "--model", "other", "--image", str(tmp_path / "phone.jpg")]
    assert main([*argv, "--mask", str(tmp_path / "m.png"), "--out", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "sizes differ" in err and "phone.jpg is turned by its EXIF orientation" in err, err
    assert (
        main([*argv, "--mask", str(tmp_path / "none.png"), "--out", str(tmp_path / "o.png")]) == 0
    )
    captured = capsys.readouterr()
    assert f"note: the mask {tmp_path / 'none.png'} has no hole" in captured.err
    assert "wrote" in captured.out


def test_an_ipv6_address_without_brackets_is_refused():
    """gRPC read "::1:8500" as the address ::0.1.133.0, port 443."""
    for server in ("::1:8500", "::1%lo:8500"):
        with pytest.raises(ValueError, match=r"an IPv6 address goes in brackets: \[::1"):
            InpaintClient(server, MODEL)
    for server in ("[::1]:8500", "dns:///localhost:8500", "ipv4:127.0.0.1:8500"):
        InpaintClient(server, MODEL).close()
