"""The chat page at / (Gradio): streamed answers with [n] linked to citation cards, feedback,
a `gr.api` endpoint for gradio_client, and the admin accordion when an admin key is set."""


import hmac
import logging
from datetime import datetime, timezone
from pathlib import Path

from .html import answer_html, esc, plain_html
from .pages import WEB_DIR
from .service import NotReady
from .uploads import UploadError, ingest_upload, list_documents, remove_document

log = logging.getLogger("clusterqa.server")


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


def build_ui(service, settings):
    from .gradio_import import install

    install()  # before the first `import gradio` (server/gradio_import.py)
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


def build_admin_ui(gr, service, settings) -> None:
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


def mount_ui(app, service, settings) -> None:
    """The Gradio page at / (mounted last: earlier routes win)."""
    from .gradio_import import install

    install()  # before the first `import gradio` (server/gradio_import.py)
    import gradio as gr

    theme = gr.themes.Soft(
        font=["system-ui", "-apple-system", "Segoe UI", "Noto Sans CJK SC", "PingFang SC",
              "Microsoft YaHei", "sans-serif"],
        font_mono=["ui-monospace", "Noto Sans Mono CJK SC", "monospace"],
    )
    ui = build_ui(service, settings)
    ui.queue(default_concurrency_limit=8)
    prefix = (settings.root_path or "").rstrip("/") + "/"
    gr.mount_gradio_app(
        app, ui, path="/", root_path=settings.root_path or None, theme=theme,
        css=(WEB_DIR / "chat.css").read_text(encoding="utf-8"),
        head=f'<script src="{esc(prefix)}web/chat.js" defer></script>',
        footer_links=["api"], run_history=False, ssr_mode=False, pwa=False, mcp_server=False,
        max_file_size=int(settings.max_upload_mb * 1024 * 1024), show_error=True,
    )
