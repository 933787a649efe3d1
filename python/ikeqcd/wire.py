"""IKEv2 codec for Quick Crash Detection (RFC 6290 §4.1, §4.5, §8.2; RFC 7296 §3).

Parsers and builders for what QCD puts on the wire; the byte work is done by the Rust core,
this module gives it types. Every parser raises only
:class:`ikeqcd.errors.MalformedMessage` (a ``ValueError``) for bad datagrams, with a message
that says where and why; builders raise :class:`ikeqcd.errors.InvalidToken` or
:class:`ikeqcd.errors.InvalidArgument` subclasses for bad arguments.

UDP/4500: every IKE message there is preceded by the four zero octets of the non-ESP marker
(RFC 7296 §2.23), which no Length field counts. Parsers take ``nat_t``: ``False`` for UDP/500,
``True`` for UDP/4500 (anything without the marker is ESP, or a NAT keepalive, and is refused),
``None`` to auto-detect (four leading zero octets are taken as the marker unless only the
unmarked reading has a consistent Length field). Builders take ``nat_t=True`` to prefix the
marker.

Example:
    >>> from ikeqcd import TokenMaker, wire
    >>> req = wire.build_request(0x1122334455667788, 0x99AABBCCDDEEFF00, message_id=5)
    >>> token = TokenMaker(bytes(32)).token(0x1122334455667788, 0x99AABBCCDDEEFF00)
    >>> reply = wire.build_qcd_reply(req, [token])
    >>> len(reply), wire.parse_qcd_reply(reply).tokens == (token,)
    (76, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from ikeqcd import _core
from ikeqcd.errors import InvalidArgument

__all__ = [
    "EXCHANGE_CREATE_CHILD_SA",
    "EXCHANGE_IKE_AUTH",
    "EXCHANGE_IKE_SA_INIT",
    "EXCHANGE_IKE_SESSION_RESUME",
    "EXCHANGE_INFORMATIONAL",
    "FLAG_I",
    "FLAG_R",
    "FLAG_V",
    "HEADER_LEN",
    "LIVENESS_SK_BODY",
    "MAX_PAYLOADS",
    "MAX_REPLY_TOKENS",
    "MAX_TOKEN_LEN",
    "MIN_SK_BODY",
    "MIN_TOKEN_LEN",
    "NON_ESP_MARKER",
    "NOTIFY_COOKIE",
    "NOTIFY_INITIAL_CONTACT",
    "NOTIFY_INVALID_IKE_SPI",
    "NOTIFY_INVALID_MAJOR_VERSION",
    "NOTIFY_INVALID_MESSAGE_ID",
    "NOTIFY_INVALID_SPI",
    "NOTIFY_INVALID_SYNTAX",
    "NOTIFY_QCD_TOKEN",
    "PAYLOAD_AUTH",
    "PAYLOAD_CERT",
    "PAYLOAD_CERTREQ",
    "PAYLOAD_CP",
    "PAYLOAD_DELETE",
    "PAYLOAD_EAP",
    "PAYLOAD_IDI",
    "PAYLOAD_IDR",
    "PAYLOAD_KE",
    "PAYLOAD_NONCE",
    "PAYLOAD_NONE",
    "PAYLOAD_NOTIFY",
    "PAYLOAD_SA",
    "PAYLOAD_SK",
    "PAYLOAD_SKF",
    "PAYLOAD_TSI",
    "PAYLOAD_TSR",
    "PAYLOAD_VENDOR_ID",
    "PROTO_IKE",
    "PROTO_NONE",
    "VERSION",
    "Buffer",
    "IgnoredToken",
    "IkeHeader",
    "IkeMessage",
    "Notify",
    "Payload",
    "QcdReplies",
    "QcdReply",
    "build_invalid_ike_spi_reply",
    "build_invalid_spi_message",
    "build_qcd_notify",
    "build_qcd_reply",
    "build_request",
    "parse_header",
    "parse_message",
    "parse_qcd_replies",
    "parse_qcd_reply",
]

Buffer = bytes | bytearray | memoryview
"""What the parsers and builders accept as octets."""

HEADER_LEN = 28
"""Octets of the IKE header (RFC 7296 §3.1)."""
NON_ESP_MARKER = b"\x00\x00\x00\x00"
"""Precedes every IKE message on UDP/4500 (RFC 7296 §2.23)."""
VERSION = 0x20
"""The version octet IKEv2 sends (major 2, minor 0)."""
MAX_PAYLOADS = 512
"""Most payloads a parsed chain may hold (bounds the work per message)."""
MAX_REPLY_TOKENS = 8
"""Most QCD_TOKENs :func:`parse_qcd_reply` keeps (RFC 6290 §4.5 requires at least 4)."""
MIN_TOKEN_LEN = 16
"""Shortest QCD token (RFC 6290 §5)."""
MAX_TOKEN_LEN = 128
"""Longest QCD token (RFC 6290 §5)."""

FLAG_I = 0x08
"""Header flag: sent by the original initiator of the IKE SA."""
FLAG_V = 0x10
"""Header flag: version (sent 0, ignored on receipt)."""
FLAG_R = 0x20
"""Header flag: the message is a response."""

PAYLOAD_NONE = 0
PAYLOAD_SA = 33
PAYLOAD_KE = 34
PAYLOAD_IDI = 35
PAYLOAD_IDR = 36
PAYLOAD_CERT = 37
PAYLOAD_CERTREQ = 38
PAYLOAD_AUTH = 39
PAYLOAD_NONCE = 40
PAYLOAD_NOTIFY = 41
PAYLOAD_DELETE = 42
PAYLOAD_VENDOR_ID = 43
PAYLOAD_TSI = 44
PAYLOAD_TSR = 45
PAYLOAD_SK = 46
PAYLOAD_CP = 47
PAYLOAD_EAP = 48
PAYLOAD_SKF = 53

EXCHANGE_IKE_SA_INIT = 34
EXCHANGE_IKE_AUTH = 35
EXCHANGE_CREATE_CHILD_SA = 36
EXCHANGE_INFORMATIONAL = 37
EXCHANGE_IKE_SESSION_RESUME = 38

NOTIFY_INVALID_IKE_SPI = 4
NOTIFY_INVALID_MAJOR_VERSION = 5
NOTIFY_INVALID_SYNTAX = 7
NOTIFY_INVALID_MESSAGE_ID = 9
NOTIFY_INVALID_SPI = 11
NOTIFY_INITIAL_CONTACT = 16384
NOTIFY_COOKIE = 16390
NOTIFY_QCD_TOKEN = 16419
"""QCD_TOKEN (IANA name QUICK_CRASH_DETECTION), a status notify."""

PROTO_NONE = 0
"""Notify Protocol ID when no SA is named: what QCD_TOKEN carries (erratum 3449)."""
PROTO_IKE = 1
"""Protocol ID "IKE": what pre-erratum QCD senders put in QCD_TOKEN (accepted, ignored)."""


_MAX_SK_BODY = 65535 - 4


def _nat(nat_t: object, name: str = "nat_t") -> bool | None:
    if nat_t is None:
        return None
    if isinstance(nat_t, (bool, np.bool_)):
        return bool(nat_t)
    raise InvalidArgument(
        f"{name} must be True (UDP/4500), False (UDP/500) or None (auto), got {nat_t!r}"
    )


def _flag(value: object, name: str) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise InvalidArgument(f"{name} must be True or False, got {value!r}")


@dataclass(frozen=True, slots=True)
class IkeHeader:
    """The 28-octet IKE header (RFC 7296 §3.1)."""

    spi_i: int
    """IKE SA Initiator's SPI (the 8 octets read big-endian)."""
    spi_r: int
    """IKE SA Responder's SPI."""
    next_payload: int
    """Type of the first payload."""
    version: int
    """Version octet (major version in the high nibble)."""
    exchange: int
    """Exchange type (``EXCHANGE_*``)."""
    flags: int
    """Flags octet (``FLAG_R``, ``FLAG_V``, ``FLAG_I``)."""
    message_id: int
    """Message ID."""
    length: int
    """Length field: header and payloads, without a non-ESP marker."""

    @property
    def response(self) -> bool:
        """R flag."""
        return bool(self.flags & FLAG_R)

    @property
    def initiator(self) -> bool:
        """I flag."""
        return bool(self.flags & FLAG_I)

    @property
    def major_version(self) -> int:
        """Major version (2 for IKEv2)."""
        return self.version >> 4


@dataclass(frozen=True, slots=True)
class Payload:
    """One outer payload of an IKE message (an SK/SKF payload is one opaque payload)."""

    kind: int
    """Payload type (``PAYLOAD_*``)."""
    next_payload: int
    """Its Next Payload field (for SK/SKF: the type of the first *inner* payload)."""
    critical: bool
    """The critical bit."""
    offset: int
    """Offset of its generic header in the IKE message."""
    body: bytes = field(repr=False)
    """Its content after the 4-octet generic header (left out of ``repr``)."""


@dataclass(frozen=True, slots=True)
class Notify:
    """A decoded Notify payload (RFC 7296 §3.10)."""

    index: int
    """Its index in :attr:`IkeMessage.payloads`."""
    protocol_id: int
    """Protocol ID (0 when no SA is named)."""
    spi: bytes
    """The SPI field (empty for QCD_TOKEN and INVALID_IKE_SPI)."""
    notify_type: int
    """Notify Message Type (``NOTIFY_*``)."""
    data: bytes = field(repr=False)
    """Notification data (left out of ``repr``: a QCD token is secret-derived)."""


@dataclass(frozen=True, slots=True)
class IkeMessage:
    """A parsed IKE message: header, outer payloads, decoded notifies."""

    header: IkeHeader
    payloads: tuple[Payload, ...]
    notifies: tuple[Notify, ...]
    nat_t: bool
    """A non-ESP marker preceded the message."""

    @property
    def encrypted(self) -> bool:
        """The first payload is Encrypted (SK) or an Encrypted Fragment (SKF): protected."""
        return self.header.next_payload in (PAYLOAD_SK, PAYLOAD_SKF)


class IgnoredToken(NamedTuple):
    """A QCD_TOKEN notify that :func:`parse_qcd_reply` did not take."""

    position: int
    """Its position among the message's QCD_TOKEN notifies (0-based)."""
    reason: str
    """Why: a length outside 16..128, an SPI, or over :data:`MAX_REPLY_TOKENS`."""


@dataclass(frozen=True, slots=True)
class QcdReply:
    """What a token taker needs from an unprotected reply (RFC 6290 §4.5, §8.2)."""

    spi_i: int
    spi_r: int
    message_id: int
    exchange: int
    flags: int
    invalid_ike_spi: bool
    """An N(INVALID_IKE_SPI) was present."""
    invalid_spi: bool
    """An N(INVALID_SPI) was present (the §8.2 form)."""
    child_spi: int | None
    """The 4-octet SPI carried by INVALID_SPI, if any."""
    tokens: tuple[bytes, ...] = field(repr=False)
    """Usable QCD tokens (16..128 octets, SPI Size 0) in message order; left out of repr."""
    ignored: tuple[IgnoredToken, ...]
    """QCD_TOKEN notifies that were not taken, and why."""
    nat_t: bool
    """A non-ESP marker preceded the message."""
    encrypted: bool
    """The message also has an SK/SKF payload (tokens inside it are not visible here)."""

    @property
    def response(self) -> bool:
        """R flag."""
        return bool(self.flags & FLAG_R)

    @property
    def initiator(self) -> bool:
        """I flag."""
        return bool(self.flags & FLAG_I)


def _header(t: tuple[int, int, int, int, int, int, int, int]) -> IkeHeader:
    return IkeHeader(*t)


def parse_header(datagram: Buffer, *, nat_t: bool | None = None) -> IkeHeader:
    """Read only the 28-octet header (major version checked, the rest not).

    Raises:
        MalformedMessage: fewer than 28 octets, not IKE on UDP/4500, or not IKEv2.
    """
    h, _ = _core._parse_header(datagram, nat_t=_nat(nat_t))
    return _header(h)


def parse_message(datagram: Buffer, *, nat_t: bool | None = None) -> IkeMessage:
    """Parse an IKE message with every length and bound checked.

    Args:
        datagram: the UDP payload.
        nat_t: ``False`` UDP/500, ``True`` UDP/4500, ``None`` auto-detect.

    Raises:
        MalformedMessage: truncated, a Length field that lies, a payload that runs past the
            end or is shorter than its header, trailing octets, an SK payload that is not
            last, more than :data:`MAX_PAYLOADS` payloads, a Notify whose SPI Size runs past
            its end, a major version other than 2, or ESP on UDP/4500.
    """
    h, marked, payloads, notifies = _core._parse_message(datagram, nat_t=_nat(nat_t))
    return IkeMessage(
        header=_header(h),
        payloads=tuple(Payload(*p) for p in payloads),
        notifies=tuple(Notify(*n) for n in notifies),
        nat_t=marked,
    )


def parse_qcd_reply(datagram: Buffer, *, nat_t: bool | None = None) -> QcdReply:
    """Parse the unprotected reply of a rebooted gateway and take its QCD tokens out.

    The inverse of :func:`build_qcd_reply`: what a token taker calls on a datagram that
    arrived in the clear for one of its SAs (RFC 6290 §4.5, §8.2).

    Args:
        datagram: one whole UDP payload as received: the IKE header and its payloads (on
            UDP/4500 with the four-octet non-ESP marker in front); bytes or any buffer.
            Not a list of payloads: the header's SPIs and Message ID are part of the answer.
        nat_t: ``False`` for UDP/500, ``True`` for UDP/4500, ``None`` to detect the marker
            (see the module docs).

    Returns:
        A :class:`QcdReply`: the SPIs, Message ID, exchange and flags of the header, whether
        ``N(INVALID_IKE_SPI)`` or the §8.2 ``N(INVALID_SPI)`` (with its ``child_spi``) was
        present, the usable ``tokens`` in message order, and the ``ignored`` QCD_TOKEN
        notifies with the reason. Whether the tokens are genuine is for the caller to check
        (:meth:`TokenMaker.verify` or an :class:`SaTable`), in constant time.

    The notifies may come in any order with any other payloads around them (RFC 7296 §2.5);
    unknown notify types are skipped (§3.10.1); the QCD_TOKEN Protocol ID is ignored (0 per
    erratum 3449, 1 from older senders). A message without any token parses too (a plain
    INVALID_IKE_SPI: ``tokens == ()``). Up to :data:`MAX_REPLY_TOKENS` tokens are kept.

    Example:
        >>> req = build_request(0x1111, 0x2222, message_id=7)
        >>> r = parse_qcd_reply(build_qcd_reply(req, [bytes(range(32))]))
        >>> (r.spi_i, r.message_id, r.invalid_ike_spi, len(r.tokens[0]))
        (4369, 7, True, 32)

    Raises:
        MalformedMessage: not an IKEv2 message (as :func:`parse_message`).
    """
    h, marked, inv_ike, inv, inv_data, enc, tokens, ignored = _core._parse_qcd_reply(
        datagram, nat_t=_nat(nat_t)
    )
    child = int.from_bytes(inv_data, "big") if inv_data is not None and len(inv_data) == 4 else None
    return QcdReply(
        spi_i=h[0],
        spi_r=h[1],
        message_id=h[6],
        exchange=h[4],
        flags=h[5],
        invalid_ike_spi=inv_ike,
        invalid_spi=inv,
        child_spi=child,
        tokens=tuple(tokens),
        ignored=tuple(IgnoredToken(i, why) for i, why in ignored),
        nat_t=marked,
        encrypted=enc,
    )


@dataclass(frozen=True, slots=True, eq=False)
class QcdReplies:
    """:func:`parse_qcd_reply` over many datagrams, as columns (row k = datagram k).

    Rows that did not parse have ``ok[k] == False`` and zeros elsewhere. Datagram k's tokens
    are token numbers ``token_index[k]:token_index[k + 1]``; token j is
    ``token_data[token_offsets[j]:token_offsets[j + 1]]`` (see :meth:`tokens`).
    """

    ok: npt.NDArray[np.bool_]
    spi_i: npt.NDArray[np.uint64]
    spi_r: npt.NDArray[np.uint64]
    message_id: npt.NDArray[np.uint32]
    exchange: npt.NDArray[np.uint8]
    flags: npt.NDArray[np.uint8]
    nat_t: npt.NDArray[np.bool_]
    invalid_ike_spi: npt.NDArray[np.bool_]
    invalid_spi: npt.NDArray[np.bool_]
    child_spi: npt.NDArray[np.uint32]
    """INVALID_SPI's 4-octet child SPI, 0 when absent."""
    encrypted: npt.NDArray[np.bool_]
    ignored: npt.NDArray[np.uint16]
    """Number of QCD_TOKEN notifies not taken."""
    token_index: npt.NDArray[np.int64] = field(repr=False)
    token_offsets: npt.NDArray[np.int64] = field(repr=False)
    token_data: npt.NDArray[np.uint8] = field(repr=False)

    def __len__(self) -> int:
        return len(self.ok)

    @property
    def token_count(self) -> npt.NDArray[np.int64]:
        """Number of usable tokens per datagram."""
        return np.diff(self.token_index)

    def tokens(self, k: int) -> tuple[bytes, ...]:
        """The usable tokens of datagram ``k``, in message order."""
        if not -len(self) <= k < len(self):
            raise IndexError(f"datagram index {k} out of range for {len(self)} datagrams")
        k %= len(self)
        lo, hi = int(self.token_index[k]), int(self.token_index[k + 1])
        offs = self.token_offsets
        return tuple(
            self.token_data[int(offs[j]) : int(offs[j + 1])].tobytes() for j in range(lo, hi)
        )


def parse_qcd_replies(datagrams: Sequence[Buffer], *, nat_t: bool | None = None) -> QcdReplies:
    """Batch :func:`parse_qcd_reply`: malformed datagrams are marked (``ok``), not raised.

    Runs in Rust with the GIL released for large batches; ``bytes`` are not copied.

    Raises:
        InvalidArgument: ``datagrams`` is not a sequence of bytes-like objects.
    """
    cols = _core._parse_qcd_replies(datagrams, nat_t=_nat(nat_t))
    return QcdReplies(*cols)


def _request_fields(
    request: Buffer | IkeHeader | IkeMessage, nat_t: bool
) -> tuple[int, int, int, int, int]:
    if isinstance(request, IkeMessage):
        request = request.header
    if isinstance(request, IkeHeader):
        h = request
    else:
        h = _header(_core._parse_header(request, nat_t=nat_t)[0])
    return h.spi_i, h.spi_r, h.exchange, h.flags, h.message_id


def build_qcd_reply(
    request: Buffer | IkeHeader | IkeMessage,
    tokens: Sequence[Buffer],
    *,
    nat_t: bool = False,
) -> bytes:
    """The unprotected reply ``HDR, N(INVALID_IKE_SPI), N(QCD_TOKEN)+`` (RFC 6290 §4.5).

    SPIs, Message ID and Exchange Type are copied from the request; version 0x20; R=1; I is
    the inverse of the request's; every notify has Protocol ID 0 (erratum 3449) and SPI
    Size 0. This builder is mechanical: deciding *whether* to reply is
    :class:`ikeqcd.TokenResponder`'s job.

    Args:
        request: the request datagram (only its header is read), or its parsed header.
        tokens: 1 to 4 tokens of 16..128 octets, current generation first.
        nat_t: UDP/4500: the request datagram starts with the non-ESP marker and the reply
            gets one.

    Raises:
        InvalidToken: no token, more than 4, or one outside 16..128 octets.
        MalformedMessage: ``request`` is bytes that do not start with an IKEv2 header.
    """
    marked = bool(_nat(nat_t))
    a, b, ex, fl, mid = _request_fields(request, marked)
    return _core._build_qcd_reply(a, b, ex, fl, mid, tokens, marked)


def build_invalid_ike_spi_reply(
    request: Buffer | IkeHeader | IkeMessage, *, nat_t: bool = False
) -> bytes:
    """A bare ``HDR, N(INVALID_IKE_SPI)`` reply (RFC 7296 §1.5, §2.21.4): header as in
    :func:`build_qcd_reply`, no notification data, no token.

    Raises:
        MalformedMessage: ``request`` is bytes that do not start with an IKEv2 header.
    """
    marked = bool(_nat(nat_t))
    a, b, ex, fl, mid = _request_fields(request, marked)
    return _core._build_invalid_ike_spi_reply(a, b, ex, fl, mid, marked)


def build_qcd_notify(token: Buffer, *, next_payload: int = PAYLOAD_NONE) -> bytes:
    """The N(QCD_TOKEN) payload a daemon places inside SK of IKE_AUTH, CREATE_CHILD_SA or
    INFORMATIONAL (RFC 6290 §4.1): ``[next][00][8+L][00][00][40 23][token]``.

    Args:
        token: 16..128 octets.
        next_payload: the type of the payload that follows it in the caller's chain.

    Raises:
        InvalidToken: a token outside 16..128 octets.
        InvalidArgument: ``next_payload`` outside 0..255.
    """
    return _core._build_qcd_notify(token, next_payload)


def build_invalid_spi_message(
    child_spi: int,
    tokens: Sequence[Buffer] = (),
    *,
    spi_i: int = 0,
    spi_r: int = 0,
    exchange: int = EXCHANGE_INFORMATIONAL,
    message_id: int = 0,
    nat_t: bool = False,
) -> bytes:
    """The unprotected ``HDR, N(INVALID_SPI), N(QCD_TOKEN)*`` message (RFC 6290 §8.2, RFC 7296
    §1.5): I=1, R=0, INVALID_SPI carrying the 4-octet ESP/AH SPI, then 0..4 tokens. Header
    SPIs may be zero or random; INFORMATIONAL with Message ID 0 is the plausible choice (the
    RFCs leave both open).

    Raises:
        InvalidToken: more than 4 tokens or one outside 16..128 octets.
        InvalidArgument: ``child_spi`` outside 0..2**32-1, a bad header field.
        InvalidSpi: an IKE SPI outside 0..2**64-1.
    """
    return _core._build_invalid_spi_message(
        child_spi, tokens, spi_i, spi_r, exchange, message_id, bool(_nat(nat_t))
    )


MIN_SK_BODY: int = _core.MIN_SK_BODY
"""The shortest SK body a responder accepts as a real protected request: 8-octet IV, Pad
Length and the 8-octet ICV of AES-GCM-8, the smallest IKE transform (SKF: 4 more)."""

LIVENESS_SK_BODY = 25
"""The SK body of an empty INFORMATIONAL under AES-GCM-16: what :func:`build_request` sends
by default."""

_LIVENESS_BODY = bytes(LIVENESS_SK_BODY)


def build_request(
    spi_i: int,
    spi_r: int,
    *,
    exchange: int = EXCHANGE_INFORMATIONAL,
    message_id: int = 0,
    initiator: bool = True,
    response: bool = False,
    inner_next: int = PAYLOAD_NONE,
    sk_body: Buffer | None = None,
    nat_t: bool = False,
) -> bytes:
    """A protected-looking message ``HDR, SK{...}`` whose SK payload carries ``sk_body`` as
    opaque octets (no encryption happens).

    With the defaults it has the size of a real liveness check, an empty INFORMATIONAL
    request (RFC 7296 §1.4, spec case 43) under AES-GCM with a 16-octet ICV: an SK body of
    ``LIVENESS_SK_BODY`` = 25 zero octets (8-octet IV, Pad Length, 16-octet ICV), 57 octets
    in all. A responder refuses SK bodies shorter than ``MIN_SK_BODY`` (17 octets, the
    smallest real transform) as ``Reason.UNPROTECTED``: an empty SK is *not* the shape of a
    liveness check.

    Args:
        spi_i: SPI-I. spi_r: SPI-R.
        exchange: exchange type. message_id: Message ID.
        initiator: set the I flag. response: set the R flag (to build responses for tests).
        inner_next: the SK payload's Next Payload (type of the first inner payload).
        sk_body: IV, ciphertext and ICV as the caller wants them (default: 25 zero octets).
        nat_t: prefix the non-ESP marker.

    Raises:
        InvalidSpi: an SPI outside 0..2**64-1.
        InvalidArgument: a header field out of range, or ``sk_body`` too long for one payload.
    """
    if sk_body is None:
        sk_body = _LIVENESS_BODY
    if isinstance(sk_body, (bytes, bytearray, memoryview)) and len(sk_body) > _MAX_SK_BODY:
        raise InvalidArgument(
            f"sk_body of {len(sk_body)} octets does not fit one SK payload (max {_MAX_SK_BODY})"
        )
    return _core._build_request(
        spi_i,
        spi_r,
        exchange,
        message_id,
        _flag(initiator, "initiator"),
        _flag(response, "response"),
        inner_next,
        sk_body,
        bool(_nat(nat_t)),
    )
