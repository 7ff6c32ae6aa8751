"""Service lifecycle: the index and the chat engine load in a background thread, so the server
answers /api/health (and shows progress) at once; the LLM endpoint, when configured, is probed
so health can say whether it is reachable."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path

log = logging.getLogger("clusterqa.server")

ENGINE_RETRY_S = 5.0  # how often loading retries while the index's engine does not answer
LLM_PROBE_EVERY_S = 10.0  # how stale the LLM endpoint's reachability may get before health re-checks


class _NotLoaded(Exception):
    """Stands in for chat.QuestionError until chat is imported."""


class NotReady(Exception):
    """The index is still building, or failed to load."""


class Service:
    """Owns the CorpusIndex and ChatEngine; reports build progress until they are ready."""

    def __init__(self, settings, warm_up: bool = True):
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
        self.want_warm_up = warm_up
        self.llm_state: dict = {"status": "unknown"}  # up | down | unknown, with error / n_ctx
        self._llm_checked = 0.0
        self._llm_probing = threading.Lock()
        self._last_log = 0.0
        self._feedback_lock = threading.Lock()
        self._ready = threading.Event()
        self.metrics = None  # server/observability.py Metrics, set by create_app when metrics are on

    def start(self) -> None:
        self._loader = threading.Thread(target=self._load, name="index-loader", daemon=True)
        self._loader.start()

    def loading(self) -> bool:
        """The index is still loading or building, or the warm-up still runs."""
        loader = getattr(self, "_loader", None)
        return loader is not None and loader.is_alive()

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
            from index.errors import StoreUnavailable

            while True:  # a vector engine (Qdrant) that does not answer yet: degraded, retried
                try:
                    index = load_or_build(self.settings, progress=self._progress)
                    break
                except StoreUnavailable as exc:
                    if self.status != "degraded":
                        log.warning("index engine unavailable, retrying every %.0f s: %s", ENGINE_RETRY_S, exc)
                    self.status, self.error = "degraded", str(exc)
                    time.sleep(ENGINE_RETRY_S)
            self.error = ""
            engine = ChatEngine(index, self.settings)
            from .observability import ObservedEngine

            self.engine = ObservedEngine(engine, self)  # answers reported to metrics and the access log
            self.question_error = QuestionError
            self.index = index
            self.status = "ready"
            self.ready_after_s = time.monotonic() - self.started
            self._ready.set()
            stats = index.stats()
            log.info("ready in %.1f s: %s documents, %s chunks, model %s, mode %s",
                     self.ready_after_s, stats.get("documents"), stats.get("chunks"),
                     stats.get("model"), self.mode)
            self.probe_llm()
            if self.want_warm_up:  # answering works now; this only spares the first askers the lazy loads
                self._warm_up(engine)
            self.warm = True
            log.info("warm in %.1f s", time.monotonic() - self.started)
        except Exception as exc:  # the server stays up and reports the failure
            log.exception("index failed to load")
            self.status, self.error = "error", f"{type(exc).__name__}: {exc}"
            self._ready.set()

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

    def wait_ready(self, timeout: float) -> bool:
        return self._ready.wait(timeout)

    @property
    def mode(self) -> str:
        return "llm" if self.settings.llm_enabled else "extractive"

    # --- the LLM endpoint's reachability -----------------------------------------------
    def probe_llm(self) -> dict:
        """Ask the configured endpoint for its models (a short request); remembered for health."""
        engine = self.engine
        llm = getattr(engine, "llm", None)
        if llm is None or not hasattr(llm, "probe"):
            return self.llm_state
        with self._llm_probing:
            state = llm.probe()
            if state["status"] != self.llm_state.get("status"):
                log.log(logging.INFO if state["status"] == "up" else logging.WARNING,
                        "LLM endpoint %s: %s %s", llm.base_url, state["status"], state.get("error", ""))
            self.llm_state, self._llm_checked = state, time.monotonic()
        if self.metrics is not None:
            self.metrics.llm_probe(state)
        return state

    def llm_health(self) -> dict | None:
        """The LLM endpoint's last known state (None when none is configured); re-probed in the
        background when stale."""
        return self._llm_health()

    def _llm_health(self) -> dict | None:
        if not self.settings.llm_enabled:
            return None
        stale = time.monotonic() - self._llm_checked > LLM_PROBE_EVERY_S
        if self.engine is not None and stale and not self._llm_probing.locked():
            self._llm_checked = time.monotonic()  # one probe at a time, off the request path
            threading.Thread(target=self.probe_llm, name="llm-probe", daemon=True).start()
        return {"base_url": self.settings.llm_base_url, "model": self.settings.llm_model, **self.llm_state}

    # --- what health and the page show -------------------------------------------------
    def progress(self) -> dict:
        fraction = (self.done / self.total) if self.total else (1.0 if self.status == "ready" else 0.0)
        return {"stage": self.stage, "done": self.done, "total": self.total, "fraction": round(fraction, 3)}

    def health(self) -> dict:
        out = {"status": self.status, "progress": self.progress(), "mode": self.mode, "warm": self.warm,
               "documents": 0, "chunks": 0, "model": None}
        if self.index is not None:
            from index.errors import StoreUnavailable

            engine = self.index.health()  # {"backend", "ok", "error"}; a Qdrant server/cluster is pinged
            if engine["ok"]:
                try:
                    stats = self.index.stats()
                    out.update(documents=stats.get("documents", 0), chunks=stats.get("chunks", 0),
                               model=stats.get("model"))
                except StoreUnavailable as exc:
                    engine = {**engine, "ok": False, "error": str(exc)}
            if not engine["ok"]:  # questions get 503 until the engine answers again
                out.update(status="degraded", error=engine["error"])
            out["index"] = engine
        llm = self._llm_health()
        if llm is not None:
            out["llm"] = llm
        if self.error and "error" not in out:
            out["error"] = self.error
        return out

    def status_text(self) -> str:
        """One line for people: the page's status bar and the chat's "not ready" reply."""
        if self.status == "ready":
            h = self.health()
            return f"● 就绪 Ready — {h['documents']} 篇文档 documents, {h['chunks']} 段 passages, {self.mode}"
        if self.status == "error":
            return f"▲ 索引加载失败 The index failed to load: {self.error}"
        if self.status == "degraded":
            return f"▲ 检索引擎不可用 The search engine is unavailable: {self.error}"
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
