"""A-OKVQA in its official format (aokvqa_v1p0_{split}.json), its two metrics, and its submission file.

Direct answer: each prediction scores min(1, matches among the ten direct answers / 3), over the questions not
marked difficult_direct_answer, as the official A-OKVQA evaluation scores it (not VQA's average over the ten
held-out subsets). Both sides are compared after the VQA answer normalization; the dataset's answers are already
in that form, so only the prediction changes ("The dog." -> "dog").
Multiple choice: the free answer is mapped to the most similar choice by a sentence embedding (as the A-OKVQA
baselines map free answers), and optionally the LLM picks the choice it gives the highest log-likelihood.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zsvqa.datasets.base import DatasetFormat, ScoringOptions, VQAQuestion, image_key, read_json
from zsvqa.embedding import embed, load_encoder
from zsvqa.errors import InputError
from zsvqa.normalize import normalize_vqa_answer, normalize_whitespace

REQUIRED = ("question_id", "image_id", "question", "choices")
ANSWER_FIELDS = ("correct_choice_idx", "direct_answers")  # absent from the test split
METRIC = "aokvqa-direct-answer (min(1, matches/3) over non-difficult questions, as the official evaluation)"


def _check_record(record: Any, index: int, where: str) -> bool:
    """Whether the record carries answers; a malformed one is an InputError naming it."""
    if not isinstance(record, dict):
        raise InputError(f"{where}: entry {index} is not an object")
    missing = [f for f in REQUIRED if f not in record]
    if missing:
        raise InputError(f"{where}: entry {index} lacks {', '.join(missing)}")
    label = f"{where}: question {record['question_id']!r}"
    if not isinstance(record["question_id"], (str, int)) or isinstance(record["question_id"], bool):
        raise InputError(f"{where}: entry {index} has a question_id that is not a string")
    if not isinstance(record["question"], str) or not record["question"].strip():
        raise InputError(f"{label} has an empty question")
    choices = record["choices"]
    # The official val file holds an empty choice ("What is the first player's initial?": 's', '', 'b', 'f'): it is
    # kept, so that correct_choice_idx still points at the right one, but never chosen.
    if not isinstance(choices, list) or not all(isinstance(c, str) for c in choices) or len(usable_choices(choices)) < 2:
        raise InputError(f"{label}: choices must be a list of strings, at least two of them non-empty")
    present = [f for f in ANSWER_FIELDS if f in record]
    if len(present) == 1:
        raise InputError(f"{label} has {present[0]} but not {[f for f in ANSWER_FIELDS if f not in present][0]}")
    if not present:
        return False
    correct = record["correct_choice_idx"]
    if not isinstance(correct, int) or isinstance(correct, bool) or not 0 <= correct < len(choices):
        raise InputError(f"{label}: correct_choice_idx {correct!r} is not an index into its {len(choices)} choices")
    answers = record["direct_answers"]
    if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
        raise InputError(f"{label}: direct_answers must be a non-empty list of strings")
    return True


def read_aokvqa(path: str | Path) -> tuple[list[VQAQuestion], bool]:
    """The questions, and whether they carry answers (val, train) or not (test: the run only predicts)."""
    data = read_json(path, "A-OKVQA questions")
    where = repr(str(path))
    if not isinstance(data, list):
        raise InputError(f"{where} is not a JSON list; is it an official aokvqa_v1p0_<split>.json?")
    if not data:
        raise InputError(f"{where} holds no questions")
    annotated = [_check_record(record, index, where) for index, record in enumerate(data)]
    if any(annotated) and not all(annotated):
        raise InputError(f"{where}: some questions carry answers and others do not, e.g. entry {annotated.index(False)}")
    questions = []
    for record in data:
        try:
            image_id = image_key(int(record["image_id"]))
        except (TypeError, ValueError):
            raise InputError(f"{where}: question {record['question_id']!r} has image_id {record['image_id']!r}, "
                             "not a COCO image number") from None
        question = VQAQuestion(
            record["question_id"], image_id, record["question"].strip(),
            choices=list(record["choices"]),
            difficult_direct_answer=bool(record.get("difficult_direct_answer", False)),
        )
        if annotated[0]:
            question.answers = list(record["direct_answers"])
            question.multiple_choice_answer = record["choices"][record["correct_choice_idx"]]
        questions.append(question)
    ids = [str(q.question_id) for q in questions]
    if len(set(ids)) != len(ids):
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"{where} repeats question ids, e.g. {repeated[:5]}")
    return questions, annotated[0]


def _normal(text: str) -> str:
    return normalize_vqa_answer(normalize_whitespace(text))


def usable_choices(choices: list[str]) -> list[str]:
    """The choices that can be chosen: the non-empty ones, in order."""
    return [c for c in choices if c.strip()]


def direct_answer_accuracy(prediction: str, direct_answers: list[str]) -> float:
    """min(1, matches / 3), in [0, 1]."""
    if not direct_answers:
        raise ValueError("a question needs direct answers to be scored")
    prediction = _normal(prediction)
    return min(1.0, sum(1 for answer in direct_answers if _normal(answer) == prediction) / 3)


class ChoiceMapper:
    """Maps a free answer to the most similar choice by cosine similarity of sentence embeddings."""

    def __init__(self, model: str, device: str = "cpu") -> None:
        self.model = model
        self.device = device
        self._encoder: Any = None  # loaded on first use: a run that resumes everything never loads it

    def load(self) -> Any:
        """The encoder; a run loads it before its first question, so a model that cannot load stops it before work."""
        if self._encoder is None:
            self._encoder = load_encoder(self.model, self.device, option="--set retrieval.embedding_model")
        return self._encoder

    def __call__(self, answer: str, choices: list[str]) -> str:
        choices = usable_choices(choices)
        exact = [c for c in choices if _normal(c) == _normal(answer)]
        if exact or not answer.strip():
            return exact[0] if exact else choices[0]  # an empty answer says nothing: the first choice, as a guess
        vectors = embed(self.load(), [answer, *choices])
        similarities = vectors[1:] @ vectors[0]
        return choices[int(similarities.argmax())]  # ties go to the first choice


def summarize_aokvqa(
    records: list[dict[str, Any]], questions: dict[Any, VQAQuestion], embedding_model: str
) -> dict[str, Any]:
    """Direct-answer accuracy (the headline `overall`) and multiple-choice accuracy per way of choosing, in %."""
    def percent(values: list[float]) -> float:
        return round(100 * sum(values) / len(values), 2) if values else 0.0

    direct = [r["accuracy"] for r in records if not questions[r["question_id"]].difficult_direct_answer]
    multiple_choice: dict[str, Any] = {}
    for way, model in (("embedding", embedding_model), ("llm", "the answerer")):
        key = f"choice_{way}"
        if way == "llm" and not any(key in r for r in records):
            continue
        hits = [float(r.get(key) == questions[r["question_id"]].multiple_choice_answer) for r in records]
        multiple_choice[way] = {"accuracy": percent(hits), "chosen_by": model}
    return {
        "metric": METRIC,
        "num_questions": len(records),
        "overall": percent(direct),
        "direct_answer": {"accuracy": percent(direct), "num_questions": len(direct)},
        "multiple_choice": multiple_choice,
    }


def submission(records: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
    """The official format: {question_id: {"multiple_choice": choice, "direct_answer": answer}}; the LLM's choice
    when choices were scored, else the embedding's."""
    return {
        str(r["question_id"]): {
            "multiple_choice": r.get("choice_llm") or r.get("choice_embedding", ""),
            "direct_answer": r["answer"],
        }
        for r in records
    }


class AOKVQA(DatasetFormat):
    """Direct answers scored as the official evaluation does; each free answer also mapped to a choice."""

    name = "aokvqa"
    carries_answers = True
    has_choices = True

    def __init__(self, options: ScoringOptions = ScoringOptions()) -> None:
        super().__init__(options)
        self.choice_mapper = ChoiceMapper(options.embedding_model, options.device)

    def read(self, questions_path: str | Path, annotations_path: str | Path | None) -> tuple[list[VQAQuestion], bool]:
        return read_aokvqa(questions_path)

    def image_name(self, image_id: int | str) -> str:
        return f"{image_id}.jpg" if isinstance(image_id, str) else f"{image_id:012d}.jpg"

    def score(self, question: VQAQuestion, answer: str) -> float:
        return direct_answer_accuracy(answer, question.answers)

    def summarize(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        return summarize_aokvqa(records, questions, self.options.embedding_model)

    def submission(self, records: list[dict[str, Any]]) -> dict[str, dict[str, str]]:
        return submission(records)

    def prepare(self) -> None:
        self.choice_mapper.load()

    def answer_fields(self, question: VQAQuestion, answer: str) -> dict[str, Any]:
        return {"choice_embedding": self.choice_mapper(answer, question.choices)}
