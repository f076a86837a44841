"""What the command-line tools share: ``run`` (their error handling) and common arguments.

Library code never imports a CLI module; CLIs import the libraries and this module.

Example:

    def main(argv=None):
        return run(_main, argv)  # _main(argv) parses and works, returns the exit status

    if __name__ == "__main__":
        sys.exit(main())
"""

import argparse
import math
import os
import re
import signal
import stat
import sys
import threading
import traceback

from penet_tf.errors import PenetError, printable

# Errors a user can fix from the message alone: one line, exit status 2.
KNOWN_ERRORS = (PenetError, ValueError, OSError, ImportError)
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
TERMINATED = 143  # 128 + SIGTERM (a `kill`, a job scheduler or container stopping the job)


def say(text, file=None):
    """``print`` of a line that may hold a user's path (``printable``)."""
    print(printable(text), file=file)


def error_message(error):
    """The text of ``error`` (its type's name when it has none), printable."""
    return printable(str(error) or type(error).__name__)


class _ReaderMayGo:
    """``sys.stdout`` / ``sys.stderr`` of a command whose reader may go away (``| head``,
    a log collector or ``tee`` that died): the first write or flush that meets the
    closed pipe points the stream's file descriptor at os.devnull and the command goes
    on, its output dropped (one line on stderr says so when stdout is the one). Without
    it the write's ``BrokenPipeError`` ended the command: ``inpaint ... | head`` said
    "error: [Errno 32] Broken pipe" (exit 2) after its results, and training stopped at
    its next progress line without saving the steps since its last checkpoint."""

    def __init__(self, stream, name):
        self._stream, self._name, self._gone = stream, name, False

    def write(self, text):
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            self._reader_gone()
            return len(text)

    def flush(self):
        try:
            self._stream.flush()
        except BrokenPipeError:
            self._reader_gone()

    def _reader_gone(self):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())  # (the buffer's rest goes there too)
        finally:
            os.close(devnull)
        try:
            self._stream.flush()
        except OSError:
            pass
        if not self._gone and self._name == "stdout":
            print(
                "penet_tf: stdout's reader has gone (a closed pipe): the command goes on "
                "without printing there",
                file=sys.stderr,
                flush=True,
            )
        self._gone = True

    def __getattr__(self, name):  # isatty, fileno, encoding, buffer, ...
        return getattr(self._stream, name)


def _pipe_safe(stream, name):
    """``stream`` wrapped in ``_ReaderMayGo`` where it writes to a pipe or a socket
    (systemd's journal takes a service's output through one; a stream without a file
    descriptor, pytest's capture say, is left as it is)."""
    try:
        mode = os.fstat(stream.fileno()).st_mode
        if stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode):
            return _ReaderMayGo(stream, name)
    except (AttributeError, OSError, ValueError):
        pass
    return stream


def cpu_quota(cgroups="/proc/self/cgroup", root="/sys/fs/cgroup"):
    """How many CPUs' time this process may use by its cgroups' CPU quota (a container's
    ``--cpus``, a Kubernetes CPU limit): the smallest ``cpu.max`` (cgroup v2) or
    ``cpu.cfs_quota_us / cpu.cfs_period_us`` (v1) of its cgroup and the cgroups above
    it, as a float (1.5); None where none is set or none can be read."""
    try:
        with open(cgroups) as listed:
            lines = listed.read().splitlines()
    except OSError:
        return None
    limits = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        hierarchy, controllers, path = fields
        if hierarchy == "0" and not controllers:  # v2: one tree
            bases, read = [root], _cpu_max
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's tree
            bases = [os.path.join(root, name) for name in (controllers, "cpu", "cpu,cpuacct")]
            read = _cfs_quota
        else:
            continue
        names = [name for name in path.split("/") if name]
        for base in dict.fromkeys(bases):
            # The process's cgroup and those above it (in a container without a cgroup
            # namespace the path is the host's, and the container's cgroup is the mount
            # itself: base)
            for depth in range(len(names), -1, -1):
                limit = read(os.path.join(base, *names[:depth]))
                if limit is not None:
                    limits.append(limit)
    return min(limits) if limits else None


def _cpu_max(folder):
    try:
        with open(os.path.join(folder, "cpu.max")) as limit:
            quota, period = limit.read().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError, ZeroDivisionError):
        return None


def _cfs_quota(folder):
    try:
        with open(os.path.join(folder, "cpu.cfs_quota_us")) as quota_file:
            quota = int(quota_file.read())
        with open(os.path.join(folder, "cpu.cfs_period_us")) as period_file:
            period = int(period_file.read())
        return None if quota <= 0 else quota / period
    except (OSError, ValueError, ZeroDivisionError):
        return None


def fit_thread_pools():
    """Sizes TensorFlow's thread pools to the CPU quota where one is set below the CPUs
    the process may run on: TensorFlow counts the CPUs (``sched_getaffinity``), not the
    quota, so a container limited to 2 CPUs on a 64-core host ran 64 threads that the
    quota stalls in turn. Left alone: pools the user sized (``TF_NUM_INTRAOP_THREADS``,
    ``TF_NUM_INTEROP_THREADS``, ``tf.config.threading``), and TensorFlow started already
    (a program that used it before calling a command). Returns the thread count set, or
    None."""
    quota = cpu_quota()
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # (macOS, Windows: no affinity, no cgroups)
        cpus = os.cpu_count() or 1
    if quota is None or math.ceil(quota) >= cpus:
        return None
    threads = max(1, math.ceil(quota))
    import tensorflow as tf

    pools = (
        ("TF_NUM_INTRAOP_THREADS", tf.config.threading.get_intra_op_parallelism_threads,
         tf.config.threading.set_intra_op_parallelism_threads),
        ("TF_NUM_INTEROP_THREADS", tf.config.threading.get_inter_op_parallelism_threads,
         tf.config.threading.set_inter_op_parallelism_threads),
    )  # fmt: skip
    set_any = False
    try:
        for variable, get, set_threads in pools:
            if not os.environ.get(variable) and not get():
                set_threads(threads)
                set_any = True
    except RuntimeError:  # "... cannot be modified after initialization"
        return None
    return threads if set_any else None


def run(function, argv=None, interrupted="interrupted"):
    """Runs ``function(argv)`` (a CLI's body, returning its exit status) for the user.

    * ``ValueError``, ``OSError``, ``ImportError`` and ``penet_tf.errors.PenetError``:
      ``error: MESSAGE`` on stderr, no traceback, exit status 2 (a ``PenetError``'s
      ``exit_status`` if it sets another);
    * ``KeyboardInterrupt`` (Ctrl-C): one line on stderr, exit status 130. The line is
      the exception's message when it starts with "interrupted" (e.g. "interrupted after
      3 of 8 images; those written are complete"), else "interrupted: MESSAGE", or
      ``interrupted`` when the exception has no message;
    * SIGTERM (``kill``, a scheduler or container stopping the job) stops the command as
      Ctrl-C does, with the same clean-up (temporaries removed, a converter child
      killed; training saves after its step), "terminated" for "interrupted", exit
      status 143 (the demo server stops with 0, as on Ctrl-C). Without this Python died
      at once and left those to the next run. Taken only where SIGTERM has its default
      action (an embedding program's own handler, or SIG_IGN, is left alone);
    * a closed stdout or stderr (``>&-``: None in Python) is opened on os.devnull
      (the progress bar's ``isatty()``, Keras' progress lines raised AttributeError);
      a pipe whose reader goes away (``| head``) is pointed there when it does, and the
      command goes on (``_ReaderMayGo``);
    * any other ``Exception`` (a bug, or a setting nothing names): in ``python -m
      penet_tf.<command>``, its traceback as Python prints it and exit status 1, printed
      here rather than by the interpreter at exit: the frames it holds (a tf.data
      iterator still reading photos) are freed while the interpreter still runs threads
      (left to shutdown, inpaint hung after the traceback, 6 of 6 runs on 2400 x 3200
      photos); elsewhere it passes through, as do ``SystemExit`` (argparse's usage
      errors) and anything not an ``Exception``.
    """
    import penet_tf

    fit_thread_pools()  # (before TensorFlow starts: its pools are made once)
    streams = sys.stdout, sys.stderr
    for stream in ("stdout", "stderr"):  # closed (`>&-`: a daemon, a scheduler): None
        if getattr(sys, stream) is None:
            setattr(sys, stream, open(os.devnull, "w"))  # (Keras' progress, isatty())
        setattr(sys, stream, _pipe_safe(getattr(sys, stream), stream))
    if signal.getsignal(signal.SIGINT) is penet_tf._interrupted_while_starting:
        signal.signal(signal.SIGINT, signal.default_int_handler)  # started: Ctrl-C as usual
    terminated = []

    def on_sigterm(signum, frame):
        terminated.append(signum)
        raise KeyboardInterrupt

    on_sigterm.stops_like_ctrl_c = True  # (the trainer may take it over: it saves first)

    previous = None
    if (
        threading.current_thread() is threading.main_thread()
        and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    ):
        previous = signal.signal(signal.SIGTERM, on_sigterm)
    try:
        return function(argv)
    except KeyboardInterrupt as interrupt:
        sigterm = bool(terminated) or getattr(interrupt, "signum", None) == signal.SIGTERM
        word = "terminated" if sigterm else "interrupted"
        message = str(interrupt)
        if not message:
            message = interrupted.replace("interrupted", word, 1)
        elif message.startswith("interrupted"):
            message = message.replace("interrupted", word, 1)
        else:
            message = f"{word}: {message}"
        print(message, file=sys.stderr, flush=True)
        return TERMINATED if sigterm else INTERRUPTED
    except KNOWN_ERRORS as error:
        print(f"error: {error_message(error)}", file=sys.stderr, flush=True)
        return getattr(error, "exit_status", 2)
    except Exception:
        if not penet_tf._COMMAND:
            raise
        traceback.print_exc()
        sys.stderr.flush()
        return 1
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        for stream, before in zip(("stdout", "stderr"), streams, strict=True):
            wrapped = getattr(sys, stream)
            if isinstance(wrapped, _ReaderMayGo):
                wrapped.flush()  # (a reader gone since: said here, not at exit)
                setattr(sys, stream, before if before is not None else wrapped._stream)


def add_model_arguments(parser, required=True):
    """``--model``, shared by inpaint and evaluate."""
    parser.add_argument(
        "--model",
        required=required,
        help="a SavedModel (version directory with saved_model.pb, or its base directory: "
        "the highest version is used) or generator weights (.weights.h5, with an optional "
        "NAME.config.json beside it; or a released gen_*.pth, which needs PyTorch)",
    )


def add_mask_arguments(group):
    """``--masks`` / ``--mask-type`` in a mutually exclusive group (inpaint and evaluate)."""
    from penet_tf.inpainting import MASK_TYPES

    group.add_argument(
        "--masks",
        help="mask file or folder; masks pair with images by file name without extension "
        "(cat.jpg <-> cat.png); a hole where the largest colour channel is >= 128 of 255 "
        "(antialiased edges: half-opaque or more), or the 1s of a 0/1 mask; sizes must "
        "equal the image's, but a single file serves every image of a folder of its aspect "
        "ratio (within 1 %%; resized, nearest neighbour; other photos are named and skipped)",
    )
    group.add_argument(
        "--mask-type",
        choices=MASK_TYPES,
        help="generate the masks instead: centre = the centred (H/2)x(W/2) block (the "
        "release's test mask), strokes = free-form brush strokes covering 10-40%% of the "
        "image, seeded by --seed and the image's position",
    )


STRATEGY_OPTIONS = ("strategy", "model_size", "margin", "trigger", "residual_aggregation")


def add_strategy_arguments(parser):
    """``--strategy``, ``--model-size``, ``--margin``, ``--trigger`` and
    ``--residual-aggregation`` (penet_tf.high_resolution; inpaint and evaluate)."""
    from penet_tf.high_resolution import STRATEGIES, PhotoStrategy

    defaults = PhotoStrategy()
    group = parser.add_argument_group(
        "large photos (generator weights; a SavedModel runs the strategy it was exported with)"
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="full = the network on the whole photo; resize = the photo's long side to "
        "--model-size; crop = a region around each hole group; auto (default) = crop when "
        "the long side exceeds --trigger, else full",
    )
    group.add_argument(
        "--model-size",
        type=int,
        help=f"network input long side for crop/resize (default {defaults.model_size})",
    )
    group.add_argument(
        "--margin", type=int, help=f"crop: context around the holes (default {defaults.margin})"
    )
    group.add_argument(
        "--trigger", type=int, help=f"auto: crop above this long side (default {defaults.trigger})"
    )
    group.add_argument(
        "--residual-aggregation",
        action=argparse.BooleanOptionalAction,
        help="crop/resize: add the known pixels' full-resolution detail into the holes "
        "through the network's attention (default on)",
    )


def strategy_options(args):
    """The strategy options given on the command line, as ``PhotoStrategy`` fields
    (``{"name": "crop", "margin": 64}``); {} when none was."""
    return {
        "name" if name == "strategy" else name: getattr(args, name)
        for name in STRATEGY_OPTIONS
        if getattr(args, name, None) is not None
    }


def strategy_from_args(args):
    """The ``PhotoStrategy`` the options ask for (the others at their defaults), or None
    when none was given (ValueError for bad values)."""
    given = strategy_options(args)
    if not given:
        return None
    return photo_strategy(given.pop("name", "auto"), **given)


def photo_strategy(name, **options):
    """``PhotoStrategy(name, **options)`` from command-line values: a bad one is a
    ValueError naming its option as typed (``--model-size must be ...``)."""
    from penet_tf.high_resolution import PhotoStrategy

    try:
        return PhotoStrategy(name, **options)
    except ValueError as error:  # "model_size must be ..." -> "--model-size must be ..."
        message = str(error)
        for option in options:
            message = re.sub(rf"\b{option}\b", "--" + option.replace("_", "-"), message)
        raise ValueError(message) from None


def positive_int(text):
    """argparse ``type``: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def version_int(text):
    """argparse ``type``: a model version TF Serving reads (0 to 2^63 - 1, int64): the
    client's --version 2^64 ended in "error: Value out of range" without naming it."""
    value = int(text)
    if not 0 <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be 0 to 2^63 - 1 (int64), got {value}")
    return value


def seed_int(text):
    """argparse ``type``: a seed TensorFlow takes (int64): 2^64 stopped inpaint and
    evaluate with an OverflowError traceback after loading, and 2^63 drew the masks of
    -2^63."""
    value = int(text)
    if not -(2**63) <= value < 2**63:
        raise argparse.ArgumentTypeError(f"must be within int64 (|seed| < 2^63), got {value}")
    return value


def add_batch_arguments(parser, batch_size):
    """``--batch-size`` (default ``batch_size``), ``--seed`` and ``--quiet`` (inpaint and
    evaluate)."""
    parser.add_argument(
        "--batch-size",
        type=positive_int,
        default=batch_size,
        help=f"images per model call (default {batch_size}); only images of equal size share "
        "a batch",
    )
    parser.add_argument(
        "--seed", type=seed_int, default=0, help="seed of --mask-type strokes (default 0)"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
