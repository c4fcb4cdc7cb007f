import pytest

from zsvqa.normalize import clean_answer, normalize_vqa_answer, okvqa_answer

# (raw, expected) worked out by hand from the official normalization's definition.
VQA_CASES = [
    ("Two", "2"),
    ("none", "0"),
    ("the dog", "dog"),
    ("A Red Car", "red car"),
    ("an apple", "apple"),
    ("dont", "don't"),
    ("isnt it", "isn't it"),
    ("yes.", "yes"),
    ("3.5", "3.5"),
    ("1,000", "1000"),  # digit,digit: every punctuation mark is removed, not spaced
    ("red, white", "red white"),  # comma touching a space is removed
    ("black/white", "black white"),  # slash not touching a space becomes a space
    ("t-shirt", "t shirt"),
    ("hello !", "hello"),
    ("multi\nline\tanswer", "multi line answer"),
    ("  padded  ", "padded"),
    ("Mr. Smith", "mr smith"),
    ("one two three", "1 2 3"),
    ("(left)", "left"),
]


@pytest.mark.parametrize("raw,expected", VQA_CASES)
def test_vqa_normalization(raw: str, expected: str) -> None:
    assert normalize_vqa_answer(raw) == expected


CLEAN_CASES = [
    (" red.\nQuestion: what color is the man", "red"),
    ("The answer is: dog", "dog"),
    ("a dog because it barks", "dog"),  # a leading article goes (annotators write none); number words stay
    ("Two. There are two cats", "two"),
    ("3.5 meters", "3.5 meters"),
    ("It is a frisbee.", "frisbee"),
    ("yes, since the sky is blue", "yes"),
    ("", ""),
    ("\nred\nblue", "red"),  # leading whitespace is not an answer boundary
    ("There are three dogs", "three dogs"),
    # Real answer shapes whose periods are not sentence ends, and answers that are only a reason.
    ("st. bernard", "st. bernard"),
    ("Washington D.C.", "washington d.c."),
    ("2:30 p.m.", "2:30 p.m."),
    ("U.S. army", "u.s. army"),
    ("Mt. Fuji. It is a volcano", "mt. fuji"),
    ("dr. pepper.", "dr. pepper"),
    ("because it is raining", "raining"),
    ("because it's cold", "cold"),
    ("since they are hungry", "hungry"),
    ("no. the dog is asleep", "no"),
    ("Yes! It is", "yes"),
    ("$10.50", "$10.50"),
    # The subject restated, or an article, before the answer.
    ("this room is a bathroom.", "bathroom"),
    ("he is skateboarding", "skateboarding"),
    ("the man is surfing in the ocean", "surfing in the ocean"),
    ("The sky is blue", "blue"),
    ("the bathroom", "bathroom"),
    ("a clock shop", "clock shop"),
    ("the beatles", "beatles"),
    ("two", "two"),
]


@pytest.mark.parametrize("raw,expected", CLEAN_CASES)
def test_clean_answer(raw: str, expected: str) -> None:
    assert clean_answer(raw) == expected


# OK-VQA's processed answers, as its annotation files write them (e.g. realdev okvqa: "fly kite", "pet store",
# "banana", "50 years", "undercooked"): what okvqa_answer must turn a model's answer into.
OKVQA_FORMS = [
    ("bananas", "banana"),
    ("flying kite", "fly kite"),
    ("in a pet store", "pet store"),
    ("the grapes", "grape"),
    ("cutting", "cut"),
    ("10 years", "10 years"),  # a plural after a number stays
    ("undercooked", "undercooked"),  # a participle used as an adjective stays
    ("for fun", "fun"),
    ("two", "2"),  # the official normalization first
    ("tennis", "tennis"),
]


@pytest.mark.parametrize("answer,expected", OKVQA_FORMS)
def test_okvqa_answer_form(answer: str, expected: str) -> None:
    assert okvqa_answer(answer) == expected
