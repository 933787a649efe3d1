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
from itertools import repeat
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ikeqcd._keys import source_key
from ikeqcd.table import TokenCheck
from ikeqcd.wire import parse_qcd_replies

if TYPE_CHECKING:
    from ikeqcd.taker import CheckLiveness, FailureDetector

KINDS: list[str] = []  # VerdictKind names in code order, filled by ikeqcd.taker


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
    from ikeqcd.taker import _UNKNOWN_PEER  # (a cycle)

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
    if not _distinct(si[rows], sr[rows]):
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
        want = det._pending.get_many(si[rows], sr[rows])
        none = keep & (want < 0)
        kind[rows[none]] = _code("NOT_PENDING")
        wrong = keep & ~none & (want != rep.message_id[rows].astype(np.int64))
        kind[rows[wrong]] = _code("WRONG_MESSAGE_ID")
        keep &= ~none & ~wrong
    if det._dampened:
        pairs = zip(si[rows].tolist(), sr[rows].tolist())
        peers = set(map(det._peer.get, pairs, repeat(_UNKNOWN_PEER)))
        if len(peers) != 1:
            return None
        window = det._dampened.get(peers.pop())
        if window is not None and now < window[1]:
            born = det._born.get_many(si[rows], sr[rows])
            damp = keep & (born > window[0])
            kind[rows[damp]] = _code("DAMPENED")
            keep &= ~damp
    if det._held:
        held = det._held.contains_many(si[rows], sr[rows])
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
        if len(match):
            if p.accept_delay > 0:
                srcs_m = [sources[i] for i in match.tolist()] if srcs is not None else [sources[0]]
                one = len(set(srcs_m)) == 1  # one source: one shared record
                det._held.hold(si[match], sr[match], now + p.accept_delay, "invalid_ike_spi",
                               srcs_m[0] if one else srcs_m)
                kind[match] = _code("DEFERRED")
            else:
                det.table.remove_many(si[match], sr[match])
                det._forget_many(si[match], sr[match], now)  # what _restart forgets
                kind[match] = _code("PEER_RESTARTED")
                restarted[match] = True
    _count(det, kind)
    return out


def _distinct(spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64]) -> bool:
    """Whether no SPI pair appears twice."""
    if len(spi_i) < 2:
        return True
    order = np.lexsort((spi_r, spi_i))
    a, b = spi_i[order], spi_r[order]
    return not bool(((a[1:] == a[:-1]) & (b[1:] == b[:-1])).any())


def _count(det: FailureDetector, kind: npt.NDArray[np.int8]) -> None:
    by_kind = det._counters.by_kind
    for code, c in enumerate(np.bincount(kind, minlength=len(KINDS)).tolist()):
        if c:
            by_kind[KINDS[code]] = by_kind.get(KINDS[code], 0) + c
