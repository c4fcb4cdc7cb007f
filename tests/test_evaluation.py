"""Dataset evaluation on a synthetic dataset in the official formats, with the tiny preset (answers are noise)."""

import json
import os
from pathlib import Path
from types import SimpleNamespace

import pytest
from click.testing import CliRunner

from synthetic_data import CAPTIONS, IMAGE_IDS, QUESTIONS, write_dataset
from zsvqa import wordnet
from zsvqa.captioning import PatchCaptioner
from zsvqa.cli import main
from zsvqa.config import RetrievalConfig, preset
from zsvqa.datasets import (
    VQADataset, VQAQuestion, dataset_format, load_dataset, read_captions_file, read_questions, select,
)
from zsvqa.errors import InputError
from zsvqa.evaluation import Evaluator, evaluate, read_predictions
from zsvqa.matching import ImageQuestionMatcher
from zsvqa.metric import (
    ScoredQuestion, lemmatize_answer, lemmatized_vqa_accuracy, summarize, summarize_records, vqa_accuracy,
    vqa_accuracy_lavis,
)
from zsvqa.pipeline import Pipeline
from zsvqa.retrieval import ExemplarRetriever


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


# (prediction, ten human answers, official accuracy, LAVIS's accuracy), worked out by hand. LAVIS always
# normalizes the prediction; the human answers only when they disagree, and then only their punctuation.
# Where the ten agree, the official script compares the raw prediction; where a k-of-ten match is counted,
# k >= 4 scores 1 and k = 3 scores (3 * 2/3 + 7 * 1) / 10 = 0.9.
LAVIS_TABLE = [
    ("dog", ["dog"] * 10, 1.0, 1.0),  # nothing to normalize: the two agree
    ("orange", ["red"] * 8 + ["orange"] * 2, 0.6, 0.6),  # k=2: (8 * 2/3 + 2 * 1/3) / 10 in both
    ("two", ["2"] * 10, 0.0, 1.0),  # agreeing answers: official compares "two" raw; LAVIS makes it "2"
    ("Yes", ["yes"] * 10, 0.0, 1.0),  # case: lowered only by LAVIS
    ("the dog", ["dog"] * 10, 0.0, 1.0),  # article: dropped only by LAVIS
    ("dog.", ["dog"] * 10, 0.0, 1.0),  # final period: stripped only by LAVIS
    ("dont", ["don't"] * 10, 0.0, 1.0),  # contraction "dont" -> "don't": only LAVIS
    ("t-shirt", ["t-shirt"] * 10, 1.0, 0.0),  # LAVIS spaces the hyphen of the prediction alone: "t shirt"
    # Disagreeing answers: official normalizes all ten ("two" -> "2", "three" -> "3") and the prediction "2"
    # matches 8; LAVIS removes only punctuation from them, so "two" stays and nothing equals the prediction's "2".
    ("two", ["two"] * 8 + ["three"] * 2, 1.0, 0.0),
    ("dog", ["a dog"] * 5 + ["cat"] * 5, 1.0, 0.0),  # the same with an article: "a dog" stays in LAVIS
    ("t-shirt", ["t-shirt"] * 3 + ["shirt"] * 7, 0.9, 0.9),  # punctuation is removed on both sides in both: k=3
    ("dog", ["dog "] * 5 + ["cat"] * 5, 1.0, 0.0),  # LAVIS does not strip the human answers' spaces
]


@pytest.mark.parametrize("prediction,answers,official,lavis", LAVIS_TABLE)
def test_lavis_accuracy_beside_the_official_one(prediction, answers, official, lavis) -> None:
    assert vqa_accuracy(prediction, answers) == pytest.approx(official)
    assert vqa_accuracy_lavis(prediction, answers) == pytest.approx(lavis)


@pytest.fixture()
def needs_wordnet() -> None:
    """Skip where the WordNet database is not installed; CI installs it and sets ZSVQA_REQUIRE_WORDNET."""
    if wordnet.find_folder() is None:
        reason = "WordNet 3.0 is not installed (apt-get install wordnet-base, or set ZSVQA_WORDNET)"
        if os.environ.get("ZSVQA_REQUIRE_WORDNET"):
            pytest.fail(f"the WordNet tests must run here (ZSVQA_REQUIRE_WORDNET is set): {reason}")
        pytest.skip(reason)


# Img2Prompt's lemmatization of a prediction, worked out by hand from WordNet's lists and the suffix rules. Each
# token is lemmatized as a verb, then as a noun; the shortest lemma WordNet knows wins.
LEMMA_TABLE = [
    ("dogs", "dog"),  # verb: "dogs" -s -> "dog" (a verb lemma)
    ("running", "run"),  # verb: "running" is in verb.exc -> "run"
    ("skiing in the snow", "ski the snow"),  # -ing -> "ski"; "in" dropped; "the" is no lemma and stays
    ("to catch a frisbee", "catch a frisbee"),  # "to" dropped; "a" stays (scoring removes articles)
    ("riding", "rid"),  # -ing -> "ride" and "rid", both verbs: the shorter wins
    ("paintings", "paint"),  # no lemma after one pass ("painting" is no verb): a second pass finds "paint"
    ("used", "used"),  # ends in "ed": kept whatever its tag
    ("2 dogs running", "2 dogs running"),  # after a token with a digit nothing is lemmatized
    ("hot dogs", "hot dog"),
    ("", ""),
]


@pytest.mark.parametrize("answer,expected", LEMMA_TABLE)
def test_img2prompt_lemmatization_table(answer, expected, needs_wordnet) -> None:
    assert lemmatize_answer(answer) == expected


def test_lemmatized_variant_lemmatizes_the_prediction_only(needs_wordnet) -> None:
    answers = ["dog"] * 9 + ["puppy"]
    assert vqa_accuracy("dogs", answers) == 0.0
    assert lemmatized_vqa_accuracy("dogs", answers) == 1.0  # "dogs" -> "dog": k=9
    assert lemmatized_vqa_accuracy("running", ["run"] * 10) == 1.0
    assert lemmatized_vqa_accuracy("dog", ["dogs"] * 10) == 0.0  # the human answers stay as they are


def test_lemmatized_metric_without_wordnet_is_a_clear_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("ZSVQA_WORDNET", str(tmp_path))  # a folder without WordNet's files
    wordnet.load.cache_clear()
    try:
        with pytest.raises(InputError, match="lacks one of index.noun, index.verb, noun.exc, verb.exc"):
            wordnet.load()
        monkeypatch.delenv("ZSVQA_WORDNET")
        monkeypatch.setattr(wordnet, "DEBIAN_FOLDER", str(tmp_path))
        monkeypatch.setattr("nltk.data.path", [])
        with pytest.raises(InputError, match=r"apt-get install wordnet-base"):
            wordnet.load()
        dataset = VQADataset("okvqa", [VQAQuestion(1, 1, "What is it?", ["dog"] * 10)], {}, annotated=True)
        with pytest.raises(InputError, match="apt-get install wordnet-base"):  # before any work
            Evaluator(Pipeline(preset("tiny")), dataset, tmp_path / "run", captions={1: ["a dog"]}, lemmatized=True)
        assert not (tmp_path / "run").exists()
    finally:
        wordnet.load.cache_clear()


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
    # LAVIS's accuracy beside it, overall and per answer type.
    lavis = metrics["vqa_accuracy_lavis"]
    expected = 100 * sum(vqa_accuracy_lavis(r["answer"], truth[q]) for q, r in records.items()) / 6
    assert lavis["overall"] == pytest.approx(round(expected, 2))
    assert set(lavis["per_answer_type"]) == {"yes/no", "number", "other"}


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
    # Batch sizes change how many inputs run at once, not the answers: such a rerun resumes (here: all done).
    result = runner.invoke(main, eval_args(data, tmp_path / "run", "--limit", "2", "--set", "answerer.batch_size=4",
                                           "--set", "question_gen.batch_size=3"))
    assert result.exit_code == 0, result.output
    assert len(read_predictions(tmp_path / "run" / "predictions.jsonl")) == 2


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
    Pipeline(llm, cache)._text_sides([captions], [{}], [[]])
    misses = cache.misses
    Pipeline(llm, cache)._text_sides([captions], [{}], [[]])  # same settings: a hit
    assert cache.misses == misses
    Pipeline(llm.with_overrides({"answerer.max_new_tokens": "3"}), cache)._text_sides([captions], [{}], [[]])
    assert cache.misses == misses + 1  # another LLM setting writes other questions
    Pipeline(llm.with_overrides({"prompt.num_exemplars": "1"}), cache)._text_sides([captions], [{}], [[]])
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


# Worked by hand from the nine accuracies of the two tests below, in percent rounded to two decimals:
SUMMARY_BY_HAND = {
    "metric": "vqa-accuracy",
    "num_questions": 9,
    "overall": 58.89,  # (1 + 0 + .9 + .6 + 0 + .3 + .9 + 1 + .6) / 9 = 5.3 / 9 = .58888...
    "per_answer_type": {
        "number": 30.0,  # (.6 + 0) / 2
        "other": 70.0,  # (.3 + .9 + 1 + .6) / 4 = 2.8 / 4
        "yes/no": 63.33,  # (1 + 0 + .9) / 3 = .63333...
    },
    "per_question_type": {  # sorted by name, as the answer types
        "are there": 90.0,
        "how many": 30.0,  # (.6 + 0) / 2
        "is the": 50.0,  # (1 + 0) / 2
        "what color is the": 65.0,  # (.3 + 1) / 2
        "what is the": 75.0,  # (.9 + .6) / 2
    },
}


def test_summarize_hand_worked() -> None:
    rows = [  # (accuracy, answer type, question type)
        (1.0, "yes/no", "is the"), (0.0, "yes/no", "is the"), (0.9, "yes/no", "are there"),
        (0.6, "number", "how many"), (0.0, "number", "how many"),
        (0.3, "other", "what color is the"), (0.9, "other", "what is the"), (1.0, "other", "what color is the"),
        (0.6, "other", "what is the"),
    ]
    scored = [ScoredQuestion(n, accuracy, a, q) for n, (accuracy, a, q) in enumerate(rows)]
    assert summarize(scored, "vqa-accuracy") == SUMMARY_BY_HAND
    assert summarize([], "vqa-accuracy") == {
        "metric": "vqa-accuracy", "num_questions": 0, "overall": 0.0, "per_answer_type": {}, "per_question_type": {}
    }


def test_evaluator_metrics_hand_worked_with_an_error_counted_as_zero(tmp_path) -> None:
    # The same nine accuracies, reached through the evaluator: real VQA scoring of fixed answers (a stub pipeline
    # answers), and one question whose answering fails, so it scores 0 although its answer "3" would be right.
    # (question, ten answers, answer type, question type, the stub's answer, accuracy worked out by hand)
    # A prediction given by k of the ten scores (k min(1, (k-1)/3) + (10-k) min(1, k/3)) / 10:
    # k=1: .3, k=2: .6, k=3: .9, k>=4: 1.
    table = [
        ("Is the dog asleep?", ["yes"] * 10, "yes/no", "is the", "yes", 1.0),
        ("Is the sky blue?", ["no"] * 10, "yes/no", "is the", "yes", 0.0),
        ("Are there clouds?", ["no"] * 7 + ["yes"] * 3, "yes/no", "are there", "yes", 0.9),  # k=3
        ("How many dogs?", ["2"] * 2 + ["3"] * 8, "number", "how many", "2", 0.6),  # k=2
        ("How many cats?", ["3"] * 10, "number", "how many", None, 0.0),  # answering fails
        ("What color is the bus?", ["red"] * 9 + ["blue"], "other", "what color is the", "blue", 0.3),  # k=1
        ("What is the man riding?", ["bike"] * 7 + ["bicycle"] * 3, "other", "what is the", "bicycle", 0.9),
        ("What color is the car?", ["red"] * 10, "other", "what color is the", "red", 1.0),
        ("What is the dog eating?", ["bone"] * 8 + ["stick"] * 2, "other", "what is the", "stick", 0.6),
    ]
    questions = [
        VQAQuestion(1000 + n, 7 + n % 2, question, answers, answer_type, question_type)
        for n, (question, answers, answer_type, question_type, _, _) in enumerate(table)
    ]
    dataset = VQADataset("vqav2", questions, {}, annotated=True)
    stub_answers = {row[0]: row[4] for row in table}

    class StubPipeline:
        config = preset("tiny")

        def load_models(self, vision: bool = True) -> None:  # no models to load
            pass

        def answer_captioned(self, item, image=None):  # type: ignore[no-untyped-def]
            if stub_answers[item.question] is None:
                raise InputError("the prompt could not be built")
            return SimpleNamespace(
                answer=stub_answers[item.question], raw_answer=stub_answers[item.question], logprob=-1.0,
                itm_score=None, captions=item.captions, exemplars=[], timings={}, retrieval_similarity=None, cached=[],
                choice_scores=None,
            )

        def answer_captioned_many(self, items, image=None, choices=None, images=None):  # type: ignore[no-untyped-def]
            results = []
            for item in items:
                try:
                    results.append(self.answer_captioned(item, image))
                except InputError as error:
                    results.append(error)
            return results

    captions = {7: ["a dog on a bed"], 8: ["a bus on a road"]}
    evaluator = Evaluator(StubPipeline(), dataset, tmp_path / "run", captions=captions)  # type: ignore[arg-type]
    summary = evaluator.run(progress=False)
    records = read_predictions(tmp_path / "run" / "predictions.jsonl")  # error records are not "done"
    lines = [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]
    lines.sort(key=lambda line: line["question_id"])  # written image by image
    assert [line["accuracy"] for line in lines] == pytest.approx([row[5] for row in table])
    assert [line.get("error") for line in lines] == [None] * 4 + ["the prompt could not be built"] + [None] * 4
    assert len(records) == 8 and summary.errors == {1004: "the prompt could not be built"}
    # Every answer and human answer here is already in normal form, so LAVIS's rule gives the same nine scores.
    lavis = {**SUMMARY_BY_HAND, "metric": "vqa-accuracy-lavis (prediction always normalized)"}
    assert summary.metrics == {**SUMMARY_BY_HAND, "errors": 1, "vqa_accuracy_lavis": lavis}
    assert json.loads((tmp_path / "run" / "metrics.json").read_text()) == summary.metrics


def test_metrics_report_lavis_accuracy_beside_the_official_one_hand_worked() -> None:
    # (ten answers, answer type, answer given, official accuracy, LAVIS's): rows of LAVIS_TABLE, and an error.
    table = [
        (["2"] * 10, "number", "two", 0.0, 1.0),
        (["yes"] * 10, "yes/no", "Yes", 0.0, 1.0),
        (["t-shirt"] * 10, "other", "t-shirt", 1.0, 0.0),
        (["dog"] * 10, "other", "the dog", 0.0, 1.0),
        (["dog"] * 10, "other", None, 0.0, 0.0),  # failed: 0 in both, whatever its (empty) answer
    ]
    dataset = VQADataset(
        "vqav2", [VQAQuestion(n, n, "?", answers, answer_type, "what") for n, (answers, answer_type, *_) in
                  enumerate(table)], {}, annotated=True,
    )
    records = [
        {"question_id": n, "answer": given or "", "accuracy": official, **({} if given else {"error": "failed"})}
        for n, (_, _, given, official, _) in enumerate(table)
    ]
    questions = {q.question_id: q for q in dataset.questions}
    lavis = dataset_format("vqav2").papers_metrics(records, questions)["vqa_accuracy_lavis"]
    assert lavis["overall"] == 60.0  # (1 + 1 + 0 + 1 + 0) / 5; the official one is (0 + 0 + 1 + 0 + 0) / 5 = 20
    assert lavis["per_answer_type"] == {"number": 100.0, "other": 33.33, "yes/no": 100.0}  # other: (0 + 1 + 0) / 3
    assert summarize_records(records, questions, "x")["overall"] == 20.0
    assert dataset_format("aokvqa").papers_metrics(records, questions) == {}


CACHE_WRITER = """
import sys, time
from pathlib import Path
from zsvqa.cache import IntermediateCache

path, name, other = sys.argv[1:]
Path(f"{path}.{name}.ready").touch()
while not Path(f"{path}.{other}.ready").exists():  # both open the fresh file at once, then write and read
    time.sleep(0.01)
cache = IntermediateCache(path)
for i in range(300):
    cache.put("captions", {"writer": name, "i": i}, {"captions": [name * 100] * 5})
    cache.get("captions", {"writer": other, "i": i})
print(cache.connection.execute("PRAGMA journal_mode").fetchone()[0])
cache.close()
"""


def test_two_processes_share_one_cache_file(tmp_path) -> None:
    import subprocess
    import sys

    from zsvqa.cache import IntermediateCache

    path = str(tmp_path / "cache.sqlite")
    writers = [
        subprocess.Popen([sys.executable, "-c", CACHE_WRITER, path, name, other], cwd=Path(__file__).parent.parent,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for name, other in (("a", "b"), ("b", "a"))
    ]
    for writer in writers:
        stdout, stderr = writer.communicate(timeout=300)
        assert writer.returncode == 0 and "locked" not in stderr, stderr[-2000:]
        assert stdout.strip() == "wal"  # readers never wait on the writer
    cache = IntermediateCache(path)
    assert cache.connection.execute("SELECT COUNT(*) FROM entries").fetchone()[0] == 600
    assert cache.get("captions", {"writer": "b", "i": 299}) == {"captions": ["b" * 100] * 5}
    cache.close()


def test_resume_accepts_the_same_run_spelled_differently_or_moved(data, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)

    def run_eval(questions: str, annotations: str, images: str, *extra: str):
        return CliRunner().invoke(main, [
            "eval", "--preset", "tiny", "--dataset", "vqav2", "--questions", questions, "--annotations", annotations,
            "--images", images, "--out", "run", "--cache", "cache.sqlite", "--no-progress", "--limit", "3", *extra])

    first = run_eval("data/questions.json", "data/annotations.json", "data/val2014")
    assert first.exit_code == 0 and "answered 3 questions (0 done earlier)" in first.output, first.output
    spelled = run_eval("./data/questions.json", str(tmp_path / "data" / "annotations.json"), "data/val2014/")
    assert spelled.exit_code == 0 and "(3 done earlier)" in spelled.output, spelled.output
    (tmp_path / "data").rename(tmp_path / "moved")  # the same files elsewhere: the same data
    moved = run_eval("moved/questions.json", "moved/annotations.json", "moved/val2014")
    assert moved.exit_code == 0 and "(3 done earlier)" in moved.output, moved.output
    # Other settings, or other data: refused, naming each difference with its old and new value.
    other = run_eval("moved/questions.json", "moved/annotations.json", "moved/val2014", "--prompt-exemplars", "1",
                     "--set", "seed=7")
    assert other.exit_code == 1 and "Traceback" not in other.output
    assert "pipeline.prompt.num_exemplars: 8 -> 1; pipeline.seed: 0 -> 7)" in other.output
    questions = json.loads((tmp_path / "moved" / "questions.json").read_text())
    questions["questions"][0]["question"] = "What color is the car?"  # as long as "... the bus?"
    (tmp_path / "moved" / "questions.json").write_text(json.dumps(questions))
    edited = run_eval("moved/questions.json", "moved/annotations.json", "moved/val2014")
    assert edited.exit_code == 1 and "(data.questions.sha256: '" in edited.output  # by content, not size


def test_setting_differences_name_each_setting_and_accept_path_spellings(tmp_path, monkeypatch) -> None:
    from zsvqa.evaluation import setting_differences

    monkeypatch.chdir(tmp_path)
    (tmp_path / "index").mkdir()
    old = {"pipeline": {"retrieval": {"index": "index", "n_shot": 16}, "seed": 0}}
    assert setting_differences(old, {"pipeline": {"retrieval": {"index": f"{tmp_path}/index/", "n_shot": 16}, "seed": 0}}) == []
    new = {"pipeline": {"retrieval": {"index": "other", "n_shot": 8}, "seed": 0}, "data": {"limit": 5}}
    assert setting_differences(old, new) == [
        "data: None -> {'limit': 5}", "pipeline.retrieval.index: 'index' -> 'other'", "pipeline.retrieval.n_shot: 16 -> 8"
    ]


def test_retried_errors_leave_one_line_per_question(data, tmp_path) -> None:
    image = data["images"] / f"COCO_val2014_{IMAGE_IDS[1]:012d}.jpg"
    good = image.read_bytes()
    image.write_bytes(b"garbage")
    args = eval_args(data, tmp_path / "run")

    def lines() -> list[dict]:
        return [json.loads(line) for line in (tmp_path / "run" / "predictions.jsonl").read_text().splitlines()]

    for _ in range(2):  # the second run retries the two failed questions, and they fail again
        assert CliRunner().invoke(main, args).exit_code == 0
        assert len(lines()) == 6 and sum("error" in r for r in lines()) == 2
    image.write_bytes(good)
    fixed = CliRunner().invoke(main, args)
    assert fixed.exit_code == 0 and "answered 2 questions (4 done earlier)" in fixed.output, fixed.output
    ids = [r["question_id"] for r in lines()]
    assert sorted(ids) == sorted(IMAGE_IDS[i] * 1000 + n for n, (i, *_) in enumerate(QUESTIONS))
    assert not any("error" in r for r in lines())


def test_second_writer_is_refused_and_a_rerun_after_kill_9_equals_an_uninterrupted_run(data, tmp_path) -> None:
    """A real crash: `run.py eval` killed with SIGKILL once answers are on disk. While it is stopped, a second eval
    into its folder is refused, naming its pid; once it is killed its lock is gone and a rerun finishes the run
    with what an uninterrupted run gives."""
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "run"
    predictions = out / "predictions.jsonl"
    first = subprocess.Popen([sys.executable, "run.py", *eval_args(data, out)], cwd=Path(__file__).parent.parent,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not (predictions.exists() and predictions.read_bytes().count(b"\n") >= 1):
        assert first.poll() is None, first.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline
        time.sleep(0.005)
    first.send_signal(signal.SIGSTOP)  # frozen mid-run, holding its lock
    try:
        written = predictions.read_bytes().count(b"\n")
        assert written < 6, "the run finished before it could be stopped: nothing was tested"
        second = CliRunner().invoke(main, eval_args(data, out))
        assert second.exit_code == 1 and f"is in use by another run (pid {first.pid})" in second.output, second.output
    finally:
        first.kill()
        first.wait()
    assert first.returncode == -signal.SIGKILL
    resumed = CliRunner().invoke(main, eval_args(data, out))
    assert resumed.exit_code == 0 and f"answered {6 - written} questions ({written} done earlier)" in resumed.output
    whole = tmp_path / "whole" / "run"  # its own cache, in tmp_path/whole
    assert CliRunner().invoke(main, eval_args(data, whole)).exit_code == 0
    for name in ("results.json", "metrics.json"):
        assert json.loads((out / name).read_text()) == json.loads((whole / name).read_text())
    resumed_records, whole_records = read_predictions(predictions), read_predictions(whole / "predictions.jsonl")
    assert len(predictions.read_text().splitlines()) == len(resumed_records) == 6
    ids = sorted(whole_records)
    assert sorted(resumed_records) == ids
    for fields in [("answer", "raw_answer", "num_captions", "num_exemplars"), ("accuracy", "itm_score", "logprob")]:
        resumed_values = [resumed_records[q][k] for q in ids for k in fields]
        assert resumed_values == pytest.approx([whole_records[q][k] for q in ids for k in fields])


def test_cached_stages_are_timed_zero_and_named(data, tmp_path) -> None:
    """A prompt-only variant reads the vision stages from the cache: it must not report their original time."""
    from zsvqa.cache import IntermediateCache

    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    cache = tmp_path / "cache.sqlite"
    evaluate(preset("tiny"), dataset, tmp_path / "a", cache_path=cache, progress=False)
    changed = preset("tiny").with_overrides({"prompt.num_exemplars": "2"})
    evaluate(changed, dataset, tmp_path / "b", cache_path=cache, progress=False)
    vision = ["captioning", "image_features", "relevance"]
    assert not any("cached" in r for r in read_predictions(tmp_path / "a" / "predictions.jsonl").values())
    assert all(set(vision) <= set(r["cached"]) for r in read_predictions(tmp_path / "b" / "predictions.jsonl").values())
    image, question = dataset.image_paths[IMAGE_IDS[0]], QUESTIONS[0][1]
    fresh = Pipeline(preset("tiny"), IntermediateCache(tmp_path / "fresh.sqlite")).caption_image(image, [question])[0]
    assert fresh.cached == [] and fresh.timings["captioning"] > 0
    pipeline = Pipeline(changed, IntermediateCache(cache))
    hit = pipeline.caption_image(image, [question])[0]
    assert hit.cached == vision and hit.timings == dict.fromkeys(vision, 0.0) and hit.captions == fresh.captions
    result = pipeline.answer_captioned(hit, image=image)
    assert set(vision) <= set(result.cached) and result.timings["answer"] > 0
    assert all(result.timings[stage] == 0.0 for stage in result.cached)
    # The text side (candidates, synthetic questions) from the cache is named the same way.
    Pipeline(preset("tiny"), IntermediateCache(cache))._text_sides([CAPTIONS[42]], [{}], [[]])
    timings: dict[str, float] = {}
    cached: list[str] = []
    Pipeline(changed, IntermediateCache(cache))._text_sides([CAPTIONS[42]], [timings], [cached])
    assert cached == ["candidates", "question_generation"] and timings == dict.fromkeys(cached, 0.0)


def test_scored_answers_record_their_choice_scores(data, tmp_path) -> None:
    out = tmp_path / "scored"
    args = eval_args(data, out, "--set", "answerer.selection=score")
    args[args.index("--images") : args.index("--images") + 2] = ["--captions", str(data["captions"])]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    records = {r["question"]: r for r in read_predictions(out / "predictions.jsonl").values()}
    scores = records["Is there a dog?"]["choice_scores"]
    assert set(scores) == {"yes", "no"} and records["Is there a dog?"]["answer"] == max(scores, key=scores.get)


def test_okvqa_answers_take_the_annotations_form_where_the_preset_says_so(tmp_path) -> None:
    # OK-VQA's processed answers are lemmas: "bananas" scores 0 against ten "banana" unless written as one.
    questions = [VQAQuestion(1, 7, "What fruit is this?", ["banana"] * 10, "other", "what"),
                 VQAQuestion(2, 8, "What are they doing?", ["fly kite"] * 10, "other", "what")]
    given = {"What fruit is this?": "bananas", "What are they doing?": "flying kites"}

    class StubPipeline:
        def __init__(self, dataset_answer_form: bool) -> None:
            self.config = preset("tiny").with_overrides({"answerer.dataset_answer_form": str(dataset_answer_form)})

        def load_models(self, vision: bool = True) -> None:  # no models to load
            pass

        def answer_captioned_many(self, items, image=None, choices=None, images=None):  # type: ignore[no-untyped-def]
            return [SimpleNamespace(
                answer=given[item.question], raw_answer=given[item.question], logprob=-1.0, itm_score=None,
                captions=item.captions, exemplars=[], timings={}, retrieval_similarity=None, cached=[],
                choice_scores=None,
            ) for item in items]

    captions = {7: ["a bunch of bananas"], 8: ["people flying kites"]}
    for form, expected, accuracy in ((False, ["bananas", "flying kites"], 0.0), (True, ["banana", "fly kite"], 1.0)):
        for name in ("okvqa", "vqav2"):
            run = tmp_path / f"{name}-{form}"
            dataset = VQADataset(name, questions, {}, annotated=True)
            Evaluator(StubPipeline(form), dataset, run, captions=captions).run(progress=False)  # type: ignore[arg-type]
            lines = sorted((json.loads(line) for line in (run / "predictions.jsonl").read_text().splitlines()),
                           key=lambda line: line["question_id"])
            # Only OK-VQA's answers change form; VQAv2's annotations keep theirs as written.
            assert [line["answer"] for line in lines] == (expected if name == "okvqa" else list(given.values()))
            assert [line["raw_answer"] for line in lines] == list(given.values())
            assert [line["accuracy"] for line in lines] == [accuracy if name == "okvqa" else 0.0] * 2
