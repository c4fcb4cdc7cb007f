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
        # A plain value is shown; anything else (an array, a tensor) by its type alone, never its whole content.
        kind = type(value)
        type_name = kind.__name__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__name__}"
        shown = f" {value!r:.60}" if isinstance(value, (str, int, float, bool, type(None))) else ""
        raise TypeError(f"{name} must be {expected}; got {type_name}{shown}")
