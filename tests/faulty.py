"""Run the conformance suite against a deliberately faulty reference host and read its verdicts.

This is how the project proves each clause can fail: start a reference host with
a quirk (conformance/faults) on loopback, run `pytest conformance/suite` against it in
a subprocess with --target/--control, and return the per-clause records of
summary.json.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conformance.faults.host import faulty_host_thread
from conformance.harness import clauses as clause_table
from conformance.reference.host.config import HostConfig
from conformance.reference.host.server import HostThread

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "conformance" / "suite"


def host_thread(*, quirks=frozenset(), fixed_count: int | None = None, **config) -> HostThread:
    """The reference host of a fault's settings (faults.py's Fault.config): HostConfig fields, and its quirks."""
    if quirks:
        return faulty_host_thread(HostConfig(**config), quirks, fixed_count=fixed_count)
    return HostThread(HostConfig(**config))


def run_suite(tmp_path: Path, *, clauses: list[str] = (), extra: list[str] = (), **config) -> dict[str, dict]:
    """Verdict records by clause id (the given clauses, else every clause of the default run), against a
    reference host with a control channel built from `config`."""
    summary = tmp_path / "summary.json"
    selection = ["--clause", ",".join(clauses)] if clauses else []
    with host_thread(port=0, control=True, **config) as thread:
        host, port = thread.host.address
        ctl_host, ctl_port = thread.host.control_address
        argv = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                "--target", f"{host}:{port}", "--control", f"{ctl_host}:{ctl_port}",
                "--summary", str(summary), *selection, *extra]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if not summary.exists():
        raise AssertionError(f"suite run wrote no summary (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    records = {r["clause"]: r for r in json.loads(summary.read_text())}
    missing = set(clauses) - set(records)
    if missing:
        raise AssertionError(f"no verdict for {sorted(missing)}:\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    return records


def run_started_suite(tmp_path: Path, fault: str, *, db: bool = True, clauses: list[str] = (),
                      extra: list[str] = ()) -> dict[str, dict]:
    """Verdict records by clause id of a run whose host the suite starts itself (--target-cmd, no control
    channel): the faulty host of `fault` ("none", or "baseline:NAME" for that fault's host without the fault),
    its clients in {dir}/host.sqlite unless not `db`."""
    command = f"{sys.executable} {ROOT / 'tests' / 'faulty_host_process.py'} {{port}} {fault}" + \
        (" {dir}/host.sqlite" if db else "")
    return suite_records(tmp_path, ["--target-cmd", command], clauses, extra)


def suite_records(tmp_path: Path, target: list[str], clauses: list[str] = (), extra: list[str] = ()) -> dict[str, dict]:
    summary = tmp_path / "summary.json"
    selection = ["--clause", ",".join(clauses)] if clauses else []
    argv = [sys.executable, "-m", "pytest", str(SUITE), "-q", "-p", "no:cacheprovider", "-p", "no:randomly", *target,
            "--summary", str(summary), *selection, *extra]
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=300)
    if not summary.exists():
        raise AssertionError(f"suite run wrote no summary (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return {r["clause"]: r for r in json.loads(summary.read_text())}


def broken_verdict(clause_id: str) -> str:
    """The verdict a broken clause gets: a broken MUST fails, a broken SHOULD warns (the one place this rule lives)."""
    return "warn" if clause_table.get(clause_id).level == "SHOULD" else "fail"
