"""The pipeline: composes the stages (zsvqa/stages.py builds them, each on first use) into one answering path.

Every call (`ask`, `answer`, `answer_image`, eval, the demo) ends in `answer_captioned_many`: a single question
is a batch of one. It prepares each question (its captions' text side, exemplars, prompts), answers every prompt
of the batch in one call of the answerer, which batches them, and finishes each result. The caches are layers
around the stages that own cacheable work (zsvqa/cache.py), so no stage sees them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from zsvqa.cache import COMPUTED, DISK, MEMORY, IntermediateCache, StageCache
from zsvqa.config import PipelineConfig, preset
from zsvqa.errors import InputError, check_type
from zsvqa.images import check_image_path, load_image
from zsvqa.inputs import as_texts, check_captions, check_exemplars, check_image, check_question, clean_captions
from zsvqa.locations import file_identity
from zsvqa.planning import QuestionPlan, QuestionPlanner
from zsvqa.prompting import QAExemplar
from zsvqa.stages import Stages
from zsvqa.text_side import TextSide
from zsvqa.timing import add_timings, share_out, timed
from zsvqa.vision import QuestionCaptions, captions_description, image_key, stored_captions

IMAGE_FEATURES_KEPT = 4  # images whose vision features a pipeline keeps in memory
TEXT_SIDES_KEPT = 16  # caption sets whose candidates and synthetic questions a pipeline keeps in memory
Picture = str | Path | Image.Image


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


class Pipeline(Stages):
    """A reusable zero-shot VQA pipeline built from a `PipelineConfig` (see `zsvqa.config.preset`).

    With a `cache`, captions and synthetic QA pairs are kept on disk across runs (see `zsvqa.cache`).
    """

    def __init__(self, config: PipelineConfig, cache: IntermediateCache | None = None) -> None:
        check_type("config", config, PipelineConfig, "a PipelineConfig (see zsvqa.preset)")
        if cache is not None:
            check_type("cache", cache, IntermediateCache, "an IntermediateCache or None")
        super().__init__(config)
        self.cache = cache
        # In memory, the last few images' vision features (several questions about one image, asked one call at a
        # time, as in the demo, encode it once) and caption sets' text sides (questions often share captions).
        self._image_features = StageCache[str, Any]("image_features", None, kept=IMAGE_FEATURES_KEPT)
        self._captions = StageCache[str, QuestionCaptions]("captions", cache, dataclasses.asdict, stored_captions)
        self._text_side_cache = StageCache[tuple[str, ...], TextSide](
            "text_side", cache, lambda side: self.text_side.encode(side), lambda stored: self.text_side.decode(stored),
            kept=TEXT_SIDES_KEPT, storable=lambda side: bool(side.candidates),
        )
        self.planner = QuestionPlanner(self)

    @classmethod
    def from_preset(
        cls, name: str, overrides: dict[str, Any] | None = None, cache: IntermediateCache | None = None
    ) -> Pipeline:
        return cls(preset(name).with_overrides(overrides or {}), cache)

    def forget_recent(self) -> None:
        """Drop the in-memory results kept for the next call (recent images' features, recent caption sets'
        candidates and questions), so the next call does all its work again (benchmarks time it)."""
        self._image_features.forget()
        self._text_side_cache.forget()

    def answer(self, question: str, captions: list[str] | None = None, image: Picture | None = None) -> VQAResult:
        """Answer one question about an image, or from given captions (the precomputed-caption setting).

        `captions` is a list of captions; a single string is one caption. `image` is a file path or a PIL image.
        Arguments of the wrong type raise TypeError; bad values (an empty question, no captions) raise InputError.
        """
        question = check_question(question)
        if image is not None:
            if captions:
                raise InputError("give either an image or captions, not both")
            return self.answer_image(image, [question])[0]
        return self.answer_captioned(QuestionCaptions(question, check_captions(captions)))

    def answer_image(self, image: Picture, questions: list[str] | str) -> list[VQAResult]:
        """Answer several questions about one image; its vision features are computed once for all of them, and
        their synthetic questions and answers are batched. A single string is one question (the result is still a
        list)."""
        return [_raised(result) for result in self.answer_captioned_many(self.caption_image(image, questions), image)]

    def answer_captioned(
        self,
        captioned: QuestionCaptions,
        exemplars: list[QAExemplar] | None = None,
        image: Picture | None = None,
        choices: list[str] | None = None,
    ) -> VQAResult:
        """`answer_captioned_many` for one question: bad input raises its InputError."""
        return _raised(self.answer_captioned_many([captioned], image, [choices], exemplars=exemplars)[0])

    def caption_image(self, image: Picture, questions: list[str] | str) -> list[QuestionCaptions]:
        """The vision half: relevance, question-guided captions and the optional ITM filter, per question.
        A single string is one question. Captions of image files go through the disk cache."""
        check_image(image)
        questions = [check_question(q) for q in as_texts("questions", questions)]
        if not questions:
            return []

        def describe(question: str) -> dict[str, Any] | None:  # an image in memory has no file to key on
            return None if isinstance(image, Image.Image) else self._vision_description(image, question)

        found = self._captions(questions, lambda missing: self._caption_image(image, missing), describe)
        return [hit.value for hit in found]

    def _vision_description(self, image: str | Path, question: str) -> dict[str, Any]:
        identity = file_identity(check_image_path(image))
        return captions_description(self.config, (self.dtype, self.quantize), identity, question)

    def _caption_image(self, image: Picture, questions: list[str]) -> list[QuestionCaptions]:
        picture = load_image(image, self.config.exif_orientation)
        vision = self.vision  # the models load before the clock starts
        shared = {"image_features": 0.0}  # an image whose features are reused costs nothing here

        def encode(_: list[str]) -> list[Any]:
            with timed(shared, "image_features"):
                return [vision.encode(picture)]

        (features,) = self._image_features([image_key(picture)], encode, lambda key: None)
        return vision(features.value, questions, shared, reused=features.source == MEMORY)

    def answer_captioned_many(
        self,
        items: list[QuestionCaptions],
        image: Picture | None = None,
        choices: list[list[str] | None] | None = None,
        images: list[Picture | None] | None = None,
        exemplars: list[QAExemplar] | None = None,
    ) -> list[VQAResult | InputError]:
        """The text half for a batch of questions (an image's, or several images' with `images` naming each item's;
        `image` serves image-similarity exemplar retrieval), their prompts answered together in batches of
        `answerer.batch_size`; given `choices` are ranked by the LM's log-likelihood after each answer's prompt,
        and given `exemplars` replace the configured ones. A question with bad input gets its InputError in place
        of a result.

        With retrieved exemplars and `retrieval.n_ensemble` > 1, each block of exemplars gets its own prompt and
        the answer with the highest log-probability wins (PICa's ensemble).
        """
        for item in items:
            check_type("captioned", item, QuestionCaptions, "a QuestionCaptions (from caption_image)")
        check_exemplars(exemplars)
        _ = self.prompt_builder, self.answerer  # the language model loads first (see load_models)
        plans = self._plans(items, images if images is not None else [image] * len(items), exemplars)
        self._answer_plans([plan for plan in plans if isinstance(plan, QuestionPlan)])
        results: list[VQAResult | InputError] = []
        for index, plan in enumerate(plans):
            try:
                own_choices = choices[index] if choices else None
                results.append(plan if isinstance(plan, InputError) else self._finish(plan, own_choices))
            except InputError as error:
                results.append(error)
        return results

    def _plans(
        self, items: list[QuestionCaptions], images: list[Picture | None], exemplars: list[QAExemplar] | None
    ) -> list[QuestionPlan | InputError]:
        """Each question's prompts, or the InputError its input earns; all the items' caption sets' text sides are
        made at once, so that the question generator batches across them."""
        timings = [dict(item.timings) for item in items]
        cached = [list(item.cached) for item in items]
        usable: dict[int, list[str]] = {}  # the items' cleaned captions, where the question is usable
        for index, item in enumerate(items):
            try:
                check_question(item.question)
                captions = clean_captions(item.captions, self.config.prompt.clean_captions)
            except InputError:
                continue  # the planner raises it again below, in its place
            if captions:
                usable[index] = captions
        sides = dict(zip(usable, self._text_sides(
            list(usable.values()), [timings[i] for i in usable], [cached[i] for i in usable]
        )))
        plans: list[QuestionPlan | InputError] = []
        for index, item in enumerate(items):
            try:
                plans.append(
                    self.planner(item, timings[index], cached[index], sides.get(index), exemplars, images[index])
                )
            except InputError as error:
                plans.append(error)
        return plans

    def _text_sides(
        self, caption_sets: list[list[str]], timings: list[dict[str, float]], cached: list[list[str]]
    ) -> list[TextSide]:
        """Each caption set's text side, from memory or the disk cache where an earlier question made it; what
        it cost (or that it was read from the disk) goes to the first question of this call that needed it."""
        maker = self.text_side
        found = self._text_side_cache([tuple(captions) for captions in caption_sets], maker, maker.description)
        for own_timings, own_cached, hit in zip(timings, cached, found):
            if hit.source in (COMPUTED, DISK):
                add_timings(own_timings, hit.value.timings)
                own_cached += hit.value.cached
        return [hit.value for hit in found]

    def _answer_plans(self, plans: list[QuestionPlan]) -> None:
        """Every prompt of the batch in one call of the answerer (which batches them); the call's time is shared
        out over the questions by their prompts."""
        requests = [request for plan in plans for request in plan.requests]
        spent: dict[str, float] = {}
        with timed(spent, "answer"):
            answers = iter(self.answerer.answer_many(requests))
        share_out([plan.timings for plan in plans], "answer", spent["answer"], [len(plan.requests) for plan in plans])
        for plan in plans:
            plan.answers = [next(answers) for _ in plan.requests]

    def _finish(self, plan: QuestionPlan, choices: list[str] | None) -> VQAResult:
        """The most probable of the plan's answers (PICa's ensemble), and the given choices ranked after its prompt."""
        answers = plan.answers
        best = max(range(len(answers)), key=lambda i: answers[i].logprob)  # the first of equals, as before
        prompt, answer = plan.requests[best].prompt, answers[best]
        given_choice_scores = None
        if choices:
            with timed(plan.timings, "choices"):
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
            timings=plan.timings,
            itm_score=plan.item.itm_score,
            relevance=plan.item.relevance,
            warning=self.warning,
            choice_scores=answer.choice_scores,
            retrieval_similarity=plan.similarity,
            cached=plan.cached,
            given_choice_scores=given_choice_scores,
        )


def _raised(result: VQAResult | InputError) -> VQAResult:
    """A batch's result for a caller that asked for one question: its error raised."""
    if isinstance(result, InputError):
        raise result
    return result


def ask(
    question: str,
    captions: list[str] | None = None,
    image: Picture | None = None,
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
