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
from faulty import broken_verdict, run_suite

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
    from conformance.reference.quirks import Quirk

    for quirk in Quirk:
        assert quirk.breaks, f"{quirk.value} breaks nothing: a dead fault"
        assert quirk.description


def test_every_pinned_or_hidden_fault_exists():
    # PINS and HIDES are keyed by name: a misspelt key would silently drop its pins or hides. faults.py reads
    # them only by quirk value (misconfiguration faults carry theirs inline), so any other key is dropped too
    from conformance.reference.quirks import Quirk

    names = {quirk.value for quirk in Quirk}
    assert set(PINS) <= names, sorted(set(PINS) - names)
    assert set(HIDES) <= names, sorted(set(HIDES) - names)
