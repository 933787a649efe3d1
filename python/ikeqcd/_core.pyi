"""Type stub for the native module ``ikeqcd._core`` (hand-written; the contract).

Users import these names from :mod:`ikeqcd`, never from ``ikeqcd._core``.
"""

from collections.abc import Sequence
from ipaddress import IPv4Address, IPv6Address
from typing import Any, Protocol, TypeAlias, final

import numpy as np
import numpy.typing as npt

from ikeqcd.table import TokenCheck

__version__: str
build_profile: str
DETACH_THRESHOLD: int
PAR_THRESHOLD: int
MIN_SK_BODY: int
MAX_AMPLIFICATION: int

def _source_key(octets: bytes, /) -> int:
    """Rate-limit key of a source address given as 4 or 16 raw octets (rust/srckey.rs)."""

_Bytes: TypeAlias = bytes | bytearray | memoryview
_Address: TypeAlias = IPv4Address | IPv6Address | bytes | None

class _SupportsContainsMany(Protocol):
    def contains_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], /
    ) -> npt.NDArray[np.bool_]: ...

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
        calling thread, k = k threads (at most 256).

        Raises:
            InvalidArray: not 1-D C-contiguous uint64 arrays of equal length.
            InvalidGeneration: no such generation (negative or too large).
            InvalidArgument: ``threads`` outside 0..256.
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

def kernel_info() -> dict[str, Any]:
    """The SHA-256 batch kernel in use (chosen per CPU at first use, or by ``IKEQCD_KERNEL``):
    ``kernel`` ("sha-ni x4", "avx2 x8", "sha2", "portable"), ``width``, ``source``, ``note``,
    ``sha_ni``, ``avx2`` and ``calibration`` (kernel name -> tokens/s measured when it was chosen)."""

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
        """Take one token for ``key`` at time ``now`` (seconds); True if allowed.

        Raises:
            InvalidArgument: ``key`` outside 0..2**64-1.
        """
    def allow_many(self, keys: npt.NDArray[np.uint64], now: float, /) -> npt.NDArray[np.bool_]:
        """:meth:`allow` for each key in order, all at time ``now``."""
    @property
    def counts(self) -> tuple[int, int]:
        """(allowed, refused) so far."""
    def __len__(self) -> int: ...
# --- wire (IKEv2 codec); the typed public API is ikeqcd.wire -------------------------------

_HeaderTuple: TypeAlias = tuple[int, int, int, int, int, int, int, int]

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

@final
class _PairMap:
    """SPI pair -> int (0..2**63-1): the token taker's per-SA bookkeeping (private).

    Keyed hashing (SPIs are attacker-chosen); batch calls take ``uint64`` arrays of equal
    length and release the GIL for large batches. Memory is given back when the map falls
    to a quarter of its capacity.
    """

    def __init__(self) -> None: ...
    def __len__(self) -> int: ...
    def __bool__(self) -> bool: ...
    def get(self, spi_i: int, spi_r: int, /) -> int | None:
        """The pair's value, or None."""
    def set(self, spi_i: int, spi_r: int, value: int, /) -> None:
        """Set the pair's value (0..2**63-1, else InvalidArgument)."""
    def pop(self, spi_i: int, spi_r: int, /) -> int | None:
        """Remove the pair; its value, or None."""
    def set_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64],
        values: npt.NDArray[np.uint64], /,
    ) -> None:
        """Set each pair's value, in order (nothing is written if a value is out of range)."""
    def get_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], /
    ) -> npt.NDArray[np.int64]:
        """Each pair's value, -1 where absent."""
    def pop_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], /
    ) -> npt.NDArray[np.int64]:
        """Remove each pair, in order: the value removed, -1 where there was none."""
    def pop_matching(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64],
        values: npt.NDArray[np.uint64], /,
    ) -> npt.NDArray[np.bool_]:
        """Remove each pair whose value equals ``values[k]``, in order; which ones were."""
    def clear(self) -> None:
        """Remove every entry and give the memory back."""
    def memory_bytes(self) -> int:
        """Heap bytes held (an estimate)."""

@final
class SaTable:
    """The token taker's SA table (RFC 6290 §3, §5, §5.3): per IKE SA, keyed by
    ``(spi_i, spi_r)``, the peer's QCD token(s) and the last inbound and outbound traffic times.

    Tokens are 16..128 octets and may differ in length between SAs. Inserting for an existing
    SA replaces its token (a protected gratuitous token, T-2); with ``history > 1`` the replaced
    tokens stay valid as older ones (T-9), newest first. Removed tokens are zeroed (T-12, T-13).
    The index hashes the SPI pair with SipHash-1-3 under a random key per table, so SPIs chosen
    by a peer cannot pile up in one probe sequence.

    Times are float seconds on the caller's clock (``time.monotonic()`` by default), kept to
    the millisecond relative to the first time the table saw. A new SA counts its insertion
    time as its last inbound and last outbound time; replacing its token keeps its times.
    Times never move backwards: an older ``now`` leaves a newer stored time in place.

    Safe to share between threads: readers run in parallel, writers exclusively; batch calls
    (and any call that has to wait for the lock) release the GIL. Input arrays are copied
    before the GIL is released.

    Args:
        history: tokens kept per SA, 1..4 (the newest plus up to 3 older ones).
        capacity: SAs to reserve room for in the index (it grows as needed anyway).

    Raises:
        InvalidArgument: history outside 1..4, or a negative capacity.
        CapacityError: capacity above 16,777,215 SAs (the most a table holds).
    """

    def __new__(cls, *, history: int = 1, capacity: int = 0) -> SaTable: ...
    @property
    def history(self) -> int:
        """Tokens kept per SA (1..4)."""
    def __len__(self) -> int:
        """Number of SAs."""
    def __contains__(self, key: object, /) -> bool:
        """``(spi_i, spi_r) in table``.

        Raises:
            InvalidSpi: the key is not a 2-tuple of ints in 0..2**64-1.
        """
    def insert(
        self, spi_i: int, spi_r: int, token: _Bytes, /, *, now: float | None = None
    ) -> bool:
        """Store the peer's token for an SA, or replace it; True if the SA is new.

        Args:
            now: the insertion time in seconds (default ``time.monotonic()``); used only for a
                new SA.

        Raises:
            InvalidSpi: an SPI outside 0..2**64-1.
            InvalidToken: token not bytes-like, or not 16..128 octets.
            InvalidArgument: ``now`` not finite.
            CapacityError: the table already holds 16,777,215 SAs.
        """
    def remove(self, spi_i: int, spi_r: int, /) -> bool:
        """Delete an SA and zero its tokens; False if there was none."""
    def contains(self, spi_i: int, spi_r: int, /) -> bool:
        """Is there an SA with these SPIs? Same as ``(spi_i, spi_r) in table``."""
    def check(
        self, spi_i: int, spi_r: int, tokens: _Bytes | Sequence[_Bytes], /
    ) -> TokenCheck:
        """Compare received tokens with the SA's stored ones (RFC 6290 §4.5, §5).

        Every received token is compared with every stored token in constant time (only the
        lengths, which are public, exit early).

        Args:
            tokens: the received tokens, 1..16 of them (one bytes object counts as one).

        Returns:
            ``NO_SA`` if there is no such SA, ``MATCH`` if any received token equals any stored
            one, else ``MISMATCH``.

        Raises:
            InvalidToken: no tokens, more than 16, or one not bytes-like or not 16..128 octets.
        """
    def insert_many(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        tokens: npt.NDArray[np.uint8],
        /,
        *,
        now: float | None = None,
    ) -> int:
        """Batch :meth:`insert`: row k of ``tokens`` (shape ``(n, 16..128)``) for pair k.

        Rows are applied in order, so a later row for the same SA replaces an earlier one. All
        checks happen before any change. Releases the GIL.

        Returns:
            How many SAs were new.

        Raises:
            InvalidArray: not 1-D C-contiguous uint64 SPI arrays of equal length, or tokens not
                a C-contiguous 2-D uint8 array with one row per pair.
            InvalidToken: rows not 16..128 octets.
            CapacityError: the new SAs would not fit (nothing is inserted).
        """
    def remove_many(
        self, spi_i: npt.NDArray[np.uint64], spi_r: npt.NDArray[np.uint64], /
    ) -> npt.NDArray[np.bool_]:
        """Batch :meth:`remove`: True where the pair was there. Releases the GIL."""
    def contains_many(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        /,
        *,
        threads: int = 0,
    ) -> npt.NDArray[np.bool_]:
        """Batch membership. Releases the GIL.

        ``threads``: 0 = all cores (or ``RAYON_NUM_THREADS``), 1 = the calling thread, k = k
        (at most 256).

        Raises:
            InvalidArray: not 1-D C-contiguous uint64 arrays of equal length.
            InvalidArgument: ``threads`` outside 0..256.
        """
    def check_many(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        tokens: npt.NDArray[np.uint8],
        /,
        *,
        threads: int = 0,
    ) -> npt.NDArray[np.int8]:
        """Batch :meth:`check` with one received token per pair: row k of ``tokens`` (shape
        ``(n, 16..128)``) against pair k. Releases the GIL.

        Returns:
            An int8 array of :class:`TokenCheck` codes (0 no SA, 1 mismatch, 2 match).

        Raises:
            InvalidArray: wrong dtype, shape or contiguity, or unequal lengths.
            InvalidToken: rows not 16..128 octets.
        """
    def touch(self, spi_i: int, spi_r: int, now: float, /, *, inbound: bool) -> bool:
        """Record inbound (``inbound=True``) or outbound traffic for one SA at ``now``.

        Returns:
            False if there is no such SA.

        Raises:
            InvalidArgument: ``now`` not finite.
        """
    def touch_many(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        now: float,
        /,
        *,
        inbound: bool,
    ) -> int:
        """Batch :meth:`touch`; returns how many SAs were found. Releases the GIL."""
    def due_liveness(
        self, now: float, /, *, idle: float
    ) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """The SAs due for a liveness check at ``now`` (seed issue 200).

        An SA is due when its last outbound activity is newer than its last inbound one
        (to the millisecond) and nothing came in for at least ``idle`` seconds:
        ``last_out > last_in and now - last_in >= idle``. An SA that never saw traffic in a
        direction counts its insertion time there, so a new SA is not due until it sends.

        Returns:
            ``(spi_i, spi_r)`` arrays, in no particular order.

        Raises:
            InvalidArgument: ``now`` not finite, or ``idle`` negative or not finite.
        """
    def due_many(
        self,
        spi_i: npt.NDArray[np.uint64],
        spi_r: npt.NDArray[np.uint64],
        now: float,
        /,
        *,
        idle: float,
    ) -> npt.NDArray[np.bool_]:
        """:meth:`due_liveness` asked of given SAs: element k is True when pair k is in the
        table and due at ``now``. One lookup per pair rather than a walk of the whole table,
        for a gateway that keeps its own timers. Releases the GIL for large batches.

        Raises:
            InvalidArray: arrays of different lengths.
            InvalidArgument: ``now`` or ``idle`` not usable (as :meth:`due_liveness`).
        """
    def timestamps(self, spi_i: int, spi_r: int, /) -> tuple[float, float] | None:
        """``(last_in, last_out)`` of an SA in seconds (millisecond resolution), or None."""
    def memory_bytes(self) -> int:
        """Bytes held by the table: the index's whole capacity and every record page.

        About 73 per SA at 10**6 SAs with 32-octet tokens and ``history=1``: a 20-octet
        index slot at 7/10 load or less, and a 44-octet record (two 32-bit millisecond times,
        four length octets, the token). Records freed by removals are reused, not compacted.
        """
    def clear(self) -> None:
        """Remove every SA, zero every token and give the memory back."""
    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        """Everything in the table, for inspection and tests, in no particular order.

        Returns:
            ``spi_i``, ``spi_r`` (uint64, ``(n,)``); ``last_in``, ``last_out`` (float64
            seconds, ``(n,)``); ``token_len`` (uint8, ``(n, history)``, 0 = no token there);
            ``tokens`` (uint8, ``(n, history, width)``, zero-padded to the longest stored
            token): ``tokens[k, j, :token_len[k, j]]`` is token ``j`` (0 = newest) of SA ``k``.
        """
    def _probe_lengths(self) -> tuple[float, int]:
        """``(mean, longest)`` slots read by a successful lookup (test hook)."""

@final
class _MakerGate:
    """The maker's reply policy on the hot path (built by ``TokenResponder`` from a
    ``MakerPolicy``): switch, answering window, per-source and global token buckets, fallback."""

    def __new__(
        cls,
        *,
        enabled: bool,
        per_source_rate: float,
        per_source_burst: float,
        global_rate: float,
        global_burst: float,
        bare_rate: float,
        fallback: str,
        window_end: float | None,
        max_sources: int,
    ) -> _MakerGate: ...
    def decide_many(
        self, reasons: npt.NDArray[np.int8], keys: npt.NDArray[np.uint64], now: float, /
    ) -> None:
        """Decide every REPLIED entry of ``reasons`` in place, for sources ``keys``."""
    @property
    def sources_tracked(self) -> int:
        """Per-source buckets currently held."""

@final
class _UdpServer:
    """A rebooted gateway on one UDP socket (batch I/O with ``recvmmsg``/``sendmmsg``, Linux
    only). Use :class:`ikeqcd.net.Server`.

    Args:
        listen: ``"HOST:PORT"``; port 0 picks a free port.
        maker: the token maker (its secrets are copied).
        nat_t: UDP/4500 framing (non-ESP marker required; ESP is counted and ignored).
        gso: use UDP GSO/GRO where the kernel has it (runs of requests received as one
            buffer, runs of equal-sized replies to one source sent as one segmented send).
        gate: the reply policy; ``None`` answers every candidate with tokens.
        live: live SAs, never answered with a token, asked once per round (a received
            batch and what was already queued behind it) with every candidate of the round:
            an :class:`SaTable` (read-locked, no GIL), or an object with
            ``contains_many(spi_i, spi_r) -> bool array`` such as
            ``ikeqcd.cluster.LiveSaStore`` (the GIL is taken once per round). When the
            object raises or answers with the wrong shape, every candidate of the round is
            ``CLUSTER_UNAVAILABLE`` and gets nothing (fail closed).
        xfrm_bypass: set per-socket IPsec bypass policies (``IP_XFRM_POLICY`` /
            ``IPV6_XFRM_POLICY``, ALLOW in and out) so that leftover XFRM policies do not
            swallow the socket's datagrams; a refusal (EPERM without ``CAP_NET_ADMIN``) is
            kept in :attr:`xfrm_bypass_error`, never raised.

    Raises:
        InvalidArgument: ``listen`` is not a usable address.
        NetworkError: the socket cannot be bound (or the platform is not Linux).
    """

    def __new__(
        cls,
        listen: str,
        maker: TokenMaker,
        /,
        *,
        nat_t: bool = False,
        gso: bool = True,
        gate: _MakerGate | None = None,
        live: SaTable | _SupportsContainsMany | None = None,
        xfrm_bypass: bool = False,
    ) -> _UdpServer: ...
    @property
    def address(self) -> tuple[str, int]:
        """The bound (host, port)."""
    @property
    def xfrm_bypass(self) -> bool:
        """Whether the per-socket XFRM bypass policies are set (asked for and permitted)."""
    @property
    def xfrm_bypass_error(self) -> str | None:
        """Why the bypass asked for could not be set (``None``: set, or not asked for)."""
    @property
    def gso(self) -> bool:
        """Whether UDP GSO/GRO is in use (asked for, available, never refused)."""
    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
    def run(self, now: float, seconds: float, /) -> bool:
        """Serve for up to ``seconds`` (GIL released); ``now`` is the policy clock at the call.

        Returns:
            Whether the server is stopped.
        """
    def stop(self) -> None:
        """Make a running (or the next) :meth:`run` return at once; from any thread."""
    def counters(self) -> dict[str, int]:
        """Datagrams per reason name, and ``datagrams_in``, ``bytes_in``, ``datagrams_out``,
        ``bytes_out``, ``send_errors``, ``recv_errors``, ``batches``."""
    def batch_times(self) -> tuple[list[float], list[int], float]:
        """Time to answer each received batch: (upper bounds in seconds, counts per bucket,
        not cumulative, with one more bucket above the largest bound, sum in seconds)."""

@final
class _LoadDriver:
    """The load driver (paced requests for random SPI pairs, every reply checked). Use
    :func:`ikeqcd.net.load`.

    Raises:
        InvalidArgument: impossible options or an unusable address.
        NetworkError: the socket cannot be made (or the platform is not Linux).
    """

    def __new__(
        cls,
        target: str,
        /,
        *,
        rate: float,
        sas: int = 1000,
        seed: int = 0,
        nat_t: bool = False,
        maker: TokenMaker | None = None,
        body_len: int = 32,
        window: int = 262144,
        timeout: float = 1.0,
        gso: bool = True,
        recv_thread: bool = False,
    ) -> _LoadDriver: ...
    @property
    def target(self) -> tuple[str, int]:
        """The target (host, port)."""
    @property
    def gso(self) -> bool:
        """Whether UDP GSO/GRO is in use (asked for, available, never refused)."""
    def run(self, until: float, send_for: float, /) -> None:
        """Send while under ``send_for`` seconds since the first call and check replies until
        ``until`` seconds (GIL released)."""
    def drain(self, max: float, /) -> None:
        """Receive until nothing is in flight or ``max`` seconds pass (GIL released)."""
    def stop(self) -> None:
        """Make a running :meth:`run` or :meth:`drain` return at once."""
    def latency_buckets(self) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
        """The latency distribution so far: (bucket middles in ns, counts), non-empty
        buckets of the log-linear histogram only."""
    def report(self) -> dict[str, float]:
        """Counts (sent, answered, valid, bare, bad_token, mismatched, malformed, unmatched,
        late, lost, send_errors, recv_errors, in_flight), ``elapsed`` and ``send_span``
        seconds, and latency quantiles in microseconds (p50_us, p90_us, p99_us, p999_us,
        max_us)."""

def _load_spis(
    sas: int, seed: int, /
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.uint64]]:
    """The (SPI-I, SPI-R) pairs a load run with ``sas`` pairs and ``seed`` draws from.

    Raises:
        InvalidArgument: ``sas`` outside 1..2**32-1.
        CapacityError: that many pairs do not fit in memory.
    """

# --- batch AES-128-GCM for the simulator's protected messages (rust/aead.rs) ----------------

def _aead_seal(
    keys: npt.NDArray[np.uint8], rows: npt.NDArray[np.uint8], aad_len: int, /, *, threads: int = 0
) -> npt.NDArray[np.uint8]:
    """Seal row k of ``rows`` (``aad_len`` octets of AAD, an 8-octet IV, the plaintext and 16
    octets for the ICV) under row k of ``keys`` (16-octet AES key + 4-octet salt, shape
    ``(n, 20)``); returns the sealed rows. Releases the GIL.

    Raises:
        InvalidArray: not C-contiguous 2-D uint8 arrays, keys not ``(n, 20)``, or rows too
            short for AAD, IV and ICV.
    """

def _aead_open(
    keys: npt.NDArray[np.uint8], rows: npt.NDArray[np.uint8], aad_len: int, /, *, threads: int = 0
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.bool_]]:
    """Authenticate and decrypt each row under its key: (rows with the plaintext in place,
    whether each row authenticated). Rows that fail are returned as they were."""
