"""Prompt building: templates are Jinja2 files under prompts/, rendered here and nowhere else.

The builder picks the captions (one per answer candidate, rarest first, as Img2LLM does), adds the QA
exemplars, and keeps the prompt inside the answerer's token budget by dropping exemplars first, then
captions, and never cutting the question.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import jinja2

from zsvqa.candidates import AnswerCandidate
from zsvqa.config import PromptConfig
from zsvqa.errors import InputError
from zsvqa.normalize import clean_caption

PROMPTS_DIR = Path(os.environ.get("ZSVQA_PROMPTS", Path(__file__).resolve().parent.parent / "prompts"))


@dataclass
class QAExemplar:
    """An in-context example: synthetic (about this image) or retrieved (a training question)."""

    question: str
    answer: str
    context: str = ""  # the caption it came from


@dataclass
class Prompt:
    text: str  # what a causal or seq2seq answerer reads
    passages: list[str]  # what Fusion-in-Decoder reads, one encoder pass each ([text] for other styles)
    captions: list[str]
    exemplars: list[QAExemplar]
    num_tokens: int | None = None  # of the longest passage, when a token counter was given
    dropped_captions: int = 0
    dropped_exemplars: int = 0
    # What the template puts between the final "Answer:" and an answer ("Answer: red" or "Answer:red"): a
    # scored answer continues the prompt the way the exemplars do, and ends with a newline.
    answer_prefix: str = " "
    # The first characters that do not depend on the question (whole lines): the answerer encodes them once for
    # all the questions that share them.
    shared_prefix: int = 0


_environment = jinja2.Environment(
    trim_blocks=True, keep_trailing_newline=False, undefined=jinja2.StrictUndefined, autoescape=False
)


@functools.lru_cache(maxsize=32)
def load_template(name_or_path: str) -> jinja2.Template:
    """A template by name (prompts/<name>.txt) or by file path."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROMPTS_DIR / f"{name_or_path}.txt"
    try:
        return _environment.from_string(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise InputError(f"cannot read prompt template {str(path)!r}: {error.strerror}") from error
    except jinja2.TemplateSyntaxError as error:
        raise InputError(f"prompt template {str(path)!r} line {error.lineno}: {error.message}") from error


def render(template: str, **values: Any) -> str:
    """Render a template file (name or path)."""
    return render_string(load_template(template), **values)


def render_string(template: jinja2.Template | str, **values: Any) -> str:
    if isinstance(template, str):
        template = _environment.from_string(template)
    try:
        return template.render(**values)
    except jinja2.UndefinedError as error:
        raise InputError(f"prompt template needs a value it was not given: {error.message}") from error


@functools.lru_cache(maxsize=4)
def load_json(name: str) -> dict[str, Any]:
    return json.loads((PROMPTS_DIR / name).read_text(encoding="utf-8"))


def select_captions(captions: list[str], candidates: list[AnswerCandidate], limit: int) -> list[str]:
    """Img2LLM's context: for up to `limit` turns, the next answer candidate from the rarest (the last) backwards,
    wrapping around, contributes the first caption of it not yet taken. Answers found in no caption ("yes")
    point at the first caption. No caption is added beyond those the answers lead to.

    The walk leaves out the extractor's "no" (kept for answer scoring): the reference walks its top answers plus
    "yes." only, so the walk starts at "yes" and its turns reach the second most frequent answer."""
    walk = [c for c in candidates if not (c.kind == "yesno" and c.text != "yes")]
    if not walk:
        return captions[:limit]
    chosen: list[int] = []
    for turn in range(limit):
        candidate = walk[len(walk) - 1 - turn % len(walk)]
        for index in [i for i in candidate.caption_indices if i < len(captions)] or [0]:
            if index not in chosen:
                chosen.append(index)
                break
    return [captions[i] for i in chosen]


class PromptBuilder:
    """(question, captions, exemplars) -> Prompt, within `max_tokens` as counted by `count_tokens`."""

    def __init__(
        self,
        config: PromptConfig,
        count_tokens: Callable[[str], int] | None = None,
        max_tokens: int | None = None,
    ) -> None:
        self.config = config
        self.template = load_template(config.template or config.style)
        self.count_tokens = count_tokens
        self.max_tokens = max_tokens
        self.answer_prefix = self._answer_prefix()

    def _answer_prefix(self) -> str:
        """The whitespace the template writes before an exemplar's answer (a space unless it shows otherwise)."""
        marker = "\x00"
        text = render_string(self.template, question="q", captions=["c"], exemplars=[QAExemplar("q", marker, "c")])
        if marker not in text:
            return " "
        line = text.split(marker, 1)[0].split("\n")[-1]
        return line[len(line.rstrip()) :]

    def __call__(
        self,
        question: str,
        captions: list[str],
        exemplars: list[QAExemplar] | None = None,
        candidates: list[AnswerCandidate] | None = None,
        leading: list[QAExemplar] | None = None,
    ) -> Prompt:
        """`leading` exemplars (Img2LLM's yes/no ones) come first and do not count towards num_exemplars."""
        if candidates:
            captions = select_captions(captions, candidates, self.config.num_captions)
        captions = captions[: self.config.num_captions]
        exemplars = list(leading or []) + list(exemplars or [])[: self.config.num_exemplars]
        if self.config.clean_captions:  # a retrieved exemplar's context is its training caption as written
            exemplars = [dataclasses.replace(e, context=clean_caption(e.context)) for e in exemplars]
        dropped_exemplars = dropped_captions = 0
        while True:
            prompt = self._render(question, captions, exemplars)
            if self.count_tokens is None or self.max_tokens is None:
                return prompt
            prompt.num_tokens = max(self.count_tokens(p) for p in prompt.passages)
            if prompt.num_tokens <= self.max_tokens:
                prompt.dropped_exemplars, prompt.dropped_captions = dropped_exemplars, dropped_captions
                return prompt
            if exemplars:
                exemplars, dropped_exemplars = exemplars[:-1], dropped_exemplars + 1
            elif len(captions) > 1 or (captions and self.config.style != "unifiedqa"):
                captions, dropped_captions = captions[:-1], dropped_captions + 1
            else:
                raise InputError(
                    f"the question alone takes {prompt.num_tokens} tokens, more than the answerer's prompt "
                    f"budget of {self.max_tokens}; shorten the question or raise answerer.max_prompt_tokens"
                )

    def _render(self, question: str, captions: list[str], exemplars: list[QAExemplar]) -> Prompt:
        if self.config.style == "unifiedqa" and self.config.captions_per_passage:
            size = self.config.captions_per_passage
            groups = [captions[i : i + size] for i in range(0, len(captions), size)] or [[]]
            passages = [render_string(self.template, question=question, captions=g, exemplars=[]) for g in groups]
            return self._prompt("\n".join(passages), passages, captions, exemplars)
        text = render_string(self.template, question=question, captions=captions, exemplars=exemplars)
        prompt = self._prompt(text, [text], captions, exemplars)
        # Two renderings with other questions agree up to where the question starts; keep whole lines of that.
        other = render_string(self.template, question="\x00", captions=captions, exemplars=exemplars)
        agree = len(os.path.commonprefix([text, other]))
        prompt.shared_prefix = text.rfind("\n", 0, agree) + 1
        return prompt

    def _prompt(self, text: str, passages: list[str], captions: list[str], exemplars: list[QAExemplar]) -> Prompt:
        return Prompt(text, passages, captions, exemplars, answer_prefix=self.answer_prefix)


def chat_prompt(prompt: Prompt, tokenizer: Any, parts_file: str = "chat.json") -> Prompt:
    """The prompt as a chat model's user turn, in the tokenizer's own chat template, ending where the assistant
    answers. `parts_file` (under prompts/) holds the system text and the user turn, which places {{ prompt }}."""
    text = _chat_text(prompt.text, tokenizer, parts_file)
    # The question-independent head still leads the prompt, now after the template's own opening.
    offset = text.find(prompt.text[: prompt.shared_prefix]) if prompt.shared_prefix else -1
    shared = offset + prompt.shared_prefix if offset >= 0 else 0
    # The assistant's turn starts the answer: no separator after it, as after "Answer:".
    return dataclasses.replace(prompt, text=text, passages=[text], shared_prefix=shared, answer_prefix="")


def chat_overhead_tokens(tokenizer: Any, parts_file: str = "chat.json") -> int:
    """Tokens the chat template and the system text add around a prompt: the prompt builder leaves room for them."""
    count = len(tokenizer("").input_ids)
    return len(tokenizer(_chat_text("", tokenizer, parts_file)).input_ids) - count


def _chat_text(text: str, tokenizer: Any, parts_file: str) -> str:
    if not getattr(tokenizer, "chat_template", None):
        raise InputError(
            f"answerer.chat_template is on, but the tokenizer of {tokenizer.name_or_path!r} has no chat template"
        )
    parts = load_json(parts_file)
    messages = [{"role": "system", "content": parts["system"]}] if parts.get("system") else []
    messages.append({"role": "user", "content": render_string(parts["user"], prompt=text)})
    chat = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token
    if bos and chat.startswith(bos) and tokenizer("").input_ids[:1] == [tokenizer.bos_token_id]:
        chat = chat[len(bos) :]  # the tokenizer adds it again
    return chat
