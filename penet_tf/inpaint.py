"""Inpaint your own images: ``python -m penet_tf.inpaint`` (the library is
``penet_tf.inpainting``).

    python -m penet_tf.inpaint --model savedmodels/demo --images photos/ --masks masks/ \\
        --out results/ --batch-size 8 --grid

Images and masks are paired by file name without its extension (``photos/cat.jpg`` with
``masks/cat.png``); a single mask file may serve a whole folder (it is then resized to each
image, nearest neighbour; a photo of another aspect ratio is skipped by name). A mask is
any image PIL reads, with a hole where its largest
colour channel is at least 128 of 255 (alpha ignored; a mask holding only 0 and 1 is a
0/1 mask, 1 = hole; see ``penet_tf.image_io``); ``--mask-from-alpha`` takes the hole from
each image's alpha channel instead (transparent = hole); or masks are generated
with ``--mask-type centre`` (the centred (H/2) x (W/2) block of the release's test masks)
or ``--mask-type strokes`` (free-form strokes, seeded by ``--seed`` and the image's
position in the sorted list, so runs repeat exactly).

Any image size works. Photos whose long side exceeds ``--trigger`` (512) are inpainted
per hole group, through a region resized to ``--model-size`` (256, the training size),
with the known pixels' full-resolution detail aggregated into the holes
(``--strategy auto``, the default; ``full`` / ``crop`` / ``resize`` and
``--no-residual-aggregation`` choose otherwise: see penet_tf.high_resolution). Through
``full`` the model pads by reflection to a multiple of 64 and crops back, as the export
does. Images of the same size are batched together, up to ``--batch-size``
(a batch never mixes sizes; an image whose size no other shares runs alone). The
composite - the prediction inside the hole, the original pixels, bit for bit, outside it
- is written to ``OUT/<name>.png`` (for one image, ``--out NAME.png`` names the file
itself); ``--grid`` adds ``OUT/<name>_grid.png`` (masked input | output | original).
Files are written to a temporary name and renamed, so a crash never leaves a
half-written PNG.

A missing or unreadable image or mask, or a mask whose size differs from its image, is
reported by name on stderr and skipped; the exit status is then 1 (2 for a usage error or
a model that cannot be loaded).
"""

import argparse
import os
import sys

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
from penet_tf.inpainting import (
    check_out_folder,
    inpaint_files,
    load_inpainter,
    saved_pixel_limit,
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.inpaint",
        description="Inpaint your own images with a PEN-Net model. Writes OUT/<name>.png "
        "(the prediction inside the holes, the original pixels elsewhere). Exit status 1 if "
        "any file was skipped (each is reported on stderr with the reason), 2 on errors, "
        "130 on Ctrl-C (the images written by then are complete).",
    )
    add_model_arguments(parser)
    parser.add_argument("--images", required=True, help="an image file or a folder of images")
    masks = parser.add_mutually_exclusive_group(required=True)
    add_mask_arguments(masks)
    masks.add_argument(
        "--mask-from-alpha",
        action="store_true",
        help="take each hole from the image's own alpha channel: transparent (alpha below "
        "128) = hole",
    )
    parser.add_argument(
        "--out",
        required=True,
        help="output folder (created if missing); for a single image, NAME.png names the "
        "result itself",
    )
    parser.add_argument(
        "--grid",
        action="store_true",
        help="also write OUT/<name>_grid.png: masked input | output | original",
    )
    add_batch_arguments(parser, batch_size=1)
    add_strategy_arguments(parser)
    return parser


def _main(argv):
    parser = build_parser()
    args = parser.parse_args(argv)
    check_out_folder(args.out, args.images, args.masks)  # before loading the model
    if not os.path.exists(args.model):  # (found when loading, after the first photo's read)
        raise FileNotFoundError(f"--model {args.model}: no such file or directory")
    strategy = strategy_from_args(args)
    written, skipped, seconds = inpaint_files(
        # loaded while the first photo is read
        lambda: load_inpainter(args.model, strategy, strategy_options(args)),
        args.images,
        args.out,
        masks=args.masks,
        mask_type=args.mask_type,
        batch_size=args.batch_size,
        grid=args.grid,
        seed=args.seed,
        progress=not args.quiet,
        mask_from_alpha=args.mask_from_alpha,
        limit=saved_pixel_limit(args.model),  # photos over it skipped before decoding
    )
    rate = len(written) / seconds if seconds > 0 else 0.0
    say(
        f"inpainted {len(written)} image(s) into {args.out} in {seconds:.1f} s "
        f"({rate:.2f} images/s); skipped {len(skipped)}"
    )
    return 1 if skipped else 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
