"""Every fault of the faulty host fails exactly its own clauses in the whole default suite, saying why.

The suite runs in full (every clause, as a user runs it) against a reference host with one
fault; the clauses that fail (MUST) or warn (SHOULD) must be exactly the fault's `breaks`, every
other clause must end as it does on the same host without the fault (or, for the fault's `hides`,
inconclusive or skipped: never a pass bought by skipping), and each pinned verdict must name the
broken rule in its structured expected/actual.
"""

import json
from pathlib import Path

import pytest

from faults import FAULTS, HIDES, PINS
from conformance.harness.clauses import load as load_clauses
from conformance.process.faketime import find_library
from faulty import broken_verdict, run_started_suite, run_suite

_baselines: dict[str, dict[str, str]] = {}


def baseline(fault, tmp_path: Path) -> dict[str, str]:
    """Verdicts of the same host without the fault (run once per host configuration)."""
    key = json.dumps(fault.baseline, sort_keys=True, default=str)
    if key not in _baselines:
        records = run_suite(tmp_path / "baseline", **fault.baseline)
        _baselines[key] = {cid: r["verdict"] for cid, r in records.items()}
    return _baselines[key]


@pytest.mark.parametrize("fault", FAULTS, ids=[f.name for f in FAULTS])
def test_fault_fails_exactly_its_own_clauses(tmp_path, fault):
    records = run_suite(tmp_path, **fault.config)
    broken = {cid for cid, r in records.items() if r["verdict"] in ("fail", "warn")}
    shown = {cid: (records[cid]["verdict"], records[cid].get("actual")) for cid in broken ^ fault.breaks
             if cid in records}
    assert broken == fault.breaks, f"{fault.name}: broke {sorted(broken)}, must break {sorted(fault.breaks)}: {shown}"
    before = baseline(fault, tmp_path)
    changed = {cid for cid, r in records.items() if r["verdict"] != before.get(cid)} - fault.breaks
    assert changed == fault.hides, {cid: (before.get(cid), records[cid]["verdict"]) for cid in changed ^ fault.hides
                                     if cid in records}
    assert all(records[cid]["verdict"] in ("inconclusive", "skip") for cid in fault.hides)
    for cid in broken:
        assert records[cid]["verdict"] == broken_verdict(cid), records[cid]
    for cid, (field, text) in fault.pins.items():
        assert text in json.dumps(records[cid].get(field)), (cid, field, records[cid])


def test_every_quirk_is_a_fault_with_something_to_break():
    from conformance.faults.quirks import Quirk

    for quirk in Quirk:
        assert quirk.breaks, f"{quirk.value} breaks nothing: a dead fault"
        assert quirk.description


def test_every_pinned_or_hidden_fault_exists():
    # PINS and HIDES are keyed by name: a misspelt key would silently drop its pins or hides. faults.py reads
    # them only by quirk value (misconfiguration faults carry theirs inline), so any other key is dropped too
    from conformance.faults.quirks import Quirk

    names = {quirk.value for quirk in Quirk}
    assert set(PINS) <= names, sorted(set(PINS) - names)
    assert set(HIDES) <= names, sorted(set(HIDES) - names)


# --- the same proofs through the other means: a host the suite starts itself (--target-cmd), no control channel ---
# a fresh start empties it, libfaketime moves its clock; every fault of a rule those means judge must fail exactly
# its own clauses there too, the rest ending as on the same host without the fault

_started_baselines: dict[str, dict[str, str]] = {}
JUDGED_BY_A_START = {c.id for c in load_clauses().values() if {"fresh", "clock", "restart"} & set(c.means)}
STARTED_FAULTS = [f for f in FAULTS if f.breaks & JUDGED_BY_A_START]


# the areas whose verdicts depend on the means (the others are the same checks on the same host, proven above)
STARTED_AREAS = ["KMS-THR", "KMS-CACHE", "KMS-TIME", "KMS-ROB"]


def started_baseline(fault, tmp_path: Path) -> dict[str, str]:
    key = json.dumps(fault.baseline, sort_keys=True, default=str)
    if key not in _started_baselines:
        records = run_started_suite(tmp_path / "baseline", f"baseline:{fault.name}", clauses=STARTED_AREAS)
        _started_baselines[key] = {cid: r["verdict"] for cid, r in records.items()}
    return _started_baselines[key]


@pytest.mark.skipif(find_library() is None, reason="needs libfaketime (Debian faketime; `make setup` installs it)")
@pytest.mark.parametrize("fault", STARTED_FAULTS, ids=[f.name for f in STARTED_FAULTS])
def test_fault_fails_exactly_its_own_clauses_on_a_started_host(tmp_path, fault):
    records = run_started_suite(tmp_path, fault.name, clauses=STARTED_AREAS)
    broken = {cid for cid, r in records.items() if r["verdict"] in ("fail", "warn")}
    assert broken == fault.breaks & {cid for cid in records}, {cid: (records[cid]["verdict"], records[cid].get("actual"))
                                    for cid in broken ^ fault.breaks if cid in records}
    before = started_baseline(fault, tmp_path)
    changed = {cid for cid, r in records.items() if r["verdict"] != before.get(cid)} - fault.breaks
    hides = fault.hides & set(records)
    assert changed == hides, {cid: (before.get(cid), records[cid]["verdict"]) for cid in changed ^ hides}
    for cid, (field, text) in ((c, p) for c, p in fault.pins.items() if c in records):
        assert text in json.dumps(records[cid].get(field)), (cid, field, records[cid])


def test_a_host_that_forgets_its_clients_at_restart_fails_only_rob_007(tmp_path):
    forgets = run_started_suite(tmp_path / "memory", "none", db=False, clauses=STARTED_AREAS)
    keeps = run_started_suite(tmp_path / "file", "none", clauses=STARTED_AREAS)
    assert {cid for cid, r in forgets.items() if r["verdict"] in ("fail", "warn")} == {"KMS-ROB-007"}
    assert {cid: r["verdict"] for cid, r in forgets.items() if cid != "KMS-ROB-007"} == \
        {cid: r["verdict"] for cid, r in keeps.items() if cid != "KMS-ROB-007"}
