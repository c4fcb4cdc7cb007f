"""Answer normalization.

`normalize_vqa_answer` follows the definition of the official VQA evaluation (punctuation, periods, number
words, articles, contractions); it is written here from that definition. `clean_answer` turns a language
model's raw continuation into a short answer: it cuts at the first sentence end or newline, removes
explanations and filler, and keeps the model's own words (lower case, trimmed): the official evaluation compares
raw strings when the ten human answers agree, so normalizing a prediction ("t-shirt" -> "t shirt") can cost
accuracy. `clean_caption` is the one hygiene step for every caption that enters the system.
"""

from __future__ import annotations

import re

# The official evaluation's contraction list: forms typed without an apostrophe, mapped to the standard form.
CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've", "couldnt": "couldn't",
    "couldn'tve": "couldn't've", "couldnt've": "couldn't've", "didnt": "didn't", "doesnt": "doesn't",
    "dont": "don't", "hadnt": "hadn't", "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't",
    "havent": "haven't", "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's",
    "howd": "how'd", "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've", "itll": "it'll",
    "let's": "let's", "maam": "ma'am", "mightnt": "mightn't", "mightnt've": "mightn't've",
    "mightn'tve": "mightn't've", "mightve": "might've", "mustnt": "mustn't", "mustve": "must've",
    "neednt": "needn't", "notve": "not've", "oclock": "o'clock", "oughtnt": "oughtn't",
    "ow's'at": "'ow's'at", "'ows'at": "'ow's'at", "'ow'sat": "'ow's'at", "shant": "shan't",
    "shed've": "she'd've", "she'dve": "she'd've", "she's": "she's", "shouldve": "should've",
    "shouldnt": "shouldn't", "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've",
    "somebody'd": "somebodyd", "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's", "thered": "there'd",
    "thered've": "there'd've", "there'dve": "there'd've", "therere": "there're", "theres": "there's",
    "theyd": "they'd", "theyd've": "they'd've", "they'dve": "they'd've", "theyll": "they'll",
    "theyre": "they're", "theyve": "they've", "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've",
    "we'dve": "we'd've", "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd", "wheres": "where's",
    "whereve": "where've", "whod": "who'd", "whod've": "who'd've", "who'dve": "who'd've", "wholl": "who'll",
    "whos": "who's", "whove": "who've", "whyll": "why'll", "whyre": "why're", "whys": "why's",
    "wont": "won't", "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've", "youd": "you'd",
    "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll", "youre": "you're", "youve": "you've",
}
NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}
ARTICLES = {"a", "an", "the"}
PUNCTUATION = [";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!"]
DIGIT_COMMA_DIGIT = re.compile(r"(\d)(,)(\d)")
# A period that is not a decimal point (not followed by a digit) is punctuation.
NON_DECIMAL_PERIOD = re.compile(r"(?!<=\d)(\.)(?!\d)")


def normalize_whitespace(text: str) -> str:
    """The official first step, applied to every answer: newlines and tabs become spaces."""
    return text.replace("\n", " ").replace("\t", " ").strip()


def process_punctuation(text: str) -> str:
    """Remove a punctuation mark where it touches a space (or the text has digit,digit); else space it out."""
    out = text
    for mark in PUNCTUATION:
        if (mark + " " in text or " " + mark in text) or DIGIT_COMMA_DIGIT.search(text) is not None:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return NON_DECIMAL_PERIOD.sub("", out)


def process_digits_and_articles(text: str) -> str:
    words = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            words.append(CONTRACTIONS.get(word, word))
    return " ".join(words)


def normalize_vqa_answer(text: str) -> str:
    """The official VQA answer normalization (punctuation, then number words, articles and contractions)."""
    return process_digits_and_articles(process_punctuation(normalize_whitespace(text)))


# Model continuations often explain themselves; the answer is what comes before these.
_FILLER_CUT = re.compile(r"\s\b(because|since|as it|as they|which|so that|due to)\b.*$")
# An answer that is only an explanation keeps its reason: "because it is raining" -> "it is raining" -> "raining".
_LEADING_REASON = re.compile(r"^(because|since|due to)\s+")
_LEADING_FILLER = re.compile(
    r"^(the answer is|answer is|answer:|it is|it's|this is|that is|there is|there are|they are|they're|he is|he's|"
    r"she is|she's|we are|i think|i believe|i see)\s*:?\s*"
)
# "this room is a bathroom", "the man is surfing": the subject restated before the answer.
_RESTATED_SUBJECT = re.compile(r"^(this|that|these|those|the|his|her|their)( \w+){1,2} (is|are|was|were) (?=\w)")
# Annotators write "bathroom", not "the bathroom"; the official metric compares raw strings when they agree.
_LEADING_ARTICLE = re.compile(r"^(a|an|the) (?=\w)")
# Periods that do not end a sentence: after a title or short form ("st. bernard", "mt. fuji") or inside letters
# written with periods ("d.c.", "p.m.", "u.s.").
_ABBREVIATIONS = ("st", "mt", "mr", "mrs", "ms", "dr", "jr", "sr", "vs", "ft", "jan", "feb", "aug", "sept", "oct",
                  "nov", "dec", "ave", "blvd", "co", "inc", "ltd", "approx", "etc")
_SENTENCE_END = re.compile(
    r"(?<![.\s]\w)(?<!^\w)" + "".join(rf"(?<!\b{a})" for a in _ABBREVIATIONS) + r"[.!?](?!\d)(?=\s|$)",
    re.IGNORECASE,
)


def clean_answer(raw: str) -> str:
    """A short answer, written as annotators write theirs, from a model's raw continuation: cut at the first
    newline or sentence end (a period after an abbreviation, "st. bernard", "washington d.c.", "2:30 p.m.", is not
    one); filler, a restated subject ("the man is surfing") and a leading article removed; lower case. Otherwise
    the model's own words: scoring normalizes as the official script does, and only where it does."""
    text = raw.strip().split("\n", 1)[0]
    text = _SENTENCE_END.split(text, 1)[0].strip().lower()
    text = _LEADING_REASON.sub("", text)
    text = _FILLER_CUT.sub("", text).strip(" ,;:")
    previous = None
    while previous != text:
        previous, text = text, _LEADING_FILLER.sub("", text).strip()
        text = _RESTATED_SUBJECT.sub("", text)
    return " ".join(_LEADING_ARTICLE.sub("", text).split())


_TRAILING_PUNCTUATION = " .,;:!"
# LAVIS's BlipQuestionProcessor (blip_processors.py, pre_question) removes these characters and keeps 50 words.
_BLIP_QUESTION_REMOVED = re.compile(r'[.!"()*#:;~]')
BLIP_QUESTION_MAX_WORDS = 50


def blip_question(question: str) -> str:
    """A question as LAVIS's BlipQuestionProcessor gives it to PNP-VQA: lower case, the characters .!"()*#:;~
    removed, trailing spaces dropped, at most 50 space-separated words ("?" stays: GradCAM strips it itself)."""
    words = _BLIP_QUESTION_REMOVED.sub("", question.lower()).rstrip(" ").split(" ")
    return " ".join(words[:BLIP_QUESTION_MAX_WORDS])


def clean_caption(caption: str) -> str:
    """One caption as the prompts expect it: single spaces, lower case, no trailing punctuation.

    COCO captions ("A man riding a bike. ") end in a period and vary in case; templates add their own punctuation.
    """
    return " ".join(caption.split()).strip(_TRAILING_PUNCTUATION).lower()


def okvqa_answer(answer: str) -> str:
    """An answer written as OK-VQA's processed answers are: normalized, no articles, no leading preposition, plural
    nouns and "-ing" verbs as lemmas ("in the pet stores" -> "pet store", "flying kites" -> "fly kite"); a plural
    after a number stays ("10 years"), as in the annotations."""
    from zsvqa.candidates import load_spacy  # spaCy loads only for OK-VQA runs

    doc = load_spacy("en_core_web_sm", with_lemmatizer=True)(normalize_vqa_answer(answer))
    words = []
    for token in doc:
        if token.pos_ == "DET" or (token.i == 0 and token.pos_ == "ADP" and len(doc) > 1):
            continue
        after_number = token.i > 0 and doc[token.i - 1].like_num
        lemma = (token.tag_ in ("NNS", "NNPS") and not after_number) or token.tag_ == "VBG"
        words.append(token.lemma_.lower() if lemma else token.lower_)
    return " ".join(words)
