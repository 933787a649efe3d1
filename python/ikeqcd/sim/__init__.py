"""Crash-and-recover simulator: N IKE SAs between gateway A and gateway B, B crashes.

The seed slides' story, with the project's own code on every message: staging (IKE_SA_INIT,
then IKE_AUTH carrying each side's QCD token inside a really encrypted SK payload), steady
state (traffic both ways), B crashes and loses every SA, B reboots and reloads its QCD secret
from its :class:`~ikeqcd.SecretStore` file, A notices outbound traffic without inbound (seed
issue 200) and sends liveness checks, B answers each with INVALID_IKE_SPI + QCD_TOKEN through
its :class:`~ikeqcd.TokenResponder`, A's :class:`~ikeqcd.FailureDetector` verifies against its
:class:`~ikeqcd.SaTable`, tears the SA down and re-creates it, and new tokens are exchanged.

The same scenario runs without QCD (A relies on RFC 7296 liveness retransmissions until it
gives up) with strongSwan's and libreswan's default timers, and with both taker presets.
``attack="standby-replay"`` runs the issue-202 attack instead of a crash.

The clock is virtual by default (deterministic for a seed, as fast as the CPU allows);
``transport="udp"`` runs the same gateways over real UDP sockets on loopback in scaled real
time.

The package, one concern per module: :mod:`~ikeqcd.sim.config` (options, baseline
schedules), :mod:`~ikeqcd.sim.net` (virtual time and the two networks),
:mod:`~ikeqcd.sim.world` (per-tunnel arrays), :mod:`~ikeqcd.sim.codec` (batch messages),
:mod:`~ikeqcd.sim.gateway_a`, :mod:`~ikeqcd.sim.gateway_b`, :mod:`~ikeqcd.sim.scenario`
(modes, the attack, :func:`simulate`), :mod:`~ikeqcd.sim.cluster` (the attack's cluster gate
on a real Redis/Valkey live-SA store, ``SimConfig.cluster``) and :mod:`~ikeqcd.sim.report`
(table, JSON, plot).
"""

from ikeqcd.sim.config import BASELINES, Baseline, SimConfig
from ikeqcd.sim.report import ModeResult, SimReport, plot_cdf, print_progress
from ikeqcd.sim.scenario import modes_for, simulate

__all__ = [
    "BASELINES", "Baseline", "ModeResult", "SimConfig", "SimReport", "modes_for", "plot_cdf",
    "print_progress", "simulate",
]
