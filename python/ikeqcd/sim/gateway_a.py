"""Gateway A: the survivor, initiator of every tunnel, token taker.

A establishes each tunnel (IKE_SA_INIT, then IKE_AUTH carrying its token inside a sealed SK
payload), keeps traffic flowing, checks liveness after ``idle`` seconds without inbound
traffic (seed issue 200), retransmits on the baseline's schedule, and judges the unprotected
replies with its :class:`~ikeqcd.FailureDetector`. Every step works on the arrays of the
tunnels that fall due together: one seal, one open, one table call per batch.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from ikeqcd import _protect, wire
from ikeqcd._core import SaTable, TokenMaker
from ikeqcd._taker_batch import BatchVerdicts
from ikeqcd.errors import MalformedMessage
from ikeqcd.policy import TakerPolicy
from ikeqcd.sim import codec, traffic
from ikeqcd.sim.config import Baseline, SimConfig
from ikeqcd.sim.gateway_b import GatewayB, Source
from ikeqcd.sim.net import Net
from ikeqcd.sim.traffic import Traffic
from ikeqcd.sim.world import (
    AUTH_SENT,
    CHECKING,
    DOWN,
    I64,
    IDX_MASK,
    INIT_SENT,
    U64,
    UP,
    World,
    k_of,
)
from ikeqcd.taker import (
    CheckLiveness,
    FailureDetector,
    PeerRestarted,
    RestartCancelled,
    VerdictKind,
)

SLICE = 1 << 16
"""Tunnels per slice of a walk over all of them (bounded temporaries)."""


class GatewayA:
    def __init__(
        self,
        net: Net,
        world: World,
        cfg: SimConfig,
        *,
        qcd: bool,
        policy: TakerPolicy,
        schedule: Baseline,
        token_maker: TokenMaker,
        peer: GatewayB,
    ) -> None:
        self.net = net
        self.w = world
        self.cfg = cfg
        self.qcd = qcd
        self.schedule = schedule
        self.token_maker = token_maker
        self.peer = peer
        self.detector = FailureDetector(
            SaTable(), policy=policy if qcd else policy.with_(enabled=False), clock=net.now
        )
        # IKE_SA_INIT nonces come from a keyed PRF of SPI-I (a key of this run's), so that a
        # retransmission is built again bitwise identical instead of kept per tunnel
        self._nonces = TokenMaker(os.urandom(32))
        n = world.n
        # make-before-break: the old SA to delete once the new one is up (0: none)
        self.mbb_si = np.zeros(n, np.uint64)
        self.mbb_sr = np.zeros(n, np.uint64)
        self._answered: list[I64] = []  # tunnels whose liveness check was answered
        self._rebuild: list[I64] = []  # tunnels to re-create at the end of this batch
        self.cancelled = 0
        # the tunnels' ESP traffic (exact lazy times unless answers to A can be lost)
        self.traffic = Traffic(net, world, cfg, lambda: peer.ok if peer.alive else None,
                               lazy=traffic.lazy_for(cfg))
        peer.lost = self.traffic.lost
        # no UP tunnel can be due a liveness check before ``_due_floor`` (a bound from the
        # traffic model's cache, never later than the truth): scans before then do nothing
        self._due_floor = -math.inf
        net.register("A", self.receive)

    # -- establishing tunnels -----------------------------------------------------------

    def establish(self, ks: I64) -> None:
        """Start IKE_SA_INIT for tunnels ``ks`` (new SPI-I each)."""
        w = self.w
        new = w.new_spi_i(ks)
        w.spi_i[ks] = new
        w.spi_r[ks] = 0
        self.peer.refresh(ks)
        w.state[ks] = INIT_SENT
        self._send_establishing(ks, INIT_SENT)

    def _requests(self, ks: I64, state: int) -> codec.U8:
        """The IKE_SA_INIT (``state`` INIT_SENT) or IKE_AUTH requests of tunnels ``ks``: the
        same octets each time they are built (RFC 7296 §2.1: retransmissions are identical)."""
        w = self.w
        si, sr = w.spi_i[ks], w.spi_r[ks]
        if state == INIT_SENT:
            zero = np.zeros(len(ks), np.uint64)
            return codec.plain_init(si, zero, response=False, nonces=self._nonces.tokens(si, zero, threads=1))
        if self.qcd:  # seed issue 198: the initiator's token matters too
            inner = codec.qcd_notifies(self.token_maker.tokens(si, sr, threads=1))
            rows = codec.seal(w.keys(si, sr), si, sr, exchange=wire.EXCHANGE_IKE_AUTH, message_id=1,
                              initiator=True, response=False, inner_next=wire.PAYLOAD_NOTIFY, inner=inner)
        else:
            rows = codec.seal(w.keys(si, sr), si, sr, exchange=wire.EXCHANGE_IKE_AUTH, message_id=1,
                              initiator=True, response=False)
        return rows

    def _send_establishing(self, ks: I64, state: int) -> None:
        """Send IKE_SA_INIT / IKE_AUTH requests and retransmit them on the same schedule as
        liveness checks (RFC 7296 §2.1: only the initiator retransmits)."""
        self.net.send("A", "B", self._requests(ks, state))
        snap = self.w.spi_i[ks].copy()
        self.net.at(self.net.now() + self.schedule.timeouts[0], self._est_timeout, ks, snap, state, 0)

    def _est_timeout(self, ks: I64, snap: U64, state: int, attempt: int) -> None:
        w = self.w
        keep = (w.state[ks] == state) & (w.spi_i[ks] == snap)
        ks, snap = ks[keep], snap[keep]
        if not len(ks):
            return
        nxt = attempt + 1
        if nxt < len(self.schedule.timeouts):
            self.net.send("A", "B", self._requests(ks, state))
            self.net.at(self.net.now() + self.schedule.timeouts[nxt], self._est_timeout, ks, snap, state, nxt)
        else:
            self.establish(ks)  # start over with a new SA

    def _init_responses(self, ks: I64, spi_i: U64, spi_r: U64) -> I64:
        """IKE_SA_INIT answered (the SA key follows from the SPIs: :meth:`World.keys`): the
        tunnels to send IKE_AUTH on."""
        w = self.w
        ok = (w.state[ks] == INIT_SENT) & (w.spi_i[ks] == spi_i)
        ks, spi_i, spi_r = ks[ok], spi_i[ok], spi_r[ok]
        w.spi_r[ks] = spi_r
        self.peer.refresh(ks)
        w.state[ks] = AUTH_SENT
        w.mid[ks] = 2
        return ks

    def _auth_responses(self, ks: I64, spi_i: U64, spi_r: U64, has: npt.NDArray[np.bool_],
                        tokens: npt.NDArray[np.uint8]) -> None:
        w = self.w
        ok = w.state[ks] == AUTH_SENT
        ks, spi_i, spi_r, has, tokens = ks[ok], spi_i[ok], spi_r[ok], has[ok], tokens[ok]
        if not len(ks):
            return
        # no token: still track traffic on the SA (a placeholder never matches)
        tokens[~has] = codec.filler(int((~has).sum()), 32)
        self.detector.tokens_received(spi_i, spi_r, tokens)
        w.state[ks] = UP
        self.traffic.up(ks, self.net.now())  # the insertion time counts as the last traffic
        self._due_floor = min(self._due_floor, self.net.now() + self.cfg.idle)
        back = ~np.isnan(w.detect_t[ks]) & np.isnan(w.back_t[ks])
        w.back_t[ks[back]] = self.net.now()
        old = ks[self.mbb_si[ks] != 0]
        if len(old):  # make-before-break: the new SA is up, now delete the old one
            self.detector.sas_deleted(self.mbb_si[old], self.mbb_sr[old])
            self.mbb_si[old] = 0
            self.mbb_sr[old] = 0

    # -- traffic and liveness -----------------------------------------------------------

    def scan(self) -> None:
        now = self.net.now()
        if now + 0.002 >= self._due_floor:  # (2 ms: the table's millisecond ticks)
            self._check_due(now)
        self._poll()
        self.net.at(now + self.cfg.scan_interval, self.scan)

    def _check_due(self, now: float) -> None:
        """Start liveness checks on the tunnels due one (seed issue 200). A asks its table about
        the UP tunnels whose last inbound traffic is old enough (1.5 ms of rounding spare), after
        writing their traffic times to it: the table decides, one lookup each. The tunnels are
        walked in slices, so that the temporary arrays stay small at any scale."""
        w, cfg, tr = self.w, self.cfg, self.traffic
        idle = cfg.idle
        thr = now - idle + 0.002
        # the traffic model's cache is never later than the truth: bring the tunnels that
        # may be due, and those that may be within a tick of it, up to date (a floor that
        # stays close to the truth, so that the next scans skip this walk)
        near = thr + cfg.traffic_interval + cfg.rtt
        found: list[tuple[I64, npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        for a in range(0, w.n, SLICE):
            up = np.flatnonzero(w.state[a:a + SLICE] == UP)
            ks = up[tr.tin[a:a + SLICE][up] <= near] + a
            if len(ks):
                tin, tout = tr.times(ks)
                old = tin <= thr
                if old.any():
                    found.append((ks[old], tin[old], tout[old]))
        if found:
            ks, tin, tout = (np.concatenate(x) for x in zip(*found))
            si, sr = w.spi_i[ks], w.spi_r[ks]
            self._touch(si, sr, tout, inbound=False)
            self._touch(si, sr, tin, inbound=True)
            due = ks[self.detector.due_among(si, sr, now, idle=idle)]
            self.start_checks(due[: self.cfg.max_checks_per_scan])
        floor = math.inf
        for a in range(0, w.n, SLICE):
            up = w.state[a:a + SLICE] == UP
            if up.any():
                floor = min(floor, float(tr.tin[a:a + SLICE][up].min()))
        self._due_floor = floor + idle

    def _touch(self, si: U64, sr: U64, times: npt.NDArray[np.float64], *, inbound: bool) -> None:
        """Record each SA's traffic time in A's table (one call per distinct time)."""
        order = np.argsort(times, kind="stable")
        si, sr, t = si[order], sr[order], times[order]
        cuts = (np.flatnonzero(np.diff(t)) + 1).tolist()
        for a, b in zip([0, *cuts], [*cuts, len(t)]):
            self.detector.table.touch_many(si[a:b], sr[a:b], float(t[a]), inbound=inbound)

    def start_checks(self, ks: I64) -> None:
        if not len(ks):
            return
        w = self.w
        mids = w.mid[ks].copy()
        w.mid[ks] = mids + 1
        si, sr = w.spi_i[ks], w.spi_r[ks]
        rows = codec.seal(w.keys(si, sr), si, sr, exchange=wire.EXCHANGE_INFORMATIONAL,
                          message_id=mids, initiator=True, response=False)
        self.detector.requests_sent(si, sr, mids)
        w.state[ks] = CHECKING
        w.attempt[ks] = 0
        self.net.send("A", "B", rows)
        self.net.at(self.net.now() + self.schedule.timeouts[0], self._timeout, ks, 0)

    def check_datagrams(self, ks: I64) -> codec.U8:
        """The liveness requests in flight on tunnels ``ks`` (those that have one)."""
        return self._check_rows(ks[self.w.state[ks] == CHECKING])

    def _check_rows(self, ks: I64) -> npt.NDArray[np.uint8]:
        """The liveness checks in flight on tunnels ``ks``, sealed again (Message ID: the one
        before next): bitwise the first transmission."""
        w = self.w
        si, sr = w.spi_i[ks], w.spi_r[ks]
        return codec.seal(w.keys(si, sr), si, sr, exchange=wire.EXCHANGE_INFORMATIONAL,
                          message_id=w.mid[ks] - np.uint32(1), initiator=True, response=False)

    def _timeout(self, ks: I64, attempt: int) -> None:
        w = self.w
        ks = ks[(w.state[ks] == CHECKING) & (w.attempt[ks] == attempt)]
        if not len(ks):
            return
        nxt = attempt + 1
        if nxt < len(self.schedule.timeouts):
            w.attempt[ks] = nxt
            # RFC 7296 §2.1: retransmissions are bitwise identical (spec case 44)
            self.net.send("A", "B", self._check_rows(ks))
            self.net.at(self.net.now() + self.schedule.timeouts[nxt], self._timeout, ks, nxt)
            return
        self.down(ks, "timeout")  # gave up: the peer is declared dead (RFC 7296 §2.4)

    def down(self, ks: I64, via: str) -> None:
        """Tear tunnels ``ks`` down (in this order) and re-create them."""
        w = self.w
        if not w.distinct(ks):
            _, first = np.unique(ks, return_index=True)
            ks = ks[np.sort(first)]
        ks = ks[w.state[ks] != DOWN]
        if not len(ks):
            return
        now = self.net.now()
        w.detect_t[ks] = np.where(np.isnan(w.detect_t[ks]), now, w.detect_t[ks])
        si, sr = w.spi_i[ks], w.spi_r[ks]
        if self.peer.alive:  # the peer still had this SA: a healthy tunnel was torn down
            w.wrong += int(((self.peer.si[ks] == si) & (self.peer.sr[ks] == sr) & (sr != 0)).sum())
        w.state[ks] = DOWN
        w.rebuilds[ks] += 1
        if self.detector.policy.make_before_break and via != "timeout":
            self.mbb_si[ks], self.mbb_sr[ks] = si, sr
        else:
            self.detector.sas_deleted(si, sr)
        if not self._rebuild:
            self.net.at(now, self._flush)
        self._rebuild.append(ks)

    def _flush(self) -> None:
        """Batch work collected while handling one batch of events or datagrams."""
        now = self.net.now()
        if self._rebuild:
            ks = np.concatenate(self._rebuild)
            self._rebuild = []
            self.establish(ks)
        if self._answered:  # a liveness check answered: inbound traffic now
            ks = np.concatenate(self._answered)
            self._answered = []
            self.traffic.inbound(ks, now)
            self._due_floor = min(self._due_floor, now + self.cfg.idle)

    def _poll(self) -> None:
        events, si, _sr = self.detector.poll_many()
        self.handle_events(events)
        if len(si):  # held restarts that became due, in order
            ks = (si & np.uint64(IDX_MASK)).astype(np.int64)
            ks = ks[self.w.spi_i[ks] == si]
            if len(ks):
                self.down(ks, "invalid_ike_spi")

    def handle_events(self, events: Sequence[object]) -> None:
        w = self.w
        restarted: list[tuple[int, str]] = []
        for ev in events:
            if isinstance(ev, PeerRestarted):
                restarted.append((ev.spi_i, ev.via))
                continue
            self._restarts(restarted)
            restarted = []
            if isinstance(ev, CheckLiveness):
                k = k_of(ev.spi_i)
                if w.state[k] == UP and int(w.spi_i[k]) == ev.spi_i:
                    self.start_checks(np.array([k], np.int64))
            elif isinstance(ev, RestartCancelled):
                self.cancelled += 1
        self._restarts(restarted)

    def _restarts_now(self, judged: BatchVerdicts) -> None:
        rows = np.flatnonzero(judged.restarted)
        si = judged.spi_i[rows]
        ks = (si & np.uint64(IDX_MASK)).astype(np.int64)
        ks = ks[self.w.spi_i[ks] == si]
        if len(ks):
            self.down(ks, "invalid_ike_spi")

    def _restarts(self, restarted: list[tuple[int, str]]) -> None:
        if not restarted:
            return
        si = np.fromiter((s for s, _ in restarted), np.uint64, len(restarted))
        ks = (si & np.uint64(IDX_MASK)).astype(np.int64)
        mine = self.w.spi_i[ks] == si
        ks = ks[mine]
        via = [v for (_, v), m in zip(restarted, mine.tolist()) if m]
        # tunnels go down in event order; ``via`` only matters as "timeout" or not
        if len(ks):
            self.down(ks, via[0])

    # -- receiving ----------------------------------------------------------------------

    def receive(self, datagrams: codec.Wire, sources: list[Source]) -> None:
        w = self.w
        h = codec.headers(datagrams)
        ks = (h.spi_i & np.uint64(IDX_MASK)).astype(np.int64)
        # one message per tunnel in a batch (B's answers to one of A's sends): tunnels are
        # then independent and the batch path is exact; anything else goes one at a time
        if not (h.fast & (ks < w.n)).all() or not w.distinct(ks):
            self._receive_one_by_one(datagrams, sources)
            return
        response = (h.flags & wire.FLAG_R) != 0
        init = (h.exchange == wire.EXCHANGE_IKE_SA_INIT) & response & (h.next != wire.PAYLOAD_NOTIFY)
        sk = ~init & response & (h.next == wire.PAYLOAD_SK)
        sk &= (w.spi_i[ks] == h.spi_i) & (w.spi_r[ks] == h.spi_r)
        sealed_sk = ~init & response & (h.next == wire.PAYLOAD_SK)  # (mismatched SPIs: dropped)
        others = np.flatnonzero(~init & ~sealed_sk)
        auth_ks = self._init_responses(*(a[init] for a in (ks, h.spi_i, h.spi_r)))
        for length in np.unique(h.length[sk]).tolist():
            idx = np.flatnonzero(sk & (h.length == length))
            k = ks[idx]
            ok, inner_next, inner = codec.open_sealed(w.keys(h.spi_i[idx], h.spi_r[idx]),
                                                      codec.gather(datagrams, idx, length))
            idx, k, inner_next, inner = idx[ok], k[ok], inner_next[ok], inner[ok]
            auth = h.exchange[idx] == wire.EXCHANGE_IKE_AUTH
            if auth.any():
                has, toks = codec.tokens_in(inner_next[auth], inner[auth])
                a = idx[auth]
                self._auth_responses(k[auth], h.spi_i[a], h.spi_r[a], has, toks)
            o = idx[~auth]
            if len(o):
                ko = k[~auth]
                self.detector.responses_received(h.spi_i[o], h.spi_r[o], h.message_id[o])
                checking = ko[w.state[ko] == CHECKING]
                w.state[checking] = UP
                self._answered.append(ko)
        judged = self.detector.judge_many(codec.pick_wire(datagrams, others), codec.pick(sources, others))
        if judged.restarted.any():  # PeerRestarted now (rfc6290), in datagram order
            self._restarts_now(judged)
        if judged.checks:
            self.handle_events(judged.checks)
        deferred = judged.deferred
        self._after_receive(deferred, auth_ks)

    def _after_receive(self, deferred: bool, auth_ks: I64) -> None:
        if deferred:  # one poll for the batch, when its held decisions become due
            self.net.at(self.net.now() + self.detector.policy.accept_delay, self._poll)
        if len(auth_ks):
            self._send_establishing(auth_ks, AUTH_SENT)
        self._flush()

    def _receive_one_by_one(self, datagrams: codec.Wire, sources: list[Source]) -> None:
        """The same decisions as :meth:`receive`, one datagram at a time (batches that are not
        one message per tunnel: the attacker's replays, malformed input)."""
        w = self.w
        auth_ks: list[int] = []
        deferred = False
        for d, src in zip(codec.listed(datagrams), sources):
            try:
                h = wire.parse_header(d)
            except MalformedMessage:
                continue
            k = k_of(h.spi_i)
            one = np.array([k], np.int64)
            if k >= w.n:
                self.detector.receive(d, src)
                continue
            if h.exchange == wire.EXCHANGE_IKE_SA_INIT and h.response and h.next_payload != wire.PAYLOAD_NOTIFY:
                got = self._init_responses(one, np.array([h.spi_i], np.uint64), np.array([h.spi_r], np.uint64))
                auth_ks.extend(got.tolist())
                continue
            if h.next_payload == wire.PAYLOAD_SK and h.response:
                if int(w.spi_i[k]) != h.spi_i or int(w.spi_r[k]) != h.spi_r:
                    continue
                try:
                    _, inner_next, inner = _protect.open_sealed(w.key(h.spi_i, h.spi_r), d)
                except _protect.Unreadable:
                    continue
                if h.exchange == wire.EXCHANGE_IKE_AUTH:
                    token = b""
                    for nt in _protect.inner_notifies(inner_next, inner):
                        if nt.notify_type == wire.NOTIFY_QCD_TOKEN:
                            token = nt.data
                    toks = np.zeros((1, 32), np.uint8)
                    if len(token) == 32:
                        toks[0] = np.frombuffer(token, np.uint8)
                    self._auth_responses(one, np.array([h.spi_i], np.uint64), np.array([h.spi_r], np.uint64),
                                         np.array([len(token) == 32]), toks)
                else:
                    self.detector.response_received(h.spi_i, h.spi_r, h.message_id)
                    if w.state[k] == CHECKING:
                        w.state[k] = UP
                    self._answered.append(one)
                continue
            verdict = self.detector.receive(d, src)
            if verdict.event is not None:  # PeerRestarted now, or CheckLiveness
                self.handle_events([verdict.event])
            elif verdict.kind is VerdictKind.DEFERRED:
                deferred = True
        self._after_receive(deferred, np.array(auth_ks, np.int64))
