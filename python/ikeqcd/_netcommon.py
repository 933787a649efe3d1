"""What serve and load share: default ports, address and secret arguments, the reply gate."""

from __future__ import annotations

import logging

from ikeqcd._core import TokenMaker
from ikeqcd.errors import InvalidArgument
from ikeqcd.maker import Reason
from ikeqcd.policy import MakerPolicy
from ikeqcd.secret import SecretStore

__all__ = ["DEFAULT_NAT_T_PORT", "DEFAULT_PORT"]

_log = logging.getLogger("ikeqcd.net")  # one logger for serve and load


DEFAULT_PORT = 10500
"""Default UDP port of serve/load: an unprivileged stand-in for IKE's 500."""
DEFAULT_NAT_T_PORT = 14500
"""Default UDP port with ``nat_t``: a stand-in for 4500."""

_DEFAULT_POLICY = MakerPolicy()  # frozen: safe to share as a default
_SLICE = 0.2  # seconds per native slice: how quickly signals and stop() are noticed
_REASONS = tuple(r.name for r in Reason)
_MAX_BODY = 1200  # the core's limit on load's SK body (rust/net/load.rs MAX_BODY)

_RING = 1 << 18  # most requests a load run keeps in flight (rust/net/load.rs RING)


def _default_address(nat_t: bool) -> str:
    return f"127.0.0.1:{DEFAULT_NAT_T_PORT if nat_t else DEFAULT_PORT}"


def _address(value: str | tuple[str, int] | None, nat_t: bool, what: str) -> str:
    if value is None:
        return _default_address(nat_t)
    if isinstance(value, tuple):
        host, port = value
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be 'HOST:PORT' or (host, port), got {value!r}")
    return value


def _maker_of(maker_or_store: TokenMaker | SecretStore) -> TokenMaker:
    if isinstance(maker_or_store, TokenMaker):
        return maker_or_store
    if isinstance(maker_or_store, SecretStore):
        if not maker_or_store.loaded:
            maker_or_store.load()
        return maker_or_store.maker()
    raise InvalidArgument(
        f"give an ikeqcd.TokenMaker or an ikeqcd.SecretStore, got {type(maker_or_store).__name__}"
    )


# ------------------------------------------------------------------------------------ serve


