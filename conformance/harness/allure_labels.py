"""Allure labels for a check, derived from its clause (epic = area, feature = source, story = id)."""

from __future__ import annotations

from .clauses import Clause


def apply(clause: Clause, description: str) -> None:
    import allure

    allure.dynamic.epic(clause.area_title)
    allure.dynamic.feature(clause.ref)
    allure.dynamic.story(clause.id)
    allure.dynamic.severity(allure.severity_level.CRITICAL if clause.level == "MUST" else allure.severity_level.NORMAL)
    allure.dynamic.label("clause", clause.id)
    allure.dynamic.title(f"{clause.id}: {clause.title}")
    allure.dynamic.description(f"{clause.level}: {clause.title}\n\nSource: {clause.ref}.\n\n{description}".strip())


def attach_evidence(transcripts, pcap, decoded_json) -> None:
    """Every exchange of a check: annotated hex, the decoded fields, and the pcap."""
    import allure

    from .evidence import transcript_text

    hexdump = "\n\n".join(transcript_text(t) for t in transcripts)
    allure.attach(hexdump, name="exchanges (annotated hex)", attachment_type=allure.attachment_type.TEXT)
    allure.attach.file(str(decoded_json), name="decoded fields", attachment_type=allure.attachment_type.JSON)
    allure.attach.file(str(pcap), name="exchanges.pcap", extension="pcap")


def _test_result(config, nodeid: str):
    """Allure's open result for a check (allure-pytest's listener holds it until the check's log finishes)."""
    listener = config.pluginmanager.get_plugin("allure_listener")
    if listener is None:
        return None
    try:
        return listener.allure_logger.get_test(listener._cache.get(nodeid))
    except (AttributeError, KeyError):  # another allure-pytest: the labels and categories still say it
        return None


# Each verdict as an Allure status (design: README, "Reports"). Allure's success rate is passed / (passed +
# failed + broken), so every broken rule, declared or not, keeps it below 100%; unknown and skipped stay out of it.
STATUS = {
    "fail": "failed",  # a MUST clause is broken
    "xpass": "failed",  # a declaration gone stale fails the run as a broken MUST does
    # a broken rule all the same; not marked known: Allure leaves accepted failures out of its success rate
    "xfail": "failed",
    "warn": "broken",  # a SHOULD clause is broken: not passed, not the MUST failures' red
    "inconclusive": "unknown",  # neither passed nor skipped: the host's state hid the rule
    "pass": "passed",
    "skip": "skipped",
}
WORDS = {  # each non-pass result's message opens with its verdict
    "fail": "FAIL (a MUST clause is broken)", "xpass": "STALE (a declared deviation passed)",
    "xfail": "XFAIL (a declared deviation)", "warn": "WARN (a SHOULD clause is not met)",
    "inconclusive": "INCONCLUSIVE (the host's state hides the rule)", "skip": "SKIP",
}
# Allure 3's categories, matched on the verdict label: one per verdict that is not a pass or a skip
CATEGORIES = [{"name": name, "matchers": {"labels": {"verdict": f"^{verdict}$"}}} for verdict, name in (
    ("fail", "MUST clauses failed (fail)"), ("xpass", "Declared deviations gone stale (xpass)"),
    ("warn", "SHOULD clauses not met (warn)"), ("inconclusive", "Inconclusive: the host's state hides the rule"),
    ("xfail", "Declared deviations (xfail)"))]


def allure_config(output: str) -> dict:
    """The Allure 3 configuration `kmsconf report` generates with (allurerc.json): one HTML file, grouped by
    clause (the story label), with the categories above."""
    return {"name": "KMS conformance", "output": output, "categories": CATEGORIES,
            "plugins": {"awesome": {"options": {"reportName": "KMS conformance", "singleFile": True,
                                                "groupBy": ["story"]}}}}


def mark_verdict(config, nodeid: str, verdict: str, message: str, target: str) -> None:
    """The KMS host under test as the `host` label (not the machine that ran pytest), and the check's verdict
    as its Allure status (STATUS), its message opening with the verdict."""
    from allure_commons.model2 import Label, StatusDetails, TestStepResult

    result = _test_result(config, nodeid)
    if result is None:
        return
    result.labels = [label for label in result.labels if label.name != "host"]
    result.labels += [Label(name="host", value=target), Label(name="verdict", value=verdict)]
    result.status = STATUS[verdict]
    if verdict != "pass":
        trace = result.statusDetails.trace if result.statusDetails else None
        result.statusDetails = StatusDetails(message=f"{WORDS[verdict]}: {message}"[:2000], trace=trace)
    if result.status == "unknown":  # the page shows no message box for this status: a first step says why
        result.steps.insert(0, TestStepResult(name=f"{WORDS[verdict]}: {message}"[:2000], status="unknown",
                                              start=result.start, stop=result.start))


def mark_stale(results_dir: str, stale: dict[str, str]) -> None:
    """Each check of a stale clause (clause id -> why) as failed: only the whole run shows that no check of a
    declared clause failed, so the results written as each check ended are rewritten."""
    import json
    from pathlib import Path

    for path in Path(results_dir).glob("*-result.json"):
        result = json.loads(path.read_text(encoding="utf-8"))
        clause = next((l["value"] for l in result.get("labels", []) if l["name"] == "clause"), None)
        if clause not in stale or result.get("status") != "passed":
            continue
        result["status"] = STATUS["xpass"]
        result["statusDetails"] = {"message": f"{WORDS['xpass']}: {stale[clause]}"}
        result["labels"] = [l for l in result["labels"] if l["name"] != "verdict"] + [{"name": "verdict",
                                                                                     "value": "xpass"}]
        path.write_text(json.dumps(result), encoding="utf-8")


def write_run_description(results_dir: str, environment: dict[str, str]) -> None:
    """environment.properties (what was tested, with what) into the Allure results."""
    from pathlib import Path

    directory = Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={str(value).replace(chr(10), ' ')}" for key, value in environment.items() if value]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
