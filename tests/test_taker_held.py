"""The taker's held restart decisions (``ikeqcd._taker_held``) against the insertion-ordered
dict the detector used to keep: the same SAs come out, in the same order, with the same
source and path, at the same times."""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from hypothesis import given, settings
from hypothesis import strategies as st
from ikeqcd._taker_held import HeldRestarts

SA = st.tuples(st.integers(0, 5), st.sampled_from([1, 2**64 - 1]))
OP: st.SearchStrategy[tuple[str, list[tuple[int, int]], float, bool]] = st.one_of(
    st.tuples(st.just("hold"), st.lists(SA, min_size=1, max_size=4, unique=True),
              st.floats(0, 10), st.booleans()),
    st.tuples(st.just("cancel"), st.lists(SA, max_size=4), st.just(0.0), st.just(False)),
    st.tuples(st.just("poll"), st.just([]), st.floats(0, 12), st.just(False)),
)


def _arrays(pairs: list[tuple[int, int]]) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    return (np.array([p[0] for p in pairs], np.uint64), np.array([p[1] for p in pairs], np.uint64))


@settings(max_examples=400, deadline=None)
@given(ops=st.lists(OP, max_size=25))
def test_agrees_with_an_ordered_dict(ops: list[tuple[str, list[tuple[int, int]], float, bool]]) -> None:
    held = HeldRestarts()
    model: dict[tuple[int, int], tuple[float, tuple[str, int], str]] = {}
    for n, (op, pairs, t, per_sa) in enumerate(ops):
        si, sr = _arrays(pairs)
        if op == "hold":
            sources = [(f"10.0.0.{k}", 500) for k in range(len(pairs))]
            held.hold(si, sr, t, f"via{n}", sources if per_sa else sources[0])
            for k, p in enumerate(pairs):
                model.pop(p, None)  # a re-held SA moves to the end
                model[p] = (t, sources[k] if per_sa else sources[0], f"via{n}")
        elif op == "cancel":
            got = held.cancel(si, sr).tolist()
            want = []
            for p in pairs:
                want.append(model.pop(p, None) is not None)
            assert got == want
        else:
            osi, osr, srcs, vias = held.pop_due(t)
            due = [(p, v) for p, v in model.items() if v[0] <= t]
            for p, _ in due:
                del model[p]
            assert list(zip(osi.tolist(), osr.tolist())) == [p for p, _ in due]
            assert srcs == [v[1] for _, v in due] and vias == [v[2] for _, v in due]
        assert len(held) == len(model) and bool(held) == bool(model)
        want_next = min((v[0] for v in model.values()), default=None)
        assert held.next_due() == want_next
        for p in model:
            assert held.contains(*p)


def test_an_sa_cancelled_then_held_again_is_due_once() -> None:
    held = HeldRestarts()
    one = _arrays([(1, 2)])
    held.hold(*one, 1.0, "a", ("s", 1))
    assert held.cancel_one(1, 2) and not held.cancel_one(1, 2)
    held.hold(*one, 2.0, "b", ("s", 2))
    si, _, srcs, vias = held.pop_due(math.inf)
    assert si.tolist() == [1] and srcs == [("s", 2)] and vias == ["b"]
    assert not held and held.next_due() is None
