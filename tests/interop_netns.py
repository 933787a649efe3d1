"""Shared parts of the interop tests: two network namespaces joined by a veth pair, commands
run inside them, a tcpdump capture, and `ikeqcd serve` started in a namespace.

Everything lives in namespaces this module creates (names carry the test's pid) with
addresses from 10.213.0.0/24, which exist only inside them: no traffic reaches the host's
own interfaces. Every helper is a context manager that tears down what it made, even when
the test fails.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ikeqcd import SecretStore, pcap, wire
from ikeqcd.errors import IkeQcdError

ROOT = Path(__file__).resolve().parent.parent
IKEQCD = [sys.executable, "-m", "ikeqcd"]
ADDR_I = "10.213.0.1"
"""The initiator's (the surviving peer's) address, inside its namespace only."""
ADDR_R = "10.213.0.2"
"""The responder's (the crashed gateway's, then ``serve``'s) address."""


def missing_prerequisite(tools: Sequence[str]) -> str | None:
    """Why the namespace tests cannot run here (``None``: they can)."""
    if sys.platform != "linux":
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (creates network namespaces, veth pairs and XFRM policies)"
    for tool in ("ip", "tcpdump", *tools):
        if shutil.which(tool) is None and not Path(tool).exists():
            return f"{tool} is not installed"
    probe = f"ikeqcd-probe-{os.getpid()}"
    r = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        return f"`ip netns add` is not permitted here: {r.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


def sh(
    *argv: str, check: bool = True, timeout: float = 10, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run a command with a bounded wait; its output is kept for assertion messages."""
    r = subprocess.run(
        list(argv), capture_output=True, text=True, timeout=timeout, env=env, check=False
    )
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} -> {r.returncode}\n{r.stdout}\n{r.stderr}")
    return r


@dataclass(frozen=True)
class NetnsPair:
    """Namespaces ``ns_i`` (``ADDR_I`` on ``dev_i``) and ``ns_r`` (``ADDR_R`` on ``dev_r``)."""

    ns_i: str
    ns_r: str
    dev_i: str
    dev_r: str

    def run(self, ns: str, *argv: str, check: bool = True, timeout: float = 10) -> str:
        return sh("ip", "netns", "exec", ns, *argv, check=check, timeout=timeout).stdout

    def xfrm_policies(self, ns: str) -> str:
        """The namespace's global XFRM policies (per-socket ones, listed as ``socket in`` /
        ``socket out``, live and die with their sockets and are left out)."""
        entries: list[list[str]] = []
        for line in sh("ip", "-n", ns, "xfrm", "policy").stdout.splitlines():
            if line and not line[0].isspace():
                entries.append([])
            if entries:
                entries[-1].append(line)
        return "".join("\n".join(e) + "\n" for e in entries if not any("\tsocket " in x for x in e))


@contextlib.contextmanager
def netns_pair(tag: str) -> Iterator[NetnsPair]:
    """Two fresh namespaces joined by a veth pair; deleted (with their XFRM state) on exit."""
    pid = os.getpid()
    pair = NetnsPair(
        f"iq{tag}-i-{pid}", f"iq{tag}-r-{pid}", f"iq{tag}i{pid % 10000}", f"iq{tag}r{pid % 10000}"
    )
    made: list[str] = []
    try:
        for ns in (pair.ns_i, pair.ns_r):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh(
            "ip",
            "link",
            "add",
            pair.dev_i,
            "netns",
            pair.ns_i,
            "type",
            "veth",
            "peer",
            "name",
            pair.dev_r,
            "netns",
            pair.ns_r,
        )
        for ns, dev, addr in ((pair.ns_i, pair.dev_i, ADDR_I), (pair.ns_r, pair.dev_r, ADDR_R)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield pair
    finally:
        for ns in made:
            subprocess.run(
                ["ip", "-n", ns, "xfrm", "policy", "flush"], capture_output=True, check=False
            )
            subprocess.run(
                ["ip", "-n", ns, "xfrm", "state", "flush"], capture_output=True, check=False
            )
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, check=False)


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 3) -> None:
    """Stop a process this module started (by its own pid), SIGKILL if it lingers."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(wait)


@contextlib.contextmanager
def capture(pair: NetnsPair, path: Path) -> Iterator[Path]:
    """tcpdump on the responder's veth (Ethernet link type, classic pcap), UDP only; the file
    is complete when the block exits."""
    log = path.with_suffix(".tcpdump.log")
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                pair.ns_r,
                "tcpdump",
                "-i",
                pair.dev_r,
                "-U",
                "-n",
                "-s",
                "0",
                "-w",
                str(path),
                "udp",
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 5
        while "listening on" not in log.read_text():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"tcpdump did not start: {log.read_text()}")
            time.sleep(0.05)
        yield path
    finally:
        time.sleep(0.2)  # let the last replies land
        stop(proc, signal.SIGINT)


@dataclass
class Serve:
    """A running ``ikeqcd serve`` and the line it printed once listening."""

    proc: subprocess.Popen[str]
    ready: str


def start_serves(pair: NetnsPair, secret: Path, *, bypass: bool) -> list[Serve]:
    """``ikeqcd serve`` in the responder's namespace on ``ADDR_R:500`` and ``ADDR_R:4500``
    (UDP/4500 framing), no reply limits (a closed test bed), final counters as JSON on
    stdout; returns once both listen. Stop them with :func:`stop_serve`; each also stops by
    itself after a minute, should a failed test leave it behind."""
    procs = []
    for port in (500, 4500):
        argv = [*("ip", "netns", "exec", pair.ns_r), *IKEQCD, "serve", "--listen",
                f"{ADDR_R}:{port}", "--secret-file", str(secret), "--unlimited", "--json",
                "--duration", "60"]  # fmt: skip
        if port == 4500:
            argv.append("--nat-t")
        if not bypass:
            argv.append("--no-xfrm-bypass")
        procs.append(
            subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
            )
        )
    try:
        return [Serve(proc, _ready_line(proc)) for proc in procs]
    except BaseException:
        for proc in procs:
            stop(proc)
            proc.communicate()
        raise


def _ready_line(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=15):
            raise AssertionError("ikeqcd serve did not start within 15 s")
    line = proc.stdout.readline()
    if "listening on" not in line:
        stop(proc)
        out, err = proc.communicate()
        raise AssertionError(f"ikeqcd serve did not start: {line}{out}{err}")
    return line


def stop_serve(serve: Serve) -> dict[str, Any]:
    """SIGTERM a :func:`start_serves` process; its JSON counters (``stderr`` and ``ready``:
    its stderr and the line it printed once listening)."""
    proc = serve.proc
    proc.send_signal(signal.SIGTERM)
    try:
        text, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        stop(proc)
        proc.communicate()
        raise AssertionError("ikeqcd serve did not stop on SIGTERM") from None
    assert proc.returncode == 0, f"ikeqcd serve exited {proc.returncode}: {err}\n{text}"
    data: dict[str, Any] = json.loads(text[text.index("{") :])
    data["stderr"] = err
    data["ready"] = serve.ready
    return data


def add_transport_policies(pair: NetnsPair) -> None:
    """What a crashed daemon leaves behind: a transport-mode host-to-host ESP policy, both
    directions, on the responder (as its Child SA install would have made)."""
    for src, dst, direction in ((ADDR_R, ADDR_I, "out"), (ADDR_I, ADDR_R, "in")):
        sh(
            "ip",
            "-n",
            pair.ns_r,
            "xfrm",
            "policy",
            "add",
            "src",
            f"{src}/32",
            "dst",
            f"{dst}/32",
            "dir",
            direction,
            "tmpl",
            "src",
            src,
            "dst",
            dst,
            "proto",
            "esp",
            "mode",
            "transport",
            "level",
            "required",
        )


@dataclass(frozen=True)
class CrashResult:
    """What :func:`crash_and_serve` saw."""

    verified: int
    """Survivor requests (on the wire while the bypassing servers listened) answered with
    INVALID_IKE_SPI + a QCD token that verifies for the request's SPI pair."""
    swallowed: int
    """Survivor requests on the wire while the non-bypassing servers (which received none)
    listened."""
    by_hand: int
    """Transport-mode policies added by hand (0 when the daemon left its own)."""
    left: str
    """The global XFRM policies the crashed daemon left."""
    ports: tuple[int, ...]
    """UDP ports the answered requests came to."""


def wait_for_response(path: Path, exchange: int, timeout: float = 8) -> None:
    """Wait until the capture at ``path`` (being written) holds a response of ``exchange``
    (from either side)."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(IkeQcdError):  # a record half written
            for p in pcap.read_pcap(path):
                with contextlib.suppress(IkeQcdError):
                    h = wire.parse_header(p.payload, nat_t=4500 in (p.sport, p.dport))
                    if h.exchange == exchange and h.response:
                        return
        assert time.monotonic() < deadline, f"no response of exchange {exchange} in {path}"
        time.sleep(0.1)


def save(*files: Path) -> None:
    """Copy the captures to IKEQCD_INTEROP_SAVE, if set (how tests/corpus/ was made)."""
    if os.environ.get("IKEQCD_INTEROP_SAVE"):
        for f in files:
            shutil.copy(f, Path(os.environ["IKEQCD_INTEROP_SAVE"]) / f.name)


def in_window(
    packets: list[pcap.PcapPacket], t0: float, t1: float, src: str
) -> list[pcap.PcapPacket]:
    return [p for p in packets if t0 <= p.timestamp < t1 and p.src == src]


def crash_and_serve(
    pair: NetnsPair,
    secret: Path,
    crash: Callable[[], None],
    out: Path,
    survivor_log: Callable[[], str],
    *,
    blind_s: float = 2.5,
    serve_s: float = 4.5,
) -> CrashResult:
    """Crash the responder's daemon (``crash``), leave (or add) a transport-mode policy,
    run ``serve`` on ADDR_R:500 and :4500 first without then with the XFRM bypass, and check
    every datagram captured in ``out``: none received without the bypass; with it, every
    survivor request answered with a verifying token, decoded alike by the Python parser,
    ``ikeqcd decode`` and tshark."""
    store = SecretStore(secret, algorithm=None)
    store.load()
    maker = store.maker()
    before = pair.xfrm_policies(pair.ns_r)
    with capture(pair, out):
        crash()
        left = pair.xfrm_policies(pair.ns_r)
        assert left == before  # SIGKILL removes nothing from the kernel
        by_hand = 0
        if "proto esp" not in left:
            add_transport_policies(pair)  # what an installed Child SA would have left
            by_hand = 2
        policies = pair.xfrm_policies(pair.ns_r)
        assert "mode transport" in policies, policies
        running: list[Serve] = []
        try:
            # 1. no bypass: the leftover policy swallows the survivor's requests
            running = start_serves(pair, secret, bypass=False)
            t_a = time.time()
            time.sleep(blind_s)
            t_b = time.time()
            blind = [stop_serve(p) for p in running]
            # 2. the default: per-socket bypass; the survivor is still retransmitting
            running = start_serves(pair, secret, bypass=True)
            t_c = time.time()
            time.sleep(serve_s)
            t_d = time.time()
            counters = [stop_serve(p) for p in running]
        finally:
            for p in running:
                if p.proc.poll() is None:
                    stop(p.proc)
                    p.proc.communicate()

    packets = pcap.read_pcap(out)
    swallowed = in_window(packets, t_a, t_b, ADDR_I)
    assert swallowed, (
        f"no request from the survivor while the policy was in place\n{survivor_log()}"
    )
    assert [c["datagrams_in"] for c in blind] == [0, 0], blind
    assert all("IPsec bypass" not in c["ready"] for c in blind), blind

    # every request that reached the veth while both bypassing servers listened is answered
    requests = in_window(packets, t_c, t_d, ADDR_I)
    # every reply after the blind servers stopped (they sent none) comes from the bypassing
    # ones, including one sent between their ready line and t_c on a busy machine
    replies = in_window(packets, t_b, t_d + 1, ADDR_R)
    assert requests, f"no retransmission reached serve\n{survivor_log()}"
    for c in counters:
        assert c["reasons"]["REPLIED"] == c["datagrams_in"] == c["datagrams_out"], c
        assert "IPsec bypass" in c["ready"] and "no IPsec bypass" not in c["stderr"], c
    assert sum(c["datagrams_in"] for c in counters) >= len(requests), counters
    answered: dict[tuple[int, int, int, int], bytes] = {}
    for a in replies:
        nat_t = a.sport == 4500
        r = wire.parse_qcd_reply(a.payload, nat_t=nat_t)
        assert r.invalid_ike_spi and r.response and len(r.tokens) == 1, r
        assert maker.verify(r.spi_i, r.spi_r, r.tokens[0])
        wire.parse_message(a.payload, nat_t=nat_t)
        answered[(a.sport, r.spi_i, r.spi_r, r.message_id)] = r.tokens[0]
    for q in requests:
        h = wire.parse_header(q.payload, nat_t=q.dport == 4500)
        assert h.exchange == wire.EXCHANGE_INFORMATIONAL and not h.response, h
        assert (q.dport, h.spi_i, h.spi_r, h.message_id) in answered, f"{h} unanswered"

    decoded = subprocess.run(
        [*IKEQCD, "decode", "--pcap", str(out), "--secret-file", str(secret)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=False,
    )
    assert decoded.returncode == 0, decoded.stderr
    assert decoded.stdout.count("token VERIFIED") == len(replies), decoded.stdout
    assert decoded.stdout.count("N(INVALID_IKE_SPI)") == len(replies), decoded.stdout
    assert "not a valid IKEv2 message" not in decoded.stdout
    shark = subprocess.run(
        ["tshark", "-r", str(out), "-V", "-Y", "isakmp.notify.msgtype == 16419"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shark.returncode == 0, shark.stderr
    assert shark.stdout.count("Notify Message Type: QUICK_CRASH_DETECTION (16419)") == len(replies)
    assert shark.stdout.count("Notify Message Type: INVALID_IKE_SPI (4)") == len(replies)
    assert "Malformed" not in shark.stdout
    for token in answered.values():
        assert f"Token Secret Data: {token.hex()}" in shark.stdout
    return CrashResult(
        verified=len(requests),
        swallowed=len(swallowed),
        by_hand=by_hand,
        left=left,
        ports=tuple(sorted({q.dport for q in requests})),
    )


def summary_line(peer: str, r: CrashResult) -> str:
    return (
        f"{peer}: {r.verified} requests answered with INVALID_IKE_SPI + QCD_TOKEN and "
        f"verified (UDP {'/'.join(map(str, r.ports))}; ikeqcd decode and tshark agree); with "
        f"--no-xfrm-bypass {r.swallowed} swallowed by the leftover transport-mode policy "
        f"({r.by_hand} of its 2 entries added by hand), 0 received"
    )
