"""Regression tests for the security review (issue 16): each failed on the code before it.

1. Dual-stack source keys: IPv4-mapped IPv6 sources are keyed per IPv4 host, apart from IPv6
   (Python ``_keys`` and the Rust socket path share one rule, ``rust/srckey.rs``).
2. Reflection: SK bodies shorter than the smallest real one draw no reply; a reply stays
   within 2x its request on the wire; ``TokenResponder`` applies ``MakerPolicy()`` unless told
   otherwise.
3. Dampening is keyed on the peer identity of the protected exchange, never on the source
   of the unprotected reply (see also test_taker.py's dampening tests and model).
4. Hostile clock values are refused with ``InvalidArgument`` and leave no poisoned state; no
   core entry point raises ``PanicException`` on any input.
"""

from __future__ import annotations

import ipaddress
import math
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from ikeqcd import (
    FailureDetector,
    MakerPolicy,
    RateLimiter,
    Reason,
    SaTable,
    TakerPolicy,
    TokenMaker,
    TokenResponder,
    VerdictKind,
    _core,
    errors,
    wire,
)
from ikeqcd._keys import UNKNOWN_SOURCE, source_key

A, B = 0x1111_2222_3333_4444, 0x5555_6666_7777_8888
MAKER = TokenMaker([b"\x31" * 32])

# --------------------------------------------------------------- 1. dual-stack source keys

V4 = st.integers(0, 2**32 - 1).map(lambda n: ipaddress.IPv4Address(n))
V6 = st.integers(0, 2**128 - 1).map(lambda n: ipaddress.IPv6Address(n))


@given(a=V4, b=V4)
def test_mapped_ipv4_is_keyed_per_host(a: ipaddress.IPv4Address, b: ipaddress.IPv4Address) -> None:
    mapped = f"::ffff:{a}"
    assert source_key(mapped) == source_key(str(a))
    if a != b:
        assert source_key(f"::ffff:{b}") != source_key(mapped)


@given(a=V4, b=V6)
def test_ipv4_and_ipv6_key_spaces_never_meet(
    a: ipaddress.IPv4Address, b: ipaddress.IPv6Address
) -> None:
    if b.ipv4_mapped is not None:
        assert source_key(str(b)) == source_key(str(b.ipv4_mapped))
    else:
        assert source_key(str(b)) != source_key(str(a))
        if not b.is_multicast:  # never a source address; keyed UNKNOWN
            assert source_key(str(b)) == int(b) >> 64  # one key per /64


def test_loopback_and_unparseable_keys() -> None:
    assert source_key("::1") != source_key("::ffff:127.0.0.1") == source_key("127.0.0.1")
    assert source_key("0.0.0.0") != source_key("::")
    assert source_key("not-an-address") == UNKNOWN_SOURCE == source_key("ff02::1")
    # the core's function is the one Python uses: raw octets in
    assert _core._source_key(bytes([192, 0, 2, 1])) == source_key("192.0.2.1")
    assert _core._source_key(b"\x00" * 3) == UNKNOWN_SOURCE


def test_maker_limit_is_per_mapped_ipv4_host() -> None:
    """One IPv4 host on a dual-stack socket no longer spends every IPv4 peer's budget."""
    r = TokenResponder(
        MAKER, policy=MakerPolicy(per_source_rate=0.0, per_source_burst=5.0, bare_rate=0.0),
        clock=lambda: 100.0,
    )
    q = wire.build_request(A, B)
    noisy = ("::ffff:198.51.100.1", 500)
    _, reasons = r.respond_many([q] * 50, [noisy] * 50)
    assert int((reasons == Reason.REPLIED).sum()) == 5
    for k in range(2, 12):  # every other IPv4 peer still gets its token
        assert r.respond(q, (f"::ffff:198.51.100.{k}", 500)) is not None
    assert r.respond(q, ("198.51.100.1", 500)) is None  # the same host over plain IPv4


def test_taker_limit_is_per_mapped_ipv4_host() -> None:
    """20 000 junk replies from one mapped address do not make a genuine token from another
    mapped address RATE_LIMITED (the restart is still detected)."""
    policy = TakerPolicy.rfc6290().with_(verify_rate=10.0, verify_burst=1000.0)
    det = FailureDetector(policy=policy, clock=lambda: 5.0)
    det.token_received(A, B, MAKER.token(A, B), peer="gw")
    req = wire.build_request(A, B, message_id=3)
    junk = wire.build_qcd_reply(req, [b"\x00" * 32])
    kinds = {det.receive(junk, ("::ffff:203.0.113.66", 500)).kind for _ in range(20_000)}
    assert VerdictKind.RATE_LIMITED in kinds
    good = wire.build_qcd_reply(req, [MAKER.token(A, B)])
    assert det.receive(good, ("::ffff:203.0.113.7", 500)).restarted


@contextmanager
def _dual_stack_server(policy: MakerPolicy) -> Iterator[tuple[str, int]]:
    from ikeqcd.net import Server

    srv = Server("[::]:0", MAKER, policy=policy)
    t = threading.Thread(target=srv.run, daemon=True)
    t.start()
    try:
        yield srv.address
    finally:
        srv.stop()
        t.join(5)


@pytest.mark.skipif(sys.platform != "linux", reason="recvmmsg/sendmmsg: Linux only")
def test_socket_path_keys_mapped_sources_per_host() -> None:
    """The Rust socket path: on a dual-stack [::] socket, IPv4 peers (seen as ::ffff:a.b.c.d)
    each have their own per-source bucket."""
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        probe.bind(("::", 0))
        probe.close()
    except OSError as e:
        pytest.skip(f"no dual-stack IPv6 socket here: {e}")
    policy = MakerPolicy(per_source_rate=0.0, per_source_burst=3.0, bare_rate=0.0)
    with _dual_stack_server(policy) as (_, port):
        def answers(src: str, n: int) -> int:
            got = 0
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as c:
                c.bind((src, 0))
                c.settimeout(0.3)
                for k in range(n):
                    c.sendto(wire.build_request(A + k, B, message_id=k), ("127.0.0.1", port))
                    try:
                        c.recvfrom(2048)
                        got += 1
                    except TimeoutError:
                        pass
            return got

        assert answers("127.0.0.1", 6) == 3
        assert answers("127.0.0.2", 4) == 3  # another IPv4 host: its own bucket


# ----------------------------------------------------------------------- 2. reflection

PROFILES = [("hmac-sha256", None), ("hmac-sha512", None), ("hmac-sha1", None),
            ("hmac-sha256", 16), ("hmac-sha512", 48)]


def _wire(n: int, v6: bool) -> int:
    return n + (40 if v6 else 20) + 8


@settings(max_examples=300)
@given(
    profile=st.sampled_from(PROFILES),
    gens=st.integers(1, 4),
    body=st.integers(0, 400),
    nat_t=st.booleans(),
)
def test_reply_within_twice_the_request_on_the_wire(
    profile: tuple[str, int | None], gens: int, body: int, nat_t: bool
) -> None:
    alg, tl = profile
    m = TokenMaker([bytes([g + 1]) * 32 for g in range(gens)], algorithm=alg, token_len=tl)
    r = TokenResponder(m, policy=MakerPolicy.unlimited())
    q = wire.build_request(A, B, sk_body=bytes(body), nat_t=nat_t)
    reply = r.respond(q)
    if body < wire.MIN_SK_BODY:
        assert reply is None
        assert r.counters[Reason.UNPROTECTED] == 1
        return
    assert reply is not None
    for v6 in (False, True):
        assert _wire(len(reply), v6) <= 2 * _wire(len(q), v6)
    tokens = wire.parse_qcd_reply(reply, nat_t=nat_t).tokens
    assert 1 <= len(tokens) <= gens
    assert list(tokens) == m.all_tokens(A, B)[: len(tokens)]  # the oldest are dropped first
    # and no more were dropped than needed
    if len(tokens) < gens:
        bigger = len(reply) + 8 + m.token_len
        assert _wire(bigger, False) > 2 * _wire(len(q), False)


def test_minimal_sk_bodies() -> None:
    """An SK body of 16 octets cannot come from a real SA (AES-GCM-8: IV 8 + Pad Length 1 +
    ICV 8 = 17 is the smallest); the 32-octet 'header + empty SK' probe draws nothing."""
    r = TokenResponder(MAKER, policy=MakerPolicy.unlimited())
    assert wire.MIN_SK_BODY == 17
    assert r.respond(wire.build_request(A, B, sk_body=b"")) is None
    assert r.respond(wire.build_request(A, B, sk_body=bytes(16))) is None
    assert r.respond(wire.build_request(A, B, sk_body=bytes(17))) is not None
    assert r.respond(wire.build_request(A, B)) is not None  # default: a real liveness size
    assert r.counters[Reason.UNPROTECTED] == 2


def test_default_responder_is_rate_limited() -> None:
    """100 000 spoofed requests 'from' one victim address draw at most the per-source burst
    of tokens plus the bare fallback's limit, not 100 000 replies."""
    r = TokenResponder(MAKER, clock=lambda: 50.0)
    assert r.policy == MakerPolicy()
    q = wire.build_request(A, B)
    replies, reasons = r.respond_many([q] * 100_000, [("192.0.2.50", 500)] * 100_000)
    sent = sum(x is not None for x in replies)
    p = MakerPolicy()
    assert int((reasons == Reason.REPLIED).sum()) == p.per_source_burst
    assert sent <= p.per_source_burst + p.bare_rate + 1
    unlimited = TokenResponder(MAKER, policy=MakerPolicy.unlimited())
    assert all(x is not None for x in unlimited.respond_many([q] * 1000)[0])


# ------------------------------------------------------------------------ 3. dampening


def test_hardened_dampening_survives_a_spoofed_source() -> None:
    """Hardened preset: after a QCD teardown, a replayed valid token for the re-established
    SA is DAMPENED whatever source it comes from (before: DEFERRED -> PeerRestarted from any
    address other than the real peer's)."""
    t = [0.0]
    det = FailureDetector(policy=TakerPolicy.hardened(), clock=lambda: t[0])
    det.token_received(A, B, MAKER.token(A, B), peer="gw-b")
    det.request_sent(A, B, 1)
    first = wire.build_qcd_reply(wire.build_request(A, B, message_id=1), [MAKER.token(A, B)])
    assert det.receive(first, ("192.0.2.2", 500)).kind is VerdictKind.DEFERRED
    t[0] = 1.0
    assert [type(e).__name__ for e in det.poll()] == ["PeerRestarted"]
    c, d = A + 1, B + 1  # re-established with the same peer
    det.token_received(c, d, MAKER.token(c, d), peer="gw-b")
    det.request_sent(c, d, 2)
    replay = wire.build_qcd_reply(wire.build_request(c, d, message_id=2), [MAKER.token(c, d)])
    for src in (("192.0.2.2", 500), ("198.51.100.66", 500), ("2001:db8::66", 4500)):
        assert det.receive(replay, src).kind is VerdictKind.DAMPENED
    t[0] = 2.0
    assert det.poll() == []


# ---------------------------------------------------------------------- 4. clock values

HOSTILE = [math.nan, math.inf, -math.inf, 1e308, -1e308, 1.0000001e12, -2e12]
ANY_FLOAT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(HOSTILE + [5e-324, -5e-324, 0.0, -0.0, 1e12, 2.2250738585072014e-308]),
)


def _usable(t: float) -> bool:
    return math.isfinite(t) and abs(t) <= 1e12


@settings(max_examples=200)
@given(now=ANY_FLOAT, later=st.floats(0, 1e6))
def test_table_refuses_hostile_now_and_stays_sane(now: float, later: float) -> None:
    t = SaTable()
    t.insert(A, B, b"\x01" * 32, now=10.0)
    calls: list[Callable[[], object]] = [
        lambda: t.insert(A + 1, B, b"\x02" * 32, now=now),
        lambda: t.touch(A, B, now, inbound=True),
        lambda: t.touch_many(np.array([A], np.uint64), np.array([B], np.uint64), now, inbound=False),
        lambda: t.due_liveness(now, idle=1.0),
        lambda: t.due_liveness(20.0, idle=now),
    ]
    for call in calls:
        try:
            call()
        except errors.InvalidArgument:
            pass
    stamps = t.timestamps(A, B)
    assert stamps is not None and all(math.isfinite(x) for x in stamps)
    t.touch(A, B, 10.0 + later, inbound=False)  # a sane time still works afterwards
    assert t.due_liveness(10.0 + later + 5.0, idle=1.0)[0].tolist() in ([A], [])
    if not _usable(now):
        with pytest.raises(errors.InvalidArgument, match="finite"):
            t.touch(A, B, now, inbound=True)


def test_huge_now_no_longer_poisons_the_epoch() -> None:
    t = SaTable()
    with pytest.raises(errors.InvalidArgument):
        t.insert(A, B, b"\x01" * 32, now=1e308)
    t.insert(A, B, b"\x01" * 32, now=1.0)
    with pytest.raises(errors.InvalidArgument):
        t.touch(A, B, 1e308, inbound=True)
    assert t.timestamps(A, B) == (1.0, 1.0)


@given(now=ANY_FLOAT)
def test_rate_limiter_refuses_hostile_now(now: float) -> None:
    rl = RateLimiter(1.0, 2.0, max_keys=4)
    if _usable(now):
        assert rl.allow(7, now) is True
        assert len(rl) == 1
        return
    with pytest.raises(errors.InvalidArgument):
        rl.allow(7, now)
    with pytest.raises(errors.InvalidArgument):
        rl.allow_many(np.array([7, 8], np.uint64), now)
    assert len(rl) == 0  # no bucket that never refills and never leaves the map
    assert rl.allow(7, 0.0) and rl.allow(7, 0.0) and not rl.allow(7, 0.0)
    assert rl.allow(7, 1.0)  # and it refills


@given(now=ANY_FLOAT)
def test_policy_layer_refuses_hostile_clock(now: float) -> None:
    det = FailureDetector(policy=TakerPolicy.rfc6290(), clock=lambda: now)
    r = TokenResponder(MAKER, clock=lambda: now)
    q = wire.build_request(A, B)
    if _usable(now):
        det.token_received(A, B, MAKER.token(A, B))
        assert r.respond(q, ("192.0.2.1", 500)) is not None
        return
    with pytest.raises(errors.InvalidArgument, match="clock"):
        det.token_received(A, B, MAKER.token(A, B))
    with pytest.raises(errors.InvalidArgument):
        det.poll()
    with pytest.raises(errors.InvalidArgument):
        r.respond(q, ("192.0.2.1", 500))
    with pytest.raises(errors.InvalidArgument):
        det.due_liveness(now)
    with pytest.raises(errors.InvalidArgument):
        TokenResponder(MAKER, policy=MakerPolicy(token_window=5.0), clock=lambda: now)


def test_due_liveness_extremes_do_not_panic() -> None:
    """Before the fix ``now_t - tin`` could overflow into a PanicException (a BaseException
    that escapes ``except Exception``)."""
    t = SaTable()
    t.insert(A, B, b"\x01" * 32, now=1e12 - 10)
    t.touch(A, B, 1e12, inbound=False)
    assert t.due_liveness(-1e12, idle=0.0)[0].tolist() == []
    assert t.due_liveness(1e12, idle=1e12)[0].tolist() == []
    assert t.due_liveness(1e12, idle=0.0)[0].tolist() == [A]


# ------------------------------------------------ no panic crosses into Python, any input

_ARG = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**70), 2**70),
    ANY_FLOAT,
    st.binary(max_size=80),
    st.text(max_size=8),
    st.just(np.array([1, 2], np.uint64)),
    st.just(np.zeros((2, 32), np.uint8)),
    st.just(np.zeros(3, np.int64)),
    st.just(np.zeros((2, 20), np.uint8)),  # AES-GCM keys (the simulator's _aead_* rows)
    st.just(np.zeros((2, 64), np.uint8)),
    st.sampled_from([2**63, 2**64 - 1, 2**64 - 8]),  # usize edges
)


def _entry_points() -> dict[str, Callable[..., object]]:
    m = TokenMaker([b"\x01" * 32, b"\x02" * 32])
    t = SaTable(history=2)
    t.insert(A, B, b"\x03" * 32, now=0.0)
    rl = RateLimiter(10.0, 10.0)
    pm = _core._PairMap()
    pm.set(A, B, 7)
    resp = _core._Responder(m)
    gate = _core._MakerGate(enabled=True, per_source_rate=1.0, per_source_burst=1.0,
                            global_rate=10.0, global_burst=10.0, bare_rate=1.0,
                            fallback="bare", window_end=None, max_sources=8)
    eps: dict[str, Callable[..., object]] = {
        "TokenMaker": TokenMaker,
        "token": m.token, "all_tokens": m.all_tokens, "tokens": m.tokens,
        "verify": m.verify, "verify_many": m.verify_many,
        "_hmac": _core._hmac, "_source_key": _core._source_key,
        "RateLimiter": RateLimiter, "allow": rl.allow, "allow_many": rl.allow_many,
        "_parse_message": _core._parse_message, "_parse_header": _core._parse_header,
        "_parse_qcd_reply": _core._parse_qcd_reply,
        "_parse_qcd_replies": _core._parse_qcd_replies,
        "_build_qcd_reply": _core._build_qcd_reply,
        "_build_invalid_ike_spi_reply": _core._build_invalid_ike_spi_reply,
        "_build_qcd_notify": _core._build_qcd_notify,
        "_build_invalid_spi_message": _core._build_invalid_spi_message,
        "_build_request": _core._build_request,
        "_Responder": _core._Responder, "respond": resp.respond, "classify": resp.classify,
        "build": resp.build, "respond_many": resp.respond_many,
        "classify_many": resp.classify_many, "build_many": resp.build_many,
        "SaTable": SaTable, "insert": t.insert, "remove": t.remove, "contains": t.contains,
        "check": t.check, "insert_many": t.insert_many, "remove_many": t.remove_many,
        "contains_many": t.contains_many, "check_many": t.check_many, "touch": t.touch,
        "touch_many": t.touch_many, "due_liveness": t.due_liveness, "due_many": t.due_many,
        "_PairMap": _core._PairMap, "pm.get": pm.get, "pm.set": pm.set, "pm.pop": pm.pop,
        "pm.set_many": pm.set_many, "pm.get_many": pm.get_many, "pm.pop_many": pm.pop_many,
        "pm.pop_matching": pm.pop_matching,
        "timestamps": t.timestamps, "decide_many": gate.decide_many,
        "_load_spis": _core._load_spis,
        "_aead_seal": _core._aead_seal, "_aead_open": _core._aead_open,
    }
    return eps


_EPS = _entry_points()


def test_aead_rows_refuse_a_huge_aad_length() -> None:
    """An AAD length near 2**64 is a shape error, not an overflow panic."""
    keys, rows = np.zeros((2, 20), np.uint8), np.zeros((2, 64), np.uint8)
    for aad_len in (2**64 - 1, 2**64 - 8, 2**63):
        with pytest.raises(ValueError, match="AAD"):
            _core._aead_seal(keys, rows, aad_len)
        with pytest.raises(ValueError, match="AAD"):
            _core._aead_open(keys, rows, aad_len)


@settings(max_examples=1500, deadline=None)
@given(name=st.sampled_from(sorted(_EPS)), args=st.lists(_ARG, max_size=5),
       kwargs=st.dictionaries(st.sampled_from(["now", "idle", "inbound", "address", "nat_t",
                                               "history", "capacity", "token_len",
                                               "algorithm", "max_keys"]), _ARG, max_size=2))
def test_no_core_entry_point_panics(
    name: str, args: list[object], kwargs: dict[str, object]
) -> None:
    """Any arguments, hostile times included: a documented error or a result, never a Rust
    panic (``PanicException`` derives from ``BaseException``)."""
    try:
        _EPS[name](*args, **kwargs)
    except Exception:  # noqa: BLE001, S110 - any documented error is fine here
        pass
    except BaseException as e:  # noqa: BLE001 - the point of the test
        pytest.fail(f"{name}{tuple(args)!r} {kwargs!r} raised {type(e).__name__}: {e}")
