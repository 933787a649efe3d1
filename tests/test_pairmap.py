"""The token taker's per-SA maps in the core (``_PairMap``) against a dict model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ikeqcd._core import _PairMap
from ikeqcd.errors import InvalidArgument, InvalidArray

PAIR = st.tuples(st.integers(0, 3), st.sampled_from([0, 1, 2**64 - 1]))
OPS = st.lists(st.tuples(st.sampled_from(["set", "pop", "set_many", "pop_many", "pop_matching", "clear"]),
                         st.lists(st.tuples(PAIR, st.integers(0, 3)), max_size=6)), max_size=30)


def _arrays(items: list[tuple[tuple[int, int], int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    si = np.array([p[0] for p, _ in items], np.uint64)
    sr = np.array([p[1] for p, _ in items], np.uint64)
    return si, sr, np.array([v for _, v in items], np.uint64)


@settings(max_examples=300, deadline=None)
@given(ops=OPS)
def test_agrees_with_a_dict(ops: list[tuple[str, list[tuple[tuple[int, int], int]]]]) -> None:
    m, model = _PairMap(), {}
    for op, items in ops:
        si, sr, vals = _arrays(items)
        if op == "set":
            for (a, b), v in items:
                m.set(a, b, v)
                model[(a, b)] = v
        elif op == "pop":
            for (a, b), _ in items:
                assert m.pop(a, b) == model.pop((a, b), None)
        elif op == "set_many":
            m.set_many(si, sr, vals)
            model.update(((a, b), v) for (a, b), v in items)
        elif op == "pop_many":
            want = [model.pop(p, -1) for p, _ in items]
            assert m.pop_many(si, sr).tolist() == want
        elif op == "pop_matching":
            want = []
            for p, v in items:
                hit = model.get(p) == v
                if hit:
                    del model[p]
                want.append(hit)
            assert m.pop_matching(si, sr, vals).tolist() == want
        else:
            m.clear()
            model.clear()
        assert len(m) == len(model) and bool(m) == bool(model)
    every = [((a, b), 0) for a in range(4) for b in (0, 1, 2**64 - 1)]
    si, sr, _ = _arrays(every)
    assert m.get_many(si, sr).tolist() == [model.get(p, -1) for p, _ in every]


def test_bad_input_is_refused_and_changes_nothing() -> None:
    m = _PairMap()
    one = np.array([1], np.uint64)
    with pytest.raises(InvalidArray):
        m.set_many(np.array([1, 2], np.uint64), one, one)
    with pytest.raises(InvalidArgument):
        m.set_many(one, one, np.array([2**63], np.uint64))
    with pytest.raises(InvalidArgument):
        m.set(1, 1, 2**63)
    assert len(m) == 0
