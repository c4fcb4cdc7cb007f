#!/usr/bin/env python
"""How a sharded eval scales: the same eval under torchrun at 1 and 2 (or --processes) CPU processes.

    python benchmarks/scaling.py                      # tiny preset on the devset's questions and captions
    python benchmarks/scaling.py --preset offline --limit 100

Each run is a fresh `torchrun --standalone --nproc_per_node=N run.py eval` into its own folder, without the cache,
each process on OMP_NUM_THREADS threads. Prints the wall time (loading included), questions per second, and the
scaling efficiency t(1) / (N * t(N)), and checks that every run's results.json is byte-identical to the first's.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from zsvqa.cli import ScriptCommand, positive_integers  # noqa: E402
from zsvqa.config import PRESETS  # noqa: E402
from zsvqa.errors import InputError  # noqa: E402

DEVSET = ROOT / "benchmarks" / "devset"


def eval_command(processes: int, out: Path, preset: str, data: dict[str, str], limit: int | None) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
        str(ROOT / "run.py"), "eval", "--preset", preset, "--dataset", "vqav2", "--questions", data["questions"],
        "--annotations", data["annotations"], "--captions", data["captions"], "--out", str(out),
        "--no-cache", "--no-progress", *(["--limit", str(limit), "--split-by-image"] if limit else []),
    ]


def timed_run(command: list[str], threads: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(ROOT)}
    start = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True)
    if result.returncode != 0:
        raise InputError(f"the eval failed: {(result.stderr or result.stdout).strip().splitlines()[-1:]}")
    return time.perf_counter() - start


@click.command(cls=ScriptCommand)
@click.option("--preset", default="tiny", show_default=True, type=click.Choice(list(PRESETS)))
@click.option("--questions", default=str(DEVSET / "questions.json"), show_default=True)
@click.option("--annotations", default=str(DEVSET / "annotations.json"), show_default=True)
@click.option("--captions", default=str(DEVSET / "captions.json"), show_default=True, help="precomputed captions")
@click.option("--limit", type=int, default=None, help="a subset of about N questions (whole images)")
@click.option("--processes", default="1,2", show_default=True, help="comma-separated process counts; the first is the base")
@click.option("--threads", type=int, default=1, show_default=True, help="OMP_NUM_THREADS of each process")
@click.option("--out", default=None, help="also write the report here as JSON")
def scaling(preset: str, questions: str, annotations: str, captions: str, limit: int | None, processes: str,
            threads: int, out: str | None) -> None:
    """Time a sharded eval at several process counts and print the scaling efficiency."""
    counts = positive_integers(processes, "--processes", "counts")
    data = {"questions": questions, "annotations": annotations, "captions": captions}
    rows = []
    with tempfile.TemporaryDirectory(prefix="zsvqa-scaling-") as folder:
        for count in counts:
            run = Path(folder) / f"n{count}"
            seconds = timed_run(eval_command(count, run, preset, data, limit), threads)
            results = (run / "results.json").read_bytes()
            rows.append({"processes": count, "seconds": seconds, "questions": len(json.loads(results)),
                         "results": results})
            click.echo(f"{count} processes: {seconds:.1f}s", err=True)
    base = rows[0]
    report = []
    click.echo("| processes | wall s | questions/s | efficiency | results identical |")
    click.echo("|---|---|---|---|---|")
    for row in rows:
        efficiency = base["seconds"] * base["processes"] / (row["seconds"] * row["processes"])
        same = row["results"] == base["results"]
        click.echo(f"| {row['processes']} | {row['seconds']:.1f} | {row['questions'] / row['seconds']:.2f} | "
                   f"{efficiency:.2f} | {same} |")
        report.append({"processes": row["processes"], "seconds": row["seconds"], "questions": row["questions"],
                       "efficiency": efficiency, "results_identical": same})
    if out:
        Path(out).write_text(json.dumps({"preset": preset, "threads": threads, "runs": report}, indent=2))


def main() -> None:
    scaling.main(prog_name="scaling.py")


if __name__ == "__main__":
    main()
