"""Rate-limit keys for network sources."""

from __future__ import annotations

import ipaddress
from functools import lru_cache

__all__ = ["source_key"]


@lru_cache(maxsize=65536)
def source_key(host: str) -> int:
    """The 64-bit rate-limit key of a source address: an IPv4 address as an int, or the upper
    64 bits (the /64 prefix) of an IPv6 address. Unparseable hosts share key 0."""
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        return 0
    if addr.version == 4:
        return int(addr)
    return int(addr) >> 64
