"""What the command-line tools share: ``run`` (their error handling) and common arguments.

Library code never imports a CLI module; CLIs import the libraries and this module.

Example:

    def main(argv=None):
        return run(_main, argv)  # _main(argv) parses and works, returns the exit status

    if __name__ == "__main__":
        sys.exit(main())
"""

import argparse
import os
import re
import signal
import stat
import sys
import threading
import traceback

from penet_tf.errors import PenetError

# Errors a user can fix from the message alone: one line, exit status 2.
KNOWN_ERRORS = (PenetError, ValueError, OSError, ImportError)
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
TERMINATED = 143  # 128 + SIGTERM (a `kill`, a job scheduler or container stopping the job)


def printable(text):
    """``text`` as any stream can print it: a file name that is not UTF-8 (its bytes kept
    as surrogates, ``os.fsdecode``) shown as ``\\udce9`` instead of raising
    UnicodeEncodeError while the error or a skipped file is reported."""
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


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
    """``stream`` wrapped in ``_ReaderMayGo`` where it writes to a pipe (a stream
    without a file descriptor, pytest's capture say, is left as it is)."""
    try:
        if stat.S_ISFIFO(os.fstat(stream.fileno()).st_mode):
            return _ReaderMayGo(stream, name)
    except (AttributeError, OSError, ValueError):
        pass
    return stream


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
