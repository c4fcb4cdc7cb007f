#!/usr/bin/env python
"""Batched text half (question generation and answering) against one prompt at a time, side by side in one run.

    python benchmarks/batching.py                              # offline preset: bundled Gemma, calibrated scoring
    python benchmarks/batching.py --batch-sizes 1,8,32 --device cuda
    python benchmarks/batching.py --set answerer.selection=generate
    python benchmarks/batching.py --preset tiny --images 3     # a smoke run

The development set's first --images images, with their questions and precomputed captions, go through the text
half as `run.py eval` runs it: consecutive images together, enough questions to fill `answerer.batch_size`, their
synthetic questions generated in one call and their prompts answered in batches. Each batch size gets a fresh
pipeline (models loaded before the clock starts, no intermediates cache), so candidates, question generation and
answers are all timed. Prints seconds per question and per stage for each batch size, the speed-up against the
first size, and whether every answer equals the first size's (log-probs to 1e-3).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import machine, timed  # noqa: E402
from zsvqa.cli import ScriptCommand, configure_logging, positive_integers, set_overrides  # noqa: E402
from zsvqa.config import PRESETS, preset  # noqa: E402
from zsvqa.datasets import load_dataset, read_captions_file  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402
from zsvqa.evaluation import _chunks  # noqa: E402
from zsvqa.outputs import check_output_file  # noqa: E402
from zsvqa.pipeline import Pipeline, QuestionCaptions  # noqa: E402

DEVSET = Path(__file__).resolve().parent / "devset"
STAGES = ("candidates", "question_generation", "answer")


def run_batch_size(config: Any, size: int, groups: list[tuple[Any, list[Any]]], captions: dict[Any, list[str]],
                   device: str) -> tuple[list[Any], float]:
    """Every group's questions answered as eval answers them at this batch size: (results, seconds)."""
    pipeline = Pipeline(config.with_overrides({"answerer.batch_size": str(size)}))
    pipeline.load_models(vision=False)
    pipeline.candidate_extractor
    first_image, first_questions = groups[0]
    pipeline.answer_captioned_many([QuestionCaptions(first_questions[0].question, captions[first_image])])  # warm-up
    pipeline.forget_recent()
    results: list[Any] = []

    def answer_all() -> None:
        for chunk in _chunks(groups, size):
            items = [QuestionCaptions(q.question, captions[image]) for image, questions in chunk for q in questions]
            results.extend(pipeline.answer_captioned_many(items))

    return results, timed(answer_all, device)[1]


@click.command(cls=ScriptCommand)
@click.option("--preset", "preset_name", default="offline", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--questions", default=str(DEVSET / "questions.json"), show_default=True)
@click.option("--captions", default=str(DEVSET / "captions.json"), show_default=True, help="precomputed captions")
@click.option("--images", "num_images", type=int, default=16, show_default=True, help="how many images' questions")
@click.option("--batch-sizes", default="1,4,16", show_default=True, help="comma-separated; the first is the base")
@click.option("--device", default="cpu", show_default=True)
@click.option("--set", "settings_given", multiple=True, metavar="KEY=VALUE", help="any setting, as for run.py")
@click.option("--out", default=None, help="also write the report here as JSON")
def batching(preset_name: str, questions: str, captions: str, num_images: int, batch_sizes: str, device: str,
             settings_given: tuple[str, ...], out: str | None) -> None:
    """Time the text half at several batch sizes and check that the answers stay the same."""
    configure_logging(False)
    sizes = positive_integers(batch_sizes, "--batch-sizes", "sizes")
    if num_images < 1:
        raise InputError(f"--images must be at least 1; got {num_images}")
    if out:
        check_output_file(out, "--out")
    config = preset(preset_name).with_overrides({**set_overrides(settings_given), "device": device})
    groups = list(load_dataset("vqav2", questions, None, None).by_image().items())[:num_images]
    caption_sets = read_captions_file(captions)
    missing = [image for image, _ in groups if image not in caption_sets]
    if missing:
        raise InputError(f"{len(missing)} images have no captions in {captions!r}, e.g. {missing[:5]}")
    count = sum(len(questions) for _, questions in groups)
    rows: list[dict[str, Any]] = []
    base: list[Any] = []
    for size in sizes:
        results, seconds = run_batch_size(config, size, groups, caption_sets, device)
        answered = [r for r in results if not isinstance(r, InputError)]
        base = base or answered
        stages = {stage: sum(r.timings.get(stage, 0.0) for r in answered) / count for stage in STAGES}
        same = len(answered) == len(base) and all(
            a.answer == b.answer and abs(a.logprob - b.logprob) < 1e-3 for a, b in zip(answered, base)
        )
        rows.append({"batch_size": size, "s_per_question": seconds / count, "stages": stages,
                     "errors": len(results) - len(answered), "answers_equal_to_first": same})
        click.echo(f"batch size {size}: {seconds:.1f}s", err=True)
    first = rows[0]["s_per_question"]
    m = machine()
    click.echo(f"{preset_name} preset, {count} questions on {len(groups)} images, device {device}, "
               f"{m['processor']} ({m['torch_threads']} threads)")
    click.echo("| batch size | s/question | candidates | question generation | answer | speed-up | same answers |")
    click.echo("|---|---|---|---|---|---|---|")
    for row in rows:
        row["speedup"] = first / row["s_per_question"]
        stages = " | ".join(f"{row['stages'][stage]:.3f}" for stage in STAGES)
        click.echo(f"| {row['batch_size']} | {row['s_per_question']:.3f} | {stages} | {row['speedup']:.2f}x | "
                   f"{row['answers_equal_to_first']} |")
    if out:
        report = {"machine": m, "preset": preset_name, "settings": config.to_dict(), "questions": count, "rows": rows}
        Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")


def main() -> None:
    batching.main(prog_name="batching.py")


if __name__ == "__main__":
    main()
