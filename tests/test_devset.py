"""The development set in benchmarks/devset: it loads through zsvqa's own readers, has the planned mix of
question categories, its human answers agree, what it asks is stated in the captions, and it rebuilds exactly."""

import json
import os
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from zsvqa.datasets import VQADataset, load_dataset, most_common_answer, read_captions_file
from zsvqa.metric import vqa_accuracy
from zsvqa.normalize import NUMBER_WORDS

DEVSET = Path(__file__).resolve().parent.parent / "benchmarks" / "devset"
FILES = ("questions.json", "annotations.json", "captions.json", "categories.json")
# category -> (fewest, most) questions; the generator's quotas sit inside these bounds
MIX = {
    "yesno": (80, 100), "yesno_negation": (25, 35), "count": (45, 60), "color": (45, 60), "object": (45, 60),
    "activity": (40, 55), "location": (40, 55),
}
ANSWER_TYPES = {"yesno": "yes/no", "yesno_negation": "yes/no", "count": "number"}


@pytest.fixture(scope="module")
def dataset() -> VQADataset:
    return load_dataset("vqav2", DEVSET / "questions.json", DEVSET / "annotations.json", images_dir=None)


@pytest.fixture(scope="module")
def captions() -> dict[int, list[str]]:
    return read_captions_file(DEVSET / "captions.json")


@pytest.fixture(scope="module")
def categories() -> dict[int, str]:
    return {int(k): v for k, v in json.loads((DEVSET / "categories.json").read_text(encoding="utf-8")).items()}


def test_loads_in_the_official_formats(dataset: VQADataset, captions: dict[int, list[str]]) -> None:
    assert dataset.annotated and len(dataset.questions) >= 300
    for q in dataset.questions:
        assert len(q.answers) == 10, q.question_id
        assert q.question[0].isupper() and q.question.endswith("?"), q.question
        prefix = re.sub(r"[^a-z' ]", " ", q.question.lower()).split()
        assert q.question_type == "none of the above" or prefix[: len(q.question_type.split())] == q.question_type.split()
        assert len(captions.get(q.image_id, [])) == 5, q.image_id
    raw = [c for values in json.loads((DEVSET / "captions.json").read_text(encoding="utf-8")).values() for c in values]
    # human annotators' quirks stay in the file for the pipeline to clean
    assert any("  " in c for c in raw) and any(c.endswith(" ") for c in raw)


def test_category_mix_and_yes_no_balance(dataset: VQADataset, categories: dict[int, str]) -> None:
    assert set(categories) == {q.question_id for q in dataset.questions}
    counts = Counter(categories.values())
    assert set(counts) == set(MIX)
    for category, (low, high) in MIX.items():
        assert low <= counts[category] <= high, (category, counts[category])
    for q in dataset.questions:
        assert q.answer_type == ANSWER_TYPES.get(categories[q.question_id], "other"), q.question
    for category in ("yesno", "yesno_negation"):
        answers = Counter(q.multiple_choice_answer for q in dataset.questions if categories[q.question_id] == category)
        assert set(answers) == {"yes", "no"} and abs(answers["yes"] - answers["no"]) <= 2, (category, answers)
    for q in dataset.questions:
        negated = re.search(r"\b(not|no)\b", q.question.lower()) is not None
        assert negated == (categories[q.question_id] == "yesno_negation"), q.question


def test_majority_answer_scores_full_accuracy(dataset: VQADataset) -> None:
    for q in dataset.questions:
        assert q.multiple_choice_answer == most_common_answer(q.answers), q.question_id
        assert vqa_accuracy(q.multiple_choice_answer, q.answers) == 1.0, (q.question, q.answers)


def test_count_and_color_answers_are_stated_in_a_caption(
    dataset: VQADataset, captions: dict[int, list[str]], categories: dict[int, str]
) -> None:
    words_for = {digit: word for word, digit in NUMBER_WORDS.items() if word not in ("none", "zero")}
    checked = 0
    for q in dataset.questions:
        category = categories[q.question_id]
        if category not in ("count", "color"):
            continue
        forms = {q.multiple_choice_answer, words_for.get(q.multiple_choice_answer, q.multiple_choice_answer)}
        pattern = re.compile(r"\b(" + "|".join(map(re.escape, forms)) + r")\b", re.IGNORECASE)
        assert any(pattern.search(c) for c in captions[q.image_id]), (q.question, forms, captions[q.image_id])
        checked += 1
    assert checked >= 90


def test_generator_rebuilds_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    # Another hash seed than the committed build's: the output must not depend on set or dict hashing.
    env = {**os.environ, "PYTHONHASHSEED": "1"}
    result = subprocess.run(
        [sys.executable, str(DEVSET / "build_devset.py"), str(tmp_path)], capture_output=True, text=True, env=env,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    for name in FILES:
        assert (tmp_path / name).read_bytes() == (DEVSET / name).read_bytes(), f"{name} differs; rerun the generator"
