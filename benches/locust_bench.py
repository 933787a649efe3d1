"""A Locust worker against single-process ``ikeqcd load``, side by side in one run.

One ``ikeqcd serve --unlimited`` (pinned to CPU 0 where ``taskset`` exists) is loaded, one
after the other, by: ``ikeqcd load --rate max`` (pinned to CPU 1); a standalone Locust run
with one ``QcdUser`` at ``--qcd-rate 0`` (pinned to CPU 1); a master with 1 worker; a
master with 2 workers. Every token is verified. Prints the verified rates and the ratio to
``ikeqcd load`` (target: a worker >= 50 %).

Run: ``.venv/bin/python benches/locust_bench.py [--seconds 3]`` (needs ``ikeqcd[locust]``).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ikeqcd import SecretStore

PY = sys.executable


def _pin(cpu: int) -> list[str]:
    return ["taskset", "-c", str(cpu)] if shutil.which("taskset") and os.cpu_count() != 1 else []


def _free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _locust_rate(prefix: Path) -> tuple[float, int, int]:
    """Locust's own Requests/s (requests over the span from the first to the last one
    reported), the request count and the failure count of the Aggregated row."""
    with open(f"{prefix}_stats.csv", newline="") as f:
        rows = {r["Name"]: r for r in csv.DictReader(f)}
    agg = rows["Aggregated"]
    return float(agg["Requests/s"]), int(agg["Request Count"]), int(agg["Failure Count"])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0)
    args = ap.parse_args()
    secs = args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="qcd-locust-"))
    store = SecretStore(tmp / "qcd.secret")
    store.load_or_create()
    port = _free_port(socket.SOCK_DGRAM)
    target = f"127.0.0.1:{port}"
    lf = subprocess.run([PY, "-m", "ikeqcd.locust", "--path"], capture_output=True, text=True,
                        check=True).stdout.strip()
    serve = subprocess.Popen(
        [*_pin(0), PY, "-m", "ikeqcd", "serve", "--listen", target, "--secret-file",
         str(store.path), "--unlimited"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    results: list[tuple[str, float, str]] = []
    try:
        time.sleep(1.0)
        out = subprocess.run(
            [*_pin(1), PY, "-m", "ikeqcd", "load", "--target", target, "--rate", "max",
             "--duration", str(secs), "--secret-file", str(store.path), "--json",
             "--no-progress"],
            capture_output=True, text=True, check=True,
        ).stdout
        single = float(json.loads(out)["valid_rate"])
        results.append(("ikeqcd load (1 process)", single, "every token verified"))
        common = ["-f", lf, "--headless", "--host", target, "--qcd-secret-file",
                  str(store.path), "--qcd-rate", "0", "--only-summary", "--stop-timeout", "3",
                  "-t", f"{secs:g}s"]
        prefix = tmp / "standalone"
        subprocess.run([*_pin(1), PY, "-m", "locust", *common, "-u", "1", "-r", "1",
                        "--csv", str(prefix)], capture_output=True, check=False, timeout=120)
        rate, n, fails = _locust_rate(prefix)
        results.append(("Locust, 1 user, standalone", rate,
                        f"{n:,} requests ({n / secs:,.0f}/s over -t), {fails} failures"))
        for workers in (1, 2):
            prefix = tmp / f"w{workers}"
            mport = _free_port(socket.SOCK_STREAM)
            ws = [
                subprocess.Popen(
                    [*(_pin(1) if workers == 1 else []), PY, "-m", "locust", "-f", lf, "--worker",
                     "--master-port", str(mport), "--qcd-secret-file", str(store.path),
                     "--qcd-rate", "0"],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                )
                for k in range(workers)
            ]
            subprocess.run(
                [PY, "-m", "locust", *common, "--master", "--master-bind-port", str(mport),
                 "--expect-workers", str(workers), "-u", str(workers), "-r", str(workers),
                 "--csv", str(prefix)],
                capture_output=True, check=False, timeout=120,
            )
            for w in ws:
                w.wait(30)
            rate, n, fails = _locust_rate(prefix)
            results.append((f"Locust master + {workers} worker(s)", rate,
                            f"{n:,} requests ({n / secs:,.0f}/s over -t), {fails} failures"))
    finally:
        serve.terminate()
        serve.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), "unknown CPU")
    print(f"{cpu}, {os.cpu_count()} cores; serve pinned to CPU 0, loaders to CPU 1")
    single = max(single, 1e-9)
    print("| loader | verified req/s (Locust's Requests/s) | vs ikeqcd load | notes |")
    print("|---|---|---|---|")
    for name, rate, note in results:
        print(f"| {name} | {rate:,.0f} | {rate / single:.2f}x | {note} |")
    if single <= 0:
        print("ikeqcd load got no valid replies: is serve up?")
        return 1
    worker = max(r for n, r, _ in results if "worker" in n)
    return 0 if worker >= 0.5 * single else 1


if __name__ == "__main__":
    sys.exit(main())
