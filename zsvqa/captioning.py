"""Question-guided captioning (PNP-VQA): for each caption, K image patches are sampled with probability
proportional to their relevance, and the BLIP captioner's text decoder writes a caption seeing only those
patch embeddings. Captions are generated in batches; as in LAVIS, a caption contained in one already kept is
dropped (and with Img2LLM's filter, one whose ITM score is too low), and generation goes on for the missing
ones, for a bounded number of rounds."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import torch
import torch.nn.functional as F
from PIL import Image

from zsvqa.config import CaptionerConfig, PipelineConfig
from zsvqa.errors import ModelLoadError
from zsvqa.matching import ImageFeatures, encode_image, load_blip, patch_grid
from zsvqa.models import quantize_int8

# Texts -> the ITM match probability of each with the image (built by the pipeline from the matcher).
Scorer = Callable[[list[str]], list[float]]


@dataclass
class RemovedCaption:
    """A decoded caption that was not kept: "duplicate" (contained in a kept one) or "filtered" (ITM score under
    the threshold, `score` set)."""

    text: str
    reason: str
    score: float | None = None


@dataclass
class CaptionSet:
    captions: list[str]  # kept captions, at most N
    patch_indices: list[list[int]] = field(default_factory=list)  # the patches each caption saw ([] = all)
    generated: int = 0  # captions decoded in all, duplicates and filtered ones included
    filtered_out: int = 0  # decoded captions dropped for an ITM score under the threshold
    rounds: int = 0  # generation rounds (1 + top-up rounds)
    removed: list[RemovedCaption] = field(default_factory=list)  # decoded captions dropped, in decoding order
    grid: tuple[int, int] | None = None  # patch rows, columns that patch_indices count in (row-major)


class PatchCaptioner:
    """(image features, patch relevance) -> N diverse captions, each conditioned on its own K sampled patches."""

    def __init__(
        self,
        config: CaptionerConfig,
        device: str = "cpu",
        dtype: str = "float32",
        vision_layer_norm_eps: float | None = PipelineConfig.vision_layer_norm_eps,
        quantize: str | None = None,
    ) -> None:
        from transformers import BlipForConditionalGeneration

        self.config = config
        self.device = device
        self.model, self.processor = load_blip(
            BlipForConditionalGeneration, config.model, "captioner", "--captioner-model", device, dtype,
            vision_layer_norm_eps,
        )
        if quantize:  # the text decoder only: the vision transformer keeps `dtype`
            quantize_int8(self.model.text_decoder)
        text_config = self.model.config.text_config
        prompt_ids = self.processor.tokenizer(config.prompt, return_tensors="pt").input_ids
        # BLIP's decoder starts from its bos token in place of [CLS], and the prompt has no closing [SEP].
        prompt_ids[:, 0] = text_config.bos_token_id
        self.prompt_ids = prompt_ids[:, :-1].to(device)
        # Model-dependent limits are ModelLoadErrors: they stop an evaluation instead of failing every question.
        if config.max_length <= self.prompt_ids.shape[1]:
            raise ModelLoadError(
                f"captioner.max_length ({config.max_length}) counts the prompt's {self.prompt_ids.shape[1]} tokens "
                "and must exceed them"
            )
        rows, columns = patch_grid(self.model.config.vision_config)
        if config.relevance != "full" and config.num_patches > rows * columns:
            raise ModelLoadError(
                f"captioner.num_patches ({config.num_patches}) exceeds the {rows * columns} patches ({rows}x{columns}) "
                f"of the captioner model {config.model!r}'s images; set it to at most {rows * columns}"
            )
        self.eos_token_id = text_config.sep_token_id
        self.pad_token_id = text_config.pad_token_id

    def encode_image(self, image: Image.Image) -> ImageFeatures:
        return encode_image(self.model.vision_model, self.processor, image, self.device)

    def __call__(
        self, features: ImageFeatures, relevance: torch.Tensor | None, seed: int, scorer: Scorer | None = None
    ) -> CaptionSet:
        """Up to N distinct captions. `relevance` [rows, columns] is needed in "gradcam" mode and ignored otherwise.

        With a `scorer` and a `filter_threshold` (Img2LLM), a caption is kept only if its score reaches the
        threshold, and generation goes on until N pass or the rounds run out; if none passes, the best-scoring
        caption is kept so the question never goes without context.
        """
        threshold = self.config.filter_threshold if scorer is not None else None
        probabilities = self._patch_probabilities(features, relevance)
        generator = torch.Generator().manual_seed(seed)
        result = CaptionSet([], grid=features.grid)
        kept: list[str] = []  # lower-cased, for the containment test
        best_rejected: tuple[float, str, list[int]] | None = None
        while len(kept) < self.config.num_captions and result.rounds <= self.config.max_top_up_rounds:
            result.rounds += 1
            count = self._round_size(result, threshold is not None)
            for start in range(0, count, self.config.batch_size):
                if len(kept) == self.config.num_captions:
                    break
                patches = self._sample_patches(probabilities, min(self.config.batch_size, count - start), generator)
                captions = self._generate(features, patches, generator)
                result.generated += len(captions)
                scores = scorer(captions) if threshold is not None and scorer else [None] * len(captions)
                for caption, indices, score in zip(captions, patches.tolist(), scores):
                    key = caption.lower()
                    # As LAVIS: a caption contained in one already kept is dropped (the longer one stays).
                    if len(kept) == self.config.num_captions or not caption:
                        continue
                    if any(key in k for k in kept):
                        result.removed.append(RemovedCaption(caption, "duplicate"))
                        continue
                    if score is not None and score < threshold:
                        result.filtered_out += 1
                        result.removed.append(RemovedCaption(caption, "filtered", float(score)))
                        if best_rejected is None or score > best_rejected[0]:
                            best_rejected = (score, caption, indices)
                        continue
                    kept.append(key)
                    result.captions.append(caption)
                    result.patch_indices.append(indices if probabilities is not None else [])
        if not result.captions and best_rejected is not None:
            result.captions.append(best_rejected[1])
            result.patch_indices.append(best_rejected[2] if probabilities is not None else [])
            result.filtered_out -= 1
            result.removed = [r for r in result.removed if r.text != best_rejected[1] or r.reason != "filtered"]
        return result

    def _round_size(self, result: CaptionSet, filtering: bool) -> int:
        """The missing captions; with the filter, scaled up by the share of decoded captions kept so far (at most
        N, what LAVIS decodes every round), so a low pass rate needs few rounds."""
        missing = self.config.num_captions - len(result.captions)
        if not filtering or result.generated == 0:
            return missing
        kept_share = max(len(result.captions), 1) / result.generated
        return min(self.config.num_captions, math.ceil(missing / kept_share))

    def _patch_probabilities(self, features: ImageFeatures, relevance: torch.Tensor | None) -> torch.Tensor | None:
        mode = self.config.relevance
        if mode == "full":
            return None
        patches = features.embeds.shape[1] - 1
        if mode == "uniform" or relevance is None:
            if mode == "gradcam":
                raise ValueError("gradcam captioning needs a relevance map")
            return torch.full((patches,), 1.0 / patches)
        relevance = relevance.float().cpu()
        if tuple(relevance.shape) != features.grid:  # the matcher and captioner see different patch grids
            relevance = F.interpolate(relevance[None, None], size=features.grid, mode="bilinear", align_corners=False)
        flat = relevance.reshape(-1).clamp(min=0)
        # Sampling K without replacement needs at least K patches with non-zero probability.
        if int((flat > 0).sum()) < min(self.config.num_patches, patches):
            flat = flat + 1e-6 * flat.sum().clamp(min=1e-12)
        return flat / flat.sum()

    def _sample_patches(self, probabilities: torch.Tensor | None, count: int, generator: torch.Generator) -> torch.Tensor:
        if probabilities is None:
            return torch.empty(count, 0, dtype=torch.long)
        k = min(self.config.num_patches, probabilities.numel())
        patches = torch.multinomial(probabilities.expand(count, -1), k, replacement=False, generator=generator)
        return patches.sort(dim=1).values  # in image order, as LAVIS (cross-attention does not depend on the order)

    @torch.no_grad()
    def _generate(self, features: ImageFeatures, patches: torch.Tensor, generator: torch.Generator) -> list[str]:
        count = patches.shape[0]
        if patches.shape[1] == 0:  # "full": the whole image, [CLS] included
            states = features.embeds.expand(count, -1, -1)
        else:
            states = features.embeds[0, 1:][patches.to(self.device)]  # [count, K, hidden], no [CLS]
        states = states.to(self.model.text_decoder.dtype)  # a quantized decoder runs in float32
        if self.config.decoding == "sample" and self.config.sampler == "top_k":
            output = self._sample_top_k(states, generator)
        else:
            output = self._transformers_generate(states, generator)
        return self.decode(output)

    def decode(self, tokens: torch.Tensor) -> list[str]:
        """Captions from the decoder's token ids [captions, prompt + new tokens], whitespace tidied."""
        texts = self.processor.tokenizer.batch_decode(tokens[:, self.prompt_ids.shape[1] :], skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]

    def _transformers_generate(self, states: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        config, prompt_length = self.config, self.prompt_ids.shape[1]
        if config.decoding == "sample":
            decoding = {"do_sample": True, "top_k": config.top_k}
        else:
            decoding = {"do_sample": False, "num_beams": config.num_beams if config.decoding == "beam" else 1}
        # Top-k sampling draws from torch's global generator; seed it from ours and restore it afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            return self.model.text_decoder.generate(
                input_ids=self.prompt_ids.expand(states.shape[0], -1),
                encoder_hidden_states=states,
                encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long, device=self.device),
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
                # The lengths count the prompt, as LAVIS's min_length / max_length do.
                min_new_tokens=max(0, config.min_length - prompt_length),
                max_new_tokens=config.max_length - prompt_length,
                **decoding,
            )

    def _sample_top_k(self, states: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """The token ids `generate(do_sample=True, top_k=...)` would return (the prompt, then new tokens, pad after
        an end token), each drawn by `sample_top_k`. A caption that has ended leaves the batch, cache included."""
        config, decoder = self.config, self.model.text_decoder
        count, prompt_length = states.shape[0], self.prompt_ids.shape[1]
        min_new_tokens = max(0, config.min_length - prompt_length)
        max_new_tokens = config.max_length - prompt_length
        if torch.device(self.device).type != "cpu":  # torch.multinomial draws with a generator of its device
            seed = int(torch.randint(0, 2**31 - 1, (1,), generator=generator))
            generator = torch.Generator(self.device).manual_seed(seed)
        tokens = torch.full((count, max_new_tokens), self.pad_token_id, dtype=torch.long, device=self.device)
        rows = torch.arange(count, device=self.device)  # the unfinished captions' rows of `tokens`
        input_ids, cache = self.prompt_ids.expand(count, -1), None
        for step in range(max_new_tokens):
            output = decoder(
                input_ids=input_ids, encoder_hidden_states=states, cache=cache, use_cache=True, logits_to_keep=1
            )
            logits, cache = output.logits[:, -1], output.cache
            if step < min_new_tokens:
                logits[:, self.eos_token_id] = -math.inf
            next_tokens = sample_top_k(logits, config.top_k, generator)
            tokens[rows, step] = next_tokens
            running = next_tokens != self.eos_token_id
            if not running.any():
                return torch.cat([self.prompt_ids.expand(count, -1), tokens[:, : step + 1]], dim=1)
            if not running.all():
                keep = running.nonzero().squeeze(1)
                rows, states, next_tokens = rows[keep], states[keep], next_tokens[keep]
                cache.batch_select_indices(keep)
            input_ids = next_tokens[:, None]
        return torch.cat([self.prompt_ids.expand(count, -1), tokens], dim=1)


def sample_top_k(logits: torch.Tensor, k: int, generator: torch.Generator) -> torch.Tensor:
    """One token per row of `logits` [rows, vocabulary], drawn from the softmax over the row's k largest logits.

    transformers' top-k sampling sets every other logit to -inf and draws over the whole vocabulary; drawing over
    the k candidates gives the same distribution at a fraction of the cost. As its TopKLogitsWarper, logits tied
    with the k-th largest are kept too (ties are common in bfloat16).
    """
    k = min(k, logits.shape[-1])
    values, indices = logits.topk(k)
    threshold = values[:, -1:]
    kept = int((logits >= threshold).sum(dim=-1).max())
    if kept > k:
        values, indices = logits.topk(kept)
        values = values.masked_fill(values < threshold, -math.inf)
    probabilities = values.float().softmax(dim=-1)  # generate samples from float32 probabilities too
    choice = torch.multinomial(probabilities, 1, generator=generator)
    return indices.gather(-1, choice).squeeze(-1)
