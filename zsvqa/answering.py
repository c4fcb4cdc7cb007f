"""Answering: a prompt becomes an answer, generated freely or chosen from a closed answer set by the frozen LM's
log-likelihoods (calibrated, grounded in the captions for yes/no). The LM itself is zsvqa.language_model's."""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import torch

from zsvqa.language_model import FrozenLM, Generation
from zsvqa.normalize import NUMBER_WORDS, clean_answer
from zsvqa.prompting import Prompt, load_json

# A question that opens with one of these asks for yes or no.
YES_NO_OPENERS = {
    "is", "are", "was", "were", "do", "does", "did", "can", "could", "will", "would", "has", "have", "had",
    "should", "may", "might", "must", "isn't", "aren't", "doesn't", "don't", "didn't", "wasn't", "can't",
}
ARTICLES = {"a", "an", "the"}
CONTENT_FREE_INPUT = "N/A"  # Zhao et al.'s content-free input


@dataclass
class Answer:
    text: str  # the short answer as the model wrote it (lower case, trimmed), not VQA-normalized
    raw_text: str  # what the model wrote, up to the first newline (the chosen answer when scoring)
    logprob: float
    # With scoring: each choice's log-likelihood (calibrated ones after calibration), best first.
    choice_scores: dict[str, float] | None = None


def question_kind(question: str) -> str:
    """"yesno", "choice" (either-or), "number", "color" or "open", from the question's words."""
    words = _words(question)
    if not words:
        return "open"
    # "is it a cat or a dog?" and "which color is the car, red or blue?" ask for one of the two named.
    if _alternatives(question) and (words[0] in YES_NO_OPENERS or "," in question):
        return "choice"
    if words[:2] == ["how", "many"]:
        return "number"
    if words[0] in ("what", "which") and words[1:2] in (["color"], ["colour"]):
        return "color"
    return "yesno" if words[0] in YES_NO_OPENERS else "open"


def asks_with_do(question: str) -> bool:
    """A yes/no question that opens with do, does or did ("does the man have a beard?")."""
    return _words(question)[:1] in (["do"], ["does"], ["did"], ["doesn't"], ["don't"], ["didn't"])


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'-]+", text.lower())


def _alternatives(question: str) -> list[str]:
    """The two answers an either-or question offers ("is the man standing or sitting?" -> standing, sitting)."""
    words = _words(question)
    if "or" not in words[1:-1]:
        return []
    split = len(words) - 1 - words[::-1].index("or")
    right = [w for w in words[split + 1 :] if w not in ARTICLES]
    left = words[split - 1]
    return [left, " ".join(right)] if 0 < len(right) <= 3 and left not in ARTICLES else []


def answer_choices(question: str, candidates: list[str]) -> dict[str, list[str]]:
    """The closed answer set for a question: each answer with the ways it may be written ("2": "2", "two").

    Yes/no questions choose yes or no, counting questions 0-10, colour questions a colour the captions name (any
    colour where they name none); others choose among the answer candidates pulled from the captions (empty when
    there are none: then the LM generates)."""
    kind = question_kind(question)
    if kind == "yesno":
        return {"yes": ["yes"], "no": ["no"]}
    if kind == "choice":
        return {option: [option] for option in _alternatives(question)}
    if kind == "number":
        words = {digit: word for word, digit in NUMBER_WORDS.items() if word != "none"}
        return {str(n): [str(n), words[str(n)]] if str(n) in words else [str(n)] for n in range(11)}
    colors = load_json("question_templates.json")["colors"]
    if kind == "color":
        # The colours the captions name, where they name any: a small LM otherwise prefers "red" whatever it reads.
        named = {word for candidate in candidates for word in candidate.split()}
        return {color: [color] for color in [c for c in colors if c in named] or colors}
    # The question's own words are not its answer ("man" for "what is the man riding?").
    asked = set(_words(question))
    unique = [c for c in dict.fromkeys(candidates) if c not in ("yes", "no") and not set(c.split()) <= asked]
    # A colour the question did not ask for is not part of a VQA answer ("red bicycle" where "bicycle" is offered),
    # nor is a bare colour: a small LM picks "red" for "what is the man riding?" (realdev, README "Accuracy").
    return {c: [c] for c in unique if not _colored(c, colors, unique) and open_answer(question, c)}


def open_answer(question: str, answer: str) -> bool:
    """Whether `answer` may answer an open question: not a bare colour unless the question speaks of colour (a
    colour that also names a thing, "orange", "gold", stays)."""
    colors = load_json("question_templates.json")
    if answer not in colors["colors"] or answer in colors["colors_that_name_things"]:
        return True
    return any(word.startswith(("color", "colour")) for word in _words(question))


def _colored(candidate: str, colors: list[str], candidates: list[str]) -> bool:
    first, _, rest = candidate.partition(" ")
    return first in colors and rest in candidates


@dataclass
class AnswerRequest:
    """What `Answerer.__call__` takes, for a batch of them."""

    prompt: Prompt
    question: str = ""
    candidates: list[str] = field(default_factory=list)
    content_free: Prompt | None = None
    # A yes/no question's caption grounding in [-1, 1] (zsvqa.grounding: +1 the captions mention all it asks about).
    yes_evidence: float = 0.0


class Answerer:
    """Prompt -> Answer, by free generation or by scoring a closed answer set (answerer.selection).

    Scoring compares whole answers by log-likelihood (each written as the exemplars write theirs, ending in a
    newline, so an answer that would go on scores lower). "calibrated" divides the yes/no probabilities by those
    the question gets from a content-free image description ("N/A" for the captions, no image exemplars): what
    is left is the evidence the captions add, without the question's own pull towards "yes". A yes/no question's
    log-odds then move by `grounding_weight` x its caption grounding, plus `yes_bias` (and `yes_bias_do` more for a
    question that opens with do / does / did). With `generated_choice`, an
    open question's greedy answer joins the caption candidates it is scored against.
    """

    def __init__(
        self, lm: FrozenLM, selection: str = "generate", batch_size: int = 1, grounding_weight: float = 0.0,
        yes_bias: float = 0.0, generated_choice: bool = False, yes_bias_do: float = 0.0,
    ) -> None:
        self.lm = lm
        self.selection = selection
        self.batch_size = batch_size
        self.grounding_weight = grounding_weight
        self.yes_bias = yes_bias
        self.yes_bias_do = yes_bias_do
        self.generated_choice = generated_choice

    def answer_many(self, requests: list[AnswerRequest]) -> list[Answer]:
        """Answers to several prompts, up to `batch_size` at a time (see `_batches`): causal prompts after the head
        they share (see `FrozenLM._after_head`), generated or with every choice scored together. At batch size 1
        each prompt runs on its own, also reusing the shared head's key/value cache (see `FrozenLM.score`)."""
        scored: list[tuple[int, dict[str, list[str]]]] = []
        free: list[int] = []
        for index, request in enumerate(requests):
            choices = answer_choices(request.question, request.candidates) if self.selection != "generate" else {}
            if choices:
                scored.append((index, choices))
            else:
                free.append(index)
        answers = dict(zip(free, self._generate_many([requests[index].prompt for index in free])))
        if self.generated_choice:
            # The model's own answer competes with the captions' words, where the question is open.
            opened = [(index, choices) for index, choices in scored if question_kind(requests[index].question) == "open"]
            generated = self._generate_many([requests[index].prompt for index, _ in opened])
            for (index, choices), answer in zip(opened, generated):
                if answer.text and answer.text not in choices and open_answer(requests[index].question, answer.text):
                    choices[answer.text] = [answer.text]
        chosen = self._choose_many([(requests[index], choices) for index, choices in scored])
        answers.update(zip([index for index, _ in scored], chosen))
        return [answers[index] for index in range(len(requests))]

    def _generate_many(self, prompts: list[Prompt]) -> list[Answer]:
        """Greedy answers, in batches of `batch_size` after their shared heads (one at a time at batch size 1 and
        for Fusion-in-Decoder)."""
        if self.batch_size == 1 or self.lm.config.kind == "fid":
            return [self._generate(prompt) for prompt in prompts]
        answers: dict[int, Answer] = {}
        for batch, shared_prefix in self._batches(prompts):
            generations = self.lm.generate([prompts[b].text for b in batch], None, shared_prefix)
            answers.update((b, _answer(generation)) for b, generation in zip(batch, generations))
        return [answers[index] for index in range(len(prompts))]

    def _batches(self, prompts: list[Prompt]) -> list[tuple[list[int], int]]:
        """`prompts` (by position) in batches of up to `batch_size`, each with the shared prefix its LM call may
        reuse: prompts with the same head (an image's questions; the content-free prompts) go together, their
        head's cache made once; prompts whose head no other shares (PICa's ensemble blocks) go together without
        one. Within each, about the same length together, so that a batch pads little."""
        def head(index: int) -> str:
            return prompts[index].text[: prompts[index].shared_prefix]

        groups: dict[str, list[int]] = {}
        for index in sorted(range(len(prompts)), key=lambda index: len(prompts[index].text)):
            groups.setdefault(head(index), []).append(index)
        alone = sorted((g[0] for g in groups.values() if len(g) == 1), key=lambda index: len(prompts[index].text))
        shared = [(g, prompts[g[0]].shared_prefix) for g in groups.values() if len(g) > 1] + [(alone, 0)]
        return [
            (members[start : start + self.batch_size], prefix)
            for members, prefix in shared
            for start in range(0, len(members), self.batch_size)
        ]

    def __call__(
        self, prompt: Prompt, question: str = "", candidates: list[str] | None = None,
        content_free: Prompt | None = None,
    ) -> Answer:
        return self.answer_many([AnswerRequest(prompt, question, candidates or [], content_free)])[0]

    def _generate(self, prompt: Prompt) -> Answer:
        if self.lm.config.kind == "fid":
            generation = self.lm.generate_fused(prompt.passages)
        elif self.lm.config.kind == "causal":
            generation = self.lm.generate_one(prompt.text, prompt.shared_prefix)
        else:
            generation = self.lm.generate([prompt.text])[0]
        return _answer(generation)

    def _choose_many(self, items: list[tuple[AnswerRequest, dict[str, list[str]]]]) -> list[Answer]:
        """The best of each request's choices; "calibrated" yes/no also scores the content-free prompt."""
        calibrate = [
            self.selection == "calibrated" and question_kind(r.question) == "yesno" and r.content_free is not None
            for r, _ in items
        ]
        jobs = [(r.prompt, choices) for r, choices in items]
        jobs += [(r.content_free, choices) for (r, choices), c in zip(items, calibrate) if c]
        all_scores = iter(self._choice_scores_many(jobs))  # type: ignore[arg-type]
        scores = [next(all_scores) for _ in items]
        answers = []
        for (request, _), own, needs_prior in zip(items, scores, calibrate):
            if needs_prior:
                prior, posterior = _normalized(next(all_scores)), _normalized(own)
                own = {answer: posterior[answer] - prior[answer] for answer in own}
            if question_kind(request.question) == "yesno" and set(own) == {"yes", "no"}:
                bias = self.yes_bias + (self.yes_bias_do if asks_with_do(request.question) else 0.0)
                shift = (self.grounding_weight * request.yes_evidence + bias) / 2
                own = {"yes": own["yes"] + shift, "no": own["no"] - shift}
            ranked = dict(sorted(own.items(), key=lambda item: -item[1]))
            best = next(iter(ranked))
            answers.append(Answer(best, best, own[best], ranked))
        return answers

    def score_choices(self, prompt: Prompt, choices: list[str]) -> dict[str, float]:
        """Given choices (A-OKVQA's multiple choice) ranked by log-likelihood after the prompt, best first; an empty
        choice (the official A-OKVQA val file has one) is never chosen."""
        usable = dict.fromkeys(choice for choice in choices if choice.strip())
        scores = self._choice_scores_many([(prompt, {choice: [choice] for choice in usable})])[0]
        return dict(sorted(scores.items(), key=lambda item: -item[1]))

    def _choice_scores_many(self, jobs: list[tuple[Prompt, dict[str, list[str]]]]) -> list[dict[str, float]]:
        """Each job's answers' log-likelihoods after its prompt, summed over the ways each may be written."""
        forms = [[(answer, form) for answer, written in choices.items() for form in written] for _, choices in jobs]
        texts = [[f"{prompt.answer_prefix}{form}\n" for _, form in own] for (prompt, _), own in zip(jobs, forms)]
        values: list[list[float]] = [[] for _ in jobs]
        if self.batch_size > 1:
            for batch, shared_prefix in self._batches([prompt for prompt, _ in jobs]):
                scored = self.lm.score_many([jobs[j][0].text for j in batch], [texts[j] for j in batch], shared_prefix)
                for j, own in zip(batch, scored):
                    values[j] = own
        else:
            values = [self.lm.score(prompt.text, own, prompt.shared_prefix) for (prompt, _), own in zip(jobs, texts)]
        results = []
        for own_forms, own_values in zip(forms, values):
            per_answer: dict[str, list[float]] = {}
            for (answer, _), value in zip(own_forms, own_values):
                per_answer.setdefault(answer, []).append(value)
            results.append({answer: torch.logsumexp(torch.tensor(v), 0).item() for answer, v in per_answer.items()})
        return results


def _answer(generation: Generation) -> Answer:
    return Answer(clean_answer(generation.text), generation.text, generation.logprob)


def _normalized(scores: dict[str, float]) -> dict[str, float]:
    """Log-probabilities renormalized over the choice set."""
    values = torch.log_softmax(torch.tensor(list(scores.values())), 0).tolist()
    return dict(zip(scores, values))
