"""The state of one conformance run, kept in one object in `config.stash`: its validated settings and results."""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pytest

from conformance.net.address import format_address

from .expectations import Deviation

VERDICT_PROPERTY = "kms_verdict"  # report.user_properties entries: JSON, so junitxml and xdist carry them as text
EVIDENCE_PROPERTY = "kms_evidence"
FOOTPRINT_PROPERTY = "kms_footprint"
FUZZ_SHARD_PROPERTY = "kms_fuzz_shard"


@dataclass(frozen=True)
class Settings:
    """The validated options of one conformance run."""

    target: tuple[str, int] | None
    control: tuple[str, int] | None
    protocols: tuple[int, ...]
    profile: str
    key_group: str
    timeout: float
    activation_interval: int
    renewal_interval: int
    expectations: dict[str, Deviation]
    expect_source: str | None
    strict: bool
    client_cmd: str | None
    dns: tuple[str, tuple[str, int], int] | None  # domain, server, advertised port
    clause_patterns: tuple[str, ...]
    audit_cmid: uuid.UUID | None = None  # --audit-cmid: the safe clauses' one CMID, pinned
    target_cmd: str | None = None  # --target-cmd: the suite (and each fuzz shard) starts the host itself
    client_report: "ClientReport | None" = None  # how the client under test says it activated or rejected an answer
    disc_weight_runs: int | None = None  # --disc-weight-runs: runs of the weight clause (default: its own)
    disc_namespace: bool = True  # False (tests only): the discovery lab never uses a private namespace

    @property
    def embedded(self) -> bool:
        """No host named (--target) or started (--target-cmd): the embedded reference host, and its client."""
        return self.target is None and not self.target_cmd

    @property
    def client_only(self) -> bool:
        """--client-cmd without a host under test: the client is what is under test, not the embedded host."""
        return bool(self.client_cmd) and self.embedded

    @property
    def host_name(self) -> str:
        if self.target_cmd:
            return f"`{self.target_cmd}` (started by the suite)"
        return format_address(*self.target) if self.target else "embedded reference host"

    @property
    def target_name(self) -> str:
        if self.client_only:
            return f"client: {self.client_cmd}"
        if self.client_cmd:
            return f"{self.host_name}; client: {self.client_cmd}"
        return self.host_name

    def target_of(self, area: str) -> str:
        """What a clause of this area judged: the client (CLI, DISC) or the host."""
        if area in ("CLI", "DISC"):
            return f"client: {self.client_cmd}" if self.client_cmd else "reference client"
        return self.host_name


@dataclass(frozen=True)
class ClientReport:
    """How a client under test reports its result: its exit status (0: activated), or patterns of its output."""

    exit_status: bool = False
    activated: str | None = None  # --client-activated REGEX
    rejected: str | None = None  # --client-rejected REGEX

    def describe(self) -> str:
        if self.exit_status:
            return "exit status 0 = activated, any other = not"
        parts = [f"activated: /{self.activated}/" if self.activated else "",
                 f"rejected: /{self.rejected}/" if self.rejected else ""]
        return ", ".join(p for p in parts if p)


@dataclass
class KmsRun:
    settings: Settings
    conformance: bool  # the user asked for a conformance run, or the suite was collected
    # clause id -> one record per check: verdict, message, expected, actual
    results: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    evidence: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    footprint: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # clause -> "app/CMID" sent
    fuzz_shards: list[dict] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # clause -> why the footprint rules left it out
    # malformed inputs this process sent (ROB-002..004, ROB-001's own): ROB-001 sends its own when there were none
    negative_inputs: int = 0

    @property
    def target_name(self) -> str:
        return self.settings.target_name

    @property
    def host_name(self) -> str:
        return self.settings.host_name


RUN_KEY = pytest.StashKey[KmsRun]()


def run_of(config: pytest.Config) -> KmsRun:
    return config.stash[RUN_KEY]
