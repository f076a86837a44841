"""The released-checkpoint converter (needs the [torch] extra)."""

import contextlib
import io
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import torch

from penet_tf import Discriminator, Generator
from penet_tf.convert_torch import (
    CheckpointError,
    load_released_discriminator,
    load_released_generator,
    main,
)
from penet_tf.io_utils import save_weights_atomically, write_json_atomically
from penet_tf.models import discriminator_config, generator_config


def test_cli_writes_weights_that_reproduce_the_fixture(official_fixture, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "penet_tf.convert_torch",
            "--generator",
            official_fixture["gen"],
            "--discriminator",
            official_fixture["dis"],
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "discriminator.config.json",
        "discriminator.weights.h5",
        "generator.weights.h5",
    ]
    generator = Generator()
    generator.build()
    generator.load_weights(tmp_path / "generator.weights.h5")
    output, _ = generator(official_fixture["x"], official_fixture["m"])
    assert np.abs(output[0].numpy() - official_fixture["output"]).max() < 1e-4
    discriminator = Discriminator()
    discriminator.build()
    discriminator.load_weights(tmp_path / "discriminator.weights.h5")
    logits = discriminator(official_fixture["x"])
    assert np.abs(logits[0].numpy() - official_fixture["d_real"]).max() < 1e-4


def test_module_prefix_from_distributed_checkpoints(official_fixture, tmp_path):
    state = torch.load(official_fixture["gen"], map_location="cpu", weights_only=True)["netG"]
    path = tmp_path / "gen_ddp.pth"
    torch.save({"netG": {f"module.{k}": v for k, v in state.items()}}, path)
    plain = load_released_generator(official_fixture["gen"])
    prefixed = load_released_generator(str(path))
    for a, b in zip(plain.weights, prefixed.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_wrong_checkpoints_are_named(official_fixture, tmp_path):
    state = torch.load(official_fixture["gen"], map_location="cpu", weights_only=True)["netG"]
    missing = dict(state)
    del missing["torgb3.0.bias"]
    torch.save({"netG": missing}, tmp_path / "missing.pth")
    with pytest.raises(CheckpointError, match="missing parameter 'torgb3.0.bias'"):
        load_released_generator(str(tmp_path / "missing.pth"))
    thin = {k: v[: max(1, v.shape[0] // 2)] for k, v in state.items()}
    torch.save({"netG": thin}, tmp_path / "thin.pth")
    with pytest.raises(CheckpointError, match="has shape"):
        load_released_generator(str(tmp_path / "thin.pth"))
    (tmp_path / "garbage.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable PyTorch checkpoint"):
        load_released_generator(str(tmp_path / "garbage.pth"))


def test_cli_reports_errors_without_a_traceback(tmp_path, capsys):
    assert main(["--generator", str(tmp_path / "nope.pth"), "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: No checkpoint at") and len(error.splitlines()) == 1


def _convert(*args):
    """``python -m penet_tf.convert_torch ARGS`` in this process; returns what it printed."""
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main([str(arg) for arg in args]) == 0
    return printed.getvalue()


def test_released_keras_released_round_trip_is_bit_identical(official_fixture, tmp_path):
    keras_dir, torch_dir = tmp_path / "keras", tmp_path / "torch"
    _convert(
        "--generator",
        official_fixture["gen"],
        "--discriminator",
        official_fixture["dis"],
        "--out",
        keras_dir,
    )
    printed = _convert("--to-torch", "--weights", keras_dir, "--out", torch_dir)
    assert "gen.pth" in printed and "dis.pth" in printed
    assert sorted(p.name for p in torch_dir.iterdir()) == ["dis.pth", "gen.pth"]
    for name, key in (("gen", "netG"), ("dis", "netD")):
        original = torch.load(official_fixture[name], map_location="cpu", weights_only=True)[key]
        written = torch.load(torch_dir / f"{name}.pth", map_location="cpu", weights_only=True)
        assert list(written) == [key]
        written = written[key]
        assert sorted(written) == sorted(original)
        for tensor in original:
            assert written[tensor].dtype == torch.float32
            assert torch.equal(written[tensor], original[tensor].float()), tensor


def _save_as_training_does(folder, generator, discriminator):
    """The weights + architecture files ``TrainingState.export_weights`` writes."""
    for name, model, config in (
        ("generator", generator, generator_config(generator)),
        ("discriminator", discriminator, discriminator_config(discriminator)),
    ):
        save_weights_atomically(model, folder / f"{name}.weights.h5")
        write_json_atomically(config, folder / f"{name}.config.json")


def test_trained_thin_weights_export_to_the_released_format(tmp_path):
    generator = Generator(base_channels=4)
    generator.build()
    discriminator = Discriminator(base_channels=8)
    discriminator.build()
    images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=3)
    mask = tf.cast(tf.random.uniform([1, 64, 64, 1], seed=4) > 0.7, tf.float32)
    discriminator(images, training=True)  # moves u, v away from their initial values
    _save_as_training_does(tmp_path, generator, discriminator)
    assert main(["--to-torch", "--weights", str(tmp_path), "--out", str(tmp_path / "pth")]) == 0

    clone = load_released_generator(str(tmp_path / "pth" / "gen.pth"), Generator(base_channels=4))
    np.testing.assert_array_equal(
        clone(images, mask)[0].numpy(), generator(images, mask)[0].numpy()
    )
    d_clone = load_released_discriminator(
        str(tmp_path / "pth" / "dis.pth"), Discriminator(base_channels=8)
    )
    for a, b in zip(discriminator.weights, d_clone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_to_torch_errors_are_named(tmp_path, capsys):
    assert main(["--to-torch", "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "No generator.weights.h5 in" in capsys.readouterr().err
    discriminator = Discriminator(base_channels=8, spectral_norm="keras")
    discriminator.build()
    generator = Generator(base_channels=4)
    generator.build()
    _save_as_training_does(tmp_path, generator, discriminator)
    assert main(["--to-torch", "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "spectral_norm='released'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # nothing half-written
    with pytest.raises(SystemExit):
        main(["--to-torch", "--generator", "g.pth", "--out", str(tmp_path)])
