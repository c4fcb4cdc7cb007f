"""Image-question matching with BLIP ITM, and GradCAM relevance of image patches to the question (PNP-VQA).

The relevance is read from the text encoder's cross-attention at one layer: the attention map times its
clamped gradient with respect to the ITM "match" logit, averaged over heads and over the question's tokens.

Efficiency: the image is encoded once, without gradient, and reused for every question. All parameters are
frozen and the cross-attention map is turned into the only leaf that needs a gradient, so autograd records
just the layers above it and the ITM head: no backward pass through the vision transformer.
`full_backward_gradcam` is the naive reference (a full backward pass), kept for tests and benchmarks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import torch
from PIL import Image

from zsvqa.config import MatcherConfig, PipelineConfig
from zsvqa.errors import ModelLoadError
from zsvqa.models import load_frozen

# LAVIS's BlipITM truncates texts to this many tokens (max_txt_len).
MAX_TEXT_TOKENS = 35


@dataclass
class ImageFeatures:
    """One image encoded by a BLIP vision transformer: [1, 1 + patches, hidden], the first token is [CLS]."""

    embeds: torch.Tensor
    grid: tuple[int, int]  # patch rows, columns


@dataclass
class MatchResult:
    question: str
    itm_score: float  # probability that the question matches the image
    relevance: torch.Tensor  # [rows, columns] over image patches, non-negative, sums to one


def patch_grid(vision_config: Any) -> tuple[int, int]:
    side = vision_config.image_size // vision_config.patch_size
    return side, side


class BlipPilProcessor:
    """Loads a BLIP processor whose image processor is the PIL one, whether or not torchvision is installed.

    With torchvision, transformers picks its torchvision image processor, whose bicubic resize differs from PIL's
    (up to 0.13 in normalised units on a 640x480 photo); LAVIS resizes with PIL (torchvision's Resize on a PIL
    image), and the PIL image processor gives its pixels."""

    @staticmethod
    def from_pretrained(location: str, **kwargs: Any) -> Any:
        import transformers

        # transformers 5 names the PIL one BlipImageProcessorPil; before, BlipImageProcessor was the PIL one.
        image_processor = getattr(transformers, "BlipImageProcessorPil", None) or transformers.BlipImageProcessor
        return transformers.BlipProcessor(
            image_processor=image_processor.from_pretrained(location, **kwargs),
            tokenizer=transformers.AutoTokenizer.from_pretrained(location, **kwargs),
        )


def load_blip(
    cls: Any, name: str, role: str, option: str, device: str, dtype: str, vision_layer_norm_eps: float | None
) -> tuple[Any, Any]:
    """A frozen BLIP model and its processor (PIL image processing, as LAVIS); the vision transformer's LayerNorms
    get `vision_layer_norm_eps` (None keeps the checkpoint's). Every BLIP model zsvqa loads comes through here."""
    model, processor = load_frozen(cls, name, role, option, device, preprocessor_cls=BlipPilProcessor, dtype=dtype)
    if vision_layer_norm_eps is not None:
        model.config.vision_config.layer_norm_eps = vision_layer_norm_eps
        for module in model.vision_model.modules():
            if isinstance(module, torch.nn.LayerNorm):
                module.eps = vision_layer_norm_eps
    return model, processor


def enc_token_id(tokenizer: Any, text_config: Any) -> int:
    """The id of BLIP's [ENC] token. BLIP's text vocabulary is bert-base-uncased, then [DEC] (the decoder's bos),
    then [ENC]; a tokenizer that does not list [ENC] still has it right after [DEC]."""
    token_id = tokenizer.convert_tokens_to_ids("[ENC]")
    if token_id is not None and token_id != tokenizer.unk_token_id:
        return int(token_id)
    token_id = text_config.bos_token_id + 1
    if token_id >= text_config.vocab_size:
        raise ModelLoadError("the image-text matching model's vocabulary has no [ENC] token; set matcher.enc_token off")
    return token_id


def encode_image(vision_model: Any, processor: Any, image: Image.Image, device: str) -> ImageFeatures:
    """BLIP vision features of one image, without gradient (shared by the matcher and the captioner)."""
    pixel_values = processor(images=image, return_tensors="pt").pixel_values.to(device)
    with torch.no_grad():
        embeds = vision_model(pixel_values=pixel_values.to(vision_model.dtype)).last_hidden_state
    return ImageFeatures(embeds, patch_grid(vision_model.config))


def gradcam_map(
    attention: torch.Tensor, gradient: torch.Tensor, token_mask: torch.Tensor, grid: tuple[int, int]
) -> torch.Tensor:
    """[batch, heads, text, 1 + patches] attention and gradient -> [batch, rows, columns] relevance (unnormalized).

    `token_mask` [batch, text] marks the question's own tokens (no special tokens, no padding).
    """
    cam = (gradient.clamp(min=0) * attention).mean(dim=1)  # over heads: [batch, text, 1 + patches]
    weights = token_mask.to(cam.dtype).unsqueeze(-1)
    cam = (cam * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1)  # over question tokens
    return cam[:, 1:].reshape(cam.shape[0], *grid)  # drop the image [CLS] column


def normalize_relevance(cam: torch.Tensor) -> torch.Tensor:
    """Relevance that sums to one; a map with no positive mass (possible with random weights) becomes uniform."""
    cam = cam.clamp(min=0).float()
    total = cam.sum()
    return cam / total if total > 0 else torch.full_like(cam, 1.0 / cam.numel())


class ImageQuestionMatcher:
    """BLIP ITM: match scores and GradCAM patch relevance for questions about one image."""

    def __init__(
        self,
        config: MatcherConfig,
        device: str = "cpu",
        dtype: str = "float32",
        vision_layer_norm_eps: float | None = PipelineConfig.vision_layer_norm_eps,
    ) -> None:
        from transformers import BlipForImageTextRetrieval

        self.config = config
        self.device = device
        self.model, self.processor = load_blip(
            BlipForImageTextRetrieval, config.model, "image-text matching", "--itm-model", device, dtype,
            vision_layer_norm_eps,
        )
        layers = len(self.model.text_encoder.encoder.layer)
        if not 0 <= config.gradcam_layer < layers:
            raise ModelLoadError(f"matcher.gradcam_layer must be in 0..{layers - 1}; got {config.gradcam_layer}")
        text_config = self.model.config.text_config
        self.first_token_id = enc_token_id(self.processor.tokenizer, text_config) if config.enc_token else None

    def encode_image(self, image: Image.Image) -> ImageFeatures:
        return encode_image(self.model.vision_model, self.processor, image, self.device)

    def __call__(self, features: ImageFeatures, questions: list[str]) -> list[MatchResult]:
        """ITM score and relevance map for each question, batched, reusing the image features."""
        results: list[MatchResult] = []
        for start in range(0, len(questions), self.config.batch_size):
            batch = questions[start : start + self.config.batch_size]
            probabilities, cams = self._gradcam(features, batch)
            results += [
                MatchResult(q, p, normalize_relevance(c)) for q, p, c in zip(batch, probabilities.tolist(), cams)
            ]
        return results

    @torch.no_grad()
    def match_probabilities(self, features: ImageFeatures, texts: list[str]) -> list[float]:
        """ITM match probability of each text with the image (used to filter captions)."""
        scores: list[float] = []
        for start in range(0, len(texts), self.config.batch_size):
            tokens = self._tokenize(texts[start : start + self.config.batch_size])
            logits = self._itm_logits(features, tokens)
            scores += logits.softmax(-1)[:, 1].tolist()
        return scores

    def _tokenize_questions(self, questions: list[str]) -> Any:
        return self._tokenize([q.strip("?") if self.config.strip_question_mark else q for q in questions])

    def _tokenize(self, texts: list[str]) -> Any:
        tokens = self.processor.tokenizer(
            texts, padding=True, truncation=True, max_length=MAX_TEXT_TOKENS, return_tensors="pt",
            return_special_tokens_mask=True,
        )
        if self.first_token_id is not None:
            tokens["input_ids"][:, 0] = self.first_token_id  # [ENC] in place of [CLS], as BLIP's ITM was trained
        return tokens.to(self.device)

    def _itm_logits(self, features: ImageFeatures, tokens: Any) -> torch.Tensor:
        # The image states keep batch size one: cross-attention broadcasts them over the texts, so the keys and
        # values of the image tokens are projected once per layer, not once per text.
        hidden = self.model.text_encoder(
            input_ids=tokens.input_ids,
            attention_mask=tokens.attention_mask,
            encoder_hidden_states=features.embeds,
            encoder_attention_mask=torch.ones(features.embeds.shape[:2], dtype=torch.long, device=self.device),
        ).last_hidden_state
        return self.model.itm_head(hidden[:, 0, :]).float()

    def _gradcam(self, features: ImageFeatures, questions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self._tokenize_questions(questions)
        captured: dict[str, torch.Tensor] = {}

        def make_leaf(attention: torch.Tensor) -> torch.Tensor:
            # Everything below this point ran without autograd; the map becomes the one leaf with a gradient.
            leaf = attention.detach().requires_grad_(True)
            captured["map"] = leaf
            return leaf

        with torch.enable_grad(), capture_cross_attention(self.model, self.config.gradcam_layer, make_leaf):
            logits = self._itm_logits(features, tokens)
            (gradient,) = torch.autograd.grad(logits[:, 1].sum(), captured["map"])
        question_tokens = tokens.attention_mask.bool() & ~tokens.special_tokens_mask.bool()
        cams = gradcam_map(captured["map"].detach(), gradient, question_tokens, features.grid)
        return logits.detach().softmax(-1)[:, 1], cams


class capture_cross_attention:
    """Context manager: passes the cross-attention probabilities of one text-encoder layer through `transform`.

    BLIP applies dropout to the attention probabilities right before using them, so a forward hook on that
    dropout sees (and may replace) exactly the map the rest of the network consumes.
    """

    def __init__(self, model: Any, layer: int, transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.module = model.text_encoder.encoder.layer[layer].crossattention.self.dropout
        self.transform = transform
        self.handle: Any = None

    def __enter__(self) -> capture_cross_attention:
        self.handle = self.module.register_forward_hook(lambda module, args, output: self.transform(output))
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.remove()


def full_backward_gradcam(matcher: ImageQuestionMatcher, image: Image.Image, questions: list[str]) -> torch.Tensor:
    """The naive reference: the whole model (vision transformer included) with gradients on, one full backward.

    Returns unnormalized [questions, rows, columns] maps; for tests and benchmarks only.
    """
    model = matcher.model
    tokens = matcher._tokenize_questions(questions)
    pixel_values = matcher.processor(images=[image] * len(questions), return_tensors="pt").pixel_values
    captured: dict[str, torch.Tensor] = {}

    def keep(attention: torch.Tensor) -> torch.Tensor:
        attention.retain_grad()
        captured["map"] = attention
        return attention

    model.requires_grad_(True)
    try:
        with torch.enable_grad(), capture_cross_attention(model, matcher.config.gradcam_layer, keep):
            output = model(
                input_ids=tokens.input_ids,
                attention_mask=tokens.attention_mask,
                pixel_values=pixel_values.to(matcher.device),
                use_itm_head=True,
            )
            output.itm_score[:, 1].sum().backward()
    finally:
        model.requires_grad_(False)
        model.zero_grad(set_to_none=True)
    question_tokens = tokens.attention_mask.bool() & ~tokens.special_tokens_mask.bool()
    return gradcam_map(captured["map"].detach(), captured["map"].grad, question_tokens, patch_grid(model.config.vision_config))
