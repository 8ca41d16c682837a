"""Fixtures for the events tests: an app with Events and a database."""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import karaffe
from karaffe.events import Events
from karaffe.events.outbox import outbox_table


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "note"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(100))


@pytest.fixture(name="Note")
def note_model() -> type[Note]:
    """A small mapped class to write in transactions."""
    return Note


@pytest.fixture
def make_events_app() -> Callable[..., tuple[karaffe.App, SQLAlchemy]]:
    """Build an app with a SQLite database and Events; config overrides apply."""

    def make(config: dict[str, t.Any] | None = None) -> tuple[karaffe.App, SQLAlchemy]:
        app = karaffe.App("karaffe_events_test")
        Events(app)
        app.configure(
            {
                "TESTING": True,
                "SECRET_KEY": "events-secret",
                "SQLALCHEMY_DATABASE_URI": "sqlite://",
                **(config or {}),
            },
            environ={},
        )
        db = SQLAlchemy(model_class=Base)
        db.init_app(app)
        with app.app_context():
            db.create_all()
            # The outbox is on with Redis: its table, as a migration makes it.
            outbox_table.create(db.engine)
        return app, db

    return make


@pytest.fixture
def events_app(
    make_events_app: Callable[..., tuple[karaffe.App, SQLAlchemy]],
) -> Iterator[tuple[karaffe.App, SQLAlchemy]]:
    app, db = make_events_app()
    yield app, db
    with app.app_context():
        db.engine.dispose()


@pytest.fixture
def app(events_app: tuple[karaffe.App, SQLAlchemy]) -> karaffe.App:
    """The events app, for karaffe's own fixtures (``captured_events``)."""
    return events_app[0]
