"""What the command line tells a shell user when something is wrong: the CLI's fix (never the
Python API's), right and safe advice about the secret file's path, and a load run that got no
reply failing loudly (real UDP sockets on loopback)."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from ikeqcd.cli import main

API_WORDS = ("create()", "load()", "load_or_create()", "replace=True", "algorithm=")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(list(argv))
    except SystemExit as e:
        code = int(e.code or 0)
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return code, out, err.strip().splitlines()[-1] if err.strip() else ""


@pytest.fixture
def private(tmp_path: Path) -> Path:
    d = tmp_path / "private"
    d.mkdir(mode=0o700)
    return d


def test_init_never_creates_a_missing_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "nonexistent" / "dir" / "q.secret"
    code, _, err = run(capsys, "secret", "init", "--file", str(target))
    assert code == 2 and "argument --file" in err and f"mkdir -m 700 {target.parent}" in err
    assert not (tmp_path / "nonexistent").exists()
    code, _, err = run(capsys, "serve", "--secret-file", str(target), "--create", "--duration", "0")
    assert code == 2 and "mkdir -m 700" in err and not (tmp_path / "nonexistent").exists()


def test_missing_file_names_the_cli_fix(private: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = private / "qcd.secret"
    code, _, err = run(capsys, "secret", "fingerprint", "--file", str(f))
    assert code == 1 and f"ikeqcd secret init --file {f}" in err
    code, _, err = run(capsys, "serve", "--secret-file", str(f), "--listen", "127.0.0.1:0",
                       "--duration", "0")
    assert code == 1 and "ikeqcd secret init --file" in err and "--create" in err
    for e in (err,):
        assert not any(w in e for w in API_WORDS), e


def test_existing_file_and_import(private: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = private / "qcd.secret"
    assert run(capsys, "secret", "init", "--file", str(f))[0] == 0
    code, _, err = run(capsys, "secret", "init", "--file", str(f))
    assert code == 1 and "never replaced" in err and "ikeqcd secret rotate --file" in err
    assert not any(w in err for w in API_WORDS), err
    blob = private / "blob"
    assert run(capsys, "secret", "export", "--file", str(f), "--output", str(blob))[0] == 0
    code, _, err = run(capsys, "secret", "export", "--file", str(f), "--output", str(blob))
    assert code == 1 and "--output" in err and "already exists" in err
    code, _, err = run(capsys, "secret", "import", "--file", str(f), "--input", str(blob))
    assert code == 1 and "--replace" in err and not any(w in err for w in API_WORDS), err
    assert run(capsys, "secret", "import", "--file", str(f), "--input", str(blob),
               "--replace")[0] == 0


def test_directory_symlink_and_shared_parent(
    private: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "secret", "fingerprint", "--file", str(private))
    assert code == 2 and "is a directory" in err and "qcd.secret" in err and "chmod" not in err
    real = private / "qcd.secret"
    assert run(capsys, "secret", "init", "--file", str(real))[0] == 0
    link = private / "link.secret"
    link.symlink_to(real)
    code, _, err = run(capsys, "secret", "fingerprint", "--file", str(link))
    assert code == 1 and "symlink" in err and str(real) in err and "chmod" not in err
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp
    os.rename(real, shared / "qcd.secret")
    code, _, err = run(capsys, "secret", "fingerprint", "--file", str(shared / "qcd.secret"))
    assert code == 1 and "sticky" in err and "mkdir -m 700" in err and "chmod" not in err
    open_dir = tmp_path / "mine"
    open_dir.mkdir(mode=0o700)
    os.chmod(open_dir, 0o777)
    os.rename(shared / "qcd.secret", open_dir / "qcd.secret")
    code, _, err = run(capsys, "secret", "fingerprint", "--file", str(open_dir / "qcd.secret"))
    assert code == 1 and f"chmod go-w {open_dir}" in err  # this user's own directory: fix it


def test_custom_timers_need_the_custom_baseline(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "simulate", "--custom-timeout", "3", "--custom-factor", "1.5")
    assert code == 2 and "--custom-timeout, --custom-factor" in err and "--baseline custom" in err
    code, _, err = run(capsys, "simulate", "--baseline", "libreswan", "--custom-retransmits", "2")
    assert code == 2 and "--baseline custom" in err


def test_load_where_nothing_listens_fails(capsys: pytest.CaptureFixture[str]) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: the kernel answers ICMP port unreachable
    code = main(["load", "--target", f"127.0.0.1:{port}", "--rate", "2000", "--duration", "0.2",
                 "--timeout", "0.2", "--json", "--no-progress"])
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert code == 1 and report["sent"] > 0 and report["answered"] == 0
    assert report["recv_errors"] > 0
    line = err.strip().splitlines()[-1]
    assert line.startswith("ikeqcd load: error: nothing answered") and "ICMP" in line


def test_load_where_nobody_answers_fails(capsys: pytest.CaptureFixture[str]) -> None:
    """A socket that receives and never replies: no ICMP, no reply at all."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    try:
        code = main(["load", "--target", f"127.0.0.1:{port}", "--rate", "2000", "--duration",
                     "0.2", "--timeout", "0.2", "--no-progress"])
    finally:
        s.close()
    out, err = capsys.readouterr()
    assert code == 1 and "latency   none" in out and "0.0 us" not in out
    assert "no reply at all" in err.strip().splitlines()[-1]
