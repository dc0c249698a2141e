"""Write exchanges as pcap with real TCP framing (scapy): handshake, sequence/ack numbers, FIN.

Input is a transcript, the list of (side, bytes) the exchange runner keeps, so every
exchange the harness or client makes can be attached as a capture.
"""

from __future__ import annotations

from pathlib import Path

from conformance.net.runner import Transcript

MSS = 1460


def transcript_packets(transcript: Transcript, client: tuple[str, int], host: tuple[str, int],
                       start: float = 0.0, isn: tuple[int, int] = (1000, 5000)) -> list:
    """One TCP connection carrying the transcript: SYN, SYN/ACK, ACK, data segments, FIN/ACK exchange."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    (c_ip, c_port), (h_ip, h_port) = client, host
    seq = {"client": isn[0], "host": isn[1]}
    packets = []
    clock = [start]

    def emit(side: str, flags: str, payload: bytes = b"") -> None:
        src, sport, dst, dport = (c_ip, c_port, h_ip, h_port) if side == "client" else (h_ip, h_port, c_ip, c_port)
        other = "host" if side == "client" else "client"
        tcp = TCP(sport=sport, dport=dport, flags=flags, seq=seq[side], ack=seq[other] if "A" in flags else 0,
                  window=65535)
        pkt = Ether() / (IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)) / tcp
        if payload:
            pkt = pkt / payload
        pkt.time = clock[0]
        clock[0] += 0.0001
        packets.append(pkt)
        seq[side] += len(payload) + (1 if ("S" in flags or "F" in flags) else 0)

    emit("client", "S")
    emit("host", "SA")
    emit("client", "A")
    for side, data in transcript:
        for offset in range(0, len(data), MSS):
            emit(side, "PA", data[offset : offset + MSS])
        emit("host" if side == "client" else "client", "A")
    emit("client", "FA")
    emit("host", "FA")
    emit("client", "A")
    return packets


def write_pcap(path: Path, connections: list[Transcript], host: tuple[str, int] = ("127.0.0.1", 1688),
               client_ip: str | None = None) -> Path:
    """Each transcript as its own connection from a fresh client port, in order (IPv6 when the host is)."""
    from scapy.utils import wrpcap

    client_ip = client_ip or ("::1" if ":" in host[0] else "127.0.0.1")
    packets = []
    for n, transcript in enumerate(connections):
        packets += transcript_packets(transcript, (client_ip, 49152 + n), host, start=float(n))
    path.parent.mkdir(parents=True, exist_ok=True)
    wrpcap(str(path), packets)
    return path
