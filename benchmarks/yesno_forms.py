#!/usr/bin/env python
"""Yes/no on real questions, per question form: what the answers follow, from finished run folders alone.

    python benchmarks/yesno_forms.py --data ../shared/realdev/vqav2 runs/realdev/vqav2/offline runs/realdev/vqav2/plain-4-shot

For each run folder (an eval of VQAv2-layout questions with their annotations), the yes/no questions are put in
forms by their opening words: existence ("is there ..."), identity ("is this / that / it ..."), subject ("is the
man ...", "are the bags ..."), "do / does ...", modal ("should / can ..."), and negated ones. Printed per form:
questions, the annotators' share of "yes" (majority of the ten), each run's share of "yes" and accuracy, and two
references without any model: always "yes", and the caption grounding alone ("yes" where the captions mention
more than half of what is asked, zsvqa/grounding.py).
"""

from __future__ import annotations

import sys
from collections import defaultdict
from pathlib import Path

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zsvqa.answering import asks_with_do, question_kind  # noqa: E402
from zsvqa.cli import ScriptCommand, configure_logging  # noqa: E402
from zsvqa.datasets import load_dataset, read_captions_file  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402
from zsvqa.evaluation import read_predictions  # noqa: E402
from zsvqa.grounding import CaptionGrounder  # noqa: E402
from zsvqa.metric import vqa_accuracy  # noqa: E402

MODALS = {"should", "can", "could", "would", "will", "may", "might", "must", "shall"}
DEMONSTRATIVES = {"this", "that", "it", "these", "those"}


def question_form(question: str, negated: bool) -> str:
    """The form of a yes/no question, from its first two words."""
    words = question.lower().replace("?", " ").split()
    if negated:
        return "negated"
    if words[0] in MODALS:
        return "modal"
    if asks_with_do(question):
        return "do / does"
    second = words[1] if len(words) > 1 else ""
    if second == "there":
        return "existence"
    return "identity" if second in DEMONSTRATIVES else "subject"


def percent(values: list[float]) -> str:
    return f"{100 * sum(values) / len(values):.1f}" if values else ""


@click.command(cls=ScriptCommand)
@click.option("--data", required=True, help="the set's folder: questions.json, annotations.json, captions.json")
@click.argument("runs", nargs=-1, required=True)
def yesno_forms(data: str, runs: tuple[str, ...]) -> None:
    """Yes/no accuracy and yes-share per question form, for each run folder."""
    configure_logging(verbose=False)
    root = Path(data)
    dataset = load_dataset("vqav2", root / "questions.json", root / "annotations.json", None)
    captions = read_captions_file(root / "captions.json")
    predictions = {}
    for run in runs:
        path = Path(run) / "predictions.jsonl"
        if not path.is_file():
            raise InputError(f"no predictions.jsonl in {run!r}")
        predictions[run] = read_predictions(path)  # named as given: two runs may share a folder name
    grounder = CaptionGrounder()
    rows: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for question in dataset.questions:
        if question_kind(question.question) != "yesno":
            continue
        grounding = grounder(question.question, captions[question.image_id])
        form = question_form(question.question, grounding.negated)
        grounded = "yes" if grounding.evidence > 0 else "no"
        gold_yes = float(sum(answer == "yes" for answer in question.answers) > len(question.answers) / 2)
        for group in (form, "all"):
            row = rows[group]
            row["annotators: yes"].append(gold_yes)
            row["always yes: accuracy"].append(vqa_accuracy("yes", question.answers))
            row["grounding alone: accuracy"].append(vqa_accuracy(grounded, question.answers))
            for name, records in predictions.items():
                answer = records.get(question.question_id, {}).get("answer")
                if answer is not None:
                    row[f"{name}: yes"].append(float(answer == "yes"))
                    row[f"{name}: accuracy"].append(vqa_accuracy(answer, question.answers))
    columns = ["annotators: yes", "always yes: accuracy", "grounding alone: accuracy"]
    columns += [f"{name}: {what}" for name in predictions for what in ("yes", "accuracy")]
    click.echo("| form | questions | " + " | ".join(columns) + " |")
    click.echo("|---|---:|" + "---:|" * len(columns))
    for form in sorted(rows, key=lambda f: (f == "all", -len(rows[f]["annotators: yes"]))):
        row = rows[form]
        cells = [percent(row[column]) for column in columns]
        click.echo(f"| {form} | {len(row['annotators: yes'])} | " + " | ".join(cells) + " |")


def main() -> None:
    yesno_forms.main(prog_name="yesno_forms.py")


if __name__ == "__main__":
    main()
