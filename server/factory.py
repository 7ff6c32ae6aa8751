"""Assembles the ClusterQA app: one FastAPI app with the JSON API, the OpenAI-compatible
endpoint, MCP, the pages and the Gradio chat page, behind one Guard."""

from __future__ import annotations

from .api import api_router
from .errors import install_error_handlers
from .mcp_server import mount_mcp
from .observability import REQUEST_ID_HEADER, install_observability
from .openai_api import openai_router
from .pages import add_page_headers, pages_router
from .security import EmbedTokens, Guard, RateLimiter
from .service import Service
from .ui import mount_ui

CORS_HEADERS = ["Content-Type", "X-API-Key", "Authorization", "X-Embed-Token", "Mcp-Session-Id",
                "Mcp-Protocol-Version", REQUEST_ID_HEADER]


def create_app(settings, service: Service | None = None):
    from fastapi import FastAPI
    from fastapi.middleware.cors import CORSMiddleware

    service = service or Service(settings)
    tokens = EmbedTokens()
    # FastAPI's Swagger page loads its scripts from a CDN; /api/docs (server/pages.py) is self-contained.
    app = FastAPI(title="ClusterQA API", version="1", docs_url=None, openapi_url="/api/openapi.json",
                  redoc_url=None, root_path=settings.root_path or "")
    app.state.service = service
    install_error_handlers(app, service)

    app.include_router(api_router(service, settings))
    app.include_router(openai_router(service))
    app.router.lifespan_context = mount_mcp(app, service)
    app.include_router(pages_router(service, settings, tokens))
    install_observability(app, service, settings)  # /livez, /readyz, /metrics; request ids, access log

    # middleware: the last added runs first
    app.add_middleware(Guard, settings=settings, tokens=tokens, limiter=RateLimiter(settings.rate_limit_per_minute))
    if settings.allowed_origins:
        # Our own CORS policy; Gradio then adds none of its own to the mounted page.
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_credentials=False,
                           allow_methods=["GET", "POST"], allow_headers=CORS_HEADERS,
                           expose_headers=[REQUEST_ID_HEADER])
    add_page_headers(app, settings)

    mount_ui(app, service, settings)  # the Gradio page at /, last: earlier routes win
    return app
