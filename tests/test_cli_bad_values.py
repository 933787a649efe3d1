"""Every option of every subcommand, fed bad values: refused before any work starts.

The table is built from ``build_parser()`` itself: each value-taking option must have one of
the checking types of :mod:`ikeqcd._options` (or ``choices``), so an option added without one
fails :func:`test_every_option_is_checked`, and each one gets the cells of its kind:

- numbers: negative, zero, huge, non-numeric, ``inf``, ``nan``. Zero and ``inf`` are refused
  unless listed in :data:`ZERO_OK` / :data:`INF_OK` (where they must be accepted, and where
  they mean something special the option's help must say what);
- paths: a missing directory, a directory, an unwritable file;
- addresses, hex datagrams and choices: a malformed value.

A refused cell must exit 2 (1 allowed for a path whose content is refused when read), with a
last stderr line ``ikeqcd CMD: error: argument OPT: ...`` and no traceback. The cells run
in-process with every subcommand's handler replaced by one that records the call, so a cell
that got through parsing cannot start real work; the path cells whose file is only refused
when read run the real handler, which fails before binding, sending or simulating.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ikeqcd import _options
from ikeqcd import cli as cli_module
from ikeqcd.cli import build_parser, main

BAD_NUMBERS = {
    "negative": "-5",
    "zero": "0",
    "huge": "99999999999999999999",
    "non-numeric": "many",
    "inf": "inf",
    "nan": "nan",
}

# Options where 0 is a legal value; the second item says where it means something special
# (the option's help must then say what).
ZERO_OK: dict[tuple[str, str], bool] = {
    ("simulate", "--crash-at"): False,
    ("simulate", "--reboot-time"): False,
    ("simulate", "--rtt"): False,
    ("simulate", "--loss"): False,
    ("simulate", "--qcd-fraction"): True,
    ("simulate", "--loss-to-b"): False,
    ("simulate", "--loss-to-a"): False,
    ("simulate", "--custom-retransmits"): False,
    ("simulate", "--seed"): False,
    ("serve", "--duration"): False,
    ("serve", "--stats-interval"): True,
    ("serve", "--prometheus"): True,
    ("serve", "--per-source-rate"): False,
    ("serve", "--per-source-burst"): False,
    ("serve", "--global-rate"): False,
    ("serve", "--global-burst"): False,
    ("serve", "--bare-rate"): True,
    ("serve", "--token-window"): False,
    ("serve", "--grace"): False,
    ("load", "--rate"): True,
    ("load", "--duration"): False,
    ("load", "--seed"): False,
    ("load", "--body-len"): False,
    ("load", "--min-valid"): False,
}
# Options where ``inf`` has a documented meaning (no limit; as fast as possible).
INF_OK = {
    ("serve", "--per-source-rate"),
    ("serve", "--per-source-burst"),
    ("serve", "--global-rate"),
    ("serve", "--global-burst"),
    ("serve", "--bare-rate"),
    ("load", "--rate"),
}


def subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def value_actions() -> Iterator[tuple[str, argparse.Action]]:
    for name, sp in subparsers().items():
        for a in sp._actions:
            if a.nargs == 0 or isinstance(a, argparse._HelpAction):
                continue
            yield name, a


def opt_name(a: argparse.Action) -> str:
    return a.option_strings[0] if a.option_strings else a.dest


@dataclass(frozen=True)
class Cell:
    command: str
    option: str
    what: str
    value: str
    accept: bool

    @property
    def id(self) -> str:
        return f"{self.command} {self.option} {self.what}"


def number_cells() -> list[Cell]:
    cells = []
    for cmd, a in value_actions():
        if isinstance(a.type, _options.Number):
            for what, value in BAD_NUMBERS.items():
                key = (cmd, opt_name(a))
                accept = (what == "zero" and key in ZERO_OK) or (what == "inf" and key in INF_OK)
                cells.append(Cell(cmd, opt_name(a), what, value, accept))
    return cells


def path_cells() -> list[Cell]:
    return [
        Cell(cmd, opt_name(a), what, "", False)
        for cmd, a in value_actions()
        if isinstance(a.type, _options.Path)
        for what in ("missing directory", "directory", "unwritable file")
    ]


def other_cells() -> list[Cell]:
    cells = []
    for cmd, a in value_actions():
        if isinstance(a.type, _options.Address):
            for v in ("nowhere", "127.0.0.1:99999", "::1:500", ":500", "127.0.0.1:-1"):
                cells.append(Cell(cmd, opt_name(a), f"address {v!r}", v, False))
        elif isinstance(a.type, _options.ClusterUrl):
            for v in ("http://127.0.0.1:6379/0", "redis://:secret@127.0.0.1:6379/0",
                      "redis://127.0.0.1:99999/0", "redis://127.0.0.1:6379/x", "redis:///0"):
                cells.append(Cell(cmd, opt_name(a), f"cluster URL {v!r}", v, False))
        elif isinstance(a.type, _options.Name):
            for v in ("", "-lead", "a b", "x" * 64):
                cells.append(Cell(cmd, opt_name(a), f"name {v!r}", v, False))
        elif isinstance(a.type, _options.HexDatagram):
            cells.append(Cell(cmd, opt_name(a), "not hex", "zz", False))
        elif a.choices is not None:
            cells.append(Cell(cmd, opt_name(a), "not a choice", "bogus", False))
    return cells


# -- running a cell ----------------------------------------------------------------------


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "private").mkdir(mode=0o700)
    return tmp_path


def base_argv(cmd: str, option: str, work: Path) -> list[str]:
    """The least each subcommand needs besides the option under test (all harmless)."""
    secret = str(work / "private" / "qcd.secret")
    if cmd == "serve":
        base = ["--listen", "127.0.0.1:0", "--duration", "0"]
        if option.startswith("--cluster-") or option == "--node":
            base += ["--cluster", "redis://127.0.0.1:9/0", "--node", "n1"]
            base = base if option != "--node" else base[:-2]
        return base if option == "--secret-file" else [*base, "--secret-file", secret]
    if cmd == "load":
        base = ["--target", "127.0.0.1:9", "--duration", "0"]
        return base if option == "--rate" else [*base, "--rate", "10"]
    if cmd == "secret":
        action = {"--output": "export", "--input": "import", "action": None}.get(option, "fingerprint")
        out = [] if action is None else [action]
        return out if option == "--file" else [*out, "--file", secret]
    if cmd == "cluster":
        base = [] if option == "action" else ["status"]
        return base if option == "--cluster" else [*base, "--cluster", "redis://127.0.0.1:9/0"]
    if cmd == "simulate" and option.startswith("--custom-"):
        return ["--baseline", "custom"]
    if cmd == "simulate" and option == "--cluster-password-file":
        return ["--attack", "standby-replay", "--cluster", "2", "--cluster-url", "redis://127.0.0.1:9/0"]
    if cmd == "decode" and option != "hex":
        return ["00"] if option == "--secret-file" else []
    return []


def argv_for(cell: Cell, work: Path, value: str) -> list[str]:
    base = base_argv(cell.command, cell.option, work)
    if cell.option.startswith("-"):
        return [cell.command, *base, cell.option, value]
    return [cell.command, value, *base] if cell.option != "hex" else [cell.command, value]


@pytest.fixture
def no_work(monkeypatch: pytest.MonkeyPatch) -> list[argparse.Namespace]:
    """Every subcommand's handler records its call and does nothing."""
    started: list[argparse.Namespace] = []
    real = cli_module.build_parser

    def record(args: argparse.Namespace) -> int:
        started.append(args)
        return 0

    def patched() -> argparse.ArgumentParser:
        parser = real()
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        for sp in sub.choices.values():
            sp.set_defaults(handler=record)
        return parser

    monkeypatch.setattr(cli_module, "build_parser", patched)
    return started


def refused(argv: list[str], option: str, capsys: pytest.CaptureFixture[str]) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    out, err = capsys.readouterr()
    assert e.value.code == 2, (argv, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"ikeqcd {argv[0]}: error: argument {option}"), last
    assert "Traceback" not in err and out == ""
    return last


@pytest.mark.parametrize("cell", number_cells() + other_cells(), ids=lambda c: c.id)
def test_bad_value(
    cell: Cell, workdir: Path, no_work: list[argparse.Namespace],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = argv_for(cell, workdir, cell.value)
    if cell.accept:
        assert main(argv) == 0, capsys.readouterr().err
        assert len(no_work) == 1
        return
    option = cell.option if cell.option != "action" else "action"
    last = refused(argv, option, capsys)
    assert not no_work, "a refused value reached the handler"
    if isinstance(cell, Cell) and cell.what in BAD_NUMBERS:
        assert "must be" in last  # what is allowed


def unwritable(path: Path) -> None:
    path.write_bytes(b"neither a pcap nor a secret file\n")
    path.chmod(0o444)
    if os.access(path, os.W_OK):  # root: permission bits do not stop it; immutability does
        chattr = shutil.which("chattr")
        if chattr is None or subprocess.run([chattr, "+i", str(path)], capture_output=True,
                                            check=False).returncode != 0:
            pytest.skip("running as root without chattr +i here: cannot make an unwritable file")
        assert not os.access(path, os.W_OK)


@pytest.fixture
def cleanup_immutable(workdir: Path) -> Iterator[None]:
    yield
    chattr = shutil.which("chattr")
    if chattr is not None:
        for p in workdir.rglob("*"):
            subprocess.run([chattr, "-i", str(p)], capture_output=True, check=False)


@pytest.mark.parametrize("cell", path_cells(), ids=lambda c: c.id)
def test_bad_path(
    cell: Cell, workdir: Path, no_work: list[argparse.Namespace],
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
    cleanup_immutable: None,
) -> None:
    action = dict(value_actions_by_key())[(cell.command, cell.option)]
    assert isinstance(action.type, _options.Path)
    ext = action.type.extensions[0] if action.type.extensions else ".dat"
    if cell.what == "missing directory":
        value = str(workdir / "no" / "such" / f"file{ext}")
    elif cell.what == "directory":
        value = str(workdir / "private")
    else:
        target = workdir / "private" / f"ro{ext}"
        unwritable(target)
        value = str(target)
    argv = argv_for(cell, workdir, value)
    if cell.what != "unwritable file" or action.type.mode == "out":
        last = refused(argv, cell.option, capsys)
        assert not no_work
        assert ("does not exist" in last) or ("is a directory" in last) or ("not writable" in last)
        return
    # a file to read: readable, so only reading it can refuse it; run the real handler
    # (it fails before any work: the file is not a secret, a pcap or a blob).
    monkeypatch.setattr(cli_module, "build_parser", build_parser)
    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(b"")))
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 1, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"ikeqcd {cell.command}: error:"), err
    assert value in lines[0] and "Traceback" not in err and out == ""


def value_actions_by_key() -> Iterator[tuple[tuple[str, str], argparse.Action]]:
    for cmd, a in value_actions():
        yield (cmd, opt_name(a)), a


def test_every_option_is_checked() -> None:
    """Each value-taking option has a checking type or choices; bounds are finite; the table
    names only options that exist; special zero/inf meanings are in the help."""
    keys = set()
    for cmd, a in value_actions():
        key = (cmd, opt_name(a))
        keys.add(key)
        kinds = (_options.Number, _options.Path, _options.Address, _options.HexDatagram,
                 _options.ClusterUrl, _options.Name)
        assert isinstance(a.type, kinds) or a.choices is not None, f"{key}: no checking type"
        if isinstance(a.type, _options.Number):
            assert a.type.lo >= 0 and a.type.hi < 1e20, key
            help_ = a.help or ""
            if ZERO_OK.get(key):
                assert "0" in help_ and ("=" in help_ or "0:" in help_ or "mean" in help_), key
            if key in INF_OK:
                assert "inf" in help_, key
    assert set(ZERO_OK) <= keys and INF_OK <= keys
    cells = number_cells() + path_cells() + other_cells()
    assert {c.command for c in cells} == set(subparsers())


@pytest.mark.parametrize(
    "argv",
    [
        ["load", "--sas", "99999999999999999999", "--rate", "10"],
        ["simulate", "--plot", "detection.txt"],
    ],
)
def test_subprocess_smoke(argv: list[str], tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ikeqcd", *argv], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path, check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"ikeqcd {argv[0]}: error: argument")
    assert proc.stdout == "" and not list(tmp_path.iterdir())
