"""SpectralNorm: PyTorch's spectral-norm re-parametrisation, as the release trains it."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from penet_tf.layers.spectral_norm import SpectralNorm
from penet_tf.training.optimizers import TorchAdam


def _wrapped(filters=6, channels=3, kernel=3, seed=0, **kwargs):
    keras.utils.set_random_seed(seed)
    layer = SpectralNorm(keras.layers.Conv2D(filters, kernel, use_bias=False), **kwargs)
    layer.build((None, 8, 8, channels))
    return layer


def _numpy_iteration(kernel, u, power_iterations=1, eps=1e-12):
    """torch.nn.utils.spectral_norm's iteration in NumPy, on PyTorch's [out, in*kh*kw] W."""
    weight = np.transpose(kernel, (3, 2, 0, 1)).reshape(kernel.shape[-1], -1).astype(np.float64)
    for _ in range(power_iterations):
        v = weight.T @ u
        v = v / max(np.linalg.norm(v), eps)
        u = weight @ v
        u = u / max(np.linalg.norm(u), eps)
    return u, v, float(u @ weight @ v)


def _torch_order_v(v, kernel_shape):
    kh, kw, cin, _ = kernel_shape
    return v.reshape(kh, kw, cin).transpose(2, 0, 1).reshape(-1)


@pytest.mark.parametrize("power_iterations", [1, 3])
def test_training_call_runs_the_numpy_power_iteration(power_iterations):
    layer = _wrapped(power_iterations=power_iterations)
    kernel = layer.layer.kernel.numpy()
    u0 = layer.vector_u.numpy().astype(np.float64)
    u, v, sigma = _numpy_iteration(kernel, u0, power_iterations)
    images = tf.random.uniform([2, 8, 8, 3], -1, 1)
    outputs = layer(images, training=True)
    np.testing.assert_allclose(layer.vector_u.numpy(), u, atol=1e-6)
    np.testing.assert_allclose(_torch_order_v(layer.vector_v.numpy(), kernel.shape), v, atol=1e-6)
    reference = tf.nn.conv2d(images, kernel / sigma, 1, "VALID")
    np.testing.assert_allclose(outputs.numpy(), reference.numpy(), atol=1e-5)
    np.testing.assert_array_equal(layer.layer.kernel.numpy(), kernel)  # W itself is untouched


def test_inference_uses_the_stored_vectors_without_iterating():
    layer = _wrapped()
    images = tf.random.uniform([1, 8, 8, 3], -1, 1)
    layer(images, training=True)
    u, v = layer.vector_u.numpy(), layer.vector_v.numpy()
    matrix = layer.layer.kernel.numpy().reshape(-1, 6)
    sigma = float(u @ (matrix.T @ v))
    first = layer(images, training=False)
    second = layer(images)
    np.testing.assert_array_equal(layer.vector_u.numpy(), u)
    np.testing.assert_array_equal(layer.vector_v.numpy(), v)
    np.testing.assert_array_equal(first.numpy(), second.numpy())
    reference = tf.nn.conv2d(images, layer.layer.kernel / sigma, 1, "VALID")
    np.testing.assert_allclose(first.numpy(), reference.numpy(), atol=1e-5)


def test_converges_to_the_largest_singular_value():
    layer = _wrapped(filters=16, channels=8, power_iterations=20)
    for _ in range(20):
        layer(tf.zeros([1, 8, 8, 8]), training=True)
    matrix = layer.layer.kernel.numpy().reshape(-1, 16)
    largest = np.linalg.svd(matrix, compute_uv=False)[0]
    assert abs(float(layer.sigma()) - largest) < 1e-4 * largest


def test_gradient_flows_through_sigma_like_a_finite_difference():
    layer = _wrapped(filters=4, channels=2)
    layer(tf.zeros([1, 8, 8, 2]), training=True)  # settle u, v once
    images = tf.random.uniform([2, 8, 8, 2], -1, 1, seed=1)
    target = tf.random.uniform([2, 6, 6, 4], -1, 1, seed=2)
    kernel = layer.layer.kernel
    u, v = layer.vector_u.numpy(), layer.vector_v.numpy()

    def loss():  # fixed u, v (as autograd sees them): a function of W alone
        return tf.reduce_sum(tf.square(layer(images, training=False) - target))

    with tf.GradientTape() as tape:
        value = loss()
    gradient = tape.gradient(value, kernel).numpy()
    # The gradient without the sigma term (Keras' SpectralNormalization) is much different.
    sigma = float(layer.sigma())
    with tf.GradientTape() as tape:
        frozen = tf.reduce_sum(tf.square(tf.nn.conv2d(images, kernel / sigma, 1, "VALID") - target))
    assert np.abs(tape.gradient(frozen, kernel).numpy() - gradient).max() > 1e-3

    original = kernel.numpy().astype(np.float64)
    rng = np.random.default_rng(0)
    for index in rng.choice(original.size, 6, replace=False):
        step = 1e-3
        values = []
        for sign in (1, -1):
            perturbed = original.copy().reshape(-1)
            perturbed[index] += sign * step
            kernel.assign(perturbed.reshape(original.shape))
            values.append(float(loss()))
        kernel.assign(original)
        numeric = (values[0] - values[1]) / (2 * step)
        assert abs(numeric - gradient.reshape(-1)[index]) < 2e-3 * max(1.0, abs(numeric))
    np.testing.assert_array_equal(layer.vector_u.numpy(), u)
    np.testing.assert_array_equal(layer.vector_v.numpy(), v)


def test_mixed_precision_keeps_the_iteration_in_float32():
    keras.utils.set_random_seed(0)
    conv = keras.layers.Conv2D(4, 3, use_bias=True, dtype="mixed_float16")
    layer = SpectralNorm(conv)
    outputs = layer(tf.random.uniform([1, 8, 8, 3]), training=True)
    assert outputs.dtype == "float16"
    assert layer.vector_u.dtype == layer.vector_v.dtype == conv.kernel.dtype == "float32"
    assert float(layer.sigma()) > 0


def test_config_keras_file_and_savedmodel_round_trip(tmp_path):
    layer = _wrapped(power_iterations=2, eps=1e-10)
    images = tf.random.uniform([1, 8, 8, 3], -1, 1)
    layer(images, training=True)
    clone = SpectralNorm.from_config(layer.get_config())
    assert clone.get_config() == layer.get_config()

    inputs = keras.Input((8, 8, 3))
    model = keras.Model(inputs, layer(inputs))
    expected = model(images).numpy()
    model.save(tmp_path / "model.keras")
    loaded = keras.models.load_model(tmp_path / "model.keras")
    np.testing.assert_array_equal(loaded(images).numpy(), expected)

    model.export(str(tmp_path / "savedmodel"), verbose=False)
    served = tf.saved_model.load(str(tmp_path / "savedmodel"))
    np.testing.assert_allclose(served.serve(images).numpy(), expected, atol=1e-6)


def test_checkpoint_round_trip_and_resume_continue_the_iteration(tmp_path):
    layer = _wrapped()
    images = tf.random.uniform([1, 8, 8, 3], -1, 1)
    layer(images, training=True)
    path = tf.train.Checkpoint(layer=layer).save(str(tmp_path / "ckpt"))
    layer(images, training=True)  # the uninterrupted run's next call
    expected = [layer.vector_u.numpy(), layer.vector_v.numpy()]

    resumed = _wrapped(seed=5)  # different initial vectors
    tf.train.Checkpoint(layer=resumed).restore(path).assert_consumed()
    resumed(images, training=True)
    np.testing.assert_array_equal(resumed.vector_u.numpy(), expected[0])
    np.testing.assert_array_equal(resumed.vector_v.numpy(), expected[1])


def test_bad_arguments():
    for iterations in (0, 1.7, True, "2"):  # (1.7 ran 1 iteration without a word)
        with pytest.raises(ValueError, match="power_iterations must be an integer >= 1"):
            SpectralNorm(keras.layers.Conv2D(2, 3), power_iterations=iterations)
    with pytest.raises(ValueError, match="has no kernel"):
        SpectralNorm(keras.layers.ReLU()).build((None, 4, 4, 2))
    # (built, then an AttributeError at the first call)
    for layer, shape in [
        (keras.layers.Dense(3), (None, 5)),
        (keras.layers.Conv2DTranspose(3, 3), (None, 4, 4, 2)),
        (keras.layers.DepthwiseConv2D(3), (None, 4, 4, 2)),
    ]:
        refused = f"wraps a Conv1D, Conv2D or Conv3D.*{type(layer).__name__}"
        with pytest.raises(ValueError, match=refused):
            SpectralNorm(layer).build(shape)


def test_channels_first_convolutions_add_their_bias_per_channel():
    """The bias was added along the last axis: a channels_first Conv1D whose length equals
    its filters got bias[position] per row, silently; other lengths failed."""
    x = np.random.default_rng(0).normal(size=(2, 3, 4)).astype(np.float32)  # [B, C, L]
    first = SpectralNorm(keras.layers.Conv1D(4, 1, data_format="channels_first"))
    last = SpectralNorm(keras.layers.Conv1D(4, 1))
    first.build((None, 3, 4))
    last.build((None, 4, 3))
    for mine, theirs in zip(first.weights, last.weights, strict=True):
        theirs.assign(np.random.default_rng(1).normal(size=mine.shape).astype(np.float32))
        mine.assign(theirs)
    expected = np.transpose(last(np.transpose(x, [0, 2, 1])).numpy(), [0, 2, 1])
    np.testing.assert_allclose(first(x).numpy(), expected, atol=1e-6)
    wide = SpectralNorm(keras.layers.Conv2D(5, 3, data_format="channels_first"))
    assert wide(np.zeros((1, 2, 9, 7), np.float32)).shape == (1, 5, 7, 5)


MIRRORED = textwrap.dedent(
    """
    import json, sys
    import numpy as np, tensorflow as tf, keras
    from penet_tf.training.strategy import split_cpu
    split_cpu(2)
    from penet_tf.layers.spectral_norm import SpectralNorm
    from penet_tf.training.optimizers import TorchAdam

    images = np.random.default_rng(0).uniform(-1, 1, (4, 12, 12, 3)).astype("float32")

    def run(strategy):
        with strategy.scope():
            keras.utils.set_random_seed(3)
            layer = SpectralNorm(keras.layers.Conv2D(5, 3, use_bias=False))
            layer.build((None, 12, 12, 3))
            optimizer = TorchAdam(1e-2, 0.5, 0.999)
            optimizer.build(layer.trainable_variables)
        dataset = strategy.experimental_distribute_dataset(
            tf.data.Dataset.from_tensor_slices(images).batch(4)
        )
        replicas = strategy.num_replicas_in_sync

        def step(batch):
            with tf.GradientTape() as tape:
                first = tf.reduce_mean(tf.square(layer(batch, training=True)))
                second = tf.reduce_mean(layer(batch, training=True))  # a second call
                loss = (first + second) / replicas
            variables = layer.trainable_variables
            optimizer.apply(tape.gradient(loss, variables), variables)

        for _ in range(3):
            for batch in dataset:
                tf.function(lambda b: strategy.run(step, args=(b,)))(batch)
        return [layer.layer.kernel.numpy(), layer.vector_u.numpy(), layer.vector_v.numpy()]

    one = run(tf.distribute.get_strategy())
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    two = run(mirrored_strategy)
    print(json.dumps({
        "replicas": mirrored_strategy.num_replicas_in_sync,
        "diff": [float(np.abs(a - b).max()) for a, b in zip(one, two)],
        "moved": float(np.abs(one[0]).max()),
    }))
    """
)


def test_one_device_and_mirrored_strategy_on_two_logical_cpus_agree():
    result = subprocess.run(
        [sys.executable, "-c", MIRRORED], capture_output=True, text=True, timeout=300, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2
    assert max(report["diff"]) < 1e-5, report  # kernel, u, v after 3 steps of 2 calls each


def test_torch_adam_matches_torch_optim_adam():
    import torch

    rng = np.random.default_rng(0)
    start = rng.normal(size=(5, 7)).astype(np.float32)
    # Small gradients: where Keras' epsilon placement differs most from PyTorch's.
    gradients = [(rng.normal(size=(5, 7)) * 10.0 ** rng.uniform(-9, -3)).astype(np.float32)]
    gradients += [rng.normal(size=(5, 7)).astype(np.float32) * 1e-6 for _ in range(4)]

    parameter = torch.nn.Parameter(torch.from_numpy(start.copy()))
    reference = torch.optim.Adam([parameter], lr=1e-3, betas=(0.5, 0.999), eps=1e-8)
    variable = tf.Variable(start.copy())
    optimizer = TorchAdam(1e-3, 0.5, 0.999, 1e-8)
    keras_variable = tf.Variable(start.copy())
    keras_adam = keras.optimizers.Adam(1e-3, 0.5, 0.999, 1e-8)
    for gradient in gradients:
        parameter.grad = torch.from_numpy(gradient)
        reference.step()
        optimizer.apply([tf.constant(gradient)], [variable])
        keras_adam.apply([tf.constant(gradient)], [keras_variable])
    moved = parameter.detach().numpy() - start
    ours = variable.numpy() - start
    assert np.abs(ours - moved).max() <= 1e-3 * np.abs(moved).max()
    keras_error = np.abs(keras_variable.numpy() - start - moved).max()
    assert keras_error > 0.1 * np.abs(moved).max()  # the placement matters here


def test_torch_adam_under_loss_scaling():
    variable = tf.Variable(np.ones(3, np.float32))
    optimizer = keras.optimizers.LossScaleOptimizer(TorchAdam(0.1, 0.5, 0.999))
    with tf.GradientTape() as tape:
        loss = optimizer.scale_loss(tf.reduce_sum(variable * [1.0, -2.0, 3.0]))
    optimizer.apply(tape.gradient(loss, [variable]), [variable])
    # Adam's first step moves every weight by lr against the sign of its gradient.
    np.testing.assert_allclose(variable.numpy(), [0.9, 1.1, 0.9], atol=1e-6)
    with pytest.raises(ValueError, match="amsgrad"):
        TorchAdam(amsgrad=True)
