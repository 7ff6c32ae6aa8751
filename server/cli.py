"""`python app.py [--host H] [--port P] [--root-path /sub] [--config FILE]`: settings, logging, uvicorn."""

from __future__ import annotations

import argparse
import logging
import os

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

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger().handlers[0].setLevel(logging.INFO)  # libraries that turn on their own DEBUG
    for noisy in ("faiss", "httpx", "jieba", "mcp"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    from .factory import create_app
    from .service import Service

    service = Service(settings)
    service.start()
    app = create_app(settings, service)

    import uvicorn

    log.info("serving http://%s:%d%s", settings.host, settings.port, settings.root_path or "/")
    uvicorn.run(app, host=settings.host, port=settings.port, root_path=settings.root_path or "",
                log_level="info", timeout_graceful_shutdown=3)
