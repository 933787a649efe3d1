"""ikeqcd.pcap: the file is read back by scapy (rdpcap) with every field and checksum right,
and, where tcpdump is installed, tcpdump decodes the IKE notifies."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.contrib.ikev2 import IKEv2, IKEv2_Notify
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether
    from scapy.utils import rdpcap

from ikeqcd import TokenMaker, TokenResponder, errors, pcap, wire

SPI_I, SPI_R = 0x8899AABBCCDDEEFF, 0x0123456789ABCDEF


def exchange() -> list[pcap.PcapPacket]:
    m = TokenMaker(bytes(32))
    out: list[pcap.PcapPacket] = []
    t = 1_700_000_000.25
    for port, nat in ((500, False), (4500, True)):
        q = wire.build_request(SPI_I, SPI_R, message_id=7, sk_body=bytes(32), nat_t=nat)
        a = TokenResponder(m, nat_t=nat).respond(q)
        assert a is not None
        out.append(pcap.PcapPacket(t, "192.0.2.10", port, "198.51.100.20", port, q))
        out.append(pcap.PcapPacket(t + 0.000123, "198.51.100.20", port, "192.0.2.10", port, a))
        t += 1
    q6 = wire.build_request(SPI_I, SPI_R, message_id=8)
    out.append(pcap.PcapPacket(t, "2001:db8::1", 500, "2001:db8::2", 500, q6))
    return out


def test_written_file_reads_back_with_scapy(tmp_path: Path) -> None:
    packets = exchange()
    path = tmp_path / "qcd.pcap"
    assert pcap.write_pcap(path, packets) == len(packets)
    got = rdpcap(str(path))
    assert len(got) == len(packets)
    for want, pkt in zip(packets, got):
        assert pkt.haslayer(Ether)
        assert abs(float(pkt.time) - want.timestamp) < 1e-6
        ip = pkt[IP] if pkt.haslayer(IP) else pkt[IPv6]
        assert (ip.src, ip.dst) == (want.src, want.dst)
        u = pkt[UDP]
        assert (u.sport, u.dport, u.len) == (want.sport, want.dport, 8 + len(want.payload))
        assert bytes(u.payload) == want.payload
        # checksums: scapy recomputes them when the fields are deleted
        if pkt.haslayer(IP):
            assert ip.len == 20 + 8 + len(want.payload) and ip.proto == 17 and ip.ttl == 64
            fresh = IP(bytes(ip))
            del fresh.chksum
            assert IP(bytes(fresh)).chksum == ip.chksum
        fresh_u = pkt.copy()
        del fresh_u[UDP].chksum
        assert type(pkt)(bytes(fresh_u))[UDP].chksum == u.chksum != 0
        assert pkt.haslayer(IKEv2)
        assert int.from_bytes(pkt[IKEv2].init_SPI, "big") == SPI_I
    replies = [p for p in got if p.haslayer(IKEv2_Notify)]
    assert len(replies) == 2
    for r in replies:
        types = []
        n = r.getlayer(IKEv2_Notify)
        while n is not None:
            types.append(n.type)
            n = n.payload.getlayer(IKEv2_Notify) if n.payload else None
        assert types == [4, 16419]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="tcpdump not installed")
def test_tcpdump_decodes_the_notifies(tmp_path: Path) -> None:
    path = tmp_path / "qcd.pcap"
    pcap.write_pcap(path, exchange())
    out = subprocess.run(
        ["tcpdump", "-nn", "-vv", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    assert out.count("isakmp 2.0") == 5 and out.count("[udp sum ok]") == 5, out
    assert out.count("type=4(invalid_ike_spi)") == 2 and out.count("type=16419") == 2, out
    assert out.count("NONESP-encap") == 2 and "bad cksum" not in out, out


def test_bad_packets_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "x.pcap"
    good = (0.0, "192.0.2.1", 500, "192.0.2.2", 500, b"x")
    bad_cases: list[tuple[object, type[Exception]]] = [
        ((0.0, "192.0.2.1", 500, "2001:db8::1", 500, b"x"), errors.InvalidAddress),
        ((0.0, "not-an-ip", 500, "192.0.2.2", 500, b"x"), errors.InvalidAddress),
        ((0.0, "192.0.2.1", 70000, "192.0.2.2", 500, b"x"), errors.InvalidArgument),
        ((0.0, "192.0.2.1", True, "192.0.2.2", 500, b"x"), errors.InvalidArgument),
        ((-1.0, "192.0.2.1", 500, "192.0.2.2", 500, b"x"), errors.InvalidArgument),
        (("now", "192.0.2.1", 500, "192.0.2.2", 500, b"x"), errors.InvalidArgument),
        ((0.0, "192.0.2.1", 500, "192.0.2.2", 500, "text"), errors.InvalidArgument),
        ((0.0, "192.0.2.1", 500, "192.0.2.2", 500, bytes(65508)), errors.InvalidArgument),
        ((0.0, "192.0.2.1"), errors.InvalidArgument),
    ]
    for bad, exc in bad_cases:
        with pytest.raises(exc):
            pcap.write_pcap(path, [good, bad])  # type: ignore[list-item]
    assert pcap.write_pcap(path, []) == 0
    assert len(rdpcap(str(path))) == 0


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark (Wireshark) not installed")
def test_wireshark_decodes_the_qcd_reply(tmp_path: Path) -> None:
    """Wireshark's own IKEv2 dissector (tshark) reads our file: on UDP/500 and, behind the
    non-ESP marker, on UDP/4500, the reply is N(INVALID_IKE_SPI) then N(QCD_TOKEN) with
    Protocol ID 0 (erratum 3449), SPI size 0 and our token as the Token Secret Data."""
    path = tmp_path / "qcd.pcap"
    packets = exchange()
    pcap.write_pcap(path, packets)
    out = subprocess.run(
        ["tshark", "-r", str(path), "-V", "-Y", "isakmp.notify.msgtype == 16419"],
        capture_output=True, text=True, check=True,
    ).stdout
    assert out.count("Notify Message Type: QUICK_CRASH_DETECTION (16419)") == 2, out
    assert out.count("Notify Message Type: INVALID_IKE_SPI (4)") == 2, out
    assert "Malformed" not in out and "Checksum: " in out and "[Checksum Status: Bad]" not in out
    token = TokenMaker(bytes(32)).token(SPI_I, SPI_R).hex()
    assert out.count(f"Token Secret Data: {token}") == 2, out
    assert out.count("Protocol ID: RESERVED (0)") == 4 and out.count("SPI Size: 0") == 4, out
