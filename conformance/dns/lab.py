"""A real BIND 9 `named` on a loopback high port with a zone that takes dynamic updates (guide: Table 5 section).

Used by the tests and by `kmsconf dns-lab`. Everything lives in one temporary
directory; nothing of the system's BIND configuration is touched.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import dns.message
import dns.query
import dns.rdatatype

from conformance.net.address import free_port

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
            "};\n"
            'controls { };\n'
            + zones
        )

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
        self._proc = subprocess.Popen([named, "-g", "-c", str(conf)], stdout=log, stderr=subprocess.STDOUT)
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
            dns.query.udp(query, self.host, port=self.port, timeout=0.3)
            dns.query.tcp(query, self.host, port=self.port, timeout=0.3)
            return True
        except (OSError, dns.exception.Timeout, EOFError):
            return False

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
