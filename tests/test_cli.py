"""``penet_tf.cli.run``: the error handling every command line shares."""

import errno

import pytest

from penet_tf.cli import run
from penet_tf.errors import PenetError


class _ServerDown(PenetError):
    exit_status = 1


@pytest.mark.parametrize(
    "error, status, line",
    [
        (ValueError("--size must be a multiple of 64, got 200"), 2, "error: --size must be"),
        (FileNotFoundError(errno.ENOENT, "No such file or directory", "x.png"), 2, "error: "),
        (OSError(errno.ENOSPC, "No space left on device"), 2, "error: [Errno 28] No space"),
        (ImportError("tensorflowjs is not installed"), 2, "error: tensorflowjs is not"),
        (PenetError("the converter failed"), 2, "error: the converter failed"),
        (_ServerDown("server unavailable"), 1, "error: server unavailable"),
        (KeyboardInterrupt(), 130, "interrupted"),
        (KeyboardInterrupt("stopped at step 3"), 130, "interrupted: stopped at step 3"),
        (KeyboardInterrupt("interrupted after 2 of 5 images"), 130, "interrupted after 2 of 5"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, BaseException) else None,
)
def test_known_errors_end_in_one_line_and_an_exit_status(error, status, line, capsys):
    def body(argv):
        assert argv == ["--x"]
        raise error

    assert run(body, ["--x"]) == status
    captured = capsys.readouterr()
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith(line), lines
    assert "Traceback" not in captured.err and captured.out == ""


def _raises(error):
    """A command body that raises ``error``. (Not ``exec("raise ...")``: a
    KeyboardInterrupt out of ``exec`` marks the interpreter as interrupted, and pytest
    run in one process then exited 130 after passing.)"""

    def body(argv):
        raise error

    return body


def test_the_exit_status_of_the_body_and_usage_errors_pass_through(capsys):
    assert run(lambda argv: 1) == 1
    with pytest.raises(SystemExit):
        run(_raises(SystemExit(2)))
    with pytest.raises(ZeroDivisionError):  # a bug is not hidden
        run(lambda argv: 1 / 0)
    assert run(_raises(KeyboardInterrupt()), interrupted="interrupted: none") == 130
    assert capsys.readouterr().err == "interrupted: none\n"


def test_a_command_s_unexpected_error_frees_its_frames_before_exit(monkeypatch, capsys):
    """Left to the interpreter, the traceback kept its frames until shutdown: a tf.data
    iterator still reading photos in one of them made inpaint hang after the traceback
    (6 of 6 runs on 2400 x 3200 photos). A command prints it itself, exit status 1."""
    import gc
    import weakref

    import penet_tf

    class Reader:  # stands for the iterator a frame of the command holds
        pass

    held = []

    def body(argv):
        reader = Reader()
        held.append(weakref.ref(reader))
        raise TypeError("unsupported operand type(s) for %: 'NoneType' and 'int'")

    monkeypatch.setattr(penet_tf, "_COMMAND", True)
    assert run(body) == 1
    gc.collect()
    assert held[0]() is None  # freed before the command returned its status
    err = capsys.readouterr().err
    assert err.startswith("Traceback (most recent call last):")
    assert err.rstrip().endswith(
        "TypeError: unsupported operand type(s) for %: 'NoneType' and 'int'"
    )
    monkeypatch.setattr(penet_tf, "_COMMAND", False)
    with pytest.raises(TypeError):  # in a program that calls main(), it passes through
        run(body)


def test_sigterm_stops_a_command_as_ctrl_c_does_with_its_clean_up(capsys):
    """SIGTERM (a `kill`, a scheduler stopping the job) killed Python at once: no
    ``finally`` ran (temporaries stayed, a converter child went on). It is a Ctrl-C now
    with its own word and exit status, and the handler before it is put back."""
    import os
    import signal
    import time

    cleaned = []

    def body(argv):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # (the handler raises before this ends)
            return 0
        finally:
            cleaned.append(True)

    before = signal.getsignal(signal.SIGTERM)
    assert run(body) == 143 and cleaned == [True]
    assert capsys.readouterr().err == "terminated\n"
    assert signal.getsignal(signal.SIGTERM) == before

    def stopped(argv):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)

    def reworded(argv):
        try:
            stopped(argv)
        except KeyboardInterrupt:
            raise KeyboardInterrupt("interrupted after 2 of 5 images") from None

    assert run(reworded) == 143
    assert capsys.readouterr().err == "terminated after 2 of 5 images\n"
    assert run(stopped, interrupted="interrupted: nothing was written") == 143
    assert capsys.readouterr().err == "terminated: nothing was written\n"


@pytest.mark.parametrize("kind", ["pipe", "socket"])
def test_a_pipe_whose_reader_goes_away_drops_the_output_and_the_command_goes_on(
    capsys, monkeypatch, kind
):  # (capsys first: it is torn down after monkeypatch puts its stream back)
    """``inpaint ... | head`` said "error: [Errno 32] Broken pipe" (exit 2) after its
    results, and training behind a log reader that died stopped at its next progress
    line, its steps since the last checkpoint lost: the output is dropped from there
    on (one line on stderr says so) and the command finishes with its own status."""
    import os
    import sys

    if kind == "pipe":
        read, write = os.pipe()
        os.close(read)  # the reader has gone
    else:  # (systemd's journal reads a service's output through a socket)
        import socket

        ours, theirs = socket.socketpair()
        theirs.close()
        write = ours.detach()
    stdout = os.fdopen(write, "w")
    monkeypatch.setattr(sys, "stdout", stdout)
    done = []

    def body(argv):
        for step in range(3):
            print(f"step {step}", flush=True)
            done.append(step)
        print("finished")  # (flushed by run, at its end)
        return 0

    try:
        assert run(body) == 0
        assert sys.stdout is stdout  # put back
    finally:
        stdout.close()
    assert done == [0, 1, 2]
    assert capsys.readouterr().err.splitlines() == [
        "penet_tf: stdout's reader has gone (a closed pipe): the command goes on without "
        "printing there"
    ]


@pytest.mark.parametrize(
    "cgroup, files, quota",
    [
        ("0::/job/step\n", {"job/cpu.max": "150000 100000", "job/step/cpu.max": "max 1"}, 1.5),
        ("0::/\n", {"cpu.max": "max 100000\n"}, None),  # unlimited
        ("0::/\n", {}, None),  # no cpu controller there
        # v1 (a container without a cgroup namespace: the host's path; its own is the mount)
        ("4:memory:/docker/abc\n3:cpu,cpuacct:/docker/abc\n",
         {"cpu,cpuacct/cpu.cfs_quota_us": "200000", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
         2.0),
        ("1:cpu:/a\n", {"cpu/a/cpu.cfs_quota_us": "-1", "cpu/a/cpu.cfs_period_us": "100000"}, None),
        ("1:cpu:/a\n", {"cpu/a/cpu.cfs_quota_us": "oops", "cpu/a/cpu.cfs_period_us": "0"}, None),
    ],
)  # fmt: skip
def test_the_cpu_quota_is_read_from_cgroups_v1_and_v2(tmp_path, cgroup, files, quota):
    from penet_tf.cli import cpu_quota

    (tmp_path / "cgroup").write_text(cgroup)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    assert cpu_quota(str(tmp_path / "cgroup"), str(tmp_path / "fs")) == quota
    assert cpu_quota(str(tmp_path / "missing")) is None


_FITS = """
import sys
import tensorflow as tf
from penet_tf import cli
cli.cpu_quota = lambda: 0.5
print(cli.run(lambda argv: 0), tf.config.threading.get_intra_op_parallelism_threads(),
      tf.config.threading.get_inter_op_parallelism_threads(), cli.fit_thread_pools())
"""


def test_a_command_sizes_tensorflow_s_threads_to_a_cpu_quota_below_its_cpus(monkeypatch):
    """TensorFlow counts the CPUs, not a container's quota: 64 threads on a 64-core host
    for a 2-CPU limit, stalled in turn by the quota. A command sizes both pools to the
    quota's ceiling before TensorFlow starts (a fresh process: here they are made); a
    pool sized already (by the user's environment, or before) and a quota of all the
    CPUs are left alone."""
    import os
    import subprocess
    import sys

    import tensorflow as tf

    from penet_tf import cli

    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs 2 CPUs or more")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    env.pop("TF_NUM_INTRAOP_THREADS", None)
    env.pop("TF_NUM_INTEROP_THREADS", None)
    result = subprocess.run(
        [sys.executable, "-c", _FITS], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.stdout.split() == ["0", "1", "1", "None"], result.stderr[-2000:]

    sized = {}  # the decisions, in this process (whose pools exist already)
    for pool in ("intra", "inter"):
        monkeypatch.setattr(tf.config.threading, f"get_{pool}_op_parallelism_threads", lambda: 0)
        monkeypatch.setattr(
            tf.config.threading,
            f"set_{pool}_op_parallelism_threads",
            lambda threads, pool=pool: sized.__setitem__(pool, threads),
        )
    monkeypatch.setattr(cli, "cpu_quota", lambda: len(os.sched_getaffinity(0)))
    assert cli.fit_thread_pools() is None and sized == {}  # no fewer than the CPUs
    monkeypatch.setattr(cli, "cpu_quota", lambda: 0.5)
    monkeypatch.setenv("TF_NUM_INTRAOP_THREADS", "3")
    assert cli.fit_thread_pools() == 1 and sized == {"inter": 1}  # the user's intra kept


def test_names_that_are_not_utf8_show_their_bytes_in_messages_and_logs(tmp_path):
    """Python's stand-ins for the bytes (``caf\\udce9.png``) were shown as they are; the
    byte itself is what a user can find in ``ls -b`` or a hex dump. penet_tf's loggers
    log it so: a handler that encodes strictly (a UTF-8 ``FileHandler``, pytest-xdist
    sending a test's captured log, which crashed the suite's run) raised
    UnicodeEncodeError on the stand-in and lost the line."""
    import logging
    import os

    from penet_tf.cli import printable
    from penet_tf.errors import get_logger

    latin = os.fsdecode(b"caf\xe9.png")
    assert printable(latin) == "caf\\xe9.png"
    assert printable("été.png") == "été.png"  # UTF-8 names as they are
    assert printable("\ud800.png") == "\\ud800.png"  # (not a file system's name)
    logger = get_logger("penet_tf.data")
    assert get_logger("penet_tf.data").filters == logger.filters  # (one filter)
    handler = logging.FileHandler(tmp_path / "log.txt", encoding="utf-8")  # (strict)
    handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
    handler.handleError = lambda record: (_ for _ in ()).throw(AssertionError("lost"))
    logger.addHandler(handler)
    try:
        logger.warning("skipped %s (%s)", latin, "été")
        logger.warning("%d of %s", 1, "d.png")  # (others as they are)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert (tmp_path / "log.txt").read_text("utf-8") == (
        "penet_tf.data: skipped caf\\xe9.png (été)\npenet_tf.data: 1 of d.png\n"
    )
