"""Floods of unknown-SPI requests against ``ikeqcd serve`` with its default ``MakerPolicy``.

    python benches/flood.py [--sources 100000] [--per-source 4] [--burst 200000]

All traffic stays on loopback: "spoofed" sources are real sockets bound to distinct
addresses of 127.0.0.0/8 (every one of them is this machine), one after the other, each
sending a few protected-looking requests for random SPI pairs. Three phases:

1. one source sends ``--burst`` requests as fast as Python can: full (token) replies must stay
   within the per-source bucket (burst + rate x time), bare INVALID_IKE_SPI replies within the
   bare bucket, the rest is dropped;
2. ``--sources`` distinct sources send ``--per-source`` requests each: full replies are bounded
   by each source's bucket and by the global bucket; the server tracks at most
   ``max_sources`` (65 536) buckets (refilled ones are forgotten first: that loses nothing;
   when all are busy, new sources share one overflow bucket);
3. as many *new* sources again: the server's memory (VmRSS) must not grow any further.

Prints the server's counters for each phase, the bounds they are checked against, and the
RSS; exits 1 if a bound is broken. A measurement script (the default test run has short
versions in tests/test_net.py and tests/test_maker_policy.py).
"""

from __future__ import annotations

import argparse
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from ikeqcd import MakerPolicy, wire

POLICY = MakerPolicy()  # the defaults serve runs with


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_tcp_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def counters(prom: int) -> dict[str, int]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{prom}/metrics", timeout=5).read().decode()
    out = {m.group(1).upper(): int(m.group(2))
           for m in re.finditer(r'ikeqcd_serve_requests_total\{reason="(\w+)"\} (\d+)', text)}
    m = re.search(r"ikeqcd_serve_datagrams_received_total (\d+)", text)
    out["IN"] = int(m.group(1)) if m else 0
    return out


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m.group(1)) if m else 0


def wait_for(prom: int, n_in: int, timeout: float = 30.0) -> dict[str, int]:
    """Wait until the server has counted ``n_in`` datagrams (or stops counting)."""
    end = time.monotonic() + timeout
    last = -1
    while time.monotonic() < end:
        c = counters(prom)
        if c["IN"] >= n_in or c["IN"] == last:
            return c
        last = c["IN"]
        time.sleep(0.3)
    return counters(prom)


def diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: b.get(k, 0) - a.get(k, 0) for k in b}


def source_address(i: int) -> str:
    i += 1 << 16  # start at 127.1.0.0: 127.0.0.1 stays the server's
    return f"127.{(i >> 16) & 255}.{(i >> 8) & 255}.{i & 255}"


def many_sources(target: tuple[str, int], first: int, count: int, per_source: int) -> float:
    t0 = time.monotonic()
    seq = 0
    for i in range(first, first + count):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind((source_address(i), 0))
            for _ in range(per_source):
                seq += 1
                s.sendto(wire.build_request(seq * 7919 + 1, seq * 104729 + 3, message_id=seq), target)
    return time.monotonic() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sources", type=int, default=100_000)
    ap.add_argument("--per-source", type=int, default=4)
    ap.add_argument("--burst", type=int, default=200_000)
    args = ap.parse_args()
    port, prom = free_port(), free_tcp_port()
    tmp = Path(tempfile.mkdtemp())
    server = subprocess.Popen(
        [sys.executable, "-m", "ikeqcd", "serve", "--listen", f"127.0.0.1:{port}", "--secret-file",
         str(tmp / "k" / "qcd.secret"), "--create", "--prometheus", str(prom)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    failures: list[str] = []
    try:
        for _ in range(100):
            try:
                base = counters(prom)
                break
            except OSError:
                time.sleep(0.1)
        else:
            print("serve did not come up", file=sys.stderr)
            return 1
        rss0 = rss_kib(server.pid)
        target = ("127.0.0.1", port)

        # phase 1: one source, as fast as possible
        reqs = [wire.build_request(k + 1, k + 2, message_id=k) for k in range(1000)]
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
            s.bind((source_address(10_000_000 - 1), 0))
            t0 = time.monotonic()
            for k in range(args.burst):
                s.sendto(reqs[k % 1000], target)
            t1 = time.monotonic() - t0
        c1 = wait_for(prom, base["IN"] + args.burst)
        d1 = diff(base, c1)
        full_bound = POLICY.per_source_burst + POLICY.per_source_rate * (t1 + 1)
        bare_bound = max(1.0, POLICY.bare_rate) + POLICY.bare_rate * (t1 + 1)
        print(f"phase 1: one source, {args.burst:,} requests in {t1:.2f}s; server saw {d1['IN']:,}")
        print(f"  full replies {d1.get('REPLIED', 0):,} (bound {full_bound:,.0f}), bare {d1.get('RATE_LIMITED_BARE', 0):,} "
              f"(bound {bare_bound:,.0f}), dropped {d1.get('RATE_LIMITED_DROP', 0):,}")
        if d1.get("REPLIED", 0) > full_bound:
            failures.append("phase 1: full replies above the per-source bound")
        if d1.get("RATE_LIMITED_BARE", 0) > bare_bound:
            failures.append("phase 1: bare replies above the bare bound")

        # phase 2: many sources
        t2 = many_sources(target, 0, args.sources, args.per_source)
        n2 = args.sources * args.per_source
        c2 = wait_for(prom, c1["IN"] + n2)
        d2 = diff(c1, c2)
        rss2 = rss_kib(server.pid)
        per_source = min(args.per_source, POLICY.per_source_burst + POLICY.per_source_rate * (t2 + 1))
        full_bound2 = min(args.sources * per_source, POLICY.global_burst + POLICY.global_rate * (t2 + 1))
        print(f"phase 2: {args.sources:,} sources x {args.per_source} requests in {t2:.1f}s; server saw {d2['IN']:,}")
        print(f"  full replies {d2.get('REPLIED', 0):,} (bound {full_bound2:,.0f}: each source's bucket, and the "
              f"global one), bare {d2.get('RATE_LIMITED_BARE', 0):,}, "
              f"dropped {d2.get('RATE_LIMITED_DROP', 0):,}; RSS {rss0:,} -> {rss2:,} KiB")
        if d2.get("REPLIED", 0) > full_bound2:
            failures.append("phase 2: full replies above the bound")

        # phase 3: as many new sources again: memory must stay where it is
        t3 = many_sources(target, args.sources, args.sources, args.per_source)
        c3 = wait_for(prom, c2["IN"] + n2)
        d3 = diff(c2, c3)
        rss3 = rss_kib(server.pid)
        print(f"phase 3: {args.sources:,} new sources in {t3:.1f}s; full replies {d3.get('REPLIED', 0):,}, "
              f"bare {d3.get('RATE_LIMITED_BARE', 0):,}, dropped {d3.get('RATE_LIMITED_DROP', 0):,}; "
              f"RSS {rss2:,} -> {rss3:,} KiB (growth {rss3 - rss2:+,} KiB)")
        if rss3 - rss2 > 4096:
            failures.append("phase 3: server memory grew by more than 4 MiB")
    finally:
        server.terminate()
        server.wait(timeout=10)
    for f in failures:
        print("FAILED:", f)
    print("all bounds held" if not failures else f"{len(failures)} bound(s) broken")
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
