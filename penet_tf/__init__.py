"""penet_tf: PEN-Net image inpainting (Zeng et al., CVPR 2019) in TensorFlow 2 / Keras 3.

>>> from penet_tf import Generator, Discriminator, AttentionTransfer
"""

import os

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
