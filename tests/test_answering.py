"""The answerer and question generator on tiny random T5 / causal models loaded through the product's loader."""

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput

from conftest import CAPTIONS, spy_generate
from zsvqa import question_generation
from zsvqa.answering import Answerer
from zsvqa.language_model import FrozenLM, Generation
from zsvqa.candidates import AnswerCandidate
from zsvqa.config import AnswererConfig, PromptConfig, QuestionGenConfig
from zsvqa.errors import ModelLoadError
from zsvqa.models import resolve
from zsvqa.prompting import PromptBuilder, QAExemplar
from zsvqa.question_generation import QuestionGenerator, SyntheticQA


@pytest.fixture(scope="module")
def fid() -> FrozenLM:
    return FrozenLM(AnswererConfig(model="tiny:t5", kind="fid", max_new_tokens=6))


@pytest.fixture(scope="module")
def causal() -> FrozenLM:
    return FrozenLM(AnswererConfig(model="tiny:causal-lm", max_new_tokens=5))


def test_generation_is_deterministic_with_finite_logprob(causal: FrozenLM) -> None:
    first = causal.generate(["question: what is it? answer:", "a longer prompt with more words in it"])
    second = causal.generate(["question: what is it? answer:", "a longer prompt with more words in it"])
    assert first == second
    assert all(0 < g.num_tokens <= 5 and math.isfinite(g.logprob) and g.logprob < 0 for g in first)


def test_batched_generation_matches_one_at_a_time(causal: FrozenLM) -> None:
    prompts = ["short prompt", "a much longer prompt that needs left padding in a batch"]
    batched = causal.generate(prompts)
    single = [causal.generate([p])[0] for p in prompts]
    assert [g.text for g in batched] == [g.text for g in single]
    assert [g.logprob for g in batched] == pytest.approx([g.logprob for g in single], abs=1e-4)


def test_fid_one_passage_equals_plain_seq2seq(fid: FrozenLM) -> None:
    passage = "what color is the bike? \\n a man riding a red bicycle"
    fused = fid.generate_fused([passage])
    plain = fid.generate([passage])[0]
    assert fused.text == plain.text and fused.logprob == pytest.approx(plain.logprob, abs=1e-5)


FID_PASSAGES = ["q? \\n a short caption", "q? \\n a much longer caption with many more words than the first"]


def encode_alone(lm: FrozenLM, passage: str) -> torch.Tensor:
    """One passage through the encoder on its own (no batch, so no padding): [1, tokens, hidden]."""
    ids = lm.tokenizer(passage, return_tensors="pt").input_ids
    return lm.model.get_encoder()(input_ids=ids).last_hidden_state


def teacher_forced_logprob(lm: FrozenLM, states: torch.Tensor, tokens: list[int]) -> float:
    """Sum of log p(token_t | tokens_<t, states), the decoder run once over [start] + tokens."""
    start = lm.model.config.decoder_start_token_id
    decoder_ids = torch.tensor([[start] + tokens[:-1]])
    logits = lm.model(
        encoder_outputs=BaseModelOutput(last_hidden_state=states),
        attention_mask=torch.ones(states.shape[:2], dtype=torch.long),
        decoder_input_ids=decoder_ids,
    ).logits
    logprobs = logits.float().log_softmax(-1)[0]
    return sum(logprobs[step, token].item() for step, token in enumerate(tokens))


def test_fid_hands_generate_the_concatenated_per_passage_encoder_states(fid: FrozenLM, monkeypatch) -> None:
    calls = spy_generate(monkeypatch, fid)
    generation = fid.generate_fused(FID_PASSAGES)
    (call,) = calls
    # FiD by hand: each passage encoded alone, the states put one after the other along the sequence axis.
    # The batched encoding pads the short passage; its padding must not reach the decoder.
    manual = torch.cat([encode_alone(fid, p) for p in FID_PASSAGES], dim=1)
    assert manual.shape[1] == sum(len(fid.tokenizer(p).input_ids) for p in FID_PASSAGES)
    torch.testing.assert_close(call["encoder_outputs"].last_hidden_state, manual, rtol=1e-5, atol=1e-5)
    assert torch.equal(call["attention_mask"], torch.ones(manual.shape[:2], dtype=torch.long))
    assert "input_ids" not in call  # the decoder reads the fused states, not a re-encoding of some text
    # The reported log-prob is the decoder's own over the kept tokens, recomputed here by teacher forcing.
    tokens = call["output"].sequences[0, 1:].tolist()[: generation.num_tokens]
    assert generation.num_tokens > 0 and generation.text == fid.tokenizer.decode(tokens, skip_special_tokens=True)
    assert generation.logprob == pytest.approx(teacher_forced_logprob(fid, manual, tokens), abs=1e-4)


def test_fid_passage_order_permutes_the_states_and_leaves_the_answer(fid: FrozenLM, monkeypatch) -> None:
    # In FiD the passages are encoded independently and T5's cross-attention has no position bias (only its
    # self-attention has), so swapping two passages swaps their blocks of encoder states and the decoder,
    # attending over a set of states, gives the same distribution at every step.
    calls = spy_generate(monkeypatch, fid)
    forward, backward = fid.generate_fused(FID_PASSAGES), fid.generate_fused(FID_PASSAGES[::-1])
    states = [c["encoder_outputs"].last_hidden_state for c in calls]
    first = len(fid.tokenizer(FID_PASSAGES[0]).input_ids)
    torch.testing.assert_close(states[1], torch.cat([states[0][:, first:], states[0][:, :first]], dim=1))
    assert backward.text == forward.text and backward.num_tokens == forward.num_tokens
    assert backward.logprob == pytest.approx(forward.logprob, abs=1e-4)
    scores = [torch.stack(c["output"].scores, 1).log_softmax(-1) for c in calls]
    torch.testing.assert_close(scores[1], scores[0], rtol=1e-4, atol=1e-4)
    # Not vacuous: other passage content does move the decoder's distribution.
    fid.generate_fused([FID_PASSAGES[0], "q? \\n a dog asleep on a green sofa"])
    other = torch.stack(calls[2]["output"].scores, 1).log_softmax(-1)
    assert (other[0, 0] - scores[0][0, 0]).abs().max() > 1e-2


def test_answerer_reads_passages_under_fid(fid: FrozenLM, monkeypatch) -> None:
    builder = PromptBuilder(PromptConfig(style="unifiedqa", captions_per_passage=1), fid.count_tokens, 512)
    prompt = builder("What is it?", CAPTIONS)
    assert prompt.passages == [f"what is it? \\n {c}." for c in CAPTIONS]
    received: list[list[str]] = []
    real = fid.generate_fused

    def fused(passages, max_new_tokens=None):  # type: ignore[no-untyped-def]
        received.append(list(passages))
        return real(passages, max_new_tokens)

    def text_path(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("the FiD answerer read prompt.text")

    monkeypatch.setattr(fid, "generate_fused", fused)
    monkeypatch.setattr(fid, "generate", text_path)
    monkeypatch.setattr(fid, "generate_one", text_path)
    answer = Answerer(fid)(prompt)
    assert received == [prompt.passages]
    expected = real(prompt.passages)
    assert (answer.raw_text, answer.logprob) == (expected.text, pytest.approx(expected.logprob, abs=1e-6))


def test_t5_question_generation_real_model_runs_and_is_deterministic() -> None:
    # The tiny T5's questions are noise, but every candidate gets one (the stubbed test below checks the content).
    generator = QuestionGenerator(QuestionGenConfig(backend="t5", model="tiny:t5", max_new_tokens=6, batch_size=2))
    candidates = [AnswerCandidate(word, "noun", 1, [i]) for i, word in enumerate(["man", "bike", "helmet"])]
    first = generator(candidates, CAPTIONS)
    assert first == generator(candidates, CAPTIONS)
    assert [(e.answer, e.context) for e in first.pairs] == [(c.text, CAPTIONS[i]) for i, c in enumerate(candidates)]
    assert all(e.question.endswith("?") and len(e.question) > 1 for e in first.pairs + first.yes_no)


# What the stubbed question generators write for each answer; _tidy turns each into the question in the comment.
STUB_QUESTIONS = {
    "man": "question: Who is riding a red bicycle?",  # -> "who is riding a red bicycle?"
    "red bicycle": "What is the man riding? What else is there?",  # -> "what is the man riding?"
    "helmet": "what is the cyclist wearing .",  # -> "what is the cyclist wearing?"
    "cars": "?",  # -> "" : no question, so no exemplar
    "yes": "Is the man riding a bicycle?",  # -> "is the man riding a bicycle?"
}
QG_CANDIDATES = [
    AnswerCandidate("man", "noun", 2, [0, 1]),
    AnswerCandidate("red bicycle", "chunk", 2, [0, 3]),
    AnswerCandidate("a very long answer of words", "chunk", 1, [0]),  # 5 words > max_answer_words: not asked
    AnswerCandidate("helmet", "noun", 1, [2]),
    AnswerCandidate("cars", "noun", 1, [1]),
    AnswerCandidate("yes", "yesno", 0, []),  # the "yes" question is asked once, about the first caption
]
# Expected from STUB_QUESTIONS by hand; no caption mentions a toilet or a giraffe (the first two absent objects).
STUB_EXPECTED = SyntheticQA(
    pairs=[
        QAExemplar("who is riding a red bicycle?", "man", CAPTIONS[0]),
        QAExemplar("what is the man riding?", "red bicycle", CAPTIONS[0]),
        QAExemplar("what is the cyclist wearing?", "helmet", CAPTIONS[2]),
    ],
    yes_no=[
        QAExemplar("is there a giraffe in the picture?", "no"),
        QAExemplar("is the man riding a bicycle?", "yes", CAPTIONS[0]),
        QAExemplar("is this a toilet?", "no"),
    ],
)


class FakeSeq2Seq:
    """A stand-in for T5's tokenizer and model: a "token" is the index of the input text, and the "generation"
    for it is STUB_QUESTIONS of that text's answer. It records what it is given."""

    config = SimpleNamespace(num_heads=16)

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.batches: list[list[str]] = []
        self.tokenizer_kwargs: list[dict] = []
        self.generate_kwargs: list[dict] = []

    def __call__(self, texts: list[str], **kwargs):  # the tokenizer  # type: ignore[no-untyped-def]
        self.tokenizer_kwargs.append(kwargs)
        ids = [[len(self.texts) + i] for i in range(len(texts))]
        self.texts += texts
        return SimpleNamespace(input_ids=ids)

    def pad(self, encoded, return_tensors):  # the tokenizer, one batch  # type: ignore[no-untyped-def]
        ids = torch.tensor(encoded["input_ids"])
        self.batches.append([self.texts[i] for i in ids[:, 0]])
        return SimpleNamespace(input_ids=ids, attention_mask=torch.ones_like(ids))

    def forward(self, input_ids=None, cache=None):  # the model's signature  # type: ignore[no-untyped-def]
        raise AssertionError("not called")

    def generate(self, input_ids, attention_mask, **kwargs):  # the model  # type: ignore[no-untyped-def]
        self.generate_kwargs.append(kwargs)
        return input_ids

    def batch_decode(self, output, skip_special_tokens):  # type: ignore[no-untyped-def]
        answers = [self.texts[i].split("answer: ", 1)[1].split("  context:", 1)[0].rstrip(".") for i in output[:, 0]]
        return [STUB_QUESTIONS[a] for a in answers]


def test_t5_question_generation_with_a_stubbed_model(monkeypatch) -> None:
    fake = FakeSeq2Seq()
    loaded: list[str] = []

    def load(cls, model, *args, **kwargs):  # type: ignore[no-untyped-def]
        loaded.append(model)
        return fake, fake

    monkeypatch.setattr(question_generation, "load_frozen", load)
    config = QuestionGenConfig(backend="t5", model="some/qg-model", batch_size=2, num_beams=3, max_new_tokens=30)
    synthetic = QuestionGenerator(config)(QG_CANDIDATES, CAPTIONS)
    assert loaded == ["some/qg-model"]
    assert synthetic == STUB_EXPECTED
    # The checkpoint's input format, `answer: A  context: C.` (two spaces), with the caption that mentions the
    # answer first; "yes" last, with the first caption. Batches of two; beam search as configured.
    assert fake.batches == [
        ["answer: man  context: a man riding a red bicycle down a city street.",
         "answer: red bicycle  context: a man riding a red bicycle down a city street."],
        ["answer: helmet  context: a cyclist wearing a helmet rides past a bus.",
         "answer: cars  context: a man on a bike next to two parked cars."],
        ["answer: yes  context: a man riding a red bicycle down a city street."],
    ]
    assert fake.tokenizer_kwargs == [{"truncation": True, "max_length": 512}]
    # Beam search with a cache that reorders only self-attention (tests/test_speedups.py: same outputs).
    caches = [kwargs.pop("cache") for kwargs in fake.generate_kwargs]
    assert all(type(c).__name__ == "SelfAttentionReorderedCache" for c in caches) and len(set(map(id, caches))) == 3
    assert fake.generate_kwargs == [{"num_beams": 3, "max_new_tokens": 30, "do_sample": False}] * 3

    # Img2LLM's setting: every caption as the context, in LAVIS's format (a period after the answer too).
    fake = FakeSeq2Seq()
    lavis = dataclasses.replace(config, context="all", input_template="t5_question_generation_lavis", batch_size=32)
    assert QuestionGenerator(lavis)(QG_CANDIDATES, CAPTIONS) == STUB_EXPECTED
    everything = (
        "a man riding a red bicycle down a city street. a man on a bike next to two parked cars. "
        "a cyclist wearing a helmet rides past a bus. a red bicycle on the street"
    )
    answers = ["man", "red bicycle", "helmet", "cars", "yes"]
    assert fake.batches == [[f"answer: {a}.  context: {everything}." for a in answers]]


def test_llm_question_generation_with_a_stubbed_lm() -> None:
    prompts: list[list[str]] = []

    class FakeLM:
        def generate(self, texts: list[str], max_new_tokens: int | None = None) -> list[Generation]:
            prompts.append(list(texts))
            assert max_new_tokens == 7
            answers = [t.rsplit("\nAnswer: ", 1)[1].split("\n", 1)[0] for t in texts]
            return [Generation(STUB_QUESTIONS[a], -1.0, 3) for a in answers]

    config = QuestionGenConfig(backend="llm", max_new_tokens=7)
    generator = QuestionGenerator(config, FakeLM())  # type: ignore[arg-type]
    assert generator(QG_CANDIDATES, CAPTIONS) == STUB_EXPECTED
    # prompts/question_generation.txt written out: one worked example, then this caption and answer.
    head = (
        "Write one short question about the picture that has the given answer.\n"
        "Context: a man riding a red bike down the street\nAnswer: red\nQuestion: what color is the bike?\n"
    )
    assert prompts == [[
        head + "Context: a man riding a red bicycle down a city street\nAnswer: man\nQuestion:",
        head + "Context: a man riding a red bicycle down a city street\nAnswer: red bicycle\nQuestion:",
        head + "Context: a cyclist wearing a helmet rides past a bus\nAnswer: helmet\nQuestion:",
        head + "Context: a man on a bike next to two parked cars\nAnswer: cars\nQuestion:",
        head + "Context: a man riding a red bicycle down a city street\nAnswer: yes\nQuestion:",
    ]]


def test_no_yes_question_means_no_yes_exemplar() -> None:
    class Silent:
        def questions(self, requests):  # type: ignore[no-untyped-def]
            return ["" for _ in requests]

    generator = QuestionGenerator(QuestionGenConfig(backend="template"))
    generator.backend = Silent()
    synthetic = generator(QG_CANDIDATES, CAPTIONS)
    assert synthetic == SyntheticQA([], [STUB_EXPECTED.yes_no[0], STUB_EXPECTED.yes_no[2]])


def test_unknown_models_fail_with_clear_messages(tmp_path) -> None:
    with pytest.raises(ModelLoadError, match=r"(?s)'no-such-org/no-such-model'.*--answerer-model /path/to/model"):
        FrozenLM(AnswererConfig(model="no-such-org/no-such-model"))
    with pytest.raises(ModelLoadError, match="no such file or directory"):
        resolve(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="unknown bundled model"):
        resolve("bundled:nothing")
    not_a_model = tmp_path / "empty"
    not_a_model.mkdir()
    with pytest.raises(ModelLoadError, match="the answerer model directory .* is empty: it lacks config.json"):
        FrozenLM(AnswererConfig(model=str(not_a_model)))
