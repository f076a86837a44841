"""Writing user files safely: the one atomic writer, and the sweep of what a kill left.

Every file or directory penet_tf writes for a user (PNGs, reports, weights, exports,
conversions) is written under a temporary name beside its target,
``.tmp-<pid>.<space>-<name>``, and renamed onto the target only once it is complete
(``atomic_path``), so a crash, a full disk or Ctrl-C never leaves a half-written output;
the temporary is removed on failure. A process killed outright (``kill -9``) cannot
remove its temporary: ``sweep_temporaries`` removes those of processes that no longer
run; train, export, convert, convert_torch, inpaint, evaluate and the serving client call
it on the folders they write to.

``<space>`` names the machine's boot and the PID namespace (``PID_SPACE``): two
containers (or machines) writing one shared folder both run as pid 1, so their
temporaries had the same name, and each removed the other's live one as "a leftover of
an earlier process with this pid" (an export then renamed the other's weights into its
version and said it had exported). A pid is checked only against its own space; another
space's temporaries are swept once untouched for ``FOREIGN_STALE_SECONDS``.
"""

import contextlib
import errno
import hashlib
import json
import os
import re
import shutil
import socket
import stat
import time
import unicodedata

# Image files penet_tf reads (all decoded with Pillow).
# (AVIF and JFIF were left out of folders without a word, though Pillow reads them.)
IMAGE_SUFFIXES = (
    ".png",
    ".jpg",
    ".jpeg",
    ".jfif",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".avif",
)

# Camera raw files (a camera's RAW + JPEG pairs; Apple ProRAW and Android's RAW are DNG):
# Pillow opens the TIFF-based ones (DNG, NEF, ARW, ...) as TIFFs and gave their first
# image, in many DNGs a small preview (a DNG's preview was inpainted in place of the
# photo, without a word), and cannot identify the others; in folders they were passed
# over.
RAW_SUFFIXES = (
    ".dng",
    ".cr2",
    ".cr3",
    ".crw",
    ".nef",
    ".nrw",
    ".arw",
    ".srf",
    ".sr2",
    ".orf",
    ".rw2",
    ".raf",
    ".pef",
    ".srw",
    ".rwl",
    ".3fr",
    ".iiq",
    ".erf",
    ".kdc",
    ".dcr",
    ".mrw",
    ".x3f",
)
# Photos penet_tf does not read (Pillow cannot, or reads only a camera raw file's
# preview): listed with the images so that they are named, not passed over (a folder of
# iPhone photos, HEIC, had "no images"; of a phone's mixed folder, the JPEGs were
# inpainted without a word about the rest).
UNREAD_SUFFIXES = (".heic", ".heif", ".hif", ".jxl") + RAW_SUFFIXES

# Temporaries: ".tmp-<pid>.<space>-<name>"; before 2026-12-06 ".tmp-<pid>-<name>", and
# older versions wrote ".tmp-<random>" (no pid).
TEMPORARY_PREFIX = ".tmp-"
_TEMPORARY = re.compile(r"^\.tmp-(\d+)(?:\.([0-9a-f]{8}))?-")
# Another PID space's temporary (another container or machine) untouched this long is
# a leftover: its pid cannot be checked here.
FOREIGN_STALE_SECONDS = 24 * 3600


def _pid_space():
    """8 hex digits naming this process's PID space: the machine's boot and its PID
    namespace (containers on one machine share the boot, not the namespace)."""
    parts = []
    try:
        with open("/proc/sys/kernel/random/boot_id") as handle:
            parts.append(handle.read().strip())
    except OSError:
        parts.append(socket.gethostname())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return hashlib.sha256("/".join(parts).encode()).hexdigest()[:8]


PID_SPACE = _pid_space()


def find_files(path, suffixes):
    """Sorted regular files under ``path`` (recursive, linked folders included, each folder
    read once; a link to ``path`` itself or a folder above it is not followed: it would
    bring in ``val/`` beside ``train/``) whose names end with ``suffixes`` (any case). A
    training set assembled from linked shards trained on the one linked file beside them
    (the shards were left out without a word), or was "empty".
    Pipes, sockets and devices are left out:
    reading a named pipe waits for a writer for ever. Hidden files and folders (a name
    starting with ".") are left out, as the inference CLIs leave them out: a Jupyter
    ``.ipynb_checkpoints/`` copy trained as a second image, and macOS' ``._name.jpg``
    resource forks were skipped as unreadable every epoch."""
    suffixes = tuple(suffix.lower() for suffix in suffixes)
    root = os.path.realpath(path)
    found, folders, links, seen = [], [os.fspath(path)], [], set()
    while folders or links:
        # Linked folders after the others: a folder also reached by a link keeps its path
        folder = folders.pop() if folders else links.pop()
        try:
            identity = file_identity(folder)
            if not identity or not identity[1]:  # (inode 0: some network file systems)
                identity = os.path.realpath(folder)
            if identity in seen:  # (a folder linked twice)
                continue
            seen.add(identity)
            with os.scandir(folder) as entries:
                entries = sorted(entries, key=lambda entry: entry.name)  # (one order)
        except OSError:  # (as os.walk: an unreadable folder is passed over)
            continue
        for entry in entries:
            if entry.name.startswith("."):
                continue
            try:
                is_folder = entry.is_dir()  # (a link to a folder too)
            except OSError:
                continue
            if is_folder and not entry.is_symlink():
                folders.append(entry.path)
            elif is_folder:
                target = os.path.realpath(entry.path)
                if os.path.commonpath([target, root]) != target:  # (not path or above it)
                    links.append(entry.path)
            elif entry.name.lower().endswith(suffixes) and entry.is_file():
                found.append(entry.path)
    return sorted(found)


def _read_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once, at import: os.umask can only be read by setting it, which would briefly
# change it for every thread of a running program.
_UMASK = _read_umask()


# The longest file name most file systems take (bytes); os.pathconf says where it can.
NAME_MAX = 255
# What a long name's temporary keeps of its end (its suffix: Keras wants .weights.h5).
_KEPT_END = 32


def name_max(directory):
    """The longest file name (bytes) ``directory``'s file system takes (``NAME_MAX``
    where it cannot say: Windows has no ``os.pathconf``, and every command that writes
    stopped there with an AttributeError traceback)."""
    try:
        return os.pathconf(directory, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return NAME_MAX


def name_key(name):
    """``name`` as a case-insensitive file system compares names (macOS' APFS, Windows'
    NTFS, a Linux mount of either, WSL's /mnt/c): Unicode NFC, lower case. Two results
    whose names differ only there are one file on those, so one replaced the other."""
    return unicodedata.normalize("NFC", name).lower()


def case_blind(folder):
    """Whether ``folder``'s file system (that of its nearest existing folder) takes names
    differing only in case for one name, found without writing: another spelling of a
    name in it, or of its own name, is the same file."""
    folder = os.path.abspath(os.fspath(folder))
    while not os.path.isdir(folder):
        folder = os.path.dirname(folder)
    try:
        with os.scandir(folder) as entries:
            names = [entry.path for entry, _ in zip(entries, range(64), strict=False)]
    except OSError:
        names = []
    for path in [*names, folder]:
        name = os.path.basename(path)
        if name.swapcase() != name:
            other = os.path.join(os.path.dirname(path), name.swapcase())
            return os.path.lexists(other) and same_path(path, other)
    return False


def file_identity(path):
    """``(device, inode)`` of an existing file or folder, else None."""
    try:
        status = os.stat(path)
    except (OSError, ValueError):
        return None
    return status.st_dev, status.st_ino


def same_path(a, b):
    """Whether ``a`` and ``b`` are one file or folder: the same real path, or, both
    existing, one reached by two spellings (on macOS and Windows ``--images Photos
    --out photos`` wrote the results over the photos: the real paths differ in case)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False


def temporary_path(path, tag=""):
    """``dirname(path)/.tmp-<pid>.<space>-<tag><basename(path)>``: where ``path`` is
    written first.

    It keeps the target's name, so its suffix too (Keras wants ``.weights.h5``); a name
    that the prefix would take over the file system's limit loses bytes from its middle
    (a 250-byte photo name stopped the inpaint CLI with "File name too long" after the
    model had loaded, though its result's own name fitted).
    """
    path = os.path.abspath(os.fspath(path))
    directory, name = os.path.split(path)
    prefix = f"{TEMPORARY_PREFIX}{os.getpid()}.{PID_SPACE}-{tag}"
    encoded, limit = os.fsencode(prefix + name), NAME_MAX
    if len(encoded) > 128:  # (eCryptfs takes 143 bytes)
        limit = min(limit, name_max(directory))
    if len(encoded) > limit:
        whole = os.fsencode(name)
        keep = limit - len(os.fsencode(prefix)) - _KEPT_END - 1
        name = os.fsdecode(whole[: max(keep, 0)] + b"~" + whole[-_KEPT_END:])
    return os.path.join(directory, prefix + name)


def remove_path(path):
    """Removes a file, link or directory tree; False if there was nothing to remove."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.remove(path)
        return True
    except FileNotFoundError:
        return False


def _check_folders_above(path, flag, folder_itself=False):
    """ValueError if a file (not a folder) stands where one of ``path``'s folders must be,
    or the folder that would be written in (``path`` itself with ``folder_itself``, when
    it exists; else the nearest existing folder above, where the missing ones are made)
    cannot be written (found at the first write otherwise: after the model had loaded,
    or after a whole evaluation, naming a temporary file)."""
    folder = os.path.abspath(path)
    if not (folder_itself and os.path.isdir(folder)):
        folder = os.path.dirname(folder)
    while not os.path.exists(folder):
        if os.path.islink(folder):  # (the write failed after the work: "File exists")
            raise ValueError(
                f"{flag} {path}: {folder} is a symbolic link to {os.readlink(folder)}, which "
                "does not exist"
            )
        folder = os.path.dirname(folder)
    if not os.path.isdir(folder):
        raise ValueError(f"{flag} {path}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(
            f"{flag} {path}: the folder {folder} cannot be written ({_why_not_writable(folder)})"
        )


def _why_not_writable(folder):
    """ "read-only file system" (a mounted camera card, a read-only bind mount: it was
    called "permission denied"), else "permission denied"."""
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except (OSError, AttributeError):  # (no statvfs on Windows)
        pass
    return "permission denied"


def check_file_target(path, flag="--out", inputs=()):
    """ValueError, before any work, naming why ``atomic_path`` could not write the file
    ``path``: it is empty, an existing folder, below a file, a name longer than its file
    system takes, or one of ``inputs`` (the files a run reads, which it would replace)."""
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{flag} is empty: give the file to write")
    if os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a folder: give the file to write")
    if path.endswith(("/", os.sep)):  # a folder to be (evaluate wrote a file named so)
        raise ValueError(f"{flag} {path} names a folder: give the file to write")
    _check_folders_above(path, flag)
    _check_name_length(path, flag)
    for source in inputs:
        if source is not None and same_path(source, path):
            raise ValueError(f"{flag} {path} would replace the input {source}")


def check_utf8_path(path, flag, absolute=True):
    """ValueError unless ``path`` is UTF-8: TensorFlow's file system (checkpoints,
    SavedModels) takes no other name, and failed naming no path. ``absolute=False``
    checks the path as given (a relative one read from a folder whose own name is not
    UTF-8 is read)."""
    encoded = os.fsencode(os.path.abspath(os.fspath(path)) if absolute else os.fspath(path))
    try:
        encoded.decode("utf-8")
    except UnicodeDecodeError:
        shown = encoded.decode("utf-8", "backslashreplace")
        raise ValueError(
            f"{flag} {shown}: TensorFlow reads and writes only UTF-8 paths; rename the folder"
        ) from None


def check_folder_target(path, flag="--out"):
    """ValueError, before any work, if ``path`` cannot be (or become) a folder: it is
    empty, a file, below a file, a symbolic link to nothing, or a name longer than its
    file system takes (the last two were found at the rename, after the whole work,
    naming a temporary)."""
    path = os.fspath(path)
    if not path:
        raise ValueError(f"{flag} is empty: give the folder to write to")
    if os.path.exists(path) and not os.path.isdir(path):
        raise ValueError(f"{flag} {path} is a file, not a folder")
    if os.path.islink(path) and not os.path.exists(path):
        raise ValueError(
            f"{flag} {path} is a symbolic link to {os.readlink(path)}, which does not exist: "
            "remove the link or make its folder"
        )
    _check_folders_above(path, flag, folder_itself=True)
    _check_name_length(path, flag)


def _check_name_length(path, flag):
    """ValueError if ``path``'s last name is longer than its file system takes (found at
    the rename after the work, naming the temporary)."""
    name = os.fsencode(os.path.basename(os.path.abspath(path)))
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    if len(name) > name_max(parent):
        raise ValueError(
            f"{flag} {path}: its name is {len(name)} bytes, longer than the "
            f"{name_max(parent)} its file system takes"
        )


@contextlib.contextmanager
def atomic_path(path, directory=False, replace=True, next_target=None):
    """Yields a temporary path beside ``path``, renamed onto ``path`` on success only.

    Args:
        path: the target file or directory (its folder is created if missing).
        directory: the target is a directory: the temporary one is created (empty) and
            yielded for the caller to fill.
        replace: whether an existing target is replaced. A directory that exists is
            moved aside and removed after the rename; with ``replace=False`` the rename
            fails (``FileExistsError``) if a non-empty target appeared meanwhile.
        next_target: with ``directory`` and ``replace=False``, called when the target
            appeared meanwhile (another process wrote it): the path to rename to instead
            (an export's next free version), or None to fail.

    Files and directories get the permissions a plain ``open`` / ``os.makedirs`` would
    give them: a new one the umask's, one replacing an existing target that target's mode
    (and owner, where this process may set it): a 0600 report became 0644 when replaced.
    On any exception (Ctrl-C included) the temporary is removed.

    Example:

        >>> with atomic_path("out/result.png") as temporary:  # doctest: +SKIP
        ...     image.save(temporary, "PNG")
    """
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    temporary = temporary_path(path)
    remove_path(temporary)  # a leftover of an earlier process with this pid
    old = None
    try:
        if directory:
            os.mkdir(temporary)
        yield temporary
        if directory:
            _take_permissions(temporary, path, 0o777 & ~_UMASK)
            if replace and os.path.lexists(path):
                old = temporary_path(path, "old-")
                remove_path(old)
                os.rename(path, old)
            while True:
                try:
                    os.rename(temporary, path)
                    break
                except OSError as error:  # (a raw "Directory not empty" naming .tmp-...)
                    if replace or error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                        raise
                    taken, path = path, next_target() if next_target else None
                    if path is None:
                        raise FileExistsError(
                            f"{taken} exists: another process wrote it meanwhile"
                        ) from None
        else:
            if os.path.exists(temporary):
                _take_permissions(temporary, path, 0o666 & ~_UMASK)
            if not replace and os.path.lexists(path):
                raise FileExistsError(f"{path} exists")
            os.replace(temporary, path)
    finally:
        remove_path(temporary)
        if old is not None:
            remove_path(old)


def _take_permissions(temporary, target, default):
    """Gives ``temporary`` the mode (and owner) of the ``target`` it replaces, or
    ``default`` when there is none."""
    try:
        existing = os.stat(target)
    except OSError:
        os.chmod(temporary, default)
        return
    # (not its setuid / setgid / sticky bits: they would carry over to new content)
    os.chmod(temporary, stat.S_IMODE(existing.st_mode) & 0o777)
    mine = os.stat(temporary)
    if (mine.st_uid, mine.st_gid) != (existing.st_uid, existing.st_gid):
        with contextlib.suppress(OSError):  # (only root may give a file to another user)
            os.chown(temporary, existing.st_uid, existing.st_gid)


def _running(pid):
    """Whether a process ``pid`` exists (on this machine). On Windows ``os.kill(pid, 0)``
    sends a Ctrl-C to the console (or fails with WinError 87): every process counts as
    running there, and this machine's leftovers are swept as another's, when untouched
    for ``FOREIGN_STALE_SECONDS``."""
    if os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OverflowError:
        return False
    return True


def _untouched(path, seconds):
    """Whether ``path`` (and, for a folder, its entries) has not changed for ``seconds``."""
    try:
        times = [os.lstat(path).st_mtime]
        if os.path.isdir(path) and not os.path.islink(path):
            with os.scandir(path) as entries:
                times += [entry.stat(follow_symlinks=False).st_mtime for entry in entries]
    except OSError:
        return False
    return time.time() - max(times) > seconds


def sweep_temporaries(folder, older_versions=False):
    """Removes the temporaries ``atomic_path`` left in ``folder`` (not recursive) when
    its process was killed; returns the removed paths.

    A ``.tmp-<pid>.<space>-*`` entry is removed when process ``pid`` no longer runs (a
    running process, this one included, may still be writing it); one of another PID
    space (another container or machine on a shared folder) when untouched for
    ``FOREIGN_STALE_SECONDS`` (its pid says nothing here: a container's export swept
    another's live version). Older versions' names, ``.tmp-*`` without a pid and
    ``.tmp-<pid>-*`` (before 2026-12-06), go only with ``older_versions``, for folders
    that are penet_tf's own (a run folder; the latter when ``pid`` no longer runs):
    elsewhere they may be the user's (evaluate's report folder swept a ``.tmp-cache/``
    folder of theirs, and inpaint's output folder a ``.tmp-2023-holiday-edits/`` folder,
    "2023" taken for a pid, with everything in them).
    """
    removed = []
    if not os.path.isdir(folder):
        return removed
    names = sorted(os.listdir(folder))
    # Folders moved aside first: the new one of a target named before "old-" (model,
    # converted, 1) was swept first, and its moved-aside folder then with it.
    for name in sorted(names, key=lambda name: (not _moved_aside(name), name)):
        if not name.startswith(TEMPORARY_PREFIX):
            continue
        match = _TEMPORARY.match(name)
        path = os.path.join(folder, name)
        if match is None or match.group(2) is None:  # older versions' names
            dead = match is not None and not _running(int(match.group(1)))
            if dead and _restore_moved_aside(folder, name, match, names):
                continue  # (put back, a rename: nothing is removed)
            if not older_versions or (match and not dead):
                continue
        elif match.group(2) != PID_SPACE or os.name == "nt":  # (nt: see _running)
            if int(match.group(1)) == os.getpid() or not _untouched(path, FOREIGN_STALE_SECONDS):
                continue
        elif _running(int(match.group(1))):
            continue
        if match and _restore_moved_aside(folder, name, match, names):
            continue
        if remove_path(path):
            removed.append(path)
    return removed


def _moved_aside(name):
    """Whether ``name`` is a temporary's ``old-`` folder (``atomic_path``'s replaced one)."""
    match = _TEMPORARY.match(name)
    return bool(match) and name[len(match.group(0)) :].startswith("old-")


def _restore_moved_aside(folder, name, match, names):
    """Puts back a folder that ``atomic_path`` moved aside
    (``.tmp-<pid>.<space>-old-<name>``) to replace it, when its process was killed between
    its two renames: the target is missing and the new one (``.tmp-<pid>.<space>-<name>``)
    still waits. Both were swept before, losing the earlier conversion and the new one.
    Returns whether it was put back."""
    prefix = match.group(0)
    if not name[len(prefix) :].startswith("old-"):
        return False
    target = name[len(prefix) + len("old-") :]
    if (
        not target
        or prefix + target not in names
        or os.path.lexists(os.path.join(folder, target))
        or len(os.fsencode(name)) >= NAME_MAX  # (a long name's temporary is cut)
        # only folders are moved aside (a file .tmp-<pid>.<space>-old-X is the temporary of a
        # target named old-X, perhaps half written)
        or not os.path.isdir(os.path.join(folder, name))
        or not os.path.isdir(os.path.join(folder, prefix + target))
    ):
        return False
    try:
        os.rename(os.path.join(folder, name), os.path.join(folder, target))
    except OSError:
        return False
    return True


def write_bytes_atomically(data, path):
    """Writes ``data`` (bytes) to ``path`` through ``atomic_path``."""
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as handle:
            handle.write(data)


def write_text_atomically(text, path):
    """Writes ``text`` (UTF-8, newlines as given) to ``path`` through ``atomic_path``. A
    file name that is not UTF-8 (Python's surrogate escapes) is written as its own bytes
    (evaluate's CSV of a Latin-1 "caf\\xe9.png" failed, after the whole evaluation)."""
    with atomic_path(path) as temporary:
        write_text(text, temporary)


def write_text(text, path):
    """``text`` to ``path`` as ``write_text_atomically`` writes it, without the rename
    (into a temporary of ``atomic_path``)."""
    with open(path, "w", encoding="utf-8", errors="surrogateescape", newline="") as handle:
        handle.write(text)


def save_weights_and_config(model, config, weights, replace=True):
    """``model``'s ``weights`` (``NAME.weights.h5``) and its architecture ``config``
    (``NAME.config.json``, which ``penet_tf.models.load_generator`` reads), as one group
    (``save_weights_and_configs``). Returns both paths."""
    return save_weights_and_configs([(model, config, weights)], replace)


def save_weights_and_configs(models, replace=True):
    """Each ``(model, config, weights)`` of ``models``: its ``weights``
    (``NAME.weights.h5``) and architecture ``config`` (``NAME.config.json``), every file
    through ``atomic_path``: all are complete before any is renamed into place, and the
    renames follow each other directly, so the files match (a crash between two renames
    leaves some new files beside old ones; a failed write, a full disk, replaces none:
    a run's generator was replaced and its discriminator not). ``replace=False``: a
    target that appeared meanwhile is not replaced (``FileExistsError``). Returns the
    paths, weights then config per model."""
    written, writes = [], []
    with contextlib.ExitStack() as renames:  # (unwound last first: the renames)
        for model, config, weights in models:
            weights = os.fspath(weights)
            config_path = weights[: -len(".weights.h5")] + ".config.json"
            config_temporary = renames.enter_context(atomic_path(config_path, replace=replace))
            weights_temporary = renames.enter_context(atomic_path(weights, replace=replace))
            writes.append((model, config, config_temporary, weights_temporary))
            written += [weights, config_path]
        for model, config, config_temporary, weights_temporary in writes:
            with open(config_temporary, "w", encoding="utf-8") as handle:
                handle.write(json.dumps(config, indent=2, sort_keys=True) + "\n")
            model.save_weights(weights_temporary, overwrite=True)
    return written


def write_json_atomically(data, path):
    """``data`` as indented, sorted JSON to ``path`` through ``atomic_path``."""
    write_text_atomically(json.dumps(data, indent=2, sort_keys=True) + "\n", path)


# TF Serving reads version folders as int64: past this, a version is never served.
MAX_VERSION = 2**63 - 1


def serving_version(name):
    """The version TF Serving reads a folder name as (its ``safe_strto64``: ASCII digits,
    blanks around them allowed; ``007`` is 7), or None: not a version, or past int64.
    (Python's ``\\d`` took Arabic-Indic and full-width digits, which TF Serving skips,
    and missed " 9", which it serves as version 9.)"""
    found = re.fullmatch(r"[ \t\n\v\f\r]*([0-9]+)[ \t\n\v\f\r]*", name, re.ASCII)
    if found is None or int(found.group(1)) > MAX_VERSION:
        return None
    return int(found.group(1))
