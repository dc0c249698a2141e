"""The world a discovering client under test runs in: a lab `named` and the KMS hosts its records name.

Each scenario is a zone `<scenario>.kms-disc.test` whose `_vlmcs._tcp` SRV records, of several
priorities and weights, name hosts on loopback addresses of their own: instrumented reference hosts
that answer, hosts that refuse the connection, hosts that accept it and stay silent. A run of the
client says what named was asked (its query log), which hosts the client tried, in order, and where
it activated.

As root the world lives in a private network and mount namespace: named on port 53 there and an
/etc/resolv.conf naming it, so clients that use the system resolver find it, and every connection
attempt on the namespace's loopback is seen, refused ones and those to addresses nobody serves
too. Without root, a client told the DNS server ({dns}) runs on the machine's loopback, and only
the connections the hosts themselves accept are seen.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import dns.update

from conformance.dns.connect_log import ConnectLog
from conformance.dns.lab import DnsLab
from conformance.dns.namespace import Namespace
from conformance.dns.querylog import Query
from conformance.net.address import format_address
from conformance.reference.host.config import HostConfig
from conformance.dns.srv import SRV_LABEL
from conformance.faults.host import faulty_host_thread
from conformance.reference.host.server import HostThread

from .client_mode import ClientRun, RecordedPdu, recording
from .client_process import ProcessResult, fill, run_process

LAB_DOMAIN = "kms-disc.test"
ANSWERS, REFUSES, SILENT = "answers", "refuses", "silent"
FIRST_ADDRESS = (127, 0, 1, 1)  # hosts get 127.0.1.1, 127.0.1.2, ...: loopback addresses of their own
ACTIVATING_COUNT = 50  # every answering host reports it, so a client activates at its first request


@dataclass(frozen=True)
class HostSpec:
    name: str  # its label in the scenario's zone
    kind: str  # answers | refuses | silent
    priority: int = 0
    weight: int = 0
    listed: bool = True  # an SRV record names it from the start (else it is given by hand, or published later)


@dataclass(frozen=True)
class Scenario:
    name: str
    hosts: tuple[HostSpec, ...]

    @property
    def domain(self) -> str:
        return f"{self.name}.{LAB_DOMAIN}"

    def spec(self, name: str) -> HostSpec:
        return next(h for h in self.hosts if h.name == name)


@dataclass(frozen=True)
class Contact:
    time: float
    address: tuple[str, int]
    host: str | None  # the lab host at that address and port; None: nobody in the lab serves it

    def __str__(self) -> str:
        return self.host or f"{format_address(*self.address)} (not a lab host)"


class LabHost:
    """A host of the lab on its own address."""

    kind = ""

    def __init__(self, name: str, address: str, new_socket: Callable[..., socket.socket]):
        self.name = name
        self.sock = new_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind((address, 0))
        self.address: tuple[str, int] = self.sock.getsockname()[:2]

    def seen(self) -> list[tuple[float, str]]:
        """(time, peer) of each connection it saw."""
        return []

    def answered(self) -> list[tuple[float, str]]:
        """(time, peer) of each KMS response it sent."""
        return []

    def stop(self) -> None:
        self.sock.close()


class RefusingHost(LabHost):
    """Bound, never listening: a connection to it is refused (reset), and it never knows."""

    kind = REFUSES


class SilentHost(LabHost):
    """Accepts every connection and never answers, holding it open until the lab stops."""

    kind = SILENT

    def __init__(self, *args: object):
        super().__init__(*args)
        self.sock.listen(64)
        self.sock.settimeout(0.2)
        self._held: list[socket.socket] = []
        self._seen: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=f"kmsconf-silent-{self.name}", daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self._seen.append((time.time(), format_address(*peer[:2])))
            self._held.append(conn)  # never read, never answered

    def seen(self) -> list[tuple[float, str]]:
        return list(self._seen)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(2)
        for conn in self._held:
            conn.close()
        super().stop()


class AnsweringHost(LabHost):
    """An instrumented reference host; `fail()` turns it into a refusing one (a host that went down)."""

    kind = ANSWERS

    def __init__(self, name: str, address: str, new_socket: Callable[..., socket.socket]):
        super().__init__(name, address, new_socket)
        self._new_socket = new_socket
        config = HostConfig(host=address, port=0)
        self.thread: HostThread | None = faulty_host_thread(config, {"fixed-count"}, fixed_count=ACTIVATING_COUNT)
        self.pdus = recording(self.thread)  # what every client sent it, with its replies
        self.thread.start(self.sock)

    def seen(self) -> list[tuple[float, str]]:
        first: dict[str, float] = {}
        for rec in self.pdus:
            first.setdefault(rec.peer, rec.received)
        return [(t, peer) for peer, t in first.items()]

    def answered(self) -> list[tuple[float, str]]:
        return [(rec.received, rec.peer) for rec in self.pdus
                if rec.reply.decision is not None and rec.reply.decision.payload is not None]

    def fail(self) -> None:
        """Stop answering: the listening socket goes, and a bound one takes its address and port (refused)."""
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        self.kind = REFUSES
        self.sock = self._new_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(self.address)

    def stop(self) -> None:
        if self.thread is not None:
            self.thread.stop()
            self.thread = None
        else:
            super().stop()


KINDS = {ANSWERS: AnsweringHost, REFUSES: RefusingHost, SILENT: SilentHost}


@dataclass
class DiscoveryRun:
    """One run of the client in a scenario: what named was asked, whom it tried (in order), where it activated."""

    scenario: Scenario
    command: str  # as given, placeholders and all
    process: ProcessResult
    queries: list[Query]
    contacts: list[Contact]
    activated: list[str]  # lab hosts that sent it a KMS response, in order
    sees_refused: bool  # connection attempts to refusing hosts and strays are in `contacts` (the namespace)
    pdus: list[RecordedPdu] = field(default_factory=list)  # what it sent the scenario's answering hosts
    addresses: dict[str, tuple[str, int]] = field(default_factory=dict)  # each host of the scenario's

    @property
    def lab_contacts(self) -> list[str]:
        """The scenario's hosts it tried, each once, in the order of its first attempt."""
        return list(dict.fromkeys(c.host for c in self.contacts if c.host is not None))

    @property
    def first_contact(self) -> str | None:
        hosts = self.lab_contacts
        return hosts[0] if hosts else None

    def client_run(self) -> ClientRun:
        """What it sent the hosts it found, as the client clauses (KMS-CLI-*) judge a client."""
        address = next((c.address for c in self.contacts if c.host in self.activated), ("127.0.0.1", 0))
        returncode = -1 if self.process.hung else self.process.returncode
        return ClientRun(self.command, returncode, self.process.stdout, self.process.stderr, list(self.pdus), address)

    def asked(self, name: str, rtype: str = "SRV") -> bool:
        return any(q.name == name.lower().rstrip(".") and q.type == rtype for q in self.queries)

    def asked_srv(self) -> bool:
        return self.asked(f"{SRV_LABEL}.{self.scenario.domain}")


@dataclass
class DiscoveryLab:
    scenarios: tuple[Scenario, ...]
    namespace: bool  # the private namespace (root), with named on port 53 and the system resolver pointed at it
    search: str = ""  # the resolv.conf search domain inside the namespace
    _ns: Namespace | None = None
    _named: DnsLab | None = None
    _log: ConnectLog | None = None
    hosts: dict[str, LabHost] = field(default_factory=dict)  # "scenario/name" -> host
    _state_dirs: list[Path] = field(default_factory=list)

    def start(self) -> "DiscoveryLab":
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        zones = tuple(s.domain for s in self.scenarios)
        if self.namespace:
            search = f"search {self.search}\n" if self.search else ""
            self._ns = Namespace(f"nameserver 127.0.0.1\n{search}options timeout:2 attempts:1\n").start()
            self._named = DnsLab(zones=zones, port=53, log_queries=True, command_prefix=tuple(self._ns.command([])),
                                 new_socket=self._ns.socket)
            self._log = ConnectLog(self._ns.run_inside(ConnectLog.packet_socket))
        else:
            self._named = DnsLab(zones=zones, log_queries=True)
        self._named.start()
        octets = list(FIRST_ADDRESS)
        for scenario in self.scenarios:
            for spec in scenario.hosts:
                address = ".".join(map(str, octets))
                octets[3] += 1
                self.hosts[f"{scenario.name}/{spec.name}"] = KINDS[spec.kind](spec.name, address, self.new_socket)
            self.publish(scenario, {h.name: (h.priority, h.weight) for h in scenario.hosts if h.listed},
                         addresses=True)

    def new_socket(self, family: int = socket.AF_INET, kind: int = socket.SOCK_STREAM) -> socket.socket:
        return self._ns.socket(family, kind) if self._ns is not None else socket.socket(family, kind)

    @property
    def dns_address(self) -> tuple[str, int]:
        assert self._named is not None
        return self._named.address

    @property
    def sees_refused(self) -> bool:
        return self._log is not None

    def host(self, scenario: Scenario, name: str) -> LabHost:
        return self.hosts[f"{scenario.name}/{name}"]

    def fqdn(self, scenario: Scenario, name: str) -> str:
        return f"{name}.{scenario.domain}."

    def publish(self, scenario: Scenario, records: dict[str, tuple[int, int]], addresses: bool = False) -> None:
        """Make the scenario's SRV set exactly `records` (name -> priority, weight), by RFC 2136 update."""
        update = dns.update.UpdateMessage(scenario.domain)
        update.delete(SRV_LABEL, "SRV")
        for name, (priority, weight) in records.items():
            port = self.host(scenario, name).address[1]
            update.add(SRV_LABEL, 60, "SRV", f"{priority} {weight} {port} {self.fqdn(scenario, name)}")
        if addresses:
            for spec in scenario.hosts:
                update.add(spec.name, 60, "A", self.host(scenario, spec.name).address[0])
        answer = self._named.ask(update, timeout=5)
        if answer.rcode() != 0:
            raise RuntimeError(f"the lab named refused the records of {scenario.domain}: rcode {answer.rcode()}")

    def state_dir(self) -> Path:
        """A state directory for a client across the runs of one scenario ({state})."""
        path = Path(tempfile.mkdtemp(prefix="kmsconf-client-state-"))
        self._state_dirs.append(path)
        return path

    def run(self, scenario: Scenario, command: str, timeout: float, state: Path | None = None,
            given: str | None = None) -> DiscoveryRun:
        """Run `command` once: {domain} is the scenario's, {dns} the lab named, {state} `state`, and {host}/{port}
        the address of its host `given` (a host set by hand)."""
        named = self._named
        values: dict[str, object] = {"domain": scenario.domain, "dns": format_address(*named.address)}
        if state is not None:
            values["state"] = state
        if given is not None:
            values["host"], values["port"] = self.host(scenario, given).address
        argv = fill(command, **values)
        if self._ns is not None:
            argv = self._ns.command(argv)
        mark, attempts, started = named.query_log.mark(), len(self._log) if self._log else 0, time.time()
        process = run_process(argv, timeout)
        time.sleep(0.05)  # named logs a query as it answers it; the hosts' loops log their last PDU
        if self._log is not None:
            self._log.settle()
        prefix = f"{scenario.name}/"
        contacts = [Contact(c.time, c.address, c.host.removeprefix(prefix) if c.host.startswith(prefix) else None)
                    for c in self._contacts(started, attempts)]
        activated = sorted((t, key.removeprefix(prefix)) for key, host in self.hosts.items()
                           if key.startswith(prefix) for t, _ in host.answered() if t >= started)
        pdus = sorted((rec for key, host in self.hosts.items() if key.startswith(prefix)
                       for rec in getattr(host, "pdus", ()) if rec.received >= started), key=lambda rec: rec.received)
        return DiscoveryRun(scenario, command, process, named.query_log.since(mark), contacts,
                            [name for _, name in activated], self.sees_refused, pdus,
                            {h.name: self.host(scenario, h.name).address for h in scenario.hosts})

    def _contacts(self, started: float, attempts: int) -> list[Contact]:
        """Every connection attempt since `started`, in order; `host` is the lab's key ("scenario/name") or ""."""
        by_address = {host.address: key for key, host in self.hosts.items()}
        if self._log is not None:
            dns_address = self._named.address
            return [Contact(a.time, a.destination, by_address.get(a.destination, ""))
                    for a in self._log.since(attempts) if a.destination != dns_address]
        seen = [Contact(t, host.address, key) for key, host in self.hosts.items() for t, _ in host.seen() if t >= started]
        return sorted(seen, key=lambda c: c.time)

    def stop(self) -> None:
        for host in self.hosts.values():
            with contextlib.suppress(Exception):
                host.stop()
        self.hosts.clear()
        if self._log is not None:
            self._log.close()
            self._log = None
        if self._named is not None:
            self._named.stop()
            self._named = None
        if self._ns is not None:
            self._ns.stop()
            self._ns = None
        for path in self._state_dirs:
            shutil.rmtree(path, ignore_errors=True)

    def __enter__(self) -> "DiscoveryLab":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
