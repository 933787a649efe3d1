"""``ikeqcd bench``: throughput of the token engine against peers measured in the same run.

:func:`run_report` is what the command runs: the machine (:func:`ikeqcd.gate.machine`), the
absolute figures below, and the gate's ratios (:mod:`ikeqcd.ratios`) judged against
``benches/floors.toml``.

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
from typing import TYPE_CHECKING, Any

import numpy as np

from ikeqcd._core import TokenMaker
from ikeqcd.policy import MakerPolicy

if TYPE_CHECKING:
    from ikeqcd.gate import Floor

__all__ = ["BENCH_PARTS", "BenchResult", "format_results", "run_report", "run_table_bench",
           "run_token_bench", "run_wire_bench", "text_report"]


@dataclass
class BenchResult:
    """One measured figure."""

    name: str
    per_second: float
    unit: str = "tokens/s"
    note: str = ""
    extra: dict[str, float] = field(default_factory=dict)
    vs: tuple[tuple[str, float | None], ...] = ()
    """Peers this figure is compared with: (peer result name, target ratio or None)."""


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
    peers = (("Python hmac.digest loop", 12.0), ("openssl speed -hmac sha256 -bytes 16", 1.5),
             ("cryptography HMAC (copied keyed ctx)", None))
    results.append(BenchResult("ikeqcd tokens() batch, 1 thread", one, vs=peers))
    allc = _best_rate(batch(0), repeat=repeat)
    results.append(
        BenchResult(
            f"ikeqcd tokens() batch, all threads ({cores})",
            allc,
            extra={"scaling": allc / one},
            vs=peers[:2],
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
        BenchResult("ikeqcd token() single call", single, extra={"us_per_call": 1e6 / single},
                    vs=(("Python hmac.digest loop", None),))
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
    """A plain table of the figures, then each comparison with a peer of the same run."""
    lines = [f"{'what':<46} {'figure':>18}"]
    for r in results:
        extra = "  ".join(f"{k}={v:.2f}" for k, v in r.extra.items())
        if r.unit.endswith("/s"):
            fig = f"{r.per_second / 1e6:>10.2f} M {r.unit.split('/')[0]}/s"
        else:
            fig = f"{r.per_second:>10.1f} {r.unit}"
        lines.append(f"{r.name:<46} {fig:>18}  {extra}".rstrip())
    by_name = {r.name: r for r in results}
    cmp_lines = []
    for r in results:
        for peer, target in r.vs:
            p = by_name.get(peer)
            if p is None or not p.per_second:
                continue
            ratio = r.per_second / p.per_second
            goal = "" if target is None else f"  (target >= {target:g}x: {'met' if ratio >= target else 'MISSED'})"
            cmp_lines.append(f"  {r.name} / {peer} = {ratio:.2f}x{goal}")
    if cmp_lines:
        lines.append("ratios (same run):")
        lines.extend(cmp_lines)
    return "\n".join(lines)


def run_table_bench(*, n: int = 1_000_000, quick: bool = False) -> list[BenchResult]:
    """SaTable at ``n`` SAs with 32-octet tokens, random order, against a dict of bytes."""
    from ikeqcd._core import SaTable

    repeat = 2 if quick else 3
    rng = np.random.default_rng(11)
    a = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    toks = rng.integers(0, 256, (n, 32), dtype=np.uint8)
    order = rng.permutation(n)
    qa, qb, qt = a[order], b[order], np.ascontiguousarray(toks[order])
    results: list[BenchResult] = []

    def insert() -> int:
        SaTable().insert_many(a, b, toks, now=0.0)
        return n

    results.append(BenchResult("SaTable.insert_many", _best_rate(insert, repeat=repeat),
                               unit="SAs/s", vs=(("dict of bytes: insert", None),)))
    table = SaTable()
    table.insert_many(a, b, toks, now=0.0)
    for th in (1, 0):
        label = "1 thread" if th == 1 else "all threads"
        results.append(BenchResult(
            f"SaTable.contains_many, {label}",
            _best_rate(lambda: int(table.contains_many(qa, qb, threads=th).shape[0]), repeat=repeat),
            unit="lookups/s", vs=(("dict of bytes: contains", None),),
        ))
        results.append(BenchResult(
            f"SaTable.check_many, {label}",
            _best_rate(lambda: int(table.check_many(qa, qb, qt, threads=th).shape[0]), repeat=repeat),
            unit="checks/s", vs=(("dict of bytes: check (compare_digest)", None),),
        ))
    results.append(BenchResult("SaTable memory", table.memory_bytes() / n, unit="bytes/SA"))
    # the peer: a dict of bytes keyed by (spi_i, spi_r), looked up and compared in Python
    m = n
    keys = list(zip(a.tolist(), b.tolist()))
    tok_bytes = [bytes(r) for r in toks]

    def dict_insert() -> int:
        dict(zip(keys, tok_bytes))
        return m

    d = dict(zip(keys, tok_bytes))
    probe = [keys[i] for i in order.tolist()]
    probe_tok = [tok_bytes[i] for i in order.tolist()]

    def dict_contains() -> int:
        for k in probe:
            _ = k in d
        return m

    def dict_check() -> int:
        cmp = hmac.compare_digest
        for k, t in zip(probe, probe_tok):
            s = d.get(k)
            _ = s is not None and cmp(s, t)
        return m

    results.append(BenchResult("dict of bytes: insert", _best_rate(dict_insert, repeat=repeat), unit="SAs/s"))
    results.append(BenchResult("dict of bytes: contains", _best_rate(dict_contains, repeat=repeat), unit="lookups/s"))
    results.append(BenchResult("dict of bytes: check (compare_digest)", _best_rate(dict_check, repeat=repeat), unit="checks/s"))
    return results


def run_wire_bench(*, n: int = 100_000, quick: bool = False) -> list[BenchResult]:
    """The responder hot path and the reply parser, one thread."""
    from ikeqcd import wire
    from ikeqcd.maker import TokenResponder

    repeat = 3 if quick else 7
    rng = np.random.default_rng(5)
    a = rng.integers(1, 2**63, n, dtype=np.uint64)
    b = rng.integers(1, 2**63, n, dtype=np.uint64)
    reqs = [wire.build_request(int(x), int(y), message_id=i) for i, (x, y) in enumerate(zip(a, b))]
    results: list[BenchResult] = []
    for gens in (1, 4):
        maker = TokenMaker([os.urandom(32) for _ in range(gens)])
        responder = TokenResponder(maker, policy=MakerPolicy.unlimited())
        results.append(BenchResult(
            f"TokenResponder.respond_many, {gens} generation(s)",
            _best_rate(lambda: len(responder.respond_many(reqs)[0]), repeat=repeat),
            unit="datagrams/s",
        ))
        if gens == 1:
            replies = [r for r in responder.respond_many(reqs)[0] if r is not None]
            results.append(BenchResult(
                "wire.parse_qcd_replies", _best_rate(lambda: len(wire.parse_qcd_replies(replies)), repeat=repeat),
                unit="datagrams/s",
            ))
            one = reqs[0]

            def singles() -> int:
                respond = responder.respond
                for _ in range(1000):
                    respond(one)
                return 1000

            single = _best_rate(singles, repeat=repeat)
            results.append(BenchResult("TokenResponder.respond single call", single,
                                       unit="datagrams/s", extra={"us_per_call": 1e6 / single}))
    return results


BENCH_PARTS: dict[str, tuple[str, ...]] = {
    "tokens": ("tokens", "scaling"),
    "table": ("table",),
    "wire": ("wire",),
    "net": ("net",),
    "sim": ("sim",),
    "cluster": ("cluster",),
}
"""``ikeqcd bench --only`` part -> the gate parts (:data:`ikeqcd.ratios.GROUPS`) it runs."""


def run_report(parts: list[str], *, n: int, quick: bool, floors: dict[str, Floor]) -> dict[str, Any]:
    """The whole ``ikeqcd bench`` report as JSON-ready data: ``machine``, ``figures`` (absolute,
    as before) and ``ratios`` (the gate's rows, each with its floor and verdict)."""
    from ikeqcd.gate import machine, measure

    absolute: dict[str, Callable[[], list[BenchResult]]] = {
        "tokens": lambda: run_token_bench(n=n, quick=quick),
        "table": lambda: run_table_bench(n=n, quick=quick),
        "wire": lambda: run_wire_bench(n=min(n, 100_000), quick=quick),
    }
    figures: list[BenchResult] = []
    for part in parts:
        if part in absolute:
            figures.extend(absolute[part]())
    gate_parts = [g for p in parts for g in BENCH_PARTS[p]]
    if quick:
        gate_parts = [g for g in gate_parts if g != "scaling"]
    rows = measure(floors, gate_parts, 1 if quick else 3, allow_missing=())
    return {
        "machine": machine(),
        "figures": [{"name": r.name, "per_second": r.per_second, "unit": r.unit, "note": r.note,
                     **r.extra} for r in figures],
        "ratios": [r.as_json() for r in rows],
    }


def text_report(report: dict[str, Any]) -> str:
    """The plain report: machine, kernel and fraction of the limit, figures, ratio table."""
    info = report["machine"]
    cal = ", ".join(f"{k} {v / 1e6:.1f}" for k, v in info["calibration"].items())
    note = f" - {info['kernel_note']}" if info["kernel_note"] else ""
    lines = [
        (f"machine: {info['cpu']}, {info['cores']} cores, {info['system']}, "
         f"Python {info['python']}, {info['build']} build, {info['date']}"),
        (f"SHA-256 kernel: {info['kernel']} ({info['kernel_source']}"
         f"{'; calibration M tokens/s: ' + cal if cal else ''}){note}"),
    ]
    by_key = {r["key"]: r for r in report["ratios"]}
    lim = by_key.get("tokens_1t_of_bulk_limit")
    if lim is not None and lim["ratio"] is not None:
        lines.append(f"one thread reaches {lim['ratio']:.2f} of this machine's bulk SHA-256 limit "
                     f"({lim['ours_per_s'] / 1e6:.2f} M tokens/s against {lim['peer_per_s'] / 1e6:.2f} M/s "
                     f"from openssl speed -evp sha256 at two compressions a token; floor {lim['floor']:g})")
    if report["figures"]:
        lines += ["", "absolute figures:"]
        lines += [f"  {f['name']:<46} " + (f"{f['per_second'] / 1e6:>10.2f} M {f['unit']}"
                  if f["unit"].endswith("/s") else f"{f['per_second']:>10.1f} {f['unit']}")
                  for f in report["figures"]]
    lines += ["", "ratios to peers in the same run (gate floors from benches/floors.toml):",
              f"  {'figure':<28} {'measured':>9} {'floor':>7}  verdict"]
    for r in report["ratios"]:
        got = "-" if r["ratio"] is None else f"{r['ratio']:.3g}"
        flag = "  <-- below floor" if r["verdict"] == "BELOW FLOOR" else ""
        why = f": {r['why_not']}" if r["ratio"] is None else ""
        lines.append(f"  {r['key']:<28} {got:>9} {r['floor']:>7g}  {r['verdict']}{why}{flag}")
    return "\n".join(lines)
