"""The RFC 6290 §9.2 gate across machines: a live-SA store on Redis / Valkey.

A node MUST NOT reveal the token of an SA that is live *anywhere* in the cluster (§9.2).
:class:`LiveSaStore` publishes this node's live SPI pairs under its node id and answers
"is this pair live on any node?" for a batch of pairs in one round trip, so that
:class:`~ikeqcd.TokenResponder` and ``ikeqcd serve --cluster`` stay batch end to end.

Layout in the store (``P`` is the key prefix, ``ikeqcd`` by default; ``ID`` is
``NODE/INCARNATION``, a fresh random incarnation per start):

- ``P:nodes``: the set of node ids; ``P:since``: when the store's cluster data began;
- ``P:lease:ID``: the node's lease, a JSON object (secret fingerprint, lease length, start
  time), expiring ``lease`` seconds after the last heartbeat;
- ``P:sas:ID``: the set of the node's live SPI pairs, each 16 octets (SPI-I then SPI-R, big
  endian: the wire order), expiring ``lease + grace`` seconds after the last heartbeat.

Membership is one server-side script per batch (``SMISMEMBER`` against every node's set: O(1)
per pair and node), with the pairs sent as one 16-octet-per-pair argument.

**Fail closed.** When the store is unreachable, slower than ``deadline``, or answers with an
error, :meth:`LiveSaStore.contains_many` raises :class:`~ikeqcd.errors.ClusterUnavailable`
and the responder reveals no token for that batch (``Reason.CLUSTER_UNAVAILABLE``); the next
batch asks again, so serving resumes as soon as the store is back.

**A store that lost its data** (restarted without persistence, or new) does not know the
other nodes' SAs until each has heartbeated once: the store remembers since when it holds
cluster data (``P:since``, server time), and every check fails closed until that is ``lease``
seconds old. A new cluster therefore answers no token during its first ``lease`` seconds.

**Lease and grace.** A heartbeat thread refreshes the lease every ``lease / 3`` seconds. A
node that stops heartbeating (dead, or cut off from the store) loses its lease after
``lease`` seconds, but its SAs stay in the store, and stay protected on every other node,
for ``grace`` more seconds; only then do they vanish. A node that comes back within the
grace period keeps them; one that comes back later publishes its live SAs again from its
local copy at its next heartbeat. A node that *restarts* gets a new incarnation: its old
SAs are dropped when the old lease expires (the grace is for a node that may still be alive,
and a restarted one is not), which is what QCD needs: from then on its peers get tokens for
the SAs it lost, while every surviving node's SAs stay protected.

**Secret consistency.** Each node publishes a fingerprint of its secret generations (a keyed
hash: see :func:`secret_fingerprint`; never the secret). The cluster's fingerprint is the one
held by the most nodes with a lease; a node whose fingerprint is not that one (or that ties
with another) refuses to answer (``ClusterUnavailable``, reason ``"secret"``) and logs why.

Built on the ``redis`` client (``pip install 'ikeqcd[cluster]'``); it talks to Redis >= 6.2
and Valkey, standalone or with replicas (not Redis Cluster: the script reads every node's
key).

For a simulator or a test bed, :func:`local_cluster` starts a real server on loopback
(:class:`ikeqcd._redis_server.RedisServer`) and :class:`LiveSaStore` per node connects to it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import secrets
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, final

import numpy as np
import numpy.typing as npt

from ikeqcd._cluster_store import (
    CHECK_SCRIPT,
    MARK_SCRIPT,
    MAX_SCRIPT_BATCH,
    PRUNE_SCRIPT,
    RateLog,
    connect,
    members,
    pairs_blob,
    safe_url,
)
from ikeqcd._core import TokenMaker
from ikeqcd.errors import ClusterUnavailable, InvalidArgument
from ikeqcd.secret import SecretStore

if TYPE_CHECKING:
    from ikeqcd._redis_server import RedisServer

__all__ = [
    "MAX_SCRIPT_BATCH",
    "ClusterCounters",
    "LiveSaStore",
    "NodeStatus",
    "cluster_status",
    "local_cluster",
    "secret_fingerprint",
]

_log = logging.getLogger("ikeqcd.cluster")

_NODE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}\Z")
_FP_LABEL = b"ikeqcd cluster fingerprint v1\x00"
_FP_SPI_R = int.from_bytes(b"qcd-fp\x00\x01", "big")

def secret_fingerprint(secrets_: TokenMaker | SecretStore) -> str:
    """16 hex digits naming a secret set, for comparing nodes; reveals nothing of it.

    From a :class:`~ikeqcd.TokenMaker`: ``SHA-256(label || algorithm || token_len || tokens)``
    truncated, where the tokens are the maker's own for SPI-I 0 and a fixed SPI-R, one per
    generation: a keyed hash of the secrets. SPI-I 0 is never a valid SA (a request with it is
    ``Reason.MALFORMED``), so these are never the token of a real SA. From a loaded
    :class:`~ikeqcd.SecretStore`: the same over the store's maker.
    """
    maker = secrets_.maker() if isinstance(secrets_, SecretStore) else secrets_
    if not isinstance(maker, TokenMaker):
        raise InvalidArgument(
            f"need a TokenMaker or a SecretStore, got {type(secrets_).__name__}"
        )
    h = hashlib.sha256(_FP_LABEL)
    h.update(f"{maker.algorithm}\x00{maker.token_len}\x00".encode())
    for token in maker.all_tokens(0, _FP_SPI_R):
        h.update(token)
    return h.hexdigest()[:16]


@dataclass(frozen=True)
class ClusterCounters:
    """What a :class:`LiveSaStore` has counted.

    Attributes:
        checks: SPI pairs asked about (answered or not).
        batches: :meth:`LiveSaStore.contains_many` calls.
        fail_closed: batches answered with ``ClusterUnavailable`` (store errors and refusals).
        store_errors: store operations that failed (unreachable, timed out, an error).
        refused: batches refused because this node's secret differs from the cluster's.
        heartbeats: heartbeats that reached the store.
        republished: times this node's SAs were published again (its set had expired).
    """

    checks: int
    batches: int
    fail_closed: int
    store_errors: int
    refused: int
    heartbeats: int
    republished: int


@dataclass(frozen=True)
class NodeStatus:
    """One node as the store sees it (:func:`cluster_status`).

    Attributes:
        node: the node name.
        incarnation: random per start of the node.
        alive: the lease is held (a heartbeat within ``lease`` seconds).
        lease_age: seconds since the last heartbeat (``None`` once the lease expired).
        live_sas: SPI pairs the node has published (0 once they expired).
        sas_expire_in: seconds until the SAs vanish without a heartbeat (``None``: none left).
        fingerprint: the node's secret fingerprint (``None`` once the lease expired).
    """

    node: str
    incarnation: str
    alive: bool
    lease_age: float | None
    live_sas: int
    sas_expire_in: float | None
    fingerprint: str | None


@final
class LiveSaStore:
    """This node's view of the cluster's live SAs (RFC 6290 §9.2), on Redis / Valkey.

    Pass it as ``live=`` to :class:`~ikeqcd.TokenResponder` or to ``ikeqcd.net.Server`` /
    ``serve``: both ask :meth:`contains_many` once per batch. See the module docs for the
    layout, the fail-closed rule, the lease and grace semantics and the secret check.

    Args:
        url: ``redis://HOST:PORT/DB`` or ``rediss://HOST:PORT/DB`` (TLS). A password in the
            URL works but is better given as ``password`` (the CLI refuses it in the URL).
        node: this node's name (1..63 of ``A-Z a-z 0-9 . _ -``, starting with a letter or
            digit).
        fingerprint: this node's secret fingerprint (:func:`secret_fingerprint`); or give
            the ``TokenMaker`` / ``SecretStore`` itself.
        password: the store's password (``AUTH``), if any.
        lease: seconds a heartbeat holds the lease (heartbeats every ``lease / 3``).
        grace: seconds after the lease expires during which the node's SAs still count as
            live everywhere.
        deadline: seconds a store operation may take before it fails (and a check fails
            closed); also the connect timeout.
        prefix: key prefix, to share one store between clusters.
        ca_file: CA bundle for ``rediss://`` (default: the system's).
        heartbeat: run the heartbeat thread (``False``: call :meth:`heartbeat` yourself).

    Raises:
        ClusterUnavailable: the first heartbeat could not reach the store.
        InvalidArgument: a bad URL, node name or duration.
        ImportError: the ``redis`` package is missing (``pip install 'ikeqcd[cluster]'``).

    Thread-safe; :meth:`close` (or the context manager) stops the heartbeat. Closing does not
    delete the node's SAs: they expire with the lease and grace, as if the node had died.
    """

    def __init__(
        self,
        url: str,
        node: str,
        *,
        fingerprint: str | TokenMaker | SecretStore,
        password: str | None = None,
        lease: float = 10.0,
        grace: float = 10.0,
        deadline: float = 0.25,
        prefix: str = "ikeqcd",
        ca_file: str | None = None,
        heartbeat: bool = True,
    ) -> None:
        if not isinstance(node, str) or not _NODE_RE.match(node):
            raise InvalidArgument(
                f"node must be 1..63 of A-Z a-z 0-9 . _ - starting with a letter or digit, got {node!r}"
            )
        for name, v, lo in (("lease", lease, 0.1), ("grace", grace, 0.0), ("deadline", deadline, 0.001)):
            if not isinstance(v, (int, float)) or not lo <= v <= 86400:
                raise InvalidArgument(f"{name} must be {lo}..86400 seconds, got {v!r}")
        if not isinstance(fingerprint, str):
            fingerprint = secret_fingerprint(fingerprint)
        self.node = node
        self.incarnation = secrets.token_hex(6)
        self.fingerprint = fingerprint
        self.lease = float(lease)
        self.grace = float(grace)
        self.deadline = float(deadline)
        self.url = safe_url(url)
        self._id = f"{node}/{self.incarnation}"
        self._prefix = prefix
        self._nodes_key = f"{prefix}:nodes"
        self._lease_key = f"{prefix}:lease:{self._id}"
        self._sas_key = f"{prefix}:sas:{self._id}"
        self._r = connect(url, password=password, deadline=self.deadline, ca_file=ca_file)
        self._check = self._r.register_script(CHECK_SCRIPT)
        self._prune = self._r.register_script(PRUNE_SCRIPT)
        self._mark = self._r.register_script(MARK_SCRIPT)
        self._since_key = f"{prefix}:since"
        self._lock = threading.Lock()
        self._mine: set[bytes] = set()
        self._dirty = False
        self._refusal: str | None = None
        self._closed = False
        self._counts = dict.fromkeys(
            ("checks", "batches", "fail_closed", "store_errors", "refused", "heartbeats", "republished"), 0
        )
        self._rlog = RateLog()
        self._started = time.time()
        try:
            self.heartbeat(first=True)
        except ClusterUnavailable:
            self._r.close()
            raise
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if heartbeat:
            self._thread = threading.Thread(
                target=self._beat_loop, name=f"ikeqcd-cluster-heartbeat-{node}", daemon=True
            )
            self._thread.start()

    # -- publishing ----------------------------------------------------------------------

    def add_many(self, spi_i: npt.ArrayLike, spi_r: npt.ArrayLike) -> None:
        """Publish live SAs of this node (SPI-I, SPI-R arrays of equal length).

        Kept locally too: if the store cannot take them now (counted, logged), or the node's
        set expired meanwhile, the next heartbeat publishes them again.
        """
        items = members(pairs_blob(spi_i, spi_r))
        with self._lock:
            self._mine.update(items)
        self._write(items, add=True)

    def remove_many(self, spi_i: npt.ArrayLike, spi_r: npt.ArrayLike) -> None:
        """Withdraw SAs of this node (deleted, or rekeyed to new SPIs)."""
        items = members(pairs_blob(spi_i, spi_r))
        with self._lock:
            self._mine.difference_update(items)
        self._write(items, add=False)

    def _write(self, items: list[bytes], *, add: bool) -> None:
        if not items:
            return
        try:
            pipe = self._r.pipeline(transaction=False)
            for k in range(0, len(items), MAX_SCRIPT_BATCH):
                chunk = items[k : k + MAX_SCRIPT_BATCH]
                if add:
                    pipe.sadd(self._sas_key, *chunk)
                else:
                    pipe.srem(self._sas_key, *chunk)
            pipe.pexpire(self._sas_key, self._sas_ttl_ms())
            pipe.execute()
        except Exception as e:  # noqa: BLE001 - any store failure: retried by the heartbeat
            with self._lock:
                self._dirty = True
            self._store_error("publishing SAs", e)

    def __len__(self) -> int:
        """This node's live SAs (the local copy)."""
        return len(self._mine)

    # -- the check -----------------------------------------------------------------------

    def contains_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], /
    ) -> npt.NDArray[np.bool_]:
        """Whether each SPI pair is live on any node of the cluster (this one included).

        Raises:
            ClusterUnavailable: the store could not answer within ``deadline``, answered
                with an error, or this node's secret differs from the cluster's: reveal no
                token for any pair of this batch.
            InvalidArgument: arrays of different lengths or not 1-D.
        """
        blob = pairs_blob(spi_i, spi_r)
        n = len(blob) // 16
        c = self._counts
        c["batches"] += 1
        c["checks"] += n
        if self._closed:
            c["fail_closed"] += 1
            raise ClusterUnavailable("the cluster store was closed", reason="closed")
        refusal = self._refusal
        if refusal is not None:
            c["fail_closed"] += 1
            c["refused"] += 1
            self._rlog.warn("ikeqcd cluster: node %s refuses to answer: %s", self.node, refusal)
            raise ClusterUnavailable(refusal, reason="secret")
        out = np.zeros(n, dtype=np.bool_)
        step = 16 * MAX_SCRIPT_BATCH
        try:
            for k in range(0, len(blob), step):
                got = self._check(
                    keys=[self._nodes_key, self._since_key],
                    args=[f"{self._prefix}:sas:", blob[k : k + step], self._settle_ms()],
                )
                part = np.frombuffer(got, dtype=np.uint8) == ord("1")
                if len(part) != min(MAX_SCRIPT_BATCH, n - k // 16):
                    raise ClusterUnavailable(f"the store answered {len(part)} flags for {n} pairs")
                out[k // 16 : k // 16 + len(part)] = part
        except Exception as e:  # noqa: BLE001 - every failure fails closed
            c["fail_closed"] += 1
            self._store_error("checking live SAs", e)
            raise ClusterUnavailable(
                f"the cluster store {self.url} did not answer ({type(e).__name__}: {e}); "
                "no token is revealed until it does",
                reason="store",
            ) from None
        return out

    def __contains__(self, pair: object) -> bool:
        """``(spi_i, spi_r) in store``: one pair (a batch of one; same fail-closed rule)."""
        if not (isinstance(pair, tuple) and len(pair) == 2):
            return False
        try:
            a = np.array([pair[0]], dtype=np.uint64)
            b = np.array([pair[1]], dtype=np.uint64)
        except (OverflowError, TypeError, ValueError):
            return False  # not two SPIs: never a live SA
        return bool(self.contains_many(a, b)[0])

    # -- heartbeat -----------------------------------------------------------------------

    def _settle_ms(self) -> int:
        # every live node heartbeats within lease / 3; a full lease leaves room for a slow one
        return max(1, round(self.lease * 1000))

    def _sas_ttl_ms(self) -> int:
        return max(1, round((self.lease + self.grace) * 1000))

    def heartbeat(self, *, first: bool = False) -> None:
        """One heartbeat now: refresh the lease and the SAs' expiry, publish the SAs again if
        they expired, check the cluster's secret fingerprints, forget long-gone nodes.

        Raises:
            ClusterUnavailable: the store could not be reached (counted and logged; the
                heartbeat thread just tries again).
        """
        lease = {"fingerprint": self.fingerprint, "lease": self.lease, "grace": self.grace,
                 "started": self._started}
        try:
            pipe = self._r.pipeline(transaction=False)
            pipe.set(self._lease_key, json.dumps(lease), px=max(1, round(self.lease * 1000)))
            pipe.sadd(self._nodes_key, self._id)
            pipe.pexpire(self._sas_key, self._sas_ttl_ms())
            pipe.smembers(self._nodes_key)
            self._mark(keys=[self._since_key], client=pipe)
            _, _, had_set, ids, _ = pipe.execute()
            with self._lock:
                again = bool(self._mine) and (self._dirty or not had_set)
                mine = list(self._mine) if again else []
                self._dirty = False
            if again:
                self._republish(mine)
            ids = sorted(i.decode() if isinstance(i, bytes) else str(i) for i in ids)
            leases = self._r.mget([f"{self._prefix}:lease:{i}" for i in ids]) if ids else []
            self._judge(ids, leases, first=first)
            for i, raw in zip(ids, leases):
                if raw is None:
                    self._prune(keys=[self._nodes_key],
                                args=[f"{self._prefix}:lease:", f"{self._prefix}:sas:", i])
        except ClusterUnavailable:
            raise
        except Exception as e:  # noqa: BLE001 - any store failure
            if not first:
                with self._lock:
                    self._dirty = self._dirty or bool(self._mine)
            self._store_error("heartbeat", e)
            raise ClusterUnavailable(
                f"the cluster store {self.url} cannot be reached ({type(e).__name__}: {e})",
                reason="store",
            ) from None
        self._counts["heartbeats"] += 1

    def _republish(self, mine: list[bytes]) -> None:
        tmp = f"{self._sas_key}:new"
        pipe = self._r.pipeline(transaction=False)
        pipe.delete(tmp)
        for k in range(0, len(mine), MAX_SCRIPT_BATCH):
            pipe.sadd(tmp, *mine[k : k + MAX_SCRIPT_BATCH])
        pipe.pexpire(tmp, self._sas_ttl_ms())
        pipe.rename(tmp, self._sas_key)  # atomic swap: no moment without the set
        pipe.execute()
        self._counts["republished"] += 1
        _log.warning("ikeqcd cluster: node %s published its %d live SAs again", self.node, len(mine))

    def _judge(self, ids: list[str], leases: list[Any], *, first: bool) -> None:
        """Decide whether this node's secret is the cluster's; drop a restarted node's old SAs."""
        held: dict[str, list[str]] = {}
        for i, raw in zip(ids, leases):
            name, _, inc = i.partition("/")
            if first and name == self.node and inc != self.incarnation:
                # our previous incarnation (this node restarted): its SAs go with its lease
                left = int(self._r.pttl(f"{self._prefix}:lease:{i}"))
                self._r.pexpire(f"{self._prefix}:sas:{i}", max(1, left))
            if raw is None:
                continue
            try:
                fp = str(json.loads(raw)["fingerprint"])
            except (ValueError, KeyError, TypeError):
                continue
            held.setdefault(fp, []).append(i)
        mine = len(held.get(self.fingerprint, []))
        rivals = {fp: ids_ for fp, ids_ in held.items() if fp != self.fingerprint and len(ids_) >= mine}
        if rivals:
            fp, who = max(rivals.items(), key=lambda kv: len(kv[1]))
            why = (
                f"this node's secret fingerprint {self.fingerprint} differs from the cluster's "
                f"{fp} (held by {', '.join(sorted(who))}); load the cluster's secret set "
                "(ikeqcd secret export / import) on this node"
            )
            if self._refusal != why:
                _log.error("ikeqcd cluster: node %s refuses to answer: %s", self.node, why)
            self._refusal = why
        else:
            if self._refusal is not None:
                _log.warning("ikeqcd cluster: node %s: secret fingerprints agree again", self.node)
            self._refusal = None

    def _beat_loop(self) -> None:
        every = self.lease / 3
        while not self._stop.wait(every):
            try:
                self.heartbeat()
            except ClusterUnavailable:
                pass  # counted and logged; fail closed until the store answers

    def _store_error(self, what: str, e: BaseException) -> None:
        self._counts["store_errors"] += 1
        self._rlog.warn(
            "ikeqcd cluster: node %s: %s failed against %s (%s: %s); failing closed",
            self.node, what, self.url, type(e).__name__, e,
        )

    # -- state ---------------------------------------------------------------------------

    @property
    def refusal(self) -> str | None:
        """Why this node refuses to answer (its secret differs from the cluster's), or ``None``."""
        return self._refusal

    @property
    def counters(self) -> ClusterCounters:
        """The counters now."""
        return ClusterCounters(**self._counts)

    def close(self) -> None:
        """Stop the heartbeat and disconnect. The SAs expire with the lease and grace."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._r.close()

    def __enter__(self) -> LiveSaStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (
            f"LiveSaStore({self.url!r}, node={self.node!r}, incarnation={self.incarnation!r}, "
            f"fingerprint={self.fingerprint!r}, live_sas={len(self._mine)})"
        )

    def __reduce__(self) -> Any:
        raise TypeError("LiveSaStore holds a connection and cannot be pickled")


def cluster_status(
    url: str,
    *,
    password: str | None = None,
    prefix: str = "ikeqcd",
    deadline: float = 2.0,
    ca_file: str | None = None,
) -> list[NodeStatus]:
    """Every node the store knows, sorted by name (``ikeqcd cluster status``).

    Raises:
        ClusterUnavailable: the store cannot be reached.
    """
    r = connect(url, password=password, deadline=deadline, ca_file=ca_file)
    try:
        ids = sorted(i.decode() for i in r.smembers(f"{prefix}:nodes"))
        pipe = r.pipeline(transaction=False)
        for i in ids:
            pipe.get(f"{prefix}:lease:{i}")
            pipe.pttl(f"{prefix}:lease:{i}")
            pipe.scard(f"{prefix}:sas:{i}")
            pipe.pttl(f"{prefix}:sas:{i}")
        got = pipe.execute() if ids else []
    except Exception as e:  # noqa: BLE001
        raise ClusterUnavailable(
            f"the cluster store {safe_url(url)} cannot be reached ({type(e).__name__}: {e})",
            reason="store",
        ) from None
    finally:
        r.close()
    out = []
    for k, i in enumerate(ids):
        raw, lease_ttl, count, sas_ttl = got[4 * k : 4 * k + 4]
        info: dict[str, Any] = {}
        if raw is not None:
            try:
                info = json.loads(raw)
            except ValueError:
                info = {}
        alive = raw is not None and lease_ttl > 0
        age = float(info.get("lease", 0)) - lease_ttl / 1000 if alive else None
        name, _, inc = i.partition("/")
        out.append(NodeStatus(
            node=name,
            incarnation=inc,
            alive=alive,
            lease_age=None if age is None else max(0.0, age),
            live_sas=int(count),
            sas_expire_in=sas_ttl / 1000 if sas_ttl > 0 else None,
            fingerprint=str(info["fingerprint"]) if "fingerprint" in info else None,
        ))
    return out


@contextmanager
def local_cluster(
    nodes: Iterable[str],
    fingerprint: str | TokenMaker | SecretStore,
    **store_kwargs: Any,
) -> Iterator[tuple[RedisServer, dict[str, LiveSaStore]]]:
    """A real server on loopback and one :class:`LiveSaStore` per node name, for simulators
    and test beds; everything is stopped on exit.

    ``store_kwargs`` go to each :class:`LiveSaStore` (``lease``, ``grace``, ``deadline``...).

    Raises:
        FileNotFoundError: no server binary (see ``ikeqcd._redis_server.find_server_binary``).
    """
    from ikeqcd._redis_server import RedisServer

    with RedisServer() as server:
        stores: dict[str, LiveSaStore] = {}
        try:
            for name in nodes:
                stores[name] = LiveSaStore(server.url, name, fingerprint=fingerprint, **store_kwargs)
            yield server, stores
        finally:
            for s in stores.values():
                s.close()
