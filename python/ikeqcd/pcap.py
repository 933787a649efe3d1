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

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_RAW", "PcapPacket", "read_pcap", "write_pcap"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
_LINKTYPE_RAW_ALT = 12
_LINKTYPE_LINUX_SLL = 113
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


def _udp_from_ip(data: bytes) -> tuple[str, int, str, int, bytes] | None:
    if not data:
        return None
    version = data[0] >> 4
    if version == 4 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        total = int.from_bytes(data[2:4], "big")
        if data[9] != 17 or len(data) < ihl + 8 or ihl < 20:
            return None
        frag = int.from_bytes(data[6:8], "big") & 0x1FFF
        if frag:
            return None
        src = str(ipaddress.IPv4Address(data[12:16]))
        dst = str(ipaddress.IPv4Address(data[16:20]))
        udp = data[ihl : min(len(data), total) if total >= ihl + 8 else len(data)]
    elif version == 6 and len(data) >= 48:
        if data[6] != 17:  # no extension headers are followed
            return None
        src = str(ipaddress.IPv6Address(data[8:24]))
        dst = str(ipaddress.IPv6Address(data[24:40]))
        udp = data[40:]
    else:
        return None
    sport, dport, ulen = struct.unpack_from("!HHH", udp, 0)
    end = min(len(udp), ulen) if ulen >= 8 else len(udp)
    return src, sport, dst, dport, bytes(udp[8:end])


def read_pcap(path: str | os.PathLike[str]) -> list[PcapPacket]:
    """Read the UDP datagrams of a classic pcap file (Ethernet, raw IP or Linux cooked
    captures; either byte order; micro- or nanosecond timestamps). Non-UDP packets and IP
    fragments are skipped.

    Raises:
        InvalidArgument: not a pcap file, an unsupported link type, or a truncated record.
        OSError: the file cannot be read (missing, a directory, no permission).
    """
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise InvalidArgument(f"{path}: too short for a pcap file header")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise InvalidArgument(f"{path}: not a classic pcap file (pcapng is not supported)")
    nano = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
    linktype = struct.unpack_from(end + "I", data, 20)[0] & 0x0FFFFFFF
    if linktype not in (LINKTYPE_ETHERNET, LINKTYPE_RAW, _LINKTYPE_RAW_ALT, _LINKTYPE_LINUX_SLL):
        raise InvalidArgument(f"{path}: unsupported link type {linktype}")
    out: list[PcapPacket] = []
    off = 24
    k = 0
    while off < len(data):
        if off + 16 > len(data):
            raise InvalidArgument(f"{path}: record {k} header is truncated")
        sec, frac, incl, _orig = struct.unpack_from(end + "IIII", data, off)
        off += 16
        if off + incl > len(data):
            raise InvalidArgument(f"{path}: record {k} is truncated")
        frame = data[off : off + incl]
        off += incl
        k += 1
        if linktype == LINKTYPE_ETHERNET:
            if len(frame) < 14:
                continue
            ethertype = int.from_bytes(frame[12:14], "big")
            ip = frame[14:]
            while ethertype == 0x8100 and len(ip) >= 4:  # VLAN tags
                ethertype = int.from_bytes(ip[2:4], "big")
                ip = ip[4:]
            if ethertype not in (0x0800, 0x86DD):
                continue
        elif linktype == _LINKTYPE_LINUX_SLL:
            ip = frame[16:]
        else:
            ip = frame
        udp = _udp_from_ip(ip)
        if udp is None:
            continue
        ts = sec + frac / (1e9 if nano else 1e6)
        out.append(PcapPacket(ts, *udp))
    return out
