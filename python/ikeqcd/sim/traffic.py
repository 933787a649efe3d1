"""The tunnels' ESP traffic, as the last inbound and outbound times gateway A's table needs.

Every tunnel sends a packet each traffic interval (the tunnels are spread over
:data:`GROUPS` phases, one quiet event per group: tunnels ``g, g + G, g + 2G, ...``), and the
peer answers it if it holds the SA; the answer arrives an RTT later and counts if the tunnel
is still on the same SA. ESP is bookkeeping here (the IKE messages are the real ones): all
that matters is each tunnel's last outbound and last inbound time when A asks its table which
SAs are due a liveness check.

Two exact ways to keep those times:

- **eager** (:class:`Traffic` with ``lazy=False``): each group's tick writes the times of all
  its tunnels, and draws the loss of every answer. Needed when answers to A can be lost
  (``loss_to_a > 0``): the draws come from the scenario's generator, in event order.
- **lazy** (no loss towards A): a tick only records its time, an answer's arrival only its
  own. A tunnel's times follow from when its current live stretch began (the group's tick
  count then, ``reg``) and when its peer lost the SA (``cut``; within a live stretch the peer
  can only lose it, never regain it): the last tick since ``reg``, and the arrival of the last
  answered tick before ``cut``. :meth:`Traffic.times` works them out for the tunnels A asks
  about, with numpy; the cost per tick is O(1) instead of O(tunnels).

Both give the same times, at every point of the event order (a test runs both).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from ikeqcd.sim.config import SimConfig
from ikeqcd.sim.net import Net
from ikeqcd.sim.world import CHECKING, I64, U64, UP, World

GROUPS = 50
NEVER = np.iinfo(np.int32).max

F64 = npt.NDArray[np.float64]


def lazy_for(cfg: SimConfig) -> bool:
    """Whether the lazy model is exact for a scenario: no answer to A is ever lost."""
    return cfg.path_loss("B", "A") == 0


class Traffic:
    """The traffic of every tunnel between A and its peer ``ok_of`` (the peer's view of which
    tunnels it holds with the SPIs A uses now, or None while it is down)."""

    def __init__(self, net: Net, world: World, cfg: SimConfig, ok_of: Callable[[], npt.NDArray[np.bool_] | None],
                 *, lazy: bool) -> None:
        self.net = net
        self.w = world
        self.cfg = cfg
        self.ok_of = ok_of
        self.lazy = lazy
        n = world.n
        # the times set directly (a tunnel comes up, a liveness check is answered) and, in
        # eager mode, by every tick; in lazy mode a cache of times() (never later than it)
        self.tin = np.full(n, -np.inf)
        self.tout = np.full(n, -np.inf)
        # lazy: per group, the times of its ticks and of their answers' arrival
        self.count = np.zeros(GROUPS, np.int64)  # ticks so far
        self.arrived = np.full(GROUPS, -1, np.int64)  # the last tick whose answer arrived
        self.tick_t = np.full((GROUPS, 64), np.nan)
        self.arrive_t = np.full((GROUPS, 64), np.nan)
        # lazy, per tunnel: the group's tick count when its live stretch began, and when its
        # peer lost the SA (ticks reg..cut-1 were answered)
        self.reg = np.zeros(n if lazy else 0, np.int32)
        self.cut = np.zeros(n if lazy else 0, np.int32)
        self.group = (np.arange(n if lazy else 0) % GROUPS).astype(np.int8)

    def start(self) -> None:
        """Schedule every group's first tick (a second after the start, groups in phase order)."""
        for g in range(GROUPS):
            self.net.quiet(1.0 + g * self.cfg.traffic_interval / GROUPS, self.tick, g)

    # -- what A tells the traffic model ---------------------------------------------------

    def up(self, ks: I64, now: float) -> None:
        """Tunnels ``ks`` came up now on a new SA: traffic starts in both directions."""
        self.tin[ks] = now
        self.tout[ks] = now
        if self.lazy:
            reg = self.count[ks % GROUPS].astype(np.int32)
            self.reg[ks] = reg
            ok = self.ok_of()
            self.cut[ks] = reg if ok is None else np.where(ok[ks], NEVER, reg)

    def inbound(self, ks: I64, now: float) -> None:
        """Something protected came in on tunnels ``ks`` now."""
        self.tin[ks] = now

    def lost(self, ks: I64 | None) -> None:
        """The peer lost tunnels ``ks`` (None: all of them): it answers no later tick."""
        if not self.lazy:
            return
        if ks is None:
            cnt = self.count[self.group].astype(np.int32)
            np.minimum(self.cut, cnt, out=self.cut)
        elif len(ks):
            self.cut[ks] = np.minimum(self.cut[ks], self.count[self.group[ks]])

    # -- what A asks ----------------------------------------------------------------------

    def times(self, ks: I64) -> tuple[F64, F64]:
        """(last inbound, last outbound) of live tunnels ``ks`` now (and kept as the cache)."""
        tin, tout = self.tin[ks], self.tout[ks]
        if not self.lazy or not len(ks):
            return tin, tout
        g = self.group[ks].astype(np.intp)
        reg = self.reg[ks]
        cap = self.tick_t.shape[1]
        # per group: its last tick's time, and the flat index of its last answer's arrival
        last_tick = self.tick_t[np.arange(GROUPS), np.maximum(self.count - 1, 0)]
        tout = np.where(self.count[g] > reg, np.fmax(tout, last_tick[g]), tout)
        j = np.minimum(self.arrived[g], self.cut[ks] - 1)  # the last answered tick that arrived
        at = self.arrive_t.ravel()[g * cap + np.maximum(j, 0)]
        tin = np.where(j >= reg, np.fmax(tin, at), tin)
        self.tin[ks] = tin
        self.tout[ks] = tout
        return tin, tout

    # -- the ticks ------------------------------------------------------------------------

    def tick(self, items: list[tuple[float, int]]) -> None:
        """Group ticks due together (quiet events, in event order)."""
        if self.lazy:
            self._tick_lazy(items)
        else:
            self._tick_eager(items)
        for t, g in items:
            self.net.quiet(t + self.cfg.traffic_interval, self.tick, g)

    def _tick_lazy(self, items: list[tuple[float, int]]) -> None:
        alive = self.ok_of() is not None
        for t, g in items:
            j = int(self.count[g])
            if j >= self.tick_t.shape[1]:
                self._grow()
            self.tick_t[g, j] = t
            self.count[g] = j + 1
            if alive:  # the answers of this tick (of the tunnels it reached) arrive an RTT later
                self.net.quiet(t + self.cfg.rtt, self._arrive, (g, j))

    def _arrive(self, items: list[tuple[float, tuple[int, int]]]) -> None:
        for t, (g, j) in items:
            self.arrive_t[g, j] = t
            self.arrived[g] = j

    def _grow(self) -> None:
        pad = np.full((GROUPS, self.tick_t.shape[1]), np.nan)
        self.tick_t = np.concatenate((self.tick_t, pad), axis=1)
        self.arrive_t = np.concatenate((self.arrive_t, pad), axis=1)

    def _tick_eager(self, items: list[tuple[float, int]]) -> None:
        w, G = self.w, GROUPS
        ok = self.ok_of()
        answered = []
        for t, g in items:
            st = w.state[g::G]
            live = (st == UP) | (st == CHECKING)
            self.tout[g::G][live] = t
            answered.append(None if ok is None else live & ok[g::G])
        loss = self.cfg.path_loss("B", "A")
        if loss > 0:  # one draw per answer, in event order (as one group at a time)
            counts = [0 if a is None else int(np.count_nonzero(a)) for a in answered]
            keep = self.net.rng.random(sum(counts)) >= loss
            at = 0
            for a, c in zip(answered, counts):
                if a is not None:
                    a[a] = keep[at:at + c]
                    at += c
        for (t, g), back in zip(items, answered):
            if back is not None and back.any():
                self.net.quiet(t + self.cfg.rtt, self._inbound_eager,
                               (g, back, w.spi_i[g::G].copy(), w.spi_r[g::G].copy()))

    def _inbound_eager(self, items: list[tuple[float, tuple[int, npt.NDArray[np.bool_], U64, U64]]]) -> None:
        """The answers to group ``g``'s tick arrive: tunnels still on the same SA note inbound
        traffic (one event at a time, in event order)."""
        w, G = self.w, GROUPS
        for t, (g, back, si, sr) in items:
            same = back & (w.spi_i[g::G] == si) & (w.spi_r[g::G] == sr)
            self.tin[g::G][same] = t
