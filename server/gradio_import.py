"""Importing Gradio without its import-time stub writer.

Gradio (6.x) regenerates a `.pyi` stub beside every component class each time it is imported:
it re-parses the source file of each of ~80 classes with `ast` (2.5 s of a 2-core server's
cold start, GIL-bound, so the index loader waits for it too). The stubs are for Gradio's own
developers' type checkers; the server never reads them. `install()` makes the function a no-op
as soon as its module is loaded, before any component class is created.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys

TARGET = "gradio.component_meta"


class _Patcher(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != TARGET:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        exec_module = spec.loader.exec_module

        def exec_and_patch(module):
            exec_module(module)
            module.create_or_modify_pyi = lambda *args, **kwargs: None

        spec.loader.exec_module = exec_and_patch
        return spec


def install() -> None:
    """Call before Gradio is first imported; does nothing when it already was."""
    if TARGET not in sys.modules and not any(isinstance(f, _Patcher) for f in sys.meta_path):
        sys.meta_path.insert(0, _Patcher())
