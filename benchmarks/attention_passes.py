"""Passes over the (h*w)^2 score matrix in one attention layer, counted from its graph.

    python benchmarks/attention_passes.py --size 256 512 [--needed-rows 0 64]

Traces ``penet_tf.layers.attention_transfer.attention_transfer`` for at_conv01 of an
H x H image (high: H/4 x H/4 x 64, low: H/2 x H/2 x 32, one chunk, float32) and lists
every op that reads or writes a tensor of at least a quarter of (h*w)^2 elements: its
type, output shape and the bytes it moves (those big inputs read plus big outputs
written). Reshapes only relabel a buffer and are listed but not counted. A fused op
counts once, although it may walk its input several times (softmax: max, exp, sum,
scale): the bytes are a lower bound of the memory traffic.
"""

import argparse

import tensorflow as tf

from penet_tf.layers.attention_transfer import attention_transfer

FREE = {"Reshape", "Identity", "Const", "Placeholder", "NoOp", "Shape"}


def count(size, needed_rows=None, matmul_dtype=None):
    h = size // 4
    spec = [
        tf.TensorSpec([1, 2 * h, 2 * h, 32]),
        tf.TensorSpec([1, h, h, 64]),
        tf.TensorSpec([1, size, size, 1]),
    ]

    def layer(low, high, mask):
        return attention_transfer(
            low,
            high,
            mask,
            chunk_bytes=None,
            needed_rows=needed_rows,
            matmul_dtype=matmul_dtype,
        )

    graph = tf.function(layer).get_concrete_function(*spec).graph
    threshold = (h * h) ** 2 // 4

    def big(tensor):
        shape = tensor.shape
        if shape.rank is None or not shape.is_fully_defined():
            return 0
        return shape.num_elements() * tensor.dtype.size if shape.num_elements() >= threshold else 0

    rows, passes, moved = [], 0, 0
    for op in graph.get_operations():
        read = sum(big(t) for t in op.inputs)
        written = sum(big(t) for t in op.outputs)
        if not read and not written:
            continue
        free = op.type in FREE
        rows.append(
            (op.type, op.outputs[0].shape.as_list() if op.outputs else [], read, written, free)
        )
        if not free:
            passes += 1
            moved += read + written
    return rows, passes, moved


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs="+", default=[256, 512])
    parser.add_argument("--needed-rows", type=int, nargs=2, help="first last (H/2 rows)")
    parser.add_argument("--bfloat16", action="store_true", help="matmul_dtype='bfloat16'")
    args = parser.parse_args(argv)
    for size in args.size:
        needed = tuple(args.needed_rows) if args.needed_rows else None
        rows, passes, moved = count(size, needed, "bfloat16" if args.bfloat16 else None)
        h = size // 4
        print(
            f"at_conv01 of {size}^2: (h*w)^2 = {(h * h) ** 2:,} scores, "
            f"{(h * h) ** 2 * 4 / 2**30:.2f} GiB in float32"
        )
        for kind, shape, read, written, free in rows:
            note = "  (relabel, not counted)" if free else ""
            print(
                f"  {kind:18s} {str(shape):28s} read {read / 2**30:6.2f} GiB, "
                f"write {written / 2**30:6.2f} GiB{note}"
            )
        print(f"  {passes} passes, {moved / 2**30:.2f} GiB moved")


if __name__ == "__main__":
    main()
