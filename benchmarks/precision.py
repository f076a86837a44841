"""How far each execution path of penet_tf is from the released network's output.

    .venv/bin/python benchmarks/precision.py                    # the shared fixture
    .venv/bin/python benchmarks/precision.py --gen gen_00050.pth --case case.npz

Loads a released generator checkpoint (needs the ``torch`` extra) and its recorded output
on a real photo (``../shared/reference/fixtures/official_256`` by default), then runs
penet_tf's paths on the same input and prints, for each, the max and mean absolute
difference to the released output ([-1, 1] scale), to the float32 path, and the PSNR of
its composited image against the float32 composite (on [0, 1]). Paths: float32 (the
default), float32 under XLA (``jit_compile=True``), chunked attention with the builtin-op
patches (what TFLite / TF.js / ONNX run), ``mixed_bfloat16``, the attention's matmuls in
bfloat16 (``attention_matmul_dtype``) and the composited path's restriction to the hole
(``output_mask``: measured on the hole only).
"""

import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from _worker import machine_line  # noqa: E402

from penet_tf import Generator  # noqa: E402
from penet_tf.convert_torch import load_released_generator  # noqa: E402

FIXTURE = os.path.join(
    os.path.dirname(os.path.abspath(__file__)),
    "..",
    "..",
    "shared",
    "reference",
    "fixtures",
    "official_256",
)
PATHS = {
    "float32": ({}, False),
    "float32-xla": ({}, True),
    "float32-chunked-conv-patches": ({"attention_chunk_mb": 8, "patch_method": "conv"}, False),
    "mixed_bfloat16": ({"dtype": "mixed_bfloat16"}, False),
    "attention-bfloat16": ({"attention_matmul_dtype": "bfloat16"}, False),
    # The composited path's restriction (output_mask = the hole): only the hole counts.
    "float32-output-mask": ({}, False),
}
RESTRICTED = {"float32-output-mask"}


def _strict(value):
    """``value`` with NaN (not measured: a restricted path) and inf (PSNR of identical
    composites) as None, so the JSON line is JSON to strict parsers (Node's
    ``JSON.parse`` stopped at ``Infinity``)."""
    if isinstance(value, dict):
        return {key: _strict(item) for key, item in value.items()}
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def psnr(a, b):
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--gen", default=os.path.join(FIXTURE, "gen.pth"))
    parser.add_argument("--case", default=os.path.join(FIXTURE, "case.npz"))
    args = parser.parse_args(argv)
    print(machine_line())
    case = np.load(args.case)
    image = case["image"][None].astype(np.float32) / 127.5 - 1.0
    mask = case["mask"][None, ..., None].astype(np.float32)
    released = case["output"]

    outputs = {}
    for name, (kwargs, jit) in PATHS.items():
        generator = load_released_generator(args.gen, Generator(**kwargs))
        extra = {"output_mask": mask} if name in RESTRICTED else {}
        run = tf.function(lambda g=generator, e=extra: g(image, mask, **e)[0], jit_compile=jit)
        outputs[name] = tf.cast(run(), tf.float32).numpy()[0]

    def composite(output):
        return (output * mask[0] + image[0] * (1 - mask[0]) + 1) / 2

    report = {}
    hole = np.broadcast_to(mask[0] > 0, released.shape)
    for name, output in outputs.items():
        report[name] = {
            "max_abs_vs_released": float(np.abs(output - released).max()),
            "mean_abs_vs_released": float(np.abs(output - released).mean()),
            "max_abs_vs_released_in_hole": float(np.abs(output - released)[hole].max()),
            "max_abs_vs_float32": float(np.abs(output - outputs["float32"]).max()),
            "composite_psnr_vs_float32_db": psnr(composite(output), composite(outputs["float32"])),
        }
        if name in RESTRICTED:  # exact only where the composite reads it
            for key in ("max_abs_vs_released", "mean_abs_vs_released", "max_abs_vs_float32"):
                report[name][key] = float("nan")
        print(f"{name:30s} " + ", ".join(f"{k} {v:.3g}" for k, v in report[name].items()))
    # (strict JSON: NaN and inf, which json.dumps writes as bare NaN / Infinity, as null)
    print(json.dumps(_strict(report)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
