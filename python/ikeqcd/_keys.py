"""Rate-limit keys for network sources: the core's rule (``rust/srckey.rs``), for addresses
given as strings.

IPv4 and IPv4-mapped IPv6 addresses (``::ffff:a.b.c.d``, what a dual-stack ``[::]`` socket
reports for IPv4 peers) are keyed per host; other IPv6 addresses per /64 prefix; the two key
spaces never meet. Hosts that are not IP addresses (names, garbage) share one key,
``UNKNOWN_SOURCE``: rate limits still apply to them, together.
"""

from __future__ import annotations

import ipaddress
from functools import lru_cache

from ikeqcd import _core

__all__ = ["UNKNOWN_SOURCE", "source_key"]

UNKNOWN_SOURCE = 2**64 - 1


@lru_cache(maxsize=65536)
def source_key(host: str) -> int:
    """The 64-bit rate-limit key of a source address (see the module docs)."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return UNKNOWN_SOURCE
    return _core._source_key(addr.packed)
