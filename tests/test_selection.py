"""Selecting part of the suite as h2spec selects a section: --clause by id, area or pattern, -m by area or footprint."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conformance.harness import clauses

ROOT = Path(__file__).resolve().parents[1]


def clauses_run(tmp_path, *args) -> tuple[int, set[str], str]:
    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "pytest", "conformance/suite", "-q", "-p", "no:cacheprovider",
                           "--summary", str(summary), *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    ran = {r["clause"] for r in json.loads(summary.read_text()) if r["verdict"] != "skip"} if summary.exists() else set()
    return proc.returncode, ran, proc.stdout + proc.stderr


@pytest.mark.parametrize("args,area", [(["--clause", "KMS-RPC"], "RPC"), (["-m", "grp"], "GRP")],
                         ids=["clause-area", "marker-area"])
def test_one_area(tmp_path, args, area):
    code, ran, out = clauses_run(tmp_path, *args)
    assert code == 0 and ran == {c.id for c in clauses.select(area) if c.footprint != "fuzz"}, out


def test_pattern_and_ids(tmp_path):
    code, ran, out = clauses_run(tmp_path, "--clause", "KMS-MSG-00*,KMS-TIME-001")
    assert code == 0 and ran == {f"KMS-MSG-00{n}" for n in range(1, 10)} | {"KMS-TIME-001"}, out


def test_footprint_marker(tmp_path):
    code, ran, out = clauses_run(tmp_path, "-m", "counting")
    assert code == 0 and ran and all(clauses.get(c).footprint == "counting" for c in ran), out


def test_a_pattern_that_matches_nothing_is_a_usage_error(tmp_path):
    code, ran, out = clauses_run(tmp_path, "--clause", "KMS-FOO")
    assert code == 2 and "matches no clause" in out and len(out.strip().splitlines()) == 1, out


def test_select_reads_ids_areas_and_patterns():
    assert [c.id for c in clauses.select("kms-rpc-001")] == ["KMS-RPC-001"]
    assert {c.area for c in clauses.select("THR")} == {"THR"}
    assert clauses.select("KMS-NOPE-*") == []
