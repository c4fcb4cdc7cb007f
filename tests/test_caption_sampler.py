"""captioner.sampler=top_k: the captioner's own decoding loop, which draws each token within the top k logits,
checked against transformers' generate on the tiny random BLIP captioner."""

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image
from transformers.generation.logits_process import TopKLogitsWarper

from zsvqa.captioning import PatchCaptioner, sample_top_k
from zsvqa.config import PRESETS, preset
from zsvqa.errors import InputError


@pytest.fixture(scope="module")
def captioner() -> PatchCaptioner:
    config = dataclasses.replace(preset("tiny").captioner, sampler="top_k")
    assert (config.min_length, config.max_length) == (7, 12)  # 3 to 8 new tokens after the 4-token prompt
    return PatchCaptioner(config)


@pytest.fixture
def eos_bias(captioner: PatchCaptioner):  # type: ignore[no-untyped-def]
    """Set the end token's output bias to its own value + x; restored afterwards."""
    bias = captioner.model.text_decoder.cls.predictions.bias
    original = float(bias[captioner.eos_token_id])

    def set_to(extra: float) -> None:
        with torch.no_grad():
            bias[captioner.eos_token_id] = original + extra

    yield set_to
    set_to(0.0)


def decoder_states(count: int, seed: int = 1) -> torch.Tensor:
    """Random patch embeddings, large enough that each caption's tokens depend on its own (the tiny model's
    image embeddings barely move its logits, so all its captions would be one)."""
    return 100 * torch.randn(count, 4, 32, generator=torch.Generator().manual_seed(seed))


def end_steps(tokens: torch.Tensor, eos: int) -> list[int]:
    """The position of each row's first end token (-1: none)."""
    return [row.tolist().index(eos) if eos in row.tolist() else -1 for row in tokens]


@pytest.mark.parametrize("extra, lengths", [(0.0, {-1}), (0.5, {-1, 7, 8, 9, 10}), (0.6, {7, 8})])
def test_greedy_top_1_gives_the_tokens_of_transformers_greedy(captioner, eos_bias, monkeypatch, extra, lengths) -> None:
    """top_k 1 is greedy: the loop must write exactly what generate(do_sample=False) writes, as captions end at
    different steps (their rows leave the batch), all end before max_length, or none ends."""
    eos_bias(extra)
    states = decoder_states(32)
    config = captioner.config
    monkeypatch.setattr(captioner, "config", dataclasses.replace(config, decoding="greedy"))
    expected = captioner._transformers_generate(states, torch.Generator().manual_seed(0))
    monkeypatch.setattr(captioner, "config", dataclasses.replace(config, top_k=1))
    batch_sizes: list[int] = []
    hook = captioner.model.text_decoder.register_forward_pre_hook(
        lambda module, args, kwargs: batch_sizes.append(kwargs["input_ids"].shape[0]), with_kwargs=True
    )
    try:
        tokens = captioner._sample_top_k(states, torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert set(end_steps(expected, captioner.eos_token_id)) == lengths  # the case this parameter is meant to be
    assert torch.equal(tokens, expected)
    assert len(set(map(tuple, tokens.tolist()))) == 32
    assert len(batch_sizes) == tokens.shape[1] - captioner.prompt_ids.shape[1]  # one decoder call per new token
    running = [sum(1 for end in end_steps(tokens, captioner.eos_token_id) if end == -1 or end > step)
               for step in range(captioner.prompt_ids.shape[1], tokens.shape[1] - 1)]
    assert batch_sizes == [32, *running]  # a caption that has ended costs nothing more


def test_draws_follow_the_top_k_renormalized_softmax() -> None:
    logits = torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 2
    k, draws = 10, 200_000
    tokens = sample_top_k(logits.expand(draws, -1), k, torch.Generator().manual_seed(0))
    top = logits.topk(k)
    assert set(tokens.tolist()) <= set(top.indices.tolist())
    observed = torch.bincount(tokens, minlength=logits.numel())[top.indices].double()

    def chi_square(probabilities: torch.Tensor) -> float:
        expected = draws * probabilities.double()
        return float(((observed - expected) ** 2 / expected).sum())

    # k - 1 = 9 degrees of freedom: mean 9, and 30 is exceeded with probability 4e-4.
    assert chi_square(top.values.softmax(-1)) < 30
    # The test can tell a near miss: the same k at temperature 1.1 in place of 1 is far out.
    assert chi_square((top.values / 1.1).softmax(-1)) > 1000


def test_ties_with_the_k_th_logit_are_kept_as_transformers_keeps_them() -> None:
    # bfloat16 logits tie often; transformers' TopKLogitsWarper keeps every logit equal to the k-th largest.
    logits = torch.tensor([[4.0, 3.0, 2.0, 2.0, 2.0, 1.0, 0.5]], dtype=torch.bfloat16)
    warped = TopKLogitsWarper(top_k=3)(torch.zeros(1, 1, dtype=torch.long), logits.float())
    expected = warped.softmax(-1)[0]
    assert int((expected > 0).sum()) == 5
    draws = 100_000
    tokens = sample_top_k(logits.expand(draws, -1), 3, torch.Generator().manual_seed(0))
    frequencies = torch.bincount(tokens, minlength=7).double() / draws
    assert frequencies[5:].sum() == 0
    torch.testing.assert_close(frequencies, expected.double(), atol=0.005, rtol=0)


def test_min_and_max_length_count_the_prompt(captioner, eos_bias) -> None:
    eos_bias(1e4)  # the end token is the only candidate as soon as it is allowed
    tokens = captioner._sample_top_k(decoder_states(8), torch.Generator().manual_seed(0))
    assert tokens.shape == (8, 8) and end_steps(tokens, captioner.eos_token_id) == [7] * 8  # min_length 7
    eos_bias(-1e4)  # never allowed: max_length tokens, prompt included
    tokens = captioner._sample_top_k(decoder_states(8), torch.Generator().manual_seed(0))
    assert tokens.shape == (8, 12) and end_steps(tokens, captioner.eos_token_id) == [-1] * 8
    assert torch.equal(tokens[:, :4], captioner.prompt_ids.expand(8, -1))


def test_ended_captions_are_padded_as_generate_pads_them(captioner, eos_bias) -> None:
    eos_bias(0.5)
    tokens = captioner._sample_top_k(decoder_states(32), torch.Generator().manual_seed(3))
    ends = end_steps(tokens, captioner.eos_token_id)
    assert len(set(ends)) > 2 and tokens.shape[1] == 12
    for row, end in zip(tokens.tolist(), ends):
        if end != -1:
            assert set(row[end + 1:]) <= {captioner.pad_token_id}
            assert captioner.pad_token_id not in row[:end]


def test_captions_are_seeded_by_the_captioners_generator_only(captioner) -> None:
    features = captioner.encode_image(Image.fromarray(np.full((64, 64, 3), 90, dtype=np.uint8)))
    relevance = torch.full((4, 4), 1 / 16)
    torch.manual_seed(123)
    global_state = torch.get_rng_state()
    first = captioner(features, relevance, seed=5)
    assert torch.equal(torch.get_rng_state(), global_state)  # torch's global generator is neither read nor moved
    torch.manual_seed(999)
    again = captioner(features, relevance, seed=5)
    assert first.captions == again.captions and first.patch_indices == again.patch_indices
    assert len(first.captions) == captioner.config.num_captions
    assert captioner(features, relevance, seed=6).captions != first.captions


def test_an_unknown_sampler_is_a_clear_error() -> None:
    with pytest.raises(InputError, match="captioner.sampler must be one of transformers, top_k; got 'nucleus'"):
        preset("tiny").with_overrides({"captioner.sampler": "nucleus"})
    assert preset("tiny").with_overrides({"captioner.sampler": "top_k"}).captioner.sampler == "top_k"


def test_every_preset_samples_within_the_top_k_and_transformers_stays_a_setting() -> None:
    # The same distribution as LAVIS's draw through transformers' generate (test above), faster; the setting gives
    # LAVIS's random stream back.
    assert {preset(name).captioner.sampler for name in PRESETS} == {"top_k"}
    assert preset("offline").captioner.top_k == preset("pnp-vqa").captioner.top_k == 50
    assert preset("pnp-vqa").with_overrides({"captioner.sampler": "transformers"}).captioner.sampler == "transformers"
