"""High-resolution photos end to end: the CLI (crop + CRA), the SavedModel, peak memory.

    flock /tmp/bench.lock nice -n 5 .venv/bin/python benchmarks/high_resolution.py \\
        [--weights generator.weights.h5] [--runs 5] [--skip-full]

Builds a 4000 x 3000 JPEG (the scikit-image astronaut, upscaled bicubic) and masks with
one 300 x 300 hole and with three separate 300 x 300 holes, then measures:

* ``cli``: ``penet_tf.inpaint.main`` in-process (weights loaded, JPEG read, inpainted,
  PNG written), ``--strategy crop`` with and without residual aggregation; one warm-up
  run, then the median (min, max) of ``--runs``;
* ``savedmodel``: an ``auto`` export's ``serving_default`` on the decoded photo (model
  time only), median of ``--runs`` after a warm-up;
* ``peak_rss``: the CLI on a 6000 x 4000 (24 MP) JPEG with one hole, and with a 5-px
  diagonal stroke across it (one group whose region is the whole photo), each in a fresh
  process (its peak resident memory, VmHWM);
* ``full_1024``: for contrast, a 1024^2 photo through ``--strategy full`` (one run).

Without ``--weights`` the model is the full-width generator with random weights (speed
does not depend on the weights). Prints one JSON object.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import tensorflow as tf  # noqa: E402
from _worker import machine  # noqa: E402

from penet_tf import Generator  # noqa: E402
from penet_tf.export import export_generator  # noqa: E402
from penet_tf.high_resolution import PhotoStrategy  # noqa: E402
from penet_tf.inpaint import main as inpaint_main  # noqa: E402


def photo(width, height):
    from skimage import data

    return np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.BICUBIC))


def hole_mask(width, height, corners, side=300):
    mask = np.zeros((height, width), np.uint8)
    for top, left in corners:
        mask[top : top + side, left : left + side] = 255
    return mask


def stroke_mask(width, height, thickness=5):
    """A ``thickness``-pixel stroke along the photo's diagonal: one hole group whose crop
    region is the whole photo."""
    mask = np.zeros((height, width), np.uint8)
    steps = 2 * max(width, height)
    ys = np.linspace(0, height - 1, steps).astype(int)
    xs = np.linspace(0, width - 1, steps).astype(int)
    for dy in range(thickness):
        for dx in range(thickness):
            mask[
                np.clip(ys + dy - thickness // 2, 0, height - 1),
                np.clip(xs + dx - thickness // 2, 0, width - 1),
            ] = 255
    return mask


def spread(times):
    return {
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "runs": len(times),
    }


def time_cli(weights, image, mask, out, options, runs):
    args = ["--model", weights, "--images", image, "--masks", mask, "--out", out, "--quiet"]
    times = []
    for _ in range(runs + 1):  # the first run traces and warms up
        start = time.perf_counter()
        status = inpaint_main([*args, *options])
        times.append(time.perf_counter() - start)
        assert status == 0, status
    return spread(times[1:])


RSS_SCRIPT = """
import sys, time
sys.path.insert(0, {repo!r})
from penet_tf.inpaint import main
start = time.perf_counter()
status = main({args!r})
seconds = time.perf_counter() - start
peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:"))
print(status, peak, seconds)  # VmHWM: ru_maxrss survives exec (the parent's peak)
"""


def cli_in_fresh_process(args):
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-c", RSS_SCRIPT.format(repo=repo, args=args)],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
    )
    status, rss_kb, seconds = result.stdout.strip().splitlines()[-1].split()
    assert status == "0", result.stderr[-2000:]
    return {"peak_rss_mb": round(int(rss_kb) / 1024), "seconds": round(float(seconds), 2)}


def main(argv=None):
    from penet_tf.cli import positive_int  # (0 rounds or runs crashed the statistics)

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--weights", help="generator weights (default: random, full width)")
    parser.add_argument("--runs", type=positive_int, default=5)
    parser.add_argument("--skip-full", action="store_true", help="skip the 1024^2 full run")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-hires-") as work:  # (it was left behind)
        return _run(args, work)


def _run(args, work):
    weights = args.weights
    if weights is None:
        generator = Generator()
        generator.build()
        weights = os.path.join(work, "generator.weights.h5")
        generator.save_weights(weights)

    big = os.path.join(work, "photos")
    os.makedirs(big)
    Image.fromarray(photo(4000, 3000)).save(os.path.join(big, "photo.jpg"), quality=95)
    one = os.path.join(work, "one.png")
    three = os.path.join(work, "three.png")
    Image.fromarray(hole_mask(4000, 3000, [(1200, 1800)])).save(one)
    Image.fromarray(hole_mask(4000, 3000, [(300, 400), (1500, 2000), (2500, 3400)])).save(three)
    report = {
        "machine": machine(),  # (its date, host, CPU, cores, memory and versions)
        "weights": args.weights or "random full-width (base_channels=32)",
    }
    out = os.path.join(work, "out")
    for name, mask in (("one_hole", one), ("three_holes", three)):
        for cra in (True, False):
            options = ["--strategy", "crop"]
            options += ["--residual-aggregation" if cra else "--no-residual-aggregation"]
            key = f"cli_4000x3000_{name}_crop{'_cra' if cra else ''}"
            report[key] = time_cli(weights, big, mask, out, options, args.runs)
            print(key, report[key], file=sys.stderr, flush=True)

    # The SavedModel (auto: crop + CRA above 512) on the decoded photo: model time.
    from penet_tf.models import load_generator

    base = os.path.join(work, "savedmodel")
    export_generator(load_generator(weights, patch_method="conv"), base, strategy=PhotoStrategy())
    signature = tf.saved_model.load(os.path.join(base, "1")).signatures["serving_default"]
    image = tf.constant(np.asarray(Image.open(os.path.join(big, "photo.jpg")))[None])
    for name, mask in (("one_hole", one), ("three_holes", three)):
        holes = tf.constant(np.asarray(Image.open(mask))[None, ..., None])
        times = []
        for _ in range(args.runs + 1):
            start = time.perf_counter()
            signature(image=image, mask=holes)["inpainted"].numpy()
            times.append(time.perf_counter() - start)
        key = f"savedmodel_4000x3000_{name}_per_group"
        report[key] = spread(times[1:])
        print(key, report[key], file=sys.stderr, flush=True)

    big24 = os.path.join(work, "photo24")
    os.makedirs(big24)
    Image.fromarray(photo(6000, 4000)).save(os.path.join(big24, "photo.jpg"), quality=95)
    mask24 = os.path.join(work, "mask24.png")
    Image.fromarray(hole_mask(6000, 4000, [(2000, 3000)])).save(mask24)
    stroke24 = os.path.join(work, "stroke24.png")
    Image.fromarray(stroke_mask(6000, 4000)).save(stroke24)
    for name, mask in (("one_hole", mask24), ("diagonal_stroke", stroke24)):
        key = f"cli_6000x4000_{name}_crop_cra_fresh_process"
        report[key] = cli_in_fresh_process(
            ["--model", weights, "--images", big24, "--masks", mask, "--out", out, "--quiet"]
        )
        print(key, report[key], file=sys.stderr, flush=True)

    if not args.skip_full:
        small = os.path.join(work, "photo1024")
        os.makedirs(small)
        Image.fromarray(photo(1024, 1024)).save(os.path.join(small, "photo.jpg"), quality=95)
        mask1024 = os.path.join(work, "mask1024.png")
        Image.fromarray(hole_mask(1024, 1024, [(362, 362)])).save(mask1024)
        args_full = ["--model", weights, "--images", small, "--masks", mask1024]
        report["cli_1024x1024_one_hole_full_fresh_process"] = cli_in_fresh_process(
            [*args_full, "--out", out, "--quiet", "--strategy", "full"]
        )
    report["benchmark_peak_rss_mb"] = round(
        resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    )
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
