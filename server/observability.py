"""Running it as a service: request ids, the access log, Prometheus metrics, probes.

- **Request ids.** `X-Request-ID` is taken from the request when it is printable ASCII of at
  most 128 characters, otherwise a new one (uuid4 hex) is made; it is sent back on every
  response (errors, SSE, /v1 and MCP included) and put on every log line written while the
  request runs (a context variable read by a logging.Filter; worker threads inherit it).
- **Access log.** One line per request on the logger `clusterqa.access`: id, method, route
  (the route template, never the raw path), status, duration_ms, and for answers answered,
  kind, mode, language. Question text only with `log_questions = true`.
  `log_format = "json"` writes every log line as one JSON object.
- **Metrics.** `GET /metrics` (prometheus-client, one CollectorRegistry per app, with the
  process and platform collectors). Label values are bounded: route templates, status codes,
  kinds, languages, outcomes, reasons; never question text or document ids.
- **Probes.** `GET /livez` (the process serves) and `GET /readyz` (the index is loaded, the
  engine warm and the index's engine answering; 503 otherwise).

The names of the metrics are listed in docs/operating.md.
"""

from __future__ import annotations

import contextvars
import hmac
import json
import logging
import re
import time
import uuid

from starlette.requests import Request

log = logging.getLogger("clusterqa.server")
access_log = logging.getLogger("clusterqa.access")

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID = 128
_request_id: contextvars.ContextVar[str] = contextvars.ContextVar("clusterqa_request_id", default="-")
# What the request learnt on its way (answered, kind, mode, …): one mutable dict per request,
# shared with the worker threads that run the engine (they get a copy of the context, not of the dict).
_request_info: contextvars.ContextVar[dict | None] = contextvars.ContextVar("clusterqa_request_info", default=None)

LANGUAGES = {"zh-Hans", "zh-Hant", "en"}
_LABEL_WORD = re.compile(r"[a-z][a-z0-9_-]{0,23}")
_ID_OK = re.compile(r"[\x20-\x7e]{1,%d}" % MAX_REQUEST_ID)


def clean_request_id(raw: bytes | str | None) -> str:
    """The client's id when it is 1-128 printable ASCII characters (no CR/LF, no controls,
    no bytes above 0x7e), else a fresh uuid4 hex."""
    if isinstance(raw, bytes):
        raw = raw.decode("latin-1")
    raw = (raw or "").strip()
    if raw and _ID_OK.fullmatch(raw):
        return raw
    return uuid.uuid4().hex


def current_request_id() -> str:
    return _request_id.get()


def request_info() -> dict | None:
    """The running request's record (None outside a request): routes and the Guard add to it."""
    return _request_info.get()


def label_word(value, default: str = "unknown") -> str:
    """A bounded label value: a short lower-case word, else `other` (never free text)."""
    if value is None or value == "":
        return default
    value = str(value)
    return value if _LABEL_WORD.fullmatch(value) else "other"


# --- logging ----------------------------------------------------------------------------

class RequestIdFilter(logging.Filter):
    """Adds `request_id` to every record (`-` outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = _request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, request_id, the access fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out = {"ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}",
               "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
               "request_id": getattr(record, "request_id", "-")}
        access = getattr(record, "access", None)
        if access:
            out["msg"] = "access"
            out.update(access)
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return json.dumps(out, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def __init__(self):
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s")


LOG_FORMATS = ("text", "json")


def configure_logging(settings, stream=None) -> None:
    """The root handler for the whole process, in `settings.log_format`, with request ids."""
    fmt = (settings.log_format or "text").lower()
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log_format must be one of {LOG_FORMATS}, not {settings.log_format!r}")
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.INFO)  # libraries that turn on their own DEBUG
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in ("faiss", "httpx", "jieba", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # uvicorn's own loggers go through the root handler (cli passes log_config=None); its access
    # log is replaced by ours.
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers.clear()
        logging.getLogger(name).propagate = True
    logging.getLogger("uvicorn.access").disabled = True


# --- metrics ----------------------------------------------------------------------------

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
STAGE_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WINDOW_BUCKETS = (1, 2, 3, 4, 6, 8, 12, 16, 24, 32)


def llm_reason(text: str) -> str:
    """A bounded reason for an LLM failure, from the probe's error or the answer's note."""
    t = (text or "").lower()
    if "timeout" in t or "timed out" in t or "超时" in t or "逾時" in t:
        return "timeout"
    if "api key" in t or "http 401" in t or "http 403" in t:
        return "auth"
    m = re.search(r"http (\d)\d\d", t)
    if m:
        return f"http_{m.group(1)}xx"
    if "lost mid-answer" in t:
        return "connection_lost"
    if "connection failed" in t or "connect" in t:
        return "connection_failed"
    if "cited none" in t or "没有引用" in t or "沒有引用" in t:
        return "unverified"
    return "other"


class Metrics:
    """The app's metrics, in their own CollectorRegistry."""

    def __init__(self, service, settings):
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
        from prometheus_client import PlatformCollector, ProcessCollector

        self.service, self.settings = service, settings
        r = self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        from prometheus_client.gc_collector import GCCollector

        GCCollector(registry=r)
        self.requests = Counter("clusterqa_http_requests", "HTTP requests by route template, method and status",
                                ["route", "method", "status"], registry=r)
        self.latency = Histogram("clusterqa_http_request_duration_seconds",
                                 "Time from request to the last byte of the response, by route template",
                                 ["route", "method"], buckets=LATENCY_BUCKETS, registry=r)
        self.in_flight = Gauge("clusterqa_http_requests_in_flight", "Requests being served now", registry=r)
        self.answers = Counter("clusterqa_answers", "Answers by kind, language, outcome (answered | refused) "
                               "and mode (extractive | llm | fallback: the LLM failed, the extractive answer "
                               "was given)", ["kind", "language", "outcome", "mode"], registry=r)
        self.stages = Histogram("clusterqa_answer_stage_seconds",
                                "The engine's own stage timings (timings_ms): retrieve, read, compose "
                                "(extractive) or generate (llm), total", ["stage"], buckets=STAGE_BUCKETS,
                                registry=r)
        self.forwards = Counter("clusterqa_reader_forwards", "Reader network forwards", registry=r)
        self.forward_windows = Histogram("clusterqa_reader_windows_per_forward",
                                         "Windows (question + passage pieces) per reader forward",
                                         buckets=WINDOW_BUCKETS, registry=r)
        self.forward_seconds = Histogram("clusterqa_reader_forward_seconds", "Time of one reader forward",
                                         buckets=STAGE_BUCKETS, registry=r)
        self.llm_errors = Counter("clusterqa_llm_errors", "LLM endpoint failures by reason and where they were "
                                  "seen (probe | answer)", ["reason", "source"], registry=r)
        self.rate_limited = Counter("clusterqa_rate_limited", "Requests refused with 429 by the rate limiter",
                                    ["route"], registry=r)
        r.register(_ServiceCollector(service))

    def exposition(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    # --- what the request observer and the engine hooks report -------------------------
    def request(self, route: str, method: str, status: int, seconds: float, rate_limited: bool) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)
        if rate_limited:
            self.rate_limited.labels(route).inc()

    def answer(self, answer: dict, mode: str) -> None:
        kind = label_word(answer.get("kind", "unknown"))
        language = answer.get("language") if answer.get("language") in LANGUAGES else "other"
        outcome = "answered" if answer.get("answered") else "refused"
        self.answers.labels(kind, language, outcome, mode).inc()
        timings = answer.get("timings_ms") or {}
        for stage in ("retrieve", "read", "total"):
            if isinstance(timings.get(stage), (int, float)):
                self.stages.labels(stage).observe(timings[stage] / 1000)
        if isinstance(timings.get("answer"), (int, float)):  # "answer" = read + compose/generate
            rest = max(0.0, timings["answer"] - float(timings.get("read") or 0.0))
            self.stages.labels("generate" if answer.get("mode") == "llm" else "compose").observe(rest / 1000)
        if mode == "fallback":
            self.llm_errors.labels(llm_reason(answer.get("note", "")), "answer").inc()

    def llm_probe(self, state: dict) -> None:
        if state.get("status") == "down":
            self.llm_errors.labels(llm_reason(state.get("error", "")), "probe").inc()

    def reader_forward(self, windows: int, seconds: float) -> None:
        self.forwards.inc()
        self.forward_windows.observe(windows)
        self.forward_seconds.observe(seconds)


class _ServiceCollector:
    """Read at scrape time: status, build progress, documents and chunks, LLM reachability."""

    STATUSES = ("building", "ready", "degraded", "error")

    def __init__(self, service):
        self.service = service

    def describe(self):
        return []  # collected at scrape time only

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        s = self.service
        status = GaugeMetricFamily("clusterqa_status", "1 for the server's current status", labels=["status"])
        for name in self.STATUSES:
            status.add_metric([name], 1.0 if s.status == name else 0.0)
        yield status
        yield GaugeMetricFamily("clusterqa_warm", "1 once the warm-up questions are done", value=float(s.warm))
        p = s.progress()
        build = GaugeMetricFamily("clusterqa_index_build_progress",
                                  "Index load/build progress (0-1) and its current stage", labels=["stage"])
        build.add_metric([label_word(p["stage"], "starting")], float(p["fraction"]))
        yield build
        items = GaugeMetricFamily("clusterqa_index_build_items", "Items of the current build stage",
                                  labels=["state"])
        items.add_metric(["done"], float(p["done"]))
        items.add_metric(["total"], float(p["total"]))
        yield items
        docs = chunks = None
        if s.index is not None:
            try:
                stats = s.index.stats()
                docs, chunks = stats.get("documents"), stats.get("chunks")
            except Exception:  # an engine that does not answer: no figure rather than a failed scrape
                pass
        if docs is not None:
            yield GaugeMetricFamily("clusterqa_index_documents", "Documents in the index", value=float(docs))
        if chunks is not None:
            yield GaugeMetricFamily("clusterqa_index_chunks", "Chunks (passages) in the index", value=float(chunks))
        llm = s.llm_health()
        if llm is not None:
            yield GaugeMetricFamily("clusterqa_llm_up", "1 when the LLM endpoint answered its last probe",
                                    value=1.0 if llm.get("status") == "up" else 0.0)


# --- the engine, observed ---------------------------------------------------------------

class ObservedEngine:
    """The ChatEngine with every answer reported: metrics (when on) and the request's record
    (for the access log). Everything else is the engine's own (attributes are forwarded)."""

    def __init__(self, engine, service):
        self._engine, self._service = engine, service
        _instrument_reader(getattr(engine, "reader", None), service)

    def __getattr__(self, name):
        return getattr(self._engine, name)

    def _note_question(self, question) -> None:
        info = _request_info.get()
        if info is not None and isinstance(question, str):
            info["question"] = question

    def _observe(self, answer: dict) -> None:
        llm_on = self._service.settings.llm_enabled
        mode = answer.get("mode") or "extractive"
        if mode != "llm" and llm_on and answer.get("note"):
            mode = "fallback"
        info = _request_info.get()
        if info is not None:
            info.update(answered=bool(answer.get("answered")), kind=label_word(answer.get("kind", "unknown")),
                        mode=mode, language=answer.get("language"))
        metrics = getattr(self._service, "metrics", None)
        if metrics is not None:
            try:
                metrics.answer(answer, mode)
            except Exception:  # metrics never break an answer
                log.warning("answer metrics failed", exc_info=True)

    def ask(self, question, *args, **kwargs):
        self._note_question(question)
        answer = self._engine.ask(question, *args, **kwargs)
        if answer is not None:
            self._observe(answer.to_dict())
        return answer

    def stream(self, question, *args, **kwargs):
        self._note_question(question)
        events = self._engine.stream(question, *args, **kwargs)  # raises QuestionError here, as before

        def observed():
            for event in events:
                if event.get("type") == "answer" and isinstance(event.get("answer"), dict):
                    self._observe(event["answer"])
                yield event

        return observed()


def _instrument_reader(reader, service) -> None:
    """Counts the reader's forwards and their windows (chat/reader: `forward_observers`, called
    after every network forward with its windows and seconds)."""
    observers = getattr(reader, "forward_observers", None)
    if observers is None or any(getattr(o, "_clusterqa_observed", False) for o in observers):
        return

    def observe(windows: int, tokens: int, seconds: float) -> None:
        metrics = getattr(service, "metrics", None)
        if metrics is not None:
            metrics.reader_forward(windows, seconds)

    observe._clusterqa_observed = True
    observers.append(observe)


# --- the request observer (outermost ASGI layer) ----------------------------------------

def route_label(app, scope) -> str:
    """The route template that will serve this request, resolved before the app runs (so the
    Guard's 401/429s get it too): `/api/documents/{doc_id:path}`, `/*` for the Gradio page and
    its own endpoints (which also answer unknown paths), `unmatched` when nothing matches.
    Bounded: one value per route."""
    probe = {**scope, "fastapi": {}}  # FastAPI keeps matching state in scope["fastapi"]
    try:
        return _resolve(app.router.routes, probe) or "unmatched"
    except Exception:  # a router shape this does not know: a coarse label, never a failure
        return "unmatched"


def _resolve(routes, scope) -> str | None:
    from starlette.routing import Match

    partial = None
    for route in routes:
        match, _ = route.matches(scope)
        if match == Match.FULL:
            return _template(route, scope)
        if match == Match.PARTIAL and partial is None:
            partial = route  # the path matches, the method does not: 405
    return _template(partial, scope) if partial is not None else None


def _template(route, scope) -> str | None:
    from starlette.routing import Mount

    if isinstance(route, Mount):
        return (route.path or "") + "/*"
    if hasattr(route, "_match"):  # FastAPI's included router: its own effective routes, with the prefix
        _, _, inner, context = route._match(scope)
        if inner is None:
            return None
        if hasattr(inner, "_match"):
            return _template(inner, scope)
        effective = getattr(context, "starlette_route", None)
        return (getattr(effective, "path_format", None) or getattr(effective, "path", None)
                or getattr(inner, "path", None))
    return getattr(route, "path_format", None) or getattr(route, "path", None)


class RequestObserver:
    """Outside everything (Starlette's error middleware included, so 500s get their id too):
    request id in and out, the access log line, the request metrics."""

    def __init__(self, inner, app, settings, metrics: Metrics | None):
        self.inner, self.app, self.settings, self.metrics = inner, app, settings, metrics
        self.log_questions = bool(settings.log_questions)
        self.access_log = bool(getattr(settings, "access_log", True))

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        raw = None
        for name, value in scope.get("headers") or ():
            if name == b"x-request-id":
                raw = value
                break
        rid = clean_request_id(raw)
        route = route_label(self.app, scope)
        info: dict = {}
        id_token, info_token = _request_id.set(rid), _request_info.set(info)
        started = time.perf_counter()
        status = 500
        header = (b"x-request-id", rid.encode("ascii"))

        async def send_with_id(message):
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = [(k, v) for k, v in message.get("headers") or () if k.lower() != b"x-request-id"]
                headers.append(header)
                message = {**message, "headers": headers}
            await send(message)

        if self.metrics is not None:
            self.metrics.in_flight.inc()
        try:
            await self.inner(scope, receive, send_with_id)
        finally:
            seconds = time.perf_counter() - started
            if self.metrics is not None:
                self.metrics.in_flight.dec()
            try:
                self._finish(scope, route, rid, info, status, seconds)
            finally:
                _request_info.reset(info_token)
                _request_id.reset(id_token)

    def _finish(self, scope, route, rid, info, status, seconds) -> None:
        method = scope.get("method", "GET")
        if method not in ("GET", "POST", "HEAD", "OPTIONS", "PUT", "DELETE", "PATCH"):
            method = "other"
        if self.metrics is not None:
            self.metrics.request(route, method, status, seconds, bool(info.get("rate_limited")))
        if not self.access_log:
            return
        fields = {"id": rid, "method": method, "route": route, "status": status,
                  "duration_ms": round(seconds * 1000, 2), "answered": info.get("answered"),
                  "kind": info.get("kind"), "mode": info.get("mode"), "language": info.get("language")}
        if info.get("rate_limited"):
            fields["rate_limited"] = True
        if self.log_questions and info.get("question") is not None:
            fields["question"] = info["question"]
        text = " ".join(f"{k}={_text_value(v)}" for k, v in fields.items() if v is not None or k == "answered")
        access_log.info("access %s", text, extra={"access": fields})


def _text_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "-"
    if isinstance(value, str) and (not value or any(c in value for c in ' "=\\') or not value.isprintable()):
        return json.dumps(value, ensure_ascii=False)  # quoted, CR/LF escaped: one line per request
    return str(value)


# --- probes and /metrics ----------------------------------------------------------------

def ops_router(service, settings, metrics: Metrics | None):
    from fastapi import APIRouter
    from fastapi.responses import JSONResponse, Response

    router = APIRouter(tags=["operations"])

    @router.get("/livez")
    def livez():
        """200 while the process serves."""
        return {"status": "alive"}

    @router.get("/readyz")
    def readyz():
        """200 when the index is loaded, the engine warm and the index's engine answering; else 503."""
        h = service.health()
        ready = h["status"] == "ready" and h.get("warm", False)
        body = {"status": "ready" if ready else "not ready", "service": h["status"], "warm": h.get("warm", False)}
        if not ready:
            return JSONResponse(body, status_code=503, headers={"Retry-After": "5"})
        return body

    if metrics is not None:
        from prometheus_client import CONTENT_TYPE_LATEST

        @router.get("/metrics", include_in_schema=False)
        def prometheus_metrics(request: Request):
            if settings.metrics_key:
                auth = request.headers.get("authorization", "")
                key = auth[7:].strip() if auth.lower().startswith("bearer ") else request.query_params.get("key", "")
                if not (key and hmac.compare_digest(key.encode(), settings.metrics_key.encode())):
                    return JSONResponse({"error": "missing or invalid metrics key (Authorization: Bearer or ?key=)"},
                                        status_code=401, headers={"WWW-Authenticate": "Bearer"})
            return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def install_observability(app, service, settings) -> Metrics | None:
    """Metrics (when enabled), the probes and /metrics, and the request observer around the
    whole app (outside Starlette's own error middleware)."""
    metrics = Metrics(service, settings) if settings.metrics_enabled else None
    service.metrics = metrics
    app.state.metrics = metrics
    app.include_router(ops_router(service, settings, metrics))
    build_stack = app.build_middleware_stack

    def build_observed_stack():
        return RequestObserver(build_stack(), app, settings, metrics)

    app.build_middleware_stack = build_observed_stack
    return metrics
