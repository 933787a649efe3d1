"""Short versions of the robustness campaigns (seconds in all; the long runs and their figures
are in SECURITY.md): the hypothesis fuzzer over the public API, the fuzz seed corpus, the
bad-input table. The constant-time quick check is the cargo test ``tests/ct_quick.rs``; the
short SIGKILL campaign is in ``tests/test_secret.py``."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest
from ikeqcd import wire

ROOT = Path(__file__).resolve().parent.parent


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def fuzz_python() -> ModuleType:
    return _load("fuzz_python")


def test_python_fuzzer_every_target_briefly(fuzz_python: ModuleType) -> None:
    for name in fuzz_python.TARGETS:
        stats = fuzz_python.run_target(name, 0.15, chunk=25, verbose=False)
        assert stats.executions >= 10, name
        assert not stats.findings, f"{name}:\n{stats.findings[0]}"


def test_python_fuzzer_reports_a_finding(fuzz_python: ModuleType) -> None:
    """The harness catches an undocumented exception (so a clean run means something)."""

    def body(d: bytes) -> None:
        fuzz_python._COUNT[0] += 1
        if len(d) > 3:
            raise KeyError("not a documented error")

    fuzz_python.TARGETS["_planted"] = (body, {"d": fuzz_python.datagrams()})
    try:
        stats = fuzz_python.run_target("_planted", 5.0, chunk=50, verbose=False)
    finally:
        del fuzz_python.TARGETS["_planted"]
    assert len(stats.findings) == 1 and "KeyError" in stats.findings[0]


def test_seed_corpus_is_current(tmp_path: Path) -> None:
    """The committed seeds are what scripts/fuzz_seeds.py writes today, and they parse."""
    _load("fuzz_seeds").main(tmp_path)
    committed = ROOT / "fuzz" / "corpus"
    for target_dir in sorted(tmp_path.iterdir()):
        for f in sorted(target_dir.iterdir()):
            assert (committed / target_dir.name / f.name).read_bytes() == f.read_bytes(), f
    req = (committed / "parse_message" / "seed-request").read_bytes()[1:]
    assert wire.parse_message(req).encrypted
    reply = (committed / "parse_qcd_reply" / "seed-qcd-reply").read_bytes()[1:]
    assert len(wire.parse_qcd_reply(reply).tokens) == 2


def test_bad_input_table_prints_every_case() -> None:
    table = _load("bad_input_table").table()
    mod = sys.modules["bad_input"]
    assert table.count("\n| `") == len(mod.CASES) + len(mod.CLI_CASES)
    assert table in (ROOT / "SECURITY.md").read_text(), (
        "SECURITY.md's table is stale: paste the output of scripts/bad_input_table.py"
    )
