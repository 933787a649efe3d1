"""The ``ikeqcd`` command line: ``main(argv) -> exit code``.

Every subcommand has ``--help`` with examples. Errors are one clear line on stderr and a
non-zero exit: 2 for usage errors, 1 for failures.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence

from ikeqcd.errors import IkeQcdError

__all__ = ["main"]

Handler = Callable[[argparse.Namespace], int]


def _cmd_bench(args: argparse.Namespace) -> int:
    from ikeqcd.bench import format_results, run_token_bench

    results = run_token_bench(n=args.n, quick=args.quick)
    if args.json:
        print(
            json.dumps(
                [
                    {"name": r.name, "per_second": r.per_second, "note": r.note, **r.extra}
                    for r in results
                ],
                indent=1,
            )
        )
    else:
        print(format_results(results))
    return 0


def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "bench",
        help="token throughput against Python hmac, cryptography and openssl speed",
        description="Measure token derivation and verification against peers in the same run.",
        epilog="examples:\n  ikeqcd bench\n  ikeqcd bench --quick --json",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--n", type=int, default=1_000_000, help="batch size (default 1000000)")
    p.add_argument("--quick", action="store_true", help="fewer repetitions (a rough figure)")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(handler=_cmd_bench)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (exposed for tests and docs)."""
    parser = argparse.ArgumentParser(
        prog="ikeqcd",
        description="IKEv2 Quick Crash Detection (RFC 6290): simulator, load tools, benchmarks.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_bench(sub)
    from ikeqcd.net import add_load_parser, add_serve_parser

    add_serve_parser(sub)
    add_load_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the process exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler: Handler = args.handler
    try:
        return handler(args)
    except IkeQcdError as e:
        print(f"ikeqcd {args.command}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"ikeqcd {args.command}: interrupted", file=sys.stderr)
        return 130
