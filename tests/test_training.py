"""Training: configs, the train_step, strategies, mixed precision, resume, SIGKILL,
Ctrl-C and a full disk."""

import errno
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import keras
import numpy as np
import pytest
import skimage.data
import tensorflow as tf
from PIL import Image

from penet_tf import Discriminator, Generator
from penet_tf import train as train_cli
from penet_tf.data.images import ImageSource, inpainting_dataset
from penet_tf.training import PENetGAN, StepDecay
from penet_tf.training.checkpoints import CheckpointWriteError, TrainingState
from penet_tf.training.config import load_config
from penet_tf.training.trainer import Trainer, build_gan

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = sorted(
    name for name in os.listdir(os.path.join(REPO, "configs")) if name.endswith(".json")
)


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    """A tiny stand-in image folder of real photographs."""
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg")
    return str(folder)


def tiny_config(photos, output_dir, **trainer):
    """A thin, fast run: 64 x 64 images, base_channels 4, batch 2."""
    return {
        "name": "tiny",
        "seed": 7,
        "output_dir": str(output_dir),
        "data": {"source": "folder", "path": photos, "image_size": [64, 64]},
        "mask": {"type": "mixture", "components": [{"type": "square"}, {"type": "strokes"}]},
        "model": {"base_channels": 4, "kernel_init": "he_normal", "discriminator_channels": 8},
        "trainer": {
            "batch_size": 2,
            "iterations": 3,
            "checkpoint_every": 2,
            "log_every": 1,
            "image_every": 2,
            **trainer,
        },
    }


def write_config(path, config):
    path.write_text(json.dumps(config))
    return str(path)


def run_cli(args, env=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "penet_tf.train", "--quiet", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=REPO,
        check=False,
    )


# ---------------------------------------------------------------- configs


RELEASED = {  # OFFICIAL_PENNET.md: iterations, niter, niter_steady, GAN loss
    "places2": (1_000_000, 100_000, 150_000, "hinge"),
    "celebahq": (330_000, 100_000, 10_000, "hinge"),
    "dtd": (330_000, 100_000, 310_000, "nsgan"),
    "facade": (200_000, 50_000, 10_000, "nsgan"),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_every_config_parses_and_builds_its_pipeline(name, photos):
    path = os.path.join(REPO, "configs", name)
    config = load_config(path, ["data.source=folder", f"data.path={photos}"])
    source = ImageSource(config.data)
    small = {**config.data.to_dict(), "image_size": [64, 64]}
    (image, mask), _ = next(iter(inpainting_dataset(source, small, config.mask, 2)))
    assert image.shape == (2, 64, 64, 3) and mask.shape == (2, 64, 64, 1)
    gan = build_gan(config)
    assert gan.generator.base_channels == config.model.base_channels
    stem = name[: -len(".json")]
    if stem in RELEASED:
        iterations, niter, steady, gan_type = RELEASED[stem]
        assert config.trainer.iterations == iterations
        assert (config.schedule.niter, config.schedule.niter_steady) == (niter, steady)
        assert config.losses.gan_type == gan_type
        assert config.trainer.batch_size == 16 and config.optimizer.lr == 1e-4
        losses = config.losses
        weights = [losses.hole_weight, losses.valid_weight, losses.pyramid_weight]
        assert weights == [6, 1, 0.5] and losses.adversarial_weight == 0.1
        assert config.model.spectral_norm == "released"
        assert config.optimizer.epsilon_placement == "torch"


def test_config_overrides_and_errors(tmp_path):
    config = load_config(
        os.path.join(REPO, "configs", "demo.json"),
        ["trainer.iterations=7", "mask.type=strokes", "data.source=folder", "data.path=/x"]
        + ["name=other"],
    )
    assert config.trainer.iterations == 7 and config.mask.type == "strokes"
    assert config.output_dir == os.path.join("runs", "other")
    with pytest.raises(ValueError, match="Unknown config key 'trainer.iteratoins'"):
        load_config(None, ["trainer.iteratoins=3"])
    with pytest.raises(ValueError, match="multiples of 64"):
        load_config(None, ["data.image_size=[100, 64]"])
    with pytest.raises(ValueError, match="positive integer"):
        load_config(None, ["trainer.batch_size=0"])


def test_step_decay_schedule():
    schedule = StepDecay(1e-4, niter=10, niter_steady=25)
    values = [float(schedule(step)) for step in (0, 9, 10, 19, 20, 30, 1000)]
    np.testing.assert_allclose(values, [1e-4, 1e-4, 1e-5, 1e-5, 1e-6, 1e-6, 1e-6], rtol=1e-6)


# ---------------------------------------------------------------- learning


def test_learning_works_on_a_tiny_overfit_case():
    size = 64
    images = tf.stack(
        [
            tf.image.resize(getattr(skimage.data, n)(), [size, size]) / 127.5 - 1
            for n in ("astronaut", "coffee")
        ]
    )
    mask = np.zeros((2, size, size, 1), np.float32)
    mask[:, 16:32, 16:48] = 1
    keras.utils.set_random_seed(0)
    gan = PENetGAN(
        Generator(base_channels=8, kernel_init="he_normal"), Discriminator(base_channels=16)
    )
    gan.compile(
        keras.optimizers.Adam(1e-3, 0.5, epsilon=1e-8),
        keras.optimizers.Adam(1e-3, 0.5, epsilon=1e-8),
    )
    gan.build()
    step = tf.function(gan.train_step)
    first = float(step((images, mask))["hole_l1"])
    holes = [float(step((images, mask))["hole_l1"]) for _ in range(150)]
    assert min(holes[-10:]) <= 0.5 * first, (first, holes[-10:])


def test_keras_fit_runs_the_same_train_step():
    keras.utils.set_random_seed(1)
    gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8), gan_type="nsgan")
    gan.compile(keras.optimizers.Adam(1e-4, 0.5), keras.optimizers.Adam(1e-4, 0.5))
    images = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 3)).astype(np.float32)
    masks = np.zeros((4, 64, 64, 1), np.float32)
    masks[:, 8:40, 8:40] = 1
    history = gan.fit(
        tf.data.Dataset.from_tensor_slices((images, masks)).batch(2), epochs=1, verbose=0
    )
    assert np.isfinite(history.history["g_loss"][-1])
    assert int(gan.g_optimizer.iterations) == int(gan.d_optimizer.iterations) == 2


# ---------------------------------------------------------------- the trainer


def _weights(trainer):
    return [v.numpy() for v in trainer.gan.generator.weights + trainer.gan.discriminator.weights]


def test_one_device_run_writes_checkpoints_weights_logs_and_config(photos, tmp_path):
    config = load_config(write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "run")))
    trainer = Trainer(config, verbose=0)
    logs = trainer.run()
    assert all(np.isfinite(v) for v in logs.values()) and set(logs) >= {"d_loss", "hole_l1"}
    run = tmp_path / "run"
    for name in ("config.json", "generator.weights.h5", "generator.config.json"):
        assert (run / name).is_file()
    assert json.loads((run / "generator.config.json").read_text())["base_channels"] == 4
    assert load_config(str(run / "config.json")) == config  # the resolved config round-trips
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    assert list((run / "logs").iterdir())
    assert int(trainer.state.position.numpy()) == 6  # 3 steps x 2 images


def fail_checkpoint_write(monkeypatch, number, error):
    """The save of checkpoint ``number`` writes part of its files, then raises ``error``
    (as a full disk or a Ctrl-C in the middle of TensorFlow's write would)."""
    original = tf.train.Checkpoint._write

    def write(self, file_prefix, *args, **kwargs):
        if not file_prefix.endswith(f"ckpt-{number}"):
            return original(self, file_prefix, *args, **kwargs)
        os.makedirs(file_prefix + "_temp")
        part = os.path.join(file_prefix + "_temp", "part-00000-of-00001.data-00000-of-00001")
        with open(part, "wb") as handle:
            handle.write(b"\0" * 4096)
        with open(file_prefix + ".data-00000-of-00001", "wb") as handle:
            handle.write(b"half")
        raise error

    monkeypatch.setattr(tf.train.Checkpoint, "_write", write)


def run_main(capsys, path):
    """``python -m penet_tf.train --quiet --config path`` in this process: (status, the
    lines it ended with on stderr)."""
    status = train_cli.main(["--quiet", "--config", path])
    lines = capsys.readouterr().err.strip().splitlines()
    assert not any("Traceback" in line for line in lines), lines
    return status, lines


def leftovers(run):
    """Temporary files and folders anywhere in the run folder."""
    return sorted(
        str(path.relative_to(run))
        for path in run.rglob("*")
        if path.name.startswith((".tmp-", ".worker-", "checkpoint.tmp"))
        or path.name.endswith("_temp")
    )


def _checkpoint_tensors(run):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_full_disk_ends_in_one_line_and_the_same_command_resumes(
    photos, tmp_path, capsys, monkeypatch, dead_pid
):
    config = tiny_config(photos, tmp_path / "a", iterations=4)
    Trainer(load_config(write_config(tmp_path / "a.json", config)), verbose=0).run()
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
    whole, resumed = _checkpoint_tensors(tmp_path / "a"), _checkpoint_tensors(run)
    assert sorted(whole) == sorted(resumed)
    for name, value in whole.items():
        if isinstance(value, np.ndarray):  # (not the object graph, bytes)
            np.testing.assert_allclose(value, resumed[name], atol=1e-6, rtol=0, err_msg=name)


def test_weights_that_cannot_fit_are_refused_before_writing(tmp_path, monkeypatch):
    # (h5py cannot recover from a write that fails on a full disk: it is never started)
    thin = ["model.base_channels=4", "model.discriminator_channels=8"]
    gan = build_gan(load_config(None, thin))
    gan.build()
    state = TrainingState(gan, str(tmp_path))
    (tmp_path / "generator.weights.h5").write_bytes(b"previous")
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage._replace(free=100_000))
    with pytest.raises(CheckpointWriteError) as info:
        state.export_weights()
    message = str(info.value)
    assert "(no space left on the device: they need 1.9 MB, 0.1 MB are free)" in message
    assert "there is no complete checkpoint yet" in message and "\n" not in message
    assert os.listdir(tmp_path) == ["generator.weights.h5"]
    assert (tmp_path / "generator.weights.h5").read_bytes() == b"previous"


def test_ctrl_c_saves_the_step_and_a_second_one_stops_at_once(
    photos, tmp_path, capsys, monkeypatch
):
    run = tmp_path / "run"
    config = tiny_config(photos, run, iterations=50, checkpoint_every=50, image_every=50)
    path = write_config(tmp_path / "c.json", config)
    original = Trainer._log_scalars

    def ctrl_c_at(step_to_stop):
        def log(self, writer, step, *args):
            original(self, writer, step, *args)
            if step == step_to_stop:
                os.kill(os.getpid(), signal.SIGINT)

        monkeypatch.setattr(Trainer, "_log_scalars", log)

    handler = signal.getsignal(signal.SIGINT)
    ctrl_c_at(3)
    status, lines = run_main(capsys, path)
    assert status == 130
    assert lines[-1] == (
        f"interrupted: stopped at step 3 after saving its checkpoint in {run}/checkpoints: "
        "run the same command to resume."
    )
    assert any("Ctrl-C: stopping after this step" in line for line in lines)
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    assert (run / "generator.weights.h5").is_file() and leftovers(run) == []
    assert signal.getsignal(signal.SIGINT) == handler  # put back
    # Ctrl-C again while that save is being written: nothing of it stays.
    ctrl_c_at(4)
    fail_checkpoint_write(monkeypatch, 4, KeyboardInterrupt())
    status, lines = run_main(capsys, path)
    assert status == 130
    assert lines[-1] == (
        "interrupted: stopped at step 4 without saving it; the last complete checkpoint is "
        "step 3: run the same command to resume."
    )
    assert tf.train.latest_checkpoint(str(run / "checkpoints")).endswith("ckpt-3")
    assert not list((run / "checkpoints").glob("ckpt-4*")) and leftovers(run) == []


def test_mixed_bfloat16_trains(photos, tmp_path):
    config = load_config(
        write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "run", iterations=2)),
        ['mixed_precision="mixed_bfloat16"'],
    )
    trainer = Trainer(config, verbose=0)
    logs = trainer.run()
    assert all(np.isfinite(v) for v in logs.values())
    assert trainer.gan.generator.compute_dtype == "bfloat16"
    assert all(v.dtype == "float32" for v in trainer.gan.generator.weights)


def test_mixed_float16_trains_with_loss_scaling(photos, tmp_path):
    # The GPU path (--mixed-precision on a GPU); its kernels exist on CPU too, only slower.
    config = load_config(
        write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "run", iterations=2)),
        ['mixed_precision="mixed_float16"'],
    )
    trainer = Trainer(config, verbose=0)
    before = [v.numpy() for v in trainer.gan.generator.trainable_weights]
    logs = trainer.run()
    assert all(np.isfinite(v) for v in logs.values()), logs
    gan = trainer.gan
    for optimizer in (gan.g_optimizer, gan.d_optimizer):
        assert isinstance(optimizer, keras.optimizers.LossScaleOptimizer)
        assert int(optimizer.iterations.numpy()) == 2  # no step skipped for overflow
    assert gan.generator.compute_dtype == "float16"
    assert gan.discriminator.compute_dtype == "float16"
    # The spectral-norm power iteration state stays float32.
    assert all(v.dtype == "float32" for v in gan.discriminator.weights)
    after = gan.generator.trainable_weights
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after, strict=True))


def test_cli_mirrored_strategy_on_two_logical_cpus(photos, tmp_path):
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "run", iterations=2))
    result = run_cli(["--config", path, "--cpu-devices", "2", "--strategy", "mirrored"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MirroredStrategy with 2 replica(s)" in result.stderr
    assert "finished at step 2" in result.stdout


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def test_cli_multi_worker_mirrored_strategy_with_two_processes(photos, tmp_path):
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "run", iterations=2))
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes = []
    for index in range(2):
        tf_config = {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "penet_tf.train", "--quiet", "--config", path],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                cwd=REPO,
                env={**os.environ, "TF_CONFIG": json.dumps(tf_config)},
            )
        )
    outputs = [p.communicate(timeout=400) for p in processes]
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert "MultiWorkerMirroredStrategy with 2 replica(s)" in err
    assert "finished at step 2" in outputs[0][0]  # the chief reports
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")
    assert not any(name.startswith(".worker") for name in os.listdir(tmp_path / "run"))


def test_sigkill_mid_training_resumes_and_finishes(photos, tmp_path):
    config = tiny_config(photos, tmp_path / "run", iterations=1000, checkpoint_every=1)
    path = write_config(tmp_path / "c.json", config)
    checkpoints = tmp_path / "run" / "checkpoints"
    process = subprocess.Popen(
        [sys.executable, "-m", "penet_tf.train", "--quiet", "--config", path],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    deadline = time.time() + 300
    while time.time() < deadline:
        latest = tf.train.latest_checkpoint(str(checkpoints))
        if latest and int(latest.rsplit("-", 1)[1]) >= 3:
            break
        time.sleep(0.05)
    time.sleep(0.13)  # somewhere inside a later step or save
    process.send_signal(signal.SIGKILL)
    process.wait()
    latest = tf.train.latest_checkpoint(str(checkpoints))
    reached = int(latest.rsplit("-", 1)[1])
    assert reached >= 3
    # Debris of an interrupted save must not be picked up.
    (checkpoints / f"ckpt-{reached + 50}.index").write_bytes(b"half written")
    result = run_cli(["--config", path, "--set", f"trainer.iterations={reached + 2}"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resuming from {latest}" in result.stderr
    assert f"finished at step {reached + 2}" in result.stdout
    assert not (checkpoints / f"ckpt-{reached + 50}.index").exists()  # swept


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    status, lines = run_main(capsys, str(tmp_path / "missing.json"))
    assert status == 2 and lines[-1].startswith("error: No config file at")
    config = write_config(
        tmp_path / "c.json", {"name": "x", "data": {"path": str(tmp_path / "none")}}
    )
    status, lines = run_main(capsys, config)
    assert status == 2 and "does not exist" in lines[-1]
