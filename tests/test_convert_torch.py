"""The released-checkpoint converter (needs the [torch] extra)."""

import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import torch

from penet_tf import Discriminator, Generator
from penet_tf.convert_torch import (
    CheckpointError,
    generator_convolutions,
    load_released_discriminator,
    load_released_generator,
    main,
)
from penet_tf.io_utils import save_weights_and_config
from penet_tf.models import discriminator_config, generator_config, load_generator


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
        "generator.config.json",
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
    with pytest.raises(CheckpointError, match=r"is not a PyTorch checkpoint \(a zip or pickle"):
        load_released_generator(str(tmp_path / "garbage.pth"))
    # A copy cut short, in either of torch's formats, was "not a PyTorch checkpoint".
    for zipped in (True, False):
        torch.save({"netG": state}, tmp_path / "whole.pth", _use_new_zipfile_serialization=zipped)
        whole = (tmp_path / "whole.pth").read_bytes()
        (tmp_path / "cut.pth").write_bytes(whole[: len(whole) // 2])
        with pytest.raises(CheckpointError, match="is a PyTorch checkpoint that is damaged or cut"):
            load_released_generator(str(tmp_path / "cut.pth"))


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


def _convert_released(official_fixture, out):
    """The released checkpoints (both networks) to Keras weights in ``out``."""
    return _convert(
        "--generator",
        official_fixture["gen"],
        "--discriminator",
        official_fixture["dis"],
        "--out",
        out,
    )


def test_released_keras_released_round_trip_is_bit_identical(official_fixture, tmp_path):
    keras_dir, torch_dir = tmp_path / "keras", tmp_path / "torch"
    _convert_released(official_fixture, keras_dir)
    printed = _convert("--to-torch", "--weights", keras_dir, "--out", torch_dir, "--iteration", 50)
    assert "gen_00050.pth" in printed and "dis_00050.pth" in printed and "note" not in printed
    names = ["dis_00050.pth", "gen_00050.pth", "latest.ckpt", "opt_00050.pth"]
    assert sorted(p.name for p in torch_dir.iterdir()) == names
    # As the release's test.py finds them: latest.ckpt's last line names the files.
    latest = (torch_dir / "latest.ckpt").read_text().splitlines()[-1]
    assert latest == "00050"
    for name, key in (("gen", "netG"), ("dis", "netD")):
        original = torch.load(official_fixture[name], map_location="cpu", weights_only=True)[key]
        path = torch_dir / f"{name}_{latest}.pth"
        assert not path.read_bytes().startswith(b"PK")  # legacy format: PyTorch < 1.6 reads it
        written = torch.load(path, map_location="cpu", weights_only=True)
        assert list(written) == [key]
        written = written[key]
        assert list(written) == list(original)  # the release's order too
        for tensor in original:
            assert written[tensor].dtype == torch.float32
            assert torch.equal(written[tensor], original[tensor].float()), tensor


def _save_as_training_does(folder, generator, discriminator):
    """The weights + architecture files ``TrainingState.export_weights`` writes."""
    for name, model, config in (
        ("generator", generator, generator_config(generator)),
        ("discriminator", discriminator, discriminator_config(discriminator)),
    ):
        save_weights_and_config(model, config, folder / f"{name}.weights.h5")


def test_trained_thin_weights_export_to_the_released_format(tmp_path):
    generator = Generator(base_channels=4)
    generator.build()
    discriminator = Discriminator(base_channels=8)
    discriminator.build()
    images = tf.random.uniform([1, 64, 64, 3], -1, 1, seed=3)
    mask = tf.cast(tf.random.uniform([1, 64, 64, 1], seed=4) > 0.7, tf.float32)
    discriminator(images, training=True)  # moves u, v away from their initial values
    _save_as_training_does(tmp_path, generator, discriminator)
    printed = _convert("--to-torch", "--weights", tmp_path, "--out", tmp_path / "pth")
    assert "note: base_channels {'netG': 4, 'netD': 8} are not the release's" in printed

    # The widths come from the shapes (a thin .pth could not be read back).
    clone = load_released_generator(str(tmp_path / "pth" / "gen_00000.pth"))
    np.testing.assert_array_equal(
        clone(images, mask)[0].numpy(), generator(images, mask)[0].numpy()
    )
    assert load_generator(tmp_path / "pth" / "gen_00000.pth").base_channels == 4
    d_clone = load_released_discriminator(str(tmp_path / "pth" / "dis_00000.pth"))
    for a, b in zip(discriminator.weights, d_clone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_to_torch_errors_are_named(tmp_path, capsys):
    assert main(["--to-torch", "--weights", str(tmp_path), "--out", str(tmp_path / "o")]) == 2
    assert "No generator.weights.h5 or training checkpoint in" in capsys.readouterr().err
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


def _error_of(capsys, *args):
    """``main(ARGS)``'s one-line stderr, asserting exit status 2."""
    assert main([str(arg) for arg in args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and len(error.splitlines()) == 1, error
    return error.strip()


def test_the_other_networks_checkpoint_is_named(tmp_path, capsys):
    tensor = torch.zeros(2)
    dis, gen = tmp_path / "dis.pth", tmp_path / "gen.pth"
    torch.save({"netD": {"classifier.bias": tensor}}, dis)
    torch.save({"netG": {"torgb1.0.bias": tensor}, "epoch": 5}, gen)
    out = tmp_path / "out"
    assert _error_of(capsys, "--generator", dis, "--out", out) == (
        f"error: {dis} is not a generator checkpoint: it holds 'netD' (a discriminator's; "
        "convert_torch takes it as --discriminator)."
    )
    # The generator's checkpoint is read, but no model is built before both are checked.
    assert _error_of(capsys, "--generator", gen, "--discriminator", gen, "--out", out) == (
        f"error: {gen} is not a discriminator checkpoint: it holds 'netG' (a generator's; "
        "convert_torch takes it as --generator)."
    )
    bare = tmp_path / "bare_dis.pth"
    torch.save({"encoder.0.weight_orig": tensor, "classifier.bias": tensor}, bare)
    assert _error_of(capsys, "--generator", bare, "--out", out) == (
        f"error: {bare} is not a generator checkpoint: it holds a discriminator's parameters "
        "('classifier.bias', 'encoder.0.weight_orig', ...; convert_torch takes it as "
        "--discriminator)."
    )
    assert not out.exists()
    # penet_tf.export / inpaint read a .pth through load_generator
    with pytest.raises(ValueError, match="dis.pth is not a generator checkpoint: it holds 'netD'"):
        load_generator(dis, base_channels=4)
    # The release's optimizer state (opt_NNNNN.pth): "entry 'epoch' is not a tensor".
    opt = tmp_path / "opt_00000.pth"
    torch.save({"epoch": 0, "iteration": 0, "optimG": {}, "optimD": {}}, opt)
    assert _error_of(capsys, "--generator", opt, "--out", out) == (
        f"error: {opt} is not a generator checkpoint: it holds the optimizers' state (the "
        "release's opt_NNNNN.pth): give gen_NNNNN.pth"
    )


def test_non_tensor_entries_are_refused_by_name(tmp_path, capsys):
    path = tmp_path / "step.pth"
    torch.save({"netG": {"torgb1.0.bias": torch.zeros(2), "step": 3}}, path)
    assert _error_of(capsys, "--generator", path, "--out", tmp_path / "out") == (
        f"error: {path}: 'netG' entry 'step' is not a tensor (int 3; expected "
        "{'netG': state_dict} or a bare state dict)."
    )
    torch.save({"model": {"torgb1.0.bias": torch.zeros(2)}}, path)
    assert "entry 'model' is not a tensor (dict" in _error_of(
        capsys, "--generator", path, "--out", tmp_path / "out"
    )


def test_existing_weights_are_kept_unless_force(official_fixture, tmp_path, capsys):
    thin = Generator(base_channels=4)
    thin.build()
    save_weights_and_config(thin, generator_config(thin), tmp_path / "generator.weights.h5")
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert _error_of(capsys, "--generator", official_fixture["gen"], "--out", tmp_path) == (
        f"error: {tmp_path} already holds generator.weights.h5, generator.config.json: "
        "choose another --out or pass --force to replace them"
    )
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    lone = tmp_path / "lone"
    lone.mkdir()
    (lone / "generator.config.json").write_text('{"base_channels": 4}')
    assert "already holds generator.config.json: choose another --out or pass --force" in (
        _error_of(capsys, "--generator", official_fixture["gen"], "--out", lone)
    )

    _convert("--generator", official_fixture["gen"], "--out", tmp_path, "--force")
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "generator.config.json",
        "generator.weights.h5",
        "lone",
    ]
    released = Generator()
    assert json.loads((tmp_path / "generator.config.json").read_text()) == generator_config(
        released
    )
    loaded = load_generator(tmp_path / "generator.weights.h5")  # the pair matches
    expected = load_released_generator(official_fixture["gen"], released)
    for a, b in zip(expected.weights, loaded.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def _holding_a_discriminator(folder, data):
    """``folder``, made, holding a ``dis_00000.pth`` of ``data`` (not this run's)."""
    folder.mkdir()
    (folder / "dis_00000.pth").write_bytes(data)
    return folder


def test_to_torch_keeps_existing_checkpoints_unless_force(tmp_path, capsys):
    generator = Generator(base_channels=4)
    generator.build()
    discriminator = Discriminator(base_channels=8)
    discriminator.build()
    _save_as_training_does(tmp_path, generator, discriminator)
    out = _holding_a_discriminator(tmp_path / "pth", b"the user's")
    assert _error_of(capsys, "--to-torch", "--weights", tmp_path, "--out", out) == (
        f"error: {out} already holds dis_00000.pth: choose another --out or pass --force to "
        "replace it"
    )
    assert sorted(p.name for p in out.iterdir()) == ["dis_00000.pth"]
    assert (out / "dis_00000.pth").read_bytes() == b"the user's"

    _convert("--to-torch", "--weights", tmp_path, "--out", out, "--force")
    assert sorted(p.name for p in out.iterdir()) == [
        "dis_00000.pth",
        "gen_00000.pth",
        "latest.ckpt",
        "opt_00000.pth",
    ]
    d_clone = load_released_discriminator(
        str(out / "dis_00000.pth"), Discriminator(base_channels=8)
    )
    for a, b in zip(discriminator.weights, d_clone.weights, strict=True):
        np.testing.assert_array_equal(a.numpy(), b.numpy())
    assert "already holds gen_00000.pth, dis_00000.pth, opt_00000.pth, latest.ckpt" in _error_of(
        capsys, "--to-torch", "--weights", tmp_path, "--out", out
    )
    # Without the discriminator's weights, --force replaced the generator and kept the
    # earlier dis_00000.pth, which latest.ckpt then paired with it.
    (tmp_path / "discriminator.weights.h5").unlink()
    lone = _holding_a_discriminator(tmp_path / "lone", b"another run's")
    assert _error_of(capsys, "--to-torch", "--weights", tmp_path, "--out", lone) == (
        f"error: {lone} holds dis_00000.pth from another conversion, which would be paired "
        "with the new gen_00000.pth: choose another --out, or pass --force to remove them"
    )
    _convert("--to-torch", "--weights", tmp_path, "--out", out, "--force")
    assert sorted(p.name for p in out.iterdir()) == ["gen_00000.pth", "latest.ckpt"]


def test_to_torch_replaces_the_pair_together_or_not_at_all(tmp_path, capsys, monkeypatch):
    """--force over an earlier conversion with a disk that fills while writing
    dis_00000.pth: the new gen_00000.pth stood beside the old dis_00000.pth and
    latest.ckpt, and torch's RuntimeError was a traceback."""
    generator = Generator(base_channels=4)
    generator.build()
    discriminator = Discriminator(base_channels=8)
    discriminator.build()
    _save_as_training_does(tmp_path, generator, discriminator)
    out = tmp_path / "pth"
    _convert("--to-torch", "--weights", tmp_path, "--out", out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    save = torch.save

    def full_disk(saved, path, **kwargs):
        if "netD" in saved:
            raise RuntimeError("[enforce fail at inline_container.cc] unexpected pos 64")
        save(saved, path, **kwargs)

    monkeypatch.setattr(torch, "save", full_disk)
    error = _error_of(capsys, "--to-torch", "--weights", tmp_path, "--out", out, "--force")
    assert error.startswith("error: ") and "unexpected pos 64" in error
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_convert_force_removes_an_earlier_conversion_s_other_network(official_fixture, tmp_path):
    """``--force`` without ``--discriminator`` replaced the generator and kept an earlier
    conversion's discriminator.*, which --init-from FOLDER then loaded with it."""
    _convert_released(official_fixture, tmp_path)
    assert "discriminator.weights.h5" in os.listdir(tmp_path)
    _convert("--generator", official_fixture["gen"], "--out", tmp_path, "--force")
    assert sorted(os.listdir(tmp_path)) == ["generator.config.json", "generator.weights.h5"]


def test_checkpoints_torch_reads_otherwise_are_one_line(official_fixture, tmp_path, capsys):
    """A bfloat16 checkpoint ended in a TypeError traceback (NumPy has no bfloat16); a
    file that is not a checkpoint printed torch's 5-6 lines with terminal colour codes and
    advice to unpickle it; a broken discriminator.config.json a traceback or an error
    naming no file."""
    state = torch.load(official_fixture["gen"], map_location="cpu", weights_only=True)["netG"]
    torch.save({"netG": {k: v.bfloat16() for k, v in state.items()}}, tmp_path / "bf16.pth")
    generator = load_released_generator(str(tmp_path / "bf16.pth"))
    assert generator.base_channels == 32
    first = generator_convolutions(generator)["dw_conv01.0"].kernel.numpy()
    np.testing.assert_array_equal(
        first, state["dw_conv01.0.weight"].bfloat16().float().numpy().transpose(2, 3, 1, 0)
    )
    thin = Generator(base_channels=4)
    thin.build()
    save_weights_and_config(thin, generator_config(thin), tmp_path / "k" / "generator.weights.h5")
    error = _error_of(
        capsys, "--generator", tmp_path / "k" / "generator.weights.h5", "--out", tmp_path / "o"
    )
    assert "is an HDF5 file (Keras weights?), not a PyTorch checkpoint" in error
    (tmp_path / "notes.pth").write_text("my notes")
    assert _error_of(
        capsys, "--generator", tmp_path / "notes.pth", "--out", tmp_path / "o"
    ).endswith("is not a PyTorch checkpoint (a zip or pickle file of tensors)")
    discriminator = Discriminator(base_channels=8)
    discriminator.build()
    _save_as_training_does(tmp_path / "k", thin, discriminator)
    for broken in ("", "[8]"):
        (tmp_path / "k" / "discriminator.config.json").write_text(broken)
        error = _error_of(
            capsys, "--to-torch", "--weights", tmp_path / "k", "--out", tmp_path / "o"
        )
        assert "discriminator.config.json" in error, error
    assert not (tmp_path / "o").exists()
