"""ikeqcd: IKEv2 Quick Crash Detection (RFC 6290) with a Rust core.

Public API only; everything here is documented in the README and pinned by
``tests/test_api_surface.py``.
"""

from __future__ import annotations

from ikeqcd import errors as errors
from ikeqcd._core import TokenMaker as TokenMaker
from ikeqcd._core import __version__ as __version__
from ikeqcd.errors import IkeQcdError as IkeQcdError
from ikeqcd.secret import SecretStore as SecretStore
from ikeqcd import wire as wire
from ikeqcd import pcap as pcap
from ikeqcd.maker import Reason as Reason
from ikeqcd.maker import TokenResponder as TokenResponder
from ikeqcd._core import SaTable as SaTable
from ikeqcd.table import TokenCheck as TokenCheck

ALGORITHMS: tuple[str, ...] = ("hmac-sha256", "hmac-sha512", "hmac-sha1")

__all__ = [
    "ALGORITHMS",
    "IkeQcdError",
    "TokenMaker",
    "__version__",
    "errors",
    "SecretStore",
    "Reason",
    "TokenResponder",
    "pcap",
    "wire",
    "SaTable",
    "TokenCheck",
]
