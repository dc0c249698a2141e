"""A real BIND 9 `named` on a loopback high port with a zone that takes dynamic updates (guide: Table 5 section).

Used by the tests and by `kmsconf dns-lab`. Everything lives in one temporary
directory; nothing of the system's BIND configuration is touched.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.message
import dns.query
import dns.rdatatype

from conformance.net.address import free_port

from .querylog import QueryLog

NAMED_CANDIDATES = ("named", "/usr/sbin/named")


def find_named() -> str | None:
    for candidate in NAMED_CANDIDATES:
        path = shutil.which(candidate) or (candidate if Path(candidate).is_file() else None)
        if path:
            return path
    return None


@dataclass
class DnsLab:
    zones: tuple[str, ...] = ("kms.test",)
    host: str = "127.0.0.1"
    port: int = 0
    allow_update: bool = True
    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="kmsconf-named-")))
    log_queries: bool = False  # BIND's querylog, for reading what a client asked
    # named started through this (a namespace's nsenter), and our sockets to reach it made by new_socket
    command_prefix: tuple[str, ...] = ()
    new_socket: Callable[[int, int], socket.socket] | None = None
    _proc: subprocess.Popen | None = None

    def config(self) -> str:
        update = "allow-update { 127.0.0.0/8; };" if self.allow_update else "allow-update { none; };"
        zones = "".join(
            f'zone "{zone}" {{ type primary; file "{self.workdir}/{zone}.db"; {update} }};\n' for zone in self.zones
        )
        return (
            "options {\n"
            f'  directory "{self.workdir}";\n'
            f'  pid-file "{self.workdir}/named.pid";\n'
            f"  listen-on port {self.port} {{ {self.host}; }};\n"
            "  listen-on-v6 { none; };\n"
            "  recursion no;\n  allow-query { any; };\n  dnssec-validation no;\n"
            "  notify no;\n"
            + ("  querylog yes;\n" if self.log_queries else "")
            + "};\n"
            'controls { };\n'
            + zones
        )

    @property
    def query_log(self) -> QueryLog:
        """The queries named logs (with -g, to the log it writes to stderr)."""
        return QueryLog(self.workdir / "named.log")

    def zone_file(self, zone: str) -> str:
        return (
            "$TTL 300\n"
            f"@ IN SOA ns.{zone}. hostmaster.{zone}. 1 3600 600 86400 300\n"
            f"@ IN NS ns.{zone}.\n"
            f"ns IN A {self.host}\n"
        )

    def start(self, timeout: float = 10.0) -> "DnsLab":
        named = find_named()
        if named is None:
            raise FileNotFoundError("BIND's named is not installed (Debian package bind9; `make setup` installs it)")
        if not self.port:
            self.port = free_port(self.host)
        self.workdir.mkdir(parents=True, exist_ok=True)
        for zone in self.zones:
            (self.workdir / f"{zone}.db").write_text(self.zone_file(zone))
        conf = self.workdir / "named.conf"
        conf.write_text(self.config())
        log = open(self.workdir / "named.log", "w")
        self._proc = subprocess.Popen([*self.command_prefix, named, "-g", "-c", str(conf)], stdout=log,
                                      stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"named exited at start:\n{(self.workdir / 'named.log').read_text()[-2000:]}")
            if self._answers():
                return self
            time.sleep(0.1)
        self.stop()
        raise TimeoutError(f"named did not answer on {self.host}:{self.port} within {timeout} s")

    def _answers(self) -> bool:
        """Ready when both transports answer (updates travel over TCP)."""
        query = dns.message.make_query(self.zones[0], dns.rdatatype.SOA)
        try:
            self.ask(query, socket.SOCK_DGRAM)
            self.ask(query, socket.SOCK_STREAM)
            return True
        except (OSError, dns.exception.Timeout, EOFError):
            return False

    def ask(self, message: dns.message.Message, kind: int = socket.SOCK_STREAM, timeout: float = 0.3):
        """Send a query or an update to this named over UDP or TCP; its answer."""
        sock = self.socket(kind)
        try:
            send = dns.query.udp if kind == socket.SOCK_DGRAM else dns.query.tcp
            return send(message, self.host, port=self.port, timeout=timeout, sock=sock)
        finally:
            if sock is not None:
                sock.close()

    def socket(self, kind: int) -> socket.socket | None:
        """A non-blocking socket that reaches named (connected, for TCP), as dnspython takes one; None: it makes
        its own."""
        if self.new_socket is None:
            return None
        sock = self.new_socket(socket.AF_INET6 if ":" in self.host else socket.AF_INET, kind)
        try:
            if kind == socket.SOCK_STREAM:
                sock.settimeout(0.3)
                sock.connect((self.host, self.port))
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
        self._proc = None
        shutil.rmtree(self.workdir, ignore_errors=True)

    @property
    def address(self) -> tuple[str, int]:
        return self.host, self.port

    def __enter__(self) -> "DnsLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
