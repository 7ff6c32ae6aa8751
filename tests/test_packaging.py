"""The optional extras stay optional: the server starts, and eval writes its report, without
qdrant-client, qdrant-edge-py and matplotlib (pyproject.toml: [qdrant], [bench], [eval])."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OPTIONAL = ("matplotlib", "qdrant_client", "qdrant_edge")

# Run in a child whose import system refuses the optional packages, as if they were not installed.
BLOCK = textwrap.dedent(f"""
    import sys
    class _Absent:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in {OPTIONAL!r}:
                raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
    sys.meta_path.insert(0, _Absent())
""")


def _run(code: str, tmp_path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK + textwrap.dedent(code)], cwd=REPO, capture_output=True,
                          text=True, timeout=300, env={**__import__("os").environ, "TMP_OUT": str(tmp_path)})


def test_server_app_is_created_without_the_optional_extras(tmp_path):
    done = _run("""
        import os, sys
        import settings
        settings.apply_offline_defaults()
        from server.factory import create_app
        create_app(settings.load_settings(env={}, index_dir=os.environ["TMP_OUT"] + "/index"))
        print("imported:", sorted({m.split(".")[0] for m in sys.modules} & {"matplotlib", "qdrant_client", "qdrant_edge"}))
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "imported: []" in done.stdout


def test_eval_report_without_matplotlib_has_its_tables_and_no_charts(tmp_path):
    done = _run("""
        import os
        from eval.report import write_report
        summary = {"n": 1, "hit@1": 1.0, "config": {}, "by_language": {"en": {"n": 1, "hit@1": 1.0}}}
        print(write_report(os.environ["TMP_OUT"], summary, []).read_text())
    """, tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "## Figures" in done.stdout and ".png" not in done.stdout
    assert not list(tmp_path.glob("*.png"))
