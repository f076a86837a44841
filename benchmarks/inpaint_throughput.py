"""Throughput of ``python -m penet_tf.inpaint``'s path: images/s on a folder of 256² photos.

    .venv/bin/python benchmarks/inpaint_throughput.py                 # random full-width model
    .venv/bin/python benchmarks/inpaint_throughput.py --model savedmodels/demo --count 128

Builds a folder of ``--count`` 256 x 256 crops of the scikit-image / scikit-learn sample
photographs (PNG), then for each ``--batch-sizes`` value runs ``inpaint_files`` - the
CLI's own code: decode in ``tf.data``, the model, PNG writing - once on a few images to warm
up (tracing) and once timed on the whole folder. Prints, per batch size, end-to-end images/s
and model-only images/s (the time inside the model calls). Without ``--model`` the model is
a full-width (``base_channels=32``, the released size) generator with random weights:
speed does not depend on the weights.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from _worker import machine_line  # noqa: E402

from penet_tf import Generator  # noqa: E402
from penet_tf.cli import positive_int  # noqa: E402
from penet_tf.inpainting import inpaint_files, load_inpainter  # noqa: E402


def sample_photos():
    """The real photographs shipped with scikit-image and scikit-learn (all >= 300 px)."""
    from skimage import data
    from sklearn.datasets import load_sample_images

    photos = [data.astronaut(), data.coffee(), data.chelsea(), data.rocket()]
    return photos + list(load_sample_images().images)


def write_folder(folder, count, size, seed=0):
    """``count`` random ``size`` x ``size`` crops of the sample photos, as PNGs."""
    rng = np.random.default_rng(seed)
    photos = sample_photos()
    for index in range(count):
        photo = photos[index % len(photos)]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        crop = photo[top : top + size, left : left + size]
        Image.fromarray(crop).save(os.path.join(folder, f"photo_{index:05d}.png"))


class TimedInpainter:
    """Wraps an inpainter and adds up the seconds spent inside it."""

    def __init__(self, inpainter):
        self.inpainter, self.seconds = inpainter, 0.0
        self.description, self.limit = inpainter.description, inpainter.limit

    def __call__(self, image, mask):
        start = time.perf_counter()
        output = self.inpainter(image, mask)
        self.seconds += time.perf_counter() - start
        return output


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="SavedModel or weights (default: random full model)")
    # (0 photos or a batch of 0: a FileNotFoundError naming a temporary folder)
    parser.add_argument("--count", type=positive_int, default=64, help="photos in the folder (64)")
    parser.add_argument("--size", type=int, default=256, help="photo side in pixels (256)")
    parser.add_argument(
        "--batch-sizes", type=positive_int, nargs="+", default=[1, 8], help="batch sizes (1 8)"
    )
    parser.add_argument(
        "--mask-type", choices=("centre", "strokes"), default="centre", help="masks (centre)"
    )
    parser.add_argument("--json", help="also write the results to this JSON file")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="penet_bench_") as work:
        images = os.path.join(work, "images")
        os.makedirs(images)
        write_folder(images, args.count, args.size)
        model = args.model
        if model is None:
            generator = Generator()
            generator.build()
            model = os.path.join(work, "generator.weights.h5")
            generator.save_weights(model)
        inpainter = load_inpainter(model)
        if args.model is None:
            inpainter.description = "full-width Generator (base_channels=32), random weights"
        warmup = os.path.join(work, "warmup")
        os.makedirs(warmup)
        devices = [d.device_type for d in tf.config.list_physical_devices()]
        print(machine_line())
        print(
            f"devices {devices}; model: {inpainter.description}; "
            f"{args.count} photos {args.size}x{args.size}, {args.mask_type} masks"
        )
        results = []
        for batch_size in args.batch_sizes:
            for index in range(min(batch_size, args.count)):
                name = f"photo_{index:05d}.png"
                os.link(os.path.join(images, name), os.path.join(warmup, name))
            inpaint_files(
                inpainter,
                warmup,
                os.path.join(work, "out"),
                mask_type=args.mask_type,
                batch_size=batch_size,
                progress=False,
            )
            for name in os.listdir(warmup):
                os.remove(os.path.join(warmup, name))
            timed = TimedInpainter(inpainter)
            # (inpaint_files takes anything but an Inpainter for its loader, and calls it)
            written, skipped, seconds = inpaint_files(
                lambda timed=timed: timed,
                images,
                os.path.join(work, "out"),
                mask_type=args.mask_type,
                batch_size=batch_size,
                progress=False,
                limit=inpainter.limit,
            )
            if skipped or len(written) != args.count:
                raise RuntimeError(f"benchmark run skipped files: {skipped}")
            result = {
                "batch_size": batch_size,
                "images": len(written),
                "seconds": round(seconds, 3),
                "images_per_s": round(len(written) / seconds, 3),
                "model_images_per_s": round(len(written) / timed.seconds, 3),
            }
            results.append(result)
            print(
                f"batch {batch_size:3d}: {result['images_per_s']:8.2f} images/s end to end "
                f"({result['seconds']:.1f} s for {len(written)}), "
                f"{result['model_images_per_s']:8.2f} images/s in the model"
            )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": inpainter.description, "results": results}, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
