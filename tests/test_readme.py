"""The README's Python snippets run as they are, so the tour stays true."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_every_python_snippet_in_the_readme_runs(capsys) -> None:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 6
    namespace: dict[str, object] = {"__name__": "readme"}
    for number, block in enumerate(blocks, 1):
        try:
            exec(compile(block, f"README.md python block {number}", "exec"), namespace)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"README python block {number} failed: {exc!r}\n{block}") from exc
    out = capsys.readouterr().out
    assert "{'sum': 3}" in out
    assert "string_too_short" in out
    assert '"\\u003cem\\u003evar x = \\u0027foo\\u0027;\\u003c/em\\u003e"' in out
