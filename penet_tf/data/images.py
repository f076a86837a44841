"""Training and evaluation images as ``tf.data`` pipelines.

Sources (``config["source"]``):

* ``"folder"``: every image file (jpg, png, webp, bmp, gif, tiff) under ``path``,
  recursively;
* ``"flist"``: the released code's file lists, one image path per line (relative paths
  are relative to ``root``, default the list's folder);
* ``"tfds"``: a TensorFlow Datasets dataset by ``name`` and ``split``, its images from
  the feature ``image_key`` (default ``"image"``; ``"hr"`` for ``div2k``), read from
  ``data_dir`` (``download`` is false by default: a missing dataset is an error that says
  where its files must be, never a silent long download);
* ``"demo"``: real photographs shipped inside scikit-image and scikit-learn (no download),
  for the offline demo.

The stream is a deterministic function of ``seed`` and the element's position: files are
shuffled per epoch with a stateless permutation (TFDS records, which are read in order,
in blocks of ``shuffle_buffer``), and every element carries its global index, from which
its augmentation and mask seeds derive. Training can therefore resume at any position
without replaying the files before it (for TFDS, at most the records of the resumed
epoch before it are read again). Files and TFDS records are read by
``penet_tf.image_io`` (the same pixels as the inpaint CLI's); unreadable or corrupt ones
are skipped (counted by ``ImageSource.skipped``, each named once in the log), never a
crash.
"""

import atexit
import collections
import contextlib
import hashlib
import os
import threading
import time

import numpy as np
import tensorflow as tf

from penet_tf.data.masks import MaskGenerator
from penet_tf.errors import first_few, get_logger
from penet_tf.image_io import (
    decode_rgb,
    read_error_reason,
    read_rgb,
    unread_kind,
    unread_suffixes,
)
from penet_tf.io_utils import IMAGE_SUFFIXES, UNREAD_SUFFIXES, find_files
from penet_tf.training.config import data_section

logger = get_logger("penet_tf.data")
# Unreadable items named one by one as a run meets them; the others are counted.
UNREADABLE_NAMED = 20


def list_image_files(path):
    """Sorted image files under ``path`` (recursive), or a clear error."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"Image folder {path} does not exist.")
    if not os.path.isdir(path):
        raise NotADirectoryError(f"{path} is not a folder (use source 'flist' for file lists).")
    files = find_files(path, IMAGE_SUFFIXES + UNREAD_SUFFIXES)
    not_read = unread_suffixes()  # (by name: a folder of 100,000 files is not opened here)
    unread = [name for name in files if name.lower().endswith(not_read)]
    files = [name for name in files if not name.lower().endswith(not_read)]
    kinds = collections.Counter(unread_kind(name) for name in unread)
    left_out = (
        " and ".join(f"{count} {kind}" for kind, count in kinds.items())
        + f" file(s) ({first_few(unread)}), which penet_tf does not read: convert them to "
        "JPEG or PNG"
    )
    if not files:
        raise FileNotFoundError(
            f"No images ({', '.join(IMAGE_SUFFIXES)}) under {path}: "
            + (f"it holds {left_out}." if unread else "it is empty or holds other files only.")
        )
    if unread:
        logger.warning("left out %s", left_out)
    return files


def read_file_list(path, root=None):
    """Paths listed in a released-style ``.flist`` file (one per line; blank lines and
    lines starting with ``#`` left out, as the release's ``np.genfromtxt`` reads it)."""
    if os.path.isdir(path):  # (it said "does not exist")
        raise ValueError(
            f'File list {path} is a folder: data.source "flist" reads a list of files '
            '(.flist); for a folder of images use data.source "folder".'
        )
    if not os.path.isfile(path):
        raise FileNotFoundError(f"File list {path} does not exist.")
    root = root if root is not None else os.path.dirname(os.path.abspath(path))
    # (a BOM, as Notepad writes, is not a path; a name that is not UTF-8 keeps its bytes,
    # as os.fsdecode keeps them: a Latin-1 "caf\xe9.jpg" stopped the run with a
    # UnicodeDecodeError naming no file)
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as handle:
        lines = [line.strip() for line in handle]
    lines = [line for line in lines if line and not line.startswith("#")]
    if not lines:
        raise ValueError(f"File list {path} is empty.")
    return [line if os.path.isabs(line) else os.path.join(root, line) for line in lines]


def demo_photos():
    """RGB photographs shipped with scikit-image and scikit-learn, as uint8 arrays."""
    try:
        import skimage.data
        from sklearn.datasets import load_sample_images
    except ImportError as error:
        raise ImportError(
            "The demo data are photos shipped with scikit-image and scikit-learn: "
            "pip install 'penet_tf[demo]'."
        ) from error
    names = ["astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "retina"]
    photos = [getattr(skimage.data, name)() for name in names]
    photos += list(load_sample_images().images)
    return [np.ascontiguousarray(photo[..., :3], dtype=np.uint8) for photo in photos]


class _ExitGate:
    """Lets the interpreter exit while a pipeline's iterator is still alive.

    At exit, Python ends every thread that asks for the GIL; a TensorFlow worker thread
    about to run a decode (``tf.numpy_function``) is ended with it, and the iterator's
    destructor, run later in the exit, waits for that call forever
    (tensorflow/tensorflow#21277). So before the exit (``atexit``) the gate closes: the
    calls still to come return a 1 × 1 stand-in at once, the pipeline's buffers fill, and
    the exit waits until no decode has run for ``quiet`` seconds (at most ``limit``).
    """

    def __init__(self, quiet=0.25, limit=5.0):
        self.quiet, self.limit = quiet, limit
        self.closed = False
        self._lock = threading.Lock()
        self._running = 0
        self._last = float("-inf")  # when a decode last started or ended (monotonic)

    @contextlib.contextmanager
    def call(self):
        """Around one pipeline decode; gives True once the gate is closed."""
        with self._lock:
            self._running += 1
            self._last = time.monotonic()
        try:
            yield self.closed
        finally:
            with self._lock:
                self._running -= 1
                self._last = time.monotonic()

    def close(self):
        self.closed = True
        deadline = time.monotonic() + self.limit
        while time.monotonic() < deadline:
            with self._lock:
                if not self._running and time.monotonic() - self._last >= self.quiet:
                    return
            time.sleep(0.01)


_EXIT_GATE = _ExitGate()
atexit.register(_EXIT_GATE.close)


def _image_features(tfds, features, prefix=""):
    """``(path, feature)`` of every TFDS image feature, those of nested FeaturesDicts as
    ``"outer/inner"``."""
    found = []
    if isinstance(features, tfds.features.FeaturesDict):
        for name, feature in features.items():
            if isinstance(feature, tfds.features.Image):
                found.append((prefix + name, feature))
            else:
                found += _image_features(tfds, feature, f"{prefix}{name}/")
    return found


class ImageSource:
    """A list of images (files, demo photos or a TFDS split) to stream from.

    Args:
        config: the ``data`` section of a training config (a ``DataConfig`` or a mapping,
            checked strictly): ``source`` and its options (``path``; ``root``; ``name``,
            ``split``, ``image_key``, ``data_dir``, ``download``).

    ``skipped`` counts the reads that failed so far (per process; a bad file fails each
    epoch), ``skipped_files`` lists the distinct files (or TFDS record ids) that failed
    (the first 100), and each is logged once. ``item_kind`` says what the items are
    (``"image file"``, ``"TFDS record"`` or ``"demo photo"``).
    """

    def __init__(self, config):
        self.config = data_section(config)
        self.kind = self.config.source
        self._lock = threading.Lock()
        self.skipped = 0
        self._unreadable = {}  # distinct paths (record ids) that failed, in order (a set)
        # What the images are resized to: the data's image_size, or the one the last
        # ``inpainting_dataset`` over this source resizes to (a library user's own)
        self.image_size = tuple(self.config.image_size)
        self._small = set()  # hashes of the distinct names smaller than image_size
        self.first_small = None  # (name, width, height) of the first of them
        self._failing = 0  # reads that failed in a row
        self.failure = None  # why the stream stopped: nothing readable any more
        self.photos = None
        self.tfds_dataset = None
        self._listing = None
        if self.kind == "folder":
            self.items = list_image_files(self._require("path"))
        elif self.kind == "flist":
            self.items = read_file_list(self._require("path"), self.config.root)
        elif self.kind == "demo":
            photos = demo_photos()
            self.photos = [tf.io.encode_png(photo) for photo in photos]
            self.items = [str(i) for i in range(len(photos))]
        else:
            self.tfds_dataset, self.items = self._load_tfds()
        if self.kind != "demo":
            self._check_one_readable()
        # (what a run trains on was said nowhere: linked folders, files of other kinds
        # left out without a word)
        where = {"folder": "under", "flist": "listed in"}.get(self.kind)
        where = f" {where} {self.config.path}" if where else ""
        logger.info("%d %s(s)%s", len(self.items), self.item_kind, where)

    def _require(self, key):
        if not getattr(self.config, key):
            raise ValueError(f"Data source {self.kind!r} needs data.{key} in the config.")
        return getattr(self.config, key)

    def _load_tfds(self):
        import tensorflow_datasets as tfds

        name = self._require("name")
        split = self.config.split
        key = self.config.image_key
        data_dir = self.config.data_dir
        where = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
        try:
            try:
                builder = tfds.builder(name, data_dir=data_dir)
            except AssertionError as error:  # "Failed to construct dataset ...: version"
                reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise ValueError(f"TFDS cannot load {name!r}: {reason[:300]}") from None
            # Checked before any download: the features are known from the dataset's code.
            found = _image_features(tfds, builder.info.features)
            images = {path: feature for path, feature in found if "/" not in path}
            nested = [path for path, _ in found if "/" in path]
            if key in nested:  # ("its image features: none" for waymo's camera_FRONT/image)
                raise ValueError(
                    f"TFDS dataset {name!r}'s image feature {key!r} (data.image_key) is "
                    "nested in a FeaturesDict: only top-level image features are read."
                )
            if key not in images:
                listed = ", ".join(map(repr, images)) or "none"
                if nested:
                    listed += f"; nested, not read: {first_few(map(repr, nested))}"
                raise ValueError(
                    f"TFDS dataset {name!r} has no image feature {key!r} (data.image_key); "
                    f"its image features: {listed}."
                )
            dtype = tf.as_dtype(images[key].dtype)
            if dtype not in (tf.uint8, tf.uint16):  # (TFDS packs float32 pixels into RGBA
                # PNGs: their bytes were trained on as colours, without a word)
                raise ValueError(
                    f"TFDS dataset {name!r}'s image feature {key!r} holds {dtype.name} pixels "
                    "(TFDS stores them packed into PNG bytes); penet_tf trains on 8- or "
                    "16-bit images."
                )
            if not builder.is_prepared():
                if not self.config.download:
                    raise FileNotFoundError(
                        f"TFDS dataset {name!r} is not prepared under {where}. Put its files "
                        f"there (tfds build {name} --data_dir {where}, after any manual "
                        "download the dataset needs), or set data.download=true to let TFDS "
                        "download it now."
                    )
                try:
                    builder.download_and_prepare()
                except AssertionError as error:  # TFDS: "Manual directory ... is empty ..."
                    raise FileNotFoundError(f"TFDS cannot prepare {name!r}: {error}") from None
                except Exception as error:  # noqa: BLE001 - TFDS's DownloadError, checksums...
                    # (plain Exceptions in TFDS: a traceback where every other error is a line)
                    reason = (str(error).strip().splitlines() or [""])[0][:300]
                    raise OSError(
                        f"TFDS could not download or prepare {name!r} under {where} "
                        f"({type(error).__name__}: {reason})"
                    ) from None
            # The encoded bytes (decoded by penet_tf.image_io, as files are) and the
            # record's id, which names it when it cannot be read.
            try:
                dataset = builder.as_dataset(
                    split=split,
                    decoders={key: tfds.decode.SkipDecoding()},
                    read_config=tfds.ReadConfig(add_tfds_id=True),
                )
                count = builder.info.splits[split].num_examples
            except ValueError as error:  # "Instruction [] corresponds to no data!" ...
                reason = str(error).splitlines()[0]
                raise ValueError(
                    f"data.split {split!r} of TFDS dataset {name!r}: {reason}"
                ) from None
        except tfds.core.registered.DatasetNotFoundError as error:
            raise ValueError(
                f"TFDS has no dataset named {name!r} (neither registered nor prepared under "
                f"{where})."
            ) from error
        records = dataset.map(lambda example: (example["tfds_id"], example[key]))
        return records, [str(i) for i in range(count)]

    def _check_one_readable(self):
        """Guards against an endless loop over a stream whose every item is unreadable; in
        the usual case this reads the first file or record only. Items that fail here are
        neither logged nor counted (the stream does both when it reaches them): a wrong
        ``data.root`` printed one warning per listed file (3,000 lines for a 3,000-line
        list) before its error, and ``data/skipped_files`` counted this probe's reads."""
        if self.tfds_dataset is not None:
            records = self.tfds_dataset.as_numpy_iterator()
        else:
            records = ((os.fsencode(path),) for path in self.items)  # (not UTF-8: kept)
        first_failure = None
        for record in records:
            try:
                self._read(*record)
                return
            except Exception as error:  # noqa: BLE001 - reported below if none is readable
                if first_failure is None:
                    first_failure = f"{os.fsdecode(record[0])}: {read_error_reason(error)}"
        message = (
            f"None of the {len(self.items)} {self.item_kind}s could be decoded "
            f"(the first, {first_failure})."
        )
        if self.kind == "flist":
            root = self.config.root or os.path.dirname(os.path.abspath(self.config.path))
            message += (
                f" A .flist's relative names are read under data.root (here {root}); set "
                "data.root to the folder they are relative to (the released lists name "
                "members of zip files: extract them)."
            )
        raise ValueError(message)

    def _read(self, name, data=None):
        """A file's path (or a TFDS record's id and its bytes) -> uint8 [H, W, 3]; raises
        when it cannot be read."""
        path = os.fsdecode(_as_bytes(name))
        data = None if data is None else _as_bytes(data)
        # EXIF orientation, 16-bit, CMYK ... as on every other path
        array = read_rgb(path) if data is None else decode_rgb(data, path)
        if array.ndim != 3 or min(array.shape[:2]) < 1:
            raise ValueError("empty image")
        return array

    def _decode_python(self, name, data=None):
        """A file's path (or a TFDS record's id and its bytes) -> (uint8 [H, W, 3], ok)."""
        name = _as_bytes(name)
        try:
            image = self._read(name, data)
            self._failing = 0
            height, width = self.image_size
            if image.shape[0] < height or image.shape[1] < width:
                self._note_small(name, image.shape)
            return image, True
        except Exception as error:  # noqa: BLE001 - any unreadable item is skipped
            with self._lock:
                self.skipped += 1
                first = name not in self._unreadable
                self._unreadable[name] = None
                self._failing += 1
                # Between two reads of a readable item there are fewer than 2N others
                # (shuffled epochs); 2N failures in a row: nothing is readable any more
                # (the folder moved, the disk went away). The stream skipped on for ever
                # before, at full CPU, deaf to Ctrl-C and SIGTERM.
                if self._failing >= 2 * len(self.items) and self.failure is None:
                    self.failure = (
                        f"none of the last {self._failing} reads of the {len(self.items)} "
                        f"{self.item_kind}s could be decoded (the last, {os.fsdecode(name)}: "
                        f"{read_error_reason(error)}): did the data go away?"
                    )
                # The folder itself gone (moved, a disk unmounted): at once. 2N failed
                # reads of 100,000 files took 215 s and logged 100,000 lines.
                elif (
                    self.kind == "folder"
                    and isinstance(error, FileNotFoundError)
                    and self.failure is None
                    and not os.path.isdir(self.config.path)
                ):
                    self.failure = f"the image folder {self.config.path} is gone"
                named = first and len(self._unreadable) <= UNREADABLE_NAMED
                say_more = first and len(self._unreadable) == UNREADABLE_NAMED + 1
            if self.failure is not None:
                raise ValueError(self.failure) from None
            if say_more:
                logger.warning(
                    "more unreadable %ss: counted, not named one by one (the run's last "
                    "line counts them)",
                    self.item_kind,
                )
            elif named:
                logger.warning(
                    "skipping unreadable %s %s (%s), whenever the stream reaches it",
                    self.item_kind,
                    os.fsdecode(name),
                    read_error_reason(error),
                )
            return np.zeros((1, 1, 3), np.uint8), False

    def _decode_in_pipeline(self, name, data=None):
        with _EXIT_GATE.call() as exiting:
            if exiting:  # the interpreter is exiting: nobody reads this element
                return np.zeros((1, 1, 3), np.uint8), True
            return self._decode_python(name, data)

    @property
    def item_kind(self):
        """What the items are: ``"image file"``, ``"TFDS record"`` or ``"demo photo"``."""
        return {"tfds": "TFDS record", "demo": "demo photo"}.get(self.kind, "image file")

    @property
    def skipped_files(self):
        """The distinct files (or TFDS record ids) that failed, in the order met (the first
        100)."""
        return [os.fsdecode(path) for path in list(self._unreadable)[:100]]

    def _note_small(self, name, shape):
        """An image smaller than ``image_size``, upscaled to it (as the release does):
        the first is named at once, the rest counted (``small_count``) for the run's last
        line. (A folder of thumbnails trained on their blur without a word.)"""
        with self._lock:
            first = not self._small
            self._small.add(hash(name))
            if first:
                self.first_small = (os.fsdecode(name), shape[1], shape[0])
        if first:
            height, width = self.image_size
            logger.warning(
                "%s %s is %dx%d, smaller than data.image_size %dx%d: upscaled to it (as "
                "the release does); the run's last line counts such %ss",
                self.item_kind,
                self.first_small[0],
                shape[1],
                shape[0],
                width,
                height,
                self.item_kind,
            )

    @property
    def small_count(self):
        """How many distinct images smaller than ``image_size`` were read so far."""
        return len(self._small)

    @property
    def unreadable_count(self):
        """How many distinct files (or TFDS records) failed to decode so far."""
        return len(self._unreadable)

    def decode(self, item, data=None):
        """item (a path, a demo photo's index, or a TFDS record's id with its encoded
        ``data``) -> (uint8 [H, W, 3], ok)."""
        if self.kind == "demo":
            photos = tf.constant([photo.numpy() for photo in self.photos])
            image = tf.io.decode_png(photos[tf.strings.to_number(item, tf.int32)], channels=3)
            return image, tf.constant(True)
        inputs = [item] if data is None else [item, data]
        image, ok = tf.numpy_function(
            self._decode_in_pipeline, inputs, [tf.uint8, tf.bool], stateful=False
        )
        return tf.ensure_shape(image, [None, None, 3]), tf.ensure_shape(ok, [])

    def __len__(self):
        return len(self.items)

    def listing(self):
        """``(count, digest)`` of the items: the digest (int64) hashes their names, relative
        to the folder (``folder``) or the list's root (``flist``), so that data moved and
        named anew is the same data, and a resumed run can tell that its data changed
        since a checkpoint (``Trainer``). TFDS records: their ids."""
        if self._listing is None:
            root = ""
            if self.kind == "folder":
                root = os.path.join(self.config.path, "")
            elif self.kind == "flist":  # (read_file_list's root)
                root = self.config.root or os.path.dirname(os.path.abspath(self.config.path))
                root = os.path.join(root, "")
            digest = hashlib.sha256()
            for item in self.items:
                name = item[len(root) :] if root and item.startswith(root) else item
                digest.update(os.fsencode(name) + b"\0")
            value = int.from_bytes(digest.digest()[:8], "little", signed=True)
            self._listing = (len(self.items), value)
        return self._listing


def _as_bytes(value):
    """A string as ``tf.numpy_function`` passes it (bytes in a graph; called eagerly, a
    0-d object array, or a fixed-width one for a Python bytes argument) -> bytes."""
    if isinstance(value, np.ndarray):
        return value.tobytes() if value.dtype.kind == "S" else value.item()  # keeps \x00 ends
    return value


def shuffled_items(items, seed, start=0, shuffle=True):
    """An endless stream of (global index, item): each epoch a stateless permutation.

    Starts at element ``start`` without touching the items before it.
    """
    count = len(items)
    # File names as the file system's bytes: a name that is not UTF-8 (a Latin-1
    # "caf\xe9.jpg" from an old archive) stopped the run ("Error converting unicode string").
    items = tf.constant([os.fsencode(item) for item in items])

    def epoch(number):
        order = tf.range(count, dtype=tf.int64)
        if shuffle:
            order = tf.random.experimental.stateless_shuffle(order, seed=[seed, number])
        indices = number * count + tf.range(count, dtype=tf.int64)
        return tf.data.Dataset.from_tensor_slices((indices, tf.gather(items, order)))

    return _epochs(epoch, count, start)


def shuffled_records(records, count, seed, start=0, shuffle=True, buffer_size=1000):
    """An endless stream of (global index, record) from ``records``, a dataset of
    ``count`` records read in order (a TFDS split, whose records TFDS stored shuffled).

    Each epoch permutes every block of ``buffer_size`` consecutive records by a stateless
    permutation seeded by (``seed``, epoch, block): a function of the position alone,
    like the files' order, so a resume at element ``start`` reads no epoch before its own
    (at most one epoch's records, not every record trained on so far).
    """
    seed = tf.cast(seed, tf.int64)

    def epoch(number):
        indices = tf.data.Dataset.range(number * count, (number + 1) * count)
        if not shuffle:
            return tf.data.Dataset.zip((indices, records))
        epoch_seed = tf.stack([seed, number])

        def permute(block, batch):
            block_seed = tf.random.experimental.stateless_fold_in(epoch_seed, block)
            size = tf.shape(tf.nest.flatten(batch)[0])[0]
            order = tf.random.experimental.stateless_shuffle(tf.range(size), block_seed)
            return tf.nest.map_structure(lambda values: tf.gather(values, order), batch)

        blocks = records.batch(buffer_size).enumerate().map(permute)
        return tf.data.Dataset.zip((indices, blocks.unbatch()))

    return _epochs(epoch, count, start)


def _epochs(epoch, count, start):
    """``epoch(number)``'s datasets of ``count`` elements, one after another from epoch
    ``start // count`` (the epochs before it are never built), from element ``start``."""
    first_epoch = start // count
    stream = tf.data.Dataset.range(first_epoch, 2**62).flat_map(epoch)
    return stream.skip(start - first_epoch * count)


# ITU-R 601-2 luma, as Pillow's convert("L"): the grey of the release's colour jitter.
_LUMA = (0.299, 0.587, 0.114)
JITTERS = ("brightness", "contrast", "saturation", "hue")


def _luma(image):
    # (the same sum as reduce_sum over the channels, bit for bit; 2.2-2.7x faster)
    red, green, blue = (image[..., i : i + 1] * weight for i, weight in enumerate(_LUMA))
    return red + green + blue


def adjust_colour(image, kind, factor):
    """One of torchvision's ColorJitter adjustments as the release applies them (to a PIL
    image: Pillow's ``ImageEnhance``), on float RGB in [0, 1], clipped as Pillow clips.

    ``brightness``: ``image * factor``; ``contrast``: a blend with the mean grey level
    (one value for the image, rounded to a level as Pillow does); ``saturation``: a blend
    with each pixel's grey; ``hue``: the hue turned by ``factor`` of a turn, truncated to
    Pillow's 1/255 steps (``np.int32(hue * 255)``). (``tf.image``'s contrast used each
    channel's own mean and its saturation scaled HSV saturation: up to 2.7 / 255 off.)
    """
    if kind == "hue":
        # (np.int32's truncation; a float truncatediv by 1 was folded away in a graph)
        turn = tf.cast(tf.cast(factor * 255.0, tf.int32), tf.float32) / 255.0
        return tf.clip_by_value(tf.image.adjust_hue(image, turn), 0.0, 1.0)
    if kind == "brightness":
        degenerate = tf.zeros_like(image)  # black
    elif kind == "contrast":
        degenerate = _level(tf.reduce_mean(_luma(image)), round_half_up=True)
    elif kind == "saturation":
        degenerate = _level(_luma(image), round_half_up=True)
    else:
        raise ValueError(f"Unknown colour adjustment {kind!r}; one of {', '.join(JITTERS)}.")
    # Image.blend(degenerate, image, factor): truncated to a level, as Pillow's blend does
    blended = degenerate + factor * (image - degenerate)
    return tf.clip_by_value(_level(blended, round_half_up=False), 0.0, 1.0)


def _level(values, round_half_up):
    """[0, 1] values on Pillow's 8-bit grid: rounded (its grey conversions) or truncated
    (its blend)."""
    scaled = values * 255.0 + (0.5 if round_half_up else 0.0)
    return tf.floor(scaled + 1e-4) / 255.0


def colour_jitter(image, strength, seed):
    """torchvision's ``ColorJitter(strength, strength, strength, strength)`` as released:
    factors drawn from [1 - s, 1 + s] (hue from [-s, s]), applied in a random order
    (``torch.randperm(4)``), each by ``adjust_colour``. ``seed``: shape-[2] int tensor."""
    seeds = tf.random.experimental.stateless_split(seed, len(JITTERS) + 1)
    factors = [
        tf.random.stateless_uniform([], seeds[index], -strength, strength)
        + (0.0 if kind == "hue" else 1.0)
        for index, kind in enumerate(JITTERS)
    ]
    order = tf.random.experimental.stateless_shuffle(tf.range(len(JITTERS)), seeds[-1])
    for position in range(len(JITTERS)):
        branches = [
            lambda kind=kind, factor=factor, current=image: adjust_colour(current, kind, factor)
            for kind, factor in zip(JITTERS, factors, strict=True)
        ]
        image = tf.switch_case(order[position], branches)
    return image


def augment_image(image, size, seed, config, training):
    """Resize to ``size`` (whole image, or a random crop for ``crop: "random"``) with
    ``resize_filter`` (bicubic by default, as the released code's ``img.resize`` with
    Pillow 7+), random flip and colour jitter as released (0.05 brightness / contrast /
    saturation / hue in a random order, ``colour_jitter``; applied after the resize: the
    release jitters at the file's size). ``config``: the ``data`` section (a
    ``DataConfig`` or a mapping)."""
    config = data_section(config)
    # One seed per draw (the crop's scale, the crop, the flip, the jitter); the hue drew
    # from the crop's seed once, so a large crop always came with a positive hue shift.
    seeds = tf.random.experimental.stateless_split(seed, 4)
    height, width = size
    if training and config.crop == "random":
        # A random crop of the training size's shape, 50-100 % of the largest one the image
        # holds (a square: of the short side), then resized (demo photos are few); at least
        # 1 pixel: an image 1 pixel high or wide (or an unreadable file's 1 x 1 stand-in,
        # filtered out below) would otherwise crop to nothing. (A square crop of a
        # [128, 256] size was stretched 2x wide.)
        shape = tf.shape(image)
        aspect = width / height
        largest = tf.minimum(tf.cast(shape[0], tf.float32), tf.cast(shape[1], tf.float32) / aspect)
        scale = tf.random.stateless_uniform([], seeds[0], 0.5, 1.0)
        crop_height = tf.maximum(tf.cast(largest * scale, tf.int32), 1)
        crop_width = tf.cast(tf.round(tf.cast(crop_height, tf.float32) * aspect), tf.int32)
        crop_width = tf.clip_by_value(crop_width, 1, shape[1])
        image = tf.image.stateless_random_crop(image, [crop_height, crop_width, 3], seeds[1])
    # (converted after the crop: 82 -> 67 ms per 12-MP JPEG in the pipeline, same pixels)
    image = tf.image.convert_image_dtype(image, tf.float32)  # [0, 1]
    method = config.resize_filter
    image = tf.image.resize(image, [height, width], method, antialias=method != "nearest")
    image = tf.clip_by_value(image, 0.0, 1.0)  # (bicubic overshoots; Pillow clips)
    if training:
        if config.random_flip:
            image = tf.image.stateless_random_flip_left_right(image, seeds[2])
        if config.color_jitter > 0:
            image = colour_jitter(image, config.color_jitter, seeds[3])
    return tf.clip_by_value(image, 0.0, 1.0) * 2.0 - 1.0  # [-1, 1]


def inpainting_dataset(
    source,
    data_config,
    mask_config,
    batch_size,
    seed=0,
    start=0,
    training=True,
    input_context=None,
    drop_remainder=True,
):
    """Batches of ``((image, mask), index)`` for training or evaluation.

    Args:
        source: an ``ImageSource``.
        data_config: the ``data`` config section (``image_size``, ``random_flip``,
            ``color_jitter``, ``crop``, ``parallel_calls``): a ``DataConfig`` or a mapping.
        mask_config: the ``mask`` config section (see ``MaskGenerator``), or a
            ``MaskGenerator`` of the data's image size.
        batch_size: images per batch (per input pipeline).
        seed: makes the stream (order, augmentation, masks) reproducible.
        start: the global element index to start from (resume).
        training: endless shuffled augmented stream; False: one ordered pass, no
            augmentation, evaluation masks.
        input_context: a ``tf.distribute.InputContext``: this pipeline keeps every
            ``num_input_pipelines``-th element.

    Returns:
        ``tf.data.Dataset`` of ``((image [B, H, W, 3] float32 in [-1, 1], mask
        [B, H, W, 1] float32), index [B] int64)``.

    Files and TFDS records are decoded in Python (``tf.numpy_function``). An iterator
    still alive when the interpreter exits does not hang the exit (``_ExitGate``).
    """
    data_config = data_section(data_config)
    size = data_config.image_size
    source.image_size = tuple(size)  # (what "smaller than image_size" compares with)
    if isinstance(mask_config, MaskGenerator):  # built already (its mask files listed)
        masks = mask_config
    else:
        masks = MaskGenerator(mask_config, size[0], size[1], training=training)
    parallel = data_config.parallel_calls or tf.data.AUTOTUNE
    if source.tfds_dataset is not None:
        buffer_size = source.config.shuffle_buffer
        stream = shuffled_records(
            source.tfds_dataset, len(source), seed, start, training, buffer_size
        )
    else:
        stream = shuffled_items(source.items, seed, start, shuffle=training)
    if not training:
        stream = stream.take(max(len(source) - start, 0))  # (take(-1): all, endlessly)
    if input_context is not None and input_context.num_input_pipelines > 1:
        stream = stream.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)

    def load(index, item):
        element_seed = tf.stack([tf.cast(seed, tf.int64), index])
        image_seed, mask_seed = tf.unstack(tf.random.experimental.stateless_split(element_seed, 2))
        image, ok = source.decode(*tf.nest.flatten(item))  # a path, or a TFDS (id, bytes)
        image = augment_image(image, size, image_seed, data_config, training)
        mask = masks(mask_seed, index)
        return image, mask, index, ok

    # Plain graph code (no tensor-dependent Python control flow): skipping AutoGraph's
    # source conversion saves seconds of start-up per pipeline.
    load = tf.autograph.experimental.do_not_convert(load)
    dataset = stream.map(load, num_parallel_calls=parallel, deterministic=True)
    dataset = dataset.filter(lambda image, mask, index, ok: ok)
    dataset = dataset.map(lambda image, mask, index, ok: ((image, mask), index))
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    if not training:  # one pass (validation, evaluation): its iterator waited on the tuner
        options.autotune.enabled = False  # (8 demo photos, a model between batches: +0.4 s
        # in 2 of 6 passes; penet_tf.inpainting.make_dataset)
    dataset = dataset.with_options(options)
    return dataset.batch(batch_size, drop_remainder=drop_remainder).prefetch(tf.data.AUTOTUNE)
