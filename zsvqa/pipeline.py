"""The pipeline: composes the stages, each through its one public call. Stages load lazily, so answering from
captions never loads a vision model."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import logging
import os
import time
import zlib
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import torch
from PIL import Image

from zsvqa.answering import CONTENT_FREE_INPUT, Answer, Answerer, AnswerRequest, FrozenLM, question_kind
from zsvqa.cache import IntermediateCache, file_identity
from zsvqa.candidates import AnswerCandidate, AnswerCandidateExtractor
from zsvqa.captioning import PatchCaptioner, RemovedCaption
from zsvqa.config import PipelineConfig, preset
from zsvqa.errors import InputError, check_type
from zsvqa.grounding import CaptionGrounder
from zsvqa.images import check_image_path, load_image
from zsvqa.matching import ImageFeatures, ImageQuestionMatcher
from zsvqa.models import resolve_dtype
from zsvqa.normalize import clean_caption
from zsvqa.prompting import PromptBuilder, QAExemplar, chat_overhead_tokens, chat_prompt
from zsvqa.question_generation import QuestionGenerator, SyntheticQA
from zsvqa.retrieval import ExemplarRetriever

log = logging.getLogger(__name__)
IMAGE_FEATURES_KEPT = 4  # images whose vision features a pipeline keeps in memory
TEXT_SIDES_KEPT = 16  # caption sets whose candidates and synthetic questions a pipeline keeps in memory
EMPTY_QUESTION = "the question is empty"
TINY_WARNING = "random models (tiny or random: names) are in use: captions and answers are meaningless noise"


@dataclass
class VQAResult:
    question: str
    answer: str  # short answer as the model wrote it (lower case, trimmed); scoring normalizes as VQA does
    raw_answer: str  # the model's continuation up to the first newline
    logprob: float
    captions: list[str]  # the captions in the prompt
    exemplars: list[QAExemplar]  # the QA exemplars in the prompt
    prompt: str
    candidates: list[str]  # answer candidates pulled from the captions
    all_captions: list[str]  # every caption available before selection
    timings: dict[str, float] = field(default_factory=dict)  # seconds per stage
    itm_score: float | None = None  # image-question match probability (with an image)
    relevance: list[list[float]] | None = None  # patch relevance grid, sums to one (with an image)
    warning: str | None = None
    choice_scores: dict[str, float] | None = None  # with answerer.selection score / calibrated
    retrieval_similarity: str | None = None  # with retrieved exemplars: "question+image" or "question"
    cached: list[str] = field(default_factory=list)  # stages read from the disk cache, timed 0: not spent here
    given_choice_scores: dict[str, float] | None = None  # given choices (multiple choice) by log-likelihood

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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
class _Plan:
    """One question's prompts, ready for the LM, and what its result needs besides the answer."""

    question: str
    captions: list[str]
    timings: dict[str, float]
    cached: list[str]
    candidates: list[str]
    requests: list[AnswerRequest]
    similarity: Any  # retrieval similarity, when exemplars were retrieved


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    """Adds the block's seconds to `timings[stage]`; under torch.profiler the block shows as "zsvqa.<stage>"."""
    start = time.perf_counter()
    try:
        with torch.profiler.record_function(f"zsvqa.{stage}"):
            yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def as_texts(name: str, value: Any) -> list[str]:
    """A str or a list (or tuple) of str as a list. A single str is one item, never a sequence of characters."""
    if isinstance(value, str):
        return [value]
    check_type(name, value, (list, tuple), "a string or a list of strings")
    for index, item in enumerate(value):
        check_type(f"{name}[{index}]", item, str, "a string")
    return list(value)


def check_image(image: Any) -> None:
    check_type("image", image, (str, os.PathLike, Image.Image), "a file path or a PIL image")


def check_question(question: str) -> str:
    check_type("question", question, str, "a string")
    if not question.strip():
        raise InputError(EMPTY_QUESTION)
    return " ".join(question.split())


class Pipeline:
    """A reusable zero-shot VQA pipeline built from a `PipelineConfig` (see `zsvqa.config.preset`).

    With a `cache`, captions and synthetic QA pairs are kept on disk across runs (see `zsvqa.cache`).
    """

    def __init__(self, config: PipelineConfig, cache: IntermediateCache | None = None) -> None:
        check_type("config", config, PipelineConfig, "a PipelineConfig (see zsvqa.preset)")
        if cache is not None:
            check_type("cache", cache, IntermediateCache, "an IntermediateCache or None")
        self.config = config.validate()
        self.cache = cache
        self.dtype = resolve_dtype(config.dtype, config.device)  # what "auto" means on this machine
        if config.prompt.exemplars == "retrieved" and not config.retrieval.index:
            raise InputError(
                f"the {config.name} setting uses retrieved exemplars, which need an index: build one with "
                "`run.py index` and pass it with --exemplars DIR (or use --exemplar-source none)"
            )
        models = [config.matcher.model, config.captioner.model, config.question_gen.model, config.answerer.model]
        self.warning = TINY_WARNING if any(m.startswith(("tiny:", "random:")) for m in models) else None
        if self.warning:
            log.warning(self.warning)
        # Vision features of the last few in-memory images: several questions about one image, asked one call at
        # a time (the demo), encode it once.
        self._image_features: OrderedDict[str, tuple[ImageFeatures | None, ImageFeatures]] = OrderedDict()
        # Text-side results per caption set: several questions often share one set of captions.
        self._text_side_cache: OrderedDict[tuple[str, ...], tuple[list[AnswerCandidate], SyntheticQA]] = OrderedDict()

    @classmethod
    def from_preset(
        cls, name: str, overrides: dict[str, Any] | None = None, cache: IntermediateCache | None = None
    ) -> Pipeline:
        return cls(preset(name).with_overrides(overrides or {}), cache)

    # Stages, built on first use.
    @functools.cached_property
    def lm(self) -> FrozenLM:
        return FrozenLM(self.config.answerer, self.config.device, self.dtype, self.config.quantize)

    @functools.cached_property
    def matcher(self) -> ImageQuestionMatcher:
        return ImageQuestionMatcher(
            self.config.matcher, self.config.device, self.dtype, self.config.vision_layer_norm_eps
        )

    @functools.cached_property
    def captioner(self) -> PatchCaptioner:
        return PatchCaptioner(
            self.config.captioner, self.config.device, self.dtype, self.config.vision_layer_norm_eps,
            self.config.quantize,
        )

    @functools.cached_property
    def answerer(self) -> Answerer:
        settings = self.config.answerer
        return Answerer(
            self.lm, settings.selection, settings.batch_size, settings.grounding_weight, settings.yes_bias,
            settings.generated_choice,
        )

    @functools.cached_property
    def grounder(self) -> CaptionGrounder:
        return CaptionGrounder(self.config.candidates.spacy_model)

    @functools.cached_property
    def candidate_extractor(self) -> AnswerCandidateExtractor:
        return AnswerCandidateExtractor(self.config.candidates)

    @functools.cached_property
    def question_generator(self) -> QuestionGenerator:
        lm = self.lm if self.config.question_gen.backend == "llm" else None
        return QuestionGenerator(self.config.question_gen, lm, self.config.device, self.dtype, self.config.quantize)

    @functools.cached_property
    def retriever(self) -> ExemplarRetriever:
        return ExemplarRetriever(self.config.retrieval, self.config.device)

    @functools.cached_property
    def prompt_builder(self) -> PromptBuilder:
        budget = self.lm.max_prompt_tokens
        if self.config.answerer.chat_template:  # the template's tokens come on top of the built prompt
            budget -= chat_overhead_tokens(self.lm.tokenizer)
        return PromptBuilder(self.config.prompt, self.lm.count_tokens, budget)

    def load_models(self, vision: bool = True) -> None:
        """Load now, not on first use, the models this configuration runs: the language models first, as they are
        the largest. Converting a checkpoint (a float32 file to bfloat16 or int8) briefly holds the file and the
        copy; done first, that peak does not stack on models already loaded. `vision` False: text side only."""
        self.answerer
        if self.config.answerer.grounding_weight:
            self.grounder
        if self.config.question_gen.backend != "none":
            self.question_generator
        if vision:
            self.captioner
            if self._uses_matcher:
                self.matcher

    def forget_recent(self) -> None:
        """Drop the in-memory results kept for the next call (recent images' features, recent caption sets'
        candidates and questions), so the next call does all its work again (benchmarks time it)."""
        self._image_features.clear()
        self._text_side_cache.clear()

    @property
    def _uses_matcher(self) -> bool:
        captioner = self.config.captioner
        return captioner.relevance == "gradcam" or captioner.filter_threshold is not None

    def answer(
        self, question: str, captions: list[str] | None = None, image: str | Path | Image.Image | None = None
    ) -> VQAResult:
        """Answer one question about an image, or from given captions (the precomputed-caption setting).

        `captions` is a list of captions; a single string is one caption. `image` is a file path or a PIL image.
        Arguments of the wrong type raise TypeError; bad values (an empty question, no captions) raise InputError.
        """
        question = check_question(question)
        if image is not None:
            if captions:
                raise InputError("give either an image or captions, not both")
            return self.answer_image(image, [question])[0]
        return self.answer_captioned(QuestionCaptions(question, _check_captions(captions)))

    def answer_image(self, image: str | Path | Image.Image, questions: list[str] | str) -> list[VQAResult]:
        """Answer several questions about one image; its vision features are computed once for all of them, and
        their synthetic questions and answers are batched. A single string is one question (the result is still a
        list)."""
        return [_raised(result) for result in self.answer_captioned_many(self.caption_image(image, questions), image)]

    def answer_captioned(
        self,
        captioned: QuestionCaptions,
        exemplars: list[QAExemplar] | None = None,
        image: str | Path | Image.Image | None = None,
        choices: list[str] | None = None,
    ) -> VQAResult:
        """`answer_captioned_many` for one question (a batch of one): bad input raises its InputError."""
        return _raised(self.answer_captioned_many([captioned], image, [choices], exemplars=exemplars)[0])

    def caption_image(self, image: str | Path | Image.Image, questions: list[str] | str) -> list[QuestionCaptions]:
        """The vision half: relevance, question-guided captions and the optional ITM filter, per question.
        A single string is one question."""
        check_image(image)
        questions = [check_question(q) for q in as_texts("questions", questions)]
        if not questions:
            return []
        if self.cache is None or isinstance(image, Image.Image):
            return self._caption_image(image, questions)
        descriptions = {q: self._vision_description(image, q) for q in questions}
        stored = {q: self.cache.get("captions", d) for q, d in descriptions.items()}
        missing = [q for q in dict.fromkeys(questions) if stored[q] is None]
        fresh = {c.question: c for c in self._caption_image(image, missing)} if missing else {}
        for question, captioned in fresh.items():
            self.cache.put("captions", descriptions[question], dataclasses.asdict(captioned))
        return [fresh[q] if q in fresh else _cache_hit(stored[q]) for q in questions]

    def _vision_description(self, image: str | Path, question: str) -> dict[str, Any]:
        """Everything a question's captions depend on."""
        return {
            "image": file_identity(check_image_path(image)),
            "question": question,
            "matcher": dataclasses.asdict(self.config.matcher) if self._uses_matcher else None,
            "captioner": dataclasses.asdict(self.config.captioner),
            "vision_layer_norm_eps": self.config.vision_layer_norm_eps,
            "seed": self.config.seed,
            # Precision changes captions a little: a bfloat16 or int8 run never reuses float32 captions.
            "dtype": self.dtype,
            "quantize": self.config.quantize,
        }

    def _caption_image(self, image: str | Path | Image.Image, questions: list[str]) -> list[QuestionCaptions]:
        picture = load_image(image)
        shared: dict[str, float] = {}
        captioner = self.config.captioner
        matcher = self.matcher if self._uses_matcher else None  # loaded before the clock starts
        caption_stage = self.captioner
        key = _image_key(picture)
        reused = key in self._image_features
        if reused:
            self._image_features.move_to_end(key)
            match_features, caption_features = self._image_features[key]
            shared["image_features"] = 0.0
        else:
            with timed(shared, "image_features"):
                match_features = matcher.encode_image(picture) if matcher else None
                caption_features = caption_stage.encode_image(picture)
            self._image_features[key] = (match_features, caption_features)
            if len(self._image_features) > IMAGE_FEATURES_KEPT:
                self._image_features.popitem(last=False)
        matches = [None] * len(questions)
        if captioner.relevance == "gradcam":
            with timed(shared, "relevance"):
                matches = self.matcher(match_features, questions)
        results = []
        for question, match in zip(questions, matches):
            # Image-level work is shared: each question carries its part of it.
            timings = {stage: seconds / len(questions) for stage, seconds in shared.items()}

            def itm_scores(texts: list[str]) -> list[float]:  # Img2LLM's caption filter, applied by the captioner
                with timed(timings, "caption_filter"):
                    return self.matcher.match_probabilities(match_features, texts)

            scorer = itm_scores if captioner.filter_threshold is not None else None
            with timed(timings, "captioning"):
                captions = self.captioner(
                    caption_features, match.relevance if match else None, self._seed_for(question), scorer
                )
            timings["captioning"] -= timings.get("caption_filter", 0.0)  # the filter ran inside; reported apart
            results.append(
                QuestionCaptions(
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
                )
            )
        return results

    def _seed_for(self, question: str) -> int:
        """A per-question seed: reproducible whatever the order or grouping of questions."""
        return (self.config.seed * 1_000_003 + zlib.crc32(question.encode("utf-8"))) % (2**31 - 1)

    def answer_captioned_many(
        self,
        items: list[QuestionCaptions],
        image: str | Path | Image.Image | None = None,
        choices: list[list[str] | None] | None = None,
        images: list[str | Path | Image.Image | None] | None = None,
        exemplars: list[QAExemplar] | None = None,
    ) -> list[VQAResult | InputError]:
        """The one answering path: the text half on the vision half's output for a batch of questions (an image's,
        or several images' with `images` naming each item's; `image` serves image-similarity exemplar retrieval),
        their prompts answered together in batches of `answerer.batch_size`. Given `choices` are also ranked by the
        LM's log-likelihood after each answer's prompt; given `exemplars` replace the configured ones. A question
        with bad input gets its InputError in place of a result.

        With retrieved exemplars and `retrieval.n_ensemble` > 1, each block of exemplars gets its own prompt and
        the answer with the highest log-probability wins (PICa's ensemble).
        """
        for item in items:
            check_type("captioned", item, QuestionCaptions, "a QuestionCaptions (from caption_image)")
        _check_exemplars(exemplars)
        _ = self.prompt_builder, self.answerer  # the language model loads first (see load_models)
        timings = [dict(item.timings) for item in items]
        cached = [list(item.cached) for item in items]
        usable: dict[int, list[str]] = {}  # the items' cleaned captions, where the question is usable
        for index, item in enumerate(items):
            try:
                check_question(item.question)
                captions = _clean_captions(item.captions)
            except InputError:
                continue  # the item's _plan below raises it again, in its place
            if captions:
                usable[index] = captions
        # All the items' synthetic questions at once: the question generator batches across them.
        sides = dict(zip(usable, self._text_sides(
            list(usable.values()), [timings[i] for i in usable], [cached[i] for i in usable]
        )))
        plans: list[_Plan | InputError] = []
        for index, item in enumerate(items):
            picture = images[index] if images is not None else image
            try:
                plans.append(self._plan(
                    item.question, item.captions, timings[index], exemplars, picture, cached[index], sides.get(index)
                ))
            except InputError as error:
                plans.append(error)
        good = [plan for plan in plans if isinstance(plan, _Plan)]
        requests = [request for plan in good for request in plan.requests]
        batch: dict[str, float] = {}
        with timed(batch, "answer"):
            answers = iter(self.answerer.answer_many(requests))
        share = batch["answer"] / max(len(requests), 1)  # a batch's time, split over its prompts
        results: list[VQAResult | InputError] = []
        for index, (item, plan) in enumerate(zip(items, plans)):
            if isinstance(plan, InputError):
                results.append(plan)
                continue
            plan.timings["answer"] = plan.timings.get("answer", 0.0) + share * len(plan.requests)
            try:
                result = self._finish(plan, [next(answers) for _ in plan.requests], choices[index] if choices else None)
            except InputError as error:
                results.append(error)
                continue
            result.itm_score, result.relevance = item.itm_score, item.relevance
            results.append(result)
        return results

    def _plan(
        self,
        question: str,
        captions: list[str],
        timings: dict[str, float],
        exemplars: list[QAExemplar] | None,
        image: str | Path | Image.Image | None,
        cached: list[str],
        text_side: tuple[list[AnswerCandidate], SyntheticQA] | None,
    ) -> _Plan:
        """Everything before the LM answers: checks, exemplars and the prompts (one per exemplar block), from the
        captions' text side (candidates and synthetic QA)."""
        question = check_question(question)
        if image is not None:
            check_image(image)
        torch.manual_seed(self.config.seed)
        captions = _clean_captions(captions)
        if not captions or text_side is None:
            raise InputError(f"no captions for the question {question!r}: every caption was empty")
        builder = self.prompt_builder
        candidates, synthetic = text_side
        settings = self.config.prompt
        leading: list[QAExemplar] = []
        similarity = None
        if exemplars is not None:
            blocks = [exemplars]
        elif settings.exemplars == "retrieved":
            with timed(timings, "retrieval"):
                retrieved = self.retriever(question, captions[0] if captions else "", image)
            blocks, similarity = retrieved.blocks, retrieved.similarity
        elif settings.exemplars == "synthetic":
            blocks = [synthetic.pairs]
            leading = synthetic.yes_no if settings.yes_no_exemplars else []
        else:
            blocks = [[]]
        yes_evidence = 0.0
        if self.config.answerer.grounding_weight and question_kind(question) == "yesno":
            with timed(timings, "grounding"):
                yes_evidence = self.grounder(question, captions).evidence
        use_candidates = candidates if settings.style == "img2llm" else None
        candidate_texts = [c.text for c in candidates]
        requests = []
        for block in blocks:
            with timed(timings, "prompt"):
                prompt = builder(question, captions, block, use_candidates, leading)
                content_free = None
                if self.config.answerer.selection == "calibrated":
                    # The input made content-free is the image: the question stays, what describes the image goes.
                    content_free = builder(question, [CONTENT_FREE_INPUT], [])
                if self.config.answerer.chat_template:
                    prompt = chat_prompt(prompt, self.lm.tokenizer)
                    content_free = content_free and chat_prompt(content_free, self.lm.tokenizer)
            requests.append(AnswerRequest(prompt, question, candidate_texts, content_free, yes_evidence))
        return _Plan(question, captions, timings, cached, candidate_texts, requests, similarity)

    def _finish(self, plan: _Plan, answers: list[Answer], choices: list[str] | None) -> VQAResult:
        """The most probable of the plan's answers (PICa's ensemble), and the given choices ranked after its prompt."""
        best = max(range(len(answers)), key=lambda i: answers[i].logprob)  # the first of equals, as before
        prompt, answer = plan.requests[best].prompt, answers[best]
        timings = plan.timings
        given_choice_scores = None
        if choices:
            with timed(timings, "choices"):
                given_choice_scores = self.answerer.score_choices(prompt, list(choices))
        return VQAResult(
            question=plan.question,
            answer=answer.text,
            raw_answer=answer.raw_text,
            logprob=answer.logprob,
            captions=prompt.captions,
            exemplars=prompt.exemplars,
            prompt=prompt.text,
            candidates=plan.candidates,
            all_captions=list(plan.captions),
            timings=timings,
            warning=self.warning,
            choice_scores=answer.choice_scores,
            retrieval_similarity=plan.similarity,
            cached=plan.cached,
            given_choice_scores=given_choice_scores,
        )

    def _text_sides(
        self, caption_sets: list[list[str]], timings: list[dict[str, float]], cached: list[list[str]]
    ) -> list[tuple[list[AnswerCandidate], SyntheticQA]]:
        """Answer candidates and synthetic QA for each caption set, from memory or the disk cache where an
        earlier question made them; the question generator writes all the missing sets' questions at once."""
        needs_exemplars = self.config.prompt.exemplars == "synthetic" and self.config.question_gen.backend != "none"
        needs_candidates = (
            needs_exemplars or self.config.prompt.style == "img2llm" or self.config.answerer.selection != "generate"
        )
        found: dict[tuple[str, ...], tuple[list[AnswerCandidate], SyntheticQA]] = {}
        missing: dict[tuple[str, ...], int] = {}  # a caption set to make -> the first item that asked for it
        for index, captions in enumerate(caption_sets):
            key = tuple(captions)
            if key in found or key in missing:
                continue
            if key in self._text_side_cache:
                self._text_side_cache.move_to_end(key)
                found[key] = self._text_side_cache[key]
                continue
            stored = self.cache.get("text_side", self._text_description(captions, needs_exemplars)) if self.cache else None
            if stored is None:
                missing[key] = index
                continue
            found[key] = (
                [AnswerCandidate(**c) for c in stored["candidates"]],
                SyntheticQA([QAExemplar(**e) for e in stored["exemplars"]], [QAExemplar(**e) for e in stored["yes_no"]]),
            )
            self._keep_text_side(key, found[key])
            for stage, used in (("candidates", needs_candidates), ("question_generation", needs_exemplars)):
                if used:
                    timings[index][stage] = 0.0
                    cached[index].append(stage)
        candidates: dict[tuple[str, ...], list[AnswerCandidate]] = {key: [] for key in missing}
        if needs_candidates and missing:
            extractor = self.candidate_extractor  # loaded before the clock starts
            for key, index in missing.items():
                with timed(timings[index], "candidates"):
                    candidates[key] = extractor(list(key))
        synthetic = {key: SyntheticQA([]) for key in missing}
        if needs_exemplars and missing:
            generator = self.question_generator
            shared: dict[str, float] = {}
            with timed(shared, "question_generation"):
                made = generator.many([(candidates[key], list(key)) for key in missing])
            synthetic = dict(zip(missing, made))
            # One batched call's time, split over the caption sets by how many questions each asked.
            asked = sum(s.asked for s in made) or 1
            for key, index in missing.items():
                share = shared["question_generation"] * synthetic[key].asked / asked
                timings[index]["question_generation"] = timings[index].get("question_generation", 0.0) + share
        for key in missing:
            if self.cache is not None and candidates[key]:
                self.cache.put("text_side", self._text_description(list(key), needs_exemplars), {
                    "candidates": [dataclasses.asdict(c) for c in candidates[key]],
                    "exemplars": [dataclasses.asdict(e) for e in synthetic[key].pairs],
                    "yes_no": [dataclasses.asdict(e) for e in synthetic[key].yes_no],
                })
            found[key] = (candidates[key], synthetic[key])
            self._keep_text_side(key, found[key])
        return [found[tuple(captions)] for captions in caption_sets]

    def _keep_text_side(self, key: tuple[str, ...], text_side: tuple[list[AnswerCandidate], SyntheticQA]) -> None:
        """Keep a caption set's candidates and synthetic QA in memory for the next questions with those captions."""
        self._text_side_cache[key] = text_side
        if len(self._text_side_cache) > TEXT_SIDES_KEPT:
            self._text_side_cache.popitem(last=False)

    def _text_description(self, captions: list[str], needs_exemplars: bool) -> dict[str, Any]:
        """Everything a caption set's candidates and synthetic questions depend on."""
        return {
            "captions": captions,
            "candidates": dataclasses.asdict(self.config.candidates),
            "question_gen": dataclasses.asdict(self.config.question_gen) if needs_exemplars else None,
            # The llm question generator is the answerer's model: its questions depend on that model too.
            "llm": dataclasses.asdict(self.config.answerer) if self.config.question_gen.backend == "llm" else None,
            "precision": [self.dtype, self.config.quantize] if needs_exemplars else None,
        }


def _cache_hit(stored: dict[str, Any]) -> QuestionCaptions:
    """Captions an earlier run made: their stages cost nothing now, so they are timed 0 and named as cached."""
    stages = sorted(stored.get("timings", {}))
    grid = stored.get("patch_grid")
    removed = [RemovedCaption(**r) for r in stored.get("removed", [])]
    return QuestionCaptions(**{
        **stored, "timings": dict.fromkeys(stages, 0.0), "cached": stages, "removed": removed,
        "patch_grid": tuple(grid) if grid else None,
    })


def _image_key(picture: Image.Image) -> str:
    """An in-memory image by content: the same picture uploaded again finds its features."""
    digest = hashlib.sha1(picture.tobytes())
    digest.update(f"{picture.mode}{picture.size}".encode())
    return digest.hexdigest()


def _clean_captions(captions: list[str]) -> list[str]:
    return [c for c in (clean_caption(c) for c in as_texts("captions", captions)) if c]


def _check_exemplars(exemplars: list[QAExemplar] | None) -> None:
    if exemplars is not None:
        check_type("exemplars", exemplars, (list, tuple), "a list of QAExemplar")
        for index, exemplar in enumerate(exemplars):
            check_type(f"exemplars[{index}]", exemplar, QAExemplar, "a QAExemplar")


def _raised(result: VQAResult | InputError) -> VQAResult:
    """A batch's result for a caller that asked for one question: its error raised."""
    if isinstance(result, InputError):
        raise result
    return result


def _check_captions(captions: list[str] | str | None) -> list[str]:
    cleaned = [" ".join(c.split()) for c in as_texts("captions", captions or []) if c.strip()]
    if not cleaned:
        raise InputError("no captions were given; pass at least one caption (or an image)")
    return cleaned


def ask(
    question: str,
    captions: list[str] | None = None,
    image: str | Path | Image.Image | None = None,
    preset_name: str = "offline",
    **overrides: Any,
) -> VQAResult:
    """One question, one call: `ask("what color is the bike?", ["a man riding a red bike"])` or `image=path`.

    `captions` is a list of captions; a single string is one caption (`ask(q, "a brown dog")`). `image` is a file
    path or a PIL image. Overrides use dotted keys with `__` for the dot, e.g. `answerer__model="/models/opt"`.
    Arguments of the wrong type raise TypeError; bad values raise InputError.
    """
    check_type("preset_name", preset_name, str, "a preset name, one of zsvqa.PRESETS")
    settings = {key.replace("__", "."): value for key, value in overrides.items()}
    return Pipeline.from_preset(preset_name, settings).answer(question, captions, image)
