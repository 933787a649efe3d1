"""Really protected IKE messages for the simulator: an SK payload with AES-GCM (RFC 5282).

``HDR, SK{inner payloads}`` where the SK body is IV (8) || ciphertext || ICV (16), the AAD is
the IKE header plus the SK payload's generic header, and the nonce is a 4-octet salt from the
key material plus the IV. Each SA has its own 20-octet key (16-octet AES-128 key + salt); the
IV is the Message ID and a direction octet, unique per key. A gateway that lost the key (a
rebooted one) cannot open or answer these messages, which is the whole point of QCD.

Headers and the SK payload are built by :func:`ikeqcd.wire.build_request` and read back by
:func:`ikeqcd.wire.parse_message`; inner payload chains are read with the same parser.
"""

from __future__ import annotations

import struct

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from ikeqcd import wire
from ikeqcd.errors import MalformedMessage

__all__ = ["KEY_LEN", "Unreadable", "inner_notifies", "open_sealed", "plain_message", "seal"]

KEY_LEN = 20
_IV = 8
_ICV = 16


class Unreadable(Exception):
    """The message could not be authenticated with this key (or is not protected)."""


def seal(
    key: bytes,
    spi_i: int,
    spi_r: int,
    *,
    exchange: int,
    message_id: int,
    initiator: bool,
    response: bool,
    inner_next: int = wire.PAYLOAD_NONE,
    inner: bytes = b"",
    nat_t: bool = False,
) -> bytes:
    """Build and encrypt ``HDR, SK{inner}`` under ``key`` (20 octets)."""
    plaintext = inner + b"\x00"  # no padding, Pad Length 0
    iv = struct.pack(">IxxxB", message_id, 1 if response else 0)
    draft = wire.build_request(
        spi_i,
        spi_r,
        exchange=exchange,
        message_id=message_id,
        initiator=initiator,
        response=response,
        inner_next=inner_next,
        sk_body=bytes(_IV + len(plaintext) + _ICV),
        nat_t=nat_t,
    )
    start = 4 if nat_t else 0
    aad_end = start + wire.HEADER_LEN + 4
    sealed = AESGCM(key[:16]).encrypt(key[16:] + iv, plaintext, draft[start:aad_end])
    return draft[:aad_end] + iv + sealed


def open_sealed(key: bytes, datagram: bytes) -> tuple[wire.IkeHeader, int, bytes]:
    """Authenticate and decrypt ``HDR, SK{...}`` (UDP/500 framing); returns (header, inner
    first payload type, inner payloads).

    Raises:
        Unreadable: wrong key, tampered, no SK payload first, or lengths that do not add up.
        MalformedMessage: not an IKE message at all.
    """
    h = wire.parse_header(datagram, nat_t=False)
    if h.next_payload != wire.PAYLOAD_SK or h.length != len(datagram):
        raise Unreadable("not HDR, SK{...}")
    start = wire.HEADER_LEN
    inner_next, _crit, sk_len = struct.unpack_from(">BBH", datagram, start)
    if start + sk_len != len(datagram):
        raise Unreadable("SK payload length does not match the message")
    aad = datagram[: start + 4]
    body = datagram[start + 4 :]
    if len(body) < _IV + _ICV + 1:
        raise Unreadable("SK payload too short")
    try:
        pt = AESGCM(key[:16]).decrypt(key[16:] + body[:_IV], body[_IV:], aad)
    except InvalidTag as e:
        raise Unreadable("authentication failed") from e
    pad = pt[-1]
    if pad + 1 > len(pt):
        raise Unreadable("bad padding")
    return h, inner_next, pt[: len(pt) - 1 - pad]


def plain_message(
    spi_i: int,
    spi_r: int,
    *,
    exchange: int,
    message_id: int,
    flags: int,
    payloads: list[tuple[int, bytes]],
) -> bytes:
    """An unprotected message ``HDR, payloads`` (IKE_SA_INIT in the simulator)."""
    body = bytearray()
    for i, (_kind, data) in enumerate(payloads):
        nxt = payloads[i + 1][0] if i + 1 < len(payloads) else wire.PAYLOAD_NONE
        body += struct.pack(">BBH", nxt, 0, 4 + len(data)) + data
    first = payloads[0][0] if payloads else wire.PAYLOAD_NONE
    hdr = struct.pack(
        ">QQBBBBII", spi_i, spi_r, first, wire.VERSION, exchange, flags, message_id,
        wire.HEADER_LEN + len(body),
    )
    return hdr + bytes(body)


def inner_notifies(inner_next: int, inner: bytes) -> tuple[wire.Notify, ...]:
    """Decode the notifies of a decrypted inner payload chain with the real parser (by giving
    the chain an IKE header of its own)."""
    hdr = struct.pack(
        ">QQBBBBII", 1, 1, inner_next, wire.VERSION, wire.EXCHANGE_INFORMATIONAL, wire.FLAG_R, 0,
        wire.HEADER_LEN + len(inner),
    )
    try:
        return wire.parse_message(hdr + inner).notifies
    except MalformedMessage as e:
        raise Unreadable(f"inner payloads: {e}") from e
