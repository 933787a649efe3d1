"""The batch load core: the one wrapper of the native load driver, for `ikeqcd load` and the Locust user.

:class:`BatchLoad` wraps the native load driver (``rust/net/load.rs``: paced ``sendmmsg``,
``recvmmsg``, reply parsing and constant-time token verification, all with the GIL
released) and hands out what happened since the last call as one :class:`Batch`: counts per
outcome and the latency distribution as a compact histogram (numpy arrays). No Python runs
per datagram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ikeqcd import _core
from ikeqcd._core import TokenMaker
from ikeqcd.errors import InvalidArgument

__all__ = ["OUTCOMES", "Batch", "BatchLoad", "parse_target"]

OUTCOMES = (
    "valid",
    "bare",
    "bad_token",
    "mismatched",
    "malformed",
    "unmatched",
    "late",
    "lost",
    "send_errors",
    "recv_errors",
)
"""Outcome counters of the native driver, each a request's (or reply's) fate."""

_OPEN_ENDED = 10.0 * 365 * 86400  # "send until stopped", as a native duration


def parse_target(value: str) -> str:
    """``HOST:PORT``, ``[V6]:PORT`` or either with a ``udp://`` prefix -> ``HOST:PORT``.

    Raises:
        InvalidArgument: no port, or a port outside 1..65535.
    """
    text = value.strip()
    if text.lower().startswith("udp://"):
        text = text[6:]
    text = text.rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise InvalidArgument(
            f"target must be HOST:PORT (or udp://HOST:PORT) with a port 1..65535, got {value!r}"
        )
    return text


@dataclass(frozen=True)
class Batch:
    """What happened between two :meth:`BatchLoad.step` calls.

    Attributes:
        counts: outcome -> number (see :data:`OUTCOMES`); ``sent`` too.
        latency_ns: middles of the latency histogram's non-empty buckets (uint64, ns) of the
            replies answered in this batch.
        latency_counts: how many replies fell in each (uint64).
        reply_len: octets of one full reply (for the reported length).
    """

    counts: dict[str, int]
    latency_ns: npt.NDArray[np.uint64]
    latency_counts: npt.NDArray[np.uint64]
    reply_len: int

    @property
    def answered(self) -> int:
        """Replies that came back in this batch (whatever their verdict)."""
        return int(self.latency_counts.sum())

    def median_ms(self) -> float:
        """The batch's median latency in milliseconds (0 when nothing was answered)."""
        n = self.answered
        if n == 0:
            return 0.0
        cum = np.cumsum(self.latency_counts)
        return float(self.latency_ns[int(np.searchsorted(cum, (n + 1) // 2))]) / 1e6


class BatchLoad:
    """A paced stream of protected-looking requests to one target, read batch by batch: the
    one wrapper of the native load driver, used by ``ikeqcd load`` (:func:`ikeqcd.net.load`)
    and by the Locust user.

    Args:
        target: ``HOST:PORT`` (see :func:`parse_target`).
        rate: requests per second (> 0; ``math.inf`` or 0 for as fast as ``window`` allows).
        sas: number of SPI pairs drawn from ``seed``.
        maker: the server's secrets: every token is verified; ``None`` checks form only.
        nat_t: UDP/4500 framing (non-ESP marker).
        seed: seed of the SPI pairs and bodies.
        timeout: seconds after which an unanswered request counts as ``lost``.
        window: most requests in flight (default: 2**18 when paced, 512 when not).
        body_len: octets of SK body per request.
        gso: segmented sends / coalesced receives where the kernel has them.
        recv_thread: receive on a second thread.
    """

    def __init__(
        self,
        target: str,
        *,
        rate: float,
        sas: int = 1000,
        maker: TokenMaker | None = None,
        nat_t: bool = False,
        seed: int = 0,
        timeout: float = 1.0,
        window: int | None = None,
        body_len: int = 32,
        gso: bool = True,
        recv_thread: bool = False,
    ) -> None:
        if math.isnan(rate) or rate < 0:
            raise InvalidArgument(f"rate must be >= 0 requests per second, got {rate!r}")
        paced = 0 < rate < math.inf
        self.rate = rate if paced else 0.0
        """The pace asked of the driver (0: as fast as the window allows)."""
        self._driver = _core._LoadDriver(
            parse_target(target),
            rate=self.rate,
            sas=sas,
            seed=seed,
            nat_t=nat_t,
            maker=maker,
            body_len=body_len,
            window=window if window is not None else (1 << 18 if paced else 512),
            timeout=timeout,
            gso=gso,
            recv_thread=recv_thread,
        )
        self._t = 0.0
        self._timeout = timeout
        self._last = {k: 0 for k in ("sent", *OUTCOMES)}
        self._last_hist: dict[int, int] = {}
        gens = maker.generations if maker is not None else 1
        tl = maker.token_len if maker is not None else 32
        self.reply_len = 4 * nat_t + 28 + 8 + gens * (8 + tl)

    def run(self, until: float, send_for: float) -> None:
        """Send while less than ``send_for`` seconds have passed since the first call and
        receive until ``until`` seconds have (GIL released)."""
        self._t = until
        self._driver.run(until, send_for)

    def drain(self) -> None:
        """Stop sending; wait for the replies in flight, up to the timeout."""
        self._driver.drain(self._timeout + 0.05)

    def report(self) -> dict[str, float]:
        """The native counters so far (see ``_core._LoadDriver.report``)."""
        return self._driver.report()

    @property
    def target(self) -> tuple[str, int]:
        """The resolved (host, port)."""
        return self._driver.target

    def step(self, seconds: float) -> Batch:
        """Send and receive for ``seconds`` more (open-ended sending), then what happened."""
        self.run(self._t + seconds, _OPEN_ENDED)
        return self._batch()

    def finish(self) -> Batch:
        """Stop sending, wait for the replies in flight (up to the timeout), last batch."""
        self.drain()
        return self._batch()

    def stop(self) -> None:
        """Make a running :meth:`step` return at once (from another thread)."""
        self._driver.stop()

    def _batch(self) -> Batch:
        r = self._driver.report()
        counts = {}
        for k in self._last:
            v = int(r[k])
            counts[k] = v - self._last[k]
            self._last[k] = v
        mids, cnts = self._driver.latency_buckets()
        now = dict(zip(mids.tolist(), cnts.tolist()))
        delta = {m: c - self._last_hist.get(m, 0) for m, c in now.items()}
        self._last_hist = now
        keep = sorted(m for m, c in delta.items() if c > 0)
        return Batch(
            counts=counts,
            latency_ns=np.array(keep, dtype=np.uint64),
            latency_counts=np.array([delta[m] for m in keep], dtype=np.uint64),
            reply_len=self.reply_len,
        )
