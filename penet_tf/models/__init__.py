"""PEN-Net's generator and discriminator, and loading trained weights."""

import json
import os
import re

import keras

from penet_tf.models.discriminator import Discriminator
from penet_tf.models.generator import Generator

__all__ = [
    "Discriminator",
    "Generator",
    "discriminator_config",
    "generator_config",
    "load_generator",
    "load_weights",
    "weights_file_holds",
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


def build_without_initializing(model):
    """Builds ``model`` with zero kernels, for weights that are about to be loaded.

    Drawing the full-width generator's random kernels takes 0.2-0.3 s on a 2-core CPU, a
    tenth of a one-photo CLI run, and loading overwrites every one of them. The layers'
    initializers (and so ``get_config``) are restored afterwards.
    """
    layers = [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(getattr(layer, "kernel_initializer", None), keras.initializers.Initializer)
    ]
    initializers = [layer.kernel_initializer for layer in layers]
    try:
        for layer in layers:
            layer.kernel_initializer = keras.initializers.Zeros()
        model.build()
    finally:
        for layer, initializer in zip(layers, initializers, strict=True):
            layer.kernel_initializer = initializer


DISCRIMINATOR_HELD = "a discriminator's weights"


def weights_file_holds(path):
    """What a ``.weights.h5`` file holds, when its layers say: ``"a discriminator's
    weights"``, ``"a generator with base_channels N"`` (from the first convolution's
    kernel, [3, 3, 4, N]) or a ``PENetGAN``'s (``gan.save_weights``: both networks, under
    ``generator/`` and ``discriminator/``); else None (unreadable, or none of them)."""
    import h5py

    try:
        with h5py.File(path, "r") as weights:
            if "generator" in weights and "discriminator" in weights:
                return (
                    "a PENetGAN's weights (its generator and discriminator: load them with "
                    "PENetGAN.load_weights and save gan.generator's)"
                )
            if "classifier" in weights:
                return DISCRIMINATOR_HELD
            kernel = weights.get("dw_conv01/vars/0")
            if kernel is not None and len(kernel.shape) == 4:
                return f"a generator with base_channels {kernel.shape[-1]}"
    except (OSError, KeyError, ValueError):
        pass
    return None


def read_architecture(path, what="generator"):
    """The model arguments in ``NAME.config.json``, or a ValueError naming the file."""
    try:
        with open(path, encoding="utf-8") as handle:
            config = json.load(handle)
    except (OSError, ValueError) as error:
        raise ValueError(f"{path}: cannot read the {what}'s architecture: {error}") from None
    if not isinstance(config, dict):
        raise ValueError(
            f'{path}: expected a JSON object such as {{"base_channels": 32}}, got '
            f"{json.dumps(config)[:80]}"
        )
    return config


def weights_inside(folder):
    """The generator weights a folder holds (a training run's ``generator.weights.h5``, or
    the latest of a release's or ``convert_torch``'s ``gen_NNNNN.pth``), or None."""
    names = sorted(
        name
        for name in os.listdir(folder)
        if name == "generator.weights.h5" or re.fullmatch(r"gen_\d+\.pth", name)
    )
    return os.path.join(folder, names[-1]) if names else None


def load_generator(weights, **kwargs):
    """A built ``Generator(**kwargs)`` holding ``weights``.

    Args:
        weights: a ``.weights.h5`` file (written by training, ``convert_torch`` or
            ``save_weights``), or a released ``gen_*.pth`` checkpoint (needs PyTorch).
            A ``NAME.config.json`` beside ``NAME.weights.h5`` (training writes one) gives
            the architecture, e.g. a thinner ``base_channels``.
        **kwargs: ``Generator`` arguments; they override the config file's. ``dtype``
            defaults to float32, not to Keras' global policy (a notebook's
            ``keras.config.set_dtype_policy``, keras.json's ``floatx``: with "float16"
            the inpaint CLI's PNGs moved by a level, slower on a CPU).
    """
    weights = os.fspath(weights)
    if os.path.isdir(weights):  # (it said "No generator weights at runs/demo")
        inside = weights_inside(weights)
        hint = f": give {inside}" if inside else " (give a .weights.h5 or gen_NNNNN.pth file)"
        raise FileNotFoundError(f"{weights} is a folder, not a generator weights file{hint}")
    if not os.path.isfile(weights):
        raise FileNotFoundError(f"No generator weights at {weights}")
    config = {}
    config_path = weights[: -len(".weights.h5")] + ".config.json"
    real = os.path.realpath(weights)
    if not os.path.isfile(config_path) and real.endswith(".weights.h5"):
        # a link to a run's weights: its config lies beside the file, not the link
        config_path = real[: -len(".weights.h5")] + ".config.json"
    if weights.endswith(".weights.h5") and weights_file_holds(weights) == DISCRIMINATOR_HELD:
        # (its discriminator.config.json was read as the generator's: "Unrecognized
        # keyword arguments passed to Generator")
        raise ValueError(
            f"{weights} does not hold a generator's weights: it holds {DISCRIMINATOR_HELD} "
            "(give generator.weights.h5)"
        )
    if weights.endswith(".weights.h5") and os.path.isfile(config_path):
        config = read_architecture(config_path)
    config.update(kwargs)
    state = None
    if weights.endswith(".pth"):  # the widths from the checkpoint's shapes
        from penet_tf.convert_torch import read_state_dict, released_width

        state = read_state_dict(weights, "netG")
        config.setdefault("base_channels", released_width(state, "netG") or 32)
    try:
        generator = Generator(**{"dtype": "float32", **config})
    except (TypeError, ValueError) as error:  # e.g. an unknown key in the config file
        where = f" (from {config_path})" if os.path.isfile(config_path) else ""
        raise ValueError(f"Generator({config}){where}: {error}") from None
    build_without_initializing(generator)
    if weights.endswith(".pth"):
        from penet_tf.convert_torch import load_released_generator

        return load_released_generator(weights, generator, state=state)
    if not weights.endswith(".weights.h5"):
        raise ValueError(f"{weights}: expected a .weights.h5 file (or a released .pth checkpoint).")
    architecture = (
        f"the architecture comes from {os.path.basename(config_path)} beside the weights, "
        "as training and convert_torch write it"
    )
    load_weights(
        generator,
        weights,
        f"{weights} does not hold weights of Generator({config or ''})",
        lambda holds: (
            architecture if holds.startswith("a generator") else "give generator.weights.h5"
        ),
    )
    return generator


def load_weights(model, path, does_not_fit, advice=None, name=None):
    """``model.load_weights(path)``, or one ValueError: ``"NAME: cannot read it as a
    weights file: ..."`` (truncated, not HDF5; ``name`` defaults to ``path``), or
    ``"DOES_NOT_FIT: it holds ..."`` saying what the file holds (``weights_file_holds``,
    with ``advice(holds)`` in brackets) where Keras lists every layer it could not load."""
    try:
        model.load_weights(path)
    except OSError as error:  # h5py: truncated, or not HDF5 at all
        raise ValueError(f"{name or path}: cannot read it as a weights file: {error}") from None
    except ValueError as error:
        holds = weights_file_holds(path)
        if holds is None:
            found = str(error).splitlines()[0]
        else:
            found = f"it holds {holds}" + (f" ({advice(holds)})" if advice else "")
        raise ValueError(f"{does_not_fit}: {found}") from None
