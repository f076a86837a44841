"""Training configs: JSON files in configs/, defaults, and ``--set key=value`` overrides."""

import copy
import json
import os

DEFAULTS = {
    "name": "penet",
    "seed": 2020,
    "output_dir": None,  # default: runs/<name>
    "strategy": "auto",  # auto | default | mirrored | multi_worker
    "cpu_devices": 1,  # >1 splits the CPU into logical devices (MirroredStrategy on CPU)
    "mixed_precision": None,  # None | auto | mixed_float16 | mixed_bfloat16
    "data": {
        "source": "folder",
        "path": None,
        "image_size": [256, 256],
        "random_flip": True,
        "color_jitter": 0.05,
        "crop": "resize",
    },
    "mask": {"type": "square"},
    "model": {
        "base_channels": 32,
        "kernel_init": "released",
        "discriminator_channels": 64,
        "spectral_norm": "released",  # released (PyTorch's) | keras | none
    },
    "losses": {
        "gan_type": "hinge",
        "hole_weight": 6.0,
        "valid_weight": 1.0,
        "pyramid_weight": 0.5,
        "adversarial_weight": 0.1,
    },
    "optimizer": {
        "lr": 1e-4,
        "beta_1": 0.5,
        "beta_2": 0.999,
        "epsilon": 1e-8,
        "epsilon_placement": "torch",  # torch (released) | keras
        "d2g_lr": 1.0,
    },
    "schedule": {"niter": 100000, "niter_steady": 150000},
    "trainer": {
        "batch_size": 16,
        "iterations": 1000000,
        "checkpoint_every": 10000,
        "keep_checkpoints": 3,
        "log_every": 100,
        "image_every": 1000,
    },
}


# Sections whose keys depend on the choice inside them (data source, mask type).
FREE_FORM = ("data", "mask")


def _merge(base, update, path=""):
    for key, value in update.items():
        section = path.split(".")[0] if path else key
        if key not in base and section not in FREE_FORM:
            raise ValueError(f"Unknown config key '{path}{key}'.")
        if isinstance(base.get(key), dict) and isinstance(value, dict):
            _merge(base[key], value, f"{path}{key}.")
        else:
            base[key] = value
    return base


def parse_override(text):
    """``"trainer.iterations=100"`` -> ``{"trainer": {"iterations": 100}}`` (JSON values)."""
    if "=" not in text:
        raise ValueError(f"Override {text!r} must look like key.path=value.")
    key, raw = text.split("=", 1)
    try:
        value = json.loads(raw)
    except json.JSONDecodeError:
        value = raw  # a plain string
    for part in reversed(key.strip().split(".")):
        value = {part: value}
    return value


def load_config(path=None, overrides=()):
    """Defaults <- the JSON file at ``path`` <- ``overrides`` ("a.b=value" strings)."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        if not os.path.isfile(path):
            raise FileNotFoundError(f"No config file at {path}")
        with open(path) as handle:
            try:
                loaded = json.load(handle)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path} is not valid JSON: {error}") from error
        if "mask" in loaded:  # a mask config replaces the default as a whole
            config["mask"] = loaded.pop("mask")
        _merge(config, loaded)
    for text in overrides:
        _merge(config, parse_override(text))
    if config["output_dir"] is None:
        config["output_dir"] = os.path.join("runs", config["name"])
    trainer = config["trainer"]
    for key in ("batch_size", "iterations", "checkpoint_every", "log_every", "image_every"):
        if not isinstance(trainer[key], int) or trainer[key] < 1:
            raise ValueError(f"trainer.{key} must be a positive integer, got {trainer[key]!r}.")
    size = config["data"]["image_size"]
    if len(size) != 2 or any(s % 64 for s in size):
        raise ValueError(f"data.image_size must be [H, W], multiples of 64; got {size}.")
    return config
