"""The project's error base class: a problem the user can fix, said in one line.

``penet_tf.cli.run`` prints such errors (and ``ValueError``, ``OSError``,
``ImportError``) as ``error: MESSAGE`` on stderr, without a traceback, and exits with
the error's ``exit_status``.
"""


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


def first_few(items, count=3):
    """``"a, b, c, ..."``: the first ``count`` of ``items`` (strings), for a message that
    names some of many."""
    items = list(items)
    return ", ".join(items[:count]) + (", ..." if len(items) > count else "")


class PenetError(Exception):
    """An error whose message is all the user needs (no traceback)."""

    exit_status = 2
