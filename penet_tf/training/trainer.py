"""The training loop behind ``python -m penet_tf.train``.

One loop for every strategy: ``strategy.run(gan.released_step)`` over a dataset distributed
with ``distribute_datasets_from_function`` (Keras 3 ``fit`` fails under
``MultiWorkerMirroredStrategy``, so the loop drives the same step itself).

Stopping: the first Ctrl-C (SIGINT) lets the current step finish, saves a checkpoint of it
and raises ``TrainingInterrupted``; a second Ctrl-C stops at once without saving (the last
complete checkpoint stays as it was). A full disk ends the run with a
``CheckpointWriteError`` after removing the partial files. Either way the same command
resumes.
"""

import contextlib
import json
import math
import os
import signal
import threading
import time

import keras
import tensorflow as tf

from penet_tf.data.images import ImageSource, inpainting_dataset
from penet_tf.data.masks import MaskGenerator
from penet_tf.errors import first_few, get_logger
from penet_tf.io_utils import (
    check_folder_target,
    check_utf8_path,
    same_path,
    write_json_atomically,
)
from penet_tf.losses import composite
from penet_tf.models import Discriminator, Generator, load_weights
from penet_tf.training.checkpoints import (
    RUN_WEIGHTS,
    CheckpointReadError,
    CheckpointWriteError,
    TrainingState,
    check_run_folder,
    checkpoint_keys,
    is_disk_full,
    newest_checkpoint,
    run_lock,
    run_record,
    sweep_leftovers,
)
from penet_tf.training.config import as_config, load_config
from penet_tf.training.gan import PENetGAN, StepDecay
from penet_tf.training.optimizers import make_adam
from penet_tf.training.strategy import is_chief, make_strategy, strategy_name, task_id

logger = get_logger("penet_tf.train")
# Config keys added after runs existed, with what those runs did without them.
_LATER_KEYS = (
    ("data", "resize_filter", "bilinear"),
    ("optimizer", "d2g_lr_schedule", "every_step"),
    # (before 2026-12-02: Keras' Adam and spectral norm; checkpoints._older_run_hint)
    ("optimizer", "epsilon_placement", "keras"),
    ("model", "spectral_norm", "keras"),
)
PREVIEW_IMAGES = 4


def resolve_policy(name):
    """``"auto"`` -> mixed_float16 on GPUs, mixed_bfloat16 on CPUs; None -> float32."""
    if name in (None, "", "none", "float32"):
        return "float32"
    if name == "auto":
        return "mixed_float16" if tf.config.list_logical_devices("GPU") else "mixed_bfloat16"
    if name not in ("mixed_float16", "mixed_bfloat16"):
        raise ValueError(
            f"mixed_precision must be auto, mixed_float16 or mixed_bfloat16; got {name!r}."
        )
    return name


def resumed_auto_policy(output_dir, picked):
    """The policy ``auto`` takes in the run folder ``output_dir``: ``picked`` (this
    machine's) for a new run; for a run with a checkpoint, the one it was written with:
    mixed_float16 where it holds loss-scale state, else mixed_bfloat16. (The run's
    config.json says only "auto": a run started on a CPU, mixed_bfloat16, and resumed
    by the same command on a GPU was built as mixed_float16 and stopped, "the checkpoint
    ... does not fit this model ... resume with that config".)"""
    newest = newest_checkpoint(os.path.join(output_dir, "checkpoints"))
    if newest is None:
        return picked
    try:
        names = [name for name, _ in tf.train.list_variables(newest)]
    except (tf.errors.OpError, ValueError):
        return picked  # (a damaged checkpoint: the restore sets it aside and names it)
    scaled = any("/dynamic_scale/" in name for name in names)
    return "mixed_float16" if scaled else "mixed_bfloat16"


def build_gan(config, policy="float32"):
    """The PENetGAN of a config, compiled with its two Adam optimizers (not built).

    The released configs' defaults reproduce the released trainer's step: PyTorch-style
    spectral norm (``model.spectral_norm = "released"``) and PyTorch's Adam
    (``optimizer.epsilon_placement = "torch"``).
    """
    config = as_config(config)
    model, optim, schedule = config.model, config.optimizer, config.schedule
    generator = Generator(
        base_channels=model.base_channels,
        kernel_init=model.kernel_init,
        dtype=policy,
    )
    discriminator = Discriminator(
        base_channels=model.discriminator_channels,
        spectral_norm=model.spectral_norm,
        dtype=policy,
    )
    gan = PENetGAN(generator, discriminator, **config.losses.to_dict())

    def adam(scale, first_period_factor=1.0):
        learning_rate = StepDecay(
            optim.lr * scale, schedule.niter, schedule.niter_steady, first_period_factor
        )
        optimizer = make_adam(
            learning_rate, optim.beta_1, optim.beta_2, optim.epsilon, optim.epsilon_placement
        )
        if policy == "mixed_float16":
            optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
        return optimizer

    if optim.d2g_lr_schedule == "released":  # D's factor until the first decay
        gan.compile(adam(1.0), adam(1.0, first_period_factor=optim.d2g_lr))
    else:  # "every_step"
        gan.compile(adam(1.0), adam(optim.d2g_lr))
    return gan


def used_learning_rate(optimizer):
    """The learning rate of ``optimizer``'s last update: its schedule at ``iterations - 1``
    (``optimizer.learning_rate`` is the next update's: TensorBoard showed each decay one
    step early)."""
    optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # (LossScaleOptimizer)
    schedule = optimizer._learning_rate
    step = max(int(optimizer.iterations.numpy()) - 1, 0)
    if isinstance(schedule, StepDecay):
        return schedule.rate(step)  # (as the release computes it, for its opt_N.pth)
    if not isinstance(schedule, keras.optimizers.schedules.LearningRateSchedule):
        return float(optimizer.learning_rate.numpy())
    return float(schedule(step).numpy())


def read_run(output_dir):
    """A training run's state at the checkpoint it resumes from (``TrainingState.restore``:
    damaged ones passed over), read only (nothing in the folder is moved, swept or
    written): ``(gan, step, config)``, the GAN of the run's ``config.json`` holding both
    networks and both optimizers of checkpoint ``step``, and that config; None when
    ``output_dir`` holds no checkpoint. Raises ``CheckpointReadError`` (one line, naming
    the checkpoint) when none can be read or they do not fit the config."""
    newest = newest_checkpoint(os.path.join(output_dir, "checkpoints"))
    if newest is None:
        return None
    config_path = os.path.join(output_dir, "config.json")
    if not os.path.isfile(config_path):
        raise CheckpointReadError(
            f"{output_dir} holds checkpoints but not the run's config.json, which describes "
            "its networks"
        )
    # The settings of an older run that its config.json does not name are what it was
    # trained with (Keras' spectral norm before 2026-12-02 12:30 UTC: convert_torch
    # --to-torch of such a run failed on its discriminator's vectors).
    record = run_record(output_dir) or {}
    config = load_config(config_path, _older_run_settings(record))
    # mixed_float16 wraps the optimizers (LossScaleOptimizer); the variables are float32
    # under every policy (the index alone is read here)
    keys = checkpoint_keys(newest) or ()  # (a damaged index: restore passes it over)
    wrapped = any("inner_optimizer" in name for name in keys)
    gan = build_gan(config, "mixed_float16" if wrapped else "float32")
    gan.build()
    state = TrainingState(gan, output_dir)
    try:
        path = state.restore(read_only=True)
    except CheckpointReadError as error:
        raise CheckpointReadError(f"{error} (the networks of {config_path})") from None
    return None if path is None else (gan, int(state.step.numpy()), config)


def _load_initial(model, path, what, section):
    """``model.load_weights(path)``, or one ValueError saying why the file does not fit
    (another architecture than the config's ``section``)."""
    does_not_fit = f"--init-from {path} does not fit this run's {what} ({section} in the config)"
    load_weights(model, path, does_not_fit, name=f"--init-from {path}")


def load_initial_weights(gan, path):
    """``--init-from``: a convert_torch output folder, a .weights.h5 or a released .pth
    (``gen_N.pth``; the ``dis_N.pth`` the release saves beside it is loaded too: without
    it the generator trained against a new discriminator). Weights only: the optimizers'
    moments and the step (so the learning-rate decay) start afresh, as in a new run."""
    model = "model.base_channels, model.kernel_init"
    critic = "model.discriminator_channels, model.spectral_norm"
    if os.path.isdir(path):
        generator = os.path.join(path, "generator.weights.h5")
        discriminator = os.path.join(path, "discriminator.weights.h5")
        if not os.path.isfile(generator):
            from penet_tf.convert_torch import is_released_save

            raise FileNotFoundError(
                f"--init-from {path}: no generator.weights.h5 in it"
                + (
                    " (a released trainer's save folder: start from its weights with "
                    "--init-from FOLDER/gen_N.pth, or go on with its run with "
                    "--resume-release FOLDER)"
                    if is_released_save(path)
                    else ""
                )
                + "."
            )
        _load_initial(gan.generator, generator, "generator", model)
        if os.path.isfile(discriminator):
            _load_initial(gan.discriminator, discriminator, "discriminator", critic)
        else:
            _fresh_discriminator(path, discriminator)
    elif path.endswith(".pth"):
        from penet_tf.convert_torch import load_released_discriminator, load_released_generator

        load_released_generator(path, gan.generator)
        folder, name = os.path.split(path)
        sibling = os.path.join(folder, "dis" + name[3:]) if name.startswith("gen") else None
        if sibling is not None and os.path.isfile(sibling):
            load_released_discriminator(sibling, gan.discriminator)
        else:
            _fresh_discriminator(path, sibling or "dis_N.pth: the file is not named gen_N.pth")
    elif path.endswith(".weights.h5") and os.path.isfile(path):
        _load_initial(gan.generator, path, "generator", model)
        _fresh_discriminator(path, None)
    else:
        raise FileNotFoundError(f"--init-from {path}: not a weights folder, .weights.h5 or .pth.")


def _fresh_discriminator(path, looked_for):
    """Says that ``--init-from`` starts the discriminator from its initialisation (the
    generator then trains against a new one: said nowhere before)."""
    where = f" (no {looked_for})" if looked_for else ""
    logger.warning(
        "--init-from %s: no discriminator weights%s; the discriminator starts from its "
        "initialisation",
        path,
        where,
    )


def _check_init_from(path, output_dir):
    """Refuses a missing ``--init-from``, or one the run would write over (its folder or
    its ``RUN_WEIGHTS``: the weights it starts from were replaced at the first save)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"--init-from {path}: no such file or folder.")
    outputs = [output_dir, *(os.path.join(output_dir, name) for name in RUN_WEIGHTS)]
    if any(same_path(path, output) for output in outputs):  # (also spelled otherwise)
        raise ValueError(
            f"--init-from {path} is the run's own output in {output_dir}: training writes "
            f"{' and '.join(RUN_WEIGHTS)} there, replacing the weights it starts from; copy "
            "them elsewhere or choose another output_dir."
        )


def image_grid(image, mask, output):
    """Rows of [masked input | output | composite | ground truth], in [0, 1]."""
    image, mask, output = (tf.cast(t, tf.float32) for t in (image, mask, output))
    masked = image * (1.0 - mask) + mask
    columns = [masked, output, composite(output, image, mask), image]
    rows = tf.concat(columns, axis=2)  # [N, H, 4W, 3]
    grid = tf.reshape(rows, [1, -1, rows.shape[2], 3])
    return (grid + 1.0) / 2.0


class ResumedProgbar(keras.utils.Progbar):
    """``keras.utils.Progbar`` over a run's steps that starts at step ``start`` (a resumed
    run): the running means and the time per step count this process's steps only (Keras
    weighed the first step after a resume at step S S + 1 times, and divided the elapsed
    time by S + k for k steps)."""

    def __init__(self, target, start=0, **kwargs):
        super().__init__(target, **kwargs)
        self._seen_so_far = self._first_step = start

    def update(self, current, values=None, finalize=None):
        """As Keras', but the final line keeps the run's means: Keras replaces each mean
        by the last step's value there (the bar left on screen showed g_loss 2.3766, the
        last batch's, where the run's mean was 2.7700)."""
        if finalize or (finalize is None and self.target is not None and current >= self.target):
            weight = max(current - self._seen_so_far, 1)
            for name, value in values or []:
                if not self._averaged(name):
                    continue  # (left to Keras: shown as given)
                if name not in self._values_order:
                    self._values_order.append(name)
                total, count = self._values.get(name, [0.0, 0])
                self._values[name] = [total + value * weight, count + weight]
            values = [(name, value) for name, value in values or [] if not self._averaged(name)]
        super().update(current, values, finalize)

    def _averaged(self, name):
        """Whether Keras shows ``name`` as a running mean (not a stateful metric)."""
        if self.stateful_metrics is not None:
            return name not in self.stateful_metrics
        return name in self.stateless_metrics

    def _estimate_step_duration(self, current, now):
        return super()._estimate_step_duration(current - self._first_step, now)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped training; the message (one line) says what was saved;
    ``signum`` is the signal when the loop stopped after saving."""

    def __init__(self, message, signum=None):
        super().__init__(message)
        self.signum = signum


STOP_SIGNALS = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


def _just_stops(handler):
    """Whether a SIGINT or SIGTERM ``handler`` just ends the program: the default,
    Python's ``KeyboardInterrupt`` or ``penet_tf.cli.run``'s. A program's own handler, or
    SIG_IGN (a job started in the background ignores SIGINT), is left alone."""
    return handler in (signal.SIG_DFL, signal.default_int_handler) or getattr(
        handler, "stops_like_ctrl_c", False
    )


class _StopOnCtrlC:
    """While active, the first SIGINT or SIGTERM (a scheduler or container stopping the
    job, which kills it a grace period later) only sets ``requested`` to the signal: the
    loop saves and stops after the current step. The handlers before it (normally
    ``KeyboardInterrupt``; for SIGTERM the CLI's, or the default: end at once) are back in
    place for a second one. Taken only from handlers that just stop (``_just_stops``).
    Inactive outside the main thread."""

    def __init__(self, enabled):
        self.enabled = enabled and threading.current_thread() is threading.main_thread()
        self.requested = None
        self.previous = {}

    def _handle(self, signum, frame):
        self.requested = signum
        self._restore()
        name = STOP_SIGNALS[signum]
        logger.warning(
            "%s: stopping after this step and saving a checkpoint of it "
            "(%s again stops at once, without saving)",
            name,
            name,
        )

    def _restore(self):
        for signum, previous in self.previous.items():
            if signal.getsignal(signum) == self._handle:
                signal.signal(signum, previous)

    def __enter__(self):
        if self.enabled:
            for signum in STOP_SIGNALS:
                if _just_stops(signal.getsignal(signum)):
                    self.previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc):
        self._restore()


class Trainer:
    """Builds everything a config describes and runs (or resumes) training.

    Args:
        config: a ``TrainingConfig`` (``penet_tf.training.config.load_config``) or a
            mapping of one (checked strictly).
        init_from: weights to start from when there is no checkpoint to resume.
        resume_release: a released trainer's ``save_dir`` to go on from when there is no
            checkpoint to resume (``convert_torch.load_released_run``).
        verbose: 1 shows a progress bar; 0 is quiet.
    """

    def __init__(self, config, init_from=None, resume_release=None, verbose=1):
        config = as_config(config)
        self.config = config
        if init_from is not None and resume_release is not None:
            raise ValueError("init_from and resume_release exclude each other.")
        self.init_from = init_from
        self.resume_release = resume_release
        self.verbose = verbose
        self._earlier_record = None  # (the run's config.json, when resumed with changes)
        self.strategy = make_strategy(config.strategy)
        self.chief = is_chief(self.strategy)
        logger.info(
            "strategy: %s with %d replica(s)",
            strategy_name(self.strategy),
            self.strategy.num_replicas_in_sync,
        )
        keras.utils.set_random_seed(config.seed)  # the same initial weights per seed
        self.policy = resolve_policy(config.mixed_precision)
        self.output_dir = config.output_dir
        # What can be refused cheaply is refused before the model is built (and before
        # anything is written): the output folder, the images, the masks, the batch.
        check_folder_target(self.output_dir, "output_dir")
        check_utf8_path(self.output_dir, "output_dir")  # (checkpoints: tf.io.gfile)
        check_run_folder(self.output_dir)  # (a user's own folder lost its config.json)
        if config.mixed_precision == "auto":
            picked, self.policy = self.policy, resumed_auto_policy(self.output_dir, self.policy)
            why = ""
            if picked != self.policy:  # (a float32 run's: it said "as the run's checkpoints")
                scale = "hold a" if self.policy == "mixed_float16" else "hold no"
                why = f" (the run's checkpoints {scale} loss scale; here: {picked})"
            logger.info("mixed precision: auto -> %s%s", self.policy, why)
        if init_from is not None:
            _check_init_from(init_from, self.output_dir)
        if (
            resume_release is not None
            and newest_checkpoint(os.path.join(self.output_dir, "checkpoints")) is None
        ):  # (once the run has a checkpoint, it resumes from that)
            from penet_tf.convert_torch import released_save

            released_save(resume_release)  # (the files are there)
        # (the batch and the masks first: a TFDS source may download and prepare a
        # dataset, hours and gigabytes before a mistyped mask folder was named)
        self._check_batch()
        size = config.data.image_size
        self.masks = MaskGenerator(config.mask, size[0], size[1])  # lists a mask folder
        self.source = ImageSource(config.data)
        with self.strategy.scope():
            self.gan = build_gan(config, self.policy)
            self.gan.build()
            self.state = TrainingState(
                self.gan,
                self.output_dir,
                keep=config.trainer.keep_checkpoints,
                chief=self.chief,
                worker=task_id(self.strategy),
            )

    def _check_batch(self):
        global_batch = self.config.trainer.batch_size
        replicas = self.strategy.num_replicas_in_sync
        if global_batch % replicas:
            raise ValueError(
                f"trainer.batch_size {global_batch} is not divisible by the {replicas} replicas."
            )

    def _dataset(self, start):
        config, seed = self.config, self.config.seed
        global_batch = config.trainer.batch_size

        def dataset_fn(context):
            return inpainting_dataset(
                self.source,
                config.data,
                self.masks,
                context.get_per_replica_batch_size(global_batch),
                seed=seed,
                start=start,
                input_context=context,
            )

        return self.strategy.distribute_datasets_from_function(dataset_fn)

    def run(self):
        """Trains to ``trainer.iterations``; returns the final step's logs (floats).

        Raises ``TrainingInterrupted`` on Ctrl-C (after saving the step, or at once on a
        second Ctrl-C) and ``CheckpointWriteError`` when the disk is full; in both cases
        the run folder holds complete checkpoints only and the same command resumes. The
        chief holds the run folder meanwhile (``run_lock``): a second run is refused.
        """
        with run_lock(self.output_dir) if self.chief else contextlib.nullcontext():
            return self._run()

    def _run(self):
        if self.chief:
            sweep_leftovers(self.output_dir)  # (nothing else writes there: the lock)
        resumed = self.state.restore()
        if resumed:
            logger.info("resuming from %s (step %d)", resumed, int(self.state.step.numpy()))
            record = run_record(self.output_dir)
            self._note_older_run(record)
            self._note_changed_settings(record)
            for flag, value in (
                ("--init-from", self.init_from),
                ("--resume-release", self.resume_release),
            ):
                if value:
                    logger.warning("%s %s is not used: the run resumes", flag, value)
        elif self.init_from:
            load_initial_weights(self.gan, self.init_from)
        elif self.resume_release:
            self._resume_release()
        # Ctrl-C saves first only where this process can save alone (not multi-worker).
        try:
            with _StopOnCtrlC(enabled=self._saves_alone) as stop:
                return self._train(resumed, stop)
        except TrainingInterrupted:
            raise
        except KeyboardInterrupt:
            step = int(self.state.step.numpy())
            if self.state.latest_step() == step:  # (a Ctrl-C just after its save)
                message = f"stopped at step {step}, whose checkpoint is complete"
            else:
                message = f"stopped at step {step} without saving it; {self.state.last_complete()}"
            raise TrainingInterrupted(f"{message}: run the same command to resume.") from None
        except tf.errors.UnavailableError as error:
            if self.chief or not isinstance(
                self.strategy, tf.distribute.MultiWorkerMirroredStrategy
            ):
                raise
            # (the chief refused to start, or died: a 69-line traceback here before)
            reason = str(error).strip().splitlines()[0][:200]
            raise ValueError(
                f"the training job stopped: another worker ended ({reason}); the chief's "
                "output says why"
            ) from None
        except (OSError, tf.errors.OpError) as error:
            if isinstance(error, CheckpointWriteError) or not is_disk_full(error):
                raise
            step = int(self.state.step.numpy())
            raise CheckpointWriteError(
                f"no space left on the device while writing in {self.output_dir} at step "
                f"{step}; {self.state.last_complete()}: free some space and run the same "
                "command to resume."
            ) from error

    def _resume_release(self):
        """Loads the released trainer's newest save and sets the step to its iteration;
        warns when this config's learning rate at that step is not the one the release
        used last (another ``optimizer.lr``, ``d2g_lr`` or ``schedule``)."""
        from penet_tf.convert_torch import load_released_run

        iteration, paths, used = load_released_run(self.gan, self.resume_release)
        if iteration >= self.config.trainer.iterations:
            raise ValueError(
                f"--resume-release {self.resume_release}: the released run is at step "
                f"{iteration}, trainer.iterations is {self.config.trainer.iterations}: "
                "nothing to train (raise trainer.iterations)."
            )
        self.state.step.assign(iteration)
        logger.info(
            "going on with the released run in %s at step %d (%s)",
            self.resume_release,
            iteration,
            ", ".join(os.path.basename(path) for path in paths),
        )
        if not iteration:
            return
        ours = [used_learning_rate(o) for o in (self.gan.g_optimizer, self.gan.d_optimizer)]
        if not all(
            abs(a - b) <= 1e-6 * max(abs(b), 1e-12) for a, b in zip(ours, used, strict=True)
        ):
            logger.warning(
                "the released run's last learning rates (G %g, D %g at step %d) are not "
                "this config's (G %g, D %g): optimizer.lr, d2g_lr or schedule differ from "
                "the release's config",
                *used,
                iteration,
                *ours,
            )

    def _note_older_run(self, earlier):
        """Warns when the run being resumed was started by an earlier penet_tf whose
        defaults differ (its config.json lacks the keys that name them): the resumed
        steps use today's, so the run is not the one an uninterrupted run would be."""
        if earlier is None:
            return
        changed = [
            f"{section}.{key} ({then} then, {now} now)"
            for section, key, then in _unnamed_later_keys(earlier)
            if (now := getattr(getattr(self.config, section), key)) != then
        ]
        if changed:
            logger.warning(
                "this run was started by an earlier penet_tf: its config.json does not name "
                "%s; the resumed steps use the values given now (the colour jitter became "
                "the release's too): set them to keep the run's",
                ", ".join(changed),
            )

    def _note_changed_settings(self, earlier):
        """Warns, naming them, of settings given now that differ from the run's
        ``config.json`` (they apply from the resumed step on), and keeps that record as
        ``config.step-N.json`` (the first one of a step: a resume that trained nothing
        does not replace it): the new values replaced it without a word, and the record
        then said the whole run had used them."""
        step = int(self.state.step.numpy())
        if earlier is None or step >= self.config.trainer.iterations:  # (nothing to train)
            return
        now = json.loads(json.dumps(self.config.to_dict()))  # (as written: tuples are lists)
        changed = [
            f"{key} {a!r} -> {b!r}"
            for key, (a, b) in _changed(_filled_in(earlier, now), now).items()
            # (the run's folder written another way: runs/x/, or the absolute path)
            if not (
                key == "output_dir"
                and isinstance(a, str)
                and same_path(os.path.expanduser(a), self.output_dir)
            )
        ]
        if not changed:
            return
        name = f"config.step-{step}.json"
        self._earlier_record = (earlier, name)
        kept = os.path.exists(os.path.join(self.output_dir, name))
        logger.warning(
            "resuming with settings that differ from the run's config.json, from step %d "
            "on: %s (%s)",
            step,
            ", ".join(changed),
            f"the record of the steps before is {name} already"
            if kept  # (a resume with changes that stopped before its next checkpoint)
            else f"the earlier record is kept as {name}",
        )

    def _start_position(self, resumed):
        """The checkpoint's data position, or where the data changed since it was saved
        (files added, removed or renamed: ``ImageSource.listing()``), the start of the
        epoch after the one it was in, over the new list, with a warning. (The position
        was read against the new list as it stood: 8 images grown to 32 re-read the 8 old
        ones and left 8 new ones out of the rest of that epoch, without a word.)"""
        position = int(self.state.position.numpy())
        count, digest = self.source.listing()
        then_count, then_digest = (int(value) for value in self.state.data.numpy())
        self.state.data.assign([count, digest])
        if (
            not resumed
            or then_count == 0  # (a checkpoint written before the listing was kept)
            or (then_count, then_digest) == (count, digest)
            or int(self.state.step.numpy()) >= self.config.trainer.iterations  # (finished)
        ):
            return position
        epoch, into = divmod(position, then_count)
        start = (epoch + (into > 0)) * count
        kind = self.source.item_kind
        change = (
            f"{count} {kind}(s) listed, {then_count} when step {int(self.state.step.numpy())} "
            "was saved"
            if count != then_count
            else f"{count} {kind}(s) listed as then, other names among them"
        )
        logger.warning(
            "the data changed since the checkpoint (%s): %s over the new list",
            change,
            f"the rest of epoch {epoch + 1} is left out and epoch {epoch + 2} starts"
            if into > 0
            else f"epoch {epoch + 1} starts",
        )
        return start

    def _train(self, resumed, stop):
        config, trainer = self.config, self.config.trainer
        iterator = iter(self._dataset(self._start_position(resumed)))  # before any write
        finished = resumed and int(self.state.step.numpy()) >= trainer.iterations
        if self.chief:
            os.makedirs(self.output_dir, exist_ok=True)
            if self._earlier_record:
                earlier, name = self._earlier_record
                if not os.path.exists(os.path.join(self.output_dir, name)):
                    write_json_atomically(earlier, os.path.join(self.output_dir, name))
            if not finished:
                path = os.path.join(self.output_dir, "config.json")  # (what trains from now)
                write_json_atomically(config.to_dict(), path)
        writer = (  # (a finished run, run again, left an empty event file each time)
            tf.summary.create_file_writer(os.path.join(self.output_dir, "logs"))
            if self.chief and not finished
            else tf.summary.create_noop_writer()
        )
        strategy, gan = self.strategy, self.gan

        @tf.function(autograph=False)
        def distributed_step(iterator):
            batch, index = next(iterator)
            logs = strategy.run(gan.released_step, args=(batch,))
            logs = {
                name: strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None)
                for name, value in logs.items()
            }
            # The last element any worker took (each worker's pipeline keeps every N-th
            # element: the chief's own replicas alone gave a position one short).
            last = tf.reduce_max(strategy.gather(index, axis=0))
            return logs, last, strategy.experimental_local_results(batch)

        step = int(self.state.step.numpy())
        if resumed and step >= trainer.iterations:
            self.state.export_weights()  # the weights of the last checkpoint, once more
        iterations = trainer.iterations
        progress = ResumedProgbar(iterations, step, verbose=self.verbose if self.chief else 0)
        preview = None
        sums, count, started = {}, 0, time.perf_counter()
        logs = {}
        while step < iterations:
            try:
                logs, last, first_batch = distributed_step(iterator)
            except tf.errors.OpError as error:
                gone = self.masks.gone() if isinstance(error, tf.errors.NotFoundError) else []
                if gone:  # (a traceback, and every step since the last checkpoint lost)
                    self._stop_without_data(
                        step,
                        f"{len(gone)} of the {len(self.masks.paths)} mask files listed at "
                        f"the start are gone: {first_few(map(os.fsdecode, gone))}",
                    )
                if self.source.failure is None:
                    raise
                self._stop_without_data(step)
            step += 1
            self.state.step.assign(step)
            self.state.position.assign(last + 1)
            if preview is None:  # this worker's whole batch (replica 0's was 2 of 4 images
                # under MirroredStrategy on 2 devices), put together once, not every step
                first_batch = [tf.concat(parts, 0) for parts in zip(*first_batch, strict=True)]
                preview = [t[:PREVIEW_IMAGES] for t in first_batch]
            logs = {name: float(value) for name, value in logs.items()}
            self._stop_if_diverged(step, logs, writer)
            for name, value in logs.items():
                sums[name] = sums.get(name, 0.0) + value
            count += 1
            progress.update(step, list(logs.items()), finalize=step == iterations)
            if step % trainer.log_every == 0 or step == iterations:
                elapsed = time.perf_counter() - started
                self._log_scalars(writer, step, sums, count, elapsed)
                sums, count, started = {}, 0, time.perf_counter()
            if step % trainer.image_every == 0 or step == iterations:
                self._log_images(writer, step, preview)
            if step % trainer.checkpoint_every == 0 or step == iterations or stop.requested:
                self.state.save()
                self.state.export_weights()
            if stop.requested:
                writer.flush()
                raise TrainingInterrupted(
                    f"stopped at step {step} after saving its checkpoint in "
                    f"{self.state.directory}: run the same command to resume.",
                    stop.requested,
                )
        if self.source.skipped:
            files = self.source.skipped_files
            # (of how many: 2 readable photos among 502 files trained with exit 0, and
            # nothing said they were the whole training set)
            logger.warning(
                "skipped %d reads of %d unreadable %ss of the %d listed: %s",
                self.source.skipped,
                self.source.unreadable_count,
                self.source.item_kind,
                len(self.source.items),
                first_few(files, 5),
            )
        if self.source.small_count:
            height, width = self.source.image_size
            logger.warning(
                "upscaled %d of the %d listed %ss, smaller than data.image_size %dx%d (the "
                "first: %s, %dx%d)",
                self.source.small_count,
                len(self.source.items),
                self.source.item_kind,
                width,
                height,
                *self.source.first_small,
            )
        writer.flush()
        return logs

    def _log_scalars(self, writer, step, sums, count, elapsed):
        batch = self.config.trainer.batch_size
        with writer.as_default(step=step):
            for name, total in sums.items():
                tf.summary.scalar(f"loss/{name}", total / max(count, 1))
            for name, optimizer in (
                ("generator", self.gan.g_optimizer),
                ("discriminator", self.gan.d_optimizer),
            ):
                tf.summary.scalar(f"learning_rate/{name}", used_learning_rate(optimizer))
            tf.summary.scalar("images_per_second", batch * count / max(elapsed, 1e-9))
            tf.summary.scalar("data/skipped_files", self.source.skipped)

    @property
    def _saves_alone(self):
        """Whether this process can save a checkpoint by itself (multi-worker saves need
        every worker)."""
        return not isinstance(self.strategy, tf.distribute.MultiWorkerMirroredStrategy)

    def _stop_if_diverged(self, step, logs, writer):
        """A step whose losses are not finite ends the run before anything of it is
        saved: a diverged run (a learning rate too high) went on saving NaN checkpoints
        every ``checkpoint_every`` steps, which deleted the last good one, wrote NaN
        weights and exited 0. (Its Keras counterpart, ``TerminateOnNaN``, reads ``loss``,
        which a GAN does not have.)"""
        bad = [
            f"{name} {value}" for name, value in sorted(logs.items()) if not math.isfinite(value)
        ]
        if not bad:
            return
        writer.flush()
        again = "resume from it" if self.state.latest_step() is not None else "start again"
        raise ValueError(
            f"training diverged at step {step}: {', '.join(bad)}; nothing of it was saved "
            f"({self.state.last_complete()}): {again} with a lower learning rate "
            "(--set optimizer.lr=...)"
        )

    def _stop_without_data(self, step, failure=None):
        """The data went away mid-run (``failure``, ``ImageSource.failure`` by default):
        the steps done so far are saved (one process: multi-worker saves need every
        worker) and the run stops in one line."""
        if self._saves_alone and step and self.state.latest_step() != step:
            self.state.save()
            self.state.export_weights()
        saved = self.state.last_complete()
        raise ValueError(
            f"training stopped at step {step}: {failure or self.source.failure} ({saved}: "
            "run the same command to resume once the data can be read)"
        ) from None

    def _log_images(self, writer, step, preview):
        if not self.chief or preview is None:
            return
        image, mask = preview
        output, _ = self.gan.generator(image, mask)
        with writer.as_default(step=step):
            tf.summary.image("masked_output_composite_truth", image_grid(image, mask, output))


def _unnamed_later_keys(record):
    """The ``_LATER_KEYS`` (section, key, value then) that a run's ``config.json`` does
    not name: it was started before they existed, with those values."""
    return [
        (section, key, then)
        for section, key, then in _LATER_KEYS
        if isinstance(record.get(section), dict) and key not in record[section]
    ]


def _older_run_settings(record):
    """``--set`` overrides of the ``_LATER_KEYS`` a run's ``config.json`` does not name:
    the values the run was trained with."""
    return [f"{section}.{key}={then}" for section, key, then in _unnamed_later_keys(record)]


def _filled_in(record, now):
    """A run's ``config.json`` with the keys it does not name filled in as today's
    records are written (the mask components of a run started before 2026-12-02, written
    as typed, were named as changed settings on resume; they were the same): with their
    defaults, or for ``_LATER_KEYS`` with their values ``now`` (the older run's note names
    those); the record itself where it no longer parses."""
    try:
        filled = json.loads(json.dumps(as_config(record).to_dict()))
    except (ValueError, TypeError):
        return record
    for section, key, _ in _unnamed_later_keys(record):
        filled[section][key] = now[section][key]
    return filled


def _changed(then, now, prefix=""):
    """``{dotted key: (then, now)}`` for the keys both nested dicts hold with other values."""
    if not isinstance(then, dict) or not isinstance(now, dict):
        return {} if then == now else {prefix.rstrip("."): (then, now)}
    changed = {}
    for key in sorted(set(then) & set(now)):
        changed.update(_changed(then[key], now[key], f"{prefix}{key}."))
    return changed


def summarize(logs):
    return ", ".join(f"{name} {value:.4f}" for name, value in sorted(logs.items()))
