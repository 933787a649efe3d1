"""Gateway B: the one that crashes, reboots and reloads its QCD secret from disk (and the
standby of the issue-202 attack, which shares B's secret).

B answers each batch of datagrams with arrays: IKE_SA_INIT requests get a fresh SPI-R and a
nonce, IKE_AUTH requests are opened with the SA key, A's token is stored and B's own token
goes back sealed, liveness checks on SAs B still has are answered sealed, and everything
else (SAs B lost in the crash) goes to its :class:`~ikeqcd.TokenResponder` in one call.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from ikeqcd import _protect, wire
from ikeqcd.errors import MalformedMessage
from ikeqcd.maker import TokenResponder
from ikeqcd.policy import MakerPolicy
from ikeqcd.secret import SecretStore
from ikeqcd.sim import codec
from ikeqcd.sim.net import Net
from ikeqcd.sim.world import IDX_MASK, World, k_of

Source = tuple[str, int]


class _Replies:
    """B's replies to one batch, in the order of the requests they answer: each group of
    rows is kept as built, and only joined into ``bytes`` when the batch has several."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.groups: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.uint8]]] = []

    def put(self, idx: npt.NDArray[np.intp], rows: npt.NDArray[np.uint8]) -> None:
        if len(idx):
            self.groups.append((idx, rows))

    def wire(self) -> codec.Wire:
        if len(self.groups) == 1:
            return self.groups[0][1]
        out: npt.NDArray[np.object_] = np.full(self.n, None, object)
        for idx, rows in self.groups:
            out[idx] = codec.as_list(rows)
        return list(filter(None, out.tolist()))


class GatewayB:
    def __init__(
        self,
        name: str,
        net: Net,
        world: World,
        store_path: Path,
        *,
        qcd: bool,
        maker_policy: MakerPolicy,
        cluster_live: Callable[[int, int], bool] | Any = None,
        publish: Any = None,
        capable: npt.NDArray[np.bool_] | None = None,
        rebuild_rate: float | None = None,
    ) -> None:
        self.name = name
        self.net = net
        self.w = world
        self.store_path = store_path
        self.qcd = qcd
        self.maker_policy = maker_policy
        self.cluster_live = cluster_live
        # the cluster's live-SA store this gateway publishes its SAs to (add_many /
        # remove_many, a batch at a time), or None
        self.publish = publish
        # per tunnel: does B's side of it speak QCD (None: all of them, when qcd is on)
        self.capable = capable
        # after a reboot: new IKE_SA_INIT accepted per second (None: no limit); the bucket
        self.rebuild_rate = rebuild_rate
        self._bucket: list[float] | None = None  # [tokens, last refill time]
        self.init_dropped = 0
        self.alive = True
        self.peer = "A"
        # told which tunnels this gateway stopped holding (None: all), e.g. A's traffic model
        self.lost: Callable[[npt.NDArray[np.int64] | None], None] | None = None
        self._boot()
        net.register(name, self.receive)

    def _boot(self) -> None:
        store = SecretStore(self.store_path)
        store.load()  # non-volatile: the same secret as before the crash
        self.maker = store.maker()
        n = self.w.n
        # what this gateway knows, per tunnel slot: the SA's SPIs and whether IKE_AUTH is done
        # (its SA database: :meth:`contains_many` is the live check §9.2 asks for). B never
        # acts as a token taker here, so it does not keep the tokens A sends in IKE_AUTH.
        self.si = np.zeros(n, np.uint64)
        self.sr = np.zeros(n, np.uint64)
        self.authed = np.zeros(n, bool)
        # knows_many's answer per tunnel, kept current by refresh() wherever B's or A's SPIs
        # or B's IKE_AUTH state change (one gather per traffic batch instead of five)
        self.ok = np.zeros(n, bool)
        live: Any = self.cluster_live if self.cluster_live is not None else self
        policy = self.maker_policy if self.qcd else self.maker_policy.with_(enabled=False)
        self.responder = TokenResponder(self.maker, live=live, policy=policy, clock=self.net.now)
        # the tunnels whose peer does not speak QCD answer as plain RFC 7296
        self.plain = TokenResponder(self.maker, live=live, policy=self.maker_policy.with_(enabled=False),
                                    clock=self.net.now)

    def crash(self) -> None:
        self.alive = False
        if self.publish is not None:
            self.publish.remove_many(self.si[self.authed], self.sr[self.authed])
        self.si[:] = 0
        self.sr[:] = 0
        self.authed[:] = False
        self.ok[:] = False
        if self.lost is not None:
            self.lost(None)

    def reboot(self) -> None:
        self._boot()
        self.alive = True
        if self.rebuild_rate is not None:
            self._bucket = [self.rebuild_rate, self.net.now()]

    def _admit_inits(self, n: int) -> int:
        """How many of ``n`` new IKE_SA_INIT requests the bucket admits now (the first ones)."""
        if self._bucket is None or self.rebuild_rate is None:
            return n
        now = self.net.now()
        tokens = min(self.rebuild_rate, self._bucket[0] + (now - self._bucket[1]) * self.rebuild_rate)
        take = min(n, int(tokens))
        self._bucket = [tokens - take, now]
        self.init_dropped += n - take
        return take

    def contains_many(self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64]) -> npt.NDArray[np.bool_]:
        """Which SPI pairs are live SAs of this gateway (IKE_AUTH done): the responder's
        §9.2 live check, against the slot each SPI-I names."""
        ks = (spi_i & np.uint64(IDX_MASK)).astype(np.int64)
        inside = ks < self.w.n
        k = np.where(inside, ks, 0)
        live: npt.NDArray[np.bool_] = inside & self.authed[k] & (self.si[k] == spi_i) & (self.sr[k] == spi_r)
        return live

    def __contains__(self, pair: object) -> bool:
        if not isinstance(pair, tuple) or len(pair) != 2:
            return False
        spi_i, spi_r = pair
        k = k_of(spi_i)
        return k < self.w.n and bool(self.authed[k]) and self.knows(k, spi_i, spi_r)

    def knows(self, k: int, spi_i: int, spi_r: int) -> bool:
        return int(self.si[k]) == spi_i and int(self.sr[k]) == spi_r and spi_r != 0

    def knows_many(self, ks: npt.NDArray[np.int64]) -> npt.NDArray[np.bool_]:
        """Which of tunnels ``ks`` this gateway has, with the SPIs A uses now."""
        if not self.alive:
            return np.zeros(len(ks), bool)
        same: npt.NDArray[np.bool_] = self.ok[ks]
        return same

    def refresh(self, ks: npt.NDArray[np.int64]) -> None:
        """Recompute :meth:`knows_many` for tunnels ``ks`` after their SPIs or state changed."""
        ok = self.authed[ks] & (self.si[ks] == self.w.spi_i[ks]) & (self.sr[ks] == self.w.spi_r[ks])
        self._set_ok(ks, ok)

    def _set_ok(self, ks: npt.NDArray[np.int64], ok: npt.NDArray[np.bool_] | bool) -> None:
        if self.lost is not None:
            gone = ks[self.ok[ks] & ~np.asarray(ok, bool)]
            if len(gone):
                self.lost(gone)
        self.ok[ks] = ok

    # -- receiving ----------------------------------------------------------------------

    def receive(self, datagrams: codec.Wire, sources: list[Source]) -> None:
        if not self.alive or not len(datagrams):
            return
        n = len(datagrams)
        h = codec.headers(datagrams)
        ks = (h.spi_i & np.uint64(IDX_MASK)).astype(np.int64)
        inside = h.fast & (ks < self.w.n)
        if self.w.peer_src is not None and inside.any():  # remote access: each peer's address
            src: npt.NDArray[np.object_] = np.fromiter(sources, dtype=object, count=n)
            src[inside] = self.w.peer_src[ks[inside]]
            sources = src.tolist()
        # one request per tunnel in a batch (each of A's sends is): then tunnels are independent
        # and the batch path is exact; anything else is handled one datagram at a time
        if not inside.all() or not self.w.distinct(ks):
            self._receive_one_by_one(datagrams, sources)
            return
        out = _Replies(n)
        request = (h.flags & wire.FLAG_R) == 0
        init = request & (h.exchange == wire.EXCHANGE_IKE_SA_INIT)
        if init.any():
            self._init_requests(np.flatnonzero(init), h, ks, out)
        sealed = request & ~init
        known = np.zeros(n, bool)
        if sealed.any():
            idx = np.flatnonzero(sealed)
            k = ks[idx]
            known[idx] = (self.si[k] == h.spi_i[idx]) & (self.sr[k] == h.spi_r[idx]) & (h.spi_r[idx] != 0)
            for length in np.unique(h.length[known]).tolist():
                self._sealed_requests(datagrams, np.flatnonzero(known & (h.length == length)), length, h, ks, out)
        replies = out.wire()
        unknown = np.flatnonzero(sealed & ~known)
        if len(unknown):
            # QCD on: the token reply; off: plain RFC 7296 (a bare INVALID_IKE_SPI), both
            # decided by the responder's MakerPolicy gate
            replies = codec.listed(replies) + list(filter(None, self._respond(datagrams, sources, unknown, ks[unknown])))
        self.net.send(self.name, self.peer, replies)

    def _respond(self, datagrams: codec.Wire, sources: list[Source], idx: npt.NDArray[np.intp],
                 ks: npt.NDArray[np.int64]) -> list[bytes | None]:
        """Replies to requests for SAs B does not have, in order: from the QCD responder, or
        from the plain one for tunnels whose peer does not speak QCD."""
        if self.capable is None or not self.qcd:
            got, _ = self.responder.respond_many(codec.pick_wire(datagrams, idx), codec.pick(sources, idx))
            return got
        out: npt.NDArray[np.object_] = np.full(len(idx), None, object)
        cap = self.capable[ks]
        for responder, sel in ((self.responder, np.flatnonzero(cap)), (self.plain, np.flatnonzero(~cap))):
            if len(sel):
                got, _ = responder.respond_many(codec.pick_wire(datagrams, idx[sel]), codec.pick(sources, idx[sel]))
                out[sel] = got
        return list(out.tolist())

    def _init_requests(self, idx: npt.NDArray[np.intp], h: codec.Headers, ks: npt.NDArray[np.int64],
                       out: _Replies) -> None:
        k, spi_i = ks[idx], h.spi_i[idx]
        # a retransmitted request gets the same answer; a new one a fresh SPI-R
        again = (self.si[k] == spi_i) & (self.sr[k] != 0) & ~self.authed[k]
        new = ~again
        if self._bucket is not None:  # over the rebuild capacity: dropped, A retransmits
            fresh = np.flatnonzero(new)
            drop = fresh[self._admit_inits(len(fresh)):]
            if len(drop):
                keep = np.ones(len(idx), bool)
                keep[drop] = False
                idx, k, spi_i, new = idx[keep], k[keep], spi_i[keep], new[keep]
        if self.publish is not None:  # a new SA in a slot whose old one was live: withdrawn
            gone = k[new][self.authed[k[new]]]
            if len(gone):
                self.publish.remove_many(self.si[gone], self.sr[gone])
        spi_r = self.sr[k].copy()
        spi_r[new] = self.w.rng.integers(1, 2**63, int(new.sum())).astype(np.uint64)
        self.si[k[new]], self.sr[k[new]], self.authed[k[new]] = spi_i[new], spi_r[new], False
        self._set_ok(k[new], False)
        out.put(idx, codec.plain_init(spi_i, spi_r, response=True))

    def _sealed_requests(self, datagrams: codec.Wire, idx: npt.NDArray[np.intp], length: int,
                         h: codec.Headers, ks: npt.NDArray[np.int64], out: _Replies) -> None:
        k = ks[idx]
        keys = self.w.keys(h.spi_i[idx], h.spi_r[idx])  # the IKE_SA_INIT outcome both sides derived
        ok, _, _ = codec.open_sealed(keys, codec.gather(datagrams, idx, length))
        # §9.2: a live SA's SPIs never get a token, whatever the content: unreadable ones drop
        idx, k, keys = idx[ok], k[ok], keys[ok]
        si, sr, ex, mid = h.spi_i[idx], h.spi_r[idx], h.exchange[idx], h.message_id[idx]
        auth = ex == wire.EXCHANGE_IKE_AUTH
        if auth.any():
            a = np.flatnonzero(auth)
            if self.publish is not None:
                self.publish.add_many(si[a], sr[a])
            self.authed[k[a]] = True
            self.refresh(k[a])
            tok = np.full(len(a), self.qcd)
            if self.qcd and self.capable is not None:
                tok &= self.capable[k[a]]
            t, p = a[tok], a[~tok]
            if len(t):
                mine = self.maker.tokens(si[t], sr[t], threads=1)
                rows = codec.seal(keys[t], si[t], sr[t], exchange=wire.EXCHANGE_IKE_AUTH,
                                  message_id=mid[t], initiator=False, response=True,
                                  inner_next=wire.PAYLOAD_NOTIFY, inner=codec.qcd_notifies(mine))
                out.put(idx[t], rows)
            if len(p):
                rows = codec.seal(keys[p], si[p], sr[p], exchange=wire.EXCHANGE_IKE_AUTH,
                                  message_id=mid[p], initiator=False, response=True)
                out.put(idx[p], rows)
        for x in np.unique(ex[~auth]).tolist():
            o = np.flatnonzero(~auth & (ex == x))
            rows = codec.seal(keys[o], si[o], sr[o], exchange=x, message_id=mid[o],
                              initiator=False, response=True)
            out.put(idx[o], rows)

    def _receive_one_by_one(self, wire_batch: codec.Wire, sources: list[Source]) -> None:
        """The same decisions as :meth:`receive`, one datagram at a time (batches that are not
        one request per tunnel: the attacker's spoofed ones, malformed input)."""
        out: list[bytes] = []
        unknown: list[bytes] = []
        unknown_src: list[Source] = []
        added: list[tuple[int, int]] = []  # SAs established here, published in one batch
        gone: list[tuple[int, int]] = []  # live SAs replaced by a new one in their slot
        for d, src in zip(codec.listed(wire_batch), sources):
            try:
                h = wire.parse_header(d)
            except MalformedMessage:
                unknown.append(d)  # the responder counts it as malformed
                unknown_src.append(src)
                continue
            if h.response:
                continue
            k = k_of(h.spi_i)
            if k >= self.w.n:
                unknown.append(d)
                unknown_src.append(src)
                continue
            if h.exchange == wire.EXCHANGE_IKE_SA_INIT:
                if int(self.si[k]) == h.spi_i and self.sr[k] and not self.authed[k]:
                    spi_r = int(self.sr[k])  # a retransmitted request: the same answer
                elif not self._admit_inits(1):
                    continue  # over the rebuild capacity
                else:
                    if self.authed[k]:
                        gone.append((int(self.si[k]), int(self.sr[k])))
                    spi_r = int(self.w.rng.integers(1, 2**63))
                    self.si[k], self.sr[k], self.authed[k] = h.spi_i, spi_r, False
                    self._set_ok(np.array([k], np.int64), False)
                out.append(
                    _protect.plain_message(
                        h.spi_i, spi_r, exchange=wire.EXCHANGE_IKE_SA_INIT, message_id=0,
                        flags=wire.FLAG_R, payloads=[(wire.PAYLOAD_NONCE, os.urandom(32))],
                    )
                )
                continue
            if not self.knows(k, h.spi_i, h.spi_r):
                unknown.append(d)
                unknown_src.append(src)
                continue
            key = self.w.key(h.spi_i, h.spi_r)
            try:
                _protect.open_sealed(key, d)
            except (_protect.Unreadable, MalformedMessage):
                continue
            reply_inner = b""
            reply_next = wire.PAYLOAD_NONE
            if h.exchange == wire.EXCHANGE_IKE_AUTH:
                added.append((h.spi_i, h.spi_r))
                self.authed[k] = True
                self.refresh(np.array([k], np.int64))
                if self.qcd and (self.capable is None or bool(self.capable[k])):
                    reply_inner = wire.build_qcd_notify(self.maker.token(h.spi_i, h.spi_r))
                    reply_next = wire.PAYLOAD_NOTIFY
            out.append(
                _protect.seal(
                    key, h.spi_i, h.spi_r, exchange=h.exchange, message_id=h.message_id,
                    initiator=False, response=True, inner_next=reply_next, inner=reply_inner,
                )
            )
        if self.publish is not None:
            replaced = set(gone)  # an SA added and replaced within this batch
            added = [p for p in added if p not in replaced]
            for pairs, write in ((gone, self.publish.remove_many), (added, self.publish.add_many)):
                if pairs:
                    arr = np.array(pairs, dtype=np.uint64).reshape(-1, 2)
                    write(arr[:, 0], arr[:, 1])
        if unknown:
            if self.capable is None or not self.qcd:
                replies, _ = self.responder.respond_many(unknown, unknown_src)
            else:  # rare here (odd batches): per datagram, by its tunnel's peer
                replies = []
                for d, src in zip(unknown, unknown_src):
                    k = k_of(int.from_bytes(d[:8], "big")) if len(d) >= 8 else 0
                    cap = k >= self.w.n or bool(self.capable[k])
                    got, _ = (self.responder if cap else self.plain).respond_many([d], [src])
                    replies.extend(got)
            out.extend(r for r in replies if r is not None)
        self.net.send(self.name, self.peer, out)
