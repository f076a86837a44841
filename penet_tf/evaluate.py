"""Evaluate inpainting with the paper's and the release's metrics: ``python -m penet_tf.evaluate``.

    # the paper's protocol: images resized to 256 x 256, centred 128 x 128 hole
    python -m penet_tf.evaluate --model savedmodels/places2 --images places2_val/ \\
        --protocol places2-centre128 --out reports/places2.json
    # your own masks, or results inpainted by any other program
    python -m penet_tf.evaluate --model gen.weights.h5 --images photos/ --masks masks/ \\
        --out report.json
    python -m penet_tf.evaluate --predictions results/ --images photos/ --out report.json

Writes ``report.json`` (overall means, FID / IS, settings, skipped files, every image) and
``report.csv`` beside it (one row per image). Per image, on the result against the
original (a model's result composited: its known pixels are the original's; a
``--predictions`` file scored as given, known pixels and all, as the other program
delivered it): ``l1`` (mean absolute error on [0, 1] x 100, whole image), ``l1_hole`` (the
same over the hole only, when the masks are known: the paper does not say which one its
tables use), ``relative_mae`` (the release's sum|a-b| / sum(a+b)), ``psnr`` (dB),
``ssim`` (11 x 11 Gaussian window, ``tf.image.ssim``), ``ssim_win51`` (the release's
uniform 51 x 51 window), ``ms_ssim`` (``tf.image.ssim_multiscale``; ``ms_ssim_scales``
says how many scales fitted). Over the set: ``fid`` (originals vs results, InceptionV3
pool features) and ``inception_score`` of the results (and of the originals, for scale).
See ``penet_tf.metrics`` for exact definitions and how they differ from the paper's tools.

FID and IS need Keras' InceptionV3 ImageNet weights (downloaded once by Keras, or
``--inception-weights PATH``); ``--no-fid`` turns them off, and they are skipped with a note
for fewer than 2 images. Results are deterministic for a given ``--seed``.
Exit status: 0; 1 when some files were skipped (listed in the report and on stderr);
2 on errors.
"""

import argparse
import csv
import io
import json
import math
import os
import sys
import time

import numpy as np

from penet_tf import metrics
from penet_tf.cli import (
    add_batch_arguments,
    add_mask_arguments,
    add_model_arguments,
    add_strategy_arguments,
    run,
    say,
    strategy_from_args,
    strategy_options,
)
from penet_tf.errors import first_few
from penet_tf.inpainting import (
    collect_items,
    list_images,
    load_inpainter,
    make_dataset,
    option_text,
    plan_batches,
    progress_bar,
    report_skipped,
    run_batches,
)
from penet_tf.io_utils import atomic_path, check_file_target, sweep_temporaries, write_text

PROTOCOLS = {
    # The paper's Places2 comparison: 256 x 256 images, the centred 128 x 128 hole.
    "places2-centre128": {"size": (256, 256), "mask": "centre"},
}
COLUMNS = (
    "name",
    "height",
    "width",
    "hole_ratio",
    "l1",
    "l1_hole",
    "relative_mae",
    "psnr",
    "ssim",
    "ssim_win51",
    "ms_ssim",
    "ms_ssim_scales",
)
AVERAGED = COLUMNS[3:11]
# Images per Inception Score split at least: with one image a split scores exactly 1
# (KL(p || p) = 0), so 2-10 images gave IS 1.0, std 0. (The standard: 50,000 in 10.)
IS_IMAGES_PER_SPLIT = 50
# The smallest side each SSIM takes (its window); smaller images have none (null).
SSIM_SIDES = {"ssim": 11, "ssim_win51": 51}


def inception_splits(is_splits, images):
    """The Inception Score's splits for ``images``: ``is_splits``, fewer where a split
    would hold under ``IS_IMAGES_PER_SPLIT`` images, at least 1."""
    return max(1, min(is_splits, images // IS_IMAGES_PER_SPLIT))


def _number(value):
    """A JSON-safe number: NaN and infinities become None."""
    value = float(value)
    return value if math.isfinite(value) else None


def _mean(values):
    finite = [value for value in values if value is not None and math.isfinite(value)]
    return float(np.mean(finite)) if finite else None


def _json_row(row):
    integers = ("height", "width", "ms_ssim_scales")
    return {
        key: row[key] if key == "name" else int(row[key]) if key in integers else _number(row[key])
        for key in COLUMNS
    }


def evaluate(
    images,
    inpainter=None,
    predictions=None,
    masks=None,
    mask_type=None,
    protocol=None,
    batch_size=8,
    seed=0,
    fid=True,
    feature_model=None,
    inception_weights="imagenet",
    is_splits=10,
    progress=True,
):
    """Evaluates a model (``inpainter``, see ``penet_tf.inpainting.load_inpainter``) or a folder
    of ``predictions`` against the original ``images``; returns ``(report, skipped)``.

    Args:
        masks / mask_type / protocol: at most one: a mask file or folder, a generated mask
            type (``"centre"``, ``"strokes"``), or a key of ``PROTOCOLS``. A model needs one;
            predictions do not (``l1_hole`` and ``hole_ratio`` are then None).
        fid: compute FID and IS (with at least 2 images).
        feature_model: the FID / IS feature model (see ``penet_tf.metrics``); default
            ``metrics.inception_model(inception_weights)``.
        is_splits: Inception Score splits.
    """
    if (inpainter is None) == (predictions is None):
        raise ValueError("give either a model or a folder of predictions")
    if sum(option is not None for option in (masks, mask_type, protocol)) > 1:
        raise ValueError("give at most one of masks, mask type and protocol")
    resize = None
    mask_source = "files" if masks is not None else mask_type
    if protocol is not None:
        if protocol not in PROTOCOLS:
            raise ValueError(f"unknown protocol {protocol!r}: expected one of {list(PROTOCOLS)}")
        resize, mask_source = PROTOCOLS[protocol]["size"], PROTOCOLS[protocol]["mask"]
    if inpainter is not None and mask_source is None:
        raise ValueError("evaluating a model needs masks: give --masks, --mask-type or --protocol")

    items, skipped = collect_items(images, masks, predictions, resize)
    limit = getattr(inpainter, "limit", None)  # a SavedModel's; refused before decoding
    if limit is not None:
        items, over = limit.split(items)
        skipped += over
    report_skipped(skipped)
    notes = []
    model = None
    if not fid:
        notes.append("FID and IS turned off (--no-fid)")
    elif len(items) < 2:
        notes.append("FID and IS skipped: they need at least 2 images")
    else:  # loaded before the long run, so a missing weights file fails at once
        model = feature_model
        if model is None:
            model = metrics.inception_model(inception_weights)

    batches = plan_batches(items, batch_size)
    dataset = make_dataset(batches, mask_source, seed, resize, predictions is not None)
    bar = progress_bar(len(items), enabled=progress)
    rows, features = [], {"real": [], "real_logits": [], "fake": [], "fake_logits": []}
    start = time.perf_counter()
    for batch_items, arrays, failed, count in run_batches(dataset, items, inpainter):
        report_skipped(failed)
        skipped.extend(failed)
        if batch_items:
            target, output = arrays["image"], arrays["output"]
            values = metrics.paired_metrics(target, output, arrays.get("mask"))
            for slot, item in enumerate(batch_items):
                row = {"name": item.name, "height": target.shape[1], "width": target.shape[2]}
                row.update({key: values[key][slot] for key in COLUMNS[3:]})
                rows.append(row)
            if model is not None:
                real, real_logits = metrics.extract_features(model, target)
                fake, fake_logits = metrics.extract_features(model, output)
                features["real"].append(real)
                features["real_logits"].append(real_logits)
                features["fake"].append(fake)
                features["fake_logits"].append(fake_logits)
        bar.add(count)
    seconds = time.perf_counter() - start

    rows.sort(key=lambda row: row["name"])
    overall = {"images": len(rows)}
    for key in AVERAGED:
        overall[key] = _mean([float(row[key]) for row in rows])
    overall["psnr_infinite"] = sum(1 for row in rows if math.isinf(float(row["psnr"])))
    scales = sorted({int(row["ms_ssim_scales"]) for row in rows})
    overall.update(fid=None, inception_score=None, inception_score_std=None)
    overall["inception_score_originals"] = None
    if model is not None and len(rows) >= 2:
        stacked = {key: np.concatenate(value) for key, value in features.items()}
        overall["fid"] = metrics.fid_from_features(stacked["real"], stacked["fake"])
        dimensions = stacked["real"].shape[1]
        if len(rows) <= dimensions:  # (N images: a covariance of rank N - 1 at most)
            notes.append(
                f"fid: {len(rows)} images, not more than the features' {dimensions} dimensions: "
                "the covariances are singular and FID is biased upwards (the standard is "
                "10,000-50,000 images); compare FIDs only between runs on the same images"
            )
        splits = inception_splits(is_splits, len(rows))
        if splits < is_splits:
            notes.append(
                f"inception_score: {len(rows)} images in {splits} split(s) (at least "
                f"{IS_IMAGES_PER_SPLIT} images each; the standard is 50,000 in 10): a small "
                "set scores low"
            )
        overall["inception_score"], overall["inception_score_std"] = metrics.inception_score(
            logits=stacked["fake_logits"], splits=splits
        )
        overall["inception_score_originals"] = metrics.inception_score(
            logits=stacked["real_logits"], splits=splits
        )[0]
    elif model is not None:
        notes.append("FID and IS skipped: fewer than 2 images could be evaluated")
    if overall["psnr_infinite"]:
        notes.append(
            "psnr: images identical to their original have infinite PSNR (null "
            "in JSON); the mean is over the others"
        )
    for key, side in SSIM_SIDES.items():
        scored = sum(1 for row in rows if math.isfinite(float(row[key])))
        if scored < len(rows):
            notes.append(
                f"{key}: the mean is over {scored} of {len(rows)} images (an image under "
                f"{side} pixels a side has none: null)"
            )
    if scales and scales != [5]:
        used = ", ".join(map(str, scales))
        notes.append(
            f"ms_ssim used {used} scale(s) (5 need min(H, W) >= 161; 0: too small for "
            "any, ms_ssim null)"
        )
    no_hole = [row["name"] for row in rows if float(row["hole_ratio"]) == 0.0]
    if no_hole:
        shown = first_few(no_hole, 5)
        # (a prediction is scored as given: only the model's are the originals then)
        outcome = (
            "l1_hole is null for them"
            if predictions is not None
            else "they are compared with themselves"
        )
        notes.append(
            f"{len(no_hole)} image(s) had no hole in their mask ({shown}): {outcome} (see "
            "the mask rule: a hole is a value of at least 128, or 1 in a 0/1 mask)"
        )

    counts = ("images", "psnr_infinite")
    report = {
        "overall": {
            key: value if key in counts or value is None else _number(value)
            for key, value in overall.items()
        },
        "settings": {
            "source": inpainter.description
            if inpainter is not None
            else f"predictions {predictions}",
            "images": os.fspath(images),
            "masks": os.fspath(masks) if masks is not None else None,
            "mask_type": mask_type,
            "protocol": protocol,
            "seed": seed,
            "batch_size": batch_size,
            "fid": bool(fid),
            "feature_model": getattr(model, "name", None),
            # (two runs with other weights gave other FIDs under the same settings)
            "inception_weights": (
                os.fspath(inception_weights)
                if model is not None and feature_model is None and inception_weights is not None
                else None
            ),
            "inception_score_splits": (  # (None where IS was skipped)
                inception_splits(is_splits, len(rows))
                if overall["inception_score"] is not None
                else None
            ),
            "ssim": "tf.image.ssim's: 11x11 Gaussian window, sigma 1.5, K1 0.01, K2 0.03, "
            "range 255, in float64",
            "ssim_win51": "the release's: uniform 51x51 window, sample covariance, range 255",
            "l1": "mean |a - b| on [0, 1] x 100 over the whole image (l1_hole: hole pixels)",
            "seconds": round(seconds, 3),
        },
        "notes": notes,
        "skipped": [{"file": entry.name, "reason": entry.reason} for entry in skipped],
        "per_image": [_json_row(row) for row in rows],
    }
    return report, skipped


def csv_text(report):
    """The per-image rows as CSV (empty cells for undefined values)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in report["per_image"]:
        writer.writerow(["" if row[key] is None else row[key] for key in COLUMNS])
    return buffer.getvalue()


def csv_path(json_path):
    """``report.json`` -> ``report.csv`` (any other name gets ``.csv`` appended)."""
    root, extension = os.path.splitext(json_path)
    return (root if extension.lower() == ".json" else json_path) + ".csv"


def check_report_path(path, images, masks=None, predictions=None, model=None, inception=None):
    """ValueError, before any work, if the report (``path``) or its CSV could not be
    written there or would replace one of the files the run reads: images, masks,
    predictions, the model (its weights and ``NAME.config.json``; anything inside a
    SavedModel folder) and ``--inception-weights``."""
    if os.path.splitext(path)[1].lower() == ".csv":  # (JSON in it, the table in NAME.csv.csv)
        json_name = os.path.splitext(path)[0] + ".json"
        raise ValueError(
            f"--out {path} names the JSON report, and its per-image CSV goes beside it "
            f"(--out {json_name} writes {json_name} and {csv_path(json_name)})"
        )
    inputs = list_images(images)
    for folder, flag in ((masks, "--masks"), (predictions, "--predictions")):
        if folder is not None:
            inputs += list_images(folder, flag)
    if model is not None and not os.path.isdir(model):
        inputs.append(model)
        if model.endswith(".weights.h5"):
            inputs.append(model[: -len(".weights.h5")] + ".config.json")
    inputs.append(inception)
    for target, flag in ((path, "--out"), (csv_path(path), f"--out {path}: its CSV")):
        check_file_target(target, flag, inputs)
        if model is not None and os.path.isdir(model):
            inside = os.path.realpath(model)
            if os.path.commonpath([os.path.realpath(target), inside]) == inside:
                raise ValueError(f"{flag} {target} is inside the model folder {model}")


def write_report(report, path):
    """Writes ``path`` (JSON) and the CSV beside it as a pair: both are written in full
    before either is renamed into place, and the renames follow each other (the JSON was
    renamed before the CSV was written: a full disk left the new report beside the
    previous run's CSV). Returns the CSV path."""
    sweep_temporaries(os.path.dirname(os.path.abspath(path)))  # what a killed run left
    table = csv_path(path)
    # The inner context exits first: the CSV is renamed, then the JSON.
    with atomic_path(path) as json_temporary, atomic_path(table) as csv_temporary:
        write_text(json.dumps(report, indent=2, allow_nan=False) + "\n", json_temporary)
        write_text(csv_text(report), csv_temporary)
    return table


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.evaluate",
        description="Evaluate inpainting: L1, the release's relative MAE, PSNR, SSIM, MS-SSIM, "
        "FID and Inception Score, per image and overall. Writes a JSON report and a per-image "
        "CSV beside it. Exit status 1 if any file was skipped, 2 on errors.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    add_model_arguments(source, required=False)
    source.add_argument(
        "--predictions",
        help="instead of a model: a folder of already-inpainted images, paired with --images "
        "by file name without extension; each must have its original's size (256x256 with "
        "--protocol)",
    )
    parser.add_argument("--images", required=True, help="the original images (file or folder)")
    masks = parser.add_mutually_exclusive_group()
    add_mask_arguments(masks)
    masks.add_argument(
        "--protocol",
        choices=sorted(PROTOCOLS),
        help="a preset: places2-centre128 = the paper's Places2 comparison, images resized "
        "to 256x256 (PIL bicubic, as the release's test data) with the centred 128x128 hole",
    )
    parser.add_argument(
        "--out", required=True, help="report JSON path (the per-image CSV goes beside it)"
    )
    add_batch_arguments(parser, batch_size=8)
    parser.add_argument(
        "--fid",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="compute FID and Inception Score (default on; needs InceptionV3 ImageNet "
        "weights and at least 2 images)",
    )
    parser.add_argument(
        "--inception-weights",
        metavar="PATH",
        help="InceptionV3 weights file (inception_v3_weights_tf_dim_ordering_tf_kernels.h5) "
        "for machines where Keras cannot download it",
    )
    parser.add_argument(
        "--is-splits",
        type=int,
        default=10,
        help="Inception Score splits (default 10; fewer where a split would hold under 50 images)",
    )
    add_strategy_arguments(parser)
    return parser


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.is_splits < 1:
        parser.error(f"--is-splits must be at least 1, got {args.is_splits}")
    if (
        args.model is not None
        and args.masks is None
        and args.mask_type is None
        and (args.protocol is None)
    ):
        parser.error("--model needs masks: give --masks, --mask-type or --protocol")
    check_report_path(
        args.out, args.images, args.masks, args.predictions, args.model, args.inception_weights
    )
    strategy = strategy_from_args(args)
    given = strategy_options(args)
    if given and args.predictions is not None and args.model is None:
        # (they were ignored: the predictions are scored as given, exit status 0)
        flags = ", ".join(option_text(key, value).split()[0] for key, value in given.items())
        parser.error(f"{flags}: a photo strategy applies to --model only, not to --predictions")
    inpainter = load_inpainter(args.model, strategy, given) if args.model is not None else None
    report, skipped = evaluate(
        args.images,
        inpainter=inpainter,
        predictions=args.predictions,
        masks=args.masks,
        mask_type=args.mask_type,
        protocol=args.protocol,
        batch_size=args.batch_size,
        seed=args.seed,
        fid=args.fid,
        inception_weights=args.inception_weights or "imagenet",
        is_splits=args.is_splits,
        progress=not args.quiet,
    )
    if not report["per_image"]:
        raise ValueError(f"no image could be evaluated ({len(skipped)} skipped)")
    table = write_report(report, args.out)
    overall = report["overall"]
    shown = ("l1", "l1_hole", "relative_mae", "psnr", "ssim", "ms_ssim", "fid", "inception_score")
    summary = ", ".join(
        f"{key} {overall[key]:.4f}" for key in shown if overall.get(key) is not None
    )
    print(f"evaluated {overall['images']} image(s): {summary}")
    say(f"wrote {args.out} and {table}; skipped {len(skipped)}")
    return 1 if skipped else 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
