"""Training under mixed precision and MultiWorkerMirroredStrategy with two processes
(the MirroredStrategy CLI on two logical CPUs is the process that
test_training_interruptions kills and resumes)."""

import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from training_helpers import (
    REPO,
    free_ports,
    tiny_config,
    write_config,
)

from penet_tf.training.config import load_config
from penet_tf.training.trainer import Trainer


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
        # Each overflow halves the scale and skips that step; the other steps are applied.
        skipped = np.log2(optimizer.initial_scale / float(optimizer.dynamic_scale.numpy()))
        assert skipped == int(skipped) and skipped < 2
        assert int(optimizer.iterations.numpy()) + int(skipped) == 2
    assert gan.generator.compute_dtype == "float16"
    assert gan.discriminator.compute_dtype == "float16"
    # The spectral-norm power iteration state stays float32.
    assert all(v.dtype == "float32" for v in gan.discriminator.weights)
    after = gan.generator.trainable_weights
    assert any(not np.array_equal(a, b.numpy()) for a, b in zip(before, after, strict=True))


def test_mirrored_cli_previews_the_whole_batch(photos, tmp_path):
    """Under MirroredStrategy the TensorBoard preview showed replica 0's part of the
    batch (2 of 4 images on two devices)."""
    config = tiny_config(photos, tmp_path / "run", iterations=1, batch_size=4, image_every=1)
    result = subprocess.run(
        [sys.executable, "-m", "penet_tf.train", "--quiet", "--config",
         write_config(tmp_path / "c.json", config), "--cpu-devices", "2",
         "--strategy", "mirrored"],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    (events,) = (tmp_path / "run" / "logs").glob("events.out.tfevents.*")
    sizes = [
        tuple(int(v) for v in tf.make_ndarray(value.tensor)[:2])
        for record in tf.data.TFRecordDataset(str(events))
        for value in tf.compat.v1.Event.FromString(record.numpy()).summary.value
        if value.tag == "masked_output_composite_truth"
    ]
    assert sizes == [(4 * 64, 4 * 64)]  # (width, height): 4 columns, one row per image


OVERFLOW_ON_ONE_REPLICA = """
import json, sys
from penet_tf.training.strategy import split_cpu
split_cpu(2)
import keras, numpy as np, tensorflow as tf
from penet_tf import Discriminator, Generator
from penet_tf.training.gan import PENetGAN

keras.mixed_precision.set_global_policy("mixed_float16")
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
with strategy.scope():
    gan = PENetGAN(Generator(base_channels=4), Discriminator(base_channels=8))
    gan.compile(*[keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam(1e-4)) for _ in "gd"])
    gan.build()
step = tf.function(lambda batch: strategy.run(gan.released_step, args=(batch,)))
mask = np.zeros([2, 64, 64, 1], np.float32)
mask[:, 16:48, 16:48] = 1

def batch(overflowing_replica):  # 1e5 is inf in float16: that replica's gradients too
    def values(context):
        value = 1e5 if context.replica_id_in_sync_group == overflowing_replica else 0.5
        return tf.fill([2, 64, 64, 3], value), tf.constant(mask)
    return strategy.experimental_distribute_values_from_function(values)

networks = (gan.generator, gan.discriminator)
weights = lambda: [v.numpy() for n in networks for v in n.trainable_weights]
report = {}
for replica in (1, 0, None):
    before = weights()
    step(batch(replica))
    after = weights()
    report[str(replica)] = {
        "finite": all(np.isfinite(w).all() for w in after),
        "unchanged": all(np.array_equal(a, b) for a, b in zip(before, after)),
        "scales": [float(o.dynamic_scale.numpy()) for o in (gan.g_optimizer, gan.d_optimizer)],
    }
print(json.dumps(report))
"""


def test_mixed_float16_skips_a_step_that_overflows_on_any_replica():
    """Keras' LossScaleOptimizer decided from the first replica's gradients alone: an
    overflow on the second one was summed into the update, and the weights became NaN
    within a few steps of a MirroredStrategy mixed_float16 run, which went on saving."""
    result = subprocess.run(
        [sys.executable, "-c", OVERFLOW_ON_ONE_REPLICA],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    initial = keras.optimizers.LossScaleOptimizer(keras.optimizers.Adam()).initial_scale
    # Either replica overflowing: both networks skip the step, their scales halve.
    assert report["1"] == {"finite": True, "unchanged": True, "scales": [initial / 2] * 2}
    assert report["0"] == {"finite": True, "unchanged": True, "scales": [initial / 4] * 2}
    # No overflow: the step is applied.
    assert report["None"]["finite"] and not report["None"]["unchanged"]
    assert report["None"]["scales"] == [initial / 4] * 2


def test_cli_multi_worker_mirrored_strategy_with_two_processes(photos, tmp_path):
    path = write_config(tmp_path / "c.json", tiny_config(photos, tmp_path / "run", iterations=2))
    workers = [f"127.0.0.1:{port}" for port in free_ports(2)]
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
    try:
        outputs = [p.communicate(timeout=400) for p in processes]
    finally:  # (a timeout left the other worker running)
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for process, (_, err) in zip(processes, outputs, strict=True):
        assert process.returncode == 0, err[-3000:]
        assert "MultiWorkerMirroredStrategy with 2 replica(s)" in err
    assert "finished at step 2" in outputs[0][0]  # the chief reports
    latest = tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints"))
    assert latest.endswith("ckpt-2")
    assert not any(name.startswith(".worker") for name in os.listdir(tmp_path / "run"))
    # Both workers' elements count: 2 steps x the global batch of 2 (each worker's
    # pipeline keeps every other element; the chief's own saved 3, and a resume then
    # trained element 3 twice).
    assert tf.train.load_checkpoint(latest).get_tensor("position/.ATTRIBUTES/VARIABLE_VALUE") == 4


@pytest.mark.parametrize(
    "tf_config,message",
    [("[]", "TF_CONFIG must be"), ("{bad", "TF_CONFIG is not JSON")],  # a traceback; unnamed
)
def test_a_bad_tf_config_is_named(monkeypatch, tf_config, message):
    from penet_tf.training.strategy import make_strategy

    monkeypatch.setenv("TF_CONFIG", tf_config)
    with pytest.raises(ValueError, match=message):
        make_strategy("auto")


@pytest.mark.parametrize(
    "task,chief",
    [("chief", True), ("worker", False), (None, True)],  # None: a cluster without a chief
)
def test_one_process_leads_a_cluster_with_a_chief_task(monkeypatch, task, chief):
    """With a "chief" task in TF_CONFIG, worker 0 led too: two processes wrote the same
    checkpoints, config.json and weights at once."""
    import types

    from penet_tf.training.strategy import is_chief

    cluster = {"worker": ["localhost:12346", "localhost:12347"]}
    if task is not None:
        cluster["chief"] = ["localhost:12345"]
    kind = task or "worker"
    monkeypatch.setenv(
        "TF_CONFIG", json.dumps({"cluster": cluster, "task": {"type": kind, "index": 0}})
    )
    resolver = tf.distribute.cluster_resolver.TFConfigClusterResolver()
    assert is_chief(types.SimpleNamespace(cluster_resolver=resolver)) is chief
