"""The vision half on tiny random BLIP models saved and reloaded through the product's loaders.

Their captions are noise: these tests check mechanics, shapes, determinism and equivalence only.
"""

import dataclasses
import json
import shutil
import zlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from zsvqa.captioning import PatchCaptioner
from zsvqa.cli import main
from zsvqa.config import CaptionerConfig, MatcherConfig, preset
from zsvqa.errors import InputError, ModelLoadError
from zsvqa.images import load_image
from zsvqa.matching import (
    ImageQuestionMatcher, MatchResult, enc_token_id, full_backward_gradcam, gradcam_map, patch_grid,
)
from zsvqa.pipeline import Pipeline

QUESTIONS = ["what is the man riding?", "is it red?", "how many dogs are in the park today?"]


def noise_image(seed: int = 0, size: tuple[int, int] = (100, 80)) -> Image.Image:
    pixels = np.random.RandomState(seed).randint(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels)


@pytest.fixture(scope="module")
def matcher() -> ImageQuestionMatcher:
    return ImageQuestionMatcher(preset("tiny").matcher)


@pytest.fixture(scope="module")
def captioner_config() -> CaptionerConfig:
    return preset("tiny").captioner


def test_efficient_gradcam_equals_full_backward(matcher: ImageQuestionMatcher) -> None:
    image = noise_image()
    _, efficient = matcher._gradcam(matcher.encode_image(image), QUESTIONS)
    reference = full_backward_gradcam(matcher, image, QUESTIONS)
    assert efficient.abs().max() > 0, "a map of zeros would make the comparison empty"
    torch.testing.assert_close(efficient, reference, rtol=1e-4, atol=0)
    assert not any(p.requires_grad for p in matcher.model.parameters())  # frozen again afterwards


def test_relevance_shape_from_config_sums_to_one_and_batches(matcher: ImageQuestionMatcher) -> None:
    features = matcher.encode_image(noise_image())
    results = matcher(features, QUESTIONS)
    grid = patch_grid(matcher.model.config.vision_config)
    assert features.grid == grid == (4, 4)
    for result in results:
        assert tuple(result.relevance.shape) == grid and 0 < result.itm_score < 1
        assert float(result.relevance.sum()) == pytest.approx(1.0, abs=1e-5)
        assert float(result.relevance.min()) >= 0
    assert not torch.equal(results[0].relevance, results[2].relevance)
    # Batching does not change the answer for a question.
    alone = matcher(features, QUESTIONS[2:])[0]
    torch.testing.assert_close(alone.relevance, results[2].relevance, rtol=1e-4, atol=1e-7)


def test_gradcam_map_worked_by_hand() -> None:
    # [batch 2, heads 2, text 4, 1 + 2 patches]: column 0 is the image [CLS], columns 1-2 the patch grid (1, 2).
    # Text 0 is the [ENC] token, then the question's tokens, then [SEP] (and padding in the second question).
    # Special and padding tokens carry big products, so averaging them in would show.
    special = [[1.0, 1.0, 1.0]], [[9.0, 9.0, 9.0]]  # (attention, gradient) rows: product 9
    padding = [[1.0, 1.0, 1.0]], [[6.0, 6.0, 6.0]]  # product 6
    attention, gradient = torch.zeros(2, 2, 4, 3), torch.zeros(2, 2, 4, 3)

    def put(b: int, h: int, t: int, a: list[float], g: list[float]) -> None:
        attention[b, h, t], gradient[b, h, t] = torch.tensor(a), torch.tensor(g)

    for b, h in [(0, 0), (0, 1), (1, 0), (1, 1)]:
        put(b, h, 0, special[0][0], special[1][0])  # [ENC]
    for h in (0, 1):
        put(0, h, 3, special[0][0], special[1][0])  # question 0: [SEP]
        put(1, h, 2, special[0][0], special[1][0])  # question 1: [SEP], then padding
        put(1, h, 3, padding[0][0], padding[1][0])
    # Question 0, tokens 1 and 2; products are attention x clamp(gradient, min=0):
    put(0, 0, 1, [1, 2, 1], [5, 1, -3])  # -> [5, 2, 0]
    put(0, 1, 1, [1, 1, 1], [5, 4, 2])  # -> [5, 4, 2]; mean over the heads: [5, 3, 1]
    put(0, 0, 2, [1, 1, 2], [5, 2, 1])  # -> [5, 2, 2]
    put(0, 1, 2, [1, 2, 1], [5, -1, 2])  # -> [5, 0, 2]; mean over the heads: [5, 1, 2]
    # Mean over the two question tokens: [5, 2, 1.5]; without the [CLS] column: [2, 1.5].
    # Question 1, token 1 only:
    put(1, 0, 1, [1, 1, 2], [1, 3, 2])  # -> [1, 3, 4]
    put(1, 1, 1, [2, 1, 1], [1, 1, -4])  # -> [2, 1, 0]; mean over the heads: [1.5, 2, 2] -> map [2, 2]
    question_tokens = torch.tensor([[0, 1, 1, 0], [0, 1, 0, 0]])
    expected = torch.tensor([[[2.0, 1.5]], [[2.0, 2.0]]])
    # What each wrong map would give, for question 0: no clamp [1.5, 0.75]; max over heads [3, 2]; special tokens
    # averaged in [5.5, 5.25]; the last patch column dropped instead of [CLS] [5, 2].
    torch.testing.assert_close(gradcam_map(attention, gradient, question_tokens, (1, 2)), expected, rtol=0, atol=1e-6)


def test_matcher_gradcam_equals_an_independent_computation() -> None:
    # Through the matcher (block 0 of the tiny model's 2: at the last block the [ENC] output, which the ITM head
    # reads, no longer depends on the words' cross-attention): the expected map comes from that block's attention
    # and its gradient of the match logit, taken by a hook written here, over the question's word pieces found by
    # token id (not by the tokenizer's masks); the second question is padded.
    matcher = ImageQuestionMatcher(preset("tiny").matcher)
    features = matcher.encode_image(noise_image())
    questions = ["what is the man riding?", "is it red?"]
    _, cams = matcher._gradcam(features, questions)

    tokens = matcher._tokenize_questions(questions)
    kept: dict[str, torch.Tensor] = {}

    def keep_as_leaf(module, args, output):  # type: ignore[no-untyped-def]
        kept["attention"] = output.detach().requires_grad_(True)
        return kept["attention"]

    block = matcher.model.text_encoder.encoder.layer[0].crossattention.self
    handle = block.dropout.register_forward_hook(keep_as_leaf)
    try:
        with torch.enable_grad():
            hidden = matcher.model.text_encoder(
                input_ids=tokens.input_ids, attention_mask=tokens.attention_mask,
                encoder_hidden_states=features.embeds.expand(len(questions), -1, -1),
            ).last_hidden_state
            match = matcher.model.itm_head(hidden[:, 0])[:, 1]
            (gradient,) = torch.autograd.grad(match.sum(), kept["attention"])
    finally:
        handle.remove()
    attention = kept["attention"].detach()
    assert not tokens.attention_mask[1].all()  # padded
    tokenizer = matcher.processor.tokenizer
    not_words = {tokenizer.pad_token_id, tokenizer.sep_token_id, tokenizer.cls_token_id, matcher.first_token_id}
    for b, word_count in enumerate([5, 3]):  # "what is the man riding", "is it red": "?" is stripped
        words = [t for t, token_id in enumerate(tokens.input_ids[b].tolist()) if token_id not in not_words]
        assert len(words) == word_count
        per_word = torch.stack([(attention[b, :, t] * gradient[b, :, t].clamp(min=0)).mean(0) for t in words])
        expected = per_word.mean(0)[1:].reshape(4, 4)  # column 0 is the image [CLS]
        # Random weights give tiny gradients (about 1e-12 here): compare relative to the map's own size.
        scale = float(expected.abs().max())
        assert scale > 0
        torch.testing.assert_close(cams[b], expected, rtol=1e-4, atol=1e-4 * scale)


def test_gradcam_layer_out_of_range_is_a_clear_error() -> None:
    with pytest.raises(ModelLoadError, match="gradcam_layer must be in 0..1"):
        ImageQuestionMatcher(MatcherConfig(model="tiny:blip-itm", gradcam_layer=7))


def test_patch_sampling_size_k_reproducible(matcher, captioner_config) -> None:
    captioner = PatchCaptioner(captioner_config)
    features = captioner.encode_image(noise_image())
    relevance = matcher(matcher.encode_image(noise_image()), QUESTIONS[:1])[0].relevance
    probabilities = captioner._patch_probabilities(features, relevance)
    first = captioner._sample_patches(probabilities, 5, torch.Generator().manual_seed(3))
    again = captioner._sample_patches(probabilities, 5, torch.Generator().manual_seed(3))
    other = captioner._sample_patches(probabilities, 5, torch.Generator().manual_seed(4))
    assert first.shape == (5, captioner_config.num_patches)
    assert all(len(set(row)) == captioner_config.num_patches for row in first.tolist())  # no replacement
    assert torch.equal(first, first.sort(dim=1).values)  # in image order, as LAVIS
    assert torch.equal(first, again) and not torch.equal(first, other)
    assert captioner(features, relevance, seed=1).captions == captioner(features, relevance, seed=1).captions


def test_sampling_follows_relevance(captioner_config) -> None:
    captioner = PatchCaptioner(captioner_config)
    features = captioner.encode_image(noise_image())
    relevance = torch.zeros(4, 4)
    relevance[0, :] = 1.0  # all mass on the first row of patches
    probabilities = captioner._patch_probabilities(features, relevance)
    patches = captioner._sample_patches(probabilities, 50, torch.Generator().manual_seed(0))
    assert set(patches.flatten().tolist()) == {0, 1, 2, 3}
    # A relevance grid of another size (another matcher) is resampled to the captioner's grid.
    assert captioner._patch_probabilities(features, torch.rand(8, 8)).shape == (16,)


PEAK = [5, 6, 9, 10]  # the middle four patches of the tiny 4 x 4 grid; K = 4 in the tiny preset


def peaked_relevance() -> torch.Tensor:
    """A GradCAM-like map with all its mass on PEAK."""
    relevance = torch.zeros(16)
    relevance[PEAK] = 0.25
    return relevance.reshape(4, 4)


@pytest.mark.parametrize("mode", ["gradcam", "uniform", "full"])
def test_caption_count_and_modes(mode: str, captioner_config) -> None:
    config = preset("tiny").with_overrides({"captioner.relevance": mode}).captioner
    assert config.num_patches == len(PEAK)
    captioner = PatchCaptioner(config)
    features = captioner.encode_image(noise_image())
    fed: list[torch.Tensor] = []
    generate = captioner._generate

    def recording(features, patches, generator):  # type: ignore[no-untyped-def]
        fed.append(patches)
        return generate(features, patches, generator)

    captioner._generate = recording  # type: ignore[method-assign]
    # The same peaked map is given in every mode; only gradcam may follow it.
    result = captioner(features, peaked_relevance(), seed=0)
    assert len(result.captions) == config.num_captions == len(set(c.lower() for c in result.captions))
    seen = {index for indices in result.patch_indices for index in indices}
    if mode == "gradcam":  # K patches from a map with exactly K non-zero: every caption sees the peak
        assert all(indices == PEAK for indices in result.patch_indices)
    elif mode == "uniform":  # the map is ignored: 1/16 each, and the captions see patches all over the image
        probabilities = captioner._patch_probabilities(features, peaked_relevance())
        assert torch.equal(probabilities, torch.full((16,), 1 / 16))
        assert all(len(set(indices)) == len(PEAK) for indices in result.patch_indices)
        assert len(seen - set(PEAK)) >= 8 and any(set(indices) != set(PEAK) for indices in result.patch_indices)
    else:  # the whole image, [CLS] included, for every caption
        assert result.patch_indices == [[]] * config.num_captions
        assert all(p.shape[1] == 0 for p in fed)
    assert all(p.shape[1] == (0 if mode == "full" else len(PEAK)) for p in fed)


@pytest.mark.parametrize("mode", ["gradcam", "uniform"])
def test_pipeline_captions_from_the_matchers_map_only_under_gradcam(mode: str, monkeypatch) -> None:
    asked: list[list[str]] = []

    def peaked_match(self, features, questions):  # type: ignore[no-untyped-def]
        asked.append(list(questions))
        return [MatchResult(q, 0.5, peaked_relevance()) for q in questions]

    monkeypatch.setattr(ImageQuestionMatcher, "__call__", peaked_match)
    sampled: list[list[int]] = []
    sample = PatchCaptioner._sample_patches

    def recording(self, probabilities, count, generator):  # type: ignore[no-untyped-def]
        patches = sample(self, probabilities, count, generator)
        sampled.extend(patches.tolist())
        return patches

    monkeypatch.setattr(PatchCaptioner, "_sample_patches", recording)
    pipeline = Pipeline(preset("tiny").with_overrides({"captioner.relevance": mode}))
    (captioned,) = pipeline.caption_image(noise_image(), ["what is in the middle?"])
    assert len(captioned.captions) == 8 and sampled
    if mode == "gradcam":
        assert asked == [["what is in the middle?"]] and captioned.relevance == peaked_relevance().tolist()
        assert all(indices == PEAK for indices in sampled)
    else:  # no matcher at all, and patches from everywhere
        assert asked == [] and captioned.relevance is None
        assert len({i for indices in sampled for i in indices} - set(PEAK)) >= 8


def test_duplicates_topped_up_without_regenerating(captioner_config, monkeypatch) -> None:
    captioner = PatchCaptioner(captioner_config)  # N = 8, batch size 8
    features = captioner.encode_image(noise_image())
    requested: list[int] = []
    scripted = iter([["a", "b", "a", "c", "b", "d", "e", "A"], ["f", "a", "g"], ["h"]])

    def fake_generate(features, patches, generator):
        requested.append(patches.shape[0])
        return next(scripted)

    monkeypatch.setattr(captioner, "_generate", fake_generate)
    result = captioner(features, torch.full((4, 4), 1 / 16), seed=0)
    assert requested == [8, 3, 1]  # only the missing ones, each round
    assert result.captions == ["a", "b", "c", "d", "e", "f", "g", "h"]
    assert (result.generated, result.rounds) == (12, 3)


def test_top_up_rounds_are_bounded(captioner_config, monkeypatch) -> None:
    captioner = PatchCaptioner(captioner_config)
    monkeypatch.setattr(captioner, "_generate", lambda f, patches, g: ["same"] * patches.shape[0])
    result = captioner(captioner.encode_image(noise_image()), torch.full((4, 4), 1 / 16), seed=0)
    assert result.captions == ["same"] and result.rounds == 1 + captioner_config.max_top_up_rounds


def test_caption_filter_in_the_pipeline_collects_n_passing_captions(monkeypatch) -> None:
    pipeline = Pipeline(preset("tiny").with_overrides({"captioner.filter_threshold": "0.5"}))
    scored: dict[str, float] = {}
    calls: list[list[str]] = []

    def fake_scores(features, texts):  # a fixed pseudo-random half of the captions pass
        calls.append(texts)
        scored.update({t: 0.9 if zlib.crc32(t.encode()) % 2 else 0.1 for t in texts})
        return [scored[t] for t in texts]

    monkeypatch.setattr(pipeline.matcher, "match_probabilities", fake_scores)
    result = pipeline.caption_image(noise_image(), QUESTIONS[:1])[0]
    assert len(result.captions) == preset("tiny").captioner.num_captions  # topped up until N pass, as LAVIS
    assert all(scored[c] >= 0.5 for c in result.captions)
    rejected = [t for texts in calls for t in texts if scored[t] < 0.5]
    # Rejections after the N-th kept caption of the last batch are not counted: those captions were not needed.
    assert 0 < result.filtered_out <= len(rejected)
    assert result.generated == sum(map(len, calls)) >= len(result.captions) + result.filtered_out
    assert "caption_filter" in result.timings and result.timings["captioning"] >= 0


def _numbered_captions(monkeypatch, captioner) -> list[int]:
    """Make `_generate` return distinct captions 'caption 000', 'caption 001', ...; returns the batch sizes."""
    requested: list[int] = []

    def fake_generate(features, patches, generator):
        requested.append(patches.shape[0])
        start = sum(requested[:-1])
        return [f"caption {n:03d}" for n in range(start, start + patches.shape[0])]

    monkeypatch.setattr(captioner, "_generate", fake_generate)
    return requested


def test_filter_tops_up_until_n_captions_pass(captioner_config, monkeypatch) -> None:
    captioner = PatchCaptioner(dataclasses.replace(captioner_config, filter_threshold=0.5))  # N = 8
    requested = _numbered_captions(monkeypatch, captioner)
    scorer_calls: list[list[str]] = []

    def every_other_passes(texts: list[str]) -> list[float]:
        scorer_calls.append(texts)
        return [0.9 if int(t.split()[1]) % 2 == 0 else 0.1 for t in texts]

    result = captioner(captioner.encode_image(noise_image()), torch.full((4, 4), 1 / 16), 0, every_other_passes)
    assert result.captions == [f"caption {n:03d}" for n in range(0, 16, 2)]
    # Round 2 draws the 4 missing over the pass rate (one half): 8, never more than N per round.
    assert requested == [8, 8] and result.rounds == 2
    # Caption 015 comes after the 8th kept one: not needed, so not counted as filtered out.
    assert (result.generated, result.filtered_out) == (16, 7) and sum(map(len, scorer_calls)) == 16
    # Without a scorer the threshold is not applied.
    assert captioner(captioner.encode_image(noise_image()), torch.full((4, 4), 1 / 16), 0).filtered_out == 0


def test_caption_exactly_on_the_filter_threshold_is_kept(captioner_config, monkeypatch) -> None:
    # LAVIS img2prompt_vqa.py forward_cap keeps a caption when itm_score >= 0.5: exactly 0.5 passes, just under
    # it does not.
    captioner = PatchCaptioner(dataclasses.replace(captioner_config, filter_threshold=0.5, max_top_up_rounds=0))
    _numbered_captions(monkeypatch, captioner)
    on_and_under = lambda texts: [0.5 if int(t.split()[1]) % 2 == 0 else 0.4999 for t in texts]  # noqa: E731
    result = captioner(captioner.encode_image(noise_image()), torch.full((4, 4), 1 / 16), 0, on_and_under)
    assert result.captions == ["caption 000", "caption 002", "caption 004", "caption 006"]  # 8 decoded, one round
    assert [r.score for r in result.removed] == [0.4999] * 4


def test_filter_rounds_are_bounded_and_keep_the_best_when_none_pass(captioner_config, monkeypatch) -> None:
    config = dataclasses.replace(captioner_config, filter_threshold=0.5, max_top_up_rounds=2)
    captioner = PatchCaptioner(config)
    requested = _numbered_captions(monkeypatch, captioner)
    # All fail; caption 005 scores highest.
    scores = lambda texts: [0.4 if t == "caption 005" else 0.1 for t in texts]  # noqa: E731
    result = captioner(captioner.encode_image(noise_image()), torch.full((4, 4), 1 / 16), 0, scores)
    assert result.rounds == 3 and requested == [8, 8, 8]
    assert result.captions == ["caption 005"] and len(result.patch_indices) == 1
    assert (result.generated, result.filtered_out) == (24, 23)  # the one kept back is not counted as removed


def test_a_caption_contained_in_a_kept_one_is_dropped(captioner_config, monkeypatch) -> None:
    captioner = PatchCaptioner(captioner_config)  # N = 8
    script = iter([
        ["a man riding a bike", "a man riding", "man", "a man riding a bike down the street",
         "a dog", "A DOG", "dog", "a cat"],
        ["a red car", "", "a red", "a bus"],
        ["a tree", "a cat on a mat"],
    ])
    monkeypatch.setattr(captioner, "_generate", lambda features, patches, generator: next(script)[: patches.shape[0]])
    result = captioner(captioner.encode_image(noise_image()), torch.full((4, 4), 1 / 16), seed=0)
    # LAVIS's rule: a new caption that is a substring of a kept one is rejected; a longer one is kept.
    assert result.captions == [
        "a man riding a bike", "a man riding a bike down the street", "a dog", "a cat", "a red car", "a bus",
        "a tree", "a cat on a mat",
    ]


def _decoded(monkeypatch, captioner) -> list[torch.Tensor]:
    """Record the token ids the captioner's decoder returns."""
    outputs: list[torch.Tensor] = []
    generate = captioner.model.text_decoder.generate

    def recording(*args, **kwargs):
        outputs.append(generate(*args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(captioner.model.text_decoder, "generate", recording)
    return outputs


def test_caption_lengths_count_the_prompt(captioner_config, monkeypatch) -> None:
    config = dataclasses.replace(captioner_config, relevance="full", decoding="greedy", num_captions=1)
    assert (config.min_length, config.max_length) == (7, 12)
    captioner = PatchCaptioner(config)
    assert captioner.prompt_ids.shape[1] == 4  # [DEC] a picture of
    features = captioner.encode_image(noise_image())
    outputs = _decoded(monkeypatch, captioner)
    captioner(features, None, seed=0)
    assert outputs[-1].shape[1] == 12  # no end token sampled: max_length tokens in all, the prompt included
    with torch.no_grad():  # make the end token the most likely everywhere: it comes as soon as allowed
        captioner.model.text_decoder.cls.predictions.bias[captioner.eos_token_id] += 1e4
    captioner(features, None, seed=0)
    assert outputs[-1][0].tolist().index(captioner.eos_token_id) == 7  # min_length tokens before it, prompt included
    with pytest.raises(ModelLoadError, match="must exceed"):
        PatchCaptioner(dataclasses.replace(config, min_length=2, max_length=4))


@pytest.mark.parametrize("decoding", ["greedy", "beam"])
def test_deterministic_decoding_ignores_the_seed(decoding: str, captioner_config) -> None:
    config = dataclasses.replace(captioner_config, relevance="full", num_captions=1, decoding=decoding)
    captioner = PatchCaptioner(config)
    features = captioner.encode_image(noise_image())
    captions = [captioner(features, None, seed).captions for seed in range(3)]
    assert len(captions[0]) == 1 and captions[0] == captions[1] == captions[2]
    sampled = PatchCaptioner(dataclasses.replace(config, decoding="sample"))
    assert sampled(features, None, 0).captions != sampled(features, None, 1).captions


def test_pica_preset_captions_with_beam_search() -> None:
    captioner = preset("pica").captioner
    assert (captioner.decoding, captioner.num_beams, captioner.num_captions) == ("beam", 3, 1)
    with pytest.raises(InputError, match="gives one caption"):
        preset("pica").with_overrides({"captioner.num_captions": "5"})
    with pytest.raises(InputError, match="captioner.decoding must be one of"):
        preset("tiny").with_overrides({"captioner.decoding": "nucleus"})


def _text_encoder_ids(matcher: ImageQuestionMatcher) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    seen: list[torch.Tensor] = []
    hook = lambda module, args, kwargs: seen.append(kwargs["input_ids"].clone())  # noqa: E731
    return seen, matcher.model.text_encoder.register_forward_pre_hook(hook, with_kwargs=True)


def test_itm_text_starts_with_enc_token(matcher: ImageQuestionMatcher) -> None:
    tokenizer = matcher.processor.tokenizer
    enc = tokenizer.convert_tokens_to_ids("[ENC]")
    assert enc == 30523 and enc != tokenizer.unk_token_id  # BLIP's vocabulary: BERT, [DEC] 30522, [ENC] 30523
    features = matcher.encode_image(noise_image())
    seen, handle = _text_encoder_ids(matcher)
    try:
        with_enc = matcher(features, QUESTIONS)
        matcher.match_probabilities(features, ["a man on a bike"])
        cls_matcher = ImageQuestionMatcher(dataclasses.replace(matcher.config, enc_token=False))
        handle.remove()
        seen_cls, handle = _text_encoder_ids(cls_matcher)
        with_cls = cls_matcher(cls_matcher.encode_image(noise_image()), QUESTIONS)
    finally:
        handle.remove()
    assert len(seen) == 2 and all(ids[:, 0].eq(enc).all() for ids in seen)  # GradCAM / ITM, caption scores
    assert seen_cls and all(ids[:, 0].eq(tokenizer.cls_token_id).all() for ids in seen_cls)
    assert torch.equal(seen[0][:, 1:], seen_cls[0][:, 1:])  # only the first token differs
    assert with_enc[0].itm_score != pytest.approx(with_cls[0].itm_score, abs=1e-6)


def test_enc_token_id_falls_back_to_the_one_after_dec() -> None:
    unknown = SimpleNamespace(convert_tokens_to_ids=lambda token: 100, unk_token_id=100)
    assert enc_token_id(unknown, SimpleNamespace(bos_token_id=30522, vocab_size=30524)) == 30523
    with pytest.raises(ModelLoadError, match="no \\[ENC\\] token"):
        enc_token_id(unknown, SimpleNamespace(bos_token_id=30522, vocab_size=30523))


def test_question_mark_stripped_before_itm(matcher: ImageQuestionMatcher) -> None:
    question_mark = matcher.processor.tokenizer.convert_tokens_to_ids("?")
    features = matcher.encode_image(noise_image())
    questions = ["is it red?", "?? what is this ??", "what? and why"]
    seen, handle = _text_encoder_ids(matcher)
    try:
        results = matcher(features, questions)
        keeping = ImageQuestionMatcher(dataclasses.replace(matcher.config, strip_question_mark=False))
        handle.remove()
        seen_kept, handle = _text_encoder_ids(keeping)
        keeping(features, questions)
    finally:
        handle.remove()
    tokenizer = matcher.processor.tokenizer
    stripped = [tokenizer.decode(row, skip_special_tokens=True) for row in seen[0]]
    assert stripped == ["is it red", "what is this", "what? and why"]  # str.strip("?"): the ends only, as LAVIS
    assert [r.question for r in results] == questions
    assert int(seen_kept[0].eq(question_mark).sum()) == 6


def test_blip_question_processing_in_the_pnp_vqa_presets_only() -> None:
    from zsvqa.config import PRESETS
    from zsvqa.normalize import blip_question

    assert [name for name in PRESETS if preset(name).blip_question] == ["pnp-vqa", "pnp-vqa-gqa"]
    # LAVIS's pre_question by hand: lower case; . ! " ( ) * # : ; ~ removed (not spaced); trailing spaces dropped;
    # "?" and "," kept; 50 words at most.
    assert blip_question('What "kind" of dog (breed) is this: a pug?! ') == "what kind of dog breed is this a pug?"
    assert blip_question("Is it #1, or ~2; *really*?") == "is it 1, or 2 really?"
    assert blip_question(" ".join(f"w{i}" for i in range(60))) == " ".join(f"w{i}" for i in range(50))
    question = 'What "kind" of dog is this: a pug?'
    for setting, itm_text, fid_question in [
        ("true", "what kind of dog is this a pug", "what kind of dog is this a pug?"),
        ("false", 'what " kind " of dog is this : a pug', 'what "kind" of dog is this: a pug?'),
    ]:
        pipeline = Pipeline(preset("tiny").with_overrides({"blip_question": setting, "prompt.style": "unifiedqa"}))
        seen, handle = _text_encoder_ids(pipeline.matcher)
        try:
            (result,) = pipeline.answer_image(noise_image(), [question])
        finally:
            handle.remove()
        tokenizer = pipeline.matcher.processor.tokenizer
        assert tokenizer.decode(seen[0][0], skip_special_tokens=True) == itm_text  # then "?" stripped, as LAVIS
        assert result.prompt.startswith(fid_question + " \\n ") and result.question == question


def test_vision_layer_norms_carry_the_configured_eps() -> None:
    def eps_values(model) -> set[float]:
        return {m.eps for m in model.vision_model.modules() if isinstance(m, torch.nn.LayerNorm)}

    pipeline = Pipeline(preset("tiny"))
    assert pipeline.config.vision_layer_norm_eps == 1e-6  # LAVIS's ViT
    for model in (pipeline.matcher.model, pipeline.captioner.model):
        assert eps_values(model) == {1e-6} and model.config.vision_config.layer_norm_eps == 1e-6
    kept = Pipeline(preset("tiny").with_overrides({"vision_layer_norm_eps": "none"}))
    for model in (kept.matcher.model, kept.captioner.model):
        assert eps_values(model) == {1e-5}  # the checkpoint's own (BlipVisionConfig's default)
    assert len([m for m in pipeline.matcher.model.vision_model.modules() if isinstance(m, torch.nn.LayerNorm)]) == 5
    with pytest.raises(InputError, match="vision_layer_norm_eps must be positive"):
        preset("tiny").with_overrides({"vision_layer_norm_eps": "0"})


def lavis_eval_pixels(image: Image.Image, size: int = 384) -> torch.Tensor:
    """LAVIS's blip_image_eval, worked independently: Resize((size, size), BICUBIC) of the PIL image, ToTensor,
    Normalize with the CLIP mean and std (torchvision where installed, else PIL and numpy)."""
    mean, std = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)
    try:
        from torchvision import transforms
    except ImportError:
        pixels = np.asarray(image.resize((size, size), Image.BICUBIC), dtype=np.float32) / np.float32(255)
        normalized = (pixels - np.float32(mean)) / np.float32(std)
        return torch.from_numpy(np.ascontiguousarray(normalized.transpose(2, 0, 1)))
    bicubic = transforms.InterpolationMode.BICUBIC
    lavis = transforms.Compose(
        [transforms.Resize((size, size), interpolation=bicubic), transforms.ToTensor(), transforms.Normalize(mean, std)]
    )
    return lavis(image)


def test_blip_pixels_are_lavis_eval_pixels_whether_or_not_torchvision_is_installed(tmp_path) -> None:
    from transformers import BlipForImageTextRetrieval

    from zsvqa import tiny
    from zsvqa.matching import load_blip

    # The hub BLIP processors' settings at their 384 px (the tiny model itself is not run here).
    folder = tmp_path / "blip-384"
    shutil.copytree(tiny.build("blip-itm"), folder)
    settings = json.loads((folder / "processor_config.json").read_text())
    settings["image_processor"]["size"] = {"height": 384, "width": 384}
    (folder / "processor_config.json").write_text(json.dumps(settings))
    _, processor = load_blip(BlipForImageTextRetrieval, str(folder), "image-text matching", "--itm-model", "cpu",
                             "float32", None)
    image = noise_image(3, size=(640, 480))
    pixels = processor(images=image, return_tensors="pt").pixel_values[0]
    assert pixels.shape == (3, 384, 384)
    # transformers' torchvision image processor is up to 0.015 off on this image (0.13 on a 640x480 photo).
    torch.testing.assert_close(pixels, lavis_eval_pixels(image), rtol=0, atol=1e-6)  # 0.0 measured


def test_image_features_computed_once_per_image(monkeypatch) -> None:
    pipeline = Pipeline(preset("tiny"))
    calls = {"matcher": 0, "captioner": 0}
    for name, stage in [("matcher", pipeline.matcher), ("captioner", pipeline.captioner)]:
        original = stage.encode_image

        def counting(image, original=original, name=name):
            calls[name] += 1
            return original(image)

        monkeypatch.setattr(stage, "encode_image", counting)
    results = pipeline.answer_image(noise_image(), QUESTIONS)
    assert calls == {"matcher": 1, "captioner": 1}
    assert [r.question for r in results] == QUESTIONS
    assert all(r.relevance is not None and r.itm_score is not None and r.warning for r in results)
    # Per-question seeds: the same question gets the same captions alone or in a group.
    assert pipeline.answer_image(noise_image(), QUESTIONS[1:2])[0].all_captions == results[1].all_captions


def test_cli_ask_on_image_end_to_end(tmp_path) -> None:
    path = tmp_path / "photo.jpg"
    noise_image(size=(320, 240)).save(path)
    heatmap = tmp_path / "heat.png"
    out = CliRunner().invoke(
        main, ["ask", "--preset", "tiny", "--image", str(path), "-q", "What is here?", "--json",
               "--save-heatmap", str(heatmap)],
    )
    assert out.exit_code == 0, out.output
    data = json.loads(out.stdout[out.stdout.index("{"):])  # stdout holds the JSON alone
    assert f"heatmap written to {heatmap.resolve()}" in out.stderr
    assert len(data["all_captions"]) == preset("tiny").captioner.num_captions
    assert np.asarray(data["relevance"]).shape == (4, 4) and data["answer"] is not None
    assert {"image_features", "relevance", "captioning", "answer"} <= set(data["timings"])
    assert "meaningless" in data["warning"]
    assert Image.open(heatmap).size[0] > 100


def _save(path, image: Image.Image, **kwargs) -> str:
    image.save(path, **kwargs)
    return str(path)


def test_image_modes_and_orientation(tmp_path) -> None:
    rgba = Image.new("RGBA", (10, 6), (255, 0, 0, 0))
    assert load_image(_save(tmp_path / "a.png", rgba)).getpixel((0, 0)) == (255, 255, 255)
    palette = noise_image().convert("P")
    cmyk = noise_image().convert("CMYK")
    gray = noise_image().convert("L")
    for name, image in [("p.png", palette), ("c.jpg", cmyk), ("g.png", gray)]:
        loaded = load_image(_save(tmp_path / name, image))
        assert loaded.mode == "RGB" and loaded.size == image.size
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: width and height swap when applied
    path = _save(tmp_path / "r.jpg", noise_image(size=(40, 20)), exif=exif)
    assert load_image(path, exif_orientation=True).size == (20, 40)
    assert load_image(path, exif_orientation=False).size == (40, 20)  # the stored pixels, as LAVIS reads them
    with Image.open(path) as tagged:
        tagged.load()
        assert load_image(tagged, exif_orientation=True).size == (20, 40)
        assert load_image(tagged, exif_orientation=False).size == (40, 20)


def test_exif_orientation_is_applied_in_the_offline_preset_only(tmp_path, monkeypatch) -> None:
    from zsvqa.config import PRESETS

    assert [name for name in PRESETS if preset(name).exif_orientation] == ["offline"]
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path / "phone.jpg", noise_image(size=(80, 40)), exif=exif)
    for setting, size in [("false", (80, 40)), ("true", (40, 80))]:
        pipeline = Pipeline(preset("tiny").with_overrides({"exif_orientation": setting}))
        seen: list[tuple[int, int]] = []
        for stage in (pipeline.matcher, pipeline.captioner):
            original = stage.encode_image
            def recording(image, original=original):  # type: ignore[no-untyped-def]
                seen.append(image.size)
                return original(image)

            monkeypatch.setattr(stage, "encode_image", recording)
        pipeline.caption_image(path, ["what is this?"])
        assert seen == [size, size]  # both BLIP models see the image one way


def test_bad_images_give_clear_errors(tmp_path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_image(tmp_path / "missing.jpg")
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(b"not an image at all")
    with pytest.raises(InputError, match="cannot be read"):
        load_image(corrupt)
    truncated = tmp_path / "truncated.jpg"
    noise_image().save(truncated)
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(InputError, match="corrupt or truncated"):
        load_image(truncated)
    with pytest.raises(InputError, match="zero size"):
        load_image(Image.new("RGB", (0, 0)))
    out = CliRunner().invoke(main, ["ask", "--preset", "tiny", "--image", str(corrupt), "-q", "what?"])
    assert out.exit_code == 1 and "cannot be read" in out.output and "Traceback" not in out.output


@pytest.mark.parametrize("name", ["pnp-vqa", "img2llm"])
def test_real_presets_name_the_missing_vision_model_offline(name: str, tmp_path) -> None:
    path = tmp_path / "photo.png"
    noise_image().save(path)
    out = CliRunner().invoke(main, ["ask", "--preset", name, "--image", str(path), "-q", "what?"])
    assert out.exit_code == 1
    assert "Salesforce/blip-itm-large-coco" in out.output and "--itm-model /path/to/model" in out.output
