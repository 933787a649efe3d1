"""The command line of the cluster gate: ``serve --cluster`` options and ``ikeqcd cluster``."""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys

from ikeqcd import _options as opt
from ikeqcd.cluster import LiveSaStore, cluster_status
from ikeqcd.errors import ClusterUnavailable
from ikeqcd.secret import SecretStore

__all__ = [
    "add_cluster_options",
    "add_cluster_parser",
    "check_cluster_options",
    "preflight",
    "store_from",
]

PASSWORD_ENV = "IKEQCD_CLUSTER_PASSWORD"


def _store_options(p: argparse.ArgumentParser | argparse._ArgumentGroup, *, required: bool) -> None:
    p.add_argument(
        "--cluster",
        type=opt.ClusterUrl(),
        required=required,
        metavar="URL",
        help="the cluster's Redis/Valkey store: redis://HOST:PORT/DB or rediss://HOST:PORT/DB "
        f"(TLS); the password comes from --cluster-password-file or ${PASSWORD_ENV}, never "
        "the URL",
    )
    p.add_argument(
        "--cluster-password-file",
        type=opt.Path("in"),
        metavar="FILE",
        help="file holding the store's password (first line; readable by its owner only)",
    )
    p.add_argument(
        "--cluster-ca-file",
        type=opt.Path("in"),
        metavar="FILE",
        help="CA certificates for rediss:// (default: the system's)",
    )
    p.add_argument(
        "--cluster-prefix",
        type=opt.Name(),
        default="ikeqcd",
        metavar="NAME",
        help="key prefix in the store, to keep clusters apart (default ikeqcd)",
    )


def add_cluster_options(p: argparse.ArgumentParser) -> None:
    """``serve``'s cluster options (RFC 6290 §9.2 across nodes)."""
    g = p.add_argument_group(
        "cluster (never reveal the token of an SA live on any node: RFC 6290 §9.2)"
    )
    _store_options(g, required=False)
    g.add_argument(
        "--node",
        type=opt.Name(),
        metavar="NAME",
        help="this node's name in the cluster (required with --cluster)",
    )
    g.add_argument(
        "--lease",
        type=opt.seconds(zero=False, hi=3600.0),
        default=10.0,
        metavar="S",
        help="the node's lease: heartbeats every S/3 seconds (default 10)",
    )
    g.add_argument(
        "--grace",
        type=opt.seconds(hi=3600.0),
        default=10.0,
        metavar="S",
        help="a node's SAs stay protected S seconds after its lease expired (default 10)",
    )
    g.add_argument(
        "--cluster-deadline",
        type=opt.seconds(zero=False, hi=60.0),
        default=0.25,
        metavar="S",
        help="a store answer slower than S seconds fails the batch closed (default 0.25)",
    )


def check_cluster_options(args: argparse.Namespace) -> str | None:
    """The combinations argparse cannot check (exit 2 naming the option)."""
    if getattr(args, "cluster", None) is None:
        for option in ("node", "cluster_password_file", "cluster_ca_file"):
            if getattr(args, option, None) is not None:
                return f"argument --{option.replace('_', '-')}: needs --cluster URL"
        return None
    if getattr(args, "node", "") is None:
        return "argument --node: required with --cluster (this node's name in the cluster)"
    return None


def preflight(args: argparse.Namespace) -> str | None:
    """Read the password (file or environment) and check the CA file, before any other work;
    returns the password.

    Raises:
        ClusterUnavailable: (reason ``"config"``) a password file open to others or empty,
            a CA file that holds no certificates; the message names the file.
    """
    ca = getattr(args, "cluster_ca_file", None)
    if ca is not None:
        import ssl

        try:
            ssl.create_default_context(cafile=ca)
        except (ssl.SSLError, OSError, ValueError) as e:
            raise ClusterUnavailable(
                f"the CA file {ca} holds no usable PEM certificates ({e})", reason="config"
            ) from None
    if getattr(args, "cluster", None) is None:
        return None
    return _password(args)


def _password(args: argparse.Namespace) -> str | None:
    path = args.cluster_password_file
    if path is None:
        return os.environ.get(PASSWORD_ENV) or None
    st = os.stat(path)
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ClusterUnavailable(
            f"the password file {path} is open to other users (mode {stat.S_IMODE(st.st_mode):o}); "
            f"chmod 600 {path}",
            reason="config",
        )
    with open(path, encoding="utf-8") as f:
        first = f.readline().rstrip("\r\n")
    if not first:
        raise ClusterUnavailable(f"the password file {path} is empty", reason="config")
    return first


def store_from(
    args: argparse.Namespace, secrets: SecretStore, password: str | None
) -> LiveSaStore | None:
    """The :class:`~ikeqcd.cluster.LiveSaStore` that ``serve --cluster`` asks (or ``None``);
    ``password`` from :func:`preflight`."""
    if args.cluster is None:
        return None
    return LiveSaStore(
        args.cluster,
        args.node,
        fingerprint=secrets,
        password=password,
        lease=args.lease,
        grace=args.grace,
        deadline=args.cluster_deadline,
        prefix=args.cluster_prefix,
        ca_file=args.cluster_ca_file,
    )


def add_cluster_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``cluster`` subcommand."""
    p = sub.add_parser(
        "cluster",
        help="the cluster's live-SA store: nodes, leases, live-SA counts, secret fingerprints",
        description=(
            "Show what the cluster's Redis/Valkey store holds: every node that ran\n"
            "ikeqcd serve --cluster (or a LiveSaStore), whether its lease is held, how long\n"
            "since its last heartbeat, how many live SAs it published and its secret\n"
            "fingerprint (nodes whose fingerprint differs from the cluster's answer no token)."
        ),
        epilog=(
            "examples:\n"
            "  ikeqcd cluster status --cluster redis://10.0.0.5:6379/0\n"
            "  IKEQCD_CLUSTER_PASSWORD=... ikeqcd cluster status --cluster rediss://store:6380/0 --json"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("action", choices=["status"], help="what to do (status: list the nodes)")
    _store_options(p, required=True)
    p.add_argument("--json", action="store_true", help="print the nodes as JSON")
    p.set_defaults(handler=_cmd_cluster)


def _cmd_cluster(args: argparse.Namespace) -> int:
    nodes = cluster_status(
        args.cluster,
        password=preflight(args),
        prefix=args.cluster_prefix,
        ca_file=args.cluster_ca_file,
    )
    if args.json:
        print(json.dumps([n.__dict__ for n in nodes], indent=1))
        return 0
    out = sys.stdout
    if not nodes:
        print("no nodes in the store", file=out)
        return 0
    fps = {n.fingerprint for n in nodes if n.alive}
    print(f"{'node':<20} {'incarnation':<13} {'lease':<8} {'age s':>7} {'live SAs':>9} "
          f"{'expire s':>9}  fingerprint", file=out)
    for n in nodes:
        age = "-" if n.lease_age is None else f"{n.lease_age:.1f}"
        exp = "-" if n.sas_expire_in is None else f"{n.sas_expire_in:.1f}"
        lease = "held" if n.alive else ("grace" if n.live_sas else "expired")
        print(f"{n.node:<20} {n.incarnation:<13} {lease:<8} {age:>7} {n.live_sas:>9} {exp:>9}  "
              f"{n.fingerprint or '-'}", file=out)
    if len(fps) > 1:
        print(f"warning: {len(fps)} different secret fingerprints among the live nodes; the "
              "minority refuses to answer", file=out)
    return 0
