#!/usr/bin/env python
"""The two caption samplers side by side: transformers' generate against the top-k loop (captioner.sampler).

    python benchmarks/caption_sampler.py                          # pnp-vqa's captioner: random BLIP large, K=20, N=100
    python benchmarks/caption_sampler.py --quantize int8 --seeds 8
    python benchmarks/caption_sampler.py --logit-scale 10 --eos-bias 23   # captions that end and repeat
    python benchmarks/caption_sampler.py --preset tiny --num-captions 100 --logit-scale 40 --eos-bias 14

Both samplers draw each token from the same distribution (the softmax over the top_k largest logits), from
different random streams. For each seed, the captioner writes N captions of one image with each sampler, back to
back (which goes first alternates from seed to seed), as the pipeline asks for them: patches drawn from a fixed
random relevance map, duplicates dropped and topped up. Printed as a markdown table per sampler: seconds per call,
wall clock and the process's CPU time, as median and least (other work on a shared machine only adds time); and,
as mean ± standard deviation across seeds, the caption length in new tokens (the end token not counted), the
distinct words of the first 100 decoded captions and the share of decoded captions dropped as duplicates. Then the
speed ratios: the median of the seeds' paired ratios, and the ratio of the least times. A difference between the
samplers is to be read against the seed-to-seed spread of each.

Random weights give noise captions: these compare the samplers, not caption quality. A random decoder's scores are
nearly flat and its end token is one of 30,524, so its captions never end early and never repeat, and length and
duplicates would compare nothing. --logit-scale multiplies the next-token scores (sharper, as a trained model's) and
--eos-bias adds to the end token's, so that captions end at varied lengths and some repeat; both samplers see the
same scores.
"""

from __future__ import annotations

import dataclasses
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from speed import machine, timed  # noqa: E402
from zsvqa.cli import ScriptCommand, configure_logging, precision_options, precision_overrides, set_overrides  # noqa: E402
from zsvqa.config import CAPTION_SAMPLERS, preset  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402

DISTINCT_WORDS_OVER = 100  # captions


def caption_statistics(captioner: Any, decoded: list[Any], result: Any) -> dict[str, float]:
    """Length, distinct words and duplicate share of one call's decoded captions (token ids, in decoding order)."""
    import torch

    lengths, texts = [], []
    for tokens in decoded:  # batches end at different steps: each is as wide as its longest caption
        ended = tokens[:, captioner.prompt_ids.shape[1]:] == captioner.eos_token_id
        lengths += torch.where(ended.any(dim=1), ended.int().argmax(dim=1), ended.shape[1]).tolist()
        texts += captioner.decode(tokens)
    duplicates = sum(removed.reason == "duplicate" for removed in result.removed)
    return {
        "length": statistics.mean(lengths),
        "distinct_words": float(len({word for text in texts[:DISTINCT_WORDS_OVER] for word in text.split()})),
        "duplicate_share": duplicates / result.generated,
        "decoded": float(result.generated),
    }


def recording(method: Callable[..., Any], decoded: list[Any]) -> Callable[..., Any]:
    def record(*args: Any) -> Any:
        tokens = method(*args)
        decoded.append(tokens.cpu())
        return tokens

    return record


def reshape_scores(captioner: Any, scale: float, eos_bias: float) -> None:
    """Next-token scores x `scale`, the end token's + `eos_bias`, for both samplers (a hook on the LM head)."""
    def hook(module: Any, inputs: Any, scores: Any) -> Any:
        scores = scores * scale
        scores[..., captioner.eos_token_id] += eos_bias
        return scores

    captioner.model.text_decoder.cls.register_forward_hook(hook)


@click.command(cls=ScriptCommand)
@click.option("--preset", "preset_name", default="pnp-vqa", type=click.Choice(["pnp-vqa", "tiny"]), show_default=True,
              help="pnp-vqa: its captioner settings on a real-size random BLIP large; tiny: the tiny random captioner")
@click.option("--seeds", type=int, default=5, show_default=True, help="seeds 0 .. SEEDS-1, each run by both samplers")
@click.option("--num-captions", type=int, default=None, help="N [default: the preset's]")
@precision_options
@click.option("--logit-scale", type=float, default=1.0, show_default=True,
              help="multiply the decoder's next-token scores (random ones are nearly flat)")
@click.option("--eos-bias", type=float, default=0.0, show_default=True, help="add to the end token's score")
@click.option("--set", "settings_given", multiple=True, metavar="KEY=VALUE",
              help="any other setting, e.g. --set captioner.top_k=20 (repeatable)")
def caption_sampler(preset_name: str, seeds: int, num_captions: int | None, device: str | None, dtype: str | None,
                    quantize: str | None, logit_scale: float, eos_bias: float, settings_given: tuple[str, ...]) -> None:
    """Time and caption statistics of captioner.sampler=transformers against top_k, mean ± std across seeds."""
    if seeds < 2:
        raise InputError(f"--seeds needs at least 2 seeds for a spread; got {seeds}")
    import numpy as np
    import torch
    from PIL import Image

    from zsvqa.captioning import PatchCaptioner
    from zsvqa.models import resolve_dtype, resolve_quantize

    configure_logging(verbose=False)
    overrides = precision_overrides(device, dtype, quantize)
    if preset_name != "tiny":
        overrides["captioner.model"] = "random:blip-captioner-large"
    if num_captions is not None:
        overrides["captioner.num_captions"] = num_captions
    overrides.update(set_overrides(settings_given))
    config = preset(preset_name).with_overrides(overrides)
    if config.captioner.decoding != "sample":
        raise InputError(f"captioner.decoding is {config.captioner.decoding!r}: only sample decoding has a sampler")
    used_dtype = resolve_dtype(config.dtype, config.device)
    used_quantize = resolve_quantize(config.quantize, config.device)
    click.echo("loading the captioner (a random model is built once, then cached) ...", err=True)
    captioner = PatchCaptioner(config.captioner, config.device, used_dtype, config.vision_layer_norm_eps,
                               used_quantize)
    image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8))
    features = captioner.encode_image(image)
    relevance = torch.rand(features.grid, generator=torch.Generator().manual_seed(0))  # stands in for GradCAM
    if (logit_scale, eos_bias) != (1.0, 0.0):
        reshape_scores(captioner, logit_scale, eos_bias)
    decoded: list[Any] = []
    for method in ("_sample_top_k", "_transformers_generate"):  # each sampler's token ids, as it returns them
        setattr(captioner, method, recording(getattr(captioner, method), decoded))
    configs = {sampler: dataclasses.replace(config.captioner, sampler=sampler) for sampler in CAPTION_SAMPLERS}

    def run(sampler: str, seed: int) -> dict[str, float]:
        captioner.config = configs[sampler]
        decoded.clear()
        cpu_start = time.process_time()
        result, seconds = timed(lambda: captioner(features, relevance, seed), config.device)
        cpu_seconds = time.process_time() - cpu_start
        return {"seconds": seconds, "cpu_seconds": cpu_seconds, **caption_statistics(captioner, decoded, result)}

    for sampler in CAPTION_SAMPLERS:  # warm-up: one-off costs (allocator, kernels) are not the sampler's speed
        run(sampler, seeds)
    rows: dict[str, list[dict[str, float]]] = {sampler: [] for sampler in CAPTION_SAMPLERS}
    for seed in range(seeds):
        order = CAPTION_SAMPLERS if seed % 2 == 0 else CAPTION_SAMPLERS[::-1]
        for sampler in order:
            rows[sampler].append(run(sampler, seed))
    m = machine()
    captioner_config = config.captioner
    click.echo(
        f"{m['processor']}, {m['torch_threads']} threads, torch {m['torch']}; {m['date']}. {preset_name} captioner "
        f"({captioner_config.model}), {used_dtype}{f', {used_quantize} decoder' if used_quantize else ''}, device {config.device}, "
        f"K={captioner_config.num_patches}, N={captioner_config.num_captions}, top_k={captioner_config.top_k}, "
        f"{captioner_config.min_length}-{captioner_config.max_length} tokens with the prompt, seeds 0-{seeds - 1}"
        f"{f'; scores x {logit_scale}, end token + {eos_bias}' if (logit_scale, eos_bias) != (1.0, 0.0) else ''}\n"
    )
    click.echo(render(rows, min(DISTINCT_WORDS_OVER, captioner_config.num_captions)))


def render(rows: dict[str, list[dict[str, float]]], distinct_over: int) -> str:
    def spread(values: list[float], digits: int, scale: float = 1.0) -> str:
        return f"{statistics.mean(values) * scale:.{digits}f} ± {statistics.stdev(values) * scale:.{digits}f}"

    def timing(values: list[float]) -> str:  # other work on the machine only ever adds time: the least is telling
        return f"{statistics.median(values):.2f} ({min(values):.2f})"

    lines = [
        f"| sampler | s per call, median (least) | CPU s per call, median (least) | caption length, new tokens | "
        f"distinct words per {distinct_over} captions | duplicates dropped, % | captions decoded |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for sampler, runs in rows.items():
        column = {key: [run[key] for run in runs] for key in runs[0]}
        lines.append(
            f"| {sampler} | {timing(column['seconds'])} | {timing(column['cpu_seconds'])} | "
            f"{spread(column['length'], 2)} | {spread(column['distinct_words'], 1)} | "
            f"{spread(column['duplicate_share'], 2, 100)} | {spread(column['decoded'], 1)} |"
        )
    lines.append("")
    for key, what in (("seconds", "wall clock"), ("cpu_seconds", "CPU time")):
        baseline, fast = ([run[key] for run in rows[name]] for name in CAPTION_SAMPLERS)
        per_seed = sorted(b / f for b, f in zip(baseline, fast))  # each seed's two calls ran back to back
        lines.append(f"speed ratio {CAPTION_SAMPLERS[0]} / {CAPTION_SAMPLERS[1]}, {what}: median of the seeds' ratios "
                     f"{statistics.median(per_seed):.2f}x (from {per_seed[0]:.2f}x to {per_seed[-1]:.2f}x), "
                     f"least times {min(baseline) / min(fast):.2f}x")
    return "\n".join(lines)


def main() -> None:
    caption_sampler.main(prog_name="caption_sampler.py")


if __name__ == "__main__":
    main()
