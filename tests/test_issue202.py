"""End to end: the issue-202 attack (digest §6.3) on an active/standby pair sharing QCD_SECRET.

An active gateway and a standby hold the same secret set (real ``SecretStore`` files, handed
over with export/import, RFC 6290 §6). The taker has IKE SAs with the active. An attacker who
sees the SPIs (they travel in the clear in every IKE header) sends a protected-looking request
(``wire.build_request``) to the standby, which does not know the SA and answers with the valid
token; the attacker replays that token to the taker.

- ``TakerPolicy.rfc6290()``: the healthy SAs are torn down: the RFC's known weakness when the
  standby has no cluster gate (§9.2 puts the burden on the maker).
- ``TakerPolicy.hardened()``: nothing is torn down. A blind replay finds no outstanding
  request (NOT_PENDING); a timed replay (the attacker copies the taker's outstanding liveness
  request, same Message ID, to the standby and races the genuine protected response) is held
  for the accept delay and cancelled by that response (DEFERRED, then ``RestartCancelled``).
- With the cluster gate (``live=`` asking whether the SA is live on the active) the standby
  reveals nothing, whatever the taker's policy.

A genuine restart of the active is still detected with both presets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from ikeqcd import (
    FailureDetector,
    PeerRestarted,
    Reason,
    RestartCancelled,
    SaTable,
    SecretStore,
    TakerPolicy,
    TokenResponder,
    VerdictKind,
    wire,
)
from ikeqcd.taker import Event

N = 40  # IKE SAs between the taker and the active gateway
TAKER = ("192.0.2.50", 4500)
ACTIVE = ("198.51.100.1", 4500)
STANDBY = ("198.51.100.2", 4500)
ATTACKER = ("203.0.113.66", 500)
RTT = 0.04  # taker <-> active round trip


class Clock:
    def __init__(self) -> None:
        self.t = 500.0

    def __call__(self) -> float:
        return self.t


@dataclass
class World:
    clock: Clock
    active_store: SecretStore
    standby_store: SecretStore
    active_live: SaTable  # the SAs the active holds (with the taker's tokens: unused here)
    active: TokenResponder
    taker: FailureDetector
    sas: list[tuple[int, int]]

    def standby(self, *, cluster_gate: bool) -> TokenResponder:
        """The standby's responder; with the gate it asks the active (a synced SPI list)."""
        gate: Callable[[int, int], bool] | None = None
        if cluster_gate:
            live = self.active_live

            def gate(a: int, b: int) -> bool:
                return (a, b) in live

        return TokenResponder(self.standby_store.maker(), live=gate, clock=self.clock)

    def torn_down(self) -> int:
        return sum((a, b) not in self.taker.table for a, b in self.sas)


@pytest.fixture(params=[TakerPolicy.rfc6290(), TakerPolicy.hardened()], ids=["rfc6290", "hardened"])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[World]:
    policy = request.param
    assert isinstance(policy, TakerPolicy)
    active_store = SecretStore(tmp_path / "active" / "qcd.secret")
    assert active_store.load_or_create() is True
    standby_store = SecretStore.import_to(
        tmp_path / "standby" / "qcd.secret", active_store.export_bytes()
    )
    assert standby_store.fingerprint() == active_store.fingerprint()
    clock = Clock()
    maker = active_store.maker()
    taker = FailureDetector(policy=policy, clock=clock)
    live = SaTable()
    sas = [
        (0x1000_0000_0000_0000 + 7919 * k, 0x2000_0000_0000_0000 + 104729 * k)
        for k in range(1, N + 1)
    ]
    for a, b in sas:  # IKE_AUTH: the active's token travels inside SK, the taker stores it
        taker.token_received(a, b, maker.token(a, b))
        live.insert(a, b, bytes(16))
    active = TokenResponder(maker, live=live, clock=clock)
    yield World(clock, active_store, standby_store, live, active, taker, sas)


def _settle(w: World) -> list[Event]:
    """Let every held decision run out and collect what the detector decided."""
    events = w.taker.poll()
    w.clock.t += w.taker.policy.accept_delay + 1.0
    return events + w.taker.poll()


def test_blind_replay(world: World) -> None:
    """No request is outstanding: the attacker asks the standby and replays each token."""
    w = world
    standby = w.standby(cluster_gate=False)
    kinds = []
    for k, (a, b) in enumerate(w.sas):
        forged_request = wire.build_request(a, b, message_id=1000 + k, sk_body=bytes(64))
        leaked = standby.respond(forged_request, ATTACKER)
        assert leaked is not None and wire.parse_qcd_reply(leaked).tokens  # the standby leaks
        kinds.append(w.taker.receive(leaked, ATTACKER).kind)
    events = _settle(w)
    assert standby.counters[Reason.REPLIED] == N
    if w.taker.policy.name == "rfc6290":
        assert kinds == [VerdictKind.PEER_RESTARTED] * N
        assert w.torn_down() == N  # every healthy SA is gone: the RFC's weakness
    else:
        assert kinds == [VerdictKind.NOT_PENDING] * N
        assert events == [] and w.torn_down() == 0


def test_timed_replay(world: World) -> None:
    """The taker's liveness check is outstanding. The attacker copies it (same Message ID) to
    the standby and gets its reply to the taker before the active's genuine protected
    response, which arrives within the accept delay."""
    w = world
    standby = w.standby(cluster_gate=False)
    verdicts = []
    for k, (a, b) in enumerate(w.sas):
        mid = 5 + k
        check = wire.build_request(a, b, message_id=mid, sk_body=bytes(range(64)), nat_t=True)
        w.taker.request_sent(a, b, mid)
        # the active knows the SA: no unprotected reply from it, ever (§9.2)
        assert w.active.respond(check, TAKER) is None
        # the attacker's copy reaches the standby, its reply reaches the taker first
        leaked = standby.respond(check, ATTACKER)
        assert leaked is not None and wire.parse_qcd_reply(leaked).message_id == mid
        verdicts.append(w.taker.receive(leaked, STANDBY).kind)
    assert w.active.counters[Reason.LIVE_SA] == N and w.active.counters[Reason.REPLIED] == 0
    w.clock.t += RTT
    for k, (a, b) in enumerate(w.sas):  # the genuine protected responses (authenticated by IKE)
        w.taker.response_received(a, b, 5 + k)
    events = _settle(w)
    if w.taker.policy.name == "rfc6290":
        assert verdicts == [VerdictKind.PEER_RESTARTED] * N and w.torn_down() == N
        assert events == []  # too late: the SAs were already deleted
    else:
        assert w.taker.policy.accept_delay > RTT
        assert verdicts == [VerdictKind.DEFERRED] * N
        assert all(isinstance(e, RestartCancelled) for e in events) and len(events) == N
        assert {(e.spi_i, e.spi_r) for e in events} == set(w.sas)
        assert w.torn_down() == 0


def test_cluster_gate_standby_reveals_nothing(world: World) -> None:
    """§9.2: the standby asks whether the SA is live anywhere in the cluster; it is, on the
    active, so the standby sends nothing: no token, not even a bare INVALID_IKE_SPI."""
    w = world
    standby = w.standby(cluster_gate=True)
    for k, (a, b) in enumerate(w.sas):
        check = wire.build_request(a, b, message_id=k, sk_body=bytes(48))
        assert standby.respond(check, ATTACKER) is None
        w.taker.request_sent(a, b, k)  # even a timed copy gets nothing
        assert standby.respond(check, ATTACKER) is None
    assert standby.counters[Reason.LIVE_SA] == 2 * N
    assert sum(standby.counters.values()) == 2 * N
    assert _settle(w) == [] and w.torn_down() == 0


def test_genuine_restart_still_detected(world: World, tmp_path: Path) -> None:
    """The control: the active really restarts (SAs lost, secret reloaded from its file). Its
    answer to the taker's liveness checks tears the SAs down with both presets: at once with
    ``rfc6290``, after the accept delay (no protected response comes) and make-before-break
    with ``hardened``."""
    w = world
    rebooted = SecretStore(w.active_store.path)
    assert rebooted.load_or_create() is False
    active = TokenResponder(rebooted.maker(), live=SaTable(), clock=w.clock)  # knows no SA
    restarted: list[Event | None] = []
    for k, (a, b) in enumerate(w.sas):
        check = wire.build_request(a, b, message_id=k, sk_body=bytes(48))
        w.taker.request_sent(a, b, k)
        answer = active.respond(check, TAKER)
        assert answer is not None
        v = w.taker.receive(answer, ACTIVE)
        if v.restarted:
            restarted.append(v.event)
    restarted += _settle(w)
    assert len(restarted) == N and w.torn_down() == N
    assert all(isinstance(e, PeerRestarted) for e in restarted)
    mbb = {e.make_before_break for e in restarted if isinstance(e, PeerRestarted)}
    assert mbb == {w.taker.policy.make_before_break}


def test_limit_timed_replay_when_the_response_is_lost(world: World) -> None:
    """A known limit of the hardening, stated as a test: if the genuine protected response
    does not arrive within the accept delay (lost, or slower than the delay), a timed replay
    still tears the SA down. The cluster gate on the standby is the real fix (§9.2)."""
    w = world
    a, b = w.sas[0]
    check = wire.build_request(a, b, message_id=9, sk_body=bytes(48))
    w.taker.request_sent(a, b, 9)
    leaked = w.standby(cluster_gate=False).respond(check, ATTACKER)
    assert leaked is not None
    w.taker.receive(leaked, ATTACKER)
    _settle(w)
    assert w.torn_down() == 1
