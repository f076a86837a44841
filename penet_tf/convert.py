"""Convert an exported generator to TFLite, TF.js or ONNX, with builtin ops only.

    python -m penet_tf.convert --saved-model savedmodels/demo/1 --to tflite --out converted/tflite
    python -m penet_tf.convert --saved-model savedmodels/demo/1 --to tfjs --out converted/tfjs
    python -m penet_tf.convert --saved-model savedmodels/demo/1 --to onnx --out converted/onnx

The SavedModel (written by ``penet_tf.export``) is not converted as it stands: its
attention may use ``tf.image.extract_patches`` (Flex-only in TFLite, unknown to TF.js,
broken in tf2onnx) and a ``while`` loop over attention chunks. Instead the generator is
rebuilt from ``assets.extra/penet_tf.json`` with one-hot-convolution patches
(``patch_method="conv"``) and no chunking (``attention_chunk_mb=None``, a static graph),
the SavedModel's variables are copied into it, and a concrete function around the same
inference path as ``serving_default`` (``penet_tf.inference.inpaint``) is converted:

* ``tflite``: ``model.tflite``, fixed size: ``image`` uint8 [1, S, S, 3] and ``mask``
  uint8 [1, S, S, 1] (nonzero = hole) -> ``inpainted`` uint8 [1, S, S, 3]. ``--quantize``
  ``float16`` stores float16 weights, ``dynamic`` int8 weights (dynamic-range
  quantization). Runs in ``ai_edge_litert.interpreter.Interpreter``, no Flex delegate.
* ``tfjs``: a graph model (``model.json`` + weight shards), fixed size as for TFLite
  (uint8 tensors are int32 in TF.js). Converted by ``tensorflowjs_converter`` from a
  separate virtualenv (``scripts/make_tfjs_venv.sh``): tensorflowjs pins an older TF.
  ``--quantize float16`` / ``dynamic`` quantize the stored weights to float16 / uint8.
* ``onnx``: ``model.onnx`` (opset 17) with dynamic batch, height and width (any H, W:
  padded to multiples of 64 inside the graph, as ``serving_default`` does).

Every converted model runs the network on its whole input (the ``full`` strategy; the
export's ``auto`` / ``crop`` / ``resize`` plan regions in TensorFlow control flow that is
not converted): it matches a ``full`` export, and an ``auto`` one on photos up to its
trigger; for larger photos give it the region around the holes, as the web demo does
(``demos/web/crop.js``).

Every output directory also holds ``penet_tf.json``: the format, size, inputs, outputs,
``strategy`` (``"full"``), the generator's configuration and the list of ops in the
converted model. The
conversion fails if the result contains a Flex (TF Select) or custom op. The output is
written to a temporary directory beside ``--out`` and renamed into place (what a killed
conversion left there is removed first); ``--force`` replaces an earlier conversion's
folder (with its ``penet_tf.json``) or an empty one, never a folder of other files.
``--size`` is limited to what each format's runtime takes (``MAX_SIZES``: TF.js 448,
TFLite 832), refused before any work.
"""

import argparse
import collections
import json
import numbers
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import (
    convert_variables_to_constants_v2,
)

from penet_tf.cli import run, say
from penet_tf.errors import PenetError, first_few
from penet_tf.inference import ServingArchive, composite_uint8, load_saved_model
from penet_tf.io_utils import (
    atomic_path,
    check_folder_target,
    remove_path,
    sweep_temporaries,
    temporary_path,
)
from penet_tf.models import Generator
from penet_tf.models.generator import SIZE_MULTIPLE
from penet_tf.tfjs_rewrite import rewrite_for_wasm

FORMATS = ("tflite", "tfjs", "onnx")
QUANTIZE = ("none", "float16", "dynamic")
DEFAULT_SIZE = 256
ONNX_OPSET = 17
CONFIG_FILE = "penet_tf.json"  # in the SavedModel's assets.extra/ and in every output
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The TF.js converter's own virtualenv: --tfjs-venv, else $PENET_TF_TFJS_VENV, else the
# checkout's .tfjs-venv (scripts/make_tfjs_venv.sh), else ./.tfjs-venv (an installed wheel
# has no checkout: its default pointed into site-packages).
TFJS_VENV_VARIABLE = "PENET_TF_TFJS_VENV"
DEFAULT_TFJS_VENV = os.path.join(REPO, ".tfjs-venv")
# The optional modules each format needs, all in the [convert] extra.
FORMAT_MODULES = {"onnx": ("tf2onnx", "onnx"), "tflite": ()}
# TF ops the TF.js converter might keep that TF.js (or its wasm backend) cannot run.
TFJS_FORBIDDEN_OPS = ("ExtractImagePatches", "Einsum", "While", "StatelessWhile", "Assert")


class ConversionError(PenetError, RuntimeError):
    """A conversion failed or produced a model that is not builtin-ops only."""


def read_export_config(saved_model_dir):
    """The ``assets.extra/penet_tf.json`` of an export (generator configuration)."""
    path = os.path.join(saved_model_dir, "assets.extra", CONFIG_FILE)
    if not os.path.isfile(os.path.join(saved_model_dir, "saved_model.pb")):
        raise FileNotFoundError(
            f"No SavedModel at {saved_model_dir} (expected saved_model.pb): pass a version "
            "directory written by `python -m penet_tf.export`, e.g. savedmodels/NAME/1."
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"{path} is missing: {saved_model_dir} was not written by penet_tf.export "
            "(its generator configuration is needed to rebuild the network)."
        )
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except ValueError as error:  # (a bare "Expecting ',' delimiter" named no file)
        raise ValueError(f"{path} is damaged (not JSON: {error}): export again") from None
    if not isinstance(config, dict) or not isinstance(config.get("generator"), dict):
        raise ValueError(f"{path} has no 'generator' configuration: {config!r}")
    return config


def _variable_key(name):
    """``generator/dw_conv01/kernel:0`` -> ``dw_conv01/kernel`` (no model name, no :0)."""
    name = name.split(":")[0]
    return name.split("/", 1)[1] if "/" in name else name


def load_generator_for_conversion(saved_model_dir):
    """Rebuilds the exported generator with builtin-op attention and the export's weights.

    Returns ``(generator, config)``: a built ``Generator(**config["generator"],
    patch_method="conv", attention_chunk_mb=None)`` holding the SavedModel's variables,
    and the export's ``penet_tf.json``.
    """
    saved_model_dir = os.fspath(saved_model_dir)
    config = read_export_config(saved_model_dir)
    try:
        generator = Generator(
            **{"dtype": "float32", **config["generator"]},  # (not Keras' global policy)
            patch_method="conv",
            attention_chunk_mb=None,
        )
    except TypeError as error:
        raise ValueError(
            f"{saved_model_dir}: unknown generator configuration {config['generator']}: {error}"
        ) from error
    generator.build()
    loaded = load_saved_model(saved_model_dir, "--saved-model")
    source = {_variable_key(v.name): v for v in loaded.variables}
    target = {_variable_key(v.path): v for v in generator.variables}
    missing = sorted(set(target) - set(source))
    extra = sorted(set(source) - set(target))
    if missing or extra:
        raise ValueError(
            f"{saved_model_dir} does not hold the variables of Generator({config['generator']}): "
            f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
            f"unexpected {extra[:5]}{'...' if len(extra) > 5 else ''}."
        )
    for key, variable in target.items():
        value = source[key]
        if tuple(value.shape) != tuple(variable.shape):
            raise ValueError(
                f"{saved_model_dir}: variable {key} has shape {tuple(value.shape)}, "
                f"Generator({config['generator']}) expects {tuple(variable.shape)}."
            )
        variable.assign(value.numpy())
    return generator, config


def inference_function(generator, height=None, width=None, batch=None):
    """A ``tf.function`` (image, mask) -> {"inpainted": ...} with the given input shape."""
    spec = tf.TensorSpec

    @tf.function(
        input_signature=[
            spec([batch, height, width, 3], tf.uint8, "image"),
            spec([batch, height, width, 1], tf.uint8, "mask"),
        ],
        autograph=False,
    )
    def inpaint_uint8(image, mask):
        # Joined to the image and split again: Concat takes no broadcasting, so the
        # converted model (which has no assertion ops) refuses a mask of another size:
        # ONNX took a [1, 1, 1, 1] mask of 255 for a whole-photo hole, a [1, H, 1, 1] one
        # for whole rows. (In float: composite_uint8 reads it as nonzero = hole.)
        joined = tf.concat([tf.cast(image, tf.float32), tf.cast(mask, tf.float32)], axis=-1)
        return {"inpainted": composite_uint8(generator, image, joined[..., 3:])}

    return inpaint_uint8


# The largest input each fixed-size format runs, by the elements of the attention's
# score matrix, its largest tensor ((S / 4)^4 at size S; the conversion's is up to 10 %
# more): TF.js's wasm backend failed at 512 (290 M elements: "RangeError: Invalid typed
# array length", in Chromium and Node; WebGL takes 2^24) and ran 448 (172 M); TFLite's
# kernels index tensors with 32-bit ints (1024: 4.5 G elements, 17.9 GB each).
MAX_SIZES = {"tfjs": 448, "tflite": 832}


def attention_elements(size):
    """The elements of the finest attention layer's score matrix at a ``size`` input."""
    return (size // 4) ** 4


def _check_size(size, to="tflite"):
    if isinstance(size, bool) or not isinstance(size, numbers.Integral):
        # (numpy's 256 was told it is not a multiple of 64)
        raise ValueError(f"--size must be an integer, got {size!r} ({type(size).__name__}).")
    size = int(size)
    if size < SIZE_MULTIPLE or size % SIZE_MULTIPLE:
        raise ValueError(
            f"--size must be a positive multiple of {SIZE_MULTIPLE} (the generator halves "
            f"the image six times), got {size}."
        )
    if size > MAX_SIZES[to]:
        largest = attention_elements(size)
        where = "TF.js's wasm backend" if to == "tfjs" else "TFLite"
        raise ValueError(
            f"--size {size} is over {MAX_SIZES[to]}, the largest {where} runs: the "
            f"attention's score matrix would hold {largest / 1e6:,.0f} M elements "
            f"({largest * 4 / 2**30:.1f} GiB); convert a smaller size and give the model the "
            "region around the holes (demos/web/crop.js), or use --to onnx (any size)"
        )
    return size


# ---------------------------------------------------------------------------- TFLite


def tflite_bytes(generator, size=DEFAULT_SIZE, quantize="none"):
    """The fixed-size uint8 -> uint8 model as a TFLite flatbuffer (builtin ops only)."""
    size = _check_size(size, "tflite")
    function = inference_function(generator, size, size, batch=1)
    # Freeze the weights into constants first: converting the function with its
    # variables kept READ_VARIABLE ops whose values the converted model never received.
    frozen = convert_variables_to_constants_v2(function.get_concrete_function())

    # The frozen function, called by one that names its output, converted with a trackable
    # object: the model gets the "serving_default" signature (image, mask -> inpainted);
    # the frozen function alone gave none, and an output tensor named "Identity".
    @tf.function(input_signature=function.input_signature, autograph=False)
    def serving_default(image, mask):
        return {"inpainted": frozen(image=image, mask=mask)[0]}

    converter = tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_default.get_concrete_function()], tf.Module()
    )
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
    converter.allow_custom_ops = False
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize != "none":
        raise ValueError(f"--quantize must be one of {QUANTIZE}, got {quantize!r}")
    try:
        return converter.convert()
    except Exception as error:  # the converter raises its own ConverterError types
        raise ConversionError(f"TFLite conversion (builtin ops only) failed: {error}") from error


def tflite_ops(model):
    """Op counts of a TFLite flatbuffer (bytes), custom ops as ``CUSTOM:<name>``."""
    from tensorflow.lite.python import schema_py_generated as schema

    names = {value: name for name, value in vars(schema.BuiltinOperator).items() if name.isupper()}
    parsed = schema.ModelT.InitFromObj(schema.Model.GetRootAs(model, 0))
    codes = []
    for code in parsed.operatorCodes:
        builtin = max(code.builtinCode, code.deprecatedBuiltinCode)
        if builtin == schema.BuiltinOperator.CUSTOM:
            custom = (
                code.customCode.decode() if isinstance(code.customCode, bytes) else code.customCode
            )
            codes.append(f"CUSTOM:{custom}")
        else:
            codes.append(names.get(builtin, f"BUILTIN_{builtin}"))
    counts = collections.Counter()
    for subgraph in parsed.subgraphs:
        for operator in subgraph.operators or []:
            counts[codes[operator.opcodeIndex]] += 1
    return dict(sorted(counts.items()))


def check_tflite_builtin_only(ops):
    """Raises ConversionError when a TFLite op list holds a Flex or custom op."""
    bad = [op for op in ops if op.startswith("CUSTOM") or "Flex" in op]
    if bad:
        raise ConversionError(f"The TFLite model needs Flex/custom ops {bad}: not builtin only.")
    unfrozen = [op for op in ops if op in ("VAR_HANDLE", "READ_VARIABLE", "ASSIGN_VARIABLE")]
    if unfrozen:
        raise ConversionError(
            f"The TFLite model reads variables ({unfrozen}) instead of holding frozen weights."
        )


# ------------------------------------------------------------------------------ ONNX


_TF2ONNX_CATCH_ERRORS = "TF2ONNX_CATCH_ERRORS"


def onnx_model(generator, opset=ONNX_OPSET):
    """The uint8 -> uint8 model as an ``onnx.ModelProto`` with dynamic batch, H and W."""
    import tf2onnx

    function = inference_function(generator)

    def from_function(catch_errors):
        # tf2onnx deep-copies the whole graph before each of its ~50 optimizer passes so
        # that a failing one can be skipped (TF2ONNX_CATCH_ERRORS); without the copies the
        # conversion takes 28 % less time (36.6 s against 50.6 s for a thin generator).
        saved = os.environ.get(_TF2ONNX_CATCH_ERRORS)
        os.environ[_TF2ONNX_CATCH_ERRORS] = "TRUE" if catch_errors else "FALSE"
        try:
            return tf2onnx.convert.from_function(
                function, input_signature=function.input_signature, opset=opset
            )[0]
        finally:
            if saved is None:
                del os.environ[_TF2ONNX_CATCH_ERRORS]
            else:
                os.environ[_TF2ONNX_CATCH_ERRORS] = saved

    try:
        try:
            model = from_function(catch_errors=False)
        except Exception:  # an optimizer failed: tf2onnx's default, which skips it
            model = from_function(catch_errors=True)
    except Exception as error:
        raise ConversionError(f"ONNX conversion with tf2onnx failed: {error}") from error
    # The dynamic dimensions by the names penet_tf.json gives (tf2onnx: "unk__123").
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        for dim, name in zip(dims, ("batch", "height", "width"), strict=False):
            if not dim.HasField("dim_value"):
                dim.dim_param = name
    return model


def onnx_ops(model):
    """Op counts of an ONNX model, ops outside the default domain as ``domain:Op``."""
    counts = collections.Counter()

    def visit(graph):
        for node in graph.node:
            name = (
                node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}:{node.op_type}"
            )
            counts[name] += 1
            for attribute in node.attribute:
                if attribute.g is not None and attribute.g.node:
                    visit(attribute.g)
                for sub in attribute.graphs:
                    visit(sub)

    visit(model.graph)
    return dict(sorted(counts.items()))


def check_onnx_standard_only(model):
    """Raises ConversionError unless every node is a standard ONNX op and the model checks."""
    import onnx

    bad = [op for op in onnx_ops(model) if ":" in op]
    if bad:
        raise ConversionError(f"The ONNX model has non-standard ops {bad}.")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as error:
        raise ConversionError(f"The ONNX model does not validate: {error}") from error


# ----------------------------------------------------------------------------- TF.js


def tfjs_converter_path(tfjs_venv=None):
    """``tensorflowjs_converter`` in ``tfjs_venv`` (default: ``$PENET_TF_TFJS_VENV`` when
    set, else the checkout's ``.tfjs-venv`` or ``./.tfjs-venv``), or a clear error. A
    virtualenv named by ``--tfjs-venv`` or the variable is the only one looked in (a
    variable naming a missing one fell back to another without a word)."""
    chosen = tfjs_venv or os.environ.get(TFJS_VENV_VARIABLE)
    candidates = [chosen] if chosen else [DEFAULT_TFJS_VENV, ".tfjs-venv"]
    named = "" if tfjs_venv or not chosen else f" (${TFJS_VENV_VARIABLE})"
    candidates = [os.path.abspath(venv) for venv in candidates if venv]
    for venv in candidates:
        for converter in (  # (a Windows virtualenv keeps it in Scripts\)
            os.path.join(venv, "bin", "tensorflowjs_converter"),
            os.path.join(venv, "Scripts", "tensorflowjs_converter.exe"),
        ):
            if os.access(converter, os.X_OK):
                return converter
    raise FileNotFoundError(
        f"No tensorflowjs_converter in {' or '.join(dict.fromkeys(candidates))}{named}. "
        "tensorflowjs "
        "pins an older TensorFlow, so it lives in its own virtualenv: create one with a "
        "checkout's `scripts/make_tfjs_venv.sh DIR` and pass --tfjs-venv DIR (or set "
        f"{TFJS_VENV_VARIABLE})."
    )


def require_modules(to):
    """Raises ``ImportError`` naming the ``[convert]`` extra when a module ``to`` needs is
    missing (checked before the export is loaded: it was "No module named 'tf2onnx'",
    after 7 s of loading)."""
    import importlib.util

    missing = [
        name for name in FORMAT_MODULES.get(to, ()) if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise ImportError(f"--to {to} needs {', '.join(missing)}: pip install 'penet_tf[convert]'")


def write_fixed_size_savedmodel(generator, size, path):
    """A SavedModel whose ``serving_default`` is the fixed-size uint8 -> uint8 function."""
    size = _check_size(size)
    archive = ServingArchive(generator)
    spec = tf.TensorSpec
    archive.add_endpoint(
        "serving_default",
        lambda image, mask: {"inpainted": composite_uint8(generator, image, mask)},
        [spec([1, size, size, 3], tf.uint8, "image"), spec([1, size, size, 1], tf.uint8, "mask")],
    )
    archive.write_out(path, verbose=False)


def tfjs_ops(model_json_path):
    """Op counts of a TF.js graph model's ``model.json``, without constants and inputs."""
    with open(model_json_path) as handle:
        topology = json.load(handle)["modelTopology"]
    nodes = list(topology.get("node", []))
    for function in topology.get("library", {}).get("function", []):
        nodes += function.get("nodeDef", [])
    counts = collections.Counter(
        node["op"] for node in nodes if node["op"] not in ("Const", "Placeholder")
    )
    return dict(sorted(counts.items()))


def squeeze_fused_biases(model_json_path):
    """Gives every fused convolution's bias rank 1, as TF.js's kernels require.

    Keras adds a convolution's bias as a [1, 1, 1, C] tensor; tensorflowjs_converter fuses
    it into ``_FusedConv2D`` and squeezes it to [C], except when C == 1 (a one-channel
    convolution, e.g. the attention's fuse branches of a generator with base_channels=4):
    that bias stays [1, 1, 1, 1] and the wasm backend fails with "FusedConv2D only
    supports rank-1 bias". Reshaping the constant (same single value) fixes it. Returns
    the names of the reshaped constants.
    """
    with open(model_json_path) as handle:
        model = json.load(handle)
    nodes = {node["name"]: node for node in model["modelTopology"].get("node", [])}
    consumers = collections.defaultdict(list)
    for node in nodes.values():
        for name in node.get("input", []):
            consumers[name.split(":")[0].lstrip("^")].append(node)
    specs = {spec["name"]: spec for group in model["weightsManifest"] for spec in group["weights"]}
    fixed = []
    for node in nodes.values():
        if node["op"] not in ("_FusedConv2D", "FusedDepthwiseConv2dNative"):
            continue
        bias_name = node["input"][2].split(":")[0] if len(node["input"]) > 2 else None
        spec = specs.get(bias_name)
        if spec is None or len(spec["shape"]) <= 1 or any(d != 1 for d in spec["shape"][:-1]):
            continue
        if any(
            user["op"] not in ("_FusedConv2D", "FusedDepthwiseConv2dNative")
            for user in consumers[bias_name]
        ):
            continue
        spec["shape"] = spec["shape"][-1:]
        const = nodes.get(bias_name)
        if const is not None and "value" in const.get("attr", {}):
            dims = const["attr"]["value"]["tensor"]["tensorShape"]["dim"]
            const["attr"]["value"]["tensor"]["tensorShape"]["dim"] = dims[-1:]
        fixed.append(bias_name)
    if fixed:
        with open(model_json_path, "w") as handle:
            json.dump(model, handle)
    return fixed


# Environment variables that would make the tfjs venv's Python import another install's
# packages (or standard library); left out of the converter's environment.
_OTHER_PYTHONS = ("PYTHONPATH", "PYTHONHOME", "PYTHONUSERBASE", "PYTHONSTARTUP")


def convert_tfjs(generator, size, out_dir, quantize="none", tfjs_venv=None, wasm_rewrites=True):
    """Writes a TF.js graph model into ``out_dir`` (which must exist and be empty).

    With ``wasm_rewrites`` (the default) the graph is then rewritten into ops TF.js's
    wasm backend runs fast, with the same values (``penet_tf.tfjs_rewrite``).
    """
    converter = tfjs_converter_path(tfjs_venv)
    # Beside the output, as this process's temporary: a kill (SIGTERM, SIGKILL) left a
    # copy of the model in /tmp that nothing removed; here the next conversion sweeps it.
    # (its own name: "tfjs" was the temporary of an --out named tfjs, whose model it removed)
    scratch = temporary_path(os.path.abspath(out_dir), "scratch-")
    remove_path(scratch)
    os.mkdir(scratch)
    try:
        saved_model = os.path.join(scratch, "saved_model")
        write_fixed_size_savedmodel(generator, size, saved_model)
        command = [
            converter,
            "--input_format=tf_saved_model",
            "--output_format=tfjs_graph_model",
            "--signature_name=serving_default",
            "--saved_model_tags=serve",
            "--weight_shard_size_bytes=8388608",
        ]
        if quantize == "float16":
            command.append("--quantize_float16=*")
        elif quantize == "dynamic":
            command.append("--quantize_uint8=*")
        elif quantize != "none":
            raise ValueError(f"--quantize must be one of {QUANTIZE}, got {quantize!r}")
        command += [saved_model, out_dir]
        # The converter is its own Python install: a PYTHONPATH naming this process's
        # packages (a `pip install --target` deployment) gave it TensorFlow 2.21, which
        # its tensorflow_decision_forests cannot load ("undefined symbol").
        env = {key: value for key, value in os.environ.items() if key not in _OTHER_PYTHONS}
        env.update(TF_CPP_MIN_LOG_LEVEL="2", CUDA_VISIBLE_DEVICES="", PYTHONNOUSERSITE="1")
        converter_process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
        )
        with converter_process:
            try:
                stdout, stderr = converter_process.communicate()
            except BaseException:  # Ctrl-C, SIGTERM: the converter goes first, and is
                converter_process.kill()  # reaped here (subprocess.run killed it without
                converter_process.wait()  # waiting: a zombie until this process ended)
                raise
        if converter_process.returncode:
            raise ConversionError(
                f"tensorflowjs_converter failed (exit {converter_process.returncode}):\n"
                f"{stdout[-4000:]}{stderr[-4000:]}"
            )
    finally:
        remove_path(scratch)
    model_json = os.path.join(out_dir, "model.json")
    if not os.path.isfile(model_json):
        raise ConversionError(f"tensorflowjs_converter wrote no model.json into {out_dir}")
    squeeze_fused_biases(model_json)
    if wasm_rewrites:
        rewrite_for_wasm(out_dir)
    return model_json


# ------------------------------------------------------------------------ the command


def convert(
    saved_model,
    to,
    out,
    size=DEFAULT_SIZE,
    quantize="none",
    tfjs_venv=None,
    force=False,
    log=print,
    tfjs_wasm_rewrites=True,
):
    """Converts the export ``saved_model`` to ``to`` in the directory ``out``; returns its info.

    Returns the ``penet_tf.json`` written beside the model: ``format``, ``file``,
    ``size`` (None for ONNX: any size), ``inputs``, ``outputs``, ``quantize``,
    ``strategy`` (``"full"``: the network on the whole input), ``ops``
    (op name -> count), ``generator`` and ``source``. ``tfjs_wasm_rewrites=False``
    keeps the TF.js graph as tensorflowjs_converter wrote it (for comparisons).
    """
    if to not in FORMATS:
        raise ValueError(f"--to must be one of {FORMATS}, got {to!r}")
    if quantize not in QUANTIZE:
        raise ValueError(f"--quantize must be one of {QUANTIZE}, got {quantize!r}")
    if to == "onnx" and quantize != "none":
        raise ValueError("--quantize applies to tflite and tfjs; ONNX is converted in float32.")
    if to != "onnx":
        size = _check_size(size, to)
    if to == "tfjs":
        tfjs_converter_path(tfjs_venv)  # fail before the slow part
    require_modules(to)
    check_folder_target(out)
    source, target = os.path.realpath(saved_model), os.path.realpath(out)
    is_export = os.path.isfile(os.path.join(saved_model, "saved_model.pb"))
    if is_export and os.path.commonpath([source, target]) in (source, target):  # even --force
        where = "holds" if os.path.commonpath([source, target]) == target else "is inside"
        raise ValueError(
            f"--out {out} {where} the export being converted ({saved_model}): replacing it "
            "would delete (part of) the export; choose another --out"
        )
    if os.path.lexists(out) and not force:
        raise FileExistsError(f"{out} exists: choose another --out or pass --force to replace it")
    if (
        os.path.isdir(out)
        and os.listdir(out)
        and not os.path.isfile(os.path.join(out, CONFIG_FILE))
    ):
        # (--force replaced any folder, a user's files with it: --out . removed them all)
        theirs = sorted(os.listdir(out))
        raise FileExistsError(
            f"--out {out} holds files that are not a conversion's ({first_few(theirs)}): --force "
            f"replaces only an earlier conversion (a folder with its {CONFIG_FILE}); choose "
            "another --out"
        )
    out = os.path.abspath(out)
    generator, config = load_generator_for_conversion(saved_model)
    strategy = config.get("strategy", {}).get("name", "full")
    if strategy != "full":
        log(
            f"note: the converted model runs the network on the whole input (the full "
            f"strategy); the export's {strategy} strategy crops large photos inside the "
            "SavedModel, which a converted graph does not: give it the region around the "
            "holes (demos/web/crop.js does this for TF.js), or expect other pixels than the "
            "SavedModel's on photos over its trigger"
        )
    sweep_temporaries(os.path.dirname(out))  # what a killed conversion left
    with atomic_path(out, directory=True, replace=force) as temporary:
        fixed = [1, size, size]
        info = {
            "format": to,
            "size": size,
            "inputs": {"image": ["uint8", fixed + [3]], "mask": ["uint8", fixed + [1]]},
            "outputs": {"inpainted": ["uint8", fixed + [3]]},
            "quantize": quantize,
            "strategy": "full",  # the network on the whole input (no crop in the graph)
            "generator": config["generator"],
            "source": os.path.abspath(saved_model),
        }
        if to == "tflite":
            model = tflite_bytes(generator, size, quantize)
            info["ops"] = tflite_ops(model)
            check_tflite_builtin_only(info["ops"])
            info["file"] = "model.tflite"
            with open(os.path.join(temporary, info["file"]), "wb") as handle:
                handle.write(model)
        elif to == "onnx":
            model = onnx_model(generator)
            info["ops"] = onnx_ops(model)
            check_onnx_standard_only(model)
            info.update(
                file="model.onnx",
                size=None,
                opset=ONNX_OPSET,
                inputs={
                    "image": ["uint8", ["batch", "height", "width", 3]],
                    "mask": ["uint8", ["batch", "height", "width", 1]],
                },
                outputs={"inpainted": ["uint8", ["batch", "height", "width", 3]]},
            )
            with open(os.path.join(temporary, info["file"]), "wb") as handle:
                handle.write(model.SerializeToString())
        else:
            model_json = convert_tfjs(
                generator, size, temporary, quantize, tfjs_venv, tfjs_wasm_rewrites
            )
            info["ops"] = tfjs_ops(model_json)
            bad = [op for op in info["ops"] if op in TFJS_FORBIDDEN_OPS]
            if bad:
                raise ConversionError(f"The TF.js model has ops TF.js cannot run: {bad}")
            info["file"] = "model.json"
            info["note"] = "TF.js has no uint8: feed int32 tensors, the output is int32."
        with open(os.path.join(temporary, CONFIG_FILE), "w") as handle:
            json.dump(info, handle, indent=1)
    ops = ", ".join(f"{name} x{count}" for name, count in info["ops"].items())
    log(f"ops ({sum(info['ops'].values())} in all): {ops}")
    log(f"wrote {os.path.join(out, info['file'])}")
    return info


def run_tflite(model_path, image, mask):
    """Runs a converted ``model.tflite`` with ai-edge-litert; uint8 arrays in and out
    (any other dtype is a ValueError: a float image in [0, 1] would be cast to black)."""
    for name, array in (("image", image), ("mask", mask)):
        if np.asarray(array).dtype != np.uint8:
            raise ValueError(f"{name} must be uint8, got {np.asarray(array).dtype}")
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise ImportError(
            "running a TFLite model needs ai-edge-litert: pip install 'penet_tf[convert]'"
        ) from None

    interpreter = Interpreter(model_path=os.fspath(model_path))
    interpreter.allocate_tensors()
    inputs = {detail["name"]: detail for detail in interpreter.get_input_details()}
    for detail in inputs.values():
        array = image if detail["shape"][-1] == 3 else mask
        interpreter.set_tensor(detail["index"], np.asarray(array, np.uint8))
    interpreter.invoke()
    (output,) = interpreter.get_output_details()
    return interpreter.get_tensor(output["index"])


def _main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.convert",
        description="Convert an exported PEN-Net generator to TFLite, TF.js or ONNX "
        "(builtin ops only: no Flex, no custom ops).",
    )
    parser.add_argument(
        "--saved-model", required=True, help="an export version directory, e.g. savedmodels/demo/1"
    )
    parser.add_argument("--to", required=True, choices=FORMATS, help="target format")
    parser.add_argument("--out", required=True, help="output directory (created atomically)")
    parser.add_argument(
        "--size",
        type=int,
        help=f"fixed image size for tflite and tfjs, a multiple of {SIZE_MULTIPLE} "
        f"(default {DEFAULT_SIZE}); not for onnx, which takes any size",
    )
    parser.add_argument(
        "--quantize",
        choices=QUANTIZE,
        default="none",
        help="tflite: float16 weights, or dynamic (dynamic-range int8); tfjs: float16 "
        "weights, or dynamic (uint8 weights); not for onnx (float32)",
    )
    parser.add_argument(
        "--tfjs-venv",
        help="virtualenv with tensorflowjs (default: $PENET_TF_TFJS_VENV, the only one looked "
        "in when set; else the checkout's "
        ".tfjs-venv, or ./.tfjs-venv; a checkout's scripts/make_tfjs_venv.sh DIR makes one)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace --out if it is an earlier conversion (a folder with its penet_tf.json) "
        "or empty; a folder of other files is refused",
    )
    args = parser.parse_args(argv)
    if args.to == "onnx" and args.size is not None:  # (accepted and ignored)
        parser.error("--size applies to tflite and tfjs; ONNX takes any size")
    convert(
        args.saved_model,
        args.to,
        args.out,
        size=DEFAULT_SIZE if args.size is None else args.size,
        quantize=args.quantize,
        tfjs_venv=args.tfjs_venv,
        force=args.force,
        log=say,  # (a path that is not UTF-8: printable)
    )
    return 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
