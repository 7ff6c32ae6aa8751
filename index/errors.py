"""The one error type the index raises for bad or unusable index data."""

from __future__ import annotations


class IndexError_(RuntimeError):
    """An index directory or file cannot be used; the message names it and says why.

    (Trailing underscore: the builtin IndexError means something else.)
    """

    def __init__(self, message: str, path: str | None = None):
        super().__init__(message)
        self.path = path


class StoreUnavailable(RuntimeError):
    """The vector engine (a Qdrant server or cluster) does not answer or fails.

    Serving maps it to `/api/health` "degraded" and a 503 for questions; it is not the
    index's data being bad (that is IndexError_), so the server keeps running and serves
    again as soon as the engine answers.
    """

    def __init__(self, message: str, backend: str = "qdrant", url: str | None = None):
        super().__init__(message)
        self.backend = backend
        self.url = url
