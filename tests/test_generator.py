"""The generator: released-network equivalence, shapes, serialisation, input validation."""

import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from penet_tf import Generator
from penet_tf.convert_torch import load_released_generator
from penet_tf.models.generator import upsample, upsampled_conv


def _thin(**kwargs):
    return Generator(base_channels=4, **kwargs)


def _batch(batch=2, h=64, w=64, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.uniform(-1, 1, size=(batch, h, w, 3)).astype(np.float32)
    mask = np.zeros((batch, h, w, 1), np.float32)
    mask[:, h // 4 : h // 2, w // 4 : 3 * w // 4] = 1
    return image, mask


@pytest.fixture(scope="module")
def released(official_fixture):
    return load_released_generator(official_fixture["gen"])


@pytest.mark.parametrize("similarity", ["gram", "patches"])
def test_reproduces_the_released_network(official_fixture, released, similarity):
    generator = released
    if similarity != "gram":
        generator = load_released_generator(
            official_fixture["gen"], Generator(similarity=similarity)
        )
    output, pyramid = generator(official_fixture["x"], official_fixture["m"])
    assert np.abs(output[0].numpy() - official_fixture["output"]).max() < 1e-4
    for level, image in enumerate(pyramid, start=1):
        expected = official_fixture[f"pyramid_{level}"]
        assert image.shape[1:] == expected.shape
        assert np.abs(image[0].numpy() - expected).max() < 1e-4, f"pyramid_{level}"


def test_released_network_with_small_chunks_and_builtin_patches(official_fixture):
    # Several attention chunks at at_conv01 (64 x 64 grid: 1 MiB per query row).
    generator = load_released_generator(
        official_fixture["gen"], Generator(attention_chunk_mb=8, patch_method="conv")
    )
    output, _ = generator(official_fixture["x"], official_fixture["m"])
    assert np.abs(output[0].numpy() - official_fixture["output"]).max() < 1e-4


@pytest.mark.parametrize("shape, filters", [((2, 3, 5, 6), 4), ((1, 8, 8, 16), 8)])
def test_upsampled_conv_equals_the_convolution_of_the_upsampled_map(shape, filters):
    """The decoder's inference form (separable up-sampling) against conv(upsample(x)),
    odd and non-square maps included (every border row and column)."""
    conv = keras.layers.Conv2D(
        filters, 3, padding="same", activation="tanh", bias_initializer="random_normal"
    )
    features = tf.random.stateless_normal(shape, seed=[1, 2])
    direct = conv(upsample(features)).numpy()
    separable = upsampled_conv(conv, features).numpy()
    assert separable.shape == direct.shape == (shape[0], 2 * shape[1], 2 * shape[2], filters)
    np.testing.assert_allclose(separable, direct, rtol=0, atol=2e-6)


def test_upsampled_conv_rejects_other_convolutions():
    for conv in (
        keras.layers.Conv2D(4, 1, padding="same"),
        keras.layers.Conv2D(4, 3, padding="same", dilation_rate=2),
        keras.layers.Conv2D(4, 3, padding="valid"),
    ):
        conv.build((None, None, None, 2))
        with pytest.raises(ValueError, match="3 x 3, stride-1"):
            upsampled_conv(conv, tf.zeros([1, 4, 4, 2]))


def test_training_and_inference_decoders_agree():
    """Training takes the direct decoder convolutions, inference the separable ones."""
    generator = _thin()
    image, mask = _batch(h=64, w=128)
    trained = generator(image, mask, training=True)
    inferred = generator(image, mask)
    for a, b in zip(tf.nest.flatten(trained), tf.nest.flatten(inferred), strict=True):
        np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=0, atol=1e-5)


def test_output_shapes_any_batch_non_square():
    generator = _thin()
    image, mask = _batch(3, 64, 128)
    output, pyramid = generator(image, mask)
    assert output.shape == (3, 64, 128, 3)
    assert [p.shape[1:3] for p in pyramid] == [(32, 64), (16, 32), (8, 16), (4, 8), (2, 4)]
    assert np.abs(output.numpy()).max() <= 1.0  # tanh


def test_generator_masks_its_input_itself():
    generator = _thin()
    image, mask = _batch(1)
    other = image.copy()
    other[mask[..., 0] > 0] = 0.3  # different content inside the hole only
    np.testing.assert_array_equal(
        generator(image, mask)[0].numpy(), generator(other, mask)[0].numpy()
    )


def test_dynamic_batch_and_size_in_tf_function_and_a_named_error_for_a_bad_size():
    generator = _thin()
    spec = [tf.TensorSpec([None, None, None, 3]), tf.TensorSpec([None, None, None, 1])]
    run = tf.function(lambda image, mask: generator(image, mask)[0], input_signature=spec)
    for batch, h, w in [(1, 64, 64), (2, 128, 64)]:
        image, mask = _batch(batch, h, w)
        np.testing.assert_allclose(
            run(image, mask).numpy(), generator(image, mask)[0].numpy(), atol=1e-5
        )
    # A size the network cannot take fails in the graph with an error that names it.
    with pytest.raises(tf.errors.InvalidArgumentError, match="multiples of 64"):
        run(np.zeros((1, 96, 64, 3), np.float32), np.zeros((1, 96, 64, 1), np.float32))


def test_keras_save_and_load_gives_identical_outputs(tmp_path):
    generator = _thin(patch_method="conv", attention_chunk_mb=64)
    image, mask = _batch(2)
    expected = generator(image, mask)[0].numpy()
    path = tmp_path / "generator.keras"
    generator.save(path)
    loaded = tf.keras.models.load_model(path)
    assert isinstance(loaded, Generator)
    assert loaded.patch_method == "conv" and loaded.base_channels == 4
    np.testing.assert_array_equal(loaded(image, mask)[0].numpy(), expected)


def test_load_generator_skips_random_init_but_keeps_every_weight_and_the_config(tmp_path):
    from penet_tf.models import load_generator

    generator = _thin(kernel_init="he_normal")
    generator.build()
    path = tmp_path / "g.weights.h5"
    generator.save_weights(path)
    loaded = load_generator(path, base_channels=4, kernel_init="he_normal")
    for saved, read in zip(generator.weights, loaded.weights, strict=True):
        assert saved.path.split("/", 1)[1] == read.path.split("/", 1)[1]
        np.testing.assert_array_equal(read.numpy(), saved.numpy())
    config = {**generator.get_config(), "name": loaded.name}
    assert loaded.get_config() == config
    conv = loaded.encoder[0]  # initializers restored after the zero-kernel build
    assert isinstance(conv.kernel_initializer, tf.keras.initializers.HeNormal)


def test_load_generator_names_a_bad_config_or_weights_file(tmp_path):
    from penet_tf.models import load_generator

    generator = _thin()
    generator.build()
    path = tmp_path / "g.weights.h5"
    generator.save_weights(path)
    config = tmp_path / "g.config.json"
    refusals = {
        '{"base_channels": "x"}': "base_channels must be a positive integer, got 'x'",
        "[4]": 'g.config.json: expected a JSON object such as {"base_channels": 32}, got [4]',
        '{"base_channels": 4,': "g.config.json: cannot read the generator's architecture",
        '{"base_channels": 4, "dropout": 0.1}': "Unrecognized keyword arguments",
    }
    for text, message in refusals.items():
        config.write_text(text)
        with pytest.raises(ValueError, match=re.escape(message)):
            load_generator(path)
    config.write_text('{"base_channels": 8}')  # weights of another width: named, one line
    with pytest.raises(ValueError, match="it holds a generator with base_channels 4") as caught:
        load_generator(path)
    assert len(str(caught.value).splitlines()) == 1  # was Keras' list of 34 layers
    config.write_text('{"base_channels": 4}')
    # A link to the weights: the config beside the file, not beside the link, is read.
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "model.weights.h5").symlink_to(path)
    assert load_generator(tmp_path / "elsewhere" / "model.weights.h5").base_channels == 4
    truncated = tmp_path / "t.weights.h5"
    truncated.write_bytes(path.read_bytes()[:5000])
    with pytest.raises(ValueError, match="t.weights.h5: cannot read it as a weights file"):
        load_generator(truncated, base_channels=4)
    # A run's discriminator weights: its config was read as the generator's ("Unrecognized
    # keyword arguments passed to Generator"); a PENetGAN's: a cut-off Keras line.
    from penet_tf import Discriminator
    from penet_tf.training.gan import PENetGAN

    discriminator = Discriminator(base_channels=4)
    discriminator.build()
    discriminator.save_weights(tmp_path / "discriminator.weights.h5")
    (tmp_path / "discriminator.config.json").write_text(
        '{"base_channels": 4, "spectral_norm": "released"}'
    )
    with pytest.raises(ValueError, match="it holds a discriminator's weights .give generator"):
        load_generator(tmp_path / "discriminator.weights.h5")
    gan = PENetGAN(generator, discriminator)
    gan.built = True
    gan.save_weights(tmp_path / "gan.weights.h5")
    with pytest.raises(ValueError, match="it holds a PENetGAN's weights") as caught:
        load_generator(tmp_path / "gan.weights.h5", base_channels=4)
    assert len(str(caught.value).splitlines()) == 1


def test_get_config_round_trip():
    generator = _thin(similarity="patches", attention_chunk_mb=32, name="g")
    config = generator.get_config()
    clone = Generator.from_config(config)
    assert clone.get_config() == config
    clone.build()
    generator.build()
    assert len(clone.weights) == len(generator.weights) == 68


def test_a_global_keras_setting_does_not_change_a_loaded_generator(tmp_path):
    """keras.json (or a notebook) with "image_data_format": "channels_first" made every
    convolution misread its input (TypeError in Conv2D.build, from the CLIs too); a
    float16 floatx or a global mixed policy loaded weights into a float16 generator."""
    from penet_tf import Discriminator
    from penet_tf.models import load_generator

    image, mask = _batch(1)
    generator, discriminator = _thin(), Discriminator(base_channels=4)
    expected, critic = generator(image, mask)[0], discriminator(image)
    generator.save_weights(tmp_path / "g.weights.h5")
    settings = keras.config.image_data_format(), keras.config.dtype_policy().name
    try:
        keras.config.set_image_data_format("channels_first")
        keras.config.set_dtype_policy("mixed_float16")
        loaded = load_generator(tmp_path / "g.weights.h5", base_channels=4)
        assert loaded.dtype_policy.name == "float32"
        np.testing.assert_array_equal(loaded(image, mask)[0], expected)
        other = Discriminator(base_channels=4, dtype="float32")
        other.build(image.shape)
        other.set_weights(discriminator.get_weights())
        np.testing.assert_array_equal(other(image), critic)
    finally:
        keras.config.set_image_data_format(settings[0])
        keras.config.set_dtype_policy(settings[1])


def test_mixed_bfloat16_policy_runs_close_to_float32():
    image, mask = _batch(1)
    full = _thin()
    half = _thin(dtype="mixed_bfloat16")
    full.build()
    half.build()
    half.set_weights(full.get_weights())
    out16 = half(image, mask)[0]
    assert out16.dtype == tf.bfloat16
    np.testing.assert_allclose(
        tf.cast(out16, tf.float32).numpy(), full(image, mask)[0].numpy(), atol=0.05
    )


@pytest.mark.parametrize(
    "image_shape,mask_shape,message",
    [
        ((64, 64, 3), (64, 64, 1), "image must be 4-D"),
        ((1, 64, 64, 3), (64, 64, 1), "mask must be 4-D"),
        ((1, 64, 64, 4), (1, 64, 64, 1), "image must have 3 channels"),
        ((1, 64, 64, 3), (1, 64, 64, 3), "mask must have 1 channel"),
        ((1, 64, 64, 3), (1, 64, 128, 1), "mask width 128 differs from image width 64"),
        ((1, 96, 64, 3), (1, 96, 64, 1), "image height 96 is not a multiple of 64"),
        ((2, 64, 64, 3), (3, 64, 64, 1), "batch mismatch"),
    ],
)
def test_bad_input_raises_value_error_naming_the_problem(image_shape, mask_shape, message):
    generator = _thin()
    with pytest.raises(ValueError, match=message) as error:
        generator(np.zeros(image_shape, np.float32), np.zeros(mask_shape, np.float32))
    assert "expected image [batch, H, W, 3] and mask [batch, H, W, 1]" in str(error.value)


def test_tf_train_checkpoint_tracks_every_variable(tmp_path):
    # Keras' layer lists are invisible to TensorFlow's object tracking; every layer is
    # also an attribute so that tf.train.Checkpoint / SavedModel see all weights.
    generator = _thin()
    generator.build()
    path = tf.train.Checkpoint(generator=generator).save(str(tmp_path / "ckpt"))
    saved = [name for name, _ in tf.train.list_variables(path) if name.startswith("generator/")]
    assert len(saved) == len(generator.weights) == 68
    assert "generator/at_conv01/conv03/bias/.ATTRIBUTES/VARIABLE_VALUE" in saved


def test_build_is_idempotent():
    generator = _thin()
    generator.build()
    weights = [w.numpy() for w in generator.weights]
    generator.build()
    generator(*_batch(1))
    assert len(generator.weights) == len(weights) == 68
    for a, b in zip(weights, generator.weights, strict=True):
        np.testing.assert_array_equal(a, b.numpy())


def test_a_fresh_model_first_called_from_several_threads_builds_once():
    """A service's first requests at once: each thread built the layers, 3 of 4 calls
    failed ("cannot add new elements of state ... already built") and the model kept
    doubled variables."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from penet_tf import Discriminator

    image, mask = _batch(1)
    for make, call in (
        (_thin, lambda model: model(image, mask)[0]),
        (lambda: Discriminator(base_channels=8), lambda model: model(image)),
    ):
        model = make()
        start = threading.Barrier(4)

        def first_call(_, model=model, call=call, start=start):
            start.wait()
            return call(model).numpy()

        with ThreadPoolExecutor(4) as pool:
            outputs = list(pool.map(first_call, range(4)))
        for output in outputs[1:]:
            np.testing.assert_array_equal(output, outputs[0])
        single = make()
        call(single)
        expected = len(single.weights)
        assert len(model.weights) == expected, [w.path for w in model.weights]
        assert len({w.path for w in model.weights}) == expected


def test_return_attention_gives_at_conv01_weights():
    generator = _thin()
    image, mask = _batch(2, 64, 64)
    mask[1] = 0.0  # no hole: every key usable, rows are plain softmaxes
    output, pyramid = generator(image, mask)
    output2, pyramid2, attention = generator(image, mask, return_attention=True)
    np.testing.assert_allclose(output2.numpy(), output.numpy(), atol=1e-6, rtol=0)
    assert attention.shape == (2, 16 * 16, 16 * 16) and attention.dtype == tf.float32
    sums = attention.numpy().sum(axis=-1)
    np.testing.assert_allclose(sums[1], 1.0, atol=1e-5)
    assert np.all(sums <= 1.0 + 1e-5)
    # The same weights as at_conv01 called on its own inputs (x1 and the filled x2).
    features = tf.concat([image * (1 - mask) + mask, mask], axis=-1)
    encoded = []
    for layer in generator.encoder:
        features = layer(tf.pad(features, [[0, 0], [1, 1], [1, 1], [0, 0]]))
        encoded.append(features)
    filled = encoded[5]
    for layer, low in zip(generator.attention[:-1], encoded[4:0:-1], strict=True):
        filled = layer(low, filled, mask)
    _, direct = generator.attention[-1](encoded[0], filled, mask, return_attention=True)
    np.testing.assert_allclose(attention.numpy(), direct.numpy(), atol=1e-6, rtol=0)


def _hole(kind, size):
    mask = np.zeros((1, size, size, 1), np.float32)
    if kind == "square":
        mask[0, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 1
    elif kind == "stroke":  # a thin diagonal stroke
        for i in range(size // 8, 7 * size // 8):
            mask[0, i, i // 2 : i // 2 + 3] = 1
    elif kind == "border":  # touching the bottom and right borders
        mask[0, size - size // 8 :, size // 2 :] = 1
    elif kind == "tiny":  # one pixel
        mask[0, size // 3, size // 5] = 1
    elif kind == "top":
        mask[0, :3, 5:40] = 1
    return mask


@pytest.mark.parametrize(
    "kind,size,chunk_mb",
    [
        ("square", 64, 192),
        ("stroke", 128, 192),
        ("border", 128, 0.25),  # several chunks of at_conv01 queries in the band
        ("tiny", 128, None),  # one chunk, no loop (the exported graphs): the row band
        ("tiny", 128, 192),  # a narrow window: at_conv01 scores its queries only
        ("top", 64, 192),
        ("top", 128, 0.25),  # a window in several chunks
    ],
)
def test_output_mask_gives_the_same_composite(kind, size, chunk_mb):
    generator = _thin(attention_chunk_mb=chunk_mb, kernel_init="he_normal")
    image, _ = _batch(1, size, size, seed=3)
    mask = _hole(kind, size)
    full, _ = generator(image, mask)
    restricted, _ = generator(image, mask, output_mask=mask)
    hole = np.broadcast_to(mask > 0, full.shape)
    np.testing.assert_allclose(restricted.numpy()[hole], full.numpy()[hole], atol=1e-5, rtol=0)
    first, last = (int(v) for v in generator.at_conv01_rows(mask))
    rows = np.flatnonzero(mask[0, :, :, 0].any(axis=1))
    assert 0 <= first <= rows[0] // 2 and rows[-1] // 2 < last <= size // 2
    left, right = (int(v) for v in generator.at_conv01_rows(mask, axis=1))
    columns = np.flatnonzero(mask[0, :, :, 0].any(axis=0))
    assert 0 <= left <= columns[0] // 2 and columns[-1] // 2 < right <= size // 2
    if kind == "tiny":  # the band is narrow: the restriction does something
        assert last - first < size // 4
        assert np.abs(restricted.numpy() - full.numpy()).max() > 1e-3


def test_output_mask_through_the_uint8_composite():
    from penet_tf.inference import composite_uint8, float_to_uint8, inpaint

    generator = _thin(kernel_init="he_normal")
    rng = np.random.default_rng(4)
    image = rng.integers(0, 256, (2, 70, 90, 3), dtype=np.uint8)  # padded to 128 x 128
    mask = np.zeros((2, 70, 90, 1), np.uint8)
    mask[0, 60:70, 10:30] = 255
    mask[1, 5:9, 80:90] = 1
    _, full = inpaint(generator, image / 127.5 - 1.0, (mask > 0).astype(np.float32))
    got = composite_uint8(generator, image, mask, composite_only=True).numpy()
    expected = float_to_uint8(full).numpy()
    assert np.abs(got.astype(int) - expected.astype(int)).max() <= 1  # rounding ties only


def test_output_mask_without_a_hole_runs_and_composites_the_image():
    from penet_tf.inference import composite_uint8

    generator = _thin()
    image = np.random.default_rng(5).integers(0, 256, (1, 64, 64, 3), dtype=np.uint8)
    mask = np.zeros((1, 64, 64, 1), np.uint8)
    got = composite_uint8(generator, image, mask, composite_only=True)
    np.testing.assert_array_equal(got.numpy(), image)


def test_inputs_the_network_would_misread_are_refused_before_it_runs():
    """A uint8 0-255 photo and 0/255 mask ran without a word (output up to 1.06 off);
    base_channels 6 failed at the first call with "filters (6) must be divisible by the
    number of fuse branches (4)"; inference.inpaint reported a [50, 70, 3] image with its
    padded shape, and ran the whole generator before failing on an image / mask size
    mismatch in a Mul op."""
    from penet_tf.inference import inpaint

    generator = Generator(base_channels=4)
    generator.build()
    with pytest.raises(ValueError, match="image must be float .* got uint8; convert uint8"):
        generator(tf.zeros([1, 64, 64, 3], tf.uint8), tf.zeros([1, 64, 64, 1]))
    with pytest.raises(ValueError, match="mask must be float .* got uint8"):
        generator(tf.zeros([1, 64, 64, 3]), tf.zeros([1, 64, 64, 1], tf.uint8))
    with pytest.raises(ValueError, match="base_channels must be a multiple of 4"):
        Generator(base_channels=6)
    with pytest.raises(
        ValueError,
        match=re.escape(
            "image must be 4-D; expected image [batch, H, W, 3] and mask [batch, H, W, 1]; "
            "got image shape (50, 70, 3)"
        ),
    ):
        inpaint(generator, tf.zeros([50, 70, 3]), tf.zeros([1, 50, 70, 1]))
    with pytest.raises(ValueError, match="mask width 71 differs from image width 70"):
        inpaint(generator, tf.zeros([1, 50, 70, 3]), tf.zeros([1, 50, 71, 1]))


def test_keras_does_not_pick_xla_for_the_chunked_attention():
    """Keras' jit_compile="auto" picks XLA on a GPU when every layer supports it; the
    attention's chunk loops cannot compile ("Reshape must be a compile-time constant"),
    so PENetGAN.fit failed on one GPU."""
    from keras.src.trainers.trainer import model_supports_jit  # what "auto" asks

    generator = Generator(base_channels=4)
    generator.build()
    assert not model_supports_jit(generator)


def test_keras_forms_of_two_inputs_and_masks_the_library_would_misread():
    """``generator.predict([image, mask])`` (Keras passes ``x`` as one argument) failed in
    Keras with "missing a required argument: 'mask'"; a uint8 mask was told to go through
    ``uint8_to_float`` (a mask of -1 / -0.99, run without a word); ``inference.inpaint``
    took a 0/255 float mask and gave a composite of -254 to +254."""
    from penet_tf.inference import hole_mask, inpaint

    generator = Generator(base_channels=4)
    rng = np.random.default_rng(0)
    image = rng.uniform(-1, 1, (2, 64, 64, 3)).astype("float32")
    mask = np.zeros((2, 64, 64, 1), "float32")
    mask[:, 16:48, 16:40] = 1
    direct = generator(image, mask)[0].numpy()
    for inputs in ([image, mask], (image, mask), {"image": image, "mask": mask}):
        np.testing.assert_array_equal(generator(inputs)[0].numpy(), direct)
    np.testing.assert_allclose(generator.predict([image, mask], verbose=0)[0], direct, atol=1e-6)
    with pytest.raises(ValueError, match=r"Generator needs the mask: call it as generator"):
        generator(image)
    with pytest.raises(ValueError, match="mask must be float .* with penet_tf.inference.hole_mask"):
        generator(image, tf.cast(mask * 255, tf.uint8))
    with pytest.raises(ValueError, match=r"inpaint: mask must hold floats in \[0, 1\] \(1 = hole"):
        inpaint(generator, image, mask * 255)
    with pytest.raises(ValueError, match=r"image must hold floats in \[-1, 1\], got values from"):
        inpaint(generator, (image + 1) * 127.5, mask)
    with pytest.raises(ValueError, match="image must hold floats in .*, got NaN or infinity"):
        inpaint(generator, np.where(mask > 0, np.nan, image), mask)
    _, inpainted = inpaint(generator, image, hole_mask(tf.cast(mask * 255, tf.uint8)))
    assert np.abs(inpainted.numpy()).max() <= 1.0 + 1e-6
    checked = tf.function(lambda image, mask: inpaint(generator, image, mask)[1])
    with pytest.raises(tf.errors.InvalidArgumentError, match="hole_mask"):
        checked(tf.constant(image), tf.constant(mask * 255))  # in a graph: an assertion
