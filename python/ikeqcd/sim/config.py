"""Scenario options and the RFC 7296 liveness retransmission schedules (the baselines)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from ikeqcd.errors import InvalidArgument

__all__ = ["BASELINES", "Baseline", "SimConfig"]


@dataclass(frozen=True)
class Baseline:
    """An RFC 7296 liveness retransmission schedule: ``timeouts[i]`` is the wait after the
    i-th transmission; after the last one the peer is declared dead."""

    name: str
    timeouts: tuple[float, ...]

    @property
    def give_up(self) -> float:
        """Seconds from the first transmission until the peer is declared dead."""
        return float(sum(self.timeouts))

    @classmethod
    def strongswan(cls) -> Baseline:
        """strongSwan defaults: timeout 4 s x 1.8^n, 5 retransmissions: gives up at 165 s."""
        return cls("strongswan", tuple(4.0 * 1.8**n for n in range(6)))

    @classmethod
    def libreswan(cls) -> Baseline:
        """libreswan defaults: retransmit-interval 0.5 s doubling, retransmit-timeout 60 s."""
        waits, total, w = [], 0.0, 0.5
        while total + w < 60.0:
            waits.append(w)
            total += w
            w *= 2
        waits.append(60.0 - total)
        return cls("libreswan", tuple(waits))

    @classmethod
    def custom(cls, initial: float, factor: float, retransmits: int) -> Baseline:
        """``initial * factor**n`` for the first transmission and each retransmission."""
        if initial <= 0 or factor < 1 or retransmits < 0:
            raise InvalidArgument(
                "custom baseline needs initial > 0, factor >= 1, retransmits >= 0"
            )
        return cls("custom", tuple(initial * factor**n for n in range(retransmits + 1)))


BASELINES: dict[str, Callable[[], Baseline]] = {
    "strongswan": Baseline.strongswan,
    "libreswan": Baseline.libreswan,
}


@dataclass(frozen=True)
class SimConfig:
    """Scenario options (times in seconds)."""

    sas: int = 10_000
    crash_at: float = 30.0
    reboot_time: float = 20.0
    rtt: float = 0.05
    loss: float = 0.0
    loss_to_b: float | None = None
    """Loss on the path from A to B (None: ``loss``); with ``loss_to_a``, asymmetric paths."""
    loss_to_a: float | None = None
    """Loss on the path from B to A, A's traffic answers included (None: ``loss``)."""
    topology: Literal["site-to-site", "remote-access"] = "site-to-site"
    """``site-to-site``: every tunnel between the same two gateways, B's responder without
    limits. ``remote-access``: one gateway (B) and N peers, each from its own address, B's
    responder with the default :class:`~ikeqcd.MakerPolicy` (per-source and global limits)."""
    rebuild_rate: float | None = None
    """IKE_SA_INIT requests for new SAs the rebooted B accepts per second (a token bucket of
    one second's worth); the rest are dropped and A retransmits (the rebuild storm). None: no
    limit. The limit applies from B's reboot on (staging is not limited)."""
    qcd_fraction: float = 1.0
    """In the QCD modes, the share of B's tunnels whose peer is QCD-capable (the rest
    behave as RFC 7296 peers: no token in IKE_AUTH, a bare INVALID_IKE_SPI after the reboot);
    which ones is drawn from the seed, apart from the scenario's own random choices."""
    idle: float = 10.0
    traffic_interval: float = 1.0
    scan_interval: float = 0.1
    baseline: str = "strongswan"
    custom_baseline: Baseline | None = None
    policies: tuple[str, ...] = ("hardened", "rfc6290")
    baselines: tuple[str, ...] = ("strongswan", "libreswan")
    seed: int = 1
    attack: Literal["standby-replay"] | None = None
    attack_at: float = 20.0
    cluster: int | None = None
    """With the attack: run the cluster-gate mode on a real live-SA store
    (:mod:`ikeqcd.sim.cluster`: a Redis/Valkey server on loopback) with this many nodes,
    2..16 (B, the standby S and N-2 load-sharing peers); None: the in-process gate."""
    cluster_url: str | None = None
    """With ``cluster``: the existing Redis/Valkey server to use (``redis://HOST:PORT/DB``,
    no password in it: that is :func:`~ikeqcd.sim.simulate`'s ``cluster_password``) instead
    of one started on loopback."""
    transport: Literal["virtual", "udp"] = "virtual"
    time_scale: float = 0.02
    max_checks_per_scan: int = 100_000
    pcap_sas: int = 3

    def validate(self) -> None:
        if not isinstance(self.sas, int) or self.sas < 1 or self.sas > 2**31:
            raise InvalidArgument(f"sas must be 1..2**31, got {self.sas!r}")
        for name in ("crash_at", "reboot_time", "rtt", "idle", "traffic_interval", "scan_interval", "attack_at"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or math.isnan(v) or v < 0:
                raise InvalidArgument(f"{name} must be a number >= 0, got {v!r}")
        if self.traffic_interval <= 0 or self.scan_interval <= 0:
            raise InvalidArgument("traffic_interval and scan_interval must be > 0")
        if not 0.0 <= self.loss < 1.0:
            raise InvalidArgument(f"loss must be in [0, 1), got {self.loss!r}")
        for name in ("loss_to_b", "loss_to_a"):
            v = getattr(self, name)
            if v is not None and not (isinstance(v, (int, float)) and 0.0 <= v < 1.0):
                raise InvalidArgument(f"{name} must be in [0, 1), got {v!r}")
        if self.rebuild_rate is not None and not (
            isinstance(self.rebuild_rate, (int, float)) and 0 < self.rebuild_rate < math.inf
        ):
            raise InvalidArgument(f"rebuild_rate must be a number > 0, got {self.rebuild_rate!r}")
        if self.topology not in ("site-to-site", "remote-access"):
            raise InvalidArgument(f"topology must be site-to-site or remote-access, got {self.topology!r}")
        if not 0.0 <= self.qcd_fraction <= 1.0:
            raise InvalidArgument(f"qcd_fraction must be in [0, 1], got {self.qcd_fraction!r}")
        for p in self.policies:
            if p not in ("hardened", "rfc6290"):
                raise InvalidArgument(f"unknown policy {p!r}: use hardened or rfc6290")
        for b in self.baselines:
            if b not in BASELINES and not (b == "custom" and self.custom_baseline):
                raise InvalidArgument(f"unknown baseline {b!r}: use strongswan, libreswan or custom")
        if self.baseline not in BASELINES and not (self.baseline == "custom" and self.custom_baseline):
            raise InvalidArgument(f"unknown baseline {self.baseline!r}")
        if self.transport not in ("virtual", "udp"):
            raise InvalidArgument(f"transport must be virtual or udp, got {self.transport!r}")
        if not 0 < self.time_scale <= 10:
            raise InvalidArgument(f"time_scale must be in (0, 10], got {self.time_scale!r}")
        if self.attack not in (None, "standby-replay"):
            raise InvalidArgument(f"unknown attack {self.attack!r}: use standby-replay")
        if self.cluster is not None:
            if isinstance(self.cluster, bool) or not isinstance(self.cluster, int) or not 2 <= self.cluster <= 16:
                raise InvalidArgument(f"cluster must be 2..16 nodes, got {self.cluster!r}")
            if self.attack is None or "rfc6290" not in self.policies:
                raise InvalidArgument(
                    "cluster runs the cluster-gate mode of the attack: it needs "
                    "attack='standby-replay' and the rfc6290 policy"
                )
        if self.cluster_url is not None and self.cluster is None:
            raise InvalidArgument("cluster_url needs cluster (the number of nodes)")

    def path_loss(self, src: str, dst: str) -> float:
        """The loss probability of datagrams from ``src`` to ``dst``."""
        if dst == "B" and self.loss_to_b is not None:
            return float(self.loss_to_b)
        if dst == "A" and src != "attacker" and self.loss_to_a is not None:
            return float(self.loss_to_a)
        return float(self.loss)

    def schedule(self, name: str) -> Baseline:
        if name == "custom" and self.custom_baseline is not None:
            return self.custom_baseline
        return BASELINES[name]()


