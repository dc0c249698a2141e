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
