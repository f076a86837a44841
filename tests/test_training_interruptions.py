"""Training that is stopped and resumed: a full disk, Ctrl-C, SIGTERM, SIGKILL. Nothing half
written stays, and the same command resumes."""

import errno
import json
import os
import pathlib
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image
from training_helpers import (
    REPO,
    checkpoint_tensors,
    fail_checkpoint_write,
    leftovers,
    run_main,
    tiny_config,
    write_config,
)

from penet_tf import train as train_cli
from penet_tf.training.config import load_config
from penet_tf.training.trainer import Trainer


@pytest.fixture(scope="module")
def whole_run(photos, tmp_path_factory):
    """One uninterrupted 4-step run on one device: (its folder, its config, the Trainer,
    the last step's logs). The interrupted runs below must end where it ends."""
    folder = tmp_path_factory.mktemp("whole")
    config = load_config(
        write_config(folder / "c.json", tiny_config(photos, folder / "run", iterations=4))
    )
    trainer = Trainer(config, verbose=0)
    logs = trainer.run()
    return folder / "run", config, trainer, logs


def test_one_device_run_writes_checkpoints_weights_logs_and_config(whole_run):
    run, config, trainer, logs = whole_run
    assert all(np.isfinite(v) for v in logs.values()) and set(logs) >= {"d_loss", "hole_l1"}
    for name in ("config.json", "generator.weights.h5", "generator.config.json"):
        assert (run / name).is_file()
    assert json.loads((run / "generator.config.json").read_text())["base_channels"] == 4
    assert load_config(str(run / "config.json")) == config  # the resolved config round-trips
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-4")
    assert list((run / "logs").iterdir())
    assert int(trainer.state.position.numpy()) == 8  # 4 steps x 2 images


def test_the_same_command_on_a_finished_run_says_so(whole_run, photos, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    path = write_config(tmp_path / "c.json", tiny_config(photos, run, iterations=4))
    logs = sorted(os.listdir(run / "logs"))
    assert train_cli.main(["--quiet", "--config", str(path)]) == 0
    assert capsys.readouterr().out.splitlines() == [  # (was "finished at step 4: ")
        "the run had finished already at step 4: nothing to train (raise trainer.iterations "
        "to train on)",
        f"weights: {run}/generator.weights.h5",
    ]
    assert sorted(os.listdir(run / "logs")) == logs  # (an empty event file each time)


def test_full_disk_ends_in_one_line_and_the_same_command_resumes(
    whole_run, photos, tmp_path, capsys, monkeypatch, dead_pid
):
    run = tmp_path / "b"
    path = write_config(tmp_path / "b.json", tiny_config(photos, run, iterations=4))
    with monkeypatch.context() as patch:
        fail_checkpoint_write(patch, 4, OSError(errno.ENOSPC, "No space left on device"))
        status, lines = run_main(capsys, path)
    assert status == 2
    assert lines[-1].startswith("error: could not save the checkpoint of step 4 in ")
    assert (
        "(no space left on the device); its partial files were removed and the last " in (lines[-1])
    )
    assert lines[-1].endswith("step 2: free some space and run the same command to resume.")
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-2")
    assert not list((run / "checkpoints").glob("ckpt-4*")) and leftovers(run) == []
    # What a kill -9 in a save could leave (and a file of the user's, which stays).
    (run / "checkpoints" / "ckpt-9_temp").mkdir()
    (run / "checkpoints" / "ckpt-9_temp" / "part-00000-of-00001.index").write_bytes(b"x")
    (run / "checkpoints" / "ckpt-7.index").write_bytes(b"half written")
    (run / "checkpoints" / "checkpoint.tmp0123abcd").write_text("model_checkpoint_path")
    (run / ".tmp-k2j4.weights.h5").write_bytes(b"half")  # an older version's name
    (run / f".tmp-{dead_pid}-generator.weights.h5").write_bytes(b"half")
    (run / ".worker-1-tmp").mkdir()
    (run / "notes.txt").write_text("mine")
    status, lines = run_main(capsys, path)
    assert status == 0, lines
    assert leftovers(run) == [] and not (run / "checkpoints" / "ckpt-7.index").exists()
    assert (run / "notes.txt").read_text() == "mine"
    # Resumed from step 2: the same weights (and optimizer states) as one whole run.
    whole, resumed = checkpoint_tensors(whole_run[0]), checkpoint_tensors(run)
    assert sorted(whole) == sorted(resumed)
    for name, value in whole.items():
        if isinstance(value, np.ndarray):  # (not the object graph, bytes)
            np.testing.assert_allclose(value, resumed[name], atol=1e-6, rtol=0, err_msg=name)


@pytest.mark.parametrize("damage", ["cut short", "deleted"])
def test_a_damaged_checkpoint_is_set_aside_and_the_run_resumes_from_the_one_before(
    whole_run, photos, tmp_path, capsys, damage
):
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)  # checkpoints of steps 2 and 4
    checkpoints = run / "checkpoints"
    data = checkpoints / "ckpt-4.data-00000-of-00001"
    if damage == "cut short":
        data.write_bytes(data.read_bytes()[:1000])
    else:  # the state file still names ckpt-4; ckpt-2 was once swept away as a leftover
        data.unlink()
        (checkpoints / "ckpt-4.index").unlink()
    path = write_config(tmp_path / "c.json", tiny_config(photos, run, iterations=4))
    status, lines = run_main(capsys, path)
    assert status == 0, lines
    warning = next(line for line in lines if "passed over" in line)
    assert warning.startswith("penet_tf.train: resuming from ckpt-2, the newest checkpoint")
    if damage == "cut short":
        assert warning.endswith(f"; their files are now in {checkpoints}/damaged")
        damaged = sorted(p.name for p in (checkpoints / "damaged").iterdir())
        assert damaged == ["ckpt-4.data-00000-of-00001", "ckpt-4.index"]
    else:
        assert "ckpt-4 (its files are missing)" in warning
    # Steps 3 and 4 again from step 2: the uninterrupted run's weights.
    whole, resumed = checkpoint_tensors(whole_run[0]), checkpoint_tensors(run)
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-4")
    for name, value in whole.items():
        if isinstance(value, np.ndarray):
            np.testing.assert_allclose(value, resumed[name], atol=1e-6, rtol=0, err_msg=name)


def test_unreadable_or_foreign_checkpoints_end_in_one_line(whole_run, photos, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    wider = tiny_config(photos, run, iterations=4)
    wider["model"]["base_channels"] = 8
    status, lines = run_main(capsys, write_config(tmp_path / "w.json", wider))
    assert status == 2 and lines[-1].startswith(f"error: the checkpoint {run}/checkpoints/ckpt-4")
    assert "does not fit this model" in lines[-1] and "another model config" in lines[-1]
    # (not a run of penet_tf before 2026-12-02 12:30 UTC, even without spectral_norm named)
    record = (run / "config.json").read_bytes()
    older = json.loads(record)
    del older["model"]["spectral_norm"]
    (run / "config.json").write_text(json.dumps(older))
    status, lines = run_main(capsys, write_config(tmp_path / "w.json", wider))
    assert status == 2 and "before 2026-12-02" not in lines[-1]
    (run / "config.json").write_bytes(record)
    # Same shapes, a value left over: the spectral norm's u and v, with "none" (it resumed
    # without a word, its discriminator no longer normalised: |logits| 45x smaller).
    config_file = (run / "config.json").read_bytes()
    plain = tiny_config(photos, run, iterations=6)
    plain["model"]["spectral_norm"] = "none"
    status, lines = run_main(capsys, write_config(tmp_path / "n.json", plain))
    assert status == 2 and "does not fit this model (it holds discriminator." in lines[-1]
    assert ".vector_u, which this model has no place for)" in lines[-1]
    assert (run / "config.json").read_bytes() == config_file
    for step in (2, 4):
        (run / "checkpoints" / f"ckpt-{step}.data-00000-of-00001").write_bytes(b"x")
    status, lines = run_main(capsys, write_config(tmp_path / "c.json", tiny_config(photos, run)))
    assert status == 2
    assert lines[-1].startswith(f"error: none of the 2 checkpoints in {run}/checkpoints can be")
    assert not (run / "checkpoints" / "damaged").exists()  # nothing moved
    assert (run / "checkpoints" / "ckpt-2.index").is_file()


@pytest.mark.parametrize(
    "signum, status, word, name",
    [(signal.SIGINT, 130, "interrupted", "Ctrl-C"), (signal.SIGTERM, 143, "terminated", "SIGTERM")],
    ids=["ctrl_c", "sigterm"],
)
def test_ctrl_c_or_sigterm_saves_the_step_and_a_second_one_stops_at_once(
    photos, tmp_path, capsys, monkeypatch, signum, status, word, name
):
    """SIGTERM is how a scheduler or container stops a job (SIGKILL a grace period
    later): Python ended at once, losing every step since the last checkpoint. Both
    finish the step in progress and save it."""
    run = tmp_path / "run"
    config = tiny_config(photos, run, iterations=50, checkpoint_every=50, image_every=50)
    path = write_config(tmp_path / "c.json", config)
    original = Trainer._log_scalars

    def signal_at(step_to_stop):
        def log(self, writer, step, *args):
            original(self, writer, step, *args)
            if step == step_to_stop:
                os.kill(os.getpid(), signum)

        monkeypatch.setattr(Trainer, "_log_scalars", log)

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    signal_at(3)
    got, lines = run_main(capsys, path)
    assert got == status
    assert lines[-1] == (
        f"{word}: stopped at step 3 after saving its checkpoint in {run}/checkpoints: "
        "run the same command to resume."
    )
    assert any(f"{name}: stopping after this step" in line for line in lines)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    assert (run / "generator.weights.h5").is_file() and leftovers(run) == []
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    if signum == signal.SIGTERM:
        return  # (the second signal's path is Ctrl-C's: one run of it is enough)
    # Again while that save is being written: nothing of it stays.
    signal_at(4)
    fail_checkpoint_write(monkeypatch, 4, signum)
    got, lines = run_main(capsys, path)
    assert got == status
    assert lines[-1] == (
        f"{word}: stopped at step 4 without saving it; the last complete checkpoint is "
        "step 3: run the same command to resume."
    )
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    assert not list((run / "checkpoints").glob("ckpt-4*")) and leftovers(run) == []


def _stopped_when_data_goes(monkeypatch, capsys, config, path, remove, why):
    """Runs ``config`` (written to ``path``), calling ``remove()`` after step 2: the run
    must stop in one line, ``why`` (a regex) and the step it saved."""
    original = Trainer._log_scalars

    def log(self, writer, step, *args):
        original(self, writer, step, *args)
        if step == 2:
            remove()

    monkeypatch.setattr(Trainer, "_log_scalars", log)
    status, lines = run_main(capsys, write_config(path, config))
    assert status == 2
    match = re.fullmatch(
        rf"error: training stopped at step (\d+): {why} \(the last complete checkpoint is "
        r"step (\d+): run the same command to resume once the data can be read\)",
        lines[-1],
    )
    assert match and match.group(1) == match.group(2) and int(match[1]) >= 2, lines[-1]
    run = config["output_dir"]
    assert tf.train.latest_checkpoint(os.path.join(run, "checkpoints")).endswith(f"ckpt-{match[1]}")
    assert leftovers(pathlib.Path(run)) == []


@pytest.mark.parametrize("how", ["folder moved", "files deleted"])
def test_data_that_goes_away_mid_run_stops_it_saved_in_one_line(
    photos, tmp_path, capsys, monkeypatch, how
):
    """The image folder moved (a disk unmounted) mid-run: every read failed and the
    stream skipped on for ever, at full CPU, deaf to Ctrl-C and SIGTERM; the steps since
    the last checkpoint were lost to the SIGKILL that ended it. (A moved folder is said
    at once now: 2N failed reads of 100,000 files took 215 s and logged 100,000 lines.)"""
    data = tmp_path / "data"
    shutil.copytree(photos, data)
    config = tiny_config(
        str(data), tmp_path / "run", iterations=500, checkpoint_every=500, image_every=500
    )
    if how == "folder moved":
        remove, why = (
            lambda: data.rename(tmp_path / "moved"),
            f"the image folder {re.escape(str(data))} is gone",
        )
    else:
        remove = lambda: [file.unlink() for file in data.iterdir()]  # noqa: E731
        why = (
            r"none of the last \d+ reads of the \d+ image files could be decoded \(the last, "
            r".+\): did the data go away\?"
        )
    _stopped_when_data_goes(monkeypatch, capsys, config, tmp_path / "c.json", remove, why)


def test_mask_files_that_go_away_mid_run_stop_it_saved_in_one_line(
    photos, tmp_path, capsys, monkeypatch
):
    """Mask files deleted mid-run (``mask.type: files``) ended the run in TensorFlow's
    NotFoundError traceback, every step since the last checkpoint lost."""
    masks = tmp_path / "masks"
    masks.mkdir()
    for index in range(3):
        mask = np.zeros((64, 64), np.uint8)
        mask[8 * index : 8 * index + 24, 16:40] = 255
        Image.fromarray(mask).save(masks / f"m{index}.png")
    config = tiny_config(
        photos, tmp_path / "run", iterations=500, checkpoint_every=500, image_every=500
    )
    config["mask"] = {"type": "files", "path": str(masks)}
    why = r"3 of the 3 mask files listed at the start are gone: .+m0\.png, .+m1\.png, .+m2\.png"
    remove = lambda: [file.unlink() for file in masks.iterdir()]  # noqa: E731
    _stopped_when_data_goes(monkeypatch, capsys, config, tmp_path / "c.json", remove, why)


def test_the_run_s_end_says_how_many_files_were_unreadable_or_upscaled_of_how_many(
    photos, tmp_path, capsys
):
    """2 readable photos among 502 files trained with exit 0, its last line "skipped 3296
    reads of 500 unreadable image files: ...": nothing said of how many. Thumbnails far
    smaller than image_size were upscaled to it (the release does) without a word."""
    data = tmp_path / "data"
    shutil.copytree(photos, data)  # 4 photos
    for index in range(2):
        (data / f"placeholder{index}.jpg").write_bytes(b"")
    for name, size in (("thumb_a.png", (32, 24)), ("thumb_b.png", (64, 16))):
        Image.new("RGB", size, (90, 120, 30)).save(data / name)
    # 5 steps x 2 images: the first epoch's 8 files are all read
    config = tiny_config(str(data), tmp_path / "run", iterations=5, checkpoint_every=5)
    status, lines = run_main(capsys, write_config(tmp_path / "c.json", config))
    assert status == 0
    assert any(
        re.fullmatch(
            r"penet_tf\.train: skipped \d+ reads of 2 unreadable image files of the 8 listed: "
            r".+placeholder\d\.jpg, .+placeholder\d\.jpg",
            line,
        )
        for line in lines
    ), lines
    first = [line for line in lines if "smaller than data.image_size 64x64: upscaled" in line]
    assert len(first) == 1 and re.fullmatch(
        r"penet_tf\.data: image file .+thumb_(a\.png is 32x24|b\.png is 64x16), smaller than "
        r"data\.image_size 64x64: upscaled to it \(as the release does\); the run's last "
        r"line counts such image files",
        first[0],
    ), lines
    assert any(
        re.fullmatch(
            r"penet_tf\.train: upscaled 2 of the 8 listed image files, smaller than "
            r"data\.image_size 64x64 \(the first: .+thumb_(a\.png, 32x24|b\.png, 64x16)\)",
            line,
        )
        for line in lines
    ), lines


def test_a_diverged_run_stops_before_saving_its_nan_steps(whole_run, tmp_path, capsys):
    """A learning rate too high made every loss NaN: the run went on saving a checkpoint
    every 2 steps, which deleted the last good one (3 kept), wrote NaN weights and printed
    "finished at step 12: ... nan" with exit status 0."""
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    config = json.loads((run / "config.json").read_text())
    config["output_dir"] = str(run)
    config["trainer"]["iterations"] = 12
    config["optimizer"]["lr"] = 1e30
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()}
    weights = (run / "generator.weights.h5").read_bytes()
    status, lines = run_main(capsys, write_config(tmp_path / "c.json", config))
    assert status == 2
    assert re.fullmatch(
        r"error: training diverged at step [5-9]: .*nan.*; nothing of it was saved \(the last "
        r"complete checkpoint is step 4\): resume from it with a lower learning rate "
        r"\(--set optimizer\.lr=\.\.\.\)",
        lines[-1],
    ), lines[-1]
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").iterdir()} == before
    assert (run / "generator.weights.h5").read_bytes() == weights


def test_a_run_s_record_read_from_elsewhere_is_refused_and_changes_are_named(
    whole_run, tmp_path, capsys, monkeypatch
):
    """--config runs/x/config.json resumed the run only from the folder it started in (its
    output_dir is relative): elsewhere it started a new run from step 0 there, silently.
    Settings changed on resume applied without a word, and config.json was rewritten as
    if the whole run had used them."""
    started = tmp_path / "started"
    run = started / "runs" / "x"
    shutil.copytree(whole_run[0], run)
    record = json.loads((run / "config.json").read_text())
    record["output_dir"] = "runs/x"  # as written by a run started in `started`
    (run / "config.json").write_text(json.dumps(record))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = str(run / "config.json")
    status, lines = run_main(capsys, config)
    assert status == 2 and lines[-1] == (
        f"error: {config} is the record of the run in {run}, but its output_dir 'runs/x' is "
        f"{elsewhere}/runs/x from here: run from where the run started, {started} (its paths "
        f"are relative to it), or give --output-dir {run} (with data paths that hold from "
        "here)"
    )
    # (a name that keeps the run's folder, here its own, is no way out)
    status, lines = run_main(capsys, config, "--set", f"name={record['name']}")
    assert status == 2 and lines[-1].startswith(f"error: {config} is the record of the run")
    assert not (elsewhere / "runs").exists()
    # From where it started, with two settings changed (and again, training nothing new):
    # named once, the earlier record kept.
    monkeypatch.chdir(started)
    errors = []
    for rate in ("0.0002", "0.0003"):  # the second resume trains nothing: no record
        arguments = ["--config", config, "--set", "trainer.iterations=5"]
        status = train_cli.main([*arguments, "--set", f"optimizer.lr={rate}"])
        captured = capsys.readouterr()
        errors.append(captured.err)
        assert status == 0
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-5")
    (warning,) = (line for line in errors[0].splitlines() if "settings that differ" in line)
    assert "from step 4 on: optimizer.lr 0.0001 -> 0.0002, trainer.iterations 4 -> 5" in warning
    assert "(the earlier record is kept as config.step-4.json)" in warning
    assert "settings that differ" not in errors[1]
    # The same folder written another way (the refusal's own advice) is no change.
    changes = ["--output-dir", f"{run}/", "--set", "trainer.iterations=6"]
    assert train_cli.main(["--config", config, *changes]) == 0
    (warning,) = (line for line in capsys.readouterr().err.splitlines() if "differ" in line)
    assert "on: trainer.iterations 5 -> 6 (the earlier record is kept as config.step-5" in warning
    assert "the run had finished already at step 5" in captured.out
    assert json.loads((run / "config.step-4.json").read_text()) == record
    assert json.loads((run / "config.json").read_text())["optimizer"]["lr"] == 0.0002
    records = sorted(p.name for p in run.glob("config*.json"))
    assert records == ["config.json", "config.step-4.json", "config.step-5.json"]


def test_training_leaves_a_program_s_own_signal_handlers_alone():
    """Trainer.run in a program that handles (or ignores) SIGTERM or SIGINT itself: its
    handler was replaced for the run, so the program's never ran and an ignored signal
    (SIGINT in a background job) stopped it."""
    from penet_tf.training.trainer import _StopOnCtrlC

    def own(signum, frame):
        pass

    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    cases = [(own, False), (signal.SIG_IGN, False), (signal.SIG_DFL, True)]
    try:
        for signum in (signal.SIGINT, signal.SIGTERM):  # (SIGINT: ignored in background jobs)
            for handler, taken in cases + [(signal.default_int_handler, True)]:
                signal.signal(signum, handler)
                with _StopOnCtrlC(enabled=True) as stop:
                    assert (signal.getsignal(signum) == stop._handle) is taken
                assert signal.getsignal(signum) == handler
    finally:
        signal.signal(signal.SIGINT, before[0])
        signal.signal(signal.SIGTERM, before[1])


def test_a_run_started_with_stdin_and_stderr_closed_keeps_its_files_off_them(photos, tmp_path):
    """``python -m penet_tf.train ... 0<&- 2>&-`` (a daemon, a scheduler): the next files
    opened took descriptors 0 and 2, the run's lock file among them, and TensorFlow's C++
    code writes its warnings and errors to 2 (into that file). They are opened on
    os.devnull first."""
    config = tiny_config(photos, tmp_path / "run", iterations=1000, checkpoint_every=1000)
    path = write_config(tmp_path / "c.json", config)
    process = subprocess.Popen(
        ["sh", "-c", 'exec "$0" -m penet_tf.train --quiet --config "$1" 0<&- 2>&-',
         sys.executable, path],
        stdout=subprocess.DEVNULL, cwd=REPO,
    )  # fmt: skip
    try:
        lock = tmp_path / "run" / ".penet_tf-run.lock"
        deadline = time.monotonic() + 300
        while not lock.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert lock.exists(), process.returncode
        opened = {
            int(fd): os.readlink(f"/proc/{process.pid}/fd/{fd}")
            for fd in os.listdir(f"/proc/{process.pid}/fd")
        }
    finally:
        process.kill()
        process.wait()
    assert opened[0] == opened[2] == os.devnull, opened  # (2 was the lock file)
    assert str(lock) in opened.values()


def test_sigkill_mid_mirrored_training_resumes_on_one_device_and_finishes(photos, tmp_path, capsys):
    """The real CLI process trains under MirroredStrategy on two logical CPUs
    (``--cpu-devices 2 --strategy mirrored``) and is killed; the same command, on one
    device, resumes from its last complete checkpoint."""
    config = tiny_config(
        photos, tmp_path / "run", iterations=1000, checkpoint_every=1, image_every=1000
    )
    path = write_config(tmp_path / "c.json", config)
    checkpoints = tmp_path / "run" / "checkpoints"
    command = ["--quiet", "--config", path]
    with open(tmp_path / "stderr.txt", "w") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "penet_tf.train", *command]
            + ["--cpu-devices", "2", "--strategy", "mirrored"],
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            cwd=REPO,
        )
    deadline = time.time() + 300
    while time.time() < deadline:
        latest = tf.train.latest_checkpoint(str(checkpoints))
        if latest and int(latest.rsplit("-", 1)[1]) >= 2:
            break
        time.sleep(0.05)
    time.sleep(0.13)  # somewhere inside a later step or save
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert "MirroredStrategy with 2 replica(s)" in (tmp_path / "stderr.txt").read_text()
    latest = tf.train.latest_checkpoint(str(checkpoints))
    reached = int(latest.rsplit("-", 1)[1])
    assert reached >= 2
    # Debris of an interrupted save must not be picked up.
    (checkpoints / f"ckpt-{reached + 50}.index").write_bytes(b"half written")
    # The same command again (in this process: the killed one was the real process).
    status = train_cli.main([*command, "--set", f"trainer.iterations={reached + 2}"])
    out, err = capsys.readouterr()
    assert status == 0, err[-3000:]
    assert f"resuming from {latest}" in err
    assert f"finished at step {reached + 2}" in out
    assert not (checkpoints / f"ckpt-{reached + 50}.index").exists()  # swept


def test_a_resume_on_changed_data_says_so_and_starts_a_new_epoch_over_it(
    whole_run, photos, tmp_path, capsys
):
    """The run stopped at element 8 of its stream (4 steps x 2 of 4 photos: epoch 3's
    start); the folder has 7 photos now. The position was read against the new list as
    it stood (element 8 of 7 per epoch: into epoch 2, some photos twice and some never),
    without a word: epoch 3 starts over the new list, and the warning says why. A
    checkpoint written before the data's listing was kept resumes as before, silently."""
    folder = tmp_path / "photos"
    shutil.copytree(photos, folder)
    for name in ("a", "b", "c"):
        shutil.copy(folder / "coffee.jpg", folder / f"more_{name}.jpg")
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    config = tiny_config(str(folder), run, iterations=5)
    status, lines = run_main(capsys, write_config(tmp_path / "c.json", config))
    assert status == 0, lines
    changed = [line for line in lines if "the data changed" in line]
    assert changed == [
        "penet_tf.train: the data changed since the checkpoint (7 image file(s) listed, 4 when "
        "step 4 was saved): epoch 3 starts over the new list"
    ], lines
    state = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    assert state.get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE") == 2 * 7 + 2
    assert list(state.get_tensor("data/.ATTRIBUTES/VARIABLE_VALUE"))[0] == 7

    # The same data again: no word, the position goes on (16 -> 18).
    config["trainer"]["iterations"] = 6
    status, lines = run_main(capsys, write_config(tmp_path / "c.json", config))
    assert status == 0 and not [line for line in lines if "the data changed" in line], lines
    state = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    assert state.get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE") == 18


def test_a_checkpoint_without_the_data_s_listing_resumes_where_it_was(
    whole_run, photos, tmp_path, capsys
):
    """Checkpoints written before the data's listing was kept (no ``data`` in them) still
    fit the model, and their position is used as it is."""
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    trainer = whole_run[2]
    before = tf.train.Checkpoint(  # (TrainingState's checkpoint before 2026-12-07)
        generator=trainer.gan.generator,
        discriminator=trainer.gan.discriminator,
        g_optimizer=trainer.gan.g_optimizer,
        d_optimizer=trainer.gan.d_optimizer,
        step=trainer.state.step,
        position=trainer.state.position,
    )
    before.save_counter.assign(3)  # (CheckpointManager's numbering: ckpt-4 again)
    assert before.save(str(run / "checkpoints" / "ckpt")).endswith("ckpt-4")
    latest = tf.train.latest_checkpoint(str(run / "checkpoints"))
    assert "data/.ATTRIBUTES/VARIABLE_VALUE" not in dict(tf.train.list_variables(latest))
    config = tiny_config(photos, run, iterations=5)
    status, lines = run_main(capsys, write_config(tmp_path / "c.json", config))
    assert status == 0, lines
    assert f"penet_tf.train: resuming from {latest} (step 4)" in lines
    assert not [line for line in lines if "changed" in line or "damaged" in line], lines
    state = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    assert state.get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE") == 10


@pytest.mark.parametrize("state", ["missing", "unreadable"])
def test_a_lost_state_file_resumes_from_the_checkpoint_files(
    whole_run, photos, tmp_path, capsys, state
):
    """The state file (checkpoints/checkpoint) gone (only the ckpt-N files were copied)
    or damaged (NULs after a crash): the next start swept every ckpt-N.* as an
    interrupted save's leftovers and trained from step 0, over the run's weights."""
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    checkpoints = run / "checkpoints"
    if state == "missing":
        (checkpoints / "checkpoint").unlink()
    else:
        (checkpoints / "checkpoint").write_bytes(b"\0" * 254)
    before = sorted(os.listdir(checkpoints))
    status, lines = run_main(
        capsys, write_config(tmp_path / "c.json", tiny_config(photos, run, iterations=4))
    )
    assert status == 0, lines
    assert any(
        "was missing or unreadable: resuming from ckpt-4, the newest checkpoint found by its"
        in line
        for line in lines
    ), lines
    assert not any("leftover" in line for line in lines), lines
    assert sorted(os.listdir(checkpoints)) == sorted({*before, "checkpoint"})
    state_file = tf.train.get_checkpoint_state(str(checkpoints))  # written again
    assert [os.path.basename(p) for p in state_file.all_model_checkpoint_paths] == [
        "ckpt-2",
        "ckpt-4",
    ]


def test_a_user_s_own_folder_is_refused_as_output_dir_before_any_write(photos, tmp_path):
    """A folder of the user's (their config.json, logs/, .tmp-cache/) given as the output
    lost its .tmp-cache/ to the sweep and its config.json to the run's."""
    folder = tmp_path / "project"
    (folder / "logs").mkdir(parents=True)
    (folder / ".tmp-cache").mkdir()
    (folder / "config.json").write_text('{"mine": true}')
    before = sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))
    config = load_config(write_config(tmp_path / "c.json", tiny_config(photos, folder)))
    with pytest.raises(ValueError, match="holds files that are not a training run's"):
        Trainer(config, verbose=0)
    assert sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) == before
    assert (folder / "config.json").read_text() == '{"mine": true}'


def test_a_second_run_on_a_live_run_s_folder_is_refused(tmp_path):
    """Without a lock, a second run started on a run folder swept the first one's save
    in progress (ckpt-N_temp/, ckpt-N.*) as leftovers, and both saved over each other."""
    from penet_tf.training.checkpoints import run_lock

    with run_lock(str(tmp_path / "run")):
        with pytest.raises(ValueError, match=f"another training run \\(pid {os.getpid()}\\)"):
            with run_lock(str(tmp_path / "run")):
                pass
    with run_lock(str(tmp_path / "run")):  # released when the run ends
        pass


def test_a_system_without_flock_trains_without_the_run_lock(tmp_path, monkeypatch, caplog):
    """Windows has no ``fcntl``: importing the trainer stopped every run there ("No
    module named 'fcntl'"); it trains as on a file system without locks, with a warning."""
    import logging

    from penet_tf.training import checkpoints

    monkeypatch.setattr(checkpoints, "fcntl", None)
    with caplog.at_level(logging.WARNING, logger="penet_tf.train"):
        with checkpoints.run_lock(str(tmp_path / "run")):
            assert (tmp_path / "run" / checkpoints.LOCK_FILE).is_file()
    assert "training without the run lock" in caplog.text and "no flock" in caplog.text
    import importlib.util

    monkeypatch.setitem(sys.modules, "fcntl", None)  # as on Windows: an ImportError
    spec = importlib.util.spec_from_file_location("checkpoints_here", checkpoints.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.fcntl is None


def test_a_run_that_cannot_start_leaves_no_folder_and_never_another_s(tmp_path, monkeypatch):
    """A refused --resume-release left a new run folder holding its lock; removing it must
    never touch a folder another run holds (a run refused while one started on the same
    new folder removed the other's lock, and a third run then trained beside it)."""
    import contextlib

    from penet_tf.training import checkpoints

    with pytest.raises(RuntimeError):
        with checkpoints.run_lock(str(tmp_path / "new" / "deeper" / "run")):
            raise RuntimeError("could not start")
    assert not (tmp_path / "new").exists()  # every folder it made

    # B finds the folder missing, then A makes and locks it before B's makedirs.
    target, other = tmp_path / "b", contextlib.ExitStack()
    real, started = os.makedirs, []

    def makedirs(path, exist_ok=False):
        if not started:
            started.append(True)
            other.enter_context(checkpoints.run_lock(str(target)))  # run A
        return real(path, exist_ok=exist_ok)

    monkeypatch.setattr(checkpoints.os, "makedirs", makedirs)
    with other:
        with pytest.raises(ValueError, match="another training run"):
            with checkpoints.run_lock(str(target)):  # run B
                pass
        assert (target / checkpoints.LOCK_FILE).exists()
        with pytest.raises(ValueError, match="another training run"):
            with checkpoints.run_lock(str(target)):  # run C: still refused
                pass
    assert not target.exists()  # A, that never started, removed it


def test_a_file_system_without_locks_trains_without_the_run_lock(tmp_path, monkeypatch, caplog):
    """flock failing with ENOLCK (NFSv3 without lockd) refused training with "[Errno 37]
    No locks available", naming nothing."""
    from penet_tf.training import checkpoints

    def no_locks(handle, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(checkpoints.fcntl, "flock", no_locks)
    with caplog.at_level("WARNING", logger="penet_tf.train"):
        with checkpoints.run_lock(str(tmp_path / "run")):
            pass
    assert "training without the run lock" in caplog.text


def test_a_run_started_before_the_released_spectral_norm_says_how_to_resume(
    photos, tmp_path, capsys
):
    """A run of penet_tf before 2026-12-02 12:30 UTC (Keras' spectral norm and Adam, its
    config.json naming neither): resumed, "does not fit ... resume with that config",
    which could not help; convert_torch --to-torch of it failed the same way."""
    from penet_tf.training.trainer import read_run

    run = tmp_path / "run"
    config = tiny_config(photos, run, iterations=2)
    config["model"]["spectral_norm"] = "keras"
    config["optimizer"] = {"epsilon_placement": "keras"}
    status, lines = run_main(capsys, write_config(tmp_path / "old.json", config))
    assert status == 0, lines
    record = json.loads((run / "config.json").read_text())
    del record["model"]["spectral_norm"], record["optimizer"]["epsilon_placement"]
    (run / "config.json").write_text(json.dumps(record))
    status, lines = run_main(
        capsys, write_config(tmp_path / "c.json", tiny_config(photos, run, iterations=3))
    )
    assert (
        status == 2
        and "vector_u" in lines[-1]
        and lines[-1].endswith(
            "This run was started by penet_tf before 2026-12-02 12:30 UTC, whose discriminator "
            "used Keras' spectral norm and whose Adam added epsilon as Keras' does: resume it "
            "with --set model.spectral_norm=keras --set optimizer.epsilon_placement=keras."
        )
    )
    # Read as it is (convert_torch --to-torch): with the settings it was trained with.
    gan, step, read = read_run(str(run))
    assert step == 2 and read.model.spectral_norm == read.optimizer.epsilon_placement == "keras"


def test_resuming_a_run_of_an_earlier_version_names_the_defaults_that_changed(
    whole_run, photos, tmp_path, capsys
):
    """A run started before data.resize_filter and optimizer.d2g_lr_schedule existed
    resumed silently with their new defaults (bicubic, released) and its config.json was
    rewritten to claim them."""
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    config = json.loads((run / "config.json").read_text())
    del config["data"]["resize_filter"], config["optimizer"]["d2g_lr_schedule"]
    del config["optimizer"]["epsilon_placement"]  # (Keras' Adam before 2026-12-02)
    # The mask as typed, as records were written before 2026-12-02: the same mask, once
    # named as a changed setting ("mask.components [...] -> [...]").
    config["mask"] = {"type": "square"}
    (run / "config.json").write_text(json.dumps(config))
    status, lines = run_main(
        capsys, write_config(tmp_path / "c.json", tiny_config(photos, run, iterations=5))
    )
    assert status == 0, lines
    warning = next(line for line in lines if "started by an earlier penet_tf" in line)
    assert "data.resize_filter (bilinear then, bicubic now)" in warning
    assert "optimizer.d2g_lr_schedule (every_step then, released now)" in warning
    assert "optimizer.epsilon_placement (keras then, torch now)" in warning
    (changed,) = (line for line in lines if "settings that differ" in line)
    assert "trainer.iterations 4 -> 5 (the earlier" in changed and "mask" not in changed
    # Given as they were, they are not named.
    (run / "config.json").write_text(json.dumps(config))
    given = tiny_config(photos, run, iterations=6)
    given["optimizer"] = {"epsilon_placement": "keras"}
    status, lines = run_main(capsys, write_config(tmp_path / "g.json", given))
    warning = next(line for line in lines if "started by an earlier penet_tf" in line)
    assert status == 0 and "epsilon_placement" not in warning


def test_a_complete_checkpoint_not_yet_in_the_state_file_is_resumed(
    whole_run, photos, tmp_path, capsys
):
    """A kill after a save's files were in place but before the state file named them
    (or a state file restored from an older copy): the complete ckpt-4 was swept as a
    leftover and the run went back to ckpt-2."""
    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    checkpoints = run / "checkpoints"
    tf.compat.v1.train.update_checkpoint_state(
        str(checkpoints),
        str(checkpoints / "ckpt-2"),
        all_model_checkpoint_paths=[str(checkpoints / "ckpt-2")],
    )
    before = sorted(os.listdir(checkpoints))
    status, lines = run_main(
        capsys, write_config(tmp_path / "c.json", tiny_config(photos, run, iterations=4))
    )
    assert status == 0, lines
    assert any("resuming from ckpt-4, complete but not yet named" in line for line in lines)
    assert sorted(os.listdir(checkpoints)) == before
    assert tf.train.latest_checkpoint(str(checkpoints)).endswith("ckpt-4")


def test_the_run_s_two_networks_are_replaced_together(whole_run, tmp_path, monkeypatch):
    """A write failing for the discriminator (a full disk, a quota) left the new
    generator.weights.h5 beside the old discriminator's, and the message said the
    weights files were the previous ones."""
    from penet_tf.training.checkpoints import CheckpointWriteError

    run = tmp_path / "run"
    shutil.copytree(whole_run[0], run)
    trainer = whole_run[2]
    monkeypatch.setattr(trainer.state, "output_dir", str(run))
    names = ("generator.weights.h5", "discriminator.weights.h5")
    for name in names:  # an earlier export's (the trainer's own would write the same bytes)
        (run / name).write_bytes(f"the earlier {name}".encode())
    before = {name: (run / name).read_bytes() for name in names}
    discriminator = trainer.gan.discriminator

    def quota_exceeded(path, overwrite=True):
        raise OSError(errno.EDQUOT, "Disk quota exceeded")

    monkeypatch.setattr(discriminator, "save_weights", quota_exceeded)
    with pytest.raises(CheckpointWriteError, match="the weights files are the previous ones"):
        trainer.state.export_weights()
    assert {name: (run / name).read_bytes() for name in names} == before
    assert not leftovers(run)


def test_a_user_folder_given_as_output_dir_keeps_its_own_tmp_files(tmp_path):
    """Pid-less ``.tmp-*`` names (older versions' temporaries) are swept in run folders
    only: a user's folder given as --output-dir lost its .tmp-cache/ with its files."""
    from penet_tf.training.checkpoints import sweep_leftovers

    (tmp_path / ".tmp-cache").mkdir()
    (tmp_path / ".tmp-cache" / "notes.txt").write_text("mine")
    (tmp_path / ".tmp-draft.txt").write_text("mine")
    assert sweep_leftovers(str(tmp_path)) == []
    assert sorted(os.listdir(tmp_path)) == [".tmp-cache", ".tmp-draft.txt"]
    # an empty checkpoints/ and a config.json of theirs (an ML project's folder) were
    # taken for a run folder; a run's checkpoints/ has its state file
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "config.json").write_text('{"lr": 0.1}')
    assert sweep_leftovers(str(tmp_path)) == []
    (tmp_path / "checkpoints" / "checkpoint").write_text('model_checkpoint_path: "ckpt-1"\n')
    assert sweep_leftovers(str(tmp_path)) == [
        str(tmp_path / ".tmp-cache"),
        str(tmp_path / ".tmp-draft.txt"),
    ]
