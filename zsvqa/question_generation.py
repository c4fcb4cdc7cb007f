"""Synthetic question generation (Img2LLM): each answer candidate and a caption that mentions it become a
question-answer pair about this image, used as in-context exemplars."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch

from zsvqa.language_model import FrozenLM
from zsvqa.candidates import AnswerCandidate, load_spacy
from zsvqa.config import QuestionGenConfig
from zsvqa.models import beam_search_cache, cache_argument, load_frozen
from zsvqa.prompting import QAExemplar, load_json, load_template, render, render_string


@dataclass
class SyntheticQA:
    """Synthetic QA exemplars about one image."""

    pairs: list[QAExemplar]  # one per answer candidate that yields a question, most frequent answer first
    # Img2LLM's yes/no exemplars, in its order: a question about something absent answered "no", this image's
    # "yes" question answered "yes", and "is this a toilet?" (or another absent object) answered "no".
    yes_no: list[QAExemplar] = field(default_factory=list)
    asked: int = field(default=0, compare=False)  # questions the generator wrote for these (a batch's time share)


@dataclass(frozen=True)
class QuestionRequest:
    """One question to write: its answer, the caption that mentions it, and all of that image's captions."""

    answer: AnswerCandidate
    caption: str
    captions: tuple[str, ...]


class _Backend(Protocol):
    def questions(self, requests: list[QuestionRequest]) -> list[str]: ...


class QuestionGenerator:
    """(answer candidates, captions) -> synthetic QA exemplars, one per candidate that yields a question.

    Only "yes" goes to the question generator (with the first caption); the "no" exemplars ask about objects
    that no caption mentions, so they are true of this image.
    """

    def __init__(
        self,
        config: QuestionGenConfig,
        lm: FrozenLM | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        quantize: str | None = None,
    ) -> None:
        self.config = config
        self.templates = TemplateQuestions()
        self.backend: _Backend | None
        if config.backend == "t5":
            self.backend = T5Questions(config, device, dtype, quantize)
        elif config.backend == "template":
            self.backend = self.templates
        elif config.backend == "llm":
            if lm is None:
                raise ValueError("the llm question generator needs the frozen LM")
            self.backend = LLMQuestions(lm, config.max_new_tokens, config.batch_size)
        else:
            self.backend = None

    def __call__(self, candidates: list[AnswerCandidate], captions: list[str]) -> SyntheticQA:
        return self.many([(candidates, captions)])[0]

    def many(self, caption_sets: list[tuple[list[AnswerCandidate], list[str]]]) -> list[SyntheticQA]:
        """`__call__` for several caption sets (an image's questions, or several images'): the question
        generator gets all their questions at once, so it batches across them."""
        if self.backend is None:
            return [SyntheticQA([]) for _ in caption_sets]
        requests = [self._requests(candidates, captions) for candidates, captions in caption_sets]
        asked = [r for own in requests for r in own]
        written = iter(self.backend.questions(asked) if asked else [])
        results = []
        for own, (_, captions) in zip(requests, caption_sets):
            questions = [_tidy(next(written)) for _ in own]
            results.append(self._exemplars(own, questions, captions) if captions else SyntheticQA([]))
            results[-1].asked = len(own)
        return results

    def _requests(self, candidates: list[AnswerCandidate], captions: list[str]) -> list[QuestionRequest]:
        """One request per askable candidate, then the "yes" question about the first caption."""
        if not captions:
            return []
        context = tuple(captions)
        askable = [
            candidate for candidate in candidates
            if candidate.kind != "yesno"
            and len(candidate.text.split()) <= self.config.max_answer_words
            and candidate.caption_indices
        ]
        yes = AnswerCandidate("yes", "yesno", 0, [0])
        return [QuestionRequest(c, captions[c.caption_indices[0]], context) for c in askable + [yes]]

    def _exemplars(self, requests: list[QuestionRequest], questions: list[str], captions: list[str]) -> SyntheticQA:
        exemplars = [
            QAExemplar(question, request.answer.text, request.caption)
            for request, question in zip(requests[:-1], questions)
            if question
        ]
        other_no, fixed_no = self.templates.absent_object_questions(captions)
        yes_no = [QAExemplar(other_no, "no"), QAExemplar(questions[-1], "yes", captions[0]), QAExemplar(fixed_no, "no")]
        return SyntheticQA(exemplars, [e for e in yes_no if e.question])


def _tidy(question: str) -> str:
    """One question, lower case, ending in a single question mark (T5 models often prefix "question:")."""
    question = " ".join(question.replace("question:", " ").split()).strip().lower()
    question = question.split("?", 1)[0].strip(" .,")
    return f"{question}?" if len(question) > 1 else ""


ATTENTION_BIAS_FLOATS = 2**29  # 2 GiB of float32


class T5Questions:
    """A T5-style seq2seq generator fed the input format its checkpoint was trained on (a prompts/ template,
    by default `answer: {a}  context: {c}`), decoded with beam search."""

    def __init__(self, config: QuestionGenConfig, device: str, dtype: str, quantize: str | None = None) -> None:
        from transformers import AutoModelForSeq2SeqLM

        self.config = config
        self.device = device
        self.model, self.tokenizer = load_frozen(
            AutoModelForSeq2SeqLM, config.model, "question generation", "--qg-model", device, dtype=dtype,
            quantize=quantize,
        )
        self.template = load_template(config.input_template)
        self._cache_argument = cache_argument(self.model)

    @torch.inference_mode()
    def questions(self, requests: list[QuestionRequest]) -> list[str]:
        texts = [
            render_string(
                self.template, answer=r.answer.text,
                context=". ".join(r.captions) if self.config.context == "all" else r.caption,
            )
            for r in requests
        ]
        ids = self.tokenizer(texts, truncation=True, max_length=self.config.max_input_tokens).input_ids
        # Shortest first, so a batch pads to about its own inputs' length (many caption sets' inputs differ).
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        heads = getattr(self.model.config, "num_heads", 1)
        questions: list[str] = [""] * len(ids)
        start = 0
        while start < len(order):
            # T5 adds its relative position bias to the mask as one batch x heads x length x length tensor per
            # layer: long contexts (all captions, up to 2048 tokens) go in fewer rows, so it stays near 2 GiB.
            longest = len(ids[order[min(start + self.config.batch_size, len(order)) - 1]])
            rows = max(1, min(self.config.batch_size, ATTENTION_BIAS_FLOATS // (heads * max(longest, 1) ** 2)))
            chosen = order[start : start + rows]
            batch = self.tokenizer.pad({"input_ids": [ids[i] for i in chosen]}, return_tensors="pt")
            output = self.model.generate(
                input_ids=batch.input_ids.to(self.device),
                attention_mask=batch.attention_mask.to(self.device),
                num_beams=self.config.num_beams,
                max_new_tokens=self.config.max_new_tokens,
                do_sample=False,
                **{self._cache_argument: beam_search_cache()},
            )
            for index, question in zip(chosen, self.tokenizer.batch_decode(output, skip_special_tokens=True)):
                questions[index] = question
            start += rows
        return questions


class TemplateQuestions:
    """Grammatical rule-template questions (prompts/question_templates.json) from the caption's parse.

    The answer's role in its caption picks the template: a number that counts a noun asks "how many", a colour
    of a noun asks "what color", an -ing verb asks what its subject is doing, its object asks what the subject is
    <verb>ing, a place after a locative preposition asks "where", the noun that does something asks "what is
    <doing it>". An answer the parse gives no such role gets no question (an ungrammatical exemplar teaches
    the answerer nothing).
    """

    def __init__(self, spacy_model: str = "en_core_web_sm") -> None:
        self.templates = load_json("question_templates.json")
        self.spacy_model = spacy_model

    def questions(self, requests: list[QuestionRequest]) -> list[str]:
        nlp = load_spacy(self.spacy_model)
        docs = {caption: nlp(caption) for caption in dict.fromkeys(r.caption for r in requests)}
        return [
            self._yes(docs[r.caption]) if r.answer.kind == "yesno" else self._question(r.answer, docs[r.caption])
            for r in requests
        ]

    def absent_object_questions(self, captions: list[str]) -> tuple[str, str]:
        """Two "no" questions about objects no caption mentions (the second is Img2LLM's "is this a toilet?")."""
        words = {w.strip(".,;:!?").rstrip("s") for c in captions for w in c.lower().split()}
        absent = [o for o in self.templates["absent_objects"] if o not in words]
        if len(absent) < 2:
            return "", ""
        return self._render("no_other", absent_object=absent[1]), self._render("no_fixed", absent_object=absent[0])

    def _render(self, name: str, **values: Any) -> str:
        # Optional slots default to None, so templates can test them.
        return render_string(self.templates[name], **{"verb": None, "preposition": None, **values})

    def _question(self, candidate: AnswerCandidate, doc: Any) -> str:
        span = _find(doc, candidate.text)
        if span is None:
            return ""
        root = span.root
        if root.like_num or root.pos_ == "NUM":
            return self._render("number", noun=_noun(root.head)) if root.dep_ == "nummod" else ""
        if root.pos_ == "ADJ":
            return self._adjective(root)
        if root.pos_ == "VERB":
            subject = _subject(root)
            if root.tag_ != "VBG" or subject is None:
                return ""
            return self._render("activity", be=_be(subject), subject=_noun(subject))
        if root.pos_ == "ADV":
            verb = root.head
            subject = _subject(verb) if verb.pos_ == "VERB" else None
            if root.text.lower() not in self.templates["locative_adverbs"] or subject is None:
                return ""
            return self._render("location", be=_be(subject), subject=_noun(subject), verb=verb.text)
        if root.pos_ in ("NOUN", "PROPN"):
            return self._noun_question(root)
        return ""

    def _adjective(self, adjective: Any) -> str:
        if adjective.dep_ == "amod" and adjective.i > adjective.head.i:
            return ""  # English adjectives come before their noun: "fire hydrant" tagged noun + adjective
        described = adjective.head if adjective.dep_ == "amod" else _subject(adjective.head)
        if described is None or described.pos_ not in ("NOUN", "PROPN"):
            return ""
        if adjective.text.lower() in self.templates["colors"]:
            return self._render("color", be=_be(described), noun=_noun(described))
        return self._render("kind", noun=_noun(described))

    def _noun_question(self, noun: Any) -> str:
        if noun.dep_ == "dobj" and noun.head.tag_ == "VBG" and _subject(noun.head) is not None:
            verb, subject = noun.head, _subject(noun.head)
            # A particle between the verb and its object stays with the verb: "skiing down a hill" asks "what is
            # the group skiing down?", not "what is the group skiing?".
            particle = " ".join(t.lower_ for t in verb.children if t.dep_ == "prt" and verb.i < t.i < noun.i)
            return self._render(
                "object", be=_be(subject), subject=_noun(subject), verb=verb.text, preposition=particle or None
            )
        if noun.dep_ == "pobj":
            return self._prepositional_object(noun)
        if noun.dep_ == "compound":  # "city" of "city street" is no answer on its own
            return ""
        acting = [child for child in noun.children if child.dep_ == "acl" and child.tag_ == "VBG"]
        if noun.dep_ == "ROOT" and acting:
            return self._render("agent", be=_be(noun), predicate=_text(acting[0].subtree))
        if noun.dep_ == "nsubj" and noun.head.tag_ == "VBG":
            verb = noun.head
            predicate = _text(t for t in verb.subtree if t.i >= verb.i)
            return self._render("agent", be=_be(noun), predicate=predicate)
        # What the caption is about; a noun in any other role would make the question ambiguous.
        return self._render("thing") if noun.dep_ == "ROOT" else ""

    def _prepositional_object(self, noun: Any) -> str:
        preposition = noun.head
        owner = preposition.head
        words = preposition.text.lower()
        if owner.text.lower() == "next" and words == "to":  # "next to": the phrase hangs off the adverb "next"
            words, owner = "next to", owner.head
        subject = _subject(owner) if owner.pos_ == "VERB" else owner if owner.pos_ in ("NOUN", "PROPN") else None
        if subject is None or subject is noun:
            return ""
        verb = owner.text if owner.tag_ == "VBG" else None
        if words in self.templates["locative_prepositions"]:
            # "where is the woman holding?" misleads: a verb with an object stays out of a where-question.
            if verb and any(child.dep_ == "dobj" for child in owner.children):
                verb = None
            return self._render("location", be=_be(subject), subject=_noun(subject), verb=verb)
        if verb:
            return self._render("object", be=_be(subject), subject=_noun(subject), verb=verb, preposition=words)
        return ""

    def _yes(self, doc: Any) -> str:
        """A question the caption answers "yes": "is there <the caption>?" or the caption with its verb inverted."""
        root = next((t for t in doc if t.dep_ == "ROOT"), None)
        if root is None:
            return ""
        if root.pos_ in ("NOUN", "PROPN"):
            return self._render("yes", be=_be(root), phrase=doc.text)
        auxiliaries = [t for t in root.children if t.dep_ == "aux" and t.lower_ in ("is", "are")]
        if root.lower_ in ("is", "are"):  # "the sky is blue" -> "is the sky blue?"
            auxiliaries = [root]
        if auxiliaries:
            clause = _text(t for t in doc if t.i != auxiliaries[0].i)
            return self._render("yes_inverted", aux=auxiliaries[0].lower_, clause=clause)
        subject = _subject(root)
        if subject is not None:
            return self._render("yes", be=_be(subject), phrase=_text(subject.subtree))
        return ""


def _find(doc: Any, text: str) -> Any:
    """The first span of `doc` whose words are `text` (case-insensitive), or None."""
    words = text.lower().split()
    for start in range(len(doc) - len(words) + 1):
        if [t.lower_ for t in doc[start : start + len(words)]] == words:
            return doc[start : start + len(words)]
    return None


def _subject(token: Any) -> Any:
    """The noun a verb (or copula) is about: its nominal subject, or the noun it modifies ("a man riding")."""
    subjects = [child for child in token.children if child.dep_ in ("nsubj", "nsubjpass")]
    if subjects:
        return subjects[0]
    if token.dep_ in ("acl", "relcl") and token.head.pos_ in ("NOUN", "PROPN"):
        return token.head
    return None


def _noun(token: Any) -> str:
    """A noun with its compounds ("city street"), without determiners or adjectives (they may be the answer)."""
    return _text([t for t in token.lefts if t.dep_ == "compound"] + [token])


def _be(noun: Any) -> str:
    return "are" if noun.tag_ in ("NNS", "NNPS") else "is"


def _text(tokens: Any) -> str:
    return " ".join(t.lower_ for t in tokens)

class LLMQuestions:
    """Prompts the frozen LLM itself (prompts/question_generation.txt) to write each question."""

    def __init__(self, lm: FrozenLM, max_new_tokens: int, batch_size: int) -> None:
        self.lm = lm
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size

    def questions(self, requests: list[QuestionRequest]) -> list[str]:
        prompts = [render("question_generation", answer=r.answer.text, caption=r.caption) for r in requests]
        return [
            generation.text
            for start in range(0, len(prompts), self.batch_size)
            for generation in self.lm.generate(prompts[start : start + self.batch_size], self.max_new_tokens)
        ]
