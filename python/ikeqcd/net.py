"""UDP load-test tools: ``ikeqcd serve`` (a rebooted gateway) and ``ikeqcd load`` (a driver).

:func:`serve` binds a UDP socket and answers every protected IKE request for an SA it does not
know, as a gateway that has just restarted would (RFC 6290 §4.5): with
``HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+`` within the :class:`~ikeqcd.MakerPolicy` limits, a
bare INVALID_IKE_SPI or nothing beyond them, and never for a live SA of ``live``. It counts
every datagram by :class:`~ikeqcd.Reason`, can expose the counters to Prometheus, and stops
cleanly on SIGINT/SIGTERM.

:func:`load` sends protected-looking requests (``HDR, SK{random}``, INFORMATIONAL, Message ID =
sequence number) for random SPI pairs at a paced rate, checks every reply with the codec (and
every token, when it has the secret) and reports what it counted with latency percentiles.

Both run their packet loops in the Rust core (``recvmmsg``/``sendmmsg``, batches of 64, the
GIL released) in slices of a fraction of a second; Python only acts between slices. Linux
only. Both default to loopback.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import Any, TextIO

import numpy as np
import numpy.typing as npt

from ikeqcd import _core
from ikeqcd import _options as opt
from ikeqcd._core import SaTable, TokenMaker
from ikeqcd.errors import InvalidArgument, NetworkError
from ikeqcd.maker import Reason
from ikeqcd.policy import MakerPolicy
from ikeqcd.secret import SecretStore

_log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_NAT_T_PORT",
    "DEFAULT_PORT",
    "LoadReport",
    "ServeStats",
    "Server",
    "add_load_parser",
    "add_serve_parser",
    "load",
    "load_spis",
    "prometheus_text",
    "serve",
]

DEFAULT_PORT = 10500
"""Default UDP port of serve/load: an unprivileged stand-in for IKE's 500."""
DEFAULT_NAT_T_PORT = 14500
"""Default UDP port with ``nat_t``: a stand-in for 4500."""

_DEFAULT_POLICY = MakerPolicy()  # frozen: safe to share as a default
_SLICE = 0.2  # seconds per native slice: how quickly signals and stop() are noticed
_REASONS = tuple(r.name for r in Reason)
_MAX_BODY = 1200  # the core's limit on load's SK body (rust/net.rs MAX_BODY)

_RING = 1 << 18  # most requests a load run keeps in flight (rust/net.rs RING)


def _default_address(nat_t: bool) -> str:
    return f"127.0.0.1:{DEFAULT_NAT_T_PORT if nat_t else DEFAULT_PORT}"


def _address(value: str | tuple[str, int] | None, nat_t: bool, what: str) -> str:
    if value is None:
        return _default_address(nat_t)
    if isinstance(value, tuple):
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be 'HOST:PORT' or (host, port), got {value!r}")
    return value


def _maker_of(maker_or_store: TokenMaker | SecretStore) -> TokenMaker:
    if isinstance(maker_or_store, TokenMaker):
        return maker_or_store
    if isinstance(maker_or_store, SecretStore):
        if not maker_or_store.loaded:
            maker_or_store.load()
        return maker_or_store.maker()
    raise InvalidArgument(
        f"give an ikeqcd.TokenMaker or an ikeqcd.SecretStore, got {type(maker_or_store).__name__}"
    )


def _gate_of(policy: MakerPolicy, now: float) -> _core._MakerGate:
    return _core._MakerGate(
        enabled=policy.enabled,
        per_source_rate=policy.per_source_rate,
        per_source_burst=policy.per_source_burst,
        global_rate=policy.global_rate,
        global_burst=policy.global_burst,
        bare_rate=policy.bare_rate,
        fallback=policy.flood_fallback,
        window_end=None if policy.token_window is None else now + policy.token_window,
        max_sources=policy.max_sources,
    )


# ------------------------------------------------------------------------------------ serve


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
        """One short progress line."""
        dropped, live = self.reasons["RATE_LIMITED_DROP"], self.reasons["LIVE_SA"]
        other = self.datagrams_in - self.replied - self.bare - dropped - live
        return (
            f"{self.elapsed:7.1f} s  in {self.datagrams_in}  tokens {self.replied}  "
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
        live: an :class:`~ikeqcd.SaTable` of live SAs: never answered with a token (RFC 6290
            §9.2). Read-locked once per batch of datagrams, so other threads may change it.
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
        live: SaTable | None = None,
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
        if live is not None and not isinstance(live, SaTable):
            raise InvalidArgument(
                "live must be an ikeqcd.SaTable (the server reads it natively, per batch), "
                f"got {type(live).__name__}"
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


def prometheus_text(stats: ServeStats) -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    out = [
        "# HELP ikeqcd_serve_requests_total Datagrams received, by what happened to them.",
        "# TYPE ikeqcd_serve_requests_total counter",
    ]
    out += [
        f'ikeqcd_serve_requests_total{{reason="{name.lower()}"}} {n}'
        for name, n in stats.reasons.items()
    ]
    out += [
        "# HELP ikeqcd_serve_replies_total Replies sent, by reason (replied = with QCD tokens).",
        "# TYPE ikeqcd_serve_replies_total counter",
    ]
    out += [
        f'ikeqcd_serve_replies_total{{reason="{name.lower()}"}} {stats.reasons[name]}'
        for name in ("REPLIED", "DISABLED", "RATE_LIMITED_BARE", "OUTSIDE_WINDOW")
    ]
    for name, help_, value in (
        ("datagrams_received_total", "UDP datagrams received.", stats.datagrams_in),
        ("datagrams_sent_total", "UDP datagrams sent.", stats.datagrams_out),
        ("received_bytes_total", "UDP payload octets received.", stats.bytes_in),
        ("sent_bytes_total", "UDP payload octets sent.", stats.bytes_out),
        ("send_errors_total", "Replies the kernel refused to send.", stats.send_errors),
    ):
        out += [
            f"# HELP ikeqcd_serve_{name} {help_}",
            f"# TYPE ikeqcd_serve_{name} counter",
            f"ikeqcd_serve_{name} {value}",
        ]
    out += [
        "# HELP ikeqcd_serve_uptime_seconds Seconds served.",
        "# TYPE ikeqcd_serve_uptime_seconds gauge",
        f"ikeqcd_serve_uptime_seconds {stats.elapsed:.3f}",
    ]
    return "\n".join(out) + "\n"


@contextmanager
def _prometheus(
    port: int | None, stats: Callable[[], ServeStats]
) -> Iterator[tuple[str, int] | None]:
    if port is None:
        yield None
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgument(f"prometheus_port must be an int in 0..65535, got {port!r}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics here")
                return
            body = prometheus_text(stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        raise NetworkError(f"cannot expose Prometheus metrics on 127.0.0.1:{port}: {e}") from e
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, name="ikeqcd-prometheus", daemon=True)
    t.start()
    try:
        host, bound = httpd.server_address[:2]
        yield (str(host), int(bound))
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join()


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
    live: SaTable | None = None,
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
        live: an SaTable of live SAs, never answered with a token.
        duration: stop after this many seconds (``None``: run until a signal).
        stats_interval: seconds between ``on_stats`` calls.
        prometheus_port: serve ``/metrics`` on 127.0.0.1 at this port (0 picks one).
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
    with _prometheus(prometheus_port, server.stats) as metrics, _stop_on_signals(server):
        if on_ready is not None:
            on_ready(server, metrics)
        return server.run(duration, stats_interval=stats_interval, on_stats=on_stats)


# ------------------------------------------------------------------------------------- load


@dataclass(frozen=True)
class LoadReport:
    """What :func:`load` counted.

    Every reply whose Message ID matches a request in flight is ``answered``; the answered
    ones split into ``valid``, ``bare``, ``bad_token`` and ``mismatched``.

    Attributes:
        target: the (host, port) loaded.
        rate: requests per second asked for (0 = as fast as the window allows).
        duration: seconds of sending asked for.
        sas: SPI pairs the requests were drawn from.
        verified: whether tokens were verified with the secret (else only their form).
        sent: requests sent.
        send_errors: requests the kernel refused (nothing listening, say).
        answered: replies matched to a request in flight within the timeout.
        valid: full QCD replies for the request (SPIs, Message ID, R=1, INVALID_IKE_SPI,
            at least one token), every token verified when ``verified``.
        bare: INVALID_IKE_SPI replies without a token.
        bad_token: replies with a token that does not verify under the secret.
        mismatched: matched replies that are not a QCD reply to that request (an echo, say).
        malformed: datagrams that do not parse as IKEv2.
        unmatched: replies with a Message ID not in flight (duplicates, strays).
        late: replies after the timeout.
        lost: requests never answered within the timeout.
        recv_errors: failed receive calls (ICMP errors on loopback, say).
        elapsed: seconds from the first to the last request sent.
        p50_us: median round trip of answered requests, microseconds.
        p90_us: 90th percentile.
        p99_us: 99th percentile.
        p999_us: 99.9th percentile.
        max_us: the longest.
        interrupted: the run was cut short (SIGINT).
    """

    target: tuple[str, int]
    rate: float
    duration: float
    sas: int
    verified: bool
    sent: int
    send_errors: int
    answered: int
    valid: int
    bare: int
    bad_token: int
    mismatched: int
    malformed: int
    unmatched: int
    late: int
    lost: int
    recv_errors: int
    elapsed: float
    p50_us: float
    p90_us: float
    p99_us: float
    p999_us: float
    max_us: float
    interrupted: bool = False

    def silence(self) -> str | None:
        """Why nothing answered, when requests went out and not one reply came back; None
        when something answered (or nothing was sent).

        On a connected UDP socket the kernel reports an ICMP port (or host) unreachable for
        an earlier send as a failed receive (``recv_errors``), so a target where nothing
        listens is told apart from one that stays silent.
        """
        if self.answered or not (self.sent or self.send_errors):
            return None
        where = _address(self.target, False, "target")
        if self.send_errors and not self.sent:
            return (
                f"nothing answered at {where}: the kernel refused all {self.send_errors:,} "
                f"sends (ICMP port or host unreachable: is anything listening there?)"
            )
        if self.recv_errors:
            return (
                f"nothing answered at {where}: the kernel reported {self.recv_errors:,} ICMP "
                f"errors (port unreachable: nothing listens on that port; or no route to the "
                f"host). Is ikeqcd serve running there?"
            )
        return (
            f"nothing answered at {where}: no reply at all to {self.sent:,} requests within "
            f"the timeout (no ICMP error either: a firewall, a wrong address, or a gateway "
            f"that does not answer)"
        )

    def _per_s(self, n: int) -> float:
        return n / self.elapsed if self.elapsed > 0 else 0.0

    @property
    def sent_rate(self) -> float:
        """Requests sent per second."""
        return self._per_s(self.sent)

    @property
    def answered_rate(self) -> float:
        """Replies matched per second."""
        return self._per_s(self.answered)

    @property
    def valid_rate(self) -> float:
        """Valid (verified) replies per second."""
        return self._per_s(self.valid)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (with the rates)."""
        d = asdict(self)
        d["target"] = list(self.target)
        d.update(
            sent_rate=self.sent_rate, answered_rate=self.answered_rate, valid_rate=self.valid_rate
        )
        return d

    def to_json(self) -> str:
        """The figures as one JSON object."""
        return json.dumps(self.to_dict(), indent=1)

    def format(self) -> str:
        """Human-readable lines."""
        asked = "max" if self.rate == 0 else f"{self.rate:,.0f}/s"
        what = "verified" if self.verified else "well-formed (no secret: tokens not verified)"
        cut = "  (interrupted)" if self.interrupted else ""
        lines = [
            (
                f"load {_address(self.target, False, 'target')}: {self.elapsed:.2f} s at "
                f"{asked}, {self.sas} SAs{cut}"
            ),
            f"  sent      {self.sent:>12,}  {self.sent_rate:>12,.0f}/s",
            f"  answered  {self.answered:>12,}  {self.answered_rate:>12,.0f}/s",
            f"  valid     {self.valid:>12,}  {self.valid_rate:>12,.0f}/s  {what}",
            (
                f"  latency   p50 {self.p50_us:,.1f} us  p99 {self.p99_us:,.1f} us  "
                f"p99.9 {self.p999_us:,.1f} us  max {self.max_us:,.1f} us"
                if self.answered
                else "  latency   none: no reply was received"
            ),
        ]
        extra = {
            "bare": self.bare,
            "bad_token": self.bad_token,
            "mismatched": self.mismatched,
            "malformed": self.malformed,
            "unmatched": self.unmatched,
            "late": self.late,
            "lost": self.lost,
            "send_errors": self.send_errors,
            "recv_errors": self.recv_errors,
        }
        shown = [f"{k}={v:,}" for k, v in extra.items() if v]
        if shown:
            lines.append("  also      " + " ".join(shown))
        return "\n".join(lines)


def _report(
    driver: _core._LoadDriver,
    *,
    rate: float,
    duration: float,
    sas: int,
    verified: bool,
    interrupted: bool = False,
) -> LoadReport:
    r = driver.report()
    ints = {
        k: int(r[k])
        for k in (
            "sent",
            "send_errors",
            "answered",
            "valid",
            "bare",
            "bad_token",
            "mismatched",
            "malformed",
            "unmatched",
            "late",
            "lost",
            "recv_errors",
        )
    }
    return LoadReport(
        target=driver.target,
        rate=rate,
        duration=duration,
        sas=sas,
        verified=verified,
        elapsed=float(r["send_span"]) or float(r["elapsed"]),
        p50_us=float(r["p50_us"]),
        p90_us=float(r["p90_us"]),
        p99_us=float(r["p99_us"]),
        p999_us=float(r["p999_us"]),
        max_us=float(r["max_us"]),
        interrupted=interrupted,
        **ints,
    )


def load_spis(sas: int, seed: int = 0) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The SPI pairs :func:`load` draws its requests from for ``sas`` and ``seed``: (SPI-I,
    SPI-R) uint64 arrays (to mark some of them live in a server's table, say)."""
    if not isinstance(sas, int) or sas < 1:
        raise InvalidArgument(f"sas must be an int >= 1, got {sas!r}")
    return _core._load_spis(sas, seed)


def load(
    target: str | tuple[str, int] | None,
    *,
    rate: float,
    duration: float,
    sas: int = 1000,
    maker: TokenMaker | SecretStore | None = None,
    nat_t: bool = False,
    seed: int = 0,
    window: int | None = None,
    timeout: float = 1.0,
    body_len: int = 32,
    gso: bool = True,
    recv_thread: bool = False,
    progress: Callable[[LoadReport], None] | None = None,
) -> LoadReport:
    """Send protected-looking requests to ``target`` for ``duration`` seconds and check the
    replies.

    Args:
        target: ``"HOST:PORT"`` or ``(host, port)``; ``None`` is loopback on
            :data:`DEFAULT_PORT` (:data:`DEFAULT_NAT_T_PORT` with ``nat_t``).
        rate: requests per second; 0 or ``math.inf`` sends as fast as ``window`` allows.
        duration: seconds of sending; replies are awaited up to ``timeout`` after that.
        sas: the requests go to this many random SPI pairs (drawn from ``seed``).
        maker: the server's secrets (TokenMaker or SecretStore): every token is verified in
            constant time. Without it a reply is valid when it is well-formed.
        nat_t: send with the non-ESP marker (the server uses UDP/4500 framing).
        seed: seed of the SPI pairs and of the request bodies.
        window: most requests in flight (default: unlimited when paced, 512 when not).
        timeout: seconds after which an unanswered request counts as lost.
        body_len: octets of random SK body per request.
        gso: send each batch of requests as one segmented send (``UDP_SEGMENT``, up to 256
            per call) and receive replies coalesced (``UDP_GRO``) where the kernel has them.
            Every request is still its own datagram; a receiver without GRO gets them one by
            one.
        recv_thread: receive and check replies on a second thread instead of between sends
            (on 2 cores with the server on one, the single thread is faster).
        progress: called with the figures so far about 10 times a second.

    SIGINT (KeyboardInterrupt) stops sending; the replies in flight are still awaited and the
    report says ``interrupted``.

    Raises:
        InvalidArgument: impossible options.
        NetworkError: the socket cannot be made.
    """
    if not (duration >= 0 and math.isfinite(duration)):
        raise InvalidArgument(f"duration must be a finite number of seconds >= 0, got {duration!r}")
    if math.isnan(rate) or rate < 0:
        raise InvalidArgument(
            f"rate must be >= 0 requests per second (0 = as fast as possible), got {rate!r}"
        )
    if isinstance(maker, SecretStore):
        maker = _maker_of(maker)
    elif maker is not None and not isinstance(maker, TokenMaker):
        raise InvalidArgument(
            f"maker must be a TokenMaker, a SecretStore or None, got {type(maker).__name__}"
        )
    paced = 0 < rate < math.inf
    if window is None:
        window = 1 << 18 if paced else 512
    rate_asked = rate if paced else 0.0
    driver = _core._LoadDriver(
        _address(target, nat_t, "target"),
        rate=rate_asked,
        sas=sas,
        seed=seed,
        nat_t=nat_t,
        maker=maker,
        body_len=body_len,
        window=window,
        timeout=timeout,
        gso=gso,
        recv_thread=recv_thread,
    )

    def report(interrupted: bool = False) -> LoadReport:
        return _report(
            driver,
            rate=rate_asked,
            duration=duration,
            sas=sas,
            verified=maker is not None,
            interrupted=interrupted,
        )

    interrupted = False
    t = 0.0
    try:
        while t < duration:
            t = min(t + 0.1, duration)
            driver.run(t, duration)
            if progress is not None:
                progress(report())
    except KeyboardInterrupt:
        interrupted = True
    try:
        driver.drain(timeout + 0.05)
    except KeyboardInterrupt:
        interrupted = True
    final = report(interrupted)
    if progress is not None:
        progress(final)
    return final


# -------------------------------------------------------------------------------------- CLI

_EXAMPLES_SERVE = """\
examples:
  # a rebooted gateway on 127.0.0.1:10500, no limits (load tests only), Ctrl-C stops it
  ikeqcd serve --secret-file qcd.secret --create --unlimited
  # UDP/4500 framing on a chosen port, default policy, Prometheus on :9500/metrics
  ikeqcd serve --listen 127.0.0.1:4500 --nat-t --secret-file qcd.secret --prometheus 9500
  # QCD switched off (plain RFC 7296: bare INVALID_IKE_SPI), stop after 10 s, JSON counters
  ikeqcd serve --secret-file qcd.secret --no-qcd --duration 10 --json
"""

_EXAMPLES_LOAD = """\
examples:
  # 300 000 requests/s for 5 s, every token verified with the server's secret
  ikeqcd load --rate 300000 --duration 5 --secret-file qcd.secret
  # as fast as 512 requests in flight allow, over UDP/4500 framing, JSON report
  ikeqcd load --target 127.0.0.1:4500 --nat-t --rate max --duration 3 --json
  # fail (exit 1) unless at least 99.9 % of the requests got a valid reply
  ikeqcd load --rate 50000 --duration 2 --secret-file qcd.secret --min-valid 0.999
"""


# Option types (ikeqcd._options checks every value before any work starts).
_UNLIMITED = {"inf": math.inf, "unlimited": math.inf, "none": math.inf}
_limit = opt.Number(float, 0.0, 1e9, words=_UNLIMITED)  # a policy rate or burst
_rate = opt.Number(float, 0.0, 1e9, words={"max": 0.0, "inf": 0.0})  # 0 = as fast as possible


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "serve",
        help="a rebooted gateway: answer protected requests for unknown SAs with QCD tokens",
        description=(
            "Listen on a UDP socket and answer every protected IKE request for an unknown SA\n"
            "as a rebooted gateway would (RFC 6290): N(INVALID_IKE_SPI) + N(QCD_TOKEN) within\n"
            "the policy's limits, a bare INVALID_IKE_SPI or silence beyond them; never for an\n"
            "IKE_SA_INIT, a response or an unprotected request. Counts every datagram by\n"
            "reason; SIGINT/SIGTERM stop it cleanly and print the counters. The secret file\n"
            "must sit in a private directory (mkdir -m 700 DIR); --create makes the file there,\n"
            "never the directory."
        ),
        epilog=_EXAMPLES_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=opt.Address(),
        help=f"address to bind (default 127.0.0.1:{DEFAULT_PORT}, "
        f"127.0.0.1:{DEFAULT_NAT_T_PORT} with --nat-t; port 0 picks one)",
    )
    p.add_argument(
        "--nat-t",
        action="store_true",
        help="UDP/4500 framing: requests and replies carry the non-ESP marker",
    )
    p.add_argument(
        "--secret-file",
        required=True,
        type=opt.Path("secret"),
        metavar="FILE",
        help="the QCD secret file (its directory must exist and be private)",
    )
    p.add_argument(
        "--create", action="store_true", help="create the secret file if it does not exist"
    )
    p.add_argument(
        "--duration",
        type=opt.seconds(),
        metavar="S",
        help="stop after S seconds, S >= 0 (default: run until SIGINT/SIGTERM)",
    )
    p.add_argument(
        "--stats-interval",
        type=opt.seconds(),
        default=1.0,
        metavar="S",
        help="seconds between progress lines on stderr (default 1; 0 = no progress lines)",
    )
    p.add_argument(
        "--prometheus",
        type=opt.port(),
        metavar="PORT",
        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0 = a free port)",
    )
    p.add_argument("--json", action="store_true", help="print the final counters as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    p.add_argument(
        "--no-gso",
        action="store_true",
        help="plain datagrams only: no UDP GRO receives or GSO sends",
    )
    p.add_argument(
        "--no-xfrm-bypass",
        action="store_true",
        help="do not exempt the socket from the kernel's IPsec (XFRM) policies (by default "
        "serve sets per-socket bypass policies, as IKE daemons do, so that a crashed "
        "daemon's leftover policies cannot swallow requests; needs CAP_NET_ADMIN, else a "
        "warning)",
    )
    g = p.add_argument_group("reply policy (MakerPolicy; defaults are the library's)")
    d = MakerPolicy()
    g.add_argument(
        "--no-qcd",
        action="store_true",
        help="QCD switched off: plain RFC 7296, bare INVALID_IKE_SPI (rate-limited)",
    )
    g.add_argument(
        "--unlimited",
        action="store_true",
        help="no per-source or global reply limits (closed test beds and load tests)",
    )
    g.add_argument(
        "--per-source-rate",
        type=_limit,
        metavar="R",
        help=f"token replies per second to one source; inf = no limit "
        f"(default {d.per_source_rate:g})",
    )
    g.add_argument(
        "--per-source-burst",
        type=_limit,
        metavar="N",
        help=f"bucket size for one source; inf = no limit (default {d.per_source_burst:g})",
    )
    g.add_argument(
        "--global-rate",
        type=_limit,
        metavar="R",
        help=f"token replies per second in total; inf = no limit (default {d.global_rate:g})",
    )
    g.add_argument(
        "--global-burst",
        type=_limit,
        metavar="N",
        help=f"bucket size for the total; inf = no limit (default {d.global_burst:g})",
    )
    g.add_argument(
        "--fallback",
        choices=("bare", "silence"),
        help=f"what a limited request gets (default {d.flood_fallback})",
    )
    g.add_argument(
        "--bare-rate",
        type=_limit,
        metavar="R",
        help=f"bare INVALID_IKE_SPI replies per second in total; 0 = none, inf = no limit "
        f"(default {d.bare_rate:g})",
    )
    g.add_argument(
        "--token-window",
        type=opt.seconds(),
        metavar="S",
        help="send tokens only during the first S seconds after start (default: always)",
    )
    p.set_defaults(handler=_cmd_serve)


def _policy_from(args: argparse.Namespace) -> MakerPolicy:
    policy = MakerPolicy.unlimited() if args.unlimited else MakerPolicy()
    changes: dict[str, object] = {}
    for option, fieldname in (
        ("per_source_rate", "per_source_rate"),
        ("per_source_burst", "per_source_burst"),
        ("global_rate", "global_rate"),
        ("global_burst", "global_burst"),
        ("bare_rate", "bare_rate"),
        ("fallback", "flood_fallback"),
        ("token_window", "token_window"),
    ):
        v = getattr(args, option)
        if v is not None:
            changes[fieldname] = v
    if args.no_qcd:
        changes["enabled"] = False
    return policy.with_(**changes) if changes else policy


def _describe(policy: MakerPolicy) -> str:
    if not policy.enabled:
        return f"QCD off (bare INVALID_IKE_SPI, {policy.bare_rate:g}/s)"
    parts = [
        f"per source {policy.per_source_rate:g}/s burst {policy.per_source_burst:g}",
        f"global {policy.global_rate:g}/s burst {policy.global_burst:g}",
        f"beyond: {policy.flood_fallback}",
    ]
    if policy.token_window is not None:
        parts.append(f"tokens for {policy.token_window:g} s")
    return ", ".join(parts)


def _cmd_serve(args: argparse.Namespace) -> int:
    store = SecretStore(args.secret_file, algorithm=None if not args.create else "hmac-sha256")
    if args.create:
        store.load_or_create()
    else:
        store.load()
    policy = _policy_from(args)
    err: TextIO = sys.stderr

    def ready(server: Server, metrics: tuple[str, int] | None) -> None:
        framing = "UDP/4500 framing" if server.nat_t else "UDP/500 framing"
        framing += ", GSO/GRO" if server.gso else ", plain datagrams"
        if server.xfrm_bypass:
            framing += ", IPsec bypass"
        print(
            f"ikeqcd serve: listening on {_address(server.address, False, 'listen')} ({framing}); "
            f"secret {store.fingerprint()} ({store.algorithm}, {store.generations} "
            f"generation{'s' if store.generations != 1 else ''}); policy: {_describe(policy)}",
            flush=True,
        )
        if metrics is not None:
            print(f"ikeqcd serve: metrics on http://{metrics[0]}:{metrics[1]}/metrics", flush=True)

    def on_stats(s: ServeStats) -> None:
        print(s.line(), file=err, flush=True)

    quiet = args.quiet or args.json or not args.stats_interval
    stats = serve(
        args.listen,
        store,
        nat_t=args.nat_t,
        policy=policy,
        duration=args.duration,
        stats_interval=None if quiet else args.stats_interval,
        prometheus_port=args.prometheus,
        on_stats=None if quiet else on_stats,
        on_ready=ready,
        gso=not args.no_gso,
        xfrm_bypass=not args.no_xfrm_bypass,
    )
    print(stats.to_json() if args.json else stats.format(), flush=True)
    return 0


def add_load_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``load`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "load",
        help="UDP load driver: protected-looking requests for random SAs, every reply checked",
        description=(
            "Send protected-looking IKE requests (HDR, SK{random}, INFORMATIONAL, Message ID =\n"
            "sequence number) for random SPI pairs to a gateway at a paced rate, check every\n"
            "reply with the codec (and every token, in constant time, with --secret-file), and\n"
            "report sent, answered, valid, rates and round-trip percentiles. Exits 1 when not\n"
            "one request got a reply (saying whether ICMP errors came back: nothing listens\n"
            "there). Ctrl-C stops sending, waits for the replies in flight and reports (exit 130)."
        ),
        epilog=_EXAMPLES_LOAD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        metavar="HOST:PORT",
        type=opt.Address(),
        help=f"the gateway (default 127.0.0.1:{DEFAULT_PORT}, "
        f"127.0.0.1:{DEFAULT_NAT_T_PORT} with --nat-t)",
    )
    p.add_argument(
        "--rate",
        type=_rate,
        required=True,
        metavar="R",
        help="requests per second (up to 1e9), or max: as fast as --window allows "
        "(0 and inf mean max too)",
    )
    p.add_argument(
        "--duration",
        type=opt.seconds(),
        default=5.0,
        metavar="S",
        help="seconds of sending, S >= 0 (default 5)",
    )
    p.add_argument(
        "--sas",
        type=opt.count(1, 10_000_000),
        default=1000,
        metavar="N",
        help="number of random SPI pairs, 1..10000000 (default 1000)",
    )
    p.add_argument(
        "--secret-file",
        type=opt.Path("in"),
        metavar="FILE",
        help="the server's secret file: verify every token (default: form only)",
    )
    p.add_argument("--nat-t", action="store_true", help="send with the non-ESP marker (UDP/4500)")
    p.add_argument(
        "--seed",
        type=opt.SEED,
        default=0,
        metavar="N",
        help="seed of SPIs and bodies, 0..2**64-1 (default 0)",
    )
    p.add_argument(
        "--window",
        type=opt.count(1, _RING),
        metavar="N",
        help=f"most requests in flight, 1..{_RING} (default: {_RING} when "
        f"paced, 512 at max)",
    )
    p.add_argument(
        "--timeout",
        type=opt.seconds(zero=False, hi=3600.0),
        default=1.0,
        metavar="S",
        help="a request unanswered after S seconds is lost, 0 < S <= 3600 (default 1)",
    )
    p.add_argument(
        "--body-len",
        type=opt.count(0, _MAX_BODY),
        default=32,
        metavar="N",
        help=f"octets of random SK body per request, 0..{_MAX_BODY} (default 32)",
    )
    p.add_argument(
        "--no-gso",
        action="store_true",
        help="one datagram per send/receive slot: no UDP GSO sends or GRO receives",
    )
    p.add_argument(
        "--recv-thread",
        action="store_true",
        help="receive and check replies on a second thread (default: between sends)",
    )
    p.add_argument(
        "--min-valid",
        type=opt.fraction(),
        metavar="FRACTION",
        help="exit 1 unless valid >= FRACTION * sent (e.g. 0.999)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help="progress bar even if not a TTY")
    bar.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_load)


def _bar(stream: TextIO, duration: float) -> Callable[[LoadReport], None]:
    start = time.monotonic()

    def show(r: LoadReport) -> None:
        t = min(time.monotonic() - start, duration)
        frac = 1.0 if duration <= 0 else min(t / duration, 1.0)
        width = 24
        filled = int(frac * width)
        rate = r.valid / t if t > 0 else 0.0
        stream.write(
            f"\r[{'#' * filled}{'.' * (width - filled)}] {t:5.1f}/{duration:g} s  "
            f"sent {r.sent:,}  answered {r.answered:,}  valid {r.valid:,}  ({rate:,.0f}/s)  "
        )
        stream.flush()

    return show


def _cmd_load(args: argparse.Namespace) -> int:
    maker: TokenMaker | None = None
    if args.secret_file is not None:
        store = SecretStore(args.secret_file, algorithm=None)
        store.load()
        maker = store.maker()
    show = args.progress or (not args.no_progress and not args.json and sys.stderr.isatty())
    progress = _bar(sys.stderr, args.duration) if show else None
    report = load(
        args.target,
        rate=args.rate,
        duration=args.duration,
        sas=args.sas,
        maker=maker,
        nat_t=args.nat_t,
        seed=args.seed,
        window=args.window,
        timeout=args.timeout,
        body_len=args.body_len,
        gso=not args.no_gso,
        recv_thread=args.recv_thread,
        progress=progress,
    )
    if show:
        sys.stderr.write("\n")
    print(report.to_json() if args.json else report.format(), flush=True)
    if report.interrupted:
        return 130
    silence = report.silence()
    if silence is not None:
        print(f"ikeqcd load: error: {silence}", file=sys.stderr)
        return 1
    if args.min_valid is not None and report.valid < args.min_valid * report.sent:
        print(
            f"ikeqcd load: error: {report.valid} valid replies for {report.sent} requests, "
            f"below --min-valid {args.min_valid}",
            file=sys.stderr,
        )
        return 1
    return 0
