"""Convert the released PEN-Net PyTorch checkpoints to Keras weights.

    python -m penet_tf.convert_torch --generator gen_00050.pth \
        [--discriminator dis_00050.pth] --out DIR

writes ``DIR/generator.weights.h5`` (and ``DIR/discriminator.weights.h5``), which
``Generator().load_weights(...)`` / ``Discriminator().load_weights(...)`` accept once the
model is built (``penet_tf.models.load_generator`` does both). Reading ``.pth`` files needs
PyTorch: ``pip install 'penet_tf[torch]'``. It is imported here only.
"""

import argparse
import os
import sys

import numpy as np

from penet_tf.io_utils import save_weights_atomically
from penet_tf.models import Discriminator, Generator


class CheckpointError(ValueError):
    """A checkpoint that is not the released PEN-Net format."""


def _load_state_dict(path, key):
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading .pth checkpoints needs PyTorch: pip install 'penet_tf[torch]' "
            "(torch==2.13.0, CPU build)."
        ) from error
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} is not a readable PyTorch checkpoint: {error}") from error
    if isinstance(data, dict) and key in data:
        data = data[key]
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a state dict or {{'{key}': state_dict}}.")
    state = {}
    for name, value in data.items():
        name = name[len("module.") :] if name.startswith("module.") else name
        state[name] = value.detach().cpu().numpy().astype(np.float32)
    return state


def generator_convolutions(generator):
    """{released parameter prefix: Keras Conv2D} for every convolution of the generator."""
    layers = {}
    for layer in generator.encoder + generator.decoder_convs + generator.to_rgb:
        layers[f"{layer.name}.0"] = layer
    for attention in generator.attention:
        for conv in attention.fuse_convs:
            layers[f"{attention.name}.{conv.name}.0"] = conv
    layers["decoder.0"] = generator.decoder_conv1
    layers["decoder.2"] = generator.decoder_conv2
    return layers


def _torch_kernel(weight):
    """[out, in, kh, kw] -> Keras' [kh, kw, in, out]."""
    return np.transpose(weight, (2, 3, 1, 0))


def _take(state, name, shape, path):
    if name not in state:
        raise CheckpointError(f"{path}: missing parameter {name!r}.")
    value = state.pop(name)
    if tuple(value.shape) != tuple(shape):
        raise CheckpointError(
            f"{path}: parameter {name!r} has shape {tuple(value.shape)}, expected {tuple(shape)}."
        )
    return value


def _check_consumed(state, path):
    if state:
        raise CheckpointError(f"{path}: unexpected parameters {sorted(state)[:8]}.")


def load_released_generator(path, generator=None):
    """Returns a built ``Generator`` holding the weights of a released ``gen_*.pth``."""
    state = _load_state_dict(path, "netG")
    generator = generator or Generator()
    if not generator.built:
        generator.build()
    for prefix, conv in generator_convolutions(generator).items():
        kh, kw, cin, cout = conv.kernel.shape
        kernel = _take(state, f"{prefix}.weight", (cout, cin, kh, kw), path)
        bias = _take(state, f"{prefix}.bias", (cout,), path)
        conv.kernel.assign(_torch_kernel(kernel))
        conv.bias.assign(bias)
    _check_consumed(state, path)
    return generator


def load_released_discriminator(path, discriminator=None):
    """Returns a built ``Discriminator`` holding the weights of a released ``dis_*.pth``.

    The released network stores ``weight_orig`` and the power-iteration vectors u, v; in
    eval mode it convolves with ``weight_orig / (u . W v)``. Keras' spectral norm keeps the
    normalised kernel itself, so that is what is stored (and u as ``vector_u``).
    """
    state = _load_state_dict(path, "netD")
    discriminator = discriminator or Discriminator()
    if not discriminator.built:
        discriminator.build()
    for index, wrapper in enumerate(discriminator.encoder):
        prefix = f"encoder.{2 * index}"
        conv = wrapper.layer
        kh, kw, cin, cout = conv.kernel.shape
        weight = _take(state, f"{prefix}.weight_orig", (cout, cin, kh, kw), path)
        u = _take(state, f"{prefix}.weight_u", (cout,), path)
        v = _take(state, f"{prefix}.weight_v", (cin * kh * kw,), path)
        sigma = float(u @ (weight.reshape(cout, -1) @ v))
        conv.kernel.assign(_torch_kernel(weight / sigma))
        wrapper.vector_u.assign(u[None, :])
    classifier = discriminator.classifier
    kh, kw, cin, cout = classifier.kernel.shape
    classifier.kernel.assign(
        _torch_kernel(_take(state, "classifier.weight", (cout, cin, kh, kw), path))
    )
    classifier.bias.assign(_take(state, "classifier.bias", (cout,), path))
    _check_consumed(state, path)
    return discriminator


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.convert_torch",
        description="Convert released PEN-Net PyTorch checkpoints (gen_*.pth, dis_*.pth) "
        "to Keras .weights.h5 files.",
    )
    parser.add_argument("--generator", required=True, help="released generator checkpoint (.pth)")
    parser.add_argument("--discriminator", help="released discriminator checkpoint (.pth)")
    parser.add_argument("--out", required=True, help="output directory")
    args = parser.parse_args(argv)
    try:
        generator = load_released_generator(args.generator)
        discriminator = (
            load_released_discriminator(args.discriminator) if args.discriminator else None
        )
    except (CheckpointError, FileNotFoundError, ImportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    out = os.path.join(args.out, "generator.weights.h5")
    save_weights_atomically(generator, out)
    print(f"wrote {out}")
    if discriminator is not None:
        out = os.path.join(args.out, "discriminator.weights.h5")
        save_weights_atomically(discriminator, out)
        print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
