"""QCD load on Locust's runner: ``QcdUser`` and a ready locustfile (``pip install 'ikeqcd[locust]'``).

One machine, all cores (Locust forks the workers)::

    locust -f $(python -m ikeqcd.locust --path) --headless --processes 4 \\
        -u 4 -r 4 -t 30s --host 127.0.0.1:10500 --qcd-secret-file qcd.secret

Many machines: a master, then workers that connect to it::

    locust -f $(python -m ikeqcd.locust --path) --headless --master --expect-workers 2 \\
        -u 8 -r 8 -t 60s --host 192.0.2.10:500 --qcd-secret-file qcd.secret --csv run
    locust -f $(python -m ikeqcd.locust --path) --worker --master-host MASTER_ADDRESS

Each user drives the native batch load core (:class:`ikeqcd.loadcore.BatchLoad`: paced
``sendmmsg``/``recvmmsg``, parsing and constant-time token verification with the GIL
released) for ``--qcd-batch`` seconds at a time and reports what came back through
``events.request``, one event per outcome and batch, named by message kind:

- ``INVALID_IKE_SPI+QCD_TOKEN``: a reply whose tokens verify (or, without a secret, a
  well-formed one); a reply whose token does not verify is a failure under the same name;
- ``INVALID_IKE_SPI (bare)``: a reply without a token (the server is rate-limiting, QCD is
  off, or the pair is live): a failure, since a QCD load test asks for tokens;
- ``no reply``: a request unanswered after ``--qcd-timeout`` (a failure), ``send`` a send
  that failed (ICMP port unreachable, no route), ``stray reply`` a reply that does not parse
  or answers nothing we sent.

Locust counts one request per event, so a batch of N requests is one event (listeners see
``context["count"] == N``) whose remaining N - 1 requests are added to the same statistics
entry in bulk, the same fields ``StatsEntry.log`` updates, with the batch's latency
distribution. Locust's request counts, percentiles and failure table therefore count
datagrams. Users in one worker process take turns (each batch holds the process for
``--qcd-batch`` seconds); run one user per worker (``--processes``) for the full rate.
"""

from __future__ import annotations

import argparse
import atexit
import itertools
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ikeqcd.errors import IkeQcdError, InvalidArgument

try:
    import gevent  # type: ignore[import-untyped,unused-ignore]
    from locust import User, events, task
    from locust.env import Environment
    from locust.exception import StopUser
    from locust.stats import StatsEntry
except ImportError as e:  # pragma: no cover - exercised only without the extra
    raise IkeQcdError(
        "ikeqcd.locust needs Locust: pip install 'ikeqcd[locust]' (or pip install locust)"
    ) from e

from ikeqcd.loadcore import Batch, BatchLoad, parse_target
from ikeqcd.secret import SecretStore

__all__ = ["QcdUser", "locustfile_path", "main", "report_batch"]

VALID = "INVALID_IKE_SPI+QCD_TOKEN"
BARE = "INVALID_IKE_SPI (bare)"
LOST = "no reply"
SEND = "send"
STRAY = "stray reply"
REQUEST_TYPE = "UDP"


class QcdReplyError(Exception):
    """Why a batch's requests failed (shown in Locust's failure table)."""


def _options(parser: Any) -> None:
    g = parser.add_argument_group("ikeqcd (QCD load)")
    g.add_argument("--qcd-rate", type=float, default=50_000.0, metavar="R",
                   help="requests per second per user (0: as fast as 512 requests in flight allow); "
                        "default 50000")
    g.add_argument("--qcd-sas", type=int, default=1000, metavar="N",
                   help="SPI pairs each user draws its requests from; default 1000")
    g.add_argument("--qcd-secret-file", default="", metavar="F",
                   help="the server's secret file: every token is verified (default: none, "
                        "replies are checked for form only)")
    g.add_argument("--nat-t", action="store_true", default=False,
                   help="UDP/4500 framing (non-ESP marker), e.g. --host HOST:4500")
    g.add_argument("--qcd-batch", type=float, default=0.25, metavar="S",
                   help="seconds per native batch, one report per batch; default 0.25")
    g.add_argument("--qcd-timeout", type=float, default=1.0, metavar="S",
                   help="seconds after which a request counts as 'no reply'; default 1.0")
    g.add_argument("--qcd-seed", type=int, default=0, metavar="N",
                   help="seed of the SPI pairs (user k uses seed + k); default 0")


events.init_command_line_parser.add_listener(_options)  # type: ignore[no-untyped-call]


class _InFlight:
    """The native load calls running in gevent's thread pool, so that none is left running
    when the process exits.

    Locust kills a user's greenlet at the end of a run (``-t``) while its pool thread may
    still be inside a native step with the GIL released. If the interpreter finalizes then,
    CPython ends that thread as it tries to take the GIL back, inside Rust frames, and the
    process aborts ("FATAL: exception not rethrown", exit -6). At exit every running load is
    stopped (its step returns within a native slice) and waited for.
    """

    def __init__(self) -> None:
        # No lock: dict updates are atomic under the GIL, and gevent's patched locks are not
        # for use across the pool's real threads.
        self._running: dict[int, BatchLoad] = {}
        self._tokens = itertools.count()

    def call(self, load: BatchLoad, fn: Any, *args: Any) -> Batch:
        key = next(self._tokens)
        self._running[key] = load
        try:
            return fn(*args)  # type: ignore[no-any-return]
        finally:
            self._running.pop(key, None)

    def quiesce(self, wait: float = 5.0) -> None:
        deadline = time.monotonic() + wait
        while self._running and time.monotonic() < deadline:
            for load in list(self._running.values()):
                load.stop()
            time.sleep(0.01)


_IN_FLIGHT = _InFlight()
atexit.register(_IN_FLIGHT.quiesce)


def _check_options(o: Any) -> None:
    if not (o.qcd_rate >= 0 and not math.isnan(o.qcd_rate)):
        raise InvalidArgument(f"--qcd-rate must be >= 0 requests per second, got {o.qcd_rate}")
    if not 1 <= o.qcd_sas <= 10_000_000:
        raise InvalidArgument(f"--qcd-sas must be 1..10000000, got {o.qcd_sas}")
    for name in ("qcd_batch", "qcd_timeout"):
        v = getattr(o, name)
        if not (0 < v <= 60):
            raise InvalidArgument(f"--{name.replace('_', '-')} must be in (0, 60] seconds, got {v}")
    if not 0 <= o.qcd_seed < 2**63:
        raise InvalidArgument(f"--qcd-seed must be 0..2**63-1, got {o.qcd_seed}")


def _bulk_log(entry: StatsEntry, ms: np.ndarray, counts: np.ndarray, length: int) -> None:
    """Add ``counts[i]`` requests of ``ms[i]`` milliseconds each to ``entry``: what
    ``StatsEntry.log`` does once per request, in one step."""
    n = int(counts.sum())
    if n <= 0:
        return
    now = time.time()
    entry.num_requests += n
    entry.num_reqs_per_sec[int(now)] += n
    entry.last_request_timestamp = now
    # Locust annotates these as int but stores the float milliseconds it is given
    entry.total_response_time += float((ms * counts).sum())  # type: ignore[assignment]
    lo, hi = float(ms.min()), float(ms.max())
    entry.min_response_time = (
        lo if entry.min_response_time is None else min(entry.min_response_time, lo)  # type: ignore[assignment]
    )
    entry.max_response_time = max(entry.max_response_time, hi)  # type: ignore[assignment]
    from locust.stats import bucket_response_time

    for m, c in zip(ms.tolist(), counts.tolist()):
        entry.response_times[bucket_response_time(m)] += int(c)
    entry.total_content_length += length * n


def _bulk_fail(env: Environment, name: str, error: Exception, n: int) -> None:
    from locust.stats import StatsError

    if n <= 0:
        return
    t = int(time.time())
    for e in (env.stats.total, env.stats.get(name, REQUEST_TYPE)):
        e.num_failures += n
        e.num_fail_per_sec[t] += n
    key = StatsError.create_key(REQUEST_TYPE, name, error)
    err = env.stats.errors.get(key)
    if err is None:
        err = env.stats.errors[key] = StatsError(REQUEST_TYPE, name, error)
    err.occurred()
    err.occurrences += n - 1


def report_batch(
    env: Environment,
    name: str,
    ms: np.ndarray,
    counts: np.ndarray,
    length: int,
    error: Exception | None = None,
) -> None:
    """Report ``counts.sum()`` requests with latencies ``ms`` (per bucket) as one
    ``events.request`` plus a bulk update of Locust's statistics (see the module docs)."""
    counts = np.asarray(counts, dtype=np.int64)
    ms = np.asarray(ms, dtype=np.float64)
    n = int(counts.sum())
    if n <= 0:
        return
    first = int(np.flatnonzero(counts)[0])
    env.events.request.fire(  # type: ignore[no-untyped-call]
        request_type=REQUEST_TYPE,
        name=name,
        response_time=float(ms[first]),
        response_length=length,
        exception=error,
        context={"count": n},
    )
    rest = counts.copy()
    rest[first] -= 1
    if rest.sum() == 0:
        return
    _bulk_log(env.stats.get(name, REQUEST_TYPE), ms, rest, length)
    _bulk_log(env.stats.total, ms, rest, length)
    if error is not None:
        _bulk_fail(env, name, error, n - 1)


def _one(ms: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.array([ms]), np.array([n])


class QcdUser(User):
    """A Locust user that loads a QCD responder (``ikeqcd serve`` or a gateway) over UDP.

    The target is Locust's ``--host`` as ``HOST:PORT`` (``udp://`` accepted). Options: see
    ``locust -f $(python -m ikeqcd.locust --path) --help``, group "ikeqcd (QCD load)".
    """

    abstract = False
    _count = 0

    def on_start(self) -> None:
        o = self.environment.parsed_options
        try:
            if o is None:
                raise InvalidArgument("QcdUser needs Locust's command-line options")
            _check_options(o)
            if not self.host:
                raise InvalidArgument("give the responder as --host HOST:PORT")
            target = parse_target(self.host)
            maker = None
            if o.qcd_secret_file:
                store = SecretStore(o.qcd_secret_file)
                store.load()
                maker = store.maker()
        except IkeQcdError as e:
            self._fatal(e)
            return
        QcdUser._count += 1
        self._load: BatchLoad | None = BatchLoad(
            target, rate=o.qcd_rate, sas=o.qcd_sas, maker=maker, nat_t=o.nat_t,
            seed=o.qcd_seed + QcdUser._count, timeout=o.qcd_timeout,
        )
        self._step = float(o.qcd_batch)
        self._timeout_ms = 1000.0 * o.qcd_timeout
        self._verified = maker is not None

    def _fatal(self, e: Exception) -> None:
        # A configuration error: one failure row saying why; the user then stops (its task
        # raises StopUser), never a worker traceback.
        self._load = None
        self.environment.events.request.fire(
            request_type=REQUEST_TYPE, name="setup", response_time=0.0, response_length=0,
            exception=QcdReplyError(str(e)), context={"count": 1},
        )

    @task
    def batch(self) -> None:
        """One native batch of ``--qcd-batch`` seconds, reported."""
        load = getattr(self, "_load", None)
        if load is None:
            raise StopUser()
        # In gevent's thread pool: the native call releases the GIL and the worker's hub
        # (heartbeats, timers, other users) keeps running meanwhile.
        pool = gevent.get_hub().threadpool
        self._report(pool.apply(_IN_FLIGHT.call, (load, load.step, self._step)))

    def on_stop(self) -> None:
        load = getattr(self, "_load", None)
        if load is not None:
            pool = gevent.get_hub().threadpool
            self._report(pool.apply(_IN_FLIGHT.call, (load, load.finish)))
            self._load = None

    def _report(self, b: Batch) -> None:
        env, c = self.environment, b.counts
        ms = b.latency_ns.astype(np.float64) / 1e6
        answered = b.latency_counts.astype(np.int64)
        bad = c["bad_token"] + c["mismatched"] + c["bare"]
        if answered.sum() and bad == 0:
            report_batch(env, VALID, ms, answered, b.reply_len)
        elif answered.sum():
            # the distribution is shared by every answered reply: split the counts by kind
            # in proportion (exact totals), the failures at the batch median
            med = b.median_ms()
            report_batch(env, VALID, ms, _scale(answered, c["valid"]), b.reply_len)
            if c["bad_token"]:
                why = ("token does not verify under --qcd-secret-file (wrong secret?)"
                       if self._verified else "token check failed")
                report_batch(env, VALID, *_one(med, c["bad_token"]), b.reply_len,
                             QcdReplyError(why))
            if c["mismatched"]:
                report_batch(env, VALID, *_one(med, c["mismatched"]), b.reply_len,
                             QcdReplyError("reply does not match its request (SPIs, flags or "
                                           "framing)"))
            if c["bare"]:
                report_batch(env, BARE, *_one(med, c["bare"]), 36 + 4 * self._load_nat(),
                             QcdReplyError("INVALID_IKE_SPI without QCD_TOKEN (server rate "
                                           "limit, QCD off, or a live SA)"))
        if c["lost"]:
            report_batch(env, LOST, *_one(self._timeout_ms, c["lost"]), 0,
                         QcdReplyError(f"no reply within {self._timeout_ms / 1000:g} s"))
        if c["send_errors"]:
            report_batch(env, SEND, *_one(0.0, c["send_errors"]), 0,
                         QcdReplyError("send failed: the target refused it (ICMP port "
                                       "unreachable: nothing listens there?) or no route"))
        stray = c["malformed"] + c["unmatched"] + c["late"]
        if stray:
            report_batch(env, STRAY, *_one(0.0, stray), 0,
                         QcdReplyError(f"{c['malformed']} replies that do not parse as IKEv2, "
                                       f"{c['unmatched']} that answer nothing sent, "
                                       f"{c['late']} after the timeout"))

    def _load_nat(self) -> int:
        o = self.environment.parsed_options
        return int(bool(o is not None and o.nat_t))


def _scale(counts: np.ndarray, total: int) -> np.ndarray:
    """``counts`` scaled to sum to ``total`` (largest remainders), for splitting one
    latency distribution between outcomes."""
    s = int(counts.sum())
    if s == 0 or total <= 0:
        return np.zeros_like(counts)
    exact = counts * (total / s)
    out = np.floor(exact).astype(np.int64)
    short = total - int(out.sum())
    if short > 0:
        out[np.argsort(exact - out)[::-1][:short]] += 1
    return out


def locustfile_path() -> Path:
    """The ready locustfile (``locust -f $(python -m ikeqcd.locust --path)``)."""
    return Path(__file__).with_name("locustfile.py")


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ikeqcd.locust --path``: print the locustfile's path; ``--help``: the
    options that the locustfile adds to Locust's command line (Locust's own ``--help``
    does not list them)."""
    p = argparse.ArgumentParser(
        prog="python -m ikeqcd.locust",
        description="QCD load tests on Locust's runner. Give the options below to `locust`.",
        epilog=(
            "examples:\n"
            "  locust -f $(python -m ikeqcd.locust --path) --headless --processes 2 -u 2 -r 2 \\\n"
            "      -t 30s --host 127.0.0.1:10500 --qcd-secret-file qcd.secret\n"
            "  locust -f $(python -m ikeqcd.locust --path) --headless --master --expect-workers 2 \\\n"
            "      -u 8 -r 8 -t 60s --host 192.0.2.10:500 --csv run   # then, on each load machine:\n"
            "  locust -f $(python -m ikeqcd.locust --path) --worker --master-host MASTER_ADDRESS"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--path", action="store_true", help="print the path of the ready locustfile")
    _options(p)
    args = p.parse_args(argv)
    if args.path:
        print(locustfile_path())
        return 0
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
