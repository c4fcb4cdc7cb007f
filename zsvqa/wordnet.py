"""WordNet 3.0 lemmas, for Img2LLM's lemmatized OK-VQA accuracy (metric.py), read straight from the WordNet
database files: Debian's `wordnet-base` installs them in /usr/share/wordnet, and NLTK's downloaded corpus holds
the same files. Only the noun and verb indexes and exception lists are read (NLTK's own reader also wants
`lexnames`, which Debian does not ship, and parses far more than lemmas need).

`lemmatize` is WordNet's morphy as NLTK's WordNetLemmatizer ran it in 2022, when Img2Prompt scored with it: a
word in the exception list maps to its listed base forms; any other word has the suffix rules applied once, and,
while none of the results is a lemma, applied again to them (NLTK 3.9 dropped that repetition). The shortest
of the candidates that WordNet lists for the part of speech (the word itself first) wins; none: the word.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from zsvqa.errors import InputError

DEBIAN_FOLDER = "/usr/share/wordnet"
FILES = ("index.noun", "index.verb", "noun.exc", "verb.exc")
POS_NAMES = {"n": "noun", "v": "verb"}
# WordNet's detachment rules (morphy(7WN)), in NLTK's order, which breaks ties between equally short lemmas.
SUFFIX_RULES = {
    "n": (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"), ("shes", "sh"),
          ("men", "man"), ("ies", "y")),
    "v": (("s", ""), ("ies", "y"), ("es", "e"), ("es", ""), ("ed", "e"), ("ed", ""), ("ing", "e"), ("ing", "")),
}
MISSING = (
    "the lemmatized OK-VQA accuracy needs the WordNet 3.0 database: install Debian's wordnet-base "
    "(apt-get install wordnet-base), or set ZSVQA_WORDNET to a folder holding " + ", ".join(FILES)
)


@dataclass(frozen=True)
class WordNet:
    lemmas: dict[str, frozenset[str]]  # part of speech ("n", "v") -> its lemmas
    exceptions: dict[str, dict[str, tuple[str, ...]]]  # part of speech -> inflected form -> base forms

    def lemmatize(self, word: str, pos: str) -> str:
        known = self.lemmas[pos]
        if word in self.exceptions[pos]:
            candidates = [word, *self.exceptions[pos][word]]
        else:
            forms = self._detach([word], pos)
            candidates = [word, *forms]
            while forms and not any(form in known for form in candidates):
                forms = self._detach(forms, pos)
                candidates = forms
        found = [form for form in dict.fromkeys(candidates) if form in known]
        return min(found, key=len) if found else word

    @staticmethod
    def _detach(forms: list[str], pos: str) -> list[str]:
        return [form[: -len(old)] + new for form in forms for old, new in SUFFIX_RULES[pos] if form.endswith(old)]


def find_folder() -> Path | None:
    """The first folder holding the files: $ZSVQA_WORDNET, else Debian's folder, else one of NLTK's data folders."""
    if os.environ.get("ZSVQA_WORDNET"):
        folders = [Path(os.environ["ZSVQA_WORDNET"])]
    else:
        import nltk

        folders = [Path(DEBIAN_FOLDER), *(Path(p) / "corpora" / "wordnet" for p in nltk.data.path)]
    return next((f for f in folders if all((f / name).is_file() for name in FILES)), None)


@functools.lru_cache(maxsize=1)
def load() -> WordNet:
    """The noun and verb lemmas and exceptions; an InputError saying how to install WordNet where it is absent."""
    folder = find_folder()
    if folder is None:
        chosen = os.environ.get("ZSVQA_WORDNET")
        raise InputError(f"ZSVQA_WORDNET ({chosen!r}) lacks one of {', '.join(FILES)}" if chosen else MISSING)
    lemmas, exceptions = {}, {}
    for pos, name in POS_NAMES.items():
        with open(folder / f"index.{name}", encoding="utf-8") as index:
            # The license header's lines start with a space; every other line starts with its lemma.
            lemmas[pos] = frozenset(line.split(" ", 1)[0] for line in index if not line.startswith(" "))
        with open(folder / f"{name}.exc", encoding="utf-8") as listed:
            exceptions[pos] = {words[0]: tuple(words[1:]) for words in map(str.split, listed) if words}
    return WordNet(lemmas, exceptions)
