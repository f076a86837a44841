"""Passes over the (h*w)^2 score matrix in one attention layer, counted from its graph.

    python benchmarks/attention_passes.py --size 256 512 [--layer 1 2 3 4 5] [--needed-rows 0 64]
                                          [--chunk-mb 192]

Traces ``penet_tf.layers.attention_transfer.attention_transfer`` for at_convN of an
H x H image as the released ``Generator`` has it (its widths and match size; at_conv01,
the default: high H/4 x H/4 x 64, low H/2 x H/2 x 32; one chunk, float32) and follows
the score matrix from the similarity product's output to the transfer product's read:
every op on that path that reads or writes a tensor of at least a quarter of (h*w)^2
elements is listed with its type, output shape and the bytes it moves (those big inputs
read plus big outputs written). Reshapes only relabel a buffer and are listed but not
counted. A fused op
counts once, although it may walk its input several times (softmax: max, exp, sum,
scale): the bytes are a lower bound of the memory traffic.

One chunk in float32 (this count, and at_conv01 up to about 330^2 at the default
192 MiB) takes ``grid_product``; ``--needed-rows 0 H/2`` counts the row band instead.
``--chunk-mb MB`` traces with that chunk budget: the ops of the chunk loop's body are
followed the same way (from the chunk's similarity product; a tensor counts from a
quarter of that product's size) and reported per chunk and times the chunks, for
``chunked_grid_product`` (at_conv01 of 512^2 at 192 MiB; the band's chunks have shapes
known only at run time). A flat prefix ``Slice`` that ends on 64 bytes is a view
(``penet_tf.layers.attention_transfer._prefix``) and counts as a relabel.
"""

import argparse

import tensorflow as tf
from _worker import machine_line

from penet_tf import Generator
from penet_tf.layers.attention_transfer import (
    _grid_chunk_layout,
    attention_transfer,
)

FREE = {"Reshape", "Identity", "Const", "Placeholder", "NoOp", "Shape"}
PRODUCTS = ("BatchMatMulV2", "MatMul")
SLICES = ("StridedSlice", "Slice")
LAYERS = (1, 2, 3, 4, 5)


def high_size(size, layer):
    """at_convN's high-level map of an H x H image is H / 2^(N+1) wide."""
    return size // 2 ** (layer + 1)


def count(size, needed_rows=None, matmul_dtype=None, layer=1, chunk_bytes=None):
    """Returns ``(rows, passes, moved, chunks)``: the whole graph's ops when it has no
    chunk loop (``chunks`` 1), else the loop body's, run ``chunks`` times."""
    h = high_size(size, layer)
    # at_convN reads encoder map N (low) and what fills map N + 1 (high, as wide).
    generator = Generator()
    low_channels = generator.encoder[layer - 1].filters
    high_channels = generator.encoder[layer].filters
    match_size = generator.get_layer(f"at_conv{layer:02d}").match_size
    spec = [
        tf.TensorSpec([1, 2 * h, 2 * h, low_channels]),
        tf.TensorSpec([1, h, h, high_channels]),
        tf.TensorSpec([1, size, size, 1]),
    ]

    def transfer(low, high, mask):
        return attention_transfer(
            low,
            high,
            mask,
            match_size=match_size,
            chunk_bytes=chunk_bytes,
            needed_rows=needed_rows,
            matmul_dtype=matmul_dtype,
        )

    graph = tf.function(transfer).get_concrete_function(*spec).graph
    loops = [op for op in graph.get_operations() if op.type in ("While", "StatelessWhile")]
    products = [
        op.outputs[0].shape.num_elements()
        for op in graph.get_operations()
        if op.type in PRODUCTS and op.outputs[0].shape.is_fully_defined()
    ]
    if not loops:
        threshold = (h * h) ** 2 // 4
        if needed_rows is not None:
            # A band's scores are its rows of the matrix, its largest product (at_conv01):
            # a quarter of the whole matrix left a band smaller than that out of the
            # count ("0 passes, 0.000 GiB" for rows 0-16 at 256^2).
            threshold = min(threshold, max(products) // 4)
        return (*follow(graph, threshold), 1)
    if len(loops) > 1:
        raise SystemExit(f"{len(loops)} chunk loops in the graph; expected one.")
    # The loop body is a function of the graph's library (no public accessor in TF 2.21).
    body = graph._get_function(loops[0].get_attr("body").name).graph
    products = [  # (the loop body's)
        op.outputs[0].shape.num_elements()
        for op in body.get_operations()
        if op.type in PRODUCTS and op.outputs[0].shape.is_fully_defined()
    ]
    layout = _grid_chunk_layout(h, h, chunk_bytes)
    if needed_rows is not None or layout is None or not products:
        # The band's chunks have shapes known only at run time.
        raise SystemExit("--chunk-mb counts chunked_grid_product only (no --needed-rows).")
    chunks = -(-(h + 1) // layout[1])  # chunks of product rows
    return (*follow(body, max(products) // 4), chunks)


def follow(graph, threshold):
    """The ops that carry the score matrix, from the first similarity product on."""

    def big(tensor):
        shape = tensor.shape
        if shape.rank is None or not shape.is_fully_defined():
            return 0
        return shape.num_elements() * tensor.dtype.size if shape.num_elements() >= threshold else 0

    def view(op):
        """A flat prefix slice ending on 64 bytes: TensorFlow returns a view."""
        if op.type != "Slice" or op.inputs[0].shape.rank != 1:
            return False
        begin = tf.get_static_value(op.inputs[1])
        size = op.outputs[0].shape.num_elements()
        return begin is not None and list(begin) == [0] and size is not None and size % 16 == 0

    # The score matrix and what is derived from it: from the similarity product's output
    # down to the transfer product's read. (In deep layers the feature maps and value
    # patches outsize the scores; following the data keeps them out of the count.)
    derived, rows, passes, moved = set(), [], 0, 0
    for op in graph.get_operations():  # in topological order
        product = op.type in PRODUCTS
        starts = not derived and product
        scores_in = [t for t in op.inputs if t.ref() in derived]
        if not starts and not scores_in:
            continue
        read = sum(big(t) for t in scores_in)
        if op.type in SLICES:  # reads what it writes (grid_product's one column: nothing)
            read = min(read, sum(big(t) for t in op.outputs))
        # The transfer product reads the weights; what it writes is the result.
        outputs = [] if product and not starts else [t for t in op.outputs if big(t)]
        derived.update(t.ref() for t in outputs)
        written = sum(big(t) for t in outputs)
        if not read and not written:
            continue
        free = op.type in FREE or view(op)
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
    parser.add_argument(
        "--layer", type=int, nargs="+", default=[1], choices=LAYERS, help="at_convN"
    )
    parser.add_argument(
        "--chunk-mb", type=float, help="chunk budget per image (default: one chunk)"
    )
    args = parser.parse_args(argv)
    print(machine_line())
    for size in args.size:
        for layer in args.layer:
            report(size, layer, args)


def report(size, layer, args):
    needed = tuple(args.needed_rows) if args.needed_rows else None
    dtype = "bfloat16" if args.bfloat16 else None
    chunk_bytes = None if args.chunk_mb is None else int(args.chunk_mb * 2**20)
    rows, passes, moved, chunks = count(size, needed, dtype, layer, chunk_bytes)
    h = high_size(size, layer)
    print(
        f"at_conv{layer:02d} of {size}^2: (h*w)^2 = {(h * h) ** 2:,} scores, "
        f"{(h * h) ** 2 * 4 / 2**30:.4f} GiB in float32"
    )
    for kind, shape, read, written, free in rows:
        note = "  (relabel or view, not counted)" if free else ""
        print(
            f"  {kind:18s} {str(shape):28s} read {read / 2**30:6.3f} GiB, "
            f"write {written / 2**30:6.3f} GiB{note}"
        )
    if chunks == 1:
        print(f"  {passes} passes, {moved / 2**30:.3f} GiB moved")
    else:
        print(
            f"  per chunk: {passes} passes, {moved / 2**30:.3f} GiB moved; {chunks} chunks: "
            f"{chunks * moved / 2**30:.3f} GiB moved"
        )


if __name__ == "__main__":
    main()
