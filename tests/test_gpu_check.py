"""benchmarks/gpu_check.sh: the no-GPU refusal, its options, the plan of steps, and the runner and its report,
with trivial commands standing in for the steps. No timing is asserted."""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
from click.testing import CliRunner

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("gpu_check_script", ROOT / "benchmarks" / "gpu_check.py")
gpu_check = importlib.util.module_from_spec(spec)
sys.modules[spec.name] = gpu_check  # its dataclass looks its module up there
spec.loader.exec_module(gpu_check)
Step = gpu_check.Step


def python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_a_machine_without_a_gpu_gets_one_line_and_exit_3_and_nothing_runs(tmp_path) -> None:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "PYTHON": sys.executable}
    result = subprocess.run(["bash", "benchmarks/gpu_check.sh", "--out", str(tmp_path / "report.json"), "--work",
                             str(tmp_path / "work")], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == gpu_check.EXIT_NO_GPU == 3
    assert result.stdout == "" and len(result.stderr.splitlines()) == 1
    assert result.stderr.startswith("gpu_check: no CUDA GPU is visible") and "nothing was run" in result.stderr
    assert not (tmp_path / "report.json").exists() and not (tmp_path / "work").exists()


@pytest.mark.parametrize("args,code,message", [
    (["--device", "tpu"], 1, "--device must be cuda (or cuda:N), or cpu for a self-test; got 'tpu'"),
    (["--steps", "tiny-pnp-fid,nonsense"], 1, "--steps: no step 'nonsense'; the steps: tiny-img2llm, tiny-pnp-fid,"),
    (["--out", "/proc/gpu_check.json"], 1, "--out '/proc/gpu_check.json' is not writable"),
    (["--out", "{tmp}"], 1, "is a folder, not a file"),
    (["--work", "{tmp}/afile"], 1, "--work '{tmp}/afile' is a file, not a folder"),
    (["--budget", "5"], 2, "Invalid value for '--budget'"),
])
def test_bad_options_fail_in_one_line_before_any_work(args, code, message, tmp_path) -> None:
    (tmp_path / "afile").write_text("a file")
    args = [arg.format(tmp=tmp_path) for arg in args]
    defaults = ["--out", str(tmp_path / "r.json"), "--work", str(tmp_path / "work")]
    result = CliRunner().invoke(gpu_check.gpu_check, [*defaults, *args])
    assert result.exit_code == code, result.output
    assert message.format(tmp=tmp_path) in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "r.json").exists() and not (tmp_path / "work").exists()


def test_the_gpu_budget_keeps_the_run_under_8_minutes() -> None:
    assert gpu_check.GPU_BUDGET_S + gpu_check.STOP_GRACE_S < 8 * 60 - 20  # 20 s to start, write inputs and report


def by_name(steps: list) -> dict:
    return {step.name: step for step in steps}


def test_the_gpu_plan_runs_every_cuda_path(tmp_path) -> None:
    steps = by_name(gpu_check.plan("cuda", False, tmp_path, bitsandbytes=True, bundled_llm=True))
    assert not [name for name, step in steps.items() if step.skip]
    commands = {name: " ".join(step.command) for name, step in steps.items()}
    assert all(step.timeout_s > 0 for step in steps.values())
    ask = [name for name, command in commands.items() if "run.py ask --preset tiny --device cuda" in command]
    # tiny matching + GradCAM, captioning, T5 question generation and the causal LLM, on an image
    assert any("--image" in commands[n] and "--qg t5" in commands[n] for n in ask)
    assert any("--image" in commands[n] and "--answerer-kind fid --answerer-model tiny:t5" in commands[n] for n in ask)
    assert any("answerer.device_map=auto" in commands[n] for n in ask)
    assert any("answerer.load_in=8bit" in commands[n] for n in ask)
    torchrun = [name for name, command in commands.items()
                if "-m torch.distributed.run --standalone --nproc_per_node=1" in command]
    group = steps["process-group"]
    assert "process-group" in torchrun and group.command[-1] == "cuda" and "start(shard, device)" in group.command[-2]
    assert "torchrun nccl" in group.covers
    assert any("run.py eval" in commands[n] and "--device cuda" in commands[n] for n in torchrun)
    built = steps["build-real-size"].command
    assert {"random:blip-itm-large", "random:blip-captioner-large", "random:t5-large"} <= set(built)
    for preset in ("pnp-vqa", "img2llm"):
        speed = [c for c in commands.values() if "benchmarks/speed.py" in c and f"--preset {preset}" in c]
        assert len(speed) == 1 and "--device cuda" in speed[0]
    assert "answerer.model" not in commands["speed-img2llm"]  # the bundled Gemma, speed.py's own choice
    # Measured throughput: the eval and both speed runs.
    assert {name for name, step in steps.items() if step.rate} == {"sharded-eval", "speed-pnp-vqa", "speed-img2llm"}
    names = list(steps)
    assert names.index("sharded-eval") < names.index("build-real-size")  # quick steps first


def test_the_plan_without_bitsandbytes_or_the_bundled_llm(tmp_path) -> None:
    steps = by_name(gpu_check.plan("cuda", False, tmp_path, bitsandbytes=False, bundled_llm=False))
    assert steps["tiny-llm-8bit"].skip == "bitsandbytes is not installed"
    img2llm = steps["speed-img2llm"]
    assert "answerer.model=tiny:causal-lm" in img2llm.command and "answerer.max_prompt_tokens=512" in img2llm.command
    assert "Gemma" in img2llm.note


def test_the_cpu_self_test_plan_runs_the_tiny_steps_on_the_cpu(tmp_path) -> None:
    steps = by_name(gpu_check.plan("cpu", True, tmp_path, bitsandbytes=True, bundled_llm=True))
    assert {name for name, step in steps.items() if step.skip} == {"tiny-llm-device-map", "tiny-llm-8bit"}
    assert all(step.skip == "needs a CUDA GPU" for step in (steps["tiny-llm-device-map"], steps["tiny-llm-8bit"]))
    assert "torchrun gloo" in steps["process-group"].covers
    assert not any("random:" in " ".join(step.command) for step in steps.values())
    assert "--preset tiny" in " ".join(steps["speed-tiny"].command)
    assert all("cuda" not in " ".join(step.command) for step in steps.values())
    on_gpu = by_name(gpu_check.plan("cuda", True, tmp_path, bitsandbytes=True, bundled_llm=True))
    assert list(on_gpu) == list(steps)
    assert all(steps[n].timeout_s == on_gpu[n].timeout_s * gpu_check.CPU_SLOWDOWN for n in steps)  # a slower device


def test_the_report_records_passed_failed_timed_out_and_skipped_steps(tmp_path) -> None:
    speed_report = tmp_path / "speed.json"
    speed_report.write_text(json.dumps({"pipeline": {"questions_per_second_per_device": 2.5}}))
    pid_file = tmp_path / "grandchild.pid"
    # A step that starts a process of its own session (as torchrun's workers are) and then hangs.
    hang = python(
        "import signal, subprocess, sys, time\n"
        "signal.signal(signal.SIGTERM, lambda *_: (print('reacting to the stop', flush=True), sys.exit(1)))\n"
        "p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'], start_new_session=True)\n"
        f"open({str(pid_file)!r}, 'w').write(str(p.pid))\n"
        "print('working', flush=True)\n"
        "time.sleep(600)"
    )
    steps = [
        Step("eval", python("print('answered 6 questions (0 done earlier) in 2.0s')"), 120, ("a",),
             rate=gpu_check.eval_rate),
        Step("speed", python("pass"), 120, ("b",), rate=gpu_check.speed_rate(speed_report)),
        Step("speed-without-report", python("pass"), 120, ("c",), rate=gpu_check.speed_rate(tmp_path / "none.json")),
        Step("fails", python("import sys\nfor i in range(40): print('line', i, file=sys.stderr)\nsys.exit(7)"), 120,
             ("d",)),
        Step("skipped", python("raise SystemExit(1)"), 120, ("e",), skip="needs a CUDA GPU"),
        Step("hangs", hang, 20, ("f",)),
    ]
    out, lines = tmp_path / "report.json", []
    report = gpu_check.run_checks(steps, out, tmp_path / "run", 3600, {"device": "cpu"}, echo=lines.append)
    assert json.loads(out.read_text()) == report and report["device"] == "cpu"
    results = by_name_dicts(report["steps"])
    assert [r["status"] for r in report["steps"]] == ["passed", "passed", "passed", "failed", "skipped", "timed_out"]
    assert results["eval"]["questions_per_second"] == 3.0 and results["speed"]["questions_per_second"] == 2.5
    assert "no throughput could be read" in results["speed-without-report"]["rate_error"]
    assert report["questions_per_second_per_device"] == {"eval": 3.0, "speed": 2.5}
    assert report["passed"] == ["eval", "speed", "speed-without-report"]
    assert report["failed"] == ["fails", "hangs"] and report["skipped"] == ["skipped"]
    failed = results["fails"]
    assert failed["returncode"] == 7 and failed["output_tail"] == [f"line {i}" for i in range(25, 40)]
    assert Path(failed["log"]).read_text().count("line") == 40
    assert failed["command"].startswith(sys.executable)
    assert results["skipped"]["reason"] == "needs a CUDA GPU" and "output_tail" not in results["skipped"]
    assert results["hangs"]["returncode"] is None and results["hangs"]["reason"] == "stopped after 20 s"
    assert results["hangs"]["output_tail"] == ["working"]  # what it said while it ran, not its reaction to the stop
    assert "reacting to the stop" in Path(results["hangs"]["log"]).read_text()  # stopped with SIGTERM first
    assert all(r["covers"] == [s.covers[0]] for r, s in zip(report["steps"], steps))
    grandchild = int(pid_file.read_text())
    alive = psutil.pid_exists(grandchild) and psutil.Process(grandchild).status() != psutil.STATUS_ZOMBIE
    if alive:
        psutil.Process(grandchild).kill()
    assert not alive  # the step's whole process tree was stopped, not only its first process
    assert re.fullmatch(r"eval: passed \(\d+ s, 3\.00 questions/s\)", lines[0]), lines[0]


def test_a_spent_budget_stops_the_running_step_and_leaves_the_rest_not_run(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(gpu_check, "LEAST_STEP_S", 1)
    steps = [Step("long", python("import time; time.sleep(600)"), 600, ("a",)),
             Step("next", python("pass"), 60, ("b",))]
    lines: list = []
    report = gpu_check.run_checks(steps, tmp_path / "r.json", tmp_path / "run", 3, {}, echo=lines.append)
    long, late = report["steps"]
    assert long["status"] == "timed_out" and long["reason"] in ("stopped after 2 s", "stopped after 3 s")  # not 600
    assert late["status"] == "not_run" and "budget was spent" in late["reason"] and "log" not in late
    assert report["failed"] == ["long", "next"] and report["budget_s"] == 3
    assert lines[-1].startswith("next: not_run (0 s; the budget was spent")


def by_name_dicts(results: list) -> dict:
    return {result["name"]: result for result in results}


def test_the_cpu_self_test_runs_a_step_end_to_end(tmp_path) -> None:
    """The command itself on a CPU: one real step (the process group under torchrun, over gloo), its report."""
    result = subprocess.run(
        ["bash", "benchmarks/gpu_check.sh", "--device", "cpu", "--tiny", "--steps", "process-group,tiny-llm-8bit",
         "--out", str(tmp_path / "report.json"), "--work", str(tmp_path / "work")],
        cwd=ROOT, env={**os.environ, "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}, capture_output=True,
        text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["passed"] == ["process-group"] and report["skipped"] == ["tiny-llm-8bit"] and not report["failed"]
    assert report["device"] == "cpu" and report["machine"]["cpu_count"] >= 1
    assert report["packages"]["torch"] and "bitsandbytes" in report["packages"]
    log = Path(by_name_dicts(report["steps"])["process-group"]["log"]).read_text()
    assert "gloo all_reduce and barrier over 1 rank(s) on cpu: ok" in log
    folder = Path(report["folder"])
    assert folder.parent == tmp_path / "work" and len(list((folder / "images").glob("COCO_val2014_*.jpg"))) == 75
    assert result.stdout.splitlines()[-1].startswith("1 passed, 0 failed, 1 skipped in ")
