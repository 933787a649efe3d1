"""Regenerate the committed reference output of the simulator (run by hand, never by pytest).

    python tests/sim_reference/make.py

Each case is a small fixed-seed run; the files hold every figure of every mode except the wall
times and the process's memory, plus each mode's detection times. ``tests/test_sim_reference.py``
compares a fresh run against them.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from ikeqcd.sim import SimConfig, simulate

HERE = Path(__file__).resolve().parent

CASES: dict[str, dict[str, Any]] = {
    "all_modes": {"sas": 2000, "seed": 1},
    "loss": {"sas": 1000, "seed": 5, "loss": 0.05},
    "standby_replay": {"sas": 1000, "seed": 2, "attack": "standby-replay"},
}

VOLATILE = {"wall_s", "datagrams_per_s"}


def figures(case: str) -> dict[str, Any]:
    report = simulate(SimConfig(**CASES[case]))
    out: dict[str, Any] = {"config": CASES[case], "results": []}
    for r in report.results:
        d = {k: v for k, v in vars(r).items() if k not in VOLATILE}
        d["detection_times"] = sorted(d["detection_times"])
        out["results"].append(d)
    return out


def main() -> int:
    for case in sys.argv[1:] or CASES:
        (HERE / f"{case}.json").write_text(json.dumps(figures(case), indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
