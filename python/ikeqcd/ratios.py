"""The benchmark gate's figures: each one a ratio of ikeqcd to a peer measured in the same run.

Every figure is measured ``reps`` times, ours and the peer's alternately (so a burst of load
from another process hits both alike), and reported as the median of the per-repetition
ratios. Absolute rates are kept for the report but never gated: CI machines differ, ratios
to a peer on the same machine carry across them.

To add a figure: write a function ``(reps) -> dict[key, Measured]`` (raise
:class:`NotMeasured` when it cannot run here), register it in :data:`GROUPS` under a part
name, and give each key a floor and a reason in ``benches/floors.toml``.
"""

from __future__ import annotations

import hmac
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["GROUPS", "REPO_ROOT", "Measured", "NotMeasured", "openssl_rate"]

REPO_ROOT = Path(__file__).resolve().parents[2]
"""The source checkout this module runs from (``benches/`` lives there)."""


class NotMeasured(Exception):
    """A figure that cannot be measured on this machine (the reason is the message)."""


@dataclass
class Measured:
    """One gated figure: ours against the peer, per repetition and as medians."""

    title: str
    ours: str
    peer: str
    unit: str
    ours_rates: list[float]
    peer_rates: list[float]
    not_applicable: str = ""
    """Why the floor does not apply on this machine (reported as "n/a"), or empty."""

    @property
    def ratios(self) -> list[float]:
        return [o / p for o, p in zip(self.ours_rates, self.peer_rates) if p > 0]

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios) if self.ratios else 0.0

    @property
    def ours_rate(self) -> float:
        return statistics.median(self.ours_rates)

    @property
    def peer_rate(self) -> float:
        return statistics.median(self.peer_rates)


def _rate(fn: Callable[[], int], min_time: float = 0.25, *, cpu: bool = True) -> float:
    """Items per second of ``fn`` (which returns how many it did), run for ``min_time``.

    ``cpu=True`` counts this thread's CPU time, not the wall clock: every figure measured this
    way runs on the calling thread alone (``threads=1``, or Python), and ``openssl speed``
    counts user CPU time too, so a moment of the core lent to another process on a shared
    machine moves neither side of the ratio.
    """
    clock = time.thread_time if cpu else time.perf_counter
    t0, w0 = clock(), time.perf_counter()
    done = 0
    while True:
        done += fn()
        if time.perf_counter() - w0 >= min_time:
            return done / max(clock() - t0, 1e-9)


def _spis(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, 2**64 - 1, n, dtype=np.uint64, endpoint=True)
    return a, b


def openssl_rate(args: list[str], octets_per_item: int, seconds: int = 1) -> float:
    """Run ``openssl speed ARGS -seconds S`` and turn its last figure (thousands of octets per
    second of user CPU time, openssl's default) into items per second.

    Raises:
        NotMeasured: no ``openssl`` on PATH, or output it could not read.
    """
    exe = shutil.which("openssl")
    if exe is None:
        raise NotMeasured("openssl is not on PATH (install the openssl package)")
    try:
        proc = subprocess.run([exe, "speed", *args, "-seconds", str(seconds)],
                              capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise NotMeasured(f"openssl speed failed: {e}") from e
    found = re.findall(r"^\S+\s+([\d.]+)k\s*$", proc.stdout, re.MULTILINE)
    if proc.returncode != 0 or not found:
        raise NotMeasured(f"could not read `openssl speed {' '.join(args)}`: {proc.stderr.strip()[:200]}")
    return float(found[-1]) * 1000.0 / octets_per_item


def tokens(reps: int) -> dict[str, Measured]:
    """One-thread batch derivation against OpenSSL's HMAC and the bulk SHA-256 limit."""
    from ikeqcd import TokenMaker
    from ikeqcd._core import kernel_info

    maker = TokenMaker(os.urandom(32))
    a, b = _spis(1 << 14, 1)  # 16384 tokens: 512 KiB of output, as a responder batch
    maker.tokens(a[:64], b[:64])  # the kernel is chosen (calibrated) on first use

    def ours() -> float:
        return _rate(lambda: int(maker.tokens(a, b, threads=1).shape[0]))

    o1, o2, hm, bulk = [], [], [], []
    for _ in range(reps):
        o1.append(ours())
        hm.append(openssl_rate(["-hmac", "sha256", "-bytes", "16"], 16))
        o2.append(ours())
        # two SHA-256 compressions (128 octets) per token once the pad states are cached
        bulk.append(openssl_rate(["-evp", "sha256", "-bytes", "16384"], 128))
    return {
        "tokens_1t_vs_openssl_hmac": Measured(
            "TokenMaker.tokens (16384-token batches), 1 thread / openssl speed -hmac sha256 -bytes 16",
            "tokens/s", "HMACs/s", "x", o1, hm),
        "tokens_1t_of_bulk_limit": Measured(
            "TokenMaker.tokens (16384-token batches), 1 thread / bulk SHA-256 limit (openssl -evp sha256 16 KiB, 128 octets a token)",
            "tokens/s", "tokens/s", "of limit", o2, bulk,
            "" if kernel_info()["sha_ni"] else "no SHA-NI on this CPU: the floor is for SHA-NI machines"),
    }


def _wall_and_cpu(fn: Callable[[], int], min_time: float = 0.3) -> tuple[float, float]:
    """Items per wall second and per CPU second of this process (all its threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    done = 0
    while time.perf_counter() - t0 < min_time:
        done += fn()
    return done / (time.perf_counter() - t0), done / max(time.process_time() - c0, 1e-9)


def scaling(reps: int) -> dict[str, Measured]:
    """Two threads against one on a 10^6 batch: by the wall clock, and per CPU second.

    The CPU-time form is the one that survives a shared machine: when another process holds
    the second core, two threads cannot beat one by the wall clock, but a parallel path that
    works well still makes as many tokens per CPU second as one thread does; spinning, lock
    contention or false sharing show up as a lower figure.
    """
    from ikeqcd import TokenMaker

    if (os.cpu_count() or 1) < 2:
        raise NotMeasured("this machine has one core")
    maker = TokenMaker(os.urandom(32))
    a, b = _spis(1_000_000, 2)
    w2: list[float] = []
    w1: list[float] = []
    c2: list[float] = []
    c1: list[float] = []

    def batch(threads: int) -> Callable[[], int]:
        return lambda: int(maker.tokens(a, b, threads=threads).shape[0])

    for _ in range(reps):
        for threads, w, c in ((2, w2, c2), (1, w1, c1)):
            x, y = _wall_and_cpu(batch(threads))
            w.append(x)
            c.append(y)
    return {
        "tokens_2t_vs_1t": Measured("TokenMaker.tokens, 2 threads / 1 thread (wall clock)",
                                    "tokens/s", "tokens/s", "x", w2, w1),
        "tokens_2t_cpu_efficiency": Measured(
            "TokenMaker.tokens, tokens per CPU second, 2 threads / 1 thread",
            "tokens/CPU s", "tokens/CPU s", "x", c2, c1),
    }


def table(reps: int) -> dict[str, Measured]:
    """verify_many and SaTable.contains_many at 10^6 SAs against Python dict / set loops."""
    from ikeqcd import SaTable, TokenMaker

    n, probes = 1_000_000, 200_000
    maker = TokenMaker(os.urandom(32))
    a, b = _spis(n, 3)
    toks = maker.tokens(a, b)
    order = np.random.default_rng(4).permutation(n)
    qa, qb, qt = a[order], b[order], np.ascontiguousarray(toks[order])
    sat = SaTable()
    sat.insert_many(a, b, toks, now=0.0)
    keys = [(x << 64) | y for x, y in zip(a.tolist(), b.tolist())]
    stored = dict(zip(keys, (bytes(r) for r in toks)))
    live = set(keys)
    pk = [keys[i] for i in order[:probes].tolist()]
    pt = [stored[k] for k in pk]

    def dict_verify() -> int:
        get, cmp = stored.get, hmac.compare_digest
        for k, t in zip(pk, pt):
            s = get(k)
            _ = s is not None and cmp(s, t)
        return probes

    def set_contains() -> int:
        for k in pk:
            _ = k in live
        return probes

    vo, vp, co, cp = [], [], [], []
    for _ in range(reps):
        vo.append(_rate(lambda: int(maker.verify_many(qa, qb, qt, threads=1).shape[0])))
        vp.append(_rate(dict_verify))
        co.append(_rate(lambda: int(sat.contains_many(qa, qb, threads=1).shape[0])))
        cp.append(_rate(set_contains))
    return {
        "verify_many_vs_dict": Measured(
            "verify_many, 10^6 SAs, 1 thread / dict.get + hmac.compare_digest loop",
            "tokens/s", "lookups/s", "x", vo, vp),
        "contains_many_vs_set": Measured(
            "SaTable.contains_many, 10^6 SAs, 1 thread / `in set` loop", "lookups/s",
            "lookups/s", "x", co, cp),
    }


def wire(reps: int) -> dict[str, Measured]:
    """TokenResponder.respond_many against parse + token + build one datagram at a time."""
    from ikeqcd import TokenMaker
    from ikeqcd import wire as w
    from ikeqcd.maker import TokenResponder
    from ikeqcd.policy import MakerPolicy

    maker = TokenMaker(os.urandom(32))
    # the raw path (the default MakerPolicy() would rate-limit one benchmark source)
    responder = TokenResponder(maker, policy=MakerPolicy.unlimited())
    a, b = _spis(20_000, 5)
    reqs = [w.build_request(int(x), int(y), message_id=i) for i, (x, y) in enumerate(zip(a, b))]
    few = reqs[:5000]

    def python_loop() -> int:
        parse, build, token = w.parse_header, w.build_qcd_reply, maker.token
        for d in few:
            h = parse(d)
            build(h, [token(h.spi_i, h.spi_r)])
        return len(few)

    ours, peer = [], []
    for _ in range(reps):
        ours.append(_rate(lambda: len(responder.respond_many(reqs)[0])))
        peer.append(_rate(python_loop))
    return {"respond_many_vs_python": Measured(
        "TokenResponder.respond_many / Python parse_header + token + build_qcd_reply loop",
        "datagrams/s", "datagrams/s", "x", ours, peer)}


def _pin(core: int) -> list[str]:
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


def _start(cmd: list[str]) -> tuple[subprocess.Popen[str], int]:
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if "listening on" not in line:
        p.kill()
        p.wait()
        raise NotMeasured(f"could not start {' '.join(cmd[-4:])}: {line.strip()}")
    return p, int(line.split("listening on ")[1].split()[0].rsplit(":", 1)[1])


def _stop(p: subprocess.Popen[str]) -> None:
    p.send_signal(signal.SIGTERM)
    try:
        p.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        p.kill()
        p.communicate()


def net(reps: int, duration: float = 1.5) -> dict[str, Measured]:
    """``ikeqcd serve`` + ``ikeqcd load`` on loopback against a bare Python UDP echo."""
    peer_script = REPO_ROOT / "benches" / "udp_peer.py"
    if not peer_script.is_file():
        raise NotMeasured("benches/udp_peer.py not found: run from a source checkout")
    py = [sys.executable, "-m", "ikeqcd"]
    with tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        secret = str(Path(tmp) / "qcd.secret")
        srv, sport = _start([*_pin(0), *py, "serve", "--listen", "127.0.0.1:0", "--secret-file",
                             secret, "--create", "--unlimited", "--quiet"])
        try:
            echo, eport = _start([*_pin(0), sys.executable, str(peer_script), "--listen",
                                  "127.0.0.1:0"])
        except NotMeasured:
            _stop(srv)
            raise
        try:
            def load(port: int, with_secret: bool) -> float:
                cmd = [*_pin(1), *py, "load", "--target", f"127.0.0.1:{port}", "--rate", "max",
                       "--duration", str(duration), "--json", "--no-progress"]
                if with_secret:
                    cmd += ["--secret-file", secret]
                out = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
                if out.returncode != 0:
                    raise NotMeasured(f"ikeqcd load failed: {out.stderr.strip()[:200]}")
                r = json.loads(out.stdout)
                key = "valid_rate" if with_secret else "answered_rate"
                return float(r[key])

            ours, peer = [], []
            for _ in range(reps):
                ours.append(load(sport, True))
                peer.append(load(eport, False))
        finally:
            _stop(echo)
            _stop(srv)
    return {"serve_vs_python_echo": Measured(
        f"serve+load loopback, every token verified / Python UDP echo ({duration:g} s each)",
        "replies/s", "echoes/s", "x", ours, peer)}


def _python_hmac_rate() -> float:
    key = os.urandom(32)
    msgs = [i.to_bytes(16, "big") for i in range(20_000)]

    def loop() -> int:
        digest = hmac.digest
        for m in msgs:
            digest(key, m, "sha256")
        return len(msgs)

    return _rate(loop, cpu=False)


def _one_core() -> None:
    """Pin a child process to one CPU (where the OS lets us): "datagrams per second on one
    core" is what the simulator's figure claims."""
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


_DICT_PEER = """
import os, sys
from ikeqcd.sim.report import rss_mb
n = int(sys.argv[1])
before = rss_mb(peak=False)
top = 1 << 63
table = {(top | i, top | (i * 7 + 1)): os.urandom(32) for i in range(n)}
print(n / max(1e-3, rss_mb(peak=False) - before))
"""


def _dict_entries_per_mib(n: int) -> float:
    """A Python dict of ``n`` SAs, ``(spi_i, spi_r) -> 32-octet token`` (the simplest token
    table), in a fresh interpreter: entries per MiB of peak RSS it adds."""
    out = subprocess.run([sys.executable, "-c", _DICT_PEER, str(n)], capture_output=True,
                         text=True, timeout=120, check=True)
    return float(out.stdout)


def sim(reps: int, sas: int = 250_000) -> dict[str, Measured]:
    """``ikeqcd simulate --sas 250000`` (gateway scale, every mode) on one core: simulated
    datagrams per second of wall time, as the simulator reports them itself, against the
    Python ``hmac.digest`` loop of the same run (a yardstick of this machine's speed); and its
    peak memory per SA against a Python dict of tokens for as many SAs."""
    ours, peer, per_mib, dict_per_mib = [], [], [], []
    for _ in range(reps):
        out = subprocess.run([sys.executable, "-m", "ikeqcd", "simulate", "--sas", str(sas),
                              "--no-progress", "--json"], capture_output=True, text=True,
                             timeout=600, check=False, preexec_fn=_one_core)
        if out.returncode != 0:
            raise NotMeasured(f"ikeqcd simulate failed: {out.stderr.strip()[:200]}")
        rep = json.loads(out.stdout)
        ours.append(float(rep["datagrams_per_s"]))
        peer.append(_python_hmac_rate())
        per_mib.append(2**20 / max(1.0, float(rep["bytes_per_sa"])))
        dict_per_mib.append(_dict_entries_per_mib(sas))
    return {
        "simulate_vs_python_hmac": Measured(
            f"simulate --sas {sas} on one core: simulated datagrams per wall second (its own "
            "figure) / Python hmac.digest loop per second",
            "datagrams/s", "HMACs/s", "x", ours, peer),
        "simulate_memory_vs_dict": Measured(
            f"simulate --sas {sas}: SAs per MiB of peak RSS above the interpreter (4 modes, two "
            "gateways, every table) / a Python dict (spi_i, spi_r) -> 32-octet token",
            "SAs/MiB", "entries/MiB", "x", per_mib, dict_per_mib),
    }


def cluster(reps: int) -> dict[str, Measured]:
    """The cluster gate on a local Redis/Valkey server (:mod:`ikeqcd._ratios_cluster`)."""
    from ikeqcd._ratios_cluster import cluster as measure

    return measure(reps)


GROUPS: dict[str, Callable[[int], dict[str, Measured]]] = {
    "tokens": tokens,
    "scaling": scaling,
    "table": table,
    "wire": wire,
    "net": net,
    "sim": sim,
    "cluster": cluster,
}
"""Part name -> the function measuring its figures (keys as in ``benches/floors.toml``)."""
