#!/usr/bin/env python
"""What lower precision changes in PNP-VQA's models, against float32 on the same weights (issue 21's evidence).

    python benchmarks/precision.py                       # real-size random BLIP ITM, BLIP captioner, T5-large FiD
    python benchmarks/precision.py --size tiny           # the tiny models: a smoke run of the script itself

Each precision (float32, bfloat16, float32 + int8, bfloat16 + int8) loads the same random weights through the
product's loaders and sees the same image and questions. Per precision, against float32:
- GradCAM: the top-20 patches in common (of 20) and the largest ITM probability difference;
- captions: each precision captions float32's relevance map under the same seed; the share of float32's captions
  it also writes, sampled (the pnp-vqa decoding) and greedy. The noise floor beside it: float32 under another seed;
- FiD: the share of questions whose answer over float32's captions is unchanged.
Random weights give flat next-token distributions, so a small change of logits flips a sampled or greedy token far
more often than in a trained model: read the caption and answer rows as an upper bound on what changes.
Accuracy with real weights (the bundled LLM) is benchmarks/realdev.py with --set dtype=... / quantize=....
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from speed import QUESTIONS, machine  # noqa: E402
from zsvqa.cli import ScriptCommand, configure_logging  # noqa: E402
from zsvqa.outputs import check_output_file  # noqa: E402

# (label, dtype, quantize)
PRECISIONS = [
    ("float32", "float32", None),
    ("bfloat16", "bfloat16", None),
    ("float32 + int8", "float32", "int8"),
    ("bfloat16 + int8", "bfloat16", "int8"),
]
TOP_PATCHES = 20
MODELS = {
    "large": {"matcher.model": "random:blip-itm-large", "captioner.model": "random:blip-captioner-large",
              "answerer.model": "random:t5-large"},
    "tiny": {"matcher.model": "tiny:blip-itm", "matcher.gradcam_layer": 0, "captioner.model": "tiny:blip-captioner",
             "captioner.num_patches": 4, "captioner.min_length": 7, "captioner.max_length": 12,
             "answerer.model": "tiny:t5"},
}


def pipeline_for(size: str, dtype: str, quantize: str | None, num_captions: int, decoding: str = "sample") -> Any:
    from zsvqa.config import preset
    from zsvqa.pipeline import Pipeline

    overrides = {**MODELS[size], "dtype": dtype, "quantize": quantize, "captioner.num_captions": num_captions,
                 "captioner.decoding": decoding}
    return Pipeline(preset("pnp-vqa").with_overrides(overrides).validate())


def top_patches(relevance: Any) -> set[int]:
    return set(relevance.reshape(-1).topk(min(TOP_PATCHES, relevance.numel())).indices.tolist())


def shared_share(reference: list[str], other: list[str]) -> float:
    """The share of the reference captions that the other set holds too."""
    return len(set(reference) & set(other)) / max(len(set(reference)), 1)


def measure(size: str, label: str, dtype: str, quantize: str | None, image: Any, questions: list[str],
            num_captions: int, reference: dict[str, Any] | None) -> dict[str, Any]:
    """One precision's GradCAM, captions and FiD answers; compared with `reference` (float32's) when given."""
    sampled = pipeline_for(size, dtype, quantize, num_captions)
    greedy = pipeline_for(size, dtype, quantize, num_captions, "greedy")
    matches = sampled.matcher(sampled.matcher.encode_image(image), questions)
    relevance = reference["relevance"] if reference else [m.relevance for m in matches]
    features = sampled.captioner.encode_image(image)
    captions = [sampled.captioner(features, r, seed).captions for seed, r in enumerate(relevance)]
    greedy_features = greedy.captioner.encode_image(image)
    greedy_captions = [greedy.captioner(greedy_features, r, seed).captions for seed, r in enumerate(relevance)]
    fid_captions = reference["captions"] if reference else captions
    answers = [sampled.answer(q, captions=c).answer for q, c in zip(questions, fid_captions)]
    row: dict[str, Any] = {"precision": label, "relevance": relevance, "captions": captions, "answers": answers}
    if reference is None:  # float32: the noise floor of sampling, from another seed
        other = [sampled.captioner(features, r, seed + 1000).captions for seed, r in enumerate(relevance)]
        row["seed_noise_captions_shared"] = _mean([shared_share(c, o) for c, o in zip(captions, other)])
        row.update(itm=[m.itm_score for m in matches], greedy=greedy_captions)
        return row
    row.update(
        top_patches_of=len(top_patches(relevance[0])),
        top20_overlap=_mean([len(top_patches(m.relevance) & top_patches(r)) for m, r in zip(matches, relevance)]),
        itm_max_abs_diff=max(abs(m.itm_score - i) for m, i in zip(matches, reference["itm"])),
        sampled_captions_shared=_mean([shared_share(r, c) for r, c in zip(reference["captions"], captions)]),
        greedy_captions_shared=_mean([shared_share(r, c) for r, c in zip(reference["greedy"], greedy_captions)]),
        fid_answers_unchanged=_mean([a == b for a, b in zip(answers, reference["answers"])]),
    )
    return row


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def render(rows: list[dict[str, Any]], noise: float) -> str:
    lines = [
        "| precision vs float32 | top-20 patches shared | ITM max abs diff | sampled captions shared | "
        "greedy captions shared | FiD answers unchanged |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {r['precision']} | {r['top20_overlap']:.1f}/{r['top_patches_of']} | {r['itm_max_abs_diff']:.2e} | "
            f"{r['sampled_captions_shared']:.0%} | {r['greedy_captions_shared']:.0%} | {r['fid_answers_unchanged']:.0%} |"
        )
    lines.append(f"| float32, another seed (sampling noise) | | | {noise:.0%} | | |")
    return "\n".join(lines)


@click.command(cls=ScriptCommand)
@click.option("--size", type=click.Choice(list(MODELS)), default="large", show_default=True,
              help="large: real-size random models; tiny: a smoke run")
@click.option("--questions", "num_questions", type=int, default=5, show_default=True)
@click.option("--num-captions", type=int, default=100, show_default=True, help="N")
@click.option("--precisions", default=",".join(label for label, _, _ in PRECISIONS[1:]), show_default=True,
              help="the precisions compared with float32, comma-separated (bfloat16 is emulated, and very slow, on "
                   "CPUs without AVX512-BF16 or AMX)")
@click.option("--out", default="runs/precision.json", show_default=True, help="where the JSON report goes")
def precision(size: str, num_questions: int, num_captions: int, precisions: str, out: str) -> None:
    """GradCAM, captions and FiD answers of each precision against float32, on shared random weights."""
    check_output_file(out, "--out")
    known = {label: (dtype, quantize) for label, dtype, quantize in PRECISIONS}
    chosen = [p.strip() for p in precisions.split(",") if p.strip()]
    unknown = [p for p in chosen if p not in known or p == "float32"]
    if unknown or not chosen:
        raise click.BadParameter(f"{unknown or precisions!r}; choose among {', '.join(list(known)[1:])}",
                                 param_hint="--precisions")
    import numpy as np
    from PIL import Image
    from tqdm import tqdm

    configure_logging(verbose=False)
    image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8))
    questions = (QUESTIONS * (num_questions // len(QUESTIONS) + 1))[:num_questions]
    reference = None
    rows = []
    for label in tqdm(["float32", *chosen], desc="precisions", unit="precision"):
        dtype, quantize = known[label]
        row = measure(size, label, dtype, quantize, image, questions, num_captions, reference)
        if reference is None:
            reference = row
        else:
            rows.append(row)
    keep = ("precision", "top_patches_of", "top20_overlap", "itm_max_abs_diff", "sampled_captions_shared", "greedy_captions_shared",
            "fid_answers_unchanged")
    noise = reference["seed_noise_captions_shared"]
    report = {"machine": machine(), "size": size, "questions": len(questions), "num_captions": num_captions,
              "rows": [{k: r[k] for k in keep} for r in rows], "seed_noise_captions_shared": noise}
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    click.echo(render(rows, noise))
    click.echo(f"wrote {out}")


if __name__ == "__main__":
    precision()
