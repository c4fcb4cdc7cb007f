"""The vision half (PNP-VQA): for each question about an image, the matcher's relevance of the image's patches
to the question, and captions of patches sampled by that relevance (with Img2LLM's ITM filter, optionally). The
image is encoded once for all of its questions."""

from __future__ import annotations

import dataclasses
import hashlib
import zlib
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from zsvqa.captioning import PatchCaptioner, RemovedCaption
from zsvqa.config import PipelineConfig
from zsvqa.inputs import model_question
from zsvqa.matching import ImageFeatures, ImageQuestionMatcher
from zsvqa.timing import timed


@dataclass
class QuestionCaptions:
    """What the vision half gives the text half for one question."""

    question: str
    captions: list[str]
    itm_score: float | None = None
    relevance: list[list[float]] | None = None  # [rows][columns], sums to one
    generated: int = 0  # captions decoded, duplicates and filtered ones included
    filtered_out: int = 0  # decoded captions the ITM filter rejected
    timings: dict[str, float] = field(default_factory=dict)
    cached: list[str] = field(default_factory=list)  # stages read from the disk cache (or reused in memory)
    patch_indices: list[list[int]] = field(default_factory=list)  # per kept caption, the patches it saw ([] = all)
    patch_grid: tuple[int, int] | None = None  # the captioner's patch rows, columns (row-major patch indices)
    removed: list[RemovedCaption] = field(default_factory=list)  # decoded captions de-duplicated or filtered out


@dataclass
class ImageEncoding:
    """One image encoded for both vision models."""

    match: ImageFeatures | None  # the matcher's, where relevance or the caption filter needs them
    caption: ImageFeatures


def uses_matcher(config: PipelineConfig) -> bool:
    """Whether the matcher runs: for Grad-CAM relevance, or for the caption filter."""
    return config.captioner.relevance == "gradcam" or config.captioner.filter_threshold is not None


def image_key(picture: Image.Image) -> str:
    """An in-memory image by content: the same picture uploaded again finds its features."""
    digest = hashlib.sha1(picture.tobytes())
    digest.update(f"{picture.mode}{picture.size}".encode())
    return digest.hexdigest()


class VisionHalf:
    """An encoded image and its questions -> each question's captions."""

    def __init__(self, config: PipelineConfig, captioner: PatchCaptioner, matcher: ImageQuestionMatcher | None) -> None:
        self.config = config
        self.captioner = captioner
        self.matcher = matcher

    def encode(self, picture: Image.Image) -> ImageEncoding:
        match = self.matcher.encode_image(picture) if self.matcher else None
        return ImageEncoding(match, self.captioner.encode_image(picture))

    def __call__(
        self, image: ImageEncoding, questions: list[str], shared: dict[str, float], reused: bool
    ) -> list[QuestionCaptions]:
        """`shared`: the image-level stages' seconds so far (image_features), which every question shares;
        `reused`: the image's features came from memory."""
        matches: list[Any] = [None] * len(questions)
        if self.config.captioner.relevance == "gradcam":
            with timed(shared, "relevance"):
                matches = self.matcher(image.match, [model_question(q, self.config.blip_question) for q in questions])
        results = []
        for question, match in zip(questions, matches):
            # Image-level work is shared: each question carries its part of it.
            timings = {stage: seconds / len(questions) for stage, seconds in shared.items()}
            captions = self._captions(image, question, match, timings)
            results.append(QuestionCaptions(
                question=question,
                captions=captions.captions,
                itm_score=match.itm_score if match else None,
                relevance=match.relevance.tolist() if match else None,
                generated=captions.generated,
                filtered_out=captions.filtered_out,
                timings=timings,
                cached=["image_features"] if reused else [],
                patch_indices=captions.patch_indices,
                patch_grid=captions.grid,
                removed=captions.removed,
            ))
        return results

    def _captions(self, image: ImageEncoding, question: str, match: Any, timings: dict[str, float]) -> Any:
        def itm_scores(texts: list[str]) -> list[float]:  # Img2LLM's caption filter, applied by the captioner
            with timed(timings, "caption_filter"):
                return self.matcher.match_probabilities(image.match, texts)

        scorer = itm_scores if self.config.captioner.filter_threshold is not None else None
        with timed(timings, "captioning"):
            relevance = match.relevance if match else None
            captions = self.captioner(image.caption, relevance, self._seed_for(question), scorer)
        timings["captioning"] -= timings.get("caption_filter", 0.0)  # the filter ran inside; reported apart
        return captions

    def _seed_for(self, question: str) -> int:
        """A per-question seed: reproducible whatever the order or grouping of questions."""
        return (self.config.seed * 1_000_003 + zlib.crc32(question.encode("utf-8"))) % (2**31 - 1)


def stored_captions(stored: dict[str, Any]) -> QuestionCaptions:
    """Captions an earlier run made: their stages cost nothing now, so they are timed 0 and named as cached."""
    stages = sorted(stored.get("timings", {}))
    grid = stored.get("patch_grid")
    removed = [RemovedCaption(**r) for r in stored.get("removed", [])]
    return QuestionCaptions(**{
        **stored, "timings": dict.fromkeys(stages, 0.0), "cached": stages, "removed": removed,
        "patch_grid": tuple(grid) if grid else None,
    })


def captions_description(
    config: PipelineConfig, precision: tuple[str, str | None], image_identity: dict[str, Any], question: str
) -> dict[str, Any]:
    """Everything a question's captions depend on."""
    return {
        "image": image_identity,
        "question": question,
        "matcher": dataclasses.asdict(config.matcher) if uses_matcher(config) else None,
        "captioner": dataclasses.asdict(config.captioner),
        "vision_layer_norm_eps": config.vision_layer_norm_eps,
        "exif_orientation": config.exif_orientation,
        "blip_question": config.blip_question,
        "seed": config.seed,
        # Precision changes captions a little: a bfloat16 or int8 run never reuses float32 captions.
        "dtype": precision[0],
        "quantize": precision[1],
    }
