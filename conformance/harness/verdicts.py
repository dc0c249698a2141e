"""Clause verdicts: from each check's report to summary.json, the console summary and the exit status.

Verdicts, worst first: fail (a MUST clause failed), xpass (a declared deviation that passed:
stale), warn (a SHOULD clause failed; exit 0 unless --strict), inconclusive (the host's state
hides the rule), xfail (a declared deviation, matched by its actual outcome), pass, skip.
Under pytest-xdist every record travels on the report's user_properties to the controller.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from pathlib import Path

import pytest

from . import clauses as clause_registry
from .evidence import ClauseFailure, HostWentDown, Inconclusive, transcript_text
from .profile import NotServed
from .run import EVIDENCE_PROPERTY, FOOTPRINT_PROPERTY, FUZZ_SHARD_PROPERTY, VERDICT_PROPERTY, KmsRun, run_of
from .selection import clause_of
from .sharding import is_xdist_worker, write_fuzz_report

VERDICT_ORDER = ("fail", "xpass", "warn", "inconclusive", "xfail", "pass", "skip")
STATUS = {  # pytest_report_teststatus: category, letter, word
    "warn": ("warn", "W", "WARN"),
    "inconclusive": ("inconclusive", "I", "INCONCLUSIVE"),
    "xfail": ("xfailed", "x", "XFAIL (declared)"),
}
EVIDENCE_KEY = pytest.StashKey[list]()
FAILURE_EVIDENCE_KEY = pytest.StashKey[Path]()  # the pcap of a check whose rule broke (recording writes it)
VERDICT_KEY = pytest.StashKey[dict]()


class _ReportCollector:
    """Gathers clause verdicts, evidence, footprint and fuzz shard records from the reports, wherever checks ran."""

    def __init__(self, run: KmsRun):
        self.run = run

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        run = self.run
        for name, value in report.user_properties:
            if name == VERDICT_PROPERTY and report.when != "teardown":
                record = json.loads(value)
                run.results[record["clause"]].append(record)
            elif name == EVIDENCE_PROPERTY and report.when == "teardown":
                data = json.loads(value)
                run.evidence[data["clause"]].extend(data["files"])
            elif name == FOOTPRINT_PROPERTY and report.when == "teardown":
                for clause, entries in json.loads(value).items():
                    run.footprint[clause].update(entries)
            elif name == FUZZ_SHARD_PROPERTY and report.when == "call":  # item properties reach teardown too
                run.fuzz_shards.append(json.loads(value))


def pytest_configure(config: pytest.Config) -> None:
    config.pluginmanager.register(_ReportCollector(run_of(config)), "kms-report-collector")


def _verdict_of(report: pytest.TestReport) -> str | None:
    for name, value in report.user_properties:
        if name == VERDICT_PROPERTY:
            return json.loads(value)["verdict"]
    return None


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    if report.when != "call":
        return None
    verdict = _verdict_of(report)
    return STATUS.get(verdict) if verdict else None


@pytest.hookimpl(tryfirst=True, specname="pytest_runtest_makereport")
def report_unjudged(item: pytest.Item, call: pytest.CallInfo) -> pytest.TestReport | None:
    """A check the host gave nothing to judge (nothing served, inconclusive, host down) is reported without the
    traceback pytest would format for a failure (a tenth of a second each); _judge below gives its verdict."""
    error = call.excinfo.value if call.excinfo is not None else None
    if call.when != "call" or not isinstance(error, (NotServed, Inconclusive, HostWentDown)):
        return None
    sections = [(f"Captured {key} {when}", content) for when, key, content in item._report_sections]
    return pytest.TestReport(item.nodeid, item.location, dict.fromkeys(item.keywords, 1), "skipped",
                             (str(item.path), (item.location[1] or 0) + 1, str(error)), "call", sections,
                             call.duration, call.start, call.stop, user_properties=item.user_properties)


@pytest.hookimpl(hookwrapper=True, trylast=True)  # inner: Allure and the console see the verdict we set
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    outcome = yield
    report: pytest.TestReport = outcome.get_result()
    clause = clause_of(item)
    if clause is None:
        return
    run = run_of(item.config)
    record: dict | None = None
    if report.when == "call" or (report.when == "setup" and (report.skipped or report.failed)):
        record = _judge(report, call, clause, run, item)
    if record is not None:
        report.user_properties.append((VERDICT_PROPERTY, json.dumps(record)))
        error = call.excinfo.value if call.excinfo is not None else None
        if isinstance(error, HostWentDown):  # the death is KMS-ROB-006's failure, not this clause's
            report.user_properties.append((VERDICT_PROPERTY, json.dumps(error.record)))
        item.stash[VERDICT_KEY] = record
        item.user_properties.append(("verdict", record["verdict"]))  # with the clause: a CI system's view
    if report.when == "teardown" and item.config.getoption("allure_report_dir", default=None):
        from .allure_labels import mark_verdict

        record = item.stash.get(VERDICT_KEY, {"verdict": "pass", "message": ""})
        mark_verdict(item.config, item.nodeid, record["verdict"], record["message"], run.target_name)
    if report.when == "teardown" and item.stash.get(EVIDENCE_KEY, None):
        report.user_properties.append((EVIDENCE_PROPERTY, json.dumps(
            {"clause": clause.id, "files": item.stash[EVIDENCE_KEY]})))


def _judge(report: pytest.TestReport, call: pytest.CallInfo, clause: clause_registry.Clause, run: KmsRun,
           item: pytest.Item) -> dict:
    record = {"clause": clause.id, "check": report.nodeid, "verdict": "pass", "message": ""}
    error = call.excinfo.value if call.excinfo is not None else None
    if isinstance(error, HostWentDown):
        why = f"not judged: {error} (see {error.record['clause']})"
        report.outcome = "skipped"
        report.longrepr = (str(report.fspath), report.location[1] or 0, why)
        return record | {"verdict": "skip", "message": why}
    if isinstance(error, NotServed):
        report.outcome = "skipped"
        report.longrepr = (str(report.fspath), report.location[1] or 0, f"Skipped: {error}")
        return record | {"verdict": "skip", "message": str(error)}
    if isinstance(error, Inconclusive):
        report.outcome = "skipped"
        report.longrepr = (str(report.fspath), report.location[1] or 0, f"inconclusive: {error}")
        return record | {"verdict": "inconclusive", "message": str(error)}
    if report.skipped:
        message = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        return record | {"verdict": "skip", "message": message.removeprefix("Skipped: ")}
    if not report.failed:
        return record
    failure = error if isinstance(error, ClauseFailure) else None
    message = str(error) if error is not None else str(report.longrepr)
    record |= {"message": message.strip()}
    if failure is not None:
        record |= failure.record()
        report.longrepr = _explain(clause, failure, item.config.get_verbosity() > 0,
                                   item.stash.get(FAILURE_EVIDENCE_KEY, None))
    deviation = run.settings.expectations.get(clause.id)
    if deviation is not None and report.when == "call" and failure is not None and failure.matches(deviation.actual):
        report.outcome = "skipped"
        report.wasxfail = deviation.reason
        return record | {"verdict": "xfail", "reason": deviation.reason}
    if clause.level == "SHOULD" and not run.settings.strict and report.when == "call":
        report.outcome = "passed"  # listed as a warning, and the run still exits 0
        return record | {"verdict": "warn"}
    return record | {"verdict": "fail"}


def _explain(clause: clause_registry.Clause, failure: ClauseFailure, verbose: bool, evidence: Path | None) -> str:
    """The console's account of a failure: the rule, expected/actual, one decoded exchange and where the evidence
    is; with -v every decoded exchange, then the bytes."""
    from conformance.pcap.decode import describe_transcript

    lines = [f"{clause.id} ({clause.level}) {clause.title}", f"  {failure}".replace("\n", "\n  ")]
    decoded = describe_transcript(failure.transcript) if failure.transcript else []
    if verbose and failure.transcript:
        if decoded:
            lines += ["  decoded:"] + [f"    {line}" for line in decoded]
        lines += ["  bytes:", transcript_text(failure.transcript)]
    elif decoded:
        more = f" (and {len(decoded) - 1} more: -v)" if len(decoded) > 1 else ""
        lines.append(f"  exchange {decoded[-1]}{more}")
    if evidence is not None:
        lines.append(f"  evidence: {_shown_path(evidence)} (and .json){'' if verbose else '; -v shows the bytes'}")
    return "\n".join(lines)


def _shown_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


def clause_verdict(run: KmsRun, cid: str, records: list[dict]) -> str:
    verdict = min((r["verdict"] for r in records), key=VERDICT_ORDER.index)
    if cid in run.settings.expectations and verdict == "pass":
        return "xpass"  # declared to fail, yet no check of the clause failed: the declaration is stale
    return verdict


def clause_records(run: KmsRun) -> list[dict]:
    records = []
    for cid, results in sorted(run.results.items()):
        clause = clause_registry.get(cid)
        verdict = clause_verdict(run, cid, results)
        chosen = next((r for r in results if r["verdict"] == verdict), results[0])
        message = chosen.get("message", "")
        if verdict == "xpass":
            message = f"stale deviation: declared to fail ({run.settings.expectations[cid].reason}), but passed"
        record = {"clause": cid, "title": clause.title, "area": clause.area, "level": clause.level,
                  "ref": clause.ref, "footprint": clause.footprint, "verdict": verdict, "message": message[:4000],
                  "target": run.settings.target_of(clause.area), "evidence": run.evidence.get(cid, []),
                  "entries_sent": len(run.footprint.get(cid, ())),
                  # each check's own verdict (Allure shows one result per check); a stale clause's are all stale
                  "checks": [{"check": r["check"], "verdict": "xpass" if verdict == "xpass" else r["verdict"]}
                             for r in results]}
        for key in ("expected", "actual", "detail", "reason"):
            if key in chosen:
                record[key] = chosen[key]
        records.append(record)
    return records


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """A stale declared deviation fails the run, as tlsfuzzer's XPASS does, and so does a clause failed by a
    record another check carried (the host's death, KMS-ROB-006, reported by the check it died in)."""
    run = run_of(session.config)
    if is_xdist_worker(session.config):
        return
    broken = [cid for cid, records in run.results.items() if clause_verdict(run, cid, records) in ("xpass", "fail")]
    if broken and session.exitstatus == 0:  # a stale declaration, or a failure carried by another check's report
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def summary_path(config: pytest.Config) -> Path:
    path = Path(config.getoption("--summary"))
    return path if path.is_absolute() else Path(config.invocation_params.dir) / path


@pytest.hookimpl(wrapper=True, tryfirst=True)  # outermost: the verdicts come last, after pytest's short summary
def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config):
    tr = terminalreporter
    if is_xdist_worker(config) or not run_of(config).results:
        return (yield)  # a worker (the controller writes the reports), or not a conformance run: nothing of ours
    tr.reportchars = "".join(c for c in tr.reportchars if c not in "sSx")  # skips and xfails: our lines, grouped
    outcome = yield
    _write_summary(tr, config)
    return outcome


def _write_summary(tr, config: pytest.Config) -> None:
    run = run_of(config)
    write_fuzz_report(tr, config)
    records = clause_records(run)
    path = summary_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(records, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    tr.section(f"KMS conformance: {run.target_name}")
    by_area: dict[str, list[dict]] = defaultdict(list)
    for record in records:
        by_area[record["area"]].append(record)
    for area, rows in by_area.items():
        counts = {v: [r for r in rows if r["verdict"] == v] for v in VERDICT_ORDER}
        summary = ", ".join(f"{len(ids)} {v}" for v, ids in counts.items() if ids)
        tr.write_line(f"{area:<6} {clause_registry.AREAS[area]:<40} {summary}")
        for verdict in ("fail", "xpass", "warn", "inconclusive", "xfail"):
            for r in counts[verdict]:
                word = {"xpass": "STALE", "xfail": "XFAIL"}.get(verdict, verdict.upper())
                said = f"declared: {r['reason']}" if verdict == "xfail" else r["message"]
                tr.write_line(f"         {word:<12} {r['clause']}: {_one_line(said)}"[:200])
    _skip_lines(tr, run)
    stale = [r["clause"] for r in records if r["verdict"] == "xpass"]
    if stale:
        tr.write_line(f"stale deviations ({', '.join(stale)}): declared to fail but passed; update the --expect "
                      f"file", red=True)
        tr.stats.setdefault("stale", []).extend(stale)
    if not run.settings.client_only:  # a client under test meets the harness's own host: no footprint to tell
        _footprint_lines(tr, run)
    tr.write_line(f"summary written to {path}")
    results = config.getoption("allure_report_dir", default=None)
    if results:
        from .allure_labels import mark_stale, write_run_description

        settings = run.settings
        mark_stale(results, {r["clause"]: r["message"] for r in records if r["verdict"] == "xpass"})
        write_run_description(results, {  # the verdicts after the target: Allure shows the first eight entries
            "Target": run.target_name, **_verdict_counts(records), "Client": settings.client_cmd,
            "Profile": settings.profile, "Protocols": ",".join(map(str, settings.protocols)),
            "Deviations": settings.expect_source,
            "Footprint": f"{len(set().union(*run.footprint.values())) if run.footprint else 0} client entries sent"})


def _skip_lines(tr, run: KmsRun) -> None:
    """The skipped checks, one line per reason: how many, which clauses."""
    by_reason: dict[str, list[str]] = defaultdict(list)
    for cid, results in sorted(run.results.items()):
        for r in results:
            if r["verdict"] == "skip":
                by_reason[_one_line(r["message"])].append(cid)
    if by_reason:
        tr.write_line(f"skipped: {sum(map(len, by_reason.values()))} checks, by reason")
    for reason, cids in sorted(by_reason.items(), key=lambda kv: -len(kv[1])):
        n = len(cids)
        tr.write_line(f"  {n} check{'s' if n > 1 else ' '} {_clause_span(cids)}: {reason}"[:300])


def _clause_span(cids: list[str]) -> str:
    """KMS-CLI-001, ..., KMS-CLI-009, KMS-DNS-001 -> KMS-CLI-001..009, KMS-DNS-001."""
    runs: list[list[str]] = []
    for cid in sorted(set(cids)):
        area, number = cid.rsplit("-", 1)
        last = runs[-1] if runs else None
        if last and last[0].rsplit("-", 1)[0] == area and int(last[-1].rsplit("-", 1)[1]) + 1 == int(number):
            last.append(cid)
        else:
            runs.append([cid])
    return ", ".join(r[0] if len(r) == 1 else f"{r[0]}..{r[-1].rsplit('-', 1)[1]}" for r in runs)


def _verdict_counts(records: list[dict]) -> dict[str, str]:
    """One metadata entry per verdict, short enough for Allure to show whole: "fail" = "5 clauses" (a key
    without spaces: environment.properties ends a key at the first one)."""
    counts = defaultdict(int)
    for record in records:
        counts[record["verdict"]] += 1
    return {v: f"{counts[v]} clause{'s' if counts[v] > 1 else ''}" for v in VERDICT_ORDER if counts[v]}


def _one_line(message: str) -> str:
    return " ".join(message.split())


def _footprint_lines(tr, run: KmsRun) -> None:
    """How many client entries (one CMID in one application's count) the run can have added to the host, and
    which clauses added them: the audit's CMID is the one several clauses share; the rest are fresh clients."""
    entries: set[str] = set().union(*run.footprint.values()) if run.footprint else set()
    users: dict[str, set[str]] = defaultdict(set)  # CMID -> clauses that sent it
    for clause, sent in run.footprint.items():
        for entry in sent:
            users[entry.split("/")[1]].add(clause)
    audit = {cmid for cmid, who in users.items() if len(who) > 1}
    fresh = {clause: sum(1 for e in sent if e.split("/")[1] not in audit) for clause, sent in run.footprint.items()}
    adders = ", ".join(f"{cid} {n}" for cid, n in sorted(fresh.items(), key=lambda kv: -kv[1]) if n)
    apps = len({e.split("/")[0] for e in entries})
    audited = sum(1 for e in entries if e.split("/")[1] in audit)
    tr.write_line(f"footprint: {len(entries)} client entr{'y' if len(entries) == 1 else 'ies'} sent to "
                  f"{run.host_name} (in {apps} application count{'s' if apps != 1 else ''})"
                  + (f"; {audited} with the audit's CMID, shared by "
                     f"{len(set().union(*(users[c] for c in audit)))} clauses" if audit else "")
                  + (f"; fresh clients from {adders}" if adders else ""))
    if run.left_out:
        kinds = sorted(set(run.left_out.values()))
        safe_only = tr.config.getoption("--safe-only")
        tr.write_line(f"left out on a host that may be production: {len(run.left_out)} clauses "
                      f"({', '.join(kinds)}): {', '.join(sorted(run.left_out))}; "
                      + ("--safe-only keeps them out, whatever else asks for them" if safe_only else
                         "--intrusive runs them"))
