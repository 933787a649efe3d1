"""Memory per SA of an SaTable with 10^6 SAs and 32-octet tokens: by ``memory_bytes()`` and
by the growth of the process's resident set, next to a Python dict of bytes.

    .venv/bin/python benches/table_memory.py [--n 1000000] [--token-len 32] [--history 1]
"""

from __future__ import annotations

import argparse
import gc
import os

import numpy as np
from ikeqcd import SaTable


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--token-len", type=int, default=32)
    p.add_argument("--history", type=int, default=1)
    p.add_argument("--chunk", type=int, default=100_000, help="SAs per insert_many call")
    args = p.parse_args()
    n, tl = args.n, args.token_len
    rng = np.random.default_rng(1)
    a = rng.integers(0, 2**64, n, dtype=np.uint64)
    b = rng.integers(0, 2**64, n, dtype=np.uint64)
    toks = rng.integers(0, 256, (n, tl), dtype=np.uint8)
    gc.collect()

    before = rss()
    t = SaTable(history=args.history)
    for s in range(0, n, args.chunk):
        e = s + args.chunk
        t.insert_many(a[s:e], b[s:e], toks[s:e], now=0.0)
    gc.collect()
    grown = rss() - before
    print(f"SaTable, {len(t):,} SAs, {tl}-octet tokens, history={args.history}, "
          f"inserted in chunks of {args.chunk:,}:")
    print(f"  memory_bytes()/SA   {t.memory_bytes() / n:7.1f}")
    print(f"  RSS growth/SA       {grown / n:7.1f}")
    if args.history > 1:
        for _ in range(args.history - 1):
            t.insert_many(a, b, toks, now=1.0)
        print(f"  after {args.history - 1} replacements of every token: "
              f"memory_bytes()/SA {t.memory_bytes() / n:7.1f}")
    del t
    gc.collect()

    keys = list(zip(a.tolist(), b.tolist()))
    tok_bytes = [bytes(r) for r in toks]
    gc.collect()
    before = rss()
    d = dict(zip(keys, tok_bytes))
    print("dict of bytes (the keys' tuples and the bytes objects counted too):")
    print(f"  RSS growth/SA       {(rss() - before) / n:7.1f}  (the dict alone)")
    del keys, tok_bytes
    gc.collect()
    base = rss()
    del d
    gc.collect()
    print(f"  RSS freed/SA        {(base - rss()) / n:7.1f}  (dict, key tuples, ints, bytes)")


if __name__ == "__main__":
    main()
