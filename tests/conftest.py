"""Shared fixtures for karaffe's own tests; the public ones live in karaffe.testing."""

from __future__ import annotations

import typing as t
from collections.abc import Callable

import pytest

import karaffe


@pytest.fixture
def make_app() -> Callable[..., karaffe.App]:
    """Build a configured karaffe app for a test; routes are added by the test."""

    def make(config: dict[str, t.Any] | None = None, **kwargs: t.Any) -> karaffe.App:
        app = karaffe.App("karaffe_test_app", **kwargs)
        app.configure({"TESTING": True, "SECRET_KEY": "test-secret", **(config or {})}, environ={})
        return app

    return make
