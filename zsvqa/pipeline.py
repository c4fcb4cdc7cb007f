"""The pipeline: composes the stages, each through its one public call. Stages load lazily, so answering from
captions never loads a vision model."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Iterator

import torch

from zsvqa.answering import Answerer, FrozenLM
from zsvqa.candidates import AnswerCandidate, AnswerCandidateExtractor
from zsvqa.config import PipelineConfig, preset
from zsvqa.errors import InputError
from zsvqa.prompting import PromptBuilder, QAExemplar
from zsvqa.question_generation import QuestionGenerator


@dataclass
class VQAResult:
    question: str
    answer: str  # normalized short answer
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

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@contextlib.contextmanager
def timed(timings: dict[str, float], stage: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[stage] = timings.get(stage, 0.0) + time.perf_counter() - start


def check_question(question: str) -> str:
    if not isinstance(question, str) or not question.strip():
        raise InputError("the question is empty")
    return " ".join(question.split())


class Pipeline:
    """A reusable zero-shot VQA pipeline built from a `PipelineConfig` (see `zsvqa.config.preset`)."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config.validate()
        # Text-side results per caption set: several questions often share one set of captions.
        self._text_side_cache: OrderedDict[tuple[str, ...], tuple[list[AnswerCandidate], list[QAExemplar]]] = (
            OrderedDict()
        )

    @classmethod
    def from_preset(cls, name: str, overrides: dict[str, Any] | None = None) -> Pipeline:
        return cls(preset(name).with_overrides(overrides or {}))

    # Stages, built on first use.
    @functools.cached_property
    def lm(self) -> FrozenLM:
        return FrozenLM(self.config.answerer, self.config.device)

    @functools.cached_property
    def answerer(self) -> Answerer:
        return Answerer(self.lm)

    @functools.cached_property
    def candidate_extractor(self) -> AnswerCandidateExtractor:
        return AnswerCandidateExtractor(self.config.candidates)

    @functools.cached_property
    def question_generator(self) -> QuestionGenerator:
        lm = self.lm if self.config.question_gen.backend == "llm" else None
        return QuestionGenerator(self.config.question_gen, lm, self.config.device)

    @functools.cached_property
    def prompt_builder(self) -> PromptBuilder:
        return PromptBuilder(self.config.prompt, self.lm.count_tokens, self.lm.max_prompt_tokens)

    def answer(self, question: str, captions: list[str]) -> VQAResult:
        """Answer one question from given captions (the PICa / Img2LLM precomputed-caption setting)."""
        return self.answer_from_captions(check_question(question), _check_captions(captions), {})

    def answer_from_captions(
        self,
        question: str,
        captions: list[str],
        timings: dict[str, float],
        exemplars: list[QAExemplar] | None = None,
    ) -> VQAResult:
        """The text half: candidates, synthetic questions, prompt, answer. `exemplars` replaces synthetic ones."""
        torch.manual_seed(self.config.seed)
        candidates, synthetic = self._text_side(captions, timings)
        if exemplars is None:
            exemplars = synthetic if self.config.prompt.exemplars == "synthetic" else []
        with timed(timings, "prompt"):
            use_candidates = candidates if self.config.prompt.style == "img2llm" else None
            prompt = self.prompt_builder(question, captions, exemplars, use_candidates)
        with timed(timings, "answer"):
            answer = self.answerer(prompt)
        return VQAResult(
            question=question,
            answer=answer.text,
            raw_answer=answer.raw_text,
            logprob=answer.logprob,
            captions=prompt.captions,
            exemplars=prompt.exemplars,
            prompt=prompt.text,
            candidates=[c.text for c in candidates],
            all_captions=list(captions),
            timings=timings,
        )

    def _text_side(
        self, captions: list[str], timings: dict[str, float]
    ) -> tuple[list[AnswerCandidate], list[QAExemplar]]:
        key = tuple(captions)
        if key in self._text_side_cache:
            self._text_side_cache.move_to_end(key)
            return self._text_side_cache[key]
        candidates: list[AnswerCandidate] = []
        exemplars: list[QAExemplar] = []
        needs_exemplars = self.config.prompt.exemplars == "synthetic" and self.config.question_gen.backend != "none"
        if needs_exemplars or self.config.prompt.style == "img2llm":
            with timed(timings, "candidates"):
                candidates = self.candidate_extractor(captions)
        if needs_exemplars:
            with timed(timings, "question_generation"):
                exemplars = self.question_generator(candidates, captions)
        self._text_side_cache[key] = (candidates, exemplars)
        if len(self._text_side_cache) > 16:
            self._text_side_cache.popitem(last=False)
        return candidates, exemplars


def _check_captions(captions: list[str] | None) -> list[str]:
    cleaned = [" ".join(c.split()) for c in captions or [] if c and c.strip()]
    if not cleaned:
        raise InputError("no captions were given; pass at least one caption (or an image)")
    return cleaned


def ask(question: str, captions: list[str], preset_name: str = "offline", **overrides: Any) -> VQAResult:
    """One question, one call: `ask("what color is the bike?", ["a man riding a red bike"])`.

    Overrides use dotted keys with `__` for the dot, e.g. `answerer__model="/models/opt"`.
    """
    settings = {key.replace("__", "."): value for key, value in overrides.items()}
    return Pipeline.from_preset(preset_name, settings).answer(question, captions)
