"""Access that ends: the events part revokes what karaffe's signals say was
withdrawn, and binds the channel tokens a request hands out to its credential."""

from __future__ import annotations

import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from datalayer import build_app, dispose
from flask import request

import karaffe
from karaffe.auth import User, create_api_token, get_auth, get_user, login_required
from karaffe.db import db
from karaffe.events import Events, MemoryBroker, channel_token
from karaffe.events.publish import state_for
from karaffe.signals import credentials_revoked, membership_changed

PASSWORD = "correct horse battery staple"


@pytest.fixture
def app(tmp_path: Path) -> Iterator[karaffe.App]:
    app = build_app(f"sqlite:///{tmp_path}/access.sqlite", {"WTF_CSRF_ENABLED": False})
    Events(app)

    @app.post("/login")
    def login() -> str:
        get_auth().login(request.form["email"], request.form["password"])
        db.session.commit()
        return "ok"

    @app.get("/api/token")
    @login_required
    def token() -> str:
        user = request.args.get("user", type=int)
        return channel_token(user if user is not None else get_user(), ["project:1"])

    with app.app_context():
        db.create_all()
        for name in ("alice", "bob"):
            user = User(email=f"{name}@example.org", name=name)
            user.set_password(PASSWORD)
            db.session.add(user)
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
    dispose(app)


def broker(app: karaffe.App) -> MemoryBroker:
    found = state_for(app).broker
    assert isinstance(found, MemoryBroker)
    return found


def grant(app: karaffe.App, token: str) -> t.Any:
    return state_for(app).signer.verify(token)


@pytest.mark.parametrize(
    ("old", "new"), [("member", None), ("admin", "member"), ("owner", "admin"), ("owner", None)]
)
def test_a_removed_membership_or_a_lower_role_revokes_the_users_channel_tokens(
    app: karaffe.App, old: str, new: str | None
) -> None:
    membership_changed.send(app, user_id=1, organization_id=3, old_role=old, new_role=new)
    assert broker(app).revoked_at("1") is not None
    assert broker(app).revoked_at("2") is None


@pytest.mark.parametrize(("old", "new"), [(None, "member"), ("member", "admin")])
def test_a_new_membership_or_a_higher_role_revokes_nothing(
    app: karaffe.App, old: str | None, new: str
) -> None:
    membership_changed.send(app, user_id=1, organization_id=3, old_role=old, new_role=new)
    assert broker(app).revoked_at("1") is None


def test_a_revoked_credential_revokes_the_tokens_bound_to_it(app: karaffe.App) -> None:
    credentials_revoked.send(app, user_id=1, credential="session:4", reason="logout")
    assert broker(app).revoked_at("1", "session:4") is not None
    assert broker(app).revoked_at("1") is None
    credentials_revoked.send(app, user_id=1, credential=None, reason="password-changed")
    assert broker(app).revoked_at("1") is not None


def test_another_apps_signal_revokes_nothing_here(app: karaffe.App) -> None:
    other = karaffe.App("karaffe_other_app")
    credentials_revoked.send(other, user_id=1, credential=None, reason="logout")
    assert broker(app).revoked_at("1") is None


def test_a_page_token_is_bound_to_the_login_session(app: karaffe.App) -> None:
    client = app.test_client()
    client.post("/login", data={"email": "alice@example.org", "password": PASSWORD})
    with app.app_context():
        (session_id,) = db.session.execute(sa.text("SELECT id FROM user_session")).scalars()
    assert grant(app, client.get("/api/token").text).credential == f"session:{session_id}"


def test_a_token_handed_out_to_an_api_client_is_bound_to_its_api_token(app: karaffe.App) -> None:
    with app.app_context():
        alice = db.session.get(User, 1)
        assert alice is not None
        token, plaintext = create_api_token(alice, "ci")
        db.session.commit()
        token_id = token.id
    rv = app.test_client().get("/api/token", headers={"Authorization": f"Bearer {plaintext}"})
    assert grant(app, rv.text).credential == f"api-token:{token_id}"


def test_a_token_for_someone_else_is_bound_to_no_credential(app: karaffe.App) -> None:
    client = app.test_client()
    client.post("/login", data={"email": "alice@example.org", "password": PASSWORD})
    assert grant(app, client.get("/api/token?user=2").text).credential is None
