"""The simulator's results for a given seed against committed reference output.

The reference files were written by ``tests/sim_reference/make.py`` with the simulator before
its batch rewrite; every figure except wall times must come out the same.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from ikeqcd.sim import SimConfig, simulate

HERE = Path(__file__).resolve().parent / "sim_reference"
VOLATILE = {"wall_s", "datagrams_per_s"}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return bool(a == b)


@pytest.mark.parametrize("case", sorted(p.stem for p in HERE.glob("*.json")))
def test_results_match_the_reference(case: str) -> None:
    ref = json.loads((HERE / f"{case}.json").read_text())
    report = simulate(SimConfig(**ref["config"]))
    assert [r.mode for r in report.results] == [r["mode"] for r in ref["results"]]
    for got, want in zip(report.results, ref["results"]):
        for key, value in want.items():
            have = getattr(got, key)
            if key == "detection_times":
                have = sorted(have)
            assert _same(have, value), f"{case} {got.mode} {key}: {have!r} != {value!r}"
