"""The source distribution: the checkout's files, so that its tests run from it."""

import os
import shutil
import subprocess
import sys
import tarfile

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tracked_files():
    try:
        listed = subprocess.run(
            ["git", "-C", REPO, "ls-files", "-z"], capture_output=True, check=True, timeout=60
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return sorted(name for name in listed.stdout.decode().split("\0") if name)


def test_the_sdist_holds_every_file_of_the_checkout(tmp_path):
    """Without MANIFEST.in, setuptools' sdist had the 31 test modules but not conftest.py
    or the *_helpers.py they import ("13 errors" collecting them), nor configs/,
    serving/, scripts/ or demos/web/, which the README's commands name."""
    pytest.importorskip("setuptools", minversion="77")  # (pyproject's build requirement)
    files = _tracked_files()
    source = tmp_path / "src"
    for name in files:
        target = source / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.join(REPO, name), target)
    built = subprocess.run(
        [sys.executable, "-c", "from setuptools import build_meta as b; "
         f"print(b.build_sdist({str(tmp_path / 'dist')!r}))"],
        cwd=source, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert built.returncode == 0, built.stderr[-2000:]
    archive = tmp_path / "dist" / built.stdout.split()[-1]
    with tarfile.open(archive) as sdist:
        inside = {name.split("/", 1)[1] for name in sdist.getnames() if "/" in name}
    assert set(files) - inside == set()
    assert not {name for name in inside if "node_modules" in name or "__pycache__" in name}
