"""pcap files: a small writer (UDP datagrams in Ethernet/IPv4 or IPv6/UDP) and a reader of
the captures users bring (pcap and pcapng from tcpdump, tshark, dumpcap, Wireshark; through
``dpkt``).

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
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO, NamedTuple

import dpkt

from ikeqcd.errors import InvalidAddress, InvalidArgument

__all__ = ["LINKTYPE_ETHERNET", "LINKTYPE_RAW", "PcapPacket", "read_pcap", "write_pcap"]

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
_RAW_IP = frozenset((LINKTYPE_RAW, 12, 14, 228, 229))  # raw IP, IPv4 only, IPv6 only
_LINK_LAYERS: dict[int, Any] = {
    LINKTYPE_ETHERNET: dpkt.ethernet.Ethernet,
    0: dpkt.loopback.Loopback,  # DLT_NULL
    108: dpkt.loopback.Loopback,  # DLT_LOOP
    113: dpkt.sll.SLL,  # LINUX_SLL, tcpdump -i any before libpcap 1.10
    276: dpkt.sll2.SLL2,  # LINUX_SLL2, tcpdump -i any
}
_PCAP_MAGICS = {bytes.fromhex(m) for m in ("d4c3b2a1", "a1b2c3d4", "4d3cb2a1", "a1b23c4d")}
_PCAPNG_BT_SPB = 3
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


def _udp_of(ip: Any) -> tuple[str, int, str, int, bytes] | None:
    """The UDP datagram in a dpkt IP or IP6 packet; None for anything else or a fragment."""
    if isinstance(ip, dpkt.ip.IP):
        if ip.p != dpkt.ip.IP_PROTO_UDP or ip.mf or ip.offset:
            return None
        src, dst = str(ipaddress.IPv4Address(ip.src)), str(ipaddress.IPv4Address(ip.dst))
    elif isinstance(ip, dpkt.ip6.IP6):
        # dpkt follows the extension headers; a fragment header means a piece, not a datagram
        if ip.p != dpkt.ip.IP_PROTO_UDP or dpkt.ip.IP_PROTO_FRAGMENT in ip.extension_hdrs:
            return None
        src, dst = str(ipaddress.IPv6Address(ip.src)), str(ipaddress.IPv6Address(ip.dst))
    else:
        return None
    udp = ip.data
    if not isinstance(udp, dpkt.udp.UDP):
        return None
    payload = bytes(udp.data)
    if udp.ulen >= 8:
        payload = payload[: udp.ulen - 8]
    return src, int(udp.sport), dst, int(udp.dport), payload


def _network_layer(linktype: int, frame: bytes) -> Any:
    """The IP packet inside a link-layer frame (a dpkt object), or None."""
    if linktype in _RAW_IP:
        if not frame:
            return None
        version = frame[0] >> 4
        return dpkt.ip.IP(frame) if version == 4 else dpkt.ip6.IP6(frame) if version == 6 else None
    link = _LINK_LAYERS[linktype](frame)
    return link.data


def _datagrams(linktype: int, ts: float, frame: bytes) -> list[PcapPacket]:
    """The UDP datagram of one frame as a one-item list; empty for anything else."""
    try:
        udp = _udp_of(_network_layer(linktype, frame))
    except (dpkt.Error, struct.error, ValueError, IndexError):
        return []  # a damaged or cut frame: not a datagram we can give
    return [] if udp is None else [PcapPacket(ts, *udp)]


def _pcapng_records(f: BinaryIO, where: str) -> Iterator[tuple[int, float, bytes]]:
    """(link type, timestamp, frame) of every packet of a pcapng file, any number of sections
    and interfaces (each interface its own link type and timestamp resolution)."""
    le = True
    ifaces: list[tuple[int, float, int]] = []  # (link type, ticks per second, offset in s)
    k = 0
    while True:
        head = f.read(8)
        if not head:
            return
        if len(head) < 8:
            raise InvalidArgument(f"{where}: block {k} is truncated")
        kind = struct.unpack("<I", head[:4])[0]
        if kind == dpkt.pcapng.PCAPNG_BT_SHB:  # a new section: byte order, no interfaces yet
            bom = f.read(4)
            if len(bom) < 4:
                raise InvalidArgument(f"{where}: block {k} is truncated")
            le = struct.unpack("<I", bom)[0] == dpkt.pcapng.BYTE_ORDER_MAGIC
            head += bom
            ifaces = []
        end = "<" if le else ">"
        kind, size = struct.unpack(end + "II", head[:8])
        if size < 12 or size % 4:
            raise InvalidArgument(f"{where}: block {k} has an impossible length {size}")
        body = f.read(size - len(head))
        if len(body) < size - len(head):
            raise InvalidArgument(f"{where}: block {k} is truncated")
        block = head + body
        k += 1
        try:
            if kind == dpkt.pcapng.PCAPNG_BT_IDB:
                idb = (dpkt.pcapng.InterfaceDescriptionBlockLE if le else
                       dpkt.pcapng.InterfaceDescriptionBlock)(block)
                ifaces.append(_interface(idb, end))
            elif kind in (dpkt.pcapng.PCAPNG_BT_EPB, dpkt.pcapng.PCAPNG_BT_PB):
                cls = (
                    (dpkt.pcapng.EnhancedPacketBlockLE if le else dpkt.pcapng.EnhancedPacketBlock)
                    if kind == dpkt.pcapng.PCAPNG_BT_EPB
                    else (dpkt.pcapng.PacketBlockLE if le else dpkt.pcapng.PacketBlock)
                )
                pkt = cls(block)
                if pkt.iface_id >= len(ifaces):
                    raise InvalidArgument(
                        f"{where}: block {k - 1} names interface {pkt.iface_id}, which is not "
                        f"described"
                    )
                linktype, ticks, offset = ifaces[pkt.iface_id]
                ts = offset + ((pkt.ts_high << 32) | pkt.ts_low) / ticks
                yield linktype, ts, bytes(pkt.pkt_data)
            elif kind == _PCAPNG_BT_SPB and ifaces:  # simple packet block: interface 0
                caplen = min(struct.unpack_from(end + "I", block, 8)[0], len(block) - 16)
                yield ifaces[0][0], 0.0, bytes(block[12 : 12 + caplen])
        except (dpkt.Error, struct.error) as e:
            raise InvalidArgument(f"{where}: block {k - 1} is damaged ({e})") from None


def _interface(idb: Any, end: str) -> tuple[int, float, int]:
    ticks, offset = 1e6, 0
    for o in idb.opts:
        if o.code == dpkt.pcapng.PCAPNG_OPT_IF_TSRESOL and o.data:
            v = o.data[0]
            ticks = float(2 ** (v & 0x7F) if v & 0x80 else 10 ** (v & 0x7F))
        elif o.code == dpkt.pcapng.PCAPNG_OPT_IF_TSOFFSET and len(o.data) >= 8:
            offset = struct.unpack(end + "q", o.data[:8])[0]
    return int(idb.linktype), ticks, offset


def read_pcap(path: str | os.PathLike[str]) -> list[PcapPacket]:
    """Read the UDP datagrams of a capture file.

    Reads classic pcap (either byte order, micro- or nanosecond timestamps) and pcapng (what
    Wireshark, ``tshark -w`` and ``dumpcap`` write: any number of sections and interfaces, each
    with its own link type and timestamp resolution), through ``dpkt``. Link types: Ethernet
    (VLAN tags followed), raw IPv4/IPv6, BSD loopback (``DLT_NULL``/``DLT_LOOP``), Linux
    cooked v1 and v2 (``LINUX_SLL``/``LINUX_SLL2``, what ``tcpdump -i any`` writes). Packets
    of other link types, non-UDP packets, IP fragments and damaged frames are skipped.

    Raises:
        InvalidArgument: not a pcap or pcapng file, every interface of an unsupported link
            type, or a truncated or damaged file structure.
        OSError: the file cannot be read (missing, a directory, no permission).
    """
    where = os.fspath(path)
    with open(path, "rb") as f:
        magic = f.read(4)
        f.seek(0)
        if len(magic) < 4:
            raise InvalidArgument(f"{where}: too short for a pcap or pcapng file")
        if magic == b"\x0a\x0d\x0d\x0a":
            records = list(_pcapng_records(f, where))
        elif magic in _PCAP_MAGICS:
            try:
                reader = dpkt.pcap.Reader(f)
                linktype = int(reader.datalink())
                records = [(linktype, float(ts), bytes(buf)) for ts, buf in reader]
            except (dpkt.Error, struct.error, ValueError) as e:
                raise InvalidArgument(f"{where}: a damaged pcap file ({e})") from None
        else:
            raise InvalidArgument(f"{where}: neither a pcap nor a pcapng file (magic {magic.hex()})")
    kinds = {lt for lt, _, _ in records}
    unknown = kinds - set(_LINK_LAYERS) - _RAW_IP
    if records and unknown == kinds:
        raise InvalidArgument(
            f"{where}: unsupported link type {', '.join(map(str, sorted(unknown)))} (this reader "
            f"knows Ethernet, raw IP, loopback and Linux cooked v1/v2)"
        )
    return [p for lt, ts, frame in records if lt not in unknown for p in _datagrams(lt, ts, frame)]
