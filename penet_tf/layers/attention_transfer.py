"""The Attention Transfer Network (ATN) of PEN-Net, paper section 3.1, eqs 2-4."""

import numbers

import keras
import tensorflow as tf

from penet_tf.initializers import kernel_initializer
from penet_tf.layers.patches import check_patch_method, extract_patches

SIMILARITIES = ("gram", "patches")
_MIN_NORM = 1e-4  # the released network divides each key by max(|key|, 1e-4)
_MIN_ATTENTION = 1e-8  # ... and clamps the attention from below by 1e-8
_MAX_CHUNK_GROWTH = 4  # chunks may exceed their budget up to this factor (rows_per_chunk)
MIN_CHUNK_ROWS = 5  # inference chunks grow towards this many rows (rows_per_chunk)


def resize_align_corners(images, size):
    """Bilinear resize with ``align_corners=True`` (PyTorch's ``F.interpolate`` mode)."""
    return tf.raw_ops.ResizeBilinear(
        images=images, size=size, align_corners=True, half_pixel_centers=False
    )


def _align_corners_sources(size_in, size_out):
    """The two source indices each of ``size_out`` positions of an align-corners bilinear
    resize from ``size_in`` reads, the second only where its weight is nonzero (else
    the first again), with TensorFlow's (and PyTorch's) float32 arithmetic: the scale
    (in - 1) / (out - 1) rounded to float32, then times the output index."""
    size_in = tf.cast(size_in, tf.int32)
    scale = tf.cast(size_in - 1, tf.float32) / tf.cast(tf.maximum(size_out - 1, 1), tf.float32)
    position = tf.cast(tf.range(size_out), tf.float32) * scale
    lower = tf.cast(tf.floor(position), tf.int32)
    upper = tf.minimum(tf.cast(tf.math.ceil(position), tf.int32), size_in - 1)
    return lower, upper


def resized_mask_nonzero(mask, size):
    """1.0 where ``resize_align_corners(mask, size)`` of a non-negative ``mask`` is
    nonzero, else 0.0 (float32, [batch, H, W, 1]), the same on any runtime. (Exactly
    TensorFlow's zeros for the generator's 0 / 1 masks; a soft mask's values under about
    1e-30 are nonzero here where TensorFlow's products flush them to 0.)

    The attention's usable keys are those whose resized mask is exactly 0, a test that
    the resize's rounding decides: for a mask column 62 of 64 and 16 output columns,
    TensorFlow samples 62.999996 (the mask's 3.8e-6 there: not usable) where
    onnxruntime's Resize samples 63.0 (0: usable), and a converted ONNX model's hole
    came back up to 87 levels off for a thin stroke. Here the sampled indices are
    computed as TensorFlow computes them and the nonzero pixels gathered, in ops that
    every conversion runs the same (equal to TensorFlow's zeros on thin lines, specks
    and single soft pixels, downsampled and upsampled: tests/test_attention_transfer.py)."""
    shape = tf.shape(mask)
    rows = _align_corners_sources(shape[1], size[0])
    columns = _align_corners_sources(shape[2], size[1])
    # (rows first, then columns: the full-size mask is read once, by the row gathers)
    read = tf.maximum(*(tf.abs(tf.gather(mask, index, axis=1)) for index in rows))
    read = tf.maximum(*(tf.gather(read, index, axis=2) for index in columns))
    return tf.cast(tf.not_equal(read, 0), tf.float32)


def _static_or_dynamic(tensor):
    static = tensor.shape.as_list()
    dynamic = tf.shape(tensor)
    return [dynamic[i] if dim is None else dim for i, dim in enumerate(static)]


def rows_per_chunk(height, width, chunk_bytes, min_rows=1, halo=1, keys=None):
    """How many query rows one chunk of attention scores may hold.

    A chunk scores ``rows + halo`` query rows of ``width`` queries against ``keys``
    keys (default ``height * width``, all of them), ``(rows + halo) * width * keys * 4``
    bytes per image in float32. Returns ``height`` when everything fits, else the most
    rows that fit (at least 1). Where that is fewer than ``min_rows``, chunks grow
    towards ``min_rows`` rows within 4x the budget: a chunk of the band also computes
    three rows besides its own (the halo row, and the Gram similarity's rows above and
    below), so 2-row chunks (at_conv01 of a 1024^2 photo with the default 192 MiB) do
    2.5x the Gram work of one pass and 5-row ones 1.6x. Works on Python ints (static
    shapes: no loop is built when one chunk suffices) and on scalar tensors (dynamic
    shapes).
    """
    if chunk_bytes is None:
        return height
    if keys is None:
        keys = height * width
    if all(isinstance(value, int) for value in (height, width, keys)):
        row_bytes = width * keys * 4
        rows = max(1, chunk_bytes // row_bytes - halo)
        if rows < min_rows:
            rows = max(rows, min(min_rows, _MAX_CHUNK_GROWTH * chunk_bytes // row_bytes - halo))
        return min(height, rows)
    row_bytes = tf.cast(width, tf.int64) * tf.cast(keys, tf.int64) * 4
    budget = tf.constant(chunk_bytes, tf.int64)
    rows = tf.maximum(budget // row_bytes - halo, 1)
    grown = tf.minimum(
        tf.constant(min_rows, tf.int64), _MAX_CHUNK_GROWTH * budget // row_bytes - halo
    )
    rows = tf.maximum(rows, grown)
    return tf.cast(tf.minimum(rows, tf.cast(height, tf.int64)), tf.int32)


# Both the 3 x 3 Gram similarity and the polyphase transfer lay feature positions out on
# a zero-padded grid: 1 row above and below, 2 columns left and 1 right. The extra left
# column keeps every diagonal window used below clear of the grid's left border.
_GRID_PADDING = [[0, 0], [1, 1], [2, 1], [0, 0]]


def _grid_width(width):
    return width + 3


# ``low`` (twice the grid's resolution) padded so that its 2 x 2 block (gy, gx) holds the
# transfer values of grid position (gy, gx) (``attention_transfer``): 2 p - 1 rows or
# columns before a grid padding of p, 2 p + 1 after.
_LOW_PADDING = [[0, 0], *[[2 * a - 1, 2 * b + 1] for a, b in _GRID_PADDING[1:3]], [0, 0]]


def _blocks_to_depth(images):
    """[B, 2H, 2W, C] -> [B, H, W, 4 C]: ``tf.nn.space_to_depth(images, 2)`` (block offset
    (by, bx) in channel block 2 by + bx) as reshapes and a rank-4 transpose, which every
    target has (TF.js has no SpaceToDepth) and TensorFlow runs 5x faster on these CPUs
    than the four strided slices ``images[:, by::2, bx::2]`` (0.7 against 4.8 ms for
    [1, 128, 128, 32])."""
    batch, rows, columns, channels = _static_or_dynamic(images)
    pairs = tf.reshape(images, [batch * (rows // 2), 2, columns // 2, 2 * channels])
    pairs = tf.transpose(pairs, [0, 2, 1, 3])
    return tf.reshape(pairs, [batch, rows // 2, columns // 2, 4 * channels])


def _crop(tensor, begin, size, fast_gradient=False):
    """``tensor[b : b + s]`` in every dimension (``s = -1``: to the end).

    With ``fast_gradient`` a ``Slice`` op, whose gradient is one pad: on these CPUs 5x
    faster than the gradient of a ``StridedSlice`` (a [4, 18, 67, 66, 67] crop: 0.05 s
    against 0.26 s), which took a third of the training step's attention backward.
    Otherwise the ``StridedSlice`` of Python indexing, which ``penet_tf.tfjs_rewrite``
    rewrites for TF.js.
    """
    if fast_gradient:
        return tf.slice(tensor, begin, size)
    pairs = zip(begin, size, strict=True)
    ends = [None if isinstance(s, int) and s == -1 else b + s for b, s in pairs]
    return tensor[tuple(slice(b, e) for b, e in zip(begin, ends, strict=True))]


def diagonal_box_sum(matrix, query_rows, grid_width, window, fast_gradient=False, across_rows=True):
    """Averages ``window x window`` diagonal shifts of a [queries, keys] matrix.

    Queries and keys are both positions of grids ``grid_width`` wide, flattened row-major
    (``query_rows`` rows of queries, any number of key rows). The result is

        out[q, c] = mean over (dy, dx) of matrix[q + dy * grid_width + dx, c + dy * grid_width + dx]

    over a ``window x window`` block of offsets, anchored at (0, 0) for ``window = 2`` and
    centred for ``window = 3`` (as ``avg_pool2d(..., "SAME")`` places windows). Moving
    query and key together by d moves the flat index by d * (keys + 1); so in the same
    buffer viewed as rows of ``keys + 1`` these are plain row shifts, and the whole sum is
    one ``avg_pool2d`` over a [query_rows, grid_width, keys + 1] view: one pass over the
    matrix instead of window^2 shifted copies. Windows must stay inside the query grid for
    the entries that are used (the grid padding above guarantees it).

    With ``across_rows=False`` only the ``window`` shifts along a row (dy = 0) are
    averaged; then the keys may lie on any grid (a row shift of the query moves the key by
    the same one position), so the queries can be a window of a wider key grid.

    Args:
        matrix: [batch, query_rows * grid_width, keys].
        fast_gradient: crop with ``Slice`` ops (see ``_crop``), for graphs that take a
            gradient.
        across_rows: ``window x window`` offsets (default) or ``1 x window``.

    Returns:
        [batch, query_rows * grid_width, keys].
    """
    batch = tf.shape(matrix)[0]
    queries = query_rows * grid_width
    keys = matrix.shape[-1] if matrix.shape[-1] is not None else tf.shape(matrix)[-1]
    flat = tf.reshape(matrix, [batch, queries * keys])
    flat = tf.pad(flat, [[0, 0], [0, queries]])  # to rows of keys + 1
    view = tf.reshape(flat, [batch, query_rows, grid_width, keys + 1])
    pooled = tf.nn.avg_pool2d(view, [window if across_rows else 1, window], 1, "SAME")
    pooled = tf.reshape(pooled, [batch, queries * (keys + 1)])
    pooled = _crop(pooled, [0, 0], [-1, queries * keys], fast_gradient)
    return tf.reshape(pooled, [batch, queries, keys])


def attention_transfer(
    low,
    high,
    mask,
    *,
    match_size=3,
    softmax_scale=10.0,
    patch_method="extract_patches",
    similarity="gram",
    chunk_bytes=192 * 2**20,
    recompute_gradient=False,
    backward_chunk_bytes=8 * 2**20,
    return_attention=False,
    needed_rows=None,
    matmul_dtype=None,
    min_chunk_rows=MIN_CHUNK_ROWS,
    needed_columns=None,
):
    """Fills ``low`` with patches chosen by attention on ``high`` (paper eqs 2-4).

    Exactly the released network's attention (see ``AttentionTransfer``), batched and
    computed in chunks of query rows so that at most ``chunk_bytes`` of scores per image
    (plus one halo row above and below) exist at once.
    In float32 with the Gram similarity (no restriction, recomputed gradient or returned
    attention) the scores stay on the padded grid, with fewer passes over them:
    ``grid_product`` where one chunk holds them all, ``chunked_grid_product`` where
    chunks of at least 8 rows do and the map's size is known while tracing (at_conv01
    of a 512^2 photo).

    Args:
        low: [B, 2h, 2w, C1] low-level features; 4 x 4 patches of it are transferred.
        high: [B, h, w, C2] high-level features; attention is computed on them.
        mask: [B, H, W, 1] with 1 = hole, any resolution (resized to h x w).
        recompute_gradient: with ``True`` the attention (scores, softmax, transfer weights)
            is wrapped in a custom gradient that keeps only its small inputs for the
            backward pass and recomputes the attention there, in chunks of
            ``backward_chunk_bytes`` of scores per image: no (h * w)^2 tensor outlives the
            forward pass. The values are the same; only the gradient's memory differs.
            Not for graphs that get exported (SavedModel cannot save this gradient).
        backward_chunk_bytes: chunk budget of the recomputing backward pass, and of its
            forward pass (``None``: one chunk). 8 MiB: a 256^2, batch-4 training step
            peaks 0.25 GB lower than with 16 MiB (2.10 against 2.34 GB) for 12 % more
            time (the halo row each chunk recomputes); 4 MiB saves 0.04 GB more for
            another 15 % (benchmarks/README.md, train-256-b4).
        return_attention: also return the attention weights (eq 3), the very tensor the
            transfer multiplies with. All scores are then computed in one chunk (the
            returned tensor is (h * w)^2 anyway) and the gradient is plain autodiff.

        needed_rows: ``(first, last)``, rows of the result (0 ... 2h) that must be exact,
            Python ints or scalar tensors; ``None``: all. Only the queries those rows read
            are scored (product rows ``first // 2`` to ``(last - 1) // 2 + 1``, the 2 x 2
            box needing one query row more): a hole's band of a large image costs
            O(band * h * w) instead of O((h * w)^2). Rows outside are not the attention's
            (they are zero); the keys stay complete. Not with ``recompute_gradient`` or
            ``return_attention``.
        needed_columns: ``(first, last)``, columns of the result (0 ... 2w) that must be
            exact as well (with ``needed_rows``, or all rows). With chunks
            (``chunk_bytes`` set: the TF runtime's graphs, not the static ones of the
            conversions) a window that is cheaper than the row band (narrower than
            about 0.8 of the width where the band's chunks hold 23 rows, any window where
            they hold 1: ``_WINDOW_COST``, ``_BAND_EXTRA_ROWS``) is computed from only the
            queries it reads, each scored once against all keys (``window_transfer``): a
            hole of a large photo costs O(window * h * w). Outside the window the result
            is zero, not the attention's.

        min_chunk_rows: inference chunks (not the training path's) grow towards this
            many query rows, within 4x ``chunk_bytes``, where the budget holds fewer
            (``rows_per_chunk``): at_conv01 of a 1024^2 photo takes 5-row chunks instead
            of 2-row ones: composited inference 2.4-2.9x faster for 0.7 GB more
            (benchmarks/README.md).
        matmul_dtype: ``None`` (the default: float32 scores, the transfer in ``low``'s
            dtype) or ``"bfloat16"``: both matrix products (the Gram similarity and the
            transfer) take bfloat16 operands (AVX512-BF16 / AMX on CPUs, tensor cores on
            GPUs), while the box sums, the softmax and the floors stay float32. Faster,
            not exact: see benchmarks/README.md for its distance from the release.

    Returns:
        [B, 2h, 2w, C1] in ``low``'s dtype; with ``return_attention``, the pair
        ``(transferred, attention)``, ``attention`` float32 [B, h * w, h * w]: row q is
        query position (q // w, q % w) of ``high``, column l key position (l // w, l % w);
        a row sums to 1 when every key is usable (unusable keys count exp(0 - max) in the
        denominator, then carry the 1e-8 floor).
    """
    check_patch_method(patch_method)
    restricted = needed_rows is not None or needed_columns is not None
    if restricted and (recompute_gradient or return_attention):
        raise ValueError(
            "needed_rows / needed_columns restrict inference; they cannot be combined with "
            "recompute_gradient or return_attention."
        )
    if similarity not in SIMILARITIES:
        raise ValueError(f"Unknown similarity {similarity!r}: expected one of {SIMILARITIES}.")
    if match_size not in (1, 3):
        raise ValueError(f"match_size must be 1 or 3, got {match_size}.")
    low, high, mask = (tf.convert_to_tensor(t) for t in (low, high, mask))
    channels_low = low.shape[-1]
    batch, height, width, channels_high = _static_or_dynamic(high)
    length = height * width
    pad = match_size // 2
    high = tf.cast(high, tf.float32)
    grid_h, grid_w = height + 2, _grid_width(width)
    grid_keys = grid_h * grid_w

    # Keys are usable where the k x k patch of the resized mask is all zero (mean == 0):
    # where the resize is nonzero, exactly as TensorFlow's (resized_mask_nonzero).
    small_mask = resized_mask_nonzero(tf.cast(mask, tf.float32), [height, width])
    mask_patches = extract_patches(small_mask, match_size, 1, pad, patch_method)
    usable = tf.cast(tf.equal(tf.reduce_mean(mask_patches, axis=-1), 0.0), tf.float32)
    usable = tf.reshape(usable, [batch, 1, length])

    # Eq 2 as released: score(q, l) = <patch_q, patch_l> / max(|patch_l|, 1e-4). The key
    # norm, the softmax scale and the usable mask fold into one factor per key.
    squares = tf.reduce_sum(tf.square(high), axis=-1, keepdims=True)
    key_norms = tf.sqrt(
        tf.reduce_sum(extract_patches(squares, match_size, 1, pad, patch_method), axis=-1)
    )
    key_factor = (
        softmax_scale * usable / tf.maximum(tf.reshape(key_norms, [batch, 1, length]), _MIN_NORM)
    )
    patch_factor = key_factor  # for scores that are whole patch products
    use_gram = similarity == "gram" and match_size == 3
    if use_gram:
        # The source of the scores: the zero-padded grid of pixels.
        source = tf.pad(high, _GRID_PADDING)
        key_factor = key_factor * float(match_size * match_size)  # undo the box average
    else:
        # ... or the k x k patches themselves.
        source = tf.reshape(
            extract_patches(high, match_size, 1, pad, patch_method), [batch, length, -1]
        )

    def scores(source, key_factor, first_row, rows):
        """Scaled scores of query rows [first_row, first_row + rows) against all keys."""
        if use_gram:
            # Pixel Gram matrix of the query rows' 3 x 3 neighbourhoods against every grid
            # position, then the 3 x 3 patch dot products as its centred diagonal box sum:
            # 9x fewer multiply-adds than a patch-by-patch product.
            grid_flat = tf.reshape(source, [batch, grid_keys, channels_high])
            queries = tf.reshape(
                source[:, first_row : first_row + rows + 2], [batch, -1, channels_high]
            )
            gram = _product(queries, grid_flat, matmul_dtype, transpose_b=True)
            dots = diagonal_box_sum(gram, rows + 2, grid_w, 3, recompute_gradient)
            dots = tf.reshape(dots, [batch, rows + 2, grid_w, grid_h, grid_w])
            begin, size = [0, 1, 2, 1, 2], [-1, rows, width, height, width]
            dots = _crop(dots, begin, size, recompute_gradient)
            dots = tf.reshape(dots, [batch, rows * width, length])
        else:
            dots = _product(
                source[:, first_row * width : (first_row + rows) * width],
                source,
                matmul_dtype,
                transpose_b=True,
            )
        return dots * key_factor

    # Eq 4's transposed convolution (stride 2, padding 1, the 4 x 4 value patches as
    # filters, then / 4) in polyphase form. Output pixel (2y + ey, 2x + ex) is
    #   sum_l B[(y, x), l] * low[2 ly + ey, 2 lx + ex] / 4,
    #   B[q, l] = sum over d in {0, s_y} x {0, s_x} of attention[q + d, l + d],
    # with s = -1 for even and +1 for odd output rows/columns. Every B is a shift of one
    # 2 x 2 diagonal box sum, so the transfer is one product with 4 * C1 columns instead of
    # 16 * C1. The shifts move to the (small) value matrices and the product's rows: phase
    # (ey, ex) is low[ey::2, ex::2] on the grid, moved back by (1 - ey, 1 - ex), which is
    # the 2 x 2 blocks of ``low`` padded by ``_LOW_PADDING`` at offset (1 - ey, 1 - ex) in
    # the block: the value columns are those blocks (``_blocks_to_depth``), phase 3 - j in
    # column block j.
    phase_values = tf.reshape(
        _blocks_to_depth(tf.pad(low, _LOW_PADDING)), [batch, grid_keys, 4 * channels_low]
    )
    if matmul_dtype is not None:
        phase_values = tf.cast(phase_values, matmul_dtype)

    def attention_rows(source, key_factor, first, count):
        """Eq 3's weights of query rows [first, first + count): [batch, count * w, h * w]."""
        attention = tf.nn.softmax(scores(source, key_factor, first, count), axis=-1)
        # Eq 3 as released: unusable keys still count exp(0) in the softmax denominator,
        # then get weight 0, then every weight is at least 1e-8.
        return tf.maximum(attention * usable, _MIN_ATTENTION)

    def boxed_rows(source, key_factor, first, last, attention=None):
        """The transfer weights of product rows [first, last): grid rows, 0 = the zero row
        above the image; [batch, (last - first + 1) * grid_w, grid_keys] in the values'
        dtype, the last grid row not being one of them (not cut off here: slicing the
        product instead saves a copy of the matrix).

        Product row p needs the attention of query rows p - 1 and p (the 2 x 2 box), so a
        chunk scores one halo row besides its own; rows outside the image are zero.
        ``attention``: those rows' weights when already computed.
        """
        top = _maybe_min(first, 1)  # 0: the first chunk starts at the zero row
        queries_first = first - top
        queries_last = _maybe_min(last, height)
        bottom = last - queries_last  # 1: the last chunk ends at the zero row below
        count = queries_last - queries_first
        if attention is None:
            attention = attention_rows(source, key_factor, queries_first, count)
        attention = tf.reshape(attention, [batch, count, width, height, width])
        attention = tf.pad(attention, [[0, 0], [1 - top, bottom], [2, 1], [1, 1], [2, 1]])
        rows = last - first
        attention = tf.reshape(attention, [batch, (rows + 1) * grid_w, grid_keys])
        boxed = diagonal_box_sum(attention, rows + 1, grid_w, 2, recompute_gradient)
        return tf.cast(boxed, phase_values.dtype)

    def product_rows(boxed, phase_values, first, last):
        """The transfer product of product rows [first, last) from ``boxed_rows``."""
        return tf.matmul(boxed, phase_values)[:, : (last - first) * grid_w]

    def transfer(source, key_factor, phase_values, chunk_bytes, span=None, min_rows=1):
        """Product rows 0 ... height (height + 1 rows) in chunks: [batch, rows * grid_w, 4 C1].

        ``span``: ``(start, stop)``, compute only product rows [start, stop); the others
        are zero.
        """
        rows = rows_per_chunk(height, width, chunk_bytes, min_rows)
        if span is None:
            if _one_chunk(chunk_bytes, rows, height):
                boxed = boxed_rows(source, key_factor, 0, height + 1)
                return product_rows(boxed, phase_values, 0, height + 1)
            start, stop = 0, height + 1
        else:
            start, stop = span
        if chunk_bytes is None:
            boxed = boxed_rows(source, key_factor, start, stop)
            product = product_rows(boxed, phase_values, start, stop)
        else:
            # As many chunks as whole row budgets fit; the last one takes the odd row.
            chunks = tf.maximum((stop - start - 1 + rows - 1) // rows, 1)
            pieces = tf.TensorArray(phase_values.dtype, size=chunks, infer_shape=False)

            def body(index, pieces):
                first = start + index * rows
                last = tf.where(index == chunks - 1, stop, first + rows)
                boxed = boxed_rows(source, key_factor, first, last)
                piece = product_rows(boxed, phase_values, first, last)
                return index + 1, pieces.write(index, tf.transpose(piece, [1, 0, 2]))

            _, pieces = tf.while_loop(
                lambda index, _: index < chunks, body, [0, pieces], parallel_iterations=1
            )
            product = tf.transpose(pieces.concat(), [1, 0, 2])
        if span is None:
            return product
        return tf.pad(product, [[0, 0], [start * grid_w, (height + 1 - stop) * grid_w], [0, 0]])

    def transfer_gradients(source, key_factor, phase_values, d_product):
        """Gradients of ``transfer`` from its inputs alone, recomputing the attention in
        chunks of ``backward_chunk_bytes`` (the recomputed product itself is not needed)."""

        def chunk(first, last):
            with tf.GradientTape(watch_accessed_variables=False) as tape:
                # Local copies: inside a loop body the tape must watch the body's tensors.
                local_source, local_factor = tf.identity(source), tf.identity(key_factor)
                tape.watch([local_source, local_factor])
                boxed = boxed_rows(local_source, local_factor, first, last)
            # One zero row for the extra grid row of ``boxed`` (see boxed_rows).
            d_rows = tf.pad(
                d_product[:, first * grid_w : last * grid_w], [[0, 0], [0, grid_w], [0, 0]]
            )
            d_values = tf.matmul(boxed, d_rows, transpose_a=True)
            d_boxed = tf.matmul(d_rows, phase_values, transpose_b=True)
            d_source, d_factor = tape.gradient(
                boxed, [local_source, local_factor], output_gradients=d_boxed
            )
            return d_source, d_factor, d_values

        rows = rows_per_chunk(height, width, backward_chunk_bytes)
        if _one_chunk(backward_chunk_bytes, rows, height):
            return chunk(0, height + 1)
        chunks = (height + rows - 1) // rows

        def body(index, d_source, d_factor, d_values):
            first = index * rows
            last = tf.where(index == chunks - 1, height + 1, first + rows)
            sums = []
            for total, part in zip((d_source, d_factor, d_values), chunk(first, last), strict=True):
                part = tf.cast(part, total.dtype)
                part.set_shape(total.shape)
                sums.append(total + part)
            return (index + 1, *sums)

        zeros = [
            tf.zeros_like(source),
            tf.zeros_like(key_factor),
            tf.zeros_like(phase_values, dtype=tf.float32),  # summed in float32
        ]
        _, d_source, d_factor, d_values = tf.while_loop(
            lambda index, *_: index < chunks, body, [0, *zeros], parallel_iterations=1
        )
        return d_source, d_factor, tf.cast(d_values, phase_values.dtype)

    def band_product(needed_rows):
        span = None
        if needed_rows is not None:
            # Result row 2y + e reads product rows y (e = 0) and y + 1 (e = 1).
            first, last = needed_rows
            start = tf.clip_by_value(first // 2, 0, height)
            stop = tf.clip_by_value((last - 1) // 2 + 2, start + 1, height + 1)
            span = (start, stop)
        return transfer(source, key_factor, phase_values, chunk_bytes, span, min_chunk_rows)

    def band_image(product):
        """The [B, 2h, 2w, C1] result from the transfer product's grid rows: result pixel
        (2y + ey, 2x + ex) is phase (ey, ex) of grid position (y, x) moved by (ey, ex),
        which puts every phase at the 2 x 2 block offset its values came from
        (``phase_values``): the blocks back to space, cropped by ``_LOW_PADDING``."""
        product = tf.reshape(product, [batch, height + 1, grid_w, 4 * channels_low])
        (top, _), (left, _) = _LOW_PADDING[1:3]
        image = tf.nn.depth_to_space(product, 2)[:, top : top + 2 * height, left : left + 2 * width]
        return tf.cast(image, low.dtype)

    if return_attention:
        # One chunk: the weights returned are the ones multiplied with the values.
        attention = attention_rows(source, key_factor, 0, height)
        boxed = boxed_rows(source, key_factor, 0, height + 1, attention)
        product = product_rows(boxed, phase_values, 0, height + 1)
    elif recompute_gradient:

        @tf.custom_gradient
        def recomputed_transfer(source, key_factor, phase_values):
            def gradient(d_product):
                return transfer_gradients(source, key_factor, phase_values, d_product)

            forward_bytes = _smaller_budget(chunk_bytes, backward_chunk_bytes)
            return transfer(source, key_factor, phase_values, forward_bytes), gradient

        product = recomputed_transfer(source, key_factor, phase_values)
    else:
        band_rows = rows_per_chunk(height, width, chunk_bytes, min_chunk_rows)
        if needed_columns is not None and chunk_bytes is not None:
            rows = (0, 2 * height) if needed_rows is None else needed_rows
            x0, x1 = _window_span(needed_columns, width)
            # Both paths score the band's rows: the window only its block of columns, at
            # _WINDOW_COST times the band's cost per query; the band whole grid rows, and
            # each of its chunks _BAND_EXTRA_ROWS rows more than it keeps.
            window_cost = tf.cast(_window_block_width(x0, x1), tf.float32) * _WINDOW_COST
            extra = _BAND_EXTRA_ROWS / tf.cast(band_rows, tf.float32)
            band_cost = tf.cast(grid_w, tf.float32) * (1.0 + extra)
            narrow = window_cost < band_cost
            return tf.cond(
                narrow,
                lambda: tf.cast(
                    window_transfer(
                        low,
                        high,
                        patch_factor,
                        usable,
                        rows,
                        needed_columns,
                        chunk_bytes,
                        min_chunk_rows,
                        match_size,
                        matmul_dtype,
                    ),
                    low.dtype,
                ),
                lambda: band_image(band_product(needed_rows)),
            )
        on_grid = use_gram and needed_rows is None and phase_values.dtype == tf.float32
        layout = _grid_chunk_layout(height, width, chunk_bytes, min_chunk_rows)
        if on_grid and _one_chunk(chunk_bytes, band_rows, height):
            product = grid_product(source, key_factor, usable, phase_values)
        elif on_grid and layout:
            product = chunked_grid_product(source, key_factor, usable, phase_values, layout)
        else:
            product = band_product(needed_rows)
    transferred = band_image(product)
    if return_attention:
        return transferred, attention
    return transferred


# The window path's cost per query relative to the band's without its chunks' extra rows
# (it multiplies 3x the channels and 2x the value columns), and the band's extra cost per
# chunk in rows (the Gram similarity's rows above and below, the halo row). Fitted to
# at_conv01 with full-width windows, band / window: 512^2 (23-row chunks) 1.97-2.32 /
# 2.35-2.89 s; 1024^2 (5-row chunks) 5.34-5.61 / 4.93-6.26 s; 2048^2 (1-row chunks)
# 27.8-30.1 / 17.9-19.4 s.
_WINDOW_COST = 1.3
_BAND_EXTRA_ROWS = 1.4
# Result phase (ey, ex), in depth_to_space order, reads the attention of the queries
# shifted by (0 or s_y, 0 or s_x), s = 2 e - 1: -1 for even result rows / columns, +1 for
# odd ones.
_PHASE_STEPS = tuple((2 * ey - 1, 2 * ex - 1) for ey in (0, 1) for ex in (0, 1))
# The window path's query block: image columns [x0 - 3, x1 + 2) of a window [x0, x1), so
# that every query whose attention is used sits at least 2 columns inside the block (the
# row box sums' skewed view moves an entry up to one query back).
_BLOCK_LEFT, _BLOCK_RIGHT = 3, 2


def _window_span(needed, size):
    """Query positions ``[first, last)`` (of ``size``) whose results cover the result
    positions ``needed = (first, last)`` (of ``2 * size``): result 2y + e is query y's."""
    first, last = needed
    start = tf.clip_by_value(first // 2, 0, size - 1)
    stop = tf.clip_by_value((last - 1) // 2 + 1, start + 1, size)
    return start, stop


def _window_block_width(x0, x1):
    return x1 - x0 + _BLOCK_LEFT + _BLOCK_RIGHT


def window_transfer(
    low,
    high,
    key_factor,
    usable,
    needed_rows,
    needed_columns,
    chunk_bytes,
    min_chunk_rows,
    match_size,
    matmul_dtype,
):
    """The attention transfer of a window of the result only (``attention_transfer``'s
    ``needed_columns``), from the queries it reads, each scored once.

    Keys sit on a grid of the map with one zero column either side (``w + 2`` wide); the
    queries are a block of the window's columns (and a few more) of a few rows.

    * Similarity: each position carries its vertical k-stack ``[x(y - 1), x(y), x(y + 1)]``
      (k C2 channels), so one product gives the k x k patch products summed over the
      column offsets only, and a row box sum (``diagonal_box_sum(..., across_rows=False)``)
      adds the k column offsets. Unlike the band's Gram similarity it needs no query rows
      above or below, and unlike whole patch products it multiplies k (not k^2) times the
      channels.
    * Transfer: with the transposed convolution written out, result pixel
      (2y + ey, 2x + ex) is ``1/4 sum over d in {0, s_y} x {0, s_x} of sum_l
      a[(y, x) + d, l] P_e[l - d]`` (``P_e = low[ey::2, ex::2]``, zero outside the image,
      s = -1 for even and +1 for odd rows / columns). The column offsets become one
      2-wide row box sum of the attention, H[q, l] = a[q, l] + a[q + (0, 1), l + (0, 1)];
      the row offsets and the phases become 8 shifted value blocks V[e, dy] [keys, C1];
      so one product H V [queries, 8 C1] per chunk, then shifted sums of that small
      result. Query columns outside the image (needed only at the image's left and right
      borders) contribute to H; their terms are subtracted from the product exactly.

    Each query row is scored in exactly one chunk (no halo rows), so chunks of any size
    cost the same per query. Chunks hold about ``chunk_bytes`` of scores per image
    (growing towards ``min_chunk_rows`` rows within 4x the budget).

    Args:
        key_factor: [B, 1, h * w], softmax scale * usable / key norm (patch products).
        usable: [B, 1, h * w], 1 where a key is usable.

    Returns:
        ``low``'s dtype (or ``matmul_dtype``) [B, 2h, 2w, C1], zero outside the window.
    """
    batch, height, width, channels_high = _static_or_dynamic(high)
    channels = low.shape[-1]
    grid_w = width + 2  # one zero column either side: key (y, x) at grid column x + 1
    keys = height * grid_w
    k = match_size
    y0, y1 = _window_span(needed_rows, height)
    x0, x1 = _window_span(needed_columns, width)
    block_w = _window_block_width(x0, x1)
    # Products are needed for query rows y0 - 1 ... y1 (the row offsets), inside the map.
    top, bottom = tf.maximum(y0 - 1, 0), tf.minimum(y1 + 1, height)

    stacked = tf.pad(high, [[0, 0], [k // 2, k // 2], [0, 0], [0, 0]])
    stacked = tf.concat([stacked[:, d : d + height] for d in range(k)], axis=-1)
    key_grid = tf.pad(stacked, [[0, 0], [0, 0], [1, 1], [0, 0]])
    key_matrix = tf.reshape(key_grid, [batch, keys, k * channels_high])
    # Image column x at query-grid column x + _BLOCK_LEFT.
    query_grid = tf.pad(key_grid, [[0, 0], [0, 0], [_BLOCK_LEFT - 1, _BLOCK_RIGHT - 1], [0, 0]])

    def on_grid(per_key, fill):
        """[B, 1, h * w] -> [B, 1, keys], ``fill`` in the zero columns."""
        return _on_key_grid(per_key, [batch, height, width], [[0, 0], [1, 1]], fill)

    # The zero columns are no keys: -inf scores, weight 0 (not the 1e-8 floor).
    grid_factor = on_grid(key_factor * float(k), 0.0)  # x k: undo the row box average
    grid_bias = on_grid(tf.zeros_like(usable), float("-inf"))
    grid_usable = on_grid(usable, 0.0)
    grid_floor = on_grid(tf.fill(tf.shape(usable), _MIN_ATTENTION), 0.0)

    # V[e, dy][m] = P_e[(my - dy, mx - delta_e)] / 2 at grid key m = (my, mx + 1), with
    # delta_e = min(s_x, 0): the transposed convolution's 1/4 times 2, as the row box sum
    # gives H / 2.
    # The phases side by side (``_blocks_to_depth``: P_e in channel block 2 ey + ex, the
    # order of _PHASE_STEPS), padded once.
    phases = tf.pad(_blocks_to_depth(low), [[0, 0], [1, 1], [2, 2], [0, 0]])
    blocks = []
    for phase, (step_y, step_x) in enumerate(_PHASE_STEPS):
        delta, depth = min(step_x, 0), slice(phase * channels, (phase + 1) * channels)
        for dy in (0, step_y):
            blocks.append(
                phases[:, 1 - dy : 1 - dy + height, 1 - delta : 1 - delta + grid_w, depth]
            )
    values = 0.5 * tf.reshape(tf.concat(blocks, axis=-1), [batch, keys, 8 * channels])
    values_before = tf.pad(values, [[0, 0], [1, 0], [0, 0]])[:, :keys]  # V[l - 1]
    if matmul_dtype is not None:
        values, values_before = tf.cast(values, matmul_dtype), tf.cast(values_before, matmul_dtype)

    # At the image's borders H takes terms of the query columns -1 and w (outside the
    # image, where the transposed convolution has no query): H[-1] takes all of a[-1],
    # H[w - 1] takes a[w, l + 1]. Their block columns, and whether they occur:
    outside_left, outside_right = _BLOCK_LEFT - 1, tf.minimum(width - x0 + _BLOCK_LEFT, block_w - 1)
    column = tf.range(block_w)
    fixes = [
        (outside_left, outside_left, values, tf.equal(x0, 0)),
        (outside_right, outside_right - 1, values_before, tf.equal(x1, width)),
    ]

    def chunk(first, last):
        """Products H V of query rows [first, last): [B, rows, block_w, 8 C1]."""
        rows = last - first
        queries = query_grid[:, first:last, x0 : x0 + block_w]
        queries = tf.reshape(queries, [batch, rows * block_w, k * channels_high])
        scores = _product(queries, key_matrix, matmul_dtype, transpose_b=True)
        if k > 1:
            scores = diagonal_box_sum(scores, rows, block_w, k, across_rows=False)
        attention = tf.nn.softmax(scores * grid_factor + grid_bias, axis=-1)
        attention = tf.maximum(attention * grid_usable, grid_floor)
        boxed = diagonal_box_sum(attention, rows, block_w, 2, across_rows=False)
        mixed = tf.matmul(tf.cast(boxed, values.dtype), values)
        mixed = tf.reshape(mixed, [batch, rows, block_w, 8 * channels])
        attention = tf.reshape(attention, [batch, rows, block_w, keys])
        for source, target, shifted_values, occurs in fixes:
            term = tf.matmul(tf.cast(attention[:, :, source], values.dtype), shifted_values)
            weight = 0.5 * tf.cast(occurs, values.dtype)  # H's mean: 1/2 a
            at_target = tf.cast(tf.equal(column, target), values.dtype)[:, None]
            mixed -= weight * term[:, :, None] * at_target
        return mixed

    # Chunks of query rows (and at most keys + 1 queries: the row box sums' skewed view
    # then moves an entry at most one query back).
    rows = rows_per_chunk(bottom - top, block_w, chunk_bytes, min_chunk_rows, halo=0, keys=keys)
    rows = tf.minimum(rows, tf.maximum((keys + 1) // block_w, 1))  # rows_per_chunk gives >= 1
    chunks = (bottom - top + rows - 1) // rows
    pieces = tf.TensorArray(values.dtype, size=chunks, infer_shape=False)

    def body(index, pieces):
        first = top + index * rows
        last = tf.minimum(first + rows, bottom)
        return index + 1, pieces.write(index, tf.transpose(chunk(first, last), [1, 0, 2, 3]))

    _, pieces = tf.while_loop(
        lambda index, _: index < chunks, body, [0, pieces], parallel_iterations=1
    )
    mixed = tf.transpose(pieces.concat(), [1, 0, 2, 3])
    # Rows y0 - 1 ... y1 (zero outside the map).
    mixed = tf.pad(mixed, [[0, 0], [top - y0 + 1, y1 + 1 - bottom], [0, 0], [0, 0]])
    phases, block = [], 0
    for step_y, step_x in _PHASE_STEPS:
        left = _BLOCK_LEFT + min(step_x, 0)
        total = 0.0
        for dy in (0, step_y):
            part = mixed[:, 1 + dy : 1 + dy + y1 - y0, left : left + x1 - x0]
            total += part[..., block * channels : (block + 1) * channels]
            block += 1
        phases.append(total)
    window = tf.nn.depth_to_space(tf.concat(phases, axis=-1), 2)
    return tf.pad(
        window,
        [[0, 0], [2 * y0, 2 * (height - y1)], [2 * x0, 2 * (width - x1)], [0, 0]],
    )


def grid_product(source, key_factor, usable, phase_values):
    """The band's transfer product of every row in one chunk, with 9 passes over the
    (h w)^2 scores instead of 14 (benchmarks/attention_passes.py): the scores stay on
    the zero-padded grid from the Gram product to the transfer product, and what that
    adds is subtracted exactly.

    ``attention_transfer`` (one chunk, the Gram similarity, float32) calls it with its
    grid of ``high`` and its transfer values; the result is the band's ``product_rows``
    of rows 0 ... h: [B, (h + 1) * grid_w, 4 C1].

    The band crops the Gram box sums to the image's keys and queries, and pads the
    attention back onto the grid for the transfer's box sum: two copies of the matrix,
    and two more for the skewed views of the box sums. Here queries and keys are all
    ``n = grid_h * grid_w`` grid positions, and one zero query more makes each product
    [n + 1, n]: the very buffer of the box sums' skewed [n, n + 1] views, so that
    nothing is padded, sliced or cropped. Then

    * grid keys outside the image ("phantom" keys) get score 0 (factor 0), so the
      softmax counts them in its denominator: each row is rescaled by 1 / (its sum over
      the image's keys), one matrix-vector product;
    * grid queries outside the image ("junk" rows) are rescaled by 0;
    * after the 1e-8 floor, phantom keys carry a weight the released network does not
      have, junk rows carry 1e-8 everywhere, and unusable keys carry the rescaled
      weight of a zero score rather than 0 before the floor. All of these are the same
      for every key of a row (their scores are all exactly 0), so the error is three
      rank-1 matrices (a row weight times a key indicator), and its transfer product,
      through the 2 x 2 box sum, 12 products of shifted vectors: [n, 12] x [12, 4 C1].

    ``chunked_grid_product`` does the same in chunks of rows.

    Args:
        source: [B, grid_h, grid_w, C2] float32, ``high`` on the zero-padded grid.
        key_factor: [B, 1, h * w], softmax scale * usable / key norm, x 9 (it scales the
            3 x 3 box average).
        usable: [B, 1, h * w], 1 where a key is usable.
        phase_values: [B, n, 4 C1] float32, the transfer values on the grid.
    """
    batch, grid_h, grid_w, channels = _static_or_dynamic(source)
    height, width = grid_h - 2, grid_w - 3  # _GRID_PADDING
    n = grid_h * grid_w
    inside, unusable, grid_factor = _grid_vectors(
        key_factor, usable, [batch, height, width], _GRID_PADDING[1:3]
    )
    key_values = _floor_key_values(inside, unusable, phase_values, grid_w)

    keys = tf.reshape(source, [batch, n, channels])
    queries = tf.pad(keys, [[0, 0], [0, 1], [0, 0]])  # one zero query: [n + 1, n]
    gram = tf.matmul(queries, keys, transpose_b=True)
    attention, boxed = _one_chunk_weights(gram, grid_h, grid_w, grid_factor, inside)
    used = (height + 1) * grid_w
    product = tf.matmul(boxed, phase_values)[:, :used]
    return product - _floor_correction(
        attention[:, :n, 0], 1.0 - inside, key_values, grid_w, 0, used
    )


def _one_chunk_weights(gram, grid_h, grid_w, grid_factor, inside):
    """``grid_product``'s weights between its two products, ``_chunk_weights`` for the
    whole grid at once: the attention of all n + 1 query rows ([B, n + 1, n], floored;
    ``_grid_weights``) and the 2 x 2 box sum of its skewed view ([B, n + 1, n]), the
    transfer's operand.

    ``gram``: the Gram product [B, n + 1, n] (one zero query more), whose buffer is the
    skewed [grid_h, grid_w, n + 1] view of the 3 x 3 box sum.
    """
    batch, n = _static_or_dynamic(gram)[0], grid_h * grid_w
    dots = tf.nn.avg_pool2d(tf.reshape(gram, [batch, grid_h, grid_w, n + 1]), 3, 1, "SAME")
    rows = tf.pad(inside, [[0, 0], [0, 1]])[:, :, None]  # junk rows and the extra one: 0
    attention = _grid_weights(tf.reshape(dots, [batch, n + 1, n]), grid_factor, inside, rows)
    boxed = tf.nn.avg_pool2d(tf.reshape(attention, [batch, grid_h, grid_w, n + 1]), 2, 1, "SAME")
    return attention, tf.reshape(boxed, [batch, n + 1, n])


def chunked_grid_product(source, key_factor, usable, phase_values, layout):
    """``grid_product`` in chunks of product rows, for scores that do not fit in one
    chunk (at_conv01 of a 512^2 photo: 1 GiB): the band's result with 9 passes over
    each chunk's scores instead of 14.

    A chunk of product rows [p, p + r) scores the queries of grid rows [p - 1, p + r +
    1 + s) against all n keys of a grid ``wide`` columns wide (``layout``, from
    ``_grid_chunk_layout``): the Gram box sum needs the rows above and below, the
    transfer's box sum the row below, and ``s`` more rows keep the views aligned. One
    zero query more makes the Gram product [m + 1, n] for m queries, which holds the
    skewed [m, n + 1] view of the 3 x 3 box sum; the box sums' results and the
    attention are read as [m, n] and [m - s wide, n + 1] prefixes of their buffers.
    TensorFlow slices a flat prefix without a copy when it ends on a 64-byte boundary:
    ``wide * s`` is a multiple of 16, so every prefix here does (the band pads and
    slices the chunk four times, and crops and pads it back once more).

    Everything else is ``grid_product``'s, row by row: phantom keys rescaled away,
    junk rows (grid padding and the rows outside the image, among them the zero rows
    the first and last chunks read) rescaled by 0, the 1e-8 floor's extra weights
    subtracted. The rows a chunk scores besides its own only feed results it drops.

    Args:
        source, key_factor, usable, phase_values: as ``grid_product``'s (static height
            and width).
        layout: ``(wide, rows, step)``: grid width (at least ``grid_w``), product rows
            per chunk, and the extra rows ``s`` (``wide * s`` a multiple of 16).

    Returns:
        [B, (h + 1) * grid_w, 4 C1], the band's ``product_rows`` of rows 0 ... h.
    """
    wide, rows, step = layout
    batch = tf.shape(source)[0]
    _, grid_h, grid_w, channels = source.shape
    height, width = grid_h - 2, grid_w - 3  # _GRID_PADDING
    n = grid_h * wide
    widen = [[0, 0], [0, 0], [0, wide - grid_w], [0, 0]]
    source = tf.pad(source, widen)
    (top, bottom), (left, right) = _GRID_PADDING[1:3]
    inside, unusable, grid_factor = _grid_vectors(
        key_factor, usable, [batch, height, width], [[top, bottom], [left, right + wide - grid_w]]
    )
    columns = phase_values.shape[-1]
    values = tf.reshape(phase_values, [batch, grid_h, grid_w, columns])
    values = tf.reshape(tf.pad(values, widen), [batch, n, columns])
    key_values = _floor_key_values(inside, unusable, values, wide)

    keys = tf.reshape(source, [batch, n, channels])
    gram_rows, view_rows = rows + 2 + step, rows + 2
    scored = gram_rows * wide
    chunks = -(-(height + 1) // rows)
    # Query grid rows -1 ... : a zero row above the grid, as many below as the last
    # chunk reads; all of them junk (row factor 0).
    below = (chunks - 1) * rows - 1 + gram_rows - grid_h
    queries = tf.pad(source, [[0, 0], [1, below], [0, 0], [0, 0]])
    row_factor = tf.pad(tf.reshape(inside, [batch, grid_h, wide]), [[0, 0], [1, below], [0, 0]])
    pieces = tf.TensorArray(  # the shape: an empty batch concatenates too
        values.dtype, size=batch * chunks, element_shape=[rows * wide, columns]
    )

    def body(index, pieces):
        image, first = index // chunks, index % chunks * rows
        chunk_queries = tf.reshape(queries[image, first : first + gram_rows], [scored, channels])
        gram = tf.matmul(tf.pad(chunk_queries, [[0, 1], [0, 0]]), keys[image], transpose_b=True)
        chunk_rows = tf.reshape(row_factor[image, first : first + gram_rows], [scored, 1])
        attention, boxed = _chunk_weights(
            gram, wide, view_rows, grid_factor[image], inside[image], chunk_rows
        )
        product = tf.matmul(boxed, values[image])
        product = product[wide : (rows + 1) * wide] - _floor_correction(
            attention[:, 0], 1.0 - chunk_rows[:, 0], key_values[image], wide, wide, rows * wide
        )
        return index + 1, pieces.write(index, product)

    _, pieces = tf.while_loop(
        lambda index, _: index < batch * chunks, body, [0, pieces], parallel_iterations=1
    )
    product = tf.reshape(pieces.concat(), [batch, chunks * rows, wide, columns])
    return tf.reshape(product[:, : height + 1, :grid_w], [batch, (height + 1) * grid_w, columns])


# Chunked grid products need at least this many product rows per chunk (else the rows
# each chunk scores besides its own cost more than the band's copies).
_GRID_MIN_ROWS = 8
# TensorFlow's Slice returns a view, not a copy, for a prefix of a flat tensor whose size
# is a multiple of 64 bytes (EIGEN_MAX_ALIGN_BYTES on these builds): 16 float32.
_ALIGNED_FLOATS = 16


def _chunk_weights(gram, wide, view_rows, grid_factor, inside, row_factor):
    """One chunk's weights between its two products: the attention of its m = ``gram_rows
    * wide`` query rows ([m, n], floored; ``_grid_weights``) and the 2 x 2 box sum of
    its first ``view_rows`` grid rows ([view_rows * wide, n]), the transfer's operand.

    ``gram``: the chunk's Gram product [m + 1, n] (one zero query more), whose buffer
    holds the skewed [m, n + 1] view of the 3 x 3 box sum; ``row_factor``: [m, 1].
    """
    scored, n = gram.shape[0] - 1, gram.shape[1]
    dots = tf.nn.avg_pool2d(_prefix(gram, [1, scored // wide, wide, n + 1]), 3, 1, "SAME")
    attention = _grid_weights(_prefix(dots, [scored, n]), grid_factor, inside, row_factor)
    boxed = tf.nn.avg_pool2d(_prefix(attention, [1, view_rows, wide, n + 1]), 2, 1, "SAME")
    return attention, _prefix(boxed, [view_rows * wide, n])


def _prefix(tensor, shape):
    """The first ``prod(shape)`` elements of ``tensor`` (row-major), as ``shape``."""
    size = 1
    for dim in shape:
        size *= dim
    return tf.reshape(tf.slice(tf.reshape(tensor, [-1]), [0], [size]), shape)


def _grid_chunk_layout(height, width, chunk_bytes, min_chunk_rows=MIN_CHUNK_ROWS):
    """``(wide, rows, step)`` for ``chunked_grid_product``, or ``None`` where chunks would
    hold fewer than ``_GRID_MIN_ROWS`` product rows (the band's and the window's chunk
    rules serve those sizes) or the map's size is unknown while tracing.

    The band's chunk rows (``rows_per_chunk`` with ``min_chunk_rows``: the same memory)
    give the rows; the grid is widened to a multiple of 4, 8 or 16 columns (``step`` =
    4, 2, 1 extra rows per chunk), whichever scores fewest grid positions in all.
    """
    if not (isinstance(height, int) and isinstance(width, int)):
        return None
    rows = rows_per_chunk(height, width, chunk_bytes, min_chunk_rows)
    best = None
    for multiple in (4, 8, 16):
        step = _ALIGNED_FLOATS // multiple
        wide = -(-_grid_width(width) // multiple) * multiple
        fitted = min(rows, height - step)  # a chunk scores at most the grid's rows
        fitted -= (fitted + 2) % step  # gram rows (rows + 2 + step) a multiple of step
        if fitted < _GRID_MIN_ROWS:
            continue
        chunks = -(-(height + 1) // fitted)
        cost = chunks * (fitted + 2 + step) * wide * wide
        if best is None or cost < best[0]:
            best = (cost, (wide, fitted, step))
    return None if best is None else best[1]


def _grid_vectors(key_factor, usable, shape, padding):
    """Per-key vectors on the grid: [B, n] image positions, unusable keys, key factors
    (zero outside the image)."""
    batch = shape[0]

    def on_grid(per_key):
        return tf.reshape(_on_key_grid(per_key, shape, padding), [batch, -1])

    inside = on_grid(tf.ones_like(usable))  # the image's positions: keys and queries
    return inside, inside - on_grid(usable), on_grid(key_factor)


def _grid_weights(dots, grid_factor, inside, row_factor):
    """Eq 3's weights of query rows on the grid: the softmax over all grid keys (phantom
    keys score 0), rescaled to the image's keys by one matrix-vector product, times
    ``row_factor`` (0 for junk rows), floored at 1e-8. [..., queries, n]."""
    attention = tf.nn.softmax(dots * grid_factor[..., None, :], axis=-1)
    in_image = tf.matmul(attention, inside[..., :, None])  # [..., queries, 1]
    return tf.maximum(attention * (row_factor / tf.maximum(in_image, 1e-30)), _MIN_ATTENTION)


def _floor_key_values(inside, unusable, values, grid_w):
    """The transfer values of the floor's three key indicators (phantom, unusable,
    image keys), shifted by the 2 x 2 box's four offsets: [..., 12, 4 C1]."""
    n = values.shape[-2] if values.shape[-2] is not None else tf.shape(values)[-2]
    keys = tf.stack(
        [
            _shifted(key, d, n, grid_w)
            for key in (1.0 - inside, unusable, inside)
            for d in _box_offsets(grid_w)
        ],
        axis=-2,
    )  # [..., 12, n]
    return tf.matmul(keys, values)


def _floor_correction(w0, junk, key_values, grid_w, first, count):
    """What the 1e-8 floor adds to product rows [first, first + count) (flat query
    indices of the attention's rows ``w0`` and ``junk`` index).

    ``w0``: each attention row's weight of grid key 0, a phantom key (in an image row
    max(rescaled weight of a zero score, 1e-8), in a junk row 1e-8 like every key);
    ``junk``: 1 for junk rows. The added weights are
    added[q, l] = w0[q] phantom[l] + (w0[q] - 1e-8) unusable[l] + 1e-8 junk[q] inside[l],
    and the 2 x 2 box sum averages added[q + d, l + d], d in {0, 1, grid_w, grid_w + 1},
    so each term adds 1/4 sum_d row_weight[p + d] * sum_l key_indicator[l + d] values[l]
    to product row p.
    """
    row_weights = [w0, w0 - _MIN_ATTENTION, _MIN_ATTENTION * junk]
    rows = tf.stack(
        [
            _shifted(row, first + d, count, grid_w)
            for row in row_weights
            for d in _box_offsets(grid_w)
        ],
        axis=-1,
    )  # [..., count, 12]
    return 0.25 * tf.matmul(rows, key_values)


def _box_offsets(grid_w):
    return (0, 1, grid_w, grid_w + 1)


def _shifted(vector, start, count, grid_w):
    """``vector[..., start : start + count]``, zero past its end (up to grid_w + 1)."""
    padded = tf.pad(vector, [[0, 0]] * (vector.shape.rank - 1) + [[0, grid_w + 1]])
    return padded[..., start : start + count]


def _on_key_grid(per_key, shape, padding, fill=0.0):
    """Per-key values [B, 1, h * w] on a key grid: the h x w map (``shape`` [B, h, w])
    padded by ``padding`` ([[top, bottom], [left, right]]) with ``fill``;
    [B, 1, grid keys]."""
    grid = tf.pad(tf.reshape(per_key, shape), [[0, 0], *padding], constant_values=fill)
    return tf.reshape(grid, [shape[0], 1, -1])


def _product(a, b, dtype, **kwargs):
    """``tf.matmul`` in float32, or with ``dtype`` operands and a float32 result."""
    if dtype is None:
        return tf.matmul(a, b, **kwargs)
    return tf.cast(tf.matmul(tf.cast(a, dtype), tf.cast(b, dtype), **kwargs), tf.float32)


def _smaller_budget(a, b):
    return b if a is None else a if b is None else min(a, b)


def _one_chunk(budget, rows, height):
    """Whether one chunk holds every row, known while tracing (then no loop is built)."""
    return budget is None or (isinstance(rows, int) and isinstance(height, int) and rows == height)


def _maybe_min(value, bound):
    if isinstance(value, int) and isinstance(bound, int):
        return min(value, bound)
    return tf.minimum(value, bound)


@keras.saving.register_keras_serializable(package="penet_tf")
class AttentionTransfer(keras.layers.Layer):
    """Attention Transfer Network (ATN), paper eqs 2-4 as the released network computes them.

    Attention is learned on the high-level map and used to copy 4 x 4 patches of the
    low-level map (twice the resolution):

    1. keys: k x k patches of ``high`` (k = ``match_size``), each divided by
       ``max(|patch|, 1e-4)``; queries are the same patches, not normalised (so the score
       is a scaled cosine);
    2. a key is usable only where the k x k patch of the mask, resized bilinearly
       (align_corners) to the high-level size, is entirely zero;
    3. ``a = max(softmax(softmax_scale * s * usable) * usable, 1e-8)`` over keys (eq 3);
    4. every position of ``low`` receives the attention-weighted sum of 4 x 4 value
       patches of ``low`` (eq 4): a transposed convolution with stride 2 and padding 1
       whose filters are the value patches, divided by 4;
    5. with ``fuse``, four 3 x 3 convolutions with dilation 1, 2, 4, 8 (ReLU), each with
       ``filters / 4`` outputs, concatenated.

    The result is the released network's to float rounding, computed faster and in
    bounded memory:

    * scores are computed in chunks of query rows (about ``chunk_mb`` of float32 scores
      per image), so memory is O(chunk * h * w), never O((h * w)^2);
    * with ``similarity="gram"`` the 3 x 3 patch similarity is the pixel Gram matrix
      summed over 9 diagonal shifts (9x fewer multiply-adds than a patch-by-patch
      product); the shift sum is one ``avg_pool2d`` over a skewed view of the matrix;
    * the transposed convolution is evaluated in polyphase form: each of the four output
      phases sums four diagonal shifts of the attention (one more ``avg_pool2d``), then
      one matrix product with 4 * C1 columns replaces the 16 * C1 of a product with the
      4 x 4 value patches (4x fewer multiply-adds);
    * in float32 (not the recomputing training gradient, not
      ``return_attention``), the scores stay on the zero-padded grid of the box sums
      from the Gram product to the transfer product (``grid_product``; in chunks of
      rows, ``chunked_grid_product``, where the scores do not fit in one chunk): 9
      passes over the matrix instead of 14, the grid's extra keys and queries rescaled
      and subtracted exactly.

    The softmax always runs in float32; under a mixed precision policy the transfer
    product runs in the compute dtype.

    Args:
        match_size: patch size for matching, 3 (or 1 for the deepest ATN).
        softmax_scale: the softmax temperature, 10 in the released network.
        fuse: whether to apply the four dilated refinement convolutions.
        filters: output channels of the fuse branches together; defaults to the
            channels of ``low``.
        fuse_rates: dilation rates of the fuse branches.
        patch_method: ``"extract_patches"`` or ``"conv"`` (builtin ops only, for TFLite,
            TF.js and ONNX); both give identical results.
        similarity: ``"gram"`` (fast) or ``"patches"`` (the literal patch product).
        chunk_mb: memory budget for one chunk of attention scores, per image, in MiB
            (the layer's peak working set is about 4x this); ``None`` computes all scores
            at once and builds no loop (static graphs for TFLite, TF.js and ONNX).
        kernel_init: fuse-branch kernel init, ``"released"`` (normal(0, 0.02)) or a Keras
            initializer name.
        recompute_gradient: in training (``training=True``), keep no (h * w)^2 tensor for
            the backward pass: the attention is recomputed there, in chunks of 8 MiB of
            scores per image (see ``attention_transfer``). Same values and gradients,
            a fraction of the memory. Outside training, plain autodiff.
        matmul_dtype: ``None`` or ``"bfloat16"``: the attention's two matrix products in
            bfloat16, softmax and sums in float32 (see ``attention_transfer``); an
            inference speed option, not exact.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Call arguments:
        low: [batch, 2h, 2w, C1] low-level features.
        high: [batch, h, w, C2] high-level features.
        mask: [batch, H, W, 1], 1 = hole, 0 = known, at any resolution.
        training: ``True`` turns on ``recompute_gradient``.
        return_attention: also return the attention weights of eq 3 (computed in one
            chunk, plain autodiff; the tensor holds (h * w)^2 floats per image).
        needed_rows: ``(first, last)`` (ints or scalar tensors), the output rows that must
            be exact; ``None`` (default): every row. The layer widens the band by the
            fuse branches' reach (``fuse_reach``) and scores only the queries the
            band reads; rows outside it are not the layer's output. For inference whose
            result is composited (see ``Generator``); not in training.
        needed_columns: the same for columns (widened alike): with chunks, a narrow
            window is computed from its own queries only (see ``attention_transfer``).

    Returns:
        [batch, 2h, 2w, filters] (``fuse``) or [batch, 2h, 2w, C1]; with
        ``return_attention``, the pair ``(outputs, attention)``: ``attention`` float32
        [batch, h * w, h * w], ``attention[b, q, l]`` the weight with which query position
        q = y * w + x of ``high`` (row-major) copies the patch of key position l (same
        numbering), exactly the weights the transfer uses: rows sum to 1 when every key
        is usable; unusable keys (hole patches) take their exp(0 - max) share of the
        denominator (as released) and carry the 1e-8 floor.

    Example:

    >>> atn = AttentionTransfer(match_size=3)
    >>> low = tf.random.normal([2, 32, 32, 16])
    >>> high = tf.random.normal([2, 16, 16, 32])
    >>> mask = tf.zeros([2, 64, 64, 1])
    >>> atn(low, high, mask).shape
    TensorShape([2, 32, 32, 16])
    """

    def __init__(
        self,
        match_size=3,
        softmax_scale=10.0,
        fuse=True,
        filters=None,
        fuse_rates=(1, 2, 4, 8),
        patch_method="extract_patches",
        similarity="gram",
        chunk_mb=192,
        kernel_init="released",
        recompute_gradient=True,
        matmul_dtype=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        # Keras' jit_compile="auto" (compile / fit) picks XLA on a GPU when every layer
        # supports it; the chunk loops' shapes change per chunk, which XLA cannot compile
        # ("Reshape must be a compile-time constant"): PENetGAN.fit failed on one GPU.
        self.supports_jit = False
        if matmul_dtype not in (None, "bfloat16"):
            raise ValueError(f"matmul_dtype must be None or 'bfloat16', got {matmul_dtype!r}.")
        self.matmul_dtype = matmul_dtype
        if match_size not in (1, 3):
            raise ValueError(f"match_size must be 1 or 3, got {match_size}.")
        if similarity not in SIMILARITIES:
            raise ValueError(f"Unknown similarity {similarity!r}: expected one of {SIMILARITIES}.")
        check_patch_method(patch_method)
        self.match_size = match_size
        self.softmax_scale = float(softmax_scale)
        self.fuse = fuse
        self.filters = filters
        fuse_rates = tuple(fuse_rates)
        if (fuse and not fuse_rates) or not all(
            isinstance(rate, numbers.Integral) and not isinstance(rate, bool) and rate >= 1
            for rate in fuse_rates
        ):  # (an empty tuple failed at build with a ZeroDivisionError)
            raise ValueError(
                f"fuse_rates must be one or more dilation rates >= 1, got {fuse_rates}."
            )
        self.fuse_rates = fuse_rates
        self.patch_method = patch_method
        self.similarity = similarity
        if chunk_mb is not None and (
            isinstance(chunk_mb, bool)
            or not isinstance(chunk_mb, numbers.Real)
            or not 0 < chunk_mb < float("inf")
        ):  # ("64" from a JSON config failed at the first call: "64" * 2**20)
            raise ValueError(
                f"chunk_mb (attention_chunk_mb) must be a positive number of MiB or None, "
                f"got {chunk_mb!r}."
            )
        self.chunk_mb = chunk_mb
        self.kernel_init = kernel_init
        self.recompute_gradient = bool(recompute_gradient)
        # The hole mask is a call argument, not a Keras sequence mask: take it and drop it.
        self.supports_masking = True
        self.fuse_convs = []

    def build(self, low_shape, high_shape=None):
        if self.built:
            return
        channels = low_shape[-1]
        if self.fuse:
            filters = self.filters or channels
            if filters % len(self.fuse_rates):
                raise ValueError(
                    f"filters ({filters}) must be divisible by the number of fuse branches "
                    f"({len(self.fuse_rates)})."
                )
            self.fuse_convs = []
            for index, rate in enumerate(self.fuse_rates):
                conv = keras.layers.Conv2D(
                    filters // len(self.fuse_rates),
                    3,
                    padding="same",
                    data_format="channels_last",  # (not keras.json's image_data_format)
                    dilation_rate=rate,
                    activation="relu",
                    kernel_initializer=kernel_initializer(self.kernel_init),
                    name=f"conv{index:02d}",
                    dtype=self.dtype_policy,
                )
                conv.build(tuple(low_shape[:-1]) + (channels,))
                self.fuse_convs.append(conv)
                setattr(self, conv.name, conv)  # tracked by tf.train.Checkpoint too

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def fuse_reach(self, axis=0):
        """How many rows (``axis`` 0) or columns (1) the fuse branches reach on either
        side of an output position."""
        return max(
            [conv.kernel_size[axis] // 2 * conv.dilation_rate[axis] for conv in self.fuse_convs],
            default=0,
        )

    def call(
        self,
        low,
        high,
        mask,
        training=None,
        return_attention=False,
        needed_rows=None,
        needed_columns=None,
    ):
        for name, tensor in (("low", low), ("high", high), ("mask", mask)):
            if tensor.shape.rank != 4:
                raise ValueError(
                    f"AttentionTransfer: {name} must be a 4-D tensor [batch, height, width, "
                    f"channels], got shape {tensor.shape}."
                )
        if mask.shape[-1] not in (None, 1):
            raise ValueError(
                f"AttentionTransfer: mask must have 1 channel [batch, H, W, 1], got {mask.shape}."
            )
        batches = {tensor.shape[0] for tensor in (low, high, mask)} - {None}
        if len(batches) > 1:  # (a Reshape error deep inside, naming no input)
            raise ValueError(
                "AttentionTransfer: low, high and mask must have the same batch size; got "
                f"{low.shape[0]}, {high.shape[0]} and {mask.shape[0]}."
            )
        low_hw, high_hw = low.shape[1:3], high.shape[1:3]
        for axis in range(2):
            if low_hw[axis] is not None and high_hw[axis] is not None:
                if low_hw[axis] != 2 * high_hw[axis]:
                    raise ValueError(
                        "AttentionTransfer: low must have twice the height and width of high; "
                        f"got low {low.shape} and high {high.shape}."
                    )
        outputs = attention_transfer(
            low,
            high,
            mask,
            match_size=self.match_size,
            softmax_scale=self.softmax_scale,
            patch_method=self.patch_method,
            similarity=self.similarity,
            chunk_bytes=None if self.chunk_mb is None else int(self.chunk_mb * 2**20),
            # Only in training: SavedModel cannot save a custom gradient's closure.
            recompute_gradient=self.recompute_gradient and training is True,
            return_attention=return_attention,
            matmul_dtype=self.matmul_dtype,
            needed_rows=self._widened(needed_rows, 0),
            needed_columns=self._widened(needed_columns, 1),
        )
        if return_attention:
            outputs, attention = outputs
        if self.fuse:
            outputs = tf.concat([conv(outputs) for conv in self.fuse_convs], axis=-1)
        if return_attention:
            return outputs, attention
        return outputs

    def _widened(self, span, axis):
        """``span`` widened by the fuse branches' reach along ``axis``."""
        if span is None:
            return None
        reach = self.fuse_reach(axis)
        return span[0] - reach, span[1] + reach

    def compute_output_shape(self, low_shape, high_shape=None, mask_shape=None):
        channels = (self.filters or low_shape[-1]) if self.fuse else low_shape[-1]
        return tuple(low_shape[:-1]) + (channels,)

    def get_config(self):
        config = super().get_config()
        config.update(
            match_size=self.match_size,
            softmax_scale=self.softmax_scale,
            fuse=self.fuse,
            filters=self.filters,
            fuse_rates=list(self.fuse_rates),
            patch_method=self.patch_method,
            similarity=self.similarity,
            chunk_mb=self.chunk_mb,
            kernel_init=self.kernel_init,
            recompute_gradient=self.recompute_gradient,
            matmul_dtype=self.matmul_dtype,
        )
        return config
