"""A pytest plugin for both runs of an upstream suite (``-p upstream_shims``).

It lets a released suite run under the pytest karaffe is tested with, and
changes nothing else: the Flask run and the karaffe run load it alike.
"""

from __future__ import annotations

import _pytest.compat
import _pytest.monkeypatch

# Flask's conftest.py and test_cli.py use ``_pytest.monkeypatch.notset``, a
# private name pytest 9.1 moved to ``_pytest.compat.NOTSET`` (pallets/flask#6071).
if not hasattr(_pytest.monkeypatch, "notset"):
    _pytest.monkeypatch.notset = _pytest.compat.NOTSET  # type: ignore[attr-defined]
