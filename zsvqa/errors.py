"""Errors that reach the user: each says what went wrong and what to do about it."""

from typing import Any


class ZsvqaError(Exception):
    """Base class for every error zsvqa reports to its user (no traceback needed)."""


class InputError(ZsvqaError):
    """Bad user input: an empty question, a missing or corrupt file, mismatched ids."""


class ModelLoadError(ZsvqaError):
    """A model could not be loaded from the hub id or local path it was given."""


def check_type(name: str, value: Any, kinds: type | tuple[type, ...], expected: str) -> None:
    """The Python API's one type check: a wrong type is a TypeError naming the argument, not a misuse later."""
    if not isinstance(value, kinds):
        raise TypeError(f"{name} must be {expected}; got {type(value).__name__} {value!r:.60}")
