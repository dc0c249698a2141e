"""Read pcap/pcapng files (scapy) and reassemble TCP connections into byte streams.

Segments are placed by sequence number, so out-of-order and retransmitted
segments give the same stream as a clean capture.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from conformance.wire import rpc

CLIENT_PTYPES = {rpc.PType.BIND, rpc.PType.ALTER_CONTEXT, rpc.PType.REQUEST}


class CaptureError(ValueError):
    """A file that cannot be read as a capture, or holds no KMS traffic."""


@dataclass
class _Half:
    isn: int | None = None
    segments: dict[int, bytes] = field(default_factory=dict)  # relative seq -> payload

    def add(self, seq: int, payload: bytes, syn: bool) -> None:
        if syn:
            self.isn = (seq + 1) & 0xFFFFFFFF
        if payload:
            self.segments.setdefault(seq, payload)

    def stream(self) -> bytes:
        if not self.segments:
            return b""
        base = self.isn if self.isn is not None else min(self.segments)
        out = bytearray()
        for seq in sorted(self.segments, key=lambda s: (s - base) & 0xFFFFFFFF):
            offset = (seq - base) & 0xFFFFFFFF
            data = self.segments[seq]
            if offset > len(out):
                break  # a gap: bytes never captured; stop rather than invent them
            out[offset : offset + len(data)] = data
        return bytes(out)


@dataclass
class TcpConnection:
    client: tuple[str, int]
    host: tuple[str, int]
    client_stream: bytes
    host_stream: bytes
    first_seen: float


def _looks_like_client(stream: bytes) -> bool:
    return (len(stream) >= rpc.HEADER_SIZE and rpc.HEADER.unpack_from(stream)[0] == 5
            and rpc.peek_ptype(stream) in CLIENT_PTYPES)


def read_connections(path: Path, port: int | None = None) -> list[TcpConnection]:
    from scapy.error import Scapy_Exception
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.utils import rdpcap

    try:
        packets = rdpcap(str(path))
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except (Scapy_Exception, EOFError, OSError, ValueError) as exc:
        raise CaptureError(f"{path}: not a pcap or pcapng file ({exc})") from None
    halves: dict[tuple, _Half] = {}
    first: dict[frozenset, float] = {}
    opener: dict[frozenset, tuple] = {}  # who sent the SYN: the client, whatever its first PDU is
    for pkt in packets:
        if TCP not in pkt:
            continue
        ip = pkt[IP] if IP in pkt else pkt[IPv6] if IPv6 in pkt else None
        if ip is None:
            continue
        tcp = pkt[TCP]
        if port is not None and port not in (tcp.sport, tcp.dport):
            continue
        key = (ip.src, tcp.sport, ip.dst, tcp.dport)
        halves.setdefault(key, _Half()).add(tcp.seq, bytes(tcp.payload), bool(tcp.flags & 0x02))
        first.setdefault(frozenset([(ip.src, tcp.sport), (ip.dst, tcp.dport)]), float(pkt.time))
        if tcp.flags & 0x12 == 0x02:  # SYN without ACK: this side opened the connection
            opener.setdefault(frozenset([(ip.src, tcp.sport), (ip.dst, tcp.dport)]), (ip.src, tcp.sport))
    connections = []
    seen = set()
    for (src, sport, dst, dport), half in halves.items():
        pair = frozenset([(src, sport), (dst, dport)])
        if pair in seen:
            continue
        seen.add(pair)
        forward = half.stream()
        back_half = halves.get((dst, dport, src, sport))
        backward = back_half.stream() if back_half else b""
        if _looks_like_client(forward):
            connections.append(TcpConnection((src, sport), (dst, dport), forward, backward, first[pair]))
        elif _looks_like_client(backward):
            connections.append(TcpConnection((dst, dport), (src, sport), backward, forward, first[pair]))
        elif opener.get(pair) == (src, sport) and forward:  # a client that opens with a PDU no client sends
            connections.append(TcpConnection((src, sport), (dst, dport), forward, backward, first[pair]))
        elif opener.get(pair) == (dst, dport) and backward:
            connections.append(TcpConnection((dst, dport), (src, sport), backward, forward, first[pair]))
    connections.sort(key=lambda c: c.first_seen)
    return connections
