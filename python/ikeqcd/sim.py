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
"""

from __future__ import annotations

import heapq
import math
import os
import resource
import selectors
import socket
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from ikeqcd import _protect, wire
from ikeqcd._core import SaTable, TokenMaker
from ikeqcd.errors import InvalidArgument, MalformedMessage
from ikeqcd.maker import TokenResponder
from ikeqcd.policy import MakerPolicy, TakerPolicy
from ikeqcd.secret import SecretStore
from ikeqcd.taker import (
    CheckLiveness,
    FailureDetector,
    PeerRestarted,
    RestartCancelled,
    VerdictKind,
)

__all__ = ["BASELINES", "Baseline", "ModeResult", "SimConfig", "SimReport", "simulate"]

U64 = npt.NDArray[np.uint64]
IDX_MASK = 0xFFFF_FFFF

# tunnel states (A's view)
NONE, INIT_SENT, AUTH_SENT, UP, CHECKING, DOWN = range(6)


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

    def schedule(self, name: str) -> Baseline:
        if name == "custom" and self.custom_baseline is not None:
            return self.custom_baseline
        return BASELINES[name]()


@dataclass
class ModeResult:
    """What one mode measured."""

    mode: str
    qcd: bool
    policy: str | None
    schedule: str
    sas: int
    detected: int
    detect_p50: float
    detect_p99: float
    detect_max: float
    all_back: float
    datagrams: int
    bytes: int
    datagrams_after_crash: int
    bytes_after_crash: int
    wrongly_torn_down: int
    restarts_cancelled: int
    verdicts: dict[str, int]
    responder: dict[str, int]
    wall_s: float
    detection_times: list[float] = field(repr=False, default_factory=list)


@dataclass
class SimReport:
    """All modes of one run."""

    config: dict[str, Any]
    results: list[ModeResult]
    peak_rss_mb: float
    wall_s: float

    def to_json(self) -> dict[str, Any]:
        out = {"config": self.config, "peak_rss_mb": self.peak_rss_mb, "wall_s": self.wall_s}
        out["results"] = [
            {k: v for k, v in asdict(r).items() if k != "detection_times"} for r in self.results
        ]
        return out

    def table(self) -> str:
        """A readable table, one row per mode."""
        head = (
            f"{'mode':<22} {'detect p50':>10} {'p99':>8} {'max':>8} {'all back':>9} "
            f"{'datagrams':>10} {'bytes':>11} {'wrong teardowns':>16}"
        )
        lines = [head, "-" * len(head)]

        def s(x: float) -> str:
            return "-" if math.isnan(x) else f"{x:.2f}s"

        for r in self.results:
            lines.append(
                f"{r.mode:<22} {s(r.detect_p50):>10} {s(r.detect_p99):>8} {s(r.detect_max):>8} "
                f"{s(r.all_back):>9} {r.datagrams_after_crash:>10} {r.bytes_after_crash:>11} "
                f"{r.wrongly_torn_down:>16}"
            )
        return "\n".join(lines)


# documentation addresses (RFC 5737) of the virtual network and the pcap files
_PCAP_ADDR = {
    "A": ("192.0.2.1", 500),
    "B": ("198.51.100.2", 500),
    "S": ("198.51.100.3", 500),
    "attacker": ("203.0.113.66", 500),
}

# ---------------------------------------------------------------------------------------
# networks: a virtual one (heap of events) and a real one (UDP sockets on loopback)


Handler = Callable[[list[bytes], list[tuple[str, int]]], None]


class _Net:
    """Event scheduling and datagram delivery between named endpoints."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.handlers: dict[str, Handler] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self.count = 0
        self.bytes = 0
        self.count_after = 0
        self.bytes_after = 0
        self.mark_time = math.inf
        self.capture: list[tuple[float, str, str, bytes]] | None = None
        self.capture_filter: Callable[[bytes], bool] = lambda d: False

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def now(self) -> float:
        raise NotImplementedError

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    def send(self, src: str, dst: str, datagrams: list[bytes], delay: float | None = None) -> None:
        if not datagrams:
            return
        now = self.now()
        n = len(datagrams)
        size = sum(map(len, datagrams))
        self.count += n
        self.bytes += size
        if now >= self.mark_time:
            self.count_after += n
            self.bytes_after += size
        if self.capture is not None:
            for d in datagrams:
                if self.capture_filter(d):
                    self.capture.append((now, src, dst, d))
        if self.cfg.loss > 0:
            keep = self.rng.random(n) >= self.cfg.loss
            datagrams = [d for d, k in zip(datagrams, keep) if k]
        if datagrams:
            self._deliver(src, dst, datagrams, self.cfg.rtt / 2 if delay is None else delay)

    def _deliver(self, src: str, dst: str, datagrams: list[bytes], delay: float) -> None:
        raise NotImplementedError

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class VirtualNet(_Net):
    """Deterministic discrete-event network: delivery is an event ``delay`` later."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        super().__init__(cfg, rng)
        self._now = 0.0

    def now(self) -> float:
        return self._now

    def register(self, name: str, handler: Handler) -> None:
        super().register(name, handler)
        self.addresses[name] = _PCAP_ADDR.get(name, ("192.0.2.99", 500))

    def _deliver(self, src: str, dst: str, datagrams: list[bytes], delay: float) -> None:
        handler = self.handlers[dst]
        source = self.addresses[src]
        self.at(self._now + delay, handler, datagrams, [source] * len(datagrams))

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            t, _, fn, args = heapq.heappop(heap)
            self._now = t
            fn(*args)
            if progress is not None:
                progress(t)
        self._now = until


class UdpNet(_Net):
    """Real UDP sockets on 127.0.0.1, in real time scaled by ``time_scale`` (sim seconds =
    real seconds / time_scale). Each endpoint has its own socket; the one-way delay ``rtt/2``
    is added before a datagram is handed to the kernel, and loss is applied at send."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        super().__init__(cfg, rng)
        self._sel = selectors.DefaultSelector()
        self._socks: dict[str, socket.socket] = {}
        self._by_addr: dict[tuple[str, int], str] = {}
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) / self.cfg.time_scale

    def register(self, name: str, handler: Handler) -> None:
        super().register(name, handler)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self._socks[name] = s
        addr = s.getsockname()
        self.addresses[name] = addr
        self._by_addr[addr] = name
        self._sel.register(s, selectors.EVENT_READ, name)

    def _deliver(self, src: str, dst: str, datagrams: list[bytes], delay: float) -> None:
        self.at(self.now() + delay, self._transmit, src, dst, datagrams)

    def _transmit(self, src: str, dst: str, datagrams: list[bytes]) -> None:
        sock, addr = self._socks[src], self.addresses[dst]
        for d in datagrams:
            for _ in range(1000):
                try:
                    sock.sendto(d, addr)
                    break
                except BlockingIOError:
                    time.sleep(0.0001)
                except ConnectionRefusedError:
                    continue

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        heap = self._heap
        while True:
            now = self.now()
            while heap and heap[0][0] <= now:
                _, _, fn, args = heapq.heappop(heap)
                fn(*args)
            if now >= until:
                break
            wait = (min(heap[0][0], until) - now) if heap else (until - now)
            for key, _ in self._sel.select(timeout=max(0.0, wait * self.cfg.time_scale)):
                name = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                batch: list[bytes] = []
                sources: list[tuple[str, int]] = []
                while len(batch) < 4096:
                    try:
                        d, a = sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionRefusedError:
                        continue
                    batch.append(d)
                    sources.append(a)
                if batch:
                    self.handlers[name](batch, sources)
            if progress is not None:
                progress(self.now())

    def close(self) -> None:
        for s in self._socks.values():
            self._sel.unregister(s)
            s.close()
        self._sel.close()


# ---------------------------------------------------------------------------------------
# the world: per-tunnel arrays shared by the two gateways' views


class _World:
    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        self.rng = rng
        self.spi_i = np.zeros(n, np.uint64)
        self.spi_r = np.zeros(n, np.uint64)
        self.state = np.full(n, NONE, np.int8)
        self.a_key = np.zeros((n, _protect.KEY_LEN), np.uint8)
        self.mid = np.zeros(n, np.uint32)  # A's next request Message ID on the current SA
        self.attempt = np.zeros(n, np.int16)
        self.detect_t = np.full(n, np.nan)
        self.back_t = np.full(n, np.nan)
        self.was_up_at_crash = np.zeros(n, bool)
        self.wrong = 0
        self.rebuilds = np.zeros(n, np.int32)

    def new_spi_i(self, ks: npt.NDArray[np.int64]) -> U64:
        hi = self.rng.integers(1, 2**32, len(ks), dtype=np.uint64)
        return (hi << np.uint64(32)) | ks.astype(np.uint64)


def _k(spi_i: int) -> int:
    return spi_i & IDX_MASK


# ---------------------------------------------------------------------------------------
# gateway B: the one that crashes (and its standby, for the attack)


class _GatewayB:
    def __init__(
        self,
        name: str,
        net: _Net,
        world: _World,
        store_path: Path,
        *,
        qcd: bool,
        maker_policy: MakerPolicy,
        cluster_live: Callable[[int, int], bool] | None = None,
    ) -> None:
        self.name = name
        self.net = net
        self.w = world
        self.store_path = store_path
        self.qcd = qcd
        self.maker_policy = maker_policy
        self.cluster_live = cluster_live
        self.alive = True
        self.peer = "A"
        self._boot()
        net.register(name, self.receive)

    def _boot(self) -> None:
        store = SecretStore(self.store_path)
        store.load()  # non-volatile: the same secret as before the crash
        self.maker = store.maker()
        self.detector = FailureDetector(SaTable(), policy=TakerPolicy.hardened())
        n = self.w.n
        # what this gateway knows, per tunnel slot: the SA's SPIs and whether IKE_AUTH is done
        self.si = np.zeros(n, np.uint64)
        self.sr = np.zeros(n, np.uint64)
        self.authed = np.zeros(n, bool)
        live: Any = self.cluster_live if self.cluster_live is not None else self.detector.table
        policy = self.maker_policy if self.qcd else self.maker_policy.with_(enabled=False)
        self.responder = TokenResponder(self.maker, live=live, policy=policy, clock=self.net.now)

    def crash(self) -> None:
        self.alive = False
        self.si[:] = 0
        self.sr[:] = 0
        self.authed[:] = False
        self.detector.table.clear()

    def reboot(self) -> None:
        self._boot()
        self.alive = True

    def knows(self, k: int, spi_i: int, spi_r: int) -> bool:
        return int(self.si[k]) == spi_i and int(self.sr[k]) == spi_r and spi_r != 0

    def knows_many(self, ks: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of tunnels ``ks`` this gateway has, with the SPIs A uses now."""
        if not self.alive:
            return np.zeros(len(ks), bool)
        same: npt.NDArray[np.bool_] = (
            self.authed[ks] & (self.si[ks] == self.w.spi_i[ks]) & (self.sr[ks] == self.w.spi_r[ks])
        )
        return same

    def receive(self, datagrams: list[bytes], sources: list[tuple[str, int]]) -> None:
        if not self.alive:
            return
        out: list[bytes] = []
        unknown: list[bytes] = []
        unknown_src: list[tuple[str, int]] = []
        for d, src in zip(datagrams, sources):
            try:
                h = wire.parse_header(d)
            except MalformedMessage:
                unknown.append(d)  # the responder counts it as malformed
                unknown_src.append(src)
                continue
            if h.response:
                continue
            k = _k(h.spi_i)
            if h.exchange == wire.EXCHANGE_IKE_SA_INIT:
                if int(self.si[k]) == h.spi_i and self.sr[k] and not self.authed[k]:
                    spi_r = int(self.sr[k])  # a retransmitted request: the same answer
                else:
                    spi_r = int(self.w.rng.integers(1, 2**63))
                    self.si[k], self.sr[k], self.authed[k] = h.spi_i, spi_r, False
                out.append(
                    _protect.plain_message(
                        h.spi_i, spi_r, exchange=wire.EXCHANGE_IKE_SA_INIT, message_id=0,
                        flags=wire.FLAG_R, payloads=[(wire.PAYLOAD_NONCE, os.urandom(32))],
                    )
                )
                continue
            if not self.knows(k, h.spi_i, h.spi_r):
                unknown.append(d)
                unknown_src.append(src)
                continue
            key = bytes(self.w.a_key[k])  # the IKE_SA_INIT outcome both sides derived
            try:
                _, inner_next, inner = _protect.open_sealed(key, d)
            except (_protect.Unreadable, MalformedMessage):
                continue  # §9.2: a live SA's SPIs never get a token, whatever the content
            reply_inner = b""
            reply_next = wire.PAYLOAD_NONE
            if h.exchange == wire.EXCHANGE_IKE_AUTH:
                for n in _protect.inner_notifies(inner_next, inner):
                    if n.notify_type == wire.NOTIFY_QCD_TOKEN:
                        self.detector.token_received(h.spi_i, h.spi_r, n.data)
                self.authed[k] = True
                if (h.spi_i, h.spi_r) not in self.detector.table:
                    # a peer that sends no token is still a live SA for §9.2
                    self.detector.token_received(h.spi_i, h.spi_r, os.urandom(32))
                if self.qcd:
                    reply_inner = wire.build_qcd_notify(self.maker.token(h.spi_i, h.spi_r))
                    reply_next = wire.PAYLOAD_NOTIFY
            out.append(
                _protect.seal(
                    key, h.spi_i, h.spi_r, exchange=h.exchange, message_id=h.message_id,
                    initiator=False, response=True, inner_next=reply_next, inner=reply_inner,
                )
            )
        if unknown:
            # QCD on: the token reply; off: plain RFC 7296 (a bare INVALID_IKE_SPI), both
            # decided by the responder's MakerPolicy gate
            replies, _ = self.responder.respond_many(unknown, unknown_src)
            out.extend(r for r in replies if r is not None)
        self.net.send(self.name, self.peer, out)


# ---------------------------------------------------------------------------------------
# gateway A: the survivor, initiator of every tunnel, token taker


class _GatewayA:
    def __init__(
        self,
        net: _Net,
        world: _World,
        cfg: SimConfig,
        *,
        qcd: bool,
        policy: TakerPolicy,
        schedule: Baseline,
        token_maker: TokenMaker,
        peer: _GatewayB,
    ) -> None:
        self.net = net
        self.w = world
        self.cfg = cfg
        self.qcd = qcd
        self.schedule = schedule
        self.token_maker = token_maker
        self.peer = peer
        self.detector = FailureDetector(
            SaTable(), policy=policy if qcd else policy.with_(enabled=False), clock=net.now
        )
        self.check_dgram: dict[int, bytes] = {}
        self.est_dgram: dict[int, bytes] = {}  # the IKE_SA_INIT / IKE_AUTH request in flight
        self.mbb_old: dict[int, tuple[int, int]] = {}
        self._fresh: list[int] = []  # tunnels whose SA came up in this batch
        self._answered: list[int] = []  # tunnels whose liveness check was answered
        self._rebuild: list[int] = []  # tunnels to re-create at the end of this batch
        self.cancelled = 0
        net.register("A", self.receive)

    # -- establishing tunnels -----------------------------------------------------------

    def establish(self, ks: npt.NDArray[np.int64]) -> None:
        """Start IKE_SA_INIT for tunnels ``ks`` (new SPI-I each)."""
        w = self.w
        new = w.new_spi_i(ks)
        w.spi_i[ks] = new
        w.spi_r[ks] = 0
        w.state[ks] = INIT_SENT
        msgs = [
            _protect.plain_message(
                int(s), 0, exchange=wire.EXCHANGE_IKE_SA_INIT, message_id=0, flags=wire.FLAG_I,
                payloads=[(wire.PAYLOAD_NONCE, os.urandom(32))],
            )
            for s in new
        ]
        self._send_establishing(ks, msgs, INIT_SENT)

    def _send_establishing(self, ks: npt.NDArray[np.int64], msgs: list[bytes], state: int) -> None:
        """Send IKE_SA_INIT / IKE_AUTH requests and retransmit them on the same schedule as
        liveness checks (RFC 7296 §2.1: only the initiator retransmits)."""
        for k, m in zip(ks.tolist(), msgs):
            self.est_dgram[k] = m
        self.net.send("A", "B", msgs)
        snap = self.w.spi_i[ks].copy()
        self.net.at(self.net.now() + self.schedule.timeouts[0], self._est_timeout, ks, snap, state, 0)

    def _est_timeout(self, ks: npt.NDArray[np.int64], snap: U64, state: int, attempt: int) -> None:
        w = self.w
        keep = (w.state[ks] == state) & (w.spi_i[ks] == snap)
        ks, snap = ks[keep], snap[keep]
        if not len(ks):
            return
        nxt = attempt + 1
        if nxt < len(self.schedule.timeouts):
            self.net.send("A", "B", [self.est_dgram[k] for k in ks.tolist()])
            self.net.at(self.net.now() + self.schedule.timeouts[nxt], self._est_timeout, ks, snap, state, nxt)
        else:
            self.establish(ks)  # start over with a new SA

    def _on_init_response(self, k: int, spi_i: int, spi_r: int) -> bytes | None:
        w = self.w
        if w.state[k] != INIT_SENT or int(w.spi_i[k]) != spi_i:
            return None
        w.spi_r[k] = spi_r
        w.a_key[k] = np.frombuffer(os.urandom(_protect.KEY_LEN), np.uint8)
        w.state[k] = AUTH_SENT
        w.mid[k] = 2
        inner = b""
        nxt = wire.PAYLOAD_NONE
        if self.qcd:  # seed issue 198: the initiator's token matters too
            inner = wire.build_qcd_notify(self.token_maker.token(spi_i, spi_r))
            nxt = wire.PAYLOAD_NOTIFY
        return _protect.seal(
            bytes(w.a_key[k]), spi_i, spi_r, exchange=wire.EXCHANGE_IKE_AUTH, message_id=1,
            initiator=True, response=False, inner_next=nxt, inner=inner,
        )

    def _on_auth_response(self, k: int, spi_i: int, spi_r: int, inner_next: int, inner: bytes) -> None:
        w = self.w
        if w.state[k] != AUTH_SENT:
            return
        got = False
        for n in _protect.inner_notifies(inner_next, inner):
            if n.notify_type == wire.NOTIFY_QCD_TOKEN:
                self.detector.token_received(spi_i, spi_r, n.data)
                got = True
        if not got:  # no token: still track traffic on the SA (a placeholder never matches)
            self.detector.token_received(spi_i, spi_r, os.urandom(32))
        now = self.net.now()
        w.state[k] = UP
        self.est_dgram.pop(k, None)
        self._fresh.append(k)  # traffic starts now in both directions (flushed per batch)
        if not math.isnan(w.detect_t[k]) and math.isnan(w.back_t[k]):
            w.back_t[k] = now
        old = self.mbb_old.pop(k, None)
        if old is not None:  # make-before-break: the new SA is up, now delete the old one
            self.detector.sa_deleted(*old)

    # -- traffic and liveness -----------------------------------------------------------

    TRAFFIC_GROUPS = 50

    def traffic(self, g: int) -> None:
        """Each tunnel sends a packet every traffic interval (tunnels are spread over
        ``TRAFFIC_GROUPS`` phases); the peer answers if it has the SA. ESP is bookkeeping
        here: the IKE messages are the real ones."""
        w = self.w
        now = self.net.now()
        ks = np.arange(g, w.n, self.TRAFFIC_GROUPS, dtype=np.int64)
        ks = ks[(w.state[ks] == UP) | (w.state[ks] == CHECKING)]
        if len(ks):
            self.detector.table.touch_many(w.spi_i[ks], w.spi_r[ks], now, inbound=False)
            back = ks[self.peer.knows_many(ks)]
            if self.cfg.loss > 0:
                back = back[self.net.rng.random(len(back)) >= self.cfg.loss]
            if len(back):
                self.net.at(now + self.cfg.rtt, self._inbound, back, w.spi_i[back].copy(), w.spi_r[back].copy())
        self.net.at(now + self.cfg.traffic_interval, self.traffic, g)

    def _inbound(self, ks: npt.NDArray[np.int64], si: U64, sr: U64) -> None:
        same = (self.w.spi_i[ks] == si) & (self.w.spi_r[ks] == sr)
        if same.any():
            self.detector.table.touch_many(si[same], sr[same], self.net.now(), inbound=True)

    def scan(self) -> None:
        w = self.w
        now = self.net.now()
        si, _sr = self.detector.due_liveness(now, idle=self.cfg.idle)
        if len(si):
            ks = (si & np.uint64(IDX_MASK)).astype(np.int64)
            ks = np.sort(ks[(w.state[ks] == UP) & (w.spi_i[ks] == si)])  # table order is random
            self.start_checks(ks[: self.cfg.max_checks_per_scan])
        self.handle_events(self.detector.poll())
        self.net.at(now + self.cfg.scan_interval, self.scan)

    def start_checks(self, ks: npt.NDArray[np.int64]) -> None:
        if not len(ks):
            return
        w = self.w
        msgs = []
        for k in ks.tolist():
            spi_i, spi_r, mid = int(w.spi_i[k]), int(w.spi_r[k]), int(w.mid[k])
            w.mid[k] = mid + 1
            d = _protect.seal(
                bytes(w.a_key[k]), spi_i, spi_r, exchange=wire.EXCHANGE_INFORMATIONAL,
                message_id=mid, initiator=True, response=False,
            )
            self.check_dgram[k] = d
            self.detector.request_sent(spi_i, spi_r, mid)
            msgs.append(d)
        w.state[ks] = CHECKING
        w.attempt[ks] = 0
        self.net.send("A", "B", msgs)
        self.net.at(self.net.now() + self.schedule.timeouts[0], self._timeout, ks, 0)

    def _timeout(self, ks: npt.NDArray[np.int64], attempt: int) -> None:
        w = self.w
        ks = ks[(w.state[ks] == CHECKING) & (w.attempt[ks] == attempt)]
        if not len(ks):
            return
        nxt = attempt + 1
        if nxt < len(self.schedule.timeouts):
            w.attempt[ks] = nxt
            # RFC 7296 §2.1: retransmissions are bitwise identical (spec case 44)
            self.net.send("A", "B", [self.check_dgram[k] for k in ks.tolist()])
            self.net.at(self.net.now() + self.schedule.timeouts[nxt], self._timeout, ks, nxt)
            return
        for k in ks.tolist():  # gave up: the peer is declared dead (RFC 7296 §2.4)
            self.down(k, "timeout")

    def down(self, k: int, via: str) -> None:
        """Tear tunnel k down and re-create it."""
        w = self.w
        if w.state[k] == DOWN:
            return
        now = self.net.now()
        if math.isnan(w.detect_t[k]):
            w.detect_t[k] = now
        spi_i, spi_r = int(w.spi_i[k]), int(w.spi_r[k])
        if self.b_knows(k, spi_i, spi_r):
            w.wrong += 1  # the peer still had this SA: a healthy tunnel was torn down
        self.check_dgram.pop(k, None)
        w.state[k] = DOWN
        w.rebuilds[k] += 1
        if self.detector.policy.make_before_break and via != "timeout":
            self.mbb_old[k] = (spi_i, spi_r)
        else:
            self.detector.sa_deleted(spi_i, spi_r)
        if not self._rebuild:
            self.net.at(now, self._flush)
        self._rebuild.append(k)

    def _flush(self) -> None:
        """Batch work collected while handling one batch of events or datagrams."""
        now = self.net.now()
        tab = self.detector.table
        if self._rebuild:
            ks = np.array(self._rebuild, np.int64)
            self._rebuild = []
            self.establish(ks)
        for ks_list, both in ((self._fresh, True), (self._answered, False)):
            if ks_list:
                ks = np.array(ks_list, np.int64)
                ks_list.clear()
                si, sr = self.w.spi_i[ks], self.w.spi_r[ks]
                tab.touch_many(si, sr, now, inbound=True)
                if both:
                    tab.touch_many(si, sr, now, inbound=False)

    def _poll(self) -> None:
        self.handle_events(self.detector.poll())

    def handle_events(self, events: Sequence[object]) -> None:
        w = self.w
        for ev in events:
            if isinstance(ev, PeerRestarted):
                k = _k(ev.spi_i)
                if int(w.spi_i[k]) == ev.spi_i:
                    self.down(k, ev.via)
            elif isinstance(ev, CheckLiveness):
                k = _k(ev.spi_i)
                if w.state[k] == UP and int(w.spi_i[k]) == ev.spi_i:
                    self.start_checks(np.array([k], np.int64))
            elif isinstance(ev, RestartCancelled):
                self.cancelled += 1

    # -- receiving ----------------------------------------------------------------------

    def receive(self, datagrams: list[bytes], sources: list[tuple[str, int]]) -> None:
        w = self.w
        out: list[bytes] = []
        auth_ks: list[int] = []
        deferred = False
        for d, src in zip(datagrams, sources):
            try:
                h = wire.parse_header(d)
            except MalformedMessage:
                continue
            k = _k(h.spi_i)
            if k >= w.n:
                self.detector.receive(d, src)
                continue
            if h.exchange == wire.EXCHANGE_IKE_SA_INIT and h.response and h.next_payload != wire.PAYLOAD_NOTIFY:
                m = self._on_init_response(k, h.spi_i, h.spi_r)
                if m is not None:
                    auth_ks.append(k)
                    out.append(m)
                continue
            if h.next_payload == wire.PAYLOAD_SK and h.response:
                if int(w.spi_i[k]) != h.spi_i or int(w.spi_r[k]) != h.spi_r:
                    continue
                try:
                    _, inner_next, inner = _protect.open_sealed(bytes(w.a_key[k]), d)
                except _protect.Unreadable:
                    continue
                if h.exchange == wire.EXCHANGE_IKE_AUTH:
                    self._on_auth_response(k, h.spi_i, h.spi_r, inner_next, inner)
                else:
                    self.detector.response_received(h.spi_i, h.spi_r, h.message_id)
                    if w.state[k] == CHECKING:
                        w.state[k] = UP
                        self.check_dgram.pop(k, None)
                    self._answered.append(k)
                continue
            verdict = self.detector.receive(d, src)
            if verdict.event is not None:  # PeerRestarted now, or CheckLiveness
                self.handle_events([verdict.event])
            elif verdict.kind is VerdictKind.DEFERRED:
                deferred = True
        if deferred:  # one poll for the batch, when its held decisions become due
            self.net.at(self.net.now() + self.detector.policy.accept_delay, self._poll)
        if out:
            self._send_establishing(np.array(auth_ks, np.int64), out, AUTH_SENT)
        self._flush()

    def b_knows(self, k: int, spi_i: int, spi_r: int) -> bool:
        return self.peer.alive and self.peer.knows(k, spi_i, spi_r)


# ---------------------------------------------------------------------------------------
# the attacker of issue 202


class _Attacker:
    """Sees SPIs and A's requests, can spoof packets to the standby and to A, captures the
    standby's replies (seed slides, issue 202)."""

    def __init__(self, net: _Net, world: _World) -> None:
        self.net = net
        self.w = world
        self.captured = 0
        self.injected = 0
        net.register("attacker", self.receive)

    def ask_standby(self, datagrams: list[bytes]) -> None:
        self.net.send("attacker", "S", datagrams, delay=self.net.cfg.rtt / 8)

    def receive(self, datagrams: list[bytes], sources: list[tuple[str, int]]) -> None:
        # every reply from the standby is replayed to A at once, spoofed as B
        self.captured += len(datagrams)
        self.injected += len(datagrams)
        self.net.send("attacker", "A", datagrams, delay=self.net.cfg.rtt / 8)

    def blind(self, ks: npt.NDArray[np.int64]) -> None:
        w = self.w
        reqs = [
            wire.build_request(int(w.spi_i[k]), int(w.spi_r[k]), message_id=int(self.net.rng.integers(0, 2**31)),
                               sk_body=os.urandom(40))
            for k in ks.tolist()
        ]
        self.ask_standby(reqs)

    def tap(self, datagrams: list[bytes]) -> None:
        """On-path copy of A's liveness requests: forwarded to the standby, whose reply then
        carries the right Message ID (the timed variant)."""
        self.ask_standby(list(datagrams))


# ---------------------------------------------------------------------------------------


def _percentile(x: npt.NDArray[np.float64], q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else math.nan


def _run_mode(
    cfg: SimConfig,
    mode: str,
    *,
    qcd: bool,
    policy_name: str | None,
    schedule: Baseline,
    workdir: Path,
    cluster_gate: bool = False,
    progress: Callable[[str, float, float], None] | None = None,
    capture: list[tuple[float, str, str, bytes]] | None = None,
) -> ModeResult:
    t_wall = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    net: _Net = VirtualNet(cfg, rng) if cfg.transport == "virtual" else UdpNet(cfg, rng)
    world = _World(cfg.sas, rng)
    policy = TakerPolicy.hardened() if policy_name in (None, "hardened") else TakerPolicy.rfc6290()
    # one peer address carries every SA here: size the per-source verification limit to it
    policy = policy.with_(verify_rate=max(policy.verify_rate, 2.0 * cfg.sas),
                          verify_burst=max(policy.verify_burst, 2.0 * cfg.sas))
    # A rebooted gateway facing one peer with many SAs answers them all (per-source limits
    # sized to the scenario); §8.1 limits are exercised by the flood tests instead.
    maker_policy = MakerPolicy.unlimited().with_(bare_rate=math.inf)

    slug = mode.replace("/", "_").replace("+", "_")
    store_b = workdir / f"{slug}-b" / "qcd.secret"
    secret_b = SecretStore(store_b)
    secret_b.load_or_create()
    store_a = workdir / f"{slug}-a" / "qcd.secret"
    sa = SecretStore(store_a)
    sa.load_or_create()

    b = _GatewayB("B", net, world, store_b, qcd=qcd, maker_policy=maker_policy)
    a = _GatewayA(
        net, world, cfg, qcd=qcd, policy=policy, schedule=schedule, token_maker=sa.maker(), peer=b
    )
    net.mark_time = cfg.crash_at if cfg.attack is None else cfg.attack_at
    if capture is not None:
        net.capture = capture
        limit = cfg.pcap_sas
        net.capture_filter = lambda d: len(d) >= 8 and (int.from_bytes(d[:8], "big") & IDX_MASK) < limit

    standby: _GatewayB | None = None
    attacker: _Attacker | None = None
    if cfg.attack is not None:
        store_s = workdir / f"{slug}-s" / "qcd.secret"
        SecretStore.import_to(store_s, secret_b.export_bytes())  # the cluster shares B's secret
        if cluster_gate:
            def gate(i: int, r: int) -> bool:  # the cluster's view of live SAs (RFC 6290 §9.2)
                return b.knows(_k(i), i, r)

            standby = _GatewayB("S", net, world, store_s, qcd=True, maker_policy=maker_policy, cluster_live=gate)
        else:
            standby = _GatewayB("S", net, world, store_s, qcd=True, maker_policy=maker_policy)
        standby.peer = "attacker"
        attacker = _Attacker(net, world)

    # staging in chunks so that batches stay bounded
    chunk = 5000
    for start in range(0, cfg.sas, chunk):
        ks = np.arange(start, min(start + chunk, cfg.sas), dtype=np.int64)
        net.at(start / chunk * 0.01, a.establish, ks)

    for g in range(a.TRAFFIC_GROUPS):
        net.at(1.0 + g * cfg.traffic_interval / a.TRAFFIC_GROUPS, a.traffic, g)
    net.at(0.5, a.scan)
    if cfg.attack is None:
        def crash() -> None:
            world.was_up_at_crash[:] = world.state == UP
            b.crash()
        net.at(cfg.crash_at, crash)
        net.at(cfg.crash_at + cfg.reboot_time, b.reboot)
        horizon = cfg.crash_at + cfg.reboot_time + cfg.idle + schedule.give_up + 30.0
    else:
        assert attacker is not None
        def world_up() -> npt.NDArray[np.int64]:
            return np.flatnonzero(world.state == UP)

        def blind_replay() -> None:
            attacker.blind(world_up())

        net.at(cfg.attack_at, blind_replay)
        # a routine DPD round on every SA a little later; the attacker copies each request
        def dpd_round() -> None:
            ks = world_up()
            world.was_up_at_crash[ks] = True
            a.start_checks(ks)
            attacker.tap([a.check_dgram[k] for k in ks.tolist() if k in a.check_dgram])
        net.at(cfg.attack_at + 5.0, dpd_round)
        horizon = cfg.attack_at + 5.0 + schedule.give_up + 10.0

    def prog(t: float) -> None:
        if progress is not None:
            progress(mode, t, horizon)

    try:
        net.run(horizon, prog)
    finally:
        net.close()

    if cfg.attack is None:
        affected = world.was_up_at_crash
        dt = world.detect_t[affected] - cfg.crash_at
        back = world.back_t[affected] - cfg.crash_at
    else:
        affected = world.was_up_at_crash
        dt = world.detect_t[affected] - cfg.attack_at
        back = world.back_t[affected] - cfg.attack_at
    det = dt[~np.isnan(dt)]
    all_back = float(np.max(back)) if len(back) and not np.isnan(back).any() else math.nan
    responder_counts = {r.name: c for r, c in b.responder.counters.items() if c}
    if standby is not None:
        for r, c in standby.responder.counters.items():
            if c:
                responder_counts[f"standby:{r.name}"] = c
    return ModeResult(
        mode=mode,
        qcd=qcd,
        policy=policy_name,
        schedule=schedule.name,
        sas=cfg.sas,
        detected=len(det),
        detect_p50=_percentile(det, 50),
        detect_p99=_percentile(det, 99),
        detect_max=float(det.max()) if len(det) else math.nan,
        all_back=all_back,
        datagrams=net.count,
        bytes=net.bytes,
        datagrams_after_crash=net.count_after,
        bytes_after_crash=net.bytes_after,
        wrongly_torn_down=int(world.wrong),
        restarts_cancelled=a.cancelled,
        verdicts=a.detector.counters,
        responder=responder_counts,
        wall_s=time.perf_counter() - t_wall,
        detection_times=det.tolist(),
    )


def modes_for(cfg: SimConfig) -> list[tuple[str, bool, str | None, str, bool]]:
    """(mode name, qcd, policy, schedule name, cluster gate) for each mode of a run."""
    out: list[tuple[str, bool, str | None, str, bool]] = []
    for p in cfg.policies:
        out.append((f"qcd/{p}", True, p, cfg.baseline, False))
    if cfg.attack is not None:
        if "rfc6290" in cfg.policies:
            out.append(("qcd/rfc6290+cluster-gate", True, "rfc6290", cfg.baseline, True))
        return out
    for bl in cfg.baselines:
        out.append((f"no-qcd/{bl}", False, None, bl, False))
    return out


def simulate(
    cfg: SimConfig | None = None,
    *,
    progress: Callable[[str, float, float], None] | None = None,
    pcap_path: str | os.PathLike[str] | None = None,
) -> SimReport:
    """Run every mode of the scenario and return the figures."""
    cfg = cfg or SimConfig()
    cfg.validate()
    t0 = time.perf_counter()
    results: list[ModeResult] = []
    capture: list[tuple[float, str, str, bytes]] | None = [] if pcap_path is not None else None
    with tempfile.TemporaryDirectory(prefix="ikeqcd-sim-") as tmp:
        for i, (mode, qcd, policy, sched, gate) in enumerate(modes_for(cfg)):
            results.append(
                _run_mode(
                    cfg, mode, qcd=qcd, policy_name=policy, schedule=cfg.schedule(sched),
                    workdir=Path(tmp), cluster_gate=gate, progress=progress,
                    capture=capture if i == 0 else None,
                )
            )
    if pcap_path is not None and capture is not None:
        _write_capture(pcap_path, capture, cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    return SimReport(asdict(cfg), results, peak, time.perf_counter() - t0)




def _write_capture(path: str | os.PathLike[str], capture: list[tuple[float, str, str, bytes]], cfg: SimConfig) -> None:
    from ikeqcd.pcap import write_pcap

    packets = []
    for t, src, dst, d in capture:
        s_ip, s_port = _PCAP_ADDR.get(src, ("192.0.2.99", 500))
        d_ip, d_port = _PCAP_ADDR.get(dst, ("192.0.2.99", 500))
        packets.append((t, s_ip, s_port, d_ip, d_port, d))
    write_pcap(path, packets)


def plot_cdf(report: SimReport, path: str | os.PathLike[str]) -> None:
    """Write a PNG with the CDF of detection time per mode (needs matplotlib)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidArgument("--plot needs matplotlib: pip install 'ikeqcd[plot]'") from e
    fig, ax = plt.subplots(figsize=(8, 4.8), dpi=120)
    for r in report.results:
        x = np.sort(np.asarray(r.detection_times))
        if not len(x):
            continue
        y = np.arange(1, len(x) + 1) / r.sas
        ax.step(x, y, where="post", label=f"{r.mode} (p50 {np.median(x):.1f} s)")
    cfg = report.config
    ax.set_xscale("log")
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    ticks = [t for t in (1, 2, 5, 10, 20, 30, 50, 70, 100, 150, 200, 300, 500, 1000)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time from the crash of gateway B until gateway A declares the SA dead (s, log)")
    ax.set_ylabel(f"fraction of the {cfg['sas']:,} IKE SAs")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(
        f"IKEv2 failure detection after a gateway reboot: QCD vs liveness timers\n"
        f"B down {cfg['reboot_time']:g} s, RTT {cfg['rtt'] * 1000:g} ms, loss {cfg['loss'] * 100:g} %, "
        f"liveness after {cfg['idle']:g} s idle"
    )
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_progress(stream: Any = sys.stderr) -> Callable[[str, float, float], None]:
    """A progress callback that redraws one line at most 5 times a second."""
    last = [0.0]

    def cb(mode: str, t: float, horizon: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2:
            return
        last[0] = now
        frac = min(1.0, t / horizon) if horizon > 0 else 1.0
        bar = "#" * int(frac * 30)
        stream.write(f"\r{mode:<26} [{bar:<30}] {frac * 100:5.1f}%  t={t:7.1f}s")
        stream.flush()

    return cb
