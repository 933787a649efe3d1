"""Hypothesis: every parser entry point raises only documented errors on arbitrary and on
mutated input; build -> parse round trips; batch == single."""

from __future__ import annotations

import struct

from hypothesis import given
from hypothesis import strategies as st
from ikeqcd import Reason, TokenMaker, TokenResponder, errors, wire

U64 = st.integers(min_value=0, max_value=2**64 - 1)
NONZERO_U64 = st.integers(min_value=1, max_value=2**64 - 1)
U32 = st.integers(min_value=0, max_value=2**32 - 1)
NAT = st.sampled_from([None, True, False])
TOKEN = st.binary(min_size=16, max_size=128)
TOKENS = st.lists(TOKEN, min_size=1, max_size=4)
EXCHANGE = st.integers(min_value=0, max_value=255)
MAKER = TokenMaker([b"\x01" * 32, b"\x02" * 32])


def parsers_accept_or_raise_documented(data: bytes, nat_t: bool | None) -> None:
    for parse in (wire.parse_message, wire.parse_qcd_reply, wire.parse_header):
        try:
            parse(data, nat_t=nat_t)
        except errors.MalformedMessage as e:
            assert str(e)
    batch = wire.parse_qcd_replies([data], nat_t=nat_t)
    assert len(batch) == 1
    try:
        single = wire.parse_qcd_reply(data, nat_t=nat_t)
    except errors.MalformedMessage:
        assert not batch.ok[0]
    else:
        assert batch.ok[0] and batch.tokens(0) == single.tokens
    r = TokenResponder(MAKER, nat_t=nat_t)
    reply = r.respond(data)
    replies, reasons = r.respond_many([data])
    assert replies == [reply] and reasons[0] in set(Reason)
    if reply is not None:
        h = wire.parse_header(data, nat_t=nat_t)
        got = wire.parse_qcd_reply(reply, nat_t=nat_t)
        assert got.tokens == tuple(MAKER.all_tokens(h.spi_i, h.spi_r))


@given(data=st.binary(max_size=700), nat_t=NAT)
def test_random_bytes_only_documented_errors(data: bytes, nat_t: bool | None) -> None:
    parsers_accept_or_raise_documented(data, nat_t)


@given(data=st.binary(max_size=200), nat_t=NAT)
def test_random_payload_chain_behind_valid_header(data: bytes, nat_t: bool | None) -> None:
    """A consistent header in front of random payload octets reaches the chain walker."""
    for first in (41, 46, 43, 0):
        d = struct.pack("!QQBBBBII", 7 << 40, 9 << 40, first, 0x20, 37, 0x08, 1, 28 + len(data)) + data
        parsers_accept_or_raise_documented(d, nat_t)
        parsers_accept_or_raise_documented(wire.NON_ESP_MARKER + d, nat_t)


@st.composite
def mutated_reply(draw: st.DrawFn) -> bytes:
    spi_i, spi_r, nat_t = draw(NONZERO_U64), draw(NONZERO_U64), draw(st.booleans())
    base = wire.build_qcd_reply(
        wire.build_request(spi_i, spi_r, message_id=draw(U32), nat_t=nat_t),
        draw(TOKENS),
        nat_t=nat_t,
    )
    b = bytearray(base)
    for _ in range(draw(st.integers(min_value=0, max_value=6))):
        at = draw(st.integers(min_value=0, max_value=len(b) - 1))
        b[at] = draw(st.integers(min_value=0, max_value=255))
    cut = draw(st.integers(min_value=0, max_value=len(b)))
    return bytes(b[:cut])


@given(data=mutated_reply(), nat_t=NAT)
def test_mutated_replies_only_documented_errors(data: bytes, nat_t: bool | None) -> None:
    parsers_accept_or_raise_documented(data, nat_t)


@given(
    spi_i=NONZERO_U64,
    spi_r=NONZERO_U64,
    exchange=EXCHANGE,
    message_id=U32,
    initiator=st.booleans(),
    tokens=TOKENS,
    nat_t=st.booleans(),
)
def test_reply_round_trip(
    spi_i: int,
    spi_r: int,
    exchange: int,
    message_id: int,
    initiator: bool,
    tokens: list[bytes],
    nat_t: bool,
) -> None:
    q = wire.build_request(
        spi_i, spi_r, exchange=exchange, message_id=message_id, initiator=initiator, nat_t=nat_t
    )
    hq = wire.parse_message(q, nat_t=nat_t).header
    assert (hq.spi_i, hq.spi_r, hq.exchange, hq.message_id, hq.initiator) == (
        spi_i, spi_r, exchange, message_id, initiator
    )
    reply = wire.build_qcd_reply(q, tokens, nat_t=nat_t)
    r = wire.parse_qcd_reply(reply, nat_t=nat_t)
    assert (r.spi_i, r.spi_r, r.exchange, r.message_id) == (spi_i, spi_r, exchange, message_id)
    assert r.tokens == tuple(tokens) and r.invalid_ike_spi and r.ignored == ()
    assert r.response and r.initiator is (not initiator) and r.nat_t is nat_t
    assert len(reply) == 4 * nat_t + 36 + sum(8 + len(t) for t in tokens)


@given(child=U32, tokens=st.lists(TOKEN, max_size=4), spi_i=U64, spi_r=U64, mid=U32, nat_t=st.booleans())
def test_invalid_spi_round_trip(
    child: int, tokens: list[bytes], spi_i: int, spi_r: int, mid: int, nat_t: bool
) -> None:
    d = wire.build_invalid_spi_message(
        child, tokens, spi_i=spi_i, spi_r=spi_r, message_id=mid, nat_t=nat_t
    )
    r = wire.parse_qcd_reply(d, nat_t=nat_t)
    assert (r.child_spi, r.tokens, r.spi_i, r.spi_r, r.message_id) == (child, tuple(tokens), spi_i, spi_r, mid)
    assert r.invalid_spi and not r.invalid_ike_spi and r.initiator and not r.response


@given(token=TOKEN, nxt=st.integers(min_value=0, max_value=255), other=st.binary(max_size=40))
def test_qcd_notify_round_trip_in_a_chain(token: bytes, nxt: int, other: bytes) -> None:
    """A daemon's chain: N(QCD_TOKEN) followed by a Vendor ID payload."""
    n = wire.build_qcd_notify(token, next_payload=wire.PAYLOAD_VENDOR_ID)
    vid = struct.pack("!BBH", 0, 0, 4 + len(other)) + other
    body = n + vid
    d = struct.pack("!QQBBBBII", 1 << 60, 2 << 60, 41, 0x20, 37, 0x20, 0, 28 + len(body)) + body
    m = wire.parse_message(d)
    assert [p.kind for p in m.payloads] == [41, 43] and m.payloads[1].body == other
    assert m.notifies[0].data == token and m.notifies[0].notify_type == wire.NOTIFY_QCD_TOKEN
    assert wire.build_qcd_notify(token, next_payload=nxt)[0] == nxt


@given(
    items=st.lists(
        st.one_of(st.binary(max_size=120), mutated_reply()), max_size=25
    ),
    nat_t=NAT,
)
def test_batch_parse_equals_single(items: list[bytes], nat_t: bool | None) -> None:
    out = wire.parse_qcd_replies(items, nat_t=nat_t)
    for k, d in enumerate(items):
        try:
            r = wire.parse_qcd_reply(d, nat_t=nat_t)
        except errors.MalformedMessage:
            assert not out.ok[k] and out.tokens(k) == ()
        else:
            assert out.ok[k] and out.tokens(k) == r.tokens and int(out.spi_i[k]) == r.spi_i


@given(
    items=st.lists(
        st.one_of(
            st.binary(max_size=80),
            st.builds(
                lambda a, b, ex, resp, nat: wire.build_request(
                    a, b, exchange=ex, response=resp, nat_t=nat
                ),
                NONZERO_U64,
                U64,
                st.sampled_from([34, 35, 36, 37, 38, 99]),
                st.booleans(),
                st.booleans(),
            ),
        ),
        max_size=20,
    ),
    nat_t=NAT,
)
def test_respond_many_equals_respond(items: list[bytes], nat_t: bool | None) -> None:
    r1, r2 = TokenResponder(MAKER, nat_t=nat_t), TokenResponder(MAKER, nat_t=nat_t)
    singles = [r1.respond(d) for d in items]
    replies, reasons = r2.respond_many(items)
    assert replies == singles and r1.counters == r2.counters
    for d, rep, code in zip(items, replies, reasons.tolist()):
        if rep is None:
            assert code != Reason.REPLIED
            continue
        h = wire.parse_header(d, nat_t=nat_t)
        got = wire.parse_qcd_reply(rep, nat_t=nat_t)
        assert got.tokens == tuple(MAKER.all_tokens(h.spi_i, h.spi_r))
