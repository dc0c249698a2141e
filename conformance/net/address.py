"""Addresses as users write them (HOST:PORT, [v6]:PORT), loopback tests and free local ports."""

from __future__ import annotations

import ipaddress
import socket

from conformance.errors import UsageError


def parse_address(text: str, default_port: int = 1688) -> tuple[str, int]:
    """(host, port) from "HOST:PORT", "[V6]:PORT", "HOST" or "[V6]"; a bare IPv6 address says how to write it."""
    text = text.strip()
    if text.count(":") > 1 and not text.startswith("["):
        try:
            ipaddress.IPv6Address(text.split("%")[0])
        except ValueError:
            pass
        else:
            raise UsageError(f"address {text!r} is an IPv6 address without a port: write it in brackets, "
                             f"e.g. [{text}]:{default_port}")
        raise UsageError(f"address {text!r} is not HOST:PORT (write an IPv6 address in brackets: [::1]:1688)")
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port:
        host, port = text, str(default_port)
    if host.startswith("[") != host.endswith("]"):
        raise UsageError(f"address {text!r} has an unclosed bracket (write [::1]:1688)")
    host = host.strip("[]")
    if not host:
        raise UsageError(f"address {text!r} has no host (write HOST:PORT, e.g. 127.0.0.1:1688)")
    try:
        number = int(port)
    except ValueError:
        raise UsageError(f"port {port!r} in {text!r} is not a number") from None
    if not 0 <= number <= 65535:
        raise UsageError(f"port {number} in {text!r} is outside 0..65535")
    return host, number


def format_address(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def is_loopback(host: str) -> bool:
    """127.0.0.0/8, ::1 and names that resolve only to them."""
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(info[4][0].split("%")[0]).is_loopback for info in infos)


def free_port(host: str = "127.0.0.1") -> int:
    """A port free for both TCP and UDP (named serves queries on UDP and takes updates over TCP)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    for _ in range(50):
        with socket.socket(family, socket.SOCK_STREAM) as tcp:
            tcp.bind((host, 0))
            port = tcp.getsockname()[1]
            with socket.socket(family, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind((host, port))
                except OSError:
                    continue
                return port
    raise OSError(f"no port free for both TCP and UDP on {host}")


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
        return True
    except OSError:
        return False


def reachable(address: tuple[str, int], timeout: float) -> str | None:
    """None when a TCP connection opens there, else why not."""
    try:
        socket.create_connection(address, timeout=timeout).close()
        return None
    except OSError as exc:
        return exc.strerror or str(exc)
