"""Question-guided captioning (PNP-VQA): for each caption, K image patches are sampled with probability
proportional to their relevance, and the BLIP captioner's text decoder writes a caption seeing only those
patch embeddings. Captions are sampled in batches; as in LAVIS, a caption contained in one already kept is
dropped, and only the missing ones are generated again."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from PIL import Image

from zsvqa.config import CaptionerConfig, PipelineConfig
from zsvqa.errors import InputError
from zsvqa.matching import ImageFeatures, encode_image, load_blip


@dataclass
class CaptionSet:
    captions: list[str]  # unique captions, at most N
    patch_indices: list[list[int]] = field(default_factory=list)  # the patches each caption saw ([] = all)
    generated: int = 0  # captions decoded in all, duplicates included
    rounds: int = 0  # generation rounds (1 + top-up rounds)


class PatchCaptioner:
    """(image features, patch relevance) -> N diverse captions, each conditioned on its own K sampled patches."""

    def __init__(
        self,
        config: CaptionerConfig,
        device: str = "cpu",
        dtype: str = "float32",
        vision_layer_norm_eps: float | None = PipelineConfig.vision_layer_norm_eps,
    ) -> None:
        from transformers import BlipForConditionalGeneration

        self.config = config
        self.device = device
        self.model, self.processor = load_blip(
            BlipForConditionalGeneration, config.model, "captioner", "--captioner-model", device, dtype,
            vision_layer_norm_eps,
        )
        text_config = self.model.config.text_config
        prompt_ids = self.processor.tokenizer(config.prompt, return_tensors="pt").input_ids
        # BLIP's decoder starts from its bos token in place of [CLS], and the prompt has no closing [SEP].
        prompt_ids[:, 0] = text_config.bos_token_id
        self.prompt_ids = prompt_ids[:, :-1].to(device)
        if config.max_length <= self.prompt_ids.shape[1]:
            raise InputError(
                f"captioner.max_length ({config.max_length}) counts the prompt's {self.prompt_ids.shape[1]} tokens "
                "and must exceed them"
            )
        self.eos_token_id = text_config.sep_token_id
        self.pad_token_id = text_config.pad_token_id

    def encode_image(self, image: Image.Image) -> ImageFeatures:
        return encode_image(self.model.vision_model, self.processor, image, self.device)

    def __call__(self, features: ImageFeatures, relevance: torch.Tensor | None, seed: int) -> CaptionSet:
        """N unique captions. `relevance` [rows, columns] is needed in "gradcam" mode and ignored otherwise."""
        probabilities = self._patch_probabilities(features, relevance)
        generator = torch.Generator().manual_seed(seed)
        result = CaptionSet([])
        kept: list[str] = []  # lower-cased, for the containment test
        while len(result.captions) < self.config.num_captions and result.rounds <= self.config.max_top_up_rounds:
            result.rounds += 1
            missing = self.config.num_captions - len(result.captions)
            for start in range(0, missing, self.config.batch_size):
                count = min(self.config.batch_size, missing - start)
                patches = self._sample_patches(probabilities, count, generator)
                for caption, indices in zip(self._generate(features, patches, generator), patches.tolist()):
                    result.generated += 1
                    key = caption.lower()
                    # As LAVIS: a caption contained in one already kept is dropped (the longer one stays).
                    if caption and not any(key in k for k in kept):
                        kept.append(key)
                        result.captions.append(caption)
                        result.patch_indices.append(indices if probabilities is not None else [])
        return result

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
        config, prompt_length = self.config, self.prompt_ids.shape[1]
        if config.decoding == "sample":
            decoding = {"do_sample": True, "top_k": config.top_k}
        else:
            decoding = {"do_sample": False, "num_beams": config.num_beams if config.decoding == "beam" else 1}
        # Top-k sampling draws from torch's global generator; seed it from ours and restore it afterwards.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=generator)))
            output = self.model.text_decoder.generate(
                input_ids=self.prompt_ids.expand(count, -1),
                encoder_hidden_states=states,
                encoder_attention_mask=torch.ones(states.shape[:2], dtype=torch.long, device=self.device),
                eos_token_id=self.eos_token_id,
                pad_token_id=self.pad_token_id,
                # The lengths count the prompt, as LAVIS's min_length / max_length do.
                min_new_tokens=max(0, config.min_length - prompt_length),
                max_new_tokens=config.max_length - prompt_length,
                **decoding,
            )
        texts = self.processor.tokenizer.batch_decode(output[:, self.prompt_ids.shape[1] :], skip_special_tokens=True)
        return [" ".join(text.split()) for text in texts]
