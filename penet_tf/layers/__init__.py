"""Layers of PEN-Net: the attention transfer network, its patch operations, and the
discriminator's spectral norm."""

from penet_tf.layers.attention_transfer import AttentionTransfer
from penet_tf.layers.patches import extract_patches
from penet_tf.layers.spectral_norm import SpectralNorm

__all__ = ["AttentionTransfer", "SpectralNorm", "extract_patches"]
