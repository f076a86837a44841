"""The PEN-Net generator: pyramid-context encoder + multi-scale decoder (paper section 3)."""

import threading

import keras
import tensorflow as tf

from penet_tf.errors import positive_int, require_float
from penet_tf.initializers import kernel_initializer
from penet_tf.layers.attention_transfer import AttentionTransfer, resize_align_corners
from penet_tf.layers.patches import check_patch_method

# Builds run one at a time, whichever thread calls a model first.
_BUILD_LOCK = threading.Lock()

# Every resolution is halved six times, so H and W must be multiples of 64.
SIZE_MULTIPLE = 64


def upsample(features):
    """Bilinear x2 with align_corners=True, as the released network's ``F.interpolate``."""
    shape = tf.shape(features)
    return resize_align_corners(features, [2 * shape[1], 2 * shape[2]])


def upsampled_conv(conv, features):
    """``conv(upsample(features))`` for a 3 x 3 stride-1 "same" ``keras.layers.Conv2D``
    (the decoder's), with half the multiply-adds.

    The bilinear up-sampling is separable and linear, so it commutes with the
    convolution's channel mixing and with its other axis: up-sample the width, convolve
    with the kernel's three rows side by side (a 1 x 3 convolution into 3 Cout channels,
    at half the final height), up-sample the height, and add the three channel groups
    shifted by their rows (zero rows at the borders, as the "same" padding). Equal to the
    direct form up to float rounding (2e-6 relative on these layers).
    """
    form = (conv.kernel_size, conv.strides, conv.dilation_rate, conv.padding)
    if form != ((3, 3), (1, 1), (1, 1), "same") or conv.groups != 1:
        raise ValueError(
            "upsampled_conv: expected a 3 x 3, stride-1, undilated, ungrouped 'same' Conv2D; "
            f"got kernel_size, strides, dilation_rate, padding = {form}, groups={conv.groups}."
        )
    dtype = conv.compute_dtype  # as the layer casts; ResizeBilinear returns float32
    shape = tf.shape(features)
    height, width = 2 * shape[1], 2 * shape[2]
    f = conv.filters
    kernel = tf.cast(conv.kernel, dtype)  # [3, 3, Cin, Cout]
    row_kernels = tf.concat([kernel[0], kernel[1], kernel[2]], axis=-1)[None]  # [1, 3, Cin, 3 Cout]
    wide = tf.cast(resize_align_corners(features, [shape[1], width]), dtype)
    rows = tf.cast(
        resize_align_corners(tf.nn.conv2d(wide, row_kernels, 1, "SAME"), [height, width]), dtype
    )
    # Channel group k holds kernel row k: output row y takes group 0 of row y - 1, group 1
    # of row y and group 2 of row y + 1 (the first and last rows have no row outside).
    summed = tf.concat(
        [
            rows[:, :1, :, f : 2 * f] + rows[:, 1:2, :, 2 * f :],
            rows[:, :-2, :, :f] + rows[:, 1:-1, :, f : 2 * f] + rows[:, 2:, :, 2 * f :],
            rows[:, -2:-1, :, :f] + rows[:, -1:, :, f : 2 * f],
        ],
        axis=1,
    )
    if conv.use_bias:
        summed = tf.nn.bias_add(summed, tf.cast(conv.bias, dtype))
    return conv.activation(summed)


def _image_and_mask(inputs):
    """``(image, mask)`` from Keras' forms of two inputs: ``[image, mask]``, ``(image,
    mask)`` or ``{"image": ..., "mask": ...}`` (``predict``, ``fit`` and ``export`` pass
    their ``x`` as one argument: they failed in Keras with "missing a required argument:
    'mask'")."""
    if isinstance(inputs, dict) and set(inputs) == {"image", "mask"}:
        return inputs["image"], inputs["mask"]
    if isinstance(inputs, (list, tuple)) and len(inputs) == 2:
        return tuple(inputs)
    raise ValueError(
        "Generator needs the mask: call it as generator(image, mask), or with Keras' "
        "forms of two inputs, [image, mask] or {'image': ..., 'mask': ...} (image float "
        "[batch, H, W, 3] in [-1, 1], mask float [batch, H, W, 1], 1 = hole)."
    )


def _keras_masks(mask):
    """Whether ``mask`` is what Keras passes to a ``call`` with an argument named ``mask``
    that was not given: each input's Keras mask (padding masks, None here), in the
    inputs' structure."""
    return isinstance(mask, (list, tuple, dict)) and all(
        part is None for part in (mask.values() if isinstance(mask, dict) else mask)
    )


def check_image_and_mask(image, mask, multiple=SIZE_MULTIPLE, who="Generator"):
    """Raises ValueError naming the problem when image/mask shapes cannot be inpainted.

    Static dimensions are checked at once; dimensions only known at run time are checked
    with graph assertions (tf.errors.InvalidArgumentError with the same message).
    """
    expected = "expected image [batch, H, W, 3] and mask [batch, H, W, 1]" + (
        f" with H and W multiples of {multiple}" if multiple > 1 else ""
    )
    image_shape, mask_shape = image.shape, mask.shape
    hint = " (or use penet_tf.inference.composite_uint8)"
    require_float(image.dtype, who, "image", "float (in [-1, 1])", hint)
    require_float(  # (uint8_to_float, the photos' advice, made a mask of -1 / -0.99)
        mask.dtype,
        who,
        "mask",
        "float (1 = hole)",
        hint,
        advice="turn a 0/255, 0/1 or bool mask into 0/1 floats with penet_tf.inference.hole_mask",
    )
    if image_shape.rank != 4:
        raise ValueError(f"{who}: image must be 4-D; {expected}; got image shape {image_shape}.")
    if mask_shape.rank != 4:
        raise ValueError(f"{who}: mask must be 4-D; {expected}; got mask shape {mask_shape}.")
    if image_shape[-1] != 3:
        raise ValueError(
            f"{who}: image must have 3 channels (RGB); {expected}; got image shape {image_shape}."
        )
    if mask_shape[-1] != 1:
        raise ValueError(
            f"{who}: mask must have 1 channel; {expected}; got mask shape {mask_shape}."
        )
    if None not in (image_shape[0], mask_shape[0]) and image_shape[0] != mask_shape[0]:
        raise ValueError(
            f"{who}: batch mismatch, image has {image_shape[0]} and mask {mask_shape[0]}; "
            f"{expected}."
        )
    for axis, name in ((1, "height"), (2, "width")):
        size, mask_size = image_shape[axis], mask_shape[axis]
        if size is not None and mask_size is not None and size != mask_size:
            raise ValueError(
                f"{who}: mask {name} {mask_size} differs from image {name} {size}; "
                f"{expected}; got image {image_shape} and mask {mask_shape}."
            )
        if size is not None and size % multiple:
            raise ValueError(
                f"{who}: image {name} {size} is not a multiple of {multiple}; {expected}; "
                f"got image shape {image_shape} (pad the image, or use the exported "
                "signatures, which pad for you)."
            )
    if image_shape[1:3].is_fully_defined() and mask_shape.is_fully_defined():
        return []
    image_dims, mask_dims = tf.shape(image), tf.shape(mask)
    return [
        tf.debugging.assert_equal(
            image_dims[:3],
            mask_dims[:3],
            message=f"{who}: image and mask batch/size differ; {expected}",
        ),
        tf.debugging.assert_equal(
            image_dims[1:3] % multiple, 0, message=f"{who}: H and W must be multiples of {multiple}"
        ),
    ]


@keras.saving.register_keras_serializable(package="penet_tf")
class Generator(keras.Model):
    """PEN-Net generator, layer for layer the released network (loads its checkpoints).

    Encoder: six 3 x 3 stride-2 convolutions (``dw_conv01`` ... ``dw_conv06``). Pyramid
    context encoder: five ``AttentionTransfer`` layers, deep to shallow, each filling the
    shallower map from attention on the deeper (already filled) one (paper eq 1).
    Multi-scale decoder: bilinear x2 up-sampling + 3 x 3 convolutions on
    [decoder feature, attention feature] (eq 5), with a 1 x 1 ``torgb`` head at each of
    five scales for the pyramid L1 loss (eq 6) and a final two-convolution decoder.

    The generator masks its input itself: it feeds ``concat(image * (1 - mask) + mask,
    mask)`` (holes white) and passes ``mask`` to every attention layer.

    Args:
        base_channels: width of the first encoder layer (32 in the released network;
            smaller values give thin models for tests).
        patch_method: ``"extract_patches"`` or ``"conv"`` (builtin ops for TFLite, TF.js
            and ONNX; identical results).
        similarity: attention similarity, ``"gram"`` (fast) or ``"patches"`` (literal).
        attention_chunk_mb: memory budget for one chunk of attention scores per image
            (``None``: no chunking, no loop in the graph).
        kernel_init: ``"released"`` (normal(0, 0.02)) or a Keras initializer name such as
            ``"he_normal"`` (better for thin models); biases start at 0.
        attention_matmul_dtype: ``None`` (exact) or ``"bfloat16"``: the attention layers'
            matrix products in bfloat16, their softmax and sums in float32, everything
            else in the model's dtype; an inference speed option (distance from the
            release in benchmarks/README.md).
        **kwargs: base model arguments (``name``, ``dtype`` such as ``"mixed_bfloat16"``).

    Call arguments:
        image: float32 [batch, H, W, 3] in [-1, 1]; not pre-masked. H and W multiples of 64.
        mask: float32 [batch, H, W, 1], 1 = hole, 0 = known.
        training: ``True`` in training: the attention layers then keep no (h * w)^2
            tensor for the backward pass (they recompute the attention there).
        output_mask: ``None`` (default), or [batch, H, W, 1] with nonzero where the output
            is needed (for a composite: the hole). Then at_conv01, the finest and by far
            the costliest attention layer, scores only the queries whose results can reach
            the band of rows the mask touches (rows of the union over the batch, widened
            by everything downstream: fuse branches, up-sampling, decoder; see
            ``at_conv01_rows``), and, with attention chunks, where the columns reached are
            narrow, only that window of the band; the output is exact only there. Deeper
            layers stay complete. A centred hole of half the height halves at_conv01's
            work; a small hole in a large image makes it nearly free. Inference only.
        return_attention: also return the attention weights of the finest ATN layer,
            ``at_conv01`` (computed there in one chunk: (H / 4 * W / 4)^2 floats per
            image, 1 GiB at 512^2).

    Returns:
        ``(output, pyramid)``: ``output`` [batch, H, W, 3] in [-1, 1], the raw prediction
        (not composited; see ``penet_tf.losses.composite``), and ``pyramid``, five
        [batch, H / 2**k, W / 2**k, 3] images for k = 1 ... 5, finest first.

        With ``return_attention``, ``(output, pyramid, attention)``: ``attention`` is
        at_conv01's softmax weights (eq 3), float32 [batch, q, k] with q = k = (H / 4) *
        (W / 4), exactly the weights its transfer multiplies with. Rows are queries,
        columns keys, both cells of the H / 4 x W / 4 score grid (the ``dw_conv02``
        feature map) numbered row-major: index i is cell (i // (W / 4), i % (W / 4)).
        Cell (y, x) stands for the 4 x 4 image pixels [4y, 4y + 4) x [4x, 4x + 4) (its
        nominal footprint; the stride-2 encoder centres it on pixel (4y, 4x), and its
        transfer writes at_conv01 positions 2y - 1 ... 2y + 2 at H / 2, image rows about
        4y - 2 ... 4y + 5). Its key is the 3 x 3 cell neighbourhood around it, usable
        only where the mask, resized to H / 4 x W / 4 with align_corners (cell y samples
        image row y * (H - 1) / (H / 4 - 1)), is zero on that whole neighbourhood. A row
        sums to 1 when every key is usable; otherwise, as released, unusable keys count
        exp(0 - max) in the softmax denominator, so the usable weights sum to a little
        less, and every unusable key carries the 1e-8 floor.

    Example:

    >>> g = Generator()
    >>> image = tf.random.uniform([1, 256, 256, 3], -1, 1)
    >>> mask = tf.zeros([1, 256, 256, 1])
    >>> output, pyramid = g(image, mask)
    >>> output.shape, [p.shape[1] for p in pyramid]
    (TensorShape([1, 256, 256, 3]), [128, 64, 32, 16, 8])
    """

    def __init__(
        self,
        base_channels=32,
        patch_method="extract_patches",
        similarity="gram",
        attention_chunk_mb=192,
        kernel_init="released",
        attention_matmul_dtype=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        check_patch_method(patch_method)
        base_channels = positive_int(base_channels, "base_channels")
        if base_channels % 4:  # at_conv01 splits its channels between 4 dilated branches
            raise ValueError(
                f"base_channels must be a multiple of 4 (the attention's 4 fuse branches "
                f"share the channels), got {base_channels}"
            )
        self.attention_matmul_dtype = attention_matmul_dtype
        self.base_channels = base_channels
        self.kernel_init = kernel_init
        self.patch_method = patch_method
        self.similarity = similarity
        self.attention_chunk_mb = attention_chunk_mb
        self.supports_masking = True  # `mask` is the hole mask, not a Keras sequence mask
        c = base_channels
        conv = self._conv
        self.encoder = [
            conv("dw_conv01", c, 2, "leaky_relu"),
            conv("dw_conv02", 2 * c, 2, "leaky_relu"),
            conv("dw_conv03", 4 * c, 2, "leaky_relu"),
            conv("dw_conv04", 8 * c, 2, "leaky_relu"),
            conv("dw_conv05", 16 * c, 2, "leaky_relu"),
            conv("dw_conv06", 16 * c, 2, "relu"),
        ]
        self._encoder_inputs = [4, c, 2 * c, 4 * c, 8 * c, 16 * c]
        # Deep to shallow: at_conv05 (1 x 1 matching, no fuse) ... at_conv01.
        atn = dict(
            patch_method=patch_method,
            similarity=similarity,
            chunk_mb=attention_chunk_mb,
            kernel_init=kernel_init,
            matmul_dtype=attention_matmul_dtype,
            dtype=self.dtype_policy,
        )
        self.attention = [
            AttentionTransfer(match_size=1, fuse=False, name="at_conv05", **atn),
            AttentionTransfer(match_size=3, name="at_conv04", **atn),
            AttentionTransfer(match_size=3, name="at_conv03", **atn),
            AttentionTransfer(match_size=3, name="at_conv02", **atn),
            AttentionTransfer(match_size=3, name="at_conv01", **atn),
        ]
        self._attention_shapes = [
            (16 * c, 16 * c),
            (8 * c, 16 * c),
            (4 * c, 8 * c),
            (2 * c, 4 * c),
            (c, 2 * c),
        ]
        self.decoder_convs = [
            conv("up_conv05", 16 * c, 1, "relu"),
            conv("up_conv04", 8 * c, 1, "relu"),
            conv("up_conv03", 4 * c, 1, "relu"),
            conv("up_conv02", 2 * c, 1, "relu"),
            conv("up_conv01", c, 1, "relu"),
        ]
        self._decoder_inputs = [16 * c, 32 * c, 16 * c, 8 * c, 4 * c]
        # torgb5 ... torgb1 on [upx5, x5] ... [upx1, x1]
        self.to_rgb = [
            conv(f"torgb{level}", 3, 1, "tanh", kernel_size=1) for level in (5, 4, 3, 2, 1)
        ]
        self._to_rgb_inputs = [32 * c, 16 * c, 8 * c, 4 * c, 2 * c]
        self.decoder_conv1 = conv("decoder_conv1", c, 1, "relu")
        self.decoder_conv2 = conv("decoder_conv2", 3, 1, "tanh")
        # TensorFlow's object tracking (tf.train.Checkpoint, SavedModel) does not follow
        # Keras' layer lists: name every layer as an attribute too (released names).
        for layer in self.encoder + self.attention + self.decoder_convs + self.to_rgb:
            setattr(self, layer.name, layer)

    def _conv(self, name, filters, strides, activation, kernel_size=3):
        # Stride-2 convolutions pad explicitly in call (PyTorch's padding=1), because
        # Keras' "same" pads only bottom/right for even sizes: "valid" after the pad.
        return keras.layers.Conv2D(
            filters,
            kernel_size,
            strides=strides,
            data_format="channels_last",  # (not keras.json's image_data_format)
            padding="valid" if strides > 1 else "same",
            activation=activation,
            kernel_initializer=kernel_initializer(self.kernel_init),
            name=name,
            dtype=self.dtype_policy,
        )

    def build(self, image_shape=None, mask_shape=None):
        # Every shape is fixed by the architecture; spatial sizes stay unknown. One build
        # at a time: a fresh model first called from several threads at once (a service's
        # first requests) built its layers in each, failed 3 of 4 calls and kept doubled
        # variables.
        with _BUILD_LOCK:
            self._build_layers()

    def _build_layers(self):
        if self.built:
            return
        for layer, channels in zip(self.encoder, self._encoder_inputs, strict=True):
            layer.build((None, None, None, channels))
        for layer, (low, high) in zip(self.attention, self._attention_shapes, strict=True):
            layer.build((None, None, None, low), (None, None, None, high))
        for layer, channels in zip(self.decoder_convs, self._decoder_inputs, strict=True):
            layer.build((None, None, None, channels))
        for layer, channels in zip(self.to_rgb, self._to_rgb_inputs, strict=True):
            layer.build((None, None, None, channels))
        self.decoder_conv1.build((None, None, None, 2 * self.base_channels))
        self.decoder_conv2.build((None, None, None, self.base_channels))
        self.built = True

    def compute_mask(self, inputs, previous_mask=None):
        return None

    def at_conv01_rows(self, output_mask, axis=0):
        """Rows (``axis`` 0; columns: 1) of at_conv01's result (H / 2 high) that reach a
        nonzero pixel of ``output_mask`` [B, H, W, 1] in the output: ``(first, last)``
        scalar tensors.

        The reach is read off the layers downstream of at_conv01: the two decoder
        convolutions (kernel // 2 * dilation rows each), then the bilinear x2 up-sampling
        with align_corners (output row i reads input rows floor(i s) and ceil(i s),
        s = (H / 2 - 1) / (H - 1)). at_conv01 adds its own fuse branches' reach. An empty
        mask needs no row (at_conv01 then computes one).
        """
        others = [0, 2, 3] if axis == 0 else [0, 1, 3]
        rows = tf.reduce_any(output_mask > 0, axis=others)
        height = tf.shape(rows, out_type=tf.int32)[0]
        index = tf.range(height)
        first = tf.reduce_min(tf.where(rows, index, height))  # no slice with a stride -1:
        last = tf.reduce_max(tf.where(rows, index + 1, 0))  # TF.js copies those slowly
        reach = sum(
            conv.kernel_size[axis] // 2 * conv.dilation_rate[axis]
            for conv in (self.decoder_conv1, self.decoder_conv2)
        )
        first = tf.maximum(first - reach, 0)
        last = tf.minimum(last + reach, height)
        half = height // 2
        first = first * (half - 1) // (height - 1)
        last = -(-(last - 1) * (half - 1) // (height - 1)) + 1
        return first, last

    def call(self, image, mask=None, training=None, return_attention=False, output_mask=None):
        if mask is None or _keras_masks(mask):  # Keras' form of two inputs: g([image, mask])
            image, mask = _image_and_mask(image)
        checks = check_image_and_mask(image, mask)
        with tf.control_dependencies(checks):
            mask = tf.cast(mask, self.compute_dtype)
        image = tf.cast(image, self.compute_dtype)
        # The network input: holes set to 1 (white), plus the mask channel.
        features = tf.concat([image * (1.0 - mask) + mask, mask], axis=-1)

        encoded = []  # x1 ... x6
        for layer in self.encoder:
            features = layer(tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]]))
            encoded.append(features)

        # Pyramid-context encoder (eq 1): x5 = at_conv05(x5, x6), x4 = at_conv04(x4, x5), ...
        filled = [encoded[5]]  # filled[0] = x6, then the new x5, x4, ..., x1
        for layer, low in zip(self.attention, reversed(encoded[:5]), strict=True):
            if return_attention and layer is self.attention[-1]:  # at_conv01
                features, attention = layer(
                    low, filled[-1], mask, training=training, return_attention=True
                )
                filled.append(features)
            elif output_mask is not None and layer is self.attention[-1]:
                filled.append(
                    layer(
                        low,
                        filled[-1],
                        mask,
                        needed_rows=self.at_conv01_rows(output_mask),
                        needed_columns=self.at_conv01_rows(output_mask, axis=1),
                    )
                )
            else:
                filled.append(layer(low, filled[-1], mask, training=training))

        # Multi-scale decoder (eq 5) with a torgb head per scale.
        skip = filled[1:]  # x5 ... x1 after attention

        # Inference takes the separable form (``upsampled_conv``); training the direct one,
        # whose backward keeps less (peak RSS of a 256^2 batch-4 step: 2.02 against 2.42 GiB).
        def up_conv(conv, features):
            return conv(upsample(features)) if training else upsampled_conv(conv, features)

        decoded = up_conv(self.decoder_convs[0], filled[0])  # upx5
        pyramid = []
        for level in range(5):
            joined = tf.concat([decoded, skip[level]], axis=-1)  # [upxK, xK]
            pyramid.append(self.to_rgb[level](joined))
            if level < 4:
                decoded = up_conv(self.decoder_convs[level + 1], joined)
        output = self.decoder_conv2(up_conv(self.decoder_conv1, joined))
        if return_attention:
            return output, pyramid[::-1], attention
        return output, pyramid[::-1]

    def compute_output_shape(self, image_shape, mask_shape=None):
        batch, height, width = image_shape[:3]

        def scaled(size, factor):
            return None if size is None else size // factor

        pyramid = [(batch, scaled(height, 2**k), scaled(width, 2**k), 3) for k in range(1, 6)]
        return (batch, height, width, 3), pyramid

    @property
    def _default_save_signature(self):
        # Keras' default SavedModel signature calls ``self(inputs)`` with ONE input, its
        # spec taken from the shapes the model was built with: for a generator built by
        # a call (image and mask), ``tf.saved_model.save`` of any object holding it
        # failed tracing it ("missing a required argument: 'mask'"). No default
        # signature: exports name theirs.
        return None

    def export(
        self, filepath, format="tf_saved_model", verbose=None, input_signature=None, **kwargs
    ):
        """Keras' ``Model.export``: the SavedModel that ``penet_tf.export`` writes, for TF
        Serving, at ``filepath`` itself (a TF Serving version folder such as
        ``models/penet/1``). Keras' own export failed on the generator's two inputs and
        its ``(output, pyramid)`` outputs, which a signature cannot return.

        Signatures (``penet_tf.export``): ``serving_default`` (uint8 ``image`` and
        ``mask`` -> uint8 ``inpainted``, composited), ``inpaint_bytes`` (encoded images)
        and ``predict_float`` (float32 in [-1, 1] and [0, 1] -> ``output``, the raw
        prediction, and ``inpainted``), with dynamic batch, height and width, photos of
        any size through the ``auto`` strategy. TFLite, TF.js and ONNX are converted from
        it: ``python -m penet_tf.convert``.

        Args:
            filepath: the SavedModel folder; an existing non-empty one is not replaced.
            format: ``"tf_saved_model"`` only.
            verbose: print where the export went (the default, as Keras does).
            input_signature: not taken (the signatures are fixed).
            **kwargs: ``max_pixels``, ``strategy`` (a
                ``penet_tf.high_resolution.PhotoStrategy``) and ``max_photo_pixels`` of
                ``penet_tf.export.export_saved_model``.
        """
        from penet_tf.export import export_saved_model

        if format != "tf_saved_model":
            raise ValueError(
                f"Generator.export writes format='tf_saved_model' only, got {format!r}: "
                "convert that SavedModel with `python -m penet_tf.convert` (TFLite, TF.js, "
                "ONNX)"
            )
        if input_signature is not None:
            raise ValueError(
                "Generator.export takes no input_signature: its signatures are fixed "
                "(uint8 and bytes photos, float32 tensors; dynamic batch, height and width)"
            )
        if not self.built:
            raise ValueError(
                "Generator.export: the generator has no weights yet; load them "
                "(penet_tf.models.load_generator, load_weights) or call it once first"
            )
        path = export_saved_model(self, filepath, **kwargs)
        if verbose is None or verbose:
            print(
                f"Saved artifact at '{path}': signatures serving_default, inpaint_bytes, "
                "predict_float (penet_tf.export)"
            )

    def get_config(self):
        config = super().get_config()
        config.update(
            base_channels=self.base_channels,
            patch_method=self.patch_method,
            similarity=self.similarity,
            attention_chunk_mb=self.attention_chunk_mb,
            kernel_init=self.kernel_init,
            attention_matmul_dtype=self.attention_matmul_dtype,
        )
        return config
