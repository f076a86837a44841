"""Contextual residual aggregation against loops in NumPy (penet_tf.residual_aggregation)."""

import numpy as np
import pytest
import tensorflow as tf

from penet_tf.residual_aggregation import (
    aggregate_residual,
    high_frequency_residual,
    upsample_columns,
    upsample_rows,
)


def reference(attention, residual, hole, tile, transfer):
    """Per hole pixel, the attention-weighted residual of the key cells (plain loops)."""
    batch, height, width, channels = residual.shape
    grid_h, grid_w = height // tile, width // tile
    out = np.zeros_like(residual, np.float64)
    before = tile // 2
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                if not hole[b, y, x, 0]:
                    continue
                if transfer == "tiles":
                    q = (y // tile) * grid_w + x // tile
                    for k in range(grid_h * grid_w):
                        ky, kx = divmod(k, grid_w)
                        value = residual[b, ky * tile + y % tile, kx * tile + x % tile]
                        out[b, y, x] += attention[b, q, k] * value
                    continue
                # overlap: the 2 tile x 2 tile patches of the queries covering (y, x)
                for qy in range(grid_h):
                    for qx in range(grid_w):
                        dy, dx = y - qy * tile + before, x - qx * tile + before
                        if not (0 <= dy < 2 * tile and 0 <= dx < 2 * tile):
                            continue
                        for k in range(grid_h * grid_w):
                            ky, kx = divmod(k, grid_w)
                            sy, sx = ky * tile - before + dy, kx * tile - before + dx
                            if 0 <= sy < height and 0 <= sx < width:
                                weight = attention[b, qy * grid_w + qx, k]
                                out[b, y, x] += weight * residual[b, sy, sx] / 4.0
    return out


@pytest.mark.parametrize(
    "transfer,tile", [("tiles", 3), ("tiles", 4), ("overlap", 4), ("overlap", 3)]
)
def test_aggregate_residual_matches_numpy(transfer, tile):
    rng = np.random.default_rng(tile)
    grid_h, grid_w = 4, 5
    cells = grid_h * grid_w
    logits = rng.normal(size=(2, cells, cells)) * 3
    attention = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    residual = rng.normal(size=(2, grid_h * tile, grid_w * tile, 3))
    hole = np.zeros((2, grid_h * tile, grid_w * tile, 1))
    hole[0, tile + 1 : 3 * tile, 2 : 2 * tile + 2] = 1
    hole[1, -tile - 2 :, -3:] = 1  # at the border
    residual *= 1 - hole
    got = aggregate_residual(
        tf.constant(attention, tf.float32),
        tf.constant(residual, tf.float32),
        tf.constant(hole, tf.float32),
        tile,
        transfer,
    ).numpy()
    expected = reference(attention, residual, hole, tile, transfer)
    inside = np.broadcast_to(hole > 0, got.shape)
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-5, rtol=0)
    assert np.abs(expected[inside]).max() > 0.05  # something was aggregated


def test_high_frequency_residual_is_the_detail_the_downsampling_lost():
    flat = tf.fill([1, 32, 32, 3], 0.25)
    small = tf.image.resize(flat, [8, 8], method="area")
    np.testing.assert_allclose(high_frequency_residual(flat, small).numpy(), 0, atol=1e-6)
    rng = np.random.default_rng(0)
    image = tf.constant(rng.uniform(-1, 1, (1, 32, 32, 3)), tf.float32)
    small = tf.image.resize(image, [8, 8], method="area")
    up = tf.image.resize(small, [32, 32], method="bilinear")
    np.testing.assert_allclose(
        high_frequency_residual(image, small).numpy(), (image - up).numpy(), atol=1e-6
    )


def test_unknown_transfer_is_refused():
    with pytest.raises(ValueError, match="transfer"):
        aggregate_residual(
            tf.zeros([1, 1, 1]), tf.zeros([1, 4, 4, 3]), tf.zeros([1, 4, 4, 1]), 4, "x"
        )


def test_upsample_by_bands_of_rows_is_tf_image_resize():
    """The full-resolution steps run band by band (penet_tf.high_resolution); the bands'
    rows are the whole upsample's, which is tf.image.resize's bilinear."""
    rng = np.random.default_rng(1)
    for (h, w), (height, width) in [((8, 12), (32, 47)), ((12, 16), (282, 376)), ((5, 7), (5, 7))]:
        small = tf.constant(rng.uniform(-1, 1, (2, h, w, 3)), tf.float32)
        columns = upsample_columns(small, width)
        whole = upsample_rows(columns, height, 0, height).numpy()
        bands = [
            upsample_rows(columns, height, a, min(a + 37, height)) for a in range(0, height, 37)
        ]
        np.testing.assert_array_equal(np.concatenate(bands, axis=1), whole)
        expected = tf.image.resize(small, [height, width], method="bilinear").numpy()
        np.testing.assert_allclose(whole, expected, atol=1e-6, rtol=0)
