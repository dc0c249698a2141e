"""Judgments that need no network: what the checks conclude from answers already gathered, as plain functions.

The checks (conformance/suite) gather counts and answers from the host; these functions say what they mean, so
each rule's arithmetic and set algebra is tested on its own (tests/test_judgments.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Hashable, Mapping, Protocol, Sequence


def saturating(start: int, cap: int, extra: int) -> list[int]:
    """start+1, ..., cap, then cap `extra` more times: what new clients see while the cache fills."""
    return list(range(start + 1, cap + 1)) + [cap] * extra


def wrong_steps(counts: Sequence[int], cap: int) -> list[str] | None:
    """The steps between successive new clients' counts that are not +1 while below `cap` (at the cap the oldest
    entry makes room instead); None when no step starts below the cap, so none can show the rule."""
    steps = [(a, b) for a, b in zip(counts, counts[1:]) if a < cap]
    if not steps:
        return None
    return [f"{a} -> {b}" for a, b in steps if b != a + 1]


def repeat_hidden(first: int, again: int, moved: int, cap: int) -> str | None:
    """Why an unchanged count for a repeated CMID says nothing (None: it says the repeat was not counted): the
    count could not move at all, since a new CMID (`moved`) did not raise it either."""
    if moved > again:
        return None
    why = (f"the count is at the cap of 2 x N = {cap}" if again >= cap
           else "a new CMID did not raise the count either (see KMS-THR-001)")
    return f"{why} (counts {first}, {again}, then {moved} for a new CMID): a repeat cannot be told from a new client"


def judge_one_count(seen: Sequence[tuple[int, int]], drift: int) -> str:
    """"one count", a reason it is two, or "inconclusive: why", for interleaved (N policy, count) answers."""
    counts = [c for _, c in seen]
    if all(abs(b - a) <= drift for a, b in zip(counts, counts[1:])):
        return "one count"  # any change between neighbours is what arriving or expiring clients can do
    groups = {n: [c for m, c in seen if m == n] for n in {n for n, _ in seen}}
    steady = all(max(g) - min(g) <= drift for g in groups.values())
    if steady:
        shown = "; ".join(f"N = {n} requests saw {g}" for n, g in sorted(groups.items(), reverse=True))
        return (f"{shown}: two counts side by side, each steady, seconds apart; one client table gives every "
                f"request the same count whatever its N")
    return (f"inconclusive: the count moved by more than {drift} between requests seconds apart ({counts}): "
            f"too busy a host to tell one count from two")


class HostKey(Protocol):
    name: str
    activates: frozenset


class Named(Protocol):
    name: str


class KeyAnswer(Protocol):
    edition: Named
    epid: str | None
    accepted: bool


@dataclass
class KeyMismatch:
    """How a host's answers disagree with the host key(s) its ePIDs name (KMS-GRP-004)."""

    unknown: list[str]  # ePIDs naming no known key: not judged
    beyond: dict[str, list[str]] = field(default_factory=dict)  # key name(s) -> editions activated it does not cover
    within: dict[str, list[str]] = field(default_factory=dict)  # key name(s) -> editions it covers, refused
    evidence: list = field(default_factory=list)  # the answers that show it, in the order found
    judged: bool = True  # False: no ePID named a known key, so nothing could be judged

    @property
    def actual(self) -> dict:
        """The mismatch as a verdict's actual: empty when the answers match their keys."""
        names = sorted(set(self.beyond) | set(self.within))
        out: dict = {"named key": names[0] if len(names) == 1 else names} if names else {}
        if self.beyond:
            out["activated beyond it"] = sorted({e for editions in self.beyond.values() for e in editions})
        if self.within:
            out["refused within it"] = sorted({e for editions in self.within.values() for e in editions})
        return out


def epid_key_mismatch(answers: Mapping[Hashable, KeyAnswer],
                      named: Mapping[str, Sequence[HostKey]]) -> KeyMismatch:
    """Judge answers (KMS id -> answer) against the keys each answer's ePID names (`named`: ePID -> keys). An
    edition activated with an ePID whose keys all leave its KMS id out is beyond them; a KMS id every key of an
    ePID activates (keys whose ranges coincide: their common part) must be activated."""
    result = KeyMismatch(unknown=sorted(e for e, keys in named.items() if not keys))
    for kms_id, answer in answers.items():
        keys = named.get(answer.epid) if answer.epid else None
        if keys and not any(kms_id in k.activates for k in keys):
            activated = result.beyond.setdefault(" / ".join(k.name for k in keys), [])
            if answer.edition.name not in activated:
                activated.append(answer.edition.name)
                result.evidence.append(answer)
    for keys in named.values():
        if not keys:
            continue
        for kms_id in frozenset.intersection(*(k.activates for k in keys)):
            answer = answers.get(kms_id)
            if answer is not None and not answer.accepted:
                refused = result.within.setdefault(" / ".join(k.name for k in keys), [])
                if answer.edition.name not in refused:  # several ePIDs (py-kms: one per request) name one key
                    refused.append(answer.edition.name)
                    result.evidence.append(answer)
    result.judged = bool(result.beyond or result.within or not result.unknown or len(result.unknown) < len(named))
    return result
