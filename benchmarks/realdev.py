#!/usr/bin/env python
"""The text half on real questions: a preset beside the plain-prompt baselines of the same LLM, in one run.

    python benchmarks/realdev.py --out runs/realdev                       # ../shared/realdev, offline preset
    python benchmarks/realdev.py --out runs/realdev --sets vqav2 --limit 100 --set answerer.grounding_weight=0
    python benchmarks/realdev.py --out runs/devset --data benchmarks/devset --sets vqav2   # the synthetic devset

Each set of `--data` (VQAv2, OK-VQA, A-OKVQA as `../shared/realdev` lays them out: questions, answers and the
images' human COCO captions) is answered from its captions by the preset (with `--set` overrides) and by every
baseline of benchmarks/baselines.json, through the same eval machinery as `run.py eval`, one variant after the
other. Printed and written (results.md, results.csv): accuracy overall and per answer type (official VQA
accuracy; A-OKVQA: its direct-answer rule, and multiple choice by embedding and by the LLM's scoring), and
seconds per question (the stages' time, model loading excluded). Run folders resume, under --out.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from ablate import category_accuracy, write_tables  # noqa: E402
from zsvqa.cli import ScriptCommand, configure_logging, model_options, overrides_from  # noqa: E402
from zsvqa.config import preset  # noqa: E402
from zsvqa.datasets import dataset_format, load_dataset, read_captions_file, rescore  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402
from zsvqa.evaluation import evaluate, read_predictions  # noqa: E402
from zsvqa.outputs import check_output_dir  # noqa: E402

HERE = Path(__file__).resolve().parent
DEFAULT_DATA = HERE.parent.parent / "shared" / "realdev"
BASELINES = HERE / "baselines.json"
# Each set: its folder, questions file and annotations file (A-OKVQA's questions carry their answers).
SETS = {
    "vqav2": ("vqav2", "questions.json", "annotations.json"),
    "okvqa": ("okvqa", "questions.json", "annotations.json"),
    "aokvqa": ("aokvqa", "aokvqa_v1p0_val.json", None),
}
ANSWER_TYPES = ("yes/no", "number", "other")


def read_baselines(path: Path = BASELINES) -> dict[str, dict[str, str]]:
    """Baseline name -> its setting overrides (keys starting with '_' are notes)."""
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise InputError(f"cannot read the baselines file {str(path)!r}: {error}") from error
    return {name: overrides for name, overrides in loaded.items() if not name.startswith("_")}


def metrics_row(set_name: str, variant: str, metrics: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """One table row: accuracies in percent and seconds per question."""
    seconds = [r.get("seconds", 0.0) for r in records if not r.get("error")]
    per_type = metrics.get("per_answer_type") or {}
    choice = metrics.get("multiple_choice") or {}
    return {
        "set": set_name,
        "variant": variant,
        "accuracy": metrics.get("overall"),
        **{f"acc_{kind}": per_type.get(kind) for kind in ANSWER_TYPES},
        "acc_mc_embedding": (choice.get("embedding") or {}).get("accuracy"),
        "acc_mc_llm": (choice.get("llm") or {}).get("accuracy"),
        "seconds_per_question": sum(seconds) / len(seconds) if seconds else None,
        "errors": metrics.get("errors", 0),
    }


def with_okvqa_form(variant: str, dataset: Any, records: list[dict[str, Any]]) -> dict[str, Any]:
    """A baseline's OK-VQA row with the preset's answer form (lemmas, no articles) applied to the same predictions:
    what the form alone is worth, next to what the rest of the preset adds."""
    okvqa = dataset_format("okvqa")
    questions = {q.question_id: q for q in dataset.questions}
    answered = [r for r in records if not r.get("error")]
    rescored = rescore(answered, questions, lambda question, answer: okvqa.score(question, okvqa.answer_form(answer)))
    return metrics_row("okvqa", f"{variant} + OK-VQA answer form", okvqa.summarize(rescored, questions), records)


@click.command(cls=ScriptCommand)
@click.option("--out", required=True, help="folder for the run folders and results.md / results.csv")
@click.option("--data", default=str(DEFAULT_DATA), show_default=True, help="the realdev folder")
@click.option("--sets", default=",".join(SETS), show_default=True, help="comma-separated: vqav2, okvqa, aokvqa")
@click.option("--baselines/--no-baselines", default=True, help="run the plain-prompt baselines too")
@click.option("--limit", type=int, help="the first N questions of each set (a quick look, not a figure)")
@click.option("--no-progress", is_flag=True, help="no progress bars")
@model_options
def realdev(out: str, data: str, sets: str, baselines: bool, limit: int | None, no_progress: bool,
            **options: Any) -> None:
    """Evaluate a preset and the plain-prompt baselines on real development questions."""
    configure_logging(verbose=False)
    check_output_dir(out, "--out")
    names = [name.strip() for name in sets.split(",") if name.strip()]
    unknown = [name for name in names if name not in SETS]
    if unknown or not names:
        raise InputError(f"--sets takes names from {', '.join(SETS)}; got {sets!r}")
    preset_name = options["preset"]
    config = preset(options.pop("preset")).with_overrides(overrides_from(options))
    variants = [(preset_name, config)]
    if baselines:
        # Baselines keep the preset's LLM (and its other settings): only the prompt and the selection change.
        variants += [(name, config.with_overrides(o)) for name, o in read_baselines().items()]
    folder = Path(data)
    rows = []
    for name in names:
        subfolder, questions_file, annotations_file = SETS[name]
        # A folder that holds the set's files itself (benchmarks/devset with --sets vqav2) serves as well.
        root = folder / subfolder if (folder / subfolder).is_dir() else folder
        if not (root / questions_file).is_file():
            raise InputError(f"no {name} set at {str(root)!r}; give the realdev folder with --data")
        dataset = load_dataset(
            name, root / questions_file, root / annotations_file if annotations_file else None, None
        )
        if limit:
            dataset.questions = dataset.questions[:limit]
        captions = read_captions_file(root / "captions.json")
        # A set with a categories file (benchmarks/devset) gets an accuracy column per category.
        categories_path = root / "categories.json"
        categories = json.loads(categories_path.read_text(encoding="utf-8")) if categories_path.is_file() else {}
        for variant, variant_config in variants:
            run = Path(out) / name / variant.replace(" ", "-")
            causal = variant_config.answerer.kind == "causal"
            summary = evaluate(
                variant_config, dataset, run, captions, progress=not no_progress,
                data_description={"realdev": str(root), "limit": limit}, score_choices=name == "aokvqa" and causal,
            )
            records = list(read_predictions(run / "predictions.jsonl").values())
            rows.append({**metrics_row(name, variant, summary.metrics or {}, records),
                         **category_accuracy(records, categories)})
            if name == "okvqa" and not variant_config.answerer.dataset_answer_form:
                rows.append(with_okvqa_form(variant, dataset, records))
    columns = list(dict.fromkeys(column for row in rows for column in row))
    Path(out).mkdir(parents=True, exist_ok=True)
    write_tables(rows, columns, Path(out))
    click.echo((Path(out) / "results.md").read_text(encoding="utf-8"))


def main() -> None:
    realdev.main(prog_name="realdev.py")


if __name__ == "__main__":
    main()
