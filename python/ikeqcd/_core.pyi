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
