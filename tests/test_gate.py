"""The benchmark gate: floors, verdicts, reports, and the proof that it can fail.

The self-test forces the portable SHA-256 (``IKEQCD_KERNEL=portable``) and runs the gate's
token figures once: the gate must exit 1 naming the figure, the ratio and the floor. The
same run with the kernel chosen at run time must pass. A few seconds; needs ``openssl``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ikeqcd._core import kernel_info
from ikeqcd.errors import InvalidArgument
from ikeqcd.gate import (
    Floor,
    Row,
    failures,
    format_compare,
    format_markdown_report,
    load_floors,
    measure,
    parse_toml_subset,
    read_report,
    write_readme,
)
from ikeqcd.ratios import GROUPS, Measured

from tests.conftest import ROOT

FLOORS = ROOT / "benches" / "floors.toml"
needs_openssl = pytest.mark.skipif(shutil.which("openssl") is None,
                                   reason="openssl is not installed (the token figures' peer)")


def gate(*args: str, kernel: str | None = None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    env.pop("IKEQCD_KERNEL", None)
    if kernel is not None:
        env["IKEQCD_KERNEL"] = kernel
    return subprocess.run([sys.executable, "-m", "ikeqcd.gate", *args], capture_output=True,
                          text=True, env=env, timeout=120, check=False)


def test_floors_cover_every_part_with_reasons() -> None:
    floors = load_floors(FLOORS)
    assert {f.part for f in floors.values()} == set(GROUPS)
    for f in floors.values():
        assert f.floor > 0 and len(f.reason) > 20, f
    # the requirement is the floor of the fraction of the bulk limit
    assert floors["tokens_1t_of_bulk_limit"].floor >= 0.9


def test_toml_subset_matches_tomllib() -> None:
    tomllib = pytest.importorskip("tomllib")
    text = FLOORS.read_text()
    assert parse_toml_subset(text) == tomllib.loads(text)
    with pytest.raises(InvalidArgument, match="cannot read line"):
        parse_toml_subset("[a]\nfloor = fast\n")


def test_bad_floors_file(tmp_path: Path) -> None:
    p = tmp_path / "f.toml"
    p.write_text('[x]\npart = "nope"\nfloor = 1\nreason = "r"\n')
    with pytest.raises(InvalidArgument, match="unknown part"):
        load_floors(p)
    p.write_text('[x]\npart = "tokens"\n')
    with pytest.raises(InvalidArgument, match="needs part, floor and reason"):
        load_floors(p)
    with pytest.raises(InvalidArgument, match="cannot read floors file"):
        load_floors(tmp_path / "missing.toml")
    assert gate("--floors", str(tmp_path / "missing.toml")).returncode == 2


def test_failure_message_names_figure_ratio_and_floor() -> None:
    m = Measured("t", "a/s", "b/s", "x", [1.0, 1.2, 0.9], [1.0, 1.0, 1.0])
    assert m.ratio == pytest.approx(1.0)
    row = Row("k", Floor("k", "tokens", 2.0, "why"), m, verdict="BELOW FLOOR")
    assert failures([row]) == ["gate: k is 1 x, below its floor 2 (t; floor: why)"]
    missing = Row("k", Floor("k", "tokens", 2.0, "why"), None, "openssl is not on PATH",
                  verdict="NOT MEASURED")
    assert failures([missing]) == ["gate: k was not measured: openssl is not on PATH"]


def test_kernel_info_names_the_choice() -> None:
    k = kernel_info()
    assert k["kernel"] in {"portable", "sha2", "avx2 x8"} or re.fullmatch(r"sha-ni x[1248]",
                                                                           k["kernel"])
    if k["sha_ni"] and k["source"] == "calibrated":
        assert {"sha2", "sha-ni x1", "sha-ni x2", "sha-ni x4", "sha-ni x8"} <= set(k["calibration"])
        assert ("avx2 x8" in k["calibration"]) == k["avx2"]
        best = max(k["calibration"], key=k["calibration"].__getitem__)
        assert k["kernel"] == best


@needs_openssl
def test_gate_fails_on_the_portable_kernel_and_passes_on_the_chosen_one(tmp_path: Path) -> None:
    slow = gate("--parts", "tokens", "--reps", "1", "--json", str(tmp_path / "slow.json"),
                kernel="portable")
    assert slow.returncode == 1, slow.stdout + slow.stderr
    assert "portable (IKEQCD_KERNEL)" in slow.stdout
    m = re.search(r"gate: tokens_1t_of_bulk_limit is ([\d.]+) of limit, below its floor 0\.9",
                  slow.stderr)
    assert m is not None, slow.stderr
    assert float(m.group(1)) < 0.5
    assert "gate: FAILED" in slow.stderr
    doc = json.loads((tmp_path / "slow.json").read_text())
    assert doc["machine"]["kernel"] == "portable"
    fast = gate("--parts", "tokens", "--reps", "1")
    assert fast.returncode == 0, fast.stdout + fast.stderr
    assert "gate: passed" in fast.stdout


def test_unknown_part_and_kernel_override() -> None:
    r = gate("--parts", "tokens,bogus")
    assert r.returncode == 2 and "unknown part" in r.stderr
    code = "from ikeqcd._core import kernel_info; print(kernel_info())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       env={**os.environ, "IKEQCD_KERNEL": "turbo"})
    assert "IKEQCD_KERNEL='turbo' ignored" in r.stdout or 'IKEQCD_KERNEL="turbo" ignored' in r.stdout


def _report(ratio: float) -> dict[str, object]:
    return {"machine": {"cpu": "X", "date": "d", "cores": 2, "system": "L", "python": "3",
                        "kernel": "sha-ni x4", "kernel_source": "calibrated", "calibration": {}},
            "ratios": [{"key": "tokens_1t_of_bulk_limit", "ratio": ratio, "title": "T",
                        "ours_per_s": 1e7, "peer_per_s": 9e6, "ours_unit": "tokens/s",
                        "peer_unit": "tokens/s", "unit": "of limit", "floor": 0.9,
                        "verdict": "pass", "why_not": ""}],
            "figures": []}


def test_compare_flags_a_regression() -> None:
    out = format_compare(_report(1.2), _report(0.9))
    assert re.search(r"tokens_1t_of_bulk_limit\s+1\.2\s+0\.9\s+-25\.0%\s+REGRESSION", out)
    assert "REGRESSION" not in format_compare(_report(1.2), _report(1.19))


def test_markdown_into_readme_markers(tmp_path: Path) -> None:
    from ikeqcd.gate import MARK_END, MARK_START

    md = format_markdown_report(_report(1.1))
    assert "Measured on **X**" in md and "| T |" in md
    p = tmp_path / "README.md"
    p.write_text(f"# t\n\n{MARK_START}\nold\n{MARK_END}\nafter\n")
    write_readme(p, md)
    text = p.read_text()
    assert "old" not in text and md in text and text.endswith(f"{MARK_END}\nafter\n")
    p.write_text("no markers")
    with pytest.raises(InvalidArgument, match="no bench markers"):
        write_readme(p, md)
    # the project's README carries the markers
    assert MARK_START in (ROOT / "README.md").read_text()


def test_read_report_errors(tmp_path: Path) -> None:
    p = tmp_path / "r.json"
    p.write_text("[]")
    with pytest.raises(InvalidArgument, match="not an `ikeqcd bench --json` report"):
        read_report(p)
    p.write_text("{")
    with pytest.raises(InvalidArgument, match="cannot read bench report"):
        read_report(p)


def test_a_part_below_a_floor_gets_a_second_look(monkeypatch: pytest.MonkeyPatch) -> None:
    """Once below: measured again, the better run counts; below twice: fails (as a real
    regression does)."""
    floors = {"fig": Floor("fig", "fake", 2.0, "test")}
    runs: list[float] = []

    def fake(reps: int) -> dict[str, Measured]:
        ratio = runs.pop(0)
        return {"fig": Measured("fake figure", "a/s", "b/s", "x", [ratio], [1.0])}

    monkeypatch.setitem(GROUPS, "fake", fake)
    runs[:] = [1.5, 2.5]
    (row,) = measure(floors, ["fake"], 1)
    assert row.verdict == "pass" and row.measured is not None and row.measured.ratio == 2.5
    assert "better of two runs" in row.why_not and not runs
    runs[:] = [1.5, 1.2]
    (row,) = measure(floors, ["fake"], 1)
    assert row.verdict == "BELOW FLOOR" and row.measured is not None and row.measured.ratio == 1.5
    runs[:] = [3.0]
    (row,) = measure(floors, ["fake"], 1)
    assert row.verdict == "pass" and row.why_not == "" and not runs  # measured once
