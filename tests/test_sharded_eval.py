"""Sharded evaluation: the split of images over ranks, the merge, the locks, and real two-process runs under
torchrun on the CPU (gloo), one of them killed midway."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from synthetic_data import write_dataset, write_large_dataset
from zsvqa.config import preset
from zsvqa.distributed import Shard, assign_images, shard_from_env
from zsvqa.errors import InputError
from zsvqa.evaluation import Evaluator, merge_predictions, read_predictions
from zsvqa.outputs import locked_run_folder
from zsvqa.datasets import load_dataset
from zsvqa.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("world", [1, 2, 3, 5])
def test_every_image_goes_to_exactly_one_rank_whatever_the_order(world) -> None:
    ids = [9001, 42, "x7", 1337, 5, "a1", 77]
    shares = [assign_images(ids, Shard(rank, world)) for rank in range(world)]
    assert sorted(map(str, (i for share in shares for i in share))) == sorted(map(str, ids))
    assert shares == [assign_images(list(reversed(ids)), Shard(rank, world)) for rank in range(world)]
    assert max(map(len, shares)) - min(map(len, shares)) <= 1  # balanced by image


def test_shard_from_env(monkeypatch) -> None:
    assert shard_from_env() == Shard(0, 1, 0)
    monkeypatch.setenv("RANK", "3"), monkeypatch.setenv("WORLD_SIZE", "4"), monkeypatch.setenv("LOCAL_RANK", "1")
    assert shard_from_env() == Shard(3, 4, 1) and shard_from_env().distributed
    monkeypatch.setenv("RANK", "4")
    with pytest.raises(InputError, match="not within WORLD_SIZE 4"):
        shard_from_env()


def test_merge_prefers_answers_to_failures_and_counts_conflicts(tmp_path) -> None:
    def write(name, *records):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in records) + '{"question_id": 9, "ans')

    write("a.jsonl", {"question_id": 1, "answer": "x"}, {"question_id": 2, "answer": "", "error": "bad image"},
          {"question_id": 3, "answer": "y"})
    write("b.jsonl", {"question_id": 2, "answer": "z"}, {"question_id": 3, "answer": "y"},
          {"question_id": 4, "answer": "", "error": "bad image"}, {"question_id": 1, "answer": "other"})
    merged, duplicates = merge_predictions([tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "none.jsonl"])
    assert {q: r["answer"] for q, r in merged.items()} == {1: "other", 2: "z", 3: "y", 4: ""}
    assert merged[4]["error"] and duplicates == 1  # question 3 twice alike (a crash mid-merge) is no conflict


def test_ranks_share_the_folder_and_keep_a_single_process_out(tmp_path) -> None:
    with locked_run_folder(tmp_path, shared=True), locked_run_folder(tmp_path, shared=True):
        with pytest.raises(InputError, match=f"in use by another run \\(pid {os.getpid()}, {os.getpid()}\\)"):
            with locked_run_folder(tmp_path):
                pass
        with locked_run_folder(tmp_path, "run.rank0.lock"), pytest.raises(InputError, match="in use"):
            with locked_run_folder(tmp_path, "run.rank0.lock"):
                pass
    with locked_run_folder(tmp_path), pytest.raises(InputError, match="in use"):
        with locked_run_folder(tmp_path, shared=True):
            pass


def test_ranks_run_one_after_another_give_the_single_process_results(tmp_path) -> None:
    """The sharding logic without processes: rank 1 of 2 first, then rank 0 merges (barriers are no-ops)."""
    data = write_dataset(tmp_path / "data")
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    pipeline = Pipeline(preset("tiny"))
    single = Evaluator(pipeline, dataset, tmp_path / "single").run(progress=False)
    one = Evaluator(pipeline, dataset, tmp_path / "sharded", shard=Shard(1, 2)).run(progress=False)
    zero = Evaluator(pipeline, dataset, tmp_path / "sharded", shard=Shard(0, 2)).run(progress=False)
    assert (one.answered, zero.answered) == (2, 4) and single.answered == 6  # 1337's two; 42's three and 9001's
    for name in ("results.json", "metrics.json"):
        assert (tmp_path / "single" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes()
    assert sorted(p.name for p in (tmp_path / "sharded").glob("predictions*")) == ["predictions.jsonl"]
    assert json.loads((tmp_path / "sharded" / "config.json").read_text())["world_size"] == 2
    # Another world size finds everything done.
    again = Evaluator(pipeline, dataset, tmp_path / "sharded", shard=Shard(2, 3)).run(progress=False)
    assert (again.answered, again.resumed) == (0, 1)  # 9001's one question


def test_a_rank_missing_its_answers_stops_the_merge(tmp_path) -> None:
    data = write_dataset(tmp_path / "data")
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    with pytest.raises(InputError, match="2 questions have no answer in any rank's predictions file"):
        Evaluator(Pipeline(preset("tiny")), dataset, tmp_path / "run", shard=Shard(0, 2)).run(progress=False)
    assert not (tmp_path / "run" / "results.json").exists()


# --- real processes: torchrun with two CPU ranks over gloo ------------------------------------------------------

NUM_IMAGES = 10  # 20 questions: each rank works some seconds, long enough to be killed midway


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}


def _eval_command(data: dict[str, Path], out: Path, cache: str, processes: int) -> list[str]:
    launcher = [sys.executable] if processes == 0 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
    return [*launcher, "run.py", "eval", "--preset", "tiny", "--dataset", "vqav2", "--questions",
            str(data["questions"]), "--annotations", str(data["annotations"]), "--images", str(data["images"]),
            "--out", str(out), "--no-progress", *(["--cache", cache] if cache else ["--no-cache"])]


def _run(command: list[str]) -> str:
    result = subprocess.run(command, cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict[str, Path], Path]:
    """The data, and a plain one-process run of it (no launcher)."""
    root = tmp_path_factory.mktemp("sharded")
    data = write_large_dataset(root / "data", NUM_IMAGES)
    _run(_eval_command(data, root / "single", "", 0))
    return data, root / "single"


def test_torchrun_two_processes_give_byte_identical_results(reference, tmp_path) -> None:
    data, single = reference
    output = _run(_eval_command(data, tmp_path / "run", str(tmp_path / "cache.sqlite"), 2))
    assert "rank 1/2: answered 10 questions" in output and "rank 0/2: answered 10 questions" in output
    for name in ("results.json", "metrics.json"):
        assert (tmp_path / "run" / name).read_bytes() == (single / name).read_bytes()
    assert json.loads((tmp_path / "run" / "config.json").read_text())["world_size"] == 2
    assert len(read_predictions(tmp_path / "run" / "predictions.jsonl")) == 2 * NUM_IMAGES
    assert not list((tmp_path / "run").glob("predictions.rank*"))


def test_kill_9_of_one_rank_then_rerun_loses_and_duplicates_nothing(reference, tmp_path) -> None:
    data, single = reference
    out, cache = tmp_path / "run", str(tmp_path / "cache.sqlite")
    launcher = subprocess.Popen(_eval_command(data, out, cache, 2), cwd=ROOT, env=_env(),
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rank1 = out / "predictions.rank1.jsonl"
    deadline = time.monotonic() + 120
    while not (rank1.exists() and rank1.read_text().count("\n") >= 2):
        assert launcher.poll() is None and time.monotonic() < deadline, launcher.communicate()[0]
        time.sleep(0.02)
    os.kill(int((out / "run.rank1.lock").read_text().split()[0]), signal.SIGKILL)  # the rank names itself there
    assert launcher.wait(timeout=120) != 0  # torchrun stops the other rank and fails
    before = sum(len(read_predictions(path)) for path in out.glob("predictions*.jsonl"))
    assert 2 <= before < 2 * NUM_IMAGES and not (out / "results.json").exists()  # really stopped midway
    output = _run(_eval_command(data, out, cache, 2))
    answered = sum(int(line.split("answered ")[1].split()[0]) for line in output.splitlines() if "answered" in line)
    assert before + answered == 2 * NUM_IMAGES  # nothing answered twice
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]
    assert sorted(r["question_id"] for r in lines) == sorted(set(r["question_id"] for r in lines))
    assert len(lines) == 2 * NUM_IMAGES
    assert (out / "results.json").read_bytes() == (single / "results.json").read_bytes()
