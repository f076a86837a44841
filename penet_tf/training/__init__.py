"""Adversarial training of PEN-Net: the GAN model, strategies, checkpoints and the loop."""

from penet_tf.training.gan import GANOptimizers, PENetGAN, StepDecay

__all__ = ["GANOptimizers", "PENetGAN", "StepDecay"]
