"""The ClusterQA server, one module per concern:

    service.py     the index and chat engine, loaded in the background; LLM reachability
    security.py    API keys, /embed tokens, rate limits, size limits (the Guard)
    observability.py  request ids, access log, Prometheus /metrics, /livez and /readyz
    errors.py      error mapping: one place, one shape per interface
    uploads.py     uploads typed by content; document records
    models.py      Pydantic request/response models (the OpenAPI schema)
    html.py        answer cards and the document view, escaped
    pages.py       /doc, /embed, /widget.js, /web, /api/docs
    api.py         the JSON API router (/api)
    openai_api.py  the OpenAI-compatible router (/v1)
    mcp_server.py  MCP tools over streamable HTTP (/mcp) and stdio
    ui.py          the Gradio chat page (/)
    factory.py     create_app: wires them together
    cli.py         `python app.py` flags, logging, uvicorn
"""


def create_app(settings, service=None):
    from .factory import create_app as _create_app

    return _create_app(settings, service)


def main(argv=None):
    from .cli import main as _main

    _main(argv)
