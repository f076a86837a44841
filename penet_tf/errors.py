"""The project's error base class: a problem the user can fix, said in one line.

``penet_tf.cli.run`` prints such errors (and ``ValueError``, ``OSError``,
``ImportError``) as ``error: MESSAGE`` on stderr, without a traceback, and exits with
the error's ``exit_status``.
"""


class PenetError(Exception):
    """An error whose message is all the user needs (no traceback)."""

    exit_status = 2
