"""High resolution in bounded memory: the chunked attention (issue: performance)."""

import json
import subprocess
import sys

import numpy as np
import tensorflow as tf

from penet_tf import Generator

SCRIPT = """
import json, resource, sys
import numpy as np, tensorflow as tf
from penet_tf import Generator
size = 1024
generator = Generator(base_channels=4, attention_chunk_mb=64)
generator.build()
image = tf.random.uniform([1, size, size, 3], -1, 1, seed=1)
mask = np.zeros([1, size, size, 1], np.float32)
mask[:, 256:768, 256:768] = 1
output, pyramid = generator(image, mask)
print(json.dumps({
    "shape": output.shape.as_list(),
    "finite": bool(np.isfinite(output.numpy()).all()),
    "pyramid": [p.shape[1] for p in pyramid],
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def test_1024_forward_completes_in_bounded_memory():
    # Unchunked, at_conv01 alone would hold a 65536 x 65536 float32 score matrix: 16 GiB.
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=600, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["shape"] == [1, 1024, 1024, 3] and report["finite"]
    assert report["pyramid"] == [512, 256, 128, 64, 32]
    assert report["peak_rss_mb"] < 4096, report


def test_chunked_generator_matches_unchunked_at_a_smaller_size():
    image = tf.random.uniform([2, 256, 192, 3], -1, 1, seed=2)
    mask = np.zeros([2, 256, 192, 1], np.float32)
    mask[0, 64:192, 48:144] = 1
    mask[1, :, :96] = 1
    whole = Generator(base_channels=4, attention_chunk_mb=None)
    whole.build()
    # 1 MiB: at_conv01 (64 x 48 grid, 0.56 MiB per query row) scores one row per chunk.
    chunked = Generator(base_channels=4, attention_chunk_mb=1)
    chunked.build()
    chunked.set_weights(whole.get_weights())
    expected, _ = whole(image, mask)
    got, _ = chunked(image, mask)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5, rtol=0)
    assert json.dumps(chunked.get_config()["attention_chunk_mb"]) == "1"
