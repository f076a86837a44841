"""PEN-Net's losses, named after the paper (all computed in float32).

Images are in [-1, 1]; masks are 1 in holes and 0 on known pixels.
"""

import tensorflow as tf

from penet_tf.errors import require_float
from penet_tf.layers.attention_transfer import resize_align_corners


def _f32(*tensors):
    return [tf.cast(t, tf.float32) for t in tensors]


def _images(*images):
    """The images as float32, refusing integer ones: a uint8 target gave a hole L1 of 127.6
    against a [-1, 1] prediction, without a word (the models refuse uint8 too)."""
    tensors = [tf.convert_to_tensor(image) for image in images]
    for tensor in tensors:
        require_float(tensor.dtype, "PEN-Net's losses", "images")
    return _f32(*tensors)


def _mask(mask):
    """The mask as float32 0 / 1: an integer or bool one by the mask rule
    (``penet_tf.inference.hole_mask``: 0/255 or 0/1, as ``PENetGAN`` reads its batches);
    cast as it was, a 0/255 uint8 mask gave a valid L1 of -0.67 and composites up to 501."""
    mask = tf.convert_to_tensor(mask)
    if mask.dtype.is_integer or mask.dtype == tf.bool:
        from penet_tf.inference import hole_mask  # (inference imports this module)

        def whole():  # one image (or any other shape): judged as a whole
            return tf.reshape(hole_mask(tf.reshape(mask, [1, -1, 1, 1])), tf.shape(mask))

        if mask.shape.rank is None:  # (a tf.function's input of unknown rank)
            return tf.cond(tf.equal(tf.rank(mask), 4), lambda: hole_mask(mask), whole)
        return hole_mask(mask) if mask.shape.rank == 4 else whole()  # a batch: per image
    return tf.cast(mask, tf.float32)


def composite(prediction, image, mask):
    """Eq 7: the prediction inside the hole, the original image outside it."""
    (prediction, image), mask = _images(prediction, image), _mask(mask)
    return prediction * mask + image * (1.0 - mask)


def hole_l1(prediction, image, mask):
    """Mean |prediction - image| over the hole, as released: mean|p·m − x·m| / mean(m)."""
    (prediction, image), mask = _images(prediction, image), _mask(mask)
    return tf.math.divide_no_nan(
        tf.reduce_mean(tf.abs(prediction * mask - image * mask)), tf.reduce_mean(mask)
    )


def valid_l1(prediction, image, mask):
    """Mean |prediction - image| over known pixels: mean|p·(1−m) − x·(1−m)| / mean(1−m)."""
    (prediction, image), mask = _images(prediction, image), _mask(mask)
    known = 1.0 - mask
    return tf.math.divide_no_nan(
        tf.reduce_mean(tf.abs(prediction * known - image * known)), tf.reduce_mean(known)
    )


def pyramid_l1(pyramid, image):
    """Eq 6: sum over the pyramid outputs of the mean L1 to the image resized to each size.

    The ground truth is resized bilinearly with align_corners, over the whole image (not
    masked), as the released trainer does.
    """
    (image,) = _images(image)
    total = 0.0
    for level in pyramid:
        (level,) = _images(level)
        target = resize_align_corners(image, tf.shape(level)[1:3])
        total += tf.reduce_mean(tf.abs(level - target))
    return total


def hinge_d_loss(real_logits, fake_logits):
    """Eq 8, averaged over real and fake as released: (E relu(1 − D(x)) + E relu(1 + D(z))) / 2."""
    real_logits, fake_logits = _f32(real_logits, fake_logits)
    return 0.5 * (
        tf.reduce_mean(tf.nn.relu(1.0 - real_logits))
        + tf.reduce_mean(tf.nn.relu(1.0 + fake_logits))
    )


def hinge_g_loss(fake_logits):
    """Eq 9: −E D(z)."""
    (fake_logits,) = _f32(fake_logits)
    return -tf.reduce_mean(fake_logits)


def released_bce(logits, target):
    """``torch.nn.BCELoss()(torch.sigmoid(logits), target)`` per element, value and
    gradient as the release computes them (its nsgan discriminator ends in a sigmoid):
    the logs clamped at -100, and the gradient ``(p - t) / max(p (1 - p), 1e-12)`` times
    the sigmoid's ``p (1 - p)``. It equals the cross-entropy with logits for |logit| up to
    about 16; beyond, where float32 rounds p to 1, the release's loss stops at 100 and its
    gradient at 0 (with logits: the logit itself, gradient 1)."""
    (logits,) = _f32(logits)

    @tf.custom_gradient
    def bce(x):
        p = tf.sigmoid(x)
        log_p = tf.maximum(tf.math.log(p), -100.0)
        log_q = tf.maximum(tf.math.log(1.0 - p), -100.0)

        def grad(upstream):
            slope = p * (1.0 - p)
            return upstream * (p - target) / tf.maximum(slope, 1e-12) * slope

        return -(target * log_p + (1.0 - target) * log_q), grad

    return bce(logits)


def nonsaturating_d_loss(real_logits, fake_logits):
    """Non-saturating GAN loss (dtd / facade configs): (BCE(D(x), 1) + BCE(D(z), 0)) / 2,
    as ``torch.nn.BCELoss`` on the release's sigmoid outputs (``released_bce``)."""
    real = released_bce(real_logits, 1.0)
    fake = released_bce(fake_logits, 0.0)
    return 0.5 * (tf.reduce_mean(real) + tf.reduce_mean(fake))


def nonsaturating_g_loss(fake_logits):
    """Non-saturating generator loss: BCE(D(z), 1) (``released_bce``)."""
    return tf.reduce_mean(released_bce(fake_logits, 1.0))


GAN_LOSSES = {
    "hinge": (hinge_d_loss, hinge_g_loss),
    "nsgan": (nonsaturating_d_loss, nonsaturating_g_loss),
}


def gan_losses(gan_type):
    """(d_loss, g_loss) functions for ``"hinge"`` or ``"nsgan"``."""
    if gan_type not in GAN_LOSSES:
        raise ValueError(f"Unknown gan_type {gan_type!r}: expected one of {sorted(GAN_LOSSES)}.")
    return GAN_LOSSES[gan_type]
