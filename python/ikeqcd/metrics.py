"""Prometheus exposition of serve's counters."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from ikeqcd.errors import InvalidArgument, NetworkError

if TYPE_CHECKING:
    from ikeqcd.serving import ServeStats

__all__ = ["prometheus_text"]

def prometheus_text(stats: ServeStats) -> str:
    """The counters in the Prometheus text exposition format (version 0.0.4)."""
    out = [
        "# HELP ikeqcd_serve_requests_total Datagrams received, by what happened to them.",
        "# TYPE ikeqcd_serve_requests_total counter",
    ]
    out += [
        f'ikeqcd_serve_requests_total{{reason="{name.lower()}"}} {n}'
        for name, n in stats.reasons.items()
    ]
    out += [
        "# HELP ikeqcd_serve_replies_total Replies sent, by reason (replied = with QCD tokens).",
        "# TYPE ikeqcd_serve_replies_total counter",
    ]
    out += [
        f'ikeqcd_serve_replies_total{{reason="{name.lower()}"}} {stats.reasons[name]}'
        for name in ("REPLIED", "DISABLED", "RATE_LIMITED_BARE", "OUTSIDE_WINDOW")
    ]
    for name, help_, value in (
        ("datagrams_received_total", "UDP datagrams received.", stats.datagrams_in),
        ("datagrams_sent_total", "UDP datagrams sent.", stats.datagrams_out),
        ("received_bytes_total", "UDP payload octets received.", stats.bytes_in),
        ("sent_bytes_total", "UDP payload octets sent.", stats.bytes_out),
        ("send_errors_total", "Replies the kernel refused to send.", stats.send_errors),
    ):
        out += [
            f"# HELP ikeqcd_serve_{name} {help_}",
            f"# TYPE ikeqcd_serve_{name} counter",
            f"ikeqcd_serve_{name} {value}",
        ]
    out += [
        "# HELP ikeqcd_serve_uptime_seconds Seconds served.",
        "# TYPE ikeqcd_serve_uptime_seconds gauge",
        f"ikeqcd_serve_uptime_seconds {stats.elapsed:.3f}",
    ]
    return "\n".join(out) + "\n"


@contextmanager
def _prometheus(
    port: int | None, stats: Callable[[], ServeStats]
) -> Iterator[tuple[str, int] | None]:
    if port is None:
        yield None
        return
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise InvalidArgument(f"prometheus_port must be an int in 0..65535, got {port!r}")

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/metrics", "/"):
                self.send_error(404, "only /metrics here")
                return
            body = prometheus_text(stats()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    try:
        httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    except OSError as e:
        raise NetworkError(f"cannot expose Prometheus metrics on 127.0.0.1:{port}: {e}") from e
    httpd.daemon_threads = True
    t = threading.Thread(target=httpd.serve_forever, name="ikeqcd-prometheus", daemon=True)
    t.start()
    try:
        host, bound = httpd.server_address[:2]
        yield (str(host), int(bound))
    finally:
        httpd.shutdown()
        httpd.server_close()
        t.join()


