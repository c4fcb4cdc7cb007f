"""Reading the datasets in their official formats (VQAv2 / OK-VQA here; A-OKVQA and GQA in their own modules),
choosing subsets, and checking everything before work starts."""

from __future__ import annotations

import errno
import hashlib
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zsvqa.errors import InputError

DATASETS = ("vqav2", "okvqa", "aokvqa", "gqa")
# A-OKVQA and GQA files carry their own answers; VQAv2 / OK-VQA keep them in a separate annotations file.
SELF_ANNOTATED = ("aokvqa", "gqa")
# COCO_val2014_000000000042.jpg, COCO_train2014_..., or a bare 000000000042.jpg / 42.jpg
_IMAGE_NAME = re.compile(r"(?:^|_)0*(\d+)\.(?:jpe?g|png)$", re.IGNORECASE)


@dataclass
class VQAQuestion:
    question_id: int | str  # as the file spells it: VQA ints, A-OKVQA and GQA strings
    image_id: int | str  # see image_key
    question: str
    answers: list[str] = field(default_factory=list)  # the ten human answers (GQA: its one answer), if annotated
    answer_type: str = ""  # GQA: the structural type (verify, query, choose, logical, compare)
    question_type: str = ""  # GQA: the semantic type (rel, attr, obj, cat, global)
    multiple_choice_answer: str = ""  # A-OKVQA: the correct choice, if annotated
    choices: list[str] = field(default_factory=list)  # A-OKVQA's multiple-choice options
    difficult_direct_answer: bool = False  # A-OKVQA: left out of the direct-answer metric, as officially


@dataclass
class VQADataset:
    name: str
    questions: list[VQAQuestion]
    image_paths: dict[int | str, Path]  # image id -> file, for the questions' images
    annotated: bool

    def by_image(self) -> dict[int | str, list[VQAQuestion]]:
        """Questions grouped by image, in first-seen order, so each image is encoded once."""
        groups: dict[int | str, list[VQAQuestion]] = defaultdict(list)
        for question in self.questions:
            groups[question.image_id].append(question)
        return dict(groups)


def image_key(value: int | str) -> int | str:
    """One spelling per image id, whatever the file used: 42, "42" and "000042" are the int 42 (COCO ids, GQA's
    numeric ids); others ("n161313") stay strings. Images, captions and questions all meet on this key."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


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


def check_images_folder(images_dir: str | Path) -> Path:
    """The images folder, or an InputError that says what the path is instead (a file, a link loop, nothing)."""
    folder = Path(images_dir)
    try:
        folder.stat()
    except (OSError, RuntimeError) as error:  # pathlib on Python < 3.13 raises RuntimeError for a symlink loop
        if isinstance(error, RuntimeError) or error.errno == errno.ELOOP:
            raise InputError(f"--images {str(folder)!r} is a symbolic link loop, not a folder") from error
        raise InputError(f"images folder {str(folder)!r} does not exist") from error
    if not folder.is_dir():
        raise InputError(f"--images {str(folder)!r} is a file, not a folder; give the folder that holds the images")
    return folder


def index_images(images_dir: str | Path) -> dict[int, Path]:
    """image id -> file, from one listing of the folder (COCO_val2014_%012d.jpg and the like)."""
    folder = check_images_folder(images_dir)
    found: dict[int, Path] = {}
    for path in folder.iterdir():
        match = _IMAGE_NAME.search(path.name)
        if match:
            found.setdefault(int(match.group(1)), path)
    return found


def read_id_list(path: str | Path) -> list[str]:
    """Question ids from a JSON list or a file with one id per line, as text: they are matched by their spelling,
    so integer (VQA) and string (A-OKVQA, GQA) ids work alike."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as error:
        raise InputError(f"cannot read the question-ids file {str(path)!r}: {error.strerror}") from error
    try:
        values = json.loads(text) if text.lstrip().startswith("[") else text.split()
    except ValueError as error:
        raise InputError(f"question-ids file {str(path)!r} is not a valid JSON list: {error}") from error
    if not isinstance(values, list) or not all(isinstance(v, (int, str)) and not isinstance(v, bool) for v in values):
        raise InputError(f"question-ids file {str(path)!r} must hold a list of ids (numbers or strings)")
    return [str(v).strip() for v in values]


def select(
    questions: list[VQAQuestion],
    limit: int | None = None,
    question_ids: list[str] | None = None,
    split_by_image: bool = False,
    seed: int = 0,
) -> list[VQAQuestion]:
    """A reproducible subset, in the dataset's order.

    `question_ids` keeps those ids (unknown ids are an error). `limit` samples N questions under `seed`; with
    `split_by_image` it samples whole images instead, adding every question of each, until N are reached.
    """
    if question_ids is not None:
        # By spelling, numbers without leading zeros ("0042" is 42, as when ids were read as ints).
        wanted = {str(image_key(i)) for i in question_ids}
        unknown = sorted(wanted - {str(image_key(q.question_id)) for q in questions})
        if unknown:
            raise InputError(f"{len(unknown)} requested question ids are not in the questions file, e.g. {unknown[:5]}")
        questions = [q for q in questions if str(image_key(q.question_id)) in wanted]
    if limit is None or limit >= len(questions):
        return questions
    if limit < 1:
        raise InputError(f"--limit must be at least 1; got {limit}")
    rng = random.Random(seed)
    if split_by_image:
        groups: dict[int | str, list[VQAQuestion]] = defaultdict(list)
        for q in questions:
            groups[q.image_id].append(q)
        chosen: set[int | str] = set()
        for image_id in rng.sample(sorted(groups, key=_id_order), len(groups)):
            if sum(len(groups[i]) for i in chosen) >= limit:
                break
            chosen.add(image_id)
        return [q for q in questions if q.image_id in chosen]
    keep = set(rng.sample(range(len(questions)), limit))
    return [q for i, q in enumerate(questions) if i in keep]


def _id_order(image_id: int | str) -> tuple[bool, int, str]:
    """Integer ids in numeric order (as before string ids existed, so a seed picks the same subset), then strings."""
    return (isinstance(image_id, str), image_id if isinstance(image_id, int) else 0, str(image_id))


def index_image_stems(images_dir: str | Path) -> dict[int | str, Path]:
    """image id -> file for folders named by id alone (GQA's images/<imageId>.jpg)."""
    folder = check_images_folder(images_dir)
    return {
        image_key(path.stem): path
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in (".jpg", ".jpeg", ".png")
    }


def expected_image_name(dataset: str, image_id: int | str) -> str:
    """How the official image folder names an image, for the message when one is missing."""
    if dataset == "gqa" or isinstance(image_id, str):
        return f"{image_id}.jpg"
    return f"{image_id:012d}.jpg" if dataset == "aokvqa" else f"COCO_val2014_{image_id:012d}.jpg"


def read_dataset_questions(
    name: str, questions_path: str | Path, annotations_path: str | Path | None
) -> tuple[list[VQAQuestion], bool]:
    """The questions of any supported dataset, and whether they carry answers to score against."""
    if name not in DATASETS:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    if name in SELF_ANNOTATED and annotations_path is not None:
        raise InputError(f"the {name} questions file carries its own answers; leave out --annotations")
    if name == "aokvqa":
        from zsvqa.aokvqa import read_aokvqa

        return read_aokvqa(questions_path)
    if name == "gqa":
        from zsvqa.gqa import read_gqa

        return read_gqa(questions_path)
    return read_questions(questions_path, annotations_path), annotations_path is not None


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
    questions, annotated = read_dataset_questions(name, questions_path, annotations_path)
    ids = read_id_list(question_ids_path) if question_ids_path else None
    questions = select(questions, limit, ids, split_by_image, seed)
    image_paths: dict[int | str, Path] = {}
    if images_dir is not None:
        available: dict[int | str, Path] = index_image_stems(images_dir) if name == "gqa" else dict(index_images(images_dir))
        missing = sorted({q.image_id for q in questions if q.image_id not in available}, key=_id_order)
        if missing:
            raise InputError(
                f"{len(missing)} images have no file in {str(images_dir)!r}, e.g. image ids {missing[:5]} "
                f"(expected names like {expected_image_name(name, missing[0])})"
            )
        image_paths = {q.image_id: available[q.image_id] for q in questions}
    return VQADataset(name, questions, image_paths, annotated=annotated)


def file_fingerprint(path: str | Path) -> dict[str, Any]:
    """A file by what it holds (size and SHA-256), so the same data given by another path is the same data."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return {"size": Path(path).stat().st_size, "sha256": digest.hexdigest()}


def read_captions_file(path: str | Path) -> dict[int | str, list[str]]:
    """Precomputed captions: a plain {image_id: [captions]} JSON, or the COCO captions annotation format."""
    data = read_json(path, "captions")
    captions: dict[int | str, list[str]] = defaultdict(list)
    try:
        if isinstance(data, dict) and "annotations" in data:
            for record in data["annotations"]:
                captions[image_key(record["image_id"])].append(str(record["caption"]).strip())
        elif isinstance(data, dict):
            for image_id, values in data.items():
                values = [values] if isinstance(values, str) else values
                captions[image_key(image_id)] += [str(v).strip() for v in values]
        else:
            raise TypeError("expected a JSON object")
    except (KeyError, TypeError, ValueError) as error:
        raise InputError(
            f"captions file {str(path)!r} must be {{image_id: [captions]}} or COCO captions annotations: {error}"
        ) from error
    return dict(captions)


def check_captions_cover(
    questions: list[VQAQuestion], captions: dict[int | str, list[str]], source: str = "the precomputed captions"
) -> None:
    """Every image of the questions needs a non-empty caption, checked before work as image files are."""
    missing = sorted({q.image_id for q in questions if not any(c.strip() for c in captions.get(q.image_id, []))}, key=_id_order)
    if missing:
        raise InputError(f"{len(missing)} images have no captions in {source}, e.g. image ids {missing[:5]}")
