"""The one exception hierarchy of ikeqcd.

Every error the package raises on purpose is an :class:`IkeQcdError`. Errors caused by a wrong
argument also subclass :class:`ValueError`, so ``except ValueError`` keeps working for callers
that do not know this package. The native core raises these same classes.
"""

from __future__ import annotations

__all__ = [
    "CapacityError",
    "ClusterUnavailable",
    "IkeQcdError",
    "InvalidAddress",
    "InvalidAlgorithm",
    "InvalidArgument",
    "InvalidArray",
    "InvalidGeneration",
    "InvalidPolicy",
    "InvalidSecret",
    "InvalidSpi",
    "InvalidToken",
    "InvalidTokenLength",
    "MalformedMessage",
    "NetworkError",
    "SecretFileError",
]


class IkeQcdError(Exception):
    """Base class of every error raised by ikeqcd."""


class InvalidArgument(IkeQcdError, ValueError):
    """An argument has the wrong value, size, type or shape."""


class InvalidSecret(InvalidArgument):
    """A secret is missing, of the wrong type, too short or too long, or there are more than 4."""


class InvalidAlgorithm(InvalidArgument):
    """The algorithm is not ``hmac-sha256``, ``hmac-sha512`` or ``hmac-sha1``."""


class InvalidTokenLength(InvalidArgument):
    """``token_len`` is outside 16..digest size (RFC 6290 §5: tokens are 16..128 octets)."""


class InvalidGeneration(InvalidArgument):
    """A secret generation index that the maker does not have."""


class InvalidArray(InvalidArgument):
    """A numpy array of the wrong dtype, dimensionality, contiguity or length."""


class InvalidSpi(InvalidArgument):
    """An SPI that is not an integer in 0..2**64-1."""


class InvalidAddress(InvalidArgument):
    """A §5.2 taker address that is not 4 (IPv4) or 16 (IPv6) octets."""


class InvalidToken(InvalidArgument):
    """A token of the wrong type or length."""


class InvalidPolicy(InvalidArgument):
    """A policy option with an impossible value."""


class MalformedMessage(IkeQcdError, ValueError):
    """A datagram or payload that does not parse as IKEv2; the message says where and why."""


class CapacityError(IkeQcdError):
    """A configured capacity would be exceeded."""


class SecretFileError(IkeQcdError):
    """The secret file is missing where required, corrupt, of a wrong version or too open.

    ``str(e)`` says what is wrong with the path and how to fix it from Python. Callers that
    give their own advice (the command line) use the attributes.

    Attributes:
        reason: what is wrong, as a short code: ``"missing"`` (no file), ``"exists"``
            (create or import over an existing file), ``"changed"`` (changed on disk since
            loaded), ``"not-loaded"``, ``"directory"``, ``"symlink"``, ``"not-regular"``,
            ``"owner"``, ``"mode"``, ``"parent"`` (the directory is missing, not a directory,
            or writable by others), ``"corrupt"``, ``"algorithm"``, ``"io"``; ``""`` if unset.
        problem: the message without the Python-specific advice (``str(e)`` where none).
    """

    def __init__(self, message: str, *, reason: str = "", problem: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.problem = message if problem is None else problem


class NetworkError(IkeQcdError, OSError):
    """A UDP socket could not be opened, bound or used (``ikeqcd serve`` / ``ikeqcd load``);
    the message names the address and the operating system's reason."""


class ClusterUnavailable(IkeQcdError):
    """The cluster's live-SA store cannot say whether an SA is live elsewhere (unreachable,
    past its deadline, an error), or this node's secret differs from the cluster's: RFC 6290
    §9.2 cannot be checked, so no token may be revealed (fail closed).

    Attributes:
        reason: ``"store"`` (unreachable, timed out or an error), ``"secret"`` (this node's
            secret fingerprint differs from the cluster's), ``"closed"`` (the store was
            closed); ``""`` if unset.
    """

    def __init__(self, message: str, *, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason
