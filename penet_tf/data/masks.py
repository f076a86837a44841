"""Hole masks, generated on the fly inside ``tf.data`` (1 = hole, float32 [H, W, 1]).

Every generator takes a stateless seed (a shape-[2] int tensor), so a pipeline is
deterministic for a given seed, and works in graph mode (``Dataset.map``) and eagerly.

* ``square``: training, an (H/2) x (W/2) block at a random top-left in [0, H/2] x [0, W/2];
  evaluation (``centre``), the centred block - the released network's masks.
* ``strokes``: free-form brush strokes (polylines of random vertices and widths), added
  until the hole ratio reaches a target drawn from ``hole_ratio``.
* ``files``: a folder of mask PNGs (a hole where the largest colour channel is at least
  128, or the 1s of a 0/1 mask: ``penet_tf.image_io.MASK_RULE``), e.g. the NVIDIA
  irregular masks; files that cannot be read are left out, with a warning, when the
  generator is built.
* any mixture of them with weights.

Training masks get the released augmentation: random horizontal flip, rotation by 0-45
degrees with canvas expansion, 3 x 3 max-filter dilation and a nearest resize back to H x W.
"""

import math
import os

import numpy as np
import tensorflow as tf

from penet_tf.errors import get_logger
from penet_tf.image_io import HOLE_THRESHOLD, check_image_file, read_error_reason
from penet_tf.io_utils import IMAGE_SUFFIXES, find_files
from penet_tf.training.config import mask_section

logger = get_logger("penet_tf.data")


def centre(height, width):
    """The evaluation mask: the centred (H/2) x (W/2) block."""
    rows = tf.range(height)[:, None]
    cols = tf.range(width)[None, :]
    inside = (
        (rows >= height // 4)
        & (rows < height // 4 + height // 2)
        & (cols >= width // 4)
        & (cols < width // 4 + width // 2)
    )
    return tf.cast(inside, tf.float32)[..., None]


def square(height, width, seed):
    """A training square: (H/2) x (W/2) at a random top-left in [0, H/2] x [0, W/2]."""
    corner = tf.random.stateless_uniform(
        [2], seed, minval=0, maxval=tf.int32.max, dtype=tf.int32
    ) % tf.stack([height // 2 + 1, width // 2 + 1])
    rows = tf.range(height)[:, None] - corner[0]
    cols = tf.range(width)[None, :] - corner[1]
    inside = (rows >= 0) & (rows < height // 2) & (cols >= 0) & (cols < width // 2)
    return tf.cast(inside, tf.float32)[..., None]


def _stroke(height, width, seed, max_vertices, max_length, width_range):
    """One brush stroke: a polyline of 1..max_vertices segments with round joints."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    vertices = tf.random.stateless_uniform(
        [], seeds[0], minval=1, maxval=max_vertices + 1, dtype=tf.int32
    )
    start = tf.random.stateless_uniform([2], seeds[1]) * tf.cast([height, width], tf.float32)
    angles = tf.random.stateless_uniform([max_vertices], seeds[2], maxval=2 * math.pi)
    lengths = tf.random.stateless_uniform([max_vertices], seeds[3], minval=0.1, maxval=1.0)
    lengths *= max_length * tf.cast(tf.minimum(height, width), tf.float32)
    steps = tf.stack([tf.sin(angles), tf.cos(angles)], axis=1) * lengths[:, None]
    points = tf.concat([start[None], start[None] + tf.cumsum(steps, axis=0)], axis=0)
    points = tf.clip_by_value(points, 0.0, tf.cast([height - 1, width - 1], tf.float32))
    radius = 0.5 * tf.random.stateless_uniform(
        [], seeds[4], minval=width_range[0], maxval=width_range[1]
    )
    # Distance to the nearest of the first `vertices` segments, on a grid 4x coarser
    # than the image (the distance field is smooth), resized bilinearly and thresholded.
    step = 4.0
    grid = tf.stack(
        tf.meshgrid(
            tf.range(0.0, tf.cast(height, tf.float32), step),
            tf.range(0.0, tf.cast(width, tf.float32), step),
            indexing="ij",
        ),
        axis=-1,
    )  # [h, w, 2] in image pixels
    a, b = points[:-1], points[1:]  # [S, 2]
    ab = b - a
    t = tf.reduce_sum((grid[None] - a[:, None, None]) * ab[:, None, None], -1)
    t = tf.clip_by_value(t / tf.maximum(tf.reduce_sum(ab * ab, -1)[:, None, None], 1e-6), 0, 1)
    nearest = a[:, None, None] + t[..., None] * ab[:, None, None]
    distance = tf.norm(grid[None] - nearest, axis=-1)  # [S, h, w]
    drawn = tf.range(max_vertices)[:, None, None] < vertices
    distance = tf.reduce_min(tf.where(drawn, distance, float("inf")), axis=0)
    distance = tf.minimum(distance, 1e6)[..., None]
    coarse_h, coarse_w = tf.shape(distance)[0], tf.shape(distance)[1]
    # Coarse sample i sits at pixel 4 i: align_corners resize to the covered extent.
    covered = tf.raw_ops.ResizeBilinear(
        images=distance[None],
        size=[(coarse_h - 1) * 4 + 1, (coarse_w - 1) * 4 + 1],
        align_corners=True,
    )[0]
    # The last rows and columns past the coarse grid, mirrored (as a SYMMETRIC pad, which
    # cannot pad a 1-sample extent to an image 3 or 4 pixels high: they repeat it).
    covered = tf.gather(covered, _mirrored(height, tf.shape(covered)[0]), axis=0)
    covered = tf.gather(covered, _mirrored(width, tf.shape(covered)[1]), axis=1)
    return tf.cast(covered <= radius, tf.float32)


def _mirrored(size, extent):
    """Indices ``0 .. size - 1`` into ``extent`` samples, mirrored past the last one."""
    index = tf.range(size)
    index = tf.where(index < extent, index, 2 * extent - 1 - index)
    return tf.clip_by_value(index, 0, extent - 1)


def strokes(
    height,
    width,
    seed,
    hole_ratio=(0.1, 0.4),
    max_strokes=12,
    max_vertices=8,
    max_length=0.25,
    brush_width=(0.03, 0.08),
):
    """Free-form brush strokes covering a fraction of the image within ``hole_ratio``.

    Strokes are added one at a time until the hole ratio reaches a target drawn uniformly
    from ``hole_ratio``; a stroke that would push it above the maximum is skipped. If
    ``max_strokes`` tries end below the target (large targets such as 0.5, tiny brushes,
    narrow ranges such as (0.3, 0.32)), the mask is dilated (3 x 3) until it reaches the
    target, the last dilation taking its new pixels in raster order up to the target only
    (dilating to the range's minimum instead put every (0.3, 0.6) mask under 0.39), and a
    mask without any stroke grows from one pixel drawn from ``seed``. The range is met
    whenever some pixel count falls in it (not for a 1 x 1 image).

    Args:
        hole_ratio: (min, max) fraction of hole pixels.
        max_strokes: most strokes tried.
        max_vertices: most segments per stroke.
        max_length: longest segment, as a fraction of min(H, W).
        brush_width: (min, max) brush width, as a fraction of min(H, W).
    """
    low, high = float(hole_ratio[0]), float(hole_ratio[1])
    if not (0.0 <= low <= high <= 1.0 and high > 0.0):  # (max 0: a mask without a hole)
        raise ValueError(
            f"hole_ratio must satisfy 0 <= min <= max <= 1 and max > 0, got {hole_ratio}."
        )
    side = tf.cast(tf.minimum(height, width), tf.float32)
    widths = (brush_width[0] * side, brush_width[1] * side)
    seeds = tf.random.experimental.stateless_split(seed, max_strokes + 1)
    target = tf.random.stateless_uniform([], seeds[-1], minval=low, maxval=high)
    mask = tf.zeros([height, width, 1], tf.float32)

    def ratio(m):
        return tf.reduce_mean(m)

    def add_stroke(index, mask):
        candidate = tf.maximum(
            mask, _stroke(height, width, seeds[index], max_vertices, max_length, widths)
        )
        take = ratio(candidate) <= high
        return index + 1, tf.where(take, candidate, mask)

    # Once the target is reached no later stroke is taken: the loop stops there.
    _, mask = tf.while_loop(
        lambda index, m: (index < max_strokes) & (ratio(m) < target), add_stroke, (0, mask)
    )

    pixels = tf.cast(height * width, tf.float32)
    # Pixels a dilation brings the hole to: the target, within the range's maximum.
    wanted = tf.minimum(tf.math.ceil(target * pixels), tf.floor(high * pixels))
    start = tf.random.stateless_uniform(
        [2], tf.random.experimental.stateless_fold_in(seed, max_strokes), dtype=tf.float32
    )
    start = tf.cast(start * tf.cast([height, width], tf.float32), tf.int32)
    one_pixel = tf.scatter_nd(start[None], [1.0], [height, width])[..., None]

    def grow(m):
        ring = tf.nn.max_pool2d(m[None], 3, 1, "SAME")[0] - m
        ring = tf.where(tf.reduce_any(m > 0), ring, one_pixel)
        room = wanted - tf.reduce_sum(m)
        taken = tf.reshape(tf.cumsum(tf.reshape(ring, [-1])), tf.shape(ring))
        return (m + ring * tf.cast(taken <= room, tf.float32),)

    (mask,) = tf.while_loop(
        lambda m: tf.reduce_sum(m) < wanted,
        grow,
        (mask,),
        maximum_iterations=tf.maximum(height, width) + 1,
    )
    return mask


def augment(mask, seed, height, width):
    """The released training augmentation: flip, rotate 0-45 degrees (canvas expanded),
    3 x 3 dilation, nearest resize to ``height`` x ``width``."""
    seeds = tf.random.experimental.stateless_split(seed, 2)
    mask = tf.image.stateless_random_flip_left_right(mask, seeds[0])
    degrees = tf.random.stateless_uniform([], seeds[1], minval=0, maxval=46, dtype=tf.int32)
    # (float64 radians, as math.radians: a float32 angle moved cos / sin in the 8th digit)
    mask = rotate_expanded(mask, tf.cast(degrees, tf.float64) * (math.pi / 180.0))
    mask = dilate_3x3(mask)
    return resize_nearest(mask, height, width)


def _nearest_indices(size, target):
    """The source index of each of ``target`` samples, as Pillow's NEAREST resize picks
    it (``ImagingScaleAffine``): a float64 position starting at half a step, the step
    added once per sample, then floored. ``tf.image.resize`` scales in float32: a mask
    shrunk 640 -> 192 or 896 -> 320 took 0.12-0.32 % of its pixels from the neighbouring
    row or column (up to 17 % of a random mask's), a rotated mask's canvas being any size."""
    step = tf.cast(size, tf.float64) / tf.cast(target, tf.float64)
    steps = tf.fill([target], step)
    positions = tf.math.cumsum(tf.tensor_scatter_nd_update(steps, [[0]], [step * 0.5]))
    return tf.clip_by_value(tf.cast(tf.floor(positions), tf.int32), 0, size - 1)


def resize_nearest(mask, height, width):
    """A [H, W, C] mask resized to ``height`` x ``width`` as the release's
    ``mask.resize((w, h), Image.NEAREST)`` resizes it (``_nearest_indices``)."""
    shape = tf.shape(mask)
    mask = tf.gather(mask, _nearest_indices(shape[0], height), axis=0)
    return tf.gather(mask, _nearest_indices(shape[1], width), axis=1)


def dilate_3x3(mask):
    """3 x 3 dilation of a [H, W, 1] mask of values >= 0 (PIL's ``MaxFilter(3)``, what
    ``tf.nn.max_pool2d(mask, 3, 1, "SAME")`` gives) as a separable max of shifted
    slices: the same values, 1.1-2.1x faster than the pooling on one channel (256^2
    to 724^2, 2 cores)."""
    padded = tf.pad(mask, [[1, 1], [1, 1], [0, 0]])  # (zeros: the values are >= 0)
    rows = tf.maximum(tf.maximum(padded[:-2], padded[1:-1]), padded[2:])
    return tf.maximum(tf.maximum(rows[:, :-2], rows[:, 1:-1]), rows[:, 2:])


def rotate_expanded(mask, angle):
    """Rotates [H, W, 1] counter-clockwise by ``angle`` radians onto a canvas that holds
    all of it, nearest neighbour, zero fill: PIL's ``rotate(degrees, expand=True)``, which
    the release runs on its masks, to the pixel.

    As Pillow computes it: the matrix (cos and sin of -angle rounded to 15 decimals) and
    the canvas (``ceil(max) - floor(min)`` of the rotated corners) in float64, then the
    input pixel of every output pixel in 16.16 fixed point, sampled at pixel centres
    (``affine_fixed`` in Pillow's Geometry.c). ``ceil(extent)`` and TensorFlow's
    projective transform (whole-pixel positions, rounded) were a pixel short on 66 of 138
    square masks (512^2 at 3 degrees: 539 against 540) and half a pixel off elsewhere
    (0.15 % of a 256^2 mask's pixels)."""
    size = tf.shape(mask)[:2]
    h, w = tf.cast(size[0], tf.float64), tf.cast(size[1], tf.float64)
    theta = -tf.cast(angle, tf.float64)
    a = tf.round(tf.cos(theta) * 1e15) / 1e15
    b = tf.round(tf.sin(theta) * 1e15) / 1e15
    d, e = -b, a

    def transform(x, y, c, f):
        return a * x + b * y + c, d * x + e * y + f

    c, f = transform(-w / 2, -h / 2, 0.0, 0.0)  # the rotation about the centre
    c, f = c + w / 2, f + h / 2
    corners = [transform(x, y, c, f) for x, y in ((0.0, 0.0), (w, 0.0), (w, h), (0.0, h))]
    xs, ys = tf.stack([x for x, _ in corners]), tf.stack([y for _, y in corners])
    out_w = tf.math.ceil(tf.reduce_max(xs)) - tf.math.floor(tf.reduce_min(xs))
    out_h = tf.math.ceil(tf.reduce_max(ys)) - tf.math.floor(tf.reduce_min(ys))
    c, f = transform(-(out_w - w) / 2, -(out_h - h) / 2, c, f)

    def fixed(value):  # Pillow's FIX(v): floor(v * 65536 + 0.5)
        return tf.cast(tf.math.floor(value * 65536.0 + 0.5), tf.int64)

    a0, a1, a3, a4 = fixed(a), fixed(b), fixed(d), fixed(e)
    a2, a5 = fixed(c + a * 0.5 + b * 0.5), fixed(f + d * 0.5 + e * 0.5)
    y = tf.range(tf.cast(out_h, tf.int64))[:, None]
    x = tf.range(tf.cast(out_w, tf.int64))[None, :]
    column = tf.math.floordiv(a2 + y * a1 + x * a0, 65536)  # (C's >> 16)
    row = tf.math.floordiv(a5 + y * a4 + x * a3, 65536)
    height, width = tf.cast(size[0], tf.int64), tf.cast(size[1], tf.int64)
    inside = (column >= 0) & (column < width) & (row >= 0) & (row < height)
    indices = tf.stack(
        [tf.clip_by_value(row, 0, height - 1), tf.clip_by_value(column, 0, width - 1)], -1
    )
    return tf.where(inside[..., None], tf.gather_nd(mask, indices), tf.zeros([], mask.dtype))


# What load_mask_file's tf.io.decode_png reads (its own format, and JPEG).
_DECODED_AS_PNG = ("PNG", "JPEG")


def list_mask_files(path):
    """Sorted mask PNGs under ``path`` (recursive) that can be read; a clear error when
    there are none.

    Each file is checked once here (``penet_tf.image_io.check_image_file``: about 0.04
    ms per 512^2 mask PNG, so 0.5 s for the 12,000 NVIDIA masks once the file system has
    cached them): one that is empty, truncated or not an image is left out
    with a warning naming it, since decoding it in the input pipeline would stop
    training at whichever step first drew it.
    """
    if os.path.exists(path) and not os.path.isdir(path):  # (it said "does not exist")
        raise ValueError(f"Mask folder {path} is a file: give the folder of mask PNGs.")
    if not os.path.isdir(path):
        raise FileNotFoundError(f"Mask folder {path} does not exist.")
    images = find_files(path, IMAGE_SUFFIXES)
    files = [file for file in images if file.lower().endswith(".png")]
    # Other images (a .jpg, .bmp mask) were left out without a word: masks are PNGs.
    others = [file for file in images if not file.lower().endswith(".png")]
    not_png = ""
    if others:
        names = ", ".join(os.path.relpath(f, path) for f in others[:3])
        not_png = (
            f"{len(others)} other image file(s) ({names}{', ...' if len(others) > 3 else ''}) "
            "left out: masks are read as PNGs only, convert them"
        )
    if not files:
        raise FileNotFoundError(f"No mask PNGs under {path}" + (f": {not_png}." if others else "."))
    if others:
        logger.warning("mask folder %s: %s", path, not_png)
    readable, unreadable = [], []
    for file in files:
        try:
            kind = check_image_file(file, "mask")
        except (OSError, ValueError) as error:
            unreadable.append(f"{file} ({read_error_reason(error)})")
            continue
        if kind in _DECODED_AS_PNG:
            readable.append(file)
        else:  # tf.io.decode_png stopped training on it (a WebP named .png)
            unreadable.append(f"{file} (a {kind} file named .png: save it as a PNG)")
    if not readable:
        raise ValueError(
            f"None of the {len(files)} mask PNGs under {path} can be read: {unreadable[0]}"
            + (", ..." if len(unreadable) > 1 else "")
        )
    if unreadable:
        shown = "; ".join(unreadable[:5]) + ("; ..." if len(unreadable) > 5 else "")
        logger.warning(
            "leaving out %d of %d mask files that cannot be read: %s",
            len(unreadable),
            len(files),
            shown,
        )
    logger.info("%d mask PNG(s) under %s", len(readable), path)
    return readable


def load_mask_file(path, height=None, width=None):
    """A mask PNG as float32 0/1 [height, width, 1] (nearest resize), or at its own size
    without ``height`` and ``width``; 1 = hole by the rule of every other path
    (``penet_tf.image_io.MASK_RULE``, ``read_mask``): the largest colour channel (alpha
    is not the mask) at least 128 of 255, or, in a mask that holds only 0 and 1 (at 8 or
    16 bits), the 1s. (Training read any nonzero value as a hole: a soft-edged square
    covered 0.33 of its image where inference saw 0.25, and a JPEG's noise became hole.)
    The PNG is decoded in the graph, so an EXIF orientation in it is not applied."""
    # 16 bits (8-bit files come scaled by 257), so that a 16-bit 0/1 mask keeps its 1s.
    raw = tf.io.decode_png(tf.io.read_file(path), channels=0, dtype=tf.uint16)
    channels = tf.shape(raw)[-1]
    colour = tf.cond(channels >= 3, lambda: raw[..., :3], lambda: raw[..., :1])
    wide = tf.cast(tf.reduce_max(colour, axis=-1, keepdims=True), tf.int32)
    values = tf.where(tf.reduce_max(wide) <= 1, wide, wide // 256)  # 8 bits, as read_mask
    threshold = tf.where(tf.reduce_max(values) <= 1, 1, HOLE_THRESHOLD)
    mask = tf.cast(values >= threshold, tf.float32)
    if height is None:
        return mask
    return resize_nearest(mask, height, width)


class MaskGenerator:
    """Builds masks from a config: ``{"type": "square" | "strokes" | "files" | "mixture", ...}``.

    Args:
        config: the ``mask`` config section, a ``MaskConfig`` or a mapping checked strictly
            (``penet_tf.training.config``): ``{"type": "square"}``; ``{"type": "strokes",
            "hole_ratio": [0.1, 0.4], ...}`` (the ``strokes`` keyword arguments);
            ``{"type": "files", "path": DIR}``;
            ``{"type": "mixture", "components": [config, ...], "weights": [w, ...]}``.
            ``"augment"`` (default true) applies the training augmentation to square and
            files masks.
        height, width: mask size.
        training: False gives evaluation masks: the centred square, masks files in order
            without augmentation.

    Call arguments:
        seed: shape-[2] int tensor.
        index: int scalar, the element's position (picks the mask file in evaluation).

    Example:

    >>> masks = MaskGenerator({"type": "strokes"}, 64, 64)
    >>> masks(tf.constant([1, 2])).shape
    TensorShape([64, 64, 1])
    """

    def __init__(self, config, height, width, training=True):
        config = mask_section(config)  # a MaskConfig or a mapping, checked strictly
        kind = config.type
        self.kind, self.height, self.width, self.training = kind, height, width, training
        self.augment = getattr(config, "augment", True)
        self.paths = []  # the mask files drawn from (files, and a mixture's components)
        if kind == "files":
            self.paths = list_mask_files(config.path)
            # (the file system's bytes: a name that is not UTF-8 stopped the run)
            self.files = tf.constant([os.fsencode(f) for f in self.paths])
        elif kind == "strokes":
            self.stroke_options = {
                key: value for key, value in config.to_dict().items() if key != "type"
            }
        elif kind == "mixture":
            components = config.components
            weights = np.asarray(config.weights or [1.0] * len(components), np.float64)
            self.components = [MaskGenerator(c, height, width, training) for c in components]
            self.paths = [path for component in self.components for path in component.paths]
            # Normalised in float64 first, by the largest before the sum: float32 took
            # 1e-50 to 0 and 1e39 to inf, two weights of 1e308 summed to inf, and the
            # draw then fell to the last component whatever the weights.
            weights = weights / weights.max()
            self.log_weights = tf.math.log(tf.constant([weights / weights.sum()], tf.float32))

    def gone(self):
        """The mask files listed at the start that are no longer there (deleted or moved
        while a run draws from them)."""
        return [path for path in self.paths if not os.path.isfile(path)]

    def __call__(self, seed, index=0):
        seed = tf.convert_to_tensor(seed)
        height, width = self.height, self.width
        if self.kind == "mixture":
            pick_seed, seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
            choice = tf.random.stateless_categorical(self.log_weights, 1, pick_seed)[0, 0]
            branches = [lambda c=c: c(seed, index) for c in self.components]
            return tf.switch_case(tf.cast(choice, tf.int32), branches)
        if self.kind == "strokes":
            return strokes(height, width, seed, **self.stroke_options)
        if self.kind == "square":
            if not self.training:
                return centre(height, width)
            mask = square(height, width, seed)
        else:  # files
            count = tf.shape(self.files, out_type=tf.int64)[0]
            if self.training:
                pick = tf.random.stateless_uniform([], seed, minval=0, maxval=count, dtype=tf.int64)
            else:
                pick = tf.cast(index, tf.int64) % count
            if not (self.training and self.augment):
                return load_mask_file(self.files[pick], height, width)
            # As released: flipped, rotated and dilated at the file's own size, then
            # resized (resized first, a 512^2 mask's 3 x 3 dilation was twice as thick at
            # 256^2: holes about 12 % larger).
            mask = load_mask_file(self.files[pick])
        if self.augment:
            mask = augment(mask, seed, height, width)
        return tf.ensure_shape(mask, [height, width, 1])
