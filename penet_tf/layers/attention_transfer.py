"""The Attention Transfer Network (ATN) of PEN-Net, paper section 3.1, eqs 2-4."""

import keras
import tensorflow as tf

from penet_tf.layers.patches import check_patch_method, extract_patches, fold_patches

SIMILARITIES = ("gram", "patches")
# Value patches: 4 x 4 at stride 2 with zero padding 1, so that the h x w grid of the
# high-level map addresses 4 x 4 patches of the 2h x 2w low-level map (rate 2).
VALUE_SIZE, VALUE_STRIDE, VALUE_PADDING = 4, 2, 1
_MIN_NORM = 1e-4  # the released network divides each key by max(|key|, 1e-4)
_MIN_ATTENTION = 1e-8  # ... and clamps the attention from below by 1e-8


def resize_align_corners(images, size):
    """Bilinear resize with ``align_corners=True`` (PyTorch's ``F.interpolate`` mode)."""
    return tf.raw_ops.ResizeBilinear(
        images=images, size=size, align_corners=True, half_pixel_centers=False
    )


def _static_or_dynamic(tensor):
    static = tensor.shape.as_list()
    dynamic = tf.shape(tensor)
    return [dynamic[i] if dim is None else dim for i, dim in enumerate(static)]


def _highest_power_of_two_at_most(value):
    """2**floor(log2(value)) for a positive int64 tensor, with bit operations only."""
    for shift in (1, 2, 4, 8, 16, 32):
        value = tf.bitwise.bitwise_or(value, tf.bitwise.right_shift(value, shift))
    return value - tf.bitwise.right_shift(value, 1)


def rows_per_chunk(height, width, chunk_bytes):
    """How many rows of query positions one score chunk may hold.

    A chunk of ``rows`` query rows scores ``rows * width`` queries against all
    ``height * width`` keys: ``rows * width * height * width * 4`` bytes per image in
    float32. The result is ``height`` when everything fits, otherwise the largest power of
    two that divides ``height`` and fits (at least 1), so all chunks have one size.
    Works on Python ints (static shapes: no loop is built when one chunk suffices) and on
    scalar tensors (dynamic shapes).
    """
    if isinstance(height, int) and isinstance(width, int):
        row_bytes = width * height * width * 4
        if height * row_bytes <= chunk_bytes:
            return height
        rows = height & -height  # largest power of two dividing height
        while rows > 1 and rows * row_bytes > chunk_bytes:
            rows //= 2
        return rows
    height = tf.cast(height, tf.int64)
    width = tf.cast(width, tf.int64)
    row_bytes = width * height * width * 4
    fit = tf.maximum(tf.constant(chunk_bytes, tf.int64) // row_bytes, 1)
    lowest_bit = tf.bitwise.bitwise_and(height, -height)
    rows = tf.minimum(lowest_bit, _highest_power_of_two_at_most(fit))
    return tf.cast(tf.where(height <= fit, height, rows), tf.int32)


def gram_similarity(padded, first_row, rows, height, width, match_size):
    """Scores of the query rows ``[first_row, first_row + rows)`` against every key.

    ``padded`` is the high-level map [B, height + 2p, width + 2p, C] zero-padded by
    ``p = match_size // 2``. The score of query q and key l is the dot product of their
    k x k patches, which is the sum over the k * k offsets d of the pixel Gram matrix
    entry G[q + d, l + d]: one product of C-vectors per pixel pair instead of per patch
    pair (9x fewer multiply-adds for k = 3), then k * k shifted additions, done as
    k row shifts and k column shifts.

    Returns float32 [B, rows * width, height * width] (unnormalised patch dot products).
    """
    pad = match_size // 2
    batch = tf.shape(padded)[0]
    channels = padded.shape[-1]
    padded_w = width + 2 * pad
    padded_h = height + 2 * pad
    keys = tf.reshape(padded, [batch, padded_h * padded_w, channels])
    queries = tf.reshape(
        padded[:, first_row : first_row + rows + 2 * pad], [batch, -1, channels]
    )
    gram = tf.matmul(queries, keys, transpose_b=True)
    if pad == 0:
        return gram
    # Row offsets: query row and key row move together, so slice both.
    gram = tf.reshape(gram, [batch, rows + 2 * pad, padded_w, padded_h * padded_w])
    summed = None
    for dy in range(match_size):
        part = gram[:, dy : dy + rows, :, dy * padded_w : (dy + height) * padded_w]
        summed = part if summed is None else summed + part
    # Column offsets, likewise.
    summed = tf.reshape(summed, [batch * rows, padded_w, height, padded_w])
    scores = None
    for dx in range(match_size):
        part = summed[:, dx : dx + width, :, dx : dx + width]
        scores = part if scores is None else scores + part
    return tf.reshape(scores, [batch, rows * width, height * width])


def attention_transfer(
    low,
    high,
    mask,
    *,
    match_size=3,
    softmax_scale=10.0,
    patch_method="extract_patches",
    similarity="gram",
    chunk_bytes=256 * 2**20,
):
    """Fills ``low`` with patches chosen by attention on ``high`` (paper eqs 2-4).

    Exactly the released network's attention (see ``AttentionTransfer``), batched and
    computed in chunks of query rows so that at most ``chunk_bytes`` of scores per image
    exist at once.

    Args:
        low: [B, 2h, 2w, C1] low-level features; 4 x 4 patches of it are transferred.
        high: [B, h, w, C2] high-level features; attention is computed on them.
        mask: [B, H, W, 1] with 1 = hole, any resolution (resized to h x w).

    Returns:
        [B, 2h, 2w, C1] in ``low``'s dtype.
    """
    check_patch_method(patch_method)
    if similarity not in SIMILARITIES:
        raise ValueError(f"Unknown similarity {similarity!r}: expected one of {SIMILARITIES}.")
    if match_size not in (1, 3):
        raise ValueError(f"match_size must be 1 or 3, got {match_size}.")
    channels_low = low.shape[-1]
    batch, height, width, _ = _static_or_dynamic(high)
    length = height * width
    pad = match_size // 2
    high = tf.cast(high, tf.float32)

    # Keys are usable where the k x k patch of the resized mask is all zero (mean == 0).
    small_mask = resize_align_corners(tf.cast(mask, tf.float32), [height, width])
    mask_patches = extract_patches(small_mask, match_size, 1, pad, patch_method)
    usable = tf.cast(tf.equal(tf.reduce_mean(mask_patches, axis=-1), 0.0), tf.float32)
    usable = tf.reshape(usable, [batch, 1, length])

    # |key| from per-pixel squared norms summed over the patch, folded with the softmax
    # scale and the usable mask into one factor per key: score = dot * key_factor.
    squares = tf.reduce_sum(tf.square(high), axis=-1, keepdims=True)
    key_norms = tf.sqrt(tf.reduce_sum(extract_patches(squares, match_size, 1, pad, patch_method), -1))
    key_factor = softmax_scale * usable / tf.maximum(tf.reshape(key_norms, [batch, 1, length]), _MIN_NORM)

    values = extract_patches(low, VALUE_SIZE, VALUE_STRIDE, VALUE_PADDING, patch_method)
    values = tf.reshape(values, [batch, length, VALUE_SIZE * VALUE_SIZE * channels_low])

    if similarity == "gram":
        padded = tf.pad(high, [[0, 0], [pad, pad], [pad, pad], [0, 0]]) if pad else high
    else:
        patches = tf.reshape(
            extract_patches(high, match_size, 1, pad, patch_method), [batch, length, -1]
        )

    def transfer_rows(first_row, rows):
        if similarity == "gram":
            dots = gram_similarity(padded, first_row, rows, height, width, match_size)
        else:
            dots = tf.matmul(
                patches[:, first_row * width : (first_row + rows) * width],
                patches,
                transpose_b=True,
            )
        # softmax(scale * s * usable) over keys, then * usable, then >= 1e-8 (eq 3 as
        # released: unusable keys still count exp(0) in the softmax denominator).
        attention = tf.nn.softmax(dots * key_factor, axis=-1)
        attention = tf.maximum(attention * usable, _MIN_ATTENTION)
        # Eq 4: the weighted sum of value patches.
        return tf.matmul(tf.cast(attention, values.dtype), values)

    rows = rows_per_chunk(height, width, chunk_bytes)
    if isinstance(rows, int) and isinstance(height, int) and rows == height:
        transferred = transfer_rows(0, height)
    else:
        chunks = height // rows
        outputs = tf.TensorArray(values.dtype, size=chunks, element_shape=None)

        def body(index, outputs):
            return index + 1, outputs.write(index, transfer_rows(index * rows, rows))

        _, outputs = tf.while_loop(
            lambda index, _: index < chunks, body, [0, outputs], parallel_iterations=1
        )
        transferred = tf.transpose(outputs.stack(), [1, 0, 2, 3])
    transferred = tf.reshape(
        transferred, [batch, height, width, VALUE_SIZE * VALUE_SIZE * channels_low]
    )
    # Eq 4 as a transposed convolution (stride 2, padding 1) with the value patches as
    # filters: the matrix product above, then the overlap-add fold, divided by 4.
    folded = fold_patches(transferred, VALUE_SIZE, VALUE_STRIDE, VALUE_PADDING, channels_low)
    return folded / tf.constant(4.0, folded.dtype)


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
       patches of ``low`` (eq 4): a transposed convolution with stride 2, divided by 4;
    5. with ``fuse``, four 3 x 3 convolutions with dilation 1, 2, 4, 8 (ReLU), each with
       ``filters / 4`` outputs, concatenated.

    Scores are computed in chunks of query rows (``chunk_mb`` of float32 scores per image
    at most), so memory is O(chunk * h * w), never O((h * w)^2); with ``similarity="gram"``
    the k x k patch similarity comes from the pixel Gram matrix (9x fewer multiply-adds
    for k = 3 than a patch-by-patch product, same result). The softmax always runs in
    float32; under a mixed precision policy the transfer product runs in the compute dtype.

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
        chunk_mb: memory budget for one chunk of attention scores, per image, in MiB.
        **kwargs: base layer arguments (``name``, ``dtype``, ...).

    Call arguments:
        low: [batch, 2h, 2w, C1] low-level features.
        high: [batch, h, w, C2] high-level features.
        mask: [batch, H, W, 1], 1 = hole, 0 = known, at any resolution.

    Returns:
        [batch, 2h, 2w, filters] (``fuse``) or [batch, 2h, 2w, C1].

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
        chunk_mb=256,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if match_size not in (1, 3):
            raise ValueError(f"match_size must be 1 or 3, got {match_size}.")
        if similarity not in SIMILARITIES:
            raise ValueError(f"Unknown similarity {similarity!r}: expected one of {SIMILARITIES}.")
        check_patch_method(patch_method)
        self.match_size = match_size
        self.softmax_scale = float(softmax_scale)
        self.fuse = fuse
        self.filters = filters
        self.fuse_rates = tuple(fuse_rates)
        self.patch_method = patch_method
        self.similarity = similarity
        self.chunk_mb = chunk_mb
        # The hole mask is a call argument, not a Keras sequence mask: take it and drop it.
        self.supports_masking = True
        self.fuse_convs = []

    def build(self, low_shape, high_shape=None):
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
                    dilation_rate=rate,
                    activation="relu",
                    kernel_initializer=keras.initializers.RandomNormal(0.0, 0.02),
                    name=f"conv{index:02d}",
                    dtype=self.dtype_policy,
                )
                conv.build(tuple(low_shape[:-1]) + (channels,))
                self.fuse_convs.append(conv)

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def call(self, low, high, mask):
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
            chunk_bytes=int(self.chunk_mb * 2**20),
        )
        if self.fuse:
            outputs = tf.concat([conv(outputs) for conv in self.fuse_convs], axis=-1)
        return outputs

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
        )
        return config
