"""TokenResponder (the maker's hot path): every reason, spec cases 13-18 and M-1..M-4, the live
set in all its forms, batch == single, tokens that verify for every generation, the policy
seam, and bad arguments."""

from __future__ import annotations

import struct
from collections.abc import Sequence

import ikeqcd
import numpy as np
import numpy.typing as npt
import pytest
from ikeqcd import MakerPolicy, Reason, TokenMaker, TokenResponder, errors, wire
from ikeqcd._core import _reason_names

SPI_I = 0xA1A2A3A4A5A6A7A8
SPI_R = 0xB1B2B3B4B5B6B7B8
SECRETS = [bytes([0x10 + g]) * 32 for g in range(4)]


def req(**kw: object) -> bytes:
    spi_i = kw.pop("spi_i", SPI_I)
    spi_r = kw.pop("spi_r", SPI_R)
    # 160 octets: a request large enough that the 2x reflection bound leaves every
    # generation in the reply (test_security_review.py covers the small ones)
    kw.setdefault("sk_body", bytes(range(160)))
    return wire.build_request(spi_i, spi_r, **kw)  # type: ignore[arg-type]


def unprotected_request() -> bytes:
    body = struct.pack("!BBHBBH", 0, 0, 8, 0, 0, 16384)  # N(INITIAL_CONTACT) in the clear
    hdr = struct.pack("!QQBBBBII", SPI_I, SPI_R, 41, 0x20, 37, 0x08, 2, 28 + len(body))
    return hdr + body


def ike_sa_init() -> bytes:
    body = struct.pack("!BBH", 0, 0, 8) + bytes(4)  # an SA payload
    return struct.pack("!QQBBBBII", SPI_I, 0, 33, 0x20, 34, 0x08, 0, 28 + len(body)) + body


CASES: list[tuple[str, bytes, bool | None, Reason]] = [
    ("informational", req(), None, Reason.REPLIED),
    ("create_child_sa", req(exchange=36), None, Reason.REPLIED),
    ("ike_auth", req(exchange=35, message_id=1), None, Reason.REPLIED),
    ("nat_t", req(nat_t=True), True, Reason.REPLIED),
    ("nat_t auto", req(nat_t=True), None, Reason.REPLIED),
    ("responder's request (I=0)", req(initiator=False), None, Reason.REPLIED),
    ("empty", b"", None, Reason.MALFORMED),
    ("truncated", req()[:30], None, Reason.MALFORMED),
    ("lying length", req()[:-1], None, Reason.MALFORMED),
    ("spi_i zero", req(spi_i=0), False, Reason.MALFORMED),
    ("ikev1", req()[:17] + b"\x10" + req()[18:], None, Reason.NOT_IKEV2),
    ("esp on 4500", struct.pack("!II", 0x0BADCAFE, 7) + bytes(60), True, Reason.ESP),
    ("keepalive", b"\xff", True, Reason.ESP),
    ("response", req(response=True), None, Reason.RESPONSE),
    ("unprotected", unprotected_request(), None, Reason.UNPROTECTED),
    ("ike_sa_init", ike_sa_init(), None, Reason.IKE_SA_INIT),
    ("protected but spi_r 0", req(spi_r=0), None, Reason.IKE_SA_INIT),
    ("exchange 34 with SK", req(exchange=34), None, Reason.IKE_SA_INIT),
    ("session resume", req(exchange=38), None, Reason.SESSION_RESUME),
]


def test_reason_enum_mirrors_core() -> None:
    assert [r.name for r in Reason] == _reason_names()
    assert [int(r) for r in Reason] == list(range(len(Reason)))
    assert ikeqcd.Reason is Reason and ikeqcd.TokenResponder is TokenResponder


@pytest.mark.parametrize(("name", "datagram", "nat_t", "want"), CASES, ids=[c[0] for c in CASES])
def test_every_reason(name: str, datagram: bytes, nat_t: bool | None, want: Reason) -> None:
    """Cases 13-17: only protected requests with unknown SPIs get a reply."""
    m = TokenMaker(SECRETS[:2])
    r = TokenResponder(m, nat_t=nat_t)
    reply = r.respond(datagram, ("192.0.2.7", 500))
    assert (reply is not None) == (want == Reason.REPLIED)
    assert r.counters[want] == 1 and sum(r.counters.values()) == 1
    replies, reasons = r.respond_many([datagram])
    assert reasons.tolist() == [want] and replies == [reply]
    # the two-pass path (live set given) agrees
    r2 = TokenResponder(m, live=set(), nat_t=nat_t)
    assert r2.respond(datagram) == reply
    assert r2.respond_many([datagram])[1].tolist() == [want]


def check_reply(m: TokenMaker, request: bytes, reply: bytes | None, *, nat_t: bool) -> None:
    """Case 13/14/15 + M-2/M-3: header copied, R=1, N(INVALID_IKE_SPI) then one token per
    generation, current first, each verifying with the maker."""
    assert reply is not None
    q = wire.parse_message(request, nat_t=nat_t)
    a = wire.parse_message(reply, nat_t=nat_t)
    assert a.nat_t is nat_t and reply.startswith(wire.NON_ESP_MARKER) is nat_t
    for f in ("spi_i", "spi_r", "message_id", "exchange"):
        assert getattr(a.header, f) == getattr(q.header, f)
    assert a.header.version == 0x20 and a.header.response and not a.header.flags & wire.FLAG_V
    assert a.header.initiator is (not q.header.initiator)
    assert [n.notify_type for n in a.notifies] == [4] + [16419] * m.generations
    assert not a.encrypted and all(p.kind == 41 for p in a.payloads)
    tokens = wire.parse_qcd_reply(reply, nat_t=nat_t).tokens
    assert list(tokens) == m.all_tokens(q.header.spi_i, q.header.spi_r)
    for t in tokens:
        assert m.verify(q.header.spi_i, q.header.spi_r, t)
        assert len(t) == m.token_len


@pytest.mark.parametrize("gens", [1, 2, 3, 4])
@pytest.mark.parametrize("alg", ["hmac-sha256", "hmac-sha512", "hmac-sha1"])
def test_reply_tokens_verify_for_every_generation(gens: int, alg: str) -> None:
    m = TokenMaker(SECRETS[:gens], algorithm=alg)
    for nat_t in (False, True):
        r = TokenResponder(m, nat_t=nat_t)
        for exchange in (35, 36, 37):
            q = req(exchange=exchange, nat_t=nat_t, message_id=exchange * 1000)
            check_reply(m, q, r.respond(q), nat_t=nat_t)


def test_reply_equals_codec_builder() -> None:
    m = TokenMaker(SECRETS)
    q = req(message_id=3)
    assert TokenResponder(m).respond(q) == wire.build_qcd_reply(q, m.all_tokens(SPI_I, SPI_R))


def mixed_batch(n: int = 400) -> tuple[list[bytes], list[tuple[str, int]]]:
    rng = np.random.default_rng(5)
    ds: list[bytes] = []
    for k in range(n):
        a, b = (int(x) for x in rng.integers(1, 2**63, 2))
        choice = k % 7
        if choice < 3:
            ds.append(req(spi_i=a, spi_r=b, message_id=k))
        elif choice == 3:
            ds.append(req(spi_i=a, spi_r=b, response=True))
        elif choice == 4:
            ds.append(bytes(rng.integers(0, 256, int(rng.integers(0, 90)), dtype=np.uint8)))
        elif choice == 5:
            ds.append(req(spi_i=a, spi_r=b, message_id=k)[: int(rng.integers(0, 70))])
        else:
            ds.append(CASES[k % len(CASES)][1])
    return ds, [("198.51.100.1", 1000 + k) for k in range(n)]


@pytest.mark.parametrize("live_kind", ["none", "set", "callable", "bulk"])
def test_batch_equals_single(live_kind: str) -> None:
    m = TokenMaker(SECRETS[:2])
    ds, sources = mixed_batch()
    live_pairs = {
        (SPI_I, SPI_R),
        *(
            (h.spi_i, h.spi_r)
            for d in ds[::5]
            if (h := _try_header(d)) is not None
        ),
    }
    live = make_live(live_kind, live_pairs)
    one = TokenResponder(m, live=live)
    many = TokenResponder(m, live=live)
    singles = [one.respond(d, s) for d, s in zip(ds, sources)]
    replies, reasons = many.respond_many(ds, sources)
    assert replies == singles
    assert reasons.dtype == np.int8 and len(reasons) == len(ds)
    assert one.counters == many.counters
    assert many.counters[Reason.REPLIED] == sum(r is not None for r in replies) > 0
    if live_kind != "none":
        assert many.counters[Reason.LIVE_SA] > 0
    for d, r, code in zip(ds, replies, reasons.tolist()):
        assert (r is not None) == (code == Reason.REPLIED)
        if r is not None:
            check_reply(m, d, r, nat_t=d.startswith(wire.NON_ESP_MARKER))


def _try_header(d: bytes) -> wire.IkeHeader | None:
    try:
        return wire.parse_header(d)
    except errors.MalformedMessage:
        return None


class BulkSet:
    """A stand-in for SaTable: only contains_many."""

    def __init__(self, pairs: set[tuple[int, int]]) -> None:
        self.pairs = pairs
        self.calls = 0

    def contains_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64]
    ) -> npt.NDArray[np.bool_]:
        assert spi_i.dtype == np.uint64 and spi_r.dtype == np.uint64
        self.calls += 1
        return np.array([(int(a), int(b)) in self.pairs for a, b in zip(spi_i, spi_r)], dtype=bool)


def make_live(kind: str, pairs: set[tuple[int, int]]) -> object:
    if kind == "none":
        return None
    if kind == "set":
        return pairs
    if kind == "callable":
        return lambda a, b: (a, b) in pairs
    return BulkSet(pairs)


@pytest.mark.parametrize("live_kind", ["set", "callable", "bulk"])
def test_case_18_live_sa_never_gets_a_token(live_kind: str) -> None:
    """Case 18 / M-4 / §9.2: SPIs of a live SA never produce a token in the clear, whatever
    the SK content (bad ICV, odd Message ID, garbage)."""
    m = TokenMaker(SECRETS[:1])
    live = make_live(live_kind, {(SPI_I, SPI_R)})
    r = TokenResponder(m, live=live)
    variants = [req(sk_body=bytes([k]) * k, message_id=k * 7919) for k in range(17, 220, 13)]
    variants += [req(nat_t=True), req(exchange=36), req(exchange=35)]
    replies, reasons = r.respond_many(variants)
    assert replies == [None] * len(variants)
    assert set(reasons.tolist()) == {Reason.LIVE_SA}
    assert all(r.respond(v) is None for v in variants)
    other = req(spi_r=SPI_R ^ 1)
    assert r.respond(other) is not None
    if isinstance(live, BulkSet):
        before = live.calls
        r.respond_many(variants * 3)
        assert live.calls == before + 1  # asked once per batch


def test_case_19_cluster_callable_sees_each_candidate_only() -> None:
    """Case 19: a callable (cluster-wide knowledge) is asked for candidates only."""
    asked: list[tuple[int, int]] = []

    def elsewhere(a: int, b: int) -> bool:
        asked.append((a, b))
        return b % 2 == 0

    m = TokenMaker(SECRETS[:1])
    r = TokenResponder(m, live=elsewhere)
    ds = [req(spi_r=SPI_R), req(spi_r=SPI_R + 1), req(response=True), b"junk"]
    replies, reasons = r.respond_many(ds)
    assert asked == [(SPI_I, SPI_R), (SPI_I, SPI_R + 1)]
    assert reasons.tolist() == [
        (Reason.LIVE_SA if SPI_R % 2 == 0 else Reason.REPLIED),
        (Reason.REPLIED if SPI_R % 2 == 0 else Reason.LIVE_SA),
        Reason.RESPONSE,
        Reason.MALFORMED,
    ]


def test_live_check_errors_fail_closed() -> None:
    def broken(a: int, b: int) -> bool:
        raise RuntimeError("cluster unreachable")

    r = TokenResponder(TokenMaker(SECRETS[:1]), live=broken)
    with pytest.raises(RuntimeError):
        r.respond(req())
    with pytest.raises(RuntimeError):
        r.respond_many([req()])

    class WrongShape:
        def contains_many(self, a: object, b: object) -> npt.NDArray[np.bool_]:
            return np.zeros(3, dtype=bool)

    with pytest.raises(errors.InvalidArgument, match="shape"):
        TokenResponder(TokenMaker(SECRETS[:1]), live=WrongShape()).respond_many([req()])


class Throttle(TokenResponder):
    """A stand-in policy: drop odd SPI-R, bare reply for SPI-R % 3 == 0, else reply."""

    seen_sources: list[Sequence[tuple[str, int]] | None]

    def admit(
        self,
        reasons: npt.NDArray[np.int8],
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        sources: Sequence[tuple[str, int]] | None,
    ) -> None:
        self.seen_sources = [*getattr(self, "seen_sources", []), sources]
        cand = reasons == Reason.REPLIED
        reasons[cand & (spi_r % 3 == 0)] = Reason.RATE_LIMITED_BARE
        reasons[cand & (spi_r % 3 == 1)] = Reason.RATE_LIMITED_DROP


def test_policy_seam_downgrades() -> None:
    m = TokenMaker(SECRETS[:1])
    t = Throttle(m)
    ds = [req(spi_r=SPI_R + k) for k in range(6)] + [req(response=True)]
    srcs = [("203.0.113.9", 4500 + k) for k in range(len(ds))]
    replies, reasons = t.respond_many(ds, srcs)
    for k in range(6):
        mod = (SPI_R + k) % 3
        if mod == 0:
            assert reasons[k] == Reason.RATE_LIMITED_BARE
            bare = wire.parse_qcd_reply(replies[k] or b"")
            assert bare.invalid_ike_spi and bare.tokens == ()
            assert replies[k] == wire.build_invalid_ike_spi_reply(ds[k])
        elif mod == 1:
            assert reasons[k] == Reason.RATE_LIMITED_DROP and replies[k] is None
        else:
            assert reasons[k] == Reason.REPLIED and replies[k] is not None
    assert reasons[6] == Reason.RESPONSE and replies[6] is None
    assert t.seen_sources[-1] == srcs
    singles = [t.respond(d, s) for d, s in zip(ds, srcs)]
    assert singles == replies
    assert t.counters[Reason.RATE_LIMITED_BARE] == 2 * 2


def test_policy_cannot_forge_replies() -> None:
    class Forger(TokenResponder):
        def admit(self, reasons, spi_i, spi_r, sources):  # type: ignore[no-untyped-def]
            reasons[:] = Reason.REPLIED

    class Weird(TokenResponder):
        def admit(self, reasons, spi_i, spi_r, sources):  # type: ignore[no-untyped-def]
            reasons[reasons == 0] = Reason.MALFORMED

    m = TokenMaker(SECRETS[:1])
    for cls in (Forger, Weird):
        with pytest.raises(errors.InvalidPolicy):
            cls(m).respond_many([req(), req(response=True)] if cls is Forger else [req()])
    with pytest.raises(errors.InvalidPolicy):
        Weird(m).respond(req())


def test_native_build_never_forges() -> None:
    """Even a wrong decision array reaching the native pass cannot create a reply."""
    core = ikeqcd._core._Responder(TokenMaker(SECRETS[:1]))
    ds = [req(response=True), b"junk", req()]
    replies, reasons = core.build_many(ds, np.zeros(3, dtype=np.int8))
    assert replies[:2] == [None, None] and replies[2] is not None
    assert reasons.tolist() == [Reason.RESPONSE, Reason.MALFORMED, Reason.REPLIED]
    assert core.build(req(response=True), 0) == (None, Reason.RESPONSE)
    assert core.build(req(), 11) == (None, 11)
    with pytest.raises(errors.InvalidArray):
        core.build_many(ds, np.zeros(2, dtype=np.int8))


def test_counters_and_reset() -> None:
    r = TokenResponder(TokenMaker(SECRETS[:1]))
    r.respond_many([req(), req(), b"x", req(response=True)])
    r.respond(req(exchange=38))
    c = r.counters
    assert c[Reason.REPLIED] == 2 and c[Reason.MALFORMED] == 1
    assert c[Reason.RESPONSE] == 1 and c[Reason.SESSION_RESUME] == 1
    assert set(c) == set(Reason)
    r.reset_counters()
    assert sum(r.counters.values()) == 0


def test_arguments() -> None:
    m = TokenMaker(SECRETS[:1])
    with pytest.raises(errors.InvalidArgument):
        TokenResponder("maker")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        TokenResponder(m, nat_t="yes")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        TokenResponder(m, live=42)
    r = TokenResponder(m)
    with pytest.raises(errors.InvalidArgument):
        r.respond("text")  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidArgument):
        r.respond_many([req()], [("a", 1), ("b", 2)])
    with pytest.raises(errors.InvalidArgument):
        r.respond_many([req(), None])  # type: ignore[list-item]
    assert r.respond(bytearray(req())) == r.respond(memoryview(req()))
    assert r.respond_many([]) [0] == [] and r.respond_many([])[1].shape == (0,)
    assert "TokenMaker" in repr(r) and r.maker is m and r.nat_t is None
    secret_hex = SECRETS[0].hex()
    assert secret_hex not in repr(r) and secret_hex not in repr(ikeqcd._core._Responder(m))


def test_large_batch_releases_gil_and_matches() -> None:
    """Above the detach threshold the native call runs detached; results are unchanged."""
    m = TokenMaker(SECRETS[:2])
    rng = np.random.default_rng(9)
    pairs = rng.integers(1, 2**64 - 1, (3000, 2), dtype=np.uint64, endpoint=True)
    ds = [req(spi_i=int(a), spi_r=int(b), message_id=k) for k, (a, b) in enumerate(pairs)]
    replies, reasons = TokenResponder(m, policy=MakerPolicy.unlimited()).respond_many(ds)
    assert (reasons == 0).all()
    out = wire.parse_qcd_replies([r or b"" for r in replies])
    assert out.ok.all()
    toks = np.frombuffer(out.token_data.tobytes(), dtype=np.uint8).reshape(-1, m.token_len)
    assert m.verify_many(out.spi_i, out.spi_r, np.ascontiguousarray(toks[0::2])).all()
    assert (out.message_id == np.arange(3000)).all()


def test_inputs_not_retained() -> None:
    """The datagrams are released after a batch call (bytes are shared while it runs)."""
    import sys

    r = TokenResponder(TokenMaker(SECRETS[:1]))
    d = req()
    before = sys.getrefcount(d)
    for _ in range(3):
        r.respond_many([d] * 300)
        wire.parse_qcd_replies([d] * 300)
        r.respond(d)
    assert sys.getrefcount(d) == before


def test_threads_share_a_maker() -> None:
    import threading

    m = TokenMaker(SECRETS[:2])
    ds, _ = mixed_batch(2000)
    want = TokenResponder(m, policy=MakerPolicy.unlimited()).respond_many(ds)[0]
    failures: list[str] = []

    def worker() -> None:
        r = TokenResponder(m, policy=MakerPolicy.unlimited())
        for _ in range(5):
            if r.respond_many(ds)[0] != want:
                failures.append("mismatch")

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
