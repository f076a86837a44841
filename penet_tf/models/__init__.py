"""PEN-Net's generator and discriminator, and loading trained weights."""

import json
import os

from penet_tf.models.discriminator import Discriminator
from penet_tf.models.generator import Generator

__all__ = [
    "Discriminator",
    "Generator",
    "discriminator_config",
    "generator_config",
    "load_generator",
]

# Generator arguments that describe the architecture (saved beside trained weights).
ARCHITECTURE_KEYS = ("base_channels", "kernel_init")


def generator_config(generator):
    """The architecture arguments of ``generator``, for ``NAME.config.json``."""
    config = generator.get_config()
    return {key: config[key] for key in ARCHITECTURE_KEYS}


def discriminator_config(discriminator):
    """The architecture arguments of ``discriminator``, for ``NAME.config.json``."""
    config = discriminator.get_config()
    return {key: config[key] for key in ("base_channels", "spectral_norm")}


def load_generator(weights, **kwargs):
    """A built ``Generator(**kwargs)`` holding ``weights``.

    Args:
        weights: a ``.weights.h5`` file (written by training, ``convert_torch`` or
            ``save_weights``), or a released ``gen_*.pth`` checkpoint (needs PyTorch).
            A ``NAME.config.json`` beside ``NAME.weights.h5`` (training writes one) gives
            the architecture, e.g. a thinner ``base_channels``.
        **kwargs: ``Generator`` arguments; they override the config file's.
    """
    weights = os.fspath(weights)
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"No generator weights at {weights}")
    config = {}
    config_path = weights[: -len(".weights.h5")] + ".config.json"
    if weights.endswith(".weights.h5") and os.path.isfile(config_path):
        with open(config_path) as handle:
            config = json.load(handle)
    config.update(kwargs)
    generator = Generator(**config)
    generator.build()
    if weights.endswith(".pth"):
        from penet_tf.convert_torch import load_released_generator

        return load_released_generator(weights, generator)
    if not weights.endswith(".weights.h5"):
        raise ValueError(f"{weights}: expected a .weights.h5 file (or a released .pth checkpoint).")
    try:
        generator.load_weights(weights)
    except ValueError as error:
        raise ValueError(
            f"{weights} does not hold weights of Generator({config or ''}): {error}"
        ) from error
    return generator
