"""The docs list every setting and every problem type the code has."""

from __future__ import annotations

import types
from pathlib import Path

import pytest
from tracker.settings import TrackerSettings

import karaffe
import karaffe.events
from karaffe._configdocs import part_classes, render

DOCS = Path(__file__).resolve().parent.parent / "docs"


def test_config_reference_is_generated_from_the_settings_models() -> None:
    page = (DOCS / "config.md").read_text()
    expected = render(page, [*part_classes(), TrackerSettings])
    assert page == expected, (
        "docs/config.md is out of date: run .venv/bin/python -m karaffe._configdocs "
        "docs/config.md tracker.settings:TrackerSettings"
    )


def test_config_reference_lists_every_setting_of_every_part() -> None:
    page = (DOCS / "config.md").read_text()
    for cls in [*part_classes(), TrackerSettings]:
        for key in cls.config_keys().values():
            assert f"| `{key}` |" in page, key


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
