"""PICa faithfulness (microsoft/PICa, gpt3_api_okvqa.py): exemplar retrieval by question + image similarity with
a tiny random CLIP model, the exemplars' answers, and the prompt format. The model's embeddings are noise: the
tests check the arithmetic and the mechanics, never retrieval quality."""

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from synthetic_data import IMAGE_IDS, QUESTIONS, write_dataset
from zsvqa.cli import main
from zsvqa.config import PromptConfig, RetrievalConfig, preset
from zsvqa.errors import InputError, ModelLoadError
from zsvqa.evaluation import read_predictions
from zsvqa.images import load_image
from zsvqa.prompting import PromptBuilder, QAExemplar
from zsvqa.retrieval import ExemplarRetriever, load_encoder

SAME = "What is in the picture?"
# The same question on every image, so question similarity ties and the image decides; the first annotator
# disagrees with the other nine.
SAME_ANSWERS = {42: ["bus"] + ["car"] * 9, 1337: ["bike"] + ["bicycle"] * 9, 9001: ["kitten"] + ["cat"] * 9}


def write_training_set(root: Path) -> dict[str, Path]:
    paths = write_dataset(root, split="train2014")
    rows = [(IMAGE_IDS[i], q, a) for i, q, a, *_ in QUESTIONS] + [(i, SAME, a) for i, a in SAME_ANSWERS.items()]
    questions = [{"image_id": i, "question": q, "question_id": n} for n, (i, q, _) in enumerate(rows)]
    annotations = [{"image_id": i, "question_id": n, "answers": [{"answer": x} for x in a]}
                   for n, (i, _, a) in enumerate(rows)]
    paths["questions"].write_text(json.dumps({"questions": questions}))
    paths["annotations"].write_text(json.dumps({"annotations": annotations}))
    return paths


def index_args(train: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["index", "--questions", str(train["questions"]), "--annotations", str(train["annotations"]),
            "--captions", str(train["captions"]), "--out", str(out), *extra]


@pytest.fixture(scope="module")
def train(tmp_path_factory) -> dict[str, Path]:
    return write_training_set(tmp_path_factory.mktemp("train"))


@pytest.fixture(scope="module")
def clip_index(train, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("index") / "clip"
    result = CliRunner().invoke(main, index_args(train, out, "--images", str(train["images"]),
                                                 "--embedding-model", "tiny:clip", "--image-embedding-model", "tiny:clip"))
    assert result.exit_code == 0, result.output
    return out


def unit(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float64)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def image_path(train: dict[str, Path], image_id: int) -> Path:
    return train["images"] / f"COCO_train2014_{image_id:012d}.jpg"


def test_score_is_question_plus_image_similarity(train, clip_index) -> None:
    retriever = ExemplarRetriever(RetrievalConfig(index=str(clip_index)))
    assert retriever.meta["image_embedding_model"] == "tiny:clip" and retriever.meta["image_dim"] > 0
    clip = load_encoder("tiny:clip")
    examples = retriever.examples
    question, test_image = "What color is the bike?", image_path(train, 1337)
    # By hand: cosine of CLIP question vectors plus cosine of CLIP image vectors.
    question_sim = unit(clip.encode([e.question for e in examples])) @ unit(clip.encode([question]))[0]
    pictures = [load_image(image_path(train, e.image_id)) for e in examples]
    image_sim = unit(clip.encode(pictures)) @ unit(clip.encode([load_image(test_image)]))[0]
    found = retriever.nearest(question, k=len(examples), image=test_image)
    scores = {e.question_id: s for e, s in found}
    expected = {e.question_id: q + i for e, q, i in zip(examples, question_sim, image_sim)}
    assert sorted(scores) == sorted(expected)
    np.testing.assert_allclose([scores[k] for k in expected], list(expected.values()), rtol=0, atol=1e-5)
    assert [s for _, s in found] == sorted(scores.values(), reverse=True)
    assert retriever("What color is the bike?", image=test_image).similarity == "question+image"


def test_the_image_changes_the_ranking_and_without_one_only_the_question_counts(train, clip_index) -> None:
    retriever = ExemplarRetriever(RetrievalConfig(index=str(clip_index), n_shot=3))
    # The three examples asking SAME tie on the question; each test image puts its own example first.
    firsts = [retriever.nearest(SAME, image=image_path(train, i))[0][0].image_id for i in IMAGE_IDS]
    assert firsts == IMAGE_IDS
    in_memory = load_image(image_path(train, 9001))  # a PIL image works as well as a path
    assert retriever.nearest(SAME, image=in_memory)[0][0].image_id == 9001
    # Without the image: question similarity over the question part alone, and the result says so.
    plain = retriever.nearest(SAME)
    assert {e.question for e, _ in plain} == {SAME}
    assert [s for _, s in plain] == pytest.approx([1.0, 1.0, 1.0], abs=1e-5)
    assert retriever(SAME).similarity == "question"


def test_exemplar_answer_first_annotator_or_most_common(clip_index) -> None:
    def answers(which: str) -> set[str]:
        config = RetrievalConfig(index=str(clip_index), n_shot=3, exemplar_answer=which)
        return {e.answer for e in ExemplarRetriever(config)(SAME).blocks[0]}

    assert answers("first") == {"bus", "bike", "kitten"}  # what PICa shows: answers[0]
    assert answers("most_common") == {"car", "bicycle", "cat"}
    assert preset("pica").retrieval.exemplar_answer == "first"
    with pytest.raises(InputError, match="retrieval.exemplar_answer must be one of first, most_common"):
        preset("pica").with_overrides({"retrieval.exemplar_answer": "last"})


def test_eval_records_which_similarity_ranked_the_exemplars(train, clip_index, tmp_path) -> None:
    data = write_dataset(tmp_path / "data")
    base = ["eval", "--preset", "tiny", "--dataset", "vqav2", "--questions", str(data["questions"]),
            "--annotations", str(data["annotations"]), "--captions", str(data["captions"]), "--exemplars",
            str(clip_index), "--n-shot", "2", "--prompt-style", "pica", "--limit", "2", "--no-cache", "--no-progress"]
    for extra, similarity in [(["--images", str(data["images"])], "question+image"), ([], "question")]:
        out = tmp_path / similarity
        result = CliRunner().invoke(main, [*base, "--out", str(out), *extra])
        assert result.exit_code == 0, result.output
        records = read_predictions(out / "predictions.jsonl").values()
        assert len(records) == 2 and {r["similarity"] for r in records} == {similarity}
        run = json.loads((out / "config.json").read_text())
        assert run["retrieval"]["similarity"] == similarity
        assert run["retrieval"]["index"]["image_embedding_model"] == "tiny:clip"


def test_ask_takes_an_exemplar_index(train, clip_index) -> None:
    """`ask --exemplars DIR`, as the pica preset's message says: retrieved exemplars, the image ranking them."""
    def ask(*extra: str) -> dict:
        result = CliRunner().invoke(main, ["ask", "--preset", "tiny", "-q", SAME, "--exemplars", str(clip_index),
                                           "--prompt-style", "pica", "--json", *extra])
        assert result.exit_code == 0, result.output
        return json.loads(result.output)

    with_image = ask("--image", str(image_path(train, 9001)))
    assert with_image["retrieval_similarity"] == "question+image"
    # tiny's n_shot is 2; the image's own training example comes first (see the ranking test above).
    assert [e["question"] for e in with_image["exemplars"]] == [SAME, SAME]
    assert with_image["exemplars"][0]["answer"] == "cat"
    assert ask("-c", "a cat on a sofa")["retrieval_similarity"] == "question"


@pytest.mark.parametrize(
    "extra,message",
    [
        (["--images", "IMAGES"], "--images needs an image embedding model"),
        (["--image-embedding-model", "tiny:clip"], "give their folder with --images"),
        (["--preset", "pica", "--images", "IMAGES"], "could not load the embedding model 'sentence-transformers/clip"),
        (["--images", "EMPTY", "--image-embedding-model", "tiny:clip"], "3 training images have no file"),
    ],
)
def test_index_errors_are_clear(train, tmp_path, extra, message) -> None:
    (tmp_path / "empty").mkdir()
    folders = {"IMAGES": str(train["images"]), "EMPTY": str(tmp_path / "empty")}
    result = CliRunner().invoke(main, index_args(train, tmp_path / "index", *[folders.get(a, a) for a in extra]))
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_offline_hub_clip_fails_with_the_products_message() -> None:
    with pytest.raises(ModelLoadError, match="--image-embedding-model /path/to/model"):
        load_encoder("clip-ViT-B-32", option="--image-embedding-model")


def test_index_reads_images_with_its_presets_exif_setting_and_queries_alike(train, clip_index, tmp_path) -> None:
    # The offline preset (clip_index's) turns photos upright by their EXIF tag; pica, as PICa's CLIP features,
    # reads the stored pixels. A query's image is read as the index's images were.
    assert json.loads((clip_index / "meta.json").read_text())["exif_orientation"] is True
    out = tmp_path / "pica"
    result = CliRunner().invoke(main, index_args(train, out, "--preset", "pica", "--images", str(train["images"]),
                                                 "--embedding-model", "tiny:clip", "--image-embedding-model", "tiny:clip"))
    assert result.exit_code == 0, result.output
    assert json.loads((out / "meta.json").read_text())["exif_orientation"] is False
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees
    phone = tmp_path / "phone.jpg"
    load_image(image_path(train, 42), exif_orientation=False).save(phone, exif=exif)
    clip = load_encoder("tiny:clip")
    stored, upright = (unit(clip.encode([load_image(phone, exif_orientation=on)]))[0] for on in (False, True))
    assert not np.allclose(stored, upright, atol=1e-3)
    for index, expected in [(out, stored), (clip_index, upright)]:
        vector = ExemplarRetriever(RetrievalConfig(index=str(index)))._image_vector(phone)
        np.testing.assert_allclose(vector[0], expected, atol=1e-5)


def test_index_of_an_older_format_is_refused(clip_index, tmp_path) -> None:
    old = tmp_path / "old"
    old.mkdir()
    for name in ("index.faiss", "examples.jsonl"):
        (old / name).write_bytes((clip_index / name).read_bytes())
    meta = json.loads((clip_index / "meta.json").read_text())
    del meta["format"]
    (old / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(InputError, match="older zsvqa; rebuild it"):
        ExemplarRetriever(RetrievalConfig(index=str(old)))


def test_pica_prompt_is_the_reference_format_byte_for_byte() -> None:
    # Written out by hand from PICa's sample_inference: the header line, then per example "Context: %s\n===\n"
    # and "Q: %s\nA: %s\n\n===\n", then the test "Context: %s\n===\n" and "Q: %s\nA:". PICa's best setting joins
    # the VinVL caption and its tags as caption + ". " + tags, the tags joined by ", ".
    expected = (
        "Please answer the question according to the above context.\n===\n"
        "Context: A dog lying on a bed.\n===\n"
        "Q: What breed is this dog?\nA: pug\n\n===\n"
        "Context: two men playing frisbee in a park\n===\n"
        "Q: What sport is this?\nA: frisbee\n\n===\n"
        "Context: a red double decker bus on a street. bus, street, person, sky\n===\n"
        "Q: Which country is this bus from?\nA:"
    )
    exemplars = [
        QAExemplar("What breed is this dog?", "pug", "A dog lying on a bed."),
        QAExemplar("What sport is this?", "frisbee", "two men playing frisbee in a park"),
    ]
    captions = ["a red double decker bus on a street", "bus, street, person, sky"]
    config = PromptConfig(style="pica", num_captions=2)
    assert PromptBuilder(config)("Which country is this bus from?", captions, exemplars).text == expected
    no_shots = "Please answer the question according to the above context.\n===\nContext: a cat\n===\nQ: Why?\nA:"
    assert PromptBuilder(config)("Why?", ["a cat"], []).text == no_shots


def test_exemplar_contexts_keep_the_training_caption_as_written_unless_cleaned(train) -> None:
    from zsvqa.datasets import read_questions
    from zsvqa.retrieval import training_examples

    # PICa shows a COCO training caption unchanged ("Context: %s"): capitals and final period kept.
    coco = {image_id: ["  A red  bus on a street. ", "a bus"] for image_id in IMAGE_IDS + list(SAME_ANSWERS)}
    examples = training_examples(read_questions(str(train["questions"]), str(train["annotations"])), coco)
    assert {e.caption for e in examples} == {"A red bus on a street."}
    assert examples[0].embedding_text(True) == f"{examples[0].question} a red bus on a street"
    exemplar = QAExemplar("What is this?", "bus", examples[0].caption)
    pica = PromptBuilder(preset("pica").prompt)("Why?", ["a cat"], [exemplar]).text
    assert "Context: A red bus on a street.\n===\nQ: What is this?" in pica
    cleaned = PromptBuilder(PromptConfig(style="pica", clean_captions=True))("Why?", ["a cat"], [exemplar]).text
    assert "Context: a red bus on a street\n===\nQ: What is this?" in cleaned


def test_pica_preset_is_the_papers_best_setting() -> None:
    config = preset("pica")
    retrieval = config.retrieval
    assert (retrieval.n_shot, retrieval.n_ensemble, retrieval.exemplar_answer) == (16, 5, "first")
    assert retrieval.embedding_model == retrieval.image_embedding_model == "sentence-transformers/clip-ViT-B-16"
    assert (config.prompt.style, config.prompt.exemplars, config.prompt.num_captions) == ("pica", "retrieved", 1)
    assert config.answerer.max_new_tokens == 5 and config.prompt.num_exemplars >= retrieval.n_shot


def test_pica_ensemble_prompts_are_answered_in_one_batch(train, clip_index, monkeypatch) -> None:
    from conftest import CAPTIONS, spy_generate
    from zsvqa.pipeline import Pipeline, QuestionCaptions

    config = preset("tiny").with_overrides({
        "prompt.exemplars": "retrieved", "prompt.style": "pica", "retrieval.index": str(clip_index),
        "retrieval.n_shot": "2", "retrieval.n_ensemble": "2",
    })
    items = [QuestionCaptions(q, CAPTIONS) for q in ("What color is the bus?", "How many people are there?")]
    image = image_path(train, IMAGE_IDS[0])
    single = Pipeline(config).answer_captioned_many(items, image=image)
    batched_pipeline = Pipeline(config.with_overrides({"answerer.batch_size": "4"}))
    calls = spy_generate(monkeypatch, batched_pipeline.lm)
    batched = batched_pipeline.answer_captioned_many(items, image=image)
    # Two questions x two exemplar blocks: four prompts in batches (by shared head), each question's best kept.
    rows = [call["input_ids"].shape[0] for call in calls]
    assert sum(rows) == 4 and len(rows) < 4
    for one, many in zip(single, batched):
        assert (one.answer, one.prompt, one.exemplars) == (many.answer, many.prompt, many.exemplars)
        assert many.logprob == pytest.approx(one.logprob, abs=1e-4)
