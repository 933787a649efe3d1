"""ikeqcd: IKEv2 Quick Crash Detection (RFC 6290) with a Rust core.

Public API only; everything here is documented in the README and pinned by
``tests/test_api_surface.py``.
"""

from __future__ import annotations

from ikeqcd import errors as errors
from ikeqcd import net as net
from ikeqcd import pcap as pcap
from ikeqcd import wire as wire
from ikeqcd._core import RateLimiter as RateLimiter
from ikeqcd._core import SaTable as SaTable
from ikeqcd._core import TokenMaker as TokenMaker
from ikeqcd._core import __version__ as __version__
from ikeqcd.errors import IkeQcdError as IkeQcdError
from ikeqcd.maker import Reason as Reason
from ikeqcd.maker import TokenResponder as TokenResponder
from ikeqcd.policy import MakerPolicy as MakerPolicy
from ikeqcd.policy import TakerPolicy as TakerPolicy
from ikeqcd.secret import SecretStore as SecretStore
from ikeqcd.table import TokenCheck as TokenCheck
from ikeqcd.taker import CheckLiveness as CheckLiveness
from ikeqcd.taker import FailureDetector as FailureDetector
from ikeqcd.taker import PeerRestarted as PeerRestarted
from ikeqcd.taker import RestartCancelled as RestartCancelled
from ikeqcd.taker import Verdict as Verdict
from ikeqcd.taker import VerdictKind as VerdictKind

ALGORITHMS: tuple[str, ...] = ("hmac-sha256", "hmac-sha512", "hmac-sha1")

__all__ = [
    "ALGORITHMS",
    "CheckLiveness",
    "FailureDetector",
    "IkeQcdError",
    "MakerPolicy",
    "PeerRestarted",
    "RateLimiter",
    "Reason",
    "RestartCancelled",
    "SaTable",
    "SecretStore",
    "TakerPolicy",
    "TokenCheck",
    "TokenMaker",
    "TokenResponder",
    "Verdict",
    "VerdictKind",
    "__version__",
    "errors",
    "net",
    "pcap",
    "wire",
]
