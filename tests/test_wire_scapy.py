"""Cross-check against an independent codec, scapy's IKEv2 layer (scapy.contrib.ikev2), on
UDP/500 and UDP/4500: scapy builds requests and replies that we parse, and parses what we
build."""

from __future__ import annotations

import warnings

import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from scapy.contrib.ikev2 import IKEv2, IKEv2_Encrypted, IKEv2_Notify, IKEv2_VendorID
    from scapy.layers.inet import UDP
    from scapy.layers.ipsec import NON_ESP
    from scapy.packet import Packet, Raw

from ikeqcd import Reason, TokenMaker, TokenResponder, wire

SPI_I = bytes.fromhex("8a1b2c3d4e5f6071")
SPI_R = bytes.fromhex("92a3b4c5d6e7f809")
MAKER = TokenMaker([b"\x33" * 32, b"\x44" * 32, b"\x55" * 32])
PORTS = [500, 4500]


def udp(port: int, ike: Packet) -> Packet:
    """A UDP datagram as scapy stacks it: NON_ESP marker on 4500."""
    if port == 4500:
        return UDP(sport=port, dport=port) / NON_ESP() / ike
    return UDP(sport=port, dport=port) / ike


def payload_of(pkt: Packet) -> bytes:
    return bytes(pkt[UDP].payload)


def decode(port: int, datagram: bytes) -> Packet:
    """Let scapy's bottom-up bindings decode a UDP payload received on ``port``."""
    pkt = UDP(bytes(UDP(sport=port, dport=port) / Raw(datagram)))
    assert pkt.haslayer(IKEv2), pkt.summary()  # scapy really loaded and used its IKEv2 layer
    if port == 4500:
        assert pkt.haslayer(NON_ESP)
    return pkt


def notifies(pkt: Packet) -> list[Packet]:
    out = []
    layer = pkt.getlayer(IKEv2_Notify)
    while layer is not None:
        out.append(layer)
        layer = layer.payload.getlayer(IKEv2_Notify) if layer.payload else None
    return out


def test_scapy_ikev2_is_the_real_layer() -> None:
    assert IKEv2.__module__ == "scapy.contrib.ikev2"
    assert {f.name for f in IKEv2_Notify.fields_desc} >= {"proto", "SPIsize", "type", "notify"}


@pytest.mark.parametrize("port", PORTS)
@pytest.mark.parametrize("exchange", [35, 36, 37])
@pytest.mark.parametrize("initiator", [True, False])
def test_scapy_request_gets_our_reply_scapy_parses_it(
    port: int, exchange: int, initiator: bool
) -> None:
    flags = "Initiator" if initiator else 0
    q = IKEv2(
        init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=exchange, flags=flags, id=0x0A0B0C0D
    ) / IKEv2_Encrypted(load=bytes(range(64)))
    datagram = payload_of(udp(port, q))
    m = wire.parse_message(datagram, nat_t=port == 4500)
    assert m.encrypted and m.header.spi_i == int.from_bytes(SPI_I, "big")
    assert m.payloads[0].body == bytes(range(64))

    reply = TokenResponder(MAKER, nat_t=port == 4500).respond(datagram)
    assert reply is not None
    pkt = decode(port, reply)
    ike = pkt[IKEv2]
    assert ike.init_SPI == SPI_I and ike.resp_SPI == SPI_R
    assert ike.exch_type == exchange and ike.id == 0x0A0B0C0D and ike.version == 0x20
    assert ike.next_payload == 41 and ike.length == len(reply) - 4 * (port == 4500)
    assert "Response" in ike.flags and ("Initiator" in ike.flags) is (not initiator)
    assert "Version" not in ike.flags
    ns = notifies(pkt)
    assert [n.type for n in ns] == [4, 16419, 16419, 16419]
    assert all(n.proto == 0 and n.SPIsize == 0 and n.SPI in (b"", None) for n in ns)
    assert ns[0].notify == b""
    spi_i, spi_r = int.from_bytes(SPI_I, "big"), int.from_bytes(SPI_R, "big")
    assert [n.notify for n in ns[1:]] == MAKER.all_tokens(spi_i, spi_r)
    assert ns[-1].next_payload in (0, None)
    assert not pkt.haslayer(IKEv2_Encrypted)


@pytest.mark.parametrize("port", PORTS)
def test_scapy_builds_replies_we_parse(port: int) -> None:
    """Scapy-built replies in RFC order, reversed order, with proto 1, with extra payloads."""
    t1, t2 = b"\x11" * 32, b"\x22" * 64
    variants = [
        IKEv2_Notify(type=4, proto=0) / IKEv2_Notify(type=16419, proto=0, notify=t1)
        / IKEv2_Notify(type=16419, proto=0, notify=t2),
        IKEv2_Notify(type=16419, proto=1, notify=t1) / IKEv2_Notify(type=16419, proto=1, notify=t2)
        / IKEv2_Notify(type=4),
        IKEv2_VendorID(vendorID=b"vendor") / IKEv2_Notify(type=16419, notify=t1)
        / IKEv2_Notify(type=40001, notify=b"unknown status")
        / IKEv2_Notify(type=16419, notify=t2),
    ]
    for k, payloads in enumerate(variants):
        ike = IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=37, flags="Response", id=k) / payloads
        datagram = payload_of(udp(port, ike))
        for nat_t in (port == 4500, None):
            r = wire.parse_qcd_reply(datagram, nat_t=nat_t)
            assert r.tokens == (t1, t2), k
            assert r.invalid_ike_spi is (k != 2)
            assert r.message_id == k and r.response and r.nat_t is (port == 4500)
            assert r.spi_i == int.from_bytes(SPI_I, "big")
        batch = wire.parse_qcd_replies([datagram])
        assert batch.ok[0] and batch.tokens(0) == (t1, t2)


@pytest.mark.parametrize("port", PORTS)
def test_scapy_parses_our_other_builders(port: int) -> None:
    nat = port == 4500
    tok = MAKER.token(1, 2)
    d = wire.build_invalid_spi_message(0x0C0FFEE0, [tok], nat_t=nat)
    ns = notifies(decode(port, d))
    assert [(n.type, n.notify) for n in ns] == [(11, bytes.fromhex("0c0ffee0")), (16419, tok)]
    assert decode(port, d)[IKEv2].flags == "Initiator"
    q = wire.build_request(int.from_bytes(SPI_I, "big"), 1 << 63, sk_body=b"ct", nat_t=nat)
    pq = decode(port, q)
    assert pq.haslayer(IKEv2_Encrypted) and pq[IKEv2_Encrypted].load == b"ct"
    assert pq[IKEv2].exch_type == 37 and "Initiator" in pq[IKEv2].flags
    bare = wire.build_invalid_ike_spi_reply(q, nat_t=nat)
    assert [n.type for n in notifies(decode(port, bare))] == [4]
    n = IKEv2_Notify(wire.build_qcd_notify(tok))
    assert (n.type, n.proto, n.SPIsize, n.notify, n.length) == (16419, 0, 0, tok, 8 + len(tok))


@pytest.mark.parametrize("port", PORTS)
def test_scapy_requests_the_responder_refuses(port: int) -> None:
    nat = port == 4500
    r = TokenResponder(MAKER, nat_t=nat)
    cases = [
        (IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=37, flags="Response")
         / IKEv2_Encrypted(load=b"x" * 16), Reason.RESPONSE),
        (IKEv2(init_SPI=SPI_I, resp_SPI=bytes(8), exch_type=34, flags="Initiator")
         / IKEv2_Notify(type=16388, notify=b"n" * 20), Reason.IKE_SA_INIT),
        (IKEv2(init_SPI=SPI_I, resp_SPI=SPI_R, exch_type=37, flags="Initiator")
         / IKEv2_Notify(type=16384), Reason.UNPROTECTED),
        (IKEv2(init_SPI=SPI_I, resp_SPI=bytes(8), exch_type=38, flags="Initiator")
         / IKEv2_Notify(type=16413, notify=b"ticket"), Reason.SESSION_RESUME),
    ]
    ds = [payload_of(udp(port, ike)) for ike, _ in cases]
    replies, reasons = r.respond_many(ds)
    assert replies == [None] * len(ds)
    assert reasons.tolist() == [want for _, want in cases]
