"""One place that picks the ``tf.distribute`` strategy."""

import json
import os

import tensorflow as tf

STRATEGIES = ("auto", "default", "mirrored", "multi_worker")


def split_cpu(count):
    """Makes ``count`` logical CPU devices (before TensorFlow initialises its devices)."""
    if count <= 1:
        return
    cpus = tf.config.list_physical_devices("CPU")
    tf.config.set_logical_device_configuration(
        cpus[0], [tf.config.LogicalDeviceConfiguration() for _ in range(count)]
    )


def _workers_in_tf_config():
    text = os.environ.get("TF_CONFIG", "{}") or "{}"
    try:
        config = json.loads(text)
    except ValueError as error:
        raise ValueError(f"TF_CONFIG is not JSON ({error}): {text[:80]!r}") from None
    cluster = config.get("cluster", {}) if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not all(
        isinstance(cluster.get(kind, []), list) for kind in ("worker", "chief")
    ):
        raise ValueError(
            'TF_CONFIG must be {"cluster": {"worker": ["host:port", ...]}, "task": '
            f'{{"type": "worker", "index": 0}}}}, got {text[:80]!r}'
        )
    return len(cluster.get("worker", [])) + len(cluster.get("chief", []))


def make_strategy(name="auto"):
    """The strategy for ``name``:

    * ``"multi_worker"``, or ``"auto"`` with several workers in ``TF_CONFIG``:
      ``MultiWorkerMirroredStrategy`` (``TF_CONFIG`` describes the cluster);
    * ``"mirrored"``, or ``"auto"`` with several GPUs (or logical CPUs, see ``split_cpu``):
      ``MirroredStrategy`` over them; the global batch is split across replicas;
    * otherwise the default (one device) strategy.
    """
    if name not in STRATEGIES:
        raise ValueError(f"Unknown strategy {name!r}: expected one of {STRATEGIES}.")
    if name == "multi_worker" or (name == "auto" and _workers_in_tf_config() > 1):
        if _workers_in_tf_config() < 1:
            raise ValueError("strategy multi_worker needs TF_CONFIG describing the cluster.")
        return tf.distribute.MultiWorkerMirroredStrategy()
    gpus = tf.config.list_logical_devices("GPU")
    devices = [d.name for d in gpus] or [d.name for d in tf.config.list_logical_devices("CPU")]
    if name == "mirrored" or (name == "auto" and len(devices) > 1):
        return tf.distribute.MirroredStrategy(devices)
    return tf.distribute.get_strategy()


def strategy_name(strategy):
    """The public API name (MultiWorkerMirroredStrategy's class is named otherwise)."""
    # (tf.distribute.MultiWorkerMirroredStrategy.__name__ is "CollectiveAllReduceStrategy")
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return "MultiWorkerMirroredStrategy"
    if isinstance(strategy, tf.distribute.MirroredStrategy):
        return "MirroredStrategy"
    return "default strategy (one device)"


def is_chief(strategy):
    """Whether this process writes logs, weights and the real checkpoints."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    if task_type == "chief":
        return True
    # Worker 0 leads only a cluster without a chief task (with one, both wrote the same
    # checkpoints, config.json and weights at once).
    has_chief = bool(resolver.cluster_spec().as_dict().get("chief"))
    return task_type == "worker" and task_id == 0 and not has_chief


def task_id(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    return 0 if resolver is None or resolver.task_id is None else int(resolver.task_id)
