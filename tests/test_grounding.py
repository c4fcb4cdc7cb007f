"""Caption grounding of yes/no questions, and how the answerer weighs it (hand-worked numbers, no model)."""

import math

import pytest

from zsvqa.answering import Answerer, AnswerRequest
from zsvqa.grounding import CaptionGrounder
from zsvqa.prompting import Prompt


@pytest.fixture(scope="module")
def grounder() -> CaptionGrounder:
    return CaptionGrounder()


@pytest.mark.parametrize("question,captions,asked,found,negated", [
    ("does the image contain a rectangle?", ["a black rectangle."], ["rectangle"], ["rectangle"], False),
    ("is there not a green shape?", ["a yellow triangle."], ["green", "shape"], ["shape"], True),
    ("Is the bus red?", ["A red double decker bus."], ["bus", "red"], ["bus", "red"], False),
    # Lemmas and COCO's synonyms: "bikes" is a bicycle, a "puppy" a dog, a general word found by a specific one.
    ("Are there bicycles?", ["two bikes parked by a wall"], ["bicycle"], ["bicycle"], False),
    ("Is there an animal?", ["a puppy on a couch"], ["animal"], ["animal"], False),
    ("Is there a dog?", ["an animal on a couch"], ["dog"], [], False),  # an animal need not be a dog
    ("Are there two cats?", ["two cats on a bed"], ["two", "cat"], ["two", "cat"], False),
    ("Is it raining?", ["a sunny street"], ["rain"], [], False),
    ("isn't there a dog?", ["a dog"], ["dog"], ["dog"], False),  # opens with a negative: still asks for yes
    ("is the cat not black?", ["a white cat"], ["cat", "black"], ["cat"], True),
])
def test_grounding_finds_the_asked_words(grounder, question, captions, asked, found, negated) -> None:
    grounding = grounder(question, captions)
    assert (grounding.asked, grounding.found, grounding.negated) == (asked, found, negated)


def test_evidence_is_the_found_share_turned_round_by_not(grounder) -> None:
    assert grounder("is there a red bus?", ["a red bus"]).evidence == 1.0
    assert grounder("is there a big bus?", ["a bus"]).evidence == 0.0  # one of two found
    assert grounder("is there a red bus?", ["a bus"]).evidence == 0.0  # no colour named: no contradiction
    # Another colour or number than the one asked contradicts it.
    assert grounder("is there a red bus?", ["a blue bus"]).contradicted == ["red"]
    assert grounder("is there a red bus?", ["a blue bus"]).evidence == -1.0
    assert grounder("are there two cats?", ["three cats on a bed"]).evidence == -1.0
    assert grounder("is there not a green shape?", ["a yellow triangle"]).evidence == 1.0
    assert grounder("is there a red bus?", ["a tree"]).evidence == -1.0
    assert grounder("is there not a red bus?", ["a tree"]).evidence == 1.0
    assert grounder("is it?", ["a tree"]).evidence == 0.0  # nothing asked: no evidence either way


class FixedLM:
    """Yes 0.7, no 0.3 after every prompt (content-free ones too)."""

    def score(self, prompt: str, continuations: list[str], shared_prefix: int = 0) -> list[float]:
        return [math.log({" yes\n": 0.7, " no\n": 0.3}.get(c, 0.5)) for c in continuations]


def test_grounding_and_bias_move_the_log_odds_by_hand() -> None:
    prompt = Prompt("p", [], [], [])
    odds = math.log(0.7 / 0.3)  # 0.847
    request = AnswerRequest(prompt, "is there a dog?", [], None, yes_evidence=-1.0)
    plain = Answerer(FixedLM(), "score").answer_many([request])[0]  # type: ignore[arg-type]
    assert plain.text == "yes"
    grounded = Answerer(FixedLM(), "score", grounding_weight=1.0).answer_many([request])[0]  # type: ignore[arg-type]
    # 0.847 - 1.0 < 0: "no", with the shift split evenly between the two answers.
    assert grounded.text == "no"
    assert grounded.choice_scores["yes"] - grounded.choice_scores["no"] == pytest.approx(odds - 1.0)
    biased = Answerer(FixedLM(), "score", yes_bias=-0.8).answer_many(  # type: ignore[arg-type]
        [AnswerRequest(prompt, "is there a dog?", [], None, 0.0)]
    )[0]
    assert biased.text == "yes"  # 0.847 - 0.8 > 0
    # A do / does question moves by yes_bias_do more: 0.847 - 1.0 (grounding) - 0.8 + 1.5 = 0.547.
    do_request = AnswerRequest(prompt, "Does the man have a dog?", [], None, yes_evidence=-1.0)
    leaning = Answerer(FixedLM(), "score", grounding_weight=1.0, yes_bias=-0.8, yes_bias_do=1.5)  # type: ignore[arg-type]
    do_answer, is_answer = leaning.answer_many([do_request, AnswerRequest(prompt, "is there a dog?", [], None, -1.0)])
    assert do_answer.choice_scores["yes"] - do_answer.choice_scores["no"] == pytest.approx(odds - 1.0 - 0.8 + 1.5)
    assert (do_answer.text, is_answer.text) == ("yes", "no")
    # Other questions are not moved.
    other = Answerer(FixedLM(), "score", grounding_weight=5.0, yes_bias=3.0).answer_many(  # type: ignore[arg-type]
        [AnswerRequest(prompt, "is it a cat or a dog?", [], None, -1.0)]
    )
    assert other[0].choice_scores == {"cat": pytest.approx(math.log(0.5)), "dog": pytest.approx(math.log(0.5))}
