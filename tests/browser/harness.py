"""Start the real server (`python app.py`) as a subprocess, and headless Chromium, for tests and benchmarks.

Servers are cached per configuration name so every test module in a session shares them.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync", "--disable-quic"]

XSS_TEXT = (
    "Zorblax 安全测试样本\n\n"
    "这是一份用于安全测试的文档，名为 Zorblax 样本。样本正文包含脚本标签 <script>window.__xss=1</script> "
    "以及图片标签 <img src=x onerror=\"window.__xss=1\"> 两种写法。\n\n"
    "The Zorblax security sample contains a script tag <script>window.__xss=1</script> and an image tag "
    "<img src=x onerror=\"window.__xss=1\"> in its text.\n"
)
XSS_DOC_ID = "xss/zorblax-security-sample.txt"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    name: str
    url: str
    proc: subprocess.Popen
    home: Path
    log_path: Path
    env: dict = field(default_factory=dict)
    started_s: float = 0.0

    @property
    def feedback_log(self) -> Path:
        return self.home / "feedback.jsonl"

    @property
    def upload_dir(self) -> Path:
        return self.home / "uploads"

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def make_corpus(home: Path, with_xss: bool = True) -> Path:
    """The bundled corpus plus, for XSS checks, a .txt document full of markup."""
    corpus = home / "corpus"
    shutil.copytree(REPO / "data" / "corpus", corpus)
    for p in corpus.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)  # the bundled copy is read-only
    if with_xss:
        (corpus / "xss").mkdir()
        (corpus / XSS_DOC_ID).write_text(XSS_TEXT, encoding="utf-8")
    return corpus


def start_server(name: str, home: Path | None = None, index_dir: Path | None = None,
                 corpus: Path | None = None, timeout: float = 420, wait: bool = True, **settings) -> Server:
    """Run `python app.py --port N` with a private index, corpus, feedback log and upload dir."""
    home = home or Path(tempfile.mkdtemp(prefix=f"clusterqa-{name}-"))
    home.mkdir(parents=True, exist_ok=True)
    corpus = corpus or make_corpus(home)
    port = free_port()
    env = dict(os.environ)
    env.update({
        "CLUSTERQA_CORPUS_DIR": str(corpus),
        "CLUSTERQA_INDEX_DIR": str(index_dir or home / "index"),
        "CLUSTERQA_FEEDBACK_LOG": str(home / "feedback.jsonl"),
        "CLUSTERQA_UPLOAD_DIR": str(home / "uploads"),
    })
    for key, value in settings.items():
        env[f"CLUSTERQA_{key.upper()}"] = ",".join(value) if isinstance(value, list) else str(value)
    log_path = home / "server.log"
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, str(REPO / "app.py"), "--port", str(port)], cwd=home, env=env,
                            stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    server = Server(name, f"http://127.0.0.1:{port}", proc, home, log_path, env)
    if wait:
        wait_ready(server, timeout)
        server.started_s = time.monotonic() - t0
    return server


def wait_ready(server: Server, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server {server.name} exited ({server.proc.returncode}):\n{server.log_tail()}")
        try:
            last = httpx.get(server.url + "/api/health", timeout=2).json()
            if last.get("status") == "ready":
                return last
            if last.get("status") == "error":
                raise RuntimeError(f"server {server.name} failed: {last}\n{server.log_tail()}")
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"server {server.name} not ready after {timeout}s: {json.dumps(last)}\n{server.log_tail()}")


def launch_chromium(playwright, **context_args):
    """Debian's chromium with a fresh profile (no downloads, no background traffic)."""
    profile = tempfile.mkdtemp(prefix="clusterqa-chromium-")
    return playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, **context_args)


# One server per configuration for the whole session, shared by the test modules.
_SERVERS: dict[str, Server] = {}

# The main server under test: keys, admin and an allowed portal origin are all configured.
MAIN = dict(api_keys=["test-key"], admin_key="test-admin", allowed_origins=["http://portal.example"],
            rate_limit_per_minute=100_000, max_upload_mb=1)
# A second server with no keys or admin, a tiny rate limit, an LLM endpoint that refuses
# connections (nothing listens on that loopback port), and a public sub-path /qa (as behind a
# reverse proxy that strips it).
OPEN = dict(rate_limit_per_minute=5, llm_base_url=f"http://127.0.0.1:{free_port()}/v1", llm_model="absent-model",
            llm_timeout=5, root_path="/qa")


def shared_server(name: str, early=None) -> Server:
    """The session's server `name`; `early(server)` runs once, as soon as it answers HTTP."""
    if name not in _SERVERS:
        server = start_server(name, wait=early is None, **{"main": MAIN, "open": OPEN}[name])
        _SERVERS[name] = server
        if early is not None:
            server.early = early(server)
            wait_ready(server, 420)
    return _SERVERS[name]


def stop_all() -> None:
    for server in _SERVERS.values():
        server.stop()
    _SERVERS.clear()


import atexit  # noqa: E402

atexit.register(stop_all)
