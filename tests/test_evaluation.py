"""Dataset evaluation on a synthetic dataset in the official formats, with the tiny preset (answers are noise)."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthetic_data import CAPTIONS, IMAGE_IDS, QUESTIONS, write_dataset
from zsvqa.captioning import PatchCaptioner
from zsvqa.cli import main
from zsvqa.config import RetrievalConfig, preset
from zsvqa.data import load_dataset, read_captions_file, select
from zsvqa.errors import InputError
from zsvqa.evaluation import Evaluator, evaluate, read_predictions
from zsvqa.matching import ImageQuestionMatcher
from zsvqa.metric import lemmatized_vqa_accuracy, vqa_accuracy
from zsvqa.pipeline import Pipeline
from zsvqa.retrieval import ExemplarRetriever, build_index, training_examples
from zsvqa.data import read_questions

# (prediction, ten human answers, accuracy) worked out by hand from the definition:
# each of the ten held out in turn scores min(1, matches among the other nine / 3); the ten are averaged.
METRIC_TABLE = [
    ("red", ["red"] * 8 + ["orange"] * 2, 1.0),
    ("orange", ["red"] * 8 + ["orange"] * 2, (8 * 2 / 3 + 2 * 1 / 3) / 10),  # 0.6
    ("bicycle", ["bike"] * 7 + ["bicycle"] * 3, (7 * 1 + 3 * 2 / 3) / 10),  # 0.9
    ("x", ["y"] * 9 + ["x"], (9 * 1 / 3 + 0) / 10),  # 0.3
    ("3", ["2"] * 6 + ["3"] * 4, 1.0),  # four matches are enough for every held-out set
    ("cat", ["dog"] * 10, 0.0),
    ("two", ["2"] * 6 + ["3"] * 4, 1.0),  # answers disagree: both sides normalized, "two" -> "2"
    ("two", ["2"] * 10, 0.0),  # answers agree: the official script compares without normalizing
    ("Yes", ["yes"] * 9 + ["no"], 1.0),
    ("Yes", ["yes"] * 10, 0.0),
    ("the dog", ["dog"] * 5 + ["puppy"] * 5, 1.0),
    ("dog\n", ["dog"] * 10, 1.0),  # newlines become spaces and ends are stripped, always
    ("1,000", ["1000"] * 4 + ["one thousand"] * 6, (6 * 1 + 4 * 1) / 10),
    ("t-shirt", ["t shirt"] * 2 + ["shirt"] * 8, (8 * 2 / 3 + 2 * 1 / 3) / 10),
]


@pytest.mark.parametrize("prediction,answers,expected", METRIC_TABLE)
def test_vqa_accuracy_table(prediction, answers, expected) -> None:
    assert vqa_accuracy(prediction, answers) == pytest.approx(expected)


def test_lemmatized_variant_is_separate_and_lemmatizes() -> None:
    answers = ["dog"] * 9 + ["puppy"]
    assert vqa_accuracy("dogs", answers) == 0.0
    assert lemmatized_vqa_accuracy("dogs", answers) == 1.0
    assert lemmatized_vqa_accuracy("running", ["run"] * 10) == 1.0


@pytest.fixture()
def data(tmp_path) -> dict[str, Path]:
    return write_dataset(tmp_path / "data")


def eval_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["eval", "--preset", "tiny", "--dataset", "vqav2", "--questions", str(data["questions"]),
            "--annotations", str(data["annotations"]), "--images", str(data["images"]), "--out", str(out),
            "--cache", str(out.parent / "cache.sqlite"), "--no-progress", *extra]


def test_eval_through_cli_writes_official_files(data, tmp_path) -> None:
    out = tmp_path / "run"
    result = CliRunner().invoke(main, eval_args(data, out))
    assert result.exit_code == 0, result.output
    results = json.loads((out / "results.json").read_text())
    assert sorted(r["question_id"] for r in results) == sorted(IMAGE_IDS[i] * 1000 + n for n, (i, *_) in enumerate(QUESTIONS))
    assert all(set(r) == {"question_id", "answer"} for r in results)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_questions"] == 6 and set(metrics["per_answer_type"]) == {"yes/no", "number", "other"}
    assert metrics["metric"] == "vqa-accuracy" and len(metrics["per_question_type"]) == 6
    config = json.loads((out / "config.json").read_text())
    assert config["pipeline"]["matcher"]["model"] == "tiny:blip-itm" and config["data"]["dataset"] == "vqav2"
    # The reported accuracy is the official one recomputed from the predictions.
    records = read_predictions(out / "predictions.jsonl")
    truth = {IMAGE_IDS[i] * 1000 + n: answers for n, (i, _, answers, *_) in enumerate(QUESTIONS)}
    expected = 100 * sum(vqa_accuracy(r["answer"], truth[q]) for q, r in records.items()) / 6
    assert metrics["overall"] == pytest.approx(round(expected, 2))


def test_predict_only_without_annotations(data, tmp_path) -> None:
    args = eval_args(data, tmp_path / "run")
    del args[args.index("--annotations") : args.index("--annotations") + 2]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "results.json").exists() and not (tmp_path / "run" / "metrics.json").exists()


def test_resume_after_interruption_loses_nothing_and_repeats_nothing(data, tmp_path) -> None:
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    out = tmp_path / "run"
    seen = []

    def crash_after_two(record):
        seen.append(record["question_id"])
        if len(seen) == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Evaluator(Pipeline(preset("tiny")), dataset, out).run(progress=False, on_answer=crash_after_two)
    with (out / "predictions.jsonl").open("a") as handle:
        handle.write('{"question_id": 9001005, "answ')  # a line cut off by the crash
    summary = Evaluator(Pipeline(preset("tiny")), dataset, out).run(progress=False)
    assert (summary.resumed, summary.answered) == (2, 4)
    lines = [json.loads(line) for line in (out / "predictions.jsonl").read_text().splitlines()]  # all whole
    ids = [line["question_id"] for line in lines]
    assert sorted(ids) == sorted(q.question_id for q in dataset.questions) and len(ids) == len(set(ids))
    again = Evaluator(Pipeline(preset("tiny")), dataset, out).run(progress=False)
    assert (again.resumed, again.answered) == (6, 0)


def test_prompt_only_change_reuses_cached_captions(data, tmp_path, monkeypatch) -> None:
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    cache = tmp_path / "cache.sqlite"
    first = evaluate(preset("tiny"), dataset, tmp_path / "a", cache_path=cache, progress=False)
    assert first.answered == 6

    def no_vision(*args, **kwargs):
        raise AssertionError("vision work was done")

    monkeypatch.setattr(PatchCaptioner, "__init__", no_vision)
    monkeypatch.setattr(ImageQuestionMatcher, "__init__", no_vision)
    changed = preset("tiny").with_overrides({"prompt.num_exemplars": "2", "prompt.num_captions": "3"})
    second = evaluate(changed, dataset, tmp_path / "b", cache_path=cache, progress=False)
    assert second.answered == 6 and not second.errors
    records = read_predictions(tmp_path / "b" / "predictions.jsonl").values()
    assert all(r["num_exemplars"] <= 3 + 2 and r["num_captions"] <= 3 for r in records)  # 3 yes/no + 2 pairs
    # A vision setting change is a cache miss: the captioner is needed again.
    with pytest.raises(AssertionError, match="vision work"):
        evaluate(changed.with_overrides({"captioner.num_patches": "3"}), dataset, tmp_path / "c", cache_path=cache, progress=False)


def test_rerun_with_other_settings_in_same_folder_is_refused(data, tmp_path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, eval_args(data, tmp_path / "run", "--limit", "2")).exit_code == 0
    result = runner.invoke(main, eval_args(data, tmp_path / "run", "--limit", "2", "--prompt-exemplars", "1"))
    assert result.exit_code == 1 and "other settings" in result.output


def test_corrupt_image_mid_run_is_recorded_and_the_run_goes_on(data, tmp_path) -> None:
    (data["images"] / f"COCO_val2014_{IMAGE_IDS[1]:012d}.jpg").write_bytes(b"garbage")
    result = CliRunner().invoke(main, eval_args(data, tmp_path / "run"))
    assert result.exit_code == 0, result.output
    assert "2 questions failed" in result.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["errors"] == 2 and metrics["num_questions"] == 6
    records = [json.loads(l) for l in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    assert sum("error" in r for r in records) == 2 and len(records) == 6


def test_precomputed_captions_replace_the_captioner(data, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(PatchCaptioner, "__init__", lambda *a, **k: (_ for _ in ()).throw(AssertionError("captioner")))
    coco = tmp_path / "coco_captions.json"
    coco.write_text(json.dumps({"annotations": [{"image_id": i, "id": n, "caption": c}
                                                for n, (i, cs) in enumerate(CAPTIONS.items()) for c in cs]}))
    assert read_captions_file(coco) == read_captions_file(data["captions"]) == CAPTIONS
    args = eval_args(data, tmp_path / "run", "--captions", str(coco))
    del args[args.index("--images") : args.index("--images") + 2]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")
    assert len(records) == 6 and all(r["num_captions"] == 2 for r in records.values())


def test_retrieval_index_build_save_load_and_nearest(data, tmp_path) -> None:
    out = tmp_path / "index"
    result = CliRunner().invoke(main, ["index", "--questions", str(data["questions"]), "--annotations",
                                       str(data["annotations"]), "--captions", str(data["captions"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    retriever = ExemplarRetriever(RetrievalConfig(index=str(out), n_shot=2, n_ensemble=2))
    nearest = retriever.nearest("What color is the bus?")
    assert nearest[0][0].question == "What color is the bus?" and nearest[0][1] == pytest.approx(1.0, abs=1e-4)
    assert nearest[0][0].answer("most_common") == "red" and nearest[0][0].caption == CAPTIONS[42][0]
    assert [s for _, s in nearest] == sorted((s for _, s in nearest), reverse=True)
    blocks = retriever("How many people are there?").blocks
    assert [len(b) for b in blocks] == [2, 2] and blocks[0][0].question == "How many people are there?"
    # PICa setting end to end: retrieved exemplars, precomputed captions, an ensemble of two prompts.
    args = eval_args(data, tmp_path / "run", "--captions", str(data["captions"]), "--exemplars", str(out),
                     "--n-shot", "2", "--n-ensemble", "2", "--prompt-style", "pica")
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert all(r["num_exemplars"] == 2 for r in read_predictions(tmp_path / "run" / "predictions.jsonl").values())


def test_bad_data_fails_before_work(data, tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_dataset("vqav2", tmp_path / "nope.json", None, data["images"])
    annotations = json.loads(data["annotations"].read_text())
    annotations["annotations"] = annotations["annotations"][1:]
    short = tmp_path / "short.json"
    short.write_text(json.dumps(annotations))
    with pytest.raises(InputError, match="1 question ids .* have no annotation"):
        load_dataset("vqav2", data["questions"], short, data["images"])
    (data["images"] / f"COCO_val2014_{IMAGE_IDS[2]:012d}.jpg").unlink()
    with pytest.raises(InputError, match=r"1 images have no file .* \[9001\]"):
        load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    (tmp_path / "bad.json").write_text('{"questions": [{"image_id": 1}]}')
    with pytest.raises(InputError, match="lacks question_id, question"):
        load_dataset("vqav2", tmp_path / "bad.json", None, None)
    result = CliRunner().invoke(main, eval_args(data, tmp_path / "run"))
    assert result.exit_code == 1 and "have no file" in result.output and not (tmp_path / "run").exists()


def test_subsets_are_reproducible(data, tmp_path) -> None:
    questions = read_questions(data["questions"], data["annotations"])
    first = [q.question_id for q in select(questions, limit=3, seed=1)]
    assert first == [q.question_id for q in select(questions, limit=3, seed=1)] and len(first) == 3
    assert first == sorted(first, key=[q.question_id for q in questions].index)
    by_image = select(questions, limit=2, split_by_image=True, seed=0)
    images = {q.image_id for q in by_image}
    assert len(by_image) >= 2 and by_image == [q for q in questions if q.image_id in images]
    ids = tmp_path / "ids.txt"
    ids.write_text(f"{questions[4].question_id}\n{questions[0].question_id}\n")
    chosen = load_dataset("vqav2", data["questions"], None, None, question_ids_path=ids).questions
    assert [q.question_id for q in chosen] == [questions[0].question_id, questions[4].question_id]
    ids.write_text("12345")
    with pytest.raises(InputError, match="not in the questions file"):
        load_dataset("vqav2", data["questions"], None, None, question_ids_path=ids)


def test_text_side_cache_keys_on_what_the_questions_depend_on(tmp_path) -> None:
    from zsvqa.cache import IntermediateCache

    cache = IntermediateCache(tmp_path / "cache.sqlite")
    captions = CAPTIONS[42]
    llm = preset("tiny").with_overrides({"question_gen.backend": "llm"})
    Pipeline(llm, cache)._text_side(captions, {})
    misses = cache.misses
    Pipeline(llm, cache)._text_side(captions, {})  # same settings: a hit
    assert cache.misses == misses
    Pipeline(llm.with_overrides({"answerer.max_new_tokens": "3"}), cache)._text_side(captions, {})
    assert cache.misses == misses + 1  # another LLM setting writes other questions
    Pipeline(llm.with_overrides({"prompt.num_exemplars": "1"}), cache)._text_side(captions, {})
    assert cache.misses == misses + 1  # a prompt-only change reuses them


def test_image_removed_after_validation_is_an_error_record(data, tmp_path) -> None:
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    dataset.image_paths[IMAGE_IDS[2]].unlink()
    summary = evaluate(preset("tiny"), dataset, tmp_path / "run", cache_path=tmp_path / "c.sqlite", progress=False)
    assert list(summary.errors.values()) == [summary.errors[IMAGE_IDS[2] * 1000 + 5]]
    assert "does not exist" in summary.errors[IMAGE_IDS[2] * 1000 + 5] and summary.answered == 6


def test_image_without_precomputed_captions_fails_before_work(data, tmp_path) -> None:
    """Like a missing image file: found up front, nothing written, in the Python API and on the command line."""
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], None)
    captions = {**{k: v for k, v in CAPTIONS.items() if k != IMAGE_IDS[0]}, IMAGE_IDS[2]: ["  "]}  # blank = none
    with pytest.raises(InputError, match=r"2 images have no captions in the precomputed captions, e.g. image ids \[42, 9001\]"):
        evaluate(preset("tiny"), dataset, tmp_path / "run", captions=captions, progress=False)
    assert not (tmp_path / "run").exists()
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({str(k): v for k, v in captions.items()}))
    args = eval_args(data, tmp_path / "cli-run", "--captions", str(partial))
    del args[args.index("--images") : args.index("--images") + 2]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert f"2 images have no captions in {str(partial)!r}" in result.output and not (tmp_path / "cli-run").exists()
    # --limit to the questions of the captioned image: the check covers only the selected questions.
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join(str(IMAGE_IDS[1] * 1000 + n) for n in (3, 4)))
    assert CliRunner().invoke(main, [*args, "--question-ids", str(ids)]).exit_code == 0
