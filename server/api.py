"""The JSON API under /api: health, ask (whole and streamed), documents, admin uploads."""

from __future__ import annotations

import hmac
import json
import logging

from fastapi import APIRouter, File, Header, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from . import models
from .errors import ApiError
from .uploads import document_record, ingest_upload, list_documents, remove_document

log = logging.getLogger("clusterqa.server")


def sse_event(kind: str, data: dict) -> str:
    return f"event: {kind}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def start_stream(service, req: models.AskRequest):
    """The engine's event iterator with its first event already pulled, so bad input still
    gets a plain 4xx JSON response (QuestionError raises here, before any byte is sent)."""
    engine = service.require_engine()
    events = await run_in_threadpool(engine.stream, req.question, history=req.history_dicts(), top_k=req.top_k)
    first = await run_in_threadpool(next, events, None)
    return first, events


def api_router(service, settings) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["api"], responses=models.ERRORS)
    answer_route = dict(response_model=models.Answer, response_model_exclude_unset=True)

    @router.get("/health", response_model=models.Health, response_model_exclude_unset=True)
    def health():
        """ready | building (with progress) | error; document and chunk counts, model, mode, LLM reachability."""
        return service.health()

    @router.post("/ask", **answer_route)
    def ask(req: models.AskRequest):
        """Answer a question (with optional history); returns the Answer JSON (docs/CONTRACTS.md)."""
        engine = service.require_engine()
        return engine.ask(req.question, history=req.history_dicts(), top_k=req.top_k).to_dict()

    @router.post("/ask/stream", response_class=StreamingResponse,
                 responses={200: {"content": {"text/event-stream": {}},
                                  "description": "`status` and `token` events, then one `answer` event (or `error`)"}})
    async def ask_stream(req: models.AskRequest):
        """Server-Sent Events: `status` and `token` events, then one `answer` event (or `error`)."""
        first, events = await start_stream(service, req)

        def sse():
            try:
                event = first
                while event is not None:
                    yield sse_event(event["type"], event)
                    event = next(events, None)
            except Exception as exc:
                if not isinstance(exc, service.question_error):
                    log.exception("stream failed")
                msg = str(exc) if isinstance(exc, service.question_error) else "internal server error"
                yield sse_event("error", {"type": "error", "error": msg})

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @router.get("/documents", response_model=models.DocumentList)
    def documents():
        """Every indexed document with its chunk count."""
        service.require_engine()
        docs = list_documents(service.index)
        return {"documents": docs, "count": len(docs)}

    @router.get("/documents/{doc_id:path}", response_model=models.DocumentText)
    def document(doc_id: str):
        """One document: metadata, chunk count and its canonical text."""
        service.require_engine()
        doc = service.index.get_document(doc_id)
        if doc is None:
            raise ApiError(404, f"unknown document: {doc_id}")
        return document_record(service.index, doc, with_text=True)

    if settings.admin_key:
        def require_admin(key: str):
            if not (key and hmac.compare_digest(key, settings.admin_key)):
                raise ApiError(401, "missing or invalid admin key (X-Admin-Key)")

        @router.post("/admin/documents", tags=["admin"])
        def upload_document(file: UploadFile = File(...), x_admin_key: str = Header("")):
            """Upload a txt/md/html/pdf/docx file; it is checked by content, stored and indexed."""
            require_admin(x_admin_key)
            data = file.file.read(int(settings.max_upload_mb * 1024 * 1024) + 1)
            return ingest_upload(service, data, file.filename or "upload")

        @router.delete("/admin/documents/{doc_id:path}", tags=["admin"])
        def delete_document(doc_id: str, x_admin_key: str = Header("")):
            require_admin(x_admin_key)
            removed = remove_document(service, doc_id)
            if not removed:
                raise ApiError(404, f"unknown document: {doc_id}")
            return {"removed": removed}

    return router
