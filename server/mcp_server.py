"""MCP server (official `mcp` SDK): the tools `ask`, `search` and `get_document`.

Two transports:
- streamable HTTP at /mcp on the ClusterQA server itself (stateless, JSON responses; API keys
  are enforced by the same Guard as /api, see server/security.py);
- stdio, for desktop agents that launch a command:

      .venv/bin/python -m server.mcp_server        # same settings as app.py (CLUSTERQA_*, clusterqa.toml)

Tool results are JSON objects: `ask` returns the Answer JSON of docs/CONTRACTS.md.
"""

from __future__ import annotations

import contextlib
import logging

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.server.transport_security import TransportSecuritySettings
from pydantic import Field

from .errors import error_response
from .models import Turn
from .service import NotReady
from .uploads import document_record

log = logging.getLogger("clusterqa.server")
INSTRUCTIONS = ("ClusterQA answers questions (Chinese or English) about documents on advanced-manufacturing "
                "clusters, citing passages with [n] markers. Use `ask` for an answer with citations, `search` "
                "for raw passages, `get_document` for a whole document by its doc_id.")


def build_mcp(service, wait_s: float = 0.0) -> MCPServer:
    """The MCP server over `service`; tools wait up to `wait_s` for the index (stdio starts cold)."""
    mcp = MCPServer("clusterqa", instructions=INSTRUCTIONS, version="1")

    def engine():
        if wait_s:
            service.wait_ready(wait_s)
        try:
            return service.require_engine()
        except NotReady as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool()
    def ask(question: str = Field(description="the question, in Chinese or English"),
            history: list[Turn] | None = Field(None, description="earlier turns, oldest first"),
            top_k: int | None = Field(None, ge=1, le=50, description="passages to retrieve")) -> dict:
        """Answer a question from the documents: the Answer JSON (answer text with [n] markers,
        citations with passage, quote and offsets; answered=false when the documents do not say)."""
        chat = engine()
        turns = [t.model_dump() for t in history] if history is not None else None
        try:
            return chat.ask(question, history=turns, top_k=top_k).to_dict()
        except service.question_error as exc:
            raise ToolError(str(exc)) from None

    @mcp.tool()
    def search(query: str = Field(description="what to look for"),
               top_k: int = Field(5, ge=1, le=50, description="passages to return")) -> dict:
        """Hybrid (dense + BM25) search: passages with chunk ids, scores and character offsets
        into their document's canonical text."""
        engine()
        if not query.strip():
            raise ToolError("empty query")
        hits = service.index.retrieve(query, top_k=top_k)
        return {"query": query, "passages": [
            {"rank": rank, "chunk_id": h.chunk.chunk_id, "doc_id": h.chunk.doc_id, "title": h.chunk.title,
             "source": h.chunk.source, "date": h.chunk.date, "heading": h.chunk.heading,
             "start": h.chunk.start, "end": h.chunk.end, "score": round(float(h.score), 6),
             "dense_score": h.dense_score, "bm25_score": h.bm25_score, "text": h.chunk.text}
            for rank, h in enumerate(hits, start=1)]}

    @mcp.tool()
    def get_document(doc_id: str = Field(description="a doc_id from a citation or a search result")) -> dict:
        """One document: its metadata and canonical text (citation and passage offsets index it)."""
        engine()
        doc = service.index.get_document(doc_id)
        if doc is None:
            raise ToolError(f"unknown document: {doc_id}")
        return document_record(service.index, doc, with_text=True)

    return mcp


def mount_mcp(app, service):
    """Serve the MCP server at /mcp of `app`; returns the lifespan the session manager needs."""
    mcp = build_mcp(service)
    # DNS-rebinding protection checks Host/Origin against localhost only; the Guard's API
    # keys (and allowed_origins for browsers) protect /mcp instead.
    sub = mcp.streamable_http_app(streamable_http_path="/mcp", stateless_http=True, json_response=True,
                                  transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False))
    from starlette.routing import Route

    endpoint = next(r.endpoint for r in sub.routes if getattr(r, "path", "") == "/mcp")
    # POST only: stateless with JSON replies, a GET would open a server-to-client event stream
    # that nothing ever writes to, holding the connection open.
    app.router.routes.append(Route("/mcp", endpoint=endpoint, methods=["POST"]))

    async def post_only(request):
        return error_response("/mcp", 405, "MCP here is stateless streamable HTTP: POST only", headers={"Allow": "POST"})

    app.router.routes.append(Route("/mcp", endpoint=post_only, methods=["GET", "DELETE", "PUT", "PATCH"]))

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        async with mcp.session_manager.run():
            yield

    return lifespan


def main() -> None:
    import sys

    import settings as settings_mod

    from .service import Service

    settings_mod.apply_offline_defaults()
    from .observability import configure_logging

    settings = settings_mod.load_settings()
    configure_logging(settings, stream=sys.stderr)  # stdout is the MCP channel
    service = Service(settings, warm_up=False)
    service.start()
    build_mcp(service, wait_s=600).run("stdio")


if __name__ == "__main__":
    main()
