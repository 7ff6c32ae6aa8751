"""ClusterQA server: the Gradio chat page, the JSON API, /embed and /widget.js in one process.

    python app.py [--host H] [--port P] [--root-path /sub]

Answers, citations and languages come from `chat.ChatEngine`; this file only wires HTTP
and HTML to it. The index loads (or builds, on first start) in a background thread so the
server answers /api/health and shows progress at once.
"""

import argparse
import hashlib
import hmac
import html
import io
import json
import logging
import math
import os
import re
import secrets
import threading
import time
import unicodedata
import zipfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal
from urllib.parse import quote as urlquote

from pydantic import BaseModel, Field

import settings as settings_mod

log = logging.getLogger("clusterqa.app")
WEB_DIR = Path(__file__).resolve().parent / "data" / "web"

# Routes under /api that stay open without a key and are never rate limited: monitoring
# must see a building or overloaded server, and the docs describe nothing secret.
OPEN_API_PATHS = {"/api/health", "/api/docs", "/api/openapi.json", "/api/docs/oauth2-redirect"}
EMBED_TOKEN_PATHS = {"/api/ask", "/api/ask/stream"}
EMBED_TOKEN_TTL = 12 * 3600


# --------------------------------------------------------------------------------------
# The index and the chat engine, loaded in the background
# --------------------------------------------------------------------------------------


class _NotLoaded(Exception):
    """Stands in for chat.QuestionError until chat is imported."""


class NotReady(Exception):
    """The index is still building, or failed to load."""


class Service:
    """Owns the CorpusIndex and ChatEngine; reports build progress until they are ready."""

    def __init__(self, settings):
        self.settings = settings
        self.status = "building"  # building | ready | error
        self.stage, self.done, self.total = "starting", 0, 0
        self.error = ""
        self.index = None
        self.engine = None
        self.question_error: type[Exception] = _NotLoaded
        self.started = time.monotonic()
        self.ready_after_s: float | None = None
        self.warm = False  # the engine has answered its warm-up questions
        self._last_log = 0.0
        self._feedback_lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._load, name="index-loader", daemon=True).start()

    def _progress(self, stage: str, done: int, total: int) -> None:
        changed = stage != self.stage
        self.stage, self.done, self.total = stage, done, total
        now = time.monotonic()
        if changed or now - self._last_log > 2 or done == total:
            self._last_log = now
            log.info("index %s: %d/%d", stage, done, total)

    def _load(self) -> None:
        try:
            # Imported here: torch/faiss/the model take seconds, the server must be up first.
            from chat import ChatEngine, QuestionError
            from index import load_or_build

            index = load_or_build(self.settings, progress=self._progress)
            engine = ChatEngine(index, self.settings)
            self.engine = engine
            self.question_error = QuestionError
            self.index = index
            self.status = "ready"
            self.ready_after_s = time.monotonic() - self.started
            stats = index.stats()
            log.info("ready in %.1f s: %s documents, %s chunks, model %s, mode %s",
                     self.ready_after_s, stats.get("documents"), stats.get("chunks"),
                     stats.get("model"), self.mode)
            # Answering works now; the warm-up only spares the first askers the lazy loads.
            self._warm_up(engine)
            self.warm = True
            log.info("warm in %.1f s", time.monotonic() - self.started)
        except Exception as exc:  # the server stays up and reports the failure
            log.exception("index failed to load")
            self.status, self.error = "error", f"{type(exc).__name__}: {exc}"

    @staticmethod
    def _warm_up(engine) -> None:
        """One Chinese follow-up and one English question, so that the tokenizers and models
        chat loads lazily are loaded before real users ask (it takes seconds)."""
        try:
            engine.warm_up()  # models, tokenizers and the corpus's sentence vectors
            engine.ask("那美国呢？", history=[{"role": "user", "content": "欧盟如何推动集群发展？"},
                                            {"role": "assistant", "content": "……"}])
            engine.ask("What are the main trends for clusters?")
        except Exception:  # a failed warm-up must not keep the server from answering
            log.warning("warm-up question failed", exc_info=True)

    @property
    def mode(self) -> str:
        return "llm" if self.settings.llm_enabled else "extractive"

    def progress(self) -> dict:
        fraction = (self.done / self.total) if self.total else (1.0 if self.status == "ready" else 0.0)
        return {"stage": self.stage, "done": self.done, "total": self.total, "fraction": round(fraction, 3)}

    def health(self) -> dict:
        out = {"status": self.status, "progress": self.progress(), "mode": self.mode, "warm": self.warm,
               "documents": 0, "chunks": 0, "model": None}
        if self.index is not None:
            stats = self.index.stats()
            out.update(documents=stats.get("documents", 0), chunks=stats.get("chunks", 0),
                       model=stats.get("model"))
        if self.error:
            out["error"] = self.error
        return out

    def status_text(self) -> str:
        """One line for people: the page's status bar and the chat's "not ready" reply."""
        if self.status == "ready":
            h = self.health()
            return f"● 就绪 Ready — {h['documents']} 篇文档 documents, {h['chunks']} 段 passages, {self.mode}"
        if self.status == "error":
            return f"▲ 索引加载失败 The index failed to load: {self.error}"
        p = self.progress()
        pct = f" {p['fraction'] * 100:.0f}%" if p["total"] else ""
        return f"◌ 正在构建索引，请稍候 The index is still building ({p['stage']}{pct}) — please wait"

    def require_engine(self):
        if self.engine is None:
            raise NotReady(self.status_text())
        return self.engine

    def record_feedback(self, record: dict) -> None:
        path = Path(self.settings.feedback_log)
        path.parent.mkdir(parents=True, exist_ok=True)
        line = json.dumps(record, ensure_ascii=False) + "\n"
        with self._feedback_lock, path.open("a", encoding="utf-8") as fh:
            fh.write(line)


# --------------------------------------------------------------------------------------
# Uploads: type by content, names that stay inside upload_dir
# --------------------------------------------------------------------------------------


class UploadError(Exception):
    def __init__(self, message: str, status: int = 415):
        super().__init__(message)
        self.status = status


def sniff_upload(data: bytes, filename: str) -> str:
    """The file's real type as an extension, judged from its bytes (the name only picks .md)."""
    if data.startswith(b"%PDF-"):
        return ".pdf"
    if data.startswith(b"PK\x03\x04"):
        try:
            with zipfile.ZipFile(io.BytesIO(data)) as zf:
                if "word/document.xml" in zf.namelist():
                    return ".docx"
        except zipfile.BadZipFile:
            pass
        raise UploadError("unsupported file type: a zip archive that is not a .docx document")
    if not data.strip():
        raise UploadError("the file is empty", status=400)
    if b"\x00" in data and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UploadError("unsupported file type: binary data (only txt, md, html, pdf, docx)")
    text = None
    for encoding in ("utf-8-sig", "utf-16", "gb18030"):
        try:
            text = data.decode(encoding)
            break
        except UnicodeDecodeError:
            continue
    if text is None or sum(1 for ch in text[:4000] if unicodedata.category(ch) == "Cc" and ch not in "\r\n\t") > 8:
        raise UploadError("unsupported file type: not text, pdf or docx")
    head = text.lstrip()[:1000].lower()
    if head.startswith(("<!doctype html", "<html")) or "<body" in head:
        return ".html"
    if Path(filename).suffix.lower() in (".md", ".markdown"):
        return ".md"
    return ".txt"


def safe_filename(filename: str, ext: str) -> str:
    """A plain file name (no directories, no leading dots) with the sniffed extension."""
    stem = Path(filename.replace("\\", "/")).name
    stem = Path(stem).stem if Path(stem).suffix else stem
    stem = re.sub(r"[^\w.-]+", "_", unicodedata.normalize("NFKC", stem)).strip("._-")[:80]
    return (stem or "upload") + ext


def upload_target(upload_dir: Path, filename: str, ext: str) -> Path:
    upload_dir = Path(upload_dir).resolve()
    target = (upload_dir / safe_filename(filename, ext)).resolve()
    if target.parent != upload_dir:  # cannot happen after safe_filename; checked anyway
        raise UploadError("bad file name", status=400)
    return target


def ingest_upload(service: Service, data: bytes, filename: str, progress=None) -> dict:
    """Check, store and index one uploaded file; returns the index's summary."""
    limit = service.settings.max_upload_mb * 1024 * 1024
    if len(data) > limit:
        raise UploadError(f"file too large (limit {service.settings.max_upload_mb:g} MB)", status=413)
    service.require_engine()
    ext = sniff_upload(data, filename)
    target = upload_target(service.settings.upload_dir, filename, ext)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    summary = service.index.add_paths([target], progress=progress)
    log.info("uploaded %s (%d bytes): %s", target.name, len(data), summary)
    return {"file": target.name, "type": ext.lstrip("."), "summary": summary}


def remove_document(service: Service, doc_id: str) -> int:
    """Drop a document from the index and, if it was uploaded, its stored file."""
    service.require_engine()
    doc = service.index.get_document(doc_id)
    if doc is None:
        return 0
    removed = service.index.remove([doc_id])
    upload_dir = Path(service.settings.upload_dir).resolve()
    stored = Path(doc.path).resolve() if doc.path else None
    if removed and stored and stored.parent == upload_dir and stored.is_file():
        stored.unlink()
    log.info("removed %s", doc_id)
    return removed


def list_documents(index) -> list[dict]:
    return [
        {"doc_id": d.doc_id, "title": d.title, "date": d.date, "language": d.language,
         "source": d.source, "chunks": len(index.chunks_of(d.doc_id))}
        for d in index.documents()
    ]


# --------------------------------------------------------------------------------------
# HTML rendering (everything from documents, answers and users goes through html.escape)
# --------------------------------------------------------------------------------------


def esc(text) -> str:
    return html.escape(str(text if text is not None else ""), quote=True)


def br(escaped_html: str) -> str:
    """Newlines as <br>: a blank line would end the HTML block inside the chat's Markdown."""
    return escaped_html.replace("\r\n", "\n").replace("\n", "<br>")


def safe_href(url: str) -> str | None:
    """Only http(s) URLs become links: a source like "javascript:…" stays plain text."""
    return url if re.match(r"^https?://", url or "", re.I) else None


def doc_url(c: dict, language: str, prefix: str = "") -> str:
    """Shareable link to the cited document, scrolled to the passage, quote highlighted."""
    text, quote = c.get("text", ""), c.get("quote", "")
    qpos = text.find(quote) if quote else -1
    params = f"script={urlquote(language)}&start={int(c.get('start', 0))}&end={int(c.get('end', 0))}"
    if qpos >= 0:
        params += f"&qs={qpos}&qe={qpos + len(quote)}"
    return f"{prefix}doc/{urlquote(c.get('doc_id', ''), safe='/')}?{params}#passage"


def highlight(text: str, quote: str) -> str:
    """The passage escaped, with the quote (a substring of it) inside <mark>."""
    pos = text.find(quote) if quote else -1
    if pos < 0:
        return esc(text)
    return f"{esc(text[:pos])}<mark>{esc(quote)}</mark>{esc(text[pos + len(quote):])}"


def citation_card(c: dict, turn: int, language: str) -> str:
    n = int(c.get("n", 0))
    source = c.get("source", "")
    href = safe_href(source)
    source_html = (f'<a href="{esc(href)}" target="_blank" rel="noopener noreferrer">{esc(source)}</a>'
                   if href else f"<span>{esc(source)}</span>")
    date = f" · {esc(c['date'])}" if c.get("date") else ""
    return (
        f'<details class="cqa-card" id="cite-{turn}-{n}">'
        f'<summary><b>[{n}]</b> {esc(c.get("title", ""))}{date}</summary>'
        f'<div class="cqa-source">来源 Source: {source_html} · '
        f'<a href="{esc(doc_url(c, language))}" target="_blank" rel="noopener">全文 Full document ↗</a></div>'
        f'<div class="cqa-passage">{br(highlight(c.get("text", ""), c.get("quote", "")))}</div>'
        f"</details>"
    )


def answer_html(answer: dict, turn: int) -> str:
    """One assistant message: the answer with [n] linked to its card, then the cards.

    Kept on one line: an HTML block in the chat's Markdown ends at a blank line.
    """
    cited = {int(c.get("n", 0)) for c in answer.get("citations", [])}

    def link(m: re.Match) -> str:
        n = int(m.group(1))
        return f'<a class="cqa-ref" href="#cite-{turn}-{n}">[{n}]</a>' if n in cited else esc(m.group(0))

    parts = re.split(r"(\[\d+\])", answer.get("answer", ""))
    body = "".join(link(re.match(r"\[(\d+)\]", p)) if re.fullmatch(r"\[\d+\]", p) else esc(p) for p in parts)
    body = br(body)
    note = f'<div class="cqa-note">{esc(answer["note"])}</div>' if answer.get("note") else ""
    cards = "".join(citation_card(c, turn, answer.get("language", "zh-Hans")) for c in answer.get("citations", []))
    label = "" if answer.get("answered", True) else '<div class="cqa-source">最接近的段落 Nearest passages:</div>'
    sources = f'<div class="cqa-cards">{label}{cards}</div>' if cards else ""
    return (f'<div class="cqa-answer" data-turn="{turn}">{note}<div class="cqa-text">{body}</div>'
            f'<div class="cqa-tools"><a href="#" class="cqa-copy" role="button">复制 Copy</a></div>'
            f"{sources}</div>")


def plain_html(text: str, css_class: str = "cqa-text") -> str:
    return f'<div class="{css_class}">{br(esc(text))}</div>'


DOC_PAGE = """<!doctype html><html lang="{lang}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><link rel="stylesheet" href="{prefix}web/doc.css"></head>
<body><header><h1>{title}</h1><p class="meta">{date}{source}</p>
<nav>{scripts}</nav></header><main><article class="doc">{body}</article></main></body></html>"""


def render_document(doc, script: str, start: int, end: int, qs: int | None, qe: int | None, prefix: str) -> str:
    """The whole document in the reader's script; the passage has id="passage", the quote is marked."""
    convert = (lambda s: s)
    if script == "zh-Hant":
        from ingest.script import to_traditional

        convert = to_traditional
    text = doc.text
    start, end = max(0, min(start, len(text))), max(0, min(end, len(text)))
    pieces: list[str] = []
    if end > start:
        passage = text[start:end]
        # qs/qe index the passage as shown in the answer (same length in both scripts).
        if qs is not None and qe is not None and 0 <= qs < qe <= len(passage):
            inner = (esc(convert(passage[:qs])) + "<mark>" + esc(convert(passage[qs:qe])) + "</mark>"
                     + esc(convert(passage[qe:])))
        else:
            inner = esc(convert(passage))
        pieces = [esc(convert(text[:start])), f'<span id="passage" class="passage">{inner}</span>',
                  esc(convert(text[end:]))]
    else:
        pieces = [esc(convert(text))]
    href = safe_href(doc.source)
    source = (f' · <a href="{esc(href)}" rel="noopener noreferrer">{esc(doc.source)}</a>' if href
              else f" · {esc(doc.source)}")
    here = f"{prefix}doc/{urlquote(doc.doc_id, safe='/')}?start={start}&end={end}"
    if qs is not None and qe is not None:
        here += f"&qs={qs}&qe={qe}"
    scripts = " · ".join(
        f'<a href="{esc(here)}&script={code}#passage">{label}</a>'
        for code, label in (("zh-Hans", "简体"), ("zh-Hant", "繁體"))
    )
    return DOC_PAGE.format(
        lang="en" if doc.language == "en" else ("zh-Hant" if script == "zh-Hant" else "zh-Hans"),
        title=esc(convert(doc.title)),
        date=esc(doc.date), source=source, scripts=scripts, body="".join(pieces), prefix=esc(prefix),
    )


# --------------------------------------------------------------------------------------
# Keys, page tokens and rate limits
# --------------------------------------------------------------------------------------


def presented_key(headers) -> str:
    key = headers.get("x-api-key", "")
    auth = headers.get("authorization", "")
    if not key and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    return key


class EmbedTokens:
    """Short-lived HMAC tokens baked into /embed so the page can ask without an API key."""

    def __init__(self):
        self._secret = secrets.token_bytes(32)

    def issue(self) -> str:
        expiry = str(int(time.time()) + EMBED_TOKEN_TTL)
        sig = hmac.new(self._secret, expiry.encode(), hashlib.sha256).hexdigest()
        return f"{expiry}.{sig}"

    def valid(self, token: str) -> bool:
        expiry, _, sig = (token or "").partition(".")
        if not expiry.isdigit() or int(expiry) < time.time():
            return False
        good = hmac.new(self._secret, expiry.encode(), hashlib.sha256).hexdigest()
        return hmac.compare_digest(sig, good)


class RateLimiter:
    """Token bucket per client: `per_minute` requests a minute, bursts up to the same number."""

    def __init__(self, per_minute: int):
        self.rate = per_minute / 60.0
        self.capacity = float(per_minute)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, client: str) -> float:
        """0 when allowed, else the seconds to wait."""
        if self.capacity <= 0:
            return 0.0
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(client, (self.capacity, now))
            tokens = min(self.capacity, tokens + (now - last) * self.rate)
            if tokens >= 1:
                self._buckets[client] = (tokens - 1, now)
                return 0.0
            self._buckets[client] = (tokens, now)
            if len(self._buckets) > 100_000:  # forget idle clients rather than grow forever
                self._buckets.clear()
            return (1 - tokens) / self.rate


class BodyTooLarge(Exception):
    pass


class Guard:
    """ASGI middleware for /api/*: size limits (413), API keys (401), rate limits (429)."""

    def __init__(self, app, settings, tokens: EmbedTokens, limiter: RateLimiter):
        self.app, self.settings, self.tokens, self.limiter = app, settings, tokens, limiter
        self.upload_limit = int(settings.max_upload_mb * 1024 * 1024) + 64 * 1024

    def limit_for(self, path: str) -> int:
        if path.startswith("/api/admin/") or not path.startswith("/api/"):
            return self.upload_limit  # uploads (ours and Gradio's) and the page's own calls
        return int(self.settings.max_request_bytes)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        from starlette.datastructures import Headers
        from starlette.responses import JSONResponse

        headers = Headers(scope=scope)
        path, root = scope["path"], scope.get("root_path", "")
        if root and path.startswith(root):  # uvicorn puts --root-path in front of the path
            path = path[len(root):]
        limit = self.limit_for(path)
        length = headers.get("content-length")
        if length and length.isdigit() and int(length) > limit:
            if int(length) <= self.upload_limit:
                await self._drain(receive)  # read it so the client sees the 413, not a reset
            return await JSONResponse({"error": f"request too large (limit {limit} bytes)"}, 413)(scope, receive, send)

        if path.startswith("/api/") and path not in OPEN_API_PATHS:
            key = presented_key(headers)
            valid_key = bool(key) and any(hmac.compare_digest(key, k) for k in self.settings.api_keys)
            if self.settings.api_keys and not valid_key and not self._embed_token_ok(path, headers):
                return await JSONResponse({"error": "missing or invalid API key (X-API-Key or Authorization: Bearer)"},
                                          401, headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            # A valid key has its own bucket; anything else counts against the client's address
            # (so made-up keys cannot buy fresh buckets).
            client = f"key:{key}" if valid_key else f"ip:{(scope.get('client') or ('?',))[0]}"
            wait = self.limiter.take(client)
            if wait:
                return await JSONResponse({"error": "too many requests, slow down"}, 429,
                                          headers={"Retry-After": str(max(1, math.ceil(wait)))})(scope, receive, send)

        received = 0

        async def counted_receive():  # bodies sent without Content-Length (chunked)
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    if message.get("more_body"):
                        await self._drain(receive, self.upload_limit - received)
                    raise BodyTooLarge(f"request too large (limit {limit} bytes)")
            return message

        return await self.app(scope, counted_receive, send)

    @staticmethod
    async def _drain(receive, budget: int = 1 << 62) -> None:
        """Read and drop the rest of the body (up to `budget` bytes)."""
        while budget > 0:
            message = await receive()
            budget -= len(message.get("body", b""))
            if message["type"] != "http.request" or not message.get("more_body"):
                return

    def _embed_token_ok(self, path: str, headers) -> bool:
        return path in EMBED_TOKEN_PATHS and self.tokens.valid(headers.get("x-embed-token", ""))


# --------------------------------------------------------------------------------------
# The chat page (Gradio)
# --------------------------------------------------------------------------------------

EXAMPLES = [
    "全球先进制造业集群有哪些发展趋势？",
    "德国 it's OWL 集群是什么？",
    "What are the main trends for advanced-manufacturing clusters worldwide?",
    "What does the EU Net-Zero Industry Act aim for?",
]


def history_of(turns: list[dict]) -> list[dict]:
    """The conversation so far in the chat contract's shape (answered turns only)."""
    out: list[dict] = []
    for t in turns:
        if t.get("answer"):
            out += [{"role": "user", "content": t["question"]},
                    {"role": "assistant", "content": t["answer"]["answer"]}]
    return out


def messages_of(turns: list[dict]) -> list[dict]:
    out: list[dict] = []
    for t in turns:
        out += [{"role": "user", "content": plain_html(t["question"], "cqa-q")},
                {"role": "assistant", "content": t["html"]}]
    return out


def build_ui(service: Service, settings):
    import gradio as gr

    def respond(question: str, turns: list[dict]):
        question = (question or "").strip()
        if not question:
            yield gr.skip(), gr.skip(), gr.skip()
            return
        turns = turns + [{"question": question, "answer": None, "html": plain_html("…")}]
        turn = turns[-1]
        yield "", messages_of(turns), turns
        try:
            engine = service.require_engine()
            text = ""
            for event in engine.stream(question, history=history_of(turns[:-1])):
                if event["type"] == "status":
                    turn["html"] = plain_html(text or event.get("text", "…"))
                elif event["type"] == "token":
                    text += event.get("text", "")
                    turn["html"] = plain_html(text)
                elif event["type"] == "answer":
                    turn["answer"] = event["answer"]
                    turn["html"] = answer_html(event["answer"], len(turns) - 1)
                yield "", messages_of(turns), turns
        except NotReady as exc:
            turn["html"] = plain_html(str(exc), "cqa-note")
        except service.question_error as exc:
            turn["html"] = plain_html(str(exc), "cqa-note")
        except Exception:
            log.exception("chat failed for %r", question[:200])
            turn["html"] = plain_html("出错了，请稍后再试。Something went wrong — please try again.", "cqa-note")
        yield "", messages_of(turns), turns

    def vote(turns: list[dict], data: gr.LikeData):
        index = data.index[0] if isinstance(data.index, (list, tuple)) else data.index
        t = index // 2  # two messages (question, answer) per turn
        if not (0 <= t < len(turns)) or not turns[t].get("answer"):
            return
        a = turns[t]["answer"]
        service.record_feedback({
            "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "vote": "up" if data.liked else "down",
            "question": turns[t]["question"], "history": history_of(turns[:t]),
            "answer": a.get("answer"), "answered": a.get("answered"), "language": a.get("language"),
            "mode": a.get("mode"), "citations": a.get("citations", []),
        })

    def ask(question: str) -> dict:
        """Answer one question; returns the Answer JSON (the same as POST /api/ask)."""
        try:
            return service.require_engine().ask(question).to_dict()
        except NotReady as exc:
            return {"error": str(exc)}
        except service.question_error as exc:
            return {"error": str(exc)}

    def status():
        ready = service.status != "building"
        return gr.update(value=service.status_text()), gr.Timer(active=not ready)

    with gr.Blocks(title="ClusterQA · 先进制造业集群问答", analytics_enabled=False) as ui:
        gr.Markdown("### ClusterQA · 先进制造业集群问答 · Cluster Q&A", elem_id="cqa-title")
        status_line = gr.Markdown(service.status_text(), elem_id="cqa-status")
        turns = gr.State([])
        chatbot = gr.Chatbot(
            elem_id="cqa-chat", height="62vh", show_label=False, buttons=[], latex_delimiters=[],
            feedback_options=("Like", "Dislike"), sanitize_html=True, render_markdown=True,
            placeholder="用中文或英文提问，答案会注明出处。Ask in Chinese or English; answers cite their sources.",
        )
        with gr.Row(equal_height=True, elem_id="cqa-inputrow"):
            box = gr.Textbox(show_label=False, placeholder="输入问题 Ask a question…", scale=6,
                             elem_id="cqa-question", max_lines=4, submit_btn=False)
            send = gr.Button("发送 Send", variant="primary", scale=1, min_width=80, elem_id="cqa-send")
        new = gr.Button("＋ 新对话 New conversation", size="sm", elem_id="cqa-new")
        gr.Examples(EXAMPLES, inputs=[box], label="示例问题 Examples")
        timer = gr.Timer(1.0, active=service.status == "building")
        timer.tick(status, outputs=[status_line, timer], show_progress="hidden", api_visibility="private")
        ui.load(status, outputs=[status_line, timer], show_progress="hidden", api_visibility="private")

        for trigger in (box.submit, send.click):
            trigger(respond, [box, turns], [box, chatbot, turns], api_visibility="private",
                    concurrency_limit=8)
        chatbot.like(vote, [turns], None, api_visibility="private")
        new.click(lambda: ("", [], []), None, [box, chatbot, turns], api_visibility="private")
        chatbot.clear(lambda: [], None, [turns], api_visibility="private")
        gr.api(ask, api_name="ask", concurrency_limit=8)

        if settings.admin_key:
            build_admin_ui(gr, service, settings)
    return ui


def build_admin_ui(gr, service: Service, settings) -> None:
    """Upload / list / remove documents; every action checks the admin key."""

    WRONG_KEY = "管理密钥错误 Wrong admin key"

    def allowed(key: str) -> bool:
        return bool(key) and hmac.compare_digest(key, settings.admin_key) and service.index is not None

    def table():
        rows = list_documents(service.index) if service.index is not None else []
        return [[r["doc_id"], r["title"], r["chunks"]] for r in rows], gr.update(choices=[r["doc_id"] for r in rows])

    def upload(key, files, progress=gr.Progress()):
        if not allowed(key):
            return WRONG_KEY, gr.skip(), gr.skip()
        lines = []
        for f in files or []:
            path = Path(getattr(f, "name", f))
            progress(0, desc=f"{path.name}")
            try:
                r = ingest_upload(service, path.read_bytes(), path.name,
                                  progress=lambda stage, done, total: progress((done, total), desc=stage))
                s = r["summary"]
                lines.append(f"OK {r['file']}: {s.get('chunks_embedded', '?')} passages indexed, "
                             f"{s.get('documents', '?')} documents in all")
            except UploadError as exc:
                lines.append(f"FAILED {path.name}: {exc}")
        return ("\n".join(esc(x) for x in lines) or "—"), *table()

    def remove(key, doc_id):
        if not allowed(key):
            return WRONG_KEY, gr.skip(), gr.skip()
        n = remove_document(service, doc_id) if doc_id else 0
        return f"removed {n}", *table()

    def refresh(key):
        if not allowed(key):
            return WRONG_KEY, gr.skip(), gr.skip()
        return "", *table()

    with gr.Accordion("文档管理 Documents (admin)", open=False, elem_id="cqa-admin"):
        key = gr.Textbox(label="管理密钥 Admin key", type="password")
        files = gr.File(label="上传 Upload (txt, md, html, pdf, docx)", file_count="multiple")
        with gr.Row():
            up = gr.Button("上传并索引 Upload & index", variant="primary")
            ls = gr.Button("刷新列表 List documents")
        result = gr.Markdown()
        docs = gr.Dataframe(headers=["doc_id", "title", "chunks"], interactive=False, wrap=True,
                            column_widths=["42%", "46%", "12%"])
        with gr.Row():
            pick = gr.Dropdown(label="删除文档 Remove document", choices=[], scale=4)
            rm = gr.Button("删除 Remove", variant="stop", scale=1)
        up.click(upload, [key, files], [result, docs, pick], api_visibility="private")
        ls.click(refresh, [key], [result, docs, pick], api_visibility="private")
        rm.click(remove, [key, pick], [result, docs, pick], api_visibility="private")


# --------------------------------------------------------------------------------------
# The FastAPI app
# --------------------------------------------------------------------------------------


class Turn(BaseModel):
    role: Literal["user", "assistant"]
    content: str


class AskRequest(BaseModel):
    question: str = Field(description="the question, in Chinese or English")
    history: list[Turn] | None = Field(None, description="earlier turns, oldest first")
    top_k: int | None = Field(None, ge=1, le=50, description="passages to retrieve")


def create_app(settings, service: Service | None = None):
    import gradio as gr
    from fastapi import FastAPI, File, Header, Query, Request, UploadFile
    from fastapi.exceptions import RequestValidationError
    from fastapi.middleware.cors import CORSMiddleware
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, StreamingResponse
    from starlette.concurrency import run_in_threadpool
    from starlette.exceptions import HTTPException

    service = service or Service(settings)
    tokens = EmbedTokens()

    # FastAPI's Swagger page loads its scripts from a CDN; /api/docs below is self-contained.
    app = FastAPI(title="ClusterQA API", version="1", docs_url=None, openapi_url="/api/openapi.json",
                  redoc_url=None, root_path=settings.root_path or "")
    app.state.service = service

    def prefix_of(request: Request) -> str:
        """Where the site lives, for links in our own pages (behind a proxy: its sub-path)."""
        return (request.scope.get("root_path") or "").rstrip("/") + "/"

    def error(status: int, message: str, **headers) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status, headers=headers or None)

    @app.exception_handler(RequestValidationError)
    async def bad_request(request, exc: RequestValidationError):
        problems = []
        for e in exc.errors()[:5]:
            where = ".".join(str(p) for p in e.get("loc", ()) if p != "body")
            problems.append(f"{where}: {e.get('msg')}" if where else str(e.get("msg")))
        return error(400, "invalid request: " + "; ".join(problems))

    @app.exception_handler(HTTPException)
    async def http_error(request, exc: HTTPException):
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps body-reading errors in a 400
            return error(413, str(exc.__cause__))
        return error(exc.status_code, str(exc.detail), **(exc.headers or {}))

    @app.exception_handler(BodyTooLarge)
    async def too_large(request, exc):
        return error(413, str(exc))

    @app.exception_handler(NotReady)
    async def not_ready(request, exc):
        return error(503, str(exc), **{"Retry-After": "5"})

    @app.exception_handler(UploadError)
    async def bad_upload(request, exc: UploadError):
        return error(exc.status, str(exc))

    # QuestionError is a ValueError; chat is imported lazily, so match it by instance here.
    # (A handler for plain Exception would run in Starlette's outermost middleware, which
    # re-raises and drops the connection.)
    @app.exception_handler(ValueError)
    async def value_error(request, exc: ValueError):
        if isinstance(exc, service.question_error):
            return error(getattr(exc, "status", 400), str(exc))
        return server_error(request, exc)

    def server_error(request, exc):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return error(500, "internal server error")

    app.add_exception_handler(Exception, server_error)

    # ---- JSON API ----

    @app.get("/api/health", tags=["api"])
    def health():
        """ready | building (with progress) | error; document and chunk counts, model, mode."""
        return service.health()

    @app.post("/api/ask", tags=["api"])
    def ask(req: AskRequest):
        """Answer a question (with optional history); returns the Answer JSON of DESIGN.md."""
        engine = service.require_engine()
        history = [t.model_dump() for t in req.history] if req.history is not None else None
        return engine.ask(req.question, history=history, top_k=req.top_k).to_dict()

    @app.post("/api/ask/stream", tags=["api"])
    async def ask_stream(req: AskRequest):
        """Server-Sent Events: `status` and `token` events, then one `answer` event (or `error`)."""
        engine = service.require_engine()
        history = [t.model_dump() for t in req.history] if req.history is not None else None
        events = await run_in_threadpool(engine.stream, req.question, history=history, top_k=req.top_k)
        # Pull the first event here so bad input still gets a plain 4xx JSON response.
        first = await run_in_threadpool(next, events, None)

        def sse():
            try:
                event = first
                while event is not None:
                    yield f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n"
                    event = next(events, None)
            except Exception as exc:
                if not isinstance(exc, service.question_error):
                    log.exception("stream failed")
                msg = str(exc) if isinstance(exc, service.question_error) else "internal server error"
                yield f"event: error\ndata: {json.dumps({'type': 'error', 'error': msg}, ensure_ascii=False)}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.get("/api/documents", tags=["api"])
    def documents():
        """Every indexed document with its chunk count."""
        service.require_engine()
        docs = list_documents(service.index)
        return {"documents": docs, "count": len(docs)}

    @app.get("/api/documents/{doc_id:path}", tags=["api"])
    def document(doc_id: str):
        """One document: metadata, chunk count and its canonical text."""
        service.require_engine()
        doc = service.index.get_document(doc_id)
        if doc is None:
            raise HTTPException(404, f"unknown document: {doc_id}")
        return {"doc_id": doc.doc_id, "title": doc.title, "date": doc.date, "language": doc.language,
                "source": doc.source, "chunks": len(service.index.chunks_of(doc_id)), "text": doc.text}

    @app.get("/api/docs", response_class=HTMLResponse, include_in_schema=False)
    def api_docs(request: Request):
        """The API reference, rendered from the OpenAPI schema without any external script."""
        spec = app.openapi()
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
            f"with a 4xx status. Keys: <code>X-API-Key</code> or <code>Authorization: Bearer</code>.</p>"
            + "".join(parts) + f"<h2>Schemas</h2><pre>{esc(schemas)}</pre>")

    if settings.admin_key:
        def require_admin(key: str):
            if not (key and hmac.compare_digest(key, settings.admin_key)):
                raise HTTPException(401, "missing or invalid admin key (X-Admin-Key)")

        @app.post("/api/admin/documents", tags=["admin"])
        def upload_document(file: UploadFile = File(...), x_admin_key: str = Header("")):
            """Upload a txt/md/html/pdf/docx file; it is checked by content, stored and indexed."""
            require_admin(x_admin_key)
            data = file.file.read(int(settings.max_upload_mb * 1024 * 1024) + 1)
            return ingest_upload(service, data, file.filename or "upload")

        @app.delete("/api/admin/documents/{doc_id:path}", tags=["admin"])
        def delete_document(doc_id: str, x_admin_key: str = Header("")):
            require_admin(x_admin_key)
            removed = remove_document(service, doc_id)
            if not removed:
                raise HTTPException(404, f"unknown document: {doc_id}")
            return {"removed": removed}

    # ---- pages ----

    frame_ancestors = " ".join(["'self'", *settings.allowed_origins])

    @app.get("/doc/{doc_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def doc_page(request: Request, doc_id: str, script: str = "zh-Hans", start: int = Query(0, ge=0),
                 end: int = Query(0, ge=0), qs: int | None = Query(None, ge=0), qe: int | None = Query(None, ge=0)):
        service.require_engine()
        doc = service.index.get_document(doc_id)
        if doc is None:
            return HTMLResponse(f"<!doctype html><meta charset=utf-8><title>404</title>"
                                f"<p>找不到文档 Unknown document: {esc(doc_id)}</p>", 404)
        page = render_document(doc, script, start, end, qs, qe, prefix_of(request))
        return HTMLResponse(page, headers={
            "Content-Security-Policy": f"default-src 'self'; script-src 'none'; style-src 'self' 'unsafe-inline'; "
                                       f"frame-ancestors {frame_ancestors}"})

    embed_template = (WEB_DIR / "embed.html").read_text(encoding="utf-8")

    @app.get("/embed", response_class=HTMLResponse, include_in_schema=False)
    def embed(request: Request):
        page = embed_template.replace("{{TOKEN}}", esc(tokens.issue())).replace("{{PREFIX}}", esc(prefix_of(request)))
        return HTMLResponse(page, headers={
            "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                                       f"img-src 'self' data:; connect-src 'self'; frame-ancestors {frame_ancestors}",
            "Cache-Control": "no-store"})

    @app.get("/widget.js", include_in_schema=False)
    def widget():
        return FileResponse(WEB_DIR / "widget.js", media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=300"})

    @app.get("/web/{name}", include_in_schema=False)
    def web_file(name: str):
        path = (WEB_DIR / name).resolve()
        if path.parent != WEB_DIR.resolve() or not path.is_file():
            raise HTTPException(404, "not found")
        return FileResponse(path)

    # ---- middleware (last added runs first) ----

    app.add_middleware(Guard, settings=settings, tokens=tokens,
                       limiter=RateLimiter(settings.rate_limit_per_minute))
    if settings.allowed_origins:
        # Our own CORS policy; Gradio then adds none of its own to the mounted page.
        app.add_middleware(CORSMiddleware, allow_origins=settings.allowed_origins, allow_credentials=False,
                           allow_methods=["GET", "POST"],
                           allow_headers=["Content-Type", "X-API-Key", "Authorization", "X-Embed-Token"])

    @app.middleware("http")
    async def page_headers(request: Request, call_next):
        response = await call_next(request)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        if "content-security-policy" not in response.headers and \
                response.headers.get("content-type", "").startswith("text/html"):
            response.headers["Content-Security-Policy"] = f"frame-ancestors {frame_ancestors}"
        return response

    # ---- the Gradio page at / (mounted last: earlier routes win) ----

    theme = gr.themes.Soft(
        font=["system-ui", "-apple-system", "Segoe UI", "Noto Sans CJK SC", "PingFang SC",
              "Microsoft YaHei", "sans-serif"],
        font_mono=["ui-monospace", "Noto Sans Mono CJK SC", "monospace"],
    )
    ui = build_ui(service, settings)
    ui.queue(default_concurrency_limit=8)
    gr.mount_gradio_app(
        app, ui, path="/", root_path=settings.root_path or None, theme=theme,
        css=(WEB_DIR / "chat.css").read_text(encoding="utf-8"),
        head=f'<script src="{esc(prefix_of_settings(settings))}web/chat.js" defer></script>',
        footer_links=["api"], run_history=False, ssr_mode=False, pwa=False, mcp_server=False,
        max_file_size=int(settings.max_upload_mb * 1024 * 1024), show_error=True,
    )
    return app


def prefix_of_settings(settings) -> str:
    return (settings.root_path or "").rstrip("/") + "/"


def main(argv: list[str] | None = None) -> None:
    settings_mod.apply_offline_defaults()
    # Idle OpenMP threads (torch, under the embedding model) otherwise spin between requests:
    # measured ~700 ms of CPU burnt per request with one client, and 3-10x slower answers when
    # the cores are shared. Must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    parser = argparse.ArgumentParser(description="ClusterQA server: chat page, JSON API, /embed, /widget.js")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--root-path", dest="root_path", help="public sub-path behind a reverse proxy, e.g. /qa")
    parser.add_argument("--config", help="TOML settings file")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("root_path", args.root_path))
                 if v is not None}
    settings = settings_mod.load_settings(config_file=args.config, **overrides)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().handlers[0].setLevel(logging.INFO)  # libraries that turn on their own DEBUG
    for noisy in ("faiss", "httpx", "jieba"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    service = Service(settings)
    service.start()
    app = create_app(settings, service)

    import uvicorn

    log.info("serving http://%s:%d%s", settings.host, settings.port, settings.root_path or "/")
    uvicorn.run(app, host=settings.host, port=settings.port, root_path=settings.root_path or "",
                log_level="info", timeout_graceful_shutdown=3)


if __name__ == "__main__":
    main()
