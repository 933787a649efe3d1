"""Plumbing of :mod:`ikeqcd.cluster`: the server-side scripts, the connection, the pair
encoding and the rate-limited log line."""

from __future__ import annotations

import logging
import threading
import time
import urllib.parse
from typing import Any

import numpy as np

from ikeqcd.errors import InvalidArgument

_log = logging.getLogger("ikeqcd.cluster")

MAX_SCRIPT_BATCH = 4096
"""Pairs per script call (larger batches are split; Lua's unpack limit is about 8 000)."""

# KEYS[1] = P:nodes, KEYS[2] = P:since; ARGV[1] = "P:sas:"; ARGV[2] = the pairs, 16 octets
# each; ARGV[3] = the settling time in ms. Returns one octet per pair: "1" live on some node,
# "0" not; an error while the store's data is younger than the settling time (a server that
# restarted empty does not know the other nodes' SAs until they have heartbeated).
CHECK_SCRIPT = """
local since = redis.call('GET', KEYS[2])
if not since then
  return redis.error_reply('IKEQCD-SETTLING the store holds no cluster data (new or restarted empty)')
end
local t = redis.call('TIME')
local age = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(since)
if age < tonumber(ARGV[3]) then
  return redis.error_reply('IKEQCD-SETTLING the store restarted ' .. age .. ' ms ago; waiting for every node to publish its SAs')
end
local blob = ARGV[2]
local n = #blob / 16
local members = {}
local hit = {}
for i = 1, n do
  members[i] = string.sub(blob, 16 * i - 15, 16 * i)
  hit[i] = '0'
end
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local key = ARGV[1] .. node
  if redis.call('EXISTS', key) == 1 then
    local r = redis.call('SMISMEMBER', key, unpack(members))
    for i = 1, n do
      if r[i] == 1 then hit[i] = '1' end
    end
  end
end
return table.concat(hit)
"""

# KEYS[1] = P:since: the server time (ms) since which the store holds cluster data.
MARK_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  local t = redis.call('TIME')
  redis.call('SET', KEYS[1], tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000))
  return 1
end
return 0
"""

# KEYS[1] = P:nodes; ARGV[1] = "P:lease:", ARGV[2] = "P:sas:", ARGV[3] = the node id.
# Forget a node id whose lease and SA set have both expired (atomic: no race with a beat).
PRUNE_SCRIPT = """
if redis.call('EXISTS', ARGV[1] .. ARGV[3]) == 0 and redis.call('EXISTS', ARGV[2] .. ARGV[3]) == 0 then
  return redis.call('SREM', KEYS[1], ARGV[3])
end
return 0
"""


def redis_module() -> Any:
    try:
        import redis
    except ImportError:  # pragma: no cover - the extra is part of the test install
        raise ImportError(
            "ikeqcd.cluster needs the redis client: pip install 'ikeqcd[cluster]'"
        ) from None
    return redis


def pairs_blob(spi_i: Any, spi_r: Any) -> bytes:
    a = np.ascontiguousarray(spi_i, dtype=np.uint64)
    b = np.ascontiguousarray(spi_r, dtype=np.uint64)
    if a.ndim != 1 or a.shape != b.shape:
        raise InvalidArgument(
            f"spi_i and spi_r must be 1-D arrays of the same length, got {a.shape} and {b.shape}"
        )
    pairs = np.empty((len(a), 2), dtype=">u8")
    pairs[:, 0] = a
    pairs[:, 1] = b
    return pairs.tobytes()


def members(blob: bytes) -> list[bytes]:
    return [blob[k : k + 16] for k in range(0, len(blob), 16)]


def safe_url(url: str) -> str:
    """The URL without any password (for logs and messages)."""
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{p.port}" if p.port else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


def connect(
    url: str, *, password: str | None, deadline: float, ca_file: str | None = None
) -> Any:
    redis = redis_module()
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    p = urllib.parse.urlsplit(url)
    if p.scheme not in ("redis", "rediss"):
        raise InvalidArgument(f"the cluster URL must be redis://HOST:PORT/DB or rediss://..., got {safe_url(url)!r}")
    kwargs: dict[str, Any] = {
        "socket_timeout": deadline,
        "socket_connect_timeout": deadline,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    if password is not None:
        kwargs["password"] = password
    if ca_file is not None and p.scheme == "rediss":
        kwargs["ssl_ca_certs"] = ca_file
    return redis.Redis.from_url(url, **kwargs)


class RateLog:
    """At most one warning per ``every`` seconds; says how many were held back."""

    def __init__(self, every: float = 10.0) -> None:
        self._every = every
        self._next = 0.0
        self._held = 0
        self._lock = threading.Lock()

    def warn(self, msg: str, *args: object) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self._every
        suffix = f" ({held} more like this since the last line)" if held else ""
        _log.warning(msg + suffix, *args)


