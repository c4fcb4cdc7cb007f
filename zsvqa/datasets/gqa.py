"""GQA in its official format (the balanced question files, e.g. testdev_balanced_questions.json), its accuracy
and its prediction file.

The metric is exact match against the one answer, reported overall and per structural and per semantic type as
the official evaluation groups them. The official script compares raw strings; GQA's answers are lower case
without punctuation or articles, so the prediction gets the VQA answer normalization first (as LAVIS does for
generated GQA answers): "The table." is "table". The gold answer is normalized the same way, which leaves GQA's
own answers as they are; LAVIS leaves it unnormalized (`gqa_accuracy_lavis`, reported beside).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zsvqa.datasets.base import DatasetFormat, VQAQuestion, image_key, index_image_stems, read_json, rescore
from zsvqa.errors import InputError
from zsvqa.metric import summarize_records
from zsvqa.normalize import normalize_vqa_answer, normalize_whitespace, process_digits_and_articles, process_punctuation

METRIC = "gqa-accuracy (exact match after VQA answer normalization)"


def _question(question_id: str, record: Any, where: str) -> tuple[VQAQuestion, bool]:
    """One question and whether it carries an answer; a malformed record is an InputError naming it."""
    label = f"{where}: question {question_id!r}"
    if not isinstance(record, dict):
        raise InputError(f"{label} is not an object")
    missing = [f for f in ("imageId", "question") if f not in record]
    if missing:
        raise InputError(f"{label} lacks {', '.join(missing)}")
    if not isinstance(record["question"], str) or not record["question"].strip():
        raise InputError(f"{label} has an empty question")
    if not isinstance(record["imageId"], (str, int)) or not str(record["imageId"]).strip():
        raise InputError(f"{label} has no usable imageId")
    types = record.get("types") or {}
    if not isinstance(types, dict):
        raise InputError(f"{label}: types must be an object with structural and semantic")
    question = VQAQuestion(
        question_id, image_key(record["imageId"]), record["question"].strip(),
        answer_type=str(types.get("structural", "")), question_type=str(types.get("semantic", "")),
    )
    if "answer" not in record:
        return question, False
    if not isinstance(record["answer"], str) or not record["answer"].strip():
        raise InputError(f"{label} has an empty answer")
    if not question.answer_type:
        # The typed metrics group answered questions by types.structural: refused, not counted under "?".
        raise InputError(f"{label} has an answer but no types.structural (verify, query, choose, logical or compare)")
    question.answers = [record["answer"]]
    return question, True


def read_gqa(path: str | Path) -> tuple[list[VQAQuestion], bool]:
    """The questions in file order, and whether they carry answers (the challenge files do not)."""
    data = read_json(path, "GQA questions")
    where = repr(str(path))
    if not isinstance(data, dict) or isinstance(data.get("questions"), list):
        raise InputError(f"{where} is not a JSON object keyed by question id; is it an official GQA questions file?")
    if not data:
        raise InputError(f"{where} holds no questions")
    read = [_question(str(question_id), record, where) for question_id, record in data.items()]
    annotated = [has_answer for _, has_answer in read]
    if any(annotated) and not all(annotated):
        raise InputError(f"{where}: some questions have an answer and others do not, e.g. {read[annotated.index(False)][0].question_id!r}")
    return [question for question, _ in read], annotated[0]


def _normal(text: str) -> str:
    return normalize_vqa_answer(normalize_whitespace(text))


def gqa_accuracy(prediction: str, answer: str) -> float:
    """1.0 for an exact match after normalization, else 0.0."""
    return float(_normal(prediction) == _normal(answer))


def gqa_accuracy_lavis(prediction: str, answer: str) -> float:
    """LAVIS's GQA score for generated answers (PNP-VQA's GQA figure; lavis/tasks/vqa_reading_comprehension.py):
    the prediction normalized (punctuation, number words, articles), the answer compared exactly as written."""
    return float(process_digits_and_articles(process_punctuation(prediction)) == answer)


def summarize_gqa(records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
    """Overall accuracy and accuracy per structural and per semantic type, in %."""
    metrics = summarize_records(records, questions, METRIC)
    metrics["per_structural_type"] = metrics.pop("per_answer_type")
    metrics["per_semantic_type"] = metrics.pop("per_question_type")
    return metrics


def predictions(records: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The official prediction file: [{"questionId": ..., "prediction": ...}]."""
    return [{"questionId": str(r["question_id"]), "prediction": r["answer"]} for r in records]


class GQA(DatasetFormat):
    """Exact match against the one answer, overall and per structural and semantic type."""

    name = "gqa"
    carries_answers = True

    def read(self, questions_path: str | Path, annotations_path: str | Path | None) -> tuple[list[VQAQuestion], bool]:
        return read_gqa(questions_path)

    def index_images(self, images_dir: str | Path) -> dict[int | str, Path]:
        return index_image_stems(images_dir)

    def score(self, question: VQAQuestion, answer: str) -> float:
        return gqa_accuracy(answer, question.answers[0])

    def summarize(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        return summarize_gqa(records, questions)

    def submission(self, records: list[dict[str, Any]]) -> list[dict[str, str]]:
        return predictions(records)

    def papers_metrics(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        """LAVIS's GQA score: the prediction normalized, the gold answer as written."""
        rescored = rescore(records, questions, lambda question, answer: gqa_accuracy_lavis(answer, question.answers[0]))
        return {"gqa_accuracy_lavis": summarize_gqa(rescored, questions)}
