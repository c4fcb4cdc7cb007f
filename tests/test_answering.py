"""The answerer and question generator on tiny random T5 / causal models loaded through the product's loader."""

import math

import pytest
import torch
from transformers.modeling_outputs import BaseModelOutput

from conftest import CAPTIONS
from zsvqa.answering import Answerer, FrozenLM
from zsvqa.candidates import AnswerCandidate
from zsvqa.config import AnswererConfig, PromptConfig, QuestionGenConfig
from zsvqa.errors import ModelLoadError
from zsvqa.models import resolve
from zsvqa.prompting import PromptBuilder
from zsvqa.question_generation import QuestionGenerator


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


def test_fid_encodes_passages_separately_and_drops_padding(fid: FrozenLM) -> None:
    passages = ["q? \\n a short caption", "q? \\n a much longer caption with many more words than the first"]
    encoder = fid.model.get_encoder()
    states = []
    for passage in passages:  # each passage alone: no padding anywhere
        ids = fid.tokenizer(passage, return_tensors="pt").input_ids
        states.append(encoder(input_ids=ids).last_hidden_state)
    manual = torch.cat(states, dim=1)
    output = fid.model.generate(
        encoder_outputs=BaseModelOutput(last_hidden_state=manual),
        attention_mask=torch.ones(manual.shape[:2], dtype=torch.long),
        max_new_tokens=6,
        do_sample=False,
    )
    expected = fid.tokenizer.decode(output[0], skip_special_tokens=True).split("\n")[0].strip()
    assert fid.generate_fused(passages).text == expected
    # Passage order matters to the decoder only through the fused states, so swapping changes the input.
    assert manual.shape[1] == sum(len(fid.tokenizer(p).input_ids) for p in passages)


def test_answerer_reads_passages_under_fid(fid: FrozenLM) -> None:
    builder = PromptBuilder(PromptConfig(style="unifiedqa", captions_per_passage=1), fid.count_tokens, 512)
    prompt = builder("What is it?", CAPTIONS)
    answer = Answerer(fid)(prompt)
    assert len(prompt.passages) == len(CAPTIONS)
    assert answer.text == Answerer(fid)(prompt).text and math.isfinite(answer.logprob)


def test_t5_question_generation_shapes_and_determinism() -> None:
    generator = QuestionGenerator(QuestionGenConfig(backend="t5", model="tiny:t5", max_new_tokens=6, batch_size=2))
    candidates = [AnswerCandidate(word, "noun", 1, [i]) for i, word in enumerate(["man", "bike", "helmet"])]
    first = generator(candidates, CAPTIONS).pairs
    assert first == generator(candidates, CAPTIONS).pairs
    assert [e.answer for e in first] == [c.text for c in candidates if any(c.text == e.answer for e in first)]
    assert all(e.context == CAPTIONS[c.caption_indices[0]] for e, c in zip(first, candidates))


def test_llm_question_generation(causal: FrozenLM) -> None:
    generator = QuestionGenerator(QuestionGenConfig(backend="llm", max_new_tokens=5), causal)
    exemplars = generator([AnswerCandidate("bike", "noun", 1, [0])], CAPTIONS).pairs
    assert len(exemplars) <= 1 and all(e.answer == "bike" and e.question for e in exemplars)


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
