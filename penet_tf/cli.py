"""What the command-line tools share: arguments common to several CLIs and ``run``.

Library code never imports a CLI module; CLIs import the libraries and this module.
"""

import argparse

from penet_tf.high_resolution import STRATEGIES, PhotoStrategy
from penet_tf.inpainting import MASK_TYPES


def add_model_arguments(parser, required=True):
    """``--model``, shared by inpaint and evaluate."""
    parser.add_argument(
        "--model",
        required=required,
        help="a SavedModel (version directory with saved_model.pb, or its base directory: "
        "the highest version is used) or generator weights (.weights.h5, with an optional "
        "NAME.config.json beside it; or a released gen_*.pth, which needs PyTorch)",
    )


def add_mask_arguments(group):
    """``--masks`` / ``--mask-type`` in a mutually exclusive group (inpaint and evaluate)."""
    group.add_argument(
        "--masks",
        help="mask file or folder; masks pair with images by file name without extension "
        "(cat.jpg <-> cat.png); a hole wherever any colour channel is nonzero; sizes must "
        "equal the image's, but a single file serves every image of a folder (resized, "
        "nearest neighbour)",
    )
    group.add_argument(
        "--mask-type",
        choices=MASK_TYPES,
        help="generate the masks instead: centre = the centred (H/2)x(W/2) block (the "
        "release's test mask), strokes = free-form brush strokes covering 10-40%% of the "
        "image, seeded by --seed and the image's position",
    )


STRATEGY_OPTIONS = ("strategy", "model_size", "margin", "trigger", "residual_aggregation")


def add_strategy_arguments(parser):
    """``--strategy``, ``--model-size``, ``--margin``, ``--trigger`` and
    ``--residual-aggregation`` (penet_tf.high_resolution; inpaint and evaluate)."""
    defaults = PhotoStrategy()
    group = parser.add_argument_group(
        "large photos (generator weights; a SavedModel runs the strategy it was exported with)"
    )
    group.add_argument(
        "--strategy",
        choices=STRATEGIES,
        help="full = the network on the whole photo; resize = the photo's long side to "
        "--model-size; crop = a region around each hole group; auto (default) = crop when "
        "the long side exceeds --trigger, else full",
    )
    group.add_argument(
        "--model-size",
        type=int,
        help=f"network input long side for crop/resize (default {defaults.model_size})",
    )
    group.add_argument(
        "--margin", type=int, help=f"crop: context around the holes (default {defaults.margin})"
    )
    group.add_argument(
        "--trigger", type=int, help=f"auto: crop above this long side (default {defaults.trigger})"
    )
    group.add_argument(
        "--residual-aggregation",
        action=argparse.BooleanOptionalAction,
        help="crop/resize: add the known pixels' full-resolution detail into the holes "
        "through the network's attention (default on)",
    )


def strategy_from_args(args):
    """The ``PhotoStrategy`` the options ask for, or None when none was given (ValueError
    for bad values)."""
    given = {
        name: getattr(args, name)
        for name in STRATEGY_OPTIONS
        if getattr(args, name, None) is not None
    }
    if not given:
        return None
    name = given.pop("strategy", "auto")
    return PhotoStrategy(name, **given)
