"""tracker.services: what the HTML pages and the API share."""

from __future__ import annotations

import typing as t

import pytest
from flask import Flask
from tracker import services
from tracker.models import Issue, Label, Project
from werkzeug.exceptions import NotFound

from karaffe.auth import User
from karaffe.db import db
from karaffe.tenancy import acting_as

from .conftest import World


@pytest.mark.parametrize(
    ("model", "kind", "own", "foreign"),
    [
        (Project, "projects", "website", "vault"),
        (Label, "labels", "bug", "globex-only"),
        (Issue, "issues", "first", "hidden"),
    ],
)
def test_get_visible_answers_a_foreign_row_exactly_like_a_missing_one(
    app: Flask, world: World, model: type[t.Any], kind: str, own: str, foreign: str
) -> None:
    ids = getattr(world, kind)
    with app.app_context():
        alice = db.session.get(User, world.users["alice"])
        assert alice is not None
        with acting_as(alice):
            row = services.get_visible(model, ids[own])
            assert isinstance(row, model) and row.id == ids[own]
            answers = []
            for ident in (ids[foreign], 987_654):
                with pytest.raises(NotFound) as info:
                    services.get_visible(model, ident)
                answers.append((info.value.code, info.value.description))
    assert answers[0] == answers[1] == (404, "The requested resource was not found.")
