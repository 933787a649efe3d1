"""SaTable throughput at 10^6 SAs with 32-octet tokens, random lookup order, against a
Python dict of bytes measured in the same run. Off by default; run with

    .venv/bin/python -m pytest benches/test_bench_table.py --benchmark-enable -q

The module prints a summary (M items/s and the ratio to the dict peer) at the end. "1t" runs
pin the batch to the calling thread (the per-core figure); "all" uses every core.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
from benchstats import seconds
from ikeqcd import SaTable

N = 1_000_000
TOKEN = 32
RESULTS: dict[str, float] = {}


class Data:
    def __init__(self) -> None:
        rng = np.random.default_rng(20240611)
        self.spi_i = rng.integers(0, 2**64, N, dtype=np.uint64)
        self.spi_r = rng.integers(0, 2**64, N, dtype=np.uint64)
        self.tokens = rng.integers(0, 256, (N, TOKEN), dtype=np.uint8)
        order = rng.permutation(N)
        self.q_i = np.ascontiguousarray(self.spi_i[order])
        self.q_r = np.ascontiguousarray(self.spi_r[order])
        self.q_tok = np.ascontiguousarray(self.tokens[order])
        self.table = SaTable()
        self.table.insert_many(self.spi_i, self.spi_r, self.tokens, now=0.0)
        self.keys = list(zip(self.spi_i.tolist(), self.spi_r.tolist()))
        self.tok_bytes = [bytes(row) for row in self.tokens]
        self.q_keys = list(zip(self.q_i.tolist(), self.q_r.tolist()))
        self.q_tok_bytes = [bytes(row) for row in self.q_tok]
        self.d = dict(zip(self.keys, self.tok_bytes))


@pytest.fixture(scope="module")
def data(request: pytest.FixtureRequest) -> Iterator[Data]:
    yield Data()
    tr = request.config.pluginmanager.get_plugin("terminalreporter")
    capman = request.config.pluginmanager.get_plugin("capturemanager")
    if tr is None or capman is None or not RESULTS:
        return
    with capman.global_and_fixture_disabled():
        tr.write_line("")
        tr.write_line(f"SaTable at {N:,} SAs, {TOKEN}-octet tokens (M items/s; x = ratio to dict)")
        for name, rate in RESULTS.items():
            op = name.split(" ")[0]
            peer = RESULTS.get(f"{op} dict")
            ratio = f"  x{rate / peer:6.1f}" if peer and not name.endswith("dict") else ""
            tr.write_line(f"  {name:<28} {rate / 1e6:8.2f}{ratio}")


def run(benchmark: Any, name: str, fn: Callable[[], object], n: int = N, **kw: Any) -> None:
    benchmark.name = name
    benchmark.pedantic(fn, **({"rounds": 5, "iterations": 1} | kw))
    t = seconds(benchmark, "median")
    if t is not None:
        RESULTS[name] = n / t


def test_insert_many(benchmark: Any, data: Data) -> None:
    tables: list[SaTable] = []

    def setup() -> None:
        tables.clear()
        tables.append(SaTable())

    def go() -> None:
        tables[0].insert_many(data.spi_i, data.spi_r, data.tokens, now=0.0)

    run(benchmark, "insert", go, setup=setup)
    assert len(tables[0]) == N


def test_insert_dict(benchmark: Any, data: Data) -> None:
    def go() -> None:
        d: dict[tuple[int, int], bytes] = {}
        for k, t in zip(data.keys, data.tok_bytes):
            d[k] = t

    run(benchmark, "insert dict", go, rounds=3)


@pytest.mark.parametrize("threads", [1, 0], ids=["1t", "all"])
def test_contains_many(benchmark: Any, data: Data, threads: int) -> None:
    out = data.table.contains_many(data.q_i, data.q_r, threads=threads)
    assert out.all()
    run(
        benchmark,
        f"contains {'1t' if threads == 1 else 'all'}",
        lambda: data.table.contains_many(data.q_i, data.q_r, threads=threads),
    )


def test_contains_dict(benchmark: Any, data: Data) -> None:
    d = data.d
    run(benchmark, "contains dict", lambda: [k in d for k in data.q_keys], rounds=3)


@pytest.mark.parametrize("threads", [1, 0], ids=["1t", "all"])
def test_check_many(benchmark: Any, data: Data, threads: int) -> None:
    out = data.table.check_many(data.q_i, data.q_r, data.q_tok, threads=threads)
    assert (out == 2).all()
    run(
        benchmark,
        f"check {'1t' if threads == 1 else 'all'}",
        lambda: data.table.check_many(data.q_i, data.q_r, data.q_tok, threads=threads),
    )


def test_check_dict(benchmark: Any, data: Data) -> None:
    d = data.d

    def go() -> list[bool]:
        return [
            hmac.compare_digest(d.get(k, b""), t)
            for k, t in zip(data.q_keys, data.q_tok_bytes)
        ]

    run(benchmark, "check dict", go, rounds=3)


@pytest.mark.parametrize("pattern", ["sequential", "same-spi-i", "spi-i-high-bits"])
def test_contains_adversarial(benchmark: Any, pattern: str) -> None:
    """SPI patterns a peer could choose; with a keyed hash they cost what random SPIs cost."""
    n = N
    k = np.arange(n, dtype=np.uint64)
    if pattern == "sequential":
        a, b = k, k
    elif pattern == "same-spi-i":
        a, b = np.full(n, 0x1122334455667788, dtype=np.uint64), k
    else:
        a, b = k << np.uint64(40), np.full(n, 7, dtype=np.uint64)
    t = SaTable()
    t.insert_many(a, b, np.zeros((n, TOKEN), dtype=np.uint8), now=0.0)
    order = np.random.default_rng(1).permutation(n)
    qa, qb = np.ascontiguousarray(a[order]), np.ascontiguousarray(b[order])
    mean, longest = t._probe_lengths()
    assert mean < 3 and longest < 200
    run(benchmark, f"contains 1t {pattern}", lambda: t.contains_many(qa, qb, threads=1))
