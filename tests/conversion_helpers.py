"""Shared by test_convert.py and test_web_demo.py: one thin export and its conversions.

Both modules need the same thin SavedModel and TF.js conversion; they are built once per
pytest session under pytest's session temporary directory and reused by path.
"""

import os
import pathlib

import numpy as np

from penet_tf import Generator

BASE_CHANNELS = 4
SIZE = 256


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


def thin_export(base_temp, seed=0):
    """``base_temp/thin/1``: a thin generator exported with ``penet_tf.export``."""
    from penet_tf.export import export_generator

    path = pathlib.Path(base_temp) / "thin" / "1"
    if not path.is_dir():
        generator = Generator(base_channels=BASE_CHANNELS)
        generator.build()
        _scale_weights(generator, seed)
        export_generator(generator, path.parent, version=1)
    return path


def converted(base_temp, to, quantize="none", size=SIZE):
    """``python -m penet_tf.convert`` of the thin export (cached); returns the output dir."""
    from penet_tf.convert import convert

    out = pathlib.Path(base_temp) / f"converted-{to}-{quantize}-{size}"
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
