"""The benchmark scripts run with the tiny preset, so they never rot. No timing is asserted."""

import csv
import importlib.util
import json
import re
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
    for factor in ("prompt_exemplars", "relevance", "qg"):  # bars for the categorical ones
        assert (out / f"accuracy_vs_{factor}.png").stat().st_size > 1000
    md_rows = [line.split(" | ") for line in (out / "results.md").read_text().splitlines()[2:]]
    header = (out / "results.md").read_text().splitlines()[0].strip("| ").split(" | ")
    for name, pattern in [("accuracy", r"\d+\.\d\d"), ("acc_other", r"\d+\.\d\d"), ("seconds_per_question", r"[\d.]+")]:
        column = [row[header.index(name)].strip("| ") for row in md_rows]
        assert all(re.fullmatch(pattern, value) for value in column), (name, column)
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
        ("speed", ["--reference", "{tmp}/afile"], "not a lavis-bench result"),
        ("speed", ["--set", "answerer.fid_encode_batch=0"], "answerer.fid_encode_batch must be at least 1"),
        ("speed", ["--reference", "{tmp}/pnp.json"], "use it with --preset pnp-vqa or img2llm"),
        ("speed", ["--reference", "{tmp}/pnp.json", "--preset", "img2llm"], "compares with `bench.py --model img2prompt`"),
        ("batching", ["--batch-sizes", "1,0"], "--batch-sizes needs sizes of at least 1; got '1,0'"),
        ("batching", ["--batch-sizes", "1,x"], "--batch-sizes takes comma-separated integers"),
        ("batching", ["--images", "0"], "--images must be at least 1; got 0"),
        ("batching", ["--out", "/proc/batching.json"], "--out '/proc/batching.json' is not writable"),
        ("batching", ["--captions", "{tmp}/pnp.json"], "16 images have no captions in '{tmp}/pnp.json'"),
    ],
)
def test_benchmark_bad_inputs_fail_before_work(script, extra, message, tmp_path) -> None:
    data = write_dataset(tmp_path / "data")
    (tmp_path / "afile").write_text("a file")
    (tmp_path / "pnp.json").write_text(json.dumps(lavis_result("pnp")))
    extra = [arg.format(tmp=tmp_path) for arg in extra]
    if script == "ablate":
        extra = ["--dataset", "vqav2", "--questions", str(data["questions"]), "--images", str(data["images"]), *extra]
    preset = [] if "--preset" in extra else ["--preset", "tiny"]
    result = run_script(f"benchmarks/{script}.py", *preset, *extra)
    assert result.returncode == 1 and message.format(tmp=tmp_path) in result.stderr
    assert "Traceback" not in result.stderr and "preparing models" not in result.stderr
    assert not (tmp_path / "a").exists()


def lavis_result(model: str) -> dict:
    """The parts of a lavis-bench result speed.py reads (bench.py's keys; made-up times)."""
    stages = {"itm": 8.0, "cap": 12.0, "qa": 18.0} if model == "pnp" else {"itm": 8.0, "cap": 14.0, "qg": 300.0, "prompt": 0.01}
    return {
        "system": "PNP-VQA large (LAVIS pnp_vqa/large)" if model == "pnp" else "Img2Prompt/Img2LLM (LAVIS ...)",
        "settings": {"num_captions": 100, "num_patches": 20, "questions": 5, "max_len": 20, "lengths": "max"},
        "per_question_s_mean": {**stages, "total": sum(stages.values())},
        "rss_mb": {"peak": 11264},
        "versions": {"torch": "2.13.0+cpu", "transformers": "4.25.1"},
        "threads": {"torch": 2},
    }


def load_script(name: str):  # type: ignore[no-untyped-def]
    """A benchmarks/ script as a module, for its functions."""
    spec = importlib.util.spec_from_file_location(f"{name}_script", ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def speed_script():
    return load_script("speed")


def test_reference_table_maps_each_lavis_stage_to_the_same_work(speed_script) -> None:
    report = {
        "pipeline": {"stage_s_per_question": {"image_features": 1.0, "relevance": 0.1, "captioning": 2.0,
                                              "answer": 4.0, "prompt": 0.01}},
        "vision_share": {"matcher": 0.4},
    }
    table = speed_script.compare_with_reference(report, lavis_result("pnp"), "pnp-vqa")
    itm, cap, qa = table["rows"]
    assert itm["zsvqa_s"] == pytest.approx(0.4 + 0.1) and cap["zsvqa_s"] == pytest.approx(0.6 + 2.0)
    assert qa["zsvqa_s"] == 4.0 and qa["speedup"] == pytest.approx(18.0 / 4.0)
    assert table["total"]["lavis_s"] == 38.0 and table["total"]["zsvqa_s"] == pytest.approx(7.1)
    assert table["not_in_lavis_s"] == {"prompt": 0.01} and table["lavis_peak_gb"] == 11.0
    table["zsvqa_peak_gb"] = 5.0
    text = "\n".join(speed_script.render_reference(table))
    assert "| **whole question** | **38.00** | **7.10** | **5.4x** |" in text and "0.45 of LAVIS's" in text
    # img2llm: the filter counts with the captions, question generation with its candidates; the LLM is apart.
    report["pipeline"]["stage_s_per_question"].update({"caption_filter": 0.5, "candidates": 0.2,
                                                       "question_generation": 3.0})
    table = speed_script.compare_with_reference(report, lavis_result("img2prompt"), "img2llm")
    assert [row["zsvqa_s"] for row in table["rows"]] == pytest.approx([0.5, 3.1, 3.2, 0.01])
    assert table["not_in_lavis_s"] == {"answer": 4.0}


def test_speed_script_with_tiny_preset(tmp_path) -> None:
    out = tmp_path / "speed.json"
    profile = tmp_path / "profile.txt"
    result = run_script("benchmarks/speed.py", "--preset", "tiny", "--questions", "2", "--out", str(out),
                        "--profile", str(profile))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    # The profile attributes operators to the pipeline's stages (torch.profiler record_function labels).
    assert {"image_features", "relevance", "captioning", "answer"} <= set(report["profile"])
    # Each stage's costliest torch operators, costliest first (which ones lead depends on the load: not asserted).
    captioning = report["profile"]["captioning"]
    assert captioning and all("::" in row["operator"] and row["self_s"] > 0 for row in captioning)
    assert [row["self_s"] for row in captioning] == sorted((row["self_s"] for row in captioning), reverse=True)
    assert sum(row["share"] for row in captioning) <= 1 + 1e-9
    assert profile.read_text().startswith(next(iter(report["profile"])) + ":")
    assert report["gradcam"]["maps_equal"] is True
    for section in ("gradcam", "image_features", "captioning", "pipeline"):
        assert report[section]["speedup"] > 0
    assert report["captioning"]["captions"] == 8 and report["questions"] == 2
    assert report["machine"]["cpu_count"] >= 1 and 0 < report["memory"]["models_loaded_gb"] <= report["memory"]["loading_peak_gb"]
    assert "reference_lavis" not in report  # no comparison with the reference for tiny models
    assert "| 4. whole pipeline" in result.stdout and "questions/s on one cpu process" in result.stdout
    assert report["pipeline"]["questions_per_second_per_device"] > 0


@pytest.fixture(scope="module")
def ablate():
    return load_script("ablate")


def rows_for(grid: dict, accuracy) -> list[dict]:
    import itertools

    return [{**dict(zip(grid, values)), "accuracy": accuracy(dict(zip(grid, values)))}
            for values in itertools.product(*grid.values())]


def test_numeric_factor_plot_starts_at_zero_with_integer_ticks(ablate, tmp_path) -> None:
    import matplotlib.pyplot as plt

    grid = {"prompt_exemplars": [4, 0, 2], "relevance": ["gradcam", "uniform"]}
    rows = rows_for(grid, lambda v: 50 + v["prompt_exemplars"] + (2 if v["relevance"] == "gradcam" else 0))
    figure = ablate.factor_figure(rows, grid, "prompt_exemplars")
    axis = figure.axes[0]
    assert axis.get_ylim()[0] == 0 and axis.get_ylim()[1] >= 55  # 0 up to above the largest mean, 55
    line = axis.get_lines()[0]
    assert list(line.get_xdata()) == [0, 2, 4] and list(line.get_ydata()) == pytest.approx([51, 53, 55])
    # matplotlib's own ticks for 0, 2, 4 would be -0.5, 0, 0.5, ...
    assert all(float(t).is_integer() for t in axis.get_xticks())
    plt.close(figure)
    # A float factor keeps fractional ticks; all accuracies 0 (random models) still gives an axis from 0.
    grid = {"caption_filter": [0.25, 0.5]}
    figure = ablate.factor_figure(rows_for(grid, lambda v: 0.0), grid, "caption_filter")
    assert figure.axes[0].get_ylim() == (0, pytest.approx(1.1))
    assert not all(float(t).is_integer() for t in figure.axes[0].get_xticks())
    plt.close(figure)


def test_categorical_factor_is_a_bar_chart(ablate, tmp_path) -> None:
    import matplotlib.pyplot as plt

    answerers = [{"answerer.model": "a", "answerer.kind": "seq2seq"}, {"answerer.model": "b", "answerer.kind": "causal"}]
    grid = {"relevance": ["gradcam", "uniform", "full"], "answerer": answerers, "caption_filter": [None, 0.5]}
    accuracy = {"gradcam": 60.0, "uniform": 40.0, "full": 20.0}
    rows = rows_for(grid, lambda v: accuracy[v["relevance"]])
    for row in rows:  # as ablate stores them
        row["answerer"] = json.dumps(row["answerer"])
    figure = ablate.factor_figure(rows, grid, "relevance")
    axis = figure.axes[0]
    assert [bar.get_height() for bar in axis.patches] == [60.0, 40.0, 20.0] and not axis.get_lines()
    assert [t.get_text() for t in axis.get_xticklabels()] == ["gradcam", "uniform", "full"]
    assert axis.get_ylim()[0] == 0
    plt.close(figure)
    figure = ablate.factor_figure(rows, grid, "answerer")
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["a+seq2seq", "b+causal"]
    assert [bar.get_height() for bar in figure.axes[0].patches] == [40.0, 40.0]
    plt.close(figure)
    figure = ablate.factor_figure(rows, grid, "caption_filter")  # none and a number: categorical
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == ["None", "0.5"]
    plt.close(figure)
    written = ablate.plot(rows, grid, tmp_path)
    assert sorted(p.name for p in written) == [f"accuracy_vs_{f}.png" for f in sorted(grid)]
    assert all(p.stat().st_size > 1000 for p in written)


def test_results_table_has_one_number_format_per_column(ablate, tmp_path) -> None:
    rows = [
        {"variant": "a", "caption_filter": 0.5, "accuracy": 57.0, "acc_yes/no": 100, "seconds_per_question": 0.012345},
        {"variant": "b", "caption_filter": None, "accuracy": 3.14159, "acc_yes/no": 8.5, "seconds_per_question": 12.3456},
        {"variant": "c", "caption_filter": 0.75, "accuracy": None, "acc_yes/no": 0.0, "seconds_per_question": 123.456},
    ]
    ablate.write_tables(rows, list(rows[0]), tmp_path)
    lines = (tmp_path / "results.md").read_text().splitlines()
    assert lines[2:] == [
        "| a | 0.5 | 57.00 | 100.00 | 0.0123 |",
        "| b |  | 3.14 | 8.50 | 12.3 |",
        "| c | 0.75 |  | 0.00 | 123 |",
    ]


@pytest.mark.parametrize(
    "script", ["ablate", "speed", "scaling", "batching", "lavis_equivalence", "precision", "caption_sampler"]
)
def test_usage_line_names_the_script_once(script) -> None:
    result = run_script(f"benchmarks/{script}.py", "--help")
    assert result.returncode == 0 and result.stdout.startswith(f"Usage: {script}.py [OPTIONS]\n")


def test_precision_shares_count_distinct_reference_captions() -> None:
    import torch

    sys.path.insert(0, str(ROOT / "benchmarks"))  # it imports speed.py, as when run from benchmarks/
    precision = load_script("precision")
    # Two of the reference's three distinct captions are in the other set; a repeat counts once.
    assert precision.shared_share(["a", "b", "c", "a"], ["b", "a", "x"]) == 2 / 3
    assert precision.shared_share([], ["a"]) == 0.0
    assert precision.top_patches(torch.arange(30.0).reshape(5, 6)) == set(range(10, 30))


def test_category_accuracy_matches_string_and_integer_ids_by_spelling(ablate) -> None:
    # A categories file's keys are JSON strings; VQA ids are ints, GQA's strings: both match by their spelling.
    records = [{"question_id": 42, "accuracy": 1.0}, {"question_id": "20968379", "accuracy": 0.0},
               {"question_id": "x", "accuracy": 1.0}]
    categories = {"42": "color", "20968379": "color"}
    assert ablate.category_accuracy(records, categories) == {"acc_color": 50.0}  # (1 + 0) / 2; "x" has none


def test_scaling_script_runs_one_and_two_processes(tmp_path) -> None:
    out = tmp_path / "scaling.json"
    result = run_script("benchmarks/scaling.py", "--limit", "10", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    runs = json.loads(out.read_text())["runs"]
    assert [r["processes"] for r in runs] == [1, 2] and runs[0]["efficiency"] == 1.0
    assert all(r["results_identical"] and r["questions"] == runs[0]["questions"] > 0 for r in runs)
    assert "| 2 |" in result.stdout


def test_scaling_script_refuses_bad_process_counts() -> None:
    result = run_script("benchmarks/scaling.py", "--processes", "1,0")
    assert result.returncode == 1 and "--processes needs counts of at least 1" in result.stderr


def test_batching_script_compares_batch_sizes_with_the_same_answers(tmp_path) -> None:
    out = tmp_path / "batching.json"
    result = run_script("benchmarks/batching.py", "--preset", "tiny", "--images", "3", "--batch-sizes", "1,4",
                        "--set", "answerer.selection=calibrated", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(out.read_text())
    assert [row["batch_size"] for row in report["rows"]] == [1, 4] and report["rows"][0]["speedup"] == 1.0
    assert all(row["answers_equal_to_first"] and row["errors"] == 0 for row in report["rows"])
    assert report["questions"] > 3 and report["settings"]["answerer"]["selection"] == "calibrated"
    assert all(row["stages"]["answer"] > 0 for row in report["rows"])
    assert "| 4 |" in result.stdout


def test_realdev_script_runs_the_preset_beside_the_baselines(tmp_path) -> None:
    """A folder laid out as ../shared/realdev (a vqav2/ subfolder with captions), the tiny preset."""
    data = write_dataset(tmp_path / "realdev" / "vqav2")
    assert data["captions"].name == "captions.json"
    ids = [q["question_id"] for q in json.loads(data["questions"].read_text())["questions"]]
    # A categories file beside the questions (as benchmarks/devset has) adds a column per category.
    (data["questions"].parent / "categories.json").write_text(json.dumps({str(i): "odd" if i % 2 else "even" for i in ids}))
    out = tmp_path / "run"
    result = run_script("benchmarks/realdev.py", "--preset", "tiny", "--data", str(tmp_path / "realdev"),
                        "--sets", "vqav2", "--out", str(out), "--no-progress")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = list(csv.DictReader((out / "results.csv").open()))
    baselines = [name for name in json.loads((ROOT / "benchmarks" / "baselines.json").read_text()) if name[0] != "_"]
    assert [row["variant"] for row in rows] == ["tiny", *baselines]
    assert all(row["errors"] == "0" and row["acc_yes/no"] and row["seconds_per_question"] for row in rows)
    assert all(row["acc_odd"] and row["acc_even"] for row in rows)
    refused = run_script("benchmarks/realdev.py", "--preset", "tiny", "--data", str(tmp_path / "realdev"),
                         "--sets", "vqav2,gqa", "--out", str(tmp_path / "other"))
    assert refused.returncode == 1 and "--sets takes names from vqav2, okvqa, aokvqa" in refused.stderr


def test_simple_scenes_forms_and_counts_by_hand() -> None:
    spec = importlib.util.spec_from_file_location("simple_scenes", ROOT / "benchmarks" / "simple_scenes.py")
    scenes = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenes)  # type: ignore[union-attr]
    import random

    items = scenes.scene_questions(random.Random(0), captions=1)
    assert len(items) == 16 and sum(item["answer"] == "yes" for item in items) == 8  # every form true and false
    assert all(len(item["captions"]) == 1 for item in items)

    class AlwaysYes:
        def answer(self, question, captions):
            return type("Result", (), {"answer": "yes"})()

    rows = scenes.measure(AlwaysYes(), scenes=2, caption_counts=[1, 5])
    overall = [row for row in rows if row["form"] == "all forms"]
    assert [(row["captions"], row["questions"], row["accuracy"], row["yes_share"]) for row in overall] == [
        (1, 32, 50.0, 100.0), (5, 32, 50.0, 100.0)
    ]
