"""The ``serve`` and ``load`` subcommands: options, checks, output."""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable
from typing import TextIO

from ikeqcd import _options as opt
from ikeqcd import _progress
from ikeqcd._core import TokenMaker
from ikeqcd._netcommon import _MAX_BODY, _RING, DEFAULT_NAT_T_PORT, DEFAULT_PORT, _address
from ikeqcd.cluster_cli import add_cluster_options, check_cluster_options, preflight, store_from
from ikeqcd.errors import IkeQcdError
from ikeqcd.loading import LoadReport, load
from ikeqcd.metrics import require_prometheus_client
from ikeqcd.policy import MakerPolicy
from ikeqcd.secret import SecretStore
from ikeqcd.serving import Server, ServeStats, serve

__all__ = ["add_load_parser", "add_serve_parser"]

_EXAMPLES_SERVE = """\
examples:
  # a rebooted gateway on 127.0.0.1:10500, no limits (load tests only), Ctrl-C stops it
  ikeqcd serve --secret-file qcd.secret --create --unlimited
  # UDP/4500 framing on a chosen port, default policy, Prometheus on :9500/metrics
  ikeqcd serve --listen 127.0.0.1:4500 --nat-t --secret-file qcd.secret --prometheus 9500
  # QCD switched off (plain RFC 7296: bare INVALID_IKE_SPI), stop after 10 s, JSON counters
  ikeqcd serve --secret-file qcd.secret --no-qcd --duration 10 --json
"""

_EXAMPLES_LOAD = """\
examples:
  # 300 000 requests/s for 5 s, every token verified with the server's secret
  ikeqcd load --rate 300000 --duration 5 --secret-file qcd.secret
  # as fast as 512 requests in flight allow, over UDP/4500 framing, JSON report
  ikeqcd load --target 127.0.0.1:4500 --nat-t --rate max --duration 3 --json
  # fail (exit 1) unless at least 99.9 % of the requests got a valid reply
  ikeqcd load --rate 50000 --duration 2 --secret-file qcd.secret --min-valid 0.999
"""


# Option types (ikeqcd._options checks every value before any work starts).
_UNLIMITED = {"inf": math.inf, "unlimited": math.inf, "none": math.inf}
_limit = opt.Number(float, 0.0, 1e9, words=_UNLIMITED)  # a policy rate or burst
_rate = opt.Number(float, 0.0, 1e9, words={"max": 0.0, "inf": 0.0})  # 0 = as fast as possible


def add_serve_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``serve`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "serve",
        help="a rebooted gateway: answer protected requests for unknown SAs with QCD tokens",
        description=(
            "Listen on a UDP socket and answer every protected IKE request for an unknown SA\n"
            "as a rebooted gateway would (RFC 6290): N(INVALID_IKE_SPI) + N(QCD_TOKEN) within\n"
            "the policy's limits, a bare INVALID_IKE_SPI or silence beyond them; never for an\n"
            "IKE_SA_INIT, a response or an unprotected request. Counts every datagram by\n"
            "reason; SIGINT/SIGTERM stop it cleanly and print the counters. The secret file\n"
            "must sit in a private directory (mkdir -m 700 DIR); --create makes the file there,\n"
            "never the directory."
        ),
        epilog=_EXAMPLES_SERVE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--listen",
        metavar="HOST:PORT",
        type=opt.Address(),
        help=f"address to bind (default 127.0.0.1:{DEFAULT_PORT}, "
        f"127.0.0.1:{DEFAULT_NAT_T_PORT} with --nat-t; port 0 picks one)",
    )
    p.add_argument(
        "--nat-t",
        action="store_true",
        help="UDP/4500 framing: requests and replies carry the non-ESP marker",
    )
    p.add_argument(
        "--secret-file",
        required=True,
        type=opt.Path("secret"),
        metavar="FILE",
        help="the QCD secret file (its directory must exist and be private)",
    )
    p.add_argument(
        "--create", action="store_true", help="create the secret file if it does not exist"
    )
    p.add_argument(
        "--duration",
        type=opt.seconds(),
        metavar="S",
        help="stop after S seconds, S >= 0 (default: run until SIGINT/SIGTERM)",
    )
    p.add_argument(
        "--stats-interval",
        type=opt.seconds(),
        default=1.0,
        metavar="S",
        help="seconds between progress updates on stderr: a bar on a terminal, else a line "
        "(default 1; 0 = no progress)",
    )
    p.add_argument(
        "--prometheus",
        type=opt.port(),
        metavar="PORT",
        help="serve Prometheus metrics on http://127.0.0.1:PORT/metrics (0 = a free port; "
        "needs pip install 'ikeqcd[metrics]')",
    )
    p.add_argument("--json", action="store_true", help="print the final counters as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    p.add_argument(
        "--no-gso",
        action="store_true",
        help="plain datagrams only: no UDP GRO receives or GSO sends",
    )
    p.add_argument(
        "--no-xfrm-bypass",
        action="store_true",
        help="do not exempt the socket from the kernel's IPsec (XFRM) policies (by default "
        "serve sets per-socket bypass policies, as IKE daemons do, so that a crashed "
        "daemon's leftover policies cannot swallow requests; needs CAP_NET_ADMIN, else a "
        "warning)",
    )
    g = p.add_argument_group("reply policy (MakerPolicy; defaults are the library's)")
    d = MakerPolicy()
    g.add_argument(
        "--no-qcd",
        action="store_true",
        help="QCD switched off: plain RFC 7296, bare INVALID_IKE_SPI (rate-limited)",
    )
    g.add_argument(
        "--unlimited",
        action="store_true",
        help="no per-source or global reply limits (closed test beds and load tests)",
    )
    g.add_argument(
        "--per-source-rate",
        type=_limit,
        metavar="R",
        help=f"token replies per second to one source; inf = no limit "
        f"(default {d.per_source_rate:g})",
    )
    g.add_argument(
        "--per-source-burst",
        type=_limit,
        metavar="N",
        help=f"bucket size for one source; inf = no limit (default {d.per_source_burst:g})",
    )
    g.add_argument(
        "--global-rate",
        type=_limit,
        metavar="R",
        help=f"token replies per second in total; inf = no limit (default {d.global_rate:g})",
    )
    g.add_argument(
        "--global-burst",
        type=_limit,
        metavar="N",
        help=f"bucket size for the total; inf = no limit (default {d.global_burst:g})",
    )
    g.add_argument(
        "--fallback",
        choices=("bare", "silence"),
        help=f"what a limited request gets (default {d.flood_fallback})",
    )
    g.add_argument(
        "--bare-rate",
        type=_limit,
        metavar="R",
        help=f"bare INVALID_IKE_SPI replies per second in total; 0 = none, inf = no limit "
        f"(default {d.bare_rate:g})",
    )
    g.add_argument(
        "--token-window",
        type=opt.seconds(),
        metavar="S",
        help="send tokens only during the first S seconds after start (default: always)",
    )
    add_cluster_options(p)
    p.set_defaults(handler=_cmd_serve, check=lambda a: _check_serve(a) or check_cluster_options(a))


def _policy_from(args: argparse.Namespace) -> MakerPolicy:
    policy = MakerPolicy.unlimited() if args.unlimited else MakerPolicy()
    changes: dict[str, object] = {}
    for option, fieldname in (
        ("per_source_rate", "per_source_rate"),
        ("per_source_burst", "per_source_burst"),
        ("global_rate", "global_rate"),
        ("global_burst", "global_burst"),
        ("bare_rate", "bare_rate"),
        ("fallback", "flood_fallback"),
        ("token_window", "token_window"),
    ):
        v = getattr(args, option)
        if v is not None:
            changes[fieldname] = v
    if args.no_qcd:
        changes["enabled"] = False
    return policy.with_(**changes) if changes else policy


def _describe(policy: MakerPolicy) -> str:
    if not policy.enabled:
        return f"QCD off (bare INVALID_IKE_SPI, {policy.bare_rate:g}/s)"
    parts = [
        f"per source {policy.per_source_rate:g}/s burst {policy.per_source_burst:g}",
        f"global {policy.global_rate:g}/s burst {policy.global_burst:g}",
        f"beyond: {policy.flood_fallback}",
    ]
    if policy.token_window is not None:
        parts.append(f"tokens for {policy.token_window:g} s")
    return ", ".join(parts)


def _check_serve(args: argparse.Namespace) -> str | None:
    """Checks before any work: --prometheus needs the optional prometheus_client."""
    if args.prometheus is not None:
        try:
            require_prometheus_client()
        except IkeQcdError as e:
            return f"--prometheus: {e}"
    return None


def _cmd_serve(args: argparse.Namespace) -> int:
    password = preflight(args)
    store = SecretStore(args.secret_file, algorithm=None if not args.create else "hmac-sha256")
    if args.create:
        store.load_or_create()
    else:
        store.load()
    policy = _policy_from(args)
    err: TextIO = sys.stderr
    cluster = store_from(args, store, password)

    def ready(server: Server, metrics: tuple[str, int] | None) -> None:
        framing = "UDP/4500 framing" if server.nat_t else "UDP/500 framing"
        framing += ", GSO/GRO" if server.gso else ", plain datagrams"
        if server.xfrm_bypass:
            framing += ", IPsec bypass"
        print(
            f"ikeqcd serve: listening on {_address(server.address, False, 'listen')} ({framing}); "
            f"secret {store.fingerprint()} ({store.algorithm}, {store.generations} "
            f"generation{'s' if store.generations != 1 else ''}); policy: {_describe(policy)}",
            flush=True,
        )
        if cluster is not None:
            print(
                f"ikeqcd serve: cluster node {cluster.node} (incarnation {cluster.incarnation}) "
                f"at {cluster.url}, lease {cluster.lease:g} s, grace {cluster.grace:g} s, "
                f"cluster fingerprint {cluster.fingerprint}",
                flush=True,
            )
        if metrics is not None:
            print(f"ikeqcd serve: metrics on http://{metrics[0]}:{metrics[1]}/metrics", flush=True)

    quiet = args.quiet or args.json or not args.stats_interval
    # on a terminal, one progress bar (made at the first figures, after the listening line);
    # otherwise a line per interval, as a log
    draw = _progress.wanted()
    bars: list[_progress.Bar] = []

    def on_stats(s: ServeStats) -> None:
        if not draw:
            print(s.line(), file=err, flush=True)
            return
        if not bars:
            bars.append(_progress.Bar("serve", args.duration))
        bars[0].show(s.elapsed, status=s.status())

    try:
        stats = serve(
            args.listen,
            store,
            nat_t=args.nat_t,
            policy=policy,
            live=cluster,
            duration=args.duration,
            stats_interval=None if quiet else args.stats_interval,
            prometheus_port=args.prometheus,
            on_stats=None if quiet else on_stats,
            on_ready=ready,
            gso=not args.no_gso,
            xfrm_bypass=not args.no_xfrm_bypass,
        )
    finally:
        for bar in bars:
            bar.close()
        if cluster is not None:
            cluster.close()
    print(stats.to_json() if args.json else stats.format(), flush=True)
    if cluster is not None and not args.json:
        c = cluster.counters
        print(f"  cluster: {c.checks} pairs checked in {c.batches} batches, {c.fail_closed} "
              f"batches failed closed ({c.store_errors} store errors, {c.refused} refused: "
              f"secret differs), {c.republished} republished", flush=True)
    return 0


def add_load_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``load`` subcommand to an argparse subparsers object."""
    p = sub.add_parser(
        "load",
        help="UDP load driver: protected-looking requests for random SAs, every reply checked",
        description=(
            "Send protected-looking IKE requests (HDR, SK{random}, INFORMATIONAL, Message ID =\n"
            "sequence number) for random SPI pairs to a gateway at a paced rate, check every\n"
            "reply with the codec (and every token, in constant time, with --secret-file), and\n"
            "report sent, answered, valid, rates and round-trip percentiles. Exits 1 when not\n"
            "one request got a reply (saying whether ICMP errors came back: nothing listens\n"
            "there). Ctrl-C stops sending, waits for the replies in flight and reports (exit 130)."
        ),
        epilog=_EXAMPLES_LOAD,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--target",
        metavar="HOST:PORT",
        type=opt.Address(),
        help=f"the gateway (default 127.0.0.1:{DEFAULT_PORT}, "
        f"127.0.0.1:{DEFAULT_NAT_T_PORT} with --nat-t)",
    )
    p.add_argument(
        "--rate",
        type=_rate,
        required=True,
        metavar="R",
        help="requests per second (up to 1e9), or max: as fast as --window allows "
        "(0 and inf mean max too)",
    )
    p.add_argument(
        "--duration",
        type=opt.seconds(),
        default=5.0,
        metavar="S",
        help="seconds of sending, S >= 0 (default 5)",
    )
    p.add_argument(
        "--sas",
        type=opt.count(1, 10_000_000),
        default=1000,
        metavar="N",
        help="number of random SPI pairs, 1..10000000 (default 1000)",
    )
    p.add_argument(
        "--secret-file",
        type=opt.Path("in"),
        metavar="FILE",
        help="the server's secret file: verify every token (default: form only)",
    )
    p.add_argument("--nat-t", action="store_true", help="send with the non-ESP marker (UDP/4500)")
    p.add_argument(
        "--seed",
        type=opt.SEED,
        default=0,
        metavar="N",
        help="seed of SPIs and bodies, 0..2**64-1 (default 0)",
    )
    p.add_argument(
        "--window",
        type=opt.count(1, _RING),
        metavar="N",
        help=f"most requests in flight, 1..{_RING} (default: {_RING} when "
        f"paced, 512 at max)",
    )
    p.add_argument(
        "--timeout",
        type=opt.seconds(zero=False, hi=3600.0),
        default=1.0,
        metavar="S",
        help="a request unanswered after S seconds is lost, 0 < S <= 3600 (default 1)",
    )
    p.add_argument(
        "--body-len",
        type=opt.count(0, _MAX_BODY),
        default=32,
        metavar="N",
        help=f"octets of random SK body per request, 0..{_MAX_BODY} (default 32)",
    )
    p.add_argument(
        "--no-gso",
        action="store_true",
        help="one datagram per send/receive slot: no UDP GSO sends or GRO receives",
    )
    p.add_argument(
        "--recv-thread",
        action="store_true",
        help="receive and check replies on a second thread (default: between sends)",
    )
    p.add_argument(
        "--min-valid",
        type=opt.fraction(),
        metavar="FRACTION",
        help="exit 1 unless valid >= FRACTION * sent (e.g. 0.999)",
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    bar = p.add_mutually_exclusive_group()
    bar.add_argument("--progress", action="store_true", help="progress bar even if not a TTY")
    bar.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(handler=_cmd_load)


def _load_bar(bar: _progress.Bar, start: float, duration: float) -> Callable[[LoadReport], None]:
    """The load progress callback: seconds into the run and the figures so far, on ``bar``."""

    def show(r: LoadReport) -> None:
        t = min(time.monotonic() - start, duration)
        rate = r.valid / t if t > 0 else 0.0
        bar.show(
            t,
            status=f"sent {r.sent:,}  answered {r.answered:,}  valid {r.valid:,}  "
            f"({rate:,.0f}/s)",
        )

    return show


def _cmd_load(args: argparse.Namespace) -> int:
    maker: TokenMaker | None = None
    if args.secret_file is not None:
        store = SecretStore(args.secret_file, algorithm=None)
        store.load()
        maker = store.maker()
    # --progress draws the bar even with --json or off a terminal
    show = args.progress or _progress.wanted(off=args.no_progress or args.json)
    bar = _progress.Bar("load", args.duration) if show else None
    progress: Callable[[LoadReport], None] | None = None
    if bar is not None:
        progress = _load_bar(bar, time.monotonic(), args.duration)

    try:
        report = load(
            args.target,
            rate=args.rate,
            duration=args.duration,
            sas=args.sas,
            maker=maker,
            nat_t=args.nat_t,
            seed=args.seed,
            window=args.window,
            timeout=args.timeout,
            body_len=args.body_len,
            gso=not args.no_gso,
            recv_thread=args.recv_thread,
            progress=progress,
        )
    finally:
        if bar is not None:
            bar.close()
    print(report.to_json() if args.json else report.format(), flush=True)
    if report.interrupted:
        return 130
    silence = report.silence()
    if silence is not None:
        print(f"ikeqcd load: error: {silence}", file=sys.stderr)
        return 1
    if args.min_valid is not None and report.valid < args.min_valid * report.sent:
        print(
            f"ikeqcd load: error: {report.valid} valid replies for {report.sent} requests, "
            f"below --min-valid {args.min_valid}",
            file=sys.stderr,
        )
        return 1
    return 0

