"""UDP load-test tools: ``ikeqcd serve`` (a rebooted gateway) and ``ikeqcd load`` (a driver).

:func:`serve` binds a UDP socket and answers every protected IKE request for an SA it does not
know, as a gateway that has just restarted would (RFC 6290 §4.5): with
``HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+`` within the :class:`~ikeqcd.MakerPolicy` limits, a
bare INVALID_IKE_SPI or nothing beyond them, and never for a live SA of ``live``. It counts
every datagram by :class:`~ikeqcd.Reason`, can expose the counters to Prometheus, and stops
cleanly on SIGINT/SIGTERM.

:func:`load` sends protected-looking requests (``HDR, SK{random}``, INFORMATIONAL, Message ID =
sequence number) for random SPI pairs at a paced rate, checks every reply with the codec (and
every token, when it has the secret) and reports what it counted with latency percentiles.

Both run their packet loops in the Rust core (``recvmmsg``/``sendmmsg``, batches of 64, the
GIL released) in slices of a fraction of a second; Python only acts between slices. Linux
only. Both default to loopback.
"""

from __future__ import annotations

from ikeqcd._netcommon import DEFAULT_NAT_T_PORT, DEFAULT_PORT
from ikeqcd.loading import LoadReport, load, load_spis
from ikeqcd.metrics import BatchTimes, prometheus_text
from ikeqcd.net_cli import add_load_parser, add_serve_parser
from ikeqcd.serving import Server, ServeStats, serve

__all__ = [
    "DEFAULT_NAT_T_PORT",
    "DEFAULT_PORT",
    "BatchTimes",
    "LoadReport",
    "ServeStats",
    "Server",
    "add_load_parser",
    "add_serve_parser",
    "load",
    "load_spis",
    "prometheus_text",
    "serve",
]
