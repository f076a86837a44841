"""PEN-Net's generator and discriminator."""

from penet_tf.models.discriminator import Discriminator
from penet_tf.models.generator import Generator

__all__ = ["Discriminator", "Generator"]
