"""The token taker's batch path: :meth:`ikeqcd.FailureDetector.judge_many`.

The same decisions as :meth:`~ikeqcd.FailureDetector.receive` called on each datagram in
order, made with arrays: one batch parse, one rate-limiter call, one table membership and
one token check for the whole batch, the detector's per-SA state read with C-level
``map`` over its dicts. Batches whose rows could influence each other (the same SA twice,
plain INVALID_IKE_SPI / INVALID_SPI notifies that share a liveness limiter or child table,
several tokens in one reply, an immediate restart with dampening, a ``peer_of`` callback)
are judged one datagram at a time instead, so the outcome is always that of the loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import compress, repeat
from operator import eq, itemgetter, lshift, or_
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from ikeqcd._keys import source_key
from ikeqcd.table import TokenCheck
from ikeqcd.wire import parse_qcd_replies

if TYPE_CHECKING:
    from ikeqcd.taker import CheckLiveness, FailureDetector

KINDS: list[str] = []  # VerdictKind names in code order, filled by ikeqcd.taker


def sa_key(spi_i: int, spi_r: int) -> int:
    """An SA's key in the detector's pending-request dict: ``spi_i << 64 | spi_r``, one int
    (about 44 bytes) where a tuple of two 64-bit ints costs about 128."""
    return spi_i << 64 | spi_r


def sa_keys(spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64]) -> list[int]:
    """:func:`sa_key` of each pair of two SPI arrays (C-level maps, no Python per SA)."""
    return list(map(or_, map(lshift, spi_i.tolist(), repeat(64)), spi_r.tolist()))


def sa_keys_of(pairs: Sequence[tuple[int, int]]) -> list[int]:
    """:func:`sa_key` of each ``(spi_i, spi_r)`` tuple."""
    return list(map(or_, map(lshift, map(itemgetter(0), pairs), repeat(64)), map(itemgetter(1), pairs)))


def pop_keys(ks: list[int], *dicts: dict[int, Any]) -> None:
    """Remove keys ``ks`` from each of ``dicts`` (C-level pops)."""
    for d in dicts:
        if d:
            list(map(d.pop, ks, repeat(None)))


def answered(pending: dict[int, int], ks: list[int], message_ids: list[int]) -> list[int]:
    """The keys whose pending request has that Message ID (the same SA twice: both match or
    neither, and popping twice is popping once, as in one-at-a-time order)."""
    return list(compress(ks, map(eq, map(pending.get, ks), message_ids)))


@dataclass(frozen=True)
class BatchVerdicts:
    """Row k: datagram k's verdict. ``kind`` holds indices into ``list(VerdictKind)``;
    ``restarted`` marks SAs to tear down now (the events :meth:`receive` would have put in
    ``Verdict.event``), ``via_child`` those decided on the §8.2 INVALID_SPI path; ``checks``
    are the :class:`~ikeqcd.CheckLiveness` events decided now, in order."""

    kind: npt.NDArray[np.int8]
    spi_i: npt.NDArray[np.uint64]
    spi_r: npt.NDArray[np.uint64]
    restarted: npt.NDArray[np.bool_]
    via_child: npt.NDArray[np.bool_]
    checks: list[CheckLiveness] = field(default_factory=list)

    @property
    def deferred(self) -> bool:
        """Some row was held by the accept delay: poll when it is due."""
        return bool((self.kind == _code("DEFERRED")).any())


def _code(name: str) -> int:
    return KINDS.index(name)


def judge(det: FailureDetector, datagrams: Sequence[bytes], sources: Sequence[tuple[str, int]],
          nat_t: bool | None) -> BatchVerdicts | None:
    """The batch path, or None when the batch must be judged one datagram at a time."""
    from ikeqcd.taker import _UNKNOWN_PEER, PeerRestarted, _Held  # noqa: F401 (cycle)

    p = det.policy
    n = len(datagrams)
    if det._peer_of is not None or (p.dampening > 0 and p.accept_delay == 0):
        return None
    rep = parse_qcd_replies(datagrams, nat_t=nat_t)
    ntok = rep.token_index[1:] - rep.token_index[:-1]
    response = (rep.flags & 0x20) != 0
    if (rep.ok & rep.invalid_spi & ~response).any():
        return None  # §8.2: the child table
    if (rep.ok & response & (ntok == 0) & rep.invalid_ike_spi).any():
        return None  # plain INVALID_IKE_SPI: the shared liveness limiter
    if (ntok > 1).any():
        return None
    kind = np.full(n, _code("NOT_A_REPLY"), np.int8)
    kind[~rep.ok] = _code("MALFORMED")
    cand = rep.ok & response & (ntok == 1)
    if p.require_invalid_ike_spi:
        bad = cand & ~rep.invalid_ike_spi
        kind[bad] = _code("NOT_INVALID_IKE_SPI")
        cand &= ~bad
    rows = np.flatnonzero(cand)
    si, sr = rep.spi_i, rep.spi_r
    restarted = np.zeros(n, bool)
    out = BatchVerdicts(kind, si.copy(), sr.copy(), restarted, np.zeros(n, bool))
    if not len(rows):
        _count(det, kind)
        return out
    pairs = list(zip(si[rows].tolist(), sr[rows].tolist()))
    if len(set(pairs)) != len(pairs):
        return None
    now = det._now()
    # §8.1: per-source verification limit, in order
    srcs = [sources[i][0] for i in rows.tolist()] if len(set(sources)) > 1 else None
    if srcs is None:
        keys = np.full(len(rows), source_key(sources[0][0]), np.uint64)
    else:
        keys = np.fromiter(map(source_key, srcs), np.uint64, len(rows))
    allowed = det._verify_limit.allow_many(keys, now)
    kind[rows[~allowed]] = _code("RATE_LIMITED")
    keep = allowed & det.table.contains_many(si[rows], sr[rows], threads=1)
    kind[rows[allowed & ~keep]] = _code("NO_SA")
    if p.require_pending:
        want = np.fromiter(map(det._pending.get, sa_keys(si[rows], sr[rows]), repeat(-1)), np.int64, len(pairs))
        none = keep & (want < 0)
        kind[rows[none]] = _code("NOT_PENDING")
        wrong = keep & ~none & (want != rep.message_id[rows].astype(np.int64))
        kind[rows[wrong]] = _code("WRONG_MESSAGE_ID")
        keep &= ~none & ~wrong
    if det._dampened:
        peers = set(map(det._peer.get, pairs, repeat(_UNKNOWN_PEER)))
        if len(peers) != 1:
            return None
        window = det._dampened.get(peers.pop())
        if window is not None and now < window[1]:
            born = np.fromiter(map(det._born.get, sa_keys(si[rows], sr[rows]), repeat(-1)), np.int64, len(pairs))
            damp = keep & (born > window[0])
            kind[rows[damp]] = _code("DAMPENED")
            keep &= ~damp
    if det._held:
        held = np.fromiter(map(det._held.__contains__, pairs), bool, len(pairs))
        kind[rows[keep & held]] = _code("DEFERRED")
        keep &= ~held
    sel = np.flatnonzero(keep)
    r = rows[sel]
    if len(r):
        first = rep.token_offsets[rep.token_index[r]]
        lens = rep.token_offsets[rep.token_index[r] + 1] - first
        if (lens != lens[0]).any() or not 16 <= lens[0] <= 128:
            return None
        toks = rep.token_data[first[:, None] + np.arange(int(lens[0]))]
        res = det.table.check_many(si[r], sr[r], np.ascontiguousarray(toks), threads=1)
        kind[r[res == TokenCheck.NO_SA]] = _code("NO_SA")
        kind[r[res == TokenCheck.MISMATCH]] = _code("MISMATCH")
        match = r[res == TokenCheck.MATCH]
        mpairs = [pairs[i] for i in sel[res == TokenCheck.MATCH].tolist()]
        if len(match):
            if p.accept_delay > 0:
                due = now + p.accept_delay
                det._note_held(due)
                srcs_m = {sources[i] for i in match.tolist()} if srcs is not None else {sources[0]}
                if len(srcs_m) == 1:  # one source: one shared (immutable) record
                    det._held.update(dict.fromkeys(mpairs, _Held(due, srcs_m.pop(), "invalid_ike_spi")))
                else:
                    det._held.update(
                        (pair, _Held(due, sources[i], "invalid_ike_spi"))
                        for pair, i in zip(mpairs, match.tolist())
                    )
                kind[match] = _code("DEFERRED")
            else:
                det.table.remove_many(si[match], sr[match])
                det._forget_many(mpairs, now)  # what _restart forgets
                kind[match] = _code("PEER_RESTARTED")
                restarted[match] = True
    _count(det, kind)
    return out


def _count(det: FailureDetector, kind: npt.NDArray[np.int8]) -> None:
    by_kind = det._counters.by_kind
    for code, c in enumerate(np.bincount(kind, minlength=len(KINDS)).tolist()):
        if c:
            by_kind[KINDS[code]] = by_kind.get(KINDS[code], 0) + c
