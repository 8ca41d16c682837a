"""Models and an app factory shared by the data layer's tests (test_db,
test_auth, test_tenancy). Table names are prefixed so they never collide
with an app's (the tracker's) in the shared metadata."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

import karaffe
from karaffe import auth, tenancy
from karaffe import db as kdb
from karaffe.db import Model, db
from karaffe.tenancy import OrgOwned


class Note(Model):
    """Not org-owned."""

    __tablename__ = "karaffe_test_note"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(100))


class Crate(OrgOwned, Model):
    """Org-owned, with bottles."""

    __tablename__ = "karaffe_test_crate"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(100))

    bottles: Mapped[list[Bottle]] = relationship(back_populates="crate", order_by="Bottle.id")


class Bottle(OrgOwned, Model):
    """Org-owned, in a crate (of the same organization)."""

    __tablename__ = "karaffe_test_bottle"

    id: Mapped[int] = mapped_column(primary_key=True)
    label: Mapped[str] = mapped_column(sa.String(100))
    crate_id: Mapped[int] = mapped_column(sa.ForeignKey("karaffe_test_crate.id"), index=True)

    crate: Mapped[Crate] = relationship(back_populates="bottles")


FAST_HASH = "scrypt:1024:8:1"


def build_app(url: str, config: dict[str, t.Any] | None = None) -> karaffe.App:
    """A karaffe app with the data layer on ``url``; tests add routes."""
    app = karaffe.App("karaffe_data_test")
    app.configure(
        {
            "TESTING": True,
            "SECRET_KEY": "test-secret",
            "DATABASE_URL": url,
            "PASSWORD_HASH_METHOD": FAST_HASH,
            **(config or {}),
        },
        environ={},
    )
    kdb.init_app(app)
    auth.init_app(app)
    tenancy.init_app(app)
    return app


def dispose(app: karaffe.App) -> None:
    with app.app_context():
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()


def database_url(request: pytest.FixtureRequest, tmp_path: t.Any) -> str:
    """The URL for a test parametrized over ``sqlite`` and ``postgres``."""
    if request.param == "postgres":
        return t.cast(str, request.getfixturevalue("postgres_url"))
    return f"sqlite:///{tmp_path}/test.sqlite"


BACKENDS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]
