#!/usr/bin/env python
"""Speed and memory of the pipeline at paper settings, and the gain of each optimisation, measured side by side.

    python benchmarks/speed.py                  # real-size random BLIP large x2, T5-large, bundled Gemma-3-270M
    python benchmarks/speed.py --preset tiny    # small random models: a smoke run of the script itself

Random weights cost the same compute as the real models, so the timings hold for them; the answers are noise.
Reports per-stage seconds and peak memory for one image with several questions, and four ratios:
1. efficient GradCAM (gradient w.r.t. the attention map only, image features without gradient) against a full
   backward pass through the whole model, with the maps checked equal;
2. image features computed once per image against once per question;
3. batched caption sampling with top-up of duplicates against one caption at a time;
4. the whole pipeline per question (amortized over the image's questions) against the same with all three off.
The table is printed and written as JSON with the machine it ran on. On CUDA it runs unchanged (--device cuda,
with --dtype bfloat16 or float16 where supported).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import click

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from zsvqa.cli import ScriptCommand, configure_logging  # noqa: E402
from zsvqa.outputs import check_output_file  # noqa: E402

QUESTIONS = [
    "what is the man riding?",
    "what color is the bus?",
    "how many people are in the picture?",
    "is it raining?",
    "what is on the table next to the window?",
]
# LAVIS PNP-VQA large on a 2-core machine of this kind, same architectures, random weights (from the issue).
REFERENCE = {
    "gradcam_s_per_question": 7.5,
    "captioning_s_per_question": 14.0,
    "unifiedqa_fid_s_per_question": 21.0,
    "peak_memory_gb_blip_only": 9.1,
    "peak_memory_gb_with_t5_large": 11.4,
}


def settings(preset_name: str, num_captions: int, num_patches: int, device: str, dtype: str) -> dict[str, Any]:
    if preset_name == "tiny":
        base: dict[str, Any] = {}
    else:
        base = {
            "matcher.model": "random:blip-itm-large",
            "captioner.model": "random:blip-captioner-large",
            "captioner.filter_threshold": None,  # as the reference PNP-VQA run: no caption filter
            "question_gen.backend": "t5",
            "question_gen.model": "random:t5-large",
            "answerer.model": "bundled:gemma-3-270m",
            "answerer.max_prompt_tokens": 2048,
        }
    return {
        **base,
        "captioner.num_captions": num_captions,
        "captioner.num_patches": num_patches,
        "device": device,
        "dtype": dtype,
    }


def timed(function: Callable[[], Any], device: str) -> tuple[Any, float]:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return result, time.perf_counter() - start


def peak_rss_gb() -> float:
    """Peak resident memory since the start, or since the last `reset_peak_rss` (Linux's VmHWM)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kB on Linux


def reset_peak_rss() -> bool:
    """Start a new peak (Linux: writing 5 to clear_refs resets VmHWM), so a later peak is the run's own."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def resident_gb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**30


def machine() -> dict[str, Any]:
    import psutil
    import torch

    info = {
        "date": datetime.date.today().isoformat(),
        "platform": platform.platform(),
        "processor": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch": torch.__version__,
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def prepare_models(overrides: dict[str, Any], preset_name: str) -> None:
    """Build the random models and convert the GGUF answerer in a child process, so that their one-off memory
    spikes stay out of this process's peak."""
    code = (
        "import sys, json; from zsvqa.config import preset; from zsvqa.models import resolve, converted_gguf\n"
        "from transformers import AutoModelForCausalLM\n"
        f"c = preset({preset_name!r}).with_overrides(json.loads(sys.argv[1]))\n"
        "for m in (c.matcher.model, c.captioner.model, c.question_gen.model): resolve(m)\n"
        "s = resolve(c.answerer.model, c.answerer.gguf_file)\n"
        "s.gguf_file and converted_gguf(AutoModelForCausalLM, s, 'answerer', '--answerer-model')\n"
    )
    subprocess.run([sys.executable, "-c", code, json.dumps(overrides)], check=True)


@click.command(cls=ScriptCommand)
@click.option("--preset", "preset_name", default="large", type=click.Choice(["large", "tiny"]), show_default=True,
              help="large: real-size random models at paper settings; tiny: a smoke run")
@click.option("--num-captions", type=int, default=None, help="N [default: 100, tiny: its preset's]")
@click.option("--num-patches", type=int, default=None, help="K [default: 20, tiny: its preset's]")
@click.option("--questions", "num_questions", type=int, default=5, show_default=True, help="questions about the image")
@click.option("--baseline-questions", type=int, default=2, show_default=True,
              help="questions the baselines (full backward, all-off pipeline) answer: they share nothing across "
                   "questions, so their cost per question needs no more, and each costs minutes on a CPU")
@click.option("--device", default="cpu", show_default=True)
@click.option("--dtype", default="float32", type=click.Choice(["float32", "bfloat16", "float16"]), show_default=True)
@click.option("--out", default="runs/speed.json", show_default=True, help="where the JSON report goes")
def speed(preset_name: str, num_captions: int | None, num_patches: int | None, num_questions: int,
          baseline_questions: int, device: str, dtype: str, out: str) -> None:
    """Measure per-stage time, peak memory and the four optimisation ratios."""
    check_output_file(out, "--out")  # minutes of measuring must not end in an unwritable report
    import numpy as np
    import torch
    from PIL import Image
    from tqdm import tqdm

    from zsvqa.config import preset
    from zsvqa.matching import full_backward_gradcam, normalize_relevance
    from zsvqa.pipeline import Pipeline, QuestionCaptions

    configure_logging(verbose=False)
    base_preset = "tiny" if preset_name == "tiny" else "img2llm"
    tiny = preset("tiny")
    overrides = settings(
        preset_name,
        num_captions or (tiny.captioner.num_captions if preset_name == "tiny" else 100),
        num_patches or (tiny.captioner.num_patches if preset_name == "tiny" else 20),
        device,
        dtype,
    )
    click.echo("preparing models (built and converted once, then cached) ...", err=True)
    prepare_models(overrides, base_preset)
    config = preset(base_preset).with_overrides(overrides)
    pipeline = Pipeline(config)
    questions = (QUESTIONS * (num_questions // len(QUESTIONS) + 1))[:num_questions]
    image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8))
    report: dict[str, Any] = {"machine": machine(), "settings": config.to_dict(), "questions": len(questions)}
    memory: dict[str, float] = {}
    steps = tqdm(total=7, desc="speed", unit="step")

    # Load every stage before timing anything.
    def load_stages() -> None:
        for stage in ("matcher", "captioner", "question_generator", "answerer", "candidate_extractor"):
            getattr(pipeline, stage)

    report["load_seconds"] = timed(load_stages, device)[1]
    # Loading converts checkpoints (float32 files to bfloat16, say): a one-off peak that is not the run's.
    # Resident first: the peak read after it can only be higher, while anything allocated between the two
    # readings would otherwise put the resident figure above the peak.
    memory["models_loaded_gb"] = resident_gb()
    memory["loading_peak_gb"] = peak_rss_gb()
    matcher, captioner = pipeline.matcher, pipeline.captioner
    steps.update()

    # Warm-up: the first call of each model pays one-off costs (allocator, kernels) that are not its speed.
    pipeline.answer_image(image, questions[:1])
    steps.update()

    # 4a. The whole optimised pipeline first, so that the peak memory it reports is its own.
    peak_was_reset = reset_peak_rss()
    results, optimized_seconds = timed(lambda: pipeline.answer_image(image, questions), device)
    memory["pipeline_peak_gb"] = peak_rss_gb()
    memory["pipeline_peak_excludes_loading"] = peak_was_reset
    stages: dict[str, float] = {}
    for result in results:
        for stage, seconds in result.timings.items():
            stages[stage] = stages.get(stage, 0.0) + seconds / len(questions)
    steps.update()

    # 1. GradCAM: efficient (features given, attention-map leaf) vs a full backward pass per question.
    baseline = questions[: max(1, min(baseline_questions, len(questions)))]
    features, encode_seconds = timed(lambda: matcher.encode_image(image), device)
    efficient, efficient_seconds = timed(lambda: matcher(features, questions), device)
    full_maps, full_seconds = timed(lambda: [full_backward_gradcam(matcher, image, [q])[0] for q in baseline], device)
    efficient_per_question, full_per_question = efficient_seconds / len(questions), full_seconds / len(baseline)
    largest_difference = max(
        float((normalize_relevance(full) - result.relevance).abs().max()) for full, result in zip(full_maps, efficient)
    )
    report["gradcam"] = {
        "efficient_s_per_question": efficient_per_question,
        "full_backward_s_per_question": full_per_question,
        "speedup": full_per_question / efficient_per_question,
        "speedup_including_image_encoding": full_per_question / (efficient_per_question + encode_seconds / len(questions)),
        "max_abs_difference_of_maps": largest_difference,
        "maps_equal": largest_difference < 1e-4,
    }
    steps.update()

    # 2. Image features once per image vs once per question (both encoders and the relevance).
    def vision_once() -> None:
        match_features = matcher.encode_image(image)
        captioner.encode_image(image)
        matcher(match_features, questions)

    def vision_per_question() -> None:
        for question in questions:
            matcher(matcher.encode_image(image), [question])
            captioner.encode_image(image)

    _, once_seconds = timed(vision_once, device)
    _, per_question_seconds = timed(vision_per_question, device)
    report["image_features"] = {
        "once_per_image_s": once_seconds,
        "once_per_question_s": per_question_seconds,
        "speedup": per_question_seconds / once_seconds,
    }
    steps.update()

    # 3. Captions for one question: batched with top-up vs one at a time.
    caption_features = captioner.encode_image(image)
    relevance = efficient[0].relevance
    batched_config = captioner.config
    batched, batched_seconds = timed(lambda: captioner(caption_features, relevance, seed=0), device)
    captioner.config = dataclasses.replace(batched_config, batch_size=1)
    try:
        single, single_seconds = timed(lambda: captioner(caption_features, relevance, seed=0), device)
    finally:
        captioner.config = batched_config
    report["captioning"] = {
        "batched_s_per_question": batched_seconds,
        "one_at_a_time_s_per_question": single_seconds,
        "speedup": single_seconds / batched_seconds,
        "captions": len(batched.captions),
        "decoded_with_duplicates": batched.generated,
        "top_up_rounds": batched.rounds - 1,
    }
    steps.update()

    # 4b. The same questions with all three optimisations off.
    def all_off() -> None:
        captioner.config = dataclasses.replace(batched_config, batch_size=1)
        try:
            for question in baseline:
                matcher.encode_image(image)  # recomputed per question, as a per-question pipeline does
                cam = full_backward_gradcam(matcher, image, [question])[0]
                caption_set = captioner(captioner.encode_image(image), normalize_relevance(cam), seed=1)
                pipeline.answer_captioned(QuestionCaptions(question, caption_set.captions))
        finally:
            captioner.config = batched_config

    _, baseline_seconds = timed(all_off, device)
    steps.update()
    steps.close()
    report["pipeline"] = {
        "optimized_s_per_question": optimized_seconds / len(questions),
        # One process on one device: the rate each GPU (or CPU process) of a sharded eval contributes.
        "questions_per_second_per_device": len(questions) / optimized_seconds,
        "all_optimisations_off_s_per_question": baseline_seconds / len(baseline),
        "all_optimisations_off_questions": len(baseline),
        "speedup": (baseline_seconds / len(baseline)) / (optimized_seconds / len(questions)),
        "stage_s_per_question": dict(sorted(stages.items(), key=lambda item: -item[1])),
    }
    if preset_name == "large":  # the reference ran the same architectures; a comparison with tiny models means nothing
        reference_total = sum(v for k, v in REFERENCE.items() if k.endswith("s_per_question"))
        speedup = reference_total / report["pipeline"]["optimized_s_per_question"]
        report["reference_lavis"] = {**REFERENCE, "total_s_per_question": reference_total, "speedup_vs_reference": speedup}
    memory["peak_with_baselines_gb"] = peak_rss_gb()
    report["memory"] = memory
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    click.echo(render(report))
    click.echo(f"wrote {out}")


def render(report: dict[str, Any]) -> str:
    m = report["machine"]
    g, f, c, p = (report[k] for k in ("gradcam", "image_features", "captioning", "pipeline"))
    lines = [
        f"machine: {m['processor']}, {m['cpu_count']} cores, {m['memory_gb']} GiB, torch {m['torch']}"
        + (f", {m['gpu']}" if "gpu" in m else "") + f"; {m['date']}",
        f"settings: K={report['settings']['captioner']['num_patches']}, N={report['settings']['captioner']['num_captions']}, "
        f"{report['questions']} questions on one image, device {report['settings']['device']}, dtype {report['settings']['dtype']}",
        "",
        "| measurement | optimised | baseline | ratio |",
        "|---|---|---|---|",
        f"| 1. GradCAM, s/question (maps equal: {g['maps_equal']}) | {g['efficient_s_per_question']:.3f} | "
        f"{g['full_backward_s_per_question']:.3f} (full backward) | {g['speedup']:.1f}x |",
        f"| 1b. GradCAM incl. image encoding, s/question | "
        f"{g['full_backward_s_per_question'] / g['speedup_including_image_encoding']:.3f} | "
        f"{g['full_backward_s_per_question']:.3f} | {g['speedup_including_image_encoding']:.1f}x |",
        f"| 2. image features + relevance, s/image | {f['once_per_image_s']:.3f} (once) | "
        f"{f['once_per_question_s']:.3f} (per question) | {f['speedup']:.1f}x |",
        f"| 3. captioning, s/question | {c['batched_s_per_question']:.3f} (batched) | "
        f"{c['one_at_a_time_s_per_question']:.3f} (one at a time) | {c['speedup']:.1f}x |",
        f"| 4. whole pipeline, s/question | {p['optimized_s_per_question']:.3f} | "
        f"{p['all_optimisations_off_s_per_question']:.3f} (all off) | {p['speedup']:.1f}x |",
        "",
        f"throughput: {p['questions_per_second_per_device']:.3f} questions/s on one {report['settings']['device']} "
        "process (a sharded eval on N devices: about N times this)",
        "where the time goes (optimised, s/question): "
        + ", ".join(f"{k} {v:.3f}" for k, v in p["stage_s_per_question"].items()),
        f"memory (resident): models loaded {report['memory']['models_loaded_gb']:.2f} GiB (loading peak "
        f"{report['memory']['loading_peak_gb']:.2f}); optimised pipeline peak {report['memory']['pipeline_peak_gb']:.2f} "
        f"GiB; with the full-backward baselines {report['memory']['peak_with_baselines_gb']:.2f} GiB",
    ]
    if "reference_lavis" in report:
        r = report["reference_lavis"]
        lines.append(
            f"reference LAVIS PNP-VQA large (quoted, not measured here): {r['total_s_per_question']:.1f} s/question, "
            f"peak {r['peak_memory_gb_with_t5_large']} GB; ours {r['speedup_vs_reference']:.1f}x faster per question"
        )
    return "\n".join(lines)


def main() -> None:
    speed.main(prog_name="speed.py")


if __name__ == "__main__":
    main()
