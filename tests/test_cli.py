"""The command line: exit codes, output, and the files it writes (small sizes)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ikeqcd import wire
from ikeqcd.cli import build_parser, main
from ikeqcd.secret import SecretStore


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_every_subcommand_has_help_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    names = sorted(sub.choices)  # type: ignore[arg-type]
    assert {"simulate", "decode", "secret", "bench"} <= set(names)
    for name in names:
        with pytest.raises(SystemExit) as e:
            main([name, "--help"])
        assert e.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and f"ikeqcd {name}" in out


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["nope"], [], ["simulate", "--sas", "many"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2
    capsys.readouterr()


def test_simulate_json_plot_pcap_and_decode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png, cap = tmp_path / "d.png", tmp_path / "s.pcap"
    code, out, _ = run(capsys, "simulate", "--sas", "150", "--json", "--no-progress",
                       "--plot", str(png), "--pcap", str(cap), "--pcap-sas", "1")
    assert code == 0
    doc = json.loads(out)
    modes = {r["mode"]: r for r in doc["results"]}
    assert set(modes) == {"qcd/hardened", "qcd/rfc6290", "no-qcd/strongswan", "no-qcd/libreswan"}
    assert all(r["detected"] == 150 for r in modes.values())
    assert modes["qcd/rfc6290"]["detect_p50"] < modes["no-qcd/libreswan"]["detect_p50"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    code, out, _ = run(capsys, "decode", "--pcap", str(cap))
    assert code == 0
    assert "IKE_SA_INIT request" in out and "N(INVALID_IKE_SPI)" in out and "N(QCD_TOKEN)" in out


def test_simulate_table(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", "--sas", "100", "--policy", "rfc6290",
                       "--baseline", "libreswan", "--no-progress")
    assert code == 0
    assert "qcd/rfc6290" in out and "no-qcd/libreswan" in out and "strongswan" not in out
    code, out, _ = run(capsys, "simulate", "--sas", "100", "--attack", "standby-replay", "--no-progress")
    assert code == 0 and "qcd/rfc6290+cluster-gate" in out


def test_decode_hex_with_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "k").mkdir(mode=0o700)
    f = tmp_path / "k" / "qcd.secret"
    assert run(capsys, "secret", "init", "--file", str(f))[0] == 0
    store = SecretStore(f)
    store.load()
    maker = store.maker()
    req = wire.build_request(0x1111, 0x2222, message_id=9)
    reply = wire.build_qcd_reply(req, maker.all_tokens(0x1111, 0x2222))
    code, out, _ = run(capsys, "decode", reply.hex(), "--secret-file", str(f))
    assert code == 0 and "token VERIFIED" in out and "msgid 9" in out
    other = wire.build_qcd_reply(req, [bytes(32)])
    code, out, _ = run(capsys, "decode", other.hex(), "--secret-file", str(f))
    assert code == 0 and "does NOT match" in out
    code, out, _ = run(capsys, "decode", "00ff")
    assert code == 0 and "not a valid IKEv2 message" in out
    with pytest.raises(SystemExit) as e:
        main(["decode", "zz"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and "argument hex: not hex digits" in err.splitlines()[-1]


def test_secret_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "a").mkdir(mode=0o700)
    (tmp_path / "standby").mkdir(mode=0o700)
    f = tmp_path / "a" / "qcd.secret"
    code, out, _ = run(capsys, "secret", "init", "--file", str(f))
    assert code == 0 and "fingerprint" in out
    fp1 = run(capsys, "secret", "fingerprint", "--file", str(f))[1].strip()
    code, _, err = run(capsys, "secret", "init", "--file", str(f))
    assert code == 1 and err.startswith("ikeqcd secret: error:") and err.count("\n") == 1
    code, out, _ = run(capsys, "secret", "rotate", "--file", str(f))
    assert code == 0 and "2 generation(s)" in out
    fp2 = run(capsys, "secret", "fingerprint", "--file", str(f))[1].strip()
    assert fp1 != fp2
    blob = tmp_path / "blob"
    assert run(capsys, "secret", "export", "--file", str(f), "--output", str(blob))[0] == 0
    assert blob.stat().st_mode & 0o777 == 0o600
    g = tmp_path / "standby" / "qcd.secret"
    code, out, _ = run(capsys, "secret", "import", "--file", str(g), "--input", str(blob))
    assert code == 0 and fp2 in out
    a, b = SecretStore(f), SecretStore(g)
    a.load()
    b.load()
    assert a.maker().all_tokens(1, 2) == b.maker().all_tokens(1, 2)
    f.chmod(0o644)
    code, _, err = run(capsys, "secret", "fingerprint", "--file", str(f))
    assert code == 1 and "ikeqcd secret: error:" in err


def test_bench_quick(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, out, _ = run(capsys, "bench", "--quick", "--n", "20000", "--json")
    assert code == 0
    report = json.loads(out)
    assert report["machine"]["cores"] >= 1 and report["machine"]["kernel"]
    names = [r["name"] for r in report["figures"]]
    assert any("Python hmac" in n for n in names) and any("1 thread" in n for n in names)
    keys = {r["key"]: r for r in report["ratios"]}
    assert set(keys) <= {"tokens_1t_vs_openssl_hmac", "tokens_1t_of_bulk_limit"}
    old = tmp_path / "old.json"
    old.write_text(out)
    code, out, _ = run(capsys, "bench", "--compare", str(old), str(old))
    assert code == 0 and "figure" in out and "REGRESSION" not in out
    code, _, err = run(capsys, "bench", "--compare", str(old), str(old), str(old))
    assert code == 1 and "--compare takes" in err
    code, out, _ = run(capsys, "bench", "--only", "wire", "--quick", "--n", "2000")
    assert code == 0 and "SHA-256 kernel:" in out and "respond_many_vs_python" in out
    assert "TokenResponder.respond_many" in out


def test_python_dash_m(tmp_path: Path) -> None:
    proc = subprocess.run([sys.executable, "-m", "ikeqcd", "secret", "fingerprint", "--file",
                           str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.startswith("ikeqcd secret: error:")
