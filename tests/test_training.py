"""Training: the configs, the train_step (learning, Keras fit), one complete run and
what it writes, clear errors."""

import os
import shutil
import warnings

import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from conftest import FIXTURE
from PIL import Image
from training_helpers import (
    REPO,
    make_photos,
    run_main,
    tiny_config,
    write_config,
)

from penet_tf import Discriminator, Generator
from penet_tf import train as train_cli
from penet_tf.data.images import ImageSource, inpainting_dataset
from penet_tf.training import PENetGAN, StepDecay
from penet_tf.training.checkpoints import CheckpointReadError, CheckpointWriteError, TrainingState
from penet_tf.training.config import load_config
from penet_tf.training.trainer import (
    ResumedProgbar,
    Trainer,
    build_gan,
    load_initial_weights,
    used_learning_rate,
)

CONFIGS = sorted(
    name for name in os.listdir(os.path.join(REPO, "configs")) if name.endswith(".json")
)


RELEASED = {  # OFFICIAL_PENNET.md: iterations, niter, niter_steady, GAN loss
    "places2": (1_000_000, 100_000, 150_000, "hinge"),
    "celebahq": (330_000, 100_000, 10_000, "hinge"),
    "dtd": (330_000, 100_000, 310_000, "nsgan"),
    "facade": (200_000, 50_000, 10_000, "nsgan"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_parses_and_builds_its_pipeline(name, photos):
    path = os.path.join(REPO, "configs", name)
    config = load_config(path, ["data.source=folder", f"data.path={photos}"])
    source = ImageSource(config.data)
    small = {**config.data.to_dict(), "image_size": [64, 64]}
    (image, mask), _ = next(iter(inpainting_dataset(source, small, config.mask, 2)))
    assert image.shape == (2, 64, 64, 3) and mask.shape == (2, 64, 64, 1)
    gan = build_gan(config)
    assert gan.generator.base_channels == config.model.base_channels
    stem = name[: -len(".json")]
    if stem in RELEASED:
        iterations, niter, steady, gan_type = RELEASED[stem]
        assert config.trainer.iterations == iterations
        assert (config.schedule.niter, config.schedule.niter_steady) == (niter, steady)
        assert config.losses.gan_type == gan_type
        assert config.trainer.batch_size == 16 and config.optimizer.lr == 1e-4
        losses = config.losses
        weights = [losses.hole_weight, losses.valid_weight, losses.pyramid_weight]
        assert weights == [6, 1, 0.5] and losses.adversarial_weight == 0.1
        assert config.model.spectral_norm == "released"
        assert config.optimizer.epsilon_placement == "torch"


def test_config_overrides_and_errors(tmp_path):
    config = load_config(
        os.path.join(REPO, "configs", "demo.json"),
        ["trainer.iterations=7", "mask.type=strokes", "data.source=folder", "data.path=/x"]
        + ["name=other"],
    )
    assert config.trainer.iterations == 7 and config.mask.type == "strokes"
    assert config.output_dir == os.path.join("runs", "other")
    with pytest.raises(ValueError, match="Unknown config key 'trainer.iteratoins'"):
        load_config(None, ["trainer.iteratoins=3"])
    with pytest.raises(ValueError, match="multiples of 64"):
        load_config(None, ["data.image_size=[100, 64]"])
    with pytest.raises(ValueError, match="positive integer"):
        load_config(None, ["trainer.batch_size=0"])
    for name in ("", ".", "..", "a/../b"):  # ("": trained into runs/ itself, "..": into ./)
        with pytest.raises(ValueError, match=r"name must be a folder name under runs/ \(the"):
            load_config(None, [f"name={name}"])
    assert load_config(None, ["name=a/b"]).output_dir == os.path.join("runs", "a", "b")
    assert load_config(None, ["name=", "output_dir=/x"]).output_dir == "/x"  # (not used)


def test_step_decay_schedule():
    # The release's iteration is Keras' 0-based step + 1 (the decay came one step late).
    schedule = StepDecay(1e-4, niter=10, niter_steady=25)
    values = [float(schedule(step)) for step in (0, 8, 9, 18, 19, 29, 1000)]
    np.testing.assert_allclose(values, [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6, 1e-6], rtol=1e-6)
    # the same in Python floats, as the release computes it (lr * 0.1 ** decays)
    rates = [schedule.rate(step) for step in (0, 8, 9, 18, 19, 29, 1000)]
    assert rates == [
        1e-4,
        1e-4,
        1e-4 * 0.1,
        1e-4 * 0.1,
        1e-4 * 0.1**2,
        1e-4 * 0.1**2,
        1e-4 * 0.1**2,
    ]
    assert StepDecay(1e-4, 10, 25, first_period_factor=4).rate(0) == 1e-4 * 4


def test_d2g_lr_ends_at_the_first_decay_as_released():
    """The released trainer starts D's Adam at lr * d2glr and sets both rates to lr * 0.1
    at the first decay (adjust_learning_rate): D's factor applied at every step before."""
    overrides = [
        "model.base_channels=4",
        "model.discriminator_channels=4",
        "optimizer.lr=1e-4",
        "optimizer.d2g_lr=4",
        "schedule.niter=10",
        "schedule.niter_steady=25",
    ]
    steps = (0, 8, 9, 19, 1000)  # 0-based: the release's iterations 1, 9, 10, 20, 1001
    expected = {
        "released": [4e-4, 4e-4, 1e-5, 1e-6, 1e-6],
        "every_step": [4e-4, 4e-4, 4e-5, 4e-6, 4e-6],
    }
    for schedule, values in expected.items():
        config = load_config(None, overrides + [f"optimizer.d2g_lr_schedule={schedule}"])
        gan = build_gan(config)
        rates = [float(gan.d_optimizer._learning_rate(step)) for step in steps]
        np.testing.assert_allclose(rates, values, rtol=1e-6)
        g_rates = [float(gan.g_optimizer._learning_rate(step)) for step in steps]
        np.testing.assert_allclose(g_rates, [1e-4, 1e-4, 1e-5, 1e-6, 1e-6], rtol=1e-6)
    with pytest.raises(ValueError, match="d2g_lr_schedule must be one of"):
        load_config(None, ["optimizer.d2g_lr_schedule=first_decay"])


def test_the_learning_rate_logged_is_the_one_the_step_used():
    """TensorBoard's learning_rate/* at step N showed step N + 1's rate (read after the
    update advanced the optimizer's iterations): each decay one step early."""
    from penet_tf.training.optimizers import make_adam

    optimizer = make_adam(StepDecay(1e-4, 2, 4), 0.5, 0.999, 1e-8, "torch")
    used = []
    for step in range(1, 6):  # the iterations after each update of steps 1 ... 5
        optimizer.iterations.assign(step)
        used.append(used_learning_rate(optimizer))
    np.testing.assert_allclose(used, [1e-4, 1e-5, 1e-5, 1e-6, 1e-6], rtol=1e-6)
    scaled = keras.optimizers.LossScaleOptimizer(
        make_adam(StepDecay(1e-4, 2, 4), 0.5, 0.999, 1e-8, "torch")
    )
    scaled.inner_optimizer.iterations.assign(2)
    np.testing.assert_allclose(used_learning_rate(scaled), 1e-5, rtol=1e-6)


def test_the_progress_bar_of_a_resumed_run_counts_its_own_steps():
    """Resumed at step 900, Keras' Progbar weighed the first step's losses 901 times in
    its running means and divided the elapsed time by the step number."""
    progress = ResumedProgbar(1000, 900, verbose=0)
    for step, loss in zip(range(901, 911), [10.0] + [1.0] * 9, strict=True):
        progress.update(step, [("g_loss", loss)])
    total, count = progress._values["g_loss"]
    assert total / count == pytest.approx(1.9)
    assert count == 10
    # The final line kept only the last step's value (Keras' finalize): the bar left on
    # screen showed the last batch's losses, not the run's means.
    for step in range(911, 1001):
        progress.update(step, [("g_loss", 1.0 if step < 1000 else 91.0)])
    total, count = progress._values["g_loss"]
    assert count == 100 and total / count == pytest.approx((19 + 89 + 91) / 100)
    # A stateful metric keeps its last value on the last line, as in Keras.
    stateful = ResumedProgbar(3, 0, verbose=0, stateful_metrics=["lr"])
    for step, value in zip((1, 2, 3), (1.0, 2.0, 9.0), strict=True):
        stateful.update(step, [("lr", value), ("g_loss", value)])
    assert stateful._values["lr"] == [9.0, 1] and stateful._values["g_loss"] == [12.0, 3]


def test_learning_works_on_a_tiny_overfit_case():
    size = 64
    images = tf.stack(
        [
            tf.image.resize(getattr(skimage.data, n)(), [size, size]) / 127.5 - 1
            for n in ("astronaut", "coffee")
        ]
    )
    mask = np.zeros((2, size, size, 1), np.float32)
    mask[:, 16:32, 16:48] = 1
    keras.utils.set_random_seed(0)
    gan = PENetGAN(
        Generator(base_channels=8, kernel_init="he_normal"), Discriminator(base_channels=16)
    )
    gan.compile(
        keras.optimizers.Adam(1e-3, 0.5, epsilon=1e-8),
        keras.optimizers.Adam(1e-3, 0.5, epsilon=1e-8),
    )
    gan.build()
    step = tf.function(gan.released_step)
    first = float(step((images, mask))["hole_l1"])
    # (hole L1 over the last ten of 60 steps: 0.43 of the first step's on this machine)
    holes = [float(step((images, mask))["hole_l1"]) for _ in range(60)]
    assert min(holes[-10:]) <= 0.5 * first, (first, holes[-10:])


def test_keras_fit_runs_the_same_train_step():
    keras.utils.set_random_seed(1)
    # Made under a strategy, fit outside its scope (fit builds the model under it).
    strategy = tf.distribute.MirroredStrategy(["/cpu:0"])
    with strategy.scope():
        gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8), "nsgan")
        gan.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5))
    images = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    masks = np.zeros((4, 64, 64, 1), np.float32)
    masks[:, 8:40, 8:40] = 1
    history = gan.fit(
        tf.data.Dataset.from_tensor_slices((images, masks)).batch(2), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["g_loss"][-1])
    assert int(gan.g_optimizer.iterations.numpy()) == int(gan.d_optimizer.iterations.numpy()) == 2
    assert all(isinstance(v.value, tf.distribute.DistributedValues) for v in gan.generator.weights)


def test_fit_logs_epoch_means_and_evaluate_predict_validate():
    """fit's History held the last batch's terms (no trackers: EarlyStopping and
    ModelCheckpoint(save_best_only) acted on one noisy batch); validation_data, evaluate
    and predict failed ("missing a required argument: 'mask'"), validation after the
    first epoch's work; train_on_batch(images, masks) could not unpack Keras' batch."""
    keras.utils.set_random_seed(2)
    gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    images = np.random.default_rng(0).uniform(-1, 1, (6, 64, 64, 3)).astype(np.float32)
    masks = np.zeros((6, 64, 64, 1), np.float32)
    masks[:, 8:40, 8:40] = 1
    data = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    with pytest.raises(ValueError, match=r"compile\(g_optimizer, d_optimizer\) before fit"):
        gan.fit(data)  # (an AttributeError on g_optimizer)
    gan.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5))

    class PerBatch(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            seen.append(dict(logs))

    seen = []
    # As the README says: a term and its direction (Keras cannot guess a GAN term's).
    stop = keras.callbacks.EarlyStopping(monitor="val_hole_l1", mode="min", patience=5)
    history = gan.fit(data, epochs=2, validation_data=data, callbacks=[PerBatch(), stop], verbose=0)
    assert stop.best == min(history.history["val_hole_l1"])
    # Keras' per-batch logs are the running means; the epoch's is the mean of its 3 batches.
    assert len(seen) == 6 and history.history["hole_l1"][1] == pytest.approx(seen[-1]["hole_l1"])
    assert seen[3]["hole_l1"] != pytest.approx(seen[5]["hole_l1"])  # (means, reset per epoch)
    assert set(history.history) >= {"g_loss", "val_g_loss", "val_hole_l1", "d_real"}
    weights = [v.numpy() for v in gan.generator.weights + gan.discriminator.weights]
    results = gan.evaluate(data, verbose=0, return_dict=True)
    assert np.isfinite(results["g_loss"]) and set(results) >= {"d_loss", "pyramid_l1"}
    predicted = gan.predict(data, verbose=0)
    assert predicted["inpainted"].shape == (6, 64, 64, 3)
    np.testing.assert_array_equal(
        predicted["inpainted"][masks[..., 0] == 0], images[masks[..., 0] == 0]
    )
    after = [v.numpy() for v in gan.generator.weights + gan.discriminator.weights]
    assert all(np.array_equal(a, b) for a, b in zip(weights, after, strict=True))  # no update
    logs = gan.train_on_batch(images[:2], masks[:2], return_dict=True)
    assert np.isfinite(logs["g_loss"])


def test_fit_refuses_uint8_photos_and_takes_integer_masks_by_the_mask_rule():
    """Cast to float before the generator's own check, uint8 photos with 0/255 masks
    trained without a word: g_loss 1065.8, valid_l1 -129.8. Integer masks follow the mask
    rule (0 / 255 and 0 / 1 alike), as on every other path."""
    gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    gan.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5))
    photos = np.zeros((2, 64, 64, 3), np.uint8)
    holes = np.zeros((2, 64, 64, 1), np.uint8)
    holes[:, 16:48, 16:48] = 255
    with pytest.raises(ValueError, match="images must be float in \\[-1, 1\\].*got uint8"):
        gan.fit(photos, holes, verbose=0)
    images = np.random.default_rng(1).uniform(-1, 1, (2, 64, 64, 3)).astype(np.float32)
    gan.build()
    terms = []
    for mask in (holes, holes // 255, (holes > 0).astype(np.float32), holes > 0):
        gan.reset_metrics()
        terms.append({k: float(v) for k, v in gan.test_step((images, mask)).items()})
    assert terms[0] == terms[2] and terms[1] == terms[2] and terms[3] == terms[2]
    gan.reset_metrics()
    # floats are taken as given, but within range: 0 / 255 float masks gave a negative
    # valid L1, 0-255 float photos a hole L1 of 127
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"float masks must be in \[0, 1\]"):
        gan.test_step((images, holes.astype(np.float32)))
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must be float in \[-1, 1\]"):
        gan.test_step(((images + 1) * 127.5, holes))


def _keras_user_gan(**compile_options):
    keras.utils.set_random_seed(4)
    gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    g_adam = keras.optimizers.Adam(2e-4, 0.5, name="g_adam")
    gan.compile(g_adam, keras.optimizers.Adam(1e-4, 0.5, name="d_adam"), **compile_options)
    images = np.random.default_rng(3).uniform(-1, 1, (5, 64, 64, 3)).astype(np.float32)
    masks = np.zeros((5, 64, 64, 1), np.float32)
    masks[:, 8:40, 16:48] = 1
    return gan, images, masks


def test_keras_learning_rate_callbacks_change_both_optimizers_and_log_them():
    """PENetGAN left model.optimizer as Keras' default RMSprop, which nothing used:
    LearningRateScheduler and ReduceLROnPlateau "set" its rate (history: 0.5) while G's
    and D's stayed at theirs; TensorBoard logged its rate and 0 steps per second."""
    gan, images, masks = _keras_user_gan()
    halve = keras.callbacks.LearningRateScheduler(lambda epoch, rate: rate / 2)
    plateau = keras.callbacks.ReduceLROnPlateau("g_loss", 0.5, 0, mode="min", min_delta=1e9)
    history = gan.fit(images, masks, batch_size=2, epochs=2, callbacks=[halve, plateau], verbose=0)
    # halved at each epoch's start, and at the second's end (no improvement on the first)
    assert float(gan.g_optimizer.learning_rate) == pytest.approx(2e-4 / 8)
    assert float(gan.d_optimizer.learning_rate) == pytest.approx(1e-4 / 8)
    assert history.history["learning_rate_g_adam"] == pytest.approx([2e-4 / 2, 2e-4 / 4])
    assert history.history["learning_rate_d_adam"] == pytest.approx([1e-4 / 2, 1e-4 / 4])
    assert int(gan.optimizer.iterations) == int(gan.g_optimizer.iterations) == 6
    with pytest.raises(AttributeError, match="two optimizers: use gan.g_optimizer"):
        gan.optimizer.learning_rate = 0.1


def test_keras_user_mistakes_are_named_instead_of_ignored(tmp_path):
    gan, images, masks = _keras_user_gan()
    # sample_weight and class_weight were accepted and thrown away
    with pytest.raises(ValueError, match="do not weight samples"):
        gan.fit(images, masks, sample_weight=np.zeros(5), epochs=1, verbose=0)
    for options in ({"loss": "mse"}, {"metrics": ["mae"]}):
        with pytest.raises(ValueError, match="is not used"):
            gan.compile(gan.g_optimizer, gan.d_optimizer, **options)
    with pytest.raises(ValueError, match="an optimizer each"):
        gan.compile(gan.g_optimizer, gan.g_optimizer)
    # saved whole: Keras' "implement get_config()" after an epoch, and a 0-byte file
    checkpoint = keras.callbacks.ModelCheckpoint(str(tmp_path / "gan.keras"))
    for callbacks in ([checkpoint], keras.callbacks.CallbackList([checkpoint])):
        with pytest.raises(ValueError, match=r"not saved whole .*gan.save_weights"):
            gan.fit(images, masks, epochs=1, callbacks=callbacks, verbose=0)
    with pytest.raises(ValueError, match="not saved whole"):
        gan.save(tmp_path / "again.keras")
    assert not list(tmp_path.iterdir()) and int(gan.g_optimizer.iterations) == 0
    # a dict batch with the keys image and mask: "got images without masks" before
    data = tf.data.Dataset.from_tensor_slices({"image": images, "mask": masks}).batch(5)
    assert np.isfinite(gan.evaluate(data, verbose=0, return_dict=True)["hole_l1"])
    # the means weight each batch by its images: evaluate at batch size 1 and 4 agree
    # (0.41 against 0.27 when a last batch of one image counted as much as a full one)
    by_one, by_four = (
        gan.evaluate(images, masks, batch_size=size, verbose=0, return_dict=True) for size in (1, 4)
    )
    assert by_one["hole_l1"] == pytest.approx(by_four["hole_l1"], rel=1e-5)
    # a refused batch (caught by the user) counted its images into the means
    gan.reset_metrics()
    first = float(gan.test_step((images, masks))["hole_l1"])
    with pytest.raises(tf.errors.InvalidArgumentError):
        gan.test_step((images * 200, masks))
    assert float(gan.test_step((images, masks))["hole_l1"]) == pytest.approx(first, rel=1e-6)


def test_a_gan_trained_by_its_own_steps_saves_and_resumes_its_weights(tmp_path):
    """After compile and train_step (the class example, a custom loop) every variable
    existed, but save_weights, and load_weights into a fresh compiled model before fit,
    raised Keras' "model that has not yet been built"; optimizer names ("adam"), which
    Keras' compile takes, were kept as strings and the first step failed."""
    gan, images, masks = _keras_user_gan()
    gan.train_step((images[:2], masks[:2]))
    gan.save_weights(tmp_path / "gan.weights.h5")
    resumed, _, _ = _keras_user_gan()
    resumed.load_weights(tmp_path / "gan.weights.h5")
    assert int(resumed.g_optimizer.iterations) == 1
    for mine, theirs in zip(gan.weights, resumed.weights, strict=True):
        np.testing.assert_array_equal(mine.numpy(), theirs.numpy())
    batch = (images[2:4], masks[2:4])  # the same next step (its terms, not epoch means)
    after, again = gan.released_step(batch), resumed.released_step(batch)
    assert float(after["g_loss"]) == float(again["g_loss"])
    named = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    named.compile("adam", "adam")
    assert isinstance(named.g_optimizer, keras.optimizers.Adam)
    assert named.g_optimizer is not named.d_optimizer
    assert np.isfinite(float(named.train_step((images[:2], masks[:2]))["g_loss"]))


def test_mixed_float16_wraps_plain_optimizers_in_loss_scaling():
    """As Keras does for its one optimizer: under a user's mixed_float16 policy, plain
    optimizers trained without loss scaling (92 % of the generator's gradient entries 0
    in float16), while Keras wrapped the unused RMSprop."""
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        gan, _, _ = _keras_user_gan()
        scaled = gan.g_optimizer, gan.d_optimizer
        assert all(isinstance(o, keras.optimizers.LossScaleOptimizer) for o in scaled)
        assert [o.name for o in gan.optimizer.optimizers] == ["g_adam", "d_adam"]
        gan, _, _ = _keras_user_gan(auto_scale_loss=False)
        assert not isinstance(gan.g_optimizer, keras.optimizers.LossScaleOptimizer)
    finally:
        keras.mixed_precision.set_global_policy("float32")
    # networks made mixed_float16 (as penet_tf.train makes them) under a float32 policy
    networks = (
        Generator(base_channels=4, dtype="mixed_float16"),
        Discriminator(base_channels=8, dtype="mixed_float16"),
    )
    gan = PENetGAN(*networks)
    gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    assert isinstance(gan.d_optimizer, keras.optimizers.LossScaleOptimizer)


def test_saving_a_loss_scaled_gan_keeps_its_loss_scale(tmp_path):
    """save_weights / load_weights built the LossScaleOptimizers again: new loss-scale and
    step variables, the scale back at 32768 (a traced step kept updating the old ones),
    and a resumed run skipped loading them ("142 vs 144 variables")."""
    networks = lambda: (  # noqa: E731
        Generator(base_channels=4, dtype="mixed_float16"),
        Discriminator(base_channels=8, dtype="mixed_float16"),
    )
    gan = PENetGAN(*networks())
    gan.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    _, images, masks = _keras_user_gan()
    step = tf.function(gan.released_step)
    step((images[:2], masks[:2]))
    gan.g_optimizer.dynamic_scale.assign(1024.0)
    count = len(gan.g_optimizer.variables)
    gan.save_weights(tmp_path / "gan.weights.h5")
    assert len(gan.g_optimizer.variables) == count
    assert float(gan.g_optimizer.dynamic_scale) == 1024.0
    step((images[2:4], masks[2:4]))  # the traced step updates the variables that are saved
    assert int(gan.g_optimizer.step_counter) == 2 and int(gan.g_optimizer.iterations) == 2
    resumed = PENetGAN(*networks())
    resumed.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    resumed.load_weights(tmp_path / "gan.weights.h5")
    assert float(resumed.g_optimizer.dynamic_scale) == 1024.0
    assert int(resumed.g_optimizer.iterations) == 1
    # Into a float32 model Keras skipped both optimizers' states (Adam at step 0, its
    # moments zero) with a warning only, and the other way round too: refused first.
    plain = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    plain.compile(keras.optimizers.Adam(), keras.optimizers.Adam())
    with pytest.raises(ValueError, match="g_optimizer was saved with loss scaling .* is without"):
        plain.load_weights(tmp_path / "gan.weights.h5")
    plain.save_weights(tmp_path / "plain.weights.h5")
    with pytest.raises(ValueError, match="saved without loss scaling .* is with it"):
        resumed.load_weights(tmp_path / "plain.weights.h5")


def test_auto_mixed_precision_resumes_with_the_policy_of_the_run_s_checkpoints(tmp_path):
    """A run's config.json says only "auto": begun on a CPU (mixed_bfloat16) and resumed
    by the same command on a GPU it was built as mixed_float16 and stopped ("the
    checkpoint ... does not fit this model"), and the other way round."""
    from penet_tf.training.trainer import resumed_auto_policy

    assert resumed_auto_policy(str(tmp_path), "mixed_float16") == "mixed_float16"  # new run
    for scaled, policy in ((True, "mixed_float16"), (False, "mixed_bfloat16")):
        run = tmp_path / policy
        optimizer = tf.train.Checkpoint(iterations=tf.Variable(3))
        if scaled:
            optimizer.dynamic_scale = tf.Variable(1024.0)
        tf.train.Checkpoint(d_optimizer=optimizer).write(str(run / "checkpoints" / "ckpt-2"))
        for picked in ("mixed_float16", "mixed_bfloat16"):
            assert resumed_auto_policy(str(run), picked) == policy


def test_an_output_dir_tensorflow_cannot_write_is_refused_by_name(photos, tmp_path):
    """A Latin-1 output_dir failed in TensorFlow's CheckpointManager with "'utf-8' codec
    can't encode character", naming no path."""
    from training_helpers import tiny_config

    latin = os.fsdecode(os.path.join(os.fsencode(tmp_path), b"r\xe9sultats"))
    with pytest.raises(ValueError, match="TensorFlow reads and writes only UTF-8 paths"):
        Trainer(tiny_config(photos, latin), verbose=0)
    assert os.listdir(tmp_path) == []


def test_weights_that_cannot_fit_are_refused_before_writing(tmp_path, monkeypatch):
    # (h5py cannot recover from a write that fails on a full disk: it is never started)
    thin = ["model.base_channels=4", "model.discriminator_channels=8"]
    gan = build_gan(load_config(None, thin))
    gan.build()
    state = TrainingState(gan, str(tmp_path))
    (tmp_path / "generator.weights.h5").write_bytes(b"previous")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(CheckpointWriteError) as info:
        state.export_weights()
    message = str(info.value)
    assert "(no space left on the device: they need 1.9 MB, 0.1 MB are free)" in message
    assert "there is no complete checkpoint yet" in message and "\n" not in message
    assert os.listdir(tmp_path) == ["generator.weights.h5"]
    assert (tmp_path / "generator.weights.h5").read_bytes() == b"previous"


def test_reading_a_run_that_saves_meanwhile_is_not_damage(tmp_path):
    """convert_torch --to-torch of a training run: the run deleted the checkpoint being
    read (it keeps its newest) and the reader said "none of the 1 checkpoints ... can be
    read: move that folder away", advice that would lose the run."""
    thin = ["model.base_channels=4", "model.discriminator_channels=8"]
    writer_gan, reader_gan = (build_gan(load_config(None, thin)) for _ in "wr")
    writer_gan.build()
    reader_gan.build()
    writer = TrainingState(writer_gan, str(tmp_path), keep=1)
    writer.step.assign(1)
    writer.save()
    reader = TrainingState(reader_gan, str(tmp_path))
    restore, calls = reader.checkpoint.restore, []

    def restore_while_the_run_saves(path):
        calls.append(os.path.basename(path))
        if len(calls) == 1:  # the run saves step 2 and deletes ckpt-1 meanwhile
            writer.step.assign(2)
            writer.save()
        return restore(path)

    reader.checkpoint.restore = restore_while_the_run_saves
    path = reader.restore(read_only=True)
    assert calls == ["ckpt-1", "ckpt-2"] and path.endswith("ckpt-2")
    assert int(reader.step.numpy()) == 2
    assert not (tmp_path / "checkpoints" / "damaged").exists()
    # a run that deletes each one before it is read: named in one line, not a traceback

    def always_deleted(path):
        writer.step.assign_add(1)
        writer.save()
        return restore(path)

    reader.checkpoint.restore = always_deleted
    with pytest.raises(CheckpointReadError, match="deleted the checkpoint being read 5 times"):
        reader.restore(read_only=True)


def test_init_from_a_weights_folder_and_a_mismatch_named_in_one_line(tmp_path):
    thin = ["model.base_channels=4", "model.discriminator_channels=8"]
    trained = build_gan(load_config(None, thin))
    trained.build()
    TrainingState(trained, str(tmp_path)).export_weights()  # as a finished run leaves them
    fresh = build_gan(load_config(None, thin))
    fresh.build()
    kernel = fresh.generator.weights[0]
    assert not np.array_equal(kernel.numpy(), trained.generator.weights[0].numpy())
    load_initial_weights(fresh, str(tmp_path))
    for net in ("generator", "discriminator"):
        pairs = zip(getattr(trained, net).weights, getattr(fresh, net).weights, strict=True)
        for saved, loaded in pairs:
            np.testing.assert_array_equal(loaded.numpy(), saved.numpy())
    wider = build_gan(load_config(None, ["model.base_channels=8"]))
    wider.build()
    for path in (tmp_path, tmp_path / "generator.weights.h5"):
        with pytest.raises(ValueError) as info:
            load_initial_weights(wider, str(path))
        message = str(info.value)  # was Keras' 40-line list of the layers it could not load
        assert "does not fit this run's generator (model.base_channels" in message
        assert message.endswith("it holds a generator with base_channels 4")
        assert "\n" not in message


def test_init_from_a_released_generator_loads_its_discriminator_too(tmp_path, caplog):
    """--init-from gen_N.pth loaded the generator only: it trained against a new D."""
    pytest.importorskip("torch")
    from penet_tf.convert_torch import load_released_discriminator

    released = str(FIXTURE)
    shutil.copy(os.path.join(released, "gen.pth"), tmp_path / "gen_00042.pth")
    gan = build_gan(load_config(None))
    gan.build()
    with caplog.at_level("WARNING", logger="penet_tf.train"):
        load_initial_weights(gan, str(tmp_path / "gen_00042.pth"))
    fresh = [w.numpy() for w in gan.discriminator.weights]  # no dis_00042.pth: D as built
    assert "dis_00042.pth); the discriminator starts from its initialisation" in caplog.text
    shutil.copy(os.path.join(released, "dis.pth"), tmp_path / "dis_00042.pth")
    load_initial_weights(gan, str(tmp_path / "gen_00042.pth"))
    expected = load_released_discriminator(os.path.join(released, "dis.pth"))
    for loaded, want in zip(gan.discriminator.weights, expected.weights, strict=True):
        np.testing.assert_array_equal(loaded.numpy(), want.numpy())
    assert any(
        not np.array_equal(b, w.numpy()) for b, w in zip(fresh, expected.weights, strict=True)
    )


def test_a_run_that_cannot_start_leaves_the_run_folder_as_it_was(tmp_path, capsys):
    photos = tmp_path / "photos"
    photos.mkdir()
    run = tmp_path / "run"
    config = tiny_config(make_photos(photos), run, iterations=2, checkpoint_every=2)
    assert run_main(capsys, write_config(tmp_path / "c.json", config))[0] == 0
    before = {path: path.read_bytes() for path in run.rglob("*") if path.is_file()}
    (tmp_path / "afile").write_text("a file")
    refusals = {  # each was written into the run (config.json, an event file) first
        "missing masks": (
            {**config, "mask": {"type": "files", "path": str(tmp_path / "none")}},
            "does not exist",
        ),
        "mixed precision switched on": (
            {
                **config,
                "mixed_precision": "mixed_float16",
                "trainer": {**config["trainer"], "iterations": 4},
            },
            "does not fit this model",  # was "none ... can be read: move that folder away"
        ),
        "output dir a file": (
            {**config, "output_dir": str(tmp_path / "afile")},
            "output_dir " + str(tmp_path / "afile") + " is a file, not a folder",
        ),
    }
    for name, (changed, message) in refusals.items():
        status, lines = run_main(capsys, write_config(tmp_path / "c.json", changed))
        assert status == 2 and message in lines[-1], (name, lines)
        assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before
    # --init-from the run's own weights: replaced by the trained ones at the first save.
    path = write_config(
        tmp_path / "c.json", {**config, "trainer": {**config["trainer"], "iterations": 4}}
    )
    for init in (run, run / "generator.weights.h5"):
        status = train_cli.main(["--quiet", "--config", path, "--init-from", str(init)])
        lines = capsys.readouterr().err.strip().splitlines()
        assert status == 2 and "is the run's own output in" in lines[-1], lines
        assert {path: path.read_bytes() for path in run.rglob("*") if path.is_file()} == before


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    status, lines = run_main(capsys, str(tmp_path / "missing.json"))
    assert status == 2 and lines[-1].startswith("error: No config file at")
    config = write_config(
        tmp_path / "c.json", {"name": "x", "data": {"path": str(tmp_path / "none")}}
    )
    status, lines = run_main(capsys, config)
    assert status == 2 and "does not exist" in lines[-1]


def test_masks_and_batch_are_checked_before_the_images_are_read(photos, tmp_path, monkeypatch):
    """A TFDS source downloads and prepares its dataset when it is built: a mistyped mask
    folder or a batch the replicas cannot split was named only after that (hours)."""
    from penet_tf.training import trainer as trainer_module

    def not_yet(config):
        raise AssertionError("the image source was built before the cheap checks")

    monkeypatch.setattr(trainer_module, "ImageSource", not_yet)
    config = load_config(
        None, [f'data.path="{photos}"', 'output_dir="' + str(tmp_path / "r") + '"']
    )
    with pytest.raises(FileNotFoundError, match="Mask folder .* does not exist"):
        Trainer(config.override('mask={"type": "files", "path": "/nonexistent"}'), verbose=0)


def test_a_config_s_paths_may_start_with_a_tilde(photos, tmp_path, monkeypatch):
    """JSON is read by no shell: "~/photos" was a folder named ~ in the working folder
    (TFDS's data_dir with download on, and output_dir, made one there)."""
    monkeypatch.setenv("HOME", str(tmp_path))
    shutil.copytree(photos, tmp_path / "photos")
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(np.full((32, 32), 255, np.uint8)).save(masks / "m.png")
    config = load_config(
        None,
        [
            'data.path="~/photos"',
            'output_dir="~/runs/x"',
            'mask={"type": "files", "path": "~/masks"}',
        ],
    )
    assert config.output_dir == str(tmp_path / "runs" / "x")
    trainer = Trainer(config, verbose=0)
    assert len(trainer.source) == len(os.listdir(photos))


def test_the_gan_takes_the_generator_s_input_forms_and_exports_the_generator(tmp_path, monkeypatch):
    """``gan([image, mask])`` and ``gan({"image": ..., "mask": ...})`` failed ("missing a
    required argument: 'mask'"), and ``gan.export(path)`` with Keras' "The model provided
    has never called"; the generator takes all three forms and is what is served."""
    keras.utils.set_random_seed(3)
    gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    image = tf.random.uniform([1, 64, 64, 3], -1, 1)
    mask = tf.cast(tf.random.uniform([1, 64, 64, 1]) > 0.7, tf.float32)
    expected = gan.generator(image, mask)[0].numpy()
    with warnings.catch_warnings():  # (Keras: "... will therefore destroy the mask")
        warnings.simplefilter("error")
        forms = [gan(image, mask), gan(image, mask=mask), gan([image, mask])]
        forms.append(gan({"image": image, "mask": mask}))
    for got in forms:
        np.testing.assert_array_equal(got[0].numpy(), expected)
    exported = []
    monkeypatch.setattr(
        Generator, "export", lambda self, *args, **kwargs: exported.append((self, args, kwargs))
    )
    gan.export(str(tmp_path / "1"), max_pixels=4096)
    assert exported == [(gan.generator, (str(tmp_path / "1"),), {"max_pixels": 4096})]
