"""``ikeqcd bench``: throughput of the token engine against peers measured in the same run.

Peers: a Python ``hmac.digest`` loop, ``cryptography``'s HMAC (when installed) and
``openssl speed -hmac sha256 -bytes 16`` (when the ``openssl`` binary exists). Figures are
tokens per second; ratios compare ikeqcd against each peer, so they travel between machines
better than absolute numbers.
"""

from __future__ import annotations

import hmac
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from ikeqcd._core import TokenMaker

__all__ = ["BenchResult", "run_token_bench", "format_results"]


@dataclass
class BenchResult:
    """One measured figure."""

    name: str
    per_second: float
    unit: str = "tokens/s"
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)


def _best_rate(fn: Callable[[], int], *, repeat: int, min_time: float = 0.2) -> float:
    """Best rate over ``repeat`` runs of ``fn`` (which returns how many items it did)."""
    best = 0.0
    for _ in range(repeat):
        t0 = time.perf_counter()
        done = 0
        while True:
            done += fn()
            dt = time.perf_counter() - t0
            if dt >= min_time:
                break
        best = max(best, done / dt)
    return best


def _python_hmac_loop(secret: bytes, n: int) -> Callable[[], int]:
    msgs = [i.to_bytes(8, "big") + (i ^ 0x5A5A).to_bytes(8, "big") for i in range(n)]

    def run() -> int:
        digest = hmac.digest
        for m in msgs:
            digest(secret, m, "sha256")
        return n

    return run


def _cryptography_loop(secret: bytes, n: int) -> Callable[[], int] | None:
    try:
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.hmac import HMAC
    except ImportError:
        return None
    msgs = [i.to_bytes(8, "big") + (i ^ 0x5A5A).to_bytes(8, "big") for i in range(n)]
    keyed = HMAC(secret, hashes.SHA256())

    def run() -> int:
        for m in msgs:
            h = keyed.copy()  # the keyed context is reused, as a careful user would
            h.update(m)
            h.finalize()
        return n

    return run


def openssl_speed(seconds: int = 2) -> BenchResult | None:
    """Run ``openssl speed -hmac sha256 -bytes 16`` and convert its kB/s into HMACs/s."""
    exe = shutil.which("openssl")
    if exe is None:
        return None
    try:
        proc = subprocess.run(
            [exe, "speed", "-hmac", "sha256", "-bytes", "16", "-seconds", str(seconds)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    # Last line: "hmac(sha256)      81234.56k" (thousands of bytes per second, 16-byte blocks)
    m = re.search(r"^hmac\(sha256\)\s+([\d.]+)k\s*$", proc.stdout, re.MULTILINE)
    if m is None:
        return None
    per_s = float(m.group(1)) * 1000.0 / 16.0
    return BenchResult("openssl speed -hmac sha256 -bytes 16", per_s, note="EVP, one core")


def run_token_bench(*, n: int = 1_000_000, quick: bool = False) -> list[BenchResult]:
    """Measure ikeqcd and its peers; returns the figures (ikeqcd first)."""
    repeat = 2 if quick else 5
    secret = os.urandom(32)
    maker = TokenMaker(secret)
    rng = np.random.default_rng(7)
    a = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    cores = os.cpu_count() or 1
    results: list[BenchResult] = []

    def batch(threads: int) -> Callable[[], int]:
        return lambda: maker.tokens(a, b, threads=threads).shape[0]

    one = _best_rate(batch(1), repeat=repeat)
    results.append(BenchResult("ikeqcd tokens() batch, 1 thread", one))
    allc = _best_rate(batch(0), repeat=repeat)
    results.append(
        BenchResult(
            f"ikeqcd tokens() batch, all threads ({cores})",
            allc,
            extra={"scaling": allc / one},
        )
    )
    toks = maker.tokens(a, b)
    results.append(
        BenchResult(
            "ikeqcd verify_many(), all threads",
            _best_rate(lambda: int(maker.verify_many(a, b, toks).shape[0]), repeat=repeat),
        )
    )
    spis = [(int(x), int(y)) for x, y in zip(a[:10_000], b[:10_000])]

    def singles() -> int:
        tok = maker.token
        for x, y in spis:
            tok(x, y)
        return len(spis)

    single = _best_rate(singles, repeat=repeat)
    results.append(
        BenchResult("ikeqcd token() single call", single, extra={"us_per_call": 1e6 / single})
    )
    peer_n = 20_000 if quick else 100_000
    results.append(
        BenchResult(
            "Python hmac.digest loop", _best_rate(_python_hmac_loop(secret, peer_n), repeat=repeat)
        )
    )
    crypto = _cryptography_loop(secret, peer_n)
    if crypto is not None:
        results.append(
            BenchResult("cryptography HMAC (copied keyed ctx)", _best_rate(crypto, repeat=repeat))
        )
    ossl = openssl_speed(1 if quick else 3)
    if ossl is not None:
        results.append(ossl)
    return results


def format_results(results: list[BenchResult]) -> str:
    """A plain table: figure, rate, ratio of the 1-thread batch to it."""
    base = results[0].per_second
    lines = [f"{'what':<44} {'per second':>14} {'1-thread batch is':>18}"]
    for r in results:
        ratio = base / r.per_second if r.per_second else float("nan")
        extra = "  ".join(f"{k}={v:.2f}" for k, v in r.extra.items())
        lines.append(
            f"{r.name:<44} {r.per_second / 1e6:>12.2f} M {ratio:>16.2f}x  {extra}".rstrip()
        )
    return "\n".join(lines)
