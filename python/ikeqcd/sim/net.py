"""The networks the gateways talk over: a virtual one (deterministic discrete events in
virtual time) and a real one (UDP sockets on loopback in scaled real time)."""

from __future__ import annotations

import heapq
import math
import selectors
import socket
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ikeqcd.sim.codec import Wire, keep, listed, size
from ikeqcd.sim.config import SimConfig
from ikeqcd.sim.report import PCAP_ADDR

Handler = Callable[[Wire, list[tuple[str, int]]], None]
Batch = Callable[[list[tuple[float, Any]]], None]
"""A handler of quiet events: called with (time, item) pairs in event order."""


class Net:
    """Event scheduling and datagram delivery between named endpoints."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        self.cfg = cfg
        self.rng = rng
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.handlers: dict[str, Handler] = {}
        self.addresses: dict[str, tuple[str, int]] = {}
        self.count = 0
        self.bytes = 0
        self.count_after = 0
        self.bytes_after = 0
        self.mark_time = math.inf
        self.capture: list[tuple[float, str, str, bytes]] | None = None
        self.capture_filter: Callable[[bytes], bool] = lambda d: False

    def at(self, t: float, fn: Callable[..., None], *args: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, fn, args))

    def quiet(self, t: float, handler: Batch, item: Any) -> None:
        """A quiet event: one that only writes state no other quiet handler reads and that
        nothing observes before the next ordinary event (A's traffic bookkeeping). Quiet
        events run in batches, all those that fall due before the next ordinary event in one
        handler call, in the order (time, sequence number) they would have run one by one."""
        self.at(t, handler, [(t, item)])

    def now(self) -> float:
        raise NotImplementedError

    def register(self, name: str, handler: Handler) -> None:
        self.handlers[name] = handler

    def send(self, src: str, dst: str, datagrams: Wire, delay: float | None = None) -> None:
        n = len(datagrams)
        if not n:
            return
        now = self.now()
        octets = size(datagrams)
        self.count += n
        self.bytes += octets
        if now >= self.mark_time:
            self.count_after += n
            self.bytes_after += octets
        if self.capture is not None:
            for d in listed(datagrams):
                if self.capture_filter(d):
                    self.capture.append((now, src, dst, d))
        loss = self.cfg.path_loss(src, dst)
        if loss > 0:
            datagrams = keep(datagrams, self.rng.random(n) >= loss)
        if len(datagrams):
            self._deliver(src, dst, datagrams, self.cfg.rtt / 2 if delay is None else delay)

    def _deliver(self, src: str, dst: str, datagrams: Wire, delay: float) -> None:
        raise NotImplementedError

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class VirtualNet(Net):
    """Deterministic discrete-event network: delivery is an event ``delay`` later."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        super().__init__(cfg, rng)
        self._now = 0.0
        self._quiet: list[tuple[float, int, Batch, Any]] = []

    def quiet(self, t: float, handler: Batch, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self._quiet, (t, self._seq, handler, item))

    def _run_quiet(self, before: tuple[float, float]) -> None:
        """Run every quiet event that sorts before ``before`` (time, sequence number); the
        handlers may schedule more, which run too if they sort before it."""
        quiet = self._quiet
        while quiet and (quiet[0][0], quiet[0][1]) < before:
            due: dict[Batch, list[tuple[float, Any]]] = {}
            while quiet and (quiet[0][0], quiet[0][1]) < before:
                t, _, handler, item = heapq.heappop(quiet)
                due.setdefault(handler, []).append((t, item))
            for handler, items in due.items():
                handler(items)

    def now(self) -> float:
        return self._now

    def register(self, name: str, handler: Handler) -> None:
        super().register(name, handler)
        self.addresses[name] = PCAP_ADDR.get(name, ("192.0.2.99", 500))

    def _deliver(self, src: str, dst: str, datagrams: Wire, delay: float) -> None:
        handler = self.handlers[dst]
        source = self.addresses[src]
        self.at(self._now + delay, handler, datagrams, [source] * len(datagrams))

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        heap = self._heap
        while heap and heap[0][0] <= until:
            if self._quiet:
                self._run_quiet((heap[0][0], heap[0][1]))
            t, _, fn, args = heapq.heappop(heap)
            self._now = t
            fn(*args)
            if progress is not None:
                progress(t)
        self._run_quiet((until, math.inf))
        self._now = until


class UdpNet(Net):
    """Real UDP sockets on 127.0.0.1, in real time scaled by ``time_scale`` (sim seconds =
    real seconds / time_scale). Each endpoint has its own socket; the one-way delay ``rtt/2``
    is added before a datagram is handed to the kernel, and loss is applied at send."""

    def __init__(self, cfg: SimConfig, rng: np.random.Generator) -> None:
        super().__init__(cfg, rng)
        self._sel = selectors.DefaultSelector()
        self._socks: dict[str, socket.socket] = {}
        self._by_addr: dict[tuple[str, int], str] = {}
        self._t0 = time.monotonic()

    def now(self) -> float:
        return (time.monotonic() - self._t0) / self.cfg.time_scale

    def register(self, name: str, handler: Handler) -> None:
        super().register(name, handler)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
        s.bind(("127.0.0.1", 0))
        s.setblocking(False)
        self._socks[name] = s
        addr = s.getsockname()
        self.addresses[name] = addr
        self._by_addr[addr] = name
        self._sel.register(s, selectors.EVENT_READ, name)

    def _deliver(self, src: str, dst: str, datagrams: Wire, delay: float) -> None:
        self.at(self.now() + delay, self._transmit, src, dst, datagrams)

    def _transmit(self, src: str, dst: str, datagrams: Wire) -> None:
        sock, addr = self._socks[src], self.addresses[dst]
        for d in listed(datagrams):
            for _ in range(1000):
                try:
                    sock.sendto(d, addr)
                    break
                except BlockingIOError:
                    time.sleep(0.0001)
                except ConnectionRefusedError:
                    continue

    def run(self, until: float, progress: Callable[[float], None] | None = None) -> None:
        heap = self._heap
        while True:
            now = self.now()
            while heap and heap[0][0] <= now:
                _, _, fn, args = heapq.heappop(heap)
                fn(*args)
            if now >= until:
                break
            wait = (min(heap[0][0], until) - now) if heap else (until - now)
            for key, _ in self._sel.select(timeout=max(0.0, wait * self.cfg.time_scale)):
                name = key.data
                sock: socket.socket = key.fileobj  # type: ignore[assignment]
                batch: list[bytes] = []
                sources: list[tuple[str, int]] = []
                while len(batch) < 4096:
                    try:
                        d, a = sock.recvfrom(65535)
                    except (BlockingIOError, InterruptedError):
                        break
                    except ConnectionRefusedError:
                        continue
                    batch.append(d)
                    sources.append(a)
                if batch:
                    self.handlers[name](batch, sources)
            if progress is not None:
                progress(self.now())

    def close(self) -> None:
        for s in self._socks.values():
            self._sel.unregister(s)
            s.close()
        self._sel.close()

