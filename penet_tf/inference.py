"""Inference on images of any size: the one path shared by export, conversions and the CLI.

Data flows image -> mask -> model -> composite: ``inpaint`` takes float images in
[-1, 1] of any height and width, reflects them up to a multiple of 64, runs the generator,
crops back and composites the prediction into the known pixels (paper eq 7).
"""

import tensorflow as tf

from penet_tf.losses import composite
from penet_tf.models.generator import SIZE_MULTIPLE


def reflect_indices(size, padded_size):
    """Indices 0 .. padded_size - 1 of a mirror extension of 0 .. size - 1 (any amount)."""
    period = tf.maximum(2 * (size - 1), 1)
    position = tf.math.floormod(tf.range(padded_size), period)
    return tf.where(position < size, position, period - position)


def reflect_pad_to_multiple(images, multiple=SIZE_MULTIPLE):
    """Pads [B, H, W, C] at the bottom and right, by reflection, to multiples of ``multiple``.

    Works for any amount of padding (repeated reflection for images smaller than the
    padding), with gathers, so the channel count stays static (TFLite needs it).
    """
    shape = tf.shape(images)
    height, width = shape[1], shape[2]
    padded_h = (height + multiple - 1) // multiple * multiple
    padded_w = (width + multiple - 1) // multiple * multiple
    images = tf.gather(images, reflect_indices(height, padded_h), axis=1)
    return tf.gather(images, reflect_indices(width, padded_w), axis=2)


def inpaint(generator, image, mask):
    """Runs ``generator`` on float images of any size.

    Args:
        generator: a ``penet_tf.Generator``.
        image: float32 [B, H, W, 3] in [-1, 1].
        mask: float32 [B, H, W, 1], 1 = hole.

    Returns:
        ``(output, inpainted)``, both float32 [B, H, W, 3]: the raw prediction and the
        composite (prediction in the hole, ``image`` elsewhere).
    """
    image = tf.cast(image, tf.float32)
    mask = tf.cast(mask, tf.float32)
    shape = tf.shape(image)
    # The mask is reflected with the image: reflected hole pixels stay holes.
    output, _ = generator(reflect_pad_to_multiple(image), reflect_pad_to_multiple(mask))
    output = tf.cast(output, tf.float32)[:, : shape[1], : shape[2], :]
    return output, composite(output, image, mask)


def uint8_to_float(image):
    """uint8 [0, 255] -> float32 [-1, 1] (as the released network's x / 127.5 - 1)."""
    return tf.cast(image, tf.float32) / 127.5 - 1.0


def float_to_uint8(image):
    """float32 [-1, 1] -> uint8, rounded to nearest."""
    return tf.cast(tf.clip_by_value(tf.round((image + 1.0) * 127.5), 0.0, 255.0), tf.uint8)


def binary_mask(mask):
    """Any mask (0/1, 0/255, bool, float) -> float32 with 1 where nonzero (a hole)."""
    return tf.cast(tf.not_equal(tf.cast(mask, tf.float32), 0.0), tf.float32)
