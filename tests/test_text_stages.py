"""Candidates, rule-based questions and prompt rendering against hand-worked expectations; prompt budget trimming."""

import pytest

from conftest import CAPTIONS, GOLDEN, assert_golden
from zsvqa.candidates import AnswerCandidate, AnswerCandidateExtractor, load_spacy
from zsvqa.config import CandidateConfig, PromptConfig, QuestionGenConfig
from zsvqa.errors import InputError
from zsvqa.prompting import PromptBuilder, QAExemplar, select_captions
from zsvqa.question_generation import QuestionGenerator


@pytest.fixture(scope="module")
def candidates() -> list[AnswerCandidate]:
    return AnswerCandidateExtractor(CandidateConfig())(CAPTIONS)


def test_filtered_candidates_count_captions_and_drop_articles(candidates: list[AnswerCandidate]) -> None:
    found = {c.text: c for c in candidates}
    # Worked by hand from conftest.CAPTIONS: "man" in captions 0 and 1, "red bicycle" in 0 and 3.
    assert (found["man"].count, found["man"].caption_indices) == (2, [0, 1])
    assert (found["red bicycle"].kind, found["red bicycle"].caption_indices) == ("chunk", [0, 3])
    assert found["two"].kind == "number" and found["riding"].kind == "verb"
    assert not any(c.text.startswith(("a ", "the ")) for c in candidates)
    counts = [c.count for c in candidates if c.kind != "yesno"]
    assert counts == sorted(counts, reverse=True)
    assert [c.text for c in candidates[-2:]] == ["yes", "no"]
    few = AnswerCandidateExtractor(CandidateConfig(max_candidates=3))(CAPTIONS)
    assert len(few) == 3 + 2 and [c.text for c in few[:3]] == [c.text for c in candidates[:3]]


def test_img2llm_candidates_follow_the_reference() -> None:
    # Mentions are counted (the reference counts every mention), articles stay in chunks, a proper noun comes
    # only as an entity or chunk (its token tags leave PROPN out), chunks of four words are too long.
    captions = ["a dog and a dog near a big red barn", "John walks a dog"]
    found = {c.text: c for c in AnswerCandidateExtractor(CandidateConfig(extraction="img2llm"))(captions)}
    assert found["dog"].count == 3 and found["dog"].caption_indices == [0, 1]
    assert "a big red barn" not in found and "a dog" in found and found["a dog"].count == 3
    assert found["john"].kind in ("entity", "chunk")


QUESTION_CASES = [
    # (caption, answer, question) worked out by hand: each answer's role in its caption picks the question.
    ("a man riding a red bicycle down a city street", "red", "what color is the bicycle?"),
    ("a man riding a red bicycle down a city street", "bicycle", "what is the man riding?"),
    ("a man riding a red bicycle down a city street", "riding", "what is the man doing?"),
    ("a man riding a red bicycle down a city street", "street", "where is the man?"),
    ("a man riding a red bicycle down a city street", "man", "what is riding a red bicycle down a city street?"),
    ("two dogs are playing with a frisbee in the park", "two", "how many dogs are there?"),
    ("two dogs are playing with a frisbee in the park", "playing", "what are the dogs doing?"),
    ("two dogs are playing with a frisbee in the park", "frisbee", "what are the dogs playing with?"),
    ("a black cat sleeping on a white couch", "couch", "where is the cat sleeping?"),
    ("a black cat sleeping on a white couch", "white", "what color is the couch?"),
    ("a woman holding an umbrella in the rain", "umbrella", "what is the woman holding?"),
    ("a large wooden table in a dining room", "wooden", "what kind of table is this?"),
    # A particle between a verb and its object stays with the verb.
    ("a group of people skiing down a snowy hill", "hill", "what is the group skiing down?"),
    ("a woman picking up a book from the floor", "book", "what is the woman picking up?"),
]


@pytest.mark.parametrize("caption,answer,question", QUESTION_CASES)
def test_template_questions_hand_worked(caption: str, answer: str, question: str) -> None:
    generator = QuestionGenerator(QuestionGenConfig(backend="template"))
    candidate = AnswerCandidate(answer, "noun", 1, [0])
    assert generator([candidate], [caption]).pairs == [QAExemplar(question, answer, caption)]


@pytest.fixture(scope="module")
def template_rows() -> list[tuple[str, str, str]]:
    """(caption, answer, question) for every exemplar the template generator makes from the golden captions."""
    captions = (GOLDEN / "qg_captions.txt").read_text().splitlines()
    extractor = AnswerCandidateExtractor(CandidateConfig(max_candidates=100))
    generator = QuestionGenerator(QuestionGenConfig(backend="template"))
    rows = []
    for caption in captions:
        synthetic = generator(extractor([caption]), [caption])
        rows += [(caption, e.answer, e.question) for e in synthetic.yes_no + synthetic.pairs]
    return rows


def test_template_questions_golden_and_every_one_parses_as_a_question(template_rows) -> None:
    nlp = load_spacy("en_core_web_sm")
    for _, _, question in template_rows:
        doc = nlp(question)
        # A question: opens with a wh-word or an auxiliary, ends with one question mark, no cloze left over.
        assert doc[0].tag_ in ("WP", "WDT", "WRB") or doc[0].pos_ == "AUX", question
        assert question.endswith("?") and question.count("?") == 1
        assert ".?" not in question and "what." not in question
    assert len(template_rows) > 3 * len(set(caption for caption, _, _ in template_rows))
    # The golden file records what the generator writes; KNOWN_WRONG below lists the rows in it that are wrong.
    assert_golden("template_questions.tsv", "".join(f"{c}\t{a}\t{q}\n" for c, a, q in template_rows))


# Hand-made word lists for the properties below (not read from prompts/question_templates.json on purpose).
TEMPLATE_WORDS = {"how", "many", "are", "there", "what", "color", "is", "the", "kind", "of", "this", "doing",
                  "where", "in", "picture"}
PREPOSITIONS = {"on", "in", "at", "near", "under", "by", "beside", "behind", "inside", "above", "below", "over",
                "across", "along", "through", "outside", "down", "past", "around", "next", "to", "of", "with",
                "into", "onto", "from", "for", "up", "off"}
NUMBER_WORDS = {"one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"}
COLOR_WORDS = {"black", "white", "red", "blue", "green", "yellow", "orange", "brown", "pink", "purple", "gray",
               "grey", "silver", "gold", "tan", "beige"}

# Rows of the golden file that a reader finds wrong (reviewed by hand). Most come from spaCy parse errors that
# the templates cannot see (the parse is given); only the first breaks a property below, the others pass every
# property and are listed by hand.
KNOWN_WRONG = {
    # grassy/NOUN pobj, plain/ADV: "grassy" taken for the place.
    ("four zebras walking across a grassy plain", "grassy", "where are the zebras walking?"),
    # rides/NOUN dobj, helmet/compound: "a helmet rides" read as one noun phrase, the caption as no clause.
    ("a cyclist wearing a helmet rides past a bus", "rides", "what is the cyclist wearing?"),
    ("a cyclist wearing a helmet rides past a bus", "helmet rides", "what is the cyclist wearing?"),
    ("a cyclist wearing a helmet rides past a bus", "cyclist", "what is wearing a helmet rides past a bus?"),
    ("a cyclist wearing a helmet rides past a bus", "yes", "is there a cyclist wearing a helmet rides past a bus?"),
    # talking/acl of suit: the suit talks.
    ("a man in a suit talking on a cell phone", "talking", "what is the suit doing?"),
    ("a man in a suit talking on a cell phone", "phone", "where is the suit talking?"),
    ("a man in a suit talking on a cell phone", "cell phone", "where is the suit talking?"),
    # fire/NOUN ROOT, hydrant/ADJ: the thing is a fire, not a fire hydrant.
    ("a yellow fire hydrant on a sidewalk", "yellow", "what color is the fire?"),
    ("a yellow fire hydrant on a sidewalk", "fire", "what is in the picture?"),
    ("a yellow fire hydrant on a sidewalk", "yellow fire", "what is in the picture?"),
    # double/amod of decker: "double decker" is one noun, not a kind of decker.
    ("a red double decker bus driving down the street", "double", "what kind of decker is this?"),
    # Right parses, template limits: "in a suit" is what he wears and "at a ball" where he swings, not places.
    ("a man in a suit talking on a cell phone", "suit", "where is the man?"),
    ("a tennis player swinging a racket at a ball", "ball", "where is the tennis player?"),
}


def _words(text: str) -> list[str]:
    return text.replace("?", "").split()


def _at(words: list[str], phrase: str, start: int = 0) -> int:
    """Index of the first occurrence of `phrase` (whole words) in `words` at or after `start`, or -1."""
    target = phrase.split()
    for i in range(start, len(words) - len(target) + 1):
        if words[i : i + len(target)] == target:
            return i
    return -1


def question_problems(caption: str, answer: str, question: str) -> list[str]:
    """Hand-worked properties of one template exemplar; returns the ones it breaks."""
    problems = []
    c, q = caption.split(), _words(question)
    if question != question.lower() or not question.endswith("?") or question.count("?") != 1:
        problems.append("not one lower-case question ending in '?'")
    if any(bad in question for bad in ("  ", " ?", "..", ".?", "what.")) or "what" in q[1:]:
        problems.append("leftover cloze or punctuation")
    if not question.startswith(("what ", "where ", "how many ", "is ", "are ")):
        problems.append("does not open with a question word or auxiliary")
    if answer == "no":  # about an object the caption does not mention, with the right article
        thing = q[3] if len(q) > 3 else ""
        article = "an" if thing[:1] in tuple("aeiou") else "a"
        if question not in (f"is there {article} {thing} in the picture?", f"is this {article} {thing}?"):
            problems.append("not an absent-object question")
        if any(word.rstrip("s") == thing for word in c):
            problems.append("the 'absent' object is in the caption")
        return problems
    if not set(q) <= set(c) | TEMPLATE_WORDS:
        problems.append(f"words from nowhere: {sorted(set(q) - set(c) - TEMPLATE_WORDS)}")
    if answer == "yes":  # "is there <start of the caption>?" or the caption with its auxiliary moved to the front
        moved = any(c[:i] + c[i + 1 :] == q[1:] and c[i] == q[0] for i in range(len(c)))
        if not ((q[1:2] == ["there"] and c[: len(q) - 2] == q[2:]) or moved):
            problems.append("the yes-question is not the caption asked")
        return problems
    a, where = answer.split(), _at(c, answer)
    if where < 0:
        return problems + ["the answer is not in the caption"]
    if _at(q, answer) >= 0:
        problems.append("the question gives the answer away")
    after = c[where + len(a)] if where + len(a) < len(c) else None

    def between(phrase: str) -> list[str]:  # the caption's words after `phrase`, up to the answer
        return c[_at(c, phrase) + len(phrase.split()) : where]

    if question.startswith("how many "):  # "how many dogs are there?" <- "two dogs"
        noun = " ".join(q[2:-2])
        if answer not in NUMBER_WORDS or _at(c, f"{answer} {noun}") < 0:
            problems.append("not a count of the noun")
    elif question.startswith("what color "):  # "what color is the couch?" <- "a white couch", "the sky is blue"
        noun = " ".join(q[4:])
        described = _at(c, noun, where) > where and not set(c[where + 1 : _at(c, noun, where)]) & PREPOSITIONS
        if answer not in COLOR_WORDS or not (described or _at(c, f"{noun} {q[2]} {answer}") >= 0):
            problems.append("not the colour of the noun")
    elif question.startswith("what kind of "):  # "what kind of table is this?" <- "a large wooden table"
        noun = " ".join(q[3:-2])
        if not (_at(c, noun, where) > where and not set(c[where + 1 : _at(c, noun, where)]) & PREPOSITIONS):
            problems.append("the answer does not modify the noun before it")
    elif question == "what is in the picture?":  # the answer is in the caption's first phrase
        first_phrase = next((i for i, w in enumerate(c) if w in PREPOSITIONS or w.endswith("ing")), len(c))
        if where + len(a) > first_phrase:
            problems.append("not what the caption is about")
    elif question.endswith(" doing?"):  # "what is the man doing?" <- "a man riding"
        subject = " ".join(q[3:-1])
        if not (answer.endswith("ing") and 0 <= _at(c, subject) < where):
            problems.append("not the subject's activity")
    elif q[0] == "where":  # "where is the cat sleeping?" <- "a cat sleeping on a couch": after a preposition
        rest = q[3:]
        verb = rest.pop() if rest and rest[-1].endswith("ing") else None
        subject = " ".join(rest)
        if not 0 <= _at(c, subject) < where or not set(between(verb or subject)) & PREPOSITIONS:
            problems.append("the answer is not a place of the subject")
        if after is not None and after not in PREPOSITIONS | {"and"} and not after.endswith("ing"):
            problems.append("the answer does not end its phrase")
    elif q[2] == "the":  # "what is the man riding?" <- "riding a red bicycle"; "playing with a frisbee"
        verb_at = max((i for i, w in enumerate(q) if w.endswith("ing")), default=len(q))
        verb_phrase = " ".join(q[verb_at:])
        if not verb_phrase or _at(c, verb_phrase) < 0 or set(between(verb_phrase)) & PREPOSITIONS:
            problems.append("the answer is not the object of the verb")
    else:  # "what is riding a red bicycle?" <- "a man riding a red bicycle": the answer does it
        predicate = " ".join(q[2:])
        if not _at(c, predicate) > where:
            problems.append("the answer is not the one doing it")
    return problems


def test_template_questions_hold_hand_worked_properties(template_rows) -> None:
    broken = {row: problems for row in template_rows if (problems := question_problems(*row))}
    assert set(broken) <= set(KNOWN_WRONG), {row: p for row, p in broken.items() if row not in KNOWN_WRONG}
    # The list stays true: a fix (or another spaCy) that removes a wrong row must remove it here too.
    assert set(KNOWN_WRONG) <= set(template_rows), set(KNOWN_WRONG) - set(template_rows)
    # Per caption: the yes/no exemplars first (no, yes, no), then one row per answer, never repeated.
    by_caption: dict[str, list[tuple[str, str]]] = {}
    for caption, answer, question in template_rows:
        by_caption.setdefault(caption, []).append((answer, question))
    for caption, pairs in by_caption.items():
        assert [a for a, _ in pairs[:3]] == ["no", "yes", "no"], caption
        answers = [a for a, _ in pairs[3:]]
        assert len(answers) == len(set(answers)) and not {"yes", "no"} & set(answers), caption


@pytest.mark.parametrize("answer,question,problem", [
    # Each breaks the named property for "a man riding a red bicycle down a city street" (worked by hand).
    ("red", "a man riding a what down a city street?", "leftover cloze"),
    ("red", "why is the man riding?", "does not open with a question word"),
    ("red", "what color is the bicycle", "not one lower-case question"),
    ("red", "What color is the bicycle?", "not one lower-case question"),
    ("red", "what color is the red bicycle?", "gives the answer away"),
    ("red", "what color is the bike?", "words from nowhere"),
    ("man", "what color is the bicycle?", "not the colour of the noun"),
    ("red", "what color is the street?", "not the colour of the noun"),  # "down" in between: another phrase
    ("man", "how many bicycle are there?", "not a count of the noun"),
    ("street", "what kind of man is this?", "does not modify the noun"),
    ("street", "what is in the picture?", "not what the caption is about"),
    ("red", "what is the man doing?", "not the subject's activity"),
    ("bicycle", "where is the man?", "not a place of the subject"),
    ("city", "where is the man?", "does not end its phrase"),  # "city street"
    ("street", "what is the man riding?", "not the object of the verb"),  # "down" in between
    ("street", "what is riding a red bicycle?", "not the one doing it"),
    ("no", "is there a bicycle in the picture?", "'absent' object is in the caption"),
    ("no", "is there a elephant in the picture?", "not an absent-object question"),
    ("yes", "is there a red bicycle?", "not the caption asked"),
])
def test_question_properties_catch_bad_questions(answer: str, question: str, problem: str) -> None:
    problems = question_problems("a man riding a red bicycle down a city street", answer, question)
    assert any(problem in p for p in problems), problems


def test_yes_no_exemplars_come_first_and_only_yes_is_generated() -> None:
    asked: list[str] = []

    class Recording:
        def questions(self, requests):  # type: ignore[no-untyped-def]
            asked.extend(r.answer.text for r in requests)
            return [f"question about {r.answer.text}?" for r in requests]

    generator = QuestionGenerator(QuestionGenConfig(backend="template"))
    generator.backend = Recording()
    synthetic = generator(AnswerCandidateExtractor(CandidateConfig())(CAPTIONS), CAPTIONS)
    assert "yes" in asked and "no" not in asked
    assert [(e.question, e.answer) for e in synthetic.yes_no] == [
        ("is there a giraffe in the picture?", "no"), ("question about yes?", "yes"), ("is this a toilet?", "no")
    ]
    assert all(e.answer not in ("yes", "no") for e in synthetic.pairs)
    # A caption that mentions a toilet moves the fixed "no" question to an object that is absent.
    other_no, fixed_no = generator.templates.absent_object_questions(["a toilet next to a sink"])
    assert fixed_no == "is this a giraffe?" and other_no == "is there an elephant in the picture?"


def test_adjective_after_its_noun_is_a_misparse_and_gets_no_question() -> None:
    # spaCy tags "hydrant" an adjective of "fire"; English adjectives come first, so no "what kind of fire is this?"
    generator = QuestionGenerator(QuestionGenConfig(backend="template"))
    caption = "a yellow fire hydrant on a sidewalk"
    assert generator([AnswerCandidate("hydrant", "noun", 1, [0])], [caption]).pairs == []


def test_long_answers_dropped() -> None:
    long = AnswerCandidate("a very long answer of words", "chunk", 1, [0])
    short = AnswerCandidate("bike", "noun", 1, [0])
    synthetic = QuestionGenerator(QuestionGenConfig(backend="template"))([long, short], ["a man on a bike"])
    assert [e.answer for e in synthetic.pairs] == ["bike"]


def test_no_question_generator_gives_no_exemplars(candidates: list[AnswerCandidate]) -> None:
    synthetic = QuestionGenerator(QuestionGenConfig(backend="none"))(candidates, CAPTIONS)
    assert synthetic.pairs == [] and synthetic.yes_no == []


EXEMPLARS = [QAExemplar("what is the man riding?", "bicycle", CAPTIONS[0]), QAExemplar("is it red?", "yes", CAPTIONS[3])]
LEADING = [QAExemplar("is this a toilet?", "no")]

# The prompts the answerer reads, written out by hand. img2llm is Img2LLM's reference format byte for byte:
# captions capitalised and closed by a period with no space between them, no space after the colons, the
# test question in lower case.
HAND_WRITTEN = {
    "img2llm": (
        "Please reason the answer of the questions according to the given contexts.\n"
        "Contexts:A man riding a red bicycle down a city street.A man on a bike next to two parked cars.\n"
        "Question:Is this a toilet?\nAnswer:no\n"
        "Question:What is the man riding?\nAnswer:bicycle\n"
        "Question:Is it red?\nAnswer:yes\n"
        "Question:what color is the bike?\nAnswer:"
    ),
    "img2llm_readable": (
        "Please reason the answer of the questions according to the given contexts.\n"
        "Contexts: A man riding a red bicycle down a city street. A man on a bike next to two parked cars.\n"
        "Question: Is this a toilet?\nAnswer: no\n"
        "Question: What is the man riding?\nAnswer: bicycle\n"
        "Question: Is it red?\nAnswer: yes\n"
        "Question: What color is the bike?\nAnswer:"
    ),
    # LAVIS PNP-VQA: "question \\n caption." per passage (a literal backslash-n), all lower case.
    "unifiedqa": (
        "what color is the bike? \\n a man riding a red bicycle down a city street.\n"
        "what color is the bike? \\n a man on a bike next to two parked cars."
    ),
}


@pytest.mark.parametrize("template", list(HAND_WRITTEN))
def test_prompts_match_hand_written(template: str) -> None:
    style = "unifiedqa" if template == "unifiedqa" else "img2llm"
    config = PromptConfig(style=style, template=template, captions_per_passage=1 if style == "unifiedqa" else None)
    prompt = PromptBuilder(config)("What color is the bike?", CAPTIONS[:2], EXEMPLARS, leading=LEADING)
    assert prompt.text == HAND_WRITTEN[template]
    assert prompt.answer_prefix == ("" if template == "img2llm" else " ")


# PICa's format (Yang et al.; retrieved training examples, each with a caption of its own image): instruction,
# then per example "===", its context, "===", Q and A and a blank line; the test captions joined by ". "; the
# question as asked. The question-independent head ends where the test question's line starts.
PICA_HAND_WRITTEN = (
    "Please answer the question according to the above context.\n"
    "===\n"
    "Context: a man riding a red bicycle down a city street\n"
    "===\n"
    "Q: what is the man riding?\n"
    "A: bicycle\n"
    "\n"
    "===\n"
    "Context: a red bicycle on the street\n"
    "===\n"
    "Q: is it red?\n"
    "A: yes\n"
    "\n"
    "===\n"
    "Context: a man riding a red bicycle down a city street. a man on a bike next to two parked cars\n"
    "===\n"
    "Q: What color is the bike?\n"
    "A:"
)


def test_pica_prompt_matches_hand_written() -> None:
    prompt = PromptBuilder(PromptConfig(style="pica"))("What color is the bike?", CAPTIONS[:2], EXEMPLARS)
    assert prompt.text == PICA_HAND_WRITTEN and prompt.passages == [PICA_HAND_WRITTEN]
    assert prompt.answer_prefix == " "
    assert prompt.text[prompt.shared_prefix :] == "Q: What color is the bike?\nA:"


def test_shared_heads_and_single_passage_unifiedqa_by_hand() -> None:
    # The head an answerer may encode once per image: everything above the test question's line.
    img2llm = PromptBuilder(PromptConfig())("What color is the bike?", CAPTIONS[:2], EXEMPLARS, leading=LEADING)
    assert img2llm.text[img2llm.shared_prefix :] == "Question:what color is the bike?\nAnswer:"
    # UnifiedQA with every caption in one passage: "question \n caption. caption." The question comes first,
    # so nothing is shared.
    single = PromptBuilder(PromptConfig(style="unifiedqa"))("What color is the bike?", CAPTIONS[:2])
    expected = (
        "what color is the bike? \\n a man riding a red bicycle down a city street. "
        "a man on a bike next to two parked cars."
    )
    assert single.text == expected and single.passages == [expected] and single.shared_prefix == 0


def test_leading_exemplars_do_not_count_towards_the_limit() -> None:
    prompt = PromptBuilder(PromptConfig(num_exemplars=1))("q?", CAPTIONS, EXEMPLARS, leading=LEADING)
    assert prompt.exemplars == LEADING + EXEMPLARS[:1]


def test_unifiedqa_passages_use_literal_backslash_n() -> None:
    prompt = PromptBuilder(PromptConfig(style="unifiedqa", captions_per_passage=1))("What Color?", CAPTIONS[:3])
    assert prompt.passages == [f"what color? \\n {c}." for c in CAPTIONS[:3]]


def test_caption_selection_follows_img2llm() -> None:
    captions = ["a dog", "a dog and a cat", "a dog on grass", "grass and sky"]
    # The list ends in "yes" and "no", as the extractor builds it; the walk leaves "no" out, as the reference walks
    # its top answers plus "yes." only.
    candidates = [
        AnswerCandidate("dog", "noun", 3, [0, 1, 2]),
        AnswerCandidate("grass", "noun", 2, [2, 3]),
        AnswerCandidate("cat", "noun", 1, [1]),
        AnswerCandidate("yes", "yesno", 0, []),
        AnswerCandidate("no", "yesno", 0, []),
    ]
    # Turns walk the candidates from the last but "no": yes -> caption 0, cat -> 1, grass -> 2, dog -> (0 taken)
    # 1 taken, 2 taken: nothing; then wrap: yes -> 0 taken, nothing; cat -> nothing; grass -> 3.
    assert select_captions(captions, candidates, 3) == ["a dog", "a dog and a cat", "a dog on grass"]
    assert select_captions(captions, candidates, 30) == ["a dog", "a dog and a cat", "a dog on grass", "grass and sky"]
    # No filling: a caption no answer leads to stays out.
    assert select_captions(captions + ["unrelated words"], candidates, 30) == captions


def test_caption_walk_reaches_the_second_answer_with_the_extractors_list() -> None:
    # The img2llm preset walks as many turns as it has answers (30 and 30); here 3 and 3, on the extractor's own list.
    captions = ["a dog on the grass", "a dog near a tree", "a cat near a tree", "a dog and a cat"]
    candidates = AnswerCandidateExtractor(CandidateConfig(extraction="img2llm", max_candidates=3))(captions)
    # By hand: "dog" and "a dog" are in captions 0, 1 and 3 (3 mentions each), "tree" in 1 and 2 (2), then yes, no.
    assert [(c.text, c.caption_indices) for c in candidates] == [
        ("dog", [0, 1, 3]), ("a dog", [0, 1, 3]), ("tree", [1, 2]), ("yes", []), ("no", []),
    ]
    # yes -> caption 0; tree -> 1; "a dog" -> 0 and 1 taken: 3. Starting at "no" would spend a turn on caption 0
    # and one on "yes" (0 again, nothing), and the second answer ("a dog") would never get its turn.
    assert select_captions(captions, candidates, 3) == [captions[0], captions[1], captions[3]]
    prompt = PromptBuilder(PromptConfig(num_captions=3))("what is it?", captions, [], candidates)
    assert prompt.captions == [captions[0], captions[1], captions[3]]


def words(text: str) -> int:
    return len(text.split())


def test_budget_drops_exemplars_then_captions_never_the_question() -> None:
    question = "what is on the table near the window?"
    full = PromptBuilder(PromptConfig())(question, CAPTIONS, EXEMPLARS)
    budget = words(full.text) - 1
    prompt = PromptBuilder(PromptConfig(), words, budget)(question, CAPTIONS, EXEMPLARS)
    assert (prompt.dropped_exemplars, prompt.dropped_captions) == (1, 0)
    assert prompt.num_tokens <= budget and question in prompt.text

    no_exemplars = PromptBuilder(PromptConfig())(question, CAPTIONS, [])
    tight = PromptBuilder(PromptConfig(), words, words(no_exemplars.text) - 1)(question, CAPTIONS, EXEMPLARS)
    assert tight.exemplars == [] and tight.dropped_captions == 1 and tight.captions == CAPTIONS[:-1]
    assert tight.text.endswith(f"Question:{question}\nAnswer:")

    with pytest.raises(InputError, match="question alone"):
        PromptBuilder(PromptConfig(), words, 3)(question, CAPTIONS, EXEMPLARS)


def test_custom_template_file(tmp_path) -> None:
    template = tmp_path / "mine.txt"
    template.write_text("{{ captions | length }} captions. Q: {{ question }} A:\n")
    prompt = PromptBuilder(PromptConfig(template=str(template)))("why?", CAPTIONS)
    assert prompt.text == "4 captions. Q: why? A:"
    with pytest.raises(InputError, match="cannot read prompt template"):
        PromptBuilder(PromptConfig(template=str(tmp_path / "missing.txt")))
