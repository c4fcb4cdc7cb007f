"""Answer selection (free generation, closed-set scoring, calibration), caption hygiene, raw answers, and the
T5 question generator's input format. Tiny random models: mechanics and equivalence only."""

import math

import pytest
import torch

from conftest import CAPTIONS
from zsvqa.answering import Answerer, answer_choices, question_kind
from zsvqa.language_model import FrozenLM, Generation
from zsvqa.candidates import AnswerCandidate
from zsvqa.config import AnswererConfig, PromptConfig, QuestionGenConfig
from zsvqa.errors import InputError
from zsvqa.normalize import clean_answer, clean_caption
from zsvqa.pipeline import Pipeline
from zsvqa.prompting import Prompt, PromptBuilder, QAExemplar
from zsvqa.question_generation import QuestionGenerator


@pytest.fixture(scope="module")
def causal() -> FrozenLM:
    return FrozenLM(AnswererConfig(model="tiny:causal-lm", max_new_tokens=5))


def full_forward_loglikelihood(lm: FrozenLM, prompt: str, continuation: str) -> float:
    """The reference: one forward pass over prompt + continuation, no cache, no batching."""
    prompt_ids = lm.tokenizer(prompt).input_ids
    piece = lm.tokenizer(continuation, add_special_tokens=False).input_ids
    ids = torch.tensor([prompt_ids + piece])
    with torch.no_grad():
        logprobs = lm.model(input_ids=ids).logits[0].float().log_softmax(-1)
    return sum(logprobs[len(prompt_ids) + i - 1, token].item() for i, token in enumerate(piece))


def test_cached_batched_scores_equal_full_forward(causal: FrozenLM) -> None:
    prompt = "Contexts: a man riding a red bicycle.\nQuestion: what is he riding?\nAnswer:"
    continuations = [" bicycle\n", " red bicycle\n", " no\n", " a very long answer indeed\n"]
    scores = causal.score(prompt, continuations)
    expected = [full_forward_loglikelihood(causal, prompt, c) for c in continuations]
    torch.testing.assert_close(torch.tensor(scores), torch.tensor(expected), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("question,kind", [
    ("Is there a dog?", "yesno"), ("are the cars parked", "yesno"), ("Does it rain?", "yesno"),
    ("How many dogs are there?", "number"), ("What color is the bus?", "color"),
    ("What is the man holding?", "open"), ("Where is the cat?", "open"), ("", "open"),
    ("Is this a cat or a dog?", "choice"), ("is the man standing or sitting", "choice"), ("Is it day or night?", "choice"),
    ("Is it on the left or?", "yesno"), ("Or is it?", "open"),
    ("Which color is the car, red or blue?", "choice"), ("Which color is the car?", "color"),
    ("What is the man holding or carrying?", "open"),
])
def test_question_kinds(question: str, kind: str) -> None:
    assert question_kind(question) == kind


def test_answer_choices_by_kind() -> None:
    assert answer_choices("is it red?", ["red", "yes", "no"]) == {"yes": ["yes"], "no": ["no"]}
    numbers = answer_choices("how many dogs?", [])
    assert list(numbers) == [str(n) for n in range(11)] and numbers["2"] == ["2", "two"] and numbers["0"] == ["0", "zero"]
    assert "red" in answer_choices("what color is the bus?", []) and "bus" not in answer_choices("what color?", ["bus"])
    # Colour questions choose among the colours the captions name, where they name any.
    assert list(answer_choices("what color is the bus?", ["red bus", "street", "blue", "bus"])) == ["red", "blue"]
    assert len(answer_choices("what color is the bus?", ["bus", "street"])) > 10
    assert answer_choices("what is he riding?", ["bicycle", "man", "bicycle", "yes", "no"]) == {
        "bicycle": ["bicycle"], "man": ["man"]
    }
    assert answer_choices("what is he riding?", []) == {}
    # Either-or questions choose between the two they name; the captions' candidates are not offered.
    assert answer_choices("Is this a cat or a dog?", ["cat", "bed"]) == {"cat": ["cat"], "dog": ["dog"]}
    assert answer_choices("is the man standing or sitting", []) == {"standing": ["standing"], "sitting": ["sitting"]}
    assert list(answer_choices("Which color is the car, red or blue?", ["car", "red"])) == ["red", "blue"]
    assert list(answer_choices("What is on the car, left?", ["car", "cup"])) == ["cup"]  # "car," is the car
    # The question's own words are never its answer; a phrase with one new word stays.
    assert list(answer_choices("What is the man riding?", ["man", "bicycle", "man riding", "red man"])) == [
        "bicycle", "red man"
    ]
    # A colour is dropped from an object answer only where the bare object is offered too.
    riding = answer_choices("what is he riding?", ["red bicycle", "bicycle", "black triangle", "hot dog", "dog"])
    assert list(riding) == ["bicycle", "black triangle", "hot dog", "dog"]
    # A bare colour answers only a question that speaks of colour; a colour that names a thing stays.
    assert list(answer_choices("What is the man riding?", ["red", "bicycle", "orange"])) == ["bicycle", "orange"]
    assert "red" in answer_choices("What colour does the hydrant have?", ["hydrant", "red"])




class ScriptedLM:
    """Stands in for FrozenLM.score: a fixed log-likelihood per (prompt kind, continuation)."""

    def __init__(self, table: dict[tuple[str, str], float]) -> None:
        self.table = table
        self.calls: list[str] = []

    def score(self, prompt: str, continuations: list[str], shared_prefix: int = 0) -> list[float]:
        self.calls.append(prompt)
        kind = "free" if "N/A" in prompt else "image"
        return [self.table[(kind, c)] for c in continuations]


def test_scoring_and_calibration_pick_by_hand_worked_numbers() -> None:
    # With the captions, "yes" is likelier (0.6 vs 0.4); but the question alone already gives "yes" 0.8.
    # Calibrated: yes 0.6/0.8 = 0.75 against no 0.4/0.2 = 2.0, so "no".
    table = {("image", " yes\n"): math.log(0.6), ("image", " no\n"): math.log(0.4),
             ("free", " yes\n"): math.log(0.8), ("free", " no\n"): math.log(0.2)}
    prompt = Prompt("Contexts: a black circle.\nQuestion: is there a rectangle?\nAnswer:", [], [], [])
    content_free = Prompt("Contexts: N/A.\nQuestion: is there a rectangle?\nAnswer:", [], [], [])
    scored = Answerer(ScriptedLM(table), "score")(prompt, "is there a rectangle?", [], content_free)  # type: ignore[arg-type]
    assert scored.text == "yes" and scored.logprob == pytest.approx(math.log(0.6))
    lm = ScriptedLM(table)
    calibrated = Answerer(lm, "calibrated")(prompt, "is there a rectangle?", [], content_free)  # type: ignore[arg-type]
    assert calibrated.text == "no" and list(calibrated.choice_scores) == ["no", "yes"]
    assert calibrated.choice_scores["no"] == pytest.approx(math.log(0.4 / 0.2))
    assert len(lm.calls) == 2 and "N/A" in lm.calls[1]


def test_number_forms_share_probability() -> None:
    # "2" (0.2) and "two" (0.3) are one answer: 0.5 beats "3" at 0.4.
    written = {" 2\n": 0.2, " two\n": 0.3, " 3\n": 0.4, " three\n": 1e-9}

    class Numbers:
        def score(self, prompt: str, continuations: list[str], shared_prefix: int = 0) -> list[float]:
            return [math.log(written.get(c, 1e-12)) for c in continuations]

    answer = Answerer(Numbers(), "score")(Prompt("p", [], [], []), "how many dogs?", [])  # type: ignore[arg-type]
    assert answer.text == "2" and answer.logprob == pytest.approx(math.log(0.5))


def test_scoring_continues_the_template_format(causal: FrozenLM) -> None:
    for template, prefix in (("img2llm", ""), ("img2llm_readable", " ")):
        prompt = PromptBuilder(PromptConfig(template=template))("is it red?", CAPTIONS[:1])
        answer = Answerer(causal, "score")(prompt, "is it red?", [])
        expected = {a: causal.score(prompt.text, [f"{prefix}{a}\n"])[0] for a in ("yes", "no")}
        assert answer.choice_scores == pytest.approx(expected)


def test_open_question_without_candidates_falls_back_to_generation(causal: FrozenLM) -> None:
    prompt = PromptBuilder(PromptConfig())("what is it?", CAPTIONS[:1])
    scored = Answerer(causal, "score")(prompt, "what is it?", [])
    generated = Answerer(causal, "generate")(prompt, "what is it?", [])
    assert scored == generated and scored.choice_scores is None


def test_generated_answer_competes_with_the_candidates(causal: FrozenLM) -> None:
    prompt = PromptBuilder(PromptConfig())("what is it?", CAPTIONS[:1])
    generated = Answerer(causal, "generate")(prompt, "what is it?", []).text
    assert generated  # the tiny model writes something here, so the test below is not vacuous
    hybrid = Answerer(causal, "score", generated_choice=True)(prompt, "what is it?", ["bicycle", "street"])
    expected = {a: causal.score(prompt.text, [f"{prompt.answer_prefix}{a}\n"])[0] for a in ("bicycle", "street", generated)}
    assert hybrid.choice_scores == pytest.approx(expected)
    assert hybrid.text == max(expected, key=expected.get)
    # Closed questions keep their closed set.
    assert set(Answerer(causal, "score", generated_choice=True)(prompt, "is it red?", []).choice_scores) == {"yes", "no"}


def test_scoring_needs_a_causal_answerer() -> None:
    from zsvqa.config import preset

    with pytest.raises(InputError, match="ranks answers by a causal LM.s likelihood; answerer.kind .fid. needs answerer.selection=generate"):
        preset("pnp-vqa").with_overrides({"answerer.selection": "score"})


@pytest.mark.parametrize("raw,expected", [
    ("  A man riding a bike.  ", "a man riding a bike"),
    ("A dog  on\ta couch . ", "a dog on a couch"),
    ("Two cats!", "two cats"),
    ("", ""),
])
def test_caption_hygiene(raw: str, expected: str) -> None:
    assert clean_caption(raw) == expected


def test_captions_are_cleaned_where_they_enter_the_pipeline_in_the_offline_preset_only() -> None:
    from zsvqa.config import PRESETS, preset

    assert [name for name in PRESETS if preset(name).prompt.clean_captions] == ["offline"]
    captions = ["A black circle. ", "  a   red square."]
    settings = {"prompt.template": "img2llm_readable", "prompt.clean_captions": "true"}
    result = Pipeline.from_preset("tiny", settings).answer("What shape is it?", captions)
    assert result.all_captions == ["a black circle", "a red square"]
    assert "Contexts: A black circle. A red square.\n" in result.prompt and ".." not in result.prompt
    assert all(".?" not in e.question for e in result.exemplars)
    # Off (the paper presets): whitespace tidied, the captions otherwise as written, as the references show them.
    as_written = Pipeline.from_preset("tiny", {"prompt.template": "img2llm_readable"}).answer("What shape?", captions)
    assert as_written.all_captions == ["A black circle.", "a red square."]
    assert "Contexts: A black circle.. A red square..\n" in as_written.prompt


@pytest.mark.parametrize("raw,expected", [
    ("T-shirt.", "t-shirt"),  # kept as written: normalizing to "t shirt" scores 0 when annotators agree
    ("Two. There are two", "two"),
    ("It is a frisbee.", "frisbee"),  # a leading article goes: annotators write none
    ("red, since the sky", "red"),
])
def test_answers_are_not_pre_normalized(raw: str, expected: str) -> None:
    assert clean_answer(raw) == expected


def test_t5_input_format_and_context() -> None:
    candidates = [AnswerCandidate("bike", "noun", 1, [1])]
    for context, expected_context in (("mention", CAPTIONS[1]), ("all", ". ".join(CAPTIONS))):
        config = QuestionGenConfig(backend="t5", model="tiny:t5", max_new_tokens=4, context=context)
        generator = QuestionGenerator(config)
        seen: list[str] = []
        tokenizer = generator.backend.tokenizer  # type: ignore[union-attr]

        def spy(texts, **kwargs):  # type: ignore[no-untyped-def]
            seen.extend(texts)
            return tokenizer.__class__.__call__(tokenizer, texts, **kwargs)

        generator.backend.tokenizer = type("Spy", (), {"__call__": lambda self, t, **k: spy(t, **k),  # type: ignore[union-attr]
                                                        "pad": lambda self, *a, **k: tokenizer.pad(*a, **k),
                                                        "batch_decode": tokenizer.batch_decode})()
        generator(candidates, CAPTIONS)
        # The candidate, then "yes" with the first caption; only "yes" of the yes/no pair is generated.
        assert seen[0] == f"answer: bike  context: {expected_context}."
        yes_context = CAPTIONS[0] if context == "mention" else ". ".join(CAPTIONS)
        assert seen[1] == f"answer: yes  context: {yes_context}." and len(seen) == 2


def test_shared_prefix_is_encoded_once_and_changes_nothing(causal: FrozenLM) -> None:
    builder = PromptBuilder(PromptConfig(template="img2llm_readable"))
    exemplars = [QAExemplar("what is the man riding?", "bicycle")]
    prompts = [builder(q, CAPTIONS, exemplars) for q in ("what color is it?", "is it red?", "how many cars?")]
    assert all(p.text[: p.shared_prefix] == prompts[0].text[: prompts[0].shared_prefix] for p in prompts)
    assert prompts[0].text[prompts[0].shared_prefix :] == "Question: What color is it?\nAnswer:"
    heads = []
    original = causal._head_cache
    causal._head, causal._head_cache = None, lambda head: heads.append(head) or original(head)  # type: ignore[method-assign]
    computed = []
    try:
        for prompt in prompts:
            computed.append(causal._head[1] if causal._head else None)
            assert causal.score(prompt.text, [" red\n", " no\n"], prompt.shared_prefix) == pytest.approx(
                causal.score(prompt.text, [" red\n", " no\n"]), abs=1e-4
            )
            assert causal.generate_one(prompt.text, prompt.shared_prefix).text == causal.generate([prompt.text])[0].text
    finally:
        del causal._head_cache
    assert len(heads) == 6 and len(set(heads)) == 1  # one head for all prompts
    assert computed[1] is computed[2] is causal._head[1]  # computed once, then copied


class GeneratingLM:
    """Stands in for a causal FrozenLM: generates a fixed answer and scores every continuation the same."""

    config = AnswererConfig()

    def __init__(self, generated: str) -> None:
        self.generated = generated

    def generate_one(self, prompt: str, shared_prefix: int = 0) -> Generation:
        return Generation(self.generated, -1.0, 1)

    def score(self, prompt: str, continuations: list[str], shared_prefix: int = 0) -> list[float]:
        return [-1.0] * len(continuations)


def test_a_generated_bare_colour_joins_only_colour_questions() -> None:
    prompt = Prompt("Context: a man riding a red bicycle. Question: q Answer:", [], [], [])
    answerer = Answerer(GeneratingLM("red"), "score", generated_choice=True)  # type: ignore[arg-type]
    assert set(answerer(prompt, "what is the man riding?", ["bicycle"]).choice_scores) == {"bicycle"}
    assert set(answerer(prompt, "what is the colour here?", ["bicycle"]).choice_scores) == {"bicycle", "red"}
    assert set(Answerer(GeneratingLM("bike"), "score", generated_choice=True)(  # type: ignore[arg-type]
        prompt, "what is the man riding?", ["bicycle"]).choice_scores) == {"bicycle", "bike"}
