"""One thin export, its weights and its conversions, shared by the whole session.

test_convert, test_web_demo, test_serving, test_inpaint_cli and test_image_io need a
thin SavedModel (and some its weights or TF.js conversion); they are built once per
pytest session under pytest's session temporary directory and reused by path
(``tests/conftest.py``: the ``thin_savedmodel`` and ``thin_weights`` fixtures). Under
pytest-xdist they live in the directory the workers share, built by whichever worker
needs them first while the others wait on a file lock.
"""

import contextlib
import fcntl
import os
import pathlib

import numpy as np

from penet_tf import Generator

BASE_CHANNELS = 4
SIZE = 256
# The thin export's pixel budget: small, so tests can exceed it cheaply (300 x 300).
MAX_PIXELS = 300 * 300


def _scale_weights(generator, seed):
    """He-scaled random weights: varied outputs, so comparisons cannot pass trivially.

    With the released init (normal, std 0.02) an untrained thin generator predicts an
    almost constant grey; these weights give an output that varies from pixel to pixel
    and with the attention, so a wrong op shows up in the rounded pixels.
    """
    rng = np.random.default_rng(seed)
    for variable in generator.weights:
        shape = tuple(variable.shape)
        if len(shape) == 4:
            fan_in = shape[0] * shape[1] * shape[2]
            value = rng.normal(0.0, np.sqrt(2.0 / fan_in), shape)
        else:
            value = rng.normal(0.0, 0.1, shape)
        variable.assign(value.astype(np.float32))


def shared_root(base_temp):
    """Where the session's shared models go: ``base_temp``, or under pytest-xdist the
    session directory above every worker's own ``popen-gwN``."""
    base = pathlib.Path(base_temp)
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@contextlib.contextmanager
def exclusive(root, name):
    """Holds ``root/.NAME.lock`` (one worker builds ``name``; the others wait)."""
    root.mkdir(parents=True, exist_ok=True)
    with open(root / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def thin_export(base_temp, seed=0):
    """``ROOT/thin/1``: a thin generator exported with ``penet_tf.export``
    (``max_pixels=MAX_PIXELS``); its weights are ``thin_weights(base_temp)``."""
    from penet_tf.export import export_generator
    from penet_tf.high_resolution import PhotoStrategy
    from penet_tf.io_utils import save_weights_and_config

    root = shared_root(base_temp)
    path = root / "thin" / "1"
    with exclusive(root, "thin"):
        if path.is_dir():
            return path
        generator = Generator(base_channels=BASE_CHANNELS)
        generator.build()
        _scale_weights(generator, seed)
        weights = root / "thin-weights" / "generator.weights.h5"
        save_weights_and_config(generator, {"base_channels": BASE_CHANNELS}, weights)  # as training
        # ``full``: the photo itself is limited by max_pixels (tests of the limit), and
        # the signatures are the network on the whole image (the conversions' reference).
        full = PhotoStrategy("full")
        export_generator(generator, path.parent, version=1, max_pixels=MAX_PIXELS, strategy=full)
    return path


def thin_weights(base_temp):
    """The thin export's generator weights (``.weights.h5``, with its config beside)."""
    thin_export(base_temp)
    return shared_root(base_temp) / "thin-weights" / "generator.weights.h5"


def converted(base_temp, to, quantize="none", size=SIZE):
    """``python -m penet_tf.convert`` of the thin export (cached); returns the output dir."""
    from penet_tf.convert import convert

    root = shared_root(base_temp)
    out = root / f"converted-{to}-{quantize}-{size}"
    with exclusive(root, out.name):
        if not out.is_dir():
            convert(thin_export(base_temp), to, out, size=size, quantize=quantize)
    return out


def saved_model_output(saved_model_dir, image, mask):
    """``serving_default`` of the export: uint8 arrays in, uint8 array out."""
    import tensorflow as tf

    signature = tf.saved_model.load(os.fspath(saved_model_dir)).signatures["serving_default"]
    result = signature(image=tf.constant(image, tf.uint8), mask=tf.constant(mask, tf.uint8))
    return result["inpainted"].numpy()


def photo(height=SIZE, width=SIZE):
    """A real photograph (scikit-image's public-domain astronaut), resized, uint8 RGB."""
    from PIL import Image
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.LANCZOS))


def hole_mask(height=SIZE, width=SIZE, value=255):
    """A uint8 mask [H, W, 1]: a rectangle and a diagonal band of holes (nonzero)."""
    mask = np.zeros((height, width, 1), np.uint8)
    mask[height // 4 : height // 2, width // 5 : 3 * width // 5] = value
    rows, cols = np.mgrid[:height, :width]
    band = np.abs(rows * width / height - (width - cols)) < width / 24
    mask[band & (rows > height // 2)] = value
    return mask
