"""``ikeqcd load``: paced requests, every reply checked, a report with latency percentiles."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ikeqcd import _core
from ikeqcd._core import TokenMaker
from ikeqcd._netcommon import _address, _maker_of
from ikeqcd.errors import InvalidArgument
from ikeqcd.loadcore import OUTCOMES, BatchLoad
from ikeqcd.secret import SecretStore

__all__ = ["LoadReport", "load", "load_spis"]


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
    driver: BatchLoad,
    *,
    rate: float,
    duration: float,
    sas: int,
    verified: bool,
    interrupted: bool = False,
) -> LoadReport:
    r = driver.report()
    # the native driver's outcome counters, plus what was sent and answered
    ints = {k: int(r[k]) for k in ("sent", "answered", *OUTCOMES)}
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
    driver = BatchLoad(
        _address(target, nat_t, "target"),
        rate=rate,
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
    rate_asked = driver.rate

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
        driver.drain()
    except KeyboardInterrupt:
        interrupted = True
    final = report(interrupted)
    if progress is not None:
        progress(final)
    return final


# -------------------------------------------------------------------------------------- CLI

