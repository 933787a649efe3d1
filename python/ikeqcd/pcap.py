"""A small pcap writer: UDP datagrams wrapped in Ethernet/IPv4 (or IPv6)/UDP.

The file is classic libpcap format (microsecond timestamps, LINKTYPE_ETHERNET), which
Wireshark, tshark, tcpdump and scapy all read. UDP/500 and UDP/4500 payloads are decoded by
Wireshark as ISAKMP (IKEv2), including the notifies; on 4500 the non-ESP marker is
recognised. IP header checksums and UDP checksums are filled in.

Example:
    >>> import tempfile, pathlib
    >>> from ikeqcd import pcap, wire
    >>> req = wire.build_request(0x1122334455667788, 0x99AABBCCDDEEFF00)
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "qcd.pcap"
    >>> pcap.write_pcap(path, [(0.0, "192.0.2.1", 500, "192.0.2.2", 500, req)])
    1
"""

from __future__ import annotations

import ipaddress
import os
import struct
from collections.abc import Iterable
from typing import NamedTuple

from ikeqcd.errors import InvalidAddress, InvalidArgument

__all__ = ["PcapPacket", "write_pcap", "LINKTYPE_ETHERNET"]

LINKTYPE_ETHERNET = 1
_MAGIC_US = 0xA1B2C3D4
_SNAPLEN = 65535
_SRC_MAC = bytes.fromhex("020000000001")
_DST_MAC = bytes.fromhex("020000000002")
_MAX_UDP_PAYLOAD_V4 = 65535 - 20 - 8
_MAX_UDP_PAYLOAD_V6 = 65535 - 8


class PcapPacket(NamedTuple):
    """One UDP datagram to record."""

    timestamp: float
    """Seconds since the epoch (any float >= 0; stored with microsecond resolution)."""
    src: str
    """Source IP address (IPv4 or IPv6 text)."""
    sport: int
    """Source UDP port."""
    dst: str
    """Destination IP address (same family as ``src``)."""
    dport: int
    """Destination UDP port."""
    payload: bytes
    """The UDP payload (for IKE on 4500: including the non-ESP marker)."""


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _port(value: object, name: str, k: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise InvalidArgument(f"packet {k}: {name} must be an int in 0..65535, got {value!r}")
    return value


def _frame(k: int, p: PcapPacket) -> bytes:
    try:
        src = ipaddress.ip_address(p.src)
        dst = ipaddress.ip_address(p.dst)
    except ValueError as e:
        raise InvalidAddress(f"packet {k}: {e}") from None
    if src.version != dst.version:
        raise InvalidAddress(f"packet {k}: src {src} and dst {dst} are different IP versions")
    sport, dport = _port(p.sport, "sport", k), _port(p.dport, "dport", k)
    payload = bytes(p.payload)
    limit = _MAX_UDP_PAYLOAD_V4 if src.version == 4 else _MAX_UDP_PAYLOAD_V6
    if len(payload) > limit:
        raise InvalidArgument(
            f"packet {k}: a UDP payload of {len(payload)} octets does not fit one IP packet"
        )
    ulen = 8 + len(payload)
    if src.version == 4:
        pseudo = src.packed + dst.packed + b"\x00" + struct.pack("!BH", 17, ulen)
    else:
        pseudo = src.packed + dst.packed + struct.pack("!I3xB", ulen, 17)
    udp0 = struct.pack("!HHHH", sport, dport, ulen, 0) + payload
    csum = _checksum(pseudo + udp0) or 0xFFFF
    udp = struct.pack("!HHHH", sport, dport, ulen, csum) + payload
    if src.version == 4:
        ident = k & 0xFFFF
        hdr0 = struct.pack(
            "!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, ident, 0x4000, 64, 17, 0, src.packed, dst.packed
        )
        hdr = hdr0[:10] + struct.pack("!H", _checksum(hdr0)) + hdr0[12:]
        return _DST_MAC + _SRC_MAC + b"\x08\x00" + hdr + udp
    hdr = struct.pack("!IHBB16s16s", 6 << 28, ulen, 17, 64, src.packed, dst.packed)
    return _DST_MAC + _SRC_MAC + b"\x86\xdd" + hdr + udp


def write_pcap(
    path: str | os.PathLike[str],
    packets: Iterable[PcapPacket | tuple[float, str, int, str, int, bytes]],
) -> int:
    """Write UDP datagrams to a pcap file (overwriting it).

    Args:
        path: the file to write.
        packets: ``(timestamp, src ip, src port, dst ip, dst port, udp payload)`` each.

    Returns:
        The number of packets written.

    Raises:
        InvalidAddress: an address that is not IPv4/IPv6 text, or mixed families.
        InvalidArgument: a bad port, timestamp or payload, or a payload too long for one
            IP packet.
    """
    records: list[bytes] = []
    for k, raw in enumerate(packets):
        try:
            p = PcapPacket(*raw)
        except TypeError:
            raise InvalidArgument(
                f"packet {k} must be (timestamp, src, sport, dst, dport, payload), got {raw!r}"
            ) from None
        if not isinstance(p.payload, (bytes, bytearray, memoryview)):
            raise InvalidArgument(f"packet {k}: payload must be bytes")
        if isinstance(p.timestamp, bool) or not isinstance(p.timestamp, (int, float)):
            raise InvalidArgument(f"packet {k}: timestamp must be a number of seconds")
        if not 0 <= p.timestamp < 2**32:
            raise InvalidArgument(f"packet {k}: timestamp {p.timestamp} is outside the pcap range")
        frame = _frame(k, p)
        usec_total = round(p.timestamp * 1_000_000)
        sec, usec = divmod(usec_total, 1_000_000)
        records.append(struct.pack("<IIII", sec, usec, len(frame), len(frame)) + frame)
    header = struct.pack("<IHHiIII", _MAGIC_US, 2, 4, 0, 0, _SNAPLEN, LINKTYPE_ETHERNET)
    with open(path, "wb") as f:
        f.write(header)
        f.writelines(records)
    return len(records)
