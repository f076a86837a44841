"""Checkpoints that survive being killed, and the weights that export reads.

``tf.train.CheckpointManager`` writes a checkpoint's files first and then atomically
replaces the ``checkpoint`` state file that names the latest one, so a run killed at any
moment (SIGKILL included) restarts from its last complete checkpoint; files of an
interrupted save are never picked up, and the next save overwrites them.
"""

import os
import shutil

import tensorflow as tf

from penet_tf.io_utils import save_weights_atomically, write_json_atomically
from penet_tf.models import discriminator_config, generator_config


class TrainingState:
    """Generator, discriminator, both optimizers, the step and the data position.

    Args:
        gan: a built ``PENetGAN`` (optimizers compiled).
        output_dir: the run folder; checkpoints go to ``output_dir/checkpoints``.
        keep: how many checkpoints to keep.
        chief: False for the other workers of a multi-worker run: they must save too
            (collectively) but into a private folder that is deleted afterwards.
        worker: this worker's id (names the private folder).
    """

    def __init__(self, gan, output_dir, keep=3, chief=True, worker=0):
        self.gan = gan
        self.output_dir = output_dir
        self.chief = chief
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="step")
        # The global index of the next training element (resume without replaying data).
        self.position = tf.Variable(0, dtype=tf.int64, trainable=False, name="position")
        self.checkpoint = tf.train.Checkpoint(
            generator=gan.generator,
            discriminator=gan.discriminator,
            g_optimizer=gan.g_optimizer,
            d_optimizer=gan.d_optimizer,
            step=self.step,
            position=self.position,
        )
        self.directory = os.path.join(output_dir, "checkpoints")
        self.save_directory = (
            self.directory if chief else os.path.join(output_dir, f".worker-{worker}-tmp")
        )
        self.manager = tf.train.CheckpointManager(
            self.checkpoint, self.save_directory, max_to_keep=keep
        )

    def restore(self):
        """Restores the latest complete checkpoint; returns its path or None."""
        latest = tf.train.latest_checkpoint(self.directory)
        if latest is not None:
            self.checkpoint.restore(latest).assert_existing_objects_matched()
        return latest

    def save(self):
        path = self.manager.save(checkpoint_number=int(self.step.numpy()))
        if not self.chief:
            shutil.rmtree(self.save_directory, ignore_errors=True)
        return path

    def export_weights(self):
        """Writes ``generator.weights.h5`` + ``generator.config.json`` (for penet_tf.export)
        and ``discriminator.weights.h5`` + ``discriminator.config.json`` (for
        ``convert_torch --to-torch``)."""
        if not self.chief:
            return None
        path = os.path.join(self.output_dir, "generator.weights.h5")
        save_weights_atomically(self.gan.generator, path)
        write_json_atomically(
            generator_config(self.gan.generator),
            os.path.join(self.output_dir, "generator.config.json"),
        )
        save_weights_atomically(
            self.gan.discriminator, os.path.join(self.output_dir, "discriminator.weights.h5")
        )
        write_json_atomically(
            discriminator_config(self.gan.discriminator),
            os.path.join(self.output_dir, "discriminator.config.json"),
        )
        return path
