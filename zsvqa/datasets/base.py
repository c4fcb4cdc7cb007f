"""What every dataset format shares: the question and dataset types, the interface a format implements
(`DatasetFormat`), and the file helpers the formats use (JSON, image folders, ids)."""

from __future__ import annotations

import errno
import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from zsvqa.errors import InputError

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


@dataclass(frozen=True)
class ScoringOptions:
    """How a run scores, where a format offers a choice."""

    lemmatized: bool = False  # OK-VQA's lemmatized variant of the VQA accuracy (not official)
    embedding_model: str = ""  # the sentence encoder that maps a free answer to a multiple choice (A-OKVQA)
    device: str = "cpu"


class DatasetFormat:
    """One dataset in its official format: reading its questions (and answers), finding its images, scoring an
    answer, the metrics over a run and the official submission file. A dataset is one subclass in one module of
    this package, named in `zsvqa.datasets.FORMATS`."""

    name = ""
    carries_answers = False  # the questions file holds the answers; no separate annotations file
    has_choices = False  # questions come with multiple choices (--score-choices ranks them)
    lemmatized_variant = False  # the lemmatized accuracy applies (OK-VQA)

    def __init__(self, options: ScoringOptions = ScoringOptions()) -> None:
        if options.lemmatized and not self.lemmatized_variant:
            raise InputError("the lemmatized accuracy is an OK-VQA variant; use it with --dataset okvqa")
        self.options = options

    def read(self, questions_path: str | Path, annotations_path: str | Path | None) -> tuple[list[VQAQuestion], bool]:
        """The questions, and whether they carry answers to score against."""
        raise NotImplementedError

    def index_images(self, images_dir: str | Path) -> dict[int | str, Path]:
        """image id -> file, for the folder the official images come in."""
        return dict(index_images(images_dir))

    def image_name(self, image_id: int | str) -> str:
        """How the official image folder names an image, for the message when one is missing."""
        return f"{image_id}.jpg"

    def score(self, question: VQAQuestion, answer: str) -> float:
        """The dataset's own score of one answer, in [0, 1]."""
        raise NotImplementedError

    def summarize(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        """The metrics over a run's records (each with its question_id and accuracy), in %."""
        raise NotImplementedError

    def submission(self, records: list[dict[str, Any]]) -> Any:
        """The official results file's content (JSON) for a run's records."""
        raise NotImplementedError

    def prepare(self) -> None:
        """Load what scoring needs (a model), before the first question: a failure stops the run before work."""

    def answer_fields(self, question: VQAQuestion, answer: str) -> dict[str, Any]:
        """Fields an answer's record adds for this dataset's metrics (A-OKVQA: the choice the answer maps to)."""
        return {}

    def answer_form(self, answer: str) -> str:
        """The answer rewritten in the form the dataset's annotators use, for presets that ask for it
        (answerer.dataset_answer_form); most datasets take it as it is."""
        return answer

    def papers_metrics(self, records: list[dict[str, Any]], questions: dict[Any, VQAQuestion]) -> dict[str, Any]:
        """The papers' scorer beside the official one (README "Scoring"), summarized as the official one is;
        empty where the papers used the official scorer."""
        return {}


def rescore(
    records: list[dict[str, Any]], questions: dict[Any, VQAQuestion], score: Callable[[VQAQuestion, str], float]
) -> list[dict[str, Any]]:
    """The records scored again by another rule (a failed question scores 0 under any rule)."""
    return [
        {**r, "accuracy": 0.0 if r.get("error") else score(questions[r["question_id"]], r["answer"])} for r in records
    ]


def image_key(value: int | str) -> int | str:
    """One spelling per image id, whatever the file used: 42, "42" and "000042" are the int 42 (COCO ids, GQA's
    numeric ids); others ("n161313") stay strings. Images, captions and questions all meet on this key."""
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def id_order(image_id: int | str) -> tuple[bool, int, str]:
    """Integer ids in numeric order (as before string ids existed, so a seed picks the same subset), then strings."""
    return (isinstance(image_id, str), image_id if isinstance(image_id, int) else 0, str(image_id))


def read_json(path: str | Path, what: str) -> Any:
    path = Path(path)
    if not path.is_file():
        raise InputError(f"{what} file {str(path)!r} does not exist")
    try:
        with path.open(encoding="utf-8") as handle:
            return json.load(handle)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(f"{what} file {str(path)!r} is not valid JSON: {error}") from error


def most_common_answer(answers: list[str]) -> str:
    return Counter(answers).most_common(1)[0][0] if answers else ""


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


def index_image_stems(images_dir: str | Path) -> dict[int | str, Path]:
    """image id -> file for folders named by id alone (GQA's images/<imageId>.jpg)."""
    folder = check_images_folder(images_dir)
    return {
        image_key(path.stem): path
        for path in sorted(folder.iterdir())
        if path.suffix.lower() in (".jpg", ".jpeg", ".png")
    }
