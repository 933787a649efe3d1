"""The benchmark gate: measure the ratios of :mod:`ikeqcd.ratios`, hold each against its floor
in ``benches/floors.toml``, print ``figure | measured | floor | verdict`` and fail below a floor.

    python -m ikeqcd.gate [--parts tokens,scaling,...] [--reps 3] [--json OUT]
                          [--allow-missing KEY,...|all] [--floors benches/floors.toml]

Exit status: 0 when every figure is at or above its floor; 1 when one is below, or was not
measured (no ``openssl`` on PATH, say) and not named in ``--allow-missing``; 2 for bad usage.
A figure that cannot exist here (the 2-thread ratio on a 1-core machine) is "n/a" and passes.
The tolerance lives in the floors themselves (each is set below the spread seen on the
reference machine; ``benches/floors.toml`` says by how much and why), and a part with a figure
below its floor is measured a second time, the better run counting (a busy neighbour slows a
run once; a regression is slow both times).
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikeqcd.errors import InvalidArgument
from ikeqcd.ratios import GROUPS, REPO_ROOT, Measured, NotMeasured

__all__ = ["Floor", "Row", "failures", "format_compare", "format_markdown_report", "format_table",
           "load_floors", "machine", "main", "measure", "parse_toml_subset", "read_report",
           "write_readme"]

DEFAULT_FLOORS = REPO_ROOT / "benches" / "floors.toml"


@dataclass(frozen=True)
class Floor:
    """One committed floor: the part that measures it, the lowest ratio accepted, and why."""

    key: str
    part: str
    floor: float
    reason: str


@dataclass
class Row:
    """A figure's outcome in one gate run."""

    key: str
    floor: Floor
    measured: Measured | None
    why_not: str = ""
    verdict: str = ""

    def as_json(self) -> dict[str, Any]:
        m = self.measured
        return {
            "key": self.key, "part": self.floor.part, "floor": self.floor.floor,
            "verdict": self.verdict, "why_not": self.why_not,
            "title": m.title if m else "", "ratio": m.ratio if m else None,
            "ratios": m.ratios if m else [], "ours_per_s": m.ours_rate if m else None,
            "peer_per_s": m.peer_rate if m else None,
            "ours_unit": m.ours if m else "", "peer_unit": m.peer if m else "",
            "unit": m.unit if m else "",
        }


def parse_toml_subset(text: str) -> dict[str, dict[str, Any]]:
    """The TOML that ``floors.toml`` uses (``[table]``, ``key = number``, ``key = "string"``,
    comments), for Python 3.10, which has no ``tomllib``.

    Raises:
        InvalidArgument: any other line.
    """
    out: dict[str, dict[str, Any]] = {}
    cur: dict[str, Any] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            cur = out.setdefault(line[1:-1].strip(), {})
            continue
        k, eq, v = (x.strip() for x in line.partition("="))
        if not eq or cur is None:
            raise InvalidArgument(f"floors file: cannot read line {raw!r}")
        if v.startswith('"') and v.endswith('"') and len(v) >= 2:
            cur[k] = v[1:-1]
        else:
            try:
                cur[k] = float(v)
            except ValueError:
                raise InvalidArgument(f"floors file: cannot read line {raw!r}") from None
    return out


def _parse_toml(text: str) -> dict[str, dict[str, Any]]:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        return parse_toml_subset(text)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise InvalidArgument(f"floors file is not valid TOML: {e}") from e


def load_floors(path: Path = DEFAULT_FLOORS) -> dict[str, Floor]:
    """Read ``floors.toml``: one table per figure with ``part``, ``floor`` and ``reason``.

    Raises:
        InvalidArgument: a missing file, a table without those keys, or an unknown part.
    """
    try:
        doc = _parse_toml(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise InvalidArgument(f"cannot read floors file {path}: {e}") from e
    except InvalidArgument as e:
        raise InvalidArgument(f"{path}: {e}") from e
    floors = {}
    for key, t in doc.items():
        if not isinstance(t, dict) or not {"part", "floor", "reason"} <= set(t):
            raise InvalidArgument(f"floors file {path}: [{key}] needs part, floor and reason")
        if t["part"] not in GROUPS:
            raise InvalidArgument(f"floors file {path}: [{key}] has unknown part {t['part']!r}")
        floors[key] = Floor(key, str(t["part"]), float(t["floor"]), str(t["reason"]))
    return floors


def machine() -> dict[str, Any]:
    """CPU model, cores, the SHA-256 kernel chosen at run time, Python, date."""
    from ikeqcd._core import build_profile, kernel_info

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    k = kernel_info()
    return {
        "cpu": model, "cores": os.cpu_count() or 1, "kernel": k["kernel"], "avx2": k["avx2"],
        "kernel_source": k["source"], "kernel_note": k["note"], "sha_ni": k["sha_ni"],
        "calibration": k["calibration"], "python": platform.python_version(),
        "system": f"{platform.system()} {platform.release()}", "build": build_profile,
        "date": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "loadavg": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def _below(floors: dict[str, Floor], got: dict[str, Measured]) -> list[str]:
    return [k for k, m in got.items()
            if k in floors and not m.not_applicable and m.ratio < floors[k].floor]


def measure(floors: dict[str, Floor], parts: Sequence[str], reps: int,
            allow_missing: Sequence[str] = ()) -> list[Row]:
    """Run each part's figures and judge them against their floors.

    A part with a figure below its floor is measured once more, and each of its figures keeps
    the better of the two runs (a second look): a neighbour on a shared machine only ever
    slows a run down, while a real regression stays below in both (the forced portable kernel
    does)."""
    rows = []
    second: set[str] = set()
    for part in parts:
        keys = [k for k, f in floors.items() if f.part == part]
        try:
            got = GROUPS[part](reps)
            why = ""
        except NotMeasured as e:
            got, why = {}, str(e)
        if _below(floors, got):
            try:
                again = GROUPS[part](reps)
            except NotMeasured:
                again = {}
            for k, m in again.items():
                if k in got and m.ratio > got[k].ratio:
                    got[k] = m
            second.update(keys)
        for k in keys:
            row = Row(k, floors[k], got.get(k), why or ("" if k in got else "no such figure"))
            if row.measured is None:
                # n/a, with the reason shown: one core, or no Redis/Valkey server to measure
                # the cluster figures against (.ci/run installs redis-server)
                structural = why.startswith(("this machine has one core", "no Redis/Valkey server"))
                allowed = "all" in allow_missing or k in allow_missing
                row.verdict = "n/a" if structural else ("allowed" if allowed else "NOT MEASURED")
            elif row.measured.not_applicable:
                row.verdict, row.why_not = "n/a", row.measured.not_applicable
            else:
                row.verdict = "pass" if row.measured.ratio >= row.floor.floor else "BELOW FLOOR"
                if k in second:
                    row.why_not = "the better of two runs (its part was below a floor once)"
            rows.append(row)
    return rows


def failures(rows: Sequence[Row]) -> list[str]:
    """One clear line per figure that fails the gate."""
    out = []
    for r in rows:
        if r.verdict == "BELOW FLOOR" and r.measured is not None:
            out.append(f"gate: {r.key} is {r.measured.ratio:.3g} {r.measured.unit}, below its floor "
                       f"{r.floor.floor:g} ({r.measured.title}; floor: {r.floor.reason})")
        elif r.verdict == "NOT MEASURED":
            out.append(f"gate: {r.key} was not measured: {r.why_not}")
    return out


def _fmt_rate(x: float | None) -> str:
    if x is None:
        return "-"
    return f"{x / 1e6:.2f} M" if x >= 1e5 else f"{x / 1e3:.1f} k"


def format_table(rows: Sequence[Row], info: dict[str, Any] | None = None) -> str:
    """The gate's plain table."""
    lines = []
    if info is not None:
        lines.append(f"machine: {info['cpu']}, {info['cores']} cores; SHA-256 kernel: "
                     f"{info['kernel']} ({info['kernel_source']}); Python {info['python']}; "
                     f"{info['date']}")
    lines.append(f"{'figure':<28} {'ours/s':>9} {'peer/s':>9} {'measured':>9} {'floor':>7}  verdict")
    for r in rows:
        m = r.measured
        got = f"{m.ratio:.3g}" if m else "-"
        lines.append(f"{r.key:<28} {_fmt_rate(m.ours_rate if m else None):>9} "
                     f"{_fmt_rate(m.peer_rate if m else None):>9} {got:>9} {r.floor.floor:>7g}  "
                     f"{r.verdict}{': ' + r.why_not if r.why_not else ''}")
    return "\n".join(lines)


MARK_START = "<!-- bench:start (generated by `make bench-readme`; edits here are lost) -->"
MARK_END = "<!-- bench:end -->"


def format_markdown_report(report: dict[str, Any]) -> str:
    """The README's performance tables from a bench report: the machine, the gated ratios, then
    the absolute figures."""
    info = report["machine"]
    cal = ", ".join(f"{k} {v / 1e6:.1f} M/s" for k, v in info["calibration"].items())
    la = info.get("loadavg")
    load = f" (load average {la:.1f} at the start: the cores were shared)" if la and la >= 0.5 else ""
    lines = [
        (f"Measured on **{info['cpu']}** ({info['cores']} cores, {info['system']}, Python "
         f"{info['python']}), {info['date']}{load}, with `ikeqcd bench`. SHA-256 kernel chosen at run "
         f"time: **{info['kernel']}** ({info['kernel_source']}"
         f"{'; calibration, tokens/s: ' + cal if cal else ''})."),
        "",
        ("Ratios to a peer measured in the same run (the median of the repetitions) carry across "
         "machines; the floors are the CI gate's (`benches/floors.toml`)."),
        "",
        "| figure | ikeqcd | peer in the same run | ratio | floor | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for r in report["ratios"]:
        if r["ratio"] is None:
            lines.append(f"| `{r['key']}` | not measured: {r['why_not']} | | | {r['floor']:g} | "
                         f"{r['verdict']} |")
            continue
        lines.append(f"| {r['title']} | {_fmt_rate(r['ours_per_s'])} {r['ours_unit']} | "
                     f"{_fmt_rate(r['peer_per_s'])} {r['peer_unit']} | {r['ratio']:.3g} {r['unit']} "
                     f"| {r['floor']:g} | {r['verdict']} |")
    figs = report.get("figures", [])
    if figs:
        lines += ["", "| absolute figure (same run) | value |", "|---|---|"]
        for f in figs:
            v = f["per_second"]
            shown = f"{_fmt_rate(v)} {f['unit']}" if f["unit"].endswith("/s") else f"{v:.1f} {f['unit']}"
            lines.append(f"| {f['name']} | {shown} |")
    return "\n".join(lines)


def write_readme(path: Path, markdown: str) -> None:
    """Replace what lies between :data:`MARK_START` and :data:`MARK_END` in ``path``.

    Raises:
        InvalidArgument: the file cannot be read or lacks the markers.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise InvalidArgument(f"cannot read {path}: {e}") from e
    i, j = text.find(MARK_START), text.find(MARK_END)
    if i < 0 or j < i:
        raise InvalidArgument(f"{path} has no bench markers ({MARK_START} ... {MARK_END})")
    path.write_text(text[: i + len(MARK_START)] + "\n" + markdown + "\n" + text[j:], encoding="utf-8")


def read_report(path: Path) -> dict[str, Any]:
    """Load an ``ikeqcd bench --json`` (or ``python -m ikeqcd.gate --json``) report.

    Raises:
        InvalidArgument: unreadable, not JSON, or not such a report.
    """
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InvalidArgument(f"cannot read bench report {path}: {e}") from e
    if not isinstance(doc, dict) or not isinstance(doc.get("ratios"), list):
        raise InvalidArgument(f"{path} is not an `ikeqcd bench --json` report")
    return doc


def format_compare(old: dict[str, Any], new: dict[str, Any], threshold: float = 0.05) -> str:
    """Per-figure delta of two ``--json`` reports; a drop beyond ``threshold`` is flagged."""
    def ratios(doc: dict[str, Any]) -> dict[str, float]:
        return {r["key"]: r["ratio"] for r in doc.get("ratios", []) if r.get("ratio")}

    o, n = ratios(old), ratios(new)
    lines = [f"old: {old.get('machine', {}).get('cpu', '?')} {old.get('machine', {}).get('date', '')}",
             f"new: {new.get('machine', {}).get('cpu', '?')} {new.get('machine', {}).get('date', '')}",
             f"{'figure':<28} {'old':>9} {'new':>9} {'delta':>8}"]
    for key in list(dict.fromkeys([*o, *n])):
        if key not in o or key not in n:
            lines.append(f"{key:<28} {o.get(key, float('nan')):>9.3g} {n.get(key, float('nan')):>9.3g}"
                         f" {'':>8}  only in one report")
            continue
        d = n[key] / o[key] - 1.0
        flag = "  REGRESSION" if d < -threshold else ("  better" if d > threshold else "")
        lines.append(f"{key:<28} {o[key]:>9.3g} {n[key]:>9.3g} {d:>+8.1%}{flag}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ikeqcd.gate", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default=",".join(GROUPS), help=f"comma list of {', '.join(GROUPS)}")
    ap.add_argument("--reps", type=int, default=3, help="repetitions per figure (median; default 3)")
    ap.add_argument("--floors", type=Path, default=DEFAULT_FLOORS)
    ap.add_argument("--allow-missing", default="", help="figures that may go unmeasured ('all')")
    ap.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = ap.parse_args(argv)
    parts = [p for p in args.parts.split(",") if p]
    try:
        if bad := [p for p in parts if p not in GROUPS]:
            raise InvalidArgument(f"unknown part(s) {bad}: use {', '.join(GROUPS)}")
        if not 1 <= args.reps <= 50:
            raise InvalidArgument(f"--reps must be 1..50, got {args.reps}")
        floors = load_floors(args.floors)
    except InvalidArgument as e:
        print(f"gate: error: {e}", file=sys.stderr)
        return 2
    info = machine()
    rows = measure(floors, parts, args.reps, [s for s in args.allow_missing.split(",") if s])
    print(format_table(rows, info), flush=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"machine": info, "ratios": [r.as_json() for r in rows]},
                                        indent=1))
    bad_lines = failures(rows)
    for line in bad_lines:
        print(line, file=sys.stderr)
    print("gate: FAILED" if bad_lines else "gate: passed", file=sys.stderr if bad_lines else sys.stdout)
    return 1 if bad_lines else 0


if __name__ == "__main__":
    sys.exit(main())
