"""penet_tf: PEN-Net image inpainting (Zeng et al., CVPR 2019) in TensorFlow 2 / Keras 3.

>>> from penet_tf import Generator, Discriminator, AttentionTransfer
"""

import contextlib
import os
import signal
import subprocess
import sys

_STDERR = 2  # where the interrupted line goes, also while the import's stderr is filtered


def _interrupted_while_starting(signum, frame):
    """Ctrl-C while ``python -m penet_tf.<command>`` imports TensorFlow: one line and exit
    status 130, as the commands answer it later (``penet_tf.cli.run``, which puts the
    usual handler back), instead of a traceback through the import machinery."""
    os.write(_STDERR, b"interrupted\n")
    os._exit(130)


# TensorFlow's C++ start-up chatter, written through absl before its logging is set up,
# whatever TF_CPP_MIN_LOG_LEVEL says: "WARNING: All log messages before
# absl::InitializeLog() ...", then INFO lines ("I0000 ... port.cc] oneDNN custom
# operations are on", "cudart_stub.cc] Could not find cuda drivers"), twice, and at
# TF_CPP_MIN_LOG_LEVEL=0 cpu_feature_guard's INFO line and its unprefixed second line
# ("To enable the following instructions: AVX2 ... rebuild TensorFlow ..."). Warnings,
# errors and fatal lines (a CPU without AVX) are kept.
_CHATTER = (
    rb"WARNING: All log messages before absl::InitializeLog\(\)|I\d{4} "
    rb"|To enable the following instructions: "
)
# The filter: a process of its own, so that what it has been given reaches the terminal
# even when the import kills this one (TensorFlow aborts after a fatal line).
_FILTER = (
    "import re, sys\n"
    f"chatter = re.compile({_CHATTER!r})\n"
    "for line in sys.stdin.buffer:\n"
    "    if not chatter.match(line):\n"
    "        sys.stderr.buffer.write(line)\n"
    "        sys.stderr.buffer.flush()\n"
)


@contextlib.contextmanager
def _quiet_start():
    """Around a command's import of TensorFlow: stderr goes through ``_FILTER``, which
    drops the start-up chatter (above), so that a command's one-line answer (``error:
    --masks y.png: no such file``) is not preceded by five lines of it."""
    global _STDERR
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no stderr file descriptor
        yield
        return
    try:
        filtering = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _FILTER],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=saved,
            start_new_session=True,  # (a Ctrl-C is this process's to answer)
        )
    except OSError:
        os.close(saved)
        yield
        return
    os.dup2(filtering.stdin.fileno(), 2)
    _STDERR = saved
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        _STDERR = 2
        os.close(saved)
        filtering.stdin.close()  # its end of input: it writes what is left and exits
        try:
            filtering.wait(timeout=10)
        except subprocess.TimeoutExpired:
            filtering.kill()


def _runs_a_command(argv, orig_argv):
    """Whether this process is ``python -m penet_tf.<command>`` starting: runpy imports
    the package with ``sys.argv[0] == "-m"`` before the command's module. (A program
    run as ``python -m theirs`` that imports penet_tf has that ``argv`` too: it kept the
    start-up's Ctrl-C handler, ``os._exit(130)``, for its whole life, so its own
    ``finally`` / ``except KeyboardInterrupt`` clean-up never ran.)"""
    if argv[:1] != ["-m"]:
        return False
    words = iter(orig_argv[1:])
    for word in words:  # Python's own options, up to -m MODULE (flags may be joined: -Bm)
        if not word.startswith("-") or word.startswith("--"):
            continue
        for position, flag in enumerate(word[1:], 2):
            if flag in "WXm":  # options with a value: the rest of the word, or the next
                value = word[position:] or next(words, "")
                if flag == "m":
                    return value == "penet_tf" or value.startswith("penet_tf.")
                break
    return False


def _open_standard_descriptors():
    """A command started with stdin, stdout or stderr closed (``2>&-``, ``>&-``, some
    daemons and schedulers): each is opened on os.devnull, before anything else opens a
    file. Otherwise the next file opened took the number: with stderr closed, the run's
    lock file or a photo's result was file descriptor 2, where TensorFlow's C++ code
    writes its warnings and errors (into the file)."""
    for descriptor in (0, 1, 2):
        try:
            os.fstat(descriptor)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)
            if opened != descriptor:  # (a lower one taken meanwhile: not in order)
                os.dup2(opened, descriptor)
                os.close(opened)


_COMMAND = _runs_a_command(sys.argv, getattr(sys, "orig_argv", []))
if _COMMAND:
    _open_standard_descriptors()
if _COMMAND and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

with _quiet_start() if _COMMAND and "tensorflow" not in sys.modules else contextlib.nullcontext():
    import keras  # noqa: E402

if keras.backend.backend() != "tensorflow":
    raise ImportError(
        f"penet_tf needs Keras' TensorFlow backend, but KERAS_BACKEND is "
        f"{keras.backend.backend()!r}: set KERAS_BACKEND=tensorflow."
    )

from penet_tf import losses  # noqa: E402
from penet_tf.layers.attention_transfer import AttentionTransfer  # noqa: E402
from penet_tf.models.discriminator import Discriminator  # noqa: E402
from penet_tf.models.generator import Generator  # noqa: E402

__version__ = "0.1.0"
__all__ = ["AttentionTransfer", "Discriminator", "Generator", "losses"]
