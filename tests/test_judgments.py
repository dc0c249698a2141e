"""The judgments the checks make without the network: counting deltas and KMS-GRP-004's key sets."""

from typing import NamedTuple

from conformance.harness.judgments import (epid_key_mismatch, judge_one_count, repeat_hidden, saturating,
                                           wrong_steps)


class Key(NamedTuple):
    name: str
    activates: frozenset


class Edition(NamedTuple):
    name: str


class Answer(NamedTuple):
    edition: Edition
    accepted: bool
    epid: str | None


def test_saturating_counts_up_to_the_cap_then_stays():
    assert saturating(0, 10, 2) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 10, 10]
    assert saturating(12, 10, 2) == [10, 10]


def test_wrong_steps_judges_only_below_the_cap():
    assert wrong_steps([3, 4, 5, 6], 10) == []
    assert wrong_steps([3, 5, 5, 6], 10) == ["3 -> 5", "5 -> 5"]
    assert wrong_steps([9, 10, 10], 10) == []  # 10 -> 10 is at the cap: the oldest entry made room
    assert wrong_steps([10, 10, 10], 10) is None  # no step below the cap: nothing to judge


def test_a_repeat_is_judged_only_where_a_new_cmid_moves_the_count():
    assert repeat_hidden(4, 4, 5, 50) is None
    assert repeat_hidden(50, 50, 50, 50).startswith("the count is at the cap of 2 x N = 50")
    assert repeat_hidden(4, 4, 4, 50).startswith("a new CMID did not raise the count either")


def test_one_count_two_counts_or_too_busy():
    assert judge_one_count([(25, 12), (5, 12), (25, 13), (5, 13)], 2) == "one count"
    two = judge_one_count([(25, 30), (5, 10), (25, 30), (5, 10)], 2)
    assert two.startswith("N = 25 requests saw [30, 30]; N = 5 requests saw [10, 10]: two counts"), two
    assert judge_one_count([(25, 10), (5, 30), (25, 20), (5, 5)], 2).startswith("inconclusive: ")


A, B, C = "a", "b", "c"  # KMS ids
SMALL = Key("small", frozenset({A}))
BIG = Key("big", frozenset({A, B}))


def test_answers_matching_their_key_show_no_mismatch():
    answers = {A: Answer(Edition("ea"), True, "e1"), B: Answer(Edition("eb"), False, None)}
    mismatch = epid_key_mismatch(answers, {"e1": [SMALL]})
    assert mismatch.judged and mismatch.actual == {} and mismatch.evidence == []


def test_an_activation_beyond_the_named_key():
    answers = {A: Answer(Edition("ea"), True, "e1"), B: Answer(Edition("eb"), True, "e1")}
    mismatch = epid_key_mismatch(answers, {"e1": [SMALL]})
    assert mismatch.actual == {"named key": "small", "activated beyond it": ["eb"]}
    assert mismatch.evidence == [answers[B]]


def test_a_refusal_within_the_keys_common_part():
    # two keys whose ranges the ePID names alike: only what both activate must be activated
    answers = {A: Answer(Edition("ea"), False, None), B: Answer(Edition("eb"), False, None),
               C: Answer(Edition("ec"), True, "e1")}
    mismatch = epid_key_mismatch(answers, {"e1": [SMALL, BIG]})
    assert mismatch.actual == {"named key": "small / big", "activated beyond it": ["ec"],
                               "refused within it": ["ea"]}
    assert mismatch.evidence == [answers[C], answers[A]]


def test_epids_naming_no_key_are_not_judged():
    answers = {A: Answer(Edition("ea"), True, "e1"), B: Answer(Edition("eb"), True, "e2")}
    mismatch = epid_key_mismatch(answers, {"e1": [], "e2": []})
    assert not mismatch.judged and mismatch.unknown == ["e1", "e2"]
    partly = epid_key_mismatch(answers, {"e1": [], "e2": [BIG]})
    assert partly.judged and partly.unknown == ["e1"] and partly.actual == {}
