"""Reading image and mask files (the one reader of every Python path), and writing PNGs.

The inpaint and evaluate CLIs, the gRPC client and training data (files and TFDS
records) read images here, so a file gives the same pixels whichever path it takes;
the export's ``inpaint_bytes`` signature decodes encoded images the same way in the graph
(``penet_tf.export``).

Images (``read_rgb``; ``decode_rgb`` for encoded bytes such as TFDS records) become
uint8 RGB [H, W, 3]:

* EXIF orientation is applied (the image as a photo viewer shows it);
* 16-bit sources are scaled to 8 bits by dropping the low byte (``value >> 8``, as
  ``tf.io.decode_image`` does; 65535 -> 255, ``257 * v`` -> ``v``), grey and RGB alike;
* grey, grey + alpha, palette, RGBA and CMYK sources are converted to RGB; an alpha
  channel is dropped, not composited (its colours are kept as stored);
* JPEGs decode bit-identically to ``tf.io.decode_jpeg(dct_method="INTEGER_ACCURATE")``.

Masks (``read_mask``) become uint8 [H, W, 1], 1 = hole, 0 = known, by ``MASK_RULE``: a
mask pixel's value is its largest colour channel (alpha ignored; 16-bit scaled to 8 bits
as above); it is a hole where that value is at least ``HOLE_THRESHOLD`` (128, half of
255), so antialiased brush edges count as holes only where they are at least half
opaque. A mask whose values are all 0 or 1 (8- or 16-bit) is a 0/1 mask: 1 = hole. ``binary_mask``
applies the rule to arrays; ``penet_tf.inference.hole_mask`` is the same rule in the
graph (every SavedModel signature applies it to the masks it gets).

``read_alpha_mask`` takes the hole from an image's alpha channel instead
(``--mask-from-alpha``): transparent = hole, where the opacity is below half
(alpha < 128).

Results are written as PNGs by ``write_png`` (atomically, through
``penet_tf.io_utils.atomic_path``). ``encode_png`` is its encoder: PNG's "Up" row filter
and zlib level 1, deflated in one slice of rows per CPU core in parallel (pigz's method:
each slice ends on a byte-aligned flush, so the slices join into one stream). A 12-MP
photo takes about a third of Pillow's level-1 time on these 2-core machines, for a
slightly smaller file; any PNG reader decodes it (tested against Pillow).

Example:

    >>> image = read_rgb("photo.jpg")  # doctest: +SKIP
    >>> mask = read_mask("mask.png")  # doctest: +SKIP
    >>> image.shape[:2] == mask.shape[:2]  # doctest: +SKIP
    True
"""

import contextlib
import io
import os
import stat
import struct
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from penet_tf.io_utils import RAW_SUFFIXES, UNREAD_SUFFIXES, atomic_path

# A mask pixel is a hole where its value (largest colour channel, 8 bits) is at least
# this; masks whose values are all 0 or 1 are 0/1 masks (1 = hole).
HOLE_THRESHOLD = 128
MASK_RULE = (
    "a hole where the largest colour channel is at least 128 of 255 (alpha ignored; 16-bit "
    "masks scaled to 8 bits); a mask holding only 0 and 1 is a 0/1 mask, 1 = hole"
)
# --mask-from-alpha: a hole where the alpha (opacity) is below this.
ALPHA_THRESHOLD = 128
# The largest image read: Pillow's own guard against decompression bombs refused photos
# over 179 MP (a 200-MP phone photo, though generator weights take any size) and warned
# on stderr over 89 MP. Pillow warns over MAX_IMAGE_PIXELS and refuses over twice it; it
# is raised (never lowered) to warn over 1 GP and refuse over 2 GP (a 57-byte PNG
# declaring 10^10 pixels is still refused before any decode). Pillow's setting is global:
# importing this module (every command and reader does) raises it for the whole process.
MAX_DECODED_PIXELS = 1 << 31
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < MAX_DECODED_PIXELS // 2:
    Image.MAX_IMAGE_PIXELS = MAX_DECODED_PIXELS // 2
# Between its warning and its refusal (1-2 GP here) Pillow's warning printed its own
# source line and site-packages path on stderr; the readers and limits name a photo's
# size themselves. Process-wide, as the setting above (a per-call catch_warnings is not
# thread-safe, and the readers run in parallel tf.data maps).
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
EXIF_ORIENTATION = 0x0112
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_ROTATED = (2, 3, 4, 5, 6, 7, 8)  # EXIF orientations other than "as stored" (1)
_TURNED = (5, 6, 7, 8)  # those that turn the image a quarter: W and H swap


class ImageReadError(ValueError):
    """A file that cannot be read as an image; ``reason`` says why, in a few words."""

    def __init__(self, what, path, reason):
        super().__init__(f"cannot read {what} {path}: {reason}")
        self.reason = reason


class PixelFormatError(ValueError):
    """Pixels this reader does not turn into 8-bit colours (32-bit float, integers past
    16 bits); ``reason`` says which, without a path."""

    def __init__(self, reason):
        super().__init__(reason)
        self.reason = reason


def _check_pixel_format(image):
    """Raises ``PixelFormatError`` for 32-bit float pixels (Pillow's conversion clipped a
    0-1 float TIFF to 0: a black photo, inpainted without a word), 32-bit integers past
    16 bits (clipped) and a TIFF's 32-bit integer samples (8-bit values read as 16-bit
    ones were black), and a TIFF's signed 8-bit or 16-bit samples (8-bit ones wrapped, -1
    read as 255; 16-bit ones were refused as "32-bit integer pixels"). Pillow saves its
    mode "I" as signed 32-bit samples: those keep the 32-bit integer check."""
    bits = getattr(image, "sample_bits", 0)
    if getattr(image, "signed_samples", False) and 0 < bits <= 16:
        raise PixelFormatError(
            f"signed {bits}-bit integer samples (TIFF SampleFormat 2) are not read (where "
            "their zero and full scale lie is unknown): save the image with unsigned 8 or "
            "16 bits per channel"
        )
    if image.mode.startswith("F"):
        raise PixelFormatError(
            "32-bit floating-point pixels are not read: save the image with 8 or 16 bits "
            "per channel"
        )
    if image.mode == "I":
        extrema = image.getextrema()
        # (a TIFF of 32-bit samples: 8-bit values in it read as 16-bit ones were black)
        if extrema[0] < 0 or extrema[1] > 65535 or bits > 16:
            raise PixelFormatError(
                f"32-bit integer pixels ({extrema[0]} to {extrema[1]}) are not read (8-bit "
                "or 16-bit values, their scale is unknown): save the image with 8 or 16 "
                "bits per channel"
            )


def unread_kind(name):
    """``"HEIC / HEIF"``, ``"JPEG XL"`` or ``"camera raw"``: the kind of a file named
    ``name`` with one of ``io_utils.UNREAD_SUFFIXES`` (None for any other name)."""
    name = os.fsdecode(name).lower()
    if name.endswith(RAW_SUFFIXES):
        return "camera raw"
    if name.endswith(".jxl"):
        return "JPEG XL"
    return "HEIC / HEIF" if name.endswith(UNREAD_SUFFIXES) else None


def unread_suffixes():
    """``io_utils.UNREAD_SUFFIXES`` but those Pillow reads now (a HEIC once a user has
    registered pillow-heif's opener)."""
    readable = Image.registered_extensions()
    return tuple(suffix for suffix in UNREAD_SUFFIXES if suffix not in readable)


# The ISO base media file brands of HEIC / HEIF photos (an "ftyp" box at byte 4).
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")
_TIFF_STARTS = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # (and BigTIFF)
_JXL_STARTS = (b"\xff\x0a", b"\x00\x00\x00\x0cJXL \x0d\x0a\x87\x0a")


# The leading bytes of camera raw files that Pillow cannot identify (Canon's CR3 is an
# ISO base media file of brand "crx ").
_RAW_STARTS = {
    b"IIRO": "ORF",
    b"IIRS": "ORF",
    b"MMOR": "ORF",
    b"IIU\x00": "RW2",
    b"FUJIFILMCCD-RAW": "RAF",
}
_DNG_VERSION = 50706  # the TIFF tag that only DNG files carry
_NEW_SUBFILE_TYPE = 254  # a TIFF tag; its bit 0: a reduced-resolution copy of another image
_SUB_IFDS = 330  # a TIFF tag: the offsets of further images (a DNG's raw data, ...)


def _raw_reason(kind, preview=""):
    return (
        f"a camera raw file ({kind}), which penet_tf does not read{preview}: develop it "
        "(export it from the camera's or a raw editor's software) as JPEG, PNG or TIFF"
    )


def _unidentified_reason(path):
    """Why Pillow could not identify the file ``path``: the format's name where it is
    one that phones and cameras write and penet_tf does not read (HEIC / HEIF, JPEG XL,
    camera raw: it was "unknown or corrupt format", whatever its name says)."""
    head = _leading_bytes(path)
    raw = [kind for start, kind in _RAW_STARTS.items() if head.startswith(start)]
    if head[4:8] == b"ftyp" and head[8:12] == b"crx ":
        raw = ["CR3"]
    if raw:
        return _raw_reason(raw[0])
    if head[4:8] == b"ftyp" and head[8:12] in _HEIF_BRANDS:
        kind = "a HEIC / HEIF photo (iPhones' and many phones' format)"
    elif head.startswith(_JXL_STARTS):
        kind = "a JPEG XL image"
    elif head.startswith(_TIFF_STARTS):  # (it was "unknown or corrupt format")
        return (
            "a TIFF, damaged or of a pixel layout penet_tf does not read (CMYK or 16-bit "
            "grey with alpha, floating-point colour, ...): save it as 8-bit RGB or grey, or "
            "as a 16-bit RGB or grey PNG or TIFF"
        )
    elif head and _raw_kind_by_name(path):
        # (by its name last: a HEIC named .dng is a HEIC; an empty file is not a raw file)
        return _raw_reason(_raw_kind_by_name(path))
    else:
        return read_error_reason(UnidentifiedImageError())
    return f"{kind}, which penet_tf does not read: convert it to JPEG or PNG"


def _leading_bytes(source):
    """The first 16 bytes of ``source``, a path or an open binary file (its position
    kept); b"" where they cannot be read."""
    try:
        if isinstance(source, str | bytes | os.PathLike):
            with open(source, "rb") as handle:
                return handle.read(16)
        position = source.tell()
        source.seek(0)
        head = source.read(16)
        source.seek(position)
    except (AttributeError, OSError, ValueError):
        return b""
    return head if isinstance(head, bytes) else b""


def _raw_kind_by_name(path):
    """``"NEF"``, ``"DNG"``, ...: the camera raw format that the name ``path`` says, or
    None (also for a file object)."""
    if isinstance(path, str | bytes | os.PathLike) and unread_kind(path) == "camera raw":
        return os.path.splitext(os.fsdecode(path))[1][1:].upper()
    return None


def _refuse_previews(image, path, what):
    """Raises ``ImageReadError`` where the file ``path`` that Pillow opened as ``image``
    gives only a preview of its photo: a camera raw file (a DNG by its tag, a CR2 by its
    marker, a TIFF-based raw such as NEF or ARW by its suffix) or a TIFF whose first image is a
    reduced-resolution copy of another one in the file. Pillow reads their first image
    (in many DNGs a small preview): it was inpainted in place of the photo, without a
    word."""
    tags = getattr(image, "tag_v2", None) if image.format == "TIFF" else None
    if tags is None:
        return
    label = os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else path
    preview = f" (only its first image, a {image.size[0]} x {image.size[1]} preview, could be)"
    kind = "DNG" if _DNG_VERSION in tags else None
    if kind is None and _leading_bytes(getattr(image, "fp", None))[8:10] == b"CR":
        kind = "CR2"  # (Canon's CR2 marker)
    kind = kind or _raw_kind_by_name(path)
    if kind is not None:
        raise ImageReadError(what, label, _raw_reason(kind, preview))
    try:
        reduced = int(tags.get(_NEW_SUBFILE_TYPE, 0)) & 1
    except (TypeError, ValueError):
        reduced = 0
    # (only where there is another image: a lone image flagged so is read)
    if reduced and (getattr(image, "n_frames", 1) > 1 or _SUB_IFDS in tags):
        raise ImageReadError(
            what,
            label,
            f"its first image is a {image.size[0]} x {image.size[1]} reduced-resolution "
            "copy (a preview) of another image in the file, which penet_tf does not read: "
            "save the photo on its own as PNG, JPEG or TIFF",
        )


def read_error_reason(error):
    """A short human reason for a failed read (missing, unreadable, corrupt ...)."""
    if isinstance(error, ImageReadError | NoAlphaError | PixelFormatError):
        return error.reason
    if isinstance(error, FileNotFoundError):
        return "no such file"
    if isinstance(error, IsADirectoryError):
        return "is a directory"
    if isinstance(error, PermissionError):
        return "permission denied"
    if isinstance(error, UnidentifiedImageError):
        return "not an image file that can be read (unknown or corrupt format)"
    if isinstance(error, Image.DecompressionBombError):  # a header declaring billions of pixels
        return f"too large to decode ({error})"
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return f"unreadable ({text})"


def refuse_special_file(path, what="image"):
    """Raises ``ImageReadError`` when ``path`` names a pipe, socket or device: opening a
    named pipe waits for a writer, for ever (a FIFO named photo.png in --images hung the
    CLI). A file object, or a path that does not exist, passes (the open reports it)."""
    if not isinstance(path, str | bytes | os.PathLike):
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
        raise ImageReadError(
            what, os.fsdecode(path), "not a regular file (a pipe, socket or device)"
        )


def open_image(path, what="image", name=None):
    """The file as a loaded PIL image, EXIF orientation applied (``format`` kept, and the
    orientation it had in ``orientation``). ``path`` may also be a binary file object
    (``name`` then names it in errors).

    Raises ``FileNotFoundError`` (``"{what} file not found: PATH"``) for a missing file
    and ``ImageReadError`` (a ``ValueError``: ``"cannot read {what} PATH: REASON"``) for
    one that is not a readable image.
    """
    refuse_special_file(path, what)
    if isinstance(path, str | bytes | os.PathLike) and _is_tiff(path):
        # Pillow (11+) turns a TIFF by its orientation itself, but its memory-mapped read
        # of an uncompressed TIFF opened by name ignores the turn: a grey, RGBA or CMYK
        # photo with orientation 5-8 came out as scrambled rows. From bytes it is turned.
        with _read_errors(name or path, what), open(path, "rb") as handle:
            path, name = io.BytesIO(handle.read()), name or path
    with _read_errors(name or path, what), Image.open(path) as image:
        _refuse_previews(image, name or path, what)
        image.load()  # (the pixels stay when the file closes; Pillow drops a TIFF's turn)
        orientation = _orientation(image)
        if orientation in _ROTATED:
            oriented = ImageOps.exif_transpose(image)
        else:
            oriented = image  # not copied: a 12-MP photo's copy costs 30 ms
        oriented = _tiff_as_shown(oriented, image)
        oriented.format = image.format
        oriented.orientation = orientation
        oriented.sample_bits = _sample_bits(image)
        oriented.signed_samples = _signed_samples(image)
        return oriented


_PHOTOMETRIC = 262  # a TIFF tag: 0 = WhiteIsZero (grey, 0 is white), 1 = BlackIsZero, ...


def _tiff_as_shown(image, opened):
    """``image`` (``opened``, turned by its orientation) with the TIFF layouts that
    Pillow leaves as stored made as a viewer shows them: a 16-bit grey TIFF whose 0 is
    white (PhotometricInterpretation WhiteIsZero: Pillow inverts 8-bit ones only; the
    16-bit ones were read as their negative, a mask's holes swapped with the known
    pixels, without a word), and grey with premultiplied alpha (mode ``"La"``,
    ImageMagick's default for grey + alpha), which Pillow cannot convert to grey or RGB
    ("conversion from La to L not supported"): un-premultiplied to ``"LA"``."""
    if opened.format != "TIFF":
        return image
    if image.mode == "La":
        return image.convert("LA")
    tags = getattr(opened, "tag_v2", None)
    if image.mode in _SIXTEEN_BIT and image.mode != "I" and tags is not None:
        if tags.get(_PHOTOMETRIC) == 0:
            stored = np.asarray(image).astype(np.int32)
            return Image.fromarray((65535 - stored).astype(np.uint16))
    return image


def _tiff_values(image, tag):
    """The values of a TIFF's ``tag`` (one per sample where it has several) as a tuple;
    (None,) for another format or a missing tag."""
    tags = getattr(image, "tag_v2", None)
    values = tags.get(tag) if image.format == "TIFF" and tags is not None else None
    return tuple(values) if isinstance(values, tuple | list) else (values,)


def _sample_bits(image):
    """A TIFF's bits per sample (its largest), else 0 (unknown)."""
    return max((b for b in _tiff_values(image, 258) if isinstance(b, int)), default=0)


_SAMPLE_FORMAT = 339  # a TIFF tag: 1 = unsigned integer, 2 = signed, 3 = floating point


def _signed_samples(image):
    """Whether ``image`` is a TIFF of signed integer samples (SampleFormat 2)."""
    return 2 in _tiff_values(image, _SAMPLE_FORMAT)


@contextlib.contextmanager
def _read_errors(path, what):
    """Pillow's and the file system's errors while reading ``path`` as ``open_image``
    raises them: ``FileNotFoundError`` naming ``what``, else ``ImageReadError``."""
    try:
        yield
    except FileNotFoundError:
        raise FileNotFoundError(f"{what} file not found: {path}") from None
    except UnidentifiedImageError:
        raise ImageReadError(what, path, _unidentified_reason(path)) from None
    except (
        Image.DecompressionBombError,  # not an OSError or ValueError
        OSError,
        SyntaxError,
        ValueError,
    ) as error:
        raise ImageReadError(what, path, read_error_reason(error)) from None


# A PNG's last chunk, IEND (length 0, type, CRC): TensorFlow's PNG decoder refuses a file
# that lacks even its last byte.
_PNG_END = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def check_image_file(path, what="image"):
    """Raises unless ``path`` is a whole image file, without decoding its pixels: the
    header is one Pillow can read, Pillow's ``verify`` passes (for a PNG, every chunk and
    its CRC up to IEND), and a PNG holds the whole IEND chunk (``verify`` accepts one cut
    within it). Catches empty, truncated and non-image files in about 0.04 ms per 6-kB
    512^2 mask PNG (a decode takes 0.6 ms), from the file system's cache.

    Raises ``FileNotFoundError`` and ``ImageReadError`` as ``open_image`` does; returns
    the file's format as Pillow names it (``"PNG"``, ``"JPEG"``, ...).
    """
    refuse_special_file(path, what)
    with _read_errors(path, what):
        with Image.open(path) as image:
            kind = image.format
            _refuse_previews(image, path, what)
            image.verify()
        if kind == "PNG":
            with open(path, "rb") as handle:
                complete = _PNG_END in handle.read()
    if kind == "PNG" and not complete:
        raise ImageReadError(what, path, "truncated (its IEND chunk is missing)")
    return kind


def _orientation(image):
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block: shown as stored
        return 1


def _header_orientation(image, path):
    """``_orientation`` without decoding the pixels. Pillow's ``getexif`` decodes a
    whole PNG (to read the chunks after its pixels, where eXIf, XMP or ImageMagick's raw
    EXIF profile may be): the header-only size probe of every photo and mask cost a full
    decode (a 60-MP PNG: 2.2 s, 644 MiB). For a PNG the chunks are run through Pillow's
    own chunk readers here, the pixel data skipped, as its ``load`` would read them after
    decoding (up to IEND, or an animation's second frame), and the orientation is
    Pillow's from that ``info``; any trouble falls back to the decode."""
    if image.format != "PNG":
        return _orientation(image)
    try:
        info = _png_info_after_load(path, animated=getattr(image, "is_animated", False))
    except Exception:  # noqa: BLE001 - read as Pillow reads it, decoding
        return _orientation(image)
    image.info = {**image.info, **info}
    image._exif = None  # (Pillow caches what it read)
    try:
        return int(Image.Image.getexif(image).get(EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - a broken EXIF block: shown as stored
        return 1


def _png_info_after_load(path, animated):
    """A PNG's ``info`` as Pillow has it once the image is loaded: every chunk but the
    pixel data through ``PngStream``'s readers (``PngImageFile.load_end``'s loop)."""
    from PIL import ImageFile, PngImagePlugin

    with open(path, "rb") as handle:
        if handle.read(len(PNG_SIGNATURE)) != PNG_SIGNATURE:
            raise ValueError("not a PNG")
        stream = PngImagePlugin.PngStream(handle)
        pixels_seen = False
        while True:
            cid, pos, length = stream.read()
            if cid == b"IEND" or (cid == b"fcTL" and animated and pixels_seen):
                break
            if cid in (b"IDAT", b"fdAT"):
                pixels_seen = True
                handle.seek(length + 4, os.SEEK_CUR)  # the data and its CRC
                continue
            try:
                stream.call(cid, pos, length)
            except UnicodeDecodeError:
                break
            except (AttributeError, EOFError):  # a chunk Pillow has no reader for
                ImageFile._safe_read(handle, length)
            handle.read(4)  # the CRC
        return stream.im_info


def _is_tiff(path):
    """Whether the file starts as a TIFF does (``II*\\0`` or ``MM\\0*``)."""
    try:
        with open(path, "rb") as handle:
            return handle.read(4) in (b"II*\x00", b"MM\x00*")
    except OSError:
        return False  # (the open that follows reports it)


def _turned_on_open(image):
    """Whether Pillow already gives a TIFF's size turned by its orientation (Pillow 11+
    does; the stored width and height are its tags 256 and 257)."""
    if image.format != "TIFF" or not hasattr(image, "tag_v2"):
        return False
    stored = (image.tag_v2.get(256), image.tag_v2.get(257))
    return stored != tuple(image.size) and stored == tuple(image.size)[::-1]


def probe_size(path):
    """(H, W) of an image file as displayed (EXIF rotation applied), from its header."""
    refuse_special_file(path)
    try:
        image = Image.open(path)
    except UnidentifiedImageError:  # (a HEIC photo is named as one)
        raise ImageReadError("image", path, _unidentified_reason(path)) from None
    with image:
        _refuse_previews(image, path, "image")
        width, height = image.size
        turned = _header_orientation(image, path) in _TURNED and not _turned_on_open(image)
    return (width, height) if turned else (height, width)


def turned_by_exif(path):
    """Whether the file's EXIF orientation turns it a quarter (displayed W x H = stored
    H x W), from its header; False for an unreadable file."""
    try:
        refuse_special_file(path)
        with Image.open(path) as image:
            return _header_orientation(image, path) in _TURNED
    except Exception:  # noqa: BLE001 - probed again, and reported, where it is read
        return False


def turned_hint(files, what="mask"):
    """Why a ``what`` does not fit a photo of the turned size: the first of ``files`` (None
    skipped) that its EXIF orientation turns a quarter, named; None when none is."""
    turned = [path for path in files if path is not None and turned_by_exif(path)]
    if not turned:
        return None
    return (
        f"{turned[0]} is turned by its EXIF orientation; draw the {what} on the photo as a "
        "viewer shows it"
    )


def no_hole_note(image, mask=None):
    """The note for a photo written unchanged: its mask file (or, ``mask`` None, its alpha
    channel) has no hole by the mask rule."""
    if mask is None:
        where = f"the alpha channel of {image} has no hole (alpha below 128)"
    else:
        where = f"the mask {mask} has no hole (a value of at least 128, or 1 in a 0/1 mask)"
    return f"{where}: {image} is written unchanged"


def _eight_bit(array):
    """16-bit (or 32-bit integer) values -> uint8 by dropping the low byte."""
    return (np.clip(array.astype(np.int64), 0, 65535) >> 8).astype(np.uint8)


def to_rgb(image):
    """A PIL image of any mode -> uint8 RGB [H, W, 3] (see the module docstring)."""
    _check_pixel_format(image)
    if image.mode in _SIXTEEN_BIT:
        grey = _eight_bit(np.asarray(image))
        return np.repeat(grey[..., None], 3, axis=-1)
    if image.mode == "P" and "transparency" in image.info:
        # The same colours; converting straight to RGB warns on stderr ("Palette images
        # with Transparency expressed in bytes should be converted to RGBA images").
        image = image.convert("RGBA")
    if image.mode != "RGB":
        image = image.convert("RGB")  # (converting RGB to RGB would copy it)
    return np.asarray(image, np.uint8)


def mask_values(image):
    """A PIL image of any mode -> uint8 [H, W, 1]: the largest colour channel (8 bits;
    a 16-bit mask that holds only 0 and 1 keeps them, to stay a 0/1 mask)."""
    _check_pixel_format(image)
    if image.mode in _SIXTEEN_BIT:
        values = np.asarray(image)
        if values.max() <= 1:  # dropping the low byte would turn every 1 into 0: no hole
            return np.clip(values, 0, 1).astype(np.uint8)[..., None]
        return _eight_bit(values)[..., None]
    if image.mode == "1":
        image = image.convert("L")
    elif image.mode in ("P", "PA"):
        image = image.convert("RGBA")  # colours, not palette indices
    elif image.mode not in ("L", "LA", "RGB", "RGBA"):
        image = image.convert("RGB")  # CMYK, YCbCr, F, ...
    array = np.asarray(image, np.uint8)
    if array.ndim == 2:
        return array[..., None]
    if image.mode in ("LA", "RGBA"):
        array = array[..., :-1]  # alpha is not the mask
    return array.max(axis=-1, keepdims=True)


def mask_array(mask):
    """A mask given as an array, as uint8 values for ``MASK_RULE``: uint8 as it is; bool
    and 0 / 1 floats as 0 / 1; integers from 0 to 255, and floats from 0 to 255 holding
    more than 0 and 1 (rounded down: 127.6 stays known, as >= 128 judged it), as those
    values. A soft float mask in [0, 1] is one
    ``ValueError``: read as 0 / 1 it made every faintly nonzero pixel a hole (a soft edge
    grew the hole); so are values past 0-255 (they would wrap) and NaN."""
    mask = np.asarray(mask)
    if mask.dtype == np.uint8:
        return mask
    if mask.dtype == np.bool_:
        return mask.astype(np.uint8)
    kind = mask.dtype.kind
    if kind in "iuf" and mask.size:
        low, high = mask.min(), mask.max()
        in_range = bool(low >= 0 and high <= 255)  # (False for NaN)
        if kind == "f" and in_range and high <= 1 and not np.isin(mask, (0, 1)).all():
            raise ValueError(
                "mask is a soft [0, 1] float mask (values between 0 and 1): give it as "
                "uint8, np.round(mask * 255).astype(np.uint8), for the mask rule (holes "
                "where at least 128), or binarise it yourself"
            )
        if in_range:
            return (np.floor(mask) if kind == "f" else mask).astype(np.uint8)
    elif kind in "iuf":
        return mask.astype(np.uint8)  # (empty)
    raise ValueError(
        f"mask must be uint8 (holes by the mask rule), bool, or numbers from 0 to 255, got "
        f"{mask.dtype}" + (" with values outside 0-255 (or NaN)" if kind in "iuf" else "")
    )


def binary_mask(values):
    """Mask values (uint8, any shape; one mask) -> uint8 0/1 by ``MASK_RULE``."""
    values = np.asarray(values)
    if values.size and values.max() <= 1:
        return (values != 0).astype(np.uint8)
    return (values >= HOLE_THRESHOLD).astype(np.uint8)


def read_rgb(path, resize=None, what="image"):
    """An image file as uint8 RGB [H, W, 3], resized to ``resize`` = (H, W) if given, as
    the release's test data is (``img.resize((w, h))``: Pillow's default, bicubic; it was
    bilinear here, so protocol scores were not of the release's images)."""
    image = open_image(path, what)
    if resize is not None and image.size != (resize[1], resize[0]):
        # (checked before the resize's convert("RGB"), which read a 0-1 float TIFF as black)
        _check_pixel_format(image)
        if image.mode in _SIXTEEN_BIT:
            image = Image.fromarray(to_rgb(image))
        image = image.convert("RGB").resize((resize[1], resize[0]), Image.Resampling.BICUBIC)
    return to_rgb(image)


def decode_rgb(data, name, what="image"):
    """Encoded image bytes (a whole PNG, JPEG, ... file in memory, e.g. a TFDS record) as
    uint8 RGB [H, W, 3], exactly as ``read_rgb`` reads the same bytes from a file;
    ``name`` names them in an ``ImageReadError``."""
    return to_rgb(open_image(io.BytesIO(data), what, name=name))


def read_mask(path):
    """A mask file as uint8 [H, W, 1]: 1 = hole, by ``MASK_RULE``."""
    values = mask_values(open_image(path, "mask"))
    if not values.any():  # a 16-bit colour PNG 0/1 mask reads as 0 (its high bytes)
        low = _sixteen_bit_colour_low_bytes(path)
        low = None if low is None else mask_values(low)
        if low is not None and low.max() <= 1:
            values = low
        elif low is None and _png_rawmode(path) == "LA;16B":
            # Pillow has no reader for its low bytes: a 0/1 mask would have no hole here,
            # where training's reader (16 bits, in the graph) finds it.
            raise ImageReadError(
                "mask",
                path,
                "a 16-bit grey + alpha PNG whose values are all below 256 (a 0/1 mask?) is "
                "not read: save the mask as a grey or RGB PNG",
            )
    return binary_mask(values)


def _png_rawmode(path):
    """The raw mode Pillow decodes a PNG with (``"LA;16B"``: 16-bit grey + alpha)."""
    try:
        with Image.open(path) as image:
            return image.tile[0][3] if image.format == "PNG" and image.tile else None
    except Exception:  # noqa: BLE001 - read, and reported, elsewhere
        return None


def _sixteen_bit_colour_low_bytes(path, what="mask"):
    """A 16-bit RGB or RGBA PNG's low bytes as a PIL image (EXIF orientation applied), or
    None for any other file. Pillow reads such a PNG as 8 bits (the high bytes): a 0/1
    mask was all 0 (no hole, though the served graph, which decodes 16 bits, found it),
    and a 16-bit transparent colour (tRNS) matched no pixel."""
    if not isinstance(path, str | bytes | os.PathLike):
        return None
    with _read_errors(path, what), Image.open(path) as image:
        tile = image.tile
        if image.format != "PNG" or len(tile) != 1 or tile[0][3] not in _PNG16_COLOUR:
            return None
        # The same decode, each sample's second (low) byte taken instead of its first.
        image.tile = [(tile[0][0], tile[0][1], tile[0][2], _PNG16_COLOUR[tile[0][3]])]
        image.load()
        return ImageOps.exif_transpose(image)


_PNG16_COLOUR = {"RGB;16B": "RGB;16L", "RGBA;16B": "RGBA;16L"}


def has_alpha(image):
    """Whether a PIL image has an alpha channel (or palette transparency)."""
    return image.mode in _ALPHA_MODES or "transparency" in image.info


class NoAlphaError(ValueError):
    """``--mask-from-alpha`` on an image without transparency; ``reason`` without the
    path (for the CLIs' "skipped PATH: REASON" lines)."""

    def __init__(self, path):
        self.reason = (
            "has no alpha channel: --mask-from-alpha needs an image with transparency (a PNG "
            "or WebP with alpha; transparent = hole)"
        )
        super().__init__(f"{path} {self.reason}")


def alpha_mask(image, path="image"):
    """uint8 [H, W, 1] from a PIL image's alpha: 1 (hole) where alpha < 128."""
    if not has_alpha(image):
        raise NoAlphaError(path)
    key = image.info.get("transparency")  # a PNG's transparent colour (tRNS), if any
    if image.mode in _SIXTEEN_BIT and isinstance(key, int):  # 16-bit grey: compare 16 bits
        return (np.asarray(image) == key).astype(np.uint8)[..., None]
    if image.mode == "RGB" and isinstance(key, tuple):
        low = _sixteen_bit_colour_low_bytes(path, "image")
        if low is not None:  # 16-bit RGB: Pillow kept the high bytes, the key has 16 bits
            values = np.asarray(image).astype(np.uint16) << 8 | np.asarray(low)
            return np.all(values == np.array(key, np.uint16), axis=-1)[..., None].astype(np.uint8)
    alpha = np.asarray(image.convert("RGBA"))[..., 3]
    return (alpha < ALPHA_THRESHOLD).astype(np.uint8)[..., None]


def read_alpha_mask(path):
    """The hole of an image file with transparency (``--mask-from-alpha``): uint8
    [H, W, 1], 1 where alpha < 128."""
    return alpha_mask(open_image(path, "image"), path)


# ----------------------------------------------------------------------------- writing

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_COLOUR_TYPES = {1: 0, 2: 4, 3: 2, 4: 6}  # grey, grey + alpha, RGB, RGBA
_UP_FILTER = 2


def _png_chunk(kind, data):
    checksum = zlib.crc32(data, zlib.crc32(kind))
    return b"".join((struct.pack(">I", len(data)), kind, data, struct.pack(">I", checksum)))


# The largest ICC profile carried into an output PNG: Pillow's PNG reader refuses an iCCP
# chunk that inflates past 1 MiB (PngImagePlugin.MAX_TEXT_CHUNK), so a JPEG's 2-MiB
# profile made results that Pillow, and read_rgb, could not open (demos/web/photo_file.js
# keeps the same limit).
MAX_PROFILE_BYTES = 1 << 20


def colour_profile(path):
    """The ICC colour profile embedded in an image file, when it describes RGB (a phone's
    Display P3, Adobe RGB ...), from its header; else None (no profile, a grey or CMYK
    one, one over ``MAX_PROFILE_BYTES``, an unreadable file). The pixels are read as
    stored, so an output written with this profile shows the colours the input showed:
    without it, viewers take sRGB and a Display P3 photo's known pixels looked up to 42
    levels off."""
    try:
        refuse_special_file(path)
        with Image.open(path) as image:
            profile = image.info.get("icc_profile")
    except Exception:  # noqa: BLE001 - the file is read, and reported, elsewhere
        return None
    if not isinstance(profile, bytes) or len(profile) > MAX_PROFILE_BYTES:
        return None
    return profile if profile[16:20] == b"RGB " else None


def with_colour_profile(png, profile):
    """PNG bytes with an ``iCCP`` chunk holding ``profile`` (None: unchanged), placed
    after IHDR as PNG requires (before the image data)."""
    if not profile:
        return png
    end = len(PNG_SIGNATURE) + 25  # the IHDR chunk: length, type, 13 bytes, CRC
    chunk = _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(profile))
    return png[:end] + chunk + png[end:]


def encode_png(array, level=1, threads=None):
    """uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] as PNG bytes (8 bits per channel).

    Every row gets the "Up" filter (the difference from the row above: smaller files than
    no filter, and free of Pillow's per-row filter search). ``threads`` slices of rows
    (default: the CPU count) are deflated in parallel (zlib releases the GIL); each slice
    but the last ends with a sync flush, which ends on a byte boundary, so the slices
    concatenate into one zlib stream. Deflate looks only for runs (``Z_RLE``): a 12-MP
    mosaic of real photos at their own resolution took 242 ms (232-389) for 17.9 MB where
    zlib's default matching took 325 ms (311-373) for 18.7 MB (2 threads, 6 alternating
    rounds, 2026-12-06, AMD EPYC); a mask or a graphic's flat rows come out at 0.3-0.6
    of the size (a 200^2 checkerboard at 1.4 times).
    """
    array = np.asarray(array)
    if array.dtype != np.uint8:
        raise ValueError(f"encode_png needs uint8 pixels, got {array.dtype}")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    channels = 1 if array.ndim == 2 else array.shape[-1]
    if array.ndim not in (2, 3) or channels not in _PNG_COLOUR_TYPES or 0 in array.shape[:2]:
        raise ValueError(f"encode_png needs [H, W] or [H, W, 1-4] pixels, got {array.shape}")
    height, width = array.shape[:2]
    rows = array.reshape(height, width * channels)
    filtered = np.empty((height, width * channels + 1), np.uint8)
    filtered[:, 0] = _UP_FILTER
    filtered[0, 1:] = rows[0]
    np.subtract(rows[1:], rows[:-1], out=filtered[1:, 1:])  # modulo 256, as PNG defines it
    slices = max(1, min(threads or os.cpu_count() or 1, height))
    bounds = np.linspace(0, height, slices + 1).astype(int)

    def deflate(index):
        # raw deflate, runs only
        compressor = zlib.compressobj(level, zlib.DEFLATED, -zlib.MAX_WBITS, 8, zlib.Z_RLE)
        last = index == slices - 1
        data = compressor.compress(filtered[bounds[index] : bounds[index + 1]])
        return data + compressor.flush(zlib.Z_FINISH if last else zlib.Z_SYNC_FLUSH)

    if slices == 1:
        blocks = [deflate(0)]
    else:
        with ThreadPoolExecutor(slices) as pool:
            blocks = list(pool.map(deflate, range(slices)))
    # zlib header: deflate with a 32 KiB window, no dictionary (0x7801 is a multiple of 31).
    stream = b"".join([b"\x78\x01", *blocks, struct.pack(">I", zlib.adler32(filtered))])
    header = struct.pack(">IIBBBBB", width, height, 8, _PNG_COLOUR_TYPES[channels], 0, 0, 0)
    return b"".join(
        (
            PNG_SIGNATURE,
            _png_chunk(b"IHDR", header),
            _png_chunk(b"IDAT", stream),
            _png_chunk(b"IEND", b""),
        )
    )


def write_png(path, array, profile=None):
    """Writes uint8 [H, W, C] (C = 1, 3 or 4) as a PNG atomically (``encode_png``, then a
    temporary file in the folder renamed over ``path``), with the ICC ``profile`` of the
    photo it came from (``colour_profile``) if given."""
    data = with_colour_profile(encode_png(array), profile)
    with atomic_path(path) as temporary, open(temporary, "wb") as handle:
        handle.write(data)
