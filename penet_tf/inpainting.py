"""Inpainting files with a loaded model: the library under ``penet_tf.inpaint`` (the CLI)
and ``penet_tf.evaluate``.

* Pairing (``collect_items``): images and masks (or already-inpainted predictions) are
  paired by file name without its extension (``photos/cat.jpg`` with ``masks/cat.png``);
  a single mask file may serve a whole folder (it is then resized to each image, nearest
  neighbour; a photo of another aspect ratio is skipped by name). Sizes are checked from
  the files' headers, before any decoding.
* Batching (``plan_batches``, ``make_dataset``): images of the same size are batched
  together, up to a batch size (a batch never mixes sizes), and decoded in parallel by
  a ``tf.data`` pipeline; masks come from files or are generated (``"centre"``: the
  centred (H/2) x (W/2) block of the release's test masks; ``"strokes"``: free-form
  strokes seeded by a seed and the image's position in the sorted list, skipped files
  included).
* Models (``load_inpainter``): a SavedModel's ``serving_default`` signature, or generator
  weights run through ``penet_tf.inference.serve``; both give identical results.
* Running (``run_batches``, ``inpaint_files``): unreadable files are reported by name and
  skipped; outputs are written atomically (``penet_tf.image_io.write_png``). Given a
  function that loads the model instead of a loaded one, ``inpaint_files`` checks and
  plans every file first, then loads the model while the first batch is being read.

Example:

    >>> inpainter = load_inpainter("savedmodels/demo")  # doctest: +SKIP
    >>> written, skipped, seconds = inpaint_files(
    ...     inpainter, "photos/", "results/", masks="masks/", batch_size=8
    ... )  # doctest: +SKIP
"""

import collections
import dataclasses
import itertools
import json
import os
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

from penet_tf.cli import say
from penet_tf.data import masks as mask_lib
from penet_tf.errors import first_few
from penet_tf.high_resolution import PhotoStrategy, inpaint_photo
from penet_tf.image_io import (
    ImageReadError,
    alpha_mask,
    colour_profile,
    mask_array,
    no_hole_note,
    open_image,
    probe_size,
    read_error_reason,
    read_mask,
    read_rgb,
    refuse_special_file,
    to_rgb,
    turned_hint,
    write_png,
)
from penet_tf.inference import (
    check_inpainting_signature,
    load_saved_model,
    padded_pixels,
    padded_size,
    serve,
)
from penet_tf.io_utils import (
    IMAGE_SUFFIXES,
    UNREAD_SUFFIXES,
    case_blind,
    check_file_target,
    check_folder_target,
    file_identity,
    name_key,
    name_max,
    same_path,
    serving_version,
    sweep_temporaries,
)

MASK_TYPES = ("centre", "strokes")
NO_PIXEL_LIMIT = 2**62
EXPORT_CONFIG_FILE = "penet_tf.json"  # written by penet_tf.export in assets.extra/


# ----------------------------------------------------------------------------- files


@dataclasses.dataclass
class Item:
    """One image to process: its output name, file paths and (H, W) after loading.
    ``index`` is its position among the ``--images`` files listed (name order), skipped
    ones included: it seeds ``--mask-type strokes``, so an image's strokes do not depend
    on which other files were skipped (evaluate gave the image after one without a
    prediction that image's mask)."""

    index: int
    name: str
    image: str
    size: tuple
    mask: str | None = None
    prediction: str | None = None
    shared_mask: bool = False


@dataclasses.dataclass
class Skipped:
    """A file that was not processed, and why."""

    name: str
    reason: str


def list_images(path, flag="--images"):
    """Sorted image files of a folder (not recursive, hidden files ignored), or ``[path]``
    for a file. A path that does not exist at all is returned as is (and later reported as
    missing) when it names an image file; otherwise it is an error."""
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(
            os.path.join(path, name)
            for name in os.listdir(path)
            if not name.startswith(".")
            and name.lower().endswith(IMAGE_SUFFIXES + UNREAD_SUFFIXES)  # (those: named)
            and not os.path.isdir(os.path.join(path, name))
        )
        # A HEIC or JPEG XL file beside a readable one of its name (a phone's IMG_0001.HEIC
        # and IMG_0001.JPG) is that photo's other copy: only a lone one is named.
        readable = {name_key(stem(p)) for p in found if p.lower().endswith(IMAGE_SUFFIXES)}
        return [
            p
            for p in found
            if p.lower().endswith(IMAGE_SUFFIXES) or name_key(stem(p)) not in readable
        ]
    if os.path.exists(path) or path.lower().endswith(IMAGE_SUFFIXES):
        return [path]
    raise FileNotFoundError(f"{flag} {path}: no such file or directory")


def stem(path):
    """The pairing name of a file: its base name without the extension."""
    return os.path.splitext(os.path.basename(path))[0]


def _by_name(paths):
    """{``name_key`` of a name: [paths]}: the files ``_named`` picks from."""
    found = {}
    for path in paths:
        found.setdefault(name_key(stem(path)), []).append(path)
    return found


def _named(found, name, alike=None):
    """The file of ``_by_name``'s ``found`` paired with the image named ``name``, or
    None: the one of that very name, else one whose name differs only in case or Unicode
    form (a phone's IMG_0001.JPG and its mask img_0001.png: one name on macOS and
    Windows) when no other image's name does too (``alike``: a ``Counter`` of the images'
    ``name_key``; photos a.png and A.png, or Img.png and IMG.png, with the one mask
    a.png or img.png: both were inpainted with its hole, exit status 0); of two (a.png,
    a.jpg) a PNG, else the first."""
    candidates = found.get(name_key(name), [])
    exact = [path for path in candidates if stem(path) == name]
    alone = alike is None or alike[name_key(name)] <= 1
    candidates = exact or (candidates if alone else [])
    pngs = [path for path in candidates if path.lower().endswith(".png")]
    return (pngs or candidates or [None])[0]


def _missing(what, name, folder, found):
    """The problem of an image named ``name`` without a ``what`` in ``folder``."""
    others = found.get(name_key(name))  # (not taken where other images' names are alike)
    taken = (
        f" ({os.path.basename(others[0])} is not taken for it: another image's name differs "
        "from it only in case or Unicode form too; name each one exactly)"
        if others
        else ""
    )
    return f"no {what} named {name}.* in {folder}{taken}"


def collect_items(images, masks=None, predictions=None, resize=None):
    """Pairs images with masks / predictions by name and checks their sizes (headers only).

    Args:
        images: an image file or folder.
        masks: None, a mask file (one mask for every image, resized to each) or a folder
            of masks named like the images.
        predictions: None or a folder of already-inpainted images named like the images
            (``evaluate --predictions``); they must have the (resized) image size.
        resize: None or (H, W): images are resized to it when read (evaluation protocols).

    Returns:
        ``(items, skipped)``: the ``Item`` list in name order and the ``Skipped`` list.
    """
    image_paths = list_images(images)
    if not image_paths:
        raise FileNotFoundError(f"no images ({' '.join(IMAGE_SUFFIXES)}) in {images}")
    mask_lookup = prediction_lookup = None
    shared_mask = None
    if masks is not None:
        if os.path.isdir(masks) and os.path.isdir(images) and os.path.samefile(masks, images):
            # (every photo paired with itself: 75 % of a photo "inpainted", exit status 0)
            raise ValueError(
                f"--masks {masks} is the --images folder: each photo would be its own mask; "
                "keep the masks in a folder of their own"
            )
        if os.path.isdir(masks):
            mask_lookup = _by_name(list_images(masks, "--masks"))
        elif os.path.isfile(masks):
            if len(image_paths) == 1 and not os.path.isdir(images):
                mask_lookup = {name_key(stem(image_paths[0])): [os.fspath(masks)]}
            else:
                shared_mask = os.fspath(masks)
                # the one mask of every photo, kept among them, is not one of the photos
                image_paths = [p for p in image_paths if not same_path(p, shared_mask)]
        elif os.path.exists(masks):  # a pipe, socket or device: the readers' one refusal
            refuse_special_file(masks, "mask")
        else:
            raise FileNotFoundError(f"--masks {masks}: no such file or directory")
    if predictions is not None:
        if os.path.isfile(predictions):
            raise ValueError(f"--predictions {predictions} is a file: give the folder of them")
        if not os.path.isdir(predictions):
            raise FileNotFoundError(f"--predictions {predictions}: no such directory")
        if os.path.isdir(images) and os.path.samefile(predictions, images):
            # (every photo scored against itself: L1 0, SSIM 1, exit status 0)
            raise ValueError(
                f"--predictions {predictions} is the --images folder: each photo would be "
                "scored against itself; give the folder of the inpainted results"
            )
        if masks is not None and os.path.isdir(masks) and os.path.samefile(predictions, masks):
            # (each result read as its own mask: l1_hole 13x too low, exit status 0)
            raise ValueError(
                f"--masks {masks} is the --predictions folder: each result would be its own "
                "mask; give the masks the photos were inpainted with"
            )
        prediction_lookup = _by_name(list_images(predictions, "--predictions"))

    if shared_mask is not None:
        try:
            shared_size = probe_size(shared_mask)
        except Exception as error:  # noqa: BLE001 - anything PIL raises on a bad file
            raise ImageReadError("mask", shared_mask, read_error_reason(error)) from None
    items, skipped, seen = [], [], {}
    alike = collections.Counter(name_key(stem(path)) for path in image_paths)
    for position, path in enumerate(image_paths):
        name = stem(path)
        if name in seen:
            skipped.append(
                Skipped(path, f"another image has the same name ({seen[name]}); rename one")
            )
            continue
        try:
            size = displayed = probe_size(path)
        except Exception as error:  # anything PIL raises on a bad file
            # (not taken as the name's image: a HEIC beside a DNG of its name, neither
            # read, was "another image has the same name; rename one")
            skipped.append(Skipped(path, read_error_reason(error)))
            continue
        seen[name] = path
        if resize is not None:
            size = tuple(resize)
        item = Item(position, name, path, size, shared_mask, shared_mask=shared_mask is not None)
        problem = None
        if shared_mask is not None and resize is None:  # (resized as the images)
            problem = _check_shape(shared_mask, shared_size, displayed, path)
        if mask_lookup is not None:
            item.mask = _named(mask_lookup, name, alike)
            if item.mask is None:
                problem = _missing("mask", name, masks, mask_lookup)
            elif same_path(item.mask, path):
                problem = f"its mask would be the photo itself ({item.mask})"
            else:
                problem = _check_size(item.mask, size, "mask", None if resize else path)
        if problem is None and prediction_lookup is not None:
            item.prediction = _named(prediction_lookup, name, alike)
            if item.prediction is None:
                problem = _missing("prediction", name, predictions, prediction_lookup)
            elif same_path(item.prediction, path):  # (one photo: scored against itself)
                problem = f"its prediction would be the photo itself ({item.prediction})"
            elif item.mask is not None and same_path(item.prediction, item.mask):
                problem = f"its prediction would be its mask ({item.prediction})"
            else:
                problem = _check_size(item.prediction, size, "prediction")
        if problem is not None:
            skipped.append(Skipped(path, problem))
            continue
        items.append(item)
    return items, skipped


def _check_size(path, size, what, image=None):
    try:
        found = probe_size(path)
    except Exception as error:
        return f"{what} {path}: {read_error_reason(error)}"
    if tuple(found) != tuple(size):
        problem = (
            f"{what} {path} is {found[1]}x{found[0]} (WxH) but the image is {size[1]}x{size[0]}"
        )
        hint = _turned_hint(found, size, (image, path), what)
        return problem + (f" as displayed ({hint})" if hint else "")
    return None


def _turned_hint(found, size, files, what="mask", shape_only=False):
    """Why a ``what`` of ``found`` (H, W) does not fit an image of ``size`` when one of
    ``files`` is shown turned a quarter by its EXIF orientation; None otherwise.
    ``shape_only``: ``found`` is of the turned size's aspect ratio (a folder's one mask,
    resized to each photo: a 300 x 200 mask on a turned 1001 x 667 photo had no hint)."""
    if shape_only:
        if not _same_aspect(found, tuple(size)[::-1]):
            return None
    elif tuple(found) != tuple(size)[::-1]:
        return None
    return turned_hint(files, what)


# A shared mask is resized to each photo of its shape, its aspect ratio kept within this.
ASPECT_TOLERANCE = 0.01


def _same_aspect(found, size):
    """Whether (H, W) ``found`` has the aspect ratio of ``size``, within the tolerance."""
    return abs(found[1] * size[0] - size[1] * found[0]) <= ASPECT_TOLERANCE * size[1] * found[0]


def _check_shape(mask, found, size, image):
    """A problem when one mask file for a folder (``found``: its H, W) has another shape
    than a photo (``size``), its aspect ratio off by more than ``ASPECT_TOLERANCE``:
    resized, it would be stretched (a mask drawn on a 300 x 200 photo covered the wrong
    pixels of a 200 x 300 one, exit status 0)."""
    if _same_aspect(found, size):
        return None
    problem = (
        f"the mask {mask} is {found[1]}x{found[0]} (WxH), another shape than the image's "
        f"{size[1]}x{size[0]}: one mask for a folder is resized only to photos of its aspect "
        "ratio (give masks of their own: --masks FOLDER)"
    )
    hint = _turned_hint(found, size, (image, mask), shape_only=True)
    return problem + (f" ({hint})" if hint else "")


# ---------------------------------------------------------------------------- batches


def plan_batches(items, batch_size):
    """Lists of items of one size, at most ``batch_size`` each, sizes in first-seen order."""
    if batch_size < 1:
        raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
    groups = {}
    for item in items:
        groups.setdefault(tuple(item.size), []).append(item)
    return [
        group[start : start + batch_size]
        for group in groups.values()
        for start in range(0, len(group), batch_size)
    ]


def make_dataset(batches, mask_source=None, seed=0, resize=None, predictions=False):
    """A ``tf.data`` pipeline of ready batches (files decoded in parallel, masks generated).

    Args:
        batches: ``plan_batches`` output.
        mask_source: ``"files"`` (``Item.mask``, one file per image or one shared file),
            ``"alpha"`` (the image's own alpha channel: transparent = hole),
            ``"centre"``, ``"strokes"`` or None (no masks).
        seed: seeds ``"strokes"``: image ``i`` gets the stateless seed ``[seed, i]``.
        resize: (H, W) to resize images to, or None.
        predictions: also read ``Item.prediction``.

    Yields:
        dicts of ``index`` int64 [B], ``image`` uint8 [B, H, W, 3], ``mask`` uint8
        [B, H, W, 1] (0/1; absent without ``mask_source``), ``prediction`` uint8
        [B, H, W, 3] (with ``predictions``) and ``error`` string [B]: empty, or why that
        image could not be read (its arrays are then zeros).
    """
    if mask_source not in (None, "files", "alpha", *MASK_TYPES):
        raise ValueError(f"unknown mask source {mask_source!r}")
    shared_cache = {}

    def load(batch_id):
        batch = batches[int(batch_id)]
        height, width = batch[0].size
        count = len(batch)
        images = np.zeros([count, height, width, 3], np.uint8)
        # Arrays not read here stay empty (generated masks are made in the next map).
        read_masks = mask_source in ("files", "alpha")
        masks = np.zeros([count, *((height, width) if read_masks else (0, 0)), 1])
        masks = masks.astype(np.uint8)
        preds = np.zeros([count, *((height, width) if predictions else (0, 0)), 3], np.uint8)
        errors = [""] * count
        for slot, item in enumerate(batch):
            what = "image"
            try:
                if mask_source == "alpha":  # one read gives both
                    picture = open_image(item.image)
                    images[slot] = _fit(to_rgb(picture), (height, width), "image")
                    masks[slot] = _fit(alpha_mask(picture, item.image), (height, width), "mask")
                else:
                    images[slot] = _fit(read_rgb(item.image, resize), (height, width), "image")
                if mask_source == "files":
                    what = "mask"
                    masks[slot] = _mask_for(item, (height, width), shared_cache)
                if predictions:
                    what = "prediction"
                    preds[slot] = _fit(read_rgb(item.prediction), (height, width), "prediction")
            except Exception as error:  # any unreadable file: reported, not fatal
                path = {"image": item.image, "mask": item.mask, "prediction": item.prediction}
                reason = str(error) if isinstance(error, _SizeError) else read_error_reason(error)
                errors[slot] = reason if what == "image" else f"{what} {path[what]}: {reason}"
        indices = np.array([item.index for item in batch], np.int64)
        # As bytes: a name that is not UTF-8 (Latin-1 "caf\xe9.png") in a mask's or a
        # prediction's error could not become a tf.string (the run stopped, nothing written)
        errors = [error.encode("utf-8", "surrogateescape") for error in errors]
        return indices, images, masks, preds, np.array(errors, dtype=object)

    def load_batch(batch_id):
        indices, images, masks, preds, errors = tf.py_function(
            load, [batch_id], [tf.int64, tf.uint8, tf.uint8, tf.uint8, tf.string]
        )
        element = {
            "index": tf.ensure_shape(indices, [None]),
            "image": tf.ensure_shape(images, [None, None, None, 3]),
            "error": tf.ensure_shape(errors, [None]),
        }
        if mask_source is not None:
            element["mask"] = tf.ensure_shape(masks, [None, None, None, 1])
        if predictions:
            element["prediction"] = tf.ensure_shape(preds, [None, None, None, 3])
        return element

    def generate_masks(element):
        shape = tf.shape(element["image"])
        height, width = shape[1], shape[2]
        if mask_source == "centre":
            mask = mask_lib.centre(height, width)[None]
            element["mask"] = tf.cast(tf.repeat(mask, shape[0], axis=0), tf.uint8)
        else:
            element["mask"] = tf.map_fn(
                lambda index: tf.cast(
                    mask_lib.strokes(height, width, tf.stack([tf.constant(seed, tf.int64), index])),
                    tf.uint8,
                ),
                element["index"],
                fn_output_signature=tf.TensorSpec([None, None, 1], tf.uint8),
            )
        return element

    # Plain graph code: without AutoGraph's source conversion the maps trace in a fraction
    # of the time.
    load_batch, generate_masks = (
        tf.autograph.experimental.do_not_convert(f) for f in (load_batch, generate_masks)
    )
    dataset = tf.data.Dataset.range(len(batches)).map(
        load_batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True
    )
    if mask_source in MASK_TYPES:
        dataset = dataset.map(generate_masks, num_parallel_calls=tf.data.AUTOTUNE)
    # Without tf.data's autotuning (its parallel maps then use the machine's cores): a
    # one-photo run waited 1.1 s at the iterator's end, after its PNG was written (4000 x
    # 3000 crop + CRA through the CLI: 2.56 s, 1.40 s without; 2026-12-06, 2 cores).
    options = tf.data.Options()
    options.autotune.enabled = False
    return dataset.prefetch(2).with_options(options)


class _SizeError(ValueError):
    pass


def _fit(array, size, what):
    if array.shape[:2] != tuple(size):
        raise _SizeError(
            f"{what} is {array.shape[1]}x{array.shape[0]} (WxH) once read, "
            f"expected {size[1]}x{size[0]}"
        )
    return array


def _mask_for(item, size, cache):
    """The item's mask at ``size``: its own file (sizes must match) or the shared mask."""
    if not item.shared_mask:
        return _fit(read_mask(item.mask), size, "mask")
    key = (item.mask, tuple(size))
    if key not in cache:
        mask = read_mask(item.mask)
        if mask.shape[:2] != tuple(size):
            # One mask for a whole folder: nearest-neighbour resize to each image size.
            resized = Image.fromarray(mask[..., 0] * 255).resize(
                (size[1], size[0]), Image.Resampling.NEAREST
            )
            mask = (np.asarray(resized) != 0).astype(np.uint8)[..., None]
        cache[key] = mask
    return cache[key]


# ----------------------------------------------------------------------------- models


@dataclasses.dataclass(frozen=True)
class PixelLimit:
    """A SavedModel's photo limit: ``max_pixels`` per image, counted padded to multiples
    of 64 as the served graph counts (None: none), raised by the export option
    ``option``."""

    max_pixels: int | None = None
    option: str = "--max-pixels"

    def problem(self, height, width):
        """Why an H x W image is over the limit, or None."""
        pixels = padded_pixels(height, width)
        if self.max_pixels is None or pixels <= self.max_pixels:
            return None
        return (
            f"the image is {width}x{height} (WxH), {pixels} pixels once padded to "
            f"{padded_size(width)}x{padded_size(height)}, over this SavedModel's limit of "
            f"{self.max_pixels} pixels per image; re-export it with a larger limit "
            f"(python -m penet_tf.export ... {self.option} {pixels}) or pass "
            "generator weights as --model (no limit)"
        )

    def split(self, items):
        """``(items, skipped)``: the items whose size (from their headers) is within the
        limit, and a ``Skipped`` for each of the others, before anything is decoded (a
        photo over the limit was decoded in full first, then refused)."""
        kept, skipped = [], []
        for item in items:
            problem = self.problem(*item.size)
            if problem:
                skipped.append(Skipped(item.image, problem))
            else:
                kept.append(item)
        return kept, skipped


def saved_pixel_limit(path):
    """The ``PixelLimit`` of the SavedModel ``--model path`` names, read from its
    ``assets.extra/penet_tf.json`` without loading it; None for generator weights."""
    path = os.fspath(path)
    version = find_saved_model(path) if os.path.isdir(path) else None
    if version is None:
        return None
    return _pixel_limit(_saved_config(version))


def _pixel_limit(config):
    """The ``PixelLimit`` an export's recorded ``config`` gives: full exports take photos
    up to ``--max-pixels``, the others up to ``--max-photo-pixels``."""
    option = "--max-pixels" if _saved_strategy(config).name == "full" else "--max-photo-pixels"
    return PixelLimit(_saved_max_pixels(config), option)


class Inpainter:
    """A loaded model: ``inpainter(image uint8 [B, H, W, 3], mask uint8 [B, H, W, 1]) ->
    uint8 [B, H, W, 3]`` (holes by ``penet_tf.image_io.MASK_RULE``: >= 128, or the 1s of
    a 0/1 mask, each image's on its own; composited, known pixels unchanged).

    ``limit``: the SavedModel's ``PixelLimit`` (none by default). An image over it is
    refused with ``ValueError`` before the model runs, naming the limit, the image's size
    and how to raise it.
    """

    def __init__(self, function, description, keep=None, limit=PixelLimit()):
        self._function = function
        self.description = description
        self._keep = keep  # the SavedModel object its signature needs alive
        self.limit = limit

    def check_size(self, height, width):
        """ValueError if an H x W image is over the limit (counted padded)."""
        problem = self.limit.problem(height, width)
        if problem:
            raise ValueError(problem)

    def __call__(self, image, mask):
        image, mask = check_batch(image, mask)
        self.check_size(*image.shape[1:3])
        return np.asarray(self._function(tf.convert_to_tensor(image), tf.convert_to_tensor(mask)))


def check_batch(image, mask):
    """``(image, mask)`` as arrays, or one ``ValueError`` naming the problem whatever the
    model or the photo's size: a float or uint16 image was cast to uint8 under ``full``
    (a 0-1 photo came back black, a uint16 one wrapped around) and refused over 512 px;
    a mask without its channel or batch was a TypeError or an InvalidArgumentError. The
    mask's values as ``penet_tf.image_io.mask_array`` takes them."""
    image, mask = np.asarray(image), np.asarray(mask)
    if image.dtype != np.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        raise ValueError(
            f"image must be uint8 [B, H, W, 3], got {image.dtype} {list(image.shape)} (a "
            "0-1 float photo: np.round(photo * 255).astype(np.uint8); one photo: photo[None])"
        )
    if min(image.shape[:3]) < 1:  # (an empty batch was TensorFlow's InvalidArgumentError)
        raise ValueError(
            f"image must hold at least one photo of at least 1 x 1 pixels, got {list(image.shape)}"
        )
    if mask.ndim != 4 or mask.shape[-1] != 1 or mask.shape[:3] != image.shape[:3]:
        raise ValueError(
            f"mask must be [B, H, W, 1] with the image's B, H, W {list(image.shape[:3])}, "
            f"got {list(mask.shape)} (an H x W mask: mask[None, ..., None])"
        )
    return image, mask_array(mask)  # (the SavedModels take uint8 masks only)


def find_saved_model(path):
    """The SavedModel directory for ``--model``: ``path`` itself if it holds
    ``saved_model.pb``, else its highest numeric version subdirectory that does; or None."""
    if os.path.isfile(os.path.join(path, "saved_model.pb")):
        return path
    versions = [
        name
        for name in os.listdir(path)
        if serving_version(name) is not None  # (TF Serving's int64 versions)
        and os.path.isfile(os.path.join(path, name, "saved_model.pb"))
    ]  # (by value, named as it is: 007 was looked for as 7; of 7 and 007, 7)
    return (
        os.path.join(path, max(versions, key=lambda name: (serving_version(name), name)))
        if versions
        else None
    )


def _saved_config(version):
    """The config an export recorded in ``assets.extra/penet_tf.json`` ({} if none)."""
    try:
        with open(os.path.join(version, "assets.extra", EXPORT_CONFIG_FILE)) as handle:
            config = json.load(handle)
        return config if isinstance(config, dict) else {}
    except (OSError, ValueError):
        return {}


def _saved_max_pixels(config):
    """The photo limit of an export: ``max_photo_pixels`` (crop / resize / auto exports)
    or ``max_pixels`` (``full`` and older exports); None if not recorded."""
    try:
        return int(config.get("max_photo_pixels", config["max_pixels"]))
    except (KeyError, ValueError, TypeError):
        return None


def _saved_strategy(config):
    """The strategy an export runs (``full`` for exports older than the strategies)."""
    try:
        return PhotoStrategy.from_config(config["strategy"])
    except (KeyError, TypeError, ValueError):
        return PhotoStrategy("full")


def option_text(field, value):
    """A ``PhotoStrategy`` field as its command-line option (``margin`` 64 -> ``--margin
    64``; ``residual_aggregation`` False -> ``--no-residual-aggregation``)."""
    if field == "residual_aggregation":
        return "--residual-aggregation" if value else "--no-residual-aggregation"
    return f"--{'strategy' if field == 'name' else field.replace('_', '-')} {value}"


def load_inpainter(path, strategy=None, given=None):
    """Loads ``--model``: a SavedModel (version directory, or base directory -> highest
    version) through its ``serving_default`` signature, or generator weights
    (``.weights.h5`` with an optional ``NAME.config.json``, or a released ``.pth``).

    ``strategy`` (a ``penet_tf.high_resolution.PhotoStrategy``; default ``auto``) is how
    generator weights treat large photos: ``full`` photos run the export's own ``serve``
    function in a ``tf.function`` (identical to a ``full`` SavedModel), the others
    ``penet_tf.high_resolution.inpaint_photo``. A SavedModel runs the strategy it was
    exported with; a different ``strategy`` for it is refused (ValueError), or, with
    ``given`` (the options typed, ``penet_tf.cli.strategy_options``), only options typed
    with another value than the export's (``--margin 64`` alone for an export with
    ``--strategy crop --margin 64`` was refused as "auto"; for a ``full`` export, the
    other options mean nothing once ``--strategy full`` is given)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        version = find_saved_model(path)
        if version is None:
            # (a training run's folder, or convert_torch's: the weights inside are named)
            from penet_tf.models import weights_inside

            inside = weights_inside(path)
            hint = f": give --model {inside}" if inside else ""
            raise FileNotFoundError(
                f"--model {path}: a directory without saved_model.pb or numeric version "
                f"subdirectories holding one{hint}"
            )
        # The strategy the export records is compared before the SavedModel loads (a
        # mismatch was refused after 11 s and 1 GB of loading a thin model).
        config = _saved_config(version)
        exported = _saved_strategy(config)
        if given is not None:
            if exported.name == "full" and given.get("name") == "full":
                given = {"name": "full"}
            differ = {k: v for k, v in given.items() if getattr(exported, k) != v}
            asked = " ".join(option_text(k, v) for k, v in differ.items())
        else:
            asked = strategy.options() if strategy not in (None, exported) else ""
        if asked:
            raise ValueError(
                f"--model {version} was exported with {exported.options()} (recorded in "
                f"assets.extra/{EXPORT_CONFIG_FILE}); it cannot run {asked}: "
                "re-export it with those options (python -m penet_tf.export), or drop them"
            )
        loaded = load_saved_model(version, "--model")
        signature = check_inpainting_signature(loaded, version, "--model")

        def run_saved(image, mask):
            return signature(image=image, mask=mask)["inpainted"]

        return Inpainter(
            run_saved, f"SavedModel {version}", keep=loaded, limit=_pixel_limit(config)
        )
    if not os.path.exists(path):
        raise FileNotFoundError(f"--model {path}: no such file or directory")

    from penet_tf.models import load_generator

    generator = load_generator(path)
    spec = tf.TensorSpec

    @tf.function(
        input_signature=[
            spec([None, None, None, 3], tf.uint8),
            spec([None, None, None, 1], tf.uint8),
        ],
        autograph=False,
    )
    def run_full(image, mask):
        return serve(generator, image, mask, max_pixels=NO_PIXEL_LIMIT)

    strategy = strategy or PhotoStrategy()

    def run_weights(image, mask):
        image, mask = np.asarray(image), np.asarray(mask)
        if strategy.resolve(*image.shape[1:3]) == "full":
            return run_full(image, mask)
        return np.stack(
            [
                inpaint_photo(generator, one, hole, strategy)  # (the mask rule: its own)
                for one, hole in zip(image, mask, strict=True)
            ]
        )

    return Inpainter(run_weights, f"generator weights {path}")


# ----------------------------------------------------------------------------- output


def grid_image(image, mask, output):
    """masked input (holes white) | output | original, side by side: uint8 [H, 3W, 3]."""
    masked = np.where(mask != 0, np.uint8(255), image)
    return np.concatenate([masked, output, image], axis=1)


def progress_bar(total, enabled=True):
    """Keras' ``Progbar`` over ``total`` images (as training shows its steps): redrawn on
    a terminal, one line at the end otherwise; silent when not ``enabled``."""
    verbose = (1 if sys.stdout.isatty() else 2) if enabled and total else 0
    return keras.utils.Progbar(total, verbose=verbose, unit_name="image")


class Interrupted(KeyboardInterrupt):
    """Ctrl-C stopped ``inpaint_files``; the message says how many images were written
    (each of them complete: they are written atomically)."""


def run_batches(dataset, items, inpainter=None):
    """Iterates ``make_dataset`` batches, dropping unreadable images and running the model.

    Yields ``(batch_items, arrays, failed, count)``: the readable ``Item``s of the batch;
    ``arrays`` with their ``image``, ``mask`` and ``prediction`` (whichever the dataset
    has) and ``output``, the inpainter's result (or the read prediction without an
    inpainter); ``failed``, the ``Skipped`` entries of this batch (unreadable files, or
    every image of the batch when the model fails on it); ``count``, the batch size.
    """
    by_index = {item.index: item for item in items}
    for batch in dataset:
        indices = batch["index"].numpy()
        errors = [error.decode("utf-8", "surrogateescape") for error in batch["error"].numpy()]
        readable = np.array([not error for error in errors], bool)
        failed = [
            Skipped(by_index[index].image, error)
            for index, error in zip(indices, errors, strict=True)
            if error
        ]
        batch_items = [by_index[index] for index in indices[readable]]
        whole = bool(readable.all())  # (no copy of a 12-MP batch when every image read)
        arrays = {
            key: batch[key].numpy() if whole else batch[key].numpy()[readable]
            for key in ("image", "mask", "prediction")
            if key in batch
        }
        if batch_items and inpainter is not None:
            try:
                arrays["output"] = inpainter(arrays["image"], arrays["mask"])
            except ValueError as error:  # refused before running (e.g. over the pixel limit)
                failed += [Skipped(item.image, str(error)) for item in batch_items]
                batch_items = []
            except tf.errors.OpError as error:
                message = _graph_message(error)
                failed += [Skipped(item.image, f"model failed: {message}") for item in batch_items]
                batch_items = []
        elif "prediction" in arrays:
            arrays["output"] = arrays["prediction"]
        yield batch_items, arrays, failed, len(indices)


def _no_hole(item, source):
    """Why ``item``'s result is its image unchanged: its mask has no hole."""
    if source == "alpha" or item.mask:
        return no_hole_note(item.image, None if source == "alpha" else item.mask)
    return f"the generated mask has no hole: {item.image} is written unchanged"


def _graph_message(error):
    """The first meaningful line of a TF error (not "Graph execution error:")."""
    message = getattr(error, "message", None) or str(error)
    match = re.search(r"assertion failed: \[(.*?)\]", message, re.DOTALL)
    if match:
        return match.group(1).strip()
    lines = [
        line.strip()
        for line in message.splitlines()
        if line.strip()
        and not line.startswith(("Graph execution error", "Detected at node", "  "))
        and line.strip() != "<stack traces unavailable>"
    ]
    return lines[0] if lines else repr(error)


def report_skipped(skipped, stream=None):
    """One ``skipped NAME: reason`` line per skipped file."""
    stream = stream or sys.stderr
    for entry in skipped:
        say(f"skipped {entry.name}: {entry.reason}", file=stream)


# ------------------------------------------------------------------------ folders


def names_output_file(out, images):
    """Whether ``--out`` names the result file itself rather than a folder: one image in
    (``--images`` a file) and ``--out NAME.png`` that is not an existing folder. ValueError
    for an image name that cannot be (another suffix: results are PNGs; a folder of
    images in)."""
    out = os.fspath(out)
    if os.path.isdir(out) or not out.lower().endswith(IMAGE_SUFFIXES):
        return False
    if os.path.isdir(images):
        raise ValueError(
            f"--out {out} names a file, but --images {images} is a folder: give --out a "
            "folder (each result is written as OUT/<name>.png)"
        )
    if not out.lower().endswith(".png"):
        raise ValueError(f"--out {out}: the result is written as a PNG; name it NAME.png")
    return True


def check_out_folder(out, images, masks=None):
    """ValueError if the output folder ``out`` cannot be a folder (``check_folder_target``)
    or is the ``--images`` or ``--masks`` folder (or ``--images``' folder when it names one
    file): outputs would land among the inputs; for ``--out NAME.png``
    (``names_output_file``), if that file cannot be written or is an input. Cheap: run it
    before loading a model. Returns whether ``out`` names the result file."""
    if names_output_file(out, images):
        check_file_target(out, "--out", inputs=(images, masks))
        return True
    check_folder_target(out)
    folders = {"--images": images, "--masks": masks}
    for flag, path in folders.items():
        if path is None:
            continue
        folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
        if same_path(out, folder):
            raise ValueError(
                f"--out {out} is the {flag} folder {folder}: the results would be written "
                "among the inputs; choose another output folder"
            )
    return False


def output_paths(items, out, grid=False, inputs=(), out_file=False):
    """``{item.index: [path, ...]}``: where each item's results go (``OUT/<name>.png`` and,
    with ``grid``, ``OUT/<name>_grid.png``; with ``out_file``, ``--out NAME.png`` names
    the one item's result: ``NAME.png`` and ``NAME_grid.png``).

    ValueError, before anything is written, if two results would share a path (images
    ``p.png`` and ``p_grid.png`` with ``grid``), a result would replace one of the
    ``inputs`` (image, mask or prediction files) or a folder stands at its path.
    """
    planned, owner = {}, {}
    inputs = [path for path in inputs if path is not None]
    input_files = {file_identity(path) for path in inputs} - {None}  # (links and spellings)
    # Names compared as the output folder's file system compares them: on macOS and
    # Windows two spellings of one name are one file (one result replaced the other).
    fold = case_blind(out if not out_file else os.path.dirname(os.path.abspath(out)))
    for item in items:
        if out_file:
            paths = [os.fspath(out), os.fspath(out)[: -len(".png")] + "_grid.png"]
        else:
            paths = [
                os.path.join(out, f"{item.name}.png"),
                os.path.join(out, f"{item.name}_grid.png"),
            ]
        paths = paths[: 2 if grid else 1]
        for path in paths:
            folder, name = os.path.split(os.path.abspath(path))
            while not os.path.isdir(folder):  # (the output folder may be made later)
                folder = os.path.dirname(folder)
            if len(os.fsencode(name)) > (limit := name_max(folder)):
                raise ValueError(
                    f"{path}: the result's name is {len(os.fsencode(name))} bytes, longer "
                    f"than the file system takes ({limit}); rename {item.image}"
                )
            key = (os.path.realpath(folder), name_key(name) if fold else name)
            if file_identity(path) in input_files:
                raise ValueError(
                    f"{path} would replace an input file (from {item.image}); choose another "
                    "output folder"
                )
            if os.path.isdir(path):
                raise ValueError(
                    f"{path} is a folder: the result for {item.image} cannot be written "
                    "there; move it or choose another output folder"
                )
            if key in owner:
                raise ValueError(
                    f"{path} would be written for both {owner[key]} and {item.image} "
                    "(with --grid, NAME_grid.png is the grid of NAME; on this file system "
                    "names differing only in case are one file); rename one of them"
                )
            owner[key] = item.image
        planned[item.index] = paths
    return planned


def _write_result(path, pixels, profile, written, items):
    """``write_png``, or an OSError naming the file and what was written before it (a
    full disk said only "[Errno 28] No space left on device")."""
    try:
        write_png(path, pixels, profile)
    except OSError as error:
        message = (
            f"{path} could not be written: {error.strerror or error} ({len(written)} of "
            f"{len(items)} results were written before it, and are complete)"
        )
        raise (OSError(message) if error.errno is None else OSError(error.errno, message)) from None


def _load_while_reading(load, dataset):
    """``(load(), batches)``: ``load`` runs in this thread while another one reads the
    first batch of ``dataset``; ``batches`` iterates over every batch, that one first."""
    iterator = iter(dataset)
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(next, iterator, None)
        inpainter = load()  # (on an error, leaving the pool waits for the read)
        batch = first.result()
    head = [] if batch is None else [batch]
    return inpainter, itertools.chain(head, iterator)


def inpaint_files(
    inpainter,
    images,
    out,
    masks=None,
    mask_type=None,
    batch_size=1,
    grid=False,
    seed=0,
    progress=True,
    mask_from_alpha=False,
    limit=None,
):
    """Inpaints every image of ``images`` into ``out``; returns ``(written, skipped, seconds)``.

    ``inpainter`` is an ``Inpainter`` or a function without arguments that returns one
    (e.g. ``functools.partial(load_inpainter, path)``): that function is called after
    every path has been checked, while the first batch is being read, so loading the
    model and decoding the first photo overlap (about 0.3 s of a one-photo CLI run).

    The holes come from ``masks`` (a file or folder), ``mask_type`` (generated) or, with
    ``mask_from_alpha``, each image's alpha channel (transparent = hole).

    ``limit``: the ``PixelLimit`` a loader's model will have (``saved_pixel_limit``), so
    that photos over it are skipped from their headers, before they are decoded (an
    ``Inpainter``'s own limit is used without it).

    ``written`` lists output PNG paths; ``skipped`` the ``Skipped`` files (already printed
    to stderr). See the module docstring for pairing and batching. Every output path is
    checked against the inputs and the other outputs before the first write
    (``check_out_folder``, ``output_paths``): nothing is written twice or onto an input.
    """
    if sum([masks is not None, mask_type is not None, bool(mask_from_alpha)]) != 1:
        raise ValueError("give one of masks (a file or folder), a mask type or mask_from_alpha")
    if mask_type is not None and mask_type not in MASK_TYPES:
        raise ValueError(f"--mask-type must be one of {MASK_TYPES}, got {mask_type!r}")
    out_file = check_out_folder(out, images, masks)
    items, skipped = collect_items(images, masks)
    limit = inpainter.limit if isinstance(inpainter, Inpainter) else limit
    if limit is not None:  # photos over a SavedModel's limit: refused before decoding
        items, over = limit.split(items)
        skipped += over
    inputs = [item.image for item in items] + [item.mask for item in items]
    planned = output_paths(items, out, grid, inputs, out_file)
    report_skipped(skipped)
    if os.path.isdir(images):  # (left out without a word before)
        chosen = {os.path.realpath(path) for path in (masks, out) if path is not None}
        folders = sorted(
            name
            for name in os.listdir(images)
            if not name.startswith(".")
            and os.path.isdir(os.path.join(images, name))
            and os.path.realpath(os.path.join(images, name)) not in chosen  # --masks, --out
        )
        if folders:
            print(
                f"note: --images reads the images of {images}, not its {len(folders)} "
                f"subfolder(s): {first_few(folders)}",
                file=sys.stderr,
            )
    # (replaced without a word before: a re-run's earlier results, or a file of yours)
    existing = sorted(path for paths in planned.values() for path in paths if os.path.lexists(path))
    if existing:
        print(
            f"note: {len(existing)} result(s) replace files of the same name already in "
            f"{os.path.dirname(os.path.abspath(existing[0]))}: "
            + first_few(map(os.path.basename, existing)),
            file=sys.stderr,
        )
    batches = plan_batches(items, batch_size)
    source = "files" if masks is not None else "alpha" if mask_from_alpha else mask_type
    dataset = make_dataset(batches, source, seed)
    start = time.perf_counter()
    if not isinstance(inpainter, Inpainter):
        inpainter, dataset = _load_while_reading(inpainter, dataset)
    folder = os.path.dirname(os.path.abspath(out)) if out_file else out
    os.makedirs(folder, exist_ok=True)  # once the model loaded: a bad model leaves no folder
    sweep_temporaries(folder)  # what a run killed with -9 left
    bar = progress_bar(len(items), enabled=progress)
    written = []
    try:
        for batch_items, arrays, failed, count in run_batches(dataset, items, inpainter):
            report_skipped(failed)
            skipped.extend(failed)
            for slot, item in enumerate(batch_items):
                paths = planned[item.index]
                if not arrays["mask"][slot].any():
                    print(f"note: {_no_hole(item, source)}", file=sys.stderr)
                profile = colour_profile(item.image)  # (the colours the photo showed)
                _write_result(paths[0], arrays["output"][slot], profile, written, items)
                written.append(paths[0])  # (counted after its grid: "0 of 30" with one done)
                if grid:
                    image, mask = arrays["image"][slot], arrays["mask"][slot]
                    grid_png = grid_image(image, mask, arrays["output"][slot])
                    _write_result(paths[1], grid_png, profile, written, items)
            bar.add(count)
    except KeyboardInterrupt:
        if sys.stdout.isatty() and progress:
            print(flush=True)  # end the progress bar's line
        raise Interrupted(
            f"interrupted after {len(written)} of {len(items)} images; those written are complete"
        ) from None
    return written, skipped, time.perf_counter() - start
