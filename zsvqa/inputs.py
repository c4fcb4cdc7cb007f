"""Checks of the Python API's arguments: a wrong type is a TypeError naming the argument, a bad value (an empty
question, no captions) an InputError, both one clear line."""

from __future__ import annotations

import os
from typing import Any

from PIL import Image

from zsvqa.errors import InputError, check_type
from zsvqa.normalize import blip_question, clean_caption
from zsvqa.prompting import QAExemplar

EMPTY_QUESTION = "the question is empty"


def as_texts(name: str, value: Any) -> list[str]:
    """A str or a list (or tuple) of str as a list. A single str is one item, never a sequence of characters."""
    if isinstance(value, str):
        return [value]
    check_type(name, value, (list, tuple), "a string or a list of strings")
    for index, item in enumerate(value):
        check_type(f"{name}[{index}]", item, str, "a string")
    return list(value)


def check_image(image: Any) -> None:
    check_type("image", image, (str, os.PathLike, Image.Image), "a file path or a PIL image")


def check_question(question: str) -> str:
    check_type("question", question, str, "a string")
    if not question.strip():
        raise InputError(EMPTY_QUESTION)
    return " ".join(question.split())


def check_exemplars(exemplars: list[QAExemplar] | None) -> None:
    if exemplars is not None:
        check_type("exemplars", exemplars, (list, tuple), "a list of QAExemplar")
        for index, exemplar in enumerate(exemplars):
            check_type(f"exemplars[{index}]", exemplar, QAExemplar, "a QAExemplar")


def check_captions(captions: list[str] | str | None) -> list[str]:
    """Given captions, whitespace tidied; none left is an InputError."""
    cleaned = [" ".join(c.split()) for c in as_texts("captions", captions or []) if c.strip()]
    if not cleaned:
        raise InputError("no captions were given; pass at least one caption (or an image)")
    return cleaned


def clean_captions(captions: list[str] | str, clean: bool) -> list[str]:
    """The captions a prompt may show, the empty ones left out: `clean` lower-cases them and drops the final period
    (prompt.clean_captions), otherwise only whitespace is tidied."""
    tidied = (clean_caption(c) if clean else " ".join(c.split()) for c in as_texts("captions", captions))
    return [c for c in tidied if c]


def model_question(question: str, blip: bool) -> str:
    """The question as the matcher and the prompt read it (LAVIS's BlipQuestionProcessor with `blip`)."""
    return blip_question(question) if blip else question
