#!/usr/bin/env python
"""Yes/no on simple scenes: one shape of one colour, described by one short caption or by several.

    python benchmarks/simple_scenes.py                     # offline preset, every form, 1 and 5 captions
    python benchmarks/simple_scenes.py --set answerer.grounding_weight=0 --captions 1

Every question's answer is known by construction: existence ("is there a triangle?"), attribute ("is the
triangle yellow?"), colour-and-shape ("is there a green triangle?"), count ("are there two triangles?") and each
of them negated ("is there not a green shape?", "is the triangle not yellow?"), half of them true and half
false. Prints yes/no accuracy per form and caption count, and the share of "yes" answers (a model that always
says "yes" scores 50 with a yes-share of 100).
"""

from __future__ import annotations

import random
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zsvqa.cli import ScriptCommand, configure_logging, model_options, overrides_from  # noqa: E402
from zsvqa.config import preset  # noqa: E402
from zsvqa.pipeline import Pipeline  # noqa: E402

COLORS = ["red", "blue", "green", "yellow", "black", "white", "orange", "purple"]
SHAPES = ["triangle", "square", "circle", "rectangle", "star", "hexagon"]
COUNTS = {2: "two", 3: "three", 4: "four"}
# Further captions of the same scene, for the several-caption case.
PARAPHRASES = [
    "a {color} {shape} on a plain background", "a single {color} {shape}", "a picture of a {color} {shape}",
    "a simple drawing of a {shape} that is {color}",
]


def scene_questions(rng: random.Random, captions: int) -> list[dict[str, Any]]:
    """Every form, true and false, for one random scene: {form, captions, question, answer}."""
    color, shape = rng.choice(COLORS), rng.choice(SHAPES)
    other_color = rng.choice([c for c in COLORS if c != color])
    other_shape = rng.choice([s for s in SHAPES if s != shape])
    count = rng.choice(list(COUNTS))
    other_count = rng.choice([n for n in COUNTS if n != count])
    single = [f"a {color} {shape}."] + [p.format(color=color, shape=shape) for p in PARAPHRASES]
    plural = [f"{COUNTS[count]} {color} {shape}s."] + [
        f"{COUNTS[count]} {color} {shape}s on a plain background", f"a picture of {COUNTS[count]} {shape}s",
        f"{COUNTS[count]} {shape}s, all of them {color}", f"a drawing of {COUNTS[count]} {color} {shape}s",
    ]
    asked = [
        ("existence", single, f"is there a {shape}?", f"is there a {other_shape}?"),
        ("existence", single, f"does the image contain a {shape}?", f"does the image contain a {other_shape}?"),
        ("attribute", single, f"is the {shape} {color}?", f"is the {shape} {other_color}?"),
        ("color and shape", single, f"is there a {color} {shape}?", f"is there a {other_color} {shape}?"),
        ("count", plural, f"are there {COUNTS[count]} {shape}s?", f"are there {COUNTS[other_count]} {shape}s?"),
        ("existence, not", single, f"is there not a {other_shape}?", f"is there not a {shape}?"),
        ("attribute, not", single, f"is the {shape} not {other_color}?", f"is the {shape} not {color}?"),
        ("color, not", single, f"is there not a {other_color} shape?", f"is there not a {color} shape?"),
    ]
    items = []
    for form, scene, true_question, false_question in asked:
        for question, answer in ((true_question, "yes"), (false_question, "no")):
            items.append({"form": form, "captions": scene[:captions], "question": question, "answer": answer})
    return items


def measure(pipeline: Pipeline, scenes: int, caption_counts: list[int], seed: int = 0) -> list[dict[str, Any]]:
    """Rows of (captions, form, questions, accuracy %, yes share %), and an "all forms" row per caption count."""
    rows = []
    for captions in caption_counts:
        rng = random.Random(seed)
        items = [item for _ in range(scenes) for item in scene_questions(rng, captions)]
        by_form: dict[str, list[tuple[bool, bool]]] = defaultdict(list)
        for item in items:
            answer = pipeline.answer(item["question"], item["captions"]).answer
            by_form[item["form"]].append((answer == item["answer"], answer == "yes"))
        by_form["all forms"] = [outcome for outcomes in list(by_form.values()) for outcome in outcomes]
        for form, outcomes in by_form.items():
            rows.append({
                "captions": captions, "form": form, "questions": len(outcomes),
                "accuracy": 100 * sum(right for right, _ in outcomes) / len(outcomes),
                "yes_share": 100 * sum(yes for _, yes in outcomes) / len(outcomes),
            })
    return rows


@click.command(cls=ScriptCommand)
@click.option("--scenes", default=12, show_default=True, help="random scenes per caption count")
@click.option("--captions", "caption_counts", default="1,5", show_default=True, help="captions per scene")
@model_options
def simple_scenes(scenes: int, caption_counts: str, **options: Any) -> None:
    """Yes/no accuracy per question form on simple one-shape scenes."""
    configure_logging(verbose=False)
    config = preset(options.pop("preset")).with_overrides(overrides_from(options))
    counts = [int(n) for n in caption_counts.split(",")]
    rows = measure(Pipeline(config), scenes, counts, config.seed)
    click.echo("| captions | form | questions | yes/no accuracy | answered yes |\n|---:|---|---:|---:|---:|")
    for row in rows:
        click.echo(f"| {row['captions']} | {row['form']} | {row['questions']} | {row['accuracy']:.1f} | "
                   f"{row['yes_share']:.1f} |")


def main() -> None:
    simple_scenes.main(prog_name="simple_scenes.py")


if __name__ == "__main__":
    main()
