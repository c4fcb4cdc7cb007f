"""The benchmark scripts run with the tiny preset, so they never rot. No timing is asserted."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from synthetic_data import write_dataset

ROOT = Path(__file__).resolve().parent.parent


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ablate_grid_with_tiny_preset(tmp_path) -> None:
    data = write_dataset(tmp_path / "data")
    grid = tmp_path / "grid.yaml"
    grid.write_text("relevance: [gradcam, full]\nprompt_exemplars: [0, 2, 4]\n")
    out = tmp_path / "ablation"
    result = run_script(
        "benchmarks/ablate.py", "--preset", "tiny", "--dataset", "vqav2", "--questions", str(data["questions"]),
        "--annotations", str(data["annotations"]), "--images", str(data["images"]), "--out", str(out),
        "--grid", str(grid), "--factor", "qg=template,none", "--cache", str(tmp_path / "cache.sqlite"), "--no-progress",
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 2 * 3 * 2
    assert {"accuracy", "acc_yes/no", "acc_number", "acc_other", "seconds_per_question"} <= set(rows[0])
    assert all(row["errors"] == "0" for row in rows)
    assert (out / "results.md").read_text().count("\n") == 2 + 12
    assert (out / "accuracy_vs_prompt_exemplars.png").stat().st_size > 1000
    assert not (out / "accuracy_vs_relevance.png").exists()  # not a numeric factor
    for row in rows:
        config = json.loads((out / "variants" / row["variant"] / "config.json").read_text())
        assert config["pipeline"]["captioner"]["relevance"] == row["relevance"]
        assert config["pipeline"]["prompt"]["num_exemplars"] == int(row["prompt_exemplars"])
    # Prompt-side variants reuse the vision intermediates: only one vision pass per relevance mode.
    import sqlite3

    entries = sqlite3.connect(tmp_path / "cache.sqlite").execute(
        "SELECT COUNT(*) FROM entries WHERE kind = 'captions'").fetchone()[0]
    assert entries == 2 * 6


@pytest.mark.parametrize(
    "script,extra,message",
    [
        ("ablate", ["--out", "{tmp}/a", "--factor", "nonsense=1,2"], "unknown setting 'nonsense'"),
        ("ablate", ["--out", "/proc/a", "--factor", "relevance=gradcam"], "--out '/proc/a' is not writable"),
        ("ablate", ["--out", "{tmp}/afile/a", "--factor", "relevance=gradcam"], "'{tmp}/afile' is a file"),
        ("speed", ["--out", "/proc/speed.json"], "--out '/proc/speed.json' is not writable"),
        ("speed", ["--out", "{tmp}"], "is a folder, not a file"),
    ],
)
def test_benchmark_bad_inputs_fail_before_work(script, extra, message, tmp_path) -> None:
    data = write_dataset(tmp_path / "data")
    (tmp_path / "afile").write_text("a file")
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    if script == "ablate":
        extra = ["--dataset", "vqav2", "--questions", str(data["questions"]), "--images", str(data["images"]), *extra]
    result = run_script(f"benchmarks/{script}.py", "--preset", "tiny", *extra)
    assert result.returncode == 1 and message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr and "preparing models" not in result.stderr
    assert not (tmp_path / "a").exists()


def test_speed_script_with_tiny_preset(tmp_path) -> None:
    out = tmp_path / "speed.json"
    result = run_script("benchmarks/speed.py", "--preset", "tiny", "--questions", "2", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["gradcam"]["maps_equal"] is True
    for section in ("gradcam", "image_features", "captioning", "pipeline"):
        assert report[section]["speedup"] > 0
    assert report["captioning"]["captions"] == 8 and report["questions"] == 2
    assert report["machine"]["cpu_count"] >= 1 and 0 < report["memory"]["models_loaded_gb"] <= report["memory"]["loading_peak_gb"]
    assert "reference_lavis" not in report  # no comparison with the reference for tiny models
    assert "| 4. whole pipeline" in result.stdout
