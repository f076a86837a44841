"""penet_tf.convert: TFLite, ONNX and TF.js conversions with builtin ops only.

Each converted model must reproduce the SavedModel's ``serving_default`` (the uint8
composite) on a real photo with holes: known pixels bit-identical, hole pixels within
1/255 on at least 99.9 % of values. A thin generator (base_channels=4) with He-scaled
random weights keeps this fast while making the hole content vary (see
conversion_helpers).
"""

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from conversion_helpers import SIZE, converted, hole_mask, photo, saved_model_output, thin_export
from PIL import Image

from penet_tf import convert as convert_module
from penet_tf import inpainting
from penet_tf.convert import (
    ConversionError,
    check_tflite_builtin_only,
    convert,
    run_tflite,
    tflite_ops,
)
from penet_tf.io_utils import PID_SPACE

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WEB = os.path.join(REPO, "demos", "web")
# ops a one-hot-convolution attention graph must contain, per format
ATTENTION_OPS = {
    "tflite": {"BATCH_MATMUL", "DEPTHWISE_CONV_2D", "SOFTMAX", "RESIZE_BILINEAR"},
    "onnx": {"MatMul", "Conv", "Softmax", "Resize"},
    "tfjs": {"BatchMatMulV2", "DepthwiseConv2dNative", "Softmax", "ResizeBilinear"},
}


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return tmp_path_factory.getbasetemp()


@pytest.fixture(scope="module")
def export(base):
    return thin_export(base)


@pytest.fixture(scope="module")
def case(export):
    """(image, mask, SavedModel output) at 256 x 256, batch 1."""
    image, mask = photo()[None], hole_mask()[None]
    return image, mask, saved_model_output(export, image, mask)


def assert_matches_saved_model(output, reference, image, mask, within=1, fraction=0.999):
    """Known pixels bit-identical; hole values within ``within`` on ``fraction`` of them."""
    assert output.shape == reference.shape and output.dtype == np.uint8
    hole = np.broadcast_to(mask > 0, image.shape)
    np.testing.assert_array_equal(output[~hole], image[~hole])
    # The reference's hole content is not trivial (a wrong op would show).
    assert reference[hole].astype(float).std() > 10
    assert (reference[hole] != image[hole]).mean() > 0.9
    difference = np.abs(output.astype(int) - reference.astype(int))[hole]
    share = (difference <= within).mean()
    assert share >= fraction, f"only {share:.5f} of hole values within {within}/255"
    return difference


def psnr(a, b):
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


# ---------------------------------------------------------------------------- TFLite


def test_tflite_float32_matches_saved_model_and_is_builtin_only(base, case):
    out = converted(base, "tflite")
    info = json.loads((out / "penet_tf.json").read_text())
    model = (out / "model.tflite").read_bytes()
    ops = tflite_ops(model)
    assert ops == info["ops"]
    assert not [op for op in ops if op.startswith("CUSTOM") or "FLEX" in op.upper()]
    assert ATTENTION_OPS["tflite"] <= set(ops)
    assert "READ_VARIABLE" not in ops  # weights frozen (unfrozen ones converted to NaN)

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(out / "model.tflite"))
    details = {d["name"]: d for d in interpreter.get_input_details()}
    shapes = sorted((tuple(d["shape"]), d["dtype"]) for d in details.values())
    assert shapes == [((1, SIZE, SIZE, 1), np.uint8), ((1, SIZE, SIZE, 3), np.uint8)]

    image, mask, reference = case
    output = run_tflite(out / "model.tflite", image, mask)
    difference = assert_matches_saved_model(output, reference, image, mask)
    print(f"\nTFLite float32 vs SavedModel: max |diff| {difference.max()}/255 in the hole")
    # The names penet_tf.json gives, as a signature (there was none, and the output
    # tensor was "Identity").
    signature = {"inputs": sorted(info["inputs"]), "outputs": sorted(info["outputs"])}
    assert interpreter.get_signature_list() == {"serving_default": signature}
    runner = interpreter.get_signature_runner("serving_default")
    np.testing.assert_array_equal(runner(image=image, mask=mask)["inpainted"], output)


@pytest.mark.parametrize("quantize", ["float16", "dynamic"])
def test_tflite_quantized_runs_and_prints_psnr(base, case, quantize):
    float32 = converted(base, "tflite")
    out = converted(base, "tflite", quantize)
    assert (out / "model.tflite").stat().st_size < 0.75 * (float32 / "model.tflite").stat().st_size
    check_tflite_builtin_only(json.loads((out / "penet_tf.json").read_text())["ops"])
    image, mask, _ = case
    reference = run_tflite(float32 / "model.tflite", image, mask)
    output = run_tflite(out / "model.tflite", image, mask)
    hole = np.broadcast_to(mask > 0, image.shape)
    np.testing.assert_array_equal(output[~hole], image[~hole])
    value = psnr(output[hole], reference[hole])
    print(f"\nTFLite {quantize} vs float32: PSNR {value:.1f} dB over the hole pixels")
    assert value > 30, f"{quantize} quantization degrades the hole to {value:.1f} dB"


def test_flex_and_custom_ops_are_rejected():
    check_tflite_builtin_only({"CONV_2D": 1, "SOFTMAX": 2})
    with pytest.raises(ConversionError, match="Flex"):
        check_tflite_builtin_only({"CONV_2D": 1, "CUSTOM:FlexExtractImagePatches": 1})
    with pytest.raises(ConversionError, match="frozen"):
        check_tflite_builtin_only({"READ_VARIABLE": 3})


# ------------------------------------------------------------------------------ ONNX


@pytest.fixture(scope="module")
def onnx_session(base):
    import onnxruntime

    out = converted(base, "onnx")
    info = json.loads((out / "penet_tf.json").read_text())
    assert not [op for op in info["ops"] if ":" in op]  # standard domain only
    assert ATTENTION_OPS["onnx"] <= set(info["ops"])
    return onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])


def test_onnx_has_dynamic_height_and_width(onnx_session):
    inputs = {i.name: i for i in onnx_session.get_inputs()}
    assert set(inputs) == {"image", "mask"}
    outputs = {o.name: o for o in onnx_session.get_outputs()}
    assert set(outputs) == {"inpainted"}
    for tensor in [*inputs.values(), *outputs.values()]:
        assert tensor.type == "tensor(uint8)"
        # named as penet_tf.json says (they were "unk__...")
        assert tensor.shape[:3] == ["batch", "height", "width"], tensor.shape


@pytest.mark.parametrize("height,width", [(SIZE, SIZE), (192, 320), (100, 150)])
def test_onnx_matches_saved_model(onnx_session, export, height, width, case):
    if (height, width) == (SIZE, SIZE):
        image, mask, reference = case
    else:
        image, mask = photo(height, width)[None], hole_mask(height, width, value=1)[None]
        reference = saved_model_output(export, image, mask)
    (output,) = onnx_session.run(None, {"image": image, "mask": mask})
    assert_matches_saved_model(output, reference, image, mask)


def test_onnx_keeps_the_usable_keys_of_thin_strokes_and_specks(onnx_session, export):
    """A 1-pixel stroke at column 62 of 64: TensorFlow's align-corners resize of the mask
    samples 62.999996 (not exactly 0: those keys unusable), onnxruntime's Resize 63.0
    (0: usable), and the ONNX model's hole came back up to 46 levels off."""
    image = photo(64, 64)[None]
    for columns in ([62], [61, 62]):
        mask = np.zeros((1, 64, 64, 1), np.uint8)
        mask[0, 8:56, columns] = 255
        mask[0, 5, 30] = mask[0, 40, 3] = 255  # specks
        (output,) = onnx_session.run(None, {"image": image, "mask": mask})
        reference = saved_model_output(export, image, mask)
        assert_matches_saved_model(output, reference, image, mask, fraction=1.0)


def test_onnx_refuses_a_mask_that_would_broadcast(onnx_session):
    """A [1, 1, 1, 1] mask of 255 made the whole photo a hole, a [1, 64, 1, 1] one whole
    rows: onnxruntime broadcast them, where every other path refuses them."""
    import onnxruntime

    image = photo(64, 64)[None]
    for shape in ((1, 1, 1, 1), (1, 64, 1, 1), (1, 1, 64, 1), (1, 32, 64, 1)):
        with pytest.raises(onnxruntime.capi.onnxruntime_pybind11_state.Fail):
            onnx_session.run(None, {"image": image, "mask": np.full(shape, 255, np.uint8)})


# ----------------------------------------------------------------------------- TF.js


def test_tfjs_graph_model_runs_on_wasm_and_matches(base, case, tmp_path):
    out = converted(base, "tfjs")
    info = json.loads((out / "penet_tf.json").read_text())
    model = json.loads((out / "model.json").read_text())
    assert model["format"] == "graph-model"
    assert info["ops"] == convert_module.tfjs_ops(out / "model.json")
    assert ATTENTION_OPS["tfjs"] <= set(info["ops"])
    for op in ("ExtractImagePatches", "Einsum", "While", "StatelessWhile", "Assert"):
        assert op not in info["ops"]
    # The real check that no op is unsupported: run it in TF.js's wasm backend (Node).
    image, mask, reference = case
    (tmp_path / "in.bin").write_bytes(image.tobytes() + (mask > 0).astype(np.uint8).tobytes())
    result = subprocess.run(
        ["node", "tests/run_model_node.mjs", str(out), str(tmp_path / "in.bin"),
         str(tmp_path / "out.bin"), "wasm"],
        cwd=WEB, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["backend"] == "wasm" and report["size"] == SIZE
    output = np.frombuffer((tmp_path / "out.bin").read_bytes(), np.uint8).reshape(image.shape)
    difference = assert_matches_saved_model(output, reference, image, mask)
    print(f"\nTF.js wasm vs SavedModel: max |diff| {difference.max()}/255, {report['ms']} ms")


# ---------------------------------------------------------------------------- errors


def test_missing_tfjs_venv_says_how_to_create_it(export, tmp_path):
    with pytest.raises(FileNotFoundError, match="make_tfjs_venv.sh"):
        convert(export, "tfjs", tmp_path / "out", tfjs_venv=tmp_path / "no-venv")
    assert not (tmp_path / "out").exists()


def test_make_tfjs_venv_runs_its_python_without_the_callers_pythonpath(tmp_path):
    """scripts/make_tfjs_venv.sh checked (and set up) the venv with the caller's PYTHONPATH:
    a `pip install --target` deployment's gave the venv TensorFlow 2.21, so its check
    failed and it reinstalled. A venv whose Python fails under any PYTHONPATH is taken as
    ready only without it."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    for name, body in (
        ("python", '[ -z "$PYTHONPATH$PYTHONHOME" ]'),
        ("tensorflowjs_converter", ""),
    ):
        (venv / "bin" / name).write_text(f"#!/bin/sh\n{body}\n")
        (venv / "bin" / name).chmod(0o755)
    environment = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path), PYTHONHOME=sys.prefix)
    environment |= {"PYTHON": sys.executable, "PIP_NO_INDEX": "1"}  # (no download if it fails)
    script = os.path.join(REPO, "scripts", "make_tfjs_venv.sh")
    result = subprocess.run(
        ["bash", script, str(venv)], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == f"{venv}: tensorflowjs already installed"


def test_bad_requests_fail_clearly(export, tmp_path, capsys, dead_pid):
    (tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-out").mkdir()  # what a conversion killed with -9 left
    (tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-out" / "model.tflite").write_bytes(b"half")
    with pytest.raises(ValueError, match="multiple of 64"):
        convert(export, "tflite", tmp_path / "out", size=200)
    with pytest.raises(ValueError, match="--quantize applies"):
        convert(export, "onnx", tmp_path / "out", quantize="float16")
    with pytest.raises(FileNotFoundError, match="No SavedModel"):
        convert(tmp_path, "tflite", tmp_path / "out")
    # A conversion that fails touches nothing (it swept the folder first, before).
    assert (tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-out" / "model.tflite").exists()
    (tmp_path / "taken").mkdir()
    with pytest.raises(FileExistsError, match="--force"):
        convert(export, "tflite", tmp_path / "taken")
    assert convert_module.main(["--saved-model", str(tmp_path), "--to", "onnx",
                                "--out", str(tmp_path / "x")]) == 2  # fmt: skip
    assert "error: No SavedModel" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:  # (accepted and ignored before)
        convert_module.main(["--saved-model", str(export), "--to", "onnx", "--size", "100",
                             "--out", str(tmp_path / "x")])  # fmt: skip
    assert exit_info.value.code == 2 and not (tmp_path / "x").exists()
    assert "--size applies to tflite and tfjs" in capsys.readouterr().err
    # --out that holds the export, or lies inside it: refused even with --force (it
    # deleted every version; inside, its variables/ or assets.extra/).
    copy = tmp_path / "copy" / "1"
    shutil.copytree(export, copy)
    for out in (copy, copy.parent):
        with pytest.raises(ValueError, match="holds the export being converted"):
            convert(copy, "tflite", out, force=True)
    for out in (copy / "variables", copy / "assets.extra", copy / "new"):
        with pytest.raises(ValueError, match="is inside the export being converted"):
            convert(copy, "tflite", out, force=True)
    assert sorted(os.listdir(copy)) == sorted(os.listdir(export))
    assert sorted(os.listdir(copy / "variables")) == sorted(os.listdir(export / "variables"))
    # A conversion that runs sweeps what a killed one left beside its --out.
    convert(export, "tflite", tmp_path / "out", size=64, log=lambda *_: None)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".tmp")]
    (tmp_path / "afile").write_text("a file")
    with pytest.raises(ValueError, match="afile is a file, not a folder"):
        convert(export, "tflite", tmp_path / "afile" / "sub")
    with pytest.raises(ValueError, match="image must be uint8, got float32"):  # was black
        run_tflite(tmp_path / "model.tflite", np.zeros((1, 64, 64, 3), np.float32), None)


def test_wrong_generator_config_is_reported(export, tmp_path):
    copy = tmp_path / "1"
    shutil.copytree(export, copy)
    config = copy / "assets.extra" / "penet_tf.json"
    data = json.loads(config.read_text())
    data["generator"]["base_channels"] = 8
    config.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="has shape"):
        convert_module.load_generator_for_conversion(copy)


def test_a_cropping_export_converts_to_a_model_that_says_it_runs_full(export, tmp_path):
    """An ``auto`` export crops photos over 512 px inside the SavedModel; a converted model
    runs the network on the whole input (ONNX of an auto export differed from it by up to
    67/255 in the hole at 640 x 600): the conversion says so, and penet_tf.json too."""
    from penet_tf.high_resolution import PhotoStrategy

    source = tmp_path / "auto" / "1"
    shutil.copytree(export, source)
    metadata = source / "assets.extra" / "penet_tf.json"
    config = json.loads(metadata.read_text())
    config["strategy"] = PhotoStrategy().to_config()  # auto, as `export` writes by default
    metadata.write_text(json.dumps(config))
    lines = []
    info = convert_module.convert(source, "tflite", tmp_path / "out", size=64, log=lines.append)
    assert info["strategy"] == "full"
    assert json.loads((tmp_path / "out" / "penet_tf.json").read_text())["strategy"] == "full"
    notes = [line for line in lines if line.startswith("note: the converted model runs")]
    assert len(notes) == 1 and "the export's auto strategy crops large photos" in notes[0]


def test_what_a_conversion_needs_is_named_before_any_work(tmp_path, monkeypatch):
    """Without the [convert] extra, --to onnx ended in "No module named 'tf2onnx'" after
    loading the export; an installed wheel's default TF.js virtualenv pointed into
    site-packages."""
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tf2onnx" else real(name, *a)
    )
    with pytest.raises(
        ImportError, match=r"--to onnx needs tf2onnx: pip install 'penet_tf\[convert\]'"
    ):
        convert_module.convert(tmp_path / "no-export", "onnx", tmp_path / "out")
    venv = tmp_path / "tfjs"
    (venv / "bin").mkdir(parents=True)
    converter = venv / "bin" / "tensorflowjs_converter"
    converter.write_text("#!/bin/sh\n")
    converter.chmod(0o755)
    monkeypatch.setenv(convert_module.TFJS_VENV_VARIABLE, str(venv))
    monkeypatch.setattr(convert_module, "DEFAULT_TFJS_VENV", str(tmp_path / "none"))
    assert convert_module.tfjs_converter_path() == str(converter)
    windows = tmp_path / "tfjs-windows" / "Scripts" / "tensorflowjs_converter.exe"
    windows.parent.mkdir(parents=True)  # (a Windows virtualenv: it was never found)
    windows.write_text("")
    windows.chmod(0o755)
    assert convert_module.tfjs_converter_path(windows.parents[1]) == str(windows)
    # A variable naming a missing virtualenv: named, not passed over for the checkout's.
    monkeypatch.setattr(convert_module, "DEFAULT_TFJS_VENV", str(venv))
    monkeypatch.setenv(convert_module.TFJS_VENV_VARIABLE, str(tmp_path / "nonexistent"))
    with pytest.raises(
        FileNotFoundError,
        match=r"No tensorflowjs_converter in .*nonexistent \(\$PENET_TF_TFJS_VENV\)",
    ):
        convert_module.tfjs_converter_path()
    monkeypatch.delenv(convert_module.TFJS_VENV_VARIABLE)
    monkeypatch.setattr(convert_module, "DEFAULT_TFJS_VENV", str(tmp_path / "none"))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="pass --tfjs-venv DIR"):
        convert_module.tfjs_converter_path()


def test_force_replaces_an_earlier_conversion_only(export, tmp_path):
    """--force replaced any folder: a user's notes and photos went with it (``--out .``
    would have emptied the working folder)."""
    theirs = tmp_path / "mine"
    (theirs / "photos").mkdir(parents=True)
    (theirs / "notes.txt").write_text("keep")
    with pytest.raises(FileExistsError, match="holds files that are not a conversion's"):
        convert(export, "tflite", theirs, size=64, force=True)
    assert (theirs / "notes.txt").read_text() == "keep" and (theirs / "photos").is_dir()
    out = tmp_path / "empty"  # an empty folder is taken...
    out.mkdir()
    convert(export, "tflite", out, size=64, force=True, log=lambda *_: None)
    assert (out / "model.tflite").stat().st_size > 1000
    (out / "model.tflite").write_bytes(b"old")
    convert(export, "tflite", out, size=64, force=True, log=lambda *_: None)  # ...and replaced
    assert (out / "model.tflite").stat().st_size > 1000


def test_sizes_and_outputs_that_cannot_work_are_refused_first(export, tmp_path, monkeypatch):
    """Refused before the export is loaded: sizes whose attention no runtime of the format
    takes (TF.js 512: "RangeError: Invalid typed array length" at the first inpaint;
    TFLite 1024: 17.9 GB tensors; 6,400,000: an 87-line OverflowError), a dangling
    symbolic link and a name the file system refuses (both found at the rename, after the
    conversion, naming a temporary folder)."""
    monkeypatch.setattr(
        convert_module, "load_generator_for_conversion", lambda *a: pytest.fail("loaded")
    )
    for to, size, message in (
        ("tfjs", 512, "--size 512 is over 448, the largest TF.js's wasm backend runs"),
        ("tflite", 1024, "--size 1024 is over 832, the largest TFLite runs: the attention's "
         "score matrix would hold 4,295 M elements (16.0 GiB)"),
        ("tflite", 6_400_000, "--size 6400000 is over 832"),
        # (numpy's 256 was told it is not a multiple of 64; here it reaches the size bound)
        ("tflite", np.int64(1024), "--size 1024 is over 832"),
        ("tflite", 256.0, "--size must be an integer, got 256.0 (float)"),
    ):  # fmt: skip
        with pytest.raises(ValueError, match=re.escape(message)):
            convert(export, to, tmp_path / "out", size=size, tfjs_venv=tmp_path)
    (tmp_path / "link").symlink_to(tmp_path / "gone")
    with pytest.raises(ValueError, match="is a symbolic link to .*gone, which does not exist"):
        convert(export, "tflite", tmp_path / "link", size=64, force=True)
    with pytest.raises(ValueError, match="its name is 300 bytes, longer than the 255"):
        convert(export, "tflite", tmp_path / ("a" * 300), size=64)
    assert sorted(os.listdir(tmp_path)) == ["link"]


def test_a_broken_export_is_one_line(export, tmp_path, capsys):
    """An export whose variables' data is missing (a copy cut short): a 47-line OpError
    traceback, exit 1, from convert and from inpaint."""
    from penet_tf import inpaint as inpaint_cli

    copy = tmp_path / "1"
    shutil.copytree(export, copy)
    for data in (copy / "variables").glob("variables.data-*"):
        data.unlink()
    cut = tmp_path / "cut" / "1"
    shutil.copytree(export, cut)
    for data in (cut / "variables").glob("variables.data-*"):  # cut short: an IndexError
        data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
    for broken in (copy, cut):
        args = ["--saved-model", str(broken), "--to", "tflite", "--size", "64", "--out",
                str(tmp_path / "o")]  # fmt: skip
        assert convert_module.main(args) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"error: --saved-model {broken}: cannot load the SavedModel (")
        assert len(error.strip().splitlines()) == 1, error
    Image.fromarray(photo(64, 64)).save(tmp_path / "p.png")
    Image.fromarray(hole_mask(64, 64)[..., 0]).save(tmp_path / "m.png")
    args = ["--model", copy, "--images", tmp_path / "p.png", "--masks", tmp_path / "m.png",
            "--out", tmp_path / "r.png"]  # fmt: skip
    assert inpaint_cli.main([str(arg) for arg in args]) == 2
    error = capsys.readouterr().err
    assert f"--model {copy}: cannot load the SavedModel (" in error and "Traceback" not in error
    # Its variables/ folder gone: TensorFlow's two-line "Unsuccessful TensorSliceReader".
    shutil.rmtree(copy / "variables")
    with pytest.raises(ValueError, match=r"--model .*: cannot load the SavedModel \("):
        inpainting.load_inpainter(str(copy))
    # A damaged penet_tf.json: a bare "Expecting ',' delimiter" that named no file.
    damaged = tmp_path / "damaged" / "1"
    shutil.copytree(export, damaged)
    (damaged / "assets.extra" / "penet_tf.json").write_text('{"generator": {}\n')
    with pytest.raises(ValueError, match=r"penet_tf.json is damaged \(not JSON: .*\): export"):
        convert_module.read_export_config(str(damaged))


def test_a_saved_model_that_is_not_penet_tf_s_is_named(tmp_path, monkeypatch):
    """A Keras model.export or any other SavedModel as --model failed at its first photo
    with a 271-line traceback printing the photo's pixels (or KeyError: 'inpainted')."""
    import tensorflow as tf

    class Other(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32)])
        def serve(self, x):
            return {"y": x * 2.0}

    other = Other()
    tf.saved_model.save(other, str(tmp_path / "other" / "1"), signatures=other.serve)
    with pytest.raises(
        ValueError, match=r"not a penet_tf SavedModel \(its serving_default takes x float32"
    ):
        inpainting.load_inpainter(str(tmp_path / "other"))
    latin = os.fsdecode(os.fsencode(str(tmp_path)) + b"/caf\xe9")
    shutil.copytree(tmp_path / "other", latin)
    with pytest.raises(ValueError, match="UTF-8 paths"):  # ('utf-8' codec can't encode ...)
        inpainting.load_inpainter(latin)
    monkeypatch.chdir(latin)  # a relative path is read as given, whatever the folder's name
    with pytest.raises(ValueError, match="--model 1: not a penet_tf SavedModel"):
        inpainting.load_inpainter("1")
    run = tmp_path / "run"  # a training run's folder: the weights inside it are named
    run.mkdir()
    (run / "generator.weights.h5").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"holding one: give --model .*run/generator"):
        inpainting.load_inpainter(str(run))
    # export --weights with the same folder said "No generator weights at .../run"
    from penet_tf.models import load_generator

    with pytest.raises(
        FileNotFoundError,
        match=r"run is a folder, not a generator weights file: give .*run/generator.weights.h5",
    ):
        load_generator(run)
    (run / "generator.weights.h5").unlink()
    (run / "gen_00010.pth").write_bytes(b"")
    (run / "gen_00002.pth").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match=r"file: give .*run/gen_00010.pth"):
        load_generator(run)


def test_sigterm_stops_the_tfjs_converter_and_leaves_nothing(export, tmp_path):
    """A SIGTERM of convert ended Python at once: its converter child went on for a
    while, and its scratch SavedModel stayed beside --out until the next run."""
    import signal
    import sys
    import time

    venv = tmp_path / "tfjs"
    (venv / "bin").mkdir(parents=True)
    started = tmp_path / "converter.pid"
    converter = venv / "bin" / "tensorflowjs_converter"
    converter.write_text(f"#!/bin/sh\necho $$ > {started}.tmp && mv {started}.tmp {started}\n"
                         "exec sleep 120\n")  # fmt: skip
    converter.chmod(0o755)
    site = tmp_path / "site"
    site.mkdir()
    process = subprocess.Popen(
        [sys.executable, "-m", "penet_tf.convert", "--saved-model", str(export), "--to", "tfjs",
         "--size", "64", "--out", str(site / "tfjs"), "--tfjs-venv", str(venv)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while not started.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert started.exists(), process.communicate()
    child = int(started.read_text())
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 143, err
    assert err.strip().splitlines()[-1] == "terminated", err
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0)  # the converter went with it
    assert os.listdir(site) == []  # no scratch model, no half-written --out


def test_the_tfjs_converter_works_beside_out(export, tmp_path, monkeypatch):
    """Its scratch copy of the model lay in /tmp: a SIGTERM or SIGKILL left it there for
    good. Beside --out, as this process's temporary, it is removed after the conversion
    and swept by the next one after a kill."""
    venv = tmp_path / "tfjs"
    (venv / "bin").mkdir(parents=True)
    record = tmp_path / "args.txt"
    converter = venv / "bin" / "tensorflowjs_converter"
    environment = tmp_path / "env.txt"
    converter.write_text(
        f'#!/bin/sh\necho "$@" > {record}\n'
        f'echo "[$PYTHONPATH][$PYTHONHOME][$PYTHONNOUSERSITE]" > {environment}\nexit 3\n'
    )
    converter.chmod(0o755)
    # (a PYTHONPATH naming this process's packages gave the converter TensorFlow 2.21)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(sys.path))
    monkeypatch.setenv("PYTHONHOME", "/usr")
    # (--out .../tfjs, as the README's command: the scratch folder was named as its
    # temporary, and removed the converted model with it)
    with pytest.raises(convert_module.ConversionError, match="exit 3"):
        convert(export, "tfjs", tmp_path / "site" / "tfjs", size=64, tfjs_venv=venv)
    saved_model, output = record.read_text().split()[-2:]
    assert os.path.dirname(os.path.dirname(saved_model)) == str(tmp_path / "site")
    assert os.path.basename(os.path.dirname(saved_model)).startswith(f".tmp-{os.getpid()}.")
    assert os.path.dirname(saved_model) != output and not output.startswith(
        os.path.dirname(saved_model) + os.sep
    )
    assert os.listdir(tmp_path / "site") == []
    assert environment.read_text().strip() == "[][][1]"
