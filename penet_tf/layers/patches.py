"""Patch extraction for the attention transfer layer.

The attention transfer layer cuts feature maps into patches (paper eqs 2-4). Two
implementations give bit-identical patches, in the same element order:

* ``method="extract_patches"`` uses ``tf.image.extract_patches`` (op
  ExtractImagePatches). It is what training uses by default, but TFLite only has it as a
  Flex op, TF.js does not know it and tf2onnx fails on it with dynamic shapes.
* ``method="conv"`` uses a depthwise convolution whose kernels are one-hot: output channel
  ``c * k * k + m`` copies pixel ``m`` of the k x k window of channel ``c``. A transpose
  puts the elements back in ``extract_patches`` order. It converts to builtin ops
  everywhere (DEPTHWISE_CONV_2D, TRANSPOSE, RESHAPE).

The method is an argument of every model in penet_tf, so the graph that is exported is
the graph that was trained; only this switch differs.
"""

import numpy as np
import tensorflow as tf

PATCH_METHODS = ("extract_patches", "conv")


def check_patch_method(method):
    if method not in PATCH_METHODS:
        raise ValueError(
            f"Unknown patch method {method!r}: expected one of {', '.join(PATCH_METHODS)}."
        )
    return method


def extract_patches(images, size, stride=1, padding=0, method="extract_patches"):
    """Cuts `size` x `size` patches out of `images`.

    Args:
        images: tensor [batch, height, width, channels]; the channel count must be static.
        size: patch side.
        stride: step between patches.
        padding: zero rows/columns added on every side first (PyTorch's ``ZeroPad2d``).
        method: ``"extract_patches"`` or ``"conv"`` (see the module docstring).

    Returns:
        Tensor [batch, out_h, out_w, size * size * channels], with
        ``out = (in + 2 * padding - size) // stride + 1``. Each patch is flattened in
        (row, column, channel) order, the order of ``tf.image.extract_patches``.
    """
    check_patch_method(method)
    if padding:
        images = tf.pad(images, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    if method == "extract_patches":
        return tf.image.extract_patches(
            images,
            sizes=[1, size, size, 1],
            strides=[1, stride, stride, 1],
            rates=[1, 1, 1, 1],
            padding="VALID",
        )
    channels = images.shape[-1]
    if channels is None:
        raise ValueError("extract_patches(method='conv') needs a static channel count.")
    taps = size * size
    one_hot = np.eye(taps, dtype=np.float32).reshape(size, size, 1, taps)
    kernel = tf.constant(np.tile(one_hot, (1, 1, channels, 1)), dtype=images.dtype)
    patches = tf.nn.depthwise_conv2d(
        images, kernel, strides=[1, stride, stride, 1], padding="VALID"
    )
    shape = tf.shape(patches)
    patches = tf.reshape(patches, [shape[0], shape[1], shape[2], channels, taps])
    patches = tf.transpose(patches, [0, 1, 2, 4, 3])
    return tf.reshape(patches, [shape[0], shape[1], shape[2], taps * channels])
