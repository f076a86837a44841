"""Export the generator as a SavedModel for TF Serving (and the conversions).

    python -m penet_tf.export --weights runs/demo/generator.weights.h5 --out savedmodels/demo

writes ``savedmodels/demo/N/`` (N = the next free version) in TF Serving's layout. The
export is written to a hidden temporary directory beside it and renamed into place, so a
half-written export never appears as a version.

Signatures (dynamic batch, height and width; any H and W, padded inside the graph):

* ``serving_default``: ``image`` uint8 [B, H, W, 3], ``mask`` uint8 [B, H, W, 1]
  (nonzero = hole, so 0/1 and 0/255 masks both work) -> ``inpainted`` uint8 [B, H, W, 3],
  the prediction composited into the known pixels (paper eq 7), which stay bit-identical.
* ``inpaint_bytes``: ``image_bytes`` / ``mask_bytes`` string [B] (PNG, JPEG, BMP or GIF)
  -> ``inpainted_bytes`` string [B] (PNG). The ``_bytes`` suffix makes TF Serving's REST
  API accept and return ``{"b64": ...}``.
* ``predict_float``: ``image`` float32 [B, H, W, 3] in [-1, 1], ``mask`` float32
  [B, H, W, 1] (nonzero = hole) -> ``output`` (the raw prediction) and ``inpainted``
  (the composite), float32, for research use.

Bad requests (size or batch mismatch, empty batch, an image over ``max_pixels``,
undecodable bytes) fail with ``InvalidArgumentError``, which TF Serving returns as
``INVALID_ARGUMENT`` with the message.
"""

import argparse
import json
import os
import re
import shutil
import sys
import tempfile

import keras
import numpy as np
import tensorflow as tf

from penet_tf.inference import binary_mask, float_to_uint8, inpaint, uint8_to_float
from penet_tf.models import generator_config, load_generator

DEFAULT_MAX_PIXELS = 2048 * 2048
CONFIG_FILE = "penet_tf.json"  # in assets.extra/, beside TF Serving's warm-up file
WARMUP_FILE = "tf_serving_warmup_requests"


def _check_request(image, mask, max_pixels):
    image_shape, mask_shape = tf.shape(image), tf.shape(mask)
    return [
        tf.debugging.assert_positive(
            image_shape[0], message="empty batch: send at least one image"
        ),
        tf.debugging.assert_equal(
            image_shape[0], mask_shape[0], message="image and mask batch sizes differ"
        ),
        tf.debugging.assert_equal(
            image_shape[1:3],
            mask_shape[1:3],
            message="image and mask height/width differ (mask must be [batch, H, W, 1])",
        ),
        tf.debugging.assert_less_equal(
            tf.cast(image_shape[1], tf.int64) * tf.cast(image_shape[2], tf.int64),
            tf.constant(max_pixels, tf.int64),
            message=f"image is larger than the server's limit of {max_pixels} pixels per image",
        ),
    ]


def serve(generator, image, mask, max_pixels=DEFAULT_MAX_PIXELS):
    """uint8 image [B, H, W, 3] and mask [B, H, W, 1] (nonzero = hole) -> uint8 inpainted.

    The one inference function every export wraps. Known pixels are copied from ``image``
    bit for bit; hole pixels are the generator's prediction, rounded.
    """
    with tf.control_dependencies(_check_request(image, mask, max_pixels)):
        hole = binary_mask(mask)
    _, inpainted = inpaint(generator, uint8_to_float(image), hole)
    return tf.where(hole > 0, float_to_uint8(inpainted), image)


def _decode(data, channels, name):
    image = tf.io.decode_image(data, channels=channels, expand_animations=False)
    return tf.ensure_shape(image, [None, None, channels], name=name)


def build_archive(generator, max_pixels=DEFAULT_MAX_PIXELS):
    """A ``keras.export.ExportArchive`` with the three signatures around ``generator``."""
    archive = keras.export.ExportArchive()
    archive.track(generator)

    def serving_default(image, mask):
        return {"inpainted": serve(generator, image, mask, max_pixels)}

    def inpaint_bytes(image_bytes, mask_bytes):
        checks = [
            tf.debugging.assert_positive(
                tf.size(image_bytes), message="empty batch: send at least one image"
            ),
            tf.debugging.assert_equal(
                tf.size(image_bytes),
                tf.size(mask_bytes),
                message="image_bytes and mask_bytes batch sizes differ",
            ),
        ]

        def one(pair):
            image = _decode(pair[0], 3, "image")
            mask = _decode(pair[1], 1, "mask")
            return tf.io.encode_png(serve(generator, image[None], mask[None], max_pixels)[0])

        with tf.control_dependencies(checks):
            image_bytes = tf.identity(image_bytes)
        encoded = tf.map_fn(one, (image_bytes, mask_bytes), fn_output_signature=tf.string)
        return {"inpainted_bytes": encoded}

    def predict_float(image, mask):
        with tf.control_dependencies(_check_request(image, mask, max_pixels)):
            hole = binary_mask(mask)
        output, inpainted = inpaint(generator, image, hole)
        return {"output": output, "inpainted": inpainted}

    spec = tf.TensorSpec
    archive.add_endpoint(
        "serving_default",
        serving_default,
        [
            spec([None, None, None, 3], tf.uint8, "image"),
            spec([None, None, None, 1], tf.uint8, "mask"),
        ],
    )
    archive.add_endpoint(
        "inpaint_bytes",
        inpaint_bytes,
        [spec([None], tf.string, "image_bytes"), spec([None], tf.string, "mask_bytes")],
    )
    archive.add_endpoint(
        "predict_float",
        predict_float,
        [
            spec([None, None, None, 3], tf.float32, "image"),
            spec([None, None, None, 1], tf.float32, "mask"),
        ],
    )
    return archive


def next_version(base_dir):
    """1 + the largest numeric version under ``base_dir`` (1 when there is none)."""
    versions = [int(name) for name in os.listdir(base_dir) if re.fullmatch(r"\d+", name)]
    return max(versions, default=0) + 1


def write_warmup_requests(path, model_name, size=64):
    """TF Serving's warm-up file: one small ``serving_default`` request."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    image = np.full((1, size, size, 3), 128, np.uint8)
    mask = np.zeros((1, size, size, 1), np.uint8)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    request = predict_pb2.PredictRequest(
        model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default")
    )
    request.inputs["image"].CopyFrom(tf.make_tensor_proto(image))
    request.inputs["mask"].CopyFrom(tf.make_tensor_proto(mask))
    log = prediction_log_pb2.PredictionLog(
        predict_log=prediction_log_pb2.PredictLog(request=request)
    )
    with tf.io.TFRecordWriter(path) as writer:
        writer.write(log.SerializeToString())


def export_generator(generator, base_dir, version=None, max_pixels=DEFAULT_MAX_PIXELS):
    """Writes ``base_dir/<version>/`` (the next free version by default); returns its path."""
    base_dir = os.path.abspath(base_dir)
    os.makedirs(base_dir, exist_ok=True)
    version = next_version(base_dir) if version is None else int(version)
    final = os.path.join(base_dir, str(version))
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists: choose another --version (or omit it)")
    temporary = tempfile.mkdtemp(dir=base_dir, prefix=f".tmp-{version}-")
    try:
        build_archive(generator, max_pixels).write_out(temporary, verbose=False)
        extra = os.path.join(temporary, "assets.extra")
        os.makedirs(extra, exist_ok=True)
        write_warmup_requests(os.path.join(extra, WARMUP_FILE), os.path.basename(base_dir))
        with open(os.path.join(extra, CONFIG_FILE), "w") as handle:
            json.dump({"generator": generator_config(generator), "max_pixels": max_pixels}, handle)
        os.rename(temporary, final)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return final


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.export",
        description="Export a PEN-Net generator as a TF Serving SavedModel (savedmodels/NAME/N).",
    )
    parser.add_argument(
        "--weights", required=True, help="generator weights (.weights.h5, or a released .pth)"
    )
    parser.add_argument("--out", required=True, help="model base directory, e.g. savedmodels/demo")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help=f"largest H * W a request may send (default {DEFAULT_MAX_PIXELS})",
    )
    parser.add_argument(
        "--attention-chunk-mb",
        type=float,
        default=192,
        help="attention memory budget per image and layer (default 192 MiB)",
    )
    args = parser.parse_args(argv)
    try:
        generator = load_generator(
            args.weights, patch_method="conv", attention_chunk_mb=args.attention_chunk_mb
        )
        path = export_generator(generator, args.out, args.version, args.max_pixels)
    except (FileNotFoundError, FileExistsError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"exported {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
