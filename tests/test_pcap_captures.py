"""``read_pcap`` and ``ikeqcd decode --pcap`` on files written by the capture tools
themselves: tcpdump on lo (Ethernet link type) and on ``any`` (Linux cooked v2), dumpcap and
tshark (pcapng, by default), and dumpcap on two interfaces at once (one pcapng, two link
types). The traffic is real: QCD requests and replies built by the library, sent over UDP on
loopback while the tool captures. Skipped, with the reason, where a tool is missing or
capture is not permitted; ``.ci/run`` installs tcpdump and tshark (dumpcap comes with it).

``tests/vectors/captures/qcd-lo-any.pcapng`` was written by ``dumpcap -i lo -i any -y
LINUX_SLL2`` (Ethernet and Linux cooked v2 in one file) the same
way (see :func:`capture_fixture`); it is read without any tool installed.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from ikeqcd import TokenMaker, TokenResponder, pcap, wire
from ikeqcd.cli import main
from ikeqcd.errors import InvalidArgument

from .conftest import VECTORS

MAKER = TokenMaker(bytes(range(32)))
SPI_I, SPI_R = 0x1122334455667788, 0x99AABBCCDDEEFF00
FIXTURE = VECTORS / "captures" / "qcd-lo-any.pcapng"


def traffic() -> list[tuple[int, bytes]]:
    """(destination port, UDP payload): a request and its QCD reply on 500 and on 4500."""
    out = []
    for port, nat in ((500, False), (4500, True)):
        req = wire.build_request(SPI_I, SPI_R, message_id=3, nat_t=nat)
        reply = TokenResponder(MAKER, nat_t=nat).respond(req)
        assert reply is not None
        out += [(port, req), (port, reply)]
    return out


def capture(
    tool: Sequence[str], out: Path, ready: str, settle: float = 0.2
) -> list[tuple[int, bytes]]:
    """Run the capture tool writing ``out`` while our datagrams go over loopback; ``settle``
    seconds pass between the tool's ready line and the first datagram."""
    sender = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sender.bind(("127.0.0.1", 0))
    sport = sender.getsockname()[1]
    # only what our socket sends to 500/4500: a stray datagram from another process on a
    # busy machine (its port reused, GSO super-packets on "any") must not enter the file
    expr = f"udp and src port {sport} and (dst port 500 or dst port 4500)"
    # tcpdump takes the filter as trailing words; dumpcap and tshark as -f after each -i
    # (a -f applies to the interface named before it only)
    if "tcpdump" in tool[0]:
        argv = [*tool, "-w", str(out), expr]
    else:
        argv = [tool[0]]
        for k, a in enumerate(tool[1:], 1):
            argv.append(a)
            if tool[k - 1] == "-i":
                argv += ["-f", expr]
        argv += ["-w", str(out)]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    assert proc.stderr is not None
    seen = ""
    deadline = time.monotonic() + 15
    try:
        while ready not in seen:
            line = proc.stderr.readline()
            if not line and proc.poll() is not None:
                pytest.skip(f"{tool[0]} cannot capture here: {seen.strip()[-300:]}")
            seen += line
            if time.monotonic() > deadline:
                pytest.skip(f"{tool[0]} did not start capturing within 15 s: {seen[-300:]}")
        time.sleep(settle)
        sent = traffic()
        for port, payload in sent:
            sender.sendto(payload, ("127.0.0.1", port))
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        proc.stderr.close()
        sender.close()
    assert out.exists() and out.stat().st_size > 0, seen
    return sent


def check(
    path: Path, sent: list[tuple[int, bytes]], capsys: pytest.CaptureFixture[str], work: Path
) -> None:
    packets = pcap.read_pcap(path)
    got = {(p.dport, p.payload) for p in packets}
    assert set(sent) <= got, f"{len(packets)} datagrams read, ours not all among them"
    for p in packets:
        assert p.src == p.dst == "127.0.0.1" and p.timestamp > 1e9
    # the CLI decodes it too, framing by port, and the tokens verify
    secret = work / "k"
    secret.mkdir(mode=0o700, exist_ok=True)
    from ikeqcd.secret import _encode

    f = secret / "qcd.secret"
    f.write_bytes(_encode("hmac-sha256", [bytes(range(32))], 1, 0))
    f.chmod(0o600)
    assert main(["decode", "--pcap", str(path), "--secret-file", str(f)]) == 0
    out = capsys.readouterr().out
    assert out.count("token VERIFIED") >= 2 and "does NOT match" not in out
    assert "(UDP/4500 non-ESP marker)" in out and "not a valid" not in out


def need(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        pytest.skip(f"{tool} is not installed (.ci/run installs tcpdump and tshark)")
    return found


def test_tcpdump_on_lo(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lo.pcap"
    sent = capture([need("tcpdump"), "-i", "lo", "-U", "--immediate-mode"], out, "listening on")
    assert out.read_bytes()[:4] in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4")
    check(out, sent, capsys, tmp_path)


def test_tcpdump_on_any_is_linux_cooked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "any.pcap"
    sent = capture([need("tcpdump"), "-i", "any", "-U", "--immediate-mode"], out, "listening on")
    linktype = int.from_bytes(out.read_bytes()[20:24], "little") & 0x0FFFFFFF
    assert linktype in (113, 276), linktype  # LINUX_SLL (old libpcap) or LINUX_SLL2
    check(out, sent, capsys, tmp_path)


def test_dumpcap_pcapng(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "lo.pcapng"
    sent = capture([need("dumpcap"), "-q", "-i", "lo"], out, "Capturing on")
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    check(out, sent, capsys, tmp_path)


def test_dumpcap_two_interfaces_two_link_types(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "lo-any.pcapng"
    # dumpcap says "Capturing on" once; the second interface may open a little later on a busy
    # machine (a datagram sent before it is seen once, not twice), hence the longer settle
    tool = [need("dumpcap"), "-q", "-i", "lo", "-i", "any"]
    sent = capture(tool, out, "Capturing on", settle=1.5)
    packets = pcap.read_pcap(out)
    for port, payload in sent:  # seen once on each interface
        assert sum(1 for p in packets if (p.dport, p.payload) == (port, payload)) == 2
    check(out, sent, capsys, tmp_path)


def test_tshark_writes_pcapng(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tshark.pcapng"
    sent = capture([need("tshark"), "-q", "-i", "lo"], out, "Capturing on")
    assert out.read_bytes()[:4] == b"\x0a\x0d\x0d\x0a"
    check(out, sent, capsys, tmp_path)


def test_committed_fixture_two_interfaces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dumpcap file with Ethernet (lo) and Linux cooked v2 (any) interfaces, no tool needed."""
    data = FIXTURE.read_bytes()
    assert data[:4] == b"\x0a\x0d\x0d\x0a"
    packets = pcap.read_pcap(FIXTURE)
    sent = traffic()
    for port, payload in sent:
        assert sum(1 for p in packets if (p.dport, p.payload) == (port, payload)) == 2
    check(FIXTURE, sent, capsys, tmp_path)


def test_damaged_pcapng_is_refused(tmp_path: Path) -> None:
    data = FIXTURE.read_bytes()
    for cut, why in ((len(data) - 3, "truncated"), (30, "truncated")):
        bad = tmp_path / f"cut{cut}.pcapng"
        bad.write_bytes(data[:cut])
        with pytest.raises(InvalidArgument, match=why):
            pcap.read_pcap(bad)
    wrong = tmp_path / "iface.pcapng"
    # the first packet names an interface the file never described
    shb_len = int.from_bytes(data[4:8], "little")
    idb_len = int.from_bytes(data[shb_len + 4 : shb_len + 8], "little")
    wrong.write_bytes(data[:shb_len] + data[shb_len + idb_len :])
    with pytest.raises(InvalidArgument, match="interface 1"):
        pcap.read_pcap(wrong)


def capture_fixture(path: Path) -> None:  # pragma: no cover - how the fixture was made
    """Rewrite the committed fixture: ``python -c 'from tests.test_pcap_captures import *;
    capture_fixture(FIXTURE)'`` as root on Linux with dumpcap installed."""
    capture(["dumpcap", "-q", "-i", "lo", "-i", "any", "-y", "LINUX_SLL2"], path, "Capturing on")


@pytest.mark.parametrize("linktype", [0, 101, 113, 228, 229, 276])
def test_every_link_type_and_ip_version(tmp_path: Path, linktype: int) -> None:
    """Loopback, raw IP (both forms), cooked v1 and v2; IPv4 and IPv6; fragments skipped.
    The frames are built with dpkt's own classes, the file by its pcap writer."""
    import dpkt

    _, payload = traffic()[1]
    v6 = linktype == 229
    udp = dpkt.udp.UDP(sport=500, dport=500, data=payload)
    udp.ulen = 8 + len(payload)
    if v6:
        src, dst = bytes.fromhex("20010db8" + "00" * 11 + "01"), bytes.fromhex("20010db8" + "00" * 11 + "02")
        ip: dpkt.Packet = dpkt.ip6.IP6(src=src, dst=dst, nxt=17, hlim=64, data=udp, plen=len(udp))
        frag = None
    else:
        ip = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=17, data=udp)
        ip.len = 20 + len(udp)
        frag = dpkt.ip.IP(src=bytes([192, 0, 2, 1]), dst=bytes([192, 0, 2, 2]), p=17, data=udp)
        frag.mf = 1
    def frame(pkt: dpkt.Packet) -> bytes:
        raw = bytes(pkt)
        if linktype == 0:
            return bytes(dpkt.loopback.Loopback(family=2 if not v6 else 24, data=raw))
        if linktype == 113:
            return bytes(dpkt.sll.SLL(ethtype=0x0800, data=raw))
        if linktype == 276:
            return bytes(dpkt.sll2.SLL2(ethtype=0x0800, data=raw))
        return raw
    path = tmp_path / f"lt{linktype}.pcap"
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f, linktype=linktype)
        w.writepkt(frame(ip), ts=1_700_000_000.5)
        if frag is not None:
            w.writepkt(frame(frag), ts=1_700_000_001.0)
    got = pcap.read_pcap(path)
    assert len(got) == 1
    p = got[0]
    assert (p.sport, p.dport, p.payload) == (500, 500, payload)
    assert p.src == ("2001:db8::1" if v6 else "192.0.2.1") and abs(p.timestamp - 1_700_000_000.5) < 1e-5


def test_unknown_link_type_is_refused(tmp_path: Path) -> None:
    import dpkt

    path = tmp_path / "usb.pcap"
    with open(path, "wb") as f:
        dpkt.pcap.Writer(f, linktype=189).writepkt(b"\x00" * 64, ts=1.0)
    with pytest.raises(InvalidArgument, match="unsupported link type 189"):
        pcap.read_pcap(path)
