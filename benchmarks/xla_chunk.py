"""One attention chunk's passes between its two products, with and without XLA.

    python benchmarks/xla_chunk.py [--size 512] [--chunk-mb 192] [--threads 2] [--repeats 7]

``chunked_grid_product`` (``penet_tf.layers.attention_transfer``) spends about 0.1 s per
chunk of at_conv01 of a 512^2 photo on elementwise passes between the Gram product and
the transfer product: the 3 x 3 box sum, the scale, the softmax, the image keys' sums,
the row factor and the 1e-8 floor (``_grid_weights``), the 2 x 2 box sum. They are
memory-bound, and fusing them is what XLA does. This times that stretch of the chunk
loop's body (``_chunk_weights``, the body's own code) on the layout
``_grid_chunk_layout`` picks, as a plain ``tf.function`` and as
``tf.function(jit_compile=True)``, alternating, on random scores of the chunk's shape;
compile time is excluded. It prints the medians, the range and the largest difference
between the two. Where at_conv01's scores fit in one chunk (256^2) the layer runs
``grid_product``, the same passes over one buffer; this still times one chunk of the
layout the budget would give.
"""

import argparse
import time

import numpy as np
import tensorflow as tf
from _worker import machine_line

from penet_tf.cli import positive_int
from penet_tf.layers.attention_transfer import _chunk_weights, _grid_chunk_layout


def chunk_passes(height, chunk_bytes):
    """The body's stretch from the chunk's Gram product to the transfer's operand, and
    a random Gram buffer of its shape."""
    wide, rows, step = _grid_chunk_layout(height, height, chunk_bytes)
    n = (height + 2) * wide  # _GRID_PADDING: one zero row above and below
    gram_rows, view_rows = rows + 2 + step, rows + 2
    scored = gram_rows * wide
    rng = np.random.default_rng(0)
    grid_factor = tf.constant(rng.uniform(0, 10, [1, n]), tf.float32)
    inside = tf.constant(rng.uniform(size=[n]) > 0.1, tf.float32)
    row_factor = tf.constant(rng.uniform(size=[scored, 1]) > 0.1, tf.float32)

    def passes(gram):
        return _chunk_weights(gram, wide, view_rows, grid_factor, inside, row_factor)[1]

    gram = tf.constant(rng.standard_normal([scored + 1, n]), tf.float32)
    return passes, gram


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512, help="photo size; at_conv01 is size/4")
    parser.add_argument("--chunk-mb", type=float, default=192)
    parser.add_argument("--threads", type=positive_int, default=2)
    parser.add_argument("--repeats", type=positive_int, default=7)  # (0: a NumPy traceback)
    args = parser.parse_args()
    print(machine_line())
    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    height = args.size // 4
    if _grid_chunk_layout(height, height, int(args.chunk_mb * 2**20)) is None:
        raise SystemExit(f"at_conv01 of {args.size}^2 does not take chunked_grid_product")
    passes, gram = chunk_passes(height, int(args.chunk_mb * 2**20))
    paths = {
        "tf.function": tf.function(passes),
        "jit_compile": tf.function(passes, jit_compile=True),
    }
    outputs = {name: fn(gram).numpy() for name, fn in paths.items()}  # traces and compiles
    times = {name: [] for name in paths}
    for _ in range(args.repeats):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn(gram)[0, 0].numpy()
            times[name].append(time.perf_counter() - start)
    shape = list(gram.shape)
    print(f"at_conv01 of {args.size}^2, one chunk: Gram buffer {shape}, {args.threads} threads")
    for name, seconds in times.items():
        ms = 1000 * np.array(seconds)
        print(f"  {name:12s} median {np.median(ms):7.1f} ms  ({ms.min():.1f}-{ms.max():.1f})")
    ratio = np.median(times["jit_compile"]) / np.median(times["tf.function"])
    difference = np.abs(outputs["jit_compile"] - outputs["tf.function"]).max()
    print(f"  jit_compile / tf.function {ratio:.2f}, largest difference {difference:.2e}")


if __name__ == "__main__":
    main()
