"""AttentionTransfer against the literal NumPy algorithm, and its plumbing."""

import numpy as np
import pytest
import tensorflow as tf
from reference_attention import reference_attention_transfer

from penet_tf import AttentionTransfer
from penet_tf.layers.attention_transfer import (
    _GRID_MIN_ROWS,
    _grid_chunk_layout,
    attention_transfer,
    resize_align_corners,
    resized_mask_nonzero,
    rows_per_chunk,
)


def _inputs(seed, batch, h, w, c1=6, c2=10):
    rng = np.random.default_rng(seed)
    low = rng.normal(size=(batch, 2 * h, 2 * w, c1)).astype(np.float32)
    # ReLU-like, as the encoder's features; a few exactly-zero pixels exercise the 1e-4 floor.
    high = np.maximum(rng.normal(size=(batch, h, w, c2)), 0).astype(np.float32)
    high[:, 0, 0] = 0.0
    return low, high


def _masks(batch, size_h, size_w):
    """A different mask per sample: a centred block, a left half, an irregular blob."""
    masks = np.zeros((batch, size_h, size_w, 1), np.float32)
    masks[0, size_h // 4 : 3 * size_h // 4, size_w // 4 : 3 * size_w // 4] = 1
    if batch > 1:
        masks[1, :, : size_w // 2] = 1
    if batch > 2:
        yy, xx = np.mgrid[:size_h, :size_w]
        masks[2, ..., 0] = (yy - size_h / 3) ** 2 + (xx - size_w / 2) ** 2 < (size_h / 4) ** 2
    return masks


CASES = [
    # (match_size, batch, h, w): k = 3 and k = 1, non-square maps
    (3, 3, 8, 8),
    (3, 3, 6, 10),
    (1, 3, 5, 7),
    (3, 1, 12, 4),
]


@pytest.mark.parametrize("similarity", ["gram", "patches"])
@pytest.mark.parametrize("match_size,batch,h,w", CASES)
def test_matches_reference_per_sample_masks(match_size, batch, h, w, similarity):
    low, high = _inputs(h * 100 + w, batch, h, w)
    mask = _masks(batch, 4 * h, 4 * w)
    expected = reference_attention_transfer(low, high, mask, match_size)
    got = attention_transfer(low, high, mask, match_size=match_size, similarity=similarity)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("match_size", [1, 3])
@pytest.mark.parametrize("fill", [0.0, 1.0])
def test_mask_covering_nothing_or_everything(match_size, fill):
    low, high = _inputs(7, 2, 6, 8)
    mask = np.full((2, 24, 32, 1), fill, np.float32)
    expected = reference_attention_transfer(low, high, mask, match_size)
    got = attention_transfer(low, high, mask, match_size=match_size)
    np.testing.assert_allclose(got.numpy(), expected, atol=1e-5, rtol=0)
    if fill == 1.0:
        # No usable key: every weight is the 1e-8 floor, so the output is tiny but not 0.
        assert 0 < np.abs(got.numpy()).max() < 1e-5


def test_both_patch_methods_give_identical_outputs():
    low, high = _inputs(3, 3, 8, 12)
    mask = _masks(3, 32, 48)
    layer_kwargs = dict(match_size=3, filters=8)
    a = AttentionTransfer(patch_method="extract_patches", **layer_kwargs)
    b = AttentionTransfer(patch_method="conv", **layer_kwargs)
    a.build(low.shape, high.shape)
    b.build(low.shape, high.shape)
    b.set_weights(a.get_weights())
    np.testing.assert_array_equal(a(low, high, mask).numpy(), b(low, high, mask).numpy())


@pytest.mark.parametrize("similarity", ["gram", "patches"])
def test_chunked_equals_unchunked(similarity):
    low, high = _inputs(11, 2, 12, 10)
    mask = _masks(2, 48, 40)
    whole = attention_transfer(low, high, mask, similarity=similarity)
    # One query row per chunk (plus the halo row): 12 chunks.
    assert rows_per_chunk(12, 10, 2 * 10 * 120 * 4) == 1
    chunked = attention_transfer(
        low, high, mask, similarity=similarity, chunk_bytes=2 * 10 * 120 * 4, min_chunk_rows=1
    )
    np.testing.assert_allclose(chunked.numpy(), whole.numpy(), atol=1e-6, rtol=0)
    # Grown to 5 rows (4x the budget holds 7 with the halo): 3 chunks, the last of 2.
    assert rows_per_chunk(12, 10, 2 * 10 * 120 * 4, min_rows=5) == 5
    assert rows_per_chunk(12, 10, 2 * 10 * 120 * 4 // 3, min_rows=5) == 1  # 4x < 2 rows
    assert rows_per_chunk(12, 10, 8 * 10 * 120 * 4, min_rows=5) == 7  # budget rows enough
    grown = attention_transfer(low, high, mask, similarity=similarity, chunk_bytes=2 * 10 * 120 * 4)
    np.testing.assert_allclose(grown.numpy(), whole.numpy(), atol=1e-6, rtol=0)
    # The same rule on tensors (dynamic shapes).
    dynamic = rows_per_chunk(tf.constant(12), tf.constant(10), 2 * 10 * 120 * 4, min_rows=5)
    assert int(dynamic) == 5


@pytest.mark.parametrize("chunk_bytes", [4 * 6 * 48 * 4, None])
def test_unknown_batch_and_size_inside_tf_function(chunk_bytes):
    low, high = _inputs(5, 2, 8, 6)
    mask = _masks(2, 32, 24)
    expected = reference_attention_transfer(low, high, mask, 3)
    spec = [
        tf.TensorSpec([None, None, None, 6]),
        tf.TensorSpec([None, None, None, 10]),
        tf.TensorSpec([None, None, None, 1]),
    ]

    @tf.function(input_signature=spec)
    def run(low, high, mask):
        # 3 rows per chunk: the loop and its uneven last chunk run with dynamic shapes;
        # one chunk (None): grid_product does.
        return attention_transfer(low, high, mask, chunk_bytes=chunk_bytes, min_chunk_rows=1)

    np.testing.assert_allclose(run(low, high, mask).numpy(), expected, atol=1e-5, rtol=0)


def _grid_masks(batch, size_h, size_w):
    """Holes at every border and corner (keys next to the grid padding unusable)."""
    masks = np.zeros((batch, size_h, size_w, 1), np.float32)
    masks[0, : size_h // 3, : size_w // 3] = 1  # top-left corner
    masks[1, -size_h // 4 :] = 1  # bottom rows
    masks[1, :, -3:] = 1  # right columns
    masks[2] = 1  # every key unusable
    return masks[:batch]


@pytest.mark.parametrize("magnitude,sign", [(1.0, 1.0), (30.0, -1.0), (1e-3, 1.0)])
def test_one_chunk_grid_path_equals_the_band(magnitude, sign):
    # One chunk in float32 takes grid_product (scores on the padded grid, phantom keys
    # and junk rows rescaled and subtracted); the band (needed_rows: the row-band code)
    # crops to the image. Large negative features make the zero scores (phantom and
    # unusable keys) dominate the softmax: the rescale and the subtractions carry most of
    # each row there.
    low, high = _inputs(21, 3, 10, 13)
    high = sign * magnitude * high
    high[:, 5, 6] = magnitude  # one positive key
    mask = _grid_masks(3, 40, 52)
    grid = attention_transfer(low, high, mask).numpy()
    band = attention_transfer(low, high, mask, needed_rows=(0, 20)).numpy()
    np.testing.assert_allclose(grid, band, atol=2e-6 * max(1.0, np.abs(band).max()), rtol=0)
    expected = reference_attention_transfer(low, high, mask, 3)
    np.testing.assert_allclose(grid, expected, atol=2e-4 if magnitude > 1 else 1e-5, rtol=0)


def test_one_chunk_grid_path_writes_the_scores_seven_times():
    # Every op of the traced graph whose output holds at least (h * w)^2 elements (the
    # score matrix and what follows from it), reshapes aside: the Gram product, its box
    # sum, x key factor, softmax, x row factor, the 1e-8 floor, the transfer's box sum
    # (then two products read it). No pad, slice or crop copies the matrix (the band's
    # one chunk wrote it 13 times).
    h, w = 8, 10
    spec = [
        tf.TensorSpec([1, 2 * h, 2 * w, 6]),
        tf.TensorSpec([1, h, w, 10]),
        tf.TensorSpec([1, 4 * h, 4 * w, 1]),
    ]
    graph = tf.function(attention_transfer).get_concrete_function(*spec).graph
    big = [
        op.type
        for op in graph.get_operations()
        if op.type != "Reshape"
        and op.outputs
        and op.outputs[0].shape.is_fully_defined()
        and op.outputs[0].shape.num_elements() >= (h * w) ** 2
    ]
    assert sorted(big) == sorted(
        ["BatchMatMulV2", "AvgPool", "Mul", "Softmax", "Mul", "Maximum", "AvgPool"]
    )


# (h, w, rows the band's budget gives) and the chunked grid's layout (wide, rows, step)
# for them: each alignment step once, 2 or 3 chunks.
GRID_CHUNKS = [((17, 6, 8), (16, 8, 1)), ((17, 5, 8), (8, 8, 2)), ((17, 5, 12), (8, 10, 4))]


def _budget(h, w, rows):
    return (rows + 1) * w * (h * w) * 4  # rows_per_chunk: rows + the halo row


@pytest.mark.parametrize("magnitude,sign", [(1.0, 1.0), (30.0, -1.0)])
@pytest.mark.parametrize("shape,layout", GRID_CHUNKS)
def test_chunked_grid_path_equals_the_band(shape, layout, magnitude, sign):
    # Chunked float32 attention takes chunked_grid_product (grid_product's algebra on
    # chunks of rows read as aligned prefixes of the buffers); needed_rows the band.
    h, w, rows = shape
    budget = _budget(h, w, rows)
    assert rows_per_chunk(h, w, budget, 5) == rows
    assert _grid_chunk_layout(h, w, budget) == layout
    low, high = _inputs(31, 3, h, w)
    high = sign * magnitude * high
    high[:, 5, 3] = magnitude  # one positive key
    mask = _grid_masks(3, 4 * h, 4 * w)
    spec = [tf.TensorSpec([None, *array.shape[1:]]) for array in (low, high, mask)]
    # Batch unknown while tracing: the loop runs over images x chunks.
    run = tf.function(lambda *x: attention_transfer(*x, chunk_bytes=budget), input_signature=spec)
    assert run(low[:0], high[:0], mask[:0]).shape == (0, 2 * h, 2 * w, low.shape[-1])
    grid = run(low, high, mask).numpy()
    band = attention_transfer(low, high, mask, chunk_bytes=budget, needed_rows=(0, 2 * h)).numpy()
    np.testing.assert_allclose(grid, band, atol=2e-6 * max(1.0, np.abs(band).max()), rtol=0)
    expected = reference_attention_transfer(low, high, mask, 3)
    np.testing.assert_allclose(grid, expected, atol=2e-4 if magnitude > 1 else 1e-5, rtol=0)


@pytest.mark.parametrize("size", [64, 128, 256, 512, 640, 768])
def test_chunked_grid_prefixes_end_on_64_bytes(size):
    # A Slice of a flat prefix is a view in TensorFlow only where the prefix ends on a
    # 64-byte boundary (otherwise a copy: a 256 MB one takes as long as a multiply);
    # every prefix chunked_grid_product reads must, for the Generator's at_conv01 /
    # at_conv02 maps at every budget, and fit in its buffer.
    for h in (size // 4, size // 8):
        for mb in (0.25, 1, 8, 32, 96, 192, 384):
            layout = _grid_chunk_layout(h, h, int(mb * 2**20))
            if layout is None:
                continue
            wide, rows, step = layout
            assert wide >= h + 3 and rows >= _GRID_MIN_ROWS and (rows + 2) % step == 0
            n = (h + 2) * wide
            scored, viewed = (rows + 2 + step) * wide, (rows + 2) * wide
            assert scored <= n  # the Gram product [scored + 1, n] holds [scored, n + 1]
            for elements in (scored * (n + 1), scored * n, viewed * (n + 1), viewed * n):
                assert elements % 16 == 0, (h, mb, layout)


def test_layer_fuse_branches_and_config_round_trip():
    layer = AttentionTransfer(match_size=3, fuse=True, filters=8, chunk_mb=1, name="at_conv02")
    low, high = _inputs(2, 2, 4, 4)
    mask = _masks(2, 16, 16)
    out = layer(low, high, mask)
    assert out.shape == (2, 8, 8, 8)
    assert [conv.dilation_rate for conv in layer.fuse_convs] == [(1, 1), (2, 2), (4, 4), (8, 8)]
    assert np.all(out.numpy() >= 0)  # ReLU branches
    clone = AttentionTransfer.from_config(layer.get_config())
    clone.build(low.shape, high.shape)
    clone.set_weights(layer.get_weights())
    np.testing.assert_array_equal(clone(low, high, mask).numpy(), out.numpy())
    assert clone.get_config() == layer.get_config()


def test_mask_keyword_is_the_hole_mask_not_a_keras_mask():
    layer = AttentionTransfer(match_size=1, fuse=False)
    low, high = _inputs(4, 1, 4, 4)
    mask = _masks(1, 16, 16)
    np.testing.assert_array_equal(
        layer(low, high, mask=mask).numpy(), layer(low, high, mask).numpy()
    )


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(match_size=2), "match_size must be 1 or 3"),
        (dict(patch_method="unfold"), "Unknown patch method 'unfold'"),
        (dict(similarity="cosine"), "Unknown similarity 'cosine'"),
        # ("64" from a JSON config failed at the first call: "64" * 2**20; 0 and negative
        # budgets ran in 1-row chunks; no fuse branch was a ZeroDivisionError at build)
        (dict(chunk_mb="64"), "chunk_mb .* must be a positive number of MiB or None, got '64'"),
        (dict(chunk_mb=0), "must be a positive number"),
        (dict(chunk_mb=-1.5), "must be a positive number"),
        (dict(chunk_mb=True), "must be a positive number"),
        (dict(fuse_rates=()), "fuse_rates must be one or more dilation rates >= 1"),
        (dict(fuse_rates=(1, 0)), "fuse_rates must be"),
        (dict(fuse_rates=(1, 2.5)), "fuse_rates must be"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        AttentionTransfer(**kwargs)


def test_bad_shapes():
    layer = AttentionTransfer(fuse=False)
    low, high = _inputs(1, 1, 4, 4)
    with pytest.raises(ValueError, match="twice the height and width of high"):
        layer(low[:, :6], high, np.zeros((1, 16, 16, 1), np.float32))
    with pytest.raises(ValueError, match="mask must have 1 channel"):
        layer(low, high, np.zeros((1, 16, 16, 3), np.float32))
    with pytest.raises(ValueError, match="high must be a 4-D tensor"):
        layer(low, high[0], np.zeros((1, 16, 16, 1), np.float32))
    # (an InvalidArgumentError from a Reshape deep inside, before)
    with pytest.raises(ValueError, match="same batch size; got 1, 1 and 2"):
        layer(low, high, np.zeros((2, 16, 16, 1), np.float32))


@pytest.mark.parametrize(
    "match_size, similarity, chunks",
    [(3, "gram", None), (3, "gram", 4 * 6 * 48 * 4), (3, "patches", None), (1, "gram", 2048)],
)
def test_recomputed_backward_equals_plain_autodiff(match_size, similarity, chunks):
    # Training keeps no (h*w)^2 tensor for the backward pass: the attention is recomputed
    # there (in chunks). Values and gradients must be those of plain autodiff.
    low, high = (tf.constant(t) for t in _inputs(2, 3, 8 if match_size == 1 else 4, 6))
    mask = _masks(3, 32 if match_size == 1 else 16, 24)
    kwargs = dict(match_size=match_size, similarity=similarity)
    if chunks:
        kwargs.update(chunk_bytes=chunks, backward_chunk_bytes=chunks)
    results = []
    for recompute in (False, True):
        with tf.GradientTape() as tape:
            tape.watch([low, high])
            out = attention_transfer(low, high, mask, recompute_gradient=recompute, **kwargs)
            loss = tf.reduce_sum(out * tf.cos(out))
        results.append([out, *tape.gradient(loss, [low, high])])
    for plain, recomputed in zip(*results, strict=True):
        scale = max(1.0, float(tf.reduce_max(tf.abs(plain))))
        np.testing.assert_allclose(recomputed.numpy(), plain.numpy(), atol=1e-5 * scale, rtol=0)


def _transposed_transfer(attention, low):
    """Eq 4 from given weights, the literal way: [B, hw, hw] and [B, 2h, 2w, C1]."""
    batch, height2, width2, channels = low.shape
    h, w = height2 // 2, width2 // 2
    padded = np.pad(low, ((0, 0), (1, 1), (1, 1), (0, 0)))
    values = np.stack(
        [padded[:, 2 * y : 2 * y + 4, 2 * x : 2 * x + 4] for y in range(h) for x in range(w)],
        axis=1,
    )  # [B, keys, 4, 4, C1]
    patches = np.einsum("bqk,bkijc->bqijc", attention.astype(np.float64), values)
    canvas = np.zeros((batch, 2 * h + 2, 2 * w + 2, channels))
    for q in range(h * w):
        qy, qx = divmod(q, w)
        canvas[:, 2 * qy : 2 * qy + 4, 2 * qx : 2 * qx + 4] += patches[:, q]
    return canvas[:, 1:-1, 1:-1] / 4.0


@pytest.mark.parametrize("match_size", [1, 3])
def test_return_attention_is_what_the_transfer_uses(match_size):
    low, high = _inputs(9, 3, 6, 8)
    mask = _masks(3, 24, 32)
    mask[2] = 0.0  # one sample without a hole: every key usable
    layer = AttentionTransfer(match_size=match_size, fuse=False, chunk_mb=1e-3)
    plain = layer(low, high, mask)
    out, attention = layer(low, high, mask, return_attention=True)
    assert attention.shape == (3, 48, 48) and attention.dtype == tf.float32
    np.testing.assert_allclose(out.numpy(), plain.numpy(), atol=1e-6, rtol=0)
    np.testing.assert_allclose(
        _transposed_transfer(attention.numpy(), low), out.numpy(), atol=1e-5, rtol=0
    )
    sums = attention.numpy().sum(axis=-1)
    np.testing.assert_allclose(sums[2], 1.0, atol=1e-5)  # no hole: a plain softmax
    assert np.all(sums <= 1.0 + 48 * 1e-8 + 1e-5) and attention.numpy().min() >= 1e-8


@pytest.mark.parametrize(
    "chunk_bytes, min_rows",
    [(None, 5), (2 * 10 * 120 * 4, 1), (2 * 10 * 120 * 4, 5), (192 * 2**20, 5)],
)
@pytest.mark.parametrize("needed", [(0, 3), (9, 24), (23, 24)])
def test_needed_rows_are_exact(needed, chunk_bytes, min_rows):
    low, high = _inputs(12, 2, 12, 10)
    mask = _masks(2, 48, 40)
    whole = attention_transfer(low, high, mask).numpy()
    spec = [tf.TensorSpec([None, None, None, c]) for c in (6, 10, 1)]

    @tf.function(input_signature=[*spec, tf.TensorSpec([], tf.int32), tf.TensorSpec([], tf.int32)])
    def run(low, high, mask, first, last):
        return attention_transfer(
            low,
            high,
            mask,
            chunk_bytes=chunk_bytes,
            needed_rows=(first, last),
            min_chunk_rows=min_rows,
        )

    got = run(low, high, mask, *needed).numpy()
    first, last = needed
    np.testing.assert_allclose(got[:, first:last], whole[:, first:last], atol=1e-6, rtol=0)
    if last - first < 6:
        assert np.abs(got - whole).max() > 1e-3  # rows far away are not computed


@pytest.mark.parametrize("match_size", [3, 1])
@pytest.mark.parametrize("chunk_bytes", [2 * 4 * 120 * 4, 192 * 2**20])
def test_needed_windows_are_exact(chunk_bytes, match_size):
    """Narrow windows take the window path (several chunks with the small budget). Windows
    as wide as the map keep the row band where it runs one chunk (192 MiB) and take the
    window where the band's chunks hold 2 rows (the small budget). One trace serves every
    window. Both paths are 2-3e-6 from the float64 reference here, in different roundings."""
    low, high = _inputs(13, 2, 12, 10)
    mask = _masks(2, 48, 40)
    whole = attention_transfer(low, high, mask, match_size=match_size).numpy()
    expected = reference_attention_transfer(low, high, mask, match_size)
    spec = [tf.TensorSpec([None, None, None, c]) for c in (6, 10, 1)]

    @tf.function(input_signature=[*spec, *[tf.TensorSpec([], tf.int32)] * 4])
    def run(low, high, mask, first, last, left, right):
        return attention_transfer(
            low,
            high,
            mask,
            match_size=match_size,
            chunk_bytes=chunk_bytes,
            needed_rows=(first, last),
            needed_columns=(left, right),
        )

    windows = [(0, 3, 0, 2), (9, 24, 3, 5), (23, 24, 19, 20), (0, 24, 7, 8), (5, 9, 0, 20)]
    windows += [(0, 24, 0, 7), (3, 17, 12, 20), (0, 24, 0, 20)]  # the image's borders
    for window in windows:
        got = run(low, high, mask, *window).numpy()
        first, last, left, right = window
        inside = np.s_[:, first:last, left:right]
        np.testing.assert_allclose(
            got[inside], expected[inside], atol=1e-5, rtol=0, err_msg=str(window)
        )
        np.testing.assert_allclose(
            got[inside], whole[inside], atol=5e-6, rtol=0, err_msg=str(window)
        )
        if right - left < 6:  # columns far away in the same rows are not computed
            assert np.abs(got[:, first:last] - whole[:, first:last]).max() > 1e-3, window


@pytest.mark.parametrize("low_dtype, matmul_dtype", [("bfloat16", None), ("float32", "bfloat16")])
def test_needed_windows_in_bfloat16(low_dtype, matmul_dtype):
    """The window path under a mixed_bfloat16 policy (``low`` in bfloat16: the transfer
    product in bfloat16) and with bfloat16 matrix products: ``low``'s dtype out, close to
    float32 (bfloat16 keeps 8 bits: a few 1e-2 on values of magnitude ~1)."""
    low, high = _inputs(14, 2, 12, 10)
    mask = _masks(2, 48, 40)
    whole = attention_transfer(low, high, mask).numpy()
    for window in [(4, 20, 0, 6), (0, 24, 9, 20)]:
        first, last, left, right = window
        got = attention_transfer(
            tf.cast(low, low_dtype),
            high,
            mask,
            chunk_bytes=2 * 4 * 120 * 4,
            matmul_dtype=matmul_dtype,
            needed_rows=(first, last),
            needed_columns=(left, right),
        )
        assert got.dtype == low_dtype
        inside = np.s_[:, first:last, left:right]
        np.testing.assert_allclose(
            tf.cast(got, tf.float32).numpy()[inside], whole[inside], atol=0.06, rtol=0
        )


def test_needed_rows_refused_in_training():
    low, high = _inputs(1, 1, 4, 4)
    with pytest.raises(ValueError, match="restrict inference"):
        attention_transfer(
            low,
            high,
            np.zeros((1, 16, 16, 1), np.float32),
            needed_rows=(0, 2),
            recompute_gradient=True,
        )


def test_resized_mask_nonzero_is_where_tensorflow_s_resize_is_nonzero():
    """The usable keys are decided by the exact zeros of the resized mask: computed as
    indices (the same on every runtime), they must be TensorFlow's zeros, the release's
    (PyTorch's align-corners resize gives the same zeros: checked on 460 masks)."""
    rng = np.random.default_rng(1)
    sizes = [(64, 64, 16, 16), (64, 64, 32, 32), (256, 256, 64, 64), (97, 130, 24, 33)]
    sizes += [(5, 7, 20, 30), (1, 9, 3, 1), (33, 64, 1, 16), (512, 48, 128, 12)]
    for height, width, out_h, out_w in sizes:
        for kind in range(4):
            mask = np.zeros((2, height, width, 1), np.float32)
            if kind == 0:  # a 1-pixel column (62 of 64 was 62.999996: not exactly 0)
                mask[0, :, width - 2] = mask[1, :, rng.integers(0, width)] = 1
            elif kind == 1:
                mask[:, rng.integers(0, height)] = 1
            elif kind == 2:
                mask[rng.random(mask.shape) < 0.003] = 1
            else:
                mask[0, rng.integers(0, height), rng.integers(0, width)] = rng.random()
            expected = resize_align_corners(mask, [out_h, out_w]).numpy() != 0
            found = resized_mask_nonzero(tf.constant(mask), [out_h, out_w]).numpy()
            assert found.shape == expected.shape
            np.testing.assert_array_equal(found, expected.astype(np.float32))
