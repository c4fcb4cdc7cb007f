"""The text side of a set of captions (Img2LLM), shared by every question with those captions: the answer
candidates pulled from them, and the synthetic QA pairs the question generator writes about them."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from zsvqa.candidates import AnswerCandidate, AnswerCandidateExtractor
from zsvqa.config import PipelineConfig
from zsvqa.prompting import QAExemplar
from zsvqa.question_generation import QuestionGenerator, SyntheticQA
from zsvqa.timing import share_out, timed


@dataclass
class TextSide:
    candidates: list[AnswerCandidate]
    synthetic: SyntheticQA
    timings: dict[str, float] = field(default_factory=dict)  # seconds each stage spent making it
    cached: list[str] = field(default_factory=list)  # its stages, where it was read from the disk cache


class TextSideMaker:
    """Caption sets -> their text sides: the candidates of each set, and the synthetic questions of all sets in
    one call of the question generator, which batches across them. The extractor and the generator load on
    first use (`extractor`, `generator` build them)."""

    def __init__(
        self,
        config: PipelineConfig,
        precision: tuple[str, str | None],
        extractor: Callable[[], AnswerCandidateExtractor],
        generator: Callable[[], QuestionGenerator],
    ) -> None:
        self.config = config
        self.precision = precision  # (dtype, quantize) as resolved on this machine
        self.extractor = extractor
        self.generator = generator
        self.needs_exemplars = config.prompt.exemplars == "synthetic" and config.question_gen.backend != "none"
        self.needs_candidates = (
            self.needs_exemplars or config.prompt.style == "img2llm" or config.answerer.selection != "generate"
        )

    def stages(self) -> list[str]:
        """The stages this configuration runs to make a text side."""
        used = (("candidates", self.needs_candidates), ("question_generation", self.needs_exemplars))
        return [stage for stage, needed in used if needed]

    def __call__(self, caption_sets: list[tuple[str, ...]]) -> list[TextSide]:
        sides = [TextSide([], SyntheticQA([])) for _ in caption_sets]
        if self.needs_candidates:
            extractor = self.extractor()  # loaded before the clock starts
            for side, captions in zip(sides, caption_sets):
                with timed(side.timings, "candidates"):
                    side.candidates = extractor(list(captions))
        if self.needs_exemplars:
            generator = self.generator()
            spent: dict[str, float] = {}
            with timed(spent, "question_generation"):
                made = generator.many([(side.candidates, list(c)) for side, c in zip(sides, caption_sets)])
            for side, synthetic in zip(sides, made):
                side.synthetic = synthetic
            # One batched call's time, split over the caption sets by how many questions each asked.
            share_out([side.timings for side in sides], "question_generation", spent["question_generation"],
                      [synthetic.asked for synthetic in made])
        return sides

    def description(self, captions: tuple[str, ...]) -> dict[str, Any]:
        """Everything a caption set's candidates and synthetic questions depend on."""
        config = self.config
        return {
            "captions": list(captions),
            "candidates": dataclasses.asdict(config.candidates),
            "question_gen": dataclasses.asdict(config.question_gen) if self.needs_exemplars else None,
            # The llm question generator is the answerer's model: its questions depend on that model too.
            "llm": dataclasses.asdict(config.answerer) if config.question_gen.backend == "llm" else None,
            "precision": list(self.precision) if self.needs_exemplars else None,
        }

    @staticmethod
    def encode(side: TextSide) -> dict[str, Any]:
        return {
            "candidates": [dataclasses.asdict(c) for c in side.candidates],
            "exemplars": [dataclasses.asdict(e) for e in side.synthetic.pairs],
            "yes_no": [dataclasses.asdict(e) for e in side.synthetic.yes_no],
        }

    def decode(self, stored: dict[str, Any]) -> TextSide:
        """A text side an earlier run made: its stages cost nothing now, so they are timed 0 and named as cached."""
        pairs, yes_no = ([QAExemplar(**e) for e in stored[key]] for key in ("exemplars", "yes_no"))
        candidates = [AnswerCandidate(**c) for c in stored["candidates"]]
        stages = self.stages()
        return TextSide(candidates, SyntheticQA(pairs, yes_no), dict.fromkeys(stages, 0.0), stages)
