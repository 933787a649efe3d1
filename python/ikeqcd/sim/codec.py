"""Batch building, sealing, opening and parsing of the simulator's IKE messages.

Every message of one virtual-time step goes through here as a 2-D ``uint8`` array (one
message per row, as on the wire) instead of one ``bytes`` object at a time: headers are
packed and read with a big-endian numpy record type, SK payloads are sealed and opened with
the core's batch AES-GCM (:func:`ikeqcd._core._aead_seal`, one SA key per row), and the
notifies inside decrypted payloads are read by the real codec in one call
(:func:`ikeqcd.wire.parse_qcd_replies`). The layout is :mod:`ikeqcd._protect`'s (RFC 5282):
``HDR, SK{inner}`` with an 8-octet IV (Message ID, direction octet), Pad Length 0 and a
16-octet ICV; the bytes are identical to what :func:`ikeqcd._protect.seal` produces.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import compress
from operator import itemgetter
from typing import TypeVar

import numpy as np
import numpy.typing as npt

from ikeqcd import _core, wire
from ikeqcd._protect import KEY_LEN

T = TypeVar("T")
U8 = npt.NDArray[np.uint8]
U64 = npt.NDArray[np.uint64]
Wire = list[bytes] | U8
"""A batch of datagrams on the virtual wire: a list of ``bytes``, or the rows of a 2-D
``uint8`` array when they all have one length (as the batch builders make them: no
``bytes`` object per datagram until an API needs one)."""

HEADER = np.dtype(
    [("spi_i", ">u8"), ("spi_r", ">u8"), ("next", "u1"), ("version", "u1"), ("exchange", "u1"),
     ("flags", "u1"), ("message_id", ">u4"), ("length", ">u4")]
)
HLEN = wire.HEADER_LEN  # 28
AAD = HLEN + 4  # header + SK generic header
IV = 8
ICV = 16
SEALED_MIN = AAD + IV + 1 + ICV  # an empty inner chain: 57 octets
SEALED_TAIL = 1 + ICV  # its encrypted Pad Length and the ICV: all that a key changes
NOTIFY_LEN = 40  # generic header, Notify header, 32-octet token
NONCE_LEN = 32
INIT_LEN = HLEN + 4 + NONCE_LEN


def as_list(rows: U8) -> list[bytes]:
    """One ``bytes`` per row (a C loop, for the network and the core's batch entry points)."""
    if not len(rows):
        return []
    return rows.view(f"V{rows.shape[1]}").ravel().tolist()


def listed(datagrams: Wire) -> list[bytes]:
    """The batch as a list of ``bytes``."""
    return as_list(datagrams) if isinstance(datagrams, np.ndarray) else datagrams


def size(datagrams: Wire) -> int:
    """Octets in the batch."""
    return int(datagrams.size) if isinstance(datagrams, np.ndarray) else sum(map(len, datagrams))


def keep(datagrams: Wire, mask: npt.NDArray[np.bool_]) -> Wire:
    """The datagrams where ``mask`` is True (same representation)."""
    if isinstance(datagrams, np.ndarray):
        kept: U8 = datagrams[mask]
        return kept
    return list(compress(datagrams, mask.tolist()))


def pick_wire(datagrams: Wire, idx: npt.NDArray[np.intp]) -> list[bytes]:
    """Datagrams ``idx`` as ``bytes`` (for the library's list entry points)."""
    if isinstance(datagrams, np.ndarray):
        return as_list(datagrams[idx])
    return pick(datagrams, idx)


def pick(items: Sequence[T], idx: npt.NDArray[np.intp]) -> list[T]:
    """``[items[i] for i in idx]`` without a Python loop."""
    if len(idx) == 0:
        return []
    if len(idx) == 1:
        return [items[int(idx[0])]]
    return list(itemgetter(*idx.tolist())(items))


def gather(datagrams: Wire, idx: npt.NDArray[np.intp], length: int) -> U8:
    """Datagrams ``idx`` (each ``length`` octets long) as the rows of one array."""
    if isinstance(datagrams, np.ndarray):
        rows: U8 = datagrams[idx]
        return rows
    if not len(idx):
        return np.zeros((0, length), np.uint8)
    picked = itemgetter(*idx.tolist())(datagrams) if len(idx) > 1 else (datagrams[int(idx[0])],)
    return np.frombuffer(b"".join(picked), np.uint8).reshape(len(idx), length)


@dataclass
class Headers:
    """The 28-octet headers of a batch; ``fast[k]`` says datagram k is a plain UDP/500 IKEv2
    message the batch path takes (the rest go through the one-by-one path)."""

    fast: npt.NDArray[np.bool_]
    length: npt.NDArray[np.int64]  # of the datagram
    spi_i: U64
    spi_r: U64
    next: U8
    exchange: U8
    flags: U8
    message_id: npt.NDArray[np.uint32]
    hlength: npt.NDArray[np.uint32]  # the header's Length field


def headers(datagrams: Wire) -> Headers:
    n = len(datagrams)
    if isinstance(datagrams, np.ndarray):
        length = np.full(n, datagrams.shape[1], np.int64)
    else:
        length = np.fromiter(map(len, datagrams), np.int64, n)
    ok = length >= HLEN
    heads = np.zeros(n, HEADER)
    if n == 0:
        pass
    elif isinstance(datagrams, np.ndarray) and ok.all():
        heads = datagrams[:, :HLEN].copy().view(HEADER).ravel()
    elif ok.all() and (length == length[0]).all():  # one shape: a reshape, no index
        flat = np.frombuffer(b"".join(datagrams), np.uint8)
        heads = flat.reshape(n, int(length[0]))[:, :HLEN].copy().view(HEADER).ravel()
    elif ok.all():
        flat = np.frombuffer(b"".join(datagrams), np.uint8)
        starts = np.concatenate(([0], np.cumsum(length)[:-1]))
        heads = flat[starts[:, None] + np.arange(HLEN)].view(HEADER).ravel()
    elif ok.any():
        idx = np.flatnonzero(ok)
        getter = itemgetter(*idx.tolist())
        picked = getter(datagrams) if len(idx) > 1 else (datagrams[int(idx[0])],)
        heads[idx] = np.frombuffer(b"".join(d[:HLEN] for d in picked), np.uint8).view(HEADER)
    spi_i = heads["spi_i"].astype(np.uint64)
    fast = ok & ((spi_i >> np.uint64(32)) != 0) & ((heads["version"] >> 4) == 2)
    return Headers(
        fast, length, spi_i, heads["spi_r"].astype(np.uint64), heads["next"].astype(np.uint8),
        heads["exchange"].astype(np.uint8), heads["flags"].astype(np.uint8),
        heads["message_id"].astype(np.uint32), heads["length"].astype(np.uint32),
    )


def header_rows(
    spi_i: U64, spi_r: U64, *, next_payload: int, exchange: int, flags: int,
    message_id: npt.ArrayLike, length: int,
) -> U8:
    h = np.zeros(len(spi_i), HEADER)
    h["spi_i"], h["spi_r"], h["next"], h["version"] = spi_i, spi_r, next_payload, wire.VERSION
    h["exchange"], h["flags"], h["message_id"], h["length"] = exchange, flags, message_id, length
    return h.view(np.uint8).reshape(len(spi_i), HLEN)


def plain_init(spi_i: U64, spi_r: U64, *, response: bool, nonces: U8 | None = None) -> U8:
    """IKE_SA_INIT ``HDR, Ni/Nr`` with a 32-octet nonce each (what
    :func:`ikeqcd._protect.plain_message` builds): row k of ``nonces``, or fresh ones."""
    n = len(spi_i)
    out = np.empty((n, INIT_LEN), np.uint8)
    out[:, :HLEN] = header_rows(
        spi_i, spi_r, next_payload=wire.PAYLOAD_NONCE, exchange=wire.EXCHANGE_IKE_SA_INIT,
        flags=wire.FLAG_R if response else wire.FLAG_I, message_id=0, length=INIT_LEN,
    )
    out[:, HLEN:HLEN + 4] = (0, 0, 0, 4 + NONCE_LEN)
    out[:, HLEN + 4:] = filler(n, NONCE_LEN) if nonces is None else nonces
    return out


def qcd_notifies(tokens: U8) -> U8:
    """Inner chains ``N(QCD_TOKEN)`` (what :func:`ikeqcd.wire.build_qcd_notify` builds)."""
    n = len(tokens)
    out = np.empty((n, NOTIFY_LEN), np.uint8)
    out[:, :8] = np.frombuffer(wire.build_qcd_notify(bytes(32))[:8], np.uint8)
    out[:, 8:] = tokens
    return out


def seal(
    keys: U8, spi_i: U64, spi_r: U64, *, exchange: int, message_id: npt.ArrayLike,
    initiator: bool, response: bool, inner_next: int = wire.PAYLOAD_NONE, inner: U8 | None = None,
) -> U8:
    """``HDR, SK{inner}`` per row, encrypted under row k of ``keys`` (``_protect.seal``)."""
    out = frame(spi_i, spi_r, exchange=exchange, message_id=message_id, initiator=initiator,
                response=response, inner_next=inner_next, inner=inner)
    return _core._aead_seal(np.ascontiguousarray(keys), out, AAD, threads=1) if len(out) else out


def frame(
    spi_i: U64, spi_r: U64, *, exchange: int, message_id: npt.ArrayLike, initiator: bool,
    response: bool, inner_next: int = wire.PAYLOAD_NONE, inner: U8 | None = None,
) -> U8:
    """What :func:`seal` encrypts: the clear octets of ``HDR, SK{inner}`` (header, SK header,
    IV) with the plaintext after them. Of an empty inner chain only the last 17 octets
    (Pad Length and ICV, :data:`SEALED_TAIL`) differ once sealed."""
    n = len(spi_i)
    li = 0 if inner is None else inner.shape[1]
    length = SEALED_MIN + li
    flags = (wire.FLAG_I if initiator else 0) | (wire.FLAG_R if response else 0)
    out = np.zeros((n, length), np.uint8)
    out[:, :HLEN] = header_rows(spi_i, spi_r, next_payload=wire.PAYLOAD_SK, exchange=exchange,
                                flags=flags, message_id=message_id, length=length)
    out[:, HLEN] = inner_next
    out[:, HLEN + 2:AAD] = np.frombuffer((length - HLEN).to_bytes(2, "big"), np.uint8)
    mid = np.broadcast_to(np.asarray(message_id, np.uint32), (n,)).astype(">u4")
    out[:, AAD:AAD + 4] = mid.view(np.uint8).reshape(n, 4)
    out[:, AAD + 7] = 1 if response else 0
    if inner is not None:
        out[:, AAD + IV:AAD + IV + li] = inner
    return out


def open_sealed(keys: U8, rows: U8) -> tuple[npt.NDArray[np.bool_], U8, U8]:
    """Authenticate and decrypt rows of one length: (readable, inner first payload type,
    inner chains). Unreadable as :func:`ikeqcd._protect.open_sealed`: not ``HDR, SK`` with
    lengths that add up, a wrong key or tampering, or padding (the simulator never pads)."""
    n, length = rows.shape
    if length < SEALED_MIN or not n:
        return np.zeros(n, bool), np.zeros(n, np.uint8), np.zeros((n, 0), np.uint8)
    h = rows[:, :HLEN].copy().view(HEADER).ravel()
    sk_len = rows[:, HLEN + 2].astype(np.int64) << 8 | rows[:, HLEN + 3]
    shape_ok = (h["next"] == wire.PAYLOAD_SK) & (h["length"] == length) & (sk_len == length - HLEN)
    opened, ok = _core._aead_open(np.ascontiguousarray(keys), np.ascontiguousarray(rows), AAD, threads=1)
    ok &= shape_ok & (opened[:, length - ICV - 1] == 0)
    return ok, rows[:, HLEN].copy(), opened[:, AAD + IV:length - ICV - 1]


def tokens_in(inner_next: U8, inner: U8) -> tuple[npt.NDArray[np.bool_], U8]:
    """The first QCD_TOKEN of each decrypted inner chain, read by the real codec (each chain
    gets an IKE header of its own, as :func:`ikeqcd._protect.inner_notifies` does):
    (has a token, tokens)."""
    n, li = inner.shape
    if not n or li == 0:
        return np.zeros(n, bool), np.zeros((n, 32), np.uint8)
    msgs = np.empty((n, HLEN + li), np.uint8)
    one = np.ones(n, np.uint64)
    msgs[:, :HLEN] = header_rows(one, one, next_payload=0, exchange=wire.EXCHANGE_INFORMATIONAL,
                                 flags=wire.FLAG_R, message_id=0, length=HLEN + li)
    msgs[:, HLEN - 12] = inner_next  # the header's Next Payload octet
    msgs[:, HLEN:] = inner
    rep = wire.parse_qcd_replies(as_list(msgs), nat_t=False)
    has = rep.ok & (rep.token_index[1:] > rep.token_index[:-1])
    toks = np.zeros((n, 32), np.uint8)
    first = rep.token_offsets[rep.token_index[:-1][has]]
    lens = rep.token_offsets[rep.token_index[:-1][has] + 1] - first
    good = lens == 32
    sel = np.flatnonzero(has)[good]
    toks[sel] = rep.token_data[first[good][:, None] + np.arange(32)]
    has[np.flatnonzero(has)[~good]] = False
    return has, toks


_FILLER = np.random.default_rng(np.frombuffer(os.urandom(32), np.uint64))


def filler(n: int, width: int) -> U8:
    """``n`` rows of ``width`` unpredictable octets that need not be secret (nonces, the
    placeholder token of a peer that sent none): a PCG64 stream seeded from the OS once,
    apart from the scenario's generator (results never depend on these octets)."""
    return _FILLER.integers(0, 256, (n, width), dtype=np.uint8)


def new_keys(n: int) -> U8:
    """Fresh 20-octet SA keys (what both sides derive from IKE_SA_INIT)."""
    return np.frombuffer(os.urandom(n * KEY_LEN), np.uint8).reshape(n, KEY_LEN)
