"""Errors that reach the user: each says what went wrong and what to do about it."""


class ZsvqaError(Exception):
    """Base class for every error zsvqa reports to its user (no traceback needed)."""


class InputError(ZsvqaError):
    """Bad user input: an empty question, a missing or corrupt file, mismatched ids."""


class ModelLoadError(ZsvqaError):
    """A model could not be loaded from the hub id or local path it was given."""
