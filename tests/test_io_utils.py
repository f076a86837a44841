"""Atomic writes: a finished file appears whole, with ordinary permissions; a failed one never;
what a killed process left is swept."""

import os
import pathlib
import re
import signal
import stat
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest

from penet_tf.io_utils import (
    FOREIGN_STALE_SECONDS,
    PID_SPACE,
    atomic_path,
    check_file_target,
    check_folder_target,
    find_files,
    sweep_temporaries,
    temporary_path,
    write_json_atomically,
    write_text_atomically,
)


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def test_written_file_has_the_permissions_of_a_plain_open(tmp_path):
    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    target = tmp_path / "out" / "config.json"
    write_json_atomically({"a": 1}, target)
    assert target.read_text() == '{\n  "a": 1\n}\n'
    assert _mode(target) == _mode(plain)
    assert [p.name for p in target.parent.iterdir()] == ["config.json"]


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "weights.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError, match="disk full"):
        with atomic_path(target) as temporary:
            with open(temporary, "wb") as handle:
                handle.write(b"half")
            raise RuntimeError("disk full")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["weights.bin"]


def test_find_files_is_recursive_sorted_and_case_blind(tmp_path_factory):
    tmp_path, shard = tmp_path_factory.mktemp("photos"), tmp_path_factory.mktemp("shard")
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.jpg", "notes.txt", "b/c.webp"):
        (tmp_path / name).write_bytes(b"")
    os.mkfifo(tmp_path / "b" / "pipe.png")  # a training pipeline reading it waited for ever
    os.symlink(tmp_path / "a.jpg", tmp_path / "link.jpg")
    # Linked folders are read (a training set of linked shards trained on the one linked
    # file beside them), each folder once: b not twice, a loop not for ever
    os.symlink(tmp_path / "b", tmp_path / "linked_folder.png")
    os.symlink(tmp_path, tmp_path / "b" / "loop")
    os.symlink(tmp_path.parent, tmp_path / "up")  # (would bring in "shard", "val/"...)
    (shard / "s.jpg").write_bytes(b"")
    os.symlink(shard, tmp_path / "shard")
    # Hidden files and folders, as the inference CLIs' listing: a notebook's checkpoint
    # copy trained as a second image, macOS' resource forks were "unreadable" each epoch.
    (tmp_path / ".ipynb_checkpoints").mkdir()
    for name in (".ipynb_checkpoints/a-checkpoint.jpg", "b/._c.webp", ".hidden.png"):
        (tmp_path / name).write_bytes(b"")
    found = find_files(tmp_path, (".png", ".jpg", ".webp"))
    expected = ("a.jpg", "b/c.webp", "b/z.PNG", "link.jpg", "shard/s.jpg")
    assert found == sorted(str(tmp_path / n) for n in expected)


def test_temporaries_sit_beside_the_target_named_after_the_process(tmp_path):
    target = tmp_path / "out" / "result.weights.h5"
    with atomic_path(target) as temporary:
        assert os.path.basename(temporary) == f".tmp-{os.getpid()}.{PID_SPACE}-result.weights.h5"
        assert os.path.dirname(temporary) == str(target.parent)
        with open(temporary, "wb") as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"new"


def test_a_long_name_s_temporary_fits_the_file_system_and_keeps_its_suffix(tmp_path):
    """.tmp-<pid>-<name> of a 250-byte name was over the 255 bytes a file name may have:
    "File name too long", though the target's own name fitted."""
    target = tmp_path / ("é" * 115 + "x" * 8 + ".weights.h5")  # 249 bytes in UTF-8
    with atomic_path(target) as temporary:
        name = os.path.basename(temporary)
        assert len(os.fsencode(name)) <= 255 and name.endswith("x" * 8 + ".weights.h5")
        assert name.startswith(f".tmp-{os.getpid()}.{PID_SPACE}-")
        with open(temporary, "wb") as handle:
            handle.write(b"new")
    assert target.read_bytes() == b"new"
    assert os.listdir(tmp_path) == [target.name]


def test_a_replaced_file_or_folder_keeps_its_permissions(tmp_path):
    """A private (0600) report replaced by the next run became 0644, readable by all; a
    0700 --out folder replaced by convert --force became 0755."""
    report = tmp_path / "report.json"
    report.write_text("old")
    os.chmod(report, 0o600)
    write_text_atomically("new", report)
    assert report.read_text() == "new" and _mode(report) == 0o600
    folder = tmp_path / "model"
    folder.mkdir()
    os.chmod(folder, 0o700)
    with atomic_path(folder, directory=True) as temporary:
        (pathlib.Path(temporary) / "model.tflite").write_bytes(b"new")
    assert _mode(folder) == 0o700 and (folder / "model.tflite").read_bytes() == b"new"
    fresh = tmp_path / "fresh.json"
    write_text_atomically("x", fresh)
    assert _mode(fresh) == 0o666 & ~_umask()
    os.chmod(fresh, 0o4755)  # setuid: not carried over to new content
    write_text_atomically("y", fresh)
    assert _mode(fresh) == 0o755


def test_a_folder_moved_aside_by_a_killed_replace_is_put_back(tmp_path, dead_pid):
    """Killed between the two renames of a folder's replacement (convert --force): the
    old folder (.tmp-<pid>-old-NAME) and the new one were both swept, and NAME lost."""
    prefix = tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-"
    old, new = pathlib.Path(f"{prefix}old-tflite"), pathlib.Path(f"{prefix}tflite")
    old.mkdir()
    (old / "model.tflite").write_bytes(b"the earlier conversion")
    new.mkdir()
    (new / "model.tflite").write_bytes(b"the new one")
    assert sweep_temporaries(tmp_path) == [str(new)]
    assert os.listdir(tmp_path) == ["tflite"]
    assert (tmp_path / "tflite" / "model.tflite").read_bytes() == b"the earlier conversion"
    # files are never moved aside: .tmp-<pid>-old-photo.png is old-photo.png's temporary
    for name in ("old-photo.png", "photo.png"):
        pathlib.Path(f"{prefix}{name}").write_bytes(b"half written")
    assert len(sweep_temporaries(tmp_path)) == 2
    assert os.listdir(tmp_path) == ["tflite"]
    # a target named before "old-" (model, 1): its new folder was swept first, then the
    # moved-aside one with it
    prefix = f".tmp-{dead_pid}.{PID_SPACE}-"
    for name in ("old-model", "model"):
        (tmp_path / f"{prefix}{name}").mkdir()
        (tmp_path / f"{prefix}{name}" / "model.onnx").write_bytes(name.encode())
    assert sweep_temporaries(tmp_path) == [str(tmp_path / f"{prefix}model")]
    assert (tmp_path / "model" / "model.onnx").read_bytes() == b"old-model"
    # An older version's pair (.tmp-<pid>-old-NAME): put back too, though an older
    # version's names are not swept outside run folders (they may be the user's).
    for name in ("old-tfjs", "tfjs"):
        (tmp_path / f".tmp-{dead_pid}-{name}").mkdir()
        (tmp_path / f".tmp-{dead_pid}-{name}" / "model.json").write_bytes(name.encode())
    assert sweep_temporaries(tmp_path) == []
    assert (tmp_path / "tfjs" / "model.json").read_bytes() == b"old-tfjs"
    assert (tmp_path / f".tmp-{dead_pid}-tfjs").is_dir()  # (kept: not removed)


def test_a_directory_is_renamed_into_place_whole(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("previous")
    with atomic_path(target, directory=True) as temporary:
        assert os.listdir(temporary) == []
        (pathlib.Path(temporary) / "new.txt").write_text("complete")
        assert (target / "old.txt").exists()  # the old one stays until the end
    assert os.listdir(target) == ["new.txt"]
    assert sorted(os.listdir(tmp_path)) == ["model"]
    # replace=False: an existing non-empty target is never replaced.
    with pytest.raises(OSError):
        with atomic_path(target, directory=True, replace=False) as temporary:
            (pathlib.Path(temporary) / "other.txt").write_text("x")
    assert os.listdir(target) == ["new.txt"] and sorted(os.listdir(tmp_path)) == ["model"]
    # A failure removes the half-written directory.
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "v2", directory=True) as temporary:
            (pathlib.Path(temporary) / "half").write_text("x")
            raise KeyboardInterrupt
    assert sorted(os.listdir(tmp_path)) == ["model"]


# A process that writes through atomic_path and waits (killed -9 by the test). io_utils
# is loaded by path: it needs no TensorFlow, so this costs a plain Python start.
_WRITER = """
import importlib.util, sys, time
spec = importlib.util.spec_from_file_location("io_utils", sys.argv[1])
io_utils = importlib.util.module_from_spec(spec)
spec.loader.exec_module(io_utils)
with io_utils.atomic_path(sys.argv[2], directory=sys.argv[3] == "dir") as temporary:
    if sys.argv[3] == "dir":
        open(temporary + "/saved_model.pb", "wb").write(b"half")
    else:
        open(temporary, "wb").write(b"half")
    print(temporary, flush=True)
    time.sleep(60)
"""


def test_what_a_kill_9_leaves_is_swept_and_a_running_writer_is_not(tmp_path):
    module = os.path.join(os.path.dirname(__file__), "..", "penet_tf", "io_utils.py")
    killed = []
    for kind, name in (("file", "result.png"), ("dir", "3")):
        process = subprocess.Popen(
            [sys.executable, "-c", _WRITER, module, str(tmp_path / name), kind],
            stdout=subprocess.PIPE,
            text=True,
        )
        temporary = process.stdout.readline().strip()
        process.send_signal(signal.SIGKILL)
        process.wait()
        process.stdout.close()
        assert os.path.exists(temporary)  # what kill -9 leaves
        killed.append(temporary)
    (tmp_path / ".tmp-x7f3.json").write_text("{}")  # an older version's leftover (no pid)
    (tmp_path / "mine.txt").write_text("the user's")
    (tmp_path / ".tmp-cache").mkdir()  # the user's too: swept, with its files, before
    (tmp_path / ".tmp-cache" / "a.bin").write_bytes(b"x")
    with atomic_path(tmp_path / "busy.png") as busy:  # this process is still writing it
        open(busy, "wb").write(b"in progress")
        removed = sweep_temporaries(tmp_path)
        assert os.path.exists(busy)
    assert sorted(removed) == sorted(killed)
    assert sorted(os.listdir(tmp_path)) == [".tmp-cache", ".tmp-x7f3.json", "busy.png", "mine.txt"]
    # In a folder of penet_tf's own (a run folder), older versions' names go too.
    assert sweep_temporaries(tmp_path, older_versions=True) == [
        str(tmp_path / ".tmp-cache"),
        str(tmp_path / ".tmp-x7f3.json"),
    ]


def test_containers_sharing_a_folder_keep_their_temporaries_apart(tmp_path, monkeypatch):
    """Two containers writing one shared folder both run as pid 1: their temporaries had
    one name, each removed the other's live one as its own leftover, and an export
    renamed the other's weights into its version (exit status 0); a sweep in one
    container removed the other's live temporary (its pid does not run here)."""
    import penet_tf.io_utils as io_utils

    mine = os.path.basename(temporary_path(tmp_path / "1"))
    monkeypatch.setattr(io_utils, "PID_SPACE", "0123abcd")  # another container, same pid
    theirs = os.path.basename(temporary_path(tmp_path / "1"))
    assert mine != theirs and theirs == f".tmp-{os.getpid()}.0123abcd-1"
    monkeypatch.undo()
    dead = 2**22 + 12345  # above pid_max: no such process here
    live = tmp_path / f".tmp-{dead}.0123abcd-2"  # another space's, being written
    (live / "variables").mkdir(parents=True)
    stale = tmp_path / f".tmp-{dead}.0123abcd-3"  # another space's, untouched for a day
    (stale / "variables").mkdir(parents=True)
    day_ago = time.time() - FOREIGN_STALE_SECONDS - 60
    for path in (stale / "variables", stale):
        os.utime(path, (day_ago, day_ago))
    killed = tmp_path / f".tmp-{dead}.{PID_SPACE}-4"  # this space's, its process gone
    killed.mkdir()
    assert sorted(sweep_temporaries(tmp_path)) == [str(stale), str(killed)]
    assert os.path.isdir(live / "variables")


def test_on_windows_the_checks_and_the_sweep_use_what_it_has(tmp_path, monkeypatch, dead_pid):
    """Windows has no ``os.pathconf`` (every command that writes stopped with an
    AttributeError traceback), and its ``os.kill(pid, 0)`` sends a Ctrl-C to the console
    (or fails with WinError 87): this machine's leftovers are swept there as another
    machine's are, once untouched for a day."""
    import penet_tf.io_utils as io_utils

    monkeypatch.delattr(os, "pathconf")
    assert io_utils.name_max(tmp_path) == io_utils.NAME_MAX
    check_file_target(tmp_path / "result.png", "--out")
    long = os.path.basename(temporary_path(tmp_path / ("x" * 200 + ".png")))
    assert len(os.fsencode(long)) <= io_utils.NAME_MAX and long.endswith(".png")
    killed = tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-1"
    old = tmp_path / f".tmp-{dead_pid}.{PID_SPACE}-2"
    killed.mkdir()
    old.mkdir()
    day_ago = time.time() - FOREIGN_STALE_SECONDS - 60
    os.utime(old, (day_ago, day_ago))
    kills = []
    monkeypatch.setattr(os, "kill", lambda *args: kills.append(args))
    monkeypatch.setattr(os, "name", "nt")
    swept = sweep_temporaries(tmp_path)
    monkeypatch.setattr(os, "name", "posix")
    assert swept == [str(old)] and killed.is_dir() and kills == []


def test_two_spellings_of_one_file_are_one_target(tmp_path):
    """macOS and Windows compare names ignoring case: ``--out one/PHOTO.png`` is the
    input ``one/photo.png`` there, and was written over it (the real paths differ). A
    hard link stands in here for the second spelling of the same file."""
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"mine")
    os.link(photo, tmp_path / "PHOTO.png")
    with pytest.raises(ValueError, match="would replace the input"):
        check_file_target(tmp_path / "PHOTO.png", "--out", inputs=[photo])


def test_a_target_in_a_folder_that_cannot_be_written_is_refused_first(tmp_path, monkeypatch):
    """Found at the first write, an unwritable --out ended a whole evaluation (its report
    lost) with "Permission denied: .../.tmp-5923-report.json". (The tests run as root,
    whom permissions do not stop: os.access answers as for another user.)"""
    from penet_tf import io_utils

    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(io_utils.os, "access", lambda path, mode: str(path) != str(locked))
    message = f"the folder {locked} cannot be written (permission denied)"
    with pytest.raises(ValueError, match=re.escape(message)):
        io_utils.check_folder_target(locked)
    with pytest.raises(ValueError, match=re.escape(message)):
        io_utils.check_folder_target(locked / "new" / "deeper")  # made inside it
    with pytest.raises(ValueError, match=re.escape(message)):
        io_utils.check_file_target(locked / "report.json")
    io_utils.check_folder_target(tmp_path / "free")
    io_utils.check_file_target(tmp_path / "report.json")
    # A read-only mount (a camera card, a read-only bind mount) says so
    monkeypatch.setattr(io_utils.os, "statvfs", lambda path: SimpleNamespace(f_flag=os.ST_RDONLY))
    with pytest.raises(ValueError, match=re.escape(f"{locked} cannot be written (read-only file")):
        io_utils.check_folder_target(locked)


def test_text_with_a_file_name_that_is_not_utf8_is_written_as_its_bytes(tmp_path):
    """evaluate's CSV of a Latin-1 "caf\\xe9.png" failed ("surrogates not allowed") after
    the whole evaluation; the name is written as the file system's own bytes."""
    name = os.fsdecode(b"caf\xe9.png")
    write_text_atomically(f"name\n{name}\n", tmp_path / "report.csv")
    assert (tmp_path / "report.csv").read_bytes() == b"name\ncaf\xe9.png\n"


def test_targets_below_a_dangling_link_or_over_the_name_limit_are_refused_first(tmp_path):
    """Found after the work: evaluate --out reports/val.json with ``reports`` a link to
    nothing ran the whole evaluation, then "[Errno 17] File exists"; an over-long name
    failed at the rename, naming the temporary."""
    (tmp_path / "reports").symlink_to(tmp_path / "nowhere")
    for check, target in (
        (check_file_target, tmp_path / "reports" / "val.json"),
        (check_folder_target, tmp_path / "reports" / "sub" / "res"),
        (check_folder_target, tmp_path / "reports"),
    ):
        with pytest.raises(ValueError, match="reports is a symbolic link to .*nowhere, which"):
            check(str(target))
    for check in (check_file_target, check_folder_target):
        with pytest.raises(ValueError, match="its name is 300 bytes, longer than the 255"):
            check(str(tmp_path / ("x" * 300)))
    check_file_target(str(tmp_path / ("x" * 255)))  # at the limit: fine
