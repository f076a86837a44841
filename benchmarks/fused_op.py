"""What a custom CPU op for the attention's passes between its two products would buy.

    python benchmarks/fused_op.py [--sizes 256 512] [--rounds 7] [--threads 2]

Between the Gram product and the transfer product, at_conv01's attention runs seven
builtin ops over the (h w)^2 scores, 13 reads and writes of them (``_one_chunk_weights``
where the scores fit in one chunk, ``_chunk_weights`` per chunk otherwise, in
``penet_tf.layers.attention_transfer``): the 3 x 3 box sum, the scale, the softmax, the
image keys' sums, the row factor, the 1e-8 floor, the 2 x 2 box sum. The library keeps
builtin ops because a custom op would not load in TF Serving, TFLite, TF.js or ONNX,
which all take the same graph. This measures what one would buy anyway: it compiles
``benchmarks/fused_op.cc`` (one kernel for those passes: one read of the Gram buffer, one
write of the transfer's operand) with g++ and ``tf.sysconfig``'s flags into a temporary
directory, loads it, and times the generator's forward (batch 1, centred half-size hole,
random weights) as the library runs it and with those two functions swapped for the op,
alternating in one process. It prints the medians, the spread, the per-round ratio and
the largest difference between the two outputs.
"""

import argparse
import os
import shutil
import subprocess
import tempfile
import time

import numpy as np
import tensorflow as tf
from _worker import centre_mask, machine_line, random_image  # compare_released.py's inputs

HERE = os.path.dirname(os.path.abspath(__file__))


def build_op(directory):
    """Compiles fused_op.cc against the installed TensorFlow and loads it."""
    if shutil.which("g++") is None:
        raise SystemExit("fused_op.py needs g++ to build benchmarks/fused_op.cc")
    library = os.path.join(directory, "fused_op.so")
    command = [
        "g++",
        "-shared",
        "-fPIC",
        "-O3",
        "-march=native",
        # TensorFlow's bundled Eigen does not compile its AVX512-FP16 packets with g++ 12
        # ("PacketMathFP16.h: expected initializer before '<'"): on CPUs that have them
        # (Sapphire Rapids Xeons) -march=native turns them on, so they are turned off.
        *_accepted_flags(["-mno-avx512fp16"]),
        "-Wno-deprecated-declarations",
        *_accepted_flags(["-Wno-interference-size"]),
        *tf.sysconfig.get_compile_flags(),
        os.path.join(HERE, "fused_op.cc"),
        "-o",
        library,
        *tf.sysconfig.get_link_flags(),
    ]
    built = subprocess.run(command, capture_output=True, text=True)
    if built.returncode:
        raise SystemExit(f"building fused_op.cc failed:\n{compiler_errors(built.stderr)}")
    return tf.load_op_library(library)


def _accepted_flags(flags):
    """The flags this g++ accepts (older ones reject -mno-avx512fp16)."""
    probe = subprocess.run(
        ["g++", *flags, "-x", "c++", "-fsyntax-only", "-"],
        input="",
        capture_output=True,
        text=True,
    )
    return flags if probe.returncode == 0 else []


def compiler_errors(stderr, limit=3000):
    """The compiler's error lines first (a failed build's stderr ends in notes and
    warnings, which hid the error when only its tail was shown)."""
    lines = stderr.splitlines()
    errors = [line for line in lines if " error: " in line or line.startswith("error")]
    shown = "\n".join(errors) if errors else stderr[-limit:]
    return shown[:limit]


def fused_weights(op):
    """Stand-ins for ``_chunk_weights`` and ``_one_chunk_weights`` that run the op. Their
    callers read only the attention's first column, which is what the op returns of it."""

    def chunk_weights(gram, wide, view_rows, grid_factor, inside, row_factor):
        scored = gram.shape[0] - 1
        column, boxed = op.penet_fused_weights(
            gram,
            grid_factor,
            inside,
            row_factor[:, 0],
            width=wide,
            box3_rows=scored // wide,
            box2_rows=view_rows,
            out_rows=view_rows * wide,
        )
        return column[:, None], boxed

    def one_chunk_weights(gram, grid_h, grid_w, grid_factor, inside):
        rows = tf.pad(inside, [[0, 0], [0, 1]])
        images = [
            op.penet_fused_weights(
                gram[b],
                grid_factor[b],
                inside[b],
                rows[b],
                width=grid_w,
                box3_rows=grid_h,
                box2_rows=grid_h,
                out_rows=grid_h * grid_w + 1,
            )
            for b in range(gram.shape[0])
        ]
        column = tf.stack([column for column, _ in images])
        return column[:, :, None], tf.stack([boxed for _, boxed in images])

    return {"_chunk_weights": chunk_weights, "_one_chunk_weights": one_chunk_weights}


def forward(size, stand_ins=None):
    """The generator's forward at ``size``^2 as a traced function, with the attention's
    weights from ``stand_ins`` (else the library's) while tracing."""
    import keras

    from penet_tf import Generator
    from penet_tf.layers import attention_transfer

    keras.utils.set_random_seed(0)
    generator = Generator()
    generator.build()
    image = tf.constant(random_image(1, size))
    mask = tf.constant(centre_mask(1, size))
    run = tf.function(lambda: generator(image, mask)[0])
    originals = {name: getattr(attention_transfer, name) for name in stand_ins or {}}
    try:
        for name, function in (stand_ins or {}).items():
            setattr(attention_transfer, name, function)
        output = run().numpy()  # traces with the stand-ins
    finally:
        for name, function in originals.items():
            setattr(attention_transfer, name, function)
    return run, output


def main():
    from penet_tf.cli import positive_int  # (0 rounds or runs crashed the statistics)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--rounds", type=positive_int, default=7, help="alternations per size")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    print(machine_line())
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    with tempfile.TemporaryDirectory() as directory:
        stand_ins = fused_weights(build_op(directory))
        for size in args.sizes:
            paths = {"builtin ops": forward(size), "fused op": forward(size, stand_ins)}
            for run, _ in paths.values():  # one more untimed call each
                run().numpy()
            times = {name: [] for name in paths}
            for round_ in range(args.rounds):
                for name in list(paths)[:: 1 if round_ % 2 == 0 else -1]:
                    start = time.perf_counter()
                    paths[name][0]().numpy()
                    times[name].append(time.perf_counter() - start)
            print(f"forward {size}^2, batch 1, {args.threads} threads, {args.rounds} rounds")
            for name, seconds in times.items():
                ms = 1000 * np.array(seconds)
                spread = f"({ms.min():.1f}-{ms.max():.1f})"
                print(f"  {name:12s} median {np.median(ms):8.1f} ms  {spread}")
            ratios = np.array(times["fused op"]) / np.array(times["builtin ops"])
            difference = np.abs(paths["fused op"][1] - paths["builtin ops"][1]).max()
            print(
                f"  fused / builtin per round: min {ratios.min():.3f} median "
                f"{np.median(ratios):.3f} max {ratios.max():.3f}; largest output "
                f"difference {difference:.2e}"
            )


if __name__ == "__main__":
    main()
