"""The serve loop's per-batch live check with a Python object (no store needed): asked once per
received batch with the candidates; any failure fails the batch closed, serving goes on."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import numpy.typing as npt
import pytest
from ikeqcd import MakerPolicy, TokenMaker
from ikeqcd.errors import InvalidArgument
from ikeqcd.loading import load, load_spis
from ikeqcd.serving import Server

MAKER = TokenMaker(bytes(range(32)))


class Live:
    """Live: the first half of load_spis(100, 1). ``mode`` breaks it on purpose."""

    def __init__(self) -> None:
        a, b = load_spis(100, 1)
        self.live = set(zip(a[:50].tolist(), b[:50].tolist()))
        self.mode = "ok"
        self.calls = 0
        self.pairs = 0

    def contains_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        self.calls += 1
        self.pairs += len(spi_i)
        if self.mode == "raise":
            raise RuntimeError("store down")
        if self.mode == "shape":
            return np.zeros(len(spi_i) + 1, dtype=np.bool_)
        if self.mode == "dtype":
            return np.zeros(len(spi_i), dtype=np.int64)  # type: ignore[return-value]
        return np.fromiter(((x, y) in self.live for x, y in zip(spi_i.tolist(), spi_r.tolist())),
                           dtype=np.bool_, count=len(spi_i))


@pytest.fixture
def served() -> Iterator[tuple[Server, Live]]:
    live = Live()
    srv = Server(("127.0.0.1", 0), MAKER, policy=MakerPolicy.unlimited(), live=live,
                 xfrm_bypass=False)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    yield srv, live
    srv.stop()
    t.join(timeout=10)
    assert not t.is_alive()


def test_object_asked_once_per_batch(served: tuple[Server, Live]) -> None:
    srv, live = served
    rep = load(srv.address, rate=5000, duration=0.3, sas=100, seed=1, maker=MAKER, timeout=0.3)
    s = srv.stats()
    assert rep.sent > 500 and rep.valid > 0 and rep.bad_token == 0
    assert s.reasons["LIVE_SA"] > 0 and s.reasons["LIVE_SA"] + s.replied == s.datagrams_in
    assert live.pairs == s.datagrams_in and live.calls == s.batches  # once per batch


@pytest.mark.parametrize("mode", ["raise", "shape", "dtype"])
def test_broken_object_fails_closed(served: tuple[Server, Live], mode: str) -> None:
    srv, live = served
    live.mode = mode
    rep = load(srv.address, rate=5000, duration=0.2, sas=100, seed=1, maker=MAKER, timeout=0.3)
    s = srv.stats()
    assert rep.sent > 300 and rep.answered == 0
    assert s.reasons["CLUSTER_UNAVAILABLE"] == s.datagrams_in and s.datagrams_out == 0
    live.mode = "ok"  # and it recovers with the next batch
    assert load(srv.address, rate=5000, duration=0.2, sas=100, seed=1, maker=MAKER,
                timeout=0.3).valid > 0


def test_live_must_have_contains_many() -> None:
    with pytest.raises(InvalidArgument, match="contains_many"):
        Server(("127.0.0.1", 0), MAKER, live=object())  # type: ignore[arg-type]
