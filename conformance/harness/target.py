"""The host under test as the checks see it: an exchange runner, options, and (reference host) a control channel."""

from __future__ import annotations

import functools
import hashlib
import socket
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from conformance import catalog as catalog_mod
from conformance.net.address import format_address
from conformance.net.outcomes import Activation, Outcome, Response
from conformance.net.runner import BindOptions, Runner, Session, Transcript
from conformance.wire.requests import build_request
from conformance.wire.messages import KmsRequest, filetime_now

from .profile import HostProfile

LEARNING = "(learning the host)"  # the footprint of the probes that run before any check
AUDIT_WORKSTATION = "kmsconf-conformance-audit"  # what the host's event log shows for the suite's requests


@functools.cache  # asked for every request the suite builds
def audit_cmid(address: tuple[str, int]) -> uuid.UUID:
    """One stable CMID per auditing machine and target: reruns renew the same client entry, never add one.
    (A machine without /etc/machine-id falls back to its host name; --audit-cmid pins it where either changes.)"""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = socket.gethostname()
    target = format_address(address[0].lower(), address[1])
    digest = hashlib.sha256(f"kms-conformance audit|{machine}|{target}".encode()).digest()
    return uuid.UUID(bytes=digest[:16], version=4)


@dataclass
class Target:
    host: str
    port: int
    timeout: float = 10.0
    profile: str = "microsoft"
    protocols: tuple[int, ...] = (4, 5, 6)
    key_group: str = "auto"
    activation_interval: int = 120
    renewal_interval: int = 10080
    embedded: bool = False
    catalog: catalog_mod.Catalog = field(default_factory=catalog_mod.load)
    # transcripts of every connection the current check made: its evidence (pcap, decoded exchanges)
    recorded: list[Transcript] = field(default_factory=list)
    clock_offset: float = 0.0  # seconds the host's clock was advanced through the control channel
    # footprint: which client entries ("application/CMID": one entry in one application's count) each clause sent
    sent_entries: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    current_clause: str = LEARNING
    pinned_cmid: uuid.UUID | None = None  # --audit-cmid
    counts_seen: list[tuple[int, str]] = field(default_factory=list)  # (count, clause) of every response
    # what can put the host in a known state or move its clock: host_life's ControlledLife or StartedLife
    life: Any = None
    connect_errors: list[str] = field(default_factory=list)  # connections that could not open, this check
    _profile: HostProfile | None = None

    @property
    def name(self) -> str:
        return f"{'embedded reference host ' if self.embedded else ''}{format_address(self.host, self.port)}"

    @property
    def runner(self) -> Runner:
        return Runner(self.host, self.port, self.timeout, on_session=self.recorded.append,
                      on_request=self._note_request, on_answer=self._note_answer,
                      on_connect_error=self._note_connect_error)

    def _note_connect_error(self, exc: OSError) -> None:
        self.connect_errors.append(exc.strerror or str(exc))

    def _note_request(self, request: KmsRequest) -> None:
        self.sent_entries[self.current_clause].add(f"{request.app_id}/{request.cmid}")
        if self.life is not None:
            self.life.touched()  # the client table is no longer the empty one it started with

    def _note_answer(self, outcome: Outcome) -> None:
        if isinstance(outcome, Response) and outcome.opened is not None:
            self.counts_seen.append((outcome.opened.response.count, self.current_clause))

    def end_check(self) -> dict[str, list[str]]:
        """The client entries sent since the last call, by clause (or LEARNING), and back to LEARNING."""
        sent = {name: sorted(entries) for name, entries in self.sent_entries.items() if entries}
        self.sent_entries.clear()
        self.current_clause = LEARNING
        return sent

    @property
    def audit_cmid(self) -> uuid.UUID:
        return self.pinned_cmid or audit_cmid((self.host, self.port))

    @property
    def serves(self) -> HostProfile:
        """What the host serves, learned on first use (the probes are the footprint's LEARNING entry)."""
        if self._profile is None:
            clause, self.current_clause = self.current_clause, LEARNING
            quiet = Runner(self.host, self.port, self.timeout, on_request=self._note_request,
                           on_answer=self._note_answer, on_connect_error=self._note_connect_error)  # no evidence
            try:
                self._profile = HostProfile.learn(self.catalog, self.protocols,
                                                  lambda e, p: quiet.activate(self.request(p, edition=e)))
            finally:
                self.current_clause = clause
        return self._profile

    def edition(self, key: str | uuid.UUID) -> catalog_mod.Edition:
        return self.catalog.edition(key)

    def request(self, protocol: int | None = None, edition: catalog_mod.Edition | None = None, *,
                fresh: bool = False, **fields: Any) -> KmsRequest:
        """A request as a client living on the host's (possibly advanced) clock would send it: an edition the
        host activates for `protocol` (default: the newest it serves), the audit's CMID unless `fresh`."""
        if protocol is None:
            protocol = edition.protocol if edition is not None else self.serves.newest
        edition = edition or self.serves.edition_for(protocol)
        if self.clock_offset and "request_time" not in fields:
            fields["request_time"] = filetime_now() + int(self.clock_offset * 10**7)
        if "cmid" not in fields or fields["cmid"] is None:
            fields["cmid"] = uuid.uuid4() if fresh else self.audit_cmid
        fields.setdefault("workstation", AUDIT_WORKSTATION)
        return build_request(edition, protocol=protocol, **fields)

    def activate(self, request: KmsRequest | None = None, options: BindOptions = BindOptions(),
                 protocol: int | None = None, payload: bytes | None = None) -> Activation:
        return self.runner.activate(request or self.request(protocol), options, payload)

    def session(self) -> Session:
        """A new connection whose exchanges land in the check's evidence."""
        return self.runner.session()

    def send_raw(self, data: bytes, *, half_close: bool = True) -> tuple[Outcome, Transcript]:
        return self.runner.send_raw(data, half_close=half_close)

    def alive_request(self) -> KmsRequest:
        return self.request(self.serves.newest)

    def alive(self) -> Activation:
        """The liveness probe: `outcome.is_kms_answer` (integrity is KMS-MSG-002's business, not liveness')."""
        return self.activate(self.alive_request())
