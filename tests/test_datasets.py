"""A-OKVQA and GQA: their metrics on hand-worked tables, their official files (and malformed ones), and runs of the
eval command on fixtures in those formats with the tiny preset (answers are noise) and, slow, the bundled LLM."""

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from synthetic_data import AOKVQA, GQA, write_aokvqa, write_gqa
from test_cli_and_config import assert_one_error_line
from zsvqa.datasets.aokvqa import ChoiceMapper, direct_answer_accuracy, read_aokvqa, summarize_aokvqa
from zsvqa.cli import main
from zsvqa.datasets import VQAQuestion, image_key, load_dataset, read_id_list, select
from zsvqa.evaluation import read_predictions
from zsvqa.datasets.gqa import gqa_accuracy, gqa_accuracy_lavis, summarize_gqa

# (prediction, direct answers, accuracy): min(1, matches / 3), compared after the VQA answer normalization.
DIRECT_ANSWER_TABLE = [
    ("transport", ["transport"] * 6 + ["travel"] * 4, 1.0),  # 6 matches -> min(1, 2)
    ("travel", ["transport"] * 6 + ["travel"] * 4, 1.0),  # 4 matches -> min(1, 4/3)
    ("race", ["race"] * 3 + ["exercise"] * 7, 1.0),  # 3 matches: 1.0 (VQA's ten-subset average would give 0.9)
    ("bus", ["bus"] * 2 + ["ride bus"] * 8, 2 / 3),  # 2 matches
    ("The Bus.", ["bus"] + ["car"] * 9, 1 / 3),  # "the bus." -> "bus": 1 match
    ("two", ["2"] * 3 + ["3"] * 7, 1.0),  # number words become digits: 3 matches
    ("ride", ["bus"] * 5 + ["ride bus"] * 5, 0.0),  # a word of an answer is no match
]


@pytest.mark.parametrize("prediction,answers,expected", DIRECT_ANSWER_TABLE)
def test_aokvqa_direct_answer_accuracy_table(prediction, answers, expected) -> None:
    assert direct_answer_accuracy(prediction, answers) == pytest.approx(expected)


# (prediction, answer, the project's score: both normalized, LAVIS's: the prediction normalized, the answer raw)
@pytest.mark.parametrize("prediction,answer,expected,lavis", [
    ("yes", "yes", 1.0, 1.0), ("Yes.", "yes", 1.0, 1.0), ("a cup", "cup", 1.0, 1.0), ("cups", "cup", 0.0, 0.0),
    ("blue", "red", 0.0, 0.0),
    ("two", "2", 1.0, 1.0),  # "two" -> "2" on the prediction's side in both
    ("t-shirt", "t-shirt", 1.0, 0.0),  # the prediction's hyphen becomes a space; LAVIS keeps the answer's
    ("2", "two", 1.0, 0.0),  # LAVIS turns no number word of the answer into a digit
])
def test_gqa_exact_match_after_normalization(prediction, answer, expected, lavis) -> None:
    assert gqa_accuracy(prediction, answer) == expected
    assert gqa_accuracy_lavis(prediction, answer) == lavis


def test_gqa_summary_per_structural_and_semantic_type() -> None:
    # id: (structural, semantic, accuracy)
    table = {"a": ("verify", "attr", 1.0), "b": ("query", "rel", 0.0), "c": ("choose", "attr", 1.0),
             "d": ("query", "attr", 1.0)}
    questions = {k: VQAQuestion(k, 1, "?", ["x"], answer_type=s, question_type=m) for k, (s, m, _) in table.items()}
    records = [{"question_id": k, "accuracy": a} for k, (_, _, a) in table.items()]
    metrics = summarize_gqa(records, questions)
    assert metrics["overall"] == 75.0  # 3 of 4
    assert metrics["per_structural_type"] == {"choose": 100.0, "query": 50.0, "verify": 100.0}  # query: b 0, d 1
    assert metrics["per_semantic_type"] == {"attr": 100.0, "rel": 0.0}  # attr: a, c, d all right
    assert "per_answer_type" not in metrics


def test_aokvqa_summary_leaves_difficult_questions_out_of_direct_answers() -> None:
    # id: (difficult, direct-answer accuracy, correct choice, embedding's choice, LLM's choice)
    table = {"a": (False, 1.0, "x", "x", "x"), "b": (False, 1 / 3, "x", "y", "x"), "c": (True, 0.0, "x", "y", "x")}
    questions = {k: VQAQuestion(k, 1, "?", ["x"], multiple_choice_answer=c, choices=["x", "y"],
                                difficult_direct_answer=d) for k, (d, _, c, _, _) in table.items()}
    records = [{"question_id": k, "accuracy": a, "choice_embedding": e, "choice_llm": m}
               for k, (_, a, _, e, m) in table.items()]
    metrics = summarize_aokvqa(records, questions, "enc")
    assert metrics["direct_answer"] == {"accuracy": 66.67, "num_questions": 2}  # (1 + 1/3) / 2, c left out
    assert metrics["overall"] == 66.67 and metrics["num_questions"] == 3
    assert metrics["multiple_choice"]["embedding"] == {"accuracy": 33.33, "chosen_by": "enc"}  # only a
    assert metrics["multiple_choice"]["llm"]["accuracy"] == 100.0  # a, b, c
    without_llm = [{k: v for k, v in r.items() if k != "choice_llm"} for r in records]
    assert set(summarize_aokvqa(without_llm, questions, "enc")["multiple_choice"]) == {"embedding"}


def test_choice_mapper_takes_the_nearest_choice_by_meaning() -> None:
    mapper = ChoiceMapper("bundled:all-MiniLM-L6-v2")
    assert mapper("Transport", ["racing", "transport"]) == "transport" and mapper._encoder is None  # exact: no model
    assert mapper("puppy", ["car", "dog", "banana"]) == "dog"
    assert mapper("automobile", ["tree", "house", "car"]) == "car"


def test_ids_keep_their_spelling() -> None:
    assert (image_key("000000000042"), image_key(42), image_key("n161313")) == (42, 42, "n161313")
    questions = [VQAQuestion(42, 1, "?"), VQAQuestion("22MexNkBPpdZGX6sxbxVBH", 1, "?"), VQAQuestion("7", 1, "?")]
    chosen = select(questions, question_ids=["0042", "22MexNkBPpdZGX6sxbxVBH"])  # "0042" was int("0042") == 42
    assert [q.question_id for q in chosen] == [42, "22MexNkBPpdZGX6sxbxVBH"]


def test_readers_on_official_files(tmp_path) -> None:
    data = write_aokvqa(tmp_path / "aok")
    questions, annotated = read_aokvqa(data["questions"])
    assert annotated and [q.question_id for q in questions] == [r[0] for r in AOKVQA]
    first = questions[0]
    assert (first.image_id, first.multiple_choice_answer, len(first.answers)) == (42, "transport", 10)
    assert [q.difficult_direct_answer for q in questions] == [False, False, True]
    gqa = load_dataset("gqa", write_gqa(tmp_path / "gqa")["questions"], None, tmp_path / "gqa" / "images")
    assert gqa.annotated and [q.question_id for q in gqa.questions] == [r[0] for r in GQA]
    assert [q.image_id for q in gqa.questions] == ["n161313", "n161313", 2354786]
    assert (gqa.questions[0].answers, gqa.questions[0].answer_type, gqa.questions[0].question_type) == (
        ["yes"], "verify", "attr")
    assert gqa.image_paths[2354786].name == "2354786.jpg"
    ids = tmp_path / "ids.txt"
    ids.write_text('["20968380", 201640614]')  # a JSON number names the same question as its string
    assert read_id_list(ids) == ["20968380", "201640614"]


def run(*args: str):
    return CliRunner().invoke(main, list(args))


def aok_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", "aokvqa", "--questions", str(data["questions"]), "--images", str(data["images"]),
            "--out", str(out), "--preset", "tiny", "--cache", str(out.parent / "cache.sqlite"), "--no-progress",
            *extra]


def gqa_args(data: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["eval", "--dataset", "gqa", "--questions", str(data["questions"]), "--images", str(data["images"]),
            "--out", str(out), "--preset", "tiny", "--cache", str(out.parent / "cache.sqlite"), "--no-progress",
            *extra]


def test_aokvqa_eval_writes_submission_and_both_metrics_and_resumes(tmp_path) -> None:
    data = write_aokvqa(tmp_path / "data")
    out = tmp_path / "aok"
    result = run(*aok_args(data, out))  # the LLM scores the choices by default: the answerer is causal
    assert result.exit_code == 0, result.output
    choices = {r[0]: r[3] for r in AOKVQA}
    submission = json.loads((out / "results.json").read_text())
    assert set(submission) == set(choices)
    for question_id, entry in submission.items():
        assert set(entry) == {"multiple_choice", "direct_answer"} and entry["multiple_choice"] in choices[question_id]
    records = read_predictions(out / "predictions.jsonl")
    assert set(records) == set(choices)  # string ids, as the file spells them
    for question_id, record in records.items():
        assert record["choice_embedding"] in choices[question_id] and record["choice_llm"] in choices[question_id]
        assert submission[question_id]["multiple_choice"] == record["choice_llm"]
    metrics = json.loads((out / "metrics.json").read_text())
    truth = {r[0]: (r[5], r[3][r[4]], r[6]) for r in AOKVQA}
    direct = [direct_answer_accuracy(r["answer"], truth[q][0]) for q, r in records.items() if not truth[q][2]]
    assert metrics["direct_answer"] == {"accuracy": round(100 * sum(direct) / 2, 2), "num_questions": 2}
    for way in ("embedding", "llm"):
        hits = [records[q][f"choice_{way}"] == truth[q][1] for q in records]
        assert metrics["multiple_choice"][way]["accuracy"] == round(100 * sum(hits) / 3, 2)
    assert json.loads((out / "config.json").read_text())["data"]["score_choices"] is True
    again = run(*aok_args(data, out, "--score-choices"))
    assert again.exit_code == 0 and "answered 0 questions (3 done earlier)" in again.output
    other = run(*aok_args(data, out, "--no-score-choices"))
    assert other.exit_code == 1 and "score_choices: True -> False" in other.output


def test_aokvqa_precomputed_coco2017_captions_question_ids_and_test_split(tmp_path) -> None:
    data = write_aokvqa(tmp_path / "val")
    ids = tmp_path / "ids.txt"
    ids.write_text("2GXQ3u6TD5Bmyd4P3Nz2Gr\n")
    args = aok_args(data, tmp_path / "one", "--captions", str(data["captions"]), "--question-ids", str(ids))
    del args[args.index("--images") : args.index("--images") + 2]
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert list(json.loads((tmp_path / "one" / "results.json").read_text())) == ["2GXQ3u6TD5Bmyd4P3Nz2Gr"]
    test = write_aokvqa(tmp_path / "test", answers=False)
    result = run(*aok_args(test, tmp_path / "test-run", "--limit", "2"))
    assert result.exit_code == 0, result.output
    assert len(json.loads((tmp_path / "test-run" / "results.json").read_text())) == 2
    assert not (tmp_path / "test-run" / "metrics.json").exists()  # the test split carries no answers


def test_gqa_eval_writes_official_predictions_and_typed_metrics(tmp_path) -> None:
    data = write_gqa(tmp_path / "data")
    out = tmp_path / "gqa"
    result = run(*gqa_args(data, out))
    assert result.exit_code == 0, result.output
    predictions = json.loads((out / "results.json").read_text())
    assert [p["questionId"] for p in predictions] == [r[0] for r in GQA]
    assert all(set(p) == {"questionId", "prediction"} and isinstance(p["prediction"], str) for p in predictions)
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["per_structural_type"]) == {"verify", "query", "choose"}
    assert set(metrics["per_semantic_type"]) == {"attr", "rel"}
    truth = {r[0]: r[3] for r in GQA}
    records = read_predictions(out / "predictions.jsonl")
    assert metrics["overall"] == round(100 * sum(gqa_accuracy(r["answer"], truth[q]) for q, r in records.items()) / 3, 2)
    lavis = metrics["gqa_accuracy_lavis"]  # LAVIS's rule beside, typed the same way
    assert lavis["overall"] == round(100 * sum(gqa_accuracy_lavis(r["answer"], truth[q]) for q, r in records.items()) / 3, 2)
    assert set(lavis["per_structural_type"]) == {"verify", "query", "choose"}
    ids = tmp_path / "ids.json"
    ids.write_text('["20968380"]')
    args = gqa_args(data, tmp_path / "one", "--captions", str(data["captions"]), "--question-ids", str(ids))
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "one" / "results.json").read_text())[0]["questionId"] == "20968380"


def _rewrite(path: Path, change) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps(change(data)))


def _aok(change):
    def apply(records):
        change(records)
        return records
    return apply


AOKVQA_BAD = [
    (lambda d: {"questions": d}, "is not a JSON list"),
    (_aok(lambda d: d[1].pop("choices")), "entry 1 lacks choices"),
    (_aok(lambda d: d[0].update(correct_choice_idx=7)), "correct_choice_idx 7 is not an index into its 4 choices"),
    (_aok(lambda d: d[0].pop("correct_choice_idx")), "has direct_answers but not correct_choice_idx"),
    (_aok(lambda d: d[2].update(question_id=d[0]["question_id"])), "repeats question ids"),
    (_aok(lambda d: [d[2].pop(k) for k in ("correct_choice_idx", "direct_answers")]), "some questions carry answers"),
    (_aok(lambda d: d[0].update(choices=["only one"])), "at least two of them non-empty"),
    (_aok(lambda d: d[0].update(image_id="abc")), "not a COCO image number"),
]


BAD_FILES = [("aokvqa", *bad) for bad in AOKVQA_BAD]  # GQA_BAD below joins them


GQA_BAD = [
    (lambda d: {"questions": [dict(v, question_id=k) for k, v in d.items()]}, "not a JSON object keyed by question id"),
    (lambda d: {k: {f: x for f, x in v.items() if f != "imageId"} for k, v in d.items()}, "lacks imageId"),
    (lambda d: {k: dict(v, answer="") for k, v in d.items()}, "has an empty answer"),
    (lambda d: {k: {f: x for f, x in v.items() if f != "answer" or k != "20968380"} for k, v in d.items()},
     "some questions have an answer and others do not, e.g. '20968380'"),
    (lambda d: {}, "holds no questions"),
]


BAD_FILES += [("gqa", *bad) for bad in GQA_BAD]


@pytest.mark.parametrize("dataset,change,message", BAD_FILES)
def test_malformed_dataset_files_fail_before_work_in_one_line(tmp_path, dataset, change, message) -> None:
    write, args = (write_aokvqa, aok_args) if dataset == "aokvqa" else (write_gqa, gqa_args)
    data = write(tmp_path / "data")
    _rewrite(data["questions"], change)
    result = run(*args(data, tmp_path / "run"))
    assert result.exit_code == 1
    assert_one_error_line(result.output, message)
    assert not (tmp_path / "run").exists()


def test_other_input_problems_are_found_before_work(tmp_path) -> None:
    aok, gqa = write_aokvqa(tmp_path / "aok"), write_gqa(tmp_path / "gqa")
    (aok["images"] / "000000001337.jpg").unlink()
    (gqa["images"] / "n161313.jpg").unlink()
    ids = tmp_path / "ids.txt"
    ids.write_text("nope\n")
    cases = [
        (aok_args(aok, tmp_path / "r1"), "1 images have no file in", "expected names like 000000001337.jpg"),
        (gqa_args(gqa, tmp_path / "r2"), "1 images have no file in", "expected names like n161313.jpg"),
        (aok_args(aok, tmp_path / "r3", "--annotations", str(aok["questions"])), "carries its own answers", ""),
        (gqa_args(gqa, tmp_path / "r4", "--score-choices", "--captions", str(gqa["captions"])),
         "--score-choices ranks A-OKVQA's multiple choices", ""),
        (gqa_args(gqa, tmp_path / "r5", "--question-ids", str(ids)), "1 requested question ids are not", "'nope'"),
    ]
    for args, message, detail in cases:
        result = run(*args)
        assert result.exit_code == 1, (args, result.output)
        assert_one_error_line(result.output, message)
        assert detail in result.output
    gqa["captions"].write_text(json.dumps({"n161313": ["a cup"]}))
    result = run(*gqa_args(gqa, tmp_path / "r6", "--captions", str(gqa["captions"])))
    assert_one_error_line(result.output, "1 images have no captions")
    assert "[2354786]" in result.output


@pytest.mark.slow
def test_bundled_llm_from_precomputed_captions(tmp_path) -> None:
    """The offline preset (bundled Gemma) answers both datasets from captions, LLM choice scoring included."""
    aok, gqa = write_aokvqa(tmp_path / "aok"), write_gqa(tmp_path / "gqa")
    for args in (
        aok_args(aok, tmp_path / "a", "--captions", str(aok["captions"]), "--limit", "2", "--score-choices"),
        gqa_args(gqa, tmp_path / "g", "--captions", str(gqa["captions"]), "--limit", "2"),
    ):
        args[args.index("--preset") + 1] = "offline"
        del args[args.index("--images") : args.index("--images") + 2]
        result = run(*args)
        assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "a" / "metrics.json").read_text())
    assert set(metrics["multiple_choice"]) == {"embedding", "llm"} and metrics["errors"] == 0
    assert json.loads((tmp_path / "g" / "metrics.json").read_text())["num_questions"] == 2
    for folder in ("a", "g"):
        assert {"results.json", "metrics.json", "config.json"} <= {p.name for p in (tmp_path / folder).iterdir()}


def test_an_encoder_that_cannot_load_stops_the_run_before_work(tmp_path) -> None:
    data = write_aokvqa(tmp_path / "data")
    result = run(*aok_args(data, tmp_path / "run", "--set", "retrieval.embedding_model=bundled:nothing"))
    assert_one_error_line(result.output, "unknown bundled model 'bundled:nothing'")
    assert not (tmp_path / "run" / "predictions.jsonl").exists()
