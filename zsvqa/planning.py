"""A question's plan: everything the text half does before the LM answers (PICa, Img2LLM). The exemplars (given,
retrieved, synthetic or none), a yes/no question's caption grounding, and one prompt per exemplar block, each
with its content-free twin (calibrated selection) and in the chat template where the answerer takes one."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from zsvqa.answering import CONTENT_FREE_INPUT, Answer, AnswerRequest, question_kind
from zsvqa.errors import InputError
from zsvqa.inputs import check_image, check_question, clean_captions, model_question
from zsvqa.prompting import QAExemplar, chat_prompt
from zsvqa.stages import Stages
from zsvqa.text_side import TextSide
from zsvqa.timing import timed
from zsvqa.vision import QuestionCaptions


@dataclass
class QuestionPlan:
    """One question's prompts, ready for the LM, and what its result needs besides the answer."""

    item: QuestionCaptions
    question: str
    captions: list[str]  # cleaned
    timings: dict[str, float]
    cached: list[str]
    candidates: list[str]
    requests: list[AnswerRequest] = field(default_factory=list)  # one per exemplar block
    similarity: str | None = None  # retrieval similarity, when exemplars were retrieved
    answers: list[Answer] = field(default_factory=list)  # one per request, once answered


class QuestionPlanner:
    """(question and captions, their text side) -> the question's plan, with the pipeline's stages (each built
    on first use: a configuration without retrieval never loads the retriever)."""

    def __init__(self, stages: Stages) -> None:
        self.stages = stages
        self.config = stages.config

    def __call__(
        self,
        item: QuestionCaptions,
        timings: dict[str, float],
        cached: list[str],
        text_side: TextSide | None,
        exemplars: list[QAExemplar] | None = None,
        image: str | Path | Image.Image | None = None,
    ) -> QuestionPlan:
        question = check_question(item.question)
        if image is not None:
            check_image(image)
        torch.manual_seed(self.config.seed)
        captions = clean_captions(item.captions, self.config.prompt.clean_captions)
        if not captions or text_side is None:
            raise InputError(f"no captions for the question {question!r}: every caption was empty")
        plan = QuestionPlan(item, question, captions, timings, cached, [c.text for c in text_side.candidates])
        blocks, leading = self._exemplar_blocks(plan, exemplars, image, text_side)
        yes_evidence = 0.0
        if self.config.answerer.grounding_weight and question_kind(question) == "yesno":
            with timed(timings, "grounding"):
                yes_evidence = self.stages.grounder(question, captions).evidence
        use_candidates = text_side.candidates if self.config.prompt.style == "img2llm" else None
        asked = model_question(question, self.config.blip_question)
        for block in blocks:
            with timed(timings, "prompt"):
                prompt = self.stages.prompt_builder(asked, captions, block, use_candidates, leading)
                content_free = None
                if self.config.answerer.selection == "calibrated":
                    # The input made content-free is the image: the question stays, what describes the image goes.
                    content_free = self.stages.prompt_builder(asked, [CONTENT_FREE_INPUT], [])
                if self.config.answerer.chat_template:
                    prompt = chat_prompt(prompt, self.stages.lm.tokenizer)
                    content_free = content_free and chat_prompt(content_free, self.stages.lm.tokenizer)
            plan.requests.append(AnswerRequest(prompt, question, plan.candidates, content_free, yes_evidence))
        return plan

    def _exemplar_blocks(
        self,
        plan: QuestionPlan,
        exemplars: list[QAExemplar] | None,
        image: str | Path | Image.Image | None,
        text_side: TextSide,
    ) -> tuple[list[list[QAExemplar]], list[QAExemplar]]:
        """The exemplar blocks, a prompt each (given, retrieved, synthetic or none), and the yes/no exemplars that
        lead every prompt."""
        if exemplars is not None:
            return [exemplars], []
        source = self.config.prompt.exemplars
        if source == "retrieved":
            with timed(plan.timings, "retrieval"):
                retrieved = self.stages.retriever(plan.question, plan.captions[0], image)
            plan.similarity = retrieved.similarity
            return retrieved.blocks, []
        if source == "synthetic":
            synthetic = text_side.synthetic
            return [synthetic.pairs], synthetic.yes_no if self.config.prompt.yes_no_exemplars else []
        return [[]], []
