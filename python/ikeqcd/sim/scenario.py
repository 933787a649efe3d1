"""The scenarios: crash-and-recover (and the issue-202 standby replay attack) per mode, the
modes of a run, and :func:`simulate`."""

from __future__ import annotations

import contextlib
import gc
import math
import os
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from ikeqcd import wire
from ikeqcd.cluster import secret_fingerprint
from ikeqcd.errors import ClusterUnavailable
from ikeqcd.policy import MakerPolicy, TakerPolicy
from ikeqcd.secret import SecretStore
from ikeqcd.sim import cluster as simcluster
from ikeqcd.sim import codec
from ikeqcd.sim.config import Baseline, SimConfig
from ikeqcd.sim.gateway_a import GatewayA
from ikeqcd.sim.gateway_b import GatewayB
from ikeqcd.sim.net import Net, UdpNet, VirtualNet
from ikeqcd.sim.report import ModeResult, SimReport, float_array, percentile, rss_mb, write_capture
from ikeqcd.sim.world import IDX_MASK, UP, World, k_of

if TYPE_CHECKING:
    from ikeqcd.cluster import LiveSaStore

__all__ = ["modes_for", "simulate"]


class Attacker:
    """Sees SPIs and A's requests, can spoof packets to the standby and to A, captures the
    standby's replies (seed slides, issue 202). With ``targets`` (a cluster), its requests go
    round robin to every node that answers for the shared secret but does not hold the SAs."""

    def __init__(self, net: Net, world: World, targets: tuple[str, ...] = ("S",)) -> None:
        self.net = net
        self.w = world
        self.targets = targets
        self.captured = 0
        self.injected = 0
        net.register("attacker", self.receive)

    def ask_standby(self, datagrams: codec.Wire) -> None:
        n = len(self.targets)
        for j, target in enumerate(self.targets):
            self.net.send("attacker", target, datagrams if n == 1 else datagrams[j::n],
                          delay=self.net.cfg.rtt / 8)

    def receive(self, datagrams: codec.Wire, sources: list[tuple[str, int]]) -> None:
        # every reply from the standby is replayed to A at once, spoofed as B
        self.captured += len(datagrams)
        self.injected += len(datagrams)
        self.net.send("attacker", "A", datagrams, delay=self.net.cfg.rtt / 8)

    def blind(self, ks: npt.NDArray[np.int64]) -> None:
        w = self.w
        n, length = len(ks), wire.HEADER_LEN + 4 + 40
        mids = self.net.rng.integers(0, 2**31, n)
        rows = np.empty((n, length), np.uint8)
        rows[:, :wire.HEADER_LEN] = codec.header_rows(
            w.spi_i[ks], w.spi_r[ks], next_payload=wire.PAYLOAD_SK, exchange=wire.EXCHANGE_INFORMATIONAL,
            flags=wire.FLAG_I, message_id=mids, length=length)
        rows[:, wire.HEADER_LEN:wire.HEADER_LEN + 4] = (wire.PAYLOAD_NONE, 0, 0, 44)
        rows[:, wire.HEADER_LEN + 4:] = np.frombuffer(os.urandom(40 * n), np.uint8).reshape(n, 40)
        self.ask_standby(rows)

    def tap(self, datagrams: codec.Wire) -> None:
        """On-path copy of A's liveness requests: forwarded to the standby, whose reply then
        carries the right Message ID (the timed variant)."""
        self.ask_standby(datagrams)


def _slug(mode: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", mode)


def _cluster_stores(cfg: SimConfig, workdir: Path, stack: contextlib.ExitStack,
                    password: str | None) -> dict[str, LiveSaStore] | None:
    """The live-SA store of each node of the cluster-gate mode (``cfg.cluster``), settled,
    before any mode runs (a store that cannot be had stops the run at once; over UDP, before
    the mode's clock starts): keyed to B's secret, which the mode's B then loads."""
    gated = [mode for mode, *_, gate in modes_for(cfg) if gate]
    if cfg.cluster is None or not gated:
        return None
    secret_b = SecretStore(workdir / f"{_slug(gated[0])}-b" / "qcd.secret")
    secret_b.load_or_create()
    return stack.enter_context(simcluster.sim_cluster(
        cfg.cluster, secret_fingerprint(secret_b), cfg.cluster_url, password))


def _run_mode(
    cfg: SimConfig,
    mode: str,
    *,
    qcd: bool,
    policy_name: str | None,
    schedule: Baseline,
    workdir: Path,
    cluster_gate: bool = False,
    progress: Callable[[str, float, float], None] | None = None,
    capture: list[tuple[float, str, str, bytes]] | None = None,
    stores: dict[str, LiveSaStore] | None = None,
) -> ModeResult:
    t_wall = time.perf_counter()
    counted = {} if stores is None else simcluster.counters_now(stores)
    rng = np.random.default_rng(cfg.seed)
    net: Net = VirtualNet(cfg, rng) if cfg.transport == "virtual" else UdpNet(cfg, rng)
    world = World(cfg.sas, rng)
    policy = TakerPolicy.hardened() if policy_name in (None, "hardened") else TakerPolicy.rfc6290()
    # one peer address carries every SA here: size the per-source verification limit to it
    policy = policy.with_(verify_rate=max(policy.verify_rate, 2.0 * cfg.sas),
                          verify_burst=max(policy.verify_burst, 2.0 * cfg.sas))
    # A rebooted gateway facing one peer with many SAs answers them all (per-source limits
    # sized to the scenario); §8.1 limits are exercised by the flood tests instead.
    maker_policy = MakerPolicy.unlimited().with_(bare_rate=math.inf)
    if cfg.topology == "remote-access":  # N peers, each its own source: the default limits
        maker_policy = MakerPolicy()
        world.spread_peers()

    slug = _slug(mode)
    store_b = workdir / f"{slug}-b" / "qcd.secret"
    secret_b = SecretStore(store_b)
    secret_b.load_or_create()
    store_a = workdir / f"{slug}-a" / "qcd.secret"
    sa = SecretStore(store_a)
    sa.load_or_create()

    capable = None
    if qcd and cfg.qcd_fraction < 1.0:  # its own generator: the scenario's draws stay the same
        capable = np.random.default_rng([cfg.seed, 6290]).random(cfg.sas) < cfg.qcd_fraction
    b = GatewayB("B", net, world, store_b, qcd=qcd, maker_policy=maker_policy, capable=capable,
                 rebuild_rate=cfg.rebuild_rate, cluster_live=None if stores is None else stores["B"],
                 publish=None if stores is None else stores["B"])
    a = GatewayA(
        net, world, cfg, qcd=qcd, policy=policy, schedule=schedule, token_maker=sa.maker(), peer=b
    )
    net.mark_time = cfg.crash_at if cfg.attack is None else cfg.attack_at
    if capture is not None:
        net.capture = capture
        limit = cfg.pcap_sas
        net.capture_filter = lambda d: len(d) >= 8 and (int.from_bytes(d[:8], "big") & IDX_MASK) < limit

    standby: GatewayB | None = None
    attacker: Attacker | None = None
    others: list[GatewayB] = []  # the standby, then the load-sharing peers of a cluster store
    if cfg.attack is not None:
        def gate(i: int, r: int) -> bool:  # the cluster's view of live SAs (RFC 6290 §9.2)
            return b.knows(k_of(i), i, r)

        names = ["S"] if stores is None else [n for n in stores if n != "B"]
        for name in names:
            store_s = workdir / f"{slug}-{name.lower()}" / "qcd.secret"
            SecretStore.import_to(store_s, secret_b.export_bytes())  # the cluster shares B's secret
            live = (stores[name] if stores is not None else gate) if cluster_gate else None
            node = GatewayB(name, net, world, store_s, qcd=True, maker_policy=maker_policy, cluster_live=live)
            node.peer = "attacker"
            others.append(node)
        standby = others[0]
        attacker = Attacker(net, world, tuple(names))

    # staging in chunks so that batches stay bounded
    chunk = 5000
    for start in range(0, cfg.sas, chunk):
        ks = np.arange(start, min(start + chunk, cfg.sas), dtype=np.int64)
        net.at(start / chunk * 0.01, a.establish, ks)

    a.traffic.start()
    net.at(0.5, a.scan)
    if cfg.attack is None:
        def crash() -> None:
            world.was_up_at_crash[:] = world.state == UP
            b.crash()
        net.at(cfg.crash_at, crash)
        net.at(cfg.crash_at + cfg.reboot_time, b.reboot)
        horizon = cfg.crash_at + cfg.reboot_time + cfg.idle + schedule.give_up + 30.0
        if cfg.rebuild_rate is not None:  # room for the storm: the capacity, then retries
            horizon += cfg.sas / cfg.rebuild_rate + 2 * schedule.give_up
    else:
        assert attacker is not None
        def world_up() -> npt.NDArray[np.int64]:
            return np.flatnonzero(world.state == UP)

        def blind_replay() -> None:
            attacker.blind(world_up())

        net.at(cfg.attack_at, blind_replay)
        # a routine DPD round on every SA a little later; the attacker copies each request
        def dpd_round() -> None:
            ks = world_up()
            world.was_up_at_crash[ks] = True
            a.start_checks(ks)
            attacker.tap(a.check_datagrams(ks))
        net.at(cfg.attack_at + 5.0, dpd_round)
        horizon = cfg.attack_at + 5.0 + schedule.give_up + 10.0

    def prog(t: float) -> None:
        if progress is not None:
            progress(mode, t, horizon)

    try:
        net.run(horizon, prog)
    finally:
        net.close()

    if cfg.attack is None:
        affected = world.was_up_at_crash
        dt = world.detect_t[affected] - cfg.crash_at
        back = world.back_t[affected] - cfg.crash_at
    else:
        affected = world.was_up_at_crash
        dt = world.detect_t[affected] - cfg.attack_at
        back = world.back_t[affected] - cfg.attack_at
    det = dt[~np.isnan(dt)]
    all_back = float(np.max(back)) if len(back) and not np.isnan(back).any() else math.nan
    wall = time.perf_counter() - t_wall
    responder_counts = {r.name: c for r, c in b.responder.counters.items() if c}
    for r, c in b.plain.counters.items():
        if c:
            responder_counts[f"plain:{r.name}"] = c
    for node in others:
        who = "standby" if node is standby else node.name
        for r, c in node.responder.counters.items():
            if c:
                responder_counts[f"{who}:{r.name}"] = c
    return ModeResult(
        mode=mode,
        qcd=qcd,
        policy=policy_name,
        schedule=schedule.name,
        sas=cfg.sas,
        detected=len(det),
        detect_p50=percentile(det, 50),
        detect_p99=percentile(det, 99),
        detect_max=float(det.max()) if len(det) else math.nan,
        all_back=all_back,
        datagrams=net.count,
        bytes=net.bytes,
        datagrams_after_crash=net.count_after,
        bytes_after_crash=net.bytes_after,
        wrongly_torn_down=int(world.wrong),
        restarts_cancelled=a.cancelled,
        verdicts=a.detector.counters,
        responder=responder_counts,
        wall_s=wall,
        detection_times=float_array(det),
        back_times=float_array(back),
        inits_dropped=b.init_dropped,
        datagrams_per_s=net.count / wall if wall > 0 else 0.0,
        cluster_store=None if stores is None else simcluster.counters_since(stores, counted),
    )


def modes_for(cfg: SimConfig) -> list[tuple[str, bool, str | None, str, bool]]:
    """(mode name, qcd, policy, schedule name, cluster gate) for each mode of a run."""
    out: list[tuple[str, bool, str | None, str, bool]] = []
    for p in cfg.policies:
        out.append((f"qcd/{p}", True, p, cfg.baseline, False))
    if cfg.attack is not None:
        if "rfc6290" in cfg.policies:
            name = "qcd/rfc6290+cluster-gate"
            if cfg.cluster is not None:
                name = f"qcd/rfc6290+cluster({cfg.cluster} nodes, {simcluster.server_kind(cfg.cluster_url)})"
            out.append((name, True, "rfc6290", cfg.baseline, True))
        return out
    for bl in cfg.baselines:
        out.append((f"no-qcd/{bl}", False, None, bl, False))
    return out


def simulate(
    cfg: SimConfig | None = None,
    *,
    progress: Callable[[str, float, float], None] | None = None,
    pcap_path: str | os.PathLike[str] | None = None,
    cluster_password: str | None = None,
) -> SimReport:
    """Run every mode of the scenario and return the figures (``cluster_password``: the
    password of the store at ``cfg.cluster_url``, if it has one)."""
    cfg = cfg or SimConfig()
    cfg.validate()
    if cfg.cluster is not None:  # before any work: a server binary and the client are here
        problem = simcluster.store_problem(cfg.cluster_url)
        if problem is not None:
            raise ClusterUnavailable(problem, reason="store")
    # millions of small dict entries (the detector's pending requests) make the cyclic
    # collector walk the whole heap again and again; the simulator creates no cycles
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        return _simulate(cfg, progress, pcap_path, cluster_password)
    finally:
        if gc_was_on:
            gc.enable()


def _simulate(
    cfg: SimConfig,
    progress: Callable[[str, float, float], None] | None,
    pcap_path: str | os.PathLike[str] | None,
    cluster_password: str | None,
) -> SimReport:
    t0 = time.perf_counter()
    start = rss_mb(peak=False)
    results: list[ModeResult] = []
    capture: list[tuple[float, str, str, bytes]] | None = [] if pcap_path is not None else None
    with tempfile.TemporaryDirectory(prefix="ikeqcd-sim-") as tmp, contextlib.ExitStack() as stack:
        stores = _cluster_stores(cfg, Path(tmp), stack, cluster_password)
        for i, (mode, qcd, policy, sched, gate) in enumerate(modes_for(cfg)):
            results.append(
                _run_mode(
                    cfg, mode, qcd=qcd, policy_name=policy, schedule=cfg.schedule(sched),
                    workdir=Path(tmp), cluster_gate=gate, progress=progress,
                    capture=capture if i == 0 else None, stores=stores if gate else None,
                )
            )
            gc.collect()  # the mode's gateways and network (they refer to each other)
    if pcap_path is not None and capture is not None:
        write_capture(pcap_path, capture, cfg)
    peak = rss_mb(peak=True)
    return SimReport(asdict(cfg), results, peak, time.perf_counter() - t0, start)



