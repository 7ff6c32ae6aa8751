"""The one error type the index raises for bad or unusable index data."""

from __future__ import annotations


class IndexError_(RuntimeError):
    """An index directory or file cannot be used; the message names it and says why.

    (Trailing underscore: the builtin IndexError means something else.)
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path
