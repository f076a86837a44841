"""The spectral-norm PatchGAN discriminator."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from penet_tf import Discriminator
from penet_tf.convert_torch import load_released_discriminator
from penet_tf.models.discriminator import patch_grid_size


def test_reproduces_the_released_discriminator(official_fixture):
    discriminator = load_released_discriminator(official_fixture["dis"])
    logits = discriminator(official_fixture["x"])
    assert logits.shape == (1, 27, 27, 1)
    assert np.abs(logits[0].numpy() - official_fixture["d_real"]).max() < 1e-4


def test_patch_grid_sizes():
    assert patch_grid_size(256) == 27
    assert Discriminator(base_channels=4)(tf.zeros([2, 64, 96, 3])).shape == (
        2,
        patch_grid_size(64),
        patch_grid_size(96),
        1,
    )


def test_base_channels_is_a_positive_integer_numpy_ones_too():
    """``np.int64(8)`` was refused by the generator and taken by the discriminator, whose
    ``8.0`` and ``"8"`` failed inside Keras, unnamed."""
    from penet_tf.models import Generator

    for model in (Generator, Discriminator):
        assert model(base_channels=np.int64(8)).base_channels == 8
        assert type(model(base_channels=np.int64(8)).get_config()["base_channels"]) is int
        for bad in (8.0, "8", 0, True):
            with pytest.raises(ValueError, match="base_channels must be a positive integer"):
                model(base_channels=bad)


def _largest_singular_values(kernels):
    return [np.linalg.svd(k.reshape(-1, k.shape[-1]), compute_uv=False)[0] for k in kernels]


def _seeded():
    """Seeded weights and images: 30 power iterations converge as fast as the gap between
    the two largest singular values allows, and unseeded draws missed the 0.05 bound in
    0.8 % of 20,000 (the worst layer at 0.119); seed 0's worst: 0.0014 (PEN-Net's
    iteration), 0.0026 (Keras')."""
    keras.utils.set_random_seed(0)


def test_training_calls_normalise_the_effective_kernel_to_one():
    _seeded()
    discriminator = Discriminator(base_channels=8)
    images = tf.random.uniform([2, 64, 64, 3], -1, 1)

    def sigmas():
        kernels = [w.normalized_kernel().numpy() for w in discriminator.encoder]
        return _largest_singular_values(kernels)

    discriminator(images)
    raw = [w.layer.kernel.numpy() for w in discriminator.encoder]
    assert max(abs(s - 1.0) for s in _largest_singular_values(raw)) > 0.3  # normal(0, 0.02)
    for _ in range(30):  # one power iteration per training call
        discriminator(images, training=True)
    assert max(abs(s - 1.0) for s in sigmas()) < 0.05
    for kernel, wrapper in zip(raw, discriminator.encoder, strict=True):
        np.testing.assert_array_equal(kernel, wrapper.layer.kernel.numpy())  # W is trainable
    assert all(w.vector_u.dtype == w.vector_v.dtype == "float32" for w in discriminator.encoder)


def test_keras_spectral_norm_stays_selectable():
    _seeded()
    discriminator = Discriminator(base_channels=8, spectral_norm="keras")
    images = tf.random.uniform([2, 64, 64, 3], -1, 1)
    discriminator(images)
    assert all(isinstance(w, keras.layers.SpectralNormalization) for w in discriminator.encoder)
    for _ in range(30):  # Keras' layer rescales the kernel variable in place
        discriminator(images, training=True)
    kernels = [w.layer.kernel.numpy() for w in discriminator.encoder]
    assert max(abs(s - 1.0) for s in _largest_singular_values(kernels)) < 0.05
    with pytest.raises(ValueError, match="Unknown spectral_norm 'pytorch'"):
        Discriminator(spectral_norm="pytorch")


def test_inference_call_leaves_weights_alone():
    discriminator = Discriminator(base_channels=4)
    images = tf.random.uniform([1, 64, 64, 3], -1, 1)
    discriminator(images)
    before = [w.numpy() for w in discriminator.weights]
    discriminator(images, training=False)
    for a, b in zip(before, discriminator.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_bad_input():
    discriminator = Discriminator(base_channels=4)
    with pytest.raises(ValueError, match=r"expected image \[batch, H, W, 3\]"):
        discriminator(np.zeros((1, 64, 64, 1), np.float32))
    with pytest.raises(ValueError, match="too small"):
        discriminator(np.zeros((1, 32, 32, 3), np.float32))


def test_config_round_trip():
    discriminator = Discriminator(base_channels=8, spectral_norm="none")
    clone = Discriminator.from_config(discriminator.get_config())
    assert clone.get_config() == discriminator.get_config()
    assert clone(tf.zeros([1, 64, 64, 3])).shape == (1, 3, 3, 1)


def test_tf_train_checkpoint_keeps_the_power_iteration_state(tmp_path):
    discriminator = Discriminator(base_channels=4)
    discriminator(tf.random.uniform([1, 64, 64, 3]), training=True)
    path = tf.train.Checkpoint(discriminator=discriminator).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if "discriminator/" in name]
    assert len(saved) == len(discriminator.weights) == 14  # 4 x (W, u, v) + classifier
    clone = Discriminator(base_channels=4)
    clone.build()
    tf.train.Checkpoint(discriminator=clone).restore(path).assert_consumed()
    for a, b in zip(discriminator.weights, clone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_uint8_and_too_small_images_are_refused_even_with_unknown_sizes():
    """A uint8 photo ran without a word; with unknown H and W a 40 x 40 image gave its own
    [1, 2, 2, 32] features back instead of logits."""
    from penet_tf.models.discriminator import MIN_SIZE

    discriminator = Discriminator(base_channels=8)
    discriminator.build()
    with pytest.raises(ValueError, match="image must be float in .* got uint8"):
        discriminator(tf.zeros([1, 64, 64, 3], tf.uint8))
    spec = tf.TensorSpec([None, None, None, 3])
    call = tf.function(lambda image: discriminator(image), input_signature=[spec])
    assert MIN_SIZE == 47 and patch_grid_size(MIN_SIZE) == 1
    assert call(tf.zeros([1, MIN_SIZE, MIN_SIZE, 3])).shape == (1, 1, 1, 1)
    with pytest.raises(tf.errors.InvalidArgumentError, match="H and W must be at least 47"):
        call(tf.zeros([1, 40, 40, 3]))


def test_export_keeps_batch_height_and_width_dynamic(tmp_path):
    """Keras' export took the built shape: a discriminator exported after a 64^2 call
    refused a 96 x 80 image."""
    discriminator = Discriminator(base_channels=4)
    discriminator(tf.zeros([1, 64, 64, 3]), training=True)
    discriminator.export(str(tmp_path / "d"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "d"))
    image = tf.random.stateless_uniform([2, 96, 80, 3], [1, 2], -1.0, 1.0)
    np.testing.assert_allclose(
        served.serve(image).numpy(), discriminator(image).numpy(), rtol=1e-5, atol=1e-5
    )
    assert served.serve(image).shape == (2, patch_grid_size(96), patch_grid_size(80), 1)
