"""Checkpoints that survive being killed, and the weights that export reads.

``tf.train.CheckpointManager`` writes a checkpoint's files first (through a
``ckpt-N_temp/`` folder) and then atomically replaces the ``checkpoint`` state file that
names the latest one, so a run killed at any moment (SIGKILL included) restarts from its
last complete checkpoint; files of an interrupted save are never picked up.

A checkpoint that cannot be read when a run resumes (its files damaged or gone) is
passed over for the newest one that can (``TrainingState.restore``); its files move to
``checkpoints/damaged/``.

Nothing half-written stays behind: a save that fails (a full disk, Ctrl-C) removes its own
partial files before the error goes on, and ``sweep_leftovers`` removes those of a process
that was killed (``ckpt-N_temp/``, unreferenced ``ckpt-N.*`` newer than the last complete
checkpoint, TensorFlow's ``checkpoint.tmp*``, the ``.tmp-*`` temporaries of
``penet_tf.io_utils.atomic_path`` whose process is gone, and the private
``.worker-K-tmp/`` folders of multi-worker runs) when the next run starts.
"""

import contextlib
import errno
import gc
import json
import os
import re
import shutil
import sys

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from penet_tf.errors import first_few, get_logger
from penet_tf.io_utils import (
    remove_path,
    save_weights_and_configs,
    sweep_temporaries,
)
from penet_tf.models import discriminator_config, generator_config

try:
    import fcntl
except ImportError:  # Windows: no run lock (training stopped there: "No module named 'fcntl'")
    fcntl = None

logger = get_logger("penet_tf.train")

DATA_KEY = "data/.ATTRIBUTES/VARIABLE_VALUE"  # (TrainingState.data in a checkpoint)
# The weights a run writes in its folder (TrainingState.export_weights).
RUN_WEIGHTS = ("generator.weights.h5", "discriminator.weights.h5")
CHECKPOINT = re.compile(r"^ckpt-(\d+)\.(index|data-\d+-of-\d+)$")


class CheckpointReadError(ValueError):
    """No checkpoint of the run can be read, or the newest was written for another model
    (another config): one line saying which, and what to do."""


class CheckpointWriteError(OSError):
    """A checkpoint or the run's weights could not be written (e.g. the disk is full).

    Its partial files are already removed and the last complete checkpoint is intact: the
    message (one line) says which it is and that the same command resumes from it.
    """


def is_disk_full(error):
    """Whether ``error`` (an ``OSError`` or a TensorFlow error) says the disk is full."""
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    text = str(error)
    return "No space left on device" in text or "Disk quota exceeded" in text


def _reason(error):
    if is_disk_full(error):
        return "no space left on the device"
    lines = str(error).strip().splitlines() or [type(error).__name__]
    unused = re.match(r"Unresolved object in checkpoint \(root\)\.(\S+):", lines[0])
    if unused:
        return f"it holds {unused.group(1)}, which this model has no place for"
    # Without TensorFlow's "{{function_node ...}} " prefix and " [Op:...]" suffix.
    return re.sub(r"^\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]$", "", lines[0])[:300]


def latest_step(directory):
    """The step of the last complete checkpoint in ``directory`` (None: there is none)."""
    latest = tf.train.latest_checkpoint(directory)
    return None if latest is None else checkpoint_step(latest)


def checkpoint_step(path):
    """N of a checkpoint path ``.../ckpt-N``."""
    return int(path.rsplit("-", 1)[1])


def _state(directory):
    """The state file of ``directory`` (TensorFlow's ``checkpoint``), or None when it is
    missing, unreadable or names no checkpoint."""
    try:
        state = tf.train.get_checkpoint_state(directory)
    except (OSError, ValueError, DecodeError, tf.errors.OpError):
        return None
    return state if state is not None and state.model_checkpoint_path else None


def listed_checkpoints(directory):
    """The run's checkpoints, oldest first (paths): those the state file of
    ``directory`` names, whether or not their files are there, or, when the state file is
    missing or unreadable (only the ``ckpt-N.*`` files were copied; a crash damaged it),
    those whose ``ckpt-N.index`` is there (without this, a run that lost its state file
    swept every checkpoint as an interrupted save's leftovers and trained from step 0).
    Complete checkpoints newer than those the state file names are the run's too (a kill
    after a save's files were in place, before the state file named them; they were
    swept as leftovers)."""
    state = _state(directory)
    if state is not None:
        paths = set(state.all_model_checkpoint_paths) | {state.model_checkpoint_path}
        newest = max(checkpoint_step(path) for path in paths)
        paths |= {path for step, path in _complete(directory).items() if step > newest}
    elif os.path.isdir(directory):
        paths = {
            os.path.join(directory, f"ckpt-{match.group(1)}")
            for match in map(CHECKPOINT.match, os.listdir(directory))
            if match and match.group(2) == "index"
        }
    else:
        paths = set()
    return sorted(paths, key=checkpoint_step)


def newest_checkpoint(directory):
    """The newest checkpoint of ``directory`` a run resumes from (``listed_checkpoints``:
    also when the state file is missing, or does not name it yet) whose index is there;
    None when there is none. (``tf.train.latest_checkpoint`` reads the state file only.)"""
    indexed = [p for p in listed_checkpoints(directory) if os.path.isfile(p + ".index")]
    return indexed[-1] if indexed else None


def _complete(directory):
    """``{N: path}`` of the checkpoints all of whose files are in ``directory``: the
    ``ckpt-N.index`` and every ``ckpt-N.data-I-of-K`` shard, I < K."""
    if not os.path.isdir(directory):
        return {}
    indexes, shards = set(), {}
    for name in os.listdir(directory):
        match = CHECKPOINT.match(name)
        if not match:
            continue
        step = int(match.group(1))
        if match.group(2) == "index":
            indexes.add(step)
        else:
            part, total = map(int, re.findall(r"\d+", match.group(2)))
            shards.setdefault(step, set()).add((part, total))
    complete = {}
    for step in indexes:
        found = shards.get(step, set())
        totals = {total for _, total in found}
        if len(totals) == 1 and {part for part, _ in found} == set(range(totals.pop())):
            complete[step] = os.path.join(directory, f"ckpt-{step}")
    return complete


class _Superseded(Exception):
    """A checkpoint being read was deleted by its run meanwhile (it saved newer ones)."""


# Listings of a live run's checkpoints tried before its deletions count as damage.
_RELISTS = 5

# The lock a run holds on its folder while it trains (``run_lock``).
LOCK_FILE = ".penet_tf-run.lock"


@contextlib.contextmanager
def run_lock(output_dir):
    """Holds the run folder ``output_dir`` for this process (an advisory ``flock`` on
    ``LOCK_FILE``, released when the process ends, however it ends). ValueError when
    another process holds it: a second run started on a folder swept the first one's
    checkpoint save as leftovers while it was written, and both saved over each other."""
    made = []  # the folders makedirs makes, deepest first
    folder = os.path.abspath(output_dir)
    while not os.path.lexists(folder):
        made.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(output_dir, exist_ok=True)
    lock = os.path.join(output_dir, LOCK_FILE)
    handle = open(lock, "a+", encoding="utf-8")  # noqa: SIM115
    locked = False
    try:
        try:
            if fcntl is None:
                raise OSError(errno.ENOSYS, "this system has no flock (fcntl)")
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            try:  # (a run that could not start removed the file before this one locked it)
                locked = os.path.samestat(os.fstat(handle.fileno()), os.stat(lock))
            except FileNotFoundError:
                locked = False
            if not locked:
                raise ValueError(
                    f"another training run was starting on {output_dir} at the same time: "
                    "run the command again"
                )
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "?"
            raise ValueError(
                f"another training run (pid {holder}) is writing to {output_dir}: wait for "
                "it to end, or train into another folder"
            ) from None
        except OSError as error:  # a file system without locks (NFSv3 without lockd), Windows
            logger.warning(
                "cannot lock %s (%s): training without the run lock, so start no other "
                "run on this folder meanwhile",
                output_dir,
                error.strerror or error,
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        yield
    finally:
        # A run that could not start leaves no folder it made (only its lock was in it):
        # removed while this process holds the lock (a refused run removes nothing).
        with contextlib.suppress(OSError):
            if locked and made and os.listdir(output_dir) == [LOCK_FILE]:
                os.remove(lock)
                for folder in made:
                    os.rmdir(folder)  # (stops at the first that is not empty)
        handle.close()  # (releases the lock)


# The sections of the config.json a run writes first (``penet_tf.training.config``).
_RUN_CONFIG_SECTIONS = ("data", "mask", "model", "optimizer", "trainer")


def has_checkpoints(output_dir):
    """Whether ``output_dir`` holds a run's ``checkpoints/`` (a state file or a
    ``ckpt-N.index``)."""
    checkpoints = os.path.join(output_dir, "checkpoints")
    if not os.path.isdir(checkpoints):
        return False
    names = os.listdir(checkpoints)
    return "checkpoint" in names or any(
        (match := CHECKPOINT.match(name)) and match.group(2) == "index" for name in names
    )


def _is_run_folder(output_dir):
    """Whether ``output_dir`` is a training run's folder (penet_tf's own, where even an
    older version's pid-less ``.tmp-*`` leftovers may be swept): a ``checkpoints/`` with
    a state file or a ``ckpt-N.index``, or the run's ``config.json`` (a JSON object with
    the sections of a training config). A ``checkpoints/`` folder or a ``config.json``
    alone were taken for one: a user's project folder lost its ``.tmp-build/``."""
    if has_checkpoints(output_dir):
        return True
    config = run_record(output_dir)
    return config is not None and all(key in config for key in _RUN_CONFIG_SECTIONS)


def run_record(output_dir):
    """The run's ``config.json`` as a dict, or None (missing, unreadable, not an object)."""
    try:
        with open(os.path.join(output_dir, "config.json"), encoding="utf-8") as handle:
            record = json.load(handle)
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


# TensorFlow's words for a spectral-norm vector of Keras' shape (1, C) restored into the
# released one's (C,): the discriminator of a run started before 2026-12-02 12:30 UTC.
_KERAS_VECTOR = re.compile(
    r"shape \(1, (\d+)\) when attempting to restore variable with shape \(\1,\) and name "
    r"\S*vector_[uv]"
)


def _older_run_hint(output_dir, reason):
    """For a checkpoint that does not fit because its discriminator has Keras' spectral
    norm (``reason``) and the run's config.json names no ``model.spectral_norm`` (it was
    started by penet_tf before 2026-12-02 12:30 UTC, whose default that was): the
    settings that resume it ("resume with that config" could not help)."""
    record = run_record(output_dir)
    model = record.get("model") if record else None
    if not _KERAS_VECTOR.search(reason) or not isinstance(model, dict):
        return ""
    if "spectral_norm" in model:
        return ""
    return (
        " This run was started by penet_tf before 2026-12-02 12:30 UTC, whose discriminator "
        "used Keras' spectral norm and whose Adam added epsilon as Keras' does: resume it "
        "with --set model.spectral_norm=keras --set optimizer.epsilon_placement=keras."
    )


def check_run_folder(output_dir):
    """ValueError, before anything is written, unless ``output_dir`` is new, empty (but
    for hidden entries and ``lost+found``) or a run folder (``_is_run_folder``): a run writes
    ``config.json``, ``logs/`` and ``checkpoints/`` there and sweeps leftovers, so a
    user's own folder given as the output lost its ``config.json`` to the run's."""
    if not os.path.exists(output_dir):
        return
    if not os.path.isdir(output_dir):
        raise ValueError(f"output_dir {output_dir} is a file, not a folder")
    theirs = sorted(
        name
        for name in os.listdir(output_dir)
        # (penet_tf's temporaries and lock, a worker's folder, hidden files such as
        # .DS_Store, a file system's lost+found: nothing a run would write over)
        if not (name.startswith(".") or name == "lost+found")
    )
    if theirs and not _is_run_folder(output_dir):
        raise ValueError(
            f"output_dir {output_dir} holds files that are not a training run's "
            f"({first_few(theirs)}): "
            "a run writes config.json, logs/ and checkpoints/ there; give a new or empty "
            "folder (--output-dir)"
        )


def sweep_leftovers(output_dir):
    """Removes what interrupted saves left in the run folder ``output_dir``; returns the
    removed paths. Call it before training starts (the chief only): nothing is being
    written there then."""
    if not os.path.isdir(output_dir):
        return []
    # .tmp-* of penet_tf.io_utils.atomic_path (pid-less ones only in a run folder: a
    # user's own folder given as --output-dir lost its .tmp-cache/).
    removed = sweep_temporaries(output_dir, older_versions=_is_run_folder(output_dir))
    for name in sorted(os.listdir(output_dir)):
        if re.fullmatch(r"\.worker-\d+-tmp", name):
            path = os.path.join(output_dir, name)
            if remove_path(path):
                removed.append(path)
    directory = os.path.join(output_dir, "checkpoints")
    if os.path.isdir(directory):
        # Newer than every checkpoint the state file names (even one whose files are
        # gone: the older ones it names are still the run's, not leftovers).
        listed = listed_checkpoints(directory)
        latest = checkpoint_step(listed[-1]) if listed else None
        for name in sorted(os.listdir(directory)):
            match = CHECKPOINT.match(name)
            if (
                name.endswith("_temp")
                or name.startswith("checkpoint.tmp")
                or ".tempstate" in name
                or (match and (latest is None or int(match.group(1)) > latest))
            ):
                path = os.path.join(directory, name)
                if remove_path(path):
                    removed.append(path)
    if removed:
        logger.info(
            "removed %d leftover(s) of an interrupted run: %s",
            len(removed),
            ", ".join(os.path.relpath(path, output_dir) for path in removed),
        )
    return removed


@contextlib.contextmanager
def _quiet_h5py_close_errors():
    """h5py reports a failed close (after the write error it raised, e.g. a full disk) as
    tracebacks on stderr; the write error is enough."""
    unraisable_hook, except_hook = sys.unraisablehook, sys.excepthook

    def quiet_unraisable(unraisable):
        if "h5py" not in f"{unraisable.object!r} {unraisable.err_msg or ''}":
            unraisable_hook(unraisable)

    def quiet_except(kind, value, traceback):  # Cython's __dealloc__ prints through it
        frames, step = [], traceback
        while step is not None:
            frames.append(step.tb_frame.f_code.co_filename)
            step = step.tb_next
        if not any("h5py" in name for name in frames):
            except_hook(kind, value, traceback)

    sys.unraisablehook, sys.excepthook = quiet_unraisable, quiet_except
    try:
        yield
    finally:
        gc.collect()  # the failed file's objects go now, while the hooks are in place
        sys.unraisablehook, sys.excepthook = unraisable_hook, except_hook


def _weights_bytes(*models):
    return sum(
        int(np.prod(variable.shape)) * np.dtype(variable.dtype).itemsize
        for model in models
        for variable in model.weights
    )


def _other_dtype(error):
    """Whether a restore failed on a variable saved with another dtype."""
    return "does not equal original dtype" in str(getattr(error, "message", error))


def checkpoint_keys(path):
    """The names of the values in the checkpoint ``path`` (its index alone is read), or
    None where the index cannot be read (a damaged checkpoint: its restore says why)."""
    try:
        return {name for name, _ in tf.train.list_variables(path)}
    except (ValueError, OSError, IndexError, DecodeError, tf.errors.OpError):
        return None


class TrainingState:
    """Generator, discriminator, both optimizers, the step and the data position.

    Args:
        gan: a built ``PENetGAN`` (optimizers compiled).
        output_dir: the run folder; checkpoints go to ``output_dir/checkpoints``.
        keep: how many checkpoints to keep.
        chief: False for the other workers of a multi-worker run: they must save too
            (collectively) but into a private folder that is deleted afterwards.
        worker: this worker's id (names the private folder).
    """

    def __init__(self, gan, output_dir, keep=3, chief=True, worker=0):
        self.gan = gan
        self.output_dir = output_dir
        self.chief = chief
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The global index of the next training element (resume without replaying data).
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False, name="position")
        # What ``position`` counts in: the data's ``ImageSource.listing()`` (count,
        # digest), [0, 0] where unknown (checkpoints written before it was kept).
        self.data = tf.Variable([0, 0], dtype=tf.int64, trainable=False, name="data")
        parts = dict(
            generator=gan.generator,
            discriminator=gan.discriminator,
            g_optimizer=gan.g_optimizer,
            d_optimizer=gan.d_optimizer,
            step=self.step,
            position=self.position,
        )
        self.checkpoint = tf.train.Checkpoint(data=self.data, **parts)
        self._checkpoint_before_data = tf.train.Checkpoint(**parts)  # (restores only)
        self.directory = os.path.join(output_dir, "checkpoints")
        self.save_directory = (
            self.directory if chief else os.path.join(output_dir, f".worker-{worker}-tmp")
        )
        self.keep = keep
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.save_directory, max_to_keep=keep
        )

    def restore(self, read_only=False):
        """Restores the newest checkpoint that can be read; returns its path or None.
        ``read_only``: nothing in the folder is moved or rewritten (``read_run``), and a
        checkpoint that the run deleted while it was read (a run training meanwhile
        keeps its newest ``keep``) is not damaged: the newest are listed again.

        A checkpoint whose files are missing or cannot be read (damaged on disk or in a
        copy) is passed over for the one before it: the chief moves its files to
        ``checkpoints/damaged/`` (kept, and not in the way of the next save of that
        step) and rewrites the state file to name the one restored, with a warning.

        Raises ``CheckpointReadError`` when none can be read, or when the newest
        readable one was written for another model (a different config); nothing is
        moved then.
        """
        for _ in range(_RELISTS):
            try:
                return self._restore(read_only)
            except _Superseded:  # (convert_torch --to-torch of a live run called them
                continue  # damaged, or failed with "move that folder away")
        raise CheckpointReadError(
            f"the run in {self.output_dir} deleted the checkpoint being read {_RELISTS} "
            "times (it saves new ones faster than they can be read): read it again, or "
            "once it has stopped"
        )

    def _restore(self, read_only):
        listed = listed_checkpoints(self.directory)
        state = _state(self.directory)
        lost_state = bool(listed) and state is None  # found by their files
        named = (
            set()
            if state is None
            else {checkpoint_step(p) for p in state.all_model_checkpoint_paths}
        )
        damaged = []

        def superseded(path):  # deleted meanwhile by the run that saves newer ones
            return read_only and path not in listed_checkpoints(self.directory)

        for path in reversed(listed):
            if not tf.io.gfile.exists(path + ".index"):
                if superseded(path):
                    raise _Superseded
                damaged.append((path, "its files are missing"))
                continue
            try:
                # Consumed: every value in the checkpoint has a place in this model (a
                # spectral-norm run resumed with spectral_norm "none" left its u and v
                # unused, and its discriminator unnormalised, without a word).
                keys = checkpoint_keys(path)
                if keys is None or DATA_KEY in keys:
                    self.checkpoint.restore(path).assert_consumed()
                else:  # (written before the data's listing was kept: unknown)
                    self._checkpoint_before_data.restore(path).assert_consumed()
                    self.data.assign([0, 0])
            except (ValueError, AssertionError, tf.errors.OpError) as error:
                # A variable of another dtype (mixed precision switched on or off) is an
                # OpError too, but a readable checkpoint of another model, not a damaged one.
                if isinstance(error, tf.errors.OpError) and not _other_dtype(error):
                    if superseded(path):
                        raise _Superseded from None
                    damaged.append((path, _reason(error)))
                    continue
                reason = _reason(error)
                raise CheckpointReadError(
                    f"the checkpoint {path} does not fit this model ({reason}): it was "
                    f"written with another model config (see {self.output_dir}/config.json; "
                    "mixed_float16 on or off counts too); resume with that config, or train "
                    "into another output directory." + _older_run_hint(self.output_dir, reason)
                ) from None
            except (OSError, IndexError, DecodeError) as error:
                if superseded(path):
                    raise _Superseded from None
                damaged.append((path, _reason(error)))
                continue
            named_again = damaged or lost_state or checkpoint_step(path) not in named
            if named_again and not read_only:
                self._set_aside(damaged, path, listed)
            return path
        if damaged:
            raise CheckpointReadError(
                f"none of the {len(listed)} checkpoints in {self.directory} can be read "
                f"({os.path.basename(damaged[0][0])}: {damaged[0][1]}): move that folder "
                "away to train from the start, or restore its files from a copy."
            )
        return None

    def _set_aside(self, damaged, restored, listed):
        """Moves the files of the ``damaged`` checkpoints into ``checkpoints/damaged/``
        and names ``restored`` in the state file (the chief only)."""
        names = ", ".join(f"{os.path.basename(path)} ({reason})" for path, reason in damaged)
        if not self.chief:
            if damaged:
                logger.warning("passed over checkpoints that cannot be read: %s", names)
            return
        aside = os.path.join(self.directory, "damaged")
        prefixes = {os.path.basename(path) for path, _ in damaged}
        moved = [
            name
            for name in sorted(os.listdir(self.directory))
            if CHECKPOINT.match(name) and name.split(".", 1)[0] in prefixes
        ]
        for name in moved:
            os.makedirs(aside, exist_ok=True)
            target, copy = os.path.join(aside, name), 0
            while os.path.exists(target):  # set aside before: keep both
                copy += 1
                target = os.path.join(aside, f"{name}.{copy}")
            os.replace(os.path.join(self.directory, name), target)
        # The same state with the damaged ones left out (or, the state file lost, the
        # checkpoints found by their files); the timestamps let the manager delete the
        # older checkpoints as it would have (without them it keeps them all).
        state = _state(self.directory)
        kept = [path for path in listed if checkpoint_step(path) <= checkpoint_step(restored)]
        if state is not None:
            paths, stamps = state.all_model_checkpoint_paths, state.all_model_checkpoint_timestamps
            times = dict(zip(paths, stamps, strict=False))
            preserved = state.last_preserved_timestamp
        else:
            times = {path: os.path.getmtime(path + ".index") for path in kept}
            preserved = min(times.values())
        from tensorflow.python.util import deprecation

        # (the TF1 name printed a 3-line deprecation warning before the warning below;
        # CheckpointManager cannot write another checkpoint's state)
        with deprecation.silence():
            tf.compat.v1.train.update_checkpoint_state(
                self.directory,
                restored,
                all_model_checkpoint_paths=kept,
                all_model_checkpoint_timestamps=[times.get(path, preserved) for path in kept],
                last_preserved_timestamp=preserved,
            )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.save_directory, max_to_keep=self.keep
        )
        if state is None:
            logger.warning(
                "the state file %s was missing or unreadable: resuming from %s, the newest "
                "checkpoint found by its files (the state file is written again)",
                os.path.join(self.directory, "checkpoint"),
                os.path.basename(restored),
            )
        elif state is not None and restored not in state.all_model_checkpoint_paths:
            logger.warning(
                "resuming from %s, complete but not yet named in the state file (a save "
                "stopped before naming it; named now)",
                os.path.basename(restored),
            )
        if damaged:
            logger.warning(
                "resuming from %s, the newest checkpoint that can be read: passed over %s%s",
                os.path.basename(restored),
                names,
                f"; their files are now in {aside}" if moved else "",
            )

    def latest_step(self):
        """The step of the last complete checkpoint (None: there is none yet)."""
        return latest_step(self.directory)

    def last_complete(self):
        latest = self.latest_step()
        if latest is None:
            return "there is no complete checkpoint yet"
        return f"the last complete checkpoint is step {latest}"

    def _advice(self, error):
        return "free some space" if is_disk_full(error) else "fix that"

    def save(self):
        """Saves a checkpoint of the current step; returns its path.

        Raises ``CheckpointWriteError`` when it cannot be written (a full disk): its
        partial files are removed first, and the previous checkpoints stay as they were.
        """
        number = int(self.step.numpy())
        try:
            return self.manager.save(checkpoint_number=number)
        except BaseException as error:  # KeyboardInterrupt too: no partial files left
            self._discard(number)
            if not isinstance(error, OSError | tf.errors.OpError):
                raise
            raise CheckpointWriteError(
                f"could not save the checkpoint of step {number} in {self.directory} "
                f"({_reason(error)}); its partial files were removed and {self.last_complete()}: "
                f"{self._advice(error)} and run the same command to resume."
            ) from error
        finally:
            if not self.chief:
                shutil.rmtree(self.save_directory, ignore_errors=True)

    def _discard(self, number):
        """Removes the files of an unfinished save of checkpoint ``number``."""
        prefix = os.path.join(self.save_directory, f"ckpt-{number}")
        shutil.rmtree(prefix + "_temp", ignore_errors=True)
        if latest_step(self.save_directory) == number:
            return  # it was complete (the state file names it): keep it
        if os.path.isdir(self.save_directory):
            for name in os.listdir(self.save_directory):
                match = CHECKPOINT.match(name)
                if match and int(match.group(1)) == number:
                    remove_path(os.path.join(self.save_directory, name))

    def export_weights(self):
        """Writes ``generator.weights.h5`` + ``generator.config.json`` (for penet_tf.export)
        and ``discriminator.weights.h5`` + ``discriminator.config.json`` (for
        ``convert_torch --to-torch``)."""
        if not self.chief:
            return None
        path, discriminator_path = (os.path.join(self.output_dir, n) for n in RUN_WEIGHTS)
        # h5py cannot recover from a write that fails on a full disk (tracebacks, and a
        # crash at exit): check the space first (the files are the weights plus ~150 KB).
        needed = _weights_bytes(self.gan.generator, self.gan.discriminator) + (1 << 20)
        free = shutil.disk_usage(self.output_dir).free
        if free < needed:
            raise CheckpointWriteError(
                f"could not write the weights in {self.output_dir} (no space left on the "
                f"device: they need {needed / 2**20:.1f} MB, {free / 2**20:.1f} MB are free); "
                f"{self.last_complete()} and the weights files are the previous ones: free some "
                "space and run the same command to write them."
            )
        failure = None
        with _quiet_h5py_close_errors():
            try:
                # both networks' files written before any replaces the last (a failed
                # write left the new generator beside the old discriminator)
                save_weights_and_configs(
                    [
                        (self.gan.generator, generator_config(self.gan.generator), path),
                        (
                            self.gan.discriminator,
                            discriminator_config(self.gan.discriminator),
                            discriminator_path,
                        ),
                    ]
                )
            except OSError as error:  # the atomic writes left no partial file
                failure = (
                    f"could not write the weights in {self.output_dir} ({_reason(error)}); "
                    f"{self.last_complete()} and the weights files are the previous ones: "
                    f"{self._advice(error)} and run the same command to write them."
                )
        if failure is not None:  # raised here, without the h5py objects of the error
            raise CheckpointWriteError(failure)
        return path
