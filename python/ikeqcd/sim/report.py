"""What a run measured: per-mode results, the table, JSON, the plot, progress and pcap."""

from __future__ import annotations

import math
import os
import sys
import time
from array import array
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from ikeqcd.errors import InvalidArgument

__all__ = ["ModeResult", "SimReport", "plot_cdf", "print_progress"]

# documentation addresses (RFC 5737) of the virtual network and the pcap files
PCAP_ADDR = {
    "A": ("192.0.2.1", 500),
    "B": ("198.51.100.2", 500),
    "S": ("198.51.100.3", 500),
    "attacker": ("203.0.113.66", 500),
}


def float_array(times: Iterable[float] | npt.NDArray[np.float64]) -> array[float]:
    """``times`` as an ``array('d')`` (from a numpy array by one copy of its bytes)."""
    if isinstance(times, array) and times.typecode == "d":
        return times
    if isinstance(times, np.ndarray):
        return array("d", np.ascontiguousarray(times, np.float64).tobytes())
    return array("d", times)


@dataclass
class ModeResult:
    """What one mode measured."""

    mode: str
    qcd: bool
    policy: str | None
    schedule: str
    sas: int
    detected: int
    detect_p50: float
    detect_p99: float
    detect_max: float
    all_back: float
    datagrams: int
    bytes: int
    datagrams_after_crash: int
    bytes_after_crash: int
    wrongly_torn_down: int
    restarts_cancelled: int
    verdicts: dict[str, int]
    responder: dict[str, int]
    wall_s: float
    detection_times: array[float] = field(repr=False, default_factory=lambda: array("d"))
    """Per detected tunnel, its detection time (s from the crash or attack). Both per-tunnel
    series are ``array('d')``, 8 bytes a tunnel (a list of floats costs 32): at 10^6 SAs the
    results of four modes stay small. A list or numpy array given here is converted."""
    datagrams_per_s: float = 0.0
    """Simulated datagrams (every one built, sealed or answered through the library) per
    second of wall time of this mode, on one core."""
    back_times: array[float] = field(repr=False, default_factory=lambda: array("d"))
    """Per affected tunnel, when it was back up (s from the crash or attack; NaN: never)."""
    inits_dropped: int = 0
    """IKE_SA_INIT requests the rebooted B dropped over its rebuild capacity."""
    cluster_store: dict[str, dict[str, int]] | None = None
    """The cluster-gate mode on a real store (``SimConfig.cluster``): per node, and summed
    under ``"all"``, the store's ``checks`` (SPI pairs asked about), ``batches`` and
    ``fail_closed`` batches during the mode; None for every other mode."""

    def __post_init__(self) -> None:
        self.detection_times = float_array(self.detection_times)
        self.back_times = float_array(self.back_times)


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` memory field in MiB (Linux), or None."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return None


def rss_mb(*, peak: bool) -> float:
    """This process's resident memory in MiB: now, or its peak. On Linux from
    ``/proc/self/status`` (``VmRSS``, ``VmHWM``): ``ru_maxrss`` survives ``exec`` there, so a
    child would report its parent's peak; elsewhere ``ru_maxrss`` for both."""
    got = _status_mb("VmHWM" if peak else "VmRSS")
    if got is not None:
        return got
    import resource

    raw = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return raw / 2**20 if sys.platform == "darwin" else raw / 1024.0


@dataclass
class SimReport:
    """All modes of one run."""

    config: dict[str, Any]
    results: list[ModeResult]
    peak_rss_mb: float
    wall_s: float
    start_rss_mb: float = 0.0
    """The process's RSS when the run began (the interpreter and its imports)."""

    @property
    def bytes_per_sa(self) -> float:
        """Peak RSS above :attr:`start_rss_mb`, per SA (meaningful in a fresh process: the
        peak is the process's, not this run's alone)."""
        sas = int(self.config.get("sas", 0) or 0)
        return max(0.0, self.peak_rss_mb - self.start_rss_mb) * 2**20 / sas if sas else 0.0

    @property
    def datagrams_per_s(self) -> float:
        """Simulated datagrams of every mode per second of wall time spent in the modes."""
        wall = sum(r.wall_s for r in self.results)
        return sum(r.datagrams for r in self.results) / wall if wall > 0 else 0.0

    def to_json(self) -> dict[str, Any]:
        out = {"config": self.config, "peak_rss_mb": self.peak_rss_mb, "wall_s": self.wall_s,
               "datagrams_per_s": self.datagrams_per_s, "start_rss_mb": self.start_rss_mb,
               "bytes_per_sa": self.bytes_per_sa}
        out["results"] = [
            {k: v for k, v in asdict(r).items() if k not in ("detection_times", "back_times")}
            for r in self.results
        ]
        return out

    def table(self) -> str:
        """A readable table, one row per mode, and the simulator's own speed."""
        w = max([22, *(len(r.mode) for r in self.results)])
        head = (
            f"{'mode':<{w}} {'detect p50':>10} {'p99':>8} {'max':>8} {'all back':>9} "
            f"{'datagrams':>10} {'bytes':>11} {'wrong teardowns':>16} {'sim dgram/s':>12}"
        )
        lines = [head, "-" * len(head)]

        def s(x: float) -> str:
            return "-" if math.isnan(x) else f"{x:.2f}s"

        def back(r: ModeResult) -> str:  # not all back by the end: the share that is
            if not math.isnan(r.all_back) or not r.back_times:
                return s(r.all_back)
            return f"{float(np.mean(~np.isnan(np.asarray(r.back_times, dtype=float)))):.0%} up"

        for r in self.results:
            lines.append(
                f"{r.mode:<{w}} {s(r.detect_p50):>10} {s(r.detect_p99):>8} {s(r.detect_max):>8} "
                f"{back(r):>9} {r.datagrams_after_crash:>10} {r.bytes_after_crash:>11} "
                f"{r.wrongly_torn_down:>16} {r.datagrams_per_s:>12,.0f}"
            )
        total = sum(r.datagrams for r in self.results)
        lines.append(
            f"(datagrams and bytes: from the crash on; the simulator built, sealed, parsed and "
            f"answered {total:,} datagrams in all, {self.datagrams_per_s:,.0f} per second of "
            f"wall time on one core)"
        )
        return "\n".join(lines)


def percentile(x: npt.NDArray[np.float64], q: float) -> float:
    return float(np.percentile(x, q)) if len(x) else math.nan



def write_capture(path: str | os.PathLike[str], capture: list[tuple[float, str, str, bytes]], cfg: object) -> None:
    from ikeqcd.pcap import write_pcap

    packets = []
    for t, src, dst, d in capture:
        s_ip, s_port = PCAP_ADDR.get(src, ("192.0.2.99", 500))
        d_ip, d_port = PCAP_ADDR.get(dst, ("192.0.2.99", 500))
        packets.append((t, s_ip, s_port, d_ip, d_port, d))
    write_pcap(path, packets)


def plot_cdf(report: SimReport, path: str | os.PathLike[str]) -> None:
    """Write a PNG with two panels per run: the CDF of detection time per mode, and the
    tunnels up over time per mode (the operator's view: all down at the crash, back one by
    one as A re-creates them). Needs matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise InvalidArgument("--plot needs matplotlib: pip install 'ikeqcd[plot]'") from e
    from matplotlib.ticker import FixedLocator, NullFormatter, ScalarFormatter

    fig, (ax, up) = plt.subplots(1, 2, figsize=(13, 4.8), dpi=120)
    horizon = 1.0
    for r in report.results:
        x = np.sort(np.asarray(r.detection_times))
        if len(x):
            y = np.arange(1, len(x) + 1) / r.sas
            ax.step(x, y, where="post", label=f"{r.mode} (p50 {np.median(x):.1f} s)")
        back = np.sort(np.asarray(r.back_times, dtype=float))
        back = back[~np.isnan(back)]
        if len(back):
            horizon = max(horizon, float(back[-1]))
            t = np.concatenate(([-0.05 * horizon, 0.0], back))
            n = np.concatenate(([r.sas, r.sas - len(r.back_times)], r.sas - len(r.back_times) + np.arange(1, len(back) + 1)))
            up.step(t, n, where="post", label=r.mode)
    cfg = report.config
    ax.set_xscale("log")
    ticks = [t for t in (1, 2, 5, 10, 20, 30, 50, 70, 100, 150, 200, 300, 500, 1000)]
    ax.xaxis.set_major_locator(FixedLocator(ticks))
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("time from the crash of gateway B until gateway A declares the SA dead (s, log)")
    ax.set_ylabel(f"fraction of the {cfg['sas']:,} IKE SAs")
    ax.set_ylim(0, 1.02)
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title(
        f"IKEv2 failure detection after a gateway reboot: QCD vs liveness timers\n"
        f"B down {cfg['reboot_time']:g} s, RTT {cfg['rtt'] * 1000:g} ms, loss {cfg['loss'] * 100:g} %, "
        f"liveness after {cfg['idle']:g} s idle", fontsize=9,
    )
    ax.legend(loc="lower right", fontsize=8)
    up.set_xlabel("time from the crash (s)")
    up.set_ylabel("tunnels up (B has the SA A uses)")
    up.set_xlim(-0.05 * horizon, horizon * 1.05)
    up.set_ylim(0, cfg["sas"] * 1.05)
    up.grid(True, alpha=0.3)
    up.set_title("tunnels up over time, per mode", fontsize=9)
    up.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def print_progress(stream: Any = sys.stderr) -> Callable[[str, float, float], None]:
    """A progress callback that redraws one line at most 5 times a second."""
    last = [0.0]

    def cb(mode: str, t: float, horizon: float) -> None:
        now = time.monotonic()
        if now - last[0] < 0.2:
            return
        last[0] = now
        frac = min(1.0, t / horizon) if horizon > 0 else 1.0
        bar = "#" * int(frac * 30)
        stream.write(f"\r{mode:<26} [{bar:<30}] {frac * 100:5.1f}%  t={t:7.1f}s")
        stream.flush()

    return cb
