"""The simulator before and after its batch rewrite, in the same session (a script, not a test).

    python benches/sim_before_after.py [--sas 10000] [--reps 3] [--before bef9f6b]

Loads the one-file simulator of git revision ``--before`` (``python/ikeqcd/sim.py`` there) next
to today's ``ikeqcd.sim`` and runs ``simulate(SimConfig(sas=N))`` with each, alternating, on
the same installed core; prints wall time, simulated datagrams per second and the detection
p50 of each mode (which must be the same).
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from ikeqcd import sim as after

ROOT = Path(__file__).resolve().parents[1]


def load_before(rev: str, tmp: Path) -> Any:
    src = subprocess.run(["git", "-C", str(ROOT), "show", f"{rev}:python/ikeqcd/sim.py"],
                         capture_output=True, text=True, check=True).stdout
    path = tmp / "sim_before.py"
    path.write_text(src)
    spec = importlib.util.spec_from_file_location("sim_before", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["sim_before"] = mod
    spec.loader.exec_module(mod)
    return mod


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sas", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--before", default="bef9f6b")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(args.before, Path(tmp))
        for _ in range(args.reps):
            for name, mod in (("before", before), ("after", after)):
                t = time.perf_counter()
                rep = mod.simulate(mod.SimConfig(sas=args.sas))
                wall = time.perf_counter() - t
                dg = sum(r.datagrams for r in rep.results)
                p50 = [round(r.detect_p50, 3) for r in rep.results]
                print(f"{name:7s} sas={args.sas} wall={wall:.2f}s datagrams={dg} "
                      f"rate={dg / wall:,.0f}/s p50={p50}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
