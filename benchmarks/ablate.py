#!/usr/bin/env python
"""Ablations: evaluate every variant of a grid of factors and tabulate and plot accuracy per variant.

    python benchmarks/ablate.py --preset tiny --dataset vqav2 --questions Q.json --annotations A.json \
        --images DIR --out runs/ablation --factor relevance=gradcam,uniform --factor prompt_exemplars=0,8

A grid can also come from a JSON or YAML file (--grid FILE) mapping factor -> list of values. A factor is one
of FACTORS below or any dotted setting (captioner.top_k); a value may also be a mapping of dotted settings, for
factors that move together ({"answerer.model": "google/flan-t5-large", "answerer.kind": "seq2seq"}).

All variants share one intermediates cache, so variants that differ only on the prompt side reuse each other's
captions and questions and cost only the LLM calls. Output: results.csv, results.md, accuracy_vs_<factor>.png
for each factor (a line for numeric factors, bars for the others), grid.json, and each variant's full run folder
(config.json included) under variants/.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import sys
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zsvqa.cli import ScriptCommand, configure_logging, dataset_options, eval_inputs  # noqa: E402
from zsvqa.datasets import read_json  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402
from zsvqa.evaluation import evaluate, read_predictions  # noqa: E402
from zsvqa.outputs import check_output_dir  # noqa: E402

# Friendly factor names -> the setting they vary.
FACTORS = {
    "relevance": "captioner.relevance",
    "num_patches": "captioner.num_patches",
    "num_captions": "captioner.num_captions",
    "caption_filter": "captioner.filter_threshold",
    "qg": "question_gen.backend",
    "exemplars": "prompt.exemplars",
    "template": "prompt.template",
    "prompt_style": "prompt.style",
    "answerer": "answerer.model",
    "prompt_captions": "prompt.num_captions",
    "prompt_exemplars": "prompt.num_exemplars",
}


def parse_value(text: str) -> Any:
    """'3' -> 3, '0.5' -> 0.5, 'none' -> None, anything else stays text."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return None if text.lower() in ("none", "null", "off") else text


def read_grid(grid_file: str | None, factors: tuple[str, ...]) -> dict[str, list[Any]]:
    grid: dict[str, list[Any]] = {}
    if grid_file:
        path = Path(grid_file)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as error:
            raise InputError(f"cannot read the grid file {grid_file!r}: {error.strerror}") from error
        if path.suffix in (".yaml", ".yml"):
            import yaml

            loaded = yaml.safe_load(text)
        else:
            loaded = json.loads(text)
        if not isinstance(loaded, dict) or not all(isinstance(v, list) and v for v in loaded.values()):
            raise InputError(f"grid file {grid_file!r} must map each factor to a non-empty list of values")
        grid.update(loaded)
    for factor in factors:
        name, sep, values = factor.partition("=")
        if not sep or not values:
            raise InputError(f"--factor takes NAME=V1,V2,...; got {factor!r}")
        grid[name.strip()] = [parse_value(v.strip()) for v in values.split(",")]
    if not grid:
        raise InputError("give at least one --factor or a --grid file")
    return grid


def variant_overrides(factor: str, value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return dict(value)
    return {FACTORS.get(factor, factor): "none" if value is None else str(value)}


def value_label(value: Any) -> str:
    """A factor value as text; a mapping of settings by its values joined with '+'."""
    return "+".join(str(v) for v in value.values()) if isinstance(value, dict) else str(value)


def variant_name(assignment: dict[str, Any]) -> str:
    def short(value: Any) -> str:
        return "".join(c if c.isalnum() or c in ".-" else "-" for c in value_label(value))[:40]

    return "__".join(f"{factor}={short(value)}" for factor, value in assignment.items())


def plot(rows: list[dict[str, Any]], grid: dict[str, list[Any]], out: Path) -> list[Path]:
    """accuracy_vs_<factor>.png for every factor (mean over the other factors)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    for factor in grid:
        figure = factor_figure(rows, grid, factor)
        path = out / f"accuracy_vs_{factor}.png"
        figure.savefig(path, dpi=100, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written


def factor_figure(rows: list[dict[str, Any]], grid: dict[str, list[Any]], factor: str) -> Any:
    """Mean accuracy per value of one factor: a line over numeric values (whole-number ticks when the values are
    integers), bars over categorical ones. The accuracy axis starts at 0, so differences are not magnified."""
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    values = grid[factor]
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    # Rows hold mapping values as JSON text (see `ablate`): compare them so.
    by_key = {json.dumps(v) if isinstance(v, dict) else v: v for v in values}
    keys = sorted(by_key) if numeric else list(by_key)
    means = []
    for key in keys:
        accuracies = [r["accuracy"] for r in rows if r[factor] == key and r["accuracy"] is not None]
        means.append(sum(accuracies) / len(accuracies) if accuracies else float("nan"))
    figure, axis = plt.subplots(figsize=(5, 3.5))
    if numeric:
        axis.plot(keys, means, marker="o")
        if all(isinstance(v, int) for v in values):
            axis.xaxis.set_major_locator(MaxNLocator(integer=True))
    else:
        axis.bar(range(len(keys)), means)
        labels = [value_label(by_key[k]) for k in keys]
        axis.set_xticks(range(len(keys)), labels, rotation=20 if sum(map(len, labels)) > 40 else 0)
    finite = [m for m in means if m == m]
    axis.set_ylim(0, 1.1 * max(finite + [1.0]))
    axis.set_xlabel(factor)
    axis.set_ylabel("VQA accuracy (%)")
    axis.set_title(f"accuracy vs {factor}" + (" (mean over other factors)" if len(grid) > 1 else ""), fontsize=9)
    axis.grid(alpha=0.3, axis="y" if not numeric else "both")
    return figure


def significant(value: float, digits: int = 3) -> str:
    """`digits` significant figures, without an exponent: 0.0123, 1.23, 12.3, 123."""
    if value == 0 or value != value:
        return str(value)
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(value))))
    return f"{value:.{decimals}f}"


def cell(column: str, value: Any) -> str:
    """One format per column of results.md: accuracies (percent) with 2 decimals, seconds to 3 significant figures,
    factor values as given."""
    if value is None:
        return ""
    if column == "accuracy" or column.startswith("acc_"):
        return f"{value:.2f}"
    if column.startswith("seconds"):
        return significant(value)
    return str(value)


def write_tables(rows: list[dict[str, Any]], columns: list[str], out: Path) -> None:
    with (out / "results.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(c, row.get(c)) for c in columns) + " |" for row in rows]
    (out / "results.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


@click.command(cls=ScriptCommand)
@click.option("--out", required=True, help="ablation folder")
@click.option("--grid", "grid_file", help="JSON or YAML file: factor -> list of values")
@click.option("--factor", "factors", multiple=True, metavar="NAME=V1,V2", help="a factor and its values (repeatable)")
@click.option("--categories", "categories_file", default=None,
              help="JSON {question_id: category}: adds an accuracy column per category (e.g. benchmarks/devset)")
@dataset_options
def ablate(out: str, grid_file: str | None, factors: tuple[str, ...], categories_file: str | None,
           **options: Any) -> None:
    """Evaluate every combination of the grid's factor values."""
    from tqdm import tqdm

    configure_logging(verbose=False)
    check_output_dir(out, "--out")
    grid = read_grid(grid_file, factors)
    inputs = eval_inputs(options)
    # Every variant's config is checked before the first one runs (or the folder is made), so a typo fails fast.
    variants = []
    for values in itertools.product(*grid.values()):
        assignment = dict(zip(grid, values))
        overrides: dict[str, Any] = {}
        for factor, value in assignment.items():
            overrides.update(variant_overrides(factor, value))
        variants.append((assignment, inputs.config.with_overrides(overrides)))
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "grid.json").write_text(json.dumps(grid, indent=2), encoding="utf-8")
    answer_types = sorted({q.answer_type for q in inputs.dataset.questions if q.answer_type})
    # By the ids' spelling: integer (VQA) and string (A-OKVQA, GQA) ids alike.
    categories = {str(k): v for k, v in read_json(categories_file, "categories").items()} if categories_file else {}
    rows = []
    for assignment, config in tqdm(variants, desc="variants", unit="variant", disable=not inputs.progress):
        name = variant_name(assignment)
        summary = evaluate(
            config, inputs.dataset, folder / "variants" / name, inputs.captions, inputs.lemmatized,
            inputs.cache_path, progress=inputs.progress, data_description=inputs.description,
            score_choices=inputs.score_choices,
        )
        records = read_predictions(folder / "variants" / name / "predictions.jsonl").values()
        seconds = [r.get("seconds", 0.0) for r in records]
        metrics = summary.metrics or {}
        row = {
            "variant": name,
            **assignment,
            "accuracy": metrics.get("overall"),
            # GQA's answer_type is its structural type, reported as per_structural_type.
            **{f"acc_{t}": (metrics.get("per_answer_type") or metrics.get("per_structural_type") or {}).get(t)
               for t in answer_types},
            **category_accuracy(records, categories),
            "seconds_per_question": sum(seconds) / len(seconds) if seconds else None,
            "errors": len(summary.errors),
        }
        rows.append({k: json.dumps(v) if isinstance(v, dict) else v for k, v in row.items()})
    columns = list(rows[0])
    write_tables(rows, columns, folder)
    plots = plot(rows, grid, folder)
    click.echo((folder / "results.md").read_text(encoding="utf-8"))
    click.echo(f"wrote {folder}/results.csv, results.md" + "".join(f", {p.name}" for p in plots))


def category_accuracy(records: Any, categories: dict[str, str]) -> dict[str, float]:
    """Accuracy in percent per category of question, for the questions the categories file names."""
    scores: dict[str, list[float]] = {}
    for record in records:
        category = categories.get(str(record["question_id"]))
        if category is not None and record.get("accuracy") is not None:
            scores.setdefault(category, []).append(record["accuracy"])
    return {f"acc_{name}": round(100 * sum(v) / len(v), 2) for name, v in sorted(scores.items())}


def main() -> None:
    ablate.main(prog_name="ablate.py")


if __name__ == "__main__":
    main()
