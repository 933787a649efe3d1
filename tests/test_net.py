"""ikeqcd serve / load on real loopback sockets: every request answered and verified, NAT-T
framing, the reply policy (switch off, per-source limit), live SAs never answered with a
token, malformed datagrams counted, Prometheus exposition, SIGTERM/SIGINT to the CLI, and the
CLI's options and errors. Small sizes: the whole file runs in a few seconds."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ikeqcd
import numpy as np
import pytest
from ikeqcd import MakerPolicy, SaTable, SecretStore, TokenMaker, errors, wire
from ikeqcd.cli import main
from ikeqcd.net import LoadReport, Server, load, load_spis, prometheus_text, serve

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="recvmmsg/sendmmsg: Linux only")

MAKER = TokenMaker([b"\x21" * 32, b"\x22" * 32])
OPEN = MakerPolicy.unlimited()
RATE = 20_000.0
DURATION = 0.3


@contextmanager
def running(maker: TokenMaker = MAKER, **kw: object) -> Iterator[Server]:
    srv = Server("127.0.0.1:0", maker, **kw)  # type: ignore[arg-type]
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.stop()
        t.join(5)
        assert not t.is_alive()


def run_load(srv: Server, **kw: object) -> LoadReport:
    opts: dict[str, object] = {"rate": RATE, "duration": DURATION, "sas": 100, "maker": MAKER}
    opts.update(kw)
    return load(srv.address, **opts)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("gso", "recv_thread"),
    [(True, False), (False, False), (True, True)],
    ids=["gso", "plain", "thread"],
)
def test_every_request_answered_and_verified(gso: bool, recv_thread: bool) -> None:
    with running(policy=OPEN, gso=gso) as srv:
        assert gso or not srv.gso  # with gso: on kernels that have UDP GSO/GRO (>= 5.0)
        r = run_load(srv, gso=gso, recv_thread=recv_thread)
        s = srv.stats()
    assert r.sent >= 0.9 * RATE * DURATION
    assert r.answered == r.valid == r.sent
    assert r.verified
    assert r.lost == r.bad_token == r.malformed == r.unmatched == r.send_errors == 0
    assert 0 < r.p50_us <= r.p99_us <= r.p999_us <= r.max_us
    assert s.datagrams_in == s.datagrams_out == s.replied == r.sent
    assert s.bytes_out == r.sent * (28 + 8 + 2 * (8 + 32))
    assert s.batches >= 1
    d = json.loads(r.to_json())
    assert d["valid"] == r.sent and d["valid_rate"] == pytest.approx(r.valid_rate)
    assert "verified" in r.format()


def test_without_secret_checks_form_and_with_wrong_secret_fails() -> None:
    with running(policy=OPEN) as srv:
        blind = run_load(srv, maker=None)
        wrong = run_load(srv, maker=TokenMaker(b"\x99" * 32))
    assert not blind.verified and blind.valid == blind.sent
    assert wrong.valid == 0 and wrong.bad_token == wrong.answered == wrong.sent


def test_secret_store_on_both_sides(tmp_path: Path) -> None:
    d = tmp_path / "s"
    d.mkdir(mode=0o700)
    store = SecretStore(d / "qcd.secret")
    store.create()
    with running(SecretStore(d / "qcd.secret"), policy=OPEN) as srv:  # type: ignore[arg-type]
        r = run_load(srv, maker=SecretStore(d / "qcd.secret"))
    assert r.valid == r.sent > 0


@pytest.mark.parametrize("gso", [True, False], ids=["gso", "plain"])
def test_nat_t_framing(gso: bool) -> None:
    with running(policy=OPEN, nat_t=True, gso=gso) as srv:
        r = run_load(srv, nat_t=True, gso=gso)
        plain = run_load(srv, duration=0.05, timeout=0.1)  # no marker: looks like ESP
        s = srv.stats()
    assert r.valid == r.answered == r.sent
    assert plain.answered == 0 and plain.lost == plain.sent
    assert s.reasons["ESP"] == plain.sent
    assert s.bytes_out == r.sent * (4 + 28 + 8 + 2 * 40)


def test_no_qcd_gives_bare_replies() -> None:
    policy = MakerPolicy(enabled=False, bare_rate=math.inf)
    with running(policy=policy) as srv:
        r = run_load(srv)
        s = srv.stats()
    assert r.bare == r.answered == r.sent and r.valid == 0
    assert s.reasons["DISABLED"] == r.sent and s.replied == 0


def test_per_source_limit_caps_full_replies() -> None:
    policy = MakerPolicy(
        per_source_rate=0.0,
        per_source_burst=150,
        global_rate=math.inf,
        global_burst=math.inf,
        bare_rate=math.inf,
    )
    with running(policy=policy) as srv:
        r = run_load(srv)
        s = srv.stats()
    assert r.valid == 150 == s.replied
    assert r.bare == r.sent - 150 == s.reasons["RATE_LIMITED_BARE"]
    silent = policy.with_(flood_fallback="silence")
    with running(policy=silent) as srv:
        r = run_load(srv, duration=0.1, timeout=0.2)
        s = srv.stats()
    assert r.valid == 150 and r.bare == 0 and r.lost == r.sent - 150
    assert s.reasons["RATE_LIMITED_DROP"] == r.sent - 150


def test_default_policy_limits_one_source() -> None:
    with running() as srv:  # MakerPolicy(): 200 burst, 50/s per source, bare 1000/s
        r = run_load(srv, duration=0.2, timeout=0.2)
    assert 200 <= r.valid <= 215
    assert r.bare >= 900


def test_live_sa_is_never_answered_with_a_token() -> None:
    a, b = load_spis(20, seed=3)
    table = SaTable()
    live = np.arange(0, 20, 2)
    table.insert_many(a[live], b[live], np.zeros((len(live), 32), dtype=np.uint8))
    with running(policy=OPEN, live=table) as srv:
        r = run_load(srv, sas=20, seed=3, timeout=0.2)
        s = srv.stats()
    assert r.sent > 1000
    assert r.valid + r.lost == r.sent and r.valid > 0
    assert s.reasons["LIVE_SA"] == r.lost > 0.3 * r.sent
    # a lone request for a live pair, by hand: no reply at all
    with (
        running(policy=OPEN, live=table) as srv,
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c,
    ):
        c.settimeout(0.2)
        c.sendto(wire.build_request(int(a[0]), int(b[0]), sk_body=bytes(25)), srv.address)
        with pytest.raises(TimeoutError):
            c.recvfrom(2048)
        c.sendto(wire.build_request(int(a[1]), int(b[1]), sk_body=bytes(25)), srv.address)
        reply, _ = c.recvfrom(2048)
        assert MAKER.verify(int(a[1]), int(b[1]), wire.parse_qcd_reply(reply).tokens[0])


def test_malformed_datagrams_are_counted_never_fatal() -> None:
    rng = np.random.default_rng(1)
    good = wire.build_request(5, 6, sk_body=bytes(25))
    junk = [b"", b"\xff", bytes(27), good[:39], good + b"x", bytes(9000)]
    junk += [
        rng.integers(0, 256, int(n), dtype=np.uint8).tobytes() for n in rng.integers(0, 300, 200)
    ]
    with running(policy=OPEN) as srv, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
        for d in junk:
            c.sendto(d, srv.address)
        r = run_load(srv, duration=0.1)
        deadline = time.monotonic() + 2
        while srv.stats().datagrams_in < len(junk) + r.sent and time.monotonic() < deadline:
            time.sleep(0.01)
        s = srv.stats()
    assert r.valid == r.sent
    assert s.datagrams_in == len(junk) + r.sent
    assert s.replied == r.sent  # no junk datagram got a token
    assert s.reasons["MALFORMED"] >= 5
    assert sum(s.reasons.values()) == s.datagrams_in


def test_load_counts_echoes_as_mismatched_and_silence_as_lost() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as echo:
        echo.bind(("127.0.0.1", 0))
        echo.settimeout(0.05)
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                try:
                    d, src = echo.recvfrom(2048)
                except TimeoutError:
                    continue
                echo.sendto(d, src)

        t = threading.Thread(target=loop, daemon=True)
        t.start()
        r = load(echo.getsockname(), rate=2000, duration=0.1, sas=5)
        stop.set()
        t.join(2)
    assert r.answered == r.mismatched == r.sent > 0 and r.valid == 0
    free = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    free.bind(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    r = load(("127.0.0.1", port), rate=1000, duration=0.05, timeout=0.05)
    assert r.answered == 0 and r.sent + r.send_errors > 0


def test_ipv6_loopback() -> None:
    try:
        srv = Server("[::1]:0", MAKER, policy=OPEN)
    except errors.NetworkError:
        pytest.skip("no IPv6 loopback here")
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        host, port = srv.address
        assert host == "::1"
        r = load(f"[::1]:{port}", rate=5000, duration=0.1, maker=MAKER)
    finally:
        srv.stop()
        t.join(5)
    assert r.valid == r.sent > 0


def test_stop_from_another_thread_and_duration() -> None:
    srv = Server("127.0.0.1:0", MAKER)
    t0 = time.monotonic()
    s = srv.run(0.3)
    assert 0.25 <= time.monotonic() - t0 < 1.0
    assert s.elapsed == pytest.approx(0.3, abs=0.1)
    threading.Timer(0.2, srv.stop).start()
    t0 = time.monotonic()
    srv.run()
    assert time.monotonic() - t0 < 1.0 and srv.stopped


def test_prometheus_exposition() -> None:
    """A real serve with its /metrics endpoint (prometheus_client's HTTP server), scraped over
    HTTP and parsed with prometheus_client's own parser: every counter equals serve's stats,
    and the batch-time histogram counts every batch serve answered."""
    from prometheus_client.parser import text_string_to_metric_families

    seen: dict[str, object] = {}
    done = threading.Event()

    def ready(server: Server, metrics: tuple[str, int] | None) -> None:
        seen["server"], seen["metrics"] = server, metrics
        done.set()

    t = threading.Thread(
        target=serve,
        args=("127.0.0.1:0", MAKER),
        kwargs={"policy": OPEN, "prometheus_port": 0, "on_ready": ready, "duration": 5.0},
        daemon=True,
    )
    t.start()
    assert done.wait(5)
    srv = seen["server"]
    assert isinstance(srv, Server)
    metrics = seen["metrics"]
    assert isinstance(metrics, tuple)
    host, port = metrics
    r = load(srv.address, rate=5000, duration=0.1, maker=MAKER)
    # the last batch's counters and time land just after its replies leave: let them
    deadline = time.monotonic() + 5
    while srv.batch_times().count != srv.stats().batches and time.monotonic() < deadline:
        time.sleep(0.01)
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
        assert resp.headers["Content-Type"].startswith("text/plain")
        text = resp.read().decode()
    stats, times = srv.stats(), srv.batch_times()  # nothing arrives after the load: quiescent
    srv.stop()
    t.join(5)
    assert not t.is_alive()
    fams = {f.name: f for f in text_string_to_metric_families(text)}
    assert fams["ikeqcd_serve_requests"].type == "counter"

    samples = [x for f in fams.values() for x in f.samples]

    def value(name: str, **labels: str) -> float:
        (v,) = [x.value for x in samples if x.name == name and x.labels == labels]
        return float(v)

    assert r.sent > 0 and r.valid == r.sent
    for reason, n in stats.reasons.items():
        assert value("ikeqcd_serve_requests_total", reason=reason.lower()) == n
    assert value("ikeqcd_serve_requests_total", reason="replied") == r.sent
    for reason in ("REPLIED", "DISABLED", "RATE_LIMITED_BARE", "OUTSIDE_WINDOW"):
        assert value("ikeqcd_serve_replies_total", reason=reason.lower()) == stats.reasons[reason]
    assert value("ikeqcd_serve_datagrams_received_total") == stats.datagrams_in == r.sent
    assert value("ikeqcd_serve_datagrams_sent_total") == stats.datagrams_out == r.sent
    assert value("ikeqcd_serve_received_bytes_total") == stats.bytes_in
    assert value("ikeqcd_serve_sent_bytes_total") == stats.bytes_out
    assert value("ikeqcd_serve_send_errors_total") == stats.send_errors == 0
    hist = fams["ikeqcd_serve_batch_seconds"]
    assert hist.type == "histogram" and "recvmmsg" in hist.documentation
    batches = [s for s in hist.samples if s.name.endswith("_bucket")]
    assert batches[-1].labels["le"] == "+Inf"
    assert [s.value for s in batches] == sorted(s.value for s in batches)  # cumulative
    assert value("ikeqcd_serve_batch_seconds_count") == times.count == stats.batches > 0
    assert value("ikeqcd_serve_batch_seconds_sum") == pytest.approx(times.sum_seconds)
    assert 0 < times.sum_seconds < 5.0
    # the same exposition without a server (prometheus_text), minus the live uptime line
    offline = prometheus_text(stats, times).splitlines()
    assert [x for x in offline if "uptime" not in x] == [
        x for x in text.splitlines() if "uptime" not in x
    ]


def test_prometheus_missing_library_is_one_clear_error(secret_file: Path) -> None:
    """Without prometheus_client, serve --prometheus exits 2 before any work, naming the extra
    (the library is hidden from a real subprocess with a None entry in sys.modules)."""
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from ikeqcd.cli import main\n"
        f"sys.exit(main(['serve', '--secret-file', {str(secret_file)!r}, '--create', "
        "'--listen', '127.0.0.1:0', '--prometheus', '0', '--duration', '0']))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ikeqcd serve: error: --prometheus:")
    assert "pip install 'ikeqcd[metrics]'" in last
    assert not secret_file.exists()  # refused before any work
    # the library API: one IkeQcdError naming the extra, before binding anything
    code = (
        "import sys; sys.modules['prometheus_client'] = None\n"
        "from ikeqcd import TokenMaker, errors\n"
        "from ikeqcd.net import serve\n"
        "try:\n"
        "    serve('127.0.0.1:0', TokenMaker([b'k' * 32]), prometheus_port=0, duration=0)\n"
        "except errors.IkeQcdError as e:\n"
        "    print(e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0 and "pip install 'ikeqcd[metrics]'" in proc.stdout, proc.stderr


def test_bad_arguments() -> None:
    with pytest.raises(errors.InvalidArgument):
        Server("127.0.0.1:0", MAKER, live={(1, 2)})  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        Server("nowhere", MAKER)
    with pytest.raises(errors.InvalidArgument):
        Server("127.0.0.1:0", b"secret")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        load("127.0.0.1:1", rate=-1, duration=1)
    with pytest.raises(errors.InvalidArgument):
        load("127.0.0.1:1", rate=1, duration=math.nan)
    with pytest.raises(errors.InvalidArgument):
        load("127.0.0.1:1", rate=1, duration=1, sas=0)
    with pytest.raises(errors.InvalidArgument):
        load("127.0.0.1:1", rate=1, duration=1, timeout=0)
    with pytest.raises(errors.InvalidArgument):
        serve("127.0.0.1:0", MAKER, prometheus_port=70000, duration=0)
    srv = Server("127.0.0.1:0", MAKER)
    with pytest.raises(errors.NetworkError) as e:
        Server(srv.address, MAKER)
    assert isinstance(e.value, OSError) and "cannot listen on" in str(e.value)
    assert "NetworkError" in ikeqcd.errors.__all__


# ------------------------------------------------------------------------------------- CLI


@pytest.fixture()
def secret_file(tmp_path: Path) -> Path:
    d = tmp_path / "s"
    d.mkdir(mode=0o700)
    return d / "qcd.secret"


def cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "ikeqcd", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_cli_serve_stops_cleanly_on_signal(
    secret_file: Path, sig: int, capsys: pytest.CaptureFixture[str]
) -> None:
    p = cli(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--secret-file",
        str(secret_file),
        "--create",
        "--unlimited",
    )
    try:
        assert p.stdout is not None
        first = p.stdout.readline()
        assert first.startswith("ikeqcd serve: listening on 127.0.0.1:"), first
        port = int(first.split("127.0.0.1:")[1].split()[0])
        rc = main(
            [
                "load",
                "--target",
                f"127.0.0.1:{port}",
                "--rate",
                "10000",
                "--duration",
                "0.2",
                "--secret-file",
                str(secret_file),
                "--json",
                "--min-valid",
                "1",
            ]
        )
        report = json.loads(capsys.readouterr().out)
        assert rc == 0 and report["valid"] == report["sent"] > 0
        p.send_signal(sig)
        out, err = p.communicate(timeout=10)
    finally:
        p.kill()
    assert p.returncode == 0, err
    assert f"by reason: REPLIED={report['sent']}" in out
    assert f"{report['sent']} datagrams in" in out


def test_cli_serve_json_duration_and_load_text(
    secret_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = cli(
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--secret-file",
        str(secret_file),
        "--create",
        "--nat-t",
        "--no-qcd",
        "--bare-rate",
        "inf",
        "--duration",
        "1.5",
        "--json",
    )
    try:
        assert p.stdout is not None
        port = int(p.stdout.readline().split("127.0.0.1:")[1].split()[0])
        rc = main(
            [
                "load",
                "--target",
                f"127.0.0.1:{port}",
                "--nat-t",
                "--rate",
                "5000",
                "--duration",
                "0.1",
                "--min-valid",
                "0.5",
            ]
        )
        text = capsys.readouterr()
        out, _ = p.communicate(timeout=10)
    finally:
        p.kill()
    assert rc == 1 and "below --min-valid 0.5" in text.err
    assert "bare=" in text.out and "sent" in text.out
    stats = json.loads(out)
    assert stats["reasons"]["DISABLED"] == stats["datagrams_in"] > 0


def test_cli_load_interrupted_reports_what_it_has() -> None:
    with running(policy=OPEN) as srv:
        host, port = srv.address
        p = cli("load", "--target", f"{host}:{port}", "--rate", "5000", "--duration", "30")
        try:
            time.sleep(1.0)  # the interpreter is up and sending
            p.send_signal(signal.SIGINT)
            out, err = p.communicate(timeout=10)
        finally:
            p.kill()
    assert p.returncode == 130, err
    assert "(interrupted)" in out and "valid" in out


def test_cli_errors_are_one_line(secret_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["serve", "--secret-file", str(secret_file)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("ikeqcd serve: error:") and "\n" not in err
    with pytest.raises(SystemExit) as e:
        main(["load", "--target", "nowhere", "--rate", "10", "--duration", "0.1"])
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert e.value.code == 2 and err.startswith("ikeqcd load: error: argument --target:")
    assert "HOST:PORT" in err
    with pytest.raises(SystemExit) as e:
        main(["load", "--rate", "-5"])
    assert e.value.code == 2


@pytest.mark.parametrize("cmd", ["serve", "load"])
def test_cli_help_has_examples(cmd: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main([cmd, "--help"])
    out = capsys.readouterr().out
    assert "examples:" in out and f"ikeqcd {cmd}" in out
    for opt in (
        [
            "--listen",
            "--nat-t",
            "--secret-file",
            "--prometheus",
            "--no-qcd",
            "--per-source-rate",
            "--per-source-burst",
            "--global-rate",
            "--fallback",
            "--token-window",
        ]
        if cmd == "serve"
        else ["--target", "--rate", "--duration", "--sas", "--secret-file", "--json"]
    ):
        assert opt in out
