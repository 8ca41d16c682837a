"""The docs list every setting and every problem type the code has."""

from __future__ import annotations

from pathlib import Path

from tracker.settings import TrackerSettings

import karaffe
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


def test_every_problem_type_is_documented() -> None:
    text = (DOCS / "errors.md").read_text()
    classes = [
        getattr(karaffe, name)
        for name in karaffe.__all__
        if isinstance(getattr(karaffe, name), type)
        and issubclass(getattr(karaffe, name), karaffe.ApiException)
    ]
    assert len(classes) == 13
    for cls in classes:
        assert f"| `{cls.__name__}` | {cls.status}" in text, cls.__name__
        assert f"`urn:karaffe:problem:{cls.slug}`" in text, cls.__name__
