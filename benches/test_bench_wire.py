"""Benchmarks for the codec and the responder hot path (off by default).

Run: ``.venv/bin/python -m pytest benches/test_bench_wire.py --benchmark-enable -q``
Each benchmark stores its throughput (items/s) in ``extra_info`` and prints it.
Targets (design.md): respond_many >= 2 M datagrams/s on one core, parse_qcd_replies batch
>= 5 M/s, one respond() from Python <= 2 us.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from benchstats import note, seconds
from ikeqcd import MakerPolicy, TokenMaker, TokenResponder, wire

N = 100_000
# The raw responder path: the default MakerPolicy() would rate-limit a benchmark's single source.
UNLIMITED = MakerPolicy.unlimited()


def requests(n: int = N, *, nat_t: bool = False, sk_len: int = 48) -> list[bytes]:
    rng = np.random.default_rng(7)
    pairs = rng.integers(1, 2**64 - 1, (n, 2), dtype=np.uint64, endpoint=True)
    # a typical liveness check: empty INFORMATIONAL with IV + padding + 16-octet ICV
    return [
        wire.build_request(int(a), int(b), message_id=k & 0xFFFF, sk_body=bytes(sk_len), nat_t=nat_t)
        for k, (a, b) in enumerate(pairs)
    ]


def maker(gens: int) -> TokenMaker:
    return TokenMaker([bytes([g + 1]) * 32 for g in range(gens)])


def report(benchmark: Any, n: int, what: str) -> None:
    t = seconds(benchmark)
    if t is None:
        return
    rate = n / t
    note(benchmark, "items_per_s", rate)
    print(f"\n{what}: {rate / 1e6:.2f} M/s (best round)")


@pytest.mark.parametrize("gens", [1, 2, 4])
def test_respond_many(benchmark: Any, gens: int) -> None:
    """Parse, live check (none), derive one token per generation, build: 10^5 datagrams."""
    reqs = requests()
    r = TokenResponder(maker(gens), policy=UNLIMITED)
    replies, reasons = benchmark.pedantic(r.respond_many, (reqs,), rounds=7, iterations=1)
    assert (reasons == 0).all()
    report(benchmark, N, f"respond_many gens={gens}")


def test_respond_many_nat_t(benchmark: Any) -> None:
    reqs = requests(nat_t=True)
    r = TokenResponder(maker(1), nat_t=True, policy=UNLIMITED)
    _, reasons = benchmark.pedantic(r.respond_many, (reqs,), rounds=7, iterations=1)
    assert (reasons == 0).all()
    report(benchmark, N, "respond_many UDP/4500")


class NumpyLiveSet:
    """A bulk live set (what SaTable offers), here with numpy: 10^4 live pairs."""

    def __init__(self, a: np.ndarray, b: np.ndarray) -> None:
        self.keys = np.sort(a ^ (b * np.uint64(0x9E3779B97F4A7C15)))

    def contains_many(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        k = a ^ (b * np.uint64(0x9E3779B97F4A7C15))
        i = np.searchsorted(self.keys, k).clip(0, len(self.keys) - 1)
        return self.keys[i] == k


def test_respond_many_bulk_live(benchmark: Any) -> None:
    """Two-pass path: classify, one bulk live check, build (10 % of pairs live)."""
    reqs = requests()
    hdrs = [wire.parse_header(q) for q in reqs[::10]]
    live = NumpyLiveSet(
        np.array([h.spi_i for h in hdrs], dtype=np.uint64),
        np.array([h.spi_r for h in hdrs], dtype=np.uint64),
    )
    r = TokenResponder(maker(1), live=live, policy=UNLIMITED)
    _, reasons = benchmark.pedantic(r.respond_many, (reqs,), rounds=7, iterations=1)
    assert (reasons == 8).sum() == len(hdrs)
    report(benchmark, N, "respond_many with bulk live set")


def test_respond_single(benchmark: Any) -> None:
    reqs = requests(1000)
    r = TokenResponder(maker(1), policy=UNLIMITED)
    it = iter(range(10**9))

    def one() -> bytes | None:
        return r.respond(reqs[next(it) % 1000], ("192.0.2.1", 500))

    benchmark(one)
    t = seconds(benchmark, "median")
    if t is not None:
        note(benchmark, "us_per_call", t * 1e6)
        print(f"\nsingle respond(): {t * 1e6:.3f} us median")


def test_respond_single_with_live_set(benchmark: Any) -> None:
    reqs = requests(1000)
    r = TokenResponder(maker(1), live={(1, 2)}, policy=UNLIMITED)
    it = iter(range(10**9))
    one: Callable[[], bytes | None] = lambda: r.respond(reqs[next(it) % 1000], ("192.0.2.1", 500))
    benchmark(one)
    t = seconds(benchmark, "median")
    if t is not None:
        print(f"\nsingle respond(), live=set: {t * 1e6:.3f} us median")


@pytest.mark.parametrize("gens", [1, 4])
def test_parse_qcd_replies(benchmark: Any, gens: int) -> None:
    # a request large enough that the 2x reflection bound lets every generation's token out
    reqs = requests(sk_len=48 + 24 * gens)
    replies, _ = TokenResponder(maker(gens), policy=UNLIMITED).respond_many(reqs)
    datagrams = [r for r in replies if r is not None]
    out = benchmark.pedantic(wire.parse_qcd_replies, (datagrams,), rounds=7, iterations=1)
    assert out.ok.all() and len(out.token_offsets) == gens * N + 1
    report(benchmark, N, f"parse_qcd_replies tokens={gens}")


def test_parse_qcd_reply_single(benchmark: Any) -> None:
    reply = TokenResponder(maker(1), policy=UNLIMITED).respond(requests(1)[0])
    assert reply is not None
    benchmark(wire.parse_qcd_reply, reply)
    t = seconds(benchmark, "median")
    if t is not None:
        print(f"\nsingle parse_qcd_reply(): {t * 1e6:.3f} us median")
