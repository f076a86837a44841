"""One PENetGAN.released_step against one iteration of the released trainer.

``../shared/reference/fixtures/train_step_256`` holds the released trainer's iteration
(places2 settings) from ``official_256``'s checkpoints on a batch of two photos, in
float32 and float64. Its README gives the float32 noise floor: losses within 3.3e-6, and
per tensor ``||w - w_fp64|| / ||w_fp64 - w_before||`` with a median of 1.3e-5 (G) and
4.9e-5 (D) and a worst tensor of 4e-2 (G) and 3e-2 (D).
"""

import json

import numpy as np
import pytest
import tensorflow as tf
from conftest import FIXTURE, REPO, SHARED

from penet_tf.convert_torch import (
    discriminator_state_dict,
    generator_state_dict,
    load_released_discriminator,
    load_released_generator,
)
from penet_tf.training.config import load_config
from penet_tf.training.trainer import build_gan

STEP = SHARED / "reference" / "fixtures" / "train_step_256"
LR = 1e-4
# The classifier bias has an exactly-zero released gradient (every hinge term active):
# its update is rounding alone, compared in absolute terms.
ABSOLUTE = {"D/classifier.bias"}


@pytest.fixture(scope="module")
def one_step():
    config = load_config(str(REPO / "configs" / "places2.json"))
    gan = build_gan(config)
    load_released_generator(str(FIXTURE / "gen.pth"), gan.generator)
    load_released_discriminator(str(FIXTURE / "dis.pth"), gan.discriminator)
    gan.build()
    batch = np.load(STEP / "batch.npz")
    image = tf.constant(batch["image"].astype(np.float32) / 127.5 - 1.0)
    mask = tf.constant(batch["mask"][..., None].astype(np.float32))
    logs = tf.function(gan.released_step)((image, mask))
    state = {f"G/{k}": v for k, v in generator_state_dict(gan.generator).items()}
    state.update({f"D/{k}": v for k, v in discriminator_state_dict(gan.discriminator).items()})
    return {name: float(value) for name, value in logs.items()}, state


def test_every_loss_term_matches_the_released_step(one_step):
    logs, _ = one_step
    expected = json.loads((STEP / "expected.json").read_text())["losses_fp32"]
    compared = sorted(set(logs) & set(expected))
    assert compared == sorted(logs)  # every term released_step reports is in the fixture
    for name in compared:
        assert abs(logs[name] - expected[name]) < 1e-4, (name, logs[name], expected[name])


def _relative_distances(state, net):
    after = np.load(STEP / "after.npz")
    distances = {}
    names = [k for k in state if k.startswith(f"{net}/")]
    assert len(names) == len([k for k in after if k.startswith(f"{net}/") and k.endswith(".idx")])
    for name in names:
        ours = state[name].reshape(-1)[after[f"{name}.idx"]]
        released, before = after[f"{name}@fp64"], after[f"{name}@before"]
        if name in ABSOLUTE:
            assert np.abs(ours - released).max() <= 2 * LR, name
            continue
        distances[name] = np.linalg.norm(ours - released) / np.linalg.norm(released - before)
    return distances


@pytest.mark.parametrize("net", ["G", "D"])
def test_post_step_weights_match_the_released_update(one_step, net):
    _, state = one_step
    distances = _relative_distances(state, net)
    worst = max(distances, key=distances.get)
    assert np.median(list(distances.values())) <= 1e-3, distances
    assert distances[worst] <= 0.1, (worst, distances[worst])
