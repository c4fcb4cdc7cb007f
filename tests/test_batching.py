"""Batched answering: prompts of different lengths generated together, left-padded, give what one at a time gives."""

import functools
import math

import pytest
import torch

from conftest import CAPTIONS, spy_generate
from zsvqa import language_model
from zsvqa.answering import Answerer, AnswerRequest
from zsvqa.language_model import FrozenLM
from zsvqa.cache import IntermediateCache
from zsvqa.candidates import AnswerCandidateExtractor
from zsvqa.config import AnswererConfig, CandidateConfig, QuestionGenConfig, preset
from zsvqa.errors import InputError
from zsvqa.pipeline import Pipeline, QuestionCaptions
from zsvqa.prompting import Prompt
from zsvqa.question_generation import QuestionGenerator, SyntheticQA

PROMPTS = [
    "Context: a man riding a red bicycle.\nQuestion: what is he riding?\nAnswer:",
    "Q: color?\nA:",
    "Context: a cyclist wearing a helmet rides past a bus on a long and busy city street at noon.\nQuestion: "
    "what is behind the cyclist?\nAnswer:",
    "Question: is it sunny?\nAnswer:",
    "Answer:",
]


def _prompt(text: str) -> Prompt:
    return Prompt(text=text, passages=[text], captions=[], exemplars=[])


def _check_equal(one, many) -> None:
    for single, batched in zip(one, many):
        assert batched.text == single.text and batched.raw_text == single.raw_text
        assert batched.logprob == pytest.approx(single.logprob, abs=1e-4) or batched.logprob == single.logprob == -math.inf


@pytest.mark.parametrize("batch_size", [2, 3, 8])
def test_batched_generation_equals_one_at_a_time_on_the_tiny_lm(batch_size) -> None:
    lm = FrozenLM(AnswererConfig(model="tiny:causal-lm", max_new_tokens=5))
    requests = [AnswerRequest(_prompt(text)) for text in PROMPTS]
    one = Answerer(lm).answer_many(requests)
    assert [a.raw_text for a in one] == [lm.generate_one(text).text for text in PROMPTS]
    many = Answerer(lm, batch_size=batch_size).answer_many(requests)
    assert len({len(lm.tokenizer(text).input_ids) for text in PROMPTS}) > 1  # padding really happens
    _check_equal(one, many)


def test_batched_seq2seq_equals_one_at_a_time() -> None:
    lm = FrozenLM(AnswererConfig(model="tiny:t5", kind="seq2seq", max_new_tokens=5))
    requests = [AnswerRequest(_prompt(text)) for text in PROMPTS]
    _check_equal(Answerer(lm).answer_many(requests), Answerer(lm, batch_size=4).answer_many(requests))


def test_pipeline_batch_gives_the_same_results_and_keeps_bad_questions_apart() -> None:
    config = preset("tiny")
    questions = ["What is the man riding?", "Is there a bus?", "", "How many cars are there?"]

    items = [QuestionCaptions(q, CAPTIONS) for q in questions]
    single = Pipeline(config).answer_captioned_many(items)
    batched = Pipeline(config.with_overrides({"answerer.batch_size": "4"})).answer_captioned_many(items)
    assert isinstance(single[2], InputError) and isinstance(batched[2], InputError)
    for one, many in zip(single[:2] + single[3:], batched[:2] + batched[3:]):
        assert (one.answer, one.prompt) == (many.answer, many.prompt)
        assert many.logprob == pytest.approx(one.logprob, abs=1e-4)
    assert Pipeline(config).answer(questions[0], CAPTIONS).answer == single[0].answer


# Each prompt's answers, some of several tokens (their later tokens are scored over the copied prompt cache).
CONTINUATIONS = [[" yes\n", " no\n"], [" red\n", " a long answer\n"], [" 2\n", " two\n", " 10\n"], [" x\n"],
                 [" y\n", " zz top\n"]]


# An image's prompts: the same head (instructions, captions, exemplars), then each question.
HEAD = "Context: a man riding a red bicycle down a city street. A dog runs beside him.\n"
SHARED_HEAD = [HEAD + q for q in ("Question: what is he riding?\nAnswer:", "Question: is it?\nAnswer:",
                                  "Question: what color is the long bicycle there?\nAnswer:")]


def check_batched_equals_one_by_one(lm: FrozenLM, tolerance: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scoring and generating several prompts at once give what one prompt at a time gives."""
    one = [lm.score(prompt, continuations) for prompt, continuations in zip(PROMPTS, CONTINUATIONS)]
    many = lm.score_many(PROMPTS, CONTINUATIONS)
    assert [len(s) for s in many] == [len(c) for c in CONTINUATIONS]
    for single, batched in zip(one, many):
        assert batched == pytest.approx(single, abs=tolerance)
    # Not vacuous: the rows were padded, and the answers' scores differ from one another.
    assert len({len(lm.tokenizer(p).input_ids) for p in PROMPTS}) > 1 and len({round(v, 3) for v in one[1]}) == 2
    monkeypatch.setattr(language_model, "SCORED_ROWS", 2)  # the continuations in several passes: the same scores
    for single, batched in zip(one, lm.score_many(PROMPTS, CONTINUATIONS)):
        assert batched == pytest.approx(single, abs=tolerance)

    # Prompts with one head: it is encoded once, then only the questions' tails, batched.
    scored = [lm.score(prompt, continuations, len(HEAD)) for prompt, continuations in zip(SHARED_HEAD, CONTINUATIONS)]
    generated = [lm.generate_one(prompt, len(HEAD)) for prompt in SHARED_HEAD]
    widths: list[int] = []
    real = lm.model.forward

    @functools.wraps(real)  # generate reads forward's signature (it makes position ids only if forward takes them)
    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        widths.append(kwargs["input_ids"].shape[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(lm.model, "forward", recording)
    lm._head = None  # the head's cache is made in this call
    for single, batched in zip(scored, lm.score_many(SHARED_HEAD, CONTINUATIONS[:3], len(HEAD))):
        assert batched == pytest.approx(single, abs=tolerance)
    head_tokens = len(lm._shared_head(HEAD, lm.tokenizer(SHARED_HEAD).input_ids))
    longest = max(len(lm.tokenizer(p).input_ids) for p in SHARED_HEAD)
    assert head_tokens > 10 and widths[:2] == [head_tokens, longest - head_tokens]
    widths.clear()
    for single, batched in zip(generated, lm.generate(SHARED_HEAD, None, len(HEAD))):
        assert batched.text == single.text and batched.logprob == pytest.approx(single.logprob, abs=tolerance)
    assert widths[0] == longest - head_tokens  # the head's cache was reused: only the tails were encoded

    # Where padding after the head could push keys out of a sliding attention window, whole prompts are padded.
    monkeypatch.setattr(lm, "_sliding_window", longest - 1)
    widths.clear()
    for single, batched in zip(scored, lm.score_many(SHARED_HEAD, CONTINUATIONS[:3], len(HEAD))):
        assert batched == pytest.approx(single, abs=tolerance)
    assert widths[0] == longest


def test_prompts_batched_equal_prompts_one_by_one(monkeypatch) -> None:
    check_batched_equals_one_by_one(FrozenLM(AnswererConfig(model="tiny:causal-lm", max_new_tokens=5)), 1e-4, monkeypatch)


def test_a_sliding_window_model_scores_long_prompts_in_batches_as_one_by_one(tmp_path) -> None:
    # Gemma 3's local layers see 8 tokens here: padding after a shared head would shift the head out of their
    # window, so long prompts go whole, left-padded (the padding before every real token changes nothing).
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig

    from zsvqa.tiny import build

    tokenizer = AutoTokenizer.from_pretrained(build("causal-lm"))
    config = Gemma3TextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, sliding_window=8, layer_types=["sliding_attention", "full_attention"],
        pad_token_id=tokenizer.pad_token_id, bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
    )
    torch.manual_seed(0)
    Gemma3ForCausalLM(config).save_pretrained(tmp_path / "gemma")
    tokenizer.save_pretrained(tmp_path / "gemma")
    lm = FrozenLM(AnswererConfig(model=str(tmp_path / "gemma"), max_new_tokens=3))
    assert lm._sliding_window == 8
    one = [lm.score(prompt, continuations, len(HEAD)) for prompt, continuations in zip(SHARED_HEAD, CONTINUATIONS)]
    for single, batched in zip(one, lm.score_many(SHARED_HEAD, CONTINUATIONS[:3], len(HEAD))):
        assert batched == pytest.approx(single, abs=1e-4)
    lm._sliding_window = math.inf  # not vacuous: with the padding after the head, the padded rows' scores move
    shifted = lm.score_many(SHARED_HEAD, CONTINUATIONS[:3], len(HEAD))
    assert max(abs(a - b) for single, batched in zip(one, shifted) for a, b in zip(single, batched)) > 1e-3
    lm._sliding_window = 8
    generated = [lm.generate_one(prompt, len(HEAD)) for prompt in SHARED_HEAD]
    for single, batched in zip(generated, lm.generate(SHARED_HEAD, None, len(HEAD))):
        assert batched.text == single.text and batched.logprob == pytest.approx(single.logprob, abs=1e-4)


def test_batches_group_prompts_by_shared_head() -> None:
    def prompt(head: str, question: str) -> Prompt:
        return Prompt(text=head + question, passages=[], captions=[], exemplars=[], shared_prefix=len(head))

    prompts = [prompt("image one\n", "a long question?"), prompt("lone head\n", "q?"), prompt("image one\n", "q?"),
               prompt("image one\n", "another?"), prompt("other lone\n", "question?"), prompt("", "no head?")]
    answerer = Answerer(FrozenLM(AnswererConfig(model="tiny:causal-lm")), batch_size=2)
    # Image one's three prompts share a head: shortest first, two then one, the head reused; the prompts whose
    # head no other shares go together without one.
    assert answerer._batches(prompts) == [([2, 3], len("image one\n")), ([0], len("image one\n")), ([5, 1], 0), ([4], 0)]


@pytest.mark.parametrize("selection", ["score", "calibrated"])
def test_scored_answers_in_batches_equal_one_at_a_time(selection: str) -> None:
    config = preset("tiny").with_overrides({"answerer.selection": selection})
    questions = ["Is there a bus?", "How many cars are there?", "What color is the bike?", "What is he riding?",
                 "Are the cars parked?"]
    items = [QuestionCaptions(q, CAPTIONS) for q in questions]
    single = Pipeline(config).answer_captioned_many(items)
    batched = Pipeline(config.with_overrides({"answerer.batch_size": "3"})).answer_captioned_many(items)
    for one, many in zip(single, batched):
        assert (one.answer, one.prompt) == (many.answer, many.prompt)
        assert list(many.choice_scores) == list(one.choice_scores)  # the same ranking
        assert list(many.choice_scores.values()) == pytest.approx(list(one.choice_scores.values()), abs=1e-4)
    assert all(r.choice_scores for r in single)  # every question here has a closed answer set


def test_batch_size_is_validated() -> None:
    with pytest.raises(InputError, match="answerer.batch_size must be at least 1; got 0"):
        preset("tiny").with_overrides({"answerer.batch_size": "0"})


@pytest.mark.slow
def test_batched_generation_and_scoring_equal_one_at_a_time_on_gemma(monkeypatch) -> None:
    lm = Pipeline.from_preset("offline").lm
    requests = [AnswerRequest(_prompt(text)) for text in PROMPTS[:3]]
    _check_equal(Answerer(lm).answer_many(requests), Answerer(lm, batch_size=3).answer_many(requests))
    check_batched_equals_one_by_one(lm, 2e-3, monkeypatch)


def test_eval_batches_across_images_with_the_same_results(tmp_path, monkeypatch) -> None:
    from synthetic_data import write_dataset
    from zsvqa.datasets import load_dataset
    from zsvqa.evaluation import Evaluator, _chunks

    data = write_dataset(tmp_path / "data")
    dataset = load_dataset("vqav2", data["questions"], data["annotations"], data["images"])
    groups = list(dataset.by_image().items())  # 3, 2 and 1 questions
    assert [[len(g[1]) for g in chunk] for chunk in _chunks(groups, 4)] == [[3, 2], [1]]
    assert [[len(g[1]) for g in chunk] for chunk in _chunks(groups, 1)] == [[3], [2], [1]]
    config = preset("tiny")
    single = Evaluator(Pipeline(config), dataset, tmp_path / "one").run(progress=False)
    pipeline = Pipeline(config.with_overrides({"answerer.batch_size": "4"}))
    sizes = []
    original = pipeline.answer_captioned_many
    monkeypatch.setattr(pipeline, "answer_captioned_many", lambda items, **kw: sizes.append(len(items)) or original(items, **kw))
    batched = Evaluator(pipeline, dataset, tmp_path / "four").run(progress=False)
    assert sizes == [5, 1] and single.answered == batched.answered == 6
    assert (tmp_path / "one" / "results.json").read_bytes() == (tmp_path / "four" / "results.json").read_bytes()


# Caption sets of different lengths (Img2LLM's T5 reads all of a set's captions), one of them empty.
CAPTION_SETS = [CAPTIONS, CAPTIONS[:2], [CAPTIONS[3]], ["two dogs playing with a ball on the grass"], []]


def test_question_generation_across_caption_sets_equals_one_set_at_a_time(monkeypatch) -> None:
    config = QuestionGenConfig(backend="t5", model="tiny:t5", max_new_tokens=8, context="all", batch_size=8)
    generator = QuestionGenerator(config)
    extractor = AnswerCandidateExtractor(CandidateConfig())
    sets = [(extractor(captions), captions) for captions in CAPTION_SETS]
    calls = spy_generate(monkeypatch, generator.backend)
    together = generator.many(sets)
    batched_calls = len(calls)
    alone = [generator(candidates, captions) for candidates, captions in sets]
    assert together == alone
    assert together[-1] == SyntheticQA([])
    rows = [call["input_ids"].shape[0] for call in calls]
    assert sum(rows[:batched_calls]) == sum(rows[batched_calls:])  # the same questions asked
    assert set(rows[: batched_calls - 1]) == {8} and batched_calls < len(calls) - batched_calls  # full batches
    # Shortest inputs first: a batch pads to about its own length, not to the longest set's.
    widths = [call["input_ids"].shape[1] for call in calls[:batched_calls]]
    assert widths == sorted(widths) and widths[0] < widths[-1]


def test_a_batch_of_questions_generates_their_synthetic_questions_at_once(monkeypatch, tmp_path) -> None:
    config = preset("tiny").with_overrides({
        "question_gen.backend": "t5", "question_gen.context": "all", "question_gen.batch_size": "8",
    })
    items = [QuestionCaptions(f"what is in picture {i}?", captions) for i, captions in enumerate(CAPTION_SETS[:4])]
    items += [QuestionCaptions("", CAPTIONS), QuestionCaptions("is it the same?", CAPTIONS),
              QuestionCaptions("what is there?", [" ", ""])]
    alone = Pipeline(config)
    expected = [alone.answer_captioned(item) for item in items[:4] + items[5:6]]

    cache = IntermediateCache(tmp_path / "cache.sqlite")
    pipeline = Pipeline(config, cache)
    calls = spy_generate(monkeypatch, pipeline.question_generator.backend)
    results = pipeline.answer_captioned_many(items)
    assert isinstance(results[4], InputError) and "no captions for the question 'what is there?'" in str(results[6])
    kept = results[:4] + results[5:6]
    assert [(r.answer, r.prompt) for r in kept] == [(r.answer, r.prompt) for r in expected]
    rows = [call["input_ids"].shape[0] for call in calls]
    assert set(rows[:-1]) == {8}  # the four distinct caption sets' questions in full batches of 8
    assert all(r.timings["question_generation"] > 0 for r in kept[:4])
    assert "question_generation" not in kept[4].timings  # the same captions as the first: made once

    # A rerun reads every set from the disk cache and generates nothing.
    rerun = Pipeline(config, cache)
    calls = spy_generate(monkeypatch, rerun.question_generator.backend)
    again = rerun.answer_captioned_many(items)
    assert calls == [] and [r.prompt for r in again[:4] + again[5:6]] == [r.prompt for r in kept]
    assert all("question_generation" in r.cached and r.timings["question_generation"] == 0.0 for r in again[:4])
    # A set read from the disk is then kept in memory: the next question with those captions reads neither.
    memory = rerun.answer_captioned_many([QuestionCaptions("and now?", CAPTIONS)])[0]
    assert "question_generation" not in memory.cached and "question_generation" not in memory.timings
