"""Synthetic question generation (Img2LLM): each answer candidate and a caption that mentions it become a
question-answer pair about this image, used as in-context exemplars."""

from __future__ import annotations

import re
from typing import Protocol

import torch

from zsvqa.answering import FrozenLM
from zsvqa.candidates import AnswerCandidate
from zsvqa.config import QuestionGenConfig
from zsvqa.models import load_frozen
from zsvqa.prompting import QAExemplar, load_json, load_template, render, render_string


class _Backend(Protocol):
    def questions(self, pairs: list[tuple[AnswerCandidate, str]], captions: list[str]) -> list[str]: ...


class QuestionGenerator:
    """(answer candidates, captions) -> synthetic QA exemplars, one per candidate that yields a question."""

    def __init__(
        self, config: QuestionGenConfig, lm: FrozenLM | None = None, device: str = "cpu", dtype: str = "float32"
    ) -> None:
        self.config = config
        self.backend: _Backend | None
        if config.backend == "t5":
            self.backend = T5Questions(config, device, dtype)
        elif config.backend == "template":
            self.backend = TemplateQuestions()
        elif config.backend == "llm":
            if lm is None:
                raise ValueError("the llm question generator needs the frozen LM")
            self.backend = LLMQuestions(lm, config.max_new_tokens)
        else:
            self.backend = None

    def __call__(self, candidates: list[AnswerCandidate], captions: list[str]) -> list[QAExemplar]:
        if self.backend is None or not captions:
            return []
        pairs = [
            (candidate, captions[candidate.caption_indices[0]])
            for candidate in candidates
            if len(candidate.text.split()) <= self.config.max_answer_words and candidate.caption_indices
        ]
        questions = [_tidy(q) for q in self.backend.questions(pairs, captions)]
        return [
            QAExemplar(question, candidate.text, caption)
            for (candidate, caption), question in zip(pairs, questions)
            if question
        ]


def _tidy(question: str) -> str:
    question = " ".join(question.replace("question:", " ").split()).strip()
    return question if len(question) > 1 else ""


class T5Questions:
    """A T5-style seq2seq generator fed `answer: {a}  context: {c}.`, decoded with beam search."""

    def __init__(self, config: QuestionGenConfig, device: str, dtype: str) -> None:
        from transformers import AutoModelForSeq2SeqLM

        self.config = config
        self.device = device
        self.model, self.tokenizer = load_frozen(
            AutoModelForSeq2SeqLM, config.model, "question generation", "--qg-model", device, dtype=dtype
        )
        self.template = load_template("t5_question_generation")

    @torch.inference_mode()
    def questions(self, pairs: list[tuple[AnswerCandidate, str]], captions: list[str]) -> list[str]:
        texts = [render_string(self.template, answer=c.text, caption=caption) for c, caption in pairs]
        questions: list[str] = []
        for start in range(0, len(texts), self.config.batch_size):
            batch = self.tokenizer(
                texts[start : start + self.config.batch_size],
                return_tensors="pt",
                padding=True,
                truncation=True,
                max_length=256,
            )
            output = self.model.generate(
                input_ids=batch.input_ids.to(self.device),
                attention_mask=batch.attention_mask.to(self.device),
                num_beams=self.config.num_beams,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
            )
            questions += self.tokenizer.batch_decode(output, skip_special_tokens=True)
        return questions


class TemplateQuestions:
    """Rule templates (prompts/question_templates.json) chosen by the part of speech of the answer."""

    def __init__(self) -> None:
        self.templates = load_json("question_templates.json")

    def questions(self, pairs: list[tuple[AnswerCandidate, str]], captions: list[str]) -> list[str]:
        mentioned = " ".join(captions).lower()
        absent = [o for o in self.templates["absent_objects"] if not re.search(rf"\b{o}", mentioned)]
        return [self._question(c, caption, absent) for c, caption in pairs]

    def _question(self, candidate: AnswerCandidate, caption: str, absent: list[str]) -> str:
        kind = candidate.kind
        if kind == "yesno":
            kind = candidate.text  # "yes" or "no"
            if kind == "no" and not absent:
                return ""
        elif kind == "adjective" and candidate.text in self.templates["colors"]:
            kind = "color"
        cloze = re.sub(rf"\b{re.escape(candidate.text)}\b", "what", caption.lower(), count=1)
        return render_string(
            self.templates[kind],
            cloze=cloze,
            head=candidate.head,
            caption=caption.lower(),
            absent_object=absent[0] if absent else "",
        )


class LLMQuestions:
    """Prompts the frozen LLM itself (prompts/question_generation.txt) to write each question."""

    def __init__(self, lm: FrozenLM, max_new_tokens: int) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens

    def questions(self, pairs: list[tuple[AnswerCandidate, str]], captions: list[str]) -> list[str]:
        prompts = [render("question_generation", answer=c.text, caption=caption) for c, caption in pairs]
        questions = [g.text for g in self.lm.generate(prompts, self.max_new_tokens)]
        # Keep one question: up to its question mark.
        return [q.split("?", 1)[0] + "?" if "?" in q else q for q in questions]
