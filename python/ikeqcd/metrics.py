"""Prometheus export of serve's counters, through ``prometheus_client`` (``ikeqcd[metrics]``).

A custom collector reads the server's own counters at each scrape (no second count to drift),
into a private :class:`~prometheus_client.CollectorRegistry` served by the library's HTTP
server on 127.0.0.1. Metrics: ``ikeqcd_serve_requests_total{reason}``,
``ikeqcd_serve_replies_total{reason}``, ``ikeqcd_serve_datagrams_{received,sent}_total``,
``ikeqcd_serve_{received,sent}_bytes_total``, ``ikeqcd_serve_send_errors_total``,
``ikeqcd_serve_uptime_seconds`` and the histogram ``ikeqcd_serve_batch_seconds``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ikeqcd.errors import IkeQcdError, InvalidArgument, NetworkError

if TYPE_CHECKING:
    from ikeqcd.serving import ServeStats

__all__ = ["BatchTimes", "prometheus_text", "require_prometheus_client"]

_MISSING = (
    "serve's Prometheus endpoint needs prometheus_client: pip install 'ikeqcd[metrics]' "
    "(or pip install prometheus_client)"
)

_BATCH_HELP = (
    "Seconds serve took to answer one received batch of up to 64 datagrams: from recvmmsg "
    "returning to the replies' sendmmsg returning (classify, policy, tokens, replies). The "
    "server's share of each reply's latency; time queued in the socket buffer is not in it."
)

# reasons whose datagrams get a reply (REPLIED: with QCD tokens; the others: bare)
_REPLY_REASONS = ("REPLIED", "DISABLED", "RATE_LIMITED_BARE", "OUTSIDE_WINDOW")


@dataclass(frozen=True)
class BatchTimes:
    """Serve's per-batch service times (see ``ikeqcd_serve_batch_seconds``).

    Attributes:
        bounds: bucket upper bounds in seconds (inclusive), increasing.
        counts: batches per bucket, not cumulative; one more entry than ``bounds`` (above the
            largest bound).
        sum_seconds: total seconds.
    """

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    sum_seconds: float

    @property
    def count(self) -> int:
        """Batches timed."""
        return sum(self.counts)


def require_prometheus_client() -> None:
    """Raise :class:`~ikeqcd.errors.IkeQcdError` naming the extra when the library is missing."""
    try:
        import prometheus_client  # noqa: F401
    except ImportError as e:
        raise IkeQcdError(_MISSING) from e


def _collector(stats: Callable[[], ServeStats], times: Callable[[], BatchTimes | None]) -> Any:
    """A prometheus_client collector that reads ``stats()`` and ``times()`` at each scrape."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )
    from prometheus_client.registry import Collector

    class ServeCollector(Collector):
        def collect(self) -> Iterator[Any]:
            s = stats()
            requests = CounterMetricFamily(
                "ikeqcd_serve_requests",
                "Datagrams received, by what happened to them.",
                labels=["reason"],
            )
            for name, n in s.reasons.items():
                requests.add_metric([name.lower()], n)
            yield requests
            replies = CounterMetricFamily(
                "ikeqcd_serve_replies",
                "Replies sent, by reason (replied = with QCD tokens).",
                labels=["reason"],
            )
            for name in _REPLY_REASONS:
                replies.add_metric([name.lower()], s.reasons[name])
            yield replies
            for name, help_, value in (
                ("datagrams_received", "UDP datagrams received.", s.datagrams_in),
                ("datagrams_sent", "UDP datagrams sent.", s.datagrams_out),
                ("received_bytes", "UDP payload octets received.", s.bytes_in),
                ("sent_bytes", "UDP payload octets sent.", s.bytes_out),
                ("send_errors", "Replies the kernel refused to send.", s.send_errors),
            ):
                yield CounterMetricFamily(f"ikeqcd_serve_{name}", help_, value=value)
            yield GaugeMetricFamily("ikeqcd_serve_uptime_seconds", "Seconds served.", s.elapsed)
            t = times()
            if t is not None:
                cumulative, buckets = 0, []
                for bound, n in zip((*t.bounds, float("inf")), t.counts, strict=True):
                    cumulative += n
                    buckets.append((_le(bound), cumulative))
                yield HistogramMetricFamily(
                    "ikeqcd_serve_batch_seconds", _BATCH_HELP, buckets=buckets, sum_value=t.sum_seconds
                )

    return ServeCollector()


def _le(bound: float) -> str:
    return "+Inf" if bound == float("inf") else repr(bound)


def _registry(stats: Callable[[], ServeStats], times: Callable[[], BatchTimes | None]) -> Any:
    require_prometheus_client()
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_collector(stats, times))
    return registry


def prometheus_text(stats: ServeStats, batch_times: BatchTimes | None = None) -> str:
    """The counters (and, when given, the batch-time histogram) in the Prometheus text
    exposition format, as ``/metrics`` serves them.

    Raises:
        IkeQcdError: prometheus_client is not installed (``pip install 'ikeqcd[metrics]'``).
    """
    from_registry = _registry(lambda: stats, lambda: batch_times)
    from prometheus_client import generate_latest

    text: bytes = generate_latest(from_registry)
    return text.decode()


@contextmanager
def _prometheus(
    port: int | None,
    stats: Callable[[], ServeStats],
    times: Callable[[], BatchTimes | None] = lambda: None,
) -> Iterator[tuple[str, int] | None]:
    """Serve ``/metrics`` on 127.0.0.1:``port`` (0 picks one) while the block runs; yields the
    bound (host, port), or None when ``port`` is None."""
    if port is None:
        yield None
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgument(f"prometheus_port must be an int in 0..65535, got {port!r}")
    registry = _registry(stats, times)
    from prometheus_client import start_http_server

    try:
        httpd, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    except OSError as e:
        raise NetworkError(f"cannot expose Prometheus metrics on 127.0.0.1:{port}: {e}") from e
    try:
        host, bound = httpd.server_address[:2]
        yield (str(host), int(bound))
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()
