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


def mark_verdict(config, nodeid: str, verdict: str, message: str, target: str) -> None:
    """The KMS host under test as the `host` label (not the machine that ran pytest), and a verdict that
    pytest's outcome does not show (warn, inconclusive, xfail) as the result's status detail."""
    from allure_commons.model2 import Label, StatusDetails

    result = _test_result(config, nodeid)
    if result is None:
        return
    result.labels = [label for label in result.labels if label.name != "host"]
    result.labels += [Label(name="host", value=target), Label(name="verdict", value=verdict)]
    if verdict in ("warn", "inconclusive", "xfail"):
        word = {"warn": "WARN (a SHOULD clause is not met)", "inconclusive": "INCONCLUSIVE",
                "xfail": "XFAIL (a declared deviation)"}[verdict]
        result.statusDetails = StatusDetails(message=f"{word}: {message}"[:2000])


CATEGORIES = [
    {"name": "MUST clauses failed", "matchedStatuses": ["failed", "broken"]},
    {"name": "SHOULD clauses not met (warn)", "matchedStatuses": ["passed"], "messageRegex": "(?s)WARN.*"},
    {"name": "Inconclusive: the host's state hides the rule", "matchedStatuses": ["skipped"],
     "messageRegex": "(?s)INCONCLUSIVE.*"},
    {"name": "Declared deviations (xfail)", "matchedStatuses": ["skipped"], "messageRegex": "(?s)XFAIL.*"},
]


def write_run_description(results_dir: str, environment: dict[str, str]) -> None:
    """environment.properties (what was tested, with what) and categories.json into the Allure results."""
    import json
    from pathlib import Path

    directory = Path(results_dir)
    directory.mkdir(parents=True, exist_ok=True)
    lines = [f"{key}={str(value).replace(chr(10), ' ')}" for key, value in environment.items() if value]
    (directory / "environment.properties").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (directory / "categories.json").write_text(json.dumps(CATEGORIES, indent=2) + "\n", encoding="utf-8")
