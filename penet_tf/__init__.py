"""penet_tf: PEN-Net image inpainting (Zeng et al., CVPR 2019) in TensorFlow 2 / Keras 3.

>>> from penet_tf import Generator, Discriminator, AttentionTransfer
"""

import os
import signal
import sys


def _interrupted_while_starting(signum, frame):
    """Ctrl-C while ``python -m penet_tf.<command>`` imports TensorFlow: one line and exit
    status 130, as the commands answer it later (``penet_tf.cli.run``, which puts the
    usual handler back), instead of a traceback through the import machinery."""
    sys.stderr.write("interrupted\n")
    sys.stderr.flush()
    os._exit(130)


# runpy imports the package with sys.argv[0] == "-m", before the command's module.
if sys.argv[:1] == ["-m"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
    signal.signal(signal.SIGINT, _interrupted_while_starting)

# TensorFlow's C++ start-up chatter (CUDA probing, oneDNN notes) hides our own messages.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

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
