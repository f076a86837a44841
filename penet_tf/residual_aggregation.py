"""Contextual residual aggregation (CRA; Yi et al., "Contextual Residual Aggregation for
Ultra High-Resolution Image Inpainting", CVPR 2020), with PEN-Net's finest attention.

The network runs on a low-resolution copy of a region; the high-frequency detail it
cannot produce is borrowed from the known pixels at full resolution:

1. ``residual = region - upsample(downsample(region))`` on known pixels (0 in the hole);
2. the residual is cut into tiles, one per cell of at_conv01's attention grid (the
   network input's H/4 x W/4 grid), each ``tile x tile`` full-resolution pixels;
3. every hole cell receives the attention-weighted sum of the known cells' residual
   tiles (the attention is the one at_conv01 used to fill the hole: softmax over keys);
4. the output is ``upsample(network output) + aggregated residual`` in the hole.

Two transfers are implemented (``transfer``):

* ``"tiles"`` (HiFill's, the default): non-overlapping ``tile x tile`` tiles, each hole
  cell's tile is the weighted sum of the key cells' tiles;
* ``"overlap"`` (PEN-Net's own at_conv01 transfer scaled up): ``2 tile x 2 tile``
  patches at stride ``tile`` (the released 4 x 4 / stride 2 transposed convolution,
  divided by 4), so every pixel averages the transfers of the four cells around it.

``benchmarks/high_resolution_quality.py`` measures both on photos; see the README for why
``"tiles"`` is the default. Both are checked against loops in NumPy
(tests/test_residual_aggregation.py).
"""

import tensorflow as tf

TRANSFERS = ("tiles", "overlap")


def check_transfer(transfer):
    if transfer not in TRANSFERS:
        raise ValueError(f"Unknown residual transfer {transfer!r}: expected one of {TRANSFERS}.")


def upsample_columns(small, width):
    """``small`` [B, h, w, C] interpolated along its columns to ``width``: the first half
    of its bilinear upsample (``tf.image.resize``'s "bilinear": half-pixel centres,
    clamped at the edges, the same arithmetic), [B, h, width, C]."""
    return _interpolate(small, 2, width, 0, width)


def upsample_rows(columns, height, first, stop):
    """Rows ``[first, stop)`` of the bilinear upsample to ``height`` rows, from
    ``upsample_columns(small, width)``: [B, stop - first, width, C]. A band of rows costs
    only its own pixels (the full-resolution steps of a 24-MP region run band by band)."""
    return _interpolate(columns, 1, height, first, stop)


def _interpolate(images, axis, size, first, stop):
    """Positions ``[first, stop)`` of ``images`` linearly resampled to ``size`` along
    ``axis`` (1 or 2), as TensorFlow's bilinear kernel: source ``(i + 0.5) * scale - 0.5``,
    neighbours clamped to the edges."""
    length = tf.shape(images)[axis]
    scale = tf.cast(length, tf.float32) / tf.cast(size, tf.float32)
    position = (tf.cast(tf.range(first, stop), tf.float32) + 0.5) * scale - 0.5
    floor = tf.floor(position)
    weight = position - floor
    low = tf.cast(floor, tf.int32)
    below = tf.gather(images, tf.clip_by_value(low, 0, length - 1), axis=axis)
    above = tf.gather(images, tf.clip_by_value(low + 1, 0, length - 1), axis=axis)
    weight = tf.reshape(weight, [-1, 1, 1] if axis == 1 else [-1, 1])
    return below + (above - below) * weight


def high_frequency_residual(region, small):
    """``region - upsample(small)`` (bilinear, half-pixel centres): the detail ``small``
    (the region area-downsampled to the network input) lost. Float [B, H, W, C]."""
    shape = tf.shape(region)
    return high_frequency_rows(region, upsample_columns(small, shape[2]), shape[1], 0, shape[1])


def high_frequency_rows(rows, columns, height, first, stop):
    """Rows ``[first, stop)`` of ``high_frequency_residual``: ``rows`` are the region's
    (float), ``columns`` ``upsample_columns(small, width)``, ``height`` the region's."""
    return rows - upsample_rows(columns, height, first, stop)


def _tiles(images, tile):
    """[B, gh * tile, gw * tile, C] -> [B, gh * gw, tile * tile * C] (row-major cells)."""
    shape = tf.shape(images)
    batch, channels = shape[0], images.shape[-1] or shape[3]
    grid_h, grid_w = shape[1] // tile, shape[2] // tile
    cells = tf.reshape(images, [batch, grid_h, tile, grid_w, tile, channels])
    cells = tf.transpose(cells, [0, 1, 3, 2, 4, 5])
    return tf.reshape(cells, [batch, grid_h * grid_w, tile * tile * channels])


def _untile(cells, grid_h, grid_w, size, channels):
    """[B, gh * gw, size * size * C] -> [B, gh * size, gw * size, C]."""
    batch = tf.shape(cells)[0]
    images = tf.reshape(cells, [batch, grid_h, grid_w, size, size, channels])
    images = tf.transpose(images, [0, 1, 3, 2, 4, 5])
    return tf.reshape(images, [batch, grid_h * size, grid_w * size, channels])


def hole_cell_map(hole, tile):
    """bool [gh, gw]: the cells of ``hole`` ([B, gh * tile, gw * tile, 1], nonzero =
    hole) holding a hole pixel in any image of the batch."""
    shape = tf.shape(hole)
    cells = tf.reshape(hole > 0, [shape[0], shape[1] // tile, tile, shape[2] // tile, tile])
    return tf.reduce_any(cells, axis=[0, 2, 4])


def query_cells(cell_map, transfer):
    """int32 [n]: the row-major query cells the transfer computes: the hole cells, and
    for ``"overlap"`` their neighbours (pixels near a hole cell take their transfers)."""
    if transfer == "overlap":
        grown = tf.nn.max_pool2d(tf.cast(cell_map, tf.float32)[None, :, :, None], 3, 1, "SAME")
        cell_map = grown[0, :, :, 0] > 0
    return tf.cast(tf.where(tf.reshape(cell_map, [-1]))[:, 0], tf.int32)


def value_rows(first, stop, tile, transfer):
    """``(lo, hi)``: the residual rows the values of key cell rows ``[first, stop)``
    read (``"overlap"``'s patches reach ``tile // 2`` rows before and after their cells:
    rows past the region are zeros)."""
    if transfer == "tiles":
        return first * tile, stop * tile
    return first * tile - tile // 2, stop * tile + tile - tile // 2


def key_values(block, tile, transfer, grid_w):
    """The values of a band of key cells: ``block`` holds the residual rows
    ``value_rows`` names, [B, rows, gw * tile, C]; returns [B, cells, D], row-major,
    D = ``tile * tile * C`` (``"tiles"``) or four times that (``"overlap"``)."""
    if transfer == "tiles":
        return _tiles(block, tile)
    # "overlap": values are 2 tile x 2 tile patches at stride tile, the first starting
    # tile // 2 before the region (zero padding), as the released transposed convolution
    # (kernel 4, stride 2, padding 1) on the H/2 map, whose cells are 2 x 2.
    before = tile // 2
    padded = tf.pad(block, [[0, 0], [0, 0], [before, tile - before], [0, 0]])
    cells_h = tf.shape(block)[1] // tile - 1
    quads = [
        _tiles(
            padded[:, a * tile : a * tile + cells_h * tile, b * tile : b * tile + grid_w * tile],
            tile,
        )
        for a in (0, 1)
        for b in (0, 1)
    ]  # quadrant (a, b) of every cell's patch: [B, K, tile * tile * C] each
    return tf.concat(quads, axis=-1)


def detail_rows(transferred, queries, grid_w, tile, channels, transfer, first, stop):
    """Rows ``[first * tile, stop * tile)`` of the aggregated residual, [B, (stop - first)
    * tile, gw * tile, C], from ``transferred`` [B, n, D], the weighted values of the
    ``queries`` cells (0 outside them)."""
    # The query cell rows [lo, hi) whose transfers reach these rows.
    lo, hi = (first, stop) if transfer == "tiles" else (first - 1, stop + 1)
    rows = queries // grid_w
    pick = tf.where((rows >= lo) & (rows < hi))[:, 0]
    local = tf.gather(queries, pick) - lo * grid_w
    values = tf.gather(transferred, pick, axis=1)  # [B, m, D]
    batch, depth = tf.shape(transferred)[0], tf.shape(transferred)[2]
    count = tf.size(local)
    indices = tf.stack(
        [
            tf.repeat(tf.range(batch)[:, None], count, axis=1),
            tf.broadcast_to(local[None], [batch, count]),
        ],
        axis=-1,
    )
    grid = tf.scatter_nd(indices, values, tf.stack([batch, (hi - lo) * grid_w, depth]))
    if transfer == "tiles":
        return _untile(grid, stop - first, grid_w, tile, channels)
    # Fold: quadrant (a, b) of query (i, j) covers the cell (i + a, j + b) of the grid
    # shifted by -tile // 2; every covered pixel sums four quadrants, divided by 4.
    depth = tile * tile * channels
    grid = tf.reshape(grid, [batch, hi - lo, grid_w, 4, depth])
    folded = tf.zeros([batch, hi - lo + 1, grid_w + 1, depth])
    for index, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        folded += tf.pad(grid[:, :, :, index], [[0, 0], [a, 1 - a], [b, 1 - b], [0, 0]])
    folded = tf.reshape(folded / 4.0, [batch, (hi - lo + 1) * (grid_w + 1), depth])
    shifted = _untile(folded, hi - lo + 1, grid_w + 1, tile, channels)
    before = tile // 2
    start = (first - lo) * tile + before
    return shifted[:, start : start + (stop - first) * tile, before : before + grid_w * tile]


def aggregate_residual(attention, residual, hole, tile, transfer="tiles"):
    """Aggregates ``residual`` into the hole cells with ``attention``.

    Args:
        attention: float32 [B, gh * gw, gh * gw], at_conv01's attention (queries x keys,
            row-major cells of the H/4 grid of the network input, rows sum to ~1).
        residual: float32 [B, gh * tile, gw * tile, C], the full-resolution residual of
            the region (0 in the hole).
        hole: [B, gh * tile, gw * tile, 1], nonzero = hole, at the same resolution;
            only cells holding a hole pixel (and, for ``"overlap"``, their neighbours)
            are computed.
        tile: full-resolution pixels per attention cell and side (a Python int or an int
            scalar tensor).
        transfer: ``"tiles"`` or ``"overlap"`` (see the module docstring).

    Returns:
        float32 [B, gh * tile, gw * tile, C]: the aggregated residual (0 outside the
        computed cells; use it in the hole only). ``penet_tf.high_resolution`` runs the
        same steps band by band (``value_rows``, ``key_values``, ``detail_rows``).
    """
    check_transfer(transfer)
    residual = tf.cast(residual, tf.float32)
    shape = tf.shape(residual)
    channels = residual.shape[-1] or shape[3]
    grid_h, grid_w = shape[1] // tile, shape[2] // tile
    queries = query_cells(hole_cell_map(hole, tile), transfer)
    weights = tf.gather(tf.cast(attention, tf.float32), queries, axis=1)  # [B, n, K]
    lo, hi = value_rows(0, grid_h, tile, transfer)
    block = tf.pad(residual, [[0, 0], [-lo, hi - shape[1]], [0, 0], [0, 0]])
    transferred = tf.matmul(weights, key_values(block, tile, transfer, grid_w))
    return detail_rows(transferred, queries, grid_w, tile, channels, transfer, 0, grid_h)
