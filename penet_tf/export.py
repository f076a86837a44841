"""Export the generator as a SavedModel for TF Serving (and the conversions).

    python -m penet_tf.export --weights runs/demo/generator.weights.h5 --out savedmodels/demo

writes ``savedmodels/demo/N/`` (N = the next free version) in TF Serving's layout. The
export is written to a hidden temporary directory beside it and renamed into place, so a
half-written export never appears as a version; temporaries a killed export left are
removed when the next export starts.

Signatures (dynamic batch, height and width; any H and W, padded inside the graph):

* ``serving_default``: ``image`` uint8 [B, H, W, 3], ``mask`` uint8 [B, H, W, 1]
  -> ``inpainted`` uint8 [B, H, W, 3], the prediction composited into the known pixels
  (paper eq 7), which stay bit-identical. The mask rule (``penet_tf.image_io``): a hole
  where the mask is >= 128; a mask holding only 0 and 1 is a 0/1 mask (1 = hole). So
  0/1 masks, 0/255 masks and antialiased brush edges all work.
* ``inpaint_bytes``: ``image_bytes`` / ``mask_bytes`` string [B] (PNG, JPEG, GIF, BMP or
  WebP) -> ``inpainted_bytes`` string [B] (PNG), decoded as ``penet_tf.image_io`` reads
  files (16-bit scaled to 8 bits, JPEG with the accurate DCT, alpha dropped; a mask
  pixel's value is its largest colour channel, then the mask rule) except that EXIF
  orientation is not applied: the client sends such photos as oriented PNGs. The
  ``_bytes`` suffix makes TF Serving's REST API accept and return ``{"b64": ...}``.
* ``predict_float``: ``image`` float32 [B, H, W, 3] in [-1, 1], ``mask`` float32
  [B, H, W, 1] in [0, 1] (a hole where >= 0.5) -> ``output`` (the raw prediction) and
  ``inpainted`` (the composite), float32, for research use. NaN, infinities and values
  out of range (e.g. 0-255 floats) are refused.

Photos of any size (``--strategy``, default ``auto``; penet_tf.high_resolution):
``serving_default`` and ``inpaint_bytes`` run the exported strategy in the graph. With
``auto`` a photo whose long side exceeds ``--trigger`` (512) is inpainted through one
region per hole group (its box plus ``--margin``, the library's groups), shrunk to
``--model-size`` (256), with residual aggregation; smaller photos run ``full``. The
photo is then limited by ``--max-photo-pixels`` (8192 x 6144), ``max_pixels`` bounds
the network input. ``--strategy full`` is the network on the whole photo, limited by
``max_pixels``. ``predict_float`` always runs ``full``.

Bad requests (rank, size or batch mismatch, empty batch, wrong channel count, an image
over the limit, bytes that are not an image) fail with ``InvalidArgumentError``
naming the problem, which TF Serving returns as ``INVALID_ARGUMENT`` with that message.
The checks read shapes only and run before any cast, pad or decode
(``penet_tf.inference.serve``), so a bad request costs milliseconds whatever its size.
``max_pixels`` counts the padded size (H and W rounded up to multiples of 64: a 1 x 4096
image costs 64 x 4096). Encoded PNG, JPEG, WebP and GIF sizes are checked from their headers,
before decoding.

``assets.extra/`` holds TF Serving's warm-up requests (one per signature) and
``penet_tf.json`` (the generator's architecture, ``max_pixels``, the ``strategy`` and
``max_photo_pixels``). See serving/README.md.
"""

import argparse
import json
import os
import re
import sys

import numpy as np
import tensorflow as tf

from penet_tf.cli import photo_strategy, run, say
from penet_tf.high_resolution import STRATEGIES, PhotoStrategy, serve_photos
from penet_tf.inference import (
    ServingArchive,
    assert_rank,
    check_float_values,
    check_request,
    gate,
    inpaint,
    padded_pixels,
    padded_size,
    pixel_limit_message,
)
from penet_tf.io_utils import (
    MAX_VERSION,
    atomic_path,
    check_folder_target,
    check_utf8_path,
    serving_version,
    sweep_temporaries,
)
from penet_tf.models import generator_config, load_generator

DEFAULT_MAX_PIXELS = 2048 * 2048
# Photos (not network inputs) for the crop / resize / auto strategies: 8192 x 6144.
DEFAULT_MAX_PHOTO_PIXELS = 8192 * 6144
CONFIG_FILE = "penet_tf.json"  # in assets.extra/, beside TF Serving's warm-up file
WARMUP_FILE = "tf_serving_warmup_requests"


# Leading bytes of the formats tf.io.decode_image reads.
_MAGIC = {
    "PNG": b"\x89PNG",
    "JPEG": b"\xff\xd8\xff",
    "GIF": b"GIF8",
    "BMP": b"BM",
    "WebP": b"RIFF",  # ... then 4 length bytes and b"WEBP"
    "JPEG XL": b"\xff\x0a",  # a bare codestream; or in a container:
}
_JXL_CONTAINER = b"\0\0\0\x0cJXL "


# A GIF's frames are found by walking its blocks (``_gif_frames``): at most this many steps
# (each skips a run of up to _GIF_RUN equal sub-blocks, 64 KB of 255-byte ones; about
# 50 us a step on a 2-core CPU, so a GIF that needs more is refused within 0.5 s).
_GIF_STEPS = 10_000
_GIF_RUN = 256


def _gif_frames(data, first_only=False):
    """(largest frame height, largest frame width, pixels of all frames, whether the walk
    reached the end, whether the first frame has a transparent colour, and the first
    image descriptor's (found, left, top, width, height)) of a GIF, from its blocks,
    without decoding; ``first_only``: the walk stops at the first frame.

    TensorFlow's GIF decoder makes its canvas as large as the largest frame, whatever
    the logical screen says, and giflib holds every frame's pixels: a 13-kB GIF with an
    8 x 8 screen decodes to 4000 x 4000. (One walk, with its step limit, for every GIF
    question: a separate first-frame walk without run skipping took 26 s on a 4-MB GIF
    that this one finishes in 200 steps.)
    """
    raw = tf.cast(tf.io.decode_raw(data, tf.uint8), tf.int64)
    n = tf.size(raw, out_type=tf.int64)
    zero = tf.constant(0, tf.int64)

    def at(i):  # the byte(s) at i, -1 past the end
        i = tf.convert_to_tensor(i, tf.int64)
        inside = tf.gather(raw, tf.clip_by_value(i, zero, tf.maximum(n - 1, zero)))
        return tf.where(i < n, inside, tf.constant(-1, tf.int64))

    def table(flags):  # bytes of the colour table a packed field announces (bit 7)
        size = 3 * tf.bitwise.left_shift(tf.constant(2, tf.int64), tf.bitwise.bitwise_and(flags, 7))
        return tf.where(flags >= 128, size, zero)

    def word(i):  # a little-endian 16-bit field (0 past the end)
        return tf.maximum(at(i), 0) + 256 * tf.maximum(at(i + 1), 0)

    def step(pos, in_data, height, width, total, transparent, steps, ended, first):
        # In a block's data sub-blocks (a length byte, then that many bytes; 0 ends
        # them): skip the run of sub-blocks as long as this one at once.
        size = at(pos)
        run = at(pos + (size + 1) * tf.range(_GIF_RUN, dtype=tf.int64)) == size
        count = tf.maximum(tf.reduce_sum(tf.math.cumprod(tf.cast(run, tf.int64))), 1)
        # At a block: an extension (0x21: label, then sub-blocks), an image (0x2C: a
        # 10-byte descriptor, its colour table, the LZW code size, then sub-blocks), or
        # the trailer (0x3B, or anything else: the decoder judges it).
        extension, image = tf.equal(size, 0x21), tf.equal(size, 0x2C)
        frame_width, frame_height = word(pos + 5), word(pos + 7)
        new_frame = tf.logical_and(tf.logical_not(in_data), image)
        # A graphic control extension (label 0xF9) before the first frame (the one decoded
        # here): its packed byte's bit 0 = a transparent colour.
        control = tf.logical_and(tf.logical_not(in_data), extension) & tf.equal(at(pos + 1), 0xF9)
        sets_transparency = (
            control & tf.equal(tf.bitwise.bitwise_and(at(pos + 3), 1), 1) & tf.equal(total, 0)
        )
        descriptor = tf.stack([1, word(pos + 1), word(pos + 3), frame_width, frame_height])
        return (
            tf.where(
                in_data,
                pos + (size + 1) * count,
                tf.where(image, pos + 11 + table(at(pos + 9)), pos + 2),
            ),
            tf.where(in_data, size != 0, tf.logical_or(extension, image)),
            tf.where(new_frame, tf.maximum(height, frame_height), height),
            tf.where(new_frame, tf.maximum(width, frame_width), width),
            tf.where(new_frame, total + frame_width * frame_height, total),
            tf.logical_or(transparent, sets_transparency),
            steps + 1,
            tf.where(in_data, size < 0, tf.logical_not(tf.logical_or(extension, image))),
            tf.where(new_frame & tf.equal(first[0], 0), descriptor, first),
        )

    def more(*state):
        going = tf.logical_and(tf.logical_not(state[-2]), state[-3] < _GIF_STEPS)
        return tf.logical_and(going, tf.equal(state[-1][0], 0)) if first_only else going

    start = 13 + table(at(10))  # after the header, the logical screen and its colour table
    *_, height, width, total, transparent, _, ended, first = tf.while_loop(
        more,
        step,
        (
            start,
            tf.constant(False),
            zero,
            zero,
            zero,
            tf.constant(False),
            zero,
            tf.constant(False),
            tf.zeros([5], tf.int64),
        ),
    )
    return height, width, total, ended, transparent, first


def _gif_first_frame_covers(first, screen):
    """Whether a GIF's first image descriptor (``_gif_frames``' last result: found, left,
    top, width, height) sits at (0, 0) with the logical screen's size (or runs past the
    screen, or is not found: the size and frame checks name those)."""
    found, left, top, width, height = tf.unstack(tf.cast(first, tf.int32))
    found = tf.equal(found, 1)
    screen = tf.cast(screen, tf.int32)
    covers = tf.reduce_all(
        [
            tf.equal(left, 0),
            tf.equal(top, 0),
            tf.equal(width, screen[0]),
            tf.equal(height, screen[1]),
        ]
    )
    # (a frame past its screen is sized by the size check: a GIF bomb is named as one)
    outgrows = tf.logical_or(left + width > screen[0], top + height > screen[1])
    return tf.logical_or(tf.logical_not(found), tf.logical_or(covers, outgrows))


def _gif_size(data):
    """(H, W) of a GIF as Pillow (``penet_tf.image_io``) reads it: its logical screen,
    enlarged to hold its first frame. TensorFlow's canvas is the largest frame's: a later
    frame past the screen made the served image larger than the photo."""
    padded = tf.strings.join([data, b"\0" * 16])
    screen_w, screen_h = (tf.cast(_little_endian(padded, at, 2), tf.int32) for at in (6, 8))
    found, left, top, width, height = _gif_first_frame(data)
    right, bottom = tf.where(found, left + width, 0), tf.where(found, top + height, 0)
    return tf.maximum(screen_h, bottom), tf.maximum(screen_w, right)


def _gif_first_frame(data):
    """``(found, left, top, width, height)`` of a GIF's first image descriptor (int32),
    by ``_gif_frames``' walk stopped there."""
    first = tf.cast(_gif_frames(data, first_only=True)[-1], tf.int32)
    return tf.equal(first[0], 1), first[1], first[2], first[3], first[4]


def _named(name, text):
    """A refusal's text: ``name`` (a string, or a scalar string tensor such as
    "image_bytes[2]", the input and its index in the batch) followed by ``text``."""
    return tf.strings.join([name, text])


def _header_pixels(data, head, name):
    """Padded H * W (as ``check_request`` counts) read from a PNG, JPEG, WebP or GIF header
    without decoding (-1 for other formats); for a GIF, its largest frame's, or all its
    frames' pixels if more."""
    magic = tf.strings.substr(head, 0, 4)

    def padded(height, width):
        return padded_pixels(tf.cast(height, tf.int64), tf.cast(width, tf.int64))

    def png():  # IHDR, the first chunk: big-endian width, height at bytes 16..23
        check = tf.debugging.Assert(
            tf.equal(tf.strings.substr(head, 12, 4), b"IHDR"),
            [_named(name, ": not a valid PNG (its first chunk is not IHDR)")],
        )
        size = tf.cast(tf.io.decode_raw(tf.strings.substr(head, 16, 8), tf.uint8), tf.int64)
        width, height = (
            tf.reduce_sum(size[start : start + 4] * [2**24, 2**16, 2**8, 1]) for start in (0, 4)
        )
        with tf.control_dependencies([check]):
            return padded(height, width)

    def gif():  # the logical screen (little-endian width, height at bytes 6..9) and frames
        screen = tf.io.decode_raw(tf.strings.substr(head, 6, 4), tf.uint16, little_endian=True)
        height, width, total, ended, transparent, first = _gif_frames(data)
        first_covers = _gif_first_frame_covers(first, screen)
        check = tf.debugging.Assert(
            ended,
            [
                _named(
                    name,
                    f": a GIF of more than {_GIF_STEPS} runs of data sub-blocks is not decoded",
                )
            ],
        )
        # TensorFlow's decoder leaves a transparent colour's pixels black where Pillow
        # (penet_tf.image_io) gives the colour: the known pixels would come back wrong.
        opaque = tf.debugging.Assert(
            tf.logical_not(transparent),
            [_named(name, ": a GIF with a transparent colour is not decoded here; send it as PNG")],
        )
        # TensorFlow decodes a GIF at its first frame's size, Pillow at the logical
        # screen's: a first frame that does not cover the screen at (0, 0) is refused
        # (a 30 x 20 frame on a 60 x 40 screen came back 30 x 20, or failed as a mask
        # size mismatch).
        covers = tf.debugging.Assert(
            first_covers,
            [
                _named(
                    name,
                    ": a GIF whose first frame does not cover its screen is not decoded here; "
                    "send it as PNG",
                )
            ],
        )
        screen = tf.cast(screen, tf.int64)
        with tf.control_dependencies([check, opaque, covers]):
            largest = padded(tf.maximum(height, screen[1]), tf.maximum(width, screen[0]))
            return tf.maximum(largest, total)

    def jpeg():
        # (TensorFlow's own "Invalid JPEG data, size 20" named neither input of
        # inpaint_bytes for a JPEG cut short before its frame header)
        size = _or_refused(
            lambda encoded: tf.io.extract_jpeg_shape(encoded, tf.int64)[:2],
            data,
            tf.zeros([2], tf.int64),
            _named(
                name,
                ": a JPEG whose frame header cannot be read (a damaged or truncated "
                "file): send it again, or as PNG",
            ),
        )
        return padded(size[0], size[1])

    def webp():  # the canvas (a 38-byte WebP declaring 16383^2 was decoded: 4 GB, 10 s)
        kind = tf.strings.substr(head, 12, 4)
        # VP8X: canvas width - 1 and height - 1, 3 little-endian bytes each at 24 and 27.
        extended = (_little_endian(head, 24, 3) + 1, _little_endian(head, 27, 3) + 1)
        # VP8L: after the signature byte 0x2f, 14 bits of width - 1, then of height - 1.
        bits = _little_endian(head, 21, 4)
        lossless = (bits % 2**14 + 1, bits // 2**14 % 2**14 + 1)
        # VP8 (lossy): the key frame's 14-bit width and height at 26 and 28.
        lossy = (_little_endian(head, 26, 2) % 2**14, _little_endian(head, 28, 2) % 2**14)
        width, height = (
            tf.where(
                tf.equal(kind, b"VP8X"),
                extended[i],
                tf.where(tf.equal(kind, b"VP8L"), lossless[i], lossy[i]),
            )
            for i in (0, 1)
        )
        return padded(height, width)

    is_webp = tf.logical_and(
        tf.equal(magic, _MAGIC["WebP"]), tf.equal(tf.strings.substr(head, 8, 4), b"WEBP")
    )
    return tf.case(
        [
            (tf.equal(magic, _MAGIC["PNG"]), png),
            (tf.equal(magic, _MAGIC["GIF"]), gif),
            (tf.equal(tf.strings.substr(head, 0, 3), _MAGIC["JPEG"]), jpeg),
            (is_webp, webp),
        ],
        default=lambda: tf.constant(-1, tf.int64),
    )


def _little_endian(data, offset, length):
    """The unsigned little-endian integer of ``length`` bytes at ``offset`` of ``data``."""
    raw = tf.io.decode_raw(tf.strings.substr(data, offset, length), tf.uint8)
    return tf.reduce_sum(tf.cast(raw, tf.int64) * 256 ** tf.range(length, dtype=tf.int64))


def _is_jxl(head):
    """Whether ``head`` starts a JPEG XL file: a bare codestream, or in its container."""
    return tf.equal(tf.strings.substr(head, 0, 2), _MAGIC["JPEG XL"]) | tf.equal(
        tf.strings.substr(head, 0, len(_JXL_CONTAINER)), _JXL_CONTAINER
    )


def _decoder_checks(data, head, name):
    """Asserts, before decoding, that TensorFlow reads the file as ``penet_tf.image_io``
    does: an animated WebP (TensorFlow 2.21's WebP decoders abort the whole process on
    one: "double free or corruption") and BMPs it misreads (a palette read as grey
    levels unless the palette is the grey ramp; 1-, 4- and 16-bit) are refused."""
    webp = tf.equal(tf.strings.substr(head, 0, 4), _MAGIC["WebP"]) & tf.equal(
        tf.strings.substr(head, 8, 4), b"WEBP"
    )
    animated = (
        webp
        & tf.equal(tf.strings.substr(head, 12, 4), b"VP8X")
        & tf.not_equal(tf.bitwise.bitwise_and(_little_endian(head, 20, 1), 2), 0)
    )
    not_animated = tf.debugging.Assert(
        tf.logical_not(animated),
        [_named(name, ": an animated WebP is not decoded here; send its first frame as PNG")],
    )

    def bmp_readable():
        padded = tf.strings.join([data, tf.constant(b"\0" * 1100)])  # substr stays inside
        header = _little_endian(head, 14, 4)  # 12: the old core header, else 40 or more
        bits = tf.where(header >= 40, _little_endian(head, 28, 2), _little_endian(head, 24, 2))

        def grey_palette():  # 8 bits: TensorFlow reads the indices as grey levels
            used = _little_endian(padded, 46, 4)
            colours = tf.where(tf.logical_and(used > 0, used <= 256), used, 256)
            start = tf.minimum(14 + header, tf.cast(tf.strings.length(data), tf.int64))
            palette = tf.io.decode_raw(tf.strings.substr(padded, start, 1024), tf.uint8)
            palette = tf.cast(tf.reshape(palette, [256, 4])[:, :3], tf.int64)
            ramp = tf.range(256, dtype=tf.int64)[:, None]
            rows = tf.reduce_all(tf.equal(palette, ramp), axis=1)
            return tf.reduce_all(tf.logical_or(rows, tf.range(256, dtype=tf.int64) >= colours))

        # Compressed (RLE) BMPs decode as garbage, and 32-bit BI_BITFIELDS ones with other
        # than the BGRA masks swap colours: only uncompressed, or BI_BITFIELDS with
        # TensorFlow's own masks (red 0x00ff0000, green 0x0000ff00, blue 0x000000ff).
        compression = tf.where(header >= 40, _little_endian(padded, 30, 4), 0)
        masks = [_little_endian(padded, 54 + 4 * i, 4) for i in range(3)]
        bgra = tf.reduce_all(
            [tf.equal(masks[0], 0xFF0000), tf.equal(masks[1], 0xFF00), tf.equal(masks[2], 0xFF)]
        )
        plain = tf.logical_or(
            tf.equal(compression, 0),
            tf.logical_and(tf.equal(compression, 3), tf.logical_and(tf.equal(bits, 32), bgra)),
        )
        # (the 12-byte OS/2 core header: TensorFlow misreads its layout, "Number of
        # channels inherent in the image must be 1, 3 or 4, was -30")
        return tf.logical_and(
            tf.logical_and(plain, header >= 40),
            tf.case(
                [
                    (
                        tf.logical_or(tf.equal(bits, 24), tf.equal(bits, 32)),
                        lambda: tf.constant(True),
                    ),
                    (tf.logical_and(tf.equal(bits, 8), header >= 40), grey_palette),
                ],
                default=lambda: tf.constant(False),
            ),
        )

    bmp = tf.equal(tf.strings.substr(head, 0, 2), _MAGIC["BMP"])
    readable_bmp = tf.debugging.Assert(
        tf.cond(bmp, bmp_readable, lambda: tf.constant(True)),
        [
            _named(
                name,
                ": a BMP of 1, 4, 16 or 8 bits with a colour palette, compressed, with an "
                "OS/2 header or with other than BGRA bit masks is not decoded here (plain 24- "
                "and 32-bit BMPs are); send it as PNG",
            )
        ],
    )
    # TensorFlow decodes JPEG XL, but its size is not read here before decoding (a small
    # file may declare any size) and Pillow, every other path's reader, does not read it.
    not_jxl = tf.debugging.Assert(
        tf.logical_not(_is_jxl(head)),
        [_named(name, ": a JPEG XL file is not decoded here; send it as PNG")],
    )
    return [not_animated, readable_bmp, not_jxl]


def _decode(data, channels, name, max_pixels, dtype=tf.uint8):
    """Decodes one encoded image after checking its format and (from the header) its size.

    A PNG, JPEG, WebP or GIF over ``max_pixels`` (a GIF: any frame, or all its frames) is
    refused before it is decoded, so a small file cannot make the server allocate a huge
    image; other formats are checked after.
    ``dtype`` ``tf.uint16`` keeps a 16-bit PNG's values (8-bit images are multiplied by
    256 or 257, so that dropping the low byte gives them back).
    """
    head = tf.strings.join([data, tf.constant(b"\0" * 32)])  # substr never runs past the end
    known = tf.reduce_any(
        [tf.equal(tf.strings.substr(head, 0, len(magic)), magic) for magic in _MAGIC.values()]
        + [_is_jxl(head)]
    )
    formats = ", ".join(kind for kind in _MAGIC if kind != "JPEG XL")  # (refused by name)
    check_format = tf.debugging.Assert(
        known, [_named(name, f": not an encoded image (expected one of {formats})")]
    )
    with tf.control_dependencies([check_format]):
        pixels = _header_pixels(data, head, name)
        readable = _decoder_checks(data, head, name)
    check_size = tf.debugging.Assert(
        pixels <= tf.constant(max_pixels, tf.int64),
        [
            _named(
                name,
                tf.strings.join(
                    [
                        f": {pixel_limit_message(max_pixels)}; this one: ",
                        tf.strings.as_string(pixels),
                    ]
                ),
            )
        ],
    )
    with tf.control_dependencies([check_size, *readable]):
        image = _decoded_or_refused(data, channels, name, dtype)
        image = tf.cond(  # a GIF at Pillow's size (TensorFlow's canvas is its largest frame)
            tf.equal(tf.strings.substr(head, 0, 4), _MAGIC["GIF"]),
            lambda: _crop_to(image, *_gif_size(data)),
            lambda: image,
        )
    return tf.ensure_shape(image, [None, None, channels or None])


def _decode_pixels(data, channels, dtype):
    """The decoder for ``data``'s format (checked and sized by ``_decode`` first)."""
    head = tf.strings.substr(tf.strings.join([data, tf.constant(b"\0" * 4)]), 0, 4)
    return tf.case(
        [
            (  # JPEG as Pillow decodes it (penet_tf.image_io): the accurate integer DCT.
                tf.equal(tf.strings.substr(head, 0, 3), _MAGIC["JPEG"]),
                lambda: tf.image.convert_image_dtype(
                    tf.io.decode_jpeg(data, channels=channels or 3, dct_method="INTEGER_ACCURATE"),
                    dtype,
                ),
            ),
            (  # the one format here with 16 bits (decode_image refuses WebP at 16)
                tf.equal(head, _MAGIC["PNG"]),
                lambda: tf.io.decode_png(data, channels=channels, dtype=dtype),
            ),
        ],
        # WebP, GIF, BMP: decoded as stored, alpha dropped after (TF's WebP decoder
        # refuses to turn RGBA into 3 channels: every RGBA WebP photo was refused).
        default=lambda: tf.image.convert_image_dtype(
            _channels(tf.io.decode_image(data, expand_animations=False), channels), dtype
        ),
    )


def _decoded_or_refused(data, channels, name, dtype):
    """``_decode_pixels``, or a refusal that names the input when the decoder fails.

    TensorFlow's decoders fail with their own words ("Invalid PNG data, size 200",
    "jpeg::Uncompress failed"), the same for either input of ``inpaint_bytes``. A graph
    cannot catch an op's error, but ``tf.data``'s ``ignore_errors`` can: the decode runs as
    a one-element dataset, and an empty result is refused by name (no measurable cost: a
    12-MP PNG decoded in 0.15 s either way).
    """
    return _or_refused(
        lambda encoded: _decode_pixels(encoded, channels, dtype),
        data,
        tf.zeros([0, 0, channels or 1], dtype),
        _named(
            name,
            ": the encoded data cannot be decoded (a damaged or truncated file, or an "
            "encoding this server's decoders do not read): send it again, or as PNG",
        ),
    )


def _or_refused(compute, data, empty, message):
    """``compute(data)``, or ``message`` as the refusal when its op fails: run as a
    one-element ``tf.data`` dataset with ``ignore_errors`` (``empty``: the result's
    placeholder, of its dtype and rank)."""
    computed = tf.data.Dataset.from_tensors(data).map(compute).ignore_errors()
    result, ok = computed.reduce(
        (empty, tf.constant(False)), lambda _, value: (value, tf.constant(True))
    )
    check = tf.debugging.Assert(ok, [message])
    with tf.control_dependencies([check]):
        return tf.identity(result)


def _crop_to(image, height, width):
    return image[:height, :width]


def _channels(image, channels):
    """[H, W, C] as ``channels`` (0: as it is): 3 from grey (repeated) or RGBA (alpha
    dropped, as ``penet_tf.image_io.to_rgb``)."""
    if not channels:
        return image
    stored = tf.shape(image)[-1]
    return tf.cond(
        stored >= 3, lambda: image[..., :3], lambda: tf.repeat(image[..., :1], 3, axis=-1)
    )


def _decode_mask(data, name, max_pixels):
    """An encoded mask of any format and mode -> uint8 [H, W, 1]: its largest colour
    channel (alpha ignored; 16-bit scaled to 8 bits unless it holds only 0 and 1), as
    ``penet_tf.image_io.mask_values`` (decoding to grey would refuse GIF, BMP and WebP
    masks, and could round colours down). ``serve`` then applies the mask rule
    (``penet_tf.inference.hole_mask``).
    """
    mask = _decode(data, 0, name, max_pixels, tf.uint16)  # [H, W, C], C = 1, 2, 3 or 4
    channels = tf.shape(mask)[-1]
    colours = mask[..., : channels - (1 - channels % 2)]  # drop alpha: 2 -> 1, 4 -> 3
    values = tf.reduce_max(colours, axis=-1, keepdims=True)
    # A 16-bit 0/1 mask stays one; anything else keeps its high byte (8-bit: its values).
    eight_bit = tf.where(tf.reduce_max(values) <= 1, values, tf.bitwise.right_shift(values, 8))
    return tf.cast(eight_bit, tf.uint8)


def photo_limit(strategy, max_pixels, max_photo_pixels):
    """The pixel limit of a photo sent to the uint8 and bytes signatures, after checking
    that the network inputs ``strategy`` can make stay within ``max_pixels``.

    ``full`` runs the network on the photo: the photo limit is ``max_pixels``. ``crop``
    and ``resize`` run it on at most ``model_size`` squared (and ``auto`` on photos up to
    ``trigger`` squared): photos up to ``max_photo_pixels`` are accepted.
    """
    smallest = padded_size(1) ** 2  # one 1 x 1 photo, padded to 64 x 64
    for name, value in (("max_pixels", max_pixels), ("max_photo_pixels", max_photo_pixels)):
        if value > MAX_PIXEL_LIMIT:  # (10^19 refused every request, its warm-up too)
            raise ValueError(
                f"{name} must be at most {MAX_PIXEL_LIMIT} (2^40 pixels, the served graph "
                f"counts in int64), got {value}"
            )
    if max_pixels < smallest:
        raise ValueError(
            f"max_pixels must be at least {smallest} (one 64 x 64 network input: sizes are "
            f"padded to multiples of 64), got {max_pixels}: every request would be refused"
        )
    if strategy.name == "full":
        return max_pixels
    largest = {"crop": strategy.model_size, "resize": strategy.model_size}.get(
        strategy.name, max(strategy.model_size, strategy.trigger)
    )
    if padded_size(largest) ** 2 > max_pixels:
        raise ValueError(
            f"the {strategy.name!r} strategy runs the network on up to {largest} x {largest} "
            f"pixels, over max_pixels={max_pixels}: raise max_pixels or lower the "
            "model size (and the trigger)"
        )
    if max_photo_pixels < smallest:
        raise ValueError(
            f"max_photo_pixels must be at least {smallest} (photos are counted padded to "
            f"multiples of 64), got {max_photo_pixels}: every request would be refused"
        )
    return max_photo_pixels


def serve_strategy(generator, image, mask, strategy, limit):
    """``penet_tf.inference.serve`` with a photo strategy: the request checks (the photo
    against ``limit``) pass before anything else runs, and a crop region may hold at
    most twice ``limit`` (thin photos are cut into pieces, as the library cuts them)."""
    image, mask = gate(check_request(image, mask, limit), image, mask)
    return serve_photos(generator, image, mask, strategy, max_region_pixels=2 * limit)


class _SharedNetwork:
    """``generator``, called through one graph function per kind of call (plain, with
    ``output_mask``, with ``return_attention``; traced again only for other static input
    shapes), so that a SavedModel holds each of the network's graphs once, whichever
    signature or strategy branch calls it. Traced inline at every call site, a default
    (``auto``) export held the network five times, and the strategy's graph twice (31,000
    graph nodes against 19,000 now, 7.5 MB against 4.1 MB), and ``tf.saved_model.load``
    rebuilds every node in Python: a thin export loaded in 3.8-5.5 s, now 2.7-4.3 s (0.59-
    0.85x per round; the inpaint CLI, the conversions, the serving double), and is written
    in 12 s instead of 16-18 s. TensorFlow inlines the calls when it runs them: the same
    kernels, the same values."""

    def __init__(self, generator):
        self.generator = generator
        self._functions = {}

    def __call__(self, image, mask, return_attention=False, output_mask=None):
        key = (bool(return_attention), output_mask is None)
        if key not in self._functions:
            generator, attention = self.generator, bool(return_attention)

            def call(image, mask, *output_mask):
                needed = output_mask[0] if output_mask else None
                return generator(image, mask, return_attention=attention, output_mask=needed)

            self._functions[key] = tf.function(call, autograph=False)
        extra = () if output_mask is None else (output_mask,)
        return self._functions[key](image, mask, *extra)


def build_archive(
    generator,
    max_pixels=DEFAULT_MAX_PIXELS,
    strategy=None,
    max_photo_pixels=DEFAULT_MAX_PHOTO_PIXELS,
):
    """A ``ServingArchive`` with the three signatures around ``generator``.

    ``strategy`` (a ``penet_tf.high_resolution.PhotoStrategy``, ``auto`` by default) runs
    in the graph of the uint8 and bytes signatures, one region per hole group as the
    library plans them; ``predict_float`` always runs ``full``. The strategy's graph and
    the network's are each written once (``_SharedNetwork``), called from every signature.
    """
    strategy = strategy or PhotoStrategy()
    limit = photo_limit(strategy, max_pixels, max_photo_pixels)
    archive = ServingArchive(generator)
    network = _SharedNetwork(generator)
    uint8_inputs = [
        tf.TensorSpec([None, None, None, 3], tf.uint8),
        tf.TensorSpec([None, None, None, 1], tf.uint8),
    ]

    @tf.function(input_signature=uint8_inputs, autograph=False)
    def serve(image, mask):
        return serve_strategy(network, image, mask, strategy, limit)

    def serving_default(image, mask):
        return {"inpainted": serve(image, mask)}

    def inpaint_bytes(image_bytes, mask_bytes):
        checks = [  # (TF Serving feeds a scalar unchecked: see check_request)
            assert_rank(image_bytes, 1, "image_bytes must be a list of encoded images: [batch]"),
            assert_rank(mask_bytes, 1, "mask_bytes must be a list of encoded masks: [batch]"),
            tf.debugging.assert_positive(
                tf.size(image_bytes), message="empty batch: send at least one image"
            ),
            tf.debugging.assert_equal(
                tf.size(image_bytes),
                tf.size(mask_bytes),
                message="image_bytes and mask_bytes batch sizes differ",
            ),
        ]

        def one(pair):
            index, image, mask = pair
            # Each refusal names the input and the photo's index ("image_bytes[2]: ...").
            image_name = tf.strings.format("image_bytes[{}]", index)
            mask_name = tf.strings.format("mask_bytes[{}]", index)
            image = _decode(image, 3, image_name, limit)
            mask = _decode_mask(mask, mask_name, limit)
            image_size, mask_size = tf.shape(image)[:2], tf.shape(mask)[:2]
            turned = tf.reduce_all(tf.equal(image_size, mask_size[::-1])) & tf.not_equal(
                image_size[0], image_size[1]
            )
            check = tf.debugging.Assert(
                tf.logical_not(turned),
                [
                    tf.strings.join(
                        [
                            mask_name,
                            " is ",
                            image_name,
                            " turned a quarter (height and width swapped): this server reads "
                            "the pixels of a photo as stored, without its EXIF orientation; "
                            "send the photo as a PNG as a viewer shows it (the client does), "
                            "or draw the mask on the stored pixels",
                        ]
                    )
                ],
            )
            with tf.control_dependencies([check]):
                image = tf.identity(image)
            inpainted = serve(image[None], mask[None])
            return tf.io.encode_png(inpainted[0])

        image_bytes, mask_bytes = gate(checks, image_bytes, mask_bytes)
        # One photo at a time (the While op's default runs 10 at once): a batch needs the
        # memory of its largest photo, not of all of them (TF Serving merges requests).
        indices = tf.range(tf.size(image_bytes))
        encoded = tf.map_fn(
            one,
            (indices, image_bytes, mask_bytes),
            fn_output_signature=tf.string,
            parallel_iterations=1,
        )
        return {"inpainted_bytes": encoded}

    def predict_float(image, mask):
        image, mask = gate(check_request(image, mask, max_pixels), image, mask)
        image, mask = gate(check_float_values(image, mask), image, mask)
        hole = tf.cast(mask >= 0.5, tf.float32)  # the mask rule for [0, 1] floats
        output, inpainted = inpaint(network, image, hole, check_values=False)  # (checked)
        return {"output": output, "inpainted": inpainted}

    spec = tf.TensorSpec
    archive.add_endpoint(
        "serving_default",
        serving_default,
        [
            spec([None, None, None, 3], tf.uint8, "image"),
            spec([None, None, None, 1], tf.uint8, "mask"),
        ],
    )
    archive.add_endpoint(
        "inpaint_bytes",
        inpaint_bytes,
        [spec([None], tf.string, "image_bytes"), spec([None], tf.string, "mask_bytes")],
    )
    archive.add_endpoint(
        "predict_float",
        predict_float,
        [
            spec([None, None, None, 3], tf.float32, "image"),
            spec([None, None, None, 1], tf.float32, "mask"),
        ],
    )
    return archive


MAX_PIXEL_LIMIT = 2**40


def _versions(base_dir):
    """``{version: folder name}`` of the numeric folders under ``base_dir`` that TF
    Serving reads as versions (``007`` is version 7; past int64 are none)."""
    versions = {}
    for name in sorted(os.listdir(base_dir)):
        version = serving_version(name)
        if version is not None:
            versions.setdefault(version, name)
    return versions


def next_version(base_dir):
    """1 + the largest numeric version under ``base_dir`` (1 when there is none; folders
    past int64, which TF Serving cannot read as versions, are not counted). With version
    2^63 - 1 taken there is none after it: a ValueError (the next plain export was
    version 1, which TF Serving's "latest" policy never serves)."""
    version = max(_versions(base_dir), default=0) + 1
    if version > MAX_VERSION:
        raise ValueError(
            f"{base_dir} holds version {MAX_VERSION}, the last TF Serving reads: an export "
            "after it would never be served; give another --out or remove that version"
        )
    return version


def warmup_inputs(size=64):
    """One small request per signature: ``{signature: {input: numpy array}}``."""
    image = np.full((1, size, size, 3), 128, np.uint8)
    image[:, :, : size // 2] = 32  # some structure for the attention to match
    mask = np.zeros((1, size, size, 1), np.uint8)
    mask[:, size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = 255
    return {
        "serving_default": {"image": image, "mask": mask},
        "inpaint_bytes": {
            "image_bytes": np.array([tf.io.encode_png(image[0]).numpy()], object),
            "mask_bytes": np.array([tf.io.encode_png(mask[0]).numpy()], object),
        },
        "predict_float": {
            "image": image.astype(np.float32) / 127.5 - 1.0,
            "mask": (mask > 0).astype(np.float32),
        },
    }


def write_warmup_requests(path, model_name, size=64):
    """TF Serving's warm-up file: ``PredictionLog`` records, one request per signature.

    ``tensorflow_model_server --enable_model_warmup`` replays them when it loads the
    version, so the first real request does not pay for graph optimisation.
    """
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    with tf.io.TFRecordWriter(path) as writer:
        for signature, inputs in warmup_inputs(size).items():
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name=signature)
            )
            for key, value in inputs.items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())


def version_dir(base_dir, version=None):
    """``base_dir/<version>`` (the next free version by default); raises if it is taken,
    or if ``base_dir`` is (or is inside) a SavedModel version rather than a base folder."""
    check_folder_target(base_dir)  # (an empty --out exported into the working folder)
    check_utf8_path(base_dir, "--out")  # (tf.saved_model.save)
    base_dir = os.path.abspath(base_dir)
    if version is not None and version > MAX_VERSION:
        raise ValueError(
            f"--version must be at most {MAX_VERSION} (TF Serving reads versions as int64), "
            f"got {version}"
        )
    if os.path.exists(base_dir) and not os.path.isdir(base_dir):
        raise FileExistsError(f"{base_dir} is a file, not a model directory")
    folder = base_dir
    while True:  # --out savedmodels/demo/1 wrote a whole export inside version 1
        if os.path.isfile(os.path.join(folder, "saved_model.pb")):
            raise ValueError(
                f"--out {base_dir} is inside the SavedModel {folder}: give the model base "
                f"directory ({os.path.dirname(folder)}), whose numbered folders are versions"
            )
        if os.path.dirname(folder) == folder:
            break
        folder = os.path.dirname(folder)
    if version is None:
        version = next_version(base_dir) if os.path.isdir(base_dir) else 1
    if int(version) < 0:
        raise ValueError(f"version must be a non-negative integer, got {version}")
    final = os.path.join(base_dir, str(int(version)))
    if os.path.exists(final):
        raise FileExistsError(f"{final} exists: choose another --version (or omit it)")
    taken = _versions(base_dir).get(int(version)) if os.path.isdir(base_dir) else None
    if taken is not None:  # (007 and 7: two folders TF Serving reads as one version)
        raise FileExistsError(
            f"{os.path.join(base_dir, taken)} is version {int(version)}: choose another "
            "--version (or omit it)"
        )
    return final


def export_generator(
    generator,
    base_dir,
    version=None,
    max_pixels=DEFAULT_MAX_PIXELS,
    strategy=None,
    max_photo_pixels=DEFAULT_MAX_PHOTO_PIXELS,
):
    """Writes ``base_dir/<version>/`` (the next free version by default); returns its path.

    ``strategy`` and ``max_photo_pixels``: see ``build_archive`` (recorded with
    ``max_pixels`` in ``assets.extra/penet_tf.json``).

    Everything is written to a hidden ``base_dir/.tmp-<pid>.<space>-<version>`` directory (TF
    Serving only loads numeric directories) and renamed into place at the end
    (``penet_tf.io_utils.atomic_path``), so a failed or interrupted export never leaves a
    half-written version; what a killed export left there is swept first.
    """
    strategy = strategy or PhotoStrategy()
    photo_limit(strategy, max_pixels, max_photo_pixels)  # (refused before any work)
    final = version_dir(base_dir, version)
    base_dir = os.path.dirname(final)
    sweep_temporaries(base_dir)
    # A filled `final` that appeared meanwhile (another export into this folder) is not
    # replaced: an automatic version goes on to the next free one (both exports took
    # the same one, and the second failed after all its work), a chosen one fails.
    chosen = [final]

    def again():
        chosen.append(version_dir(base_dir, None))
        return chosen[-1]

    taken = again if version is None else None
    with atomic_path(final, directory=True, replace=False, next_target=taken) as temporary:
        name = os.path.basename(base_dir)
        _write_saved_model(generator, temporary, name, max_pixels, strategy, max_photo_pixels)
    return chosen[-1]


def _write_saved_model(generator, path, model_name, max_pixels, strategy, max_photo_pixels):
    """The SavedModel and its ``assets.extra/`` (warm-up requests, ``penet_tf.json``)."""
    limit = photo_limit(strategy, max_pixels, max_photo_pixels)
    build_archive(generator, max_pixels, strategy, max_photo_pixels).write_out(path, verbose=False)
    extra = os.path.join(path, "assets.extra")
    os.makedirs(extra, exist_ok=True)
    write_warmup_requests(os.path.join(extra, WARMUP_FILE), model_name)
    with open(os.path.join(extra, CONFIG_FILE), "w") as handle:
        config = {
            "generator": generator_config(generator),
            "max_pixels": max_pixels,
            "strategy": strategy.to_config(),
            "max_photo_pixels": limit,  # what the uint8 and bytes signatures accept
        }
        json.dump(config, handle)


def export_saved_model(
    generator,
    path,
    max_pixels=DEFAULT_MAX_PIXELS,
    strategy=None,
    max_photo_pixels=DEFAULT_MAX_PHOTO_PIXELS,
):
    """Writes the export of ``export_generator`` at ``path`` itself, not as a version
    inside it (Keras' ``Generator.export(path)``: ``path`` may be a TF Serving version
    folder, ``models/penet/1``); returns ``path``. An existing non-empty ``path`` is not
    replaced (``FileExistsError``); the export is written beside it and renamed into
    place, as ``export_generator`` writes its versions."""
    strategy = strategy or PhotoStrategy()
    photo_limit(strategy, max_pixels, max_photo_pixels)  # (refused before any work)
    check_folder_target(path, "filepath")
    check_utf8_path(path, "filepath")  # (tf.saved_model.save)
    if os.path.islink(path):  # (the rename onto it failed after the whole export)
        raise ValueError(
            f"filepath {path} is a symbolic link to {os.readlink(path)}: give the folder itself"
        )
    path = os.path.abspath(path)
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise FileExistsError(f"{path} exists: remove it or choose another path")
    sweep_temporaries(os.path.dirname(path))
    name = os.path.basename(path)
    if serving_version(name) is not None:  # (a version folder: the model's name is its parent's)
        name = os.path.basename(os.path.dirname(path))
    with atomic_path(path, directory=True, replace=False) as temporary:
        _write_saved_model(generator, temporary, name, max_pixels, strategy, max_photo_pixels)
    return path


def _main(argv):
    parser = argparse.ArgumentParser(
        prog="python -m penet_tf.export",
        description="Export a PEN-Net generator as a TF Serving SavedModel (savedmodels/NAME/N).",
    )
    parser.add_argument(
        "--weights", required=True, help="generator weights (.weights.h5, or a released .pth)"
    )
    parser.add_argument("--out", required=True, help="model base directory, e.g. savedmodels/demo")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="largest network input (H * W, padded to multiples of 64); for --strategy full "
        f"also the largest photo a request may send (default {DEFAULT_MAX_PIXELS}); crop, "
        "resize and auto take photos up to --max-photo-pixels",
    )
    parser.add_argument(
        "--attention-chunk-mb",
        type=float,
        default=192,
        help="attention memory budget per image and layer (default 192 MiB)",
    )
    parser.add_argument(
        "--strategy",
        choices=STRATEGIES,
        default="auto",
        help="how the uint8 and bytes signatures treat large photos (default auto: crop, "
        "one region per hole group as the library plans them, when the long side exceeds "
        "--trigger, else full)",
    )
    parser.add_argument(
        "--model-size", type=int, default=256, help="network input long side (default 256)"
    )
    parser.add_argument(
        "--margin", type=int, default=128, help="context around the holes (default 128)"
    )
    parser.add_argument(
        "--trigger", type=int, default=512, help="auto: crop above this long side (default 512)"
    )
    parser.add_argument(
        "--residual-aggregation",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="add the known pixels' full-resolution detail to crop/resize holes (default on)",
    )
    parser.add_argument(
        "--max-photo-pixels",
        type=int,
        default=DEFAULT_MAX_PHOTO_PIXELS,
        help="largest photo (H * W, padded to multiples of 64) crop/resize/auto accept, "
        f"checked from the header before decoding (default {DEFAULT_MAX_PHOTO_PIXELS})",
    )
    args = parser.parse_args(argv)
    if not 0 < args.attention_chunk_mb < float("inf"):  # (NaN fails too)
        raise ValueError(
            f"--attention-chunk-mb must be a positive number, got {args.attention_chunk_mb}"
        )
    strategy = photo_strategy(
        args.strategy,
        model_size=args.model_size,
        margin=args.margin,
        trigger=args.trigger,
        residual_aggregation=args.residual_aggregation,
    )
    try:
        photo_limit(strategy, args.max_pixels, args.max_photo_pixels)
    except ValueError as error:  # "max_pixels must ..." -> "--max-pixels must ..."
        message = str(error)
        for option in ("max_pixels", "max_photo_pixels"):
            message = re.sub(rf"\b{option}\b", "--" + option.replace("_", "-"), message)
        raise ValueError(message) from None
    version_dir(args.out, args.version)  # refuse a taken --version before loading anything
    generator = load_generator(
        args.weights, patch_method="conv", attention_chunk_mb=args.attention_chunk_mb
    )
    path = export_generator(
        generator, args.out, args.version, args.max_pixels, strategy, args.max_photo_pixels
    )
    say(f"exported {path}")
    return 0


def main(argv=None):
    """The CLI; returns the exit status (errors: one line on stderr, no traceback)."""
    return run(_main, argv)


if __name__ == "__main__":
    sys.exit(main())
