"""Training configs: typed sections with strict keys, JSON files and ``--set`` overrides.

A config is a tree of frozen dataclasses (``TrainingConfig`` and its sections), built from
a JSON file (``configs/*.json``) and ``--set key.path=value`` overrides (JSON values)::

    config = load_config("configs/demo.json", ["trainer.iterations=500"])
    config.trainer.iterations  # 500
    config.to_dict()  # JSON-ready; load_config(a file holding it) gives the same config

Every key of every section is checked: an unknown key is refused with the nearest valid one
(``Unknown config key 'trainer.iteratoins'. Did you mean 'trainer.iterations'?``), a value
of the wrong type or out of range with one line naming the key and what it must be. The
``data`` and ``mask`` sections are unions chosen by ``data.source`` (``folder``, ``flist``,
``tfds``, ``demo``) and ``mask.type`` (``square``, ``strokes``, ``files``, ``mixture``):
each choice has its own keys. Overriding the choice (``--set data.source=folder``) drops
the keys that only the previous choice had, before the other overrides apply.
"""

import dataclasses
import difflib
import json
import math
import os
import types
import typing
from collections.abc import Mapping
from typing import ClassVar, Literal

from penet_tf.errors import get_logger
from penet_tf.initializers import kernel_initializer
from penet_tf.losses import GAN_LOSSES
from penet_tf.models.discriminator import SPECTRAL_NORMS
from penet_tf.training.optimizers import EPSILON_PLACEMENTS
from penet_tf.training.strategy import STRATEGIES

logger = get_logger("penet_tf.train")

MIXED_PRECISION = ("auto", "mixed_float16", "mixed_bfloat16", "float32", "none")
# optimizer.d2g_lr: until the first decay, as the released trainer, or at every step.
D2G_LR_SCHEDULES = ("released", "every_step")
# data.resize_filter: tf.image.resize's methods named after Pillow's filters they match
# (bicubic: Pillow's default since 7.0, what the released code runs today, within 0.1-0.2
# of a level on average; nearest: Pillow's default before 7.0, when it was written: the
# same pixels at integer factors, a neighbour at some sizes).
RESIZE_FILTERS = ("bicubic", "bilinear", "nearest")


class ConfigError(ValueError):
    """A config file or override that cannot be used (the message is one line)."""


# ---------------------------------------------------------------- checking values


def _join(path, key):
    return f"{path}.{key}" if path else str(key)


def _show(value):
    try:
        return json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)


def _kind(value):
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list | tuple):
        return "a list"
    if isinstance(value, Mapping):
        return "an object"
    return type(value).__name__


_PLURAL = {
    "an integer": "integers",
    "a number": "numbers",
    "a string": "strings",
    "an object ({...})": "objects ({...})",
}


def _describe(kind):
    """What a value of type ``kind`` must be, in words."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if kind is bool:
        return "true or false"
    if kind is int:
        return "an integer"
    if kind is float:
        return "a number"
    if kind is str:
        return "a string"
    if origin is Literal:
        return "one of " + ", ".join(_show(a) for a in args)
    if origin in (types.UnionType, typing.Union):
        return " or ".join("null" if a is type(None) else _describe(a) for a in args)
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        return f"a list of {_PLURAL.get(_describe(args[0]), _describe(args[0]))}"
    if origin is tuple:
        return f"a list of {len(args)} {_PLURAL.get(_describe(args[0]), _describe(args[0]))}"
    if isinstance(kind, type) and issubclass(kind, Section):
        return "an object ({...})"
    return str(kind)


def _type_error(path, kind, value, hint=""):
    return ConfigError(
        f"{path} must be {_describe(kind)}, got {_show(value)} ({_kind(value)}){hint}."
    )


# The largest integer a config key may hold: 2**32 - 1, the largest seed (steps, sizes
# and batches far beyond any run; 1e20 passed the check, then failed in TensorFlow).
_INT_LIMIT = 2**32 - 1


def _convert(value, kind, path):
    """``value`` checked against the annotation ``kind`` (ints accepted as floats)."""
    origin, args = typing.get_origin(kind), typing.get_args(kind)
    if isinstance(kind, type) and issubclass(kind, Section):
        return kind.parse(value, path)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        (other,) = [a for a in args if a is not type(None)]  # X | None only
        if value is None:
            raise _type_error(path, kind, value)
        return _convert(value, other, path)
    if origin is Literal:
        if value in args and type(value) in {type(a) for a in args}:
            return value
        names = [a for a in args if isinstance(a, str)]
        close = difflib.get_close_matches(str(value), names, n=1) if names else []
        hint = f"; did you mean {_show(close[0])}?" if close else "."
        raise ConfigError(f"{path} must be {_describe(kind)}, got {_show(value)}{hint}")
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise _type_error(path, kind, value)
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            if not -_INT_LIMIT <= value <= _INT_LIMIT:  # TensorFlow takes them as int64
                raise ConfigError(f"{path} must be at most {_INT_LIMIT} in size, got {value}.")
            return value
        raise _type_error(path, kind, value)
    if kind is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(f"{path} must be a finite number, got {value!r}.")
            return float(value)
        raise _type_error(path, kind, value)
    if kind is str:
        if isinstance(value, str):
            return value
        raise _type_error(path, kind, value)
    if origin is tuple:
        if not isinstance(value, list | tuple):
            raise _type_error(path, kind, value)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{path}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise _type_error(path, kind, value)
        try:
            return tuple(_convert(v, a, path) for v, a in zip(value, args, strict=True))
        except ConfigError:
            raise _type_error(path, kind, value) from None
    raise TypeError(f"unsupported annotation {kind}")  # pragma: no cover


def _require(condition, path, what, value):
    if not condition:
        raise ConfigError(f"{path} must be {what}, got {_show(value)}.")


def _positive_ints(section, path, names):
    for name in names:
        value = getattr(section, name)
        _require(value >= 1, _join(path, name), "a positive integer", value)


def _unknown_key(path, key, names, label=None, elsewhere=None):
    """The one-line error for ``key`` (not in ``names``), with the nearest valid key."""
    full = _join(path, key)
    start = f"Unknown options for {label}: '{full}'." if label else f"Unknown config key '{full}'."
    key = str(key)
    close = (
        difflib.get_close_matches(key, names, n=1, cutoff=0.6)
        or [
            name
            for name in names
            if len(key) >= 3 and (name.startswith(key) or key.startswith(name))
        ][:1]
    )  # "hole" -> "hole_ratio"
    if close:
        hint = f"Did you mean '{_join(path, close[0])}'?"
    elif elsewhere:
        hint = elsewhere
    else:
        hint = f"Valid keys: {', '.join(sorted(names))}."
    return ConfigError(f"{start} {hint}")


# ---------------------------------------------------------------- sections


# Keys that name a file or folder: "~" in them is the home folder, as a shell would take
# it (JSON is read by no shell: TFDS with download on, and output_dir, made a folder named
# "~" in the working folder).
PATH_KEYS = {"path", "root", "data_dir", "output_dir"}


@dataclasses.dataclass(frozen=True)
class Section:
    """A typed config section: ``parse`` a mapping strictly, ``to_dict`` for JSON."""

    @classmethod
    def keys(cls):
        return [field.name for field in dataclasses.fields(cls)]

    @classmethod
    def parse(cls, data, path=""):
        """``data`` (a mapping, or an instance) checked key by key; raises ``ConfigError``."""
        if isinstance(data, cls):
            return data
        return cls._from_mapping(data, path)

    @classmethod
    def _from_mapping(cls, data, path, label=None):
        if not isinstance(data, Mapping):
            raise ConfigError(
                f"{path or 'the config'} must be an object ({{...}}), got {_show(data)}."
            )
        hints = typing.get_type_hints(cls)
        names = cls.keys()
        # Another source's (or mask type's) option given as null is no option: the
        # config.json of runs started before 2026-12-02 names "path": null for demo and
        # TFDS data ("Unknown options for demo data: 'data.path'" refused the resume).
        data = {
            key: value
            for key, value in data.items()
            if key in names or value is not None or not cls._elsewhere(key, path)
        }
        for key in data:
            if key not in names:
                raise _unknown_key(path, key, names, label, cls._elsewhere(key, path))
        values = {key: _convert(value, hints[key], _join(path, key)) for key, value in data.items()}
        for key in PATH_KEYS.intersection(values):  # (a JSON config's ~ is no shell's)
            if isinstance(values[key], str):
                values[key] = os.path.expanduser(values[key])
        section = cls(**values)
        section.check(path)
        return section

    @classmethod
    def _elsewhere(cls, key, path):
        """A hint for a key that belongs somewhere else (None: no idea)."""
        return None

    def check(self, path):
        """Checks values against each other and their ranges (types are already checked)."""

    def to_dict(self):
        """Plain JSON types (lists, not tuples)."""
        return {field.name: _plain(getattr(self, field.name)) for field in dataclasses.fields(self)}


def _plain(value):
    if isinstance(value, Section):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return value


class _Union:
    """A section whose class (and so whose keys) is chosen by one key (``CHOICE``)."""

    CHOICE: ClassVar[str]
    NOUN: ClassVar[str]  # "data", "masks"
    LABEL: ClassVar[str]  # "data source", "mask type"
    DEFAULT: ClassVar[str]
    CHOICES: ClassVar[dict]  # choice -> subclass

    @classmethod
    def parse(cls, data, path=""):
        if isinstance(data, cls):
            return data
        if not isinstance(data, Mapping):
            raise ConfigError(f"{path} must be an object ({{...}}), got {_show(data)}.")
        choice = data.get(cls.CHOICE, cls.DEFAULT)
        if not isinstance(choice, str) or choice not in cls.CHOICES:
            names = list(cls.CHOICES)
            close = difflib.get_close_matches(str(choice), names, n=1)
            hint = (
                f"did you mean '{close[0]}'?" if close else f"expected one of {', '.join(names)}."
            )
            raise ConfigError(f"Unknown {cls.LABEL} {choice!r} ({_join(path, cls.CHOICE)}): {hint}")
        kind = cls.CHOICES[choice]
        return kind._from_mapping(data, path, label=f"{choice} {cls.NOUN}")

    @classmethod
    def _elsewhere(cls, key, path):
        owners = [c for c, kind in cls.CHOICES.items() if key in kind.keys()]
        if owners:
            mine = getattr(cls, cls.CHOICE)
            return (
                f"'{key}' is an option of {' and '.join(owners)} {cls.NOUN}, not of {mine} "
                f"{cls.NOUN} ({_join(path, cls.CHOICE)} is {_show(mine)})."
            )
        return None

    @classmethod
    def all_keys(cls):
        return {key for kind in cls.CHOICES.values() for key in kind.keys()}


# ---------------------------------------------------------------- data (by data.source)


@dataclasses.dataclass(frozen=True)
class DataConfig(_Union, Section):
    """The ``data`` section: ``source`` picks the subclass; these keys are common to all.

    Attributes:
        image_size: [H, W] training size, multiples of 64.
        random_flip: random horizontal flips (training).
        color_jitter: brightness / contrast / saturation / hue jitter, 0 to 0.5 (released
            0.05).
        crop: ``"resize"`` (whole image, released) or ``"random"`` (a random crop of the
            training size's shape, 50-100 % of the largest the image holds, first; the
            demo).
        resize_filter: ``"bicubic"`` (antialiased, as Pillow's default filter, which the
            released ``img.resize`` uses since Pillow 7.0), ``"bilinear"`` (antialiased;
            penet_tf's filter before 2026-12-06) or ``"nearest"`` (Pillow's default before
            7.0, when the release was written).
        parallel_calls: ``tf.data`` decoding parallelism (null: AUTOTUNE).
    """

    CHOICE: ClassVar[str] = "source"
    NOUN: ClassVar[str] = "data"
    LABEL: ClassVar[str] = "data source"
    DEFAULT: ClassVar[str] = "folder"

    source: str = "folder"
    image_size: tuple[int, int] = (256, 256)
    random_flip: bool = True
    color_jitter: float = 0.05
    crop: Literal["resize", "random"] = "resize"
    resize_filter: Literal[RESIZE_FILTERS] = "bicubic"
    parallel_calls: int | None = None

    def check(self, path):
        height, width = self.image_size
        _require(
            height >= 64 and width >= 64 and height % 64 == 0 and width % 64 == 0,
            _join(path, "image_size"),
            "[H, W], multiples of 64",
            list(self.image_size),
        )
        _require(
            0 <= self.color_jitter <= 0.5,
            _join(path, "color_jitter"),
            "in [0, 0.5]",
            self.color_jitter,
        )
        if self.parallel_calls is not None:
            _positive_ints(self, path, ["parallel_calls"])


@dataclasses.dataclass(frozen=True)
class FolderData(DataConfig):
    """``source: "folder"``: every image under ``path`` (recursive)."""

    source: Literal["folder"] = "folder"
    path: str | None = None


@dataclasses.dataclass(frozen=True)
class FlistData(DataConfig):
    """``source: "flist"``: a released ``.flist`` (``root``: base of relative paths, default
    the list's folder)."""

    source: Literal["flist"] = "flist"
    path: str | None = None
    root: str | None = None


@dataclasses.dataclass(frozen=True)
class TfdsData(DataConfig):
    """``source: "tfds"``: a TensorFlow Datasets dataset (``download`` false: a missing
    dataset is an error, never a silent download), its images from the feature
    ``image_key`` (``"hr"`` for ``div2k``). Its records are read in order and shuffled per
    epoch within blocks of ``shuffle_buffer`` records (held in memory)."""

    source: Literal["tfds"] = "tfds"
    name: str | None = None
    split: str = "train"
    image_key: str = "image"
    data_dir: str | None = None
    download: bool = False
    shuffle_buffer: int = 1000

    def check(self, path):
        super().check(path)
        _positive_ints(self, path, ["shuffle_buffer"])


@dataclasses.dataclass(frozen=True)
class DemoData(DataConfig):
    """``source: "demo"``: photographs shipped with scikit-image and scikit-learn."""

    source: Literal["demo"] = "demo"


DataConfig.CHOICES = {"folder": FolderData, "flist": FlistData, "tfds": TfdsData, "demo": DemoData}
SOURCES = tuple(DataConfig.CHOICES)


# ---------------------------------------------------------------- masks (by mask.type)


@dataclasses.dataclass(frozen=True)
class MaskConfig(_Union, Section):
    """The ``mask`` section: ``type`` picks the subclass (see ``penet_tf.data.masks``)."""

    CHOICE: ClassVar[str] = "type"
    NOUN: ClassVar[str] = "masks"
    LABEL: ClassVar[str] = "mask type"
    DEFAULT: ClassVar[str] = "square"

    type: str = "square"


@dataclasses.dataclass(frozen=True)
class SquareMask(MaskConfig):
    """``type: "square"``: a random half-size block (training), the centred one (evaluation);
    ``augment``: the released flip / rotation / dilation."""

    type: Literal["square"] = "square"
    augment: bool = True


@dataclasses.dataclass(frozen=True)
class StrokesMask(MaskConfig):
    """``type: "strokes"``: free-form brush strokes (``penet_tf.data.masks.strokes``)."""

    type: Literal["strokes"] = "strokes"
    hole_ratio: tuple[float, float] = (0.1, 0.4)
    max_strokes: int = 12
    max_vertices: int = 8
    max_length: float = 0.25
    brush_width: tuple[float, float] = (0.03, 0.08)

    def check(self, path):
        low, high = self.hole_ratio
        _require(
            0 <= low <= high <= 1 and high > 0,  # (max 0: every mask without a hole)
            _join(path, "hole_ratio"),
            "[min, max] with 0 <= min <= max <= 1 and max > 0",
            list(self.hole_ratio),
        )
        low, high = self.brush_width
        _require(
            0 < low <= high,
            _join(path, "brush_width"),
            "[min, max] with 0 < min <= max",
            list(self.brush_width),
        )
        _positive_ints(self, path, ["max_strokes", "max_vertices"])
        _require(self.max_length > 0, _join(path, "max_length"), "positive", self.max_length)


@dataclasses.dataclass(frozen=True)
class FilesMask(MaskConfig):
    """``type: "files"``: mask PNGs under ``path`` (holes by ``penet_tf.image_io``'s mask
    rule: >= 128, or the 1s of a 0/1 mask)."""

    type: Literal["files"] = "files"
    path: str | None = None
    augment: bool = True

    def check(self, path):
        if not self.path:
            raise ConfigError(f"files masks need {_join(path, 'path')} (a folder of mask PNGs).")


@dataclasses.dataclass(frozen=True)
class MixtureMask(MaskConfig):
    """``type: "mixture"``: one of ``components`` per element, drawn by ``weights``
    (default: equal)."""

    type: Literal["mixture"] = "mixture"
    components: tuple[MaskConfig, ...] = ()
    weights: tuple[float, ...] | None = None

    def check(self, path):
        if not self.components:
            raise ConfigError(
                f"A mixture mask needs a non-empty 'components' list ({_join(path, 'components')})."
            )
        weights = self.weights
        if weights is not None and (
            len(weights) != len(self.components) or min(weights) < 0 or sum(weights) <= 0
        ):
            raise ConfigError(
                f"{_join(path, 'weights')} must be non-negative, one per component "
                f"({len(self.components)}), not all zero; got {_show(list(weights))}."
            )


MaskConfig.CHOICES = {
    "square": SquareMask,
    "strokes": StrokesMask,
    "files": FilesMask,
    "mixture": MixtureMask,
}
MASK_TYPES = tuple(MaskConfig.CHOICES)


def data_section(data):
    """A ``DataConfig`` from a ``data`` mapping (checked strictly) or a ``DataConfig``."""
    return DataConfig.parse(data, "data")


def mask_section(mask):
    """A ``MaskConfig`` from a ``mask`` mapping (checked strictly) or a ``MaskConfig``."""
    return MaskConfig.parse(mask, "mask")


# ---------------------------------------------------------------- the other sections


@dataclasses.dataclass(frozen=True)
class ModelConfig(Section):
    """Network widths, the generator's initialiser and the discriminator's spectral norm."""

    base_channels: int = 32
    kernel_init: str = "released"
    discriminator_channels: int = 64
    spectral_norm: Literal[SPECTRAL_NORMS] = "released"

    def check(self, path):
        _positive_ints(self, path, ["base_channels", "discriminator_channels"])
        _require(
            self.base_channels % 4 == 0,
            _join(path, "base_channels"),
            "a multiple of 4 (the attention's 4 fuse branches share the channels)",
            self.base_channels,
        )
        if self.kernel_init != "released":
            try:
                kernel_initializer(self.kernel_init)
            except ValueError:
                raise ConfigError(
                    f'{_join(path, "kernel_init")} must be "released" or a Keras initializer '
                    f'name (e.g. "he_normal"), got {_show(self.kernel_init)}.'
                ) from None


@dataclasses.dataclass(frozen=True)
class LossesConfig(Section):
    """The GAN loss and the weights of eq 9 (``PENetGAN`` arguments)."""

    gan_type: Literal[tuple(GAN_LOSSES)] = "hinge"
    hole_weight: float = 6.0
    valid_weight: float = 1.0
    pyramid_weight: float = 0.5
    adversarial_weight: float = 0.1

    def check(self, path):
        for name in ("hole_weight", "valid_weight", "pyramid_weight", "adversarial_weight"):
            value = getattr(self, name)
            _require(value >= 0, _join(path, name), "non-negative", value)


@dataclasses.dataclass(frozen=True)
class OptimizerConfig(Section):
    """Adam for both networks. ``d2g_lr``: the discriminator's learning-rate factor, until
    the first decay as released (``d2g_lr_schedule = "released"``: the released trainer
    sets both rates to ``lr * 0.1`` there) or at every step (``"every_step"``)."""

    lr: float = 1e-4
    beta_1: float = 0.5
    beta_2: float = 0.999
    epsilon: float = 1e-8
    epsilon_placement: Literal[EPSILON_PLACEMENTS] = "torch"
    d2g_lr: float = 1.0
    d2g_lr_schedule: Literal[D2G_LR_SCHEDULES] = "released"

    def check(self, path):
        for name in ("lr", "epsilon", "d2g_lr"):
            value = getattr(self, name)
            _require(value > 0, _join(path, name), "positive", value)
        for name in ("beta_1", "beta_2"):
            value = getattr(self, name)
            _require(0 <= value < 1, _join(path, name), "in [0, 1)", value)


@dataclasses.dataclass(frozen=True)
class ScheduleConfig(Section):
    """The released step decay: ``lr * 0.1 ** (min(it, niter_steady) // niter)``, ``it``
    the iteration counted from 1 (``penet_tf.training.gan.StepDecay``)."""

    niter: int = 100000
    niter_steady: int = 150000

    def check(self, path):
        _positive_ints(self, path, ["niter"])
        _require(
            self.niter_steady >= 0, _join(path, "niter_steady"), "non-negative", self.niter_steady
        )


@dataclasses.dataclass(frozen=True)
class TrainerConfig(Section):
    """Batch (global), length and how often to checkpoint and log."""

    batch_size: int = 16
    iterations: int = 1000000
    checkpoint_every: int = 10000
    keep_checkpoints: int = 3
    log_every: int = 100
    image_every: int = 1000

    def check(self, path):
        _positive_ints(self, path, [f.name for f in dataclasses.fields(self)])


@dataclasses.dataclass(frozen=True)
class TrainingConfig(Section):
    """A whole training config (``python -m penet_tf.train --config FILE``).

    Attributes:
        name: the run's name (``output_dir`` defaults to ``runs/<name>``).
        seed: the same initial weights, data order, augmentation and masks per seed.
        output_dir: the run folder (checkpoints, logs, weights); ``load_config`` fills it.
        strategy: ``auto``, ``default``, ``mirrored`` or ``multi_worker``.
        cpu_devices: >1 splits the CPU into logical devices (MirroredStrategy on a CPU).
        mixed_precision: null (float32), ``auto``, ``mixed_float16`` or ``mixed_bfloat16``.
        data, mask, model, losses, optimizer, schedule, trainer: the sections.
    """

    name: str = "penet"
    seed: int = 2020
    output_dir: str | None = None
    strategy: Literal[STRATEGIES] = "auto"
    cpu_devices: int = 1
    mixed_precision: Literal[MIXED_PRECISION] | None = None
    data: DataConfig = dataclasses.field(default_factory=FolderData)
    mask: MaskConfig = dataclasses.field(default_factory=SquareMask)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    losses: LossesConfig = dataclasses.field(default_factory=LossesConfig)
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    schedule: ScheduleConfig = dataclasses.field(default_factory=ScheduleConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)

    @classmethod
    def _elsewhere(cls, key, path):
        # e.g. "iterations" at the top level: it lives in the trainer section.
        hints = typing.get_type_hints(cls)
        for name in cls.keys():
            kind = hints[name]
            if isinstance(kind, type) and issubclass(kind, Section):
                keys = kind.all_keys() if issubclass(kind, _Union) else kind.keys()
                if key in keys:
                    return f"Did you mean '{name}.{key}'?"
        return None

    def check(self, path):
        _positive_ints(self, path, ["cpu_devices"])
        # (the CPU was split and one of its parts trained, exit 0, "cpu_devices: 2" recorded)
        _require(
            self.cpu_devices == 1 or self.strategy != "default",
            _join(path, "cpu_devices"),
            '1 with strategy "default" (one device; auto or mirrored train on the split CPU)',
            self.cpu_devices,
        )
        _require(0 <= self.seed <= 2**32 - 1, _join(path, "seed"), "0 to 2**32 - 1", self.seed)

    def override(self, *overrides):
        """A new config with ``overrides`` applied (``"a.b=value"`` strings or nested
        dicts), checked like ``load_config``'s."""
        return TrainingConfig.parse(apply_overrides(self.to_dict(), overrides))


# ---------------------------------------------------------------- overrides and files


def parse_override(text):
    """``"trainer.iterations=100"`` -> ``(["trainer", "iterations"], 100, "100")``: the key
    path, the value (JSON, else the text as a string) and the raw text."""
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"Override {text!r} must look like key.path=value.")
    key, raw = text.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"Override {text!r}: {key.strip()!r} is not a key path like a.b.")
    try:
        value = json.loads(raw, object_pairs_hook=_refuse_repeated_keys)
    except json.JSONDecodeError:
        value = raw  # a plain string
    except ConfigError as error:
        raise ConfigError(f"Override {text!r}: {error}") from None
    return parts, value, raw


def _field_type(parts, tree):
    """The annotation of the key at ``parts`` in the raw ``tree`` (None: not a known key)."""
    kind = TrainingConfig
    for depth, part in enumerate(parts):
        if isinstance(kind, type) and issubclass(kind, _Union):
            node = tree
            for step in parts[:depth]:
                node = node.get(step, {}) if isinstance(node, Mapping) else {}
            choice = node.get(kind.CHOICE, kind.DEFAULT) if isinstance(node, Mapping) else None
            kind = kind.CHOICES.get(choice)
        if not (isinstance(kind, type) and issubclass(kind, Section)) or part not in kind.keys():
            return None
        kind = typing.get_type_hints(kind)[part]
    return kind


def _takes_text(kind):
    args = (
        typing.get_args(kind)
        if typing.get_origin(kind) in (types.UnionType, typing.Union)
        else (kind,)
    )
    return str in args


def _flatten(update, prefix=()):
    for key, value in update.items():
        if isinstance(value, Mapping) and value:
            yield from _flatten(value, (*prefix, key))
        else:
            yield [*prefix, key], value, None


def apply_overrides(tree, overrides):
    """``tree`` (a raw config dict, changed in place and returned) with ``overrides``.

    Setting ``data.source`` or ``mask.type`` to another choice first drops the keys only the
    old choice has (e.g. tfds's ``name`` when switching to ``folder``); those choice keys
    apply before the others, whatever their order. A value given as text for a string key
    stays text (``--set name=2024`` names the run "2024").
    """
    items = []
    for override in overrides:
        if isinstance(override, Mapping):
            items.extend(_flatten(override))
            continue
        parts, value, raw = parse_override(override)
        kind = _field_type(parts, tree)
        if (
            isinstance(value, Mapping)
            and value  # ({} resets the section to its defaults)
            and isinstance(kind, type)
            and issubclass(kind, Section)
        ):
            # ``trainer={"iterations": 3}`` sets those keys: it replaced the section, the
            # file's other trainer keys (batch_size, checkpoint_every) back to defaults.
            items.extend(_flatten(value, tuple(parts)))
        else:
            items.append((parts, value, raw))
    unions = {"data": DataConfig, "mask": MaskConfig}

    def is_choice(parts):
        return len(parts) == 2 and parts[0] in unions and parts[1] == unions[parts[0]].CHOICE

    for parts, value, raw in sorted(items, key=lambda item: not is_choice(item[0])):
        kind = _field_type(parts, tree)
        if raw is not None and kind is not None and _takes_text(kind):
            if value is not None and not isinstance(value, str):
                value = raw
        node = tree
        for depth, part in enumerate(parts[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                where = ".".join(parts[: depth + 1])
                raise ConfigError(
                    f"Cannot set {'.'.join(parts)}: {where} is {_show(child)}, not a section"
                    + (" (set the whole list)" if isinstance(child, list) else "")
                    + "."
                )
            node = child
        if is_choice(parts):
            union = unions[parts[0]]
            old = node.get(union.CHOICE, union.DEFAULT)
            new_kind = union.CHOICES.get(value)
            if new_kind is not None and value != old:
                keep = set(new_kind.keys())
                dropped = [k for k in node if k in union.all_keys() and k not in keep]
                for key in dropped:
                    del node[key]
                if dropped:
                    logger.info(
                        "%s=%s drops %s",
                        ".".join(parts),
                        value,
                        ", ".join(f"{parts[0]}.{k}" for k in dropped),
                    )
        node[parts[-1]] = value
    return tree


def _refuse_repeated_keys(pairs):
    """A JSON object's pairs as a dict, refusing a key given twice in one object (JSON
    keeps the last one: a second ``"trainer"`` section dropped the first's keys)."""
    seen = {}
    for key, value in pairs:
        if key in seen:
            raise ConfigError(f"{key!r} is given twice in one object; keep one.")
        seen[key] = value
    return seen


def read_config_file(path):
    """The JSON object in the file at ``path``, or a one-line error."""
    if os.path.isdir(path):
        raise ConfigError(f"{path} is a folder, not a config file (a JSON file).")
    if not os.path.isfile(path):
        hint = ""
        if os.path.dirname(os.path.normpath(path)) == "configs":  # the README's configs/*.json
            hint = (
                " (the configs/ folder is in penet_tf's source checkout, not in the installed "
                "package: run from the checkout or give the file's path)"
            )
        raise FileNotFoundError(f"No config file at {path}{hint}")
    # UTF-8 whatever the locale (a data path with an "é" was misread, or refused as "not a
    # text file", under other encodings), with or without the BOM that Notepad writes.
    with open(path, encoding="utf-8-sig") as handle:
        try:
            loaded = json.load(handle, object_pairs_hook=_refuse_repeated_keys)
        except ConfigError as error:
            raise ConfigError(f"{path}: {error}") from None
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path} is not valid JSON: {error}") from None
        except UnicodeDecodeError as error:
            raise ConfigError(f"{path} is not a text (JSON) file: {error}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path} must hold a JSON object ({{...}}), not {_kind(loaded)}.")
    return loaded


def load_config(path=None, overrides=()):
    """Defaults <- the JSON file at ``path`` <- ``overrides`` ("a.b=value" strings).

    Returns a ``TrainingConfig`` with ``output_dir`` filled in (``runs/<name>``); raises
    ``ConfigError`` (a ``ValueError``) naming the key for anything it cannot use.

    A run's resolved ``config.json`` holds its ``output_dir``: loaded as it is, it
    resumes that run (its paths are relative to the folder the run started in:
    ``check_run_record``). Renamed (``--set name=y``) without an ``output_dir`` of its own, a
    file whose ``output_dir`` was its name's default (``runs/<name>``) gets the new name's
    (``runs/y``): a new run, not the old one trained on under another name.
    """
    tree = read_config_file(path) if path is not None else {}
    name, output_dir = tree.get("name", TrainingConfig.name), tree.get("output_dir")
    tree = apply_overrides(tree, overrides)
    if (
        isinstance(name, str)
        and isinstance(output_dir, str)
        and tree.get("name", TrainingConfig.name) != name
        and tree.get("output_dir") == output_dir
        and "output_dir" not in _top_keys(overrides)  # (given again: kept, as the user said)
        and os.path.normpath(output_dir) == os.path.join("runs", name)
    ):
        del tree["output_dir"]
    return as_config(tree)


def _top_keys(overrides):
    """The top-level config keys that ``overrides`` set."""
    keys = set()
    for override in overrides:
        if isinstance(override, Mapping):
            keys.update(override)
        elif isinstance(override, str) and "=" in override:
            keys.add(override.split("=", 1)[0].strip().split(".")[0])
    return keys


def check_run_record(path, config, overrides=()):
    """ConfigError when training is given ``path``, the ``config.json`` of a run folder
    (its checkpoints beside it), whose ``output_dir`` names another folder from here and
    stays the run's in ``config`` (``load_config(path, overrides)``: no ``output_dir``
    given, no ``name`` that moved the run to ``runs/<name>``): the record's paths are relative
    to the folder the run started in, and read from elsewhere (or after the run folder
    moved) it began a new run from step 0 (its data paths naming other folders, or none).
    (Readers of a run folder, the export and ``convert_torch``, take the folder itself.)"""
    from penet_tf.io_utils import same_path
    from penet_tf.training.checkpoints import has_checkpoints

    if path is None or os.path.basename(path) != "config.json":
        return
    output_dir = read_config_file(path).get("output_dir")
    if not isinstance(output_dir, str) or "output_dir" in _top_keys(overrides):
        return
    if config.output_dir != os.path.expanduser(output_dir):
        return  # (renamed: a new run in runs/<name>)
    folder = os.path.dirname(os.path.abspath(path))
    resolved = os.path.abspath(os.path.expanduser(output_dir))
    if same_path(resolved, folder) or not has_checkpoints(folder):
        return
    given = f"--output-dir {folder} (with data paths that hold from here)"
    if os.path.isabs(os.path.expanduser(output_dir)):  # (the run folder moved)
        raise ConfigError(
            f"{path} is the record of the run in {folder}, but its output_dir {output_dir!r} "
            f"is another folder: the run folder moved; give {given}"
        )
    parts = os.path.normpath(output_dir).split(os.sep)
    where = "where the run started"
    if folder.split(os.sep)[-len(parts) :] == parts:
        start = os.sep.join(folder.split(os.sep)[: -len(parts)]) or os.sep
        where = f"where the run started, {start}"
    raise ConfigError(
        f"{path} is the record of the run in {folder}, but its output_dir {output_dir!r} is "
        f"{resolved} from here: run from {where} (its paths are relative to it), or give "
        f"{given}"
    )


def as_config(config):
    """A ``TrainingConfig`` from itself or from a mapping (checked strictly), with
    ``output_dir`` filled in."""
    config = TrainingConfig.parse(config)  # (itself if it is one)
    if config.output_dir is None:
        # The run folder is runs/<name> ("" trained into runs/ itself, ".." into ./;
        # nested names, runs/a/b, are folders too).
        parts = config.name.replace("\\", "/").split("/")
        _require(
            "\0" not in config.name and not set(parts) & {"", ".", ".."},
            "name",
            "a folder name under runs/ (the run folder when output_dir is not set): not "
            "empty, no '.' or '..' part",
            config.name,
        )
        config = dataclasses.replace(config, output_dir=os.path.join("runs", config.name))
    return config
