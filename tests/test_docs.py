"""The docs list every setting and every problem type the code has."""

from __future__ import annotations

import types
from pathlib import Path

import pytest

import karaffe
import karaffe.events
from karaffe.config import CORE_SETTINGS

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_every_core_setting_is_documented_with_its_default() -> None:
    text = (DOCS / "config.md").read_text()
    for setting in CORE_SETTINGS:
        assert f"| `{setting.name}` | {setting.type.__name__} |" in text, setting.name


@pytest.mark.parametrize(("module", "count"), [(karaffe, 13), (karaffe.events, 8)])
def test_every_problem_type_is_documented(module: types.ModuleType, count: int) -> None:
    text = (DOCS / "errors.md").read_text()
    classes = [
        getattr(module, name)
        for name in module.__all__
        if isinstance(getattr(module, name), type)
        and issubclass(getattr(module, name), karaffe.ApiException)
    ]
    assert len(classes) == count
    for cls in classes:
        assert f"| `{cls.__name__}` | {cls.status}" in text, cls.__name__
        assert f"`urn:karaffe:problem:{cls.slug}`" in text, cls.__name__
