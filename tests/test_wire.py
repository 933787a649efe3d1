"""ikeqcd.wire: spec cases 1, 2, 13-18, 33, 45, 46 (digest §9), the exact layout of digest
§2.4, UDP/4500 framing, builders, and a corpus of malformed input (documented errors only)."""

from __future__ import annotations

import struct
from collections.abc import Callable

import numpy as np
import pytest
from ikeqcd import TokenMaker, errors, wire

SPI_I = 0x0102030405060708
SPI_R = 0x1112131415161718
TOK32 = bytes(range(0xA0, 0xC0))


def notify(ntype: int, data: bytes = b"", *, nxt: int = 0, proto: int = 0, spi: bytes = b"") -> bytes:
    """An independent encoder for one Notify payload (RFC 7296 §3.10)."""
    return struct.pack("!BBHBBH", nxt, 0, 8 + len(spi) + len(data), proto, len(spi), ntype) + spi + data


def message(
    first: int,
    payloads: bytes,
    *,
    spi_i: int = SPI_I,
    spi_r: int = SPI_R,
    exchange: int = 37,
    flags: int = 0x20,
    message_id: int = 9,
    version: int = 0x20,
    length: int | None = None,
) -> bytes:
    """An independent encoder for an IKE header + payload octets."""
    n = 28 + len(payloads) if length is None else length
    hdr = struct.pack("!QQBBBBII", spi_i, spi_r, first, version, exchange, flags, message_id, n)
    return hdr + payloads


# --- spec case 1 and the exact layout of digest §2.4 -------------------------------------


def test_case_1_qcd_token_notify_encoding() -> None:
    """Case 1: [np][00][len=8+L][proto=00][spisz=00][40 23][token], L in 16..128."""
    for length in (16, 32, 64, 128):
        tok = bytes([length]) * length
        for nxt in (0, 41, 47):
            n = wire.build_qcd_notify(tok, next_payload=nxt)
            assert n == bytes([nxt, 0]) + (8 + length).to_bytes(2, "big") + b"\x00\x00\x40\x23" + tok
    for bad in (15, 129, 0):
        with pytest.raises(errors.InvalidToken):
            wire.build_qcd_notify(bytes(bad))
    with pytest.raises(errors.InvalidArgument):
        wire.build_qcd_notify(bytes(16), next_payload=256)


def test_digest_2_4_exact_layout_76_octets() -> None:
    """Digest §2.4: one 32-octet token on UDP/500 gives exactly these 76 octets."""
    req = wire.build_request(SPI_I, SPI_R, exchange=37, message_id=0xCAFE0001, initiator=True)
    reply = wire.build_qcd_reply(req, [TOK32])
    want = (
        bytes.fromhex("0102030405060708" "1112131415161718")
        + bytes([0x29, 0x20, 0x25, 0x20])  # Notify, 2.0, INFORMATIONAL, R=1 I=0 (request had I=1)
        + bytes.fromhex("cafe0001")
        + (76).to_bytes(4, "big")
        + bytes([0x29, 0x00, 0x00, 0x08, 0x00, 0x00, 0x00, 0x04])  # N(INVALID_IKE_SPI)
        + bytes([0x00, 0x00, 0x00, 0x28, 0x00, 0x00, 0x40, 0x23])  # N(QCD_TOKEN), proto 0
        + TOK32
    )
    assert len(reply) == 76
    assert reply == want


def test_reply_maximum_is_580_octets() -> None:
    req = wire.build_request(SPI_I, SPI_R)
    reply = wire.build_qcd_reply(req, [bytes([g]) * 128 for g in range(4)])
    assert len(reply) == 580 == int.from_bytes(reply[24:28], "big")
    with pytest.raises(errors.InvalidToken):
        wire.build_qcd_reply(req, [bytes(16)] * 5)
    with pytest.raises(errors.InvalidToken):
        wire.build_qcd_reply(req, [])
    with pytest.raises(errors.InvalidToken):
        wire.build_qcd_reply(req, bytes(32))  # type: ignore[arg-type]  # not a list
    with pytest.raises(errors.InvalidToken):
        wire.build_qcd_reply(req, ["not bytes"])  # type: ignore[list-item]


# --- spec case 2 and 33: what the parser accepts -----------------------------------------


def test_case_2_protocol_id_1_accepted() -> None:
    """Case 2: a QCD_TOKEN with Protocol ID 1 (pre-erratum) parses; the field is ignored."""
    body = notify(4, nxt=41) + notify(16419, TOK32, proto=1)
    r = wire.parse_qcd_reply(message(41, body))
    assert r.tokens == (TOK32,) and r.invalid_ike_spi and r.ignored == ()


def test_case_33_any_order_and_without_invalid_ike_spi() -> None:
    """Case 33: QCD_TOKEN before INVALID_IKE_SPI, or with no INVALID_IKE_SPI (§7 figure)."""
    t2 = bytes(range(16))
    before = message(41, notify(16419, TOK32, nxt=41) + notify(16419, t2, nxt=41) + notify(4))
    r = wire.parse_qcd_reply(before)
    assert r.tokens == (TOK32, t2) and r.invalid_ike_spi
    alone = wire.parse_qcd_reply(message(41, notify(16419, TOK32)))
    assert alone.tokens == (TOK32,) and not alone.invalid_ike_spi


def test_case_46_unknown_status_notify_skipped() -> None:
    """Case 46: unknown status notifies (and other payload types) do not fail the message."""
    body = (
        notify(40000, b"whatever", nxt=43)
        + struct.pack("!BBH", 41, 0, 8) + b"VID!"  # a Vendor ID payload
        + notify(4, nxt=41)
        + notify(16419, TOK32)
    )
    r = wire.parse_qcd_reply(message(41, body))
    assert r.tokens == (TOK32,) and r.invalid_ike_spi
    m = wire.parse_message(message(41, body))
    assert [p.kind for p in m.payloads] == [41, 43, 41, 41]
    assert [n.notify_type for n in m.notifies] == [40000, 4, 16419]
    assert [n.index for n in m.notifies] == [0, 2, 3]
    assert m.notifies[2].data == TOK32 and m.notifies[2].protocol_id == 0


def test_four_tokens_and_out_of_range_ones_ignored() -> None:
    """Case 31 shape / T-8: at least 4 tokens are kept; out-of-range ones are reported."""
    toks = [bytes([g]) * (16 + g) for g in range(4)]
    short, long_ = bytes(15), bytes(129)
    body = notify(4, nxt=41)
    chain = [short, *toks[:2], long_, *toks[2:]]
    for k, t in enumerate(chain):
        body += notify(16419, t, nxt=41 if k + 1 < len(chain) else 0)
    r = wire.parse_qcd_reply(message(41, body))
    assert r.tokens == tuple(toks)
    assert [i.position for i in r.ignored] == [0, 3]
    assert "15" in r.ignored[0].reason and "129" in r.ignored[1].reason
    # With an SPI (SPI Size must be 0) the token is ignored too.
    r = wire.parse_qcd_reply(message(41, notify(16419, TOK32, spi=b"\x01\x02\x03\x04")))
    assert r.tokens == () and r.ignored[0].reason.startswith("SPI")


def test_token_cap() -> None:
    n = wire.MAX_REPLY_TOKENS + 3
    body = b"".join(notify(16419, bytes([k]) * 16, nxt=41 if k + 1 < n else 0) for k in range(n))
    r = wire.parse_qcd_reply(message(41, body))
    assert len(r.tokens) == wire.MAX_REPLY_TOKENS >= 4
    assert [i.position for i in r.ignored] == list(range(wire.MAX_REPLY_TOKENS, n))


def test_plain_invalid_ike_spi_and_repr_hides_tokens() -> None:
    req = wire.build_request(SPI_I, SPI_R, message_id=77, initiator=False)
    bare = wire.build_invalid_ike_spi_reply(req)
    assert len(bare) == 36
    r = wire.parse_qcd_reply(bare)
    assert r.invalid_ike_spi and r.tokens == () and r.message_id == 77
    assert r.flags == wire.FLAG_R | wire.FLAG_I  # request had I=0
    full = wire.parse_qcd_reply(wire.build_qcd_reply(req, [TOK32]))
    assert TOK32.hex() not in repr(full) and repr(TOK32) not in repr(full)
    n = wire.parse_message(wire.build_qcd_reply(req, [TOK32])).notifies[1]
    assert repr(TOK32) not in repr(n)


# --- spec cases 13-15, 45: the reply header ----------------------------------------------


@pytest.mark.parametrize("exchange", [37, 36, 35])
@pytest.mark.parametrize("initiator", [True, False])
def test_cases_13_15_45_reply_header(exchange: int, initiator: bool) -> None:
    """Cases 13, 15, 45: SPIs and Message ID copied, exchange copied, R=1, V=0, version 0x20,
    Next Payload 41, INVALID_IKE_SPI then QCD_TOKEN, no SK payload."""
    req = wire.build_request(
        SPI_I, SPI_R, exchange=exchange, message_id=0x01020304, initiator=initiator
    )
    reply = wire.build_qcd_reply(req, [TOK32, bytes(16)])
    h = wire.parse_header(reply)
    assert (h.spi_i, h.spi_r, h.message_id, h.exchange) == (SPI_I, SPI_R, 0x01020304, exchange)
    assert h.version == 0x20 and h.next_payload == 41
    assert h.response and not h.flags & wire.FLAG_V
    assert h.initiator is (not initiator)
    assert h.flags & ~(wire.FLAG_R | wire.FLAG_I) == 0
    m = wire.parse_message(reply)
    assert [p.kind for p in m.payloads] == [41, 41, 41]
    assert [n.notify_type for n in m.notifies] == [4, 16419, 16419]
    assert all(n.protocol_id == 0 and n.spi == b"" for n in m.notifies)
    assert m.notifies[0].data == b"" and not m.encrypted


def test_case_14_udp_4500_marker() -> None:
    """Case 14: on UDP/4500 the reply has the 4-octet zero marker; Length excludes it."""
    req = wire.build_request(SPI_I, SPI_R, nat_t=True)
    assert req[:4] == wire.NON_ESP_MARKER
    assert wire.parse_message(req, nat_t=True).nat_t
    reply = wire.build_qcd_reply(req, [TOK32], nat_t=True)
    assert reply[:4] == b"\x00\x00\x00\x00" and len(reply) == 80
    assert int.from_bytes(reply[4 + 24 : 4 + 28], "big") == 76
    assert reply[4:] == wire.build_qcd_reply(req[4:], [TOK32])
    for nat in (True, None):
        r = wire.parse_qcd_reply(reply, nat_t=nat)
        assert r.nat_t and r.tokens == (TOK32,)
    with pytest.raises(errors.MalformedMessage):
        wire.parse_qcd_reply(reply, nat_t=False)
    # auto-detection: a port-500 message whose SPI-I starts with four zero octets
    low = wire.build_qcd_reply(wire.build_request(0x1234, SPI_R), [TOK32])
    assert low[:4] == b"\x00" * 4
    r = wire.parse_qcd_reply(low)
    assert not r.nat_t and r.spi_i == 0x1234


def test_esp_on_4500_is_not_ike() -> None:
    esp = struct.pack("!II", 0xC0FFEE01, 1) + bytes(40)
    with pytest.raises(errors.MalformedMessage, match="ESP"):
        wire.parse_message(esp, nat_t=True)
    with pytest.raises(errors.MalformedMessage, match="keepalive"):
        wire.parse_qcd_reply(b"\xff", nat_t=True)
    with pytest.raises(errors.MalformedMessage):
        wire.parse_message(b"\x00\x00", nat_t=True)


# --- §8.2 and the request builder --------------------------------------------------------


def test_invalid_spi_message_8_2() -> None:
    m = TokenMaker(bytes(32))
    tok = m.token(SPI_I, SPI_R)
    d = wire.build_invalid_spi_message(0xDEADBEEF, [tok])
    h = wire.parse_header(d)
    assert h.flags == wire.FLAG_I and h.exchange == 37 and h.message_id == 0
    assert (h.spi_i, h.spi_r) == (0, 0)
    r = wire.parse_qcd_reply(d)
    assert r.invalid_spi and not r.invalid_ike_spi and r.child_spi == 0xDEADBEEF
    assert r.tokens == (tok,)
    n = wire.parse_message(d).notifies[0]
    assert (n.notify_type, n.protocol_id, n.spi, n.data) == (11, 0, b"", b"\xde\xad\xbe\xef")
    plain = wire.build_invalid_spi_message(7, spi_i=5, spi_r=6, nat_t=True)
    r = wire.parse_qcd_reply(plain, nat_t=True)
    assert r.tokens == () and r.child_spi == 7 and (r.spi_i, r.spi_r) == (5, 6)
    with pytest.raises(errors.InvalidArgument):
        wire.build_invalid_spi_message(2**32, [tok])
    with pytest.raises(errors.InvalidSpi):
        wire.build_invalid_spi_message(1, [tok], spi_i=-1)


def test_build_request_shape_case_43() -> None:
    """Case 43 shape: header (37, R=0, next 46) + SK whose inner Next Payload is 0; by
    default the SK body has the size of an empty INFORMATIONAL under AES-GCM-16 (IV 8, Pad
    Length 1, ICV 16), never empty: an empty SK is not a real liveness check."""
    d = wire.build_request(SPI_I, SPI_R)
    assert len(d) == 28 + 4 + wire.LIVENESS_SK_BODY == 57
    m = wire.parse_message(d)
    assert m.encrypted and m.header.next_payload == 46 and not m.header.response
    assert m.payloads[0].next_payload == 0 and m.payloads[0].body == bytes(25)
    d = wire.build_request(SPI_I, SPI_R, inner_next=41, sk_body=b"iv+ct+icv", response=True)
    m = wire.parse_message(d)
    assert m.payloads[0].next_payload == 41 and m.payloads[0].body == b"iv+ct+icv"
    assert m.header.response
    bads: list[Callable[[], object]] = [
        lambda: wire.build_request(SPI_I, SPI_R, exchange=256),
        lambda: wire.build_request(SPI_I, SPI_R, message_id=-1),
        lambda: wire.build_request(SPI_I, SPI_R, sk_body="text"),  # type: ignore[arg-type]
        lambda: wire.build_request(SPI_I, SPI_R, nat_t="yes"),  # type: ignore[arg-type]
        lambda: wire.build_request(SPI_I, SPI_R, initiator=1),  # type: ignore[arg-type]
    ]
    for bad in bads:
        with pytest.raises(errors.InvalidArgument):
            bad()
    with pytest.raises(errors.InvalidSpi):
        wire.build_request(2**64, 1)
    with pytest.raises(errors.InvalidArgument):
        wire.build_request(1, 2, sk_body=bytes(65532))


def test_build_from_parsed_header_or_message() -> None:
    req = wire.build_request(SPI_I, SPI_R, exchange=36, message_id=4)
    a = wire.build_qcd_reply(req, [TOK32])
    assert wire.build_qcd_reply(wire.parse_message(req), [TOK32]) == a
    assert wire.build_qcd_reply(wire.parse_header(req), [TOK32]) == a
    assert wire.build_qcd_reply(bytearray(req), [memoryview(TOK32)]) == a
    assert wire.build_invalid_ike_spi_reply(wire.parse_header(req)) == wire.build_invalid_ike_spi_reply(req)


# --- spec cases 16-18 at the codec level (the decisions live in test_responder.py) --------


def test_cases_16_17_18_header_fields_visible() -> None:
    """Cases 16-18: the fields the responder decides on are parsed faithfully."""
    init = message(33, struct.pack("!BBH", 0, 0, 4), spi_r=0, exchange=34, flags=0x08, message_id=0)
    h = wire.parse_message(init).header
    assert h.exchange == 34 and h.spi_r == 0 and not h.response
    resp = wire.build_request(SPI_I, SPI_R, response=True)
    assert wire.parse_header(resp).response


# --- batch parse ---------------------------------------------------------------------------


def test_parse_qcd_replies_batch_equals_single() -> None:
    m = TokenMaker([b"a" * 32, b"b" * 32])
    good = [
        wire.build_qcd_reply(wire.build_request(k + 2**40, k + 2**50, message_id=k), m.all_tokens(k + 2**40, k + 2**50))
        for k in range(50)
    ]
    d82 = wire.build_invalid_spi_message(99, [m.token(1, 2)])
    nat = wire.build_qcd_reply(wire.build_request(SPI_I, SPI_R, nat_t=True), [TOK32], nat_t=True)
    ds: list[bytes] = [*good, b"", b"junk" * 10, d82, good[3][:-1], nat]
    out = wire.parse_qcd_replies(ds)
    assert len(out) == len(ds)
    assert out.ok.tolist() == [True] * 50 + [False, False, True, False, True]
    for k, d in enumerate(ds):
        if not out.ok[k]:
            with pytest.raises(errors.MalformedMessage):
                wire.parse_qcd_reply(d)
            assert out.tokens(k) == () and out.spi_i[k] == 0
            continue
        r = wire.parse_qcd_reply(d)
        assert out.tokens(k) == r.tokens
        assert (int(out.spi_i[k]), int(out.spi_r[k]), int(out.message_id[k])) == (r.spi_i, r.spi_r, r.message_id)
        assert (int(out.exchange[k]), int(out.flags[k])) == (r.exchange, r.flags)
        assert bool(out.invalid_ike_spi[k]) == r.invalid_ike_spi
        assert bool(out.invalid_spi[k]) == r.invalid_spi
        assert bool(out.nat_t[k]) == r.nat_t
        assert int(out.child_spi[k]) == (r.child_spi or 0)
        assert int(out.ignored[k]) == len(r.ignored)
    assert out.token_count.tolist()[:2] == [2, 2] and out.tokens(-1) == (TOK32,)
    assert out.spi_i.dtype == np.uint64 and out.token_data.dtype == np.uint8
    with pytest.raises(IndexError):
        out.tokens(len(ds))
    assert len(wire.parse_qcd_replies([])) == 0
    assert len(wire.parse_qcd_replies(tuple(ds))) == len(ds)
    assert wire.parse_qcd_replies([bytearray(ds[0]), memoryview(ds[0])]).ok.all()
    with pytest.raises(errors.InvalidArgument):
        wire.parse_qcd_replies(ds[0])  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        wire.parse_qcd_replies([ds[0], "text"])  # type: ignore[list-item]
    with pytest.raises(errors.InvalidArgument):
        wire.parse_qcd_replies(42)  # type: ignore[arg-type]


# --- the malformed corpus ------------------------------------------------------------------

PARSERS: list[Callable[[bytes], object]] = [
    lambda d: wire.parse_message(d, nat_t=False),
    lambda d: wire.parse_qcd_reply(d, nat_t=False),
    lambda d: wire.parse_message(d),
    lambda d: wire.parse_qcd_reply(d),
]


def _all_fail(d: bytes, match: str | None = None) -> None:
    for parse in PARSERS:
        with pytest.raises(errors.MalformedMessage, match=match):
            parse(d)
    assert not wire.parse_qcd_replies([d], nat_t=False).ok[0]


def test_truncated_at_every_length() -> None:
    full = wire.build_qcd_reply(wire.build_request(SPI_I, SPI_R), [TOK32, bytes(16)])
    wire.parse_message(full)
    for n in range(len(full)):
        _all_fail(full[:n])
    nat = wire.NON_ESP_MARKER + full
    assert wire.parse_qcd_reply(nat, nat_t=True).nat_t
    for n in range(len(nat)):
        with pytest.raises(errors.MalformedMessage):
            wire.parse_qcd_reply(nat[:n], nat_t=True)


def test_lying_lengths() -> None:
    full = bytearray(wire.build_qcd_reply(wire.build_request(SPI_I, SPI_R), [TOK32]))
    for length in (0, 27, 28, 75, 77, 1 << 31, 0xFFFFFFFF):
        d = bytearray(full)
        d[24:28] = length.to_bytes(4, "big")
        _all_fail(bytes(d))
    _all_fail(bytes(full) + b"\x00", match="Length field")  # datagram longer than Length
    d = bytearray(full)  # Length agrees, but the chain leaves trailing octets
    d += b"\x00" * 4
    d[24:28] = (len(d)).to_bytes(4, "big")
    _all_fail(bytes(d), match="trailing")
    d = bytearray(full)  # last payload claims fewer octets than it has
    d[38:40] = (40 - 1).to_bytes(2, "big")
    _all_fail(bytes(d))
    d = bytearray(full)  # SPI Size runs past the notify's end
    d[33] = 200
    _all_fail(bytes(d), match="SPI Size")


def test_zero_length_and_short_payloads() -> None:
    for plen in (0, 1, 2, 3):
        d = message(41, struct.pack("!BBH", 0, 0, plen) + bytes(4))
        _all_fail(d, match="less than its 4-octet header")
    for body in (b"", b"\x00\x00\x00"):  # a Notify body shorter than its 4 fixed octets
        _all_fail(message(41, struct.pack("!BBH", 0, 0, 4 + len(body)) + body), match="at least 4")


def test_chain_past_the_end_and_next_without_payload() -> None:
    _all_fail(message(41, notify(4, nxt=41)), match="truncated")  # next says 41, nothing follows
    _all_fail(message(41, struct.pack("!BBH", 0, 0, 200) + bytes(8)), match="past the end")
    # SK payload that is not last
    body = struct.pack("!BBH", 0, 0, 8) + bytes(4) + notify(4)
    _all_fail(message(46, body), match="must be the last")


def test_chain_cannot_loop_and_65535_payloads_bounded() -> None:
    """Payload lengths >= 4 make every step advance, and the chain is capped."""
    n = 65_535
    body = b"".join(struct.pack("!BBH", 43 if k + 1 < n else 0, 0, 4) for k in range(n))
    d = message(43, body)
    _all_fail(d, match="too many payloads")
    ok = message(43, b"".join(struct.pack("!BBH", 43 if k + 1 < 500 else 0, 0, 4) for k in range(500)))
    assert len(wire.parse_message(ok).payloads) == 500


def test_version_1_and_others() -> None:
    req = bytearray(wire.build_request(SPI_I, SPI_R))
    for version in (0x10, 0x00, 0x30, 0xF0):
        req[17] = version
        _all_fail(bytes(req), match="not IKEv2")
    req[17] = 0x21  # minor version is ignored
    wire.parse_message(bytes(req))
    req[19] |= wire.FLAG_V | 0x80 | 0x01  # V and X bits ignored on receipt
    assert wire.parse_message(bytes(req)).header.flags & wire.FLAG_V
    with pytest.raises(errors.MalformedMessage, match="not IKEv2"):
        wire.parse_header(bytes(req[:17]) + b"\x10" + bytes(req[18:]))


@pytest.mark.parametrize("bad", [None, 1, "x", 3.5])
def test_wrong_types_are_invalid_argument(bad: object) -> None:
    for call in (wire.parse_message, wire.parse_qcd_reply, wire.parse_header):
        with pytest.raises(errors.InvalidArgument):
            call(bad)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        wire.parse_message(b"", nat_t="auto")  # type: ignore[arg-type]


def test_module_examples_run() -> None:
    """The examples in the module docstrings of ikeqcd.wire and ikeqcd.pcap are executed."""
    import doctest

    from ikeqcd import pcap

    for mod in (wire, pcap):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.failed == 0 and res.attempted > 0, mod.__name__
