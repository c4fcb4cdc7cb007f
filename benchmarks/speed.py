#!/usr/bin/env python
"""Speed and memory of the pipeline at paper settings, and the gain of each optimisation, measured side by side.

    python benchmarks/speed.py                      # img2llm: random BLIP large x2, T5-large QG, bundled Gemma-3-270M
    python benchmarks/speed.py --preset pnp-vqa     # PNP-VQA: random BLIP large x2, UnifiedQA T5-large FiD
    python benchmarks/speed.py --preset pnp-vqa --reference lavis.json   # and LAVIS, stage by stage (../shared/lavis-bench)
    python benchmarks/speed.py --preset tiny        # small random models: a smoke run of the script itself

Random weights cost the same compute as the real models, so the timings hold for them; the answers are noise.
Reports per-stage seconds and peak memory for one image with several questions, and four ratios:
1. efficient GradCAM (gradient w.r.t. the attention map only, image features without gradient) against a full
   backward pass through the whole model, with the maps checked equal;
2. image features computed once per image against once per question;
3. batched caption sampling with top-up of duplicates against one caption at a time;
4. the whole pipeline per question (amortized over the image's questions) against the same with all three off.
With --reference (the JSON of ../shared/lavis-bench's bench.py, run on the same machine: `--model pnp` for pnp-vqa,
`--model img2prompt` for img2llm), it also prints LAVIS and zsvqa stage by stage, their ratios and peak memory.
The table is printed and written as JSON with the machine it ran on. On CUDA it runs unchanged (--device cuda).
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

from zsvqa.cli import ScriptCommand, configure_logging, precision_options, precision_overrides, set_overrides  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402
from zsvqa.outputs import check_output_file  # noqa: E402

QUESTIONS = [
    "what is the man riding?",
    "what color is the bus?",
    "how many people are in the picture?",
    "is it raining?",
    "what is on the table next to the window?",
]
def settings(preset_name: str, num_captions: int, num_patches: int, precision: dict[str, Any]) -> dict[str, Any]:
    """Overrides of the preset: real-size random models of the paper's architectures, N, K and the precision
    options given (`precision_overrides`)."""
    base: dict[str, Any] = {}
    if preset_name != "tiny":
        base = {"matcher.model": "random:blip-itm-large", "captioner.model": "random:blip-captioner-large"}
    if preset_name == "pnp-vqa":
        base["answerer.model"] = "random:t5-large"  # UnifiedQA-v2 T5-large's architecture
    elif preset_name == "img2llm":
        base.update({
            # A random ITM head passes an arbitrary share of captions; every one passes here, as in the LAVIS
            # harness (its +10 match bias), so both decode N captions and score each.
            "captioner.filter_threshold": 0.0,
            "question_gen.model": "random:t5-large",  # T5-large-lm-adapt's architecture (LAVIS's QG)
            "answerer.model": "bundled:gemma-3-270m",  # LAVIS times no LLM: this one is reported apart
            "answerer.max_prompt_tokens": 2048,
        })
    return {
        **base,
        "captioner.num_captions": num_captions,
        "captioner.num_patches": num_patches,
        **precision,
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
        info["gpu_count"] = torch.cuda.device_count()
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
        info["cuda"] = torch.version.cuda
    return info


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()

# LAVIS's stages (bench.py) and the zsvqa stage timings that do the same work. "vit:matcher" and "vit:captioner" are
# the two vision transformers' shares of zsvqa's "image_features" (encoded once per image, shared by its questions).
STAGE_MAP = {
    "pnp-vqa": [
        ("itm", "image-question matching + GradCAM (ViT-L included)", ["vit:matcher", "relevance"]),
        ("cap", "N captions (ViT-L included)", ["vit:captioner", "captioning"]),
        ("qa", "answer: UnifiedQA T5-large FiD over N passages", ["answer"]),
    ],
    "img2llm": [
        ("itm", "image-question matching + GradCAM (ViT-L included)", ["vit:matcher", "relevance"]),
        ("cap", "N captions + ITM caption filter (ViT-L included)", ["vit:captioner", "captioning", "caption_filter"]),
        ("qg", "answer candidates + T5-large question generation", ["candidates", "question_generation"]),
        ("prompt", "prompt", ["prompt"]),
    ],
}
REFERENCE_MODEL = {"pnp-vqa": "pnp", "img2llm": "img2prompt"}


def read_reference(path: str, preset_name: str) -> dict[str, Any]:
    """LAVIS's measurement (lavis-bench bench.py JSON), checked to be of the system this preset reproduces."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        system, settings = data["system"], data["settings"]
        stages = data["per_question_s_mean"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InputError(f"--reference {path}: not a lavis-bench result ({error})") from error
    expected = REFERENCE_MODEL.get(preset_name)
    if expected is None:
        raise InputError("--reference compares real-size models: use it with --preset pnp-vqa or img2llm")
    if not system.lower().startswith("pnp" if expected == "pnp" else "img2prompt"):
        raise InputError(f"--reference {path} measured {system!r}; --preset {preset_name} compares with "
                         f"`bench.py --model {expected}`")
    missing = [stage for stage, _, _ in STAGE_MAP[preset_name] if stage not in stages]
    if missing:
        raise InputError(f"--reference {path} has no time for the stage(s) {', '.join(missing)}")
    return data


def compare_with_reference(report: dict[str, Any], lavis: dict[str, Any], preset_name: str) -> dict[str, Any]:
    """LAVIS and zsvqa stage by stage, per question, with the ratios and both peak resident memories."""
    ours = dict(report["pipeline"]["stage_s_per_question"])
    vision = ours.pop("image_features", 0.0)
    share = report["vision_share"]["matcher"]
    ours["vit:matcher"], ours["vit:captioner"] = vision * share, vision * (1 - share)
    lavis_stages = lavis["per_question_s_mean"]
    rows = []
    for stage, label, parts in STAGE_MAP[preset_name]:
        zsvqa_seconds = sum(ours.get(part, 0.0) for part in parts)
        rows.append({"stage": label, "lavis_s": lavis_stages[stage], "zsvqa_s": zsvqa_seconds,
                     "speedup": lavis_stages[stage] / zsvqa_seconds if zsvqa_seconds else None})
    compared = {part for _, _, parts in STAGE_MAP[preset_name] for part in parts}
    lavis_total = sum(row["lavis_s"] for row in rows)
    zsvqa_total = sum(row["zsvqa_s"] for row in rows)
    settings = lavis["settings"]
    return {
        "rows": rows,
        "total": {"lavis_s": lavis_total, "zsvqa_s": zsvqa_total, "speedup": lavis_total / zsvqa_total},
        # Stages LAVIS does not time (img2llm's LLM answer): reported, not compared.
        "not_in_lavis_s": {k: v for k, v in ours.items() if k not in compared and v > 0},
        "lavis_peak_gb": lavis["rss_mb"]["peak"] / 1024,
        "lavis_settings": {k: settings.get(k) for k in ("num_captions", "num_patches", "questions", "max_len", "lengths")},
        "lavis_versions": lavis.get("versions", {}),
        "lavis_threads": lavis.get("threads", {}),
    }


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
@click.option("--preset", "preset_name", default="img2llm", type=click.Choice(["img2llm", "pnp-vqa", "tiny"]),
              show_default=True, help="img2llm / pnp-vqa: real-size random models at paper settings; tiny: a smoke run")
@click.option("--num-captions", type=int, default=None, help="N [default: 100, tiny: its preset's]")
@click.option("--num-patches", type=int, default=None, help="K [default: 20, tiny: its preset's]")
@click.option("--questions", "num_questions", type=int, default=5, show_default=True, help="questions about the image")
@click.option("--baseline-questions", type=int, default=2, show_default=True,
              help="questions the baselines (full backward, all-off pipeline) answer: they share nothing across "
                   "questions, so their cost per question needs no more, and each costs minutes on a CPU")
@click.option("--baselines/--no-baselines", default=True, show_default=True,
              help="measure ratios 1-4 against the unoptimised baselines (minutes); off: the pipeline run only")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False), default=None,
              help="LAVIS's stage times from ../shared/lavis-bench (bench.py JSON), measured on this machine")
@precision_options
@click.option("--set", "settings_given", multiple=True, metavar="KEY=VALUE",
              help="any other setting, e.g. --set answerer.fid_encode_batch=none (repeatable)")
@click.option("--profile", "profile_out", default=None,
              help="also profile one question (torch.profiler) and write each stage's costliest operators here")
@click.option("--out", default="runs/speed.json", show_default=True, help="where the JSON report goes")
def speed(preset_name: str, num_captions: int | None, num_patches: int | None, num_questions: int,
          baseline_questions: int, baselines: bool, reference: str | None, device: str | None, dtype: str | None,
          quantize: str | None, settings_given: tuple[str, ...], profile_out: str | None, out: str) -> None:
    """Measure per-stage time, peak memory and the four optimisation ratios (and LAVIS's, with --reference)."""
    check_output_file(out, "--out")  # minutes of measuring must not end in an unwritable report
    if profile_out:
        check_output_file(profile_out, "--profile")
    lavis = read_reference(reference, preset_name) if reference else None
    import numpy as np
    import torch
    from PIL import Image
    from tqdm import tqdm

    from zsvqa.config import preset
    from zsvqa.pipeline import Pipeline

    configure_logging(verbose=False)
    tiny = preset("tiny")
    overrides = settings(
        preset_name,
        num_captions or (tiny.captioner.num_captions if preset_name == "tiny" else 100),
        num_patches or (tiny.captioner.num_patches if preset_name == "tiny" else 20),
        precision_overrides(device, dtype, quantize),
    )
    overrides.update(set_overrides(settings_given))
    config = preset(preset_name).with_overrides(overrides).validate()  # a bad setting fails before the loading
    device = config.device
    click.echo("preparing models (built and converted once, then cached) ...", err=True)
    prepare_models(overrides, preset_name)
    pipeline = Pipeline(config)
    questions = (QUESTIONS * (num_questions // len(QUESTIONS) + 1))[:num_questions]
    image = Image.fromarray(np.random.RandomState(0).randint(0, 256, (480, 640, 3), dtype=np.uint8))
    report: dict[str, Any] = {
        "machine": machine(), "settings": config.to_dict(), "dtype_used": pipeline.dtype,
        "quantize_used": pipeline.quantize, "questions": len(questions)
    }
    memory: dict[str, float] = {}
    steps = tqdm(total=7 if baselines else 3, desc="speed", unit="step")

    # Load every stage before timing anything.
    def load_stages() -> None:
        pipeline.load_models()
        pipeline.candidate_extractor

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
    pipeline.forget_recent()  # the timed run does all its work again, as for a new image
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
    # The two vision transformers run together as "image_features"; their shares, for the per-model comparison.
    matcher_vit = timed(lambda: matcher.encode_image(image), device)[1]
    captioner_vit = timed(lambda: captioner.encode_image(image), device)[1]
    report["vision_share"] = {"matcher": matcher_vit / (matcher_vit + captioner_vit)}
    report["pipeline"] = {
        "optimized_s_per_question": optimized_seconds / len(questions),
        # One process on one device: the rate each GPU (or CPU process) of a sharded eval contributes.
        "questions_per_second_per_device": len(questions) / optimized_seconds,
        "stage_s_per_question": dict(sorted(stages.items(), key=lambda item: -item[1])),
    }
    steps.update()
    if lavis is not None:
        report["reference_lavis"] = compare_with_reference(report, lavis, preset_name)
    if profile_out:
        pipeline.forget_recent()
        report["profile"] = profile_question(lambda: pipeline.answer_image(image, questions[:1]), profile_out)
    if baselines:
        measure_baselines(report, pipeline, image, questions, baseline_questions, device, steps)
    steps.close()
    memory["peak_with_baselines_gb"] = peak_rss_gb()
    report["memory"] = memory
    if lavis is not None:  # LAVIS's peak covers its load and its questions: so does this one
        report["reference_lavis"]["zsvqa_peak_gb"] = max(memory["loading_peak_gb"], memory["pipeline_peak_gb"])
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(report, indent=2), encoding="utf-8")
    click.echo(render(report))
    click.echo(f"wrote {out}")


def profile_question(run: Callable[[], Any], path: str, top: int = 8) -> dict[str, list[dict[str, Any]]]:
    """Profile `run` (one question) and write, for each pipeline stage, its costliest operators by self time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        run()
    by_stage: dict[str, dict[str, float]] = {}
    for event in profiler.events():
        if event.name.startswith("zsvqa."):
            continue
        parent = event.cpu_parent
        while parent is not None and not parent.name.startswith("zsvqa."):
            parent = parent.cpu_parent
        stage = parent.name.removeprefix("zsvqa.") if parent is not None else "(outside the stages)"
        operators = by_stage.setdefault(stage, {})
        operators[event.name] = operators.get(event.name, 0.0) + event.self_cpu_time_total / 1e6
    table: dict[str, list[dict[str, Any]]] = {}
    lines = []
    for stage, operators in sorted(by_stage.items(), key=lambda item: -sum(item[1].values())):
        total = sum(operators.values())
        ranked = sorted(operators.items(), key=lambda item: -item[1])[:top]
        table[stage] = [{"operator": name, "self_s": seconds, "share": seconds / total} for name, seconds in ranked]
        lines.append(f"{stage}: {total:.3f} s of operator self time")
        lines += [f"  {seconds:8.3f} s  {seconds / total:6.1%}  {name}" for name, seconds in ranked]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return table


def measure_baselines(report: dict[str, Any], pipeline: Any, image: Any, questions: list[str],
                      baseline_questions: int, device: str, steps: Any) -> None:
    """Ratios 1-4: each optimisation against the same work without it."""
    from zsvqa.matching import full_backward_gradcam, normalize_relevance
    from zsvqa.pipeline import QuestionCaptions

    matcher, captioner = pipeline.matcher, pipeline.captioner
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
    pipeline_report = report["pipeline"]
    pipeline_report["all_optimisations_off_s_per_question"] = baseline_seconds / len(baseline)
    pipeline_report["all_optimisations_off_questions"] = len(baseline)
    pipeline_report["speedup"] = pipeline_report["all_optimisations_off_s_per_question"] / pipeline_report[
        "optimized_s_per_question"]


def render(report: dict[str, Any]) -> str:
    m, p, settings = report["machine"], report["pipeline"], report["settings"]
    memory = report["memory"]
    lines = [
        f"machine: {m['processor']}, {m['cpu_count']} cores, {m['memory_gb']} GiB, torch {m['torch']}"
        + (f", {m['gpu']}" if "gpu" in m else "") + f"; {m['date']}",
        f"settings: {settings['name']}, K={settings['captioner']['num_patches']}, "
        f"N={settings['captioner']['num_captions']}, {report['questions']} questions on one image, device "
        f"{settings['device']}, dtype {settings['dtype']} ({report['dtype_used']}), quantize {settings['quantize']} "
        f"({report.get('quantize_used', settings['quantize'])})",
    ]
    if "gradcam" in report:
        g, f, c = (report[k] for k in ("gradcam", "image_features", "captioning"))
        lines += [
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
        ]
    lines += [
        "",
        f"throughput: {p['questions_per_second_per_device']:.3f} questions/s on one {settings['device']} "
        "process (a sharded eval on N devices: about N times this)",
        "where the time goes (optimised, s/question): "
        + ", ".join(f"{k} {v:.3f}" for k, v in p["stage_s_per_question"].items()),
        f"memory (resident): models loaded {memory['models_loaded_gb']:.2f} GiB (loading peak "
        f"{memory['loading_peak_gb']:.2f}); optimised pipeline peak {memory['pipeline_peak_gb']:.2f} GiB"
        + (f"; with the full-backward baselines {memory['peak_with_baselines_gb']:.2f} GiB" if "gradcam" in report
           else ""),
    ]
    if "reference_lavis" in report:
        lines += ["", *render_reference(report["reference_lavis"])]
    return "\n".join(lines)


def render_reference(r: dict[str, Any]) -> list[str]:
    lavis_settings = ", ".join(f"{k} {v}" for k, v in r["lavis_settings"].items())
    lines = [
        f"LAVIS (measured on this machine by lavis-bench: {lavis_settings}; torch {r['lavis_versions'].get('torch')}, "
        f"transformers {r['lavis_versions'].get('transformers')}, {r['lavis_threads'].get('torch')} threads) "
        "against zsvqa, per question:",
        "",
        "| stage, s/question | LAVIS | zsvqa | ratio |",
        "|---|---:|---:|---:|",
    ]
    for row in r["rows"]:
        ratio = f"{row['speedup']:.1f}x" if row["speedup"] else "-"
        lines.append(f"| {row['stage']} | {row['lavis_s']:.2f} | {row['zsvqa_s']:.2f} | {ratio} |")
    total = r["total"]
    lines.append(f"| **whole question** | **{total['lavis_s']:.2f}** | **{total['zsvqa_s']:.2f}** | "
                 f"**{total['speedup']:.1f}x** |")
    lines.append(f"| peak resident memory, GiB | {r['lavis_peak_gb']:.2f} | {r['zsvqa_peak_gb']:.2f} | "
                 f"{r['zsvqa_peak_gb'] / r['lavis_peak_gb']:.2f} of LAVIS's |")
    if r["not_in_lavis_s"]:
        lines.append("not timed by LAVIS, so not in the ratio (s/question): "
                     + ", ".join(f"{k} {v:.2f}" for k, v in r["not_in_lavis_s"].items()))
    return lines


def main() -> None:
    speed.main(prog_name="speed.py")


if __name__ == "__main__":
    main()
