"""MakerPolicy on TokenResponder: digest cases 19 (cluster gate), 20 (flood), 21 (switch
off), the §9.3 answering window, bounded per-source memory under a spoofed-source flood,
counters for every outcome, and MakerPolicy validation. Time is a fake clock, so every count
is exact. Requests are built with ``wire.build_request``, tokens by a real ``TokenMaker``."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import pytest
from ikeqcd import MakerPolicy, Reason, SaTable, TokenMaker, TokenResponder, errors, wire

MAKER = TokenMaker([bytes([0x30 + g]) * 32 for g in range(2)])
A, B = 0xA1A2A3A4A5A6A7A8, 0xB1B2B3B4B5B6B7B8
SRC = ("192.0.2.10", 500)


class Clock:
    def __init__(self, t: float = 50.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def request(a: int = A, b: int = B, mid: int = 3) -> bytes:
    return wire.build_request(a, b, message_id=mid, sk_body=bytes(32))


def outcome(req: bytes, answer: bytes | None) -> str:
    """'token', 'bare' or 'none', checking the reply's bytes exactly."""
    if answer is None:
        return "none"
    if answer == wire.build_invalid_ike_spi_reply(req):
        return "bare"
    h = wire.parse_header(req)
    assert answer == wire.build_qcd_reply(req, MAKER.all_tokens(h.spi_i, h.spi_r))
    return "token"


def run(r: TokenResponder, reqs: Sequence[bytes], srcs: Sequence[tuple[str, int]]) -> list[str]:
    return [outcome(q, r.respond(q, s)) for q, s in zip(reqs, srcs)]


# --------------------------------------------------------------------------- case 19


@pytest.mark.parametrize("with_policy", [False, True])
def test_case_19_cluster_gate_reveals_nothing(with_policy: bool) -> None:
    """Case 19: cluster mode: an SPI pair listed as active on another member produces no token
    (§9.2, M-4, M-5): ``Reason.LIVE_SA`` and nothing is sent, not even a bare INVALID_IKE_SPI
    (the request belongs to a live SA), and the rate limits are not spent on it."""
    elsewhere = {(A, B)}  # the other member's synced list of live IKE SPIs
    asked: list[tuple[int, int]] = []

    def live_anywhere(a: int, b: int) -> bool:
        asked.append((a, b))
        return (a, b) in elsewhere

    policy = MakerPolicy(per_source_burst=1.0, per_source_rate=0.0) if with_policy else None
    r = TokenResponder(MAKER, live=live_anywhere, policy=policy, clock=Clock())
    for _ in range(3):
        assert r.respond(request(), SRC) is None
    replies, reasons = r.respond_many([request(), request(A + 1, B)], [SRC, SRC])
    assert replies[0] is None and reasons[0] == Reason.LIVE_SA
    # an SA that is live nowhere still gets its token (once: the per-source burst is 1)
    assert outcome(request(A + 1, B), replies[1]) == "token" and reasons[1] == Reason.REPLIED
    assert asked == [(A, B)] * 4 + [(A + 1, B)]
    assert r.counters[Reason.LIVE_SA] == 4 and r.counters[Reason.REPLIED] == 1
    # the same with a bulk live set (an SaTable holding the cluster's SPIs)
    table = SaTable()
    table.insert(A, B, bytes(16))
    bulk = TokenResponder(MAKER, live=table, policy=policy, clock=Clock())
    assert bulk.respond(request(), SRC) is None and bulk.counters[Reason.LIVE_SA] == 1


# --------------------------------------------------------------------------- case 20


@pytest.mark.parametrize("batch", [False, True], ids=["single", "batch"])
def test_case_20_flood_per_source_then_bare_then_nothing(batch: bool) -> None:
    """Case 20: after the configured threshold of unknown-SPI requests from one source, replies
    carry only INVALID_IKE_SPI (itself limited), then nothing (§8.1, §9.3, M-6). Exact counts:
    per-source bucket 5 at 1/s, bare bucket 3 at 3/s; other sources are unaffected; buckets
    refill with time."""
    clock = Clock()
    r = TokenResponder(
        MAKER,
        policy=MakerPolicy(per_source_rate=1.0, per_source_burst=5.0, bare_rate=3.0),
        clock=clock,
    )
    reqs = [request(A, B + k, mid=k) for k in range(10)]
    if batch:
        replies, reasons = r.respond_many(reqs, [SRC] * 10)
        got = [outcome(q, a) for q, a in zip(reqs, replies)]
        assert (
            reasons.tolist()
            == [Reason.REPLIED] * 5
            + [Reason.RATE_LIMITED_BARE] * 3
            + [Reason.RATE_LIMITED_DROP] * 2
        )
    else:
        got = run(r, reqs, [SRC] * 10)
    assert got == ["token"] * 5 + ["bare"] * 3 + ["none"] * 2
    # another source has its own bucket; same /64 for IPv6 shares one
    assert run(r, reqs[:1], [("192.0.2.11", 500)]) == ["token"]
    six = [(f"2001:db8:7:7::{k:x}", 500) for k in range(1, 7)]
    assert run(r, reqs[:6], six) == ["token"] * 5 + ["none"]  # the bare bucket is empty
    # refill: 1 s later one more token for SRC, and the bare bucket has 3 again
    clock.t += 1.0
    assert run(r, reqs[:5], [SRC] * 5) == ["token", "bare", "bare", "bare", "none"]
    c = r.counters
    assert (c[Reason.REPLIED], c[Reason.RATE_LIMITED_BARE], c[Reason.RATE_LIMITED_DROP]) == (
        12,
        6,
        4,
    )


def test_case_20_global_limit_and_silence_fallback() -> None:
    """Case 20, global limit: many sources within their own limits are stopped by the global
    bucket; with ``flood_fallback="silence"`` a limited request gets nothing at all."""
    clock = Clock()
    policy = MakerPolicy(global_rate=2.0, global_burst=8.0, bare_rate=100.0)
    r = TokenResponder(MAKER, policy=policy, clock=clock)
    srcs = [(f"198.51.100.{k}", 500) for k in range(12)]
    reqs = [request(A, B + k) for k in range(12)]
    assert run(r, reqs, srcs) == ["token"] * 8 + ["bare"] * 4
    clock.t += 1.0  # 2 more per second
    assert run(r, reqs[:3], srcs[:3]) == ["token", "token", "bare"]

    quiet = TokenResponder(MAKER, policy=policy.with_(flood_fallback="silence"), clock=Clock())
    assert run(quiet, reqs, srcs) == ["token"] * 8 + ["none"] * 4
    assert (
        quiet.counters[Reason.RATE_LIMITED_DROP] == 4
        and quiet.counters[Reason.RATE_LIMITED_BARE] == 0
    )
    # silence from a single source too
    one = TokenResponder(
        MAKER, policy=MakerPolicy(per_source_burst=2.0, flood_fallback="silence"), clock=Clock()
    )
    assert run(one, reqs[:4], [SRC] * 4) == ["token", "token", "none", "none"]


def test_batch_and_single_decide_alike() -> None:
    """The same stream decided one by one and in one batch gives the same reasons (the
    buckets are consumed in datagram order)."""
    srcs = [(f"203.0.113.{k % 3}", 500) for k in range(40)]
    reqs = [request(A, B + k) for k in range(40)]
    policy = MakerPolicy(per_source_burst=4.0, global_burst=10.0, bare_rate=5.0)
    one = TokenResponder(MAKER, policy=policy, clock=Clock())
    many = TokenResponder(MAKER, policy=policy, clock=Clock())
    singles = run(one, reqs, srcs)
    replies, _ = many.respond_many(reqs, srcs)
    assert singles == [outcome(q, a) for q, a in zip(reqs, replies)]
    assert Counter(singles) == {"token": 10, "bare": 5, "none": 25}
    assert one.counters == many.counters


# --------------------------------------------------------------------------- case 21


def test_case_21_switch_off_sends_no_tokens() -> None:
    """Case 21 (§8.1 MUST): with the administrator switch off, no tokens are sent in the clear:
    behaviour is pure RFC 7296, a bare INVALID_IKE_SPI, rate-limited (``bare_rate``; 0 sends
    nothing at all). Leaving N(QCD_TOKEN) out of IKE_AUTH is the owner's job: it asks
    ``responder.policy.enabled`` before it embeds ``wire.build_qcd_notify(...)``."""
    clock = Clock()
    off = MakerPolicy(enabled=False, bare_rate=2.0)
    r = TokenResponder(MAKER, policy=off, clock=clock)
    assert r.policy is off and not r.policy.enabled
    reqs = [request(A, B + k) for k in range(5)]
    srcs = [(f"192.0.2.{k}", 500) for k in range(5)]  # not a per-source matter
    answers = [r.respond(q, s) for q, s in zip(reqs, srcs)]
    assert [outcome(q, a) for q, a in zip(reqs, answers)] == [
        "bare",
        "bare",
        "none",
        "none",
        "none",
    ]
    for a in answers:
        assert a is None or wire.parse_qcd_reply(a).tokens == ()
    assert r.counters[Reason.DISABLED] == 2 and r.counters[Reason.RATE_LIMITED_DROP] == 3
    assert r.counters[Reason.REPLIED] == 0
    clock.t += 0.5
    assert outcome(reqs[0], r.respond(reqs[0], SRC)) == "bare"
    silent = TokenResponder(MAKER, policy=MakerPolicy(enabled=False, bare_rate=0.0), clock=clock)
    assert silent.respond(reqs[0], SRC) is None and silent.counters[Reason.RATE_LIMITED_DROP] == 1
    # what never qualified for a reply is untouched by the switch (RFC 7296 §2.21.4)
    assert r.respond(wire.build_request(A, B, response=True), SRC) is None
    assert r.counters[Reason.RESPONSE] == 1


# ----------------------------------------------------------------- §9.3 answering window


def test_token_window_after_start() -> None:
    """§9.3 (M-7, Rockhopper's ``qcd_enabled_time``): tokens only within ``token_window``
    seconds after start; afterwards a bare INVALID_IKE_SPI (limited by ``bare_rate``)."""
    clock = Clock(100.0)
    r = TokenResponder(MAKER, policy=MakerPolicy(token_window=30.0, bare_rate=1.0), clock=clock)
    assert outcome(request(), r.respond(request(), SRC)) == "token"
    clock.t = 130.0  # the last instant of the window
    assert outcome(request(), r.respond(request(), SRC)) == "token"
    clock.t = 130.5
    assert [outcome(request(), r.respond(request(), SRC)) for _ in range(2)] == ["bare", "none"]
    assert r.counters[Reason.OUTSIDE_WINDOW] == 1 and r.counters[Reason.RATE_LIMITED_DROP] == 1
    clock.t = 1e6  # forever after
    assert outcome(request(), r.respond(request(), SRC)) == "bare"
    always = TokenResponder(MAKER, policy=MakerPolicy(), clock=clock)
    assert outcome(request(), always.respond(request(), SRC)) == "token"


# ------------------------------------------------------------- bounded per-source memory


@pytest.mark.parametrize("max_sources", [1000, 65_536])
def test_spoofed_source_flood_memory_is_bounded(max_sources: int) -> None:
    """10^5 requests from 10^5 distinct (spoofed) sources: at most ``max_sources`` per-source
    buckets are held; sources beyond that share one overflow bucket, so a flood cannot grow
    memory or reset anyone's limit. Exact counts at one instant: each tracked source gets its
    burst, the overflow bucket its burst, the bare bucket its size, the rest nothing.
    (Before the sweep was amortized this took seconds: each new source rescanned the map.)"""
    n = 100_000
    policy = MakerPolicy(
        per_source_burst=1.0, per_source_rate=0.01, bare_rate=100.0, max_sources=max_sources
    )
    r = TokenResponder(MAKER, policy=policy, clock=Clock())
    q = request()
    srcs = [(f"10.{k >> 16 & 255}.{k >> 8 & 255}.{k & 255}", 500) for k in range(n)]
    _, reasons = r.respond_many([q] * n, srcs)
    assert r.sources_tracked == max_sources
    counts = np.bincount(reasons, minlength=len(Reason))
    assert counts[Reason.REPLIED] == max_sources + 1
    assert counts[Reason.RATE_LIMITED_BARE] == 100
    assert counts[Reason.RATE_LIMITED_DROP] == n - max_sources - 1 - 100
    # a tracked source is still limited (its bucket was not forgotten or reset)
    assert r.respond(q, srcs[0]) is None
    v6 = [(f"2001:db8:{k >> 16 & 0xFFFF:x}:{k & 0xFFFF:x}::1", 4500) for k in range(20_000)]
    r.respond_many([q] * len(v6), v6)
    assert r.sources_tracked == max_sources
    assert TokenResponder(MAKER).sources_tracked == 0


# ---------------------------------------------------------------------------- counters


def test_counters_for_every_outcome() -> None:
    """Every datagram is counted under exactly one :class:`Reason`, the policy's outcomes
    included; ``reset_counters`` zeroes them."""
    clock = Clock()
    policy = MakerPolicy(
        per_source_burst=1.0, per_source_rate=0.0, bare_rate=1.0, token_window=10.0
    )
    r = TokenResponder(MAKER, live={(A, B)}, policy=policy, clock=clock)
    stream: list[bytes] = [
        request(),  # LIVE_SA
        request(A, B + 1),  # REPLIED
        request(A, B + 2),  # RATE_LIMITED_BARE
        request(A, B + 3),  # RATE_LIMITED_DROP
        b"\x01\x02",  # MALFORMED
        wire.build_request(A, B + 4, response=True),  # RESPONSE
        wire.build_request(A, 0, exchange=wire.EXCHANGE_IKE_SA_INIT),  # IKE_SA_INIT
        wire.build_request(A, B, exchange=wire.EXCHANGE_IKE_SESSION_RESUME),  # SESSION_RESUME
    ]
    r.respond_many(stream, [SRC] * len(stream))
    clock.t += 20.0
    r.respond(request(A, B + 5), ("192.0.2.99", 500))  # OUTSIDE_WINDOW (bare bucket refilled)
    off = TokenResponder(MAKER, policy=MakerPolicy(enabled=False), clock=clock)
    off.respond(request(), SRC)  # DISABLED
    c = r.counters
    for reason in (
        Reason.LIVE_SA,
        Reason.REPLIED,
        Reason.RATE_LIMITED_BARE,
        Reason.RATE_LIMITED_DROP,
        Reason.MALFORMED,
        Reason.RESPONSE,
        Reason.IKE_SA_INIT,
        Reason.SESSION_RESUME,
        Reason.OUTSIDE_WINDOW,
    ):
        assert c[reason] == 1, reason
    assert sum(c.values()) == len(stream) + 1 and off.counters[Reason.DISABLED] == 1
    r.reset_counters()
    assert set(r.counters.values()) == {0}


# -------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"per_source_rate": -1.0}, "per_source_rate must be >= 0"),
        ({"global_burst": math.nan}, "global_burst must be >= 0"),
        ({"bare_rate": "10"}, "bare_rate must be a number"),
        ({"token_window": -5}, "token_window must be >= 0"),
        ({"flood_fallback": "drop"}, "flood_fallback must be 'bare' or 'silence'"),
        ({"max_sources": 0}, "max_sources must be an int"),
        ({"max_sources": True}, "max_sources must be an int"),
        ({"max_sources": 10.0}, "max_sources must be an int"),
        ({"enabled": "off"}, "enabled must be a bool"),
        ({"enabled": 0}, "enabled must be a bool"),
    ],
)
def test_maker_policy_validation(kw: dict[str, object], match: str) -> None:
    with pytest.raises(errors.InvalidPolicy, match=match):
        MakerPolicy(**kw)  # type: ignore[arg-type]
    with pytest.raises(errors.InvalidPolicy, match=match):
        MakerPolicy().with_(**kw)


def test_maker_policy_misc() -> None:
    with pytest.raises(errors.InvalidPolicy, match="no option 'rate'"):
        MakerPolicy().with_(rate=1)
    assert MakerPolicy().with_(token_window=None).token_window is None
    u = MakerPolicy.unlimited()
    assert math.isinf(u.per_source_rate) and math.isinf(u.global_burst)
    r = TokenResponder(MAKER, policy=u, clock=Clock())
    _, reasons = r.respond_many([request()] * 5000, [SRC] * 5000)
    assert (reasons == Reason.REPLIED).all()
    with pytest.raises(errors.InvalidArgument, match="policy must be a MakerPolicy"):
        TokenResponder(MAKER, policy={"enabled": False})  # type: ignore[arg-type]
    assert issubclass(errors.InvalidPolicy, ValueError)
