"""The token taker's held restart decisions (the accept delay, issue-202 hardening).

A decision is held per SA until it is due or a genuine protected message cancels it. The
decisions made together (one batch, or one datagram) share a record: when they are due, by
which source and path they were decided. Which SA belongs to which record lives in the core
(:class:`ikeqcd._core._PairMap`, SA -> record number), so a million held SAs cost about
30 octets each, and holding, cancelling and polling them are batch calls.

Order is kept: :meth:`HeldRestarts.pop_due` gives the due SAs in the order they were held
(records in creation order, SAs in the order given), as the detector's dict used to.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from ikeqcd._core import _PairMap

U64 = npt.NDArray[np.uint64]
Source = tuple[str, int]


@dataclass
class _Record:
    due: float
    via: str
    spi_i: U64
    spi_r: U64
    source: Source | list[Source]  # one for all, or one per SA
    live: int  # SAs of this record still held


class HeldRestarts:
    """Held restart decisions, keyed by SA, in the order they were made."""

    def __init__(self) -> None:
        self._of = _PairMap()  # SA -> record number
        self._records: dict[int, _Record] = {}  # in creation order
        self._next = 0
        self._min = math.inf  # no record is due before this
        self._last = -math.inf
        self._sorted = True  # records were created in due order

    def __len__(self) -> int:
        return len(self._of)

    def __bool__(self) -> bool:
        return bool(self._of)

    def contains(self, spi_i: int, spi_r: int) -> bool:
        return self._of.get(spi_i, spi_r) is not None

    def contains_many(self, spi_i: U64, spi_r: U64) -> npt.NDArray[np.bool_]:
        held: npt.NDArray[np.bool_] = self._of.get_many(spi_i, spi_r) >= 0
        return held

    def hold(self, spi_i: U64, spi_r: U64, due: float, via: str, source: Source | list[Source]) -> None:
        """Hold the SAs (distinct), decided now, due at ``due``."""
        if not len(spi_i):
            return
        self._release(self._of.pop_many(spi_i, spi_r))  # (a re-held SA moves to the end)
        rec = self._next
        self._next += 1
        self._of.set_many(spi_i, spi_r, np.full(len(spi_i), rec, np.uint64))
        self._records[rec] = _Record(due, via, spi_i.copy(), spi_r.copy(), source, len(spi_i))
        self._min = min(self._min, due)
        if due < self._last:
            self._sorted = False
        self._last = max(self._last, due)

    def cancel(self, spi_i: U64, spi_r: U64) -> npt.NDArray[np.bool_]:
        """Drop the SAs' held decisions; which ones had one."""
        if not self._of or not len(spi_i):
            return np.zeros(len(spi_i), bool)
        recs = self._of.pop_many(spi_i, spi_r)
        self._release(recs)
        hit: npt.NDArray[np.bool_] = recs >= 0
        return hit

    def cancel_one(self, spi_i: int, spi_r: int) -> bool:
        rec = self._of.pop(spi_i, spi_r)
        if rec is None:
            return False
        self._release(np.array([rec], np.int64))
        return True

    def _release(self, recs: npt.NDArray[np.int64]) -> None:
        recs = recs[recs >= 0]
        if not len(recs):
            return
        ids, counts = np.unique(recs, return_counts=True)
        for rec, c in zip(ids.tolist(), counts.tolist()):
            r = self._records[rec]
            r.live -= c
            if r.live == 0:
                del self._records[rec]
        if not self._records:
            self._reset()

    def _reset(self) -> None:
        self._min, self._last, self._sorted = math.inf, -math.inf, True

    def pop_due(self, now: float) -> tuple[U64, U64, list[Source], list[str]]:
        """Remove and return the decisions due at ``now``, in the order they were made:
        (SPI-I, SPI-R, source of each, path of each)."""
        empty = np.zeros(0, np.uint64)
        if not self._records or now < self._min:
            return empty, empty.copy(), [], []
        due = []
        for rec, r in self._records.items():
            if r.due <= now:
                due.append(rec)
            elif self._sorted:
                break
        si_parts: list[U64] = []
        sr_parts: list[U64] = []
        sources: list[Source] = []
        vias: list[str] = []
        for rec in due:
            r = self._records.pop(rec)
            still = self._of.get_many(r.spi_i, r.spi_r) == rec
            si, sr = r.spi_i[still], r.spi_r[still]
            self._of.pop_many(si, sr)
            si_parts.append(si)
            sr_parts.append(sr)
            if isinstance(r.source, list):
                sources.extend(s for s, k in zip(r.source, still.tolist()) if k)
            else:
                sources.extend([r.source] * len(si))
            vias.extend([r.via] * len(si))
        if not self._records:
            self._reset()
        elif self._sorted:
            self._min = next(iter(self._records.values())).due
        else:
            self._min = min(r.due for r in self._records.values())
        if not si_parts:
            return empty, empty.copy(), [], []
        return np.concatenate(si_parts), np.concatenate(sr_parts), sources, vias

    def next_due(self) -> float | None:
        """When the earliest held decision becomes due."""
        return min((r.due for r in self._records.values()), default=None)
