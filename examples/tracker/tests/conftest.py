"""Fixtures for the tracker's tests.

``world`` is a small, fixed data set in two organizations that never see
each other: Acme (alice owner, bob admin, dave member) and Globex (carol
owner). Tests log in with ``login_as`` (session cookie) or call the API
with ``api(user)`` (a bearer token), and look at the database with
``count``.
"""

from __future__ import annotations

import os
import shutil
import typing as t
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from flask import Flask, g, has_request_context, request, request_tearing_down
from flask.testing import FlaskClient
from tracker.jobs import deliver_mail
from tracker.models import Issue, Label, Project

from karaffe.auth import User, create_api_token
from karaffe.db import db as database
from karaffe.events.outbox import Dispatcher
from karaffe.jobs import run_job
from karaffe.tenancy import create_organization, unscoped

PASSWORD = "correct horse battery"
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def chromium() -> Iterator[t.Any]:
    """One headless Chromium (Playwright driving Debian's ``chromium``) for a
    test module; each test opens its own contexts in it (their own cookies and
    storage), so no test sees another's session."""
    if not Path(CHROMIUM).exists() and shutil.which("chromium") is None:
        pytest.fail(f"no Chromium at {CHROMIUM}: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            yield browser
        finally:
            browser.close()


@pytest.fixture
def karaffe_config(tmp_path: t.Any) -> dict[str, t.Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "tracker-test-secret",
        "DATABASE_URL": f"sqlite:///{tmp_path}/tracker.sqlite",
        "WTF_CSRF_ENABLED": False,
        # Fast hashes: these tests are about the app, not scrypt.
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "SERVER_NAME": "tracker.test",
        # Flask-Mailman keeps the mail in a list: the ``outbox`` fixture.
        "MAIL_BACKEND": "locmem",
    }


class Outbox(list[t.Any]):
    """The mail the tracker sent, oldest first. Requests queue their mail
    (:mod:`tracker.mailqueue`) and the job ``tracker.jobs.deliver_mail``
    sends it, as the scheduler does every few seconds: reading this list
    first runs that job, so it holds what the scheduler would have sent by
    then. Appended to by Flask-Mailman's ``locmem`` backend."""

    def __init__(self, app: Flask) -> None:
        super().__init__()
        self.app = app

    def deliver(self) -> None:
        """Run the delivery job now (with the job runner, as the scheduler would)."""
        run_job(deliver_mail, app=self.app)

    def __iter__(self) -> t.Iterator[t.Any]:
        self.deliver()
        return super().__iter__()

    def __len__(self) -> int:
        self.deliver()
        return super().__len__()

    def __getitem__(self, index: t.Any) -> t.Any:
        self.deliver()
        return super().__getitem__(index)

    def __eq__(self, other: object) -> bool:
        self.deliver()
        return super().__eq__(other)

    __hash__ = None  # type: ignore[assignment]


@pytest.fixture
def outbox(app: Flask, db: t.Any) -> Outbox:
    """The mail the tracker sent during the test (Flask-Mailman ``EmailMessage``
    objects: ``.to``, ``.subject``, ``.body``), oldest first; see :class:`Outbox`.
    The tables are made (``db``): the mail queue is one."""
    state = app.extensions["mailman"]
    state.outbox = Outbox(app)
    return t.cast(Outbox, state.outbox)


@dataclass
class World:
    """Ids of the objects of the ``world`` fixture."""

    users: dict[str, int] = field(default_factory=dict)
    orgs: dict[str, int] = field(default_factory=dict)
    slugs: dict[str, str] = field(default_factory=dict)
    projects: dict[str, int] = field(default_factory=dict)
    labels: dict[str, int] = field(default_factory=dict)
    issues: dict[str, int] = field(default_factory=dict)
    tokens: dict[str, str] = field(default_factory=dict)


@pytest.fixture
def world(app: Flask, db: t.Any) -> World:
    w = World()
    with app.app_context(), unscoped("test fixture: two organizations"):
        people = {}
        for name in ("alice", "bob", "carol", "dave", "erin"):
            user = User(name=name.title(), email=f"{name}@example.com")
            user.set_password(PASSWORD)
            database.session.add(user)
            people[name] = user
        acme = create_organization("Acme", "acme", people["alice"])
        globex = create_organization("Globex", "globex", people["carol"])
        database.session.flush()
        from karaffe.tenancy import Membership

        database.session.add(Membership(organization=acme, user=people["bob"], role="admin"))
        database.session.add(Membership(organization=acme, user=people["dave"], role="member"))
        website = Project(organization_id=acme.id, name="Website", description="Acme's site")
        vault = Project(organization_id=globex.id, name="Vault", description="Globex secrets")
        bug = Label(organization_id=acme.id, name="bug", color="#d73a4a")
        ux = Label(organization_id=acme.id, name="ux", color="#bfdadc")
        secret = Label(organization_id=globex.id, name="globex-only")
        database.session.add_all([website, vault, bug, ux, secret])
        database.session.flush()
        first = Issue(
            organization_id=acme.id,
            project_id=website.id,
            title="Login button is blue",
            description="It should be green.",
            author_id=people["bob"].id,
            assignee_id=people["dave"].id,
            labels=[bug],
        )
        second = Issue(
            organization_id=acme.id,
            project_id=website.id,
            title="Footer overlaps on phones",
            status="closed",
            author_id=people["alice"].id,
            labels=[ux],
        )
        hidden = Issue(
            organization_id=globex.id,
            project_id=vault.id,
            title="Globex launch codes",
            description="Top secret",
            author_id=people["carol"].id,
        )
        database.session.add_all([first, second, hidden])
        database.session.flush()
        for name, user in people.items():
            w.users[name] = user.id
            w.tokens[name] = create_api_token(user, "tests")[1]
        w.orgs = {"acme": acme.id, "globex": globex.id}
        w.slugs = {"acme": "acme", "globex": "globex"}
        w.projects = {"website": website.id, "vault": vault.id}
        w.labels = {"bug": bug.id, "ux": ux.id, "globex-only": secret.id}
        w.issues = {"first": first.id, "second": second.id, "hidden": hidden.id}
        database.session.commit()
    return w


@pytest.fixture
def login(
    app: Flask, world: World, login_as: Callable[..., FlaskClient]
) -> Callable[[str], FlaskClient]:
    """``login("alice")``: a test client logged in as that user."""

    def as_user(name: str) -> FlaskClient:
        return login_as(world.users[name], app.test_client())

    return as_user


class ApiClient:
    """A test client that sends a user's bearer token on every request."""

    def __init__(self, client: FlaskClient, token: str) -> None:
        self.client = client
        self.headers = {"Authorization": f"Bearer {token}"}

    def open(self, method: str, path: str, **kwargs: t.Any) -> t.Any:
        headers = {**self.headers, **kwargs.pop("headers", {})}
        return self.client.open(path, method=method, headers=headers, **kwargs)

    def get(self, path: str, **kwargs: t.Any) -> t.Any:
        return self.open("GET", path, **kwargs)

    def post(self, path: str, **kwargs: t.Any) -> t.Any:
        return self.open("POST", path, **kwargs)

    def patch(self, path: str, **kwargs: t.Any) -> t.Any:
        return self.open("PATCH", path, **kwargs)

    def put(self, path: str, **kwargs: t.Any) -> t.Any:
        return self.open("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: t.Any) -> t.Any:
        return self.open("DELETE", path, **kwargs)


@pytest.fixture
def api(app: Flask, world: World) -> Callable[[str], ApiClient]:
    """``api("alice")``: an API client authenticated with alice's token."""

    def as_user(name: str) -> ApiClient:
        return ApiClient(app.test_client(), world.tokens[name])

    return as_user


@pytest.fixture
def count(app: Flask) -> Callable[..., int]:
    """``count(Issue)`` or ``count(Issue, Issue.title == "x")``: rows in the
    database, whatever organization they belong to."""

    def rows(model: t.Any, *where: t.Any) -> int:
        with app.app_context(), unscoped("test: counting rows"):
            stmt = sa.select(sa.func.count()).select_from(model)
            if where:
                stmt = stmt.where(*where)
            return int(database.session.execute(stmt).scalar_one())

    return rows


@pytest.fixture(autouse=True)
def no_sql_after_commit(app: Flask, monkeypatch: pytest.MonkeyPatch) -> t.Iterator[list[str]]:
    """Fails a test in which a request ran SQL after its last commit.

    What a response needs is read before the commit: a statement after it
    needs a connection again, and if the database has just gone away the
    request fails although its write was committed (the client retries, and
    the issue exists twice). Statements followed by another commit are fine.
    Yields the violations found so far.
    """
    violations: list[str] = []

    def committed(session: t.Any) -> None:
        if has_request_context():
            g._test_after_commit = []

    def executed(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        if (
            has_request_context()
            and g.get("_test_after_commit") is not None
            and not g.get("_test_in_outbox_send")
        ):
            g._test_after_commit.append(statement)

    # The outbox's send after the commit runs its own short transaction and
    # never raises (what it cannot send waits for the sweeper): its statements
    # cannot fail a committed write.
    send_committed = Dispatcher.send_committed

    def marked_send(self: t.Any, *args: t.Any, **kwargs: t.Any) -> t.Any:
        g._test_in_outbox_send = True
        try:
            return send_committed(self, *args, **kwargs)
        finally:
            g._test_in_outbox_send = False

    monkeypatch.setattr(Dispatcher, "send_committed", marked_send)

    def request_ended(sender: Flask, **kwargs: t.Any) -> None:
        if g.get("_test_after_commit"):
            violations.append(f"{request.method} {request.path}: {g._test_after_commit}")

    with app.app_context():
        engine = database.engine
    sa.event.listen(database.session, "after_commit", committed)
    sa.event.listen(engine, "before_cursor_execute", executed)
    request_tearing_down.connect(request_ended, app)
    try:
        yield violations
    finally:
        request_tearing_down.disconnect(request_ended, app)
        sa.event.remove(engine, "before_cursor_execute", executed)
        sa.event.remove(database.session, "after_commit", committed)
    assert not violations, "SQL ran after a request's last commit:\n" + "\n".join(violations)
