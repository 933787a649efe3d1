"""Crash campaign for ikeqcd.SecretStore: SIGKILL a process that creates and rotates a secret
file at random moments, and check the file after every kill.

A child process opens a store (load_or_create) and rotates it in a tight loop. After each
commit it appends the exported set (hex) to a side log, so the parent knows the last state
that was surely on disk (P). The parent SIGKILLs the child after a random delay and checks:

- the file is absent only if no state was ever logged (killed during the first create);
- otherwise it is a regular file of mode 0600 in a 0700 directory, it loads cleanly, and its
  content is either P byte for byte ("old") or the rotation of P the child was committing
  ("new": same older generations shifted down, one fresh current secret, at most 4);
  with no P yet, a complete 1-generation set ("created");
- two independent loads give the same fingerprint and byte-identical tokens, equal to tokens
  computed from the decoded secrets.

Every ``--fresh-every`` kills a new directory starts, so first-start creation gets killed
too (the first kills on a fresh store use short delays to land inside create).

Usage: python scripts/crash_secret.py [--kills 1000] [--dir DIR] [--seed S] [--json]
Exit status 0 when there were no failures.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from ikeqcd import SecretStore, TokenMaker
from ikeqcd.secret import MAX_GENERATIONS, _decode

SPI_PAIRS = [(1, 2), (0x0123456789ABCDEF, 0xFEDCBA9876543210), (2**64 - 1, 0)]


def child(path: str, log: str, algorithm: str) -> None:
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    store = SecretStore(path, algorithm=algorithm)
    sys.stdout.write("R")
    sys.stdout.flush()
    store.load_or_create()
    os.write(fd, store.export_bytes().hex().encode() + b"\n")
    while True:
        store.rotate()
        os.write(fd, store.export_bytes().hex().encode() + b"\n")


def last_logged(log: Path) -> bytes | None:
    try:
        text = log.read_bytes()
    except FileNotFoundError:
        return None
    lines = [ln for ln in text.split(b"\n")[:-1] if ln]  # a trailing partial line is ignored
    return bytes.fromhex(lines[-1].decode()) if lines else None


def tokens_of(maker: TokenMaker) -> list[list[bytes]]:
    return [maker.all_tokens(a, b) for a, b in SPI_PAIRS]


def check(path: Path, log: Path, algorithm: str) -> tuple[str, str | None]:
    """Returns (state, failure or None) for the file after a kill."""
    prev = last_logged(log)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return "absent", None if prev is None else "file vanished after a committed state"
    if not stat.S_ISREG(st.st_mode):
        return "bad", "not a regular file"
    if stat.S_IMODE(st.st_mode) != 0o600:
        return "bad", f"file mode {stat.S_IMODE(st.st_mode):04o}"
    if stat.S_IMODE(os.stat(path.parent).st_mode) != 0o700:
        return "bad", "directory mode is not 0700"
    try:
        one, two = SecretStore(path, algorithm=algorithm), SecretStore(path, algorithm=algorithm)
        one.load()
        two.load()
    except Exception as e:  # noqa: BLE001 - any refusal is a failure here
        return "bad", f"load refused: {e}"
    raw = path.read_bytes()
    now = _decode(raw, str(path))
    if one.fingerprint() != two.fingerprint():
        return "bad", "two loads differ"
    got = tokens_of(one.maker())
    if got != tokens_of(two.maker()):
        return "bad", "two loads give different tokens"
    if got != tokens_of(TokenMaker(list(now.secrets), algorithm=now.algorithm)):
        return "bad", "tokens do not come from the file's secrets"
    gens = len(now.secrets)
    if prev is None:
        return (f"created/{gens}", None) if gens == 1 else ("bad", f"first state has {gens} gens")
    if raw == prev:
        return f"old/{gens}", None
    p = _decode(prev, "log")
    if (
        now.secrets[1:] == p.secrets[: MAX_GENERATIONS - 1]
        and gens == min(len(p.secrets) + 1, MAX_GENERATIONS)
        and now.secrets[0] not in p.secrets
        and now.created_at == p.created_at
    ):
        return f"new/{gens}", None
    return "bad", "neither the last committed state nor its rotation"


def campaign(args: argparse.Namespace) -> dict[str, object]:
    rng = random.Random(args.seed)
    base = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="ikeqcd-crash-"))
    base.mkdir(parents=True, exist_ok=True)
    os.chmod(base, 0o700)
    states: Counter[str] = Counter()
    failures: list[str] = []
    stale_tmp = 0
    round_no = -1
    path = log = Path()
    t0 = time.perf_counter()
    for kill in range(args.kills):
        if kill % args.fresh_every == 0:
            round_no += 1
            path = base / f"round{round_no}" / "qcd.secret"
            log = base / f"round{round_no}.log"
        fresh = last_logged(log) is None
        proc = subprocess.Popen(
            [sys.executable, __file__, "--child", str(path), str(log), args.algorithm],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None
        ready = proc.stdout.read(1)
        delay_ms = rng.uniform(0, 3.0 if fresh else args.max_delay_ms)
        time.sleep(delay_ms / 1000)
        proc.kill()
        _, err = proc.communicate()
        if ready != b"R" or proc.returncode != -9:
            failures.append(
                f"kill {kill}: child exited by itself ({proc.returncode}): {err.decode()[-300:]}"
            )
            continue
        if path.parent.exists():
            stale_tmp += sum(".tmp-" in n for n in os.listdir(path.parent))
        state, why = check(path, log, args.algorithm)
        states[state] += 1
        if why is not None:
            failures.append(f"kill {kill} ({path}): {why}")
            if args.stop_on_failure:
                break
    elapsed = time.perf_counter() - t0
    if not args.dir and not failures:
        shutil.rmtree(base)
    return {
        "kills": args.kills,
        "stores": round_no + 1,
        "algorithm": args.algorithm,
        "states": dict(sorted(states.items())),
        "stale_temp_files_seen": stale_tmp,
        "failures": len(failures),
        "failure_details": failures[:20],
        "elapsed_s": round(elapsed, 1),
        "dir": str(base),
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "--child":
        child(*argv[1:4])
        return 0
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=1000)
    ap.add_argument("--dir", help="work directory (default: a fresh temporary one)")
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--max-delay-ms", type=float, default=25.0)
    ap.add_argument("--fresh-every", type=int, default=10, help="new store every N kills")
    ap.add_argument("--algorithm", default="hmac-sha256")
    ap.add_argument("--stop-on-failure", action="store_true")
    ap.add_argument("--json", action="store_true", help="print the summary as one JSON line")
    args = ap.parse_args(argv)
    summary = campaign(args)
    if args.json:
        print(json.dumps(summary))
    else:
        for key, value in summary.items():
            if key != "failure_details":
                print(f"{key:>22}: {value}")
        for line in summary["failure_details"]:  # type: ignore[attr-defined]
            print("  FAIL", line)
    return 0 if summary["failures"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
