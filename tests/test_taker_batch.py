"""FailureDetector's batch entry points make the same decisions as the one-at-a-time calls."""

from __future__ import annotations

import os

import numpy as np
import pytest
from ikeqcd import FailureDetector, SaTable, TakerPolicy, wire
from ikeqcd._taker_batch import KINDS
from ikeqcd.taker import PeerRestarted


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def scenario(policy: TakerPolicy) -> tuple[list[FailureDetector], list[Clock], list[bytes], list[tuple[str, int]]]:
    rng = np.random.default_rng(5)
    n = 300
    si = rng.integers(1, 2**63, n, dtype=np.uint64)
    sr = rng.integers(1, 2**63, n, dtype=np.uint64)
    toks = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    dets, clocks = [], []
    for _ in range(2):
        clock = Clock()
        det = FailureDetector(SaTable(), policy=policy, clock=clock)
        det.tokens_received(si[:250], sr[:250], toks[:250])  # 250..299: no such SA
        det.requests_sent(si[:200], sr[:200], np.arange(200, dtype=np.uint32))  # 200..249: none pending
        dets.append(det)
        clocks.append(clock)
    msgs = []
    for k in range(n):
        req = wire.build_request(int(si[k]), int(sr[k]), message_id=k if k % 7 else k + 1)  # wrong mids
        token = toks[k].tobytes() if k % 5 else os.urandom(32)  # mismatches
        msgs.append(wire.build_qcd_reply(req, [token]))
    msgs.append(b"\x00garbage")
    msgs.append(wire.build_request(5, 6))  # a request, not a reply
    sources = [("198.51.100.2", 500)] * len(msgs)
    return dets, clocks, msgs, sources


@pytest.mark.parametrize("preset", ["rfc6290", "hardened"])
def test_judge_many_matches_receive(preset: str) -> None:
    policy = getattr(TakerPolicy, preset)()
    (one, many), (c1, c2), msgs, sources = scenario(policy)
    verdicts = [one.receive(d, s) for d, s in zip(msgs, sources)]
    got = many.judge_many(msgs, sources)
    assert [KINDS[k] for k in got.kind.tolist()] == [v.kind.name for v in verdicts]
    assert got.restarted.tolist() == [v.restarted for v in verdicts]
    assert one.counters == many.counters
    assert len(one.table) == len(many.table)
    assert got.deferred == any(v.kind.name == "DEFERRED" for v in verdicts)
    # the held decisions come out of poll / poll_many the same, once due
    c1.t = c2.t = 101.0
    events = one.poll()
    others, si, sr = many.poll_many()
    restarted = [(e.spi_i, e.spi_r) for e in events if isinstance(e, PeerRestarted)]
    assert restarted == list(zip(si.tolist(), sr.tolist()))
    assert [e for e in events if not isinstance(e, PeerRestarted)] == others
    assert len(one.table) == len(many.table)
    # a second round of the same replies: nothing left to tear down, same verdicts again
    again = [one.receive(d, s) for d, s in zip(msgs, sources)]
    got2 = many.judge_many(msgs, sources)
    assert [KINDS[k] for k in got2.kind.tolist()] == [v.kind.name for v in again]
    assert one.counters == many.counters


def test_batch_with_the_same_sa_twice_is_judged_in_order() -> None:
    (one, many), _, msgs, sources = scenario(TakerPolicy.rfc6290())
    twice = msgs[:10] + msgs[:10]
    verdicts = [one.receive(d, s) for d, s in zip(twice, sources)]
    got = many.judge_many(twice, sources[:20])
    assert [KINDS[k] for k in got.kind.tolist()] == [v.kind.name for v in verdicts]
    assert one.counters == many.counters


def test_responses_and_deletions_in_batches() -> None:
    (one, many), _, _, _ = scenario(TakerPolicy.hardened())
    arrays = one.table.to_arrays()
    si, sr = arrays["spi_i"][:50].copy(), arrays["spi_r"][:50].copy()
    for i, r in zip(si.tolist(), sr.tolist()):
        one.response_received(i, r, 0)
        one.sa_deleted(i, r)
    many.responses_received(si, sr, np.zeros(50, np.uint32))
    many.sas_deleted(si, sr)
    assert len(one.table) == len(many.table) and len(one._pending) == len(many._pending)
    every = arrays["spi_i"].copy(), arrays["spi_r"].copy()
    assert np.array_equal(one._pending.get_many(*every), many._pending.get_many(*every))


def test_poll_when_held_decisions_were_added_out_of_order() -> None:
    (det, _), (clock, _), msgs, sources = scenario(TakerPolicy.hardened())
    clock.t = 100.0
    assert det.receive(msgs[1], sources[1]).kind.name == "DEFERRED"  # due 100.5
    clock.t = 99.0  # a clock that went back: the held dict is no longer in due order
    assert det.receive(msgs[2], sources[2]).kind.name == "DEFERRED"  # due 99.5
    clock.t = 99.6
    first = [e for e in det.poll() if isinstance(e, PeerRestarted)]
    clock.t = 100.6
    second = [e for e in det.poll() if isinstance(e, PeerRestarted)]
    assert len(first) == 1 and len(second) == 1 and first[0].spi_i != second[0].spi_i
