"""Reading VQAv2 / OK-VQA in their official formats, choosing subsets, and checking everything before work starts."""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zsvqa.errors import InputError

DATASETS = ("vqav2", "okvqa")
# COCO_val2014_000000000042.jpg, COCO_train2014_..., or a bare 000000000042.jpg / 42.jpg
_IMAGE_NAME = re.compile(r"(?:^|_)0*(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


@dataclass
class VQAQuestion:
    question_id: int
    image_id: int
    question: str
    answers: list[str] = field(default_factory=list)  # the ten human answers, if annotated
    answer_type: str = ""
    question_type: str = ""
    multiple_choice_answer: str = ""


@dataclass
class VQADataset:
    name: str
    questions: list[VQAQuestion]
    image_paths: dict[int, Path]  # image id -> file, for the questions' images
    annotated: bool

    def by_image(self) -> dict[int, list[VQAQuestion]]:
        """Questions grouped by image, in first-seen order, so each image is encoded once."""
        groups: dict[int, list[VQAQuestion]] = defaultdict(list)
        for question in self.questions:
            groups[question.image_id].append(question)
        return dict(groups)


def read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {str(path)!r} does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{what} file {str(path)!r} is not valid JSON: {error}") from error


def _records(data: Any, key: str, path: str | Path, fields: tuple[str, ...]) -> list[dict[str, Any]]:
    records = data.get(key) if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise InputError(f"{str(path)!r} has no {key!r} list; is it an official VQA {key} file?")
    for index, record in enumerate(records):
        missing = [f for f in fields if not isinstance(record, dict) or f not in record]
        if missing:
            raise InputError(f"{str(path)!r}: {key}[{index}] lacks {', '.join(missing)}")
    return records


def most_common_answer(answers: list[str]) -> str:
    return Counter(answers).most_common(1)[0][0] if answers else ""


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


def index_images(images_dir: str | Path) -> dict[int, Path]:
    """image id -> file, from one listing of the folder (COCO_val2014_%012d.jpg and the like)."""
    folder = Path(images_dir)
    if not folder.is_dir():
        raise InputError(f"images folder {str(folder)!r} does not exist")
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _IMAGE_NAME.search(path.name)
        if match:
            found.setdefault(int(match.group(1)), path)
    return found


def read_id_list(path: str | Path) -> list[int]:
    """Question ids from a JSON list or a file with one id per line."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read the question-ids file {str(path)!r}: {error.strerror}") from error
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else text.split()
        return [int(v) for v in values]
    except (ValueError, TypeError) as error:
        raise InputError(f"question-ids file {str(path)!r} must hold integer ids: {error}") from error


def select(
    questions: list[VQAQuestion],
    limit: int | None = None,
    question_ids: list[int] | None = None,
    split_by_image: bool = False,
    seed: int = 0,
) -> list[VQAQuestion]:
    """A reproducible subset, in the dataset's order.

    `question_ids` keeps those ids (unknown ids are an error). `limit` samples N questions under `seed`; with
    `split_by_image` it samples whole images instead, adding every question of each, until N are reached.
    """
    if question_ids is not None:
        known = {q.question_id for q in questions}
        unknown = [i for i in question_ids if i not in known]
        if unknown:
            raise InputError(f"{len(unknown)} requested question ids are not in the questions file, e.g. {unknown[:5]}")
        wanted = set(question_ids)
        questions = [q for q in questions if q.question_id in wanted]
    if limit is None or limit >= len(questions):
        return questions
    if limit < 1:
        raise InputError(f"--limit must be at least 1; got {limit}")
    rng = random.Random(seed)
    if split_by_image:
        groups: dict[int, list[VQAQuestion]] = defaultdict(list)
        for q in questions:
            groups[q.image_id].append(q)
        chosen: set[int] = set()
        for image_id in rng.sample(sorted(groups), len(groups)):
            if sum(len(groups[i]) for i in chosen) >= limit:
                break
            chosen.add(image_id)
        return [q for q in questions if q.image_id in chosen]
    keep = set(rng.sample(range(len(questions)), limit))
    return [q for i, q in enumerate(questions) if i in keep]


def load_dataset(
    name: str,
    questions_path: str | Path,
    annotations_path: str | Path | None,
    images_dir: str | Path | None,
    limit: int | None = None,
    question_ids_path: str | Path | None = None,
    split_by_image: bool = False,
    seed: int = 0,
) -> VQADataset:
    """Read and check a split: every selected question must have its image (when images are needed)."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    questions = read_questions(questions_path, annotations_path)
    ids = read_id_list(question_ids_path) if question_ids_path else None
    questions = select(questions, limit, ids, split_by_image, seed)
    image_paths: dict[int, Path] = {}
    if images_dir is not None:
        available = index_images(images_dir)
        missing = sorted({q.image_id for q in questions if q.image_id not in available})
        if missing:
            raise InputError(
                f"{len(missing)} images have no file in {str(images_dir)!r}, e.g. image ids {missing[:5]} "
                f"(expected names like COCO_val2014_{missing[0]:012d}.jpg)"
            )
        image_paths = {q.image_id: available[q.image_id] for q in questions}
    return VQADataset(name, questions, image_paths, annotated=annotations_path is not None)


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """A file by what it holds (size and SHA-256), so the same data given by another path is the same data."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def read_captions_file(path: str | Path) -> dict[int, list[str]]:
    """Precomputed captions: a plain {image_id: [captions]} JSON, or the COCO captions annotation format."""
    data = read_json(path, "captions")
    captions: dict[int, list[str]] = defaultdict(list)
    try:
        if isinstance(data, dict) and "annotations" in data:
            for record in data["annotations"]:
                captions[int(record["image_id"])].append(str(record["caption"]).strip())
        elif isinstance(data, dict):
            for image_id, values in data.items():
                values = [values] if isinstance(values, str) else values
                captions[int(image_id)] += [str(v).strip() for v in values]
        else:
            raise TypeError("expected a JSON object")
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"captions file {str(path)!r} must be {{image_id: [captions]}} or COCO captions annotations: {error}"
        ) from error
    return dict(captions)


def check_captions_cover(
    questions: list[VQAQuestion], captions: dict[int, list[str]], source: str = "the precomputed captions"
) -> None:
    """Every image of the questions needs a non-empty caption, checked before work as image files are."""
    missing = sorted({q.image_id for q in questions if not any(c.strip() for c in captions.get(q.image_id, []))})
    if missing:
        raise InputError(f"{len(missing)} images have no captions in {source}, e.g. image ids {missing[:5]}")
