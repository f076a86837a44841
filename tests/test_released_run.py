"""Runs that move between penet_tf and the released PyTorch trainer: ``opt_NNNNN.pth``
(both Adam states and the step) written by ``convert_torch --to-torch`` from a run's
checkpoint, and read by ``penet_tf.train --resume-release`` (needs the [torch] extra)."""

import json

import numpy as np
import pytest
import tensorflow as tf
import torch
from training_helpers import tiny_config, write_config

from penet_tf import train as train_cli
from penet_tf.convert_torch import (
    CheckpointError,
    _keras_kernel,
    export_to_torch,
    load_released_run,
    main,
    released_parameters,
)
from penet_tf.training.config import load_config
from penet_tf.training.trainer import Trainer, build_gan, read_run


@pytest.fixture(scope="module")
def run_of_two_steps(photos, tmp_path_factory):
    """A thin 2-step penet_tf run and its ``--to-torch`` export: (config, run, out)."""
    folder = tmp_path_factory.mktemp("released_run")
    config = load_config(
        write_config(folder / "c.json", tiny_config(photos, folder / "run", iterations=2))
    )
    Trainer(config, verbose=0).run()
    out = folder / "pth"
    export_to_torch(str(folder / "run"), str(out), log=lambda *_: None)
    return config, folder / "run", out


def _train(capsys, *args):
    """``python -m penet_tf.train --quiet ARGS`` in this process: (status, its output)."""
    status = train_cli.main(["--quiet", *map(str, args)])
    captured = capsys.readouterr()
    return status, captured.out + captured.err


def _torch_parameters(state, key):
    """The release's ``net.parameters()`` of a ``gen_/dis_NNNNN.pth`` state dict, in its
    order (the spectral-norm ``weight_u`` / ``weight_v`` are buffers, not parameters)."""
    return [
        torch.nn.Parameter(value.clone())
        for name, value in state[key].items()
        if not name.endswith(("weight_u", "weight_v"))
    ]


def _gradients(model, seed):
    """A random gradient per released parameter: {name: Keras-layout array}."""
    rng = np.random.default_rng(seed)
    return {
        name: rng.normal(size=variable.shape).astype(np.float32)
        for name, variable in released_parameters(model)
    }


def _torch_layout(value):
    return _keras_kernel(value) if value.ndim == 4 else value


def _one_more_step(adam, torch_parameters, optimizer, model, gradients):
    """Applies ``gradients`` once with ``torch.optim.Adam`` ``adam`` over the release's
    parameters and once with the Keras ``optimizer`` of ``model``; returns the largest
    difference of the updated weights."""
    for parameter, (name, _) in zip(torch_parameters, released_parameters(model), strict=True):
        parameter.grad = torch.from_numpy(np.ascontiguousarray(_torch_layout(gradients[name])))
    adam.step()
    variables = [variable for _, variable in released_parameters(model)]
    optimizer.apply(
        [tf.constant(gradients[name]) for name, _ in released_parameters(model)], variables
    )
    return max(
        float(np.max(np.abs(_torch_layout(v.numpy()) - p.detach().numpy())))
        for v, p in zip(variables, torch_parameters, strict=True)
    )


def test_the_release_s_adam_goes_on_exactly_where_the_run_stopped(run_of_two_steps):
    config, run, out = run_of_two_steps
    assert sorted(p.name for p in out.iterdir()) == [
        "dis_00002.pth", "gen_00002.pth", "latest.ckpt", "opt_00002.pth"
    ]  # fmt: skip
    saved = torch.load(out / "opt_00002.pth", weights_only=True)
    assert saved["iteration"] == 2 and saved["epoch"] == 0
    group = saved["optimG"]["param_groups"][0]
    assert group["betas"] == (0.5, 0.999) and group["eps"] == 1e-8 and group["lr"] == 1e-4
    assert {entry["step"] for entry in saved["optimG"]["state"].values()} == {2}

    # One more update of the same gradients: torch.optim.Adam from opt_00002.pth (the
    # released trainer resuming) and the run's own optimizers from its checkpoint.
    gan, step, _ = read_run(str(run))
    assert step == 2
    for key, optimizer, model, pth, net in (
        ("optimG", gan.g_optimizer, gan.generator, "gen_00002.pth", "netG"),
        ("optimD", gan.d_optimizer, gan.discriminator, "dis_00002.pth", "netD"),
    ):
        parameters = _torch_parameters(torch.load(out / pth, weights_only=True), net)
        gradients = _gradients(model, seed=len(key))
        adam = torch.optim.Adam(parameters)
        adam.load_state_dict(saved[key])  # what the released trainer's load() does
        difference = _one_more_step(adam, parameters, optimizer, model, gradients)
        assert difference < 1e-7, (key, difference)
        # (without the moments, a new Adam's first step moves each weight by lr)
        assert int(optimizer.iterations.numpy()) == 3


def test_a_released_run_goes_on_in_penet_tf(run_of_two_steps, tmp_path):
    """Torch's own Adam state (written by the PyTorch of today: tensor steps, more group
    keys, the zip format) read back: the next update is torch's."""
    config, run, out = run_of_two_steps
    gen = torch.load(out / "gen_00002.pth", weights_only=True)
    dis = torch.load(out / "dis_00002.pth", weights_only=True)
    reference = build_gan(config)
    reference.build()
    saved, adams = {"epoch": 3, "iteration": 5}, {}
    for key, net, model, seed in (
        ("optimG", gen, reference.generator, 10),
        ("optimD", dis, reference.discriminator, 20),
    ):
        parameters = _torch_parameters(net, "netG" if key == "optimG" else "netD")
        adam = torch.optim.Adam(parameters, lr=1e-4, betas=(0.5, 0.999))
        for step in range(5):
            for p, g in zip(parameters, _gradients(model, seed + step).values(), strict=True):
                p.grad = torch.from_numpy(np.ascontiguousarray(_torch_layout(g)))
            adam.step()
        saved[key], adams[key] = adam.state_dict(), (adam, parameters)
        # the released trainer saves the parameters it trained
        wrapper = "netG" if key == "optimG" else "netD"
        state = dict(net[wrapper])
        names = [n for n in state if not n.endswith(("weight_u", "weight_v"))]
        for name, p in zip(names, parameters, strict=True):
            state[name] = p.detach().clone()
        torch.save(
            {wrapper: state}, tmp_path / f"{'gen' if wrapper == 'netG' else 'dis'}_00005.pth"
        )
    torch.save(saved, tmp_path / "opt_00005.pth")
    (tmp_path / "latest.ckpt").write_text("00005\n")

    gan = build_gan(config)
    gan.build()
    iteration, paths, used = load_released_run(gan, str(tmp_path))
    assert iteration == 5 and used == [1e-4, 1e-4]
    assert [int(o.iterations.numpy()) for o in (gan.g_optimizer, gan.d_optimizer)] == [5, 5]
    for key, optimizer, model in (
        ("optimG", gan.g_optimizer, gan.generator),
        ("optimD", gan.d_optimizer, gan.discriminator),
    ):
        adam, parameters = adams[key]
        gradients = _gradients(model, seed=99)
        assert _one_more_step(adam, parameters, optimizer, model, gradients) < 1e-7, key


def test_train_resume_release_continues_the_step_and_the_run_goes_back(
    run_of_two_steps, photos, tmp_path, capsys
):
    config, run, out = run_of_two_steps
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "b", iterations=4))
    code, printed = _train(capsys, "--config", path, "--resume-release", out)
    assert code == 0, printed
    assert "going on with the released run" in printed and "at step 2" in printed
    assert tf.train.latest_checkpoint(str(tmp_path / "b" / "checkpoints")).endswith("ckpt-4")
    gan, step, _ = read_run(str(tmp_path / "b"))
    assert step == 4 and int(gan.g_optimizer.iterations.numpy()) == 4

    # Once the run has a checkpoint, --resume-release is not used (the run resumes).
    code, printed = _train(capsys, "--config", path, "--resume-release", out)
    assert code == 0 and "--resume-release" in printed and "is not used" in printed

    # And back: --to-torch numbers the files by the step.
    assert main(["--to-torch", "--weights", str(tmp_path / "b"), "--out", str(tmp_path / "p")]) == 0
    assert "the run's checkpoint of step 4" in capsys.readouterr().out
    assert (tmp_path / "p" / "latest.ckpt").read_text() == "00004\n"
    assert torch.load(tmp_path / "p" / "opt_00004.pth", weights_only=True)["iteration"] == 4


def test_weights_without_a_run_get_a_new_adam_the_release_can_load(run_of_two_steps, tmp_path):
    config, run, out = run_of_two_steps
    weights = tmp_path / "weights"
    weights.mkdir()
    for name in ("generator", "discriminator"):
        for suffix in (".weights.h5", ".config.json"):
            (weights / f"{name}{suffix}").write_bytes((run / f"{name}{suffix}").read_bytes())
    export_to_torch(str(weights), str(tmp_path / "pth"), iteration=7, log=lambda *_: None)
    saved = torch.load(tmp_path / "pth" / "opt_00007.pth", weights_only=True)
    assert saved["iteration"] == 0 and saved["optimG"]["state"] == {}
    gen = torch.load(tmp_path / "pth" / "gen_00007.pth", weights_only=True)
    adam = torch.optim.Adam(_torch_parameters(gen, "netG"))
    adam.load_state_dict(saved["optimG"])  # (the parameter count must match)
    assert adam.param_groups[0]["betas"] == (0.5, 0.999)


def _release_folder(out, tmp_path, edit=None, latest="00002\n"):
    folder = tmp_path / "release"
    folder.mkdir()
    for name in ("gen_00002.pth", "dis_00002.pth", "opt_00002.pth"):
        (folder / name).write_bytes((out / name).read_bytes())
    if edit is not None:
        saved = torch.load(folder / "opt_00002.pth", weights_only=True)
        edit(saved)
        torch.save(saved, folder / "opt_00002.pth")
    (folder / "latest.ckpt").write_text(latest)
    return folder


def _betas(saved):
    saved["optimD"]["param_groups"][0]["betas"] = (0.9, 0.999)


def _count(saved):
    saved["optimG"]["param_groups"][0]["params"].pop()


def _shape(saved):
    saved["optimG"]["state"][0]["exp_avg"] = torch.zeros(3)


def _steps(saved):
    saved["optimD"]["state"][3]["step"] = 5


@pytest.mark.parametrize(
    "edit, latest, message",
    [
        (_betas, "00002\n", "optimD: Adam's betas (0.9, 0.999) are not this run's (0.5, 0.999)"),
        (_count, "00002\n", "optimG: 67 parameters, where this network has 68"),
        (_shape, "00002\n", "exp_avg of dw_conv01.0.weight is (3,), expected (4, 4, 3, 3)"),
        (_steps, "00002\n", "optimD: its parameters were updated different numbers of "
         "times ([2, 5]"),
        (None, "00003\n", "latest.ckpt names save 00003, but gen_00003.pth, dis_00003.pth, "
         "opt_00003.pth are not there"),
        (None, "last\n", "latest.ckpt: expected the number of a save (e.g. 00050), got 'last'"),
    ],
)  # fmt: skip
def test_a_release_save_that_does_not_fit_is_one_line(
    run_of_two_steps, photos, tmp_path, capsys, edit, latest, message
):
    config, run, out = run_of_two_steps
    folder = _release_folder(out, tmp_path, edit, latest)
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "b", iterations=4))
    code, printed = _train(capsys, "--config", path, "--resume-release", folder)
    assert code == 2 and message in printed, printed
    assert "Traceback" not in printed
    assert not (tmp_path / "b" / "checkpoints").exists()
    assert not (tmp_path / "b" / "config.json").exists()


def test_resume_release_refusals_before_training(run_of_two_steps, photos, tmp_path, capsys):
    config, run, out = run_of_two_steps
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "b", iterations=2))
    code, printed = _train(capsys, "--config", path, "--resume-release", out)
    assert code == 2 and "the released run is at step 2, trainer.iterations is 2" in printed
    code, printed = _train(capsys, "--config", path, "--resume-release", tmp_path)
    assert code == 2 and "no latest.ckpt in it" in printed
    with pytest.raises(SystemExit):
        _train(capsys, "--config", path, "--resume-release", out, "--init-from", out)
    assert "--init-from and --resume-release exclude each other" in capsys.readouterr().err
    # A file of the save (it said "no such folder"), and the save folder as --init-from
    # (it said only "no generator.weights.h5 in it").
    generator = sorted(out.glob("gen_*.pth"))[-1]
    code, printed = _train(capsys, "--config", path, "--resume-release", generator)
    assert code == 2 and (
        f"--resume-release {generator}: a file; give the released trainer's save folder (its "
        "save_dir, holding latest.ckpt), or start from this generator's weights with "
        "--init-from." in printed
    ), printed
    code, printed = _train(capsys, "--config", path, "--init-from", out)
    assert code == 2 and (
        "no generator.weights.h5 in it (a released trainer's save folder: start from its "
        "weights with --init-from FOLDER/gen_N.pth, or go on with its run with "
        "--resume-release FOLDER)." in printed
    ), printed
    # nothing written: not even the run folder with its lock (it was left behind)
    assert not (tmp_path / "b").exists()

    folder = _release_folder(out, tmp_path)
    torch.save({"netG": {}}, folder / "opt_00002.pth")
    gan = build_gan(config)
    gan.build()
    with pytest.raises(CheckpointError, match="not the released trainer's optimizer file"):
        load_released_run(gan, str(folder))


def test_a_mixed_float16_run_goes_there_and_back(photos, tmp_path):
    """Loss scaling skips the updates of overflowing steps: each optimizer's own update
    count goes into (and comes back from) its Adam state, beside the run's step."""
    settings = tiny_config(photos, tmp_path / "run", iterations=2)
    config = load_config(
        write_config(tmp_path / "c.json", {**settings, "mixed_precision": "mixed_float16"})
    )
    Trainer(config, verbose=0).run()
    export_to_torch(str(tmp_path / "run"), str(tmp_path / "pth"), log=lambda *_: None)
    reference, step, _ = read_run(str(tmp_path / "run"))
    gan = build_gan(config, "mixed_float16")
    gan.build()
    iteration, _, _ = load_released_run(gan, str(tmp_path / "pth"))
    assert iteration == step == 2
    for ours, theirs in (
        (gan.g_optimizer, reference.g_optimizer),
        (gan.d_optimizer, reference.d_optimizer),
    ):
        for a, b in zip(
            ours.inner_optimizer.variables, theirs.inner_optimizer.variables, strict=True
        ):
            np.testing.assert_array_equal(a.numpy(), b.numpy())
    counts = [int(o.inner_optimizer.iterations.numpy()) for o in (gan.g_optimizer, gan.d_optimizer)]
    assert 1 <= min(counts) and max(counts) == 2


def test_the_export_finds_the_checkpoint_the_run_resumes_from(run_of_two_steps, tmp_path, capsys):
    """Without TensorFlow's state file (a copy of the ckpt files only) the run resumes
    from them, but the export wrote new optimizers at iteration 0 without a word; a run
    whose config.json no longer fits its checkpoint was a message naming no file."""
    import shutil

    config, run, out = run_of_two_steps
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "checkpoints" / "checkpoint").unlink()
    export_to_torch(str(copy), str(tmp_path / "pth"), log=lambda *_: None)
    assert torch.load(tmp_path / "pth" / "opt_00002.pth", weights_only=True)["iteration"] == 2

    # A damaged checkpoint (cut short: an IndexError) is passed over as the run passes it
    # over; with none left, one line (a traceback before).
    damaged = tmp_path / "damaged"
    shutil.copytree(run, damaged)
    for data in (damaged / "checkpoints").glob("ckpt-2.data-*"):
        data.write_bytes(data.read_bytes()[:100])
    assert main(["--to-torch", "--weights", str(damaged), "--out", str(tmp_path / "p3")]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: none of the 1 checkpoints in ") and "ckpt-2" in error
    assert (
        len(error.strip().splitlines()) == 1 and not (damaged / "checkpoints" / "damaged").exists()
    )

    edited = json.loads((copy / "config.json").read_text())
    edited["model"]["base_channels"] = 8
    (copy / "config.json").write_text(json.dumps(edited))
    assert main(["--to-torch", "--weights", str(copy), "--out", str(tmp_path / "p2")]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: the checkpoint {copy}/checkpoints/ckpt-2 does not fit")
    assert f"(the networks of {copy / 'config.json'})" in error
    assert len(error.strip().splitlines()) == 1


def test_a_resumed_run_does_not_need_the_release_s_folder_any_more(
    run_of_two_steps, photos, tmp_path, capsys
):
    import shutil

    config, run, out = run_of_two_steps
    release = tmp_path / "release"
    shutil.copytree(out, release)
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "b", iterations=3))
    assert _train(capsys, "--config", path, "--resume-release", release)[0] == 0
    shutil.rmtree(release)
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "b", iterations=4))
    code, printed = _train(capsys, "--config", path, "--resume-release", release)
    assert code == 0 and "is not used: the run resumes" in printed, printed


def test_settings_the_release_does_not_continue_are_noted():
    from penet_tf.convert_torch import _note_release_differences
    from penet_tf.training.config import OptimizerConfig

    notes = []
    _note_release_differences(OptimizerConfig(), notes.append)
    assert notes == []
    settings = OptimizerConfig(epsilon_placement="keras", d2g_lr=2, d2g_lr_schedule="every_step")
    _note_release_differences(settings, notes.append)
    assert len(notes) == 2 and '"keras"' in notes[0] and '"every_step"' in notes[1]
