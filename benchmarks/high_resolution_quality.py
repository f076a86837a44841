"""Quality of the high-resolution strategies on the shipped photos (upscaled).

    flock /tmp/bench.lock nice -n 5 .venv/bin/python benchmarks/high_resolution_quality.py \\
        --weights generator.weights.h5 [--long-side 2048] [--holes 2]

The five photos shipped with scikit-image (astronaut, chelsea, coffee) and scikit-learn
(china, flower) are upscaled (bicubic) to ``--long-side``; each gets ``--holes`` random
rectangles covering 10-25 % of a 640 x 640 crop around them. Methods:

* ``full (640 crop)``: the network at full resolution on the 640 x 640 crop (``full`` on
  the whole 2048 photo costs about 750 s per photo on 2 cores, so it is not run);
* ``resize``: the whole photo's long side to 256, with and without residual aggregation;
* ``crop``: with and without residual aggregation (HiFill's ``tiles`` and PEN-Net's
  ``overlap`` transfer);
* ``telea``: OpenCV's ``cv2.inpaint(..., INPAINT_TELEA)`` (radius 5), when OpenCV can be
  imported (``--opencv-path`` adds a folder holding it to the end of ``sys.path``).

Per hole, against the original: L1 (mean absolute error, 0-1 scale) and PSNR over the
hole's pixels, and the high-frequency energy in the hole relative to the known ring
around it (mean squared Laplacian of the grey image, hole / 32-px ring outside it; 1.0
= as much detail as the surroundings; the original's own ratio is listed as ``original``).
Prints a Markdown table of means over all holes, and the per-hole JSON on stderr.
"""

import argparse
import json
import os
import sys

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _worker import machine_line  # noqa: E402

from penet_tf.cli import positive_int  # noqa: E402
from penet_tf.high_resolution import PhotoStrategy, inpaint_photo  # noqa: E402
from penet_tf.inference import composite_uint8  # noqa: E402
from penet_tf.models import load_generator  # noqa: E402

CROP = 640


def photos(long_side):
    from skimage import data
    from sklearn.datasets import load_sample_images

    china, flower = load_sample_images().images
    named = {
        "astronaut": data.astronaut(),
        "chelsea": data.chelsea(),
        "coffee": data.coffee(),
        "china": china,
        "flower": flower,
    }
    out = {}
    for name, image in named.items():
        height, width = image.shape[:2]
        scale = long_side / max(height, width)
        size = (round(width * scale), round(height * scale))
        out[name] = np.asarray(Image.fromarray(image).resize(size, Image.BICUBIC))
    return out


def holes_for(shape, count, rng):
    """``count`` (crop box, hole box) pairs: holes of 10-25 % of a 640^2 crop inside it."""
    height, width = shape[:2]
    pairs = []
    for _ in range(count):
        top = int(rng.integers(0, height - CROP + 1))
        left = int(rng.integers(0, width - CROP + 1))
        area = rng.uniform(0.10, 0.25) * CROP * CROP
        aspect = rng.uniform(0.6, 1.6)
        hole_h = int(min(CROP - 64, np.sqrt(area * aspect)))
        hole_w = int(min(CROP - 64, area / hole_h))
        y = top + int(rng.integers(32, CROP - hole_h - 31))
        x = left + int(rng.integers(32, CROP - hole_w - 31))
        pairs.append(((top, left), (y, x, y + hole_h, x + hole_w)))
    return pairs


def laplacian_energy(grey):
    lap = np.zeros_like(grey)
    lap[1:-1, 1:-1] = (
        grey[:-2, 1:-1] + grey[2:, 1:-1] + grey[1:-1, :-2] + grey[1:-1, 2:] - 4 * grey[1:-1, 1:-1]
    )
    return lap**2


def metrics(result, original, box):
    y0, x0, y1, x1 = box
    hole = (slice(y0, y1), slice(x0, x1))
    got = result[hole].astype(np.float64) / 255
    want = original[hole].astype(np.float64) / 255
    l1 = np.abs(got - want).mean()
    psnr = 10 * np.log10(1.0 / max(((got - want) ** 2).mean(), 1e-12))
    ring = 32
    ys, xs = slice(max(y0 - ring, 0), y1 + ring), slice(max(x0 - ring, 0), x1 + ring)

    def ratio(image):
        energy = laplacian_energy(image[ys, xs].astype(np.float64).mean(-1) / 255)
        top, left = y0 - ys.start, x0 - xs.start
        height, width = y1 - y0, x1 - x0
        # 2 px away from the hole's edge on both sides (the Laplacian there mixes the
        # two), and not the ring's own 1-px border (no Laplacian there)
        core = np.zeros(energy.shape, bool)
        core[top + 2 : top + height - 2, left + 2 : left + width - 2] = True
        known = np.zeros(energy.shape, bool)
        known[1:-1, 1:-1] = True
        known[max(top - 2, 0) : top + height + 2, max(left - 2, 0) : left + width + 2] = False
        return energy[core].mean() / max(energy[known].mean(), 1e-12)

    return {"l1": l1, "psnr": psnr, "hf_ratio": ratio(result), "hf_ratio_original": ratio(original)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", required=True, help="generator weights")
    parser.add_argument("--long-side", type=int, default=2048)
    parser.add_argument("--holes", type=positive_int, default=2, help="holes per photo")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--opencv-path", help="a folder holding cv2, appended to sys.path")
    args = parser.parse_args(argv)
    upscaled = photos(args.long_side)
    short = min(min(image.shape[:2]) for image in upscaled.values())
    if short < CROP:  # (it failed in numpy after the first photos had been inpainted)
        parser.error(
            f"--long-side {args.long_side} leaves a photo {short} px on its short side, "
            f"less than the {CROP} x {CROP} crop (chelsea, 451 x 300, needs 962)"
        )
    print(machine_line())
    if args.opencv_path:
        sys.path.append(args.opencv_path)
    try:
        import cv2
    except ImportError:
        cv2 = None
        print("OpenCV (cv2) does not import: no Telea rows (--opencv-path DIR adds one)")
    generator = load_generator(args.weights)
    rng = np.random.default_rng(args.seed)
    methods = {
        "resize": PhotoStrategy("resize", residual_aggregation=False),
        "resize + CRA (tiles)": PhotoStrategy("resize"),
        "crop": PhotoStrategy("crop", residual_aggregation=False),
        "crop + CRA (tiles)": PhotoStrategy("crop"),
        "crop + CRA (overlap)": PhotoStrategy("crop", transfer="overlap"),
    }
    rows = {}
    for name, image in upscaled.items():
        for (top, left), box in holes_for(image.shape, args.holes, rng):
            mask = np.zeros(image.shape[:2], np.uint8)
            y0, x0, y1, x1 = box
            mask[y0:y1, x0:x1] = 1
            results = {}
            crop = (slice(top, top + CROP), slice(left, left + CROP))
            full = composite_uint8(generator, image[crop][None], mask[crop][None, ..., None])
            results["full (640 crop)"] = image.copy()
            results["full (640 crop)"][crop] = full[0].numpy()
            for method, strategy in methods.items():
                results[method] = inpaint_photo(generator, image, mask, strategy)
            if cv2 is not None:
                bgr = np.ascontiguousarray(image[..., ::-1])
                results["telea (OpenCV)"] = cv2.inpaint(bgr, mask, 5, cv2.INPAINT_TELEA)[..., ::-1]
            for method, result in results.items():
                entry = metrics(result, image, box)
                rows.setdefault(method, []).append(entry)
                print(
                    json.dumps({"photo": name, "box": box, "method": method, **entry}),
                    file=sys.stderr,
                )
    original = np.mean([e["hf_ratio_original"] for e in next(iter(rows.values()))])
    print(
        f"| method | hole L1 | hole PSNR (dB) | HF energy hole / ring (original {original:.2f}) |"
    )
    print("|---|---|---|---|")
    for method, entries in rows.items():
        l1 = np.mean([e["l1"] for e in entries])
        psnr = np.mean([e["psnr"] for e in entries])
        hf = np.mean([e["hf_ratio"] for e in entries])
        print(f"| {method} | {l1:.4f} | {psnr:.2f} | {hf:.3f} |")
    count = len(next(iter(rows.values())))
    print(f"\n{count} holes over 5 photos upscaled to a {args.long_side}-px long side")
    return 0


if __name__ == "__main__":
    sys.exit(main())
