"""SavedModel export: CLI and versioning, signatures vs the Keras model, TF's own tools.

One export (through the real CLI, of a thin random generator) serves the whole module.
"""

import contextlib
import functools
import io
import json
import os
import re
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from serving_double import ServingDouble
from tensorflow.core.protobuf import saved_model_pb2

from penet_tf import Generator, inpainting, io_utils
from penet_tf.export import (
    CONFIG_FILE,
    WARMUP_FILE,
    export_generator,
    main,
    version_dir,
)
from penet_tf.high_resolution import PhotoStrategy, inpaint_photo
from penet_tf.inference import (
    ServingArchive,
    check_request,
    float_to_uint8,
    inpaint,
    uint8_to_float,
)
from penet_tf.io_utils import PID_SPACE
from penet_tf.models import load_generator
from penet_tf.serving import InpaintClient

SIGNATURES = ("serving_default", "inpaint_bytes", "predict_float")
ENV = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}


def _run(args, cwd, timeout=240):
    return subprocess.run(
        args, cwd=cwd, env=ENV, capture_output=True, text=True, timeout=timeout, check=False
    )


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """Thin weights + config saved as training does, exported by the CLI to base/3."""
    root = tmp_path_factory.mktemp("export")
    generator = Generator(base_channels=4, patch_method="conv")
    generator.build()
    weights = root / "generator.weights.h5"
    generator.save_weights(weights)
    (root / "generator.config.json").write_text(json.dumps({"base_channels": 4}))
    base = root / "savedmodels" / "thin"
    (base / "2").mkdir(parents=True)  # an existing version: the next free one is 3
    (base / "notes").mkdir()  # not a version
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):  # the CLI, in-process (a fresh process: below)
        assert main(["--weights", str(weights), "--out", str(base)]) == 0
    assert f"exported {base / '3'}" in printed.getvalue()
    return {
        "root": root,
        "weights": weights,
        "base": base,
        "path": base / "3",
        "generator": load_generator(weights, patch_method="conv"),
        "model": tf.saved_model.load(str(base / "3")),
    }


def _case(batch, height, width, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (batch, height, width, 3), dtype=np.uint8)
    mask = np.zeros((batch, height, width, 1), np.uint8)
    for b in range(batch):  # a different rectangle per image
        top, left = rng.integers(0, height // 2), rng.integers(0, width // 2)
        mask[b, top : top + height // 3 + 1, left : left + width // 3 + 1] = 1
    return image, mask


def _keras(generator, image, mask):
    """The Keras model's (output, composite) in float32, and the composite as uint8."""
    output, inpainted = inpaint(generator, uint8_to_float(image), tf.cast(mask > 0, tf.float32))
    return output.numpy(), inpainted.numpy(), float_to_uint8(inpainted).numpy()


def _check_against_keras(exported, image, mask):
    model, generator = exported["model"], exported["generator"]
    output, inpainted, inpainted_uint8 = _keras(generator, image, mask)
    known = np.broadcast_to(mask == 0, image.shape)

    result = model.signatures["predict_float"](
        image=uint8_to_float(image), mask=tf.constant(mask > 0, tf.float32)
    )
    assert result["output"].shape == image.shape
    assert np.abs(result["output"].numpy() - output).max() <= 1e-5
    assert np.abs(result["inpainted"].numpy() - inpainted).max() <= 1e-5

    served = model.signatures["serving_default"](image=image, mask=mask)["inpainted"].numpy()
    assert served.dtype == np.uint8 and served.shape == image.shape
    np.testing.assert_array_equal(served[known], image[known])  # bit-identical known pixels
    difference = np.abs(served.astype(int) - inpainted_uint8)
    assert difference.max() <= 1  # only rounding of values within 1e-5 of a .5 boundary
    assert (difference == 0).mean() > 0.999
    return served


@pytest.mark.parametrize(
    "batch, height, width", [(1, 256, 256), (1, 200, 333), (3, 96, 128)], ids=str
)
def test_signatures_equal_the_keras_model(exported, batch, height, width):
    image, mask = _case(batch, height, width)
    served = _check_against_keras(exported, image, mask)
    hole = np.broadcast_to(mask > 0, image.shape)
    assert (served[hole] != image[hole]).mean() > 0.5  # the holes really were repainted


def test_mask_rule_0_1_0_255_and_antialiased_edges(exported):
    image, mask = _case(1, 72, 90, seed=1)
    signature = exported["model"].signatures["serving_default"]
    ones = signature(image=image, mask=mask)["inpainted"].numpy()
    full = signature(image=image, mask=mask * 255)["inpainted"].numpy()
    half = signature(image=image, mask=mask * 128)["inpainted"].numpy()  # >= 128: a hole
    np.testing.assert_array_equal(ones, full)
    np.testing.assert_array_equal(ones, half)
    # An antialiased brush: the hole at 255 with a faint halo (127 and below) around it.
    halo = np.where(mask > 0, 255, 0).astype(np.uint8)
    halo[:, 5:20] = np.maximum(halo[:, 5:20], 127)
    halo[:, 40:44] = np.maximum(halo[:, 40:44], 3)
    np.testing.assert_array_equal(signature(image=image, mask=halo)["inpainted"].numpy(), full)
    _check_against_keras(exported, image, mask * 255)


def test_all_zero_mask_returns_the_input(exported):
    image, _ = _case(2, 50, 70, seed=2)
    mask = np.zeros((2, 50, 70, 1), np.uint8)
    served = exported["model"].signatures["serving_default"](image=image, mask=mask)
    np.testing.assert_array_equal(served["inpainted"].numpy(), image)
    result = exported["model"].signatures["predict_float"](
        image=uint8_to_float(image), mask=tf.zeros((2, 50, 70, 1))
    )
    np.testing.assert_array_equal(result["inpainted"].numpy(), uint8_to_float(image).numpy())


def test_all_hole_mask(exported):
    image, _ = _case(1, 64, 80, seed=3)
    mask = np.full((1, 64, 80, 1), 255, np.uint8)
    served = _check_against_keras(exported, image, mask)
    _, _, expected = _keras(exported["generator"], image, mask)
    assert np.abs(served.astype(int) - expected).max() <= 1


def test_tiny_image_is_padded_and_cropped(exported):
    image, mask = _case(1, 5, 7, seed=4)
    _check_against_keras(exported, image, mask)


def test_inpaint_bytes_signature_matches_serving_default(exported):
    image, mask = _case(2, 40, 56, seed=5)
    model = exported["model"]
    served = model.signatures["serving_default"](image=image, mask=mask)["inpainted"].numpy()
    encoded = model.signatures["inpaint_bytes"](
        image_bytes=[tf.io.encode_png(i).numpy() for i in image],
        mask_bytes=[tf.io.encode_png(m * 255).numpy() for m in mask],
    )["inpainted_bytes"].numpy()
    assert len(encoded) == 2 and all(png.startswith(b"\x89PNG") for png in encoded)
    for png, expected in zip(encoded, served, strict=True):
        np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), expected)


def test_inpaint_bytes_reads_masks_of_any_format_and_mode(exported):
    from PIL import Image

    image, mask = _case(1, 30, 44, seed=8)
    served = exported["model"].signatures["serving_default"](image=image, mask=mask)
    hole = mask[0, ..., 0] > 0
    colour = np.zeros((30, 44, 3), np.uint8)
    colour[hole] = (0, 0, 200)  # blue: as grey (23) it would not reach the threshold
    alpha = np.full((30, 44), 255, np.uint8)  # opaque everywhere: alpha is not the mask
    masks = {
        "L": Image.fromarray(hole.astype(np.uint8)),
        "1": Image.fromarray(hole),
        "LA": Image.fromarray(np.dstack([hole.astype(np.uint8) * 200, alpha])),
        "RGB": Image.fromarray(colour),
        "RGBA": Image.fromarray(np.dstack([colour, alpha])),
        "P": Image.fromarray(hole.astype(np.uint8) * 255).convert("P"),
    }
    encoded = []
    for mode, mask_image in masks.items():
        for file_format in ("PNG", "GIF", "BMP", "WEBP"):
            if (file_format in ("GIF", "BMP") and mode in ("LA", "RGBA")) or (
                file_format == "BMP" and mode == "1"
            ):
                continue  # no alpha in GIF / BMP; TF cannot decode 1-bit BMPs
            buffer = io.BytesIO()
            mask_image.save(buffer, format=file_format, lossless=True)
            encoded.append((f"{mode} {file_format}", buffer.getvalue()))
    result = (
        exported["model"]
        .signatures["inpaint_bytes"](
            image_bytes=[tf.io.encode_png(image[0]).numpy()] * len(encoded),
            mask_bytes=[data for _, data in encoded],
        )["inpainted_bytes"]
        .numpy()
    )
    for (name, _), png in zip(encoded, result, strict=True):
        np.testing.assert_array_equal(
            tf.io.decode_png(png).numpy(), served["inpainted"][0].numpy(), err_msg=name
        )


@pytest.mark.parametrize(
    "image_shape, mask_shape, message",
    [
        ((0, 8, 8, 3), (0, 8, 8, 1), "empty batch"),
        ((1, 8, 8, 3), (2, 8, 8, 1), "batch sizes differ"),
        ((1, 8, 8, 3), (1, 8, 9, 1), "height/width differ"),
        ((1, 8, 8, 4), (1, 8, 8, 1), "image must have 3 channels"),
        ((1, 8, 8, 3), (1, 8, 8, 2), "mask must have 1 channel"),
        ((1, 8, 65, 3), (1, 8, 65, 1), "limit of 4096 pixels"),  # runs as 64 x 128
        ((1, 1, 4096, 3), (1, 1, 4096, 1), "limit of 4096 pixels"),  # 4096 px, runs 64x4096
        ((1, 0, 8, 3), (1, 0, 8, 1), "height and width must be at least 1"),
        ((8, 8, 3), (1, 8, 8, 1), "image must have rank 4"),
        ((1, 8, 8, 3), (8, 8, 1), "mask must have rank 4"),
    ],
)
def test_request_checks_name_the_problem(image_shape, mask_shape, message):
    @tf.function(input_signature=[tf.TensorSpec(None, tf.uint8)] * 2)
    def check(image, mask):
        with tf.control_dependencies(check_request(image, mask, max_pixels=4096)):
            return tf.constant(0)

    check(tf.zeros([1, 64, 64, 3], tf.uint8), tf.zeros([1, 64, 64, 1], tf.uint8))  # passes
    check(tf.zeros([2, 50, 7, 3], tf.uint8), tf.zeros([2, 50, 7, 1], tf.uint8))
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        check(tf.zeros(image_shape, tf.uint8), tf.zeros(mask_shape, tf.uint8))


def _peak_growth(function):
    """(result or raised error, seconds, peak RSS growth in bytes) of ``function()``."""
    with open("/proc/self/status") as status:
        rss = next(int(line.split()[1]) for line in status if line.startswith("VmRSS:"))
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # reset the peak (VmHWM) to the current RSS
    start = time.perf_counter()
    try:
        outcome = function()
    except tf.errors.OpError as error:
        outcome = error
    seconds = time.perf_counter() - start
    with open("/proc/self/status") as status:
        peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
    return outcome, seconds, (peak - rss) * 1024


def test_an_8192_squared_request_is_refused_before_any_cast_or_pad(exported):
    """Over the default photo limit (8192 x 6144, the ``auto`` strategy): refused without
    casting (805 MB of float32) or padding (was 4.2 s and +3.6 GB). Bounded by memory, which
    a cast or a pad would raise past the bound, not by time (a timed bound fails on a busy
    machine; the seconds are printed)."""
    signature = exported["model"].signatures["serving_default"]
    image = tf.constant(np.full((1, 8192, 8192, 3), 9, np.uint8))
    mask = tf.constant(np.zeros((1, 8192, 8192, 1), np.uint8))
    signature(image=image[:, :64, :64], mask=mask[:, :64, :64])  # warm up
    outcome, seconds, growth = _peak_growth(lambda: signature(image=image, mask=mask))
    assert isinstance(outcome, tf.errors.InvalidArgumentError)
    print(f"8192² refusal: {seconds * 1000:.1f} ms, +{growth / 2**20:.1f} MiB")
    assert "server limit of 50331648 pixels" in outcome.message
    assert growth < 64 * 2**20  # the request is 268 MB; one float32 copy would be 805 MB


def test_a_gif_whose_frame_outgrows_its_screen_is_refused_before_decoding(exported):
    """A 47-kB GIF whose logical screen says 8 x 8 and whose frame is 8000 x 8000: the
    decoder's canvas is the frame's, so the frame is what the limit checks, before any
    decoding (it was decoded whole, then refused). Bounded by memory, not by time."""
    buffer = io.BytesIO()
    Image.new("L", (8000, 8000)).save(buffer, "GIF")
    data = bytearray(buffer.getvalue())
    data[6:10] = np.array([8, 8], "<u2").tobytes()
    mask = tf.io.encode_png(np.zeros((8, 8, 1), np.uint8)).numpy()
    signature = exported["model"].signatures["inpaint_bytes"]
    signature(image_bytes=tf.constant([mask]), mask_bytes=tf.constant([mask]))  # warm up
    outcome, seconds, growth = _peak_growth(
        lambda: signature(image_bytes=tf.constant([bytes(data)]), mask_bytes=tf.constant([mask]))
    )
    assert isinstance(outcome, tf.errors.InvalidArgumentError)
    print(f"GIF refusal: {seconds * 1000:.1f} ms, +{growth / 2**20:.1f} MiB")
    assert "image_bytes[0]: image is larger than the server limit of 50331648" in outcome.message
    assert growth < 64 * 2**20  # decoding it takes 64 MB of indices and 192 MB of RGB


@pytest.fixture(scope="module")
def double(exported):
    """The export served by the TF Serving test double (``tests/serving_double.py``): the
    SavedModel loader into a TF1 session, as tensorflow_model_server loads it. One for the
    module: its session keeps each signature's executor, built once (seconds each)."""
    with ServingDouble(exported["base"], "thin") as running:
        yield running


@pytest.fixture(scope="module")
def served_as_tf_serving(double):
    """``run(signature, **inputs)`` on the export as tensorflow_model_server (and
    ``saved_model_cli run``) loads it: the double's TF1 session (the SavedModel loader),
    the request's tensors fed unchecked (``session.run`` would check their shapes in
    Python; TF Serving checks names only)."""
    service = double.service
    graph, session = service.graph, service.session

    def run(name, **inputs):
        signature = service.signature_defs[name]
        names = list(signature.outputs)
        feeds = {
            graph.get_tensor_by_name(signature.inputs[key].name)._as_tf_output(): value
            for key, value in inputs.items()
        }
        fetches = [
            graph.get_tensor_by_name(signature.outputs[key].name)._as_tf_output() for key in names
        ]
        values = session._call_tf_sessionrun(None, feeds, fetches, [], None)
        return dict(zip(names, values, strict=True))

    return run


def test_tf_serving_s_loader_runs_every_signature(exported, served_as_tf_serving):
    """The export held each variable twice (the Keras variables and the tf.Variables under
    them): a TF1 session restored one copy and the graph read the other, so every request
    to a real tensorflow_model_server failed ("Could not find variable
    generator_1/up_conv02/kernel ... uninitialized", tensorflow/serving#2226), while
    tf.saved_model.load (what the other tests use) bound them right."""
    signatures = exported["model"].signatures
    image, mask = _case(2, 48, 80)
    expected = signatures["serving_default"](image=image, mask=mask)["inpainted"].numpy()
    served = served_as_tf_serving("serving_default", image=image, mask=mask)
    np.testing.assert_array_equal(served["inpainted"], expected)
    floats = {"image": uint8_to_float(image).numpy(), "mask": (mask > 0).astype(np.float32)}
    served = served_as_tf_serving("predict_float", **floats)
    for key, value in signatures["predict_float"](**floats).items():
        np.testing.assert_allclose(served[key], value.numpy(), atol=1e-6)
    pngs = {
        "image_bytes": np.array([tf.io.encode_png(image[0]).numpy()], object),
        "mask_bytes": np.array([tf.io.encode_png(mask[0] * 255).numpy()], object),
    }
    served = served_as_tf_serving("inpaint_bytes", **pngs)
    np.testing.assert_array_equal(tf.io.decode_png(served["inpainted_bytes"][0]), expected[0])


_PNG = tf.io.encode_png(np.zeros((8, 8, 3), np.uint8)).numpy()


@pytest.mark.parametrize(
    "name, image, mask, message",
    [
        ("serving_default", (1, 64, 64, 4), (1, 64, 64, 1), "image must have 3 channels"),
        # Without the batch axis (a REST user's most common slip): the rank assertions
        # were folded to constants when traced, and the image was said to lack 3 channels.
        ("serving_default", (64, 64, 3), (1, 64, 64, 1), "image must have rank 4"),
        # A [B, H, W] mask: "Invalid reduction dimension", naming neither input.
        ("serving_default", (1, 64, 64, 3), (1, 64, 64), "mask must have rank 4"),
        ("predict_float", (64, 64, 3), (1, 64, 64, 1), "image must have rank 4"),
        # Scalar strings: "slice index 0 of dimension 0 out of bounds".
        ("inpaint_bytes", _PNG, [_PNG], "image_bytes must be a list of encoded images"),
        ("inpaint_bytes", [_PNG], [[_PNG]], "mask_bytes must be a list of encoded masks"),
    ],
    ids=[
        "4-channels",
        "no-batch",
        "mask-without-channel",
        "float-no-batch",
        "bytes-0d",
        "bytes-2d",
    ],
)
def test_graph_checks_shapes_when_fed_unchecked(served_as_tf_serving, name, image, mask, message):
    if name == "inpaint_bytes":
        inputs = {"image_bytes": np.array(image, object), "mask_bytes": np.array(mask, object)}
    else:
        dtype = np.float32 if name == "predict_float" else np.uint8
        inputs = {"image": np.zeros(image, dtype), "mask": np.zeros(mask, dtype)}
    with pytest.raises(tf.errors.InvalidArgumentError, match=message):
        served_as_tf_serving(name, **inputs)


def test_saved_model_cli_lists_three_dynamic_signatures(exported):
    cli = os.path.join(os.path.dirname(sys.executable), "saved_model_cli")
    result = _run([cli, "show", "--dir", str(exported["path"]), "--all"], exported["root"])
    assert result.returncode == 0, result.stderr[-3000:]
    found = {}
    for block in re.split(r"\n(?=signature_def\[)", result.stdout):
        name = re.match(r"signature_def\['(\w+)'\]", block)
        if name:
            found[name.group(1)] = {
                (kind, key): (dtype, shape)
                for kind, key, dtype, shape in re.findall(
                    r"(inputs|outputs)\['(\w+)'\] tensor_info:\s+dtype: (\w+)\s+shape: (\([^)]*\))",
                    block,
                )
            }
    image, mask = "(-1, -1, -1, 3)", "(-1, -1, -1, 1)"
    assert found["serving_default"] == {
        ("inputs", "image"): ("DT_UINT8", image),
        ("inputs", "mask"): ("DT_UINT8", mask),
        ("outputs", "inpainted"): ("DT_UINT8", image),
    }
    assert found["inpaint_bytes"] == {
        ("inputs", "image_bytes"): ("DT_STRING", "(-1)"),
        ("inputs", "mask_bytes"): ("DT_STRING", "(-1)"),
        ("outputs", "inpainted_bytes"): ("DT_STRING", "(-1)"),
    }
    assert found["predict_float"] == {
        ("inputs", "image"): ("DT_FLOAT", image),
        ("inputs", "mask"): ("DT_FLOAT", mask),
        ("outputs", "output"): ("DT_FLOAT", image),
        ("outputs", "inpainted"): ("DT_FLOAT", image),
    }


def test_warmup_requests_are_valid_prediction_logs(exported):
    from tensorflow_serving.apis import prediction_log_pb2

    path = exported["path"] / "assets.extra" / WARMUP_FILE
    records = list(tf.data.TFRecordDataset(str(path)).as_numpy_iterator())
    logs = [prediction_log_pb2.PredictionLog.FromString(record) for record in records]
    assert sorted(log.predict_log.request.model_spec.signature_name for log in logs) == sorted(
        SIGNATURES
    )
    for log in logs:
        request = log.predict_log.request
        assert request.model_spec.name == "thin"
        inputs = {k: tf.make_ndarray(v) for k, v in request.inputs.items()}
        outputs = exported["model"].signatures[request.model_spec.signature_name](**inputs)
        assert all(value.shape[0] == 1 for value in outputs.values())


def test_export_records_its_config(exported):
    config = json.loads((exported["path"] / "assets.extra" / CONFIG_FILE).read_text())
    assert config["generator"]["base_channels"] == 4  # from generator.config.json
    assert config["max_pixels"] == 2048 * 2048
    assert config["max_photo_pixels"] == 8192 * 6144
    assert PhotoStrategy.from_config(config["strategy"]) == PhotoStrategy()  # auto
    assert sorted(os.listdir(exported["base"])) == ["2", "3", "notes"]  # no temporary left
    mode = 0o777 & ~io_utils._UMASK  # (as mkdir makes it)
    assert os.stat(exported["path"]).st_mode & 0o777 == mode


def test_keras_export_writes_the_served_signatures_at_its_path(exported, tmp_path, capsys):
    """Keras' ``generator.export(path)`` failed ("Got a non-Tensor value [...] for key
    'output_1'": a signature cannot return the pyramid), after a first failure on the
    second input."""
    generator = exported["generator"]
    for options, message in (
        ({"format": "onnx"}, "python -m penet_tf.convert"),
        ({"input_signature": [tf.TensorSpec([None, 64, 64, 3])]}, "no input_signature"),
    ):
        with pytest.raises(ValueError, match=message):
            generator.export(tmp_path / "refused", **options)
    with pytest.raises(ValueError, match="no weights yet"):
        Generator(base_channels=4).export(tmp_path / "refused")
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="remove it or choose another path"):
        generator.export(tmp_path / "taken")
    assert os.listdir(tmp_path / "taken") == ["notes.txt"]
    (tmp_path / "empty").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "empty")  # (failed after the whole export)
    with pytest.raises(ValueError, match="is a symbolic link to .*empty: give the folder"):
        generator.export(tmp_path / "link")
    assert not (tmp_path / "refused").exists()

    generator.export(tmp_path / "thin" / "1", strategy=PhotoStrategy("full"))
    assert capsys.readouterr().out.startswith(f"Saved artifact at '{tmp_path / 'thin' / '1'}'")
    assert os.listdir(tmp_path / "thin") == ["1"]  # (no temporary left)
    config = json.loads((tmp_path / "thin" / "1" / "assets.extra" / CONFIG_FILE).read_text())
    assert config["strategy"]["name"] == "full" and config["generator"]["base_channels"] == 4
    from tensorflow_serving.apis import prediction_log_pb2

    warmup = str(tmp_path / "thin" / "1" / "assets.extra" / WARMUP_FILE)
    logs = [
        prediction_log_pb2.PredictionLog.FromString(record)
        for record in tf.data.TFRecordDataset(warmup).as_numpy_iterator()
    ]
    assert {log.predict_log.request.model_spec.name for log in logs} == {"thin"}  # (model)
    loaded = tf.saved_model.load(str(tmp_path / "thin" / "1"))
    assert sorted(loaded.signatures) == ["inpaint_bytes", "predict_float", "serving_default"]
    image, mask = _case(2, 64, 128, seed=5)
    inputs = {"image": tf.constant(image), "mask": tf.constant(mask * 255)}
    served = loaded.signatures["serving_default"](**inputs)["inpainted"].numpy()
    assert np.array_equal(served, _keras(generator, image, mask)[2])


def test_cli_refuses_a_taken_version(exported, capsys):
    status = main(
        ["--weights", str(exported["weights"]), "--out", str(exported["base"]), "--version", "3"]
    )
    assert status == 2
    error = capsys.readouterr().err
    assert "3 exists: choose another --version" in error and "Traceback" not in error


def test_cli_names_bad_strategy_options_as_typed(exported, tmp_path, capsys):
    weights = ["--weights", str(exported["weights"]), "--out", str(tmp_path / "m")]
    for option, value, message in (
        ("--margin", "99999999999", "--margin must be 0 to 65536"),  # was exported, then
        ("--model-size", "100", "--model-size must be a positive multiple of 64"),  # failed
    ):
        assert main([*weights, option, value]) == 2
        assert capsys.readouterr().err.startswith(f"error: {message}")
    assert not (tmp_path / "m").exists()


def test_cli_refuses_limits_no_request_meets_and_a_version_folder_as_out(
    exported, tmp_path, capsys
):
    """--max-photo-pixels 1000 was exported, then refused every request (a 1 x 1 photo
    counts 64 x 64) and its own warm-up; --out base/3 wrote a whole export inside
    version 3; --attention-chunk-mb nan printed Keras' multi-line error."""
    weights = ["--weights", str(exported["weights"])]
    out = ["--out", str(tmp_path / "m")]
    for args, message in (
        (["--max-photo-pixels", "1000"], "--max-photo-pixels must be at least 4096"),
        (["--max-pixels", "4095", "--strategy", "full"], "--max-pixels must be at least 4096"),
        (["--attention-chunk-mb", "nan"], "--attention-chunk-mb must be a positive number"),
        (["--attention-chunk-mb", "0"], "--attention-chunk-mb must be a positive number"),
    ):
        assert main([*weights, *out, *args]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) <= 3, err
    assert not (tmp_path / "m").exists()
    for inside in (exported["path"], exported["path"] / "variables"):
        assert main([*weights, "--out", str(inside)]) == 2
        err = capsys.readouterr().err
        assert f"is inside the SavedModel {exported['path']}: give the model base" in err
    assert sorted(os.listdir(exported["path"])) == sorted(
        ["assets", "assets.extra", "fingerprint.pb", "saved_model.pb", "variables"]
    )
    # An empty --out (an unset $OUT) exported into the working folder as ./1; a dangling
    # symbolic link failed after loading with "[Errno 17] File exists".
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    latin = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"mod\xe8les"))  # (after loading)
    for out, message in (
        ("", "--out is empty"),
        (str(tmp_path / "link"), "which does not exist"),
        (latin, "TensorFlow reads and writes only UTF-8 paths"),
    ):
        assert main([*weights, "--out", out]) == 2
        assert message in capsys.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["link"]


def test_inpaint_bytes_reads_rgba_webp_photos(exported):
    """TF's WebP decoder refuses to give 3 channels of an RGBA file: every RGBA WebP
    photo was refused ("Number of channels requested does not match input")."""
    from PIL import Image

    from penet_tf.image_io import decode_rgb

    image, mask = _case(1, 30, 44, seed=9)
    alpha = np.linspace(0, 255, 30 * 44).reshape(30, 44, 1).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(np.concatenate([image[0], alpha], -1)).save(
        buffer,
        "WEBP",
        lossless=True,
        exact=True,  # (exact: the colours under alpha 0 kept)
    )
    data = buffer.getvalue()
    np.testing.assert_array_equal(decode_rgb(data, "photo.webp"), image[0])  # stored colours
    served = exported["model"].signatures["serving_default"](image=image, mask=mask)
    result = exported["model"].signatures["inpaint_bytes"](
        image_bytes=[data], mask_bytes=[tf.io.encode_png(mask[0] * 255).numpy()]
    )["inpainted_bytes"]
    np.testing.assert_array_equal(
        tf.io.decode_png(result[0]).numpy(), served["inpainted"][0].numpy()
    )


def test_cli_reports_missing_weights(tmp_path, capsys):
    status = main(["--weights", str(tmp_path / "nope.weights.h5"), "--out", str(tmp_path / "m")])
    assert status == 2
    assert "No generator weights at" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()


def test_next_free_version(tmp_path):
    assert version_dir(tmp_path / "new") == str(tmp_path / "new" / "1")
    for name in ("1", "7", "10", "v11", ".tmp-12-x"):
        (tmp_path / name).mkdir()
    assert version_dir(tmp_path) == str(tmp_path / "11")
    assert version_dir(tmp_path, 8) == str(tmp_path / "8")
    with pytest.raises(FileExistsError, match="choose another --version"):
        version_dir(tmp_path, 7)
    with pytest.raises(ValueError, match="non-negative"):
        version_dir(tmp_path, -1)
    # TF Serving's versions (safe_strto64): " 12" is version 12, which it serves; a
    # full-width or Arabic-Indic "13" is none (Python's \d took both).
    for name in ("１３", "١٣"):
        (tmp_path / name).mkdir()
    assert version_dir(tmp_path) == str(tmp_path / "11")
    (tmp_path / " 12").mkdir()
    assert version_dir(tmp_path) == str(tmp_path / "13")
    with pytest.raises(FileExistsError, match="choose another --version"):
        version_dir(tmp_path, 12)
    for name in ("8", " 12"):
        (tmp_path / name / "saved_model.pb").parent.mkdir(exist_ok=True)
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    (tmp_path / "１３" / "saved_model.pb").write_bytes(b"")
    assert inpainting.find_saved_model(str(tmp_path)) == str(tmp_path / " 12")


class _FailingArchive:
    def write_out(self, path, verbose=False):
        with open(os.path.join(path, "saved_model.pb"), "wb") as handle:
            handle.write(b"half written")
        raise KeyboardInterrupt  # interrupted mid-write


def test_failed_export_leaves_no_version_and_sweeps_a_killed_one(tmp_path, monkeypatch, dead_pid):
    monkeypatch.setattr("penet_tf.export.build_archive", lambda *args: _FailingArchive())
    (tmp_path / "1").mkdir()
    # What an export killed with -9 left, and one of a running export (the parent process).
    (tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-2" / "variables").mkdir(parents=True)
    (tmp_path / f".tmp-{os.getppid()}.{PID_SPACE}-9").mkdir()
    with pytest.raises(KeyboardInterrupt):
        export_generator(Generator(base_channels=4), tmp_path)
    assert sorted(os.listdir(tmp_path)) == [f".tmp-{os.getppid()}.{PID_SPACE}-9", "1"]


class _RacedArchive:
    """An export during which another export into the same folder finished ``version``."""

    def __init__(self, base, version):
        self.base, self.version = base, version

    def write_out(self, path, verbose=False):
        (self.base / self.version).mkdir()
        (self.base / self.version / "saved_model.pb").write_bytes(b"the other export's")
        with open(os.path.join(path, "saved_model.pb"), "wb") as handle:
            handle.write(b"this export's")


def test_two_exports_into_one_folder_take_two_versions(tmp_path, monkeypatch):
    """Started together, two exports took the same automatic version: the second failed
    after all its work with "[Errno 39] Directory not empty: '.../.tmp-7034-1' -> '.../1'";
    with the same --version it said the same instead of naming the version."""
    generator = Generator(base_channels=4)
    monkeypatch.setattr("penet_tf.export.build_archive", lambda *args: _RacedArchive(tmp_path, "1"))
    assert export_generator(generator, tmp_path) == str(tmp_path / "2")
    assert (tmp_path / "1" / "saved_model.pb").read_bytes() == b"the other export's"
    assert (tmp_path / "2" / "saved_model.pb").read_bytes() == b"this export's"
    monkeypatch.setattr("penet_tf.export.build_archive", lambda *args: _RacedArchive(tmp_path, "5"))
    with pytest.raises(FileExistsError, match=r"5 exists: another process wrote it meanwhile"):
        export_generator(generator, tmp_path, version=5)
    assert (tmp_path / "5" / "saved_model.pb").read_bytes() == b"the other export's"
    assert sorted(os.listdir(tmp_path)) == ["1", "2", "5"]


def test_served_auto_strategy_crops_large_photos_as_the_library(exported, double):
    """A photo over the trigger (512) goes through ``crop`` + CRA in the graph, as
    ``penet_tf.high_resolution.inpaint_photo`` runs it (the same hole groups and regions);
    the gRPC client gets the same pixels from the export served by the TF Serving test
    double (``tests/serving_double.py``), as arrays and as PNG bytes."""
    rng = np.random.default_rng(7)
    y, x = np.mgrid[:90, :700]
    image = np.stack([x % 256, (y * 3) % 256, (x + y) % 256], -1).astype(np.float64)
    image = np.clip(image + rng.normal(0, 10, image.shape), 0, 255).astype(np.uint8)
    mask = np.zeros((90, 700, 1), np.uint8)
    mask[30:60, 400:480] = 255
    mask[40:50, 500:510] = 255
    served = exported["model"].signatures["serving_default"](image=image[None], mask=mask[None])
    served = served["inpainted"].numpy()[0]
    expected = inpaint_photo(exported["generator"], image, mask, PhotoStrategy())
    known = mask[..., 0] == 0
    np.testing.assert_array_equal(served[known], image[known])
    difference = np.abs(served.astype(int) - expected.astype(int))
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-3
    assert (served[~known] != image[~known]).any()
    encoded = exported["model"].signatures["inpaint_bytes"](
        image_bytes=tf.io.encode_png(image)[None], mask_bytes=tf.io.encode_png(mask)[None]
    )["inpainted_bytes"][0]
    np.testing.assert_array_equal(tf.io.decode_png(encoded).numpy(), served)
    with InpaintClient(double.address, "thin", timeout=120) as client:
        np.testing.assert_array_equal(client.inpaint(image, mask), served)
        png = client.inpaint_bytes(tf.io.encode_png(image).numpy(), tf.io.encode_png(mask).numpy())
    np.testing.assert_array_equal(tf.io.decode_png(png).numpy(), served)


def test_the_network_and_the_strategy_are_written_once(exported):
    """Every signature and strategy branch traced the network inline: the default export
    held it five times (serving_default's full and crop branches, inpaint_bytes' two,
    predict_float) and ``tf.saved_model.load`` rebuilt each copy node by node. Now one
    graph per kind of call: composited (``output_mask``), with at_conv01's attention
    (crop + residual aggregation) and plain (predict_float)."""
    saved_model = saved_model_pb2.SavedModel()
    saved_model.ParseFromString((exported["path"] / "saved_model.pb").read_bytes())
    library = saved_model.meta_graphs[0].graph_def.library.function
    networks = [
        function.signature.name
        for function in library
        if any(node.op == "Conv2D" and "dw_conv01" in node.name for node in function.node_def)
    ]
    assert len(networks) == 3, networks
    # the strategy's graph (its area-resampled network input) once, not once per signature
    resampling = [f for f in library if any(node.op == "ResizeArea" for node in f.node_def)]
    assert len(resampling) == 1, [function.signature.name for function in resampling]


def test_serving_archive_traces_each_endpoint_once(tmp_path):
    import keras

    layer = keras.layers.Dense(2, name="dense")
    layer.build((None, 3))
    layer.kernel.assign(np.arange(6, dtype=np.float32).reshape(3, 2))
    traces = []

    def double(x):
        traces.append("double")
        return {"y": 2.0 * layer(x)}

    def negate(x):
        traces.append("negate")
        return {"y": -layer(x)}

    archive = ServingArchive(layer)
    spec = [tf.TensorSpec([None, 3], tf.float32, "x")]
    archive.add_endpoint("serving_default", double, spec)
    archive.add_endpoint("negate", negate, spec)
    with pytest.raises(ValueError, match="'negate' is already defined"):
        archive.add_endpoint("negate", negate, spec)
    archive.write_out(tmp_path / "1")
    assert sorted(traces) == ["double", "negate"]  # (keras.export.ExportArchive: twice each)
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    x = tf.constant([[1.0, 2.0, 3.0]])
    expected = x.numpy() @ layer.kernel.numpy() + layer.bias.numpy()
    np.testing.assert_allclose(loaded.signatures["serving_default"](x=x)["y"], 2 * expected)
    np.testing.assert_allclose(loaded.signatures["negate"](x=x)["y"], -expected)
    np.testing.assert_allclose(loaded.negate(x)["y"], -expected)  # also as a function
    assert sorted(v.shape.as_list() for v in loaded.variables) == [[2], [3, 2]]


def test_a_generator_built_by_a_call_is_exported_and_an_unbuilt_one_named(tmp_path):
    """The docstring's ServingArchive example (and ``build_archive``) failed for a
    generator built by calling it, as the README builds one: Keras' default SavedModel
    signature traced it with one input ("missing a required argument: 'mask'")."""
    import keras

    from penet_tf import Generator
    from penet_tf.inference import composite_uint8

    keras.utils.set_random_seed(0)
    generator = Generator(base_channels=4)
    with pytest.raises(ValueError, match=r"not built: call generator.build\(\)"):
        ServingArchive(generator)
    image = np.random.default_rng(0).integers(0, 256, (1, 64, 64, 3), np.uint8)
    mask = np.zeros((1, 64, 64, 1), np.uint8)
    mask[:, 16:40, 20:44] = 1
    generator(tf.zeros([1, 64, 64, 3]), tf.zeros([1, 64, 64, 1]))  # built by a call
    archive = ServingArchive(generator)
    archive.add_endpoint(
        "serving_default",
        lambda image, mask: {"inpainted": composite_uint8(generator, image, mask)},
        [tf.TensorSpec([1, 64, 64, 3], tf.uint8), tf.TensorSpec([1, 64, 64, 1], tf.uint8)],
    )
    archive.write_out(tmp_path / "1")
    loaded = tf.saved_model.load(str(tmp_path / "1"))
    served = loaded.signatures["serving_default"](image=image, mask=mask)["inpainted"]
    np.testing.assert_array_equal(served, composite_uint8(generator, image, mask))


@functools.cache
def _decode_graph(max_pixels):
    """``inpaint_bytes``'s decode in a graph, traced once per limit (a trace per file
    took 3 s: 47 s for the test below)."""
    from penet_tf import export

    return tf.function(
        lambda data: export._decode(data, 3, "image", max_pixels),
        input_signature=[tf.TensorSpec([], tf.string)],
    )


def _decoded(data, max_pixels=10**6):
    """``inpaint_bytes``'s decode of one encoded image in a graph: its shape, or the
    INVALID_ARGUMENT message."""
    try:
        return tuple(_decode_graph(max_pixels)(tf.constant(data)).shape)
    except tf.errors.InvalidArgumentError as error:
        return re.search(r"assertion failed: \[(.*?)\]", error.message, re.S).group(1)


def test_files_tensorflow_would_decode_otherwise_are_refused_before_decoding():
    """A 38-byte WebP declaring 16383^2 pixels was decoded (4 GB, 10 s) before any size
    check; a GIF whose first frame does not cover its screen came back at the frame's size;
    an RLE8 BMP decoded as garbage and a 32-bit BMP with RGBA bit masks swapped red and
    blue (Pillow, penet_tf.image_io, reads all of them right)."""
    import struct

    photo = np.random.default_rng(0).integers(0, 255, (40, 60, 3), np.uint8)

    def encoded(image, kind, **options):
        buffer = io.BytesIO()
        image.save(buffer, kind, **options)
        return buffer.getvalue()

    for options in ({"lossless": True}, {"quality": 80}):
        assert _decoded(encoded(Image.fromarray(photo), "WEBP", **options)) == (40, 60, 3)
    rgba = Image.fromarray(np.dstack([photo, photo[..., :1]]), "RGBA")  # VP8X
    assert "larger than the server limit of 1000" in _decoded(encoded(rgba, "WEBP"), 1000)
    dims = (16383 - 1) | (16383 - 1) << 14  # VP8L: 14 bits of width - 1, then of height - 1
    lossless = b"\x2f" + struct.pack("<I", dims) + b"\0" * 8
    bomb = b"RIFF" + struct.pack("<I", 4 + 8 + len(lossless)) + b"WEBPVP8L"
    bomb += struct.pack("<I", len(lossless)) + lossless
    assert "larger than the server limit" in _decoded(bomb)

    gif = bytearray(encoded(Image.fromarray(photo[:20, :30]).convert("P"), "GIF"))
    assert _decoded(bytes(gif)) == (20, 30, 3)
    struct.pack_into("<HH", gif, 6, 60, 40)  # a 60 x 40 screen around the 30 x 20 frame
    assert "first frame does not cover its screen" in _decoded(bytes(gif))

    assert _decoded(encoded(Image.fromarray(photo), "BMP")) == (40, 60, 3)
    pixels = b"".join(
        np.concatenate([row, np.full((60, 1), 255, np.uint8)], -1).tobytes() for row in photo[::-1]
    )
    header = struct.pack("<IiiHHIIiiII", 124, 60, 40, 1, 32, 3, len(pixels), 2835, 2835, 0, 0)
    header += struct.pack("<IIII", 0xFF, 0xFF00, 0xFF0000, 0xFF000000) + b"sRGB" + b"\0" * 64
    offset = 14 + len(header)
    bitfields = b"BM" + struct.pack("<IHHI", offset + len(pixels), 0, 0, offset) + header + pixels
    assert "other than BGRA bit masks is not decoded here" in _decoded(bitfields)
    grey = Image.fromarray(photo[..., 0])
    rle = bytearray(encoded(grey, "BMP"))
    struct.pack_into("<I", rle, 30, 1)  # BI_RLE8 (its data need not be valid: refused first)
    assert "compressed" in _decoded(bytes(rle))
    # the 12-byte OS/2 core header: TensorFlow misread its layout ("channels ... was -30")
    rows = b"".join(row[:, ::-1].tobytes() + b"\0" * (-60 * 3 % 4) for row in photo[::-1])
    core = struct.pack("<IHHHH", 12, 60, 40, 1, 24)
    os2 = b"BM" + struct.pack("<IHHI", 26 + len(rows), 0, 0, 26) + core + rows
    assert "with an OS/2 header" in _decoded(os2)
    # JPEG XL: TensorFlow decodes it, its size unread before (a header declaring 8000^2
    # reached the decoder past a 10^6 limit), and Pillow does not read it
    bits = [0, 0, 1] + [(7999 >> i) & 1 for i in range(18)] + [0, 0, 0, 0, 1]
    bits += [(7999 >> i) & 1 for i in range(18)] + [1]
    header = bytes(sum(b << i for i, b in enumerate(bits[k : k + 8])) for k in range(0, 48, 8))
    for jxl in (b"\xff\x0a" + header + b"\0" * 64, b"\0\0\0\x0cJXL \r\n\x87\n" + b"\0" * 64):
        assert _decoded(jxl) == "image: a JPEG XL file is not decoded here; send it as PNG"
    assert "expected one of PNG, JPEG, GIF, BMP, WebP)" in _decoded(b"\0" * 40)


def test_a_gif_is_served_at_its_screen_size_whatever_its_later_frames():
    """TensorFlow sizes a GIF's canvas by its largest frame: a second frame 5 rows and 3
    columns past the 12 x 10 screen made the served image 15 x 15, where Pillow (and the
    client's result) is 12 x 10."""
    import struct

    def lzw(indices):  # 8-bit codes, a clear code often enough to keep the width 9 bits
        codes = []
        for i, value in enumerate(indices):
            if i % 254 == 0:
                codes.append(256)
            codes.append(int(value))
        codes.append(257)
        bits = sum(code << (9 * i) for i, code in enumerate(codes))
        data = bits.to_bytes((9 * len(codes) + 7) // 8, "little")
        blocks = b"".join(
            bytes([len(data[i : i + 255])]) + data[i : i + 255] for i in range(0, len(data), 255)
        )
        return b"\x08" + blocks + b"\0"

    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    first, second = rng.integers(0, 256, (10, 12)), rng.integers(0, 256, (15, 15))
    gif = b"GIF89a" + struct.pack("<HH", 12, 10) + bytes([0x87, 0, 0]) + palette.tobytes()
    for frame in (first, second):
        height, width = frame.shape
        gif += b"\x2c" + struct.pack("<HHHHB", 0, 0, width, height, 0) + lzw(frame.ravel())
    gif += b"\x3b"
    from penet_tf.image_io import decode_rgb

    expected = decode_rgb(gif, "frames.gif")
    assert expected.shape == (10, 12, 3)
    np.testing.assert_array_equal(expected, palette[first])
    assert _decoded(gif) == (10, 12, 3)


def test_export_options_past_what_serving_reads_are_refused(tmp_path):
    """--max-pixels 10^19 exported a model that refused every request (its warm-up too);
    --version 2^63 a folder TF Serving cannot read as a version, after which every default
    export went on past int64."""
    from penet_tf.export import next_version, photo_limit, version_dir

    with pytest.raises(ValueError, match=r"max_pixels must be at most 1099511627776"):
        photo_limit(PhotoStrategy("full"), 10**19, 10**6)
    with pytest.raises(ValueError, match=r"max_photo_pixels must be at most"):
        photo_limit(PhotoStrategy(), 2**22, 10**19)
    with pytest.raises(ValueError, match="--version must be at most 9223372036854775807"):
        version_dir(tmp_path, 2**63)
    (tmp_path / str(2**63)).mkdir()
    (tmp_path / "7").mkdir()
    assert next_version(tmp_path) == 8
    # Version 2^63 - 1 taken: the next plain export was version 1, never served as latest.
    (tmp_path / str(2**63 - 1)).mkdir()
    with pytest.raises(ValueError, match="the last TF Serving reads"):
        next_version(tmp_path)
    # 007 is version 7 to TF Serving: --version 7 beside it made two folders for one.
    (tmp_path / str(2**63 - 1)).rmdir()
    (tmp_path / "7").rmdir()
    (tmp_path / "007").mkdir()
    assert next_version(tmp_path) == 8
    with pytest.raises(FileExistsError, match="007 is version 7"):
        version_dir(tmp_path, 7)
    # inpaint --model BASE looked for BASE/7 ("SavedModel file does not exist").
    from penet_tf.inpainting import find_saved_model

    for name in ("007", "3", str(2**64)):  # (2^64: past int64, never served)
        (tmp_path / name).mkdir(exist_ok=True)
        (tmp_path / name / "saved_model.pb").write_bytes(b"")
    assert find_saved_model(str(tmp_path)) == str(tmp_path / "007")
    (tmp_path / "7").mkdir()
    (tmp_path / "7" / "saved_model.pb").write_bytes(b"")
    assert find_saved_model(str(tmp_path)) == str(tmp_path / "7")  # (not the listing's pick)


def test_the_client_keeps_the_whole_server_message():
    """The message was cut at its first "]": "... (mask must be [batch, H, W, 1"."""
    from penet_tf.serving.client import _short

    details = (
        "assertion failed: [image and mask height/width differ (mask must be [batch, H, W, 1]"
        " with the image's H, W)] [Condition x == y did not hold element-wise:]\n\t [[{{node}}]]"
    )
    assert _short(details).endswith("[batch, H, W, 1] with the image's H, W)")


def test_a_gif_s_first_frame_is_found_past_long_extensions():
    """The first-frame walk (the screen check, the decoded size) stepped one sub-block at a
    time without the frame walk's run skipping, 10,000 per extension: an 8 x 8 GIF with 200
    comments of 9,999 sub-blocks (4 MB) took 26 s of a server's CPU, and past 10,000
    sub-blocks the frame was not found. One walk serves both now."""
    import io

    from PIL import Image

    from penet_tf.export import _gif_first_frame

    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).save(buffer, "GIF")
    plain = buffer.getvalue()
    at = plain.index(b"\x2c\x00\x00\x00\x00\x08\x00\x08\x00")  # the descriptor, at (0, 0)
    comments = b"\x21\xfe" + b"\x01A" * 20_000 + b"\x00"  # 20,000 one-byte sub-blocks
    gif = plain[:at] + comments * 3 + plain[at:]
    found, left, top, width, height = (int(v) for v in _gif_first_frame(tf.constant(gif)))
    assert (found, left, top, width, height) == (1, 0, 0, 8, 8)
    assert _decoded(gif) == (8, 8, 3)
