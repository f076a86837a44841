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


def high_frequency_residual(region, small):
    """``region - upsample(small)`` (bilinear, half-pixel centres): the detail ``small``
    (the region area-downsampled to the network input) lost. Float [B, H, W, C]."""
    shape = tf.shape(region)
    up = tf.image.resize(small, shape[1:3], method="bilinear")
    return region - up


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


def _weighted(attention, values, queries):
    """``attention[:, q] @ values`` for the query cells ``queries`` (int [n]) only, the
    other rows 0: the cost is proportional to the hole, not to the region."""
    rows = tf.gather(attention, queries, axis=1)  # [B, n, K]
    product = tf.matmul(rows, values)  # [B, n, D]
    batch, cells = tf.shape(attention)[0], tf.shape(attention)[1]
    product = tf.transpose(product, [1, 0, 2])  # [n, B, D]
    full = tf.scatter_nd(queries[:, None], product, tf.stack([cells, batch, tf.shape(values)[-1]]))
    return tf.transpose(full, [1, 0, 2])


def aggregate_residual(attention, residual, hole, tile, transfer="tiles"):
    """Aggregates ``residual`` into the hole cells with ``attention``.

    Args:
        attention: float32 [B, gh * gw, gh * gw], at_conv01's attention (queries x keys,
            row-major cells of the H/4 grid of the network input, rows sum to ~1).
        residual: float32 [B, gh * tile, gw * tile, C], the full-resolution residual of
            the region (0 in the hole).
        hole: float32 [B, gh * tile, gw * tile, 1], 1 = hole, at the same resolution;
            only cells holding a hole pixel (and, for ``"overlap"``, their neighbours)
            are computed.
        tile: full-resolution pixels per attention cell and side (a Python int or an int
            scalar tensor).
        transfer: ``"tiles"`` or ``"overlap"`` (see the module docstring).

    Returns:
        float32 [B, gh * tile, gw * tile, C]: the aggregated residual (0 outside the
        computed cells; use it in the hole only).
    """
    check_transfer(transfer)
    attention = tf.cast(attention, tf.float32)
    residual = tf.cast(residual, tf.float32)
    shape = tf.shape(residual)
    channels = residual.shape[-1] or shape[3]
    grid_h, grid_w = shape[1] // tile, shape[2] // tile
    # Cells holding any hole pixel, in any image of the batch.
    cell_hole = tf.reduce_max(_tiles(tf.cast(hole, tf.float32), tile), axis=-1)  # [B, G]
    cell_hole = tf.reshape(tf.reduce_max(cell_hole, axis=0), [1, grid_h, grid_w, 1])
    if transfer == "overlap":  # pixels near a hole cell take the neighbours' transfers
        cell_hole = tf.nn.max_pool2d(cell_hole, 3, 1, "SAME")
    queries = tf.cast(tf.where(tf.reshape(cell_hole, [-1]) > 0)[:, 0], tf.int32)
    if transfer == "tiles":
        values = _tiles(residual, tile)  # [B, K, tile * tile * C]
        return _untile(_weighted(attention, values, queries), grid_h, grid_w, tile, channels)

    # "overlap": values are 2 tile x 2 tile patches at stride tile, the first starting
    # tile // 2 before the region (zero padding), as the released transposed convolution
    # (kernel 4, stride 2, padding 1) on the H/2 map, whose cells are 2 x 2.
    before = tile // 2
    after = tile - before
    padded = tf.pad(residual, [[0, 0], [before, after], [before, after], [0, 0]])
    quads = [
        _tiles(
            padded[:, a * tile : a * tile + grid_h * tile, b * tile : b * tile + grid_w * tile],
            tile,
        )
        for a in (0, 1)
        for b in (0, 1)
    ]  # quadrant (a, b) of every cell's patch: [B, K, tile * tile * C] each
    depth = tile * tile * channels
    values = tf.concat(quads, axis=-1)  # [B, K, 4 * depth]
    transferred = _weighted(attention, values, queries)  # [B, G, 4 * depth]
    # Fold: quadrant (a, b) of query (i, j) covers the cell (i + a, j + b) of the grid
    # shifted by -tile // 2; every covered pixel sums four quadrants, divided by 4.
    batch = tf.shape(residual)[0]
    transferred = tf.reshape(transferred, [batch, grid_h, grid_w, 4, depth])
    folded = tf.zeros([batch, grid_h + 1, grid_w + 1, depth])
    for index, (a, b) in enumerate(((0, 0), (0, 1), (1, 0), (1, 1))):
        folded += tf.pad(transferred[:, :, :, index], [[0, 0], [a, 1 - a], [b, 1 - b], [0, 0]])
    folded = tf.reshape(folded / 4.0, [batch, (grid_h + 1) * (grid_w + 1), depth])
    shifted = _untile(folded, grid_h + 1, grid_w + 1, tile, channels)
    return shifted[:, before : before + grid_h * tile, before : before + grid_w * tile]
