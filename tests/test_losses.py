"""The losses against plain NumPy formulas."""

import numpy as np
import pytest
import tensorflow as tf

from penet_tf import losses


@pytest.fixture
def data():
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    prediction = rng.uniform(-1, 1, (2, 16, 16, 3)).astype(np.float32)
    mask = np.zeros((2, 16, 16, 1), np.float32)
    mask[0, 4:12, 4:12] = 1
    mask[1, :8] = 1
    return image, prediction, mask


def test_composite_keeps_known_pixels(data):
    image, prediction, mask = data
    out = losses.composite(prediction, image, mask).numpy()
    np.testing.assert_array_equal(out, np.where(mask > 0, prediction, image))


def test_hole_and_valid_l1(data):
    image, prediction, mask = data
    m = np.broadcast_to(mask, image.shape)
    hole = np.abs(prediction * mask - image * mask).mean() / mask.mean()
    valid = np.abs(prediction * (1 - mask) - image * (1 - mask)).mean() / (1 - mask).mean()
    assert losses.hole_l1(prediction, image, mask).numpy() == pytest.approx(hole, rel=1e-5)
    assert losses.valid_l1(prediction, image, mask).numpy() == pytest.approx(valid, rel=1e-5)
    # the hole L1 is the mean absolute error over hole pixels
    assert hole == pytest.approx(np.abs(prediction - image)[m > 0].mean(), rel=1e-5)
    assert losses.hole_l1(prediction, image, np.zeros_like(mask)).numpy() == 0.0


def test_pyramid_l1_uses_align_corners_targets(data):
    image, _, _ = data
    # A pyramid equal to the align-corners downscale of the image costs 0 ...
    from penet_tf.layers.attention_transfer import resize_align_corners

    pyramid = [resize_align_corners(image, [s, s]) for s in (8, 4, 2)]
    assert losses.pyramid_l1(pyramid, image).numpy() == pytest.approx(0.0, abs=1e-7)
    # ... and each level adds its mean absolute error.
    shifted = [p + 0.25 for p in pyramid]
    assert losses.pyramid_l1(shifted, image).numpy() == pytest.approx(0.75, rel=1e-5)


def test_hinge_losses():
    real = np.array([[2.0, 0.5, -1.0]], np.float32)
    fake = np.array([[-2.0, 0.0, 1.5]], np.float32)
    expected_d = 0.5 * (np.maximum(0, 1 - real).mean() + np.maximum(0, 1 + fake).mean())
    assert losses.hinge_d_loss(real, fake).numpy() == pytest.approx(expected_d)
    assert losses.hinge_g_loss(fake).numpy() == pytest.approx(-fake.mean())


def test_nonsaturating_losses():
    real = np.array([[2.0, 0.5, -1.0]], np.float32)
    fake = np.array([[-2.0, 0.0, 1.5]], np.float32)

    def bce(logits, target):
        p = 1 / (1 + np.exp(-logits))
        return -(target * np.log(p) + (1 - target) * np.log(1 - p)).mean()

    expected_d = 0.5 * (bce(real, 1) + bce(fake, 0))
    assert losses.nonsaturating_d_loss(real, fake).numpy() == pytest.approx(expected_d, rel=1e-5)
    assert losses.nonsaturating_g_loss(fake).numpy() == pytest.approx(bce(fake, 1), rel=1e-5)


def test_nonsaturating_losses_saturate_as_the_release_does():
    """The release's nsgan D ends in a sigmoid and uses torch.nn.BCELoss (logs clamped at
    -100): past |logit| ~ 16 its loss stops at 100 and its gradient at 0, where the
    cross-entropy with logits went on (a D-fake logit of 20: loss 20, gradient 1)."""
    torch = pytest.importorskip("torch")
    # (Between about 12 and 17, log(1 - p) is 1 - p rounded near 1 in float32, which
    # TensorFlow's and PyTorch's sigmoids round differently: the release's own noise.)
    logits = np.array([-120, -60, -40, -20, -5, 0, 3, 10, 20, 40, 120], np.float32)
    for target in (0.0, 1.0):
        x = torch.tensor(logits, requires_grad=True)
        expected = torch.nn.BCELoss(reduction="none")(torch.sigmoid(x), torch.full_like(x, target))
        expected.sum().backward()
        tensor = tf.constant(logits)
        with tf.GradientTape() as tape:
            tape.watch(tensor)
            got = losses.released_bce(tensor, target)
            total = tf.reduce_sum(got)
        gradient = tape.gradient(total, tensor).numpy()
        np.testing.assert_allclose(got.numpy(), expected.detach().numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(gradient, x.grad.numpy(), rtol=1e-4, atol=1e-12)
        assert np.isfinite(gradient).all()
    # D-fake logit 20 (p rounds to 1): the release's loss is 100, its gradient 0.
    fake = tf.constant([[20.0]])
    with tf.GradientTape() as tape:
        tape.watch(fake)
        d_loss = losses.nonsaturating_d_loss(tf.constant([[5.0]]), fake)
    assert tape.gradient(d_loss, fake).numpy().item() == 0.0
    assert d_loss.numpy() == pytest.approx(0.5 * (np.log1p(np.exp(-5.0)) + 100.0), rel=1e-5)


def test_gan_losses_lookup():
    assert losses.gan_losses("hinge") == (losses.hinge_d_loss, losses.hinge_g_loss)
    with pytest.raises(ValueError, match="Unknown gan_type 'wgan'"):
        losses.gan_losses("wgan")


def test_integer_images_are_refused():
    """A uint8 target gave a hole L1 of 127.6 against a [-1, 1] prediction, unsaid."""
    prediction = tf.zeros([1, 8, 8, 3])
    photo = tf.fill([1, 8, 8, 3], tf.constant(128, tf.uint8))
    mask = tf.ones([1, 8, 8, 1], tf.uint8)  # masks may be integers
    for loss in (losses.hole_l1, losses.valid_l1, losses.composite):
        with pytest.raises(ValueError, match="images must be float in \\[-1, 1\\], got uint8"):
            loss(prediction, photo, mask)
    with pytest.raises(ValueError, match="got uint8"):
        losses.pyramid_l1([prediction], photo)
    assert float(losses.hole_l1(prediction, tf.ones([1, 8, 8, 3]), mask)) == 1.0


def test_integer_masks_are_read_by_the_mask_rule():
    """A 0/255 uint8 mask (a mask file's values) was cast as it was: valid L1 -0.67,
    composites up to 501, without a word; now 0/255, 0/1 and bool masks give the 0/1
    float mask's values."""
    rng = np.random.default_rng(0)
    prediction = tf.constant(rng.uniform(-1, 1, (2, 8, 8, 3)), tf.float32)
    image = tf.constant(rng.uniform(-1, 1, (2, 8, 8, 3)), tf.float32)
    holes = rng.random((2, 8, 8, 1)) < 0.3
    expected = [loss(prediction, image, holes.astype(np.float32)) for loss in LOSSES]
    for mask in (holes.astype(np.uint8) * 255, holes.astype(np.int32), holes):
        for loss, value in zip(LOSSES, expected, strict=True):
            np.testing.assert_array_equal(loss(prediction, image, mask), value)
    assert 0 < float(expected[2]) and np.abs(expected[0]).max() <= 1.0
    # one image, [H, W, 1] (hole_mask's batch reduction refused it)
    one = [loss(prediction[0], image[0], holes[0].astype(np.float32)) for loss in LOSSES]
    for mask in (holes[0].astype(np.uint8) * 255, holes[0]):
        for loss, value in zip(LOSSES, one, strict=True):
            np.testing.assert_array_equal(loss(prediction[0], image[0], mask), value)


LOSSES = (losses.composite, losses.hole_l1, losses.valid_l1)


def test_integer_masks_of_unknown_rank_are_judged_per_image():
    """In a tf.function whose mask's rank is unknown, a batch took the one-image branch:
    a 0/1 mask beside a 0/255 one was judged by the batch's largest value."""
    rng = np.random.default_rng(1)
    prediction = tf.constant(rng.uniform(-1, 1, (2, 8, 8, 3)), tf.float32)
    image = tf.constant(rng.uniform(-1, 1, (2, 8, 8, 3)), tf.float32)
    holes = rng.random((2, 8, 8, 1)) < 0.3
    mixed = np.stack([holes[0].astype(np.uint8), holes[1].astype(np.uint8) * 255])
    unknown = tf.TensorSpec(None, tf.uint8)
    for loss in LOSSES:
        traced = tf.function(
            lambda mask, loss=loss: loss(prediction, image, mask), input_signature=[unknown]
        )
        expected = loss(prediction, image, holes.astype(np.float32))
        np.testing.assert_array_equal(traced(mixed), expected)
        one = loss(prediction[0], image[0], holes[0].astype(np.float32))
        traced = tf.function(
            lambda mask, loss=loss: loss(prediction[0], image[0], mask), input_signature=[unknown]
        )
        np.testing.assert_array_equal(traced(mixed[0]), one)
