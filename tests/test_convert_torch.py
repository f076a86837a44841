"""The released-checkpoint converter (needs the [torch] extra)."""

import subprocess
import sys

import numpy as np
import pytest
import torch

from penet_tf import Discriminator, Generator
from penet_tf.convert_torch import CheckpointError, load_released_generator


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


def test_cli_reports_errors_without_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "penet_tf.convert_torch",
            "--generator",
            str(tmp_path / "nope.pth"),
            "--out",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 2
    assert "error: No checkpoint at" in result.stderr
    assert "Traceback" not in result.stderr
