"""The datasets, each in its official format behind one interface (`DatasetFormat`, in base.py): one module per
format (vqa.py: VQAv2 and OK-VQA; aokvqa.py; gqa.py). Here: choosing a format by name, reading and checking a
split before any work starts, and choosing subsets. A new dataset is a new module and one line in `FORMATS`."""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path

from zsvqa.datasets.aokvqa import AOKVQA
from zsvqa.datasets.base import (
    DatasetFormat,
    ScoringOptions,
    VQADataset,
    VQAQuestion,
    check_images_folder,
    id_order,
    image_key,
    index_images,
    most_common_answer,
    read_json,
    rescore,
)
from zsvqa.datasets.captions import check_captions_cover, file_fingerprint, read_captions_file
from zsvqa.datasets.gqa import GQA
from zsvqa.datasets.vqa import OKVQA, VQAv2, read_questions
from zsvqa.errors import InputError

FORMATS: dict[str, type[DatasetFormat]] = {"vqav2": VQAv2, "okvqa": OKVQA, "aokvqa": AOKVQA, "gqa": GQA}
DATASETS = tuple(FORMATS)

__all__ = [
    "DATASETS", "FORMATS", "DatasetFormat", "ScoringOptions", "VQADataset", "VQAQuestion", "check_captions_cover",
    "check_images_folder", "dataset_format", "file_fingerprint", "image_key", "index_images", "load_dataset",
    "most_common_answer", "read_captions_file", "read_dataset_questions", "read_id_list", "read_json",
    "read_questions", "rescore", "select",
]


def dataset_format(name: str, options: ScoringOptions = ScoringOptions()) -> DatasetFormat:
    """The format of dataset `name`, scoring as `options` say."""
    if name not in FORMATS:
        raise InputError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return FORMATS[name](options)


def read_dataset_questions(
    name: str, questions_path: str | Path, annotations_path: str | Path | None
) -> tuple[list[VQAQuestion], bool]:
    """The questions of any supported dataset, and whether they carry answers to score against."""
    form = dataset_format(name)
    if form.carries_answers and annotations_path is not None:
        raise InputError(f"the {name} questions file carries its own answers; leave out --annotations")
    return form.read(questions_path, annotations_path)


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
        for image_id in rng.sample(sorted(groups, key=id_order), len(groups)):
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
    questions, annotated = read_dataset_questions(name, questions_path, annotations_path)
    ids = read_id_list(question_ids_path) if question_ids_path else None
    questions = select(questions, limit, ids, split_by_image, seed)
    image_paths: dict[int | str, Path] = {}
    if images_dir is not None:
        form = dataset_format(name)
        available = form.index_images(images_dir)
        missing = sorted({q.image_id for q in questions if q.image_id not in available}, key=id_order)
        if missing:
            raise InputError(
                f"{len(missing)} images have no file in {str(images_dir)!r}, e.g. image ids {missing[:5]} "
                f"(expected names like {form.image_name(missing[0])})"
            )
        image_paths = {q.image_id: available[q.image_id] for q in questions}
    return VQADataset(name, questions, image_paths, annotated=annotated)
