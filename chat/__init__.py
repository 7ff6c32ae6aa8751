"""ClusterQA chat: question (+ history) → retrieval → answer with [n] citations, in the asker's language.

Start at chat/engine.py: ChatEngine walks the answer path step by step.
"""

from .records import Answer, Citation
from .validation import QuestionError

__all__ = ["ChatEngine", "Answer", "Citation", "QuestionError"]


def __getattr__(name):
    # ChatEngine pulls in numpy and the answerers; keep `import chat` cheap for callers
    # that only need the records or QuestionError.
    if name == "ChatEngine":
        from .engine import ChatEngine

        return ChatEngine
    raise AttributeError(f"module 'chat' has no attribute {name!r}")
