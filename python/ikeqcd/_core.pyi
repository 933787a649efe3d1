"""Type stub for the native module ``ikeqcd._core`` (hand-written; the contract).

Users import these names from :mod:`ikeqcd`, never from ``ikeqcd._core``.
"""

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import final

import numpy as np
import numpy.typing as npt

__version__: str
build_profile: str
DETACH_THRESHOLD: int
PAR_THRESHOLD: int

_Bytes = bytes | bytearray | memoryview
_Address = IPv4Address | IPv6Address | bytes | None

@final
class TokenMaker:
    """Derives and verifies QCD tokens (RFC 6290 §5.1, §5.2).

    ``token = HMAC-H(secret, SPI-I || SPI-R [|| address])[:token_len]``, one secret per
    generation: index 0 is current, then up to 3 older ones.

    Args:
        secrets: one secret, or a sequence of 1..4 (current first); each 16..1024 octets.
        algorithm: ``"hmac-sha256"`` (default, 32-octet tokens), ``"hmac-sha512"`` (64) or
            ``"hmac-sha1"`` (16, the racoon2 form).
        token_len: truncate to this many octets, 16..digest size.

    Raises:
        InvalidSecret: wrong number, type or size of secrets.
        InvalidAlgorithm: unknown algorithm name.
        InvalidTokenLength: token_len outside 16..digest size.
    """

    def __new__(
        cls,
        secrets: _Bytes | Sequence[_Bytes],
        /,
        *,
        algorithm: str = "hmac-sha256",
        token_len: int | None = None,
    ) -> TokenMaker: ...
    @property
    def algorithm(self) -> str:
        """The HMAC algorithm name."""
    @property
    def token_len(self) -> int:
        """Token length in octets."""
    @property
    def generations(self) -> int:
        """Number of secret generations (1..4)."""
    def token(
        self, spi_i: int, spi_r: int, /, *, generation: int = 0, address: _Address = None
    ) -> bytes:
        """One token for one SPI pair.

        Raises:
            InvalidSpi: an SPI outside 0..2**64-1.
            InvalidGeneration: no such generation.
            InvalidAddress: address not 4 or 16 octets.
        """
    def all_tokens(self, spi_i: int, spi_r: int, /, *, address: _Address = None) -> list[bytes]:
        """One token per generation, current first (what an unprotected reply carries)."""
    def tokens(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        /,
        *,
        generation: int = 0,
        threads: int = 0,
    ) -> npt.NDArray[np.uint8]:
        """Tokens for arrays of SPI pairs, shape ``(n, token_len)``.

        Releases the GIL. ``threads``: 0 = all cores (or ``RAYON_NUM_THREADS``), 1 = the
        calling thread, k = k threads.

        Raises:
            InvalidArray: not 1-D C-contiguous uint64 arrays of equal length.
        """
    def verify(
        self,
        spi_i: int,
        spi_r: int,
        token: _Bytes,
        /,
        *,
        address: _Address = None,
    ) -> bool:
        """True if ``token`` equals this pair's token under any generation (constant time)."""
    def verify_many(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        tokens: npt.NDArray[np.uint8],
        /,
        *,
        threads: int = 0,
    ) -> npt.NDArray[np.bool_]:
        """Batch :meth:`verify`: row k of ``tokens`` against pair k. Releases the GIL."""

def _hmac(algorithm: str, key: bytes, data: bytes, /) -> bytes:
    """Full-length HMAC (known-answer-test hook; any key length)."""

@final
class RateLimiter:
    """Keyed token buckets with bounded memory (RFC 6290 §8.1 reply/verification limits).

    Keys are 64-bit: an IPv4 address as an int, or an IPv6 address's upper 64 bits (its /64).
    At most ``max_keys`` buckets are held; fully refilled buckets are forgotten first, and when
    all are active new keys share one overflow bucket (a spoofed flood cannot grow memory).

    Args:
        rate: tokens per second (``math.inf`` for no limit).
        burst: bucket size.
        max_keys: most buckets held.

    Raises:
        InvalidPolicy: a negative or NaN rate/burst, or ``max_keys`` 0.
    """

    def __new__(cls, rate: float, burst: float, /, *, max_keys: int = 65536) -> RateLimiter: ...
    def allow(self, key: int, now: float, /) -> bool:
        """Take one token for ``key`` at time ``now`` (seconds); True if allowed."""
    def allow_many(self, keys: npt.NDArray[np.uint64], now: float, /) -> npt.NDArray[np.bool_]:
        """:meth:`allow` for each key in order, all at time ``now``."""
    @property
    def counts(self) -> tuple[int, int]:
        """(allowed, refused) so far."""
    def __len__(self) -> int: ...
# --- wire (IKEv2 codec); the typed public API is ikeqcd.wire -------------------------------

_HeaderTuple = tuple[int, int, int, int, int, int, int, int]

def _parse_message(
    datagram: _Bytes, /, *, nat_t: bool | None = None
) -> tuple[
    _HeaderTuple,
    bool,
    list[tuple[int, int, bool, int, bytes]],
    list[tuple[int, int, bytes, int, bytes]],
]:
    """Parse an IKE message.

    Returns:
        (header, nat_t, payloads as (kind, next, critical, offset, body), notifies as
        (payload index, protocol id, spi, type, data)); header is (spi_i, spi_r,
        next_payload, version, exchange, flags, message_id, length).

    Raises:
        MalformedMessage: anything that is not a well-formed IKEv2 message.
    """

def _parse_header(datagram: _Bytes, /, *, nat_t: bool | None = None) -> tuple[_HeaderTuple, bool]:
    """Read the 28-octet header (major version checked); returns (header, nat_t)."""

def _parse_qcd_reply(
    datagram: _Bytes, /, *, nat_t: bool | None = None
) -> tuple[
    _HeaderTuple,
    bool,
    bool,
    bool,
    bytes | None,
    bool,
    list[bytes],
    list[tuple[int, str]],
]:
    """Parse a QCD reply.

    Returns:
        (header, nat_t, invalid_ike_spi, invalid_spi, invalid_spi data, encrypted, tokens,
        ignored as (index among QCD_TOKEN notifies, why)).

    Raises:
        MalformedMessage: as ``_parse_message``.
    """

def _parse_qcd_replies(
    datagrams: Sequence[_Bytes], /, *, nat_t: bool | None = None
) -> tuple[
    npt.NDArray[np.bool_],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint64],
    npt.NDArray[np.uint32],
    npt.NDArray[np.uint8],
    npt.NDArray[np.uint8],
    npt.NDArray[np.bool_],
    npt.NDArray[np.bool_],
    npt.NDArray[np.bool_],
    npt.NDArray[np.uint32],
    npt.NDArray[np.bool_],
    npt.NDArray[np.uint16],
    npt.NDArray[np.int64],
    npt.NDArray[np.int64],
    npt.NDArray[np.uint8],
]:
    """Batch ``_parse_qcd_reply`` into the columns of ``ikeqcd.wire.QcdReplies`` (same order).

    Releases the GIL for large batches.

    Raises:
        InvalidArgument: not a sequence of bytes-like objects.
    """

def _build_qcd_reply(
    spi_i: int,
    spi_r: int,
    exchange: int,
    flags: int,
    message_id: int,
    tokens: Sequence[_Bytes],
    nat_t: bool,
    /,
) -> bytes:
    """``HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+`` for a request with these header fields.

    Raises:
        InvalidToken: 0 or more than 4 tokens, or one outside 16..128 octets.
        InvalidSpi: an SPI outside 0..2**64-1.
        InvalidArgument: a header field out of range.
    """

def _build_invalid_ike_spi_reply(
    spi_i: int, spi_r: int, exchange: int, flags: int, message_id: int, nat_t: bool, /
) -> bytes:
    """A bare ``HDR, N(INVALID_IKE_SPI)`` reply for a request with these header fields."""

def _build_qcd_notify(token: _Bytes, next_payload: int, /) -> bytes:
    """One N(QCD_TOKEN) payload (Protocol ID 0, SPI Size 0).

    Raises:
        InvalidToken: a token outside 16..128 octets.
    """

def _build_invalid_spi_message(
    child_spi: int,
    tokens: Sequence[_Bytes],
    spi_i: int,
    spi_r: int,
    exchange: int,
    message_id: int,
    nat_t: bool,
    /,
) -> bytes:
    """``HDR, N(INVALID_SPI), N(QCD_TOKEN)*`` (RFC 6290 §8.2).

    Raises:
        InvalidToken: more than 4 tokens or one outside 16..128 octets.
    """

def _build_request(
    spi_i: int,
    spi_r: int,
    exchange: int,
    message_id: int,
    initiator: bool,
    response: bool,
    inner_next: int,
    sk_body: _Bytes,
    nat_t: bool,
    /,
) -> bytes:
    """``HDR, SK{sk_body}`` with ``sk_body`` as opaque octets."""

# --- responder (the native half of ikeqcd.TokenResponder) --------------------------------

@final
class _Responder:
    """Classification and reply building for one TokenMaker (secrets copied in).

    Use :class:`ikeqcd.TokenResponder`, which adds the live check, the policy seam and
    counters. Reason codes are those of :class:`ikeqcd.Reason`.
    """

    def __new__(cls, maker: TokenMaker, /, *, nat_t: bool | None = None) -> _Responder: ...
    @property
    def reply_len(self) -> tuple[int, int]:
        """Octets of one full reply without and with the non-ESP marker."""
    def respond(self, datagram: _Bytes, /) -> tuple[bytes | None, int]:
        """Classify and answer one datagram with no live set: (reply or None, reason)."""
    def classify(self, datagram: _Bytes, /) -> tuple[int, int, int]:
        """(reason, SPI-I, SPI-R); reason 0 means a candidate (SPIs 0 otherwise)."""
    def build(self, datagram: _Bytes, decision: int, /) -> tuple[bytes | None, int]:
        """Build what ``decision`` asks (0 full reply, 10 bare INVALID_IKE_SPI, else none).

        The datagram is classified again: a non-candidate never gets a reply.
        """
    def respond_many(
        self, datagrams: Sequence[_Bytes], /
    ) -> tuple[list[bytes | None], npt.NDArray[np.int8]]:
        """Classify and answer a batch with no live set. Releases the GIL."""
    def classify_many(
        self, datagrams: Sequence[_Bytes], /
    ) -> tuple[npt.NDArray[np.int8], npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """Pass 1: reasons (0 = candidate) and SPIs per datagram. Releases the GIL."""
    def build_many(
        self, datagrams: Sequence[_Bytes], decisions: npt.NDArray[np.int8], /
    ) -> tuple[list[bytes | None], npt.NDArray[np.int8]]:
        """Pass 2: build what each decision asks; returns replies and final reasons."""

def _reason_names() -> list[str]:
    """The reason names in code order (mirrored by :class:`ikeqcd.Reason`)."""
