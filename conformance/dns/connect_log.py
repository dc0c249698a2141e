"""Every TCP connection attempt on a namespace's loopback, refused ones too: the SYNs a packet socket sees.

A host that refuses a connection never sees it, and a client may try an address nobody serves;
only the wire shows those. Inside a private network namespace the wire is `lo` alone, so a
packet socket bound to it (root) sees every connection attempt of the client under test.
"""

from __future__ import annotations

import fcntl
import ipaddress
import socket
import struct
import termios
import threading
import time
from dataclasses import dataclass

ETH_P_ALL = 0x0003
PACKET_HOST = 0  # each loopback packet is seen twice, outgoing and incoming: keep the incoming copy
ETH_HEADER = 14
TCP_SYN, TCP_ACK = 0x02, 0x10


@dataclass(frozen=True)
class Attempt:
    time: float
    source: tuple[str, int]
    destination: tuple[str, int]


def parse_syn(frame: bytes) -> tuple[tuple[str, int], tuple[str, int]] | None:
    """(source, destination) of a TCP SYN (not SYN-ACK) in an Ethernet frame, else None."""
    if len(frame) < ETH_HEADER + 20:
        return None
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    ip = frame[ETH_HEADER:]
    if ethertype == 0x0800 and ip[9] == socket.IPPROTO_TCP:
        header = (ip[0] & 0x0F) * 4
        src, dst = ipaddress.IPv4Address(ip[12:16]), ipaddress.IPv4Address(ip[16:20])
    elif ethertype == 0x86DD and len(ip) >= 40 and ip[6] == socket.IPPROTO_TCP:
        header = 40
        src, dst = ipaddress.IPv6Address(ip[8:24]), ipaddress.IPv6Address(ip[24:40])
    else:
        return None
    tcp = ip[header:]
    if len(tcp) < 14 or tcp[13] & (TCP_SYN | TCP_ACK) != TCP_SYN:
        return None
    sport, dport = struct.unpack_from("!HH", tcp, 0)
    return (str(src), sport), (str(dst), dport)


class ConnectLog:
    """Reads SYNs from a packet socket bound to `lo` (made inside the namespace) on a thread of its own."""

    def __init__(self, sock: socket.socket):
        self._sock = sock
        self._sock.bind(("lo", ETH_P_ALL))
        self._sock.settimeout(0.1)
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="kmsconf-connect-log", daemon=True)
        self._thread.start()

    @staticmethod
    def packet_socket() -> socket.socket:
        return socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                frame, address = self._sock.recvfrom(256)
            except socket.timeout:
                continue
            except OSError:
                return
            if address[2] != PACKET_HOST:
                continue
            syn = parse_syn(frame)
            if syn is not None:
                with self._lock:
                    self._attempts.append(Attempt(time.time(), *syn))

    def settle(self) -> None:
        """Wait until what the kernel queued for us is read (the client has exited: nothing new comes)."""
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            queued = fcntl.ioctl(self._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
            if struct.unpack("i", queued)[0] == 0:
                time.sleep(0.02)
                return
            time.sleep(0.01)

    def since(self, index: int) -> list[Attempt]:
        with self._lock:
            return list(self._attempts[index:])

    def __len__(self) -> int:
        with self._lock:
            return len(self._attempts)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

