"""``ikeqcd.locust`` on Locust's real runner: a headless master and two workers (real
processes) against a real ``ikeqcd serve`` on loopback, counts checked against the
server's; bad targets shown as Locust failures; the batch-to-statistics bookkeeping."""

from __future__ import annotations

import csv
import importlib.util
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

# Never import locust here: it monkey-patches the whole interpreter with gevent on import.
# Everything Locust runs in subprocesses.
pytestmark = [
    pytest.mark.skipif(sys.platform != "linux", reason="recvmmsg/sendmmsg: Linux only"),
    pytest.mark.skipif(
        importlib.util.find_spec("locust") is None,
        reason="Locust is the [locust] extra (pip install 'ikeqcd[locust]')",
    ),
]

from ikeqcd import MakerPolicy, SecretStore
from ikeqcd.loadcore import parse_target
from ikeqcd.net import Server

LOCUST = [sys.executable, "-m", "locust"]


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def secret(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("qcd", numbered=True)
    d.chmod(0o700)
    store = SecretStore(d / "qcd.secret")
    store.load_or_create()
    return store.path


@contextmanager
def serving(secret: Path) -> Iterator[Server]:
    store = SecretStore(secret)
    store.load()
    srv = Server("127.0.0.1:0", store.maker(), policy=MakerPolicy.unlimited())
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.stop()
        t.join(5)


def _locustfile() -> str:
    out = subprocess.run([sys.executable, "-m", "ikeqcd.locust", "--path"], check=True,
                         capture_output=True, text=True, timeout=60)
    return out.stdout.strip()


def _rows(prefix: Path, kind: str) -> list[dict[str, str]]:
    with open(f"{prefix}_{kind}.csv", newline="") as f:
        return list(csv.DictReader(f))


def _run(args: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    return subprocess.run(LOCUST + args, capture_output=True, text=True, timeout=timeout, env=env,
                          check=False)


def test_master_and_two_workers_count_what_the_server_saw(secret: Path, tmp_path: Path) -> None:
    f = _locustfile()
    prefix = tmp_path / "run"
    with serving(secret) as srv:
        host, port = srv.address
        mport = _free_port()
        common = ["-f", f, "--qcd-secret-file", str(secret), "--qcd-rate", "5000"]
        workers = [
            subprocess.Popen(
                LOCUST + [*common, "--worker", "--master-host", "127.0.0.1", "--master-port",
                          str(mport)],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
            for _ in range(2)
        ]
        try:
            master = _run([
                *common, "--headless", "--master", "--master-bind-host", "127.0.0.1",
                "--master-bind-port", str(mport), "--expect-workers", "2",
                "--expect-workers-max-wait", "30", "-u", "2", "-r", "2", "-t", "3s", "--stop-timeout", "5",
                "--host", f"udp://{host}:{port}", "--csv", str(prefix), "--only-summary",
            ], timeout=90)
            errs = [w.communicate(timeout=30)[1] for w in workers]
        finally:
            for w in workers:
                w.kill()
        s = srv.stats()
    assert master.returncode == 0, master.stderr[-3000:]
    for e in [master.stderr, *errs]:
        assert "Traceback" not in e, e[-3000:]
    stats = {r["Name"]: r for r in _rows(prefix, "stats")}
    agg = stats["Aggregated"]
    n = int(agg["Request Count"])
    assert int(agg["Failure Count"]) == 0 and _rows(prefix, "failures") == []
    assert set(stats) == {"INVALID_IKE_SPI+QCD_TOKEN", "Aggregated"}
    # every request the server saw was counted by Locust, and nothing else (the workers
    # drain their in-flight requests before they report the last batch)
    assert n > 2 * 5000 * 1.5
    assert abs(n - s.datagrams_in) <= max(50, s.datagrams_in // 200), (n, s.datagrams_in)
    assert s.replied == s.datagrams_in
    print(f"\nlocust master + 2 workers: {n} requests, server saw {s.datagrams_in}, 0 failures")


def _bad_run(f: str, host: str, tmp: Path, *extra: str) -> tuple[dict[str, dict[str, str]], str]:
    prefix = tmp / host.replace(":", "_")
    r = _run(["-f", f, "--headless", "-u", "1", "-r", "1", "-t", "2s", "--host", host,
              "--qcd-rate", "2000", "--qcd-timeout", "0.3", "--csv", str(prefix),
              "--only-summary", *extra])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    assert r.returncode == 1, r.stderr[-2000:]  # Locust's exit code for failures
    return {row["Name"]: row for row in _rows(prefix, "failures")}, r.stderr


@contextmanager
def garbage_server() -> Iterator[int]:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(0.2)
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            try:
                _, src = s.recvfrom(2048)
            except TimeoutError:
                continue
            s.sendto(b"this is not IKEv2", src)

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    try:
        yield int(s.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        s.close()


def test_bad_targets_are_failures_not_tracebacks(secret: Path, tmp_path: Path) -> None:
    f = _locustfile()
    nothing = _free_port(socket.SOCK_DGRAM)  # nothing listens there
    fails, _ = _bad_run(f, f"127.0.0.1:{nothing}", tmp_path, "--qcd-secret-file", str(secret))
    assert {"no reply", "send"} & set(fails), fails
    text = " ".join(r["Error"] for r in fails.values())
    assert "no reply within 0.3 s" in text or "ICMP port unreachable" in text

    with garbage_server() as port:
        fails, _ = _bad_run(f, f"127.0.0.1:{port}", tmp_path / "g", "--qcd-secret-file",
                            str(secret))
    assert "stray reply" in fails and "do not parse as IKEv2" in fails["stray reply"]["Error"]

    other = tmp_path / "other"
    other.mkdir(mode=0o700)
    wrong = SecretStore(other / "wrong.secret")
    wrong.load_or_create()
    with serving(secret) as srv:
        host, port = srv.address
        fails, _ = _bad_run(f, f"{host}:{port}", tmp_path / "w", "--qcd-secret-file",
                            str(wrong.path))
    row = fails["INVALID_IKE_SPI+QCD_TOKEN"]
    assert "does not verify under --qcd-secret-file" in row["Error"]

    fails, _ = _bad_run(f, "127.0.0.1:10500", tmp_path / "m", "--qcd-secret-file",
                        str(tmp_path / "missing.secret"))
    assert "setup" in fails and "missing.secret" in fails["setup"]["Error"]


_BOOKKEEPING = """
import numpy as np
from locust.env import Environment
from ikeqcd.locust import QcdReplyError, report_batch

env = Environment()
env.create_local_runner()
seen = []
env.events.request.add_listener(lambda **kw: seen.append(kw["context"]["count"]))
ms = np.array([0.02, 0.5, 3.0, 150.0])
counts = np.array([700, 200, 99, 1])
report_batch(env, "INVALID_IKE_SPI+QCD_TOKEN", ms, counts, 76)
report_batch(env, "no reply", np.array([1000.0]), np.array([30]), 0, QcdReplyError("lost"))
e = env.stats.get("INVALID_IKE_SPI+QCD_TOKEN", "UDP")
assert seen == [1000, 30], seen  # one event per batch, with its size
assert e.num_requests == 1000 and e.num_failures == 0
assert e.total_content_length == 76 * 1000
assert abs(e.min_response_time - 0.02) < 1e-9 and e.max_response_time == 150.0
assert abs(e.avg_response_time - float((ms * counts).sum()) / 1000) < 1e-9
assert e.get_response_time_percentile(0.5) == 0, e.response_times
assert e.get_response_time_percentile(0.95) == 3, e.response_times
assert e.get_response_time_percentile(1.0) == 150, e.response_times
lost = env.stats.get("no reply", "UDP")
assert lost.num_requests == lost.num_failures == 30
assert env.stats.total.num_requests == 1030 and env.stats.total.num_failures == 30
(err,) = env.stats.errors.values()
assert err.occurrences == 30
print("ok")
"""


def test_report_batch_counts_every_datagram() -> None:
    """One event per batch; Locust's statistics count every datagram of it (a subprocess:
    importing Locust monkey-patches the interpreter)."""
    r = subprocess.run([sys.executable, "-c", _BOOKKEEPING], capture_output=True, text=True,
                       timeout=120, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", r.stderr[-3000:]


_EXIT_MID_STEP = """
import socket, sys
import gevent
from ikeqcd.loadcore import BatchLoad
from ikeqcd.locust import _IN_FLIGHT

s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("127.0.0.1", 0))  # a silent target: the step runs its whole length
load = BatchLoad(f"127.0.0.1:{s.getsockname()[1]}", rate=1000.0, timeout=0.2)
step = float(sys.argv[1])
g = gevent.spawn(gevent.get_hub().threadpool.apply, _IN_FLIGHT.call, (load, load.step, step))
gevent.sleep(0.5)
assert _IN_FLIGHT._running, "the step is not running"
g.kill()  # what Locust does to a user at the end of a run
print("ok")
sys.exit(0)  # the native step is still running: it ends about when the interpreter finalizes
"""


@pytest.mark.parametrize("step", [0.52, 0.55, 0.6, 30.0])
def test_exit_with_a_native_step_in_flight_is_clean(step: float) -> None:
    """A user killed mid-step leaves its pool thread in native code with the GIL released.
    Had that step ended while the interpreter finalized, CPython would end the thread inside
    Rust frames and the process would abort ("FATAL: exception not rethrown", seen here for
    steps of 0.52-0.55 s before the fix); at exit the step is now stopped and waited for."""
    r = subprocess.run([sys.executable, "-c", _EXIT_MID_STEP, str(step)], capture_output=True,
                       text=True, timeout=60, check=False)
    assert r.returncode == 0 and r.stdout.strip() == "ok", (r.returncode, r.stderr[-3000:])


def test_targets_and_help() -> None:
    assert parse_target("udp://127.0.0.1:500") == "127.0.0.1:500"
    assert parse_target("[::1]:4500") == "[::1]:4500"
    for bad in ("127.0.0.1", "udp://host:", "host:70000", ":500"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_target(bad)
    out = subprocess.run([sys.executable, "-m", "ikeqcd.locust", "--help"], capture_output=True,
                         text=True, check=True, timeout=60).stdout
    for opt in ("--qcd-rate", "--qcd-sas", "--qcd-secret-file", "--nat-t", "--path"):
        assert opt in out
