"""The state of one conformance run, kept in one object in `config.stash`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .options import Settings

VERDICT_PROPERTY = "kms_verdict"  # report.user_properties entries: JSON, so junitxml and xdist carry them as text
EVIDENCE_PROPERTY = "kms_evidence"
FOOTPRINT_PROPERTY = "kms_footprint"
FUZZ_SHARD_PROPERTY = "kms_fuzz_shard"


@dataclass
class KmsRun:
    settings: "Settings"
    conformance: bool  # the user asked for a conformance run, or the suite was collected
    # clause id -> one record per check: verdict, message, expected, actual
    results: dict[str, list[dict]] = field(default_factory=lambda: defaultdict(list))
    evidence: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))
    footprint: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))  # clause -> CMIDs sent
    fuzz_shards: list[dict] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # clause -> why the footprint rules left it out

    @property
    def target_name(self) -> str:
        return self.settings.target_name


RUN_KEY = pytest.StashKey[KmsRun]()


def run_of(config: pytest.Config) -> KmsRun:
    return config.stash[RUN_KEY]
