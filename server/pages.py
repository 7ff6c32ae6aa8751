"""The pages: the document view, the chrome-less /embed chat, /widget.js, static web files and
the self-contained API reference (FastAPI's own docs page loads scripts from a CDN)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse

from .errors import ApiError
from .html import esc, render_document

WEB_DIR = Path(__file__).resolve().parent.parent / "data" / "web"


def prefix_of(request: Request) -> str:
    """Where the site lives, for links in our own pages (behind a proxy: its sub-path)."""
    return (request.scope.get("root_path") or "").rstrip("/") + "/"


def frame_ancestors(settings) -> str:
    return " ".join(["'self'", *settings.allowed_origins])


def pages_router(service, settings, tokens) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    ancestors = frame_ancestors(settings)
    embed_template = (WEB_DIR / "embed.html").read_text(encoding="utf-8")
    web_files = {p.name for p in WEB_DIR.iterdir() if p.is_file()}

    @router.get("/doc/{doc_id:path}", response_class=HTMLResponse)
    def doc_page(request: Request, doc_id: str, script: str = "zh-Hans", start: int = Query(0, ge=0),
                 end: int = Query(0, ge=0), qs: int | None = Query(None, ge=0), qe: int | None = Query(None, ge=0),
                 ss: int | None = Query(None, ge=0), se: int | None = Query(None, ge=0)):
        service.require_engine()
        doc = service.index.get_document(doc_id)
        if doc is None:
            return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>404</title>"
                                f"<p>找不到文档 Unknown document: {esc(doc_id)}</p>", 404)
        page = render_document(doc, script, start, end, qs, qe, prefix_of(request), ss, se)
        return HTMLResponse(page, headers={
            "Content-Security-Policy": f"default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
                                       f"frame-ancestors {ancestors}"})

    @router.get("/embed", response_class=HTMLResponse)
    def embed(request: Request):
        page = embed_template.replace("{{TOKEN}}", esc(tokens.issue())).replace("{{PREFIX}}", esc(prefix_of(request)))
        return HTMLResponse(page, headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       f"img-src 'self' data:; connect-src 'self'; frame-ancestors {ancestors}",
            "Cache-Control": "no-store"})

    @router.get("/widget.js")
    def widget():
        return FileResponse(WEB_DIR / "widget.js", media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=300"})

    @router.get("/web/{name}")
    def web_file(name: str):
        # only the files that are there: no path arithmetic on what the client sent (a NUL byte
        # made resolve() raise)
        if name not in web_files:
            raise ApiError(404, "not found")
        return FileResponse(WEB_DIR / name)

    @router.get("/api/docs", response_class=HTMLResponse)
    def api_docs(request: Request):
        """The API reference, rendered from the OpenAPI schema without any external script."""
        spec = request.app.openapi()
        parts = []
        for path, operations in spec["paths"].items():
            for method, op in operations.items():
                body = op.get("requestBody", {}).get("content", {})
                parts.append(
                    f"<h2><code>{esc(method.upper())} {esc(path)}</code></h2><p>{esc(op.get('description', ''))}</p>"
                    + (f"<details><summary>request body</summary><pre>{esc(json.dumps(body, indent=1))}</pre></details>"
                       if body else ""))
        schemas = json.dumps(spec.get("components", {}).get("schemas", {}), indent=1, ensure_ascii=False)
        return HTMLResponse(
            f'<!doctype html><meta charset="utf-8"><title>ClusterQA API</title>'
            f'<link rel="stylesheet" href="{esc(prefix_of(request))}web/doc.css"><h1>ClusterQA API</h1>'
            f'<p>Machine-readable: <a href="openapi.json">openapi.json</a>. Errors are <code>{{"error": "…"}}</code> '
            f"with a 4xx status (OpenAI's error shape under <code>/v1</code>). Keys: <code>X-API-Key</code> or "
            f"<code>Authorization: Bearer</code>. MCP (streamable HTTP): <code>/mcp</code>.</p>"
            + "".join(parts) + f"<h2>Schemas</h2><pre>{esc(schemas)}</pre>")

    return router


def add_page_headers(app, settings) -> None:
    """nosniff everywhere; HTML without a policy of its own may only be framed by allowed origins."""
    ancestors = frame_ancestors(settings)

    @app.middleware("http")
    async def page_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if "content-security-policy" not in response.headers and \
                response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = f"frame-ancestors {ancestors}"
        return response
