"""The stages a configuration runs, each built on first use: answering from captions never loads a vision model,
and a stage a setting leaves out never loads at all."""

from __future__ import annotations

import functools
import logging

from zsvqa.answering import Answerer
from zsvqa.language_model import FrozenLM
from zsvqa.candidates import AnswerCandidateExtractor
from zsvqa.captioning import PatchCaptioner
from zsvqa.config import PipelineConfig
from zsvqa.errors import InputError
from zsvqa.grounding import CaptionGrounder
from zsvqa.matching import ImageQuestionMatcher
from zsvqa.models import resolve_dtype, resolve_quantize, reuse_freed_memory
from zsvqa.prompting import PromptBuilder, chat_overhead_tokens
from zsvqa.question_generation import QuestionGenerator
from zsvqa.retrieval import ExemplarRetriever
from zsvqa.text_side import TextSideMaker
from zsvqa.vision import VisionHalf, uses_matcher

log = logging.getLogger(__name__)
TINY_WARNING = "random models (tiny or random: names) are in use: captions and answers are meaningless noise"


class Stages:
    """A checked configuration's stages, as attributes built on first use (`pipeline.lm`, `pipeline.captioner`,
    ...), and the precision they run in."""

    def __init__(self, config: PipelineConfig) -> None:
        self.config = config.validate()
        # What "auto" means on this machine.
        self.dtype = resolve_dtype(config.dtype, config.device)
        self.quantize = resolve_quantize(config.quantize, config.device)
        if config.reuse_memory and config.device.startswith("cpu"):
            reuse_freed_memory()
        if config.prompt.exemplars == "retrieved" and not config.retrieval.index:
            raise InputError(
                f"the {config.name} setting uses retrieved exemplars, which need an index: build one with "
                "`run.py index` and pass it with --exemplars DIR (or use --exemplar-source none)"
            )
        models = [config.matcher.model, config.captioner.model, config.question_gen.model, config.answerer.model]
        self.warning = TINY_WARNING if any(m.startswith(("tiny:", "random:")) for m in models) else None
        if self.warning:
            log.warning(self.warning)

    @functools.cached_property
    def lm(self) -> FrozenLM:
        return FrozenLM(self.config.answerer, self.config.device, self.dtype, self.quantize)

    @functools.cached_property
    def matcher(self) -> ImageQuestionMatcher:
        return ImageQuestionMatcher(
            self.config.matcher, self.config.device, self.dtype, self.config.vision_layer_norm_eps
        )

    @functools.cached_property
    def captioner(self) -> PatchCaptioner:
        return PatchCaptioner(
            self.config.captioner, self.config.device, self.dtype, self.config.vision_layer_norm_eps,
            self.quantize,
        )

    @functools.cached_property
    def vision(self) -> VisionHalf:
        matcher = self.matcher if uses_matcher(self.config) else None  # first: the question meets the image there
        return VisionHalf(self.config, self.captioner, matcher)

    @functools.cached_property
    def answerer(self) -> Answerer:
        settings = self.config.answerer
        return Answerer(
            self.lm, settings.selection, settings.batch_size, settings.grounding_weight, settings.yes_bias,
            settings.generated_choice, settings.yes_bias_do,
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
        return QuestionGenerator(self.config.question_gen, lm, self.config.device, self.dtype, self.quantize)

    @functools.cached_property
    def text_side(self) -> TextSideMaker:
        return TextSideMaker(
            self.config, (self.dtype, self.quantize), lambda: self.candidate_extractor, lambda: self.question_generator
        )

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
            if uses_matcher(self.config):
                self.matcher
