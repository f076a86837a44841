"""The project's error base class: a problem the user can fix, said in one line.

``penet_tf.cli.run`` prints such errors (and ``ValueError``, ``OSError``,
``ImportError``) as ``error: MESSAGE`` on stderr, without a traceback, and exits with
the error's ``exit_status``. Its messages, and the lines penet_tf logs, show a user's file
names as ``printable`` does.
"""

import logging
import numbers
import os


def require_float(
    dtype,
    who,
    name="image",
    expected="float in [-1, 1]",
    hint="",
    advice="convert uint8 photos with penet_tf.inference.uint8_to_float",
):
    """Raises ValueError unless ``dtype`` (a tensor's) is floating: PEN-Net's networks and
    losses take images in [-1, 1], and a uint8 0-255 photo ran and gave a wrong image or
    loss without a word. One message for the generator, the discriminator, the losses and
    ``PENetGAN``'s batches."""
    import tensorflow as tf

    dtype = tf.as_dtype(dtype)
    if not dtype.is_floating:
        raise ValueError(f"{who}: {name} must be {expected}, got {dtype.name}; {advice}{hint}.")


def positive_int(value, name):
    """``value`` as an ``int`` if it is a positive integer (NumPy's too: ``np.int64(8)``
    was refused by the generator and taken by the discriminator), else ValueError naming
    ``name`` (a bool, ``8.0`` or ``"8"`` failed inside Keras, unnamed)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def printable(text):
    """``text`` as any stream can print it: a file name that is not UTF-8 (its bytes kept
    as surrogates, ``os.fsdecode``) shows its bytes, ``caf\\xe9.jpg`` (it was
    ``caf\\udce9.jpg``, Python's stand-in), instead of raising UnicodeEncodeError while
    the error or a skipped file is reported."""
    try:
        data = os.fsencode(text)  # (the surrogates back to the name's bytes)
    except UnicodeEncodeError:  # (not a file system's name: a lone surrogate)
        data = text.encode("utf-8", "backslashreplace")
    return data.decode("utf-8", "backslashreplace")


class _PrintableMessages(logging.Filter):
    """Makes a record's message ``printable`` where it logs a file name that is not
    UTF-8: a handler that encodes strictly (a ``FileHandler(encoding="utf-8")``, a JSON
    log shipper, pytest-xdist sending captured logs) raised UnicodeEncodeError on
    ``caf\\udce9.jpg`` and the line was lost."""

    def filter(self, record):
        try:
            message = record.getMessage()
        except Exception:  # (arguments that do not fit: logging reports it as it does)
            return True
        shown = printable(message)
        if shown != message:
            record.msg, record.args = shown, None
        return True


def get_logger(name):
    """``logging.getLogger(name)``, its messages ``printable`` (one filter per logger)."""
    logger = logging.getLogger(name)
    if not any(isinstance(item, _PrintableMessages) for item in logger.filters):
        logger.addFilter(_PrintableMessages())
    return logger


def first_few(items, count=3):
    """``"a, b, c, ..."``: the first ``count`` of ``items`` (strings), for a message that
    names some of many."""
    items = list(items)
    return ", ".join(items[:count]) + (", ..." if len(items) > count else "")


class PenetError(Exception):
    """An error whose message is all the user needs (no traceback)."""

    exit_status = 2
