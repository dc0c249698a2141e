"""Each check's evidence: its exchanges as pcap and decoded JSON (--evidence-dir; a check that breaks its rule,
in reports/evidence/ without it), and in an Allure run the clause's labels and, at the top level of the check,
the decoded fields, the annotated hex and the pcap."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest

from .evidence import ClauseFailure, exchanges_of
from .selection import clause_of
from .verdicts import EVIDENCE_KEY, FAILURE_EVIDENCE_KEY, summary_path


def _allure_run(config: pytest.Config) -> bool:
    return bool(config.getoption("allure_report_dir", default=None))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """Label each check in Allure from its clause, before its fixtures run (a skip in one keeps the labels)."""
    clause = clause_of(item)
    if clause is not None and _allure_run(item.config):
        from . import allure_labels

        allure_labels.apply(clause, (getattr(item, "function", None).__doc__ or "").strip())


@pytest.hookimpl(hookwrapper=True, trylast=True)  # inner to Allure's own wrapper: attachments land on the test
def pytest_runtest_call(item: pytest.Item):
    outcome = yield
    directory = item.config.getoption("--evidence-dir")
    allure_run = _allure_run(item.config)
    clause = clause_of(item)
    failure = outcome.excinfo[1] if outcome.excinfo else None
    broken = isinstance(failure, ClauseFailure)
    if not (directory or allure_run or broken) or clause is None:
        return
    found = exchanges_of(item)
    if found is None:
        return
    transcripts, address = found
    if not transcripts and broken and failure.transcript:  # judged on exchanges a fixture made (Table 1's)
        transcripts = [failure.transcript]
    if not transcripts:
        return
    with tempfile.TemporaryDirectory() as scratch:
        # a broken rule's exchanges are kept without --evidence-dir too: the console points to them
        kept = directory or (summary_path(item.config).parent / "evidence" if broken else scratch)
        base = Path(kept) / f"{clause.id}-{item.name}".replace("/", "_")
        base.parent.mkdir(parents=True, exist_ok=True)
        pcap, decoded = write_evidence(base, transcripts, address)
        if allure_run:
            from .allure_labels import attach_evidence

            attach_evidence(transcripts, pcap, decoded)
        if broken:
            item.stash[FAILURE_EVIDENCE_KEY] = pcap
        if directory:
            # reported with the teardown (verdicts.pytest_runtest_makereport), which reaches the xdist controller
            item.stash.setdefault(EVIDENCE_KEY, []).extend([pcap.name, decoded.name])


def write_evidence(base: Path, transcripts: list, host: tuple[str, int]) -> tuple[Path, Path]:
    from conformance.pcap.decode import decode_tcp, exchanges_json
    from conformance.pcap.reader import read_connections
    from conformance.pcap.writer import write_pcap

    pcap = write_pcap(base.with_suffix(".pcap"), transcripts, host=host)
    try:
        decoded = exchanges_json([decode_tcp(c) for c in read_connections(pcap)])
    except ValueError as exc:
        decoded = [{"error": str(exc)}]
    path = base.with_suffix(".json")
    path.write_text(json.dumps(decoded, indent=2, default=str), encoding="utf-8")
    return pcap, path
