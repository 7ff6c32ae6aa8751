"""`python app.py [--host H] [--port P] [--root-path /sub] [--config FILE]`: settings, logging, uvicorn
(with a graceful SIGTERM: in-flight requests finish within shutdown_grace_s, then exit 0)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

log = logging.getLogger("clusterqa.server")


def parse_settings(argv: list[str] | None = None):
    import settings as settings_mod

    parser = argparse.ArgumentParser(description="ClusterQA server: chat page, JSON API, OpenAI-compatible "
                                                 "endpoint, MCP, /embed, /widget.js")
    parser.add_argument("--host")
    parser.add_argument("--port", type=int)
    parser.add_argument("--root-path", dest="root_path", help="public sub-path behind a reverse proxy, e.g. /qa")
    parser.add_argument("--config", help="TOML settings file")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port), ("root_path", args.root_path))
                 if v is not None}
    return settings_mod.load_settings(config_file=args.config, **overrides)


def main(argv: list[str] | None = None) -> None:
    import settings as settings_mod

    settings_mod.apply_offline_defaults()
    # Idle OpenMP threads (torch, under the embedding model) otherwise spin between requests:
    # measured ~700 ms of CPU burnt per request with one client, and 3-10x slower answers when
    # the cores are shared. Must be set before torch is imported.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    settings = parse_settings(argv)

    from .observability import configure_logging

    configure_logging(settings)  # text or JSON lines, every line with its request id

    from .service import Service

    # the index loader first: building the page (Gradio, FastAPI routes) runs beside it
    service = Service(settings)
    service.start()
    from .factory import create_app

    app = create_app(settings, service)

    import uvicorn

    log.info("serving http://%s:%d%s", settings.host, settings.port, settings.root_path or "/")
    config = uvicorn.Config(app, host=settings.host, port=settings.port, root_path=settings.root_path or "",
                            log_level="info", log_config=None, access_log=False,
                            timeout_graceful_shutdown=max(0.0, float(settings.shutdown_grace_s)))
    graceful_server(config).run()
    # Only a SIGTERM comes back here (SIGINT re-raises). Requests are done; what may still run is
    # the index-loader thread (a build or the warm-up, inside torch): letting the interpreter tear
    # down under it aborts the process ("terminate called without an active exception", exit -6).
    # Its work is abandoned safely (index versions go live by an atomic rename), so leave now.
    busy = service.loading()
    log.info("stopped%s; exit 0", " (index build or warm-up in progress: abandoned)" if busy else "")
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(0)


class _Graceful:
    """uvicorn's Server, except that SIGTERM ends in exit code 0: on SIGTERM uvicorn stops
    accepting, lets in-flight requests and streams finish (up to timeout_graceful_shutdown,
    then cancels them), runs the lifespan shutdown, and then re-raises the signal, which would
    make the exit status 143. An orchestrator's SIGTERM is a normal stop, so it is not re-raised.
    A build in progress (the index-loader thread) is abandoned: index writes go to a new version
    folder and only an atomic rename makes it live (index/store.py), so the previous index stays."""

    def handle_exit(self, sig, frame):
        import signal

        if sig == signal.SIGTERM and not self.should_exit:
            log.info("SIGTERM: no new connections; finishing in-flight requests (grace %.0f s)",
                     self.config.timeout_graceful_shutdown or 0)
        super().handle_exit(sig, frame)
        if sig == signal.SIGTERM:
            self._captured_signals = [s for s in self._captured_signals if s != signal.SIGTERM]


def graceful_server(config):
    """A uvicorn Server whose SIGTERM ends in exit code 0 (see _Graceful)."""
    import uvicorn

    return type("GracefulServer", (_Graceful, uvicorn.Server), {})(config)
