"""Writing user files safely: to a temporary file beside the target, then a rename."""

import contextlib
import json
import os
import tempfile

# Image files penet_tf reads (all decoded with Pillow).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def find_files(path, suffixes):
    """Sorted files under ``path`` (recursive) whose names end with ``suffixes`` (any case)."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    return sorted(
        os.path.join(root, name)
        for root, _, names in os.walk(path)
        for name in names
        if name.lower().endswith(suffixes)
    )


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which would briefly
# change it for every thread of a running program.
_UMASK = _read_umask()


@contextlib.contextmanager
def atomic_path(path, suffix=""):
    """Yields a temporary path beside ``path``; renames it to ``path`` on success only.

    The file gets the permissions a plain ``open(path, "w")`` would give it (``mkstemp``
    alone would leave it readable by its owner only).
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=suffix)
    os.close(handle)
    try:
        yield temporary
        os.chmod(temporary, 0o666 & ~_UMASK)
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def save_weights_atomically(model, path):
    """``model.save_weights(path)`` (a ``.weights.h5`` file) via a temporary file."""
    with atomic_path(path, suffix=".weights.h5") as temporary:
        model.save_weights(temporary, overwrite=True)


def write_json_atomically(data, path):
    with atomic_path(path, suffix=".json") as temporary:
        with open(temporary, "w") as handle:
            json.dump(data, handle, indent=2, sort_keys=True)
            handle.write("\n")
