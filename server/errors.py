"""Error mapping, in one place: every error the server answers goes through `error_response`.

/api and /mcp answer `{"error": "…"}`; /v1 (the OpenAI-compatible endpoint) answers OpenAI's
shape `{"error": {"message", "type", "param", "code"}}` so OpenAI clients show the message.
Bad input is always a 4xx; anything unexpected is logged and answered 500 without details.
"""

from __future__ import annotations

import logging

log = logging.getLogger("clusterqa.server")

# OpenAI's error `type` and `code` per status, as its API sends them.
_OPENAI_KINDS = {
    400: ("invalid_request_error", None), 401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"), 413: ("invalid_request_error", "request_too_large"),
    429: ("requests", "rate_limit_exceeded"), 503: ("server_error", "not_ready"), 500: ("server_error", None),
}


class BodyTooLarge(Exception):
    """A request body went over its limit while it was being read (no Content-Length)."""


class ApiError(Exception):
    """An error with its status, raised by route code; `code` is OpenAI's error code (/v1)."""

    def __init__(self, status: int, message: str, code: str | None = None, headers: dict | None = None):
        super().__init__(message)
        self.status, self.code, self.headers = status, code, headers


def is_openai_path(path: str) -> bool:
    return path == "/v1" or path.startswith("/v1/")


def error_body(path: str, status: int, message: str, code: str | None = None) -> dict:
    if is_openai_path(path):
        kind, default_code = _OPENAI_KINDS.get(status, ("invalid_request_error" if status < 500 else "server_error",
                                                        None))
        return {"error": {"message": message, "type": kind, "param": None, "code": code or default_code}}
    return {"error": message}


def error_response(path: str, status: int, message: str, code: str | None = None, headers: dict | None = None):
    from starlette.responses import JSONResponse

    return JSONResponse(error_body(path, status, message, code), status_code=status, headers=headers or None)


def app_path(request_or_scope) -> str:
    """The path inside the app (uvicorn puts --root-path in front of it)."""
    scope = getattr(request_or_scope, "scope", request_or_scope)
    path, root = scope["path"], scope.get("root_path", "")
    return path[len(root):] if root and path.startswith(root) else path


def validation_message(exc) -> str:
    problems = []
    for e in exc.errors()[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
        problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
    return "invalid request: " + "; ".join(problems)


def install_error_handlers(app, service) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.exceptions import HTTPException

    from .service import NotReady
    from .uploads import UploadError

    def reply(request, status, message, code=None, headers=None):
        return error_response(app_path(request), status, message, code, headers)

    @app.exception_handler(RequestValidationError)  # FastAPI's 422s are answered as 400
    async def bad_request(request, exc):
        return reply(request, 400, validation_message(exc))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc):
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-reading errors in a 400
            return reply(request, 413, str(exc.__cause__))
        return reply(request, exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(ApiError)
    async def api_error(request, exc):
        return reply(request, exc.status, str(exc), exc.code, exc.headers)

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, exc):
        return reply(request, 413, str(exc))

    @app.exception_handler(NotReady)
    async def not_ready(request, exc):
        return reply(request, 503, str(exc), headers={"Retry-After": "5"})

    from index.errors import StoreUnavailable  # a plain module: no model, no FAISS

    @app.exception_handler(StoreUnavailable)  # the index's engine (Qdrant) does not answer: 503, not 500
    async def engine_unavailable(request, exc):
        log.warning("index engine unavailable on %s %s: %s", request.method, request.url.path, exc)
        return reply(request, 503, f"the search engine is unavailable, try again shortly ({exc})",
                     headers={"Retry-After": "5"})

    @app.exception_handler(UploadError)
    async def bad_upload(request, exc):
        return reply(request, exc.status, str(exc))

    # QuestionError is a ValueError; chat is imported lazily, so match it by instance here.
    # (A handler for plain Exception would run in Starlette's outermost middleware, which
    # re-raises and drops the connection.)
    @app.exception_handler(ValueError)
    async def value_error(request, exc):
        if isinstance(exc, service.question_error):
            return reply(request, getattr(exc, "status", 400), str(exc))
        return server_error(request, exc)

    def server_error(request, exc):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return reply(request, 500, "internal server error")

    app.add_exception_handler(Exception, server_error)
