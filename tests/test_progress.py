"""The one progress bar (ikeqcd._progress, tqdm): off when stderr is not a terminal unless
forced, and drawn without a traceback for ``simulate``, ``serve`` and ``load`` when stderr is a
real pseudo-terminal (``pty``)."""

from __future__ import annotations

import fcntl
import io
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from ikeqcd import MakerPolicy, TokenMaker, _progress
from ikeqcd.net import Server

linux = pytest.mark.skipif(sys.platform != "linux", reason="serve/load: Linux only")


def test_wanted_follows_the_terminal_and_the_flags() -> None:
    assert not _progress.wanted(stream=io.StringIO())
    r, w = os.pipe()
    with os.fdopen(r) as rf, os.fdopen(w, "w") as wf:
        assert not _progress.wanted(stream=wf)
        assert not _progress.wanted(stream=rf)
    master, slave = pty.openpty()
    with os.fdopen(master, "rb", buffering=0), os.fdopen(slave, "w") as tty:
        assert _progress.wanted(stream=tty)
        assert not _progress.wanted(stream=tty, off=True)  # --no-progress
    assert _progress.wanted(stream=io.StringIO(), force=True)  # --progress
    assert not _progress.wanted(stream=io.StringIO(), force=True, off=True)
    closed = io.StringIO()
    closed.close()
    assert not _progress.wanted(stream=closed)


def test_bar_draws_on_the_given_stream() -> None:
    out = io.StringIO()
    with _progress.Bar("load", 2.0, stream=out) as bar:
        bar.show(1.0, status="sent 5")
        bar.show(3.0, status="sent 9")  # capped at the total
    text = out.getvalue()
    assert "load |" in text and "2.0/2 s, sent 9" in text and text.endswith("\n")
    out = io.StringIO()
    with _progress.Bar("simulate", stream=out) as bar:  # open-ended, then a bar per mode
        bar.show(5.0, desc="qcd/hardened", total=10.0)
        bar.show(10.0, desc="qcd/hardened", total=10.0)
        bar.show(1.0, desc="no-qcd/strongswan", total=4.0)
    assert "no-qcd/strongswan |" in out.getvalue()


def run_on_pty(
    argv: list[str], cwd: Path, size: tuple[int, int] | None = None, timeout: float = 60
) -> tuple[int, str, str]:
    """Run ``python -m ikeqcd ARGV`` with stderr on a pseudo-terminal (stdout a pipe) of
    ``size`` (rows, columns; None: a bare one that reports 0 x 0); returns (exit code,
    stdout, what the terminal showed)."""
    master, slave = pty.openpty()
    if size is not None:
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", *size, 0, 0))
    proc = subprocess.Popen(
        [sys.executable, "-m", "ikeqcd", *argv],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=slave, cwd=cwd, text=True,
    )
    os.close(slave)
    shown = bytearray()

    def drain() -> None:
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:  # EIO: the child closed the terminal
                return
            if not chunk:
                return
            shown.extend(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        proc.kill()
        reader.join(5)
        os.close(master)
    return proc.returncode, out, shown.decode(errors="replace")


def test_simulate_bar_only_on_a_terminal(tmp_path: Path) -> None:
    argv = ["simulate", "--sas", "100", "--policy", "hardened", "--baseline", "strongswan"]
    proc = subprocess.run([sys.executable, "-m", "ikeqcd", *argv], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    code, out, shown = run_on_pty(argv, tmp_path)
    assert code == 0, shown
    assert "Traceback" not in shown and "qcd/hardened |" in shown and "\r" in shown
    assert "|" not in out.splitlines()[0]  # the bar never goes to stdout
    code, _, shown = run_on_pty([*argv, "--no-progress"], tmp_path)
    assert code == 0 and shown == ""


@contextmanager
def server() -> Iterator[Server]:
    srv = Server("127.0.0.1:0", TokenMaker([b"\x33" * 32]), policy=MakerPolicy.unlimited())
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.stop()
        t.join(5)


@linux
def test_load_and_serve_bars_on_a_terminal(tmp_path: Path) -> None:
    with server() as srv:
        target = f"127.0.0.1:{srv.address[1]}"
        argv = ["load", "--target", target, "--rate", "2000", "--duration", "0.6"]
        code, out, shown = run_on_pty(argv, tmp_path, size=(30, 120))
        assert code == 0, shown
        assert "Traceback" not in shown and "load |" in shown and "valid" in shown
        assert "sent" in out and "|" not in out
        proc = subprocess.run([sys.executable, "-m", "ikeqcd", *argv], capture_output=True,
                              text=True, timeout=60, cwd=tmp_path, check=False)
        assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    d = tmp_path / "s"
    d.mkdir(mode=0o700)
    argv = ["serve", "--secret-file", str(d / "qcd.secret"), "--create", "--listen",
            "127.0.0.1:0", "--duration", "0.8", "--stats-interval", "0.2"]
    code, out, shown = run_on_pty(argv, tmp_path, size=(30, 120))
    assert code == 0, shown
    assert "Traceback" not in shown and "serve |" in shown and "tokens 0" in shown
    assert "listening on" in out and "served" in out
    proc = subprocess.run([sys.executable, "-m", "ikeqcd", *argv], capture_output=True,
                          text=True, timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 0 and "|" not in proc.stderr, proc.stderr
    assert "tokens 0" in proc.stderr  # off a terminal: a progress line per interval
