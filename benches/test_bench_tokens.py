"""Token engine throughput against peers in the same run (pytest-benchmark).

Each case sets ``extra_info['tokens_per_s']``; compare them in one table with
``python -m pytest benches/test_bench_tokens.py --benchmark-enable
--benchmark-columns=min,mean,ops`` (ops x batch size = tokens/s for the batch cases).
"""

from __future__ import annotations

import hmac
import os
from typing import Any

import numpy as np
import pytest
from benchstats import note, seconds
from ikeqcd import TokenMaker

SECRET = os.urandom(32)
MAKER = TokenMaker(SECRET)


def _rate(benchmark: Any, n: int) -> None:
    t = seconds(benchmark)
    if t is not None:
        note(benchmark, "tokens_per_s", n / t)


def test_single_token(benchmark: Any) -> None:
    benchmark(MAKER.token, 0x1122334455667788, 0x99AABBCCDDEEFF00)
    _rate(benchmark, 1)


@pytest.mark.parametrize("threads", [1, 0], ids=["1-thread", "all-threads"])
def test_batch_1m(benchmark: Any, spis_1m: tuple[np.ndarray, np.ndarray], threads: int) -> None:
    a, b = spis_1m
    benchmark.pedantic(MAKER.tokens, args=(a, b), kwargs={"threads": threads}, rounds=5)
    _rate(benchmark, len(a))


def test_verify_many_1m(benchmark: Any, spis_1m: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = spis_1m
    toks = MAKER.tokens(a, b)
    ok = benchmark.pedantic(MAKER.verify_many, args=(a, b, toks), rounds=5)
    assert ok.all()
    _rate(benchmark, len(a))


def test_peer_python_hmac_100k(benchmark: Any, spis_1m: tuple[np.ndarray, np.ndarray]) -> None:
    a, b = spis_1m
    msgs = [int(x).to_bytes(8, "big") + int(y).to_bytes(8, "big") for x, y in zip(a[:100_000], b[:100_000])]

    def loop() -> None:
        for m in msgs:
            hmac.digest(SECRET, m, "sha256")

    benchmark.pedantic(loop, rounds=3)
    _rate(benchmark, len(msgs))


def test_peer_cryptography_100k(benchmark: Any, spis_1m: tuple[np.ndarray, np.ndarray]) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.hmac import HMAC

    a, b = spis_1m
    msgs = [int(x).to_bytes(8, "big") + int(y).to_bytes(8, "big") for x, y in zip(a[:100_000], b[:100_000])]
    keyed = HMAC(SECRET, hashes.SHA256())

    def loop() -> None:
        for m in msgs:
            h = keyed.copy()
            h.update(m)
            h.finalize()

    benchmark.pedantic(loop, rounds=3)
    _rate(benchmark, len(msgs))
