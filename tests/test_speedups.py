"""Speed options (issue 12): length-bucketed FiD encoding, dtype "auto", int8 quantization. Each either leaves the
outputs equal or stays within a tolerance measured here on the tiny models (the README quotes these bounds)."""

import dataclasses
import math

import pytest
import torch
from PIL import Image

from conftest import spy_generate
from zsvqa import models
from zsvqa.language_model import FrozenLM
from zsvqa.captioning import PatchCaptioner
from zsvqa.config import AnswererConfig, preset
from zsvqa.errors import InputError
from zsvqa.matching import ImageQuestionMatcher
from zsvqa.models import resolve_dtype, resolve_quantize
from zsvqa.pipeline import Pipeline

PASSAGES = [
    "what is on the table? \\n a cup",
    "what is on the table? \\n a wooden table with a cup of coffee and a plate of food next to a window",
    "what is on the table? \\n a kitchen",
    "what is on the table? \\n a man sitting at a table with a laptop and a phone",
    "what is on the table? \\n plates",
    "what is on the table? \\n a plate of food on a table next to a glass of orange juice",
    "what is on the table? \\n two cups on a small round table",
]


def fid_model(**settings) -> FrozenLM:  # type: ignore[no-untyped-def]
    return FrozenLM(AnswererConfig(model="tiny:t5", kind="fid", max_new_tokens=6, **settings))


def record_encoder_batches(monkeypatch: pytest.MonkeyPatch, lm: FrozenLM) -> list[torch.Tensor]:
    """The attention masks of the encoder's forward passes."""
    encoder = lm.model.get_encoder()
    masks: list[torch.Tensor] = []
    real = encoder.forward

    def forward(*args, **kwargs):  # type: ignore[no-untyped-def]
        masks.append(kwargs["attention_mask"])
        return real(*args, **kwargs)

    monkeypatch.setattr(encoder, "forward", forward)
    return masks


def fused_states(monkeypatch: pytest.MonkeyPatch, lm: FrozenLM) -> tuple[torch.Tensor, object]:
    calls = spy_generate(monkeypatch, lm)
    generation = lm.generate_fused(PASSAGES)
    return calls[0]["encoder_outputs"].last_hidden_state, generation


def test_length_bucketed_fid_encoding_equals_one_padded_batch(monkeypatch) -> None:
    one_batch, bucketed = fid_model(fid_encode_batch=None), fid_model(fid_encode_batch=2)
    one_masks, bucket_masks = record_encoder_batches(monkeypatch, one_batch), record_encoder_batches(monkeypatch, bucketed)
    reference, reference_answer = fused_states(monkeypatch, one_batch)
    states, answer = fused_states(monkeypatch, bucketed)
    torch.testing.assert_close(states, reference, rtol=1e-5, atol=1e-5)  # same passages, same order
    assert answer.text == reference_answer.text and answer.logprob == pytest.approx(reference_answer.logprob, abs=1e-4)
    # The point of it: one batch pads every passage to the longest, the buckets pad little and go shortest first.
    assert len(one_masks) == 1 and len(bucket_masks) == 4 and [m.shape[0] for m in bucket_masks] == [2, 2, 2, 1]
    padded = sum(m.numel() for m in bucket_masks)
    real_tokens = int(one_masks[0].sum())
    assert real_tokens == sum(int(m.sum()) for m in bucket_masks) == states.shape[1]
    assert padded < one_masks[0].numel() and padded - real_tokens <= (one_masks[0].numel() - real_tokens) / 2
    lengths = [int(m.sum(1).max()) for m in bucket_masks]
    assert lengths == sorted(lengths)


@pytest.mark.parametrize("capabilities, expected", [
    ({"avx512_bf16": True, "amx_bf16": False}, "int8"),  # AVX512-BF16 without AMX: bfloat16 with int8 decoders
    ({"avx512_bf16": True, "amx_bf16": True}, "int8"),  # AMX: bfloat16 with int8 decoding steps (measured fastest)
    ({"avx2": True}, "int8"),  # neither: float32 with int8 decoders
])
def test_auto_quantize_follows_the_cpu(monkeypatch, capabilities, expected) -> None:
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: capabilities)
    assert resolve_quantize("auto", "cpu") == expected
    assert resolve_quantize("auto", "cuda") is None and resolve_quantize(None, "cpu") is None
    assert resolve_quantize("int8", "cpu") == "int8"
    # The pipeline's stages load in what "auto" resolved to here.
    pipeline = Pipeline(preset("tiny").with_overrides({"quantize": "auto"}))
    quantized = any("quantized" in type(m).__module__ for m in pipeline.captioner.model.text_decoder.modules())
    assert pipeline.quantize == expected and quantized == (expected == "int8")


def test_auto_dtype_is_bfloat16_only_where_the_hardware_runs_it(monkeypatch) -> None:
    assert resolve_dtype("float16", "cpu") == "float16" and resolve_dtype("float32", "cuda") == "float32"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": True, "amx_bf16": False})
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": True})
    assert resolve_dtype("auto", "cpu") == "bfloat16"
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx512_bf16": False, "amx_bf16": False, "avx2": True})
    assert resolve_dtype("auto", "cpu") == "float32"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_dtype("auto", "cuda") == "float32"
    # The pipeline loads every stage in what "auto" resolved to here.
    pipeline = Pipeline(preset("tiny").with_overrides({"dtype": "auto"}))
    assert pipeline.dtype == "float32" and pipeline.captioner.model.dtype == torch.float32


def test_paper_presets_pick_the_precision_per_machine_and_offline_and_tiny_stay_float32() -> None:
    import json

    from click.testing import CliRunner

    from run import main
    from zsvqa.config import PRESETS

    fixed = ("offline", "tiny")  # the same answers on every CPU: the README's accuracy figures, the tests' numbers
    assert {(preset(name).dtype, preset(name).quantize) for name in PRESETS if name not in fixed} == {("auto", "auto")}
    assert {(preset(name).dtype, preset(name).quantize) for name in fixed} == {("float32", None)}
    out = CliRunner().invoke(main, ["config", "--preset", "pnp-vqa", "--quantize", "none", "--dtype", "float32", "--json"])
    assert out.exit_code == 0, out.output
    assert (json.loads(out.output)["dtype"], json.loads(out.output)["quantize"]) == ("float32", None)


def test_quantize_is_checked_in_the_config() -> None:
    with pytest.raises(InputError, match="quantize must be one of int8"):
        preset("tiny").with_overrides({"quantize": "int4"}).validate()
    with pytest.raises(InputError, match="CPU only"):
        preset("tiny").with_overrides({"quantize": "int8", "device": "cuda"}).validate()
    with pytest.raises(InputError, match="dtype must be one of"):
        preset("tiny").with_overrides({"dtype": "int8"}).validate()


def test_int8_replaces_every_linear_layer_of_the_text_decoders() -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    plain = fid_model()
    linears = sum(isinstance(m, torch.nn.Linear) for m in plain.model.modules())
    quantized = FrozenLM(AnswererConfig(model="tiny:t5", kind="fid", max_new_tokens=6), quantize="int8")
    assert linears > 0 and sum(isinstance(m, DynamicLinear) for m in quantized.model.modules()) == linears
    assert not any(type(m) is torch.nn.Linear for m in quantized.model.modules())
    config = preset("tiny").captioner
    captioner = PatchCaptioner(config, quantize="int8")
    decoder_layers = [m for m in captioner.model.text_decoder.modules() if isinstance(m, DynamicLinear)]
    assert decoder_layers and not any(type(m) is torch.nn.Linear for m in captioner.model.text_decoder.modules())
    # The vision transformer keeps its float weights.
    assert any(type(m) is torch.nn.Linear for m in captioner.model.vision_model.modules())
    # A causal answerer (the bundled LLM) is not a text decoder quantize covers.
    causal = FrozenLM(AnswererConfig(model="tiny:causal-lm"), quantize="int8")
    assert not any(isinstance(m, DynamicLinear) for m in causal.model.modules())


def noise_image() -> Image.Image:
    generator = torch.Generator().manual_seed(3)
    return Image.fromarray(torch.randint(0, 256, (96, 128, 3), generator=generator, dtype=torch.uint8).numpy())


def relative_error(value: torch.Tensor, reference: torch.Tensor) -> float:
    return float((value.float() - reference.float()).norm() / reference.float().norm())


# The change bfloat16 or int8 makes to each stage's output against float32, relative (L2 norm of the difference
# over the norm of the float32 output; the map: largest difference over its peak). Measured here on the tiny models
# on 2026-11-30: bfloat16 0.0064 logits, 0.0061 encoder states, 0.0087 relevance; int8 0.021 logits, 0.020
# encoder states. The bounds leave about twice that.
TOLERANCE = {
    "bfloat16": {"relevance": 0.02, "encoder": 0.02, "logits": 0.02},
    "int8": {"encoder": 0.05, "logits": 0.05},
}


def caption_logits(captioner: PatchCaptioner, image: Image.Image) -> torch.Tensor:
    """Next-token logits of the caption decoder over fixed patches and a fixed caption (teacher forced)."""
    features = captioner.encode_image(image)
    states = features.embeds[:, 1:9].to(captioner.model.text_decoder.dtype)
    ids = torch.cat([captioner.prompt_ids, captioner.processor.tokenizer("a man riding a bike", add_special_tokens=False,
                                                                         return_tensors="pt").input_ids], dim=1)
    with torch.no_grad():
        return captioner.model.text_decoder(input_ids=ids, encoder_hidden_states=states).logits.float()


def t5_states_and_logits(lm: FrozenLM) -> tuple[torch.Tensor, torch.Tensor]:
    from transformers.modeling_outputs import BaseModelOutput

    with torch.no_grad():
        states = lm._encode_passages(PASSAGES)[None]
        decoder_ids = lm.tokenizer("a cup of coffee", return_tensors="pt").input_ids
        logits = lm.model(encoder_outputs=BaseModelOutput(last_hidden_state=states), decoder_input_ids=decoder_ids).logits
    return states.float(), logits.float()


@pytest.mark.parametrize("precision", ["bfloat16", "int8"])
def test_lower_precision_stays_within_the_stated_tolerance(precision: str) -> None:
    dtype, quantize = (precision, None) if precision == "bfloat16" else ("float32", "int8")
    bound = TOLERANCE[precision]
    config = preset("tiny")
    image = noise_image()
    reference_captioner, captioner = PatchCaptioner(config.captioner), PatchCaptioner(config.captioner, dtype=dtype,
                                                                                       quantize=quantize)
    logits_error = relative_error(caption_logits(captioner, image), caption_logits(reference_captioner, image))
    answerer = dataclasses.replace(config.answerer, model="tiny:t5", kind="fid")
    reference_states, reference_logits = t5_states_and_logits(FrozenLM(answerer))
    states, logits = t5_states_and_logits(FrozenLM(answerer, dtype=dtype, quantize=quantize))
    errors = {"logits": max(logits_error, relative_error(logits, reference_logits)),
              "encoder": relative_error(states, reference_states)}
    if precision == "bfloat16":  # GradCAM needs gradients, so the matcher is never quantized
        reference_map = ImageQuestionMatcher(config.matcher)(
            ImageQuestionMatcher(config.matcher).encode_image(image), ["what is it?"])[0].relevance
        matcher = ImageQuestionMatcher(config.matcher, dtype=dtype)
        relevance = matcher(matcher.encode_image(image), ["what is it?"])[0].relevance
        errors["relevance"] = float((relevance.float() - reference_map.float()).abs().max() / reference_map.max())
    for name, error in errors.items():
        assert 0 < error < bound[name], f"{precision} {name}: relative change {error:.4f} (bound {bound[name]})"


def test_int8_beside_bfloat16_quantizes_only_what_an_encoder_decoder_runs_per_token() -> None:
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    answerer = AnswererConfig(model="tiny:t5", kind="fid", max_new_tokens=6)
    bfloat16 = FrozenLM(answerer, dtype="bfloat16")
    mixed = FrozenLM(answerer, dtype="bfloat16", quantize="int8")
    encoder, decoder = mixed.model.get_encoder(), mixed.model.get_decoder()
    # The encoder, tied embedding included, is the bfloat16 model's: the same states.
    assert {p.dtype for p in encoder.parameters()} == {torch.bfloat16}
    states, logits = t5_states_and_logits(mixed)
    reference_states, reference_logits = t5_states_and_logits(bfloat16)
    assert torch.equal(states, reference_states)
    # In the decoder only the cross-attention keys and values keep bfloat16; every other Linear layer and the LM
    # head are int8, the cross-attention's query and output layers cast to and from bfloat16 around it.
    cross = [block.layer[1].EncDecAttention for block in decoder.block]
    assert {id(m) for m in decoder.modules() if type(m) is torch.nn.Linear} == {id(a.k) for a in cross} | {
        id(a.v) for a in cross}
    assert {a.k.weight.dtype for a in cross} | {a.v.weight.dtype for a in cross} == {torch.bfloat16}
    for attention in cross:
        assert isinstance(attention.q, models.Cast) and isinstance(attention.q.layer, DynamicLinear)
        assert (attention.q.outputs, attention.o.inputs) == (torch.bfloat16, torch.float32)
    assert isinstance(mixed.model.get_output_embeddings(), DynamicLinear)
    error = relative_error(logits, reference_logits)
    assert 0 < error < TOLERANCE["int8"]["logits"]
    assert mixed.generate_fused(PASSAGES).num_tokens <= answerer.max_new_tokens


def test_captions_cached_in_one_precision_are_not_reused_in_another(tmp_path) -> None:
    from zsvqa.cache import IntermediateCache

    image = tmp_path / "image.png"
    noise_image().save(image)
    cache = IntermediateCache(tmp_path / "cache.sqlite")
    float32 = Pipeline(preset("tiny"), cache)
    bfloat16 = Pipeline(preset("tiny").with_overrides({"dtype": "bfloat16"}), cache)
    assert float32._vision_description(image, "q?") != bfloat16._vision_description(image, "q?")
    same = Pipeline(preset("tiny").with_overrides({"dtype": "auto"}), cache)
    if models.cpu_runs_bfloat16():
        assert same._vision_description(image, "q?") == bfloat16._vision_description(image, "q?")
    else:
        assert same._vision_description(image, "q?") == float32._vision_description(image, "q?")


def t5_question_generator(**settings):  # type: ignore[no-untyped-def]
    from zsvqa.config import QuestionGenConfig
    from zsvqa.question_generation import T5Questions

    return T5Questions(QuestionGenConfig(backend="t5", model="tiny:t5", max_new_tokens=8, **settings), "cpu", "float32")


QG_CAPTIONS = ["a man riding a red bicycle down a city street", "two dogs", "a bus parked next to a tall building"]


def qg_requests():  # type: ignore[no-untyped-def]
    from zsvqa.candidates import AnswerCandidate
    from zsvqa.question_generation import QuestionRequest

    words = [("man", 0), ("bicycle", 0), ("dogs", 1), ("two", 1), ("bus", 2), ("building", 2), ("tall", 2)]
    return [QuestionRequest(AnswerCandidate(word, "noun", 1), QG_CAPTIONS[index], tuple(QG_CAPTIONS))
            for word, index in words]


def test_beam_search_skipping_the_cross_attention_reorder_gives_the_same_beams() -> None:
    from transformers import DynamicCache, EncoderDecoderCache

    from zsvqa.models import beam_search_cache, cache_argument

    generator = t5_question_generator()
    model, tokenizer = generator.model, generator.tokenizer
    texts = [f"answer: {word}  context: {caption}" for (word, caption) in
             [("man", QG_CAPTIONS[0]), ("dogs", QG_CAPTIONS[1]), ("bus", QG_CAPTIONS[2])]]
    encoded = tokenizer(texts, return_tensors="pt", padding=True)
    batch = {"input_ids": encoded.input_ids, "attention_mask": encoded.attention_mask}
    beam_orders: list[torch.Tensor] = []

    class RecordingCache(EncoderDecoderCache):  # transformers' own: reorders both parts
        def reorder_cache(self, beam_idx):  # type: ignore[no-untyped-def]
            beam_orders.append(beam_idx.clone())
            super().reorder_cache(beam_idx)

    def beams(cache):  # type: ignore[no-untyped-def]
        with torch.no_grad():
            return model.generate(**batch, num_beams=3, num_return_sequences=3, max_new_tokens=8, do_sample=False,
                                  return_dict_in_generate=True, output_scores=True, **{cache_argument(model): cache})

    fast, plain = beams(beam_search_cache()), beams(RecordingCache(DynamicCache(), DynamicCache()))
    assert torch.equal(fast.sequences, plain.sequences)
    torch.testing.assert_close(fast.sequences_scores, plain.sequences_scores, rtol=0, atol=1e-6)
    # Not vacuous: beams were really reordered (not the identity), always within one input's beams.
    assert any(not torch.equal(order, torch.arange(len(order))) for order in beam_orders)
    assert all(torch.equal(order // 3, torch.arange(len(order)) // 3) for order in beam_orders)


def test_long_question_generation_contexts_go_in_fewer_rows_with_the_same_questions(monkeypatch) -> None:
    from zsvqa import question_generation

    generator = t5_question_generator(batch_size=8, context="all")
    calls = spy_generate(monkeypatch, generator)
    wide = generator.questions(qg_requests())
    length = calls[0]["input_ids"].shape[1]
    heads = generator.model.config.num_heads
    monkeypatch.setattr(question_generation, "ATTENTION_BIAS_FLOATS", 3 * heads * length**2)
    assert generator.questions(qg_requests()) == wide
    assert [call["input_ids"].shape[0] for call in calls] == [7, 3, 3, 1]


def test_the_lm_head_reads_a_contiguous_input_in_bfloat16() -> None:
    # The last position's states are a strided slice; bfloat16 matmul copied the whole head per row for those.
    lm = FrozenLM(AnswererConfig(model="tiny:causal-lm", max_new_tokens=3), dtype="bfloat16")
    seen: list[bool] = []
    lm.model.get_output_embeddings().register_forward_hook(lambda m, args, out: seen.append(args[0].is_contiguous()))
    scores = lm.score_many(["the cat sat on the", "a dog ran"], [["mat", "sofa"], ["away"]])
    assert seen and all(seen) and all(math.isfinite(s) for row in scores for s in row)
