"""Caption grounding for yes/no questions: does any caption mention what the question asks about?

A 270M language model reads a yes/no question's pull ("is there ...?" leans to "yes") more than the captions.
What the captions say is plainer evidence: the question's content words (lemmas, with the synonyms and
hypernyms COCO captions use, `prompts/synonyms.json`) looked up in the captions. The answerer adds this
evidence to the model's calibrated log-odds (`answerer.grounding_weight`); a negated question ("is there not a
green shape?") turns it round.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from zsvqa.candidates import load_spacy
from zsvqa.normalize import NUMBER_WORDS
from zsvqa.prompting import load_json

# Words a yes/no question uses to ask, not to name what it asks about.
FRAME_WORDS = {
    "be", "do", "have", "can", "could", "will", "would", "should", "may", "might", "must", "shall", "there", "this",
    "that", "these", "those", "it", "they", "he", "she", "picture", "photo", "image", "scene", "look", "seem",
    "appear", "visible", "see", "show", "contain", "any", "some", "other", "one", "here", "shown", "likely",
    "probably", "get", "go", "make", "take", "real", "someone", "something", "kind", "type", "sort",
}
CONTENT_POS = {"NOUN", "PROPN", "ADJ", "VERB", "NUM"}
NEGATIONS = {"not", "n't", "no", "never", "nobody", "nothing"}


@dataclass
class Grounding:
    """What the captions say about a yes/no question's content words."""

    asked: list[str]  # the question's content lemmas
    found: list[str]  # those a caption mentions (by lemma, synonym or hypernym)
    negated: bool  # the question asks with "not" ("isn't there ...?", "is there not ...?")
    # An asked colour or number the captions do not name while they name another ("is the bus red?": "a blue bus").
    contradicted: list[str] = field(default_factory=list)

    @property
    def share(self) -> float:
        """Share of the asked words the captions mention (0.5 where the question names nothing)."""
        return len(self.found) / len(self.asked) if self.asked else 0.5

    @property
    def evidence(self) -> float:
        """In [-1, 1]: towards "yes" where the captions mention what is asked, towards "no" where they do not, -1
        where they name another colour or number than the one asked; turned round for a negated question."""
        value = -1.0 if self.contradicted else 2 * self.share - 1
        return -value if self.negated else value


class CaptionGrounder:
    """(yes/no question, captions) -> Grounding, with spaCy lemmas and the synonym table."""

    def __init__(self, spacy_model: str = "en_core_web_sm") -> None:
        self.nlp = load_spacy(spacy_model, with_lemmatizer=True)
        table = load_json("synonyms.json")
        self.related = _related_words(table["synonyms"], table["hypernyms"])
        # Attributes that exclude each other: one thing has one colour, one group one count.
        numbers = set(NUMBER_WORDS) | set(NUMBER_WORDS.values())
        self.exclusive = [set(load_json("question_templates.json")["colors"]), numbers - {"none", "0", "zero"}]

    def __call__(self, question: str, captions: list[str]) -> Grounding:
        asked_doc = self.nlp(question.lower())
        # "is there not ...?" negates; a question that opens with a negative ("isn't there a dog?") only expects yes.
        negated = any(token.lower_ in NEGATIONS and token.i > 1 for token in asked_doc)
        asked = list(dict.fromkeys(
            token.lemma_ for token in asked_doc
            if token.pos_ in CONTENT_POS and token.lemma_ not in FRAME_WORDS and token.lower_ not in NEGATIONS
            and token.is_alpha
        ))
        mentioned = self._mentioned(tuple(captions))
        found = [word for word in asked if ({word} | self.related.get(word, set())) & mentioned]
        contradicted = [
            word for word in asked if word not in found
            for values in self.exclusive if word in values and values & mentioned
        ]
        return Grounding(asked, found, negated, contradicted)

    @functools.lru_cache(maxsize=256)
    def _mentioned(self, captions: tuple[str, ...]) -> frozenset[str]:
        """Every word and lemma of the captions, and their two-word phrases ("cell phone")."""
        words: set[str] = set()
        for doc in self.nlp.pipe([c.lower() for c in captions]):
            tokens = [t for t in doc if t.is_alpha]
            words.update(t.lower_ for t in tokens)
            words.update(t.lemma_ for t in tokens)
            words.update(f"{a.lemma_} {b.lemma_}" for a, b in zip(tokens, tokens[1:]))
        return frozenset(words)


def _related(word: str, groups: list[list[str]]) -> set[str]:
    return {other for group in groups if word in group for other in group}


def _related_words(synonyms: list[list[str]], hypernyms: dict[str, list[str]]) -> dict[str, set[str]]:
    """Each word -> the words a caption may use for it: its synonyms, and for a general word ("animal") the
    specific ones ("dog"), never the other way round (a dog is an animal, an animal need not be a dog)."""
    related: dict[str, set[str]] = {}
    for group in synonyms:
        for word in group:
            related.setdefault(word, set()).update(group)
    for general, specific in hypernyms.items():
        words = set(specific)
        for word in specific:
            words |= related.get(word, set())
        related.setdefault(general, set()).update(words)
    return related

