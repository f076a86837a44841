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
``weight_u`` / ``weight_v``), ``opt_NNNNN.pth`` (``{'epoch', 'iteration', 'optimG',
'optimD'}``: both ``torch.optim.Adam`` states) and ``latest.ckpt`` naming ``NNNNN``
(``--iteration``), which the authors' ``test.py`` loads and their trainer resumes from.
``--weights`` a training run's folder (``penet_tf.train``'s ``output_dir``): its newest
checkpoint, Adam moments and step included, so the release's trainer goes on with the
run (``NNNNN`` defaults to the step); a folder of weights: new optimizers of the released
configs, iteration 0 (``NNNNN`` defaults to 0). ``penet_tf.train --resume-release DIR``
is the way back: a released run goes on in penet_tf. The files use torch's legacy
(non-zip) format, which every PyTorch reads (the release was tested on 1.1, before the
zip format). Released -> Keras -> released is bit-identical for
every tensor. The widths come from the checkpoint's shapes (a thin network round-trips);
the release's own code loads only its widths (32 and 64), which ``--to-torch`` notes.

Every file is written atomically (``penet_tf.io_utils.atomic_path``); a weights file and
its config are renamed into place together, so they always match. A target that exists
(weights, config, ``gen_*.pth``, ``dis_*.pth``, ``opt_*.pth``, ``latest.ckpt``), or the
other network's files left by an earlier conversion (they would be paired with the new
ones), is refused before any work unless ``--force`` is given, which replaces (or removes)
them. ``.pth``
files need PyTorch: ``pip install 'penet_tf[torch]'``. It is imported here only.
"""

import argparse
import contextlib
import os
import sys

import numpy as np

from penet_tf.cli import run, say
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
    elif "optimG" in data or "optimD" in data:  # (was "entry 'epoch' is not a tensor")
        raise CheckpointError(
            f"{wrong} the optimizers' state (the release's opt_NNNNN.pth): give "
            f"{'gen' if key == 'netG' else 'dis'}_NNNNN.pth"
        )
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
    text = str(error)
    if magic.startswith(b"PK") or magic[:1] == b"\x80":  # (torch's zip, or legacy pickle)
        if "central directory" in text or "corrupt" in text or "EOF" in text:
            # (it was "not a PyTorch checkpoint": a copy cut short or damaged)
            return (
                "is a PyTorch checkpoint that is damaged or cut short (an interrupted "
                "download or copy?): copy it again"
            )
    return "is not a PyTorch checkpoint (a zip or pickle file of tensors)"


def released_width(state, key):
    """The ``base_channels`` of a released state dict (``netG``: its first convolution's
    outputs; ``netD``: its first spectral-norm convolution's), or None."""
    name = "dw_conv01.0.weight" if key == "netG" else "encoder.0.weight_orig"
    value = state.get(name)
    return None if value is None or value.ndim != 4 else int(value.shape[0])


def generator_convolutions(generator):
    """{released parameter prefix: Keras Conv2D} for every convolution of the generator,
    in the release's module order (its ``state_dict`` and ``parameters()`` order)."""
    layers = {}
    for layer in generator.encoder:
        layers[f"{layer.name}.0"] = layer
    for attention in generator.attention:
        for conv in attention.fuse_convs:
            layers[f"{attention.name}.{conv.name}.0"] = conv
    for layer in generator.decoder_convs + generator.to_rgb:
        layers[f"{layer.name}.0"] = layer
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


def released_parameters(model):
    """``[(released name, Keras variable)]`` of a built ``Generator`` or ``Discriminator``
    (``spectral_norm="released"``) in the order of the release's ``net.parameters()``:
    the indices of its ``torch.optim.Adam`` state (``opt_NNNNN.pth``)."""
    if isinstance(model, Generator):
        return [
            (f"{prefix}.{name}", variable)
            for prefix, conv in generator_convolutions(model).items()
            for name, variable in (("weight", conv.kernel), ("bias", conv.bias))
        ]
    if model.spectral_norm != "released":
        raise CheckpointError(
            "The release's optimizer state needs a discriminator with "
            f"spectral_norm='released' (model.spectral_norm in a training config); this one "
            f"has spectral_norm={model.spectral_norm!r}."
        )
    parameters = [
        (f"encoder.{2 * index}.weight_orig", wrapper.layer.kernel)
        for index, wrapper in enumerate(model.encoder)
    ]
    classifier = model.classifier
    return parameters + [
        ("classifier.weight", classifier.kernel),
        ("classifier.bias", classifier.bias),
    ]


def _torch_layout(value):
    return _keras_kernel(value) if value.ndim == 4 else value


def _keras_layout(value):
    return _torch_kernel(value) if value.ndim == 4 else value


def _adam(optimizer):
    """The Adam inside a ``LossScaleOptimizer`` (mixed_float16), or ``optimizer``."""
    return getattr(optimizer, "inner_optimizer", optimizer)


def adam_state_dict(optimizer, model, learning_rate):
    """``torch.optim.Adam.state_dict()`` of the Keras Adam ``optimizer`` that trains
    ``model``, as the released trainer saves ``optimG`` / ``optimD``: per parameter (in
    ``released_parameters`` order) ``step`` (the optimizer's ``iterations``),
    ``exp_avg`` and ``exp_avg_sq`` (Keras' momentums and velocities, the same moments in
    torch's layout), and one parameter group with ``learning_rate``, the betas and
    epsilon, as PyTorch 1.1 (the release's) writes it; newer PyTorch reads it too. A
    step of 0 has no per-parameter state, as a new ``torch.optim.Adam``."""
    torch = _torch()
    optimizer = _adam(optimizer)
    parameters = released_parameters(model)
    step = int(optimizer.iterations.numpy())
    state = {}
    for index, (_, variable) in enumerate(parameters if step else ()):
        slot = optimizer._get_variable_index(variable)
        state[index] = {
            "step": step,
            **{
                key: torch.from_numpy(np.ascontiguousarray(_torch_layout(moments[slot].numpy())))
                for key, moments in (
                    ("exp_avg", optimizer._momentums),
                    ("exp_avg_sq", optimizer._velocities),
                )
            },
        }
    group = {
        "lr": float(learning_rate),
        "betas": (float(optimizer.beta_1), float(optimizer.beta_2)),
        "eps": float(optimizer.epsilon),
        "weight_decay": 0,
        "amsgrad": False,
        "params": list(range(len(parameters))),
    }
    return {"state": state, "param_groups": [group]}


def load_adam_state(optimizer, model, state_dict, where):
    """Sets the Keras Adam ``optimizer`` of ``model`` from a released
    ``torch.optim.Adam.state_dict()`` (``where`` names it in errors): the moments and
    ``iterations``. Everything is checked before anything is set: one parameter group
    of ``model``'s parameters, the betas and epsilon of ``optimizer`` (moments kept with
    other betas would not continue the same run), no weight decay or amsgrad, each
    moment of its parameter's shape, one step for all. Returns ``(step, lr)``: the
    parameters' update count and the group's learning rate."""
    torch = _torch()
    optimizer = _adam(optimizer)
    parameters = released_parameters(model)
    groups = state_dict.get("param_groups") if isinstance(state_dict, dict) else None
    if not (isinstance(groups, list) and len(groups) == 1 and isinstance(groups[0], dict)):
        raise CheckpointError(
            f"{where}: not a torch.optim.Adam state_dict with one parameter group."
        )
    group, state = groups[0], state_dict.get("state")
    ids = group.get("params")
    if not isinstance(ids, list) or len(ids) != len(parameters) or not isinstance(state, dict):
        count = len(ids) if isinstance(ids, list) else "no"
        raise CheckpointError(
            f"{where}: {count} parameters, where this network has {len(parameters)} (another "
            "network's optimizer?)."
        )
    if group.get("amsgrad") or group.get("weight_decay"):
        raise CheckpointError(
            f"{where}: amsgrad={group.get('amsgrad')}, weight_decay={group.get('weight_decay')}; "
            "the released trainer's Adam (and penet_tf's) has neither."
        )
    ours = {
        "betas": (float(optimizer.beta_1), float(optimizer.beta_2)),
        "eps": float(optimizer.epsilon),
    }
    theirs = {"betas": tuple(group.get("betas", ())), "eps": group.get("eps")}
    for key in ours:
        if not np.allclose(np.asarray(theirs[key], float), ours[key], rtol=1e-6, atol=0):
            raise CheckpointError(
                f"{where}: Adam's {key} {theirs[key]} {'are' if key == 'betas' else 'is'} not "
                f"this run's {ours[key]} "
                "(optimizer.beta_1, beta_2 and epsilon in the config): its moments would "
                "continue under other settings."
            )
    moments, steps = [], set()
    for index, (name, variable) in zip(ids, parameters, strict=True):
        entry = state.get(index)
        if entry is None:
            moments.append(None)
            continue
        shape = _torch_layout(np.zeros(variable.shape, np.bool_)).shape
        pair = []
        for key in ("exp_avg", "exp_avg_sq"):
            value = entry.get(key) if isinstance(entry, dict) else None
            if not isinstance(value, torch.Tensor) or tuple(value.shape) != shape:
                got = (
                    tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
                )
                raise CheckpointError(f"{where}: {key} of {name} is {got}, expected {shape}.")
            pair.append(_keras_layout(value.detach().cpu().float().numpy()))
        moments.append(pair)
        step = entry.get("step")
        steps.add(int(step.item() if isinstance(step, torch.Tensor) else step))
    if len(steps) > 1 or (steps and None in moments):
        missing = [
            name for (name, _), pair in zip(parameters, moments, strict=True) if pair is None
        ]
        raise CheckpointError(
            f"{where}: its parameters were updated different numbers of times "
            f"({sorted(steps)}{', never: ' + missing[0] if missing else ''}): one Keras "
            "optimizer step cannot continue it."
        )
    step = steps.pop() if steps else 0
    for (_, variable), pair in zip(parameters, moments, strict=True):
        slot = optimizer._get_variable_index(variable)
        for slots, value in zip(
            (optimizer._momentums, optimizer._velocities), pair or (0, 0), strict=True
        ):
            slots[slot].assign(np.broadcast_to(np.float32(value), slots[slot].shape))
    optimizer.iterations.assign(step)
    return step, float(group.get("lr", 0.0))


def save_released_checkpoint(state, key, path, replace=True):
    """Writes ``{key: state_dict}`` as a torch pickle (``gen_N.pth`` / ``dis_N.pth``)
    atomically (``replace=False``: ``FileExistsError`` if ``path`` exists), in torch's
    legacy format: PyTorch before 1.6 (the release's 1.1) cannot read the zip format."""
    with atomic_path(path, replace=replace) as temporary:
        _write_released_checkpoint(state, key, temporary)


def _write_released_checkpoint(state, key, path):
    """``save_released_checkpoint``'s write, to ``path`` itself."""
    torch = _torch()
    tensors = {name: torch.from_numpy(np.ascontiguousarray(value)) for name, value in state.items()}
    _torch_save({key: tensors}, path)


def _torch_save(data, path):
    """``torch.save`` in the legacy format; a failed write is an ``OSError`` (torch
    reports one as a RuntimeError: a traceback on a full disk)."""
    try:
        _torch().save(data, path, _use_new_zipfile_serialization=False)
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
        discriminator = Discriminator(**{"dtype": "float32", **config})  # (not Keras' policy)
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
    """The files the release's trainer writes at save ``iteration`` (``core/trainer.py``
    ``save``): ``gen_NNNNN.pth``, ``dis_NNNNN.pth``, ``opt_NNNNN.pth`` and
    ``latest.ckpt`` naming ``NNNNN``; its ``load()`` reads all four, its ``test.py``
    the first and the last."""
    number = str(iteration).zfill(5)
    return f"gen_{number}.pth", f"dis_{number}.pth", f"opt_{number}.pth", "latest.ckpt"


def is_released_save(folder):
    """Whether ``folder`` looks like the released trainer's ``save_dir`` (a
    ``latest.ckpt`` or a ``gen_*.pth`` in it)."""
    return os.path.isfile(os.path.join(folder, "latest.ckpt")) or any(
        name.startswith("gen_") and name.endswith(".pth") for name in os.listdir(folder)
    )


def released_save(folder):
    """The paths ``(gen, dis, opt)`` of the release's newest save in ``folder`` (its
    trainer's ``save_dir``), numbered by ``latest.ckpt`` as its ``Trainer.load()`` finds
    them. Missing files are a ``FileNotFoundError`` naming them."""
    latest = os.path.join(folder, "latest.ckpt")
    if os.path.isfile(folder):  # (it said "no such folder")
        raise FileNotFoundError(
            f"--resume-release {folder}: a file; give the released trainer's save folder "
            "(its save_dir, holding latest.ckpt)"
            + (
                ", or start from this generator's weights with --init-from"
                if os.path.basename(folder).startswith("gen")
                else ""
            )
            + "."
        )
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"--resume-release {folder}: no such folder.")
    if not os.path.isfile(latest):
        raise FileNotFoundError(
            f"--resume-release {folder}: no latest.ckpt in it (the released trainer's "
            "save_dir names its newest save there)."
        )
    with open(latest, "rb") as handle:
        lines = handle.read(4096).decode("utf-8", "replace").split()
    number = lines[-1] if lines else ""
    if not number.isdigit() or not number.isascii():
        raise CheckpointError(
            f"{latest}: expected the number of a save (e.g. 00050), got {number!r:.40}."
        )
    paths = [os.path.join(folder, name) for name in released_names(number)[:3]]
    missing = [os.path.basename(path) for path in paths if not os.path.isfile(path)]
    if missing:
        raise FileNotFoundError(
            f"--resume-release {folder}: latest.ckpt names save {number}, but "
            f"{', '.join(missing)} {'is' if len(missing) == 1 else 'are'} not there."
        )
    return paths


def read_released_optimizers(path):
    """The release's ``opt_NNNNN.pth``: ``{'iteration', 'optimG', 'optimD', ...}``,
    checked to hold them (``CheckpointError`` naming what it holds otherwise)."""
    torch = _torch()
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"{path} {_unreadable(path, error)}") from None
    keys = ("iteration", "optimG", "optimD")
    if not isinstance(data, dict) or any(key not in data for key in keys):
        held = sorted(map(str, data))[:4] if isinstance(data, dict) else type(data).__name__
        raise CheckpointError(
            f"{path} is not the released trainer's optimizer file ({{'epoch', 'iteration', "
            f"'optimG', 'optimD'}}): it holds {held}."
        )
    iteration = data["iteration"]
    if isinstance(iteration, torch.Tensor) and iteration.numel() == 1:
        iteration = iteration.item()
    if isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0:
        raise CheckpointError(f"{path}: 'iteration' is {iteration!r:.40}, not a step count.")
    return {**data, "iteration": iteration}


def load_released_run(gan, folder):
    """``--resume-release``: the release's newest save in ``folder`` (``released_save``)
    into the built, compiled ``PENetGAN`` ``gan``: both networks, both Adam states and
    the step, so that training goes on where the released trainer stopped (the decay of
    the learning rate included). A file that does not fit the run's networks or
    optimizer settings is a ``CheckpointError`` naming it. Each optimizer keeps its own
    update count (they are the iteration but where mixed_float16's loss scaling skipped
    updates, in penet_tf as in a conversion of such a run). Returns ``(iteration, paths,
    learning_rates)``: the step, the files read, and the learning rates the release
    used last (G's, D's)."""
    paths = released_save(folder)
    generator_state = read_state_dict(paths[0], "netG")
    discriminator_state = read_state_dict(paths[1], "netD")
    data = read_released_optimizers(paths[2])
    for key in ("optimG", "optimD"):
        if not isinstance(data[key], dict):
            raise CheckpointError(
                f"{paths[2]}: {key} is a {type(data[key]).__name__}, not a state dict."
            )
    iteration = data["iteration"]
    load_released_generator(paths[0], gan.generator, state=generator_state)
    load_released_discriminator(paths[1], gan.discriminator, state=discriminator_state)
    results = [
        load_adam_state(optimizer, model, data[key], f"{paths[2]}: {key}")
        for key, optimizer, model in (
            ("optimG", gan.g_optimizer, gan.generator),
            ("optimD", gan.d_optimizer, gan.discriminator),
        )
    ]
    return iteration, paths, [lr for _, lr in results]


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


def _new_adams(generator, discriminator):
    """Both optimizers of a new run of the released configs (``OptimizerConfig``'s
    defaults: lr 1e-4, betas 0.5 / 0.999, eps 1e-8), built for the two networks."""
    from penet_tf.training.config import OptimizerConfig
    from penet_tf.training.optimizers import make_adam

    settings = OptimizerConfig()
    adams = []
    for model in (generator, discriminator):
        adam = make_adam(settings.lr, settings.beta_1, settings.beta_2, settings.epsilon)
        adam.build(model.trainable_variables)
        adams.append(adam)
    return adams, settings.lr


def released_optimizers(generator, discriminator, adams, learning_rates, iteration):
    """The release's ``opt_NNNNN.pth`` content: ``{'epoch', 'iteration', 'optimG',
    'optimD'}`` (``adam_state_dict`` of each network's optimizer, ``iteration`` the
    training step; ``epoch`` 0: the release counts epochs only for its log and its
    distributed sampler's shuffle)."""
    return {
        "epoch": 0,
        "iteration": int(iteration),
        "optimG": adam_state_dict(adams[0], generator, learning_rates[0]),
        "optimD": adam_state_dict(adams[1], discriminator, learning_rates[1]),
    }


def _note_release_differences(optimizer, log):
    """Notes the settings of a run that the release's trainer does not continue."""
    if optimizer.epsilon_placement != "torch":
        log(
            "note: the run's optimizer.epsilon_placement is \"keras\"; the release's "
            "trainer goes on with torch.optim.Adam's (epsilon after the bias correction, since "
            "pytorch/pytorch#22628, 2019)"
        )
    if optimizer.d2g_lr_schedule != "released" and optimizer.d2g_lr != 1:
        log(
            "note: the run's optimizer.d2g_lr_schedule is \"every_step\"; the release's "
            "trainer sets D's rate to G's at the first decay"
        )


def export_to_torch(weights_dir, out_dir, force=False, iteration=None, log=print):
    """``--to-torch``: ``weights_dir`` -> the release's ``out_dir/gen_NNNNN.pth``,
    ``dis_NNNNN.pth``, ``opt_NNNNN.pth`` and ``latest.ckpt`` (``released_names``), what
    its trainer resumes from and its ``test.py`` loads. Returns the paths written.

    ``weights_dir`` is a training run's folder (``penet_tf.train``'s ``output_dir``,
    with ``checkpoints/``): its newest checkpoint gives both networks, both Adam states
    and the step, so the release's trainer continues the run where it stopped (``NNNNN``:
    ``iteration``, by default the step). Or a folder of ``generator.weights.h5`` (and
    ``discriminator.weights.h5``) with their configs: ``opt_NNNNN.pth`` then holds new
    optimizers of the released configs and iteration 0 (the release's trainer starts a
    run from these weights; without a discriminator no ``dis_`` or ``opt_`` file is
    written, and only ``test.py`` can use them). Existing targets are a
    ``FileExistsError`` unless ``force``."""
    if iteration is not None and (
        isinstance(iteration, bool) or not isinstance(iteration, int) or iteration < 0
    ):
        raise ValueError(f"--iteration must be a non-negative integer, got {iteration!r}")
    from penet_tf.training.checkpoints import checkpoint_step, newest_checkpoint

    generator_path = os.path.join(weights_dir, "generator.weights.h5")
    discriminator_path = os.path.join(weights_dir, "discriminator.weights.h5")
    # (the checkpoint the run resumes from: also without TensorFlow's state file)
    newest = newest_checkpoint(os.path.join(weights_dir, "checkpoints"))
    step = None if newest is None else checkpoint_step(newest)
    if step is None and not os.path.isfile(generator_path):
        raise FileNotFoundError(f"No generator.weights.h5 or training checkpoint in {weights_dir}")
    with_discriminator = step is not None or os.path.isfile(discriminator_path)

    def checked_targets(number):  # the files written, refused if they exist (not force)
        generator_name, discriminator_name, optimizer_name, latest = released_names(number)
        names = [generator_name, discriminator_name, optimizer_name, latest]
        names = names if with_discriminator else [generator_name, latest]
        targets = [os.path.join(out_dir, name) for name in names]
        check_targets(targets, force, inputs=(generator_path, discriminator_path))
        return number, targets

    check_folder_target(out_dir)
    number, targets = checked_targets((step or 0) if iteration is None else iteration)
    generator_name, discriminator_name, optimizer_name, _ = released_names(number)
    others = [] if with_discriminator else [discriminator_name, optimizer_name]
    stale = _check_pairing(out_dir, generator_name, others, force)
    sweep_temporaries(out_dir)  # what a killed conversion left
    if step is not None:
        from penet_tf.training.trainer import read_run, used_learning_rate

        gan, restored, config = read_run(weights_dir)
        if restored != step:
            if restored > step:  # (said "cannot be read" of a run that saved a newer one)
                log(f"note: the run is training: its newest checkpoint is now step {restored}")
            else:  # the newest is damaged: the run resumes from this one
                log(f"note: {newest} cannot be read; the run resumes from step {restored}")
            step = restored
            if iteration is None:
                number, targets = checked_targets(step)
        generator, discriminator = gan.generator, gan.discriminator
        adams = (gan.g_optimizer, gan.d_optimizer)
        learning_rates = [used_learning_rate(adam) for adam in adams]
        log(f"{weights_dir}: the run's checkpoint of step {step} (networks, Adam states, step)")
        _note_release_differences(config.optimizer, log)
    else:
        try:
            generator = load_generator(generator_path)
        except ValueError as error:
            raise CheckpointError(str(error)) from error
        discriminator = load_discriminator(discriminator_path) if with_discriminator else None
    states = [("netG", generator_state_dict(generator))]
    if with_discriminator:
        states.append(("netD", discriminator_state_dict(discriminator)))
        if step is None:
            adams, lr = _new_adams(generator, discriminator)
            learning_rates = [lr, lr]
        optimizers = released_optimizers(generator, discriminator, adams, learning_rates, step or 0)
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
        if with_discriminator:
            _torch_save(optimizers, temporaries[2])
        with open(temporaries[-1], "wb") as handle:
            handle.write(f"{str(number).zfill(5)}\n".encode())
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
        help="write --weights DIR (a training run's folder, or a folder of "
        "generator.weights.h5 and discriminator.weights.h5) as the release's gen_NNNNN.pth, "
        "dis_NNNNN.pth, opt_NNNNN.pth (Adam states and step: a run's checkpoint goes on in "
        "the release's trainer) and latest.ckpt in --out",
    )
    parser.add_argument(
        "--iteration",
        type=int,
        default=None,
        help="with --to-torch: the NNNNN of the files and latest.ckpt (default: a run's "
        "step, else 0)",
    )
    parser.add_argument(
        "--weights", help="with --to-torch: a training run's folder or one of .weights.h5 files"
    )
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument(
        "--force",
        action="store_true",
        help="replace the files --out already holds (generator.weights.h5, "
        "generator.config.json, discriminator.*; --to-torch: gen_NNNNN.pth, dis_NNNNN.pth, "
        "opt_NNNNN.pth, latest.ckpt), and remove the other network's files an earlier "
        "conversion left; without it an existing one is an error and nothing is written",
    )
    args = parser.parse_args(argv)
    if args.to_torch and (not args.weights or args.generator or args.discriminator):
        parser.error("--to-torch takes --weights DIR (and --out), not --generator/--discriminator")
    if not args.to_torch and args.iteration is not None:
        parser.error("--iteration goes with --to-torch")
    if not args.to_torch and (args.weights or not args.generator):
        parser.error("--generator is required (or --to-torch --weights DIR)")
    if args.to_torch:
        written = export_to_torch(args.weights, args.out, args.force, args.iteration, log=say)
    else:
        written = convert_released(args.generator, args.out, args.discriminator, args.force)
    for path in written:
        say(f"wrote {path}")
    return 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
