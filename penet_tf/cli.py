"""What the command-line tools share: arguments common to several CLIs and ``run``.

Library code never imports a CLI module; CLIs import the libraries and this module.
"""

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
