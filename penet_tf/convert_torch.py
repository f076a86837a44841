"""Convert between the released PEN-Net PyTorch checkpoints and Keras weights.

    python -m penet_tf.convert_torch --generator gen_00050.pth \
        [--discriminator dis_00050.pth] --out DIR [--force]
    python -m penet_tf.convert_torch --to-torch --weights DIR --out DIR2 [--force]

The first writes ``DIR/generator.weights.h5`` with its architecture,
``DIR/generator.config.json`` (and ``DIR/discriminator.weights.h5`` +
``discriminator.config.json``). ``penet_tf.models.load_generator`` reads such a pair;
``Generator().load_weights(...)`` / ``Discriminator().load_weights(...)`` accept the
weights once the model is built. A checkpoint holding the other network (``netD`` given
as ``--generator``, or ``netG`` as ``--discriminator``), or a state dict entry that is not
a tensor, is an error naming the file and what it holds. The second reads those files (as
this converter or ``penet_tf.train`` writes them, with the ``*.config.json`` beside them)
and writes the release's layout in ``DIR2``: ``gen_NNNNN.pth`` (``{'netG': state_dict}``),
``dis_NNNNN.pth`` (``{'netD': state_dict}``, spectral-norm state as ``weight_orig`` /
``weight_u`` / ``weight_v``) and ``latest.ckpt`` naming ``NNNNN`` (``--iteration``,
default 0), which the authors' ``test.py`` loads as it finds them (their trainer's
``load()`` also reads an ``opt_NNNNN.pth`` of Adam states, which weights do not hold). The
files use torch's legacy (non-zip) format, which every PyTorch reads (the release was
tested on 1.1, before the zip format). Released -> Keras -> released is bit-identical for
every tensor. The widths come from the checkpoint's shapes (a thin network round-trips);
the release's own code loads only its widths (32 and 64), which ``--to-torch`` notes.

Every file is written atomically (``penet_tf.io_utils.atomic_path``); a weights file and
its config are renamed into place together, so they always match. A target that exists
(weights, config, ``gen_*.pth``, ``dis_*.pth``, ``latest.ckpt``), or the other network's
files left by an earlier conversion (they would be paired with the new ones), is refused
before any work unless ``--force`` is given, which replaces (or removes) them. ``.pth``
files need PyTorch: ``pip install 'penet_tf[torch]'``. It is imported here only.
"""

import argparse
import contextlib
import os
import sys

import numpy as np

from penet_tf.cli import run
from penet_tf.io_utils import (
    atomic_path,
    check_file_target,
    check_folder_target,
    save_weights_and_configs,
    sweep_temporaries,
)
from penet_tf.layers.spectral_norm import SpectralNorm
from penet_tf.models import (
    Discriminator,
    Generator,
    discriminator_config,
    generator_config,
    load_generator,
    load_weights,
    read_architecture,
)

# What convert_released writes per network: NAME.weights.h5 and NAME.config.json.
SUFFIXES = (".weights.h5", ".config.json")


class CheckpointError(ValueError):
    """A checkpoint that is not the released PEN-Net format."""


def _torch():
    try:
        import torch
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "Reading and writing .pth checkpoints needs PyTorch: pip install "
            "'penet_tf[torch]' (torch==2.13.0, CPU build)."
        ) from error
    return torch


# The wrapper key of each released checkpoint: {key: (what it holds, convert_torch's flag)}.
_KINDS = {"netG": ("generator", "--generator"), "netD": ("discriminator", "--discriminator")}


def _state_kind(names):
    """The network whose parameter ``names`` these recognisably are: ``netD``, ``netG``
    or None."""
    if any(name.endswith(".weight_orig") or name.startswith("classifier.") for name in names):
        return "netD"
    if any(name.startswith(("torgb", "dw_conv", "up_conv", "at_conv")) for name in names):
        return "netG"
    return None


def read_state_dict(path, key):
    """The state dict of the released checkpoint ``path``: {name: float32 array}.

    ``path`` holds ``{key: state_dict, ...}`` (its other entries, e.g. ``epoch``, are
    ignored) or a bare state dict, in which every entry must be a tensor (a ``module.``
    prefix is dropped). A checkpoint of the other network (``netD`` where ``netG`` is
    expected, or the other network's parameter names) is a ``CheckpointError`` saying so.
    """
    torch = _torch()
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No checkpoint at {path}")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} {_unreadable(path, error)}") from None
    what = _KINDS[key][0]
    (other,) = (kind for kind in _KINDS if kind != key)
    other_what, other_flag = _KINDS[other]
    wrong = f"{path} is not a {what} checkpoint: it holds"
    hint = f"convert_torch takes it as {other_flag}"
    expected = f"expected {{'{key}': state_dict}} or a bare state dict"
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: {expected}, got a {type(data).__name__}.")
    if key in data:
        data, where = data[key], f"{path}: {key!r} entry"
        if not isinstance(data, dict):
            raise CheckpointError(
                f"{path}: {key!r} holds a {type(data).__name__}, not a state dict."
            )
    elif other in data:
        raise CheckpointError(f"{wrong} {other!r} (a {other_what}'s; {hint}).")
    else:
        where = f"{path}: entry"
    state = {}
    for name, value in data.items():
        if not isinstance(name, str):
            raise CheckpointError(f"{where} {name!r} is not a parameter name ({expected}).")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(
                f"{where} {name!r} is not a tensor ({type(value).__name__} "
                f"{value!r:.40}; {expected})."
            )
        name = name[len("module.") :] if name.startswith("module.") else name
        # (float() first: NumPy has no bfloat16; float16 / bfloat16 -> float32 is exact)
        state[name] = value.detach().cpu().float().numpy()
    if _state_kind(state) == other:
        names = ", ".join(repr(name) for name in sorted(state)[:2])
        raise CheckpointError(f"{wrong} a {other_what}'s parameters ({names}, ...; {hint}).")
    return state


def _unreadable(path, error):
    """Why ``torch.load`` could not read ``path``, in one line (torch's own message is
    several, with terminal colour codes and advice to unpickle arbitrary code)."""
    try:
        with open(path, "rb") as handle:
            magic = handle.read(8)
    except OSError:
        magic = b""
    if magic.startswith(b"\x89HDF"):
        return (
            "is an HDF5 file (Keras weights?), not a PyTorch checkpoint: convert Keras "
            "weights with --to-torch --weights FOLDER"
        )
    if "weights_only" in str(error) and (magic.startswith(b"PK") or magic[:1] == b"\x80"):
        return (
            "holds pickled Python objects besides tensors (a whole nn.Module?), not the "
            "released {'netG' or 'netD': state_dict}: save the model's state_dict() instead"
        )
    return "is not a PyTorch checkpoint (a zip or pickle file of tensors)"


def released_width(state, key):
    """The ``base_channels`` of a released state dict (``netG``: its first convolution's
    outputs; ``netD``: its first spectral-norm convolution's), or None."""
    name = "dw_conv01.0.weight" if key == "netG" else "encoder.0.weight_orig"
    value = state.get(name)
    return None if value is None or value.ndim != 4 else int(value.shape[0])


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


def _keras_kernel(kernel):
    """Keras' [kh, kw, in, out] -> [out, in, kh, kw]."""
    return np.transpose(kernel, (3, 2, 0, 1))


def _keras_vector_v(v, kernel_shape):
    """PyTorch's ``weight_v`` (in, kh, kw order) -> ``SpectralNorm.vector_v`` (kh, kw, in)."""
    kh, kw, cin, _ = kernel_shape
    return v.reshape(cin, kh, kw).transpose(1, 2, 0).reshape(-1)


def _torch_vector_v(v, kernel_shape):
    """``SpectralNorm.vector_v`` (kh, kw, in order) -> PyTorch's ``weight_v`` (in, kh, kw)."""
    kh, kw, cin, _ = kernel_shape
    return v.reshape(kh, kw, cin).transpose(2, 0, 1).reshape(-1)


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


def load_released_generator(path, generator=None, state=None):
    """Returns a built ``Generator`` holding the weights of a released ``gen_*.pth``
    (``state``: its state dict when already read)."""
    state = read_state_dict(path, "netG") if state is None else state
    generator = generator or Generator(base_channels=released_width(state, "netG") or 32)
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


def load_released_discriminator(path, discriminator=None, state=None):
    """Returns a built ``Discriminator`` holding the weights of a released ``dis_*.pth``
    (``state``: its state dict when already read).

    The released network stores ``weight_orig`` and the power-iteration vectors u, v. With
    the default ``spectral_norm="released"`` they map one to one (W to the kernel, u and v
    to ``vector_u`` / ``vector_v``): the network continues exactly where the release's
    stopped (its optimizers' ``opt_N.pth`` is not read: Adam's moments and the step start
    afresh).
    Keras' in-place spectral norm (``spectral_norm="keras"``) keeps the normalised kernel
    itself: there ``weight_orig / (u . W v)`` is stored, and u as ``vector_u``.
    """
    state = read_state_dict(path, "netD") if state is None else state
    width = released_width(state, "netD") or 64
    discriminator = discriminator or Discriminator(base_channels=width)
    if not discriminator.built:
        discriminator.build()
    if discriminator.spectral_norm == "none":
        raise CheckpointError(
            "The released discriminator has spectral norm; got spectral_norm='none'."
        )
    for index, wrapper in enumerate(discriminator.encoder):
        prefix = f"encoder.{2 * index}"
        conv = wrapper.layer
        kh, kw, cin, cout = conv.kernel.shape
        weight = _take(state, f"{prefix}.weight_orig", (cout, cin, kh, kw), path)
        u = _take(state, f"{prefix}.weight_u", (cout,), path)
        v = _take(state, f"{prefix}.weight_v", (cin * kh * kw,), path)
        if isinstance(wrapper, SpectralNorm):
            conv.kernel.assign(_torch_kernel(weight))
            wrapper.vector_u.assign(u)
            wrapper.vector_v.assign(_keras_vector_v(v, conv.kernel.shape))
        else:
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


def generator_state_dict(generator):
    """The released ``netG`` state dict of a built ``Generator``: {name: float32 array}."""
    state = {}
    for prefix, conv in generator_convolutions(generator).items():
        state[f"{prefix}.weight"] = _keras_kernel(conv.kernel.numpy())
        state[f"{prefix}.bias"] = conv.bias.numpy()
    return state


def discriminator_state_dict(discriminator):
    """The released ``netD`` state dict of a built ``Discriminator`` (spectral norm state
    as ``weight_orig`` / ``weight_u`` / ``weight_v``)."""
    if discriminator.spectral_norm != "released":
        raise CheckpointError(
            "Only a discriminator with spectral_norm='released' (the default) has the "
            f"released state (weight_orig, weight_u, weight_v); this one has "
            f"spectral_norm={discriminator.spectral_norm!r}."
        )
    state = {}
    for index, wrapper in enumerate(discriminator.encoder):
        prefix = f"encoder.{2 * index}"
        kernel = wrapper.layer.kernel.numpy()
        state[f"{prefix}.weight_orig"] = _keras_kernel(kernel)
        state[f"{prefix}.weight_u"] = wrapper.vector_u.numpy()
        state[f"{prefix}.weight_v"] = _torch_vector_v(wrapper.vector_v.numpy(), kernel.shape)
    state["classifier.weight"] = _keras_kernel(discriminator.classifier.kernel.numpy())
    state["classifier.bias"] = discriminator.classifier.bias.numpy()
    return state


def save_released_checkpoint(state, key, path, replace=True):
    """Writes ``{key: state_dict}`` as a torch pickle (``gen_N.pth`` / ``dis_N.pth``)
    atomically (``replace=False``: ``FileExistsError`` if ``path`` exists), in torch's
    legacy format: PyTorch before 1.6 (the release's 1.1) cannot read the zip format."""
    with atomic_path(path, replace=replace) as temporary:
        _write_released_checkpoint(state, key, temporary)


def _write_released_checkpoint(state, key, path):
    """``save_released_checkpoint``'s write, to ``path`` itself; a failed write is an
    ``OSError`` (torch reports one as a RuntimeError: a traceback on a full disk)."""
    torch = _torch()
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}
    try:
        torch.save({key: tensors}, path, _use_new_zipfile_serialization=False)
    except RuntimeError as error:
        raise OSError(f"could not write {path}: {str(error).splitlines()[0]}") from None


def load_discriminator(weights):
    """A built ``Discriminator`` holding ``weights`` (a ``.weights.h5``; the architecture
    from the ``NAME.config.json`` beside it when there is one)."""
    weights = os.fspath(weights)
    config_path = weights[: -len(".weights.h5")] + ".config.json"
    config = {}
    if os.path.isfile(config_path):
        try:
            config = read_architecture(config_path, "discriminator")
        except ValueError as error:
            raise CheckpointError(str(error)) from None
    try:
        discriminator = Discriminator(**config)
    except (TypeError, ValueError) as error:  # e.g. an unknown key in the config file
        raise CheckpointError(f"Discriminator({config}) (from {config_path}): {error}") from None
    discriminator.build()
    try:
        load_weights(
            discriminator,
            weights,
            f"{weights} does not hold weights of Discriminator({config or ''})",
        )
    except ValueError as error:
        raise CheckpointError(str(error)) from None
    return discriminator


def check_targets(paths, force=False, inputs=()):
    """ValueError / FileExistsError, before any work, if one of the files ``paths`` cannot
    be written, or exists and ``force`` is false."""
    for path in paths:
        check_file_target(path, inputs=inputs)
    existing = [path for path in paths if os.path.lexists(path)]
    if existing and not force:
        names = ", ".join(os.path.basename(path) for path in existing)
        folder = os.path.dirname(existing[0]) or "."
        raise FileExistsError(
            f"{folder} already holds {names}: choose another --out or pass --force to "
            f"replace {'it' if len(existing) == 1 else 'them'}"
        )


# The release's widths (places2 / celebahq ... configs): its own code loads only these.
RELEASED_WIDTHS = {"netG": 32, "netD": 64}


def released_names(iteration):
    """The files the release writes at ``iteration`` (``core/trainer.py`` ``save``) and
    its ``test.py`` loads: ``gen_NNNNN.pth``, ``dis_NNNNN.pth``, and ``latest.ckpt``
    naming ``NNNNN``."""
    number = str(iteration).zfill(5)
    return f"gen_{number}.pth", f"dis_{number}.pth", "latest.ckpt"


def _check_pairing(out_dir, writes, others, force):
    """Refuses (``FileExistsError``) ``others``, the other network's files an earlier
    conversion left in ``out_dir``, which would be paired with the new ones (``--force``
    replaced one network's and kept the other's); with ``force`` returns them, to remove."""
    stale = [os.path.join(out_dir, name) for name in others]
    stale = [path for path in stale if os.path.lexists(path)]
    if stale and not force:
        names = ", ".join(os.path.basename(path) for path in stale)
        raise FileExistsError(
            f"{out_dir} holds {names} from another conversion, which would be paired with "
            f"the new {writes}: choose another --out, or pass --force to remove them"
        )
    return stale


def export_to_torch(weights_dir, out_dir, force=False, iteration=0, log=print):
    """``--to-torch``: ``weights_dir/{generator,discriminator}.weights.h5`` -> the
    release's ``out_dir/gen_NNNNN.pth``, ``dis_NNNNN.pth`` and ``latest.ckpt``
    (``released_names(iteration)``). Returns the paths written. Existing targets are a
    ``FileExistsError`` unless ``force``."""
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise ValueError(f"--iteration must be a non-negative integer, got {iteration!r}")
    generator_path = os.path.join(weights_dir, "generator.weights.h5")
    discriminator_path = os.path.join(weights_dir, "discriminator.weights.h5")
    if not os.path.isfile(generator_path):
        raise FileNotFoundError(f"No generator.weights.h5 in {weights_dir}")
    generator_name, discriminator_name, latest = released_names(iteration)
    names = [generator_name, latest]
    if os.path.isfile(discriminator_path):
        names.insert(1, discriminator_name)
    targets = [os.path.join(out_dir, name) for name in names]
    check_folder_target(out_dir)
    check_targets(targets, force, inputs=(generator_path, discriminator_path))
    others = [] if discriminator_name in names else [discriminator_name]
    stale = _check_pairing(out_dir, generator_name, others, force)
    sweep_temporaries(out_dir)  # what a killed conversion left
    try:
        generator = load_generator(generator_path)
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    states = [("netG", generator_state_dict(generator))]
    if discriminator_name in names:
        states.append(("netD", discriminator_state_dict(load_discriminator(discriminator_path))))
    widths = {key: released_width(state, key) for key, state in states}
    if any(widths[key] != RELEASED_WIDTHS[key] for key in widths):
        log(
            f"note: base_channels {widths} are not the release's {RELEASED_WIDTHS}: the "
            "release's code cannot load these files (penet_tf can)"
        )
    for path in stale:
        os.remove(path)
    # Every file written before any replaces an earlier conversion's, the renames in a
    # row (a full disk left the new gen_N.pth beside the old dis_N.pth and latest.ckpt).
    with contextlib.ExitStack() as renames:
        temporaries = [renames.enter_context(atomic_path(p, replace=force)) for p in targets]
        for (key, state), temporary in zip(states, temporaries, strict=False):
            _write_released_checkpoint(state, key, temporary)
        with open(temporaries[-1], "wb") as handle:
            handle.write(f"{str(iteration).zfill(5)}\n".encode())
    return targets


def convert_released(generator_path, out_dir, discriminator_path=None, force=False):
    """Released ``gen_*.pth`` (and ``dis_*.pth``) -> ``out_dir/generator.weights.h5`` and
    ``generator.config.json`` (and ``discriminator.*``). Returns the paths written.

    Existing targets are a ``FileExistsError`` unless ``force``; the targets and both
    checkpoints (what they hold) are checked before any model is built.
    """
    names = ["generator"] + (["discriminator"] if discriminator_path else [])
    targets = [os.path.join(out_dir, f"{name}{suffix}") for name in names for suffix in SUFFIXES]
    check_folder_target(out_dir)
    check_targets(targets, force, inputs=(generator_path, discriminator_path))
    others = [] if discriminator_path else [f"discriminator{suffix}" for suffix in SUFFIXES]
    stale = _check_pairing(out_dir, "generator", others, force)
    sweep_temporaries(out_dir)  # what a killed conversion left
    generator_state = read_state_dict(generator_path, "netG")
    discriminator_state = None
    if discriminator_path:
        discriminator_state = read_state_dict(discriminator_path, "netD")
    generator = load_released_generator(generator_path, state=generator_state)
    discriminator = None
    if discriminator_path:
        discriminator = load_released_discriminator(discriminator_path, state=discriminator_state)
    for path in stale:  # (--force: an earlier conversion's discriminator, not this one's)
        os.remove(path)
    models = [(generator, generator_config(generator), targets[0])]
    if discriminator is not None:
        models.append((discriminator, discriminator_config(discriminator), targets[2]))
    # all written before any replaces an earlier conversion's (a full disk left the new
    # generator beside the old discriminator)
    return save_weights_and_configs(models, force)


def _main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.convert_torch",
        description="Convert released PEN-Net PyTorch checkpoints (gen_*.pth, dis_*.pth) "
        "to Keras .weights.h5 files, or (--to-torch) Keras weights back to the released format.",
    )
    parser.add_argument("--generator", help="released generator checkpoint (.pth)")
    parser.add_argument("--discriminator", help="released discriminator checkpoint (.pth)")
    parser.add_argument(
        "--to-torch",
        action="store_true",
        help="write --weights DIR's generator.weights.h5 (and discriminator.weights.h5) as "
        "the release's gen_NNNNN.pth (and dis_NNNNN.pth) with latest.ckpt in --out",
    )
    parser.add_argument(
        "--iteration",
        type=int,
        default=0,
        help="with --to-torch: the NNNNN of the files and latest.ckpt (default 0)",
    )
    parser.add_argument("--weights", help="with --to-torch: the folder of .weights.h5 files")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the files --out already holds (generator.weights.h5, "
        "generator.config.json, discriminator.*; --to-torch: gen_NNNNN.pth, dis_NNNNN.pth, "
        "latest.ckpt), and remove the other network's files an earlier conversion left; "
        "without it an existing one is an error and nothing is written",
    )
    args = parser.parse_args(argv)
    if args.to_torch and (not args.weights or args.generator or args.discriminator):
        parser.error("--to-torch takes --weights DIR (and --out), not --generator/--discriminator")
    if not args.to_torch and args.iteration:
        parser.error("--iteration goes with --to-torch")
    if not args.to_torch and (args.weights or not args.generator):
        parser.error("--generator is required (or --to-torch --weights DIR)")
    if args.to_torch:
        written = export_to_torch(args.weights, args.out, args.force, args.iteration)
    else:
        written = convert_released(args.generator, args.out, args.discriminator, args.force)
    for path in written:
        print(f"wrote {path}")
    return 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
