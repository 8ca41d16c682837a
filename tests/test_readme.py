"""The README's Python snippets run as they are, so the tour stays true."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_python_snippet_in_the_readme_runs(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 6
    # A real module, as a reader's script would be: SQLAlchemy resolves
    # annotations through sys.modules.
    module = types.ModuleType("readme")
    sys.modules["readme"] = module
    try:
        for number, block in enumerate(blocks, 1):
            try:
                exec(compile(block, f"README.md python block {number}", "exec"), module.__dict__)
            except Exception as exc:  # pragma: no cover - the message is the point
                raise AssertionError(f"README python block {number} failed: {exc!r}\n{block}") from exc
    finally:
        del sys.modules["readme"]
    out = capsys.readouterr().out
    assert "{'sum': 3}" in out
    assert "string_too_short" in out
    assert "[]\n['anvil']" in out
    assert '"\\u003cem\\u003evar x = \\u0027foo\\u0027;\\u003c/em\\u003e"' in out
