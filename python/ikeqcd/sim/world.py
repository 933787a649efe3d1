"""Per-tunnel arrays shared by the two gateways' views of the world."""

from __future__ import annotations

import os

import numpy as np
import numpy.typing as npt

from ikeqcd import _protect
from ikeqcd._core import TokenMaker

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
IDX_MASK = 0xFFFF_FFFF

# tunnel states (A's view)
NONE, INIT_SENT, AUTH_SENT, UP, CHECKING, DOWN = range(6)


class World:
    def __init__(self, n: int, rng: np.random.Generator) -> None:
        self.n = n
        self.rng = rng
        self.spi_i = np.zeros(n, np.uint64)
        self.spi_r = np.zeros(n, np.uint64)
        self.state = np.full(n, NONE, np.int8)
        # the SA keys both sides derive from IKE_SA_INIT: a keyed PRF of the SPI pair under a
        # secret of this run (RFC 7296 §2.14 derives them from the SPIs and the exchange), so
        # that no key is kept per tunnel
        self._kdf = TokenMaker(os.urandom(32))
        self.mid = np.zeros(n, np.uint32)  # A's next request Message ID on the current SA
        self.attempt = np.zeros(n, np.int16)
        self.detect_t = np.full(n, np.nan)
        self.back_t = np.full(n, np.nan)
        self.was_up_at_crash = np.zeros(n, bool)
        self.wrong = 0
        self.rebuilds = np.zeros(n, np.int32)
        self._mark = np.zeros(n, np.int32)  # scratch for distinct()
        # remote access: each tunnel's peer address as B sees it (None: all from gateway A)
        self.peer_src: npt.NDArray[np.object_] | None = None

    def spread_peers(self) -> None:
        """Give every tunnel a peer address of its own (10.0.0.0/8, UDP 500)."""
        self.peer_src = np.fromiter(
            ((f"10.{(k + 1) >> 16 & 255}.{(k + 1) >> 8 & 255}.{(k + 1) & 255}", 500) for k in range(self.n)),
            dtype=object, count=self.n,
        )

    def distinct(self, ks: I64) -> bool:
        """Whether no tunnel appears twice in ``ks`` (all < n): O(len), no sort."""
        if len(ks) < 2:
            return True
        pos = np.arange(len(ks), dtype=np.int32)
        self._mark[ks] = pos
        return bool((self._mark[ks] == pos).all())

    def keys(self, spi_i: U64, spi_r: U64) -> npt.NDArray[np.uint8]:
        """The 20-octet SA keys of the SAs ``(spi_i, spi_r)``, one row each."""
        keys: npt.NDArray[np.uint8] = self._kdf.tokens(spi_i, spi_r, threads=1)[:, :_protect.KEY_LEN]
        return keys

    def key(self, spi_i: int, spi_r: int) -> bytes:
        """One SA's key (:meth:`keys`)."""
        return self._kdf.token(spi_i, spi_r)[:_protect.KEY_LEN]

    def new_spi_i(self, ks: npt.NDArray[np.int64]) -> U64:
        hi = self.rng.integers(1, 2**32, len(ks), dtype=np.uint64)
        return (hi << np.uint64(32)) | ks.astype(np.uint64)


def k_of(spi_i: int) -> int:
    return spi_i & IDX_MASK

