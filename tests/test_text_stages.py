"""Candidates, rule-based questions and prompt rendering, against golden files; prompt budget trimming."""

import json

import pytest

from conftest import CAPTIONS, assert_golden
from zsvqa.candidates import AnswerCandidate, AnswerCandidateExtractor
from zsvqa.config import CandidateConfig, PromptConfig, QuestionGenConfig
from zsvqa.errors import InputError
from zsvqa.prompting import PromptBuilder, QAExemplar, select_captions
from zsvqa.question_generation import QuestionGenerator


@pytest.fixture(scope="module")
def candidates() -> list[AnswerCandidate]:
    return AnswerCandidateExtractor(CandidateConfig())(CAPTIONS)


def test_candidates_golden(candidates: list[AnswerCandidate]) -> None:
    rows = [f"{c.text}\t{c.kind}\t{c.count}\t{c.caption_indices}\t{c.head}" for c in candidates]
    assert_golden("candidates.tsv", "\n".join(rows) + "\n")


def test_candidates_ranked_limited_and_yes_no(candidates: list[AnswerCandidate]) -> None:
    counts = [c.count for c in candidates if c.kind != "yesno"]
    assert counts == sorted(counts, reverse=True)
    assert [c.text for c in candidates[-2:]] == ["yes", "no"]
    assert all(len(c.text.split()) < 4 for c in candidates)
    few = AnswerCandidateExtractor(CandidateConfig(max_candidates=3))(CAPTIONS)
    assert len(few) == 3 + 2 and [c.text for c in few[:3]] == [c.text for c in candidates[:3]]


def test_template_questions_golden(candidates: list[AnswerCandidate]) -> None:
    exemplars = QuestionGenerator(QuestionGenConfig(backend="template"))(candidates, CAPTIONS)
    assert_golden("template_questions.json", json.dumps([e.__dict__ for e in exemplars], indent=1) + "\n")
    assert {"what color is the bicycle?", "how many cars are there?"} <= {e.question for e in exemplars}


def test_long_answers_dropped() -> None:
    long = AnswerCandidate("a very long answer of words", "chunk", 1, [0])
    short = AnswerCandidate("bike", "noun", 1, [0])
    exemplars = QuestionGenerator(QuestionGenConfig(backend="template"))([long, short], ["a man on a bike"])
    assert [e.answer for e in exemplars] == ["bike"]


def test_no_question_generator_gives_no_exemplars(candidates: list[AnswerCandidate]) -> None:
    assert QuestionGenerator(QuestionGenConfig(backend="none"))(candidates, CAPTIONS) == []


EXEMPLARS = [QAExemplar("what is the man riding?", "bicycle", CAPTIONS[0]), QAExemplar("is it red?", "yes", CAPTIONS[3])]


@pytest.mark.parametrize("style", ["img2llm", "pica", "unifiedqa"])
def test_prompt_golden(style: str) -> None:
    config = PromptConfig(style=style, captions_per_passage=1 if style == "unifiedqa" else None)
    prompt = PromptBuilder(config)("What color is the bike?", CAPTIONS[:2], EXEMPLARS)
    assert_golden(f"prompt_{style}.txt", prompt.text + "\n")


def test_unifiedqa_passages_use_literal_backslash_n() -> None:
    prompt = PromptBuilder(PromptConfig(style="unifiedqa", captions_per_passage=1))("What Color?", CAPTIONS[:3])
    assert prompt.passages == [f"what color? \\n {c}" for c in CAPTIONS[:3]]


def test_caption_selection_covers_rarest_candidates_first() -> None:
    captions = ["a dog", "a dog and a cat", "a dog on grass"]
    candidates = [
        AnswerCandidate("dog", "noun", 3, [0, 1, 2]),
        AnswerCandidate("cat", "noun", 1, [1]),
        AnswerCandidate("grass", "noun", 1, [2]),
    ]
    assert select_captions(captions, candidates, 2) == ["a dog and a cat", "a dog on grass"]
    assert select_captions(captions, candidates, 3) == ["a dog and a cat", "a dog on grass", "a dog"]


def words(text: str) -> int:
    return len(text.split())


def test_budget_drops_exemplars_then_captions_never_the_question() -> None:
    question = "what is on the table near the window?"
    full = PromptBuilder(PromptConfig())(question, CAPTIONS, EXEMPLARS)
    budget = words(full.text) - 1
    prompt = PromptBuilder(PromptConfig(), words, budget)(question, CAPTIONS, EXEMPLARS)
    assert (prompt.dropped_exemplars, prompt.dropped_captions) == (1, 0)
    assert prompt.num_tokens <= budget and question in prompt.text

    no_exemplars = PromptBuilder(PromptConfig())(question, CAPTIONS, [])
    tight = PromptBuilder(PromptConfig(), words, words(no_exemplars.text) - 1)(question, CAPTIONS, EXEMPLARS)
    assert tight.exemplars == [] and tight.dropped_captions == 1 and tight.captions == CAPTIONS[:-1]
    assert tight.text.rstrip().endswith(f"Question: {question}\nAnswer:")

    with pytest.raises(InputError, match="question alone"):
        PromptBuilder(PromptConfig(), words, 3)(question, CAPTIONS, EXEMPLARS)


def test_custom_template_file(tmp_path) -> None:
    template = tmp_path / "mine.txt"
    template.write_text("{{ captions | length }} captions. Q: {{ question }} A:\n")
    prompt = PromptBuilder(PromptConfig(template=str(template)))("why?", CAPTIONS)
    assert prompt.text == "4 captions. Q: why? A:"
    with pytest.raises(InputError, match="cannot read prompt template"):
        PromptBuilder(PromptConfig(template=str(tmp_path / "missing.txt")))
