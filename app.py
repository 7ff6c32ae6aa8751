"""ClusterQA server: the Gradio chat page, the JSON API, the OpenAI-compatible endpoint, MCP,
/embed and /widget.js in one process.

    python app.py [--host H] [--port P] [--root-path /sub] [--config FILE]

The server lives in the `server` package (one module per concern, see server/__init__.py);
this file is the entry point the README runs. Answers, citations and languages come from
`chat.ChatEngine`.
"""

from server import create_app, main
from server.html import answer_html

__all__ = ["create_app", "main", "answer_html"]

if __name__ == "__main__":
    main()
