"""The token maker's side after a reboot: answer protected requests for unknown IKE SAs.

RFC 6290 §3, §4.5: a protected IKE request whose SPI pair we no longer know gets
``HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+`` in the clear, one token per secret generation.
RFC 6290 §9.2 (MUST NOT): never for an SA that is live here or anywhere in the cluster.
RFC 7296 §2.21.4: never for responses or IKE_SA_INIT.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ikeqcd import _core
from ikeqcd._clock import read_clock
from ikeqcd._core import TokenMaker
from ikeqcd._keys import UNKNOWN_SOURCE, source_key
from ikeqcd.errors import ClusterUnavailable, InvalidArgument, InvalidPolicy
from ikeqcd.policy import MakerPolicy
from ikeqcd.wire import Buffer

__all__ = ["LiveCheck", "Reason", "Source", "SupportsContainsMany", "TokenResponder"]


class Reason(enum.IntEnum):
    """What happened to a datagram. The codes mirror the Rust core's and never change."""

    REPLIED = 0
    """A full QCD reply was sent."""
    MALFORMED = 1
    """Not a well-formed IKE message (truncated, lying lengths, bad payload chain, SPI-I 0)."""
    NOT_IKEV2 = 2
    """Major version other than 2."""
    ESP = 3
    """Not IKE on UDP/4500: ESP or a NAT keepalive (``nat_t=True`` only)."""
    RESPONSE = 4
    """R=1: RFC 7296 §2.21.4 MUST NOT respond."""
    UNPROTECTED = 5
    """First payload is not Encrypted (SK/SKF): not a protected request."""
    IKE_SA_INIT = 6
    """IKE_SA_INIT (exchange 34, or SPI-R zero): a new SA."""
    SESSION_RESUME = 7
    """IKE_SESSION_RESUME (38, RFC 5723): unprotected."""
    LIVE_SA = 8
    """The SPI pair is live here or in the cluster (RFC 6290 §9.2 MUST NOT)."""
    DISABLED = 9
    """QCD switched off by policy (§8.1): plain RFC 7296, a bare INVALID_IKE_SPI was sent."""
    RATE_LIMITED_BARE = 10
    """Rate-limited: a bare INVALID_IKE_SPI was sent instead (§8.1); policy layer."""
    RATE_LIMITED_DROP = 11
    """Rate-limited: nothing sent (§8.1); policy layer."""
    OUTSIDE_WINDOW = 12
    """Outside the answering window after start (§9.3): a bare INVALID_IKE_SPI was sent."""
    CLUSTER_UNAVAILABLE = 13
    """The cluster's live-SA store could not answer for this batch (unreachable, past its
    deadline, an error, or this node's secret differs from the cluster's): fail closed,
    nothing was sent (§9.2 cannot be checked, so no token is revealed). See
    :mod:`ikeqcd.cluster`."""


Source = tuple[str, int]
"""A request's source: (IP address, UDP port). The reply goes back there (RFC 7296 §2.11)."""


@runtime_checkable
class SupportsContainsMany(Protocol):
    """A bulk live-SA set, like :class:`ikeqcd.SaTable`."""

    def contains_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], /
    ) -> npt.NDArray[np.bool_]: ...


LiveCheck = SupportsContainsMany | Callable[[int, int], bool] | Any
"""A live-SA check: an object with ``contains_many``, a container of ``(spi_i, spi_r)``
tuples (``in``), or a callable ``(spi_i, spi_r) -> bool``."""

_POLICY_CODES = np.array(
    [
        Reason.REPLIED,
        Reason.DISABLED,
        Reason.RATE_LIMITED_BARE,
        Reason.RATE_LIMITED_DROP,
        Reason.OUTSIDE_WINDOW,
    ],
    dtype=np.int8,
)
_N_REASONS = len(Reason)


def _gate_of(policy: MakerPolicy, now: float) -> _core._MakerGate:
    """The native reply gate (``rust/gate.rs``) for ``policy``, its token window from ``now``;
    shared by :class:`TokenResponder` and ``ikeqcd serve``."""
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


class TokenResponder:
    """Answers protected IKE requests for unknown SAs with QCD tokens (RFC 6290 §4.5).

    A datagram gets a reply only if it is a well-formed IKEv2 request (R=0) whose first
    payload is Encrypted (SK, or SKF of RFC 7383), whose exchange is neither IKE_SA_INIT nor
    IKE_SESSION_RESUME, whose SPI-R is not zero, and whose SPI pair is not live. The reply
    carries one QCD_TOKEN per secret generation of ``maker`` (current first) and, on
    UDP/4500, the non-ESP marker. Every datagram gets a :class:`Reason`.

    Args:
        maker: the token maker (its secrets are copied into the native responder).
        live: our live SAs (RFC 6290 §9.2 MUST NOT reveal their tokens): ``None``; an object
            with ``contains_many(spi_i, spi_r) -> bool array`` (like ``SaTable``), asked once
            per batch; a container of ``(spi_i, spi_r)`` int tuples (``in``); or a callable
            ``(spi_i, spi_r) -> bool`` for cluster-wide knowledge, asked per candidate. An
            exception from it propagates and nothing is sent (fail closed), except
            :class:`~ikeqcd.errors.ClusterUnavailable` (raised by
            :class:`ikeqcd.cluster.LiveSaStore` when the store cannot answer): then every
            candidate of the batch gets ``Reason.CLUSTER_UNAVAILABLE`` and nothing is sent,
            and the next batch asks again.
        nat_t: ``True`` for a UDP/4500 socket (non-ESP marker required; ESP is
            ``Reason.ESP``), ``False`` for UDP/500, ``None`` to auto-detect per datagram.
        policy: the reply policy; ``MakerPolicy()`` (per-source and global limits on) by
            default. Pass ``MakerPolicy.unlimited()`` explicitly for benchmarks and closed
            test beds: every unknown-SPI request from anywhere then draws a reply.
        clock: monotonic seconds for the rate limits; each reading is checked (a NaN,
            infinite or absurd reading raises ``InvalidArgument``, nothing is sent).

    Reflection bound (always on): a request must carry an SK body of at least
    ``wire.MIN_SK_BODY`` octets (the smallest real transform), and a reply stays within
    ``MAX_AMPLIFICATION`` (2) times its request's size on the wire, IP and UDP headers
    included: older secret generations are left out of the reply when needed, the current
    one never is.

    Policy seam: :meth:`admit` is called with the candidates that passed the live check and
    may downgrade each one (switch off, rate limits, startup window). The default admits
    all. While ``live`` is ``None`` and :meth:`admit` is not overridden, a whole batch is one
    native call.

    Not thread-safe: use one responder per thread (they can share a ``TokenMaker``).
    """

    __slots__ = (
        "_admits",
        "_clock",
        "_core",
        "_counts",
        "_fast",
        "_gate",
        "_live",
        "_live_kind",
        "_maker",
        "_nat_t",
        "_policy",
    )

    def __init__(
        self,
        maker: TokenMaker,
        *,
        live: LiveCheck | None = None,
        nat_t: bool | None = None,
        policy: MakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not isinstance(maker, TokenMaker):
            raise InvalidArgument(f"maker must be an ikeqcd.TokenMaker, got {type(maker).__name__}")
        if nat_t is not None and not isinstance(nat_t, (bool, np.bool_)):
            raise InvalidArgument(f"nat_t must be True, False or None, got {nat_t!r}")
        self._maker = maker
        self._nat_t = None if nat_t is None else bool(nat_t)
        self._core = _core._Responder(maker, nat_t=self._nat_t)
        self._live: Any = live
        self._live_kind = self._kind_of(live)
        self._counts = [0] * _N_REASONS
        if policy is None:
            policy = MakerPolicy()
        if not isinstance(policy, MakerPolicy):
            raise InvalidArgument(f"policy must be a MakerPolicy, got {type(policy).__name__}")
        if not callable(clock):
            raise InvalidArgument(f"clock must be a callable returning seconds, got {clock!r}")
        self._policy = policy
        self._clock = clock
        self._gate: Any = None
        if policy != MakerPolicy.unlimited():
            # the clock is read only where the policy has a token window to start
            start = 0.0 if policy.token_window is None else read_clock(clock)
            self._gate = _gate_of(policy, start)
        self._admits = self._gate is not None or type(self).admit is not TokenResponder.admit
        self._fast = live is None and not self._admits

    @staticmethod
    def _kind_of(live: object) -> str:
        if live is None:
            return "none"
        if callable(getattr(live, "contains_many", None)):
            return "bulk"
        if hasattr(live, "__contains__"):
            return "contains"
        if callable(live):
            return "call"
        raise InvalidArgument(
            "live must be None, an object with contains_many(spi_i, spi_r), a container of "
            f"(spi_i, spi_r) tuples, or a callable (spi_i, spi_r) -> bool; got {type(live).__name__}"
        )

    @property
    def maker(self) -> TokenMaker:
        """The token maker."""
        return self._maker

    @property
    def nat_t(self) -> bool | None:
        """The framing: True (UDP/4500), False (UDP/500), None (auto)."""
        return self._nat_t

    @property
    def counters(self) -> dict[Reason, int]:
        """How many datagrams got each reason so far."""
        return {r: self._counts[r] for r in Reason}

    def reset_counters(self) -> None:
        """Set every counter to zero."""
        self._counts = [0] * _N_REASONS

    def __repr__(self) -> str:
        return (
            f"TokenResponder({self._maker!r}, live={self._live_kind}, nat_t={self._nat_t!r})"
        )

    # -- the policy seam -----------------------------------------------------------------

    def admit(
        self,
        reasons: npt.NDArray[np.int8],
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        sources: Sequence[Source] | None,
    ) -> None:
        """Policy seam: veto or downgrade candidates, in place.

        Called once per batch (and per single :meth:`respond`) with every datagram's current
        reason; entries equal to ``Reason.REPLIED`` are candidates that passed the live
        check. An override may change those entries, and only those, to
        ``Reason.DISABLED`` (switch off, §8.1), ``Reason.RATE_LIMITED_BARE`` (send a bare
        INVALID_IKE_SPI instead), ``Reason.RATE_LIMITED_DROP`` (send nothing) or
        ``Reason.OUTSIDE_WINDOW`` (§9.3). Anything else raises
        :class:`ikeqcd.errors.InvalidPolicy` and nothing is sent. The default admits all.

        Args:
            reasons: int8 reason codes, one per datagram (modify in place).
            spi_i: SPI-I per datagram (0 where the header was unreadable).
            spi_r: SPI-R per datagram.
            sources: the sources given to :meth:`respond_many` (or ``None``).

        With a :class:`~ikeqcd.MakerPolicy`, the default applies it here: the switch, the
        answering window, per-source (IPv4 address or IPv6 /64) and global token buckets, and
        the flood fallback. A subclass that overrides this and still wants the policy calls
        ``super().admit(...)``.
        """
        if self._gate is None:
            return
        if sources is None:
            keys = np.full(len(reasons), UNKNOWN_SOURCE, dtype=np.uint64)
        else:
            addrs = list(map(itemgetter(0), sources))
            known = {a: source_key(a) for a in set(addrs)}  # one key per distinct address
            keys = np.fromiter(map(known.__getitem__, addrs), dtype=np.uint64, count=len(addrs))
        self._gate.decide_many(reasons, keys, read_clock(self._clock))

    @property
    def policy(self) -> MakerPolicy:
        """The reply policy (``MakerPolicy()`` unless another was given)."""
        return self._policy

    @property
    def sources_tracked(self) -> int:
        """Per-source rate-limit buckets held now: at most ``policy.max_sources``, whatever
        the number of (spoofed) sources; 0 without a policy."""
        return 0 if self._gate is None else int(self._gate.sources_tracked)

    def _run_admit(
        self,
        reasons: npt.NDArray[np.int8],
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        sources: Sequence[Source] | None,
    ) -> None:
        before = reasons.copy()
        self.admit(reasons, spi_i, spi_r, sources)
        cand = before == Reason.REPLIED
        bad = (cand & ~np.isin(reasons, _POLICY_CODES)) | (~cand & (reasons != before))
        if bad.any():
            k = int(np.flatnonzero(bad)[0])
            raise InvalidPolicy(
                f"admit() set datagram {k} from {Reason(int(before[k])).name} to {int(reasons[k])}; "
                "it may only change REPLIED candidates to DISABLED, RATE_LIMITED_BARE, "
                "RATE_LIMITED_DROP or OUTSIDE_WINDOW"
            )

    # -- live check ----------------------------------------------------------------------

    def _live_one(self, a: int, b: int) -> bool:
        kind, live = self._live_kind, self._live
        if kind == "contains":
            return bool((a, b) in live)
        if kind == "call":
            return bool(live(a, b))
        if kind == "bulk":
            if hasattr(live, "__contains__"):  # cheaper than two 1-element arrays
                return bool((a, b) in live)
            got = self._bulk(np.array([a], dtype=np.uint64), np.array([b], dtype=np.uint64))
            return bool(got[0])
        return False

    def _bulk(
        self, a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        got = np.asarray(self._live.contains_many(a, b), dtype=np.bool_)
        if got.shape != a.shape:
            raise InvalidArgument(
                f"live.contains_many returned shape {got.shape} for {a.shape[0]} SPI pairs"
            )
        return got

    def _live_mask(
        self, a: npt.NDArray[np.uint64], b: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        if self._live_kind == "bulk":
            return self._bulk(a, b)
        return np.fromiter(
            (self._live_one(x, y) for x, y in zip(a.tolist(), b.tolist())),
            dtype=np.bool_,
            count=len(a),
        )

    # -- answering -----------------------------------------------------------------------

    def respond(self, datagram: Buffer, source: Source | None = None) -> bytes | None:
        """Answer one datagram: the reply to send back to ``source``, or ``None``.

        The reason is counted in :attr:`counters`; use :meth:`respond_many` to get it.

        Raises:
            InvalidArgument: ``datagram`` is not bytes-like.
        """
        if self._fast:
            reply, code = self._core.respond(datagram)
            self._counts[code] += 1
            return reply
        reply, code = self._respond_one(datagram, source)
        self._counts[code] += 1
        return reply

    def _respond_one(self, datagram: Buffer, source: Source | None) -> tuple[bytes | None, int]:
        code, a, b = self._core.classify(datagram)
        if code != Reason.REPLIED:
            return None, code
        try:
            if self._live_kind != "none" and self._live_one(a, b):
                return None, Reason.LIVE_SA
        except ClusterUnavailable:
            return None, Reason.CLUSTER_UNAVAILABLE
        if self._admits:
            reasons = np.zeros(1, dtype=np.int8)
            self._run_admit(
                reasons,
                np.array([a], dtype=np.uint64),
                np.array([b], dtype=np.uint64),
                None if source is None else [source],
            )
            code = int(reasons[0])
        return self._core.build(datagram, code)

    def respond_many(
        self, datagrams: Sequence[Buffer], sources: Sequence[Source] | None = None
    ) -> tuple[list[bytes | None], npt.NDArray[np.int8]]:
        """Answer a batch.

        Args:
            datagrams: the UDP payloads received (``bytes`` are not copied).
            sources: their sources, same length, passed to :meth:`admit` (optional).

        Returns:
            ``(replies, reasons)``: ``replies[k]`` is the reply for datagram k or ``None``;
            ``reasons[k]`` its :class:`Reason` code (int8).

        Raises:
            InvalidArgument: a datagram that is not bytes-like, or ``sources`` of the wrong
                length.
        """
        if sources is not None and len(sources) != len(datagrams):
            raise InvalidArgument(
                f"{len(datagrams)} datagrams but {len(sources)} sources; give one per datagram"
            )
        if self._fast:
            replies, reasons = self._core.respond_many(datagrams)
        else:
            reasons, a, b = self._core.classify_many(datagrams)
            cand = np.flatnonzero(reasons == Reason.REPLIED)
            if len(cand) and self._live_kind != "none":
                try:
                    live = self._live_mask(a[cand], b[cand])
                    reasons[cand[live]] = Reason.LIVE_SA
                except ClusterUnavailable:
                    reasons[cand] = Reason.CLUSTER_UNAVAILABLE
            if self._admits:
                self._run_admit(reasons, a, b, sources)
            replies, reasons = self._core.build_many(datagrams, reasons)
        counts = np.bincount(reasons.astype(np.intp), minlength=_N_REASONS)
        for code, c in enumerate(counts.tolist()):
            self._counts[code] += c
        return replies, reasons
