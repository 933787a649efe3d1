"""``serve``'s per-socket XFRM bypass: set where permitted (CAP_NET_ADMIN), refused softly
where not (the server still answers, says why, and logs a warning), and off on request.

The end-to-end case (a crashed daemon's leftover transport-mode policy swallows requests
unless the bypass is set) is in test_interop_strongswan.py; this file needs no namespaces.
"""

from __future__ import annotations

import logging
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from ikeqcd import TokenMaker, wire
from ikeqcd.net import Server

ROOT = Path(__file__).resolve().parent.parent
CAP_NET_ADMIN = 12
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="XFRM policies are Linux's")


def has_net_admin() -> bool:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return bool(int(line.split()[1], 16) >> CAP_NET_ADMIN & 1)
    return False


def answers(server: Server) -> bool:
    """One request to the server gets its QCD reply (through the real socket)."""
    host, port = server.address
    t = threading.Thread(target=server.run, args=(1.0,))
    t.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
            c.settimeout(1.0)
            c.sendto(
                wire.build_request(0x1111, 0x2222, message_id=3, sk_body=bytes(32)), (host, port)
            )
            reply = wire.parse_qcd_reply(c.recv(2048))
    finally:
        server.stop()
        t.join()
    return reply.invalid_ike_spi and len(reply.tokens) == 1


@linux_only
def test_bypass_follows_the_capability(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="ikeqcd.net"):
        server = Server("127.0.0.1:0", TokenMaker(bytes(32)), policy=None)
    if has_net_admin():
        assert server.xfrm_bypass and server.xfrm_bypass_error is None
        assert not caplog.records
    else:
        assert not server.xfrm_bypass
        assert "not permitted" in (server.xfrm_bypass_error or "")
        assert "no IPsec bypass" in caplog.text and "CAP_NET_ADMIN" in caplog.text
    assert answers(server)


@linux_only
def test_bypass_off_on_request() -> None:
    server = Server("127.0.0.1:0", TokenMaker(bytes(32)), policy=None, xfrm_bypass=False)
    assert not server.xfrm_bypass and server.xfrm_bypass_error is None
    assert answers(server)


@linux_only
@pytest.mark.skipif(shutil.which("setpriv") is None, reason="setpriv (util-linux) not installed")
def test_without_net_admin_serve_warns_and_still_runs(tmp_path: Path) -> None:
    """`ikeqcd serve` run without CAP_NET_ADMIN (dropped from the bounding set, so that even
    root lacks it): a warning names the fix, and serving goes on."""
    if not has_net_admin():
        prefix: list[str] = []
    else:
        prefix = ["setpriv", "--bounding-set", "-net_admin", "--inh-caps", "-net_admin"]
    secret = tmp_path / "qcd.secret"
    r = subprocess.run(
        [
            *prefix,
            sys.executable,
            "-m",
            "ikeqcd",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--secret-file",
            str(secret),
            "--create",
            "--duration",
            "0.2",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "no IPsec bypass" in r.stderr and "Operation not permitted" in r.stderr, r.stderr
    assert "CAP_NET_ADMIN" in r.stderr and "Traceback" not in r.stderr
    assert "IPsec bypass" not in r.stdout.splitlines()[0]  # the "listening on" line
