"""Atomic writes: a finished file appears whole, with ordinary permissions; a failed one never."""

import os
import stat

import pytest

from penet_tf.io_utils import atomic_path, find_files, write_json_atomically


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


def test_find_files_is_recursive_sorted_and_case_blind(tmp_path):
    (tmp_path / "b").mkdir()
    for name in ("b/z.PNG", "a.jpg", "notes.txt", "b/c.webp"):
        (tmp_path / name).write_bytes(b"")
    found = find_files(tmp_path, (".png", ".jpg", ".webp"))
    assert found == sorted(str(tmp_path / n) for n in ("a.jpg", "b/c.webp", "b/z.PNG"))
