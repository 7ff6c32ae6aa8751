"""A loopback OpenAI-compatible chat-completions server for tests (no model behind it).

It speaks the real wire protocol — POST /v1/chat/completions with JSON in and out, and
`stream: true` answered as server-sent events (`data: {chunk}\\n\\n` with
`choices[0].delta.content`, then `data: [DONE]`) — and behaves like a small, obedient
model that reads what it is sent:

- answer requests (the system prompt asks for [n] citations): it finds the numbered
  passages in the user message and answers with the sentence that shares the most
  character bigrams with the question, cited as [n] of its passage; if no passage shares
  anything it says it cannot find the answer;
- condense requests (the system prompt asks for a standalone question): it returns
  `condense_reply` if a test set one, else the last question unchanged.

`mode` makes it misbehave like real endpoints do: "timeout" (sleeps past the client's
timeout), "error500", "bad_citations" (cites passages that do not exist), "no_citations",
"obey_injection" (a gullible model: if a passage tells it to answer something, it does).
Every request body is kept in `requests` so tests can check what the client really sent.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PASSAGE_RE = re.compile(r'<passage n="(\d+)"[^>]*>\n?(.*?)\n?</passage>', re.S)
SENTENCE_RE = re.compile(r".+?(?:[。！？!?；]|\.(?=\s)|$)", re.S)


class FakeLLMServer:
    def __init__(self, mode: str = "normal", sleep_s: float = 5.0):
        self.mode = mode
        self.sleep_s = sleep_s
        self.condense_reply: str | None = None
        self.requests: list[dict] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def start(self) -> "FakeLLMServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    # --- the "model" ------------------------------------------------------------------
    def reply(self, body: dict) -> str:
        messages = body["messages"]
        system = next((m["content"] for m in messages if m["role"] == "system"), "")
        user = messages[-1]["content"]
        if "standalone question" in system:
            if self.condense_reply is not None:
                return self.condense_reply
            return user.strip().splitlines()[-1].split(":", 1)[-1].strip()
        passages = {int(n): text for n, text in PASSAGE_RE.findall(user)}
        question = user.rsplit("</passages>", 1)[-1]
        if self.mode == "obey_injection":
            for text in passages.values():
                m = re.search(r"answer only (\w+)", text, re.I)
                if m:
                    return m.group(1)
        if self.mode == "no_citations":
            return "The documents discuss clusters."
        best, sentence, best_overlap = None, "", 0
        for n, text in sorted(passages.items()):
            for candidate in SENTENCE_RE.findall(text.strip()):
                overlap = len(set(_bigrams(question)) & set(_bigrams(candidate)))
                if overlap > best_overlap:
                    best, sentence, best_overlap = n, candidate.strip(), overlap
        if best is None:
            return "I cannot find the answer in the passages."
        if self.mode == "bad_citations":
            return f"{sentence} [{len(passages) + 5}] [0]"
        return f"{sentence} [{best}]"

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep test output clean
                pass

            def do_POST(self):
                if self.path.rstrip("/") != "/v1/chat/completions":
                    return self._json(404, {"error": {"message": f"no route {self.path}"}})
                length = int(self.headers.get("Content-Length", 0))
                try:
                    body = json.loads(self.rfile.read(length))
                    assert isinstance(body.get("messages"), list) and body.get("model")
                except (ValueError, AssertionError):
                    return self._json(400, {"error": {"message": "bad request body"}})
                server.requests.append(body)
                if server.mode == "timeout":
                    time.sleep(server.sleep_s)
                if server.mode == "error500":
                    return self._json(500, {"error": {"message": "internal error", "type": "server_error"}})
                content = server.reply(body)
                if body.get("stream"):
                    return self._stream(body["model"], content)
                self._json(200, {
                    "id": "chatcmpl-fake", "object": "chat.completion", "created": int(time.time()),
                    "model": body["model"],
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                })

            def _json(self, status, payload):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _stream(self, model, content):
                self.send_response(200)
                self.send_header("Content-Type", "text/event-stream")
                self.send_header("Cache-Control", "no-cache")
                self.end_headers()
                pieces = [{"role": "assistant", "content": ""}]
                pieces += [{"content": piece} for piece in _tokens(content)]
                for i, delta in enumerate(pieces + [{}]):
                    chunk = {"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                             "created": int(time.time()), "model": model,
                             "choices": [{"index": 0, "delta": delta,
                                          "finish_reason": "stop" if i == len(pieces) else None}]}
                    self.wfile.write(f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n".encode())
                    self.wfile.flush()
                self.wfile.write(b"data: [DONE]\n\n")
                self.wfile.flush()

        return Handler


def _tokens(text: str) -> list[str]:
    """Split like a tokenizer would: words, single CJK characters, markers, spaces."""
    return re.findall(r"\[\d+\]|[A-Za-z0-9'’]+|\s+|.", text)


def _bigrams(text: str) -> list[str]:
    text = re.sub(r"\s+", "", text.lower())
    return [text[i:i + 2] for i in range(len(text) - 1)]
