"""The simulator's lazy traffic model gives exactly the eager one's results.

The eager model writes every tunnel's traffic times at every tick (it is the one the loss
reference run uses); the lazy one works them out when gateway A asks. With no loss towards A
both apply; every figure of every mode must agree, for scenarios that exercise ties of tick
and event times, a peer that loses SAs mid-stretch, rebuild storms and the attack.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from ikeqcd.sim import SimConfig, simulate
from ikeqcd.sim import traffic as traffic_mod

VOLATILE = {"wall_s", "datagrams_per_s"}

CASES: dict[str, dict[str, Any]] = {
    "default": {"sas": 600, "seed": 3},
    "ties": {"sas": 300, "seed": 4, "rtt": 0.04, "scan_interval": 0.02, "idle": 3.0},
    "short-timers": {"sas": 300, "seed": 5, "baseline": "custom", "baselines": ("custom",),
                     "custom_baseline": None},
    "remote-access-storm": {"sas": 500, "seed": 6, "topology": "remote-access", "rebuild_rate": 150.0},
    "mixed-peers-loss-to-b": {"sas": 400, "seed": 7, "qcd_fraction": 0.5, "loss_to_b": 0.1, "loss_to_a": 0.0},
    "attack": {"sas": 300, "seed": 8, "attack": "standby-replay"},
}


def _figures(cfg: SimConfig) -> list[dict[str, Any]]:
    out = []
    for r in simulate(cfg).results:
        d = {k: v for k, v in vars(r).items() if k not in VOLATILE}
        d["detection_times"] = sorted(d["detection_times"])
        d["back_times"] = sorted(x for x in d["back_times"] if not math.isnan(x))
        out.append(d)
    return out


@pytest.mark.parametrize("case", sorted(CASES))
def test_lazy_traffic_matches_eager(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    opts = dict(CASES[case])
    if case == "short-timers":
        from ikeqcd.sim import Baseline
        opts["custom_baseline"] = Baseline.custom(0.03, 1.5, 3)  # shorter than the RTT
    cfg = SimConfig(**opts)
    assert traffic_mod.lazy_for(cfg)
    lazy = _figures(cfg)
    monkeypatch.setattr(traffic_mod, "lazy_for", lambda cfg: False)
    eager = _figures(cfg)
    assert len(lazy) == len(eager)
    for a, b in zip(lazy, eager):
        for key in b:
            x, y = a[key], b[key]
            same = x == y or (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
            assert same, f"{case} {a['mode']} {key}: lazy {x!r} != eager {y!r}"


class _Both:
    """The lazy model, checked against an eager shadow fed the same calls: whenever A asks,
    every live tunnel's lazy times must equal the eager ones, bit for bit."""

    checks = 0

    def __init__(self, *args: Any, lazy: bool) -> None:
        self.lazy = _Real(*args, lazy=True)
        self.eager = _Real(*args, lazy=False)
        self.tin = self.lazy.tin

    def start(self) -> None:
        self.lazy.start()
        self.eager.start()

    def __getattr__(self, name: str) -> Any:
        if name in ("up", "inbound", "lost"):
            def call(*args: Any) -> None:
                getattr(self.lazy, name)(*args)
                getattr(self.eager, name)(*args)
            return call
        raise AttributeError(name)

    def verify(self) -> None:
        import numpy as np
        from ikeqcd.sim.world import CHECKING, UP
        st = self.lazy.w.state
        live = np.flatnonzero((st == UP) | (st == CHECKING))
        lin, lout = self.lazy.times(live)
        assert np.array_equal(lin, self.eager.tin[live])
        assert np.array_equal(lout, self.eager.tout[live])
        _Both.checks += 1

    def times(self, ks: Any) -> Any:
        self.verify()
        return self.lazy.times(ks)


_Real = traffic_mod.Traffic


@pytest.mark.parametrize("case", ["default", "ties", "short-timers", "mixed-peers-loss-to-b", "attack"])
def test_lazy_times_equal_eager_times_whenever_asked(case: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from ikeqcd.sim import Baseline
    from ikeqcd.sim import gateway_a
    opts = dict(CASES[case])
    if case == "short-timers":
        opts["custom_baseline"] = Baseline.custom(0.03, 1.5, 3)
    monkeypatch.setattr(gateway_a, "Traffic", _Both)
    scan = gateway_a.GatewayA.scan

    def checked_scan(self: Any) -> None:  # at every scan too, not only when A asks
        self.traffic.verify()
        scan(self)

    monkeypatch.setattr(gateway_a.GatewayA, "scan", checked_scan)
    _Both.checks = 0
    simulate(SimConfig(**opts))
    assert _Both.checks > 10
