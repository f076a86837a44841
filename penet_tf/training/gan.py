"""PEN-Net's adversarial training as a Keras model with a custom ``train_step``."""

import os

import keras
import tensorflow as tf

from penet_tf import losses
from penet_tf.errors import require_float
from penet_tf.inference import hole_mask


@keras.saving.register_keras_serializable(package="penet_tf")
class StepDecay(keras.optimizers.schedules.LearningRateSchedule):
    """The released step decay: ``lr * 0.1 ** (min(it, niter_steady) // niter)``, with
    ``it = step + 1``: the release counts its iterations from 1 (``self.iteration += 1``
    before ``adjust_learning_rate``), Keras' ``optimizer.iterations`` from 0, so the
    decay came one step late.

    ``first_period_factor`` multiplies the rate until the first decay only: the released
    trainer starts D's Adam at ``lr * d2glr`` and, at the first decay, sets both networks'
    rates to ``lr * 0.1`` (``adjust_learning_rate``), so D's factor ends there."""

    def __init__(self, initial_learning_rate, niter, niter_steady, first_period_factor=1.0):
        self.initial_learning_rate = float(initial_learning_rate)
        self.niter = int(niter)
        self.niter_steady = int(niter_steady)
        self.first_period_factor = float(first_period_factor)

    def __call__(self, step):
        step = tf.minimum(tf.cast(step, tf.int64) + 1, self.niter_steady)
        decays = step // self.niter
        factor = tf.where(decays == 0, self.first_period_factor, 1.0)
        return self.initial_learning_rate * factor * tf.pow(0.1, tf.cast(decays, tf.float32))

    def rate(self, step):
        """``self(step)`` in Python floats, as the release computes it (``lr * 0.1 **
        decays`` in double precision; the graph's is float32)."""
        decays = min(int(step) + 1, self.niter_steady) // self.niter
        factor = self.first_period_factor if decays == 0 else 1.0
        return self.initial_learning_rate * factor * 0.1**decays

    def get_config(self):
        return {
            "initial_learning_rate": self.initial_learning_rate,
            "niter": self.niter,
            "niter_steady": self.niter_steady,
            "first_period_factor": self.first_period_factor,
        }


# The loss terms of a step: ``released_step`` returns this batch's; ``train_step`` and
# ``test_step`` their means over the epoch so far (``keras.metrics.Mean``), which ``fit``
# and ``evaluate`` log.
LOG_NAMES = (
    "d_loss",
    "g_loss",
    "g_adversarial",
    "hole_l1",
    "valid_l1",
    "pyramid_l1",
    "d_real",
    "d_fake",
)


def _image_and_mask(data, check_range=True):
    """``(image, mask)`` of a batch as ``fit``, ``evaluate``, ``predict`` and
    ``train_on_batch`` pass it: ``(image, mask)``, ``((image, mask), extra)`` (penet_tf's
    datasets), ``{"image": ..., "mask": ...}``, or Keras' ``(x, y)`` of ``fit(images,
    masks)`` (a sample weight is refused: the losses do not weight samples). Images must
    be float (ValueError when traced: cast to float32, uint8 photos trained without an
    error on garbage, a negative valid L1) in [-1, 1]; integer masks follow the mask rule
    of every other path (``hole_mask``: >= 128, or the 1s of a 0 / 1 mask: 0 / 255 masks
    were garbage too), float and bool ones are taken as given, floats in [0, 1]
    (``check_range``: asserted in the graph)."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
    if sample_weight is not None:  # (accepted, then thrown away)
        raise ValueError(
            "PENetGAN: its losses do not weight samples; leave out sample_weight (a batch "
            "is (image, mask))."
        )
    if isinstance(x, dict):  # (said "got images without masks")
        if set(x) != {"image", "mask"}:
            raise ValueError(
                f"PENetGAN: a batch given as a dict has the keys 'image' and 'mask', got "
                f"{sorted(x)}."
            )
        x = (x["image"], x["mask"])
    image, mask = x if isinstance(x, tuple | list) else (x, y)
    if mask is None:
        raise ValueError("PENetGAN: a batch is (image, mask); got images without masks.")
    image, mask = tf.convert_to_tensor(image), tf.convert_to_tensor(mask)
    require_float(image.dtype, "PENetGAN", "images")
    float_mask = mask.dtype.is_floating  # (bool and integer masks are 0 / 1 by now)
    if mask.dtype.is_integer:
        mask = hole_mask(mask)
    image, mask = tf.cast(image, tf.float32), tf.cast(mask, tf.float32)
    if not check_range:
        return image, mask
    # Floats out of range trained on garbage without a word (0-255 images: hole L1 127;
    # 0 / 255 float masks: a negative valid L1). Checked each step: one reduction per
    # float input.
    checks = [
        tf.debugging.assert_less_equal(
            tf.reduce_max(tf.abs(image)),
            1.0 + IMAGE_TOLERANCE,
            message="PENetGAN: images must be float in [-1, 1] (x / 127.5 - 1 of 0-255 values)",
        )
    ]
    if float_mask:
        checks.append(
            tf.debugging.assert_less_equal(
                tf.reduce_max(tf.abs(mask - 0.5)),
                0.5,
                message="PENetGAN: float masks must be in [0, 1] (1 = hole; 0 / 255 masks as "
                "integers, or divided by 255)",
            )
        )
    with tf.control_dependencies(checks):
        return tf.identity(image), tf.identity(mask)


# Slack around [-1, 1] for images (x / 127.5 - 1 rounds within 1e-7).
IMAGE_TOLERANCE = 1e-3


def _terms(d_loss, g_loss, g_adversarial, hole, valid, pyramid, real_logits, fake_logits):
    """The ``LOG_NAMES`` of a step."""
    values = (d_loss, g_loss, g_adversarial, hole, valid, pyramid)
    means = (tf.reduce_mean(real_logits), tf.reduce_mean(fake_logits))
    return dict(zip(LOG_NAMES, values + means, strict=True))


def _skip_together(optimizer, gradients):
    """``gradients``, made non-finite on every replica when any replica's are, so that a
    ``LossScaleOptimizer`` (mixed_float16) skips the step on all of them.

    Keras' ``LossScaleOptimizer`` decides from the first replica's gradients alone (it
    assumes them summed across replicas already; its inner optimizer sums them later):
    under ``MirroredStrategy`` an overflow on another replica was summed into the update
    and the weights became NaN within a few steps, the run going on; under
    ``MultiWorkerMirroredStrategy`` each replica decided alone."""
    context = tf.distribute.get_replica_context()
    if (
        not isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        or context is None
        or context.num_replicas_in_sync == 1
        or all(gradient is None for gradient in gradients)
    ):
        return gradients
    overflowed = 1.0 - tf.cast(optimizer.check_finite(gradients), tf.float32)
    overflowed = context.all_reduce(tf.distribute.ReduceOp.SUM, overflowed)
    first = next(i for i, gradient in enumerate(gradients) if gradient is not None)
    gradients = list(gradients)
    poison = tf.where(overflowed > 0, float("nan"), 0.0)  # (+ 0.0 leaves a value as it is)
    gradients[first] = gradients[first] + tf.cast(poison, gradients[first].dtype)
    return gradients


_TWO_RATES = (
    "PENetGAN has two optimizers: use gan.g_optimizer.learning_rate and "
    "gan.d_optimizer.learning_rate (Keras' learning-rate callbacks change both)"
)


class GANOptimizers(keras.optimizers.Optimizer):
    """``model.optimizer`` of a ``PENetGAN``: its generator's and discriminator's
    optimizers, for what Keras reads there.

    A GAN has two optimizers; ``PENetGAN.compile`` used to leave ``model.optimizer`` as
    Keras' default RMSprop, which nothing used: ``LearningRateScheduler`` and
    ``ReduceLROnPlateau`` changed its rate and said so while G's and D's stayed, and
    TensorBoard logged its rate (0.001) and 0 steps per second. Keras' callbacks change
    and log every optimizer of ``optimizers`` (each from its own rate: a plateau's factor
    keeps D's rate a multiple of G's), and count steps by ``iterations`` (G's updates:
    one per step). It applies nothing itself, and its own variables (Keras' step count
    and rate, unused) are not written to weights files; its ``learning_rate`` refuses to
    be read or set (there are two), as Keras' ``MultiOptimizer`` does.

    Args:
        g_optimizer, d_optimizer: the generator's and the discriminator's optimizers.
    """

    def __init__(self, g_optimizer, d_optimizer, name="gan_optimizers"):
        super().__init__(learning_rate=0.0, name=name)
        self._pair = (g_optimizer, d_optimizer)

    @property
    def optimizers(self):
        return list(self._pair)

    @property
    def iterations(self):
        return self._pair[0].iterations

    @property
    def variables(self):
        return []

    @property
    def learning_rate(self):
        raise AttributeError(_TWO_RATES)

    @learning_rate.setter
    def learning_rate(self, value):
        raise AttributeError(_TWO_RATES)

    def save_own_variables(self, store):
        pass  # (G's and D's are saved as the model's g_optimizer and d_optimizer)

    def load_own_variables(self, store):
        # Weights files written before 2026-12-06 hold the unused RMSprop's variables
        # here: Keras warned "Skipping variable loading for optimizer 'gan_optimizers'".
        pass

    def build(self, var_list):
        self.built = True  # (G's and D's build their own: PENetGAN.build)

    def apply(self, grads, trainable_variables=None):
        raise NotImplementedError(
            "PENetGAN applies its generator's and discriminator's updates itself (released_step)"
        )

    def finalize_variable_values(self, var_list):
        pass

    def get_config(self):
        raise NotImplementedError(
            "GANOptimizers is made by PENetGAN.compile from its two optimizers; it is "
            "not serialized"
        )


class PENetGAN(keras.Model):
    """Generator + discriminator trained as released: per batch one D step, then one G step.

    D step: ``d_loss(D(x), D(stop_gradient(z)))`` with ``z`` the composite (eq 7) and
    ``d_loss`` hinge (eq 8) or non-saturating. G step, with the updated D:
    ``adversarial_weight * g_loss(D(z)) + hole_weight * hole L1 + valid_weight * valid L1
    + pyramid_weight * pyramid L1`` (eqs 6, 9). The generator runs once per batch; the
    discriminator three times, each a separate training call as in the released trainer
    (with its spectral norm every call runs a power iteration, so the pattern matters):
    ``D(x)`` and ``D(stop_gradient(z))`` for the D step, which the generator's tape does not
    record, then ``D(z)`` after the D update for the G step. With ``TorchAdam`` and the
    default spectral norm (the released configs), one step reproduces the released
    iteration (``tests/test_training_parity.py``).

    ``released_step`` is one iteration: it updates both networks and returns this batch's
    loss terms (``LOG_NAMES``). ``train_step`` runs it and returns the epoch's means so far
    (``keras.metrics.Mean`` trackers, reset by Keras every epoch), so ``fit``'s logs,
    ``History``, ``EarlyStopping`` and ``ModelCheckpoint`` see epoch means, not the last
    batch's, each batch weighted by its images (there is no ``loss``: monitor a term with
    its direction, e.g. ``EarlyStopping(monitor="val_hole_l1", mode="min")``; Keras'
    ``TerminateOnNaN`` reads ``loss`` and never fires). ``model.optimizer`` is both
    optimizers (``GANOptimizers``): Keras' learning-rate callbacks change both and log
    each one's rate under its name; ``test_step`` (``evaluate``,
    ``fit(validation_data=...)``) computes the same terms without updating anything;
    ``predict_step`` returns ``{"output", "inpainted"}``.
    Works with ``fit`` on one device or under ``MirroredStrategy``, and with
    ``strategy.run(model.released_step, ...)`` under any strategy (``penet_tf.train`` does
    that everywhere, because Keras 3 ``fit`` fails under ``MultiWorkerMirroredStrategy``).
    Losses are divided by the number of replicas before differentiating, as Keras' own
    losses do, because gradients are summed across replicas.

    Args:
        generator: a ``penet_tf.Generator``.
        discriminator: a ``penet_tf.Discriminator``.
        gan_type: ``"hinge"`` (places2, celebahq) or ``"nsgan"`` (dtd, facade).
        hole_weight, valid_weight, pyramid_weight, adversarial_weight: loss weights.

    Call arguments (the steps): a batch ``(image, mask)``, ``((image, mask), extra)``,
    ``{"image", "mask"}`` or Keras' ``(x, y)`` of ``fit(images, masks)`` (no sample
    weights); images float in [-1, 1], masks float in [0, 1] (1 = hole), bool, or integer
    by the mask rule (``hole_mask``).

    Example:

    >>> gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    >>> gan.compile(TorchAdam(1e-4, 0.5), TorchAdam(1e-4, 0.5))  # penet_tf.training.optimizers
    >>> logs = gan.train_step((tf.zeros([2, 64, 64, 3]), tf.ones([2, 64, 64, 1])))
    """

    def __init__(
        self,
        generator,
        discriminator,
        gan_type="hinge",
        hole_weight=6.0,
        valid_weight=1.0,
        pyramid_weight=0.5,
        adversarial_weight=0.1,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.generator = generator
        self.discriminator = discriminator
        self.gan_type = gan_type
        self.d_loss_fn, self.g_loss_fn = losses.gan_losses(gan_type)
        self.hole_weight = hole_weight
        self.valid_weight = valid_weight
        self.pyramid_weight = pyramid_weight
        self.adversarial_weight = adversarial_weight
        self.trackers = {name: keras.metrics.Mean(name=name) for name in LOG_NAMES}

    @property
    def metrics(self):
        """The loss terms' means (Keras resets them at each epoch and evaluation)."""
        return list(self.trackers.values())

    def compile(self, g_optimizer, d_optimizer, auto_scale_loss=True, **kwargs):
        """Sets both optimizers; ``model.optimizer`` becomes their ``GANOptimizers``.

        As Keras does for its one optimizer (``auto_scale_loss``), when the model or
        either network computes in ``mixed_float16`` each optimizer not yet a
        ``LossScaleOptimizer`` is wrapped in one (named as it): plain optimizers trained
        without loss scaling (92 % of the generator's gradient entries were 0 in
        float16). ``loss`` and ``metrics`` are refused: PENetGAN's losses are its own
        (``LOG_NAMES``).
        """
        for key in ("optimizer", "loss", "loss_weights", "metrics", "weighted_metrics"):
            if kwargs.get(key) is not None:  # (accepted, then ignored)
                raise ValueError(
                    f"PENetGAN.compile: {key}= is not used (its losses and logged terms are "
                    "its own); give compile(g_optimizer, d_optimizer)"
                )
        # Names and configs as Keras' own compile takes them ("adam": Keras' defaults, not
        # the release's epsilon; the strings were kept and the first step failed)
        g_optimizer, d_optimizer = (keras.optimizers.get(o) for o in (g_optimizer, d_optimizer))
        if g_optimizer is d_optimizer:
            raise ValueError(
                "PENetGAN.compile: the generator and the discriminator need an optimizer "
                "each (two instances), got the same one twice"
            )
        networks = (self, self.generator, self.discriminator)
        if auto_scale_loss and any(n.dtype_policy.name == "mixed_float16" for n in networks):
            g_optimizer, d_optimizer = (
                optimizer
                if isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
                # (named as the optimizer: Keras' callbacks log its rate by its name)
                else keras.optimizers.LossScaleOptimizer(optimizer, name=optimizer.name)
                for optimizer in (g_optimizer, d_optimizer)
            )
        super().compile(auto_scale_loss=False, **kwargs)
        self.g_optimizer = g_optimizer
        self.d_optimizer = d_optimizer
        # (Keras' default, an RMSprop, was model.optimizer: what its callbacks changed)
        self.optimizer = GANOptimizers(g_optimizer, d_optimizer)

    def build(self, image_shape=None):
        """Builds both networks and, once compiled, both optimizers' slots (call under the
        strategy scope)."""
        self.generator.build()
        self.discriminator.build()
        for optimizer, network in self._optimizers():
            # (once: a LossScaleOptimizer built again made new loss-scale and step
            # variables, the scale back at 32768, apart from those a traced step updates)
            if not optimizer.built:
                optimizer.build(network.trainable_variables)
        self.built = True

    def _optimizers(self):
        if not self.compiled:
            return []
        return [(self.g_optimizer, self.generator), (self.d_optimizer, self.discriminator)]

    def _build_once(self):
        if not self.built or not all(optimizer.built for optimizer, _ in self._optimizers()):
            with self.distribute_strategy.scope():  # the strategy the model was made under
                self.build()

    def save_weights(self, filepath, *args, **kwargs):
        """``keras.Model.save_weights``, building first: after ``compile`` and
        ``train_step`` (the class example, a custom loop) every variable existed but
        Keras refused a model "not yet built"."""
        self._build_once()
        return super().save_weights(filepath, *args, **kwargs)

    def load_weights(self, filepath, *args, **kwargs):
        """``keras.Model.load_weights``, building first (networks, and the optimizers'
        slots once compiled), so that a fresh model resumes before ``fit``. Optimizers
        saved with loss scaling (mixed_float16) and loaded without, or the other way
        round, are refused before anything loads: Keras skipped both optimizers' states
        (Adam's moments and steps) with a warning only."""
        self._build_once()
        self._check_loss_scaling(filepath)
        return super().load_weights(filepath, *args, **kwargs)

    def _check_loss_scaling(self, filepath):
        if not self.compiled or not os.fspath(filepath).endswith(".weights.h5"):
            return
        import h5py

        try:
            with h5py.File(filepath, "r") as saved:
                scaled = {
                    name: f"{name}/inner_optimizer" in saved
                    for name in ("g_optimizer", "d_optimizer")
                    if name in saved
                }
        except OSError:
            return  # (not a readable HDF5 file: Keras names it)
        for name, saved_scaled in scaled.items():
            optimizer = getattr(self, name)
            scaled_here = isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
            if saved_scaled != scaled_here:
                state = ("with", "without") if saved_scaled else ("without", "with")
                raise ValueError(
                    f"{os.fspath(filepath)}: its {name} was saved {state[0]} loss scaling "
                    f"(mixed_float16: a LossScaleOptimizer around Adam) and this PENetGAN's "
                    f"is {state[1]} it: Keras would skip both optimizers' states (Adam's "
                    "moments and steps); build and compile this PENetGAN with the dtype "
                    "policy it was saved with"
                )

    def fit(self, *args, **kwargs):
        """``keras.Model.fit``, building first: variables created while ``fit`` traces its
        step would make TensorFlow trace it a second time (twice the start-up)."""
        if not self.compiled:
            raise ValueError("PENetGAN: call compile(g_optimizer, d_optimizer) before fit.")
        callbacks = kwargs.get("callbacks") or ()
        for callback in getattr(callbacks, "callbacks", callbacks):  # (a CallbackList too)
            # (it failed at the first epoch's end, leaving a 0-byte .keras file)
            if isinstance(callback, keras.callbacks.ModelCheckpoint) and not (
                callback.save_weights_only
            ):
                self.save(callback.filepath)
        self._build_once()
        return super().fit(*args, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """Refused: a ``PENetGAN`` is saved as weights and checkpoints, not whole.

        Its ``gan_type`` and loss weights are constructor arguments Keras cannot rebuild
        it from (``.keras`` saving failed with Keras' generic "implement get_config()",
        after creating a 0-byte file); its networks are saved whole on their own.
        """
        raise ValueError(
            f"PENetGAN is not saved whole ({filepath}): save its weights "
            "(gan.save_weights('gan.weights.h5'), ModelCheckpoint(..., "
            "save_weights_only=True), or tf.train.Checkpoint), or the networks alone "
            "(gan.generator.save('generator.keras'))"
        )

    def export(self, filepath, *args, **kwargs):
        """The generator's SavedModel for serving (``Generator.export``: the signatures
        of ``penet_tf.export``); the discriminator is not served. Keras' own export
        failed on the pair ("The model provided has never called", or a missing
        ``mask``)."""
        return self.generator.export(filepath, *args, **kwargs)

    def compute_mask(self, inputs, previous_mask=None):
        # (the hole mask is an input, not Keras' padding mask: gan(image, mask=mask)
        # warned that it would "destroy the mask information")
        return None

    def call(self, image, mask=None, training=None):
        """The generator's ``(output, pyramid)``, in every form ``Generator`` takes:
        ``gan(image, mask)``, ``gan([image, mask])`` or ``gan({"image": ..., "mask":
        ...})`` (the last two failed with "missing a required argument: 'mask'")."""
        if mask is None:
            return self.generator(image, training=training)
        return self.generator(image, mask, training=training)

    def _log_means(self, logs, images):
        """The epoch's means so far, each batch weighted by its ``images`` (as Keras' own
        loss tracker: a last batch of 1 image counted as much as a full one, and
        ``evaluate`` of the same 5 images gave a hole L1 of 0.41 at batch size 1, 0.27
        at 4)."""
        # (after the batch's checks: a refused batch counted its images otherwise)
        with tf.control_dependencies(tf.nest.flatten(logs)):
            weight = tf.cast(tf.identity(images), tf.float32)
        for name, value in logs.items():
            self.trackers[name].update_state(value, sample_weight=weight)
        return {name: tracker.result() for name, tracker in self.trackers.items()}

    # Plain graph code: AutoGraph's source conversion (``fit``'s default) would only
    # cost seconds of tracing.
    @tf.autograph.experimental.do_not_convert
    def train_step(self, data):
        """``released_step``, logged as the epoch's means so far."""
        image, mask = _image_and_mask(data)
        return self._log_means(self.released_step((image, mask)), tf.shape(image)[0])

    @tf.autograph.experimental.do_not_convert
    def test_step(self, data):
        """The loss terms of a batch without any update (no power iteration either)."""
        image, mask = _image_and_mask(data)
        output, pyramid = self.generator(image, mask, training=False)
        output = tf.cast(output, tf.float32)
        fake = losses.composite(output, image, mask)
        real_logits = tf.cast(self.discriminator(image, training=False), tf.float32)
        fake_logits = tf.cast(self.discriminator(fake, training=False), tf.float32)
        hole = losses.hole_l1(output, image, mask)
        valid = losses.valid_l1(output, image, mask)
        pyramid_loss = losses.pyramid_l1(pyramid, image)
        g_adversarial = self.g_loss_fn(fake_logits)
        d_loss = self.d_loss_fn(real_logits, fake_logits)
        g_loss = self._g_loss(g_adversarial, hole, valid, pyramid_loss)
        return self._log_means(
            _terms(
                d_loss, g_loss, g_adversarial, hole, valid, pyramid_loss, real_logits, fake_logits
            ),
            tf.shape(image)[0],
        )

    @tf.autograph.experimental.do_not_convert
    def predict_step(self, data):
        """``{"output": the generator's output, "inpainted": the composite}``, in [-1, 1]."""
        image, mask = _image_and_mask(data)
        output = tf.cast(self.generator(image, mask, training=False)[0], tf.float32)
        return {"output": output, "inpainted": losses.composite(output, image, mask)}

    def _g_loss(self, g_adversarial, hole, valid, pyramid_loss):
        return (
            self.adversarial_weight * g_adversarial
            + self.hole_weight * hole
            + self.valid_weight * valid
            + self.pyramid_weight * pyramid_loss
        )

    @tf.autograph.experimental.do_not_convert
    def released_step(self, data):
        """One released training iteration: updates D, then G; returns this batch's loss
        terms (``LOG_NAMES``: what ``penet_tf.train`` logs per step). Values are taken as
        given (``train_step``, ``fit``'s, checks their range first)."""
        image, mask = _image_and_mask(data, check_range=False)
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        generator, discriminator = self.generator, self.discriminator

        with tf.GradientTape() as g_tape:
            output, pyramid = generator(image, mask, training=True)
            output = tf.cast(output, tf.float32)
            fake = losses.composite(output, image, mask)

            # Discriminator step, outside the generator's tape: D(x) and D(stop_grad(z))
            # are two training calls (two power iterations), as released.
            with g_tape.stop_recording():
                with tf.GradientTape() as d_tape:
                    real_logits = tf.cast(discriminator(image, training=True), tf.float32)
                    fake_logits = tf.cast(
                        discriminator(tf.stop_gradient(fake), training=True), tf.float32
                    )
                    d_loss = self.d_loss_fn(real_logits, fake_logits)
                    scaled = self.d_optimizer.scale_loss(d_loss / replicas)
                d_variables = discriminator.trainable_variables
                d_gradients = _skip_together(self.d_optimizer, d_tape.gradient(scaled, d_variables))
                self.d_optimizer.apply(d_gradients, d_variables)

            # Generator step against the updated discriminator (its third call).
            g_adversarial = self.g_loss_fn(tf.cast(discriminator(fake, training=True), tf.float32))
            hole = losses.hole_l1(output, image, mask)
            valid = losses.valid_l1(output, image, mask)
            pyramid_loss = losses.pyramid_l1(pyramid, image)
            g_loss = self._g_loss(g_adversarial, hole, valid, pyramid_loss)
            scaled = self.g_optimizer.scale_loss(g_loss / replicas)
        g_variables = generator.trainable_variables
        g_gradients = _skip_together(self.g_optimizer, g_tape.gradient(scaled, g_variables))
        self.g_optimizer.apply(g_gradients, g_variables)

        return _terms(
            d_loss, g_loss, g_adversarial, hole, valid, pyramid_loss, real_logits, fake_logits
        )
