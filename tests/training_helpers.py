"""Helpers shared by the training tests: thin configs, running the CLI in this process
or in a fresh one, and what an interrupted save leaves behind."""

import json
import os
import random
import socket
import time

import skimage.data
import tensorflow as tf
from PIL import Image

from penet_tf import train as train_cli

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def make_photos(folder):
    """A tiny stand-in image folder of real photographs, in ``folder``."""
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        Image.fromarray(getattr(skimage.data, name)()).save(folder / f"{name}.jpg")
    return str(folder)


def tiny_config(photos, output_dir, **trainer):
    """A thin, fast run: 64 x 64 images, square holes, base_channels 4, batch 2. (Square
    holes: the stroke masks' pipeline takes 5-10 s more to trace per run; masks have
    their own tests.)"""
    return {
        "name": "tiny",
        "seed": 7,
        "output_dir": str(output_dir),
        "data": {"source": "folder", "path": photos, "image_size": [64, 64]},
        "mask": {"type": "square"},
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


def fail_checkpoint_write(monkeypatch, number, error):
    """The save of checkpoint ``number`` writes part of its files, then raises ``error``
    (as a full disk would), or receives it when it is a signal number (a Ctrl-C or
    SIGTERM in the middle of TensorFlow's write)."""
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
        if isinstance(error, BaseException):
            raise error
        os.kill(os.getpid(), error)
        time.sleep(10)  # (its handler raises here)
        raise AssertionError(f"signal {error} was not answered")

    monkeypatch.setattr(tf.train.Checkpoint, "_write", write)


def run_main(capsys, path, *arguments):
    """``python -m penet_tf.train --quiet --config path [arguments]`` in this process:
    (status, the lines it ended with on stderr)."""
    status = train_cli.main(["--quiet", "--config", path, *arguments])
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


def checkpoint_tensors(run):
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(run / "checkpoints")))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def free_ports(count):
    """``count`` ports free now, below the kernel's ephemeral range: the processes that
    bind them do so seconds later (after importing TensorFlow), and a port the kernel
    handed out (``bind(0)``) could meanwhile go to any of the other worker's connections
    (gRPC clients, servers on port 0). Chosen at random, so two runs rarely pick the same."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ranges:
            ephemeral = int(ranges.read().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral = 32768
    high = min(ephemeral, 32768)
    low = max(1024, high - 12000)
    rng, ports = random.Random(), []
    for _ in range(1000 if high - low >= 100 else 0):  # (a range too small: as before)
        port = rng.randrange(low, high)
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
        if port not in ports:
            ports.append(port)
        if len(ports) == count:
            return ports
    sockets = [socket.socket() for _ in range(count)]  # the kernel's choice
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
