"""The token taker: decide, from an unprotected message, whether a peer has restarted.

:class:`FailureDetector` owns the decisions and leaves the actions to the IKE daemon that
embeds it. It keeps the peer tokens in an :class:`~ikeqcd.SaTable` (stored only from protected
exchanges, RFC 6290 §4.4), tracks the liveness requests in flight (for the issue-202 "pending
request" rule), and turns each unprotected INVALID_IKE_SPI / INVALID_SPI message into a
:class:`Verdict`. Decisions held back by the accept delay come out of :meth:`poll`.

What the owner does with the outcome:

- :class:`PeerRestarted` — silently delete the IKE SA and all its Child SAs, no Delete payload,
  no response (§3, §4.5); with ``make_before_break`` first re-establish, then delete the old SA.
  The detector has already forgotten the token and any pending request of that SA.
- :class:`CheckLiveness` — a plain INVALID_IKE_SPI (or a plain INVALID_SPI naming one of the
  SA's Child SAs) arrived: start (rate-limited) one liveness check, never a teardown (RFC 7296
  §1.5, §2.21.4, spec case 41). None is asked for while a request is already outstanding on
  that SA.
- :class:`RestartCancelled` — a held decision was cancelled because a genuine protected
  message (a response, or a protected QCD_TOKEN) arrived during the accept delay: the
  unprotected token was a forgery or a replay.

Each event is delivered exactly once: an event decided while judging a datagram is
:attr:`Verdict.event` of that :meth:`FailureDetector.receive` call; events decided later (held
restarts that became due, cancellations) come out of :meth:`FailureDetector.poll`.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from itertools import repeat

import numpy as np
import numpy.typing as npt

from ikeqcd import _taker_batch
from ikeqcd._clock import check_time, read_clock
from ikeqcd._core import RateLimiter, SaTable, _PairMap
from ikeqcd._keys import source_key
from ikeqcd._taker_batch import BatchVerdicts
from ikeqcd._taker_held import HeldRestarts
from ikeqcd.errors import InvalidArgument, InvalidSpi, MalformedMessage
from ikeqcd.policy import TakerPolicy
from ikeqcd.table import TokenCheck
from ikeqcd.wire import parse_qcd_reply

__all__ = [
    "CheckLiveness",
    "Event",
    "FailureDetector",
    "PeerRestarted",
    "RestartCancelled",
    "Verdict",
    "VerdictKind",
]

Pair = tuple[int, int]


def _pair(spi_i: object, spi_r: object) -> Pair:
    """Check an SPI pair given by the owner (ints in 0..2**64-1)."""
    for name, v in (("spi_i", spi_i), ("spi_r", spi_r)):
        if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 2**64:
            raise InvalidSpi(f"{name} must be an int in 0..2**64-1, got {v!r}")
    return (spi_i, spi_r)  # type: ignore[return-value]


def _message_id(message_id: object) -> int:
    if not isinstance(message_id, int) or isinstance(message_id, bool) or not 0 <= message_id < 2**32:
        raise InvalidArgument(f"message_id must be an int in 0..2**32-1, got {message_id!r}")
    return message_id


class VerdictKind(enum.Enum):
    """What :meth:`FailureDetector.receive` concluded."""

    PEER_RESTARTED = "peer restarted"
    DEFERRED = "deferred (accept delay)"
    NO_TOKEN = "ignored: no token (liveness check requested)"
    NO_SA = "ignored: no such SA"
    MISMATCH = "ignored: token mismatch"
    NOT_PENDING = "ignored: no request outstanding"
    WRONG_MESSAGE_ID = "ignored: message ID does not match the outstanding request"
    NOT_INVALID_IKE_SPI = "ignored: token without INVALID_IKE_SPI"
    DAMPENED = "ignored: peer dampened"
    RATE_LIMITED = "ignored: verification rate limit"
    MALFORMED = "ignored: malformed"
    NOT_A_REPLY = "ignored: not an unprotected QCD reply"
    DISABLED = "ignored: not a token taker"


_taker_batch.KINDS[:] = [k.name for k in VerdictKind]


@dataclass(frozen=True)
class PeerRestarted:
    """The peer restarted and lost this IKE SA: tear it down (or rebuild first)."""

    spi_i: int
    spi_r: int
    source: tuple[str, int]
    at: float
    via: str  # "invalid_ike_spi" or "invalid_spi"
    make_before_break: bool


@dataclass(frozen=True)
class CheckLiveness:
    """Start one liveness check for this SA (a plain INVALID_IKE_SPI arrived)."""

    spi_i: int
    spi_r: int
    at: float


@dataclass(frozen=True)
class RestartCancelled:
    """A held restart decision was cancelled by a genuine protected response."""

    spi_i: int
    spi_r: int
    at: float


Event = PeerRestarted | CheckLiveness | RestartCancelled


@dataclass(frozen=True)
class Verdict:
    """The outcome of one unprotected message; ``event`` is what the owner must act on now
    (a :class:`PeerRestarted` or :class:`CheckLiveness`), delivered only here."""

    kind: VerdictKind
    spi_i: int | None = None
    spi_r: int | None = None
    detail: str = ""
    event: Event | None = None

    @property
    def restarted(self) -> bool:
        """True when the SA is to be torn down now."""
        return self.kind is VerdictKind.PEER_RESTARTED


@dataclass(frozen=True)
class _Due:
    source: tuple[str, int]
    via: str
    now: float


_UNKNOWN_PEER = ("ikeqcd", "unknown peer")
"""The dampening key of SAs whose peer identity was never given."""


@dataclass
class _Counters:
    by_kind: dict[str, int] = field(default_factory=dict)

    def bump(self, kind: VerdictKind) -> None:
        self.by_kind[kind.name] = self.by_kind.get(kind.name, 0) + 1


class FailureDetector:
    """Token-taker decisions for many IKE SAs (RFC 6290 §3, §4.4, §4.5, §5.3, §8.1, §8.2).

    Args:
        table: where peer tokens live (created if omitted).
        policy: :meth:`TakerPolicy.hardened` by default; :meth:`TakerPolicy.rfc6290` for the
            plain RFC.
        clock: monotonic seconds; tests pass a fake clock.
        peer_of: maps an SA to its peer identity for dampening (the authenticated IKE
            identity, IDi/IDr). Without it, the ``peer`` given to :meth:`token_received` is
            used; SAs stored without one share a single "unknown peer" key (after a QCD
            teardown, every SA stored since then without an identity is dampened). Never the
            source address of the unprotected message: an attacker chooses that one.
    """

    def __init__(
        self,
        table: SaTable | None = None,
        *,
        policy: TakerPolicy | None = None,
        clock: Callable[[], float] = time.monotonic,
        peer_of: Callable[[int, int], Hashable] | None = None,
    ) -> None:
        if table is not None and not isinstance(table, SaTable):
            raise InvalidArgument(f"table must be an ikeqcd.SaTable, got {type(table).__name__}")
        if policy is not None and not isinstance(policy, TakerPolicy):
            raise InvalidArgument(f"policy must be a TakerPolicy, got {type(policy).__name__}")
        if not callable(clock):
            raise InvalidArgument(f"clock must be a callable returning seconds, got {clock!r}")
        self.table = table if table is not None else SaTable()
        self.policy = policy if policy is not None else TakerPolicy.hardened()
        self._clock = clock
        self._peer_of = peer_of
        # per-SA bookkeeping in the core (keyed maps, batch calls): the Message ID of the
        # request in flight, and the held restart decisions (accept delay)
        self._pending = _PairMap()
        self._held = HeldRestarts()
        # Dampening compares the order of protected stores and teardowns, not clock readings
        # (equal readings are common: a batch, a coarse clock). peer -> (teardown seq, until)
        self._dampened: dict[Hashable, tuple[int, float]] = {}
        self._born = _PairMap()  # SAs stored while some peer is dampened -> store sequence number
        self._peer: dict[Pair, Hashable] = {}  # identity learned in the protected exchange
        self._seq = 0
        self._children: dict[int, Pair] = {}  # child SPI -> its IKE SA
        self._children_of: dict[Pair, set[int]] = {}  # and back, so teardown is O(children)
        self._events: list[Event] = []
        p = self.policy
        self._verify_limit = RateLimiter(p.verify_rate, p.verify_burst, max_keys=p.max_sources)
        live_burst = max(1.0, p.liveness_rate) if p.liveness_rate > 0 else 0.0  # 0: none
        self._liveness_limit = RateLimiter(p.liveness_rate, live_burst, max_keys=1)
        self._counters = _Counters()

    def __repr__(self) -> str:
        return (
            f"FailureDetector(policy={self.policy.name!r}, sas={len(self.table)}, "
            f"pending={len(self._pending)}, held={len(self._held)})"
        )

    # -- protected side: what the IKE daemon tells us ------------------------------------

    def token_received(
        self, spi_i: int, spi_r: int, token: bytes, *, peer: Hashable | None = None
    ) -> None:
        """A QCD_TOKEN arrived in a *protected* exchange (IKE_AUTH, rekey response, or a
        gratuitous INFORMATIONAL): store it, replacing the SA's current one (§3, §4.4).

        ``peer`` is the peer's authenticated identity from that exchange (IDi/IDr, or any
        hashable that names the peer): dampening is keyed on it (see ``peer_of``). A
        protected message proves the peer holds the SA: a restart held for it is cancelled
        (:class:`RestartCancelled` from :meth:`poll`)."""
        now = self._now()
        self.table.insert(spi_i, spi_r, token, now=now)
        if peer is not None:
            self._peer[(spi_i, spi_r)] = peer
        self._seq += 1
        if self._dampened:
            self._born.set(spi_i, spi_r, self._seq)
        if self._held:
            self._cancel((spi_i, spi_r), now)

    def tokens_received(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        tokens: npt.NDArray[np.uint8],
        *,
        peer: Hashable | None = None,
    ) -> None:
        """Batch :meth:`token_received` (for staging many SAs at once), all with one peer."""
        now = self._now()
        self.table.insert_many(spi_i, spi_r, tokens, now=now)
        if peer is not None:
            self._peer.update(dict.fromkeys(zip(spi_i.tolist(), spi_r.tolist()), peer))
        self._seq += 1
        if self._dampened:
            self._born.set_many(spi_i, spi_r, np.full(len(spi_i), self._seq, np.uint64))
        self._cancel_many(spi_i, spi_r, now)

    def sa_deleted(self, spi_i: int, spi_r: int) -> None:
        """The SA was deleted or expired: forget its token(s) and state (§5.3)."""
        pair = (spi_i, spi_r)
        self.table.remove(spi_i, spi_r)
        self._pending.pop(spi_i, spi_r)
        self._held.cancel_one(spi_i, spi_r)
        self._born.pop(spi_i, spi_r)
        self._peer.pop(pair, None)
        self._forget_children(pair)

    def sas_deleted(self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64]) -> None:
        """Batch :meth:`sa_deleted`."""
        if not len(spi_i):
            return
        self.table.remove_many(spi_i, spi_r)
        for m in (self._pending, self._born):
            if m:
                m.pop_many(spi_i, spi_r)
        self._held.cancel(spi_i, spi_r)
        if self._peer or self._children_of:
            pairs = list(zip(spi_i.tolist(), spi_r.tolist()))
            if self._peer:
                list(map(self._peer.pop, pairs, repeat(None)))  # C-level pops
            if self._children_of:
                list(map(self._forget_children, pairs))

    def _forget_many(self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], now: float) -> None:
        """:meth:`_forget` for each pair in order (restarts decided together)."""
        if self._peer_of is not None or self._children_of:
            for pair in zip(spi_i.tolist(), spi_r.tolist()):
                self._forget(pair, now)
            return
        for m in (self._pending, self._born):
            if m:
                m.pop_many(spi_i, spi_r)
        if self._peer:
            peers = list(map(self._peer.pop, zip(spi_i.tolist(), spi_r.tolist()), repeat(_UNKNOWN_PEER)))
        else:
            peers = [_UNKNOWN_PEER]
        if self.policy.dampening > 0 and len(spi_i):
            if len(set(peers)) > 1:
                for peer in peers:
                    self._dampen(peer, now)
            else:  # one peer: the first restart opens (or keeps) the window, the rest extend it
                self._dampen(peers[0], now)
                self._seq += len(spi_i) - 1

    def _forget_children(self, pair: Pair) -> None:
        for child in self._children_of.pop(pair, ()):
            del self._children[child]

    def child_sa_added(self, child_spi: int, spi_i: int, spi_r: int) -> None:
        """Remember which IKE SA owns an inbound ESP/AH SPI (for the §8.2 INVALID_SPI path)."""
        if not isinstance(child_spi, int) or not 0 <= child_spi < 2**32:
            raise InvalidArgument(f"child_spi must be a 32-bit SPI, got {child_spi!r}")
        self.child_sa_deleted(child_spi)
        pair = _pair(spi_i, spi_r)
        self._children[child_spi] = pair
        self._children_of.setdefault(pair, set()).add(child_spi)

    def child_sa_deleted(self, child_spi: int) -> None:
        """Forget a Child SA's SPI."""
        pair = self._children.pop(child_spi, None)
        if pair is not None:
            kids = self._children_of.get(pair)
            if kids is not None:
                kids.discard(child_spi)
                if not kids:
                    del self._children_of[pair]

    def request_sent(self, spi_i: int, spi_r: int, message_id: int) -> None:
        """A protected request (e.g. a liveness check) went out on this SA."""
        self._pending.set(*_pair(spi_i, spi_r), _message_id(message_id))

    def requests_sent(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64],
        message_id: npt.NDArray[np.uint32],
    ) -> None:
        """Batch :meth:`request_sent` (SPIs from the owner's own arrays)."""
        self._pending.set_many(spi_i, spi_r, np.asarray(message_id, np.uint64))

    def responses_received(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64],
        message_id: npt.NDArray[np.uint32],
    ) -> None:
        """Batch :meth:`response_received`, in order."""
        now = self._now()
        if self._pending:  # (the same SA twice: the first one answers it)
            self._pending.pop_matching(spi_i, spi_r, np.asarray(message_id, np.uint64))
        self._cancel_many(spi_i, spi_r, now)

    def response_received(self, spi_i: int, spi_r: int, message_id: int) -> None:
        """A genuine protected response arrived: the peer is alive. Cancels a held restart."""
        pair = _pair(spi_i, spi_r)
        _message_id(message_id)
        if self._pending.get(*pair) == message_id:
            self._pending.pop(*pair)
        self._cancel(pair, self._now())

    def _cancel(self, pair: Pair, now: float) -> None:
        if self._held.cancel_one(*pair):
            self._events.append(RestartCancelled(pair[0], pair[1], now))

    def _cancel_many(self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], now: float) -> None:
        """:meth:`_cancel` for each pair, in order."""
        if self._held:
            hit = np.flatnonzero(self._held.cancel(spi_i, spi_r))
            self._events.extend(RestartCancelled(i, r, now)
                                for i, r in zip(spi_i[hit].tolist(), spi_r[hit].tolist()))

    # -- unprotected side ----------------------------------------------------------------

    def _verdict(self, kind: VerdictKind, pair: Pair | None = None, detail: str = "",
                 event: Event | None = None) -> Verdict:
        self._counters.bump(kind)
        if pair is None:
            return Verdict(kind, detail=detail, event=event)
        return Verdict(kind, pair[0], pair[1], detail, event)

    def receive(self, datagram: bytes, source: tuple[str, int], *, nat_t: bool | None = None) -> Verdict:
        """Judge one unprotected datagram that claims to be a QCD reply (never raises on
        network input: malformed data is a verdict)."""
        if not self.policy.enabled:
            return self._verdict(VerdictKind.DISABLED)
        now = self._now()
        try:
            reply = parse_qcd_reply(datagram, nat_t=nat_t)
        except MalformedMessage as e:
            return self._verdict(VerdictKind.MALFORMED, detail=str(e))

        if reply.invalid_spi and not reply.response:
            # §8.2: N(INVALID_SPI, data = the child SPI), N(QCD_TOKEN)+ ; IKE SPIs meaningless.
            via = "invalid_spi"
            child = reply.child_spi
            pair = self._children.get(child) if child is not None else None
            if not reply.tokens:
                # RFC 7296 §1.5, §2.21.4: a plain INVALID_SPI is a hint, like a plain
                # INVALID_IKE_SPI: a liveness check of the parent IKE SA (digest §4.3)
                if pair is None:
                    return self._verdict(VerdictKind.NO_TOKEN, detail=f"unknown child SPI {child!r}")
                return self._plain_invalid_ike_spi(pair, now)
            if pair is None:
                return self._verdict(VerdictKind.NO_SA, detail=f"unknown child SPI {child!r}")
        elif reply.response:
            via = "invalid_ike_spi"
            pair = (reply.spi_i, reply.spi_r)
            if not reply.tokens:
                if not reply.invalid_ike_spi:
                    return self._verdict(VerdictKind.NOT_A_REPLY, pair)
                return self._plain_invalid_ike_spi(pair, now)
            if self.policy.require_invalid_ike_spi and not reply.invalid_ike_spi:
                return self._verdict(VerdictKind.NOT_INVALID_IKE_SPI, pair)
        else:
            return self._verdict(VerdictKind.NOT_A_REPLY, detail="an unprotected request")

        if not self._verify_limit.allow(source_key(source[0]), now):
            return self._verdict(VerdictKind.RATE_LIMITED, pair)
        if pair not in self.table:
            return self._verdict(VerdictKind.NO_SA, pair)
        if via == "invalid_ike_spi" and self.policy.require_pending:
            want = self._pending.get(*pair)
            if want is None:
                return self._verdict(VerdictKind.NOT_PENDING, pair)
            if want != reply.message_id:
                return self._verdict(
                    VerdictKind.WRONG_MESSAGE_ID, pair,
                    f"reply has {reply.message_id}, outstanding request has {want}",
                )
        window = self._dampened.get(self._peer_key(pair))
        if window is not None and now < window[1]:
            born = self._born.get(*pair)
            if born is not None and born > window[0]:
                return self._verdict(VerdictKind.DAMPENED, pair, "SA re-established after a QCD teardown")
        if self._held.contains(*pair):
            return self._verdict(VerdictKind.DEFERRED, pair, "already held")

        result = self.table.check(pair[0], pair[1], list(reply.tokens))
        if result is TokenCheck.NO_SA:
            return self._verdict(VerdictKind.NO_SA, pair)
        if result is not TokenCheck.MATCH:
            return self._verdict(VerdictKind.MISMATCH, pair)

        if self.policy.accept_delay > 0:
            one = np.array([pair[0]], np.uint64), np.array([pair[1]], np.uint64)
            self._held.hold(*one, now + self.policy.accept_delay, via, source)
            return self._verdict(VerdictKind.DEFERRED, pair, f"held {self.policy.accept_delay} s")
        event = self._restart(pair, source, via, now)
        return self._verdict(VerdictKind.PEER_RESTARTED, pair, event=event)

    def judge_many(
        self, datagrams: Sequence[bytes], sources: Sequence[tuple[str, int]], *, nat_t: bool | None = None
    ) -> BatchVerdicts:
        """:meth:`receive` for each datagram in order, as arrays (see
        :class:`~ikeqcd._taker_batch.BatchVerdicts`): the same verdicts, counters and state
        changes, with one parse, one rate-limit call and one table check per batch."""
        n = len(datagrams)
        if not self.policy.enabled:
            by_kind = self._counters.by_kind
            by_kind["DISABLED"] = by_kind.get("DISABLED", 0) + n
            zero = np.zeros(n, np.uint64)
            code = _taker_batch.KINDS.index("DISABLED")
            return BatchVerdicts(np.full(n, code, np.int8), zero, zero.copy(), np.zeros(n, bool),
                                 np.zeros(n, bool))
        if n:
            fast = _taker_batch.judge(self, datagrams, sources, nat_t)
            if fast is not None:
                return fast
        verdicts = [self.receive(d, s, nat_t=nat_t) for d, s in zip(datagrams, sources)]
        restarted = np.array([v.restarted for v in verdicts], bool)
        via_child = np.array([isinstance(v.event, PeerRestarted) and v.event.via == "invalid_spi"
                              for v in verdicts], bool)
        return BatchVerdicts(
            np.array([_taker_batch.KINDS.index(v.kind.name) for v in verdicts], np.int8),
            np.array([v.spi_i or 0 for v in verdicts], np.uint64),
            np.array([v.spi_r or 0 for v in verdicts], np.uint64),
            restarted, via_child,
            [v.event for v in verdicts if isinstance(v.event, CheckLiveness)],
        )

    def _plain_invalid_ike_spi(self, pair: Pair, now: float) -> Verdict:
        # RFC 7296 §2.21.4: a hint, never a state change; at most one liveness check at a time
        # per SA, and a limited number per second in total (spec case 41).
        if pair not in self.table:
            return self._verdict(VerdictKind.NO_TOKEN, pair, "no such SA: nothing to check")
        if self._pending.get(*pair) is not None:
            return self._verdict(VerdictKind.NO_TOKEN, pair, "a request is already outstanding")
        if not self._liveness_limit.allow(0, now):
            return self._verdict(VerdictKind.NO_TOKEN, pair, "liveness checks rate-limited")
        event = CheckLiveness(pair[0], pair[1], now)
        return self._verdict(VerdictKind.NO_TOKEN, pair, "liveness check requested", event)

    def _now(self) -> float:
        return read_clock(self._clock)

    def _peer_key(self, pair: Pair) -> Hashable:
        # Authenticated identities only: peer_of, else what token_received was told, else
        # one shared key. Never the unprotected message's source (attacker-chosen).
        if self._peer_of is not None:
            return self._peer_of(*pair)
        return self._peer.get(pair, _UNKNOWN_PEER)

    def _restart(self, pair: Pair, source: tuple[str, int], via: str, now: float) -> PeerRestarted:
        # The token has been revealed in the clear: it is spent. Forget it, so duplicate
        # replies (liveness retransmissions) find no SA (spec case 37).
        self.table.remove(pair[0], pair[1])
        self._forget(pair, now)
        return PeerRestarted(pair[0], pair[1], source, now, via, self.policy.make_before_break)

    def _forget(self, pair: Pair, now: float) -> None:
        """A restart's bookkeeping once the token left the table: the pending request, the
        children, and the dampening window of the SA's peer."""
        self._pending.pop(*pair)
        self._forget_children(pair)
        self._born.pop(*pair)
        peer = self._peer_key(pair)
        self._peer.pop(pair, None)
        if self.policy.dampening > 0:
            self._dampen(peer, now)

    def _dampen(self, peer: Hashable, now: float) -> None:
        old = self._dampened.get(peer)
        self._seq += 1
        since = old[0] if old is not None and old[1] > now else self._seq
        self._dampened[peer] = (since, now + self.policy.dampening)

    def poll(self) -> list[Event]:
        """Decisions that became due (held restarts whose delay expired) and cancellations of
        held restarts, oldest first. Events decided inside :meth:`receive` are not repeated
        here (they are in its :class:`Verdict`)."""
        events, si, sr, held = self._poll()
        return events + [
            PeerRestarted(i, r, h.source, h.now, h.via, self.policy.make_before_break)
            for i, r, h in zip(si.tolist(), sr.tolist(), held)
        ]

    def poll_many(self) -> tuple[list[Event], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """:meth:`poll` with the restarts as arrays: (the other events, oldest first, then the
        SPI-I and SPI-R of each SA to tear down now, in the order :meth:`poll` gives them)."""
        events, si, sr, _ = self._poll(objects=False)
        return events, si, sr

    def _poll(self, objects: bool = True
              ) -> tuple[list[Event], npt.NDArray[np.uint64], npt.NDArray[np.uint64], list[_Due]]:
        now = self._now()
        si = sr = np.zeros(0, np.uint64)
        fired: list[_Due] = []
        if self._held:
            both_i, both_r, sources, vias = self._held.pop_due(now)
            if len(both_i):
                live = self.table.contains_many(both_i, both_r, threads=1)
                keep = np.flatnonzero(live)
                si, sr = both_i[keep], both_r[keep]
                self.table.remove_many(si, sr)
                self._forget_many(si, sr, now)
                if objects:
                    fired = [_Due(sources[i], vias[i], now) for i in keep.tolist()]
        self._expire_dampening(now)
        events, self._events = self._events, []
        return events, si, sr, fired

    def _expire_dampening(self, now: float) -> None:
        if any(until <= now for _, until in self._dampened.values()):
            self._dampened = {k: w for k, w in self._dampened.items() if w[1] > now}
            if not self._dampened:
                self._born.clear()

    def next_due(self) -> float | None:
        """When the earliest held decision becomes due (for an event loop's timer)."""
        return self._held.next_due()

    def due_liveness(self, now: float | None = None, *, idle: float | None = None
                     ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """SAs with outbound traffic but no inbound for ``idle`` seconds (seed issue 200)."""
        return self.table.due_liveness(
            self._now() if now is None else check_time(now),
            idle=self.policy.liveness_idle if idle is None else idle,
        )

    def due_among(self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64],
                  now: float | None = None, *, idle: float | None = None) -> npt.NDArray[np.bool_]:
        """:meth:`due_liveness` asked of given SAs (one lookup each, no walk of the table):
        element k says whether pair k is known and due. For a gateway whose own timers name
        the SAs that may be due, after it has recorded their traffic in the table."""
        return self.table.due_many(
            spi_i, spi_r, self._now() if now is None else check_time(now),
            idle=self.policy.liveness_idle if idle is None else idle,
        )

    @property
    def counters(self) -> dict[str, int]:
        """How many verdicts of each kind so far."""
        return dict(self._counters.by_kind)
