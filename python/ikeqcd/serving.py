"""``ikeqcd serve``: a rebooted gateway on a UDP socket (the native serve loop, its counters)."""

from __future__ import annotations

import json
import math
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from types import FrameType
from typing import Any

from ikeqcd import _core
from ikeqcd._core import SaTable, TokenMaker
from ikeqcd._netcommon import (
    _DEFAULT_POLICY,
    _REASONS,
    _SLICE,
    _address,
    _log,
    _maker_of,
)
from ikeqcd.errors import InvalidArgument
from ikeqcd.maker import SupportsContainsMany, _gate_of
from ikeqcd.metrics import BatchTimes, _prometheus
from ikeqcd.policy import MakerPolicy
from ikeqcd.secret import SecretStore

__all__ = ["ServeStats", "Server", "serve"]


@dataclass(frozen=True)
class ServeStats:
    """What a :class:`Server` has counted.

    Attributes:
        address: the bound (host, port).
        elapsed: seconds served so far.
        reasons: datagrams per :class:`~ikeqcd.Reason` name (every reason, zeros included).
        datagrams_in: datagrams received.
        bytes_in: UDP payload octets received.
        datagrams_out: reply datagrams sent.
        bytes_out: reply octets sent.
        send_errors: replies the kernel refused.
        recv_errors: failed receive calls.
        batches: receive calls that returned datagrams (``datagrams_in / batches`` is the mean
            batch size).
    """

    address: tuple[str, int]
    elapsed: float
    reasons: Mapping[str, int]
    datagrams_in: int
    bytes_in: int
    datagrams_out: int
    bytes_out: int
    send_errors: int
    recv_errors: int
    batches: int

    @property
    def replied(self) -> int:
        """Full QCD replies sent (``reasons["REPLIED"]``)."""
        return self.reasons["REPLIED"]

    @property
    def bare(self) -> int:
        """Bare INVALID_IKE_SPI replies sent (switched off, rate-limited, outside window)."""
        return sum(self.reasons[r] for r in ("DISABLED", "RATE_LIMITED_BARE", "OUTSIDE_WINDOW"))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        d = asdict(self)
        d["address"] = list(self.address)
        d["reasons"] = dict(self.reasons)
        return d

    def to_json(self) -> str:
        """The figures as one JSON object."""
        return json.dumps(self.to_dict(), indent=1)

    def format(self) -> str:
        """Human-readable lines."""
        rate = self.datagrams_in / self.elapsed if self.elapsed > 0 else 0.0
        lines = [
            (
                f"served {self.elapsed:.1f} s on {_address(self.address, False, 'address')}: "
                f"{self.datagrams_in} datagrams in ({rate:,.0f}/s), {self.datagrams_out} "
                f"replies out ({self.replied} with tokens, {self.bare} bare), "
                f"{self.send_errors} send errors"
            ),
        ]
        nonzero = [f"{name}={n}" for name, n in self.reasons.items() if n]
        lines.append("  by reason: " + (" ".join(nonzero) if nonzero else "(nothing received)"))
        return "\n".join(lines)

    def line(self) -> str:
        """One short progress line: seconds served and :meth:`status`."""
        return f"{self.elapsed:7.1f} s  {self.status()}"

    def status(self) -> str:
        """The counters of :meth:`line`, without the time (the progress bar's status)."""
        dropped, live = self.reasons["RATE_LIMITED_DROP"], self.reasons["LIVE_SA"]
        other = self.datagrams_in - self.replied - self.bare - dropped - live
        return (
            f"in {self.datagrams_in}  tokens {self.replied}  "
            f"bare {self.bare}  dropped {dropped}  live {live}  other {other}"
        )


class Server:
    """A rebooted gateway on one UDP socket (the engine of :func:`serve`).

    Args:
        listen: ``"HOST:PORT"`` or ``(host, port)``; port 0 picks a free port (see
            :attr:`address`). Default: loopback, :data:`DEFAULT_PORT` (or
            :data:`DEFAULT_NAT_T_PORT` with ``nat_t``).
        maker_or_store: a :class:`~ikeqcd.TokenMaker`, or a :class:`~ikeqcd.SecretStore`
            (loaded if it is not yet).
        nat_t: the socket is UDP/4500: requests carry the non-ESP marker, replies too, ESP
            and keepalives are counted (``Reason.ESP``) and ignored.
        policy: the reply policy (switch, rate limits, flood fallback, token window);
            ``None`` answers every candidate with tokens (closed test beds only).
        live: live SAs, never answered with a token (RFC 6290 §9.2), asked once per received
            batch with every candidate of it: an :class:`~ikeqcd.SaTable` (read-locked, so
            other threads may change it), or an object with ``contains_many(spi_i, spi_r)``
            such as :class:`ikeqcd.cluster.LiveSaStore` (the GIL is taken once per batch).
            When that object raises, every candidate of the batch is
            ``CLUSTER_UNAVAILABLE`` and gets nothing (fail closed); serving goes on.
        clock: the policy clock (seconds); the token window starts at construction.
        gso: use UDP GSO/GRO where the kernel has it: a run of requests that a peer sent as
            one segmented send is received as one buffer and split here, and runs of
            equal-sized replies to one source leave as one segmented send. Each request is
            still its own datagram and gets its own reply; the kernel just moves fewer
            buffers. Falls back to plain datagrams when unavailable.
        xfrm_bypass: exempt the socket from the kernel's IPsec (XFRM) policies, as IKE
            daemons do for their own sockets (Linux; needs ``CAP_NET_ADMIN``). A daemon that
            crashed without a reboot leaves its policies in place, and a transport-mode
            host-to-host policy swallows the peer's IKE requests before the socket sees them.
            Where the kernel refuses (no privilege), the server still runs without it:
            :attr:`xfrm_bypass` is false, :attr:`xfrm_bypass_error` says why, and a warning
            is logged on the ``ikeqcd.net`` logger.

    Raises:
        NetworkError: the socket cannot be bound (address in use, no permission, not Linux).
        InvalidArgument: a bad address or argument type.

    Thread-safe: :meth:`stop` and :meth:`stats` may be called from any thread while another
    runs :meth:`run`.
    """

    def __init__(
        self,
        listen: str | tuple[str, int] | None = None,
        maker_or_store: TokenMaker | SecretStore | None = None,
        *,
        nat_t: bool = False,
        policy: MakerPolicy | None = _DEFAULT_POLICY,
        live: SaTable | SupportsContainsMany | None = None,
        clock: Callable[[], float] = time.monotonic,
        gso: bool = True,
        xfrm_bypass: bool = True,
    ) -> None:
        if maker_or_store is None:
            raise InvalidArgument("Server needs a TokenMaker or a SecretStore")
        if policy is not None and not isinstance(policy, MakerPolicy):
            raise InvalidArgument(
                f"policy must be a MakerPolicy or None, got {type(policy).__name__}"
            )
        if live is not None and not isinstance(live, SaTable) and not callable(
            getattr(live, "contains_many", None)
        ):
            raise InvalidArgument(
                "live must be an ikeqcd.SaTable or an object with contains_many(spi_i, spi_r) "
                f"(such as ikeqcd.cluster.LiveSaStore), got {type(live).__name__}"
            )
        self._maker = _maker_of(maker_or_store)
        self._clock = clock
        self._policy = policy
        self._nat_t = bool(nat_t)
        gate = None if policy is None else _gate_of(policy, clock())
        self._core = _core._UdpServer(
            _address(listen, self._nat_t, "listen"),
            self._maker,
            nat_t=self._nat_t,
            gso=bool(gso),
            gate=gate,
            live=live,
            xfrm_bypass=bool(xfrm_bypass),
        )
        if self._core.xfrm_bypass_error is not None:
            _log.warning(
                "ikeqcd serve: no IPsec bypass on %s (%s): a crashed IKE daemon's leftover "
                "XFRM policies for this address would swallow its requests; give serve "
                "CAP_NET_ADMIN (run it as root, or with that capability) to set the bypass",
                _address(self._core.address, False, "listen"),
                self._core.xfrm_bypass_error,
            )
        self._served = 0.0

    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
        return self._core.address

    @property
    def nat_t(self) -> bool:
        """Whether the socket uses UDP/4500 framing."""
        return self._nat_t

    @property
    def policy(self) -> MakerPolicy | None:
        """The reply policy."""
        return self._policy

    @property
    def gso(self) -> bool:
        """Whether UDP GSO/GRO is in use."""
        return self._core.gso

    @property
    def xfrm_bypass(self) -> bool:
        """Whether the socket's per-socket XFRM bypass policies are set."""
        return self._core.xfrm_bypass

    @property
    def xfrm_bypass_error(self) -> str | None:
        """Why the bypass asked for is not set (``None``: set, or not asked for)."""
        return self._core.xfrm_bypass_error

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._core.stopped

    def stop(self) -> None:
        """Make :meth:`run` return within a fraction of a second; from any thread or a signal
        handler."""
        self._core.stop()

    def stats(self) -> ServeStats:
        """The counters now."""
        c = self._core.counters()
        return ServeStats(
            address=self.address,
            elapsed=self._served,
            reasons={name: c[name] for name in _REASONS},
            datagrams_in=c["datagrams_in"],
            bytes_in=c["bytes_in"],
            datagrams_out=c["datagrams_out"],
            bytes_out=c["bytes_out"],
            send_errors=c["send_errors"],
            recv_errors=c["recv_errors"],
            batches=c["batches"],
        )

    def batch_times(self) -> BatchTimes:
        """How long the server took to answer each received batch (the histogram that
        ``/metrics`` exports as ``ikeqcd_serve_batch_seconds``)."""
        bounds, counts, total = self._core.batch_times()
        return BatchTimes(bounds=tuple(bounds), counts=tuple(counts), sum_seconds=total)

    def run(
        self,
        duration: float | None = None,
        *,
        stats_interval: float | None = None,
        on_stats: Callable[[ServeStats], None] | None = None,
    ) -> ServeStats:
        """Serve until :meth:`stop` or for ``duration`` seconds; returns the final counters.

        Args:
            duration: seconds to serve; ``None`` serves until :meth:`stop`.
            stats_interval: call ``on_stats`` every this many seconds.
            on_stats: called with the counters between slices (from this thread).
        """
        if duration is not None and not (duration >= 0 and math.isfinite(duration)):
            raise InvalidArgument(
                f"duration must be a finite number of seconds >= 0, got {duration!r}"
            )
        if stats_interval is not None and not stats_interval > 0:
            raise InvalidArgument(f"stats_interval must be > 0 seconds, got {stats_interval!r}")
        start = time.monotonic()
        base = self._served
        next_stats = start + (stats_interval or math.inf)
        while not self._core.stopped:
            now = time.monotonic()
            left = _SLICE if duration is None else min(_SLICE, start + duration - now)
            if left <= 0:
                break
            self._core.run(self._clock(), left)
            self._served = base + time.monotonic() - start
            if on_stats is not None and time.monotonic() >= next_stats:
                next_stats += stats_interval or math.inf
                on_stats(self.stats())
        self._served = base + time.monotonic() - start
        return self.stats()

    def __repr__(self) -> str:
        host, port = self.address
        return f"Server({host!r}, {port}, nat_t={self._nat_t}, policy={self._policy!r})"



@contextmanager
def _stop_on_signals(server: Server) -> Iterator[list[int]]:
    """SIGINT/SIGTERM stop the server (in the main thread only); records which arrived."""
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        got.append(signum)
        server.stop()

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield got
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def serve(
    listen: str | tuple[str, int] | None,
    maker_or_store: TokenMaker | SecretStore,
    *,
    nat_t: bool = False,
    policy: MakerPolicy | None = _DEFAULT_POLICY,
    live: SaTable | SupportsContainsMany | None = None,
    duration: float | None = None,
    stats_interval: float | None = 1.0,
    prometheus_port: int | None = None,
    on_stats: Callable[[ServeStats], None] | None = None,
    on_ready: Callable[[Server, tuple[str, int] | None], None] | None = None,
    gso: bool = True,
    xfrm_bypass: bool = True,
) -> ServeStats:
    """Run a rebooted gateway until SIGINT/SIGTERM (or ``duration``); returns the counters.

    Args:
        listen: ``"HOST:PORT"`` or ``(host, port)``; ``None`` is loopback on
            :data:`DEFAULT_PORT` (:data:`DEFAULT_NAT_T_PORT` with ``nat_t``); port 0 picks one.
        maker_or_store: the secrets, as a TokenMaker or a SecretStore.
        nat_t: UDP/4500 framing (non-ESP marker).
        policy: the reply policy (default :class:`~ikeqcd.MakerPolicy()`, whose per-source
            limit is 50 replies/s; use ``MakerPolicy.unlimited()`` for load tests).
        live: live SAs, never answered with a token: an SaTable or a cluster store (see
            :class:`Server`).
        duration: stop after this many seconds (``None``: run until a signal).
        stats_interval: seconds between ``on_stats`` calls.
        prometheus_port: serve ``/metrics`` on 127.0.0.1 at this port (0 picks one); needs
            ``prometheus_client`` (``pip install 'ikeqcd[metrics]'``).
        on_stats: called with the counters every ``stats_interval`` seconds.
        on_ready: called once the socket is bound, with the server and the metrics address.
        gso: use UDP GSO/GRO where available (see :class:`Server`).
        xfrm_bypass: exempt the socket from leftover IPsec policies (Linux, needs
            ``CAP_NET_ADMIN``; without it a warning is logged and serving goes on; see
            :class:`Server`).

    SIGINT and SIGTERM stop the server cleanly (when called from the main thread); the final
    counters are returned either way.

    Raises:
        NetworkError: a socket cannot be bound.
        SecretFileError: the store cannot be loaded.
        IkeQcdError: ``prometheus_port`` is given and prometheus_client is not installed.
    """
    server = Server(
        listen,
        maker_or_store,
        nat_t=nat_t,
        policy=policy,
        live=live,
        gso=gso,
        xfrm_bypass=xfrm_bypass,
    )
    with (
        _prometheus(prometheus_port, server.stats, server.batch_times) as metrics,
        _stop_on_signals(server),
    ):
        if on_ready is not None:
            on_ready(server, metrics)
        return server.run(duration, stats_interval=stats_interval, on_stats=on_stats)


# ------------------------------------------------------------------------------------- load


