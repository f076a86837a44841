"""Layers of PEN-Net: the attention transfer network and its patch operations."""

from penet_tf.layers.attention_transfer import AttentionTransfer
from penet_tf.layers.patches import extract_patches

__all__ = ["AttentionTransfer", "extract_patches"]
