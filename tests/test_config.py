"""Strict typed training configs: unknown keys, types, choices, overrides, round trips."""

import dataclasses
import inspect
import json
import os
import subprocess
import sys

import pytest

from penet_tf.data.images import ImageSource
from penet_tf.data.masks import MaskGenerator, strokes
from penet_tf.training.config import (
    MASK_TYPES,
    SOURCES,
    ConfigError,
    DemoData,
    FolderData,
    StrokesMask,
    TrainerConfig,
    TrainingConfig,
    as_config,
    load_config,
    read_config_file,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    name for name in os.listdir(os.path.join(REPO, "configs")) if name.endswith(".json")
)


def refused(overrides, path=None):
    """The one-line message ``load_config`` refuses ``overrides`` with."""
    with pytest.raises(ConfigError) as info:
        load_config(path, overrides)
    message = str(info.value)
    assert "\n" not in message, message
    assert isinstance(info.value, ValueError)  # what the CLIs catch
    return message


# ---------------------------------------------------------------- unknown keys


@pytest.mark.parametrize(
    "override,expected",
    [
        ("sed=1", "Unknown config key 'sed'. Did you mean 'seed'?"),
        ("iterations=5", "Unknown config key 'iterations'. Did you mean 'trainer.iterations'?"),
        ("model.base_chanels=4", "Did you mean 'model.base_channels'?"),
        ("losses.hole_wieght=1", "Did you mean 'losses.hole_weight'?"),
        ("optimizer.beta1=0.9", "Did you mean 'optimizer.beta_1'?"),
        ("schedule.nitre=5", "Did you mean 'schedule.niter'?"),
        ("trainer.iteratoins=3", "Did you mean 'trainer.iterations'?"),
        (
            "data.colour_jitter=0",
            "Unknown options for folder data: 'data.colour_jitter'. "
            "Did you mean 'data.color_jitter'?",
        ),
        ("mask.kindd=3", "Unknown options for square masks: 'mask.kindd'. Valid keys: augment"),
    ],
)
def test_an_unknown_key_in_any_section_is_refused_with_the_nearest_one(override, expected):
    assert expected in refused([override])


@pytest.mark.parametrize("source", SOURCES)
def test_every_data_source_is_strict(source):
    message = refused([f"data.source={source}", "data.colour_jitter=0"])
    assert message.startswith(f"Unknown options for {source} data: 'data.colour_jitter'.")
    assert "Did you mean 'data.color_jitter'?" in message


@pytest.mark.parametrize("kind", MASK_TYPES)
def test_every_mask_type_is_strict(kind):
    needed = {"files": {"path": "masks"}, "mixture": {"components": [{"type": "square"}]}}
    mask = {"type": kind, **needed.get(kind, {}), "kindd": 1}
    message = refused([f"mask={json.dumps(mask)}"])
    assert message.startswith(f"Unknown options for {kind} masks: 'mask.kindd'."), message


def test_a_key_of_another_choice_says_whose_it_is():
    message = refused(["data.name=dtd"])
    assert "'name' is an option of tfds data, not of folder data" in message
    message = refused(["mask.hole_ratio=[0.1, 0.2]"])
    assert "'hole_ratio' is an option of strokes masks, not of square masks" in message
    assert "'weights' is an option of mixture masks" in refused(["mask.weights=[1]"])
    # Given as null it is no option: runs started before 2026-12-02 recorded "path": null
    # for demo and TFDS data, and their config.json was refused on resume.
    assert as_config({"data": {"source": "demo", "path": None}}).data == DemoData()
    assert "'path' is an option of" in refused(["data.source=demo", "data.path=x"])
    assert "Unknown options" in refused(['data={"source": "demo", "colour": null}'])


def test_unknown_keys_in_files_and_mixture_components(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"trainer": {"iteratons": 5}}))
    assert "Did you mean 'trainer.iterations'?" in refused([], str(path))
    mask = {"type": "mixture", "components": [{"type": "square"}, {"type": "strokes", "hole": 1}]}
    path.write_text(json.dumps({"mask": mask}))
    message = refused([], str(path))
    assert "'mask.components[1].hole'. Did you mean 'mask.components[1].hole_ratio'?" in message
    path.write_text("[1, 2]")
    assert "must hold a JSON object" in refused([], str(path))


# ---------------------------------------------------------------- types and choices


@pytest.mark.parametrize(
    "override,expected",
    [
        ("optimizer.lr=fast", 'optimizer.lr must be a number, got "fast" (a string).'),
        ("seed=1.5", "seed must be an integer, got 1.5 (a number)."),
        ('trainer.batch_size="4"', 'trainer.batch_size must be an integer, got "4" (a string).'),
        ("data.random_flip=1", "data.random_flip must be true or false, got 1 (a number)."),
        ("data.image_size=[64]", "data.image_size must be a list of 2 integers, got [64]"),
        ("optimizer.lr=NaN", "optimizer.lr must be a finite number"),
        ("model={}", None),  # a whole section may be replaced (defaults fill it)
        ("model=4", "model must be an object ({...}), got 4."),
        ("trainer.iterations.x=3", "trainer.iterations must be an integer, got {"),
        # (passed the check, then stopped the run with "filters (6) must be divisible ...")
        ("model.base_channels=6", "model.base_channels must be a multiple of 4 (the attention"),
    ],
)
def test_type_errors_are_one_line_naming_the_key_and_type(override, expected):
    if expected is None:
        assert load_config(None, [override]).model == TrainingConfig().model
        return
    assert expected in refused([override])


@pytest.mark.parametrize(
    "override,expected",
    [
        ("model.spectral_norm=relesed", '"released", "keras", "none", got "relesed"; did you'),
        ("optimizer.epsilon_placement=pytorch", 'got "pytorch"; did you mean "torch"?'),
        ("losses.gan_type=hinje", 'did you mean "hinge"?'),
        ("strategy=mirored", 'did you mean "mirrored"?'),
        ('mixed_precision="mixed_bf16"', 'did you mean "mixed_bfloat16"?'),
        ("data.crop=center", 'data.crop must be one of "resize", "random", got "center".'),
        ("data.source=foldr", "Unknown data source 'foldr' (data.source): did you mean 'folder'?"),
        ("mask.type=circle", "Unknown mask type 'circle' (mask.type): expected one of square"),
        ("model.kernel_init=bogus", 'must be "released" or a Keras initializer name'),
    ],
)
def test_choices_are_checked_by_the_config(override, expected):
    assert expected in refused([override])


@pytest.mark.parametrize(
    "override,expected",
    [
        ("data.image_size=[100, 64]", "multiples of 64"),
        ("data.color_jitter=0.9", "data.color_jitter must be in [0, 0.5]"),
        ("trainer.batch_size=0", "trainer.batch_size must be a positive integer, got 0."),
        ("optimizer.beta_2=1", "optimizer.beta_2 must be in [0, 1)"),
        ("losses.hole_weight=-1", "losses.hole_weight must be non-negative"),
        ('mask={"type": "strokes", "hole_ratio": [0.5, 0.2]}', "mask.hole_ratio must be"),
        ('mask={"type": "mixture", "components": []}', "non-empty 'components'"),
        ('mask={"type": "files"}', "files masks need mask.path"),
        # 1e20 passed, then failed in TensorFlow (an OverflowError traceback for niter)
        ("schedule.niter=100000000000000000000", "schedule.niter must be at most 4294967295"),
        ("trainer.batch_size=100000000000000000000", "trainer.batch_size must be at most"),
        ("seed=-1", "seed must be 0 to 2**32 - 1, got -1."),  # was Keras' error, unnamed
    ],
)
def test_ranges_are_checked(override, expected):
    assert expected in refused([override])


# ---------------------------------------------------------------- overrides and round trips


def test_switching_the_source_drops_the_old_sources_keys_whatever_the_order():
    dtd = os.path.join(REPO, "configs", "dtd.json")
    config = load_config(dtd, ["data.path=/photos", "data.source=folder"])
    assert config.data == FolderData(path="/photos", image_size=(256, 256))
    assert "tfds data" in refused(["data.source=tfds", "data.path=/photos"])
    demo = load_config(os.path.join(REPO, "configs", "demo.json"), ["mask.type=strokes"])
    assert demo.mask == StrokesMask()


def test_text_stays_text_for_string_keys():
    config = load_config(None, ["name=2024", "data.path=123"])
    assert config.name == "2024" and config.data.path == "123"
    assert config.output_dir == os.path.join("runs", "2024")


def test_a_renamed_run_config_starts_its_own_run(tmp_path):
    """A run's config.json holds its output_dir: `--config runs/x/config.json --set
    name=y` went on training run x (its checkpoints, under the new name)."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(load_config(None, ["name=x"]).to_dict()))
    assert load_config(str(path)).output_dir == os.path.join("runs", "x")  # resumes x
    assert load_config(str(path), ["name=y"]).output_dir == os.path.join("runs", "y")
    given = load_config(str(path), ["name=y", "output_dir=elsewhere/y"])
    assert given.output_dir == "elsewhere/y"
    # given as the file has it (--output-dir runs/x): went to runs/y from step 0, unsaid
    for override in ('output_dir="runs/x"', {"output_dir": "runs/x"}):
        assert load_config(str(path), ["name=y", override]).output_dir == "runs/x"
    path.write_text(json.dumps(load_config(None, ["name=x", "output_dir=/data/x"]).to_dict()))
    assert load_config(str(path), ["name=y"]).output_dir == "/data/x"  # chosen: kept


def test_override_gives_a_new_checked_config():
    config = load_config(os.path.join(REPO, "configs", "demo.json"))
    longer = config.override("trainer.iterations=4", {"optimizer": {"lr": 1e-3}})
    assert (longer.trainer.iterations, longer.optimizer.lr) == (4, 1e-3)
    assert config.trainer.iterations == 300  # unchanged
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.trainer.iterations = 5
    with pytest.raises(ConfigError, match="Did you mean 'trainer.iterations'"):
        config.override("trainer.iteration=4")


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_round_trips_through_its_resolved_json(name, tmp_path):
    config = load_config(os.path.join(REPO, "configs", name))
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config.to_dict(), indent=2))  # as training writes it
    assert load_config(str(path)) == config
    assert json.loads(path.read_text()) == config.to_dict()


def test_library_entry_points_are_strict_too():
    with pytest.raises(ConfigError, match="Did you mean 'data.path'"):
        ImageSource({"source": "folder", "pth": "/photos"})
    with pytest.raises(ConfigError, match="Did you mean 'mask.hole_ratio'"):
        MaskGenerator({"type": "strokes", "hole_ratios": [0.1, 0.2]}, 64, 64)


def test_stroke_defaults_are_the_functions():
    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(strokes).parameters.items()
        if parameter.default is not inspect.Parameter.empty
    }
    assert {k: v for k, v in StrokesMask().to_dict().items() if k != "type"} == {
        key: list(value) if isinstance(value, tuple) else value for key, value in defaults.items()
    }


def test_cli_refuses_a_typo_in_one_line(capsys, monkeypatch):
    import logging

    from penet_tf import train

    monkeypatch.chdir(REPO)
    log = logging.getLogger("penet_tf")
    before = (log.level, log.propagate, list(log.handlers))
    assert train.main(["--config", "configs/demo.json", "--set", "data.colour_jitter=0"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "error: Unknown options for demo data: 'data.colour_jitter'. "
        "Did you mean 'data.color_jitter'?"
    ]
    # (a notebook's own logging is as it was: the level stayed INFO)
    assert (log.level, log.propagate, list(log.handlers)) == before


def test_a_missing_configs_file_says_where_configs_live(tmp_path, monkeypatch):
    """Installed from a wheel, `--config configs/demo.json` from another folder said only
    "No config file at configs/demo.json"."""

    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="the configs/ folder is in penet_tf's source"):
        read_config_file("configs/demo.json")


def test_a_section_given_as_json_on_the_command_line_merges_into_the_file_s():
    """`--set trainer={"iterations": 3}` replaced the section: the file's batch_size and
    checkpoint_every went back to the defaults without a word."""
    demo = os.path.join(REPO, "configs", "demo.json")
    with open(demo) as handle:
        trainer = json.load(handle)["trainer"]
    config = load_config(demo, ['trainer={"iterations": 3}'])
    assert config.trainer.iterations == 3
    assert config.trainer.batch_size == trainer["batch_size"] != TrainerConfig.batch_size
    # An empty object resets the section; a string key keeps JSON as text.
    assert load_config(demo, ["trainer={}"]).trainer == TrainerConfig()
    assert load_config(demo, ['name={"a": 1}']).name == '{"a": 1}'
    # A source switch inside the object still drops the old source's keys.
    dtd = os.path.join(REPO, "configs", "dtd.json")
    switched = load_config(dtd, ['data={"source": "folder", "path": "/photos"}'])
    assert (switched.data.source, switched.data.path) == ("folder", "/photos")


def test_config_files_are_utf8_with_or_without_a_bom_and_keys_are_given_once(tmp_path):
    """A config with an "é" in a path was refused as "not a text (JSON) file" under an
    ASCII locale (and misread as cp1252 on Windows); Notepad's BOM was refused; a key
    given twice kept its last value only (a second "trainer" dropped the first's keys)."""
    path = tmp_path / "u.json"
    path.write_bytes('{"data": {"source": "folder", "path": "photos_é"}}'.encode())
    bom = tmp_path / "bom.json"
    bom.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    assert read_config_file(str(bom)) == read_config_file(str(path))
    read = "from penet_tf.training.config import read_config_file as r; import sys; "
    read += "print(ascii(r(sys.argv[1])['data']['path']))"
    ascii_locale = dict(os.environ, LC_ALL="C", PYTHONUTF8="0", PYTHONCOERCECLOCALE="0")
    shown = subprocess.run(
        [sys.executable, "-c", read, str(path)],
        env=ascii_locale,
        capture_output=True,
        text=True,
        check=True,
    )
    assert shown.stdout.strip() == ascii("photos_é")
    twice = tmp_path / "twice.json"
    twice.write_text('{"trainer": {"iterations": 5}, "trainer": {"batch_size": 3}}')
    with pytest.raises(ConfigError, match=r"twice.json: 'trainer' is given twice"):
        read_config_file(str(twice))
    assert "'iterations' is given twice" in refused(['trainer={"iterations": 1, "iterations": 2}'])
    with pytest.raises(ConfigError, match="is a folder, not a config file"):
        read_config_file(str(tmp_path))


def test_cpu_devices_with_the_default_strategy_are_refused():
    """--strategy default --cpu-devices 2 split the CPU and trained on one part of it,
    exit 0, with cpu_devices: 2 in the run's record."""
    message = refused(["strategy=default", "cpu_devices=2"])
    assert message.startswith('cpu_devices must be 1 with strategy "default"')
    assert load_config(None, ["strategy=mirrored", "cpu_devices=2"]).cpu_devices == 2
