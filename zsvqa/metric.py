"""The official VQA accuracy, written from its definition, and the reports built on it.

For each of the ten ground-truth answers, the prediction scores min(1, matches among the other nine / 3); the
question's accuracy is the mean of the ten. Answers are compared after the official normalization, which the
official script applies only when the ground-truth answers disagree among themselves; so does this one, so
that numbers match the official evaluation exactly.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from zsvqa.normalize import normalize_vqa_answer, normalize_whitespace


def vqa_accuracy(prediction: str, ground_truth: list[str]) -> float:
    """Accuracy of one prediction against the (usually ten) human answers, in [0, 1]."""
    if not ground_truth:
        raise ValueError("a question needs ground-truth answers to be scored")
    answers = [normalize_whitespace(a) for a in ground_truth]
    prediction = normalize_whitespace(prediction)
    if len(set(answers)) > 1:
        answers = [normalize_vqa_answer(a) for a in answers]
        prediction = normalize_vqa_answer(prediction)
    scores = []
    for held_out in range(len(answers)):
        matches = sum(1 for i, answer in enumerate(answers) if i != held_out and answer == prediction)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


@functools.lru_cache(maxsize=1)
def _lemmatizer() -> Any:
    from zsvqa.candidates import load_spacy

    return load_spacy("en_core_web_sm", with_lemmatizer=True)


@functools.lru_cache(maxsize=100_000)
def lemmatize(text: str) -> str:
    """Word lemmas ("dogs running" -> "dog run"), for the lemmatized OK-VQA variant."""
    return " ".join(token.lemma_.lower() for token in _lemmatizer()(text))


def lemmatized_vqa_accuracy(prediction: str, ground_truth: list[str]) -> float:
    """The Img2LLM-style OK-VQA variant: both sides normalized, then lemmatized, before the official score.

    Not the official metric; reports name it as such.
    """
    prediction = lemmatize(normalize_vqa_answer(prediction))
    return vqa_accuracy(prediction, [lemmatize(normalize_vqa_answer(a)) for a in ground_truth])


@dataclass
class ScoredQuestion:
    question_id: int | str
    accuracy: float  # in [0, 1]
    answer_type: str
    question_type: str


def summarize(scored: Iterable[ScoredQuestion], metric_name: str) -> dict[str, Any]:
    """Overall accuracy and accuracy per answer type and per question type, in percent as VQA reports them."""
    rows = list(scored)
    by_answer_type: dict[str, list[float]] = defaultdict(list)
    by_question_type: dict[str, list[float]] = defaultdict(list)
    for row in rows:
        by_answer_type[row.answer_type].append(row.accuracy)
        by_question_type[row.question_type].append(row.accuracy)

    def percent(values: list[float]) -> float:
        return round(100 * sum(values) / len(values), 2) if values else 0.0

    return {
        "metric": metric_name,
        "num_questions": len(rows),
        "overall": percent([r.accuracy for r in rows]),
        "per_answer_type": {k: percent(v) for k, v in sorted(by_answer_type.items())},
        "per_question_type": {k: percent(v) for k, v in sorted(by_question_type.items())},
    }
