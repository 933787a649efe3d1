"""Regression corpus: real IKEv2 datagrams of real daemons, captured once by tcpdump on the
veth of the interop tests (classic pcap, Ethernet) and kept under tests/corpus/.

- ``strongswan-setup.pcap``: strongSwan 5.9.8 to strongSwan 5.9.8, PSK, childless: IKE_SA_INIT
  request and response on UDP/500, IKE_AUTH on UDP/4500 (MOBIKE moves the SA there),
  an INFORMATIONAL (DPD) exchange;
- ``strongswan-crash.pcap``: after the responder's charon was SIGKILLed, the initiator's DPD
  retransmissions (same SPIs and Message ID) and ``ikeqcd serve``'s INVALID_IKE_SPI +
  QCD_TOKEN replies;
- ``strongswan-udp500-setup.pcap`` / ``-crash.pcap``: the same without MOBIKE, so that the
  SA and its DPD stay on UDP/500 (here the responder's DPD came first);
- ``libreswan-responder-setup.pcap``: strongSwan 5.9.8 initiating to libreswan 4.10: an
  IKE_SA_INIT answered with N(INVALID_KE_PAYLOAD) and retried (once retransmitted), IKE_AUTH
  with a Child SA request (refused: no ESP in the capturing kernel; the IKE SA stays), a DPD
  exchange;
- ``libreswan-responder-crash.pcap``: strongSwan's DPD retransmissions after pluto was
  SIGKILLed, and ``serve``'s replies.

Both the ``ikeqcd decode --pcap`` command and the Python parser must read every datagram.
Regenerate with ``IKEQCD_INTEROP_SAVE=tests/corpus pytest -m interop`` (as root), then
update the counts below.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from ikeqcd import pcap, wire

CORPUS = Path(__file__).parent / "corpus"
FILES = sorted(CORPUS.glob("*.pcap"))

# (exchange, response) pairs each file must hold, and how many datagrams in all
EXPECTED: dict[str, tuple[set[tuple[int, bool]], int]] = {
    "strongswan-setup.pcap": (
        {
            (wire.EXCHANGE_IKE_SA_INIT, False),
            (wire.EXCHANGE_IKE_SA_INIT, True),
            (wire.EXCHANGE_IKE_AUTH, False),
            (wire.EXCHANGE_IKE_AUTH, True),
            (wire.EXCHANGE_INFORMATIONAL, False),
            (wire.EXCHANGE_INFORMATIONAL, True),
        },
        6,
    ),
    "strongswan-crash.pcap": (
        {(wire.EXCHANGE_INFORMATIONAL, False), (wire.EXCHANGE_INFORMATIONAL, True)},
        13,
    ),
    "strongswan-udp500-setup.pcap": (
        {
            (wire.EXCHANGE_IKE_SA_INIT, False),
            (wire.EXCHANGE_IKE_SA_INIT, True),
            (wire.EXCHANGE_IKE_AUTH, False),
            (wire.EXCHANGE_IKE_AUTH, True),
            (wire.EXCHANGE_INFORMATIONAL, False),
            (wire.EXCHANGE_INFORMATIONAL, True),
        },
        6,
    ),
    "strongswan-udp500-crash.pcap": (
        {(wire.EXCHANGE_INFORMATIONAL, False), (wire.EXCHANGE_INFORMATIONAL, True)},
        11,
    ),
    "libreswan-responder-setup.pcap": (
        {
            (wire.EXCHANGE_IKE_SA_INIT, False),
            (wire.EXCHANGE_IKE_SA_INIT, True),
            (wire.EXCHANGE_IKE_AUTH, False),
            (wire.EXCHANGE_IKE_AUTH, True),
            (wire.EXCHANGE_INFORMATIONAL, False),
            (wire.EXCHANGE_INFORMATIONAL, True),
        },
        10,
    ),
    "libreswan-responder-crash.pcap": (
        {(wire.EXCHANGE_INFORMATIONAL, False), (wire.EXCHANGE_INFORMATIONAL, True)},
        14,
    ),
}
NOTIFY_INVALID_KE_PAYLOAD = 17


def test_every_corpus_file_is_described() -> None:
    assert {f.name for f in FILES} == set(EXPECTED)


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_python_parser_reads_every_datagram(path: Path) -> None:
    packets = pcap.read_pcap(path)
    want, count = EXPECTED[path.name]
    assert len(packets) == count
    seen: set[tuple[int, bool]] = set()
    for p in packets:
        nat_t = 4500 in (p.sport, p.dport)
        msg = wire.parse_message(p.payload, nat_t=nat_t)
        h = msg.header
        assert h.major_version == 2 and msg.nat_t == nat_t
        assert h.length == len(p.payload) - (4 if nat_t else 0)
        seen.add((h.exchange, h.response))
        if h.exchange == wire.EXCHANGE_IKE_SA_INIT:
            assert h.message_id == 0 and not msg.encrypted
            kinds = {pl.kind for pl in msg.payloads}
            if h.response and kinds == {wire.PAYLOAD_NOTIFY}:  # "retry with this group"
                assert [n.notify_type for n in msg.notifies] == [NOTIFY_INVALID_KE_PAYLOAD]
                assert len(msg.notifies[0].data) == 2  # the DH group wanted
            else:
                assert {wire.PAYLOAD_SA, wire.PAYLOAD_KE, wire.PAYLOAD_NONCE} <= kinds, kinds
        elif h.response and not msg.encrypted:
            # the only unprotected responses after IKE_SA_INIT are ikeqcd serve's
            r = wire.parse_qcd_reply(p.payload, nat_t=nat_t)
            assert r.invalid_ike_spi and len(r.tokens) == 1
        else:
            assert msg.encrypted and msg.payloads[-1].kind == wire.PAYLOAD_SK
    assert seen == want


@pytest.mark.parametrize("path", FILES, ids=[f.name for f in FILES])
def test_decode_command_reads_every_datagram(path: Path) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "ikeqcd", "decode", "--pcap", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert r.stdout.count("  IKEv2 ") == EXPECTED[path.name][1], r.stdout
    assert "not a valid IKEv2 message" not in r.stdout
