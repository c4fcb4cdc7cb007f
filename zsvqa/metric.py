"""The official VQA accuracy, written from its definition, the papers' lenient variant of it, and the reports
built on them.

For each of the ten ground-truth answers, the prediction scores min(1, matches among the other nine / 3); the
question's accuracy is the mean of the ten. Answers are compared after the official normalization, which the
official script applies only when the ground-truth answers disagree among themselves; so does `vqa_accuracy`,
so that numbers match the official evaluation exactly. `vqa_accuracy_lavis` is the scorer PNP-VQA's and
Img2LLM's figures came from (LAVIS's copy of the script, changed): it always normalizes the prediction.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

from zsvqa.normalize import normalize_vqa_answer, normalize_whitespace, process_punctuation


def _held_out_mean(prediction: str, answers: list[str]) -> float:
    """Each answer held out in turn: min(1, matches among the others / 3); the mean over the held-out ones."""
    scores = []
    for held_out in range(len(answers)):
        matches = sum(1 for i, answer in enumerate(answers) if i != held_out and answer == prediction)
        scores.append(min(1.0, matches / 3))
    return sum(scores) / len(scores)


def vqa_accuracy(prediction: str, ground_truth: list[str]) -> float:
    """Accuracy of one prediction against the (usually ten) human answers, in [0, 1]."""
    if not ground_truth:
        raise ValueError("a question needs ground-truth answers to be scored")
    answers = [normalize_whitespace(a) for a in ground_truth]
    prediction = normalize_whitespace(prediction)
    if len(set(answers)) > 1:
        answers = [normalize_vqa_answer(a) for a in answers]
        prediction = normalize_vqa_answer(prediction)
    return _held_out_mean(prediction, answers)


def vqa_accuracy_lavis(prediction: str, ground_truth: list[str]) -> float:
    """LAVIS's VQA accuracy (lavis/common/vqa_tools/vqa_eval.py), in [0, 1]: the prediction is always normalized
    (so "two" scores against ten "2"s), and the human answers, only when they disagree, lose their punctuation
    alone (no number words, articles, contractions or case), with no whitespace cleaning. Not the official metric.
    """
    if not ground_truth:
        raise ValueError("a question needs ground-truth answers to be scored")
    answers = list(ground_truth)
    if len(set(answers)) > 1:
        answers = [process_punctuation(a) for a in answers]
    return _held_out_mean(normalize_vqa_answer(prediction), answers)


@functools.lru_cache(maxsize=1)
def _tagger() -> Any:
    from zsvqa.candidates import load_spacy

    return load_spacy("en_core_web_sm", with_lemmatizer=True)


def _past_forms(tokens: list[str]) -> list[bool]:
    """Whether each token is tagged a past tense or past participle (VBD, VBN). Img2Prompt asks NLTK's averaged
    perceptron tagger, whose model NLTK downloads and nothing here can install: spaCy's tagger, which uses the
    same Penn Treebank tags, tags the same tokens instead (README "Scoring" measures what it can change)."""
    from spacy.tokens import Doc

    doc = Doc(_tagger().vocab, words=tokens)
    for _, component in _tagger().pipeline:
        doc = component(doc)
    return [token.tag_ in ("VBD", "VBN") for token in doc]


# Img2Prompt drops these words from a lemmatized answer (its list also holds "up to", which no token equals).
DROPPED_WORDS = frozenset({"to", "in", "on", "at", "with", "about", "for"})


@functools.lru_cache(maxsize=100_000)
def lemmatize_answer(answer: str) -> str:
    """Img2LLM's OK-VQA answer lemmatization (CR-Gjx/Img2Prompt utils.py, postprocess_Answer), applied to the
    prediction only: NLTK's word tokens, each lemmatized by WordNet as a verb and then as a noun ("dogs" -> "dog",
    "running" -> "run") unless it is tagged VBD or VBN, ends in "ed", or a token with a digit came before it;
    then the prepositions in DROPPED_WORDS removed. Needs WordNet (zsvqa/wordnet.py)."""
    from nltk.tokenize import word_tokenize

    from zsvqa import wordnet

    lemmas = wordnet.load()
    tokens = word_tokenize(answer.lower(), preserve_line=True)  # the answer is one sentence: no sentence model
    words, after_digit = [], False
    for token, past in zip(tokens, _past_forms(tokens) if tokens else []):
        after_digit = after_digit or any(c.isdigit() for c in token)
        if not (after_digit or past or token.endswith("ed")):
            token = lemmas.lemmatize(lemmas.lemmatize(token, "v"), "n")
        if token not in DROPPED_WORDS:
            words.append(token)
    return " ".join(words)


def lemmatized_vqa_accuracy(prediction: str, ground_truth: list[str]) -> float:
    """The Img2LLM OK-VQA variant: the official score of the lemmatized prediction (`lemmatize_answer`); the
    human answers are left as they are, as Img2Prompt leaves them. Not the official metric; reports name it so."""
    return vqa_accuracy(lemmatize_answer(prediction), ground_truth)


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


def summarize_records(records: list[dict[str, Any]], questions: dict[Any, Any], metric_name: str) -> dict[str, Any]:
    """`summarize` of evaluation records ({"question_id", "accuracy", ...}), typed by their questions."""
    return summarize(
        [
            ScoredQuestion(r["question_id"], r["accuracy"], questions[r["question_id"]].answer_type,
                           questions[r["question_id"]].question_type)
            for r in records
        ],
        metric_name,
    )
