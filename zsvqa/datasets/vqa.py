"""VQAv2 and OK-VQA in their official format: a questions file and an annotations file (the ten human answers),
scored by the official VQA accuracy (OK-VQA also by its lemmatized variant), submitted as
[{"question_id": ..., "answer": ...}]."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from zsvqa import wordnet
from zsvqa.datasets.base import DatasetFormat, ScoringOptions, VQAQuestion, read_json, rescore
from zsvqa.errors import InputError
from zsvqa.metric import lemmatize_answer, lemmatized_vqa_accuracy, summarize_records, vqa_accuracy, vqa_accuracy_lavis
from zsvqa.normalize import okvqa_answer

LEMMATIZED_METRIC = "okvqa-lemmatized-accuracy (Img2LLM variant, not official)"
LAVIS_METRIC = "vqa-accuracy-lavis (prediction always normalized)"


def _records(data: Any, key: str, path: str | Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise InputError(f"{str(path)!r} has no {key!r} list; is it an official VQA {key} file?")
    for index, record in enumerate(records):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise InputError(f"{str(path)!r}: {key}[{index}] lacks {', '.join(missing)}")
    return records


def read_questions(questions_path: str | Path, annotations_path: str | Path | None = None) -> list[VQAQuestion]:
    """Questions, joined with their annotations when given; ids the annotations lack are an error."""
    records = _records(
        read_json(questions_path, "questions"), "questions", questions_path, ("question_id", "image_id", "question")
    )
    questions = [VQAQuestion(int(r["question_id"]), int(r["image_id"]), str(r["question"])) for r in records]
    duplicates = [qid for qid, n in Counter(q.question_id for q in questions).items() if n > 1]
    if duplicates:
        raise InputError(f"{str(questions_path)!r} repeats question ids, e.g. {duplicates[:5]}")
    if annotations_path is None:
        return questions
    annotations = {
        int(a["question_id"]): a
        for a in _records(
            read_json(annotations_path, "annotations"), "annotations", annotations_path, ("question_id", "answers")
        )
    }
    missing = [q.question_id for q in questions if q.question_id not in annotations]
    if missing:
        raise InputError(
            f"{len(missing)} question ids in {str(questions_path)!r} have no annotation in "
            f"{str(annotations_path)!r}, e.g. {missing[:5]}; are they the same split?"
        )
    for question in questions:
        annotation = annotations[question.question_id]
        if int(annotation.get("image_id", question.image_id)) != question.image_id:
            raise InputError(f"question {question.question_id}: the questions and annotations disagree on its image")
        question.answers = [str(a["answer"]) for a in annotation["answers"]]
        if not question.answers:
            raise InputError(f"question {question.question_id} has no ground-truth answers")
        question.answer_type = str(annotation.get("answer_type", ""))
        question.question_type = str(annotation.get("question_type", ""))
        question.multiple_choice_answer = str(annotation.get("multiple_choice_answer", ""))
    return questions


class VQAv2(DatasetFormat):
    name = "vqav2"

    def read(self, questions_path: str | Path, annotations_path: str | Path | None) -> tuple[list[VQAQuestion], bool]:
        return read_questions(questions_path, annotations_path), annotations_path is not None

    def image_name(self, image_id: int | str) -> str:
        return f"{image_id}.jpg" if isinstance(image_id, str) else f"COCO_val2014_{image_id:012d}.jpg"

    def score(self, question: VQAQuestion, answer: str) -> float:
        return (lemmatized_vqa_accuracy if self.options.lemmatized else vqa_accuracy)(answer, question.answers)

    def summarize(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        """Overall, per answer type and per question type, as VQA reports them."""
        return summarize_records(records, questions, LEMMATIZED_METRIC if self.options.lemmatized else "vqa-accuracy")

    def papers_metrics(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        """LAVIS's VQA accuracy (the prediction always normalized; with --lemmatized, of the lemmatized prediction,
        as Img2LLM's OK-VQA figure)."""
        prediction = lemmatize_answer if self.options.lemmatized else str
        rescored = rescore(records, questions, lambda question, answer: vqa_accuracy_lavis(prediction(answer),
                                                                                             question.answers))
        return {"vqa_accuracy_lavis": summarize_records(rescored, questions, LAVIS_METRIC)}

    def submission(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [{"question_id": r["question_id"], "answer": r["answer"]} for r in records]


class OKVQA(VQAv2):
    """OK-VQA: VQAv2's format and metric, and the lemmatized variant Img2LLM reports."""

    name = "okvqa"
    lemmatized_variant = True

    def __init__(self, options: ScoringOptions = ScoringOptions()) -> None:
        super().__init__(options)
        if options.lemmatized:
            wordnet.load()  # its absence is reported before any work

    def answer_form(self, answer: str) -> str:
        """OK-VQA's processed answers are lemmas ("banana", "fly kite")."""
        return okvqa_answer(answer)
