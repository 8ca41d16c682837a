"""A database that cannot be used is an outage, answered 503 with Retry-After
and logged once; pooled connections are pinged so a restart costs nothing
once the server is back. (The restart itself, on a real server, is in
``tests/faults``.)"""

from __future__ import annotations

import logging
import sqlite3
import typing as t
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa
from datalayer import Note, build_app, dispose
from flask import render_template_string
from werkzeug.exceptions import HTTPException

import karaffe
from karaffe._servers import free_port
from karaffe.db import current_outage, db, is_unavailable

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


@pytest.fixture(autouse=True)
def karaffe_db_logs() -> None:
    """Alembic's env.py (run by the migration tests) disables every logger
    its logging config does not name; these tests read karaffe.db's."""
    logging.getLogger("karaffe.db").disabled = False


def unreachable_url() -> str:
    """A PostgreSQL URL nothing listens on: every connection is refused."""
    return f"postgresql://postgres@127.0.0.1:{free_port()}/nothing"


@pytest.fixture
def down() -> Iterator[karaffe.App]:
    app = build_app(unreachable_url(), {"PROPAGATE_EXCEPTIONS": False})

    @app.get("/api/notes")
    def api_notes() -> karaffe.ApiResult:
        return karaffe.ApiResult({"count": len(db.session.scalars(sa.select(Note)).all())})

    @app.get("/notes")
    def html_notes() -> str:
        return str(len(db.session.scalars(sa.select(Note)).all()))

    yield app
    dispose(app)


# -- engine options ----------------------------------------------------------------


def test_server_databases_ping_pooled_connections_and_time_out_connecting() -> None:
    app = build_app(unreachable_url())
    with app.app_context():
        engine = db.engine
        assert engine.pool._pre_ping
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_pre_ping": True,
        "connect_args": {"connect_timeout": 10},
    }
    dispose(app)


def test_the_apps_own_engine_options_win() -> None:
    app = build_app(
        unreachable_url(),
        {
            "DATABASE_CONNECT_TIMEOUT": 3,
            "SQLALCHEMY_ENGINE_OPTIONS": {
                "pool_pre_ping": False,
                "connect_args": {"sslmode": "disable"},
            },
        },
    )
    assert app.config["SQLALCHEMY_ENGINE_OPTIONS"] == {
        "pool_pre_ping": False,
        "connect_args": {"sslmode": "disable", "connect_timeout": 3},
    }
    dispose(app)


def test_sqlite_connections_are_not_pinged(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/db.sqlite")
    with app.app_context():
        assert not db.engine.pool._pre_ping
    dispose(app)


# -- 503 ---------------------------------------------------------------------------------


def test_an_outage_on_an_api_route_is_a_503_problem_with_retry_after(down: karaffe.App) -> None:
    rv = down.test_client().get("/api/notes")
    assert rv.status_code == 503
    assert rv.headers["Retry-After"] == "5"
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json() == {
        "type": "urn:karaffe:problem:service-unavailable",
        "title": "Service unavailable",
        "status": 503,
        "detail": "Service unavailable",
        "errors": [],
    }


def test_an_outage_on_an_html_route_is_the_apps_error_page(down: karaffe.App) -> None:
    outages: list[BaseException | None] = []

    @down.html_errorhandler
    def page(e: HTTPException) -> t.Any:
        outages.append(current_outage())
        return render_template_string("<h1>{{ code }}, sorry</h1>", code=e.code), e.code

    rv = down.test_client().get("/notes")
    assert rv.status_code == 503
    assert rv.headers["Retry-After"] == "5"
    assert rv.data == b"<h1>503, sorry</h1>"
    assert isinstance(outages[0], sa.exc.OperationalError)


def test_retry_after_is_a_setting() -> None:
    app = build_app(unreachable_url(), {"DATABASE_RETRY_AFTER": 30})
    app.add_url_rule("/api/n", "n", lambda: str(db.session.execute(sa.text("SELECT 1")).scalar()))
    assert app.test_client().get("/api/n").headers["Retry-After"] == "30"
    dispose(app)


def test_the_apps_own_handlers_come_first() -> None:
    app = build_app(unreachable_url())
    app.add_url_rule("/api/n", "n", lambda: str(db.session.execute(sa.text("SELECT 1")).scalar()))

    @app.errorhandler(503)
    def on_503(e: HTTPException) -> t.Any:
        return f"503 handled, retry after {e.retry_after}", 503  # type: ignore[attr-defined]

    assert app.test_client().get("/api/n").data == b"503 handled, retry after 5"
    dispose(app)

    app = build_app(unreachable_url())
    app.add_url_rule("/api/n", "n", lambda: str(db.session.execute(sa.text("SELECT 1")).scalar()))

    @app.errorhandler(sa.exc.OperationalError)
    def on_operational_error(e: Exception) -> t.Any:
        return "the app's own", 500

    assert app.test_client().get("/api/n").data == b"the app's own"
    dispose(app)


def test_an_outage_is_logged_when_it_starts_and_when_it_ends(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "locked.sqlite"
    app = build_app(
        f"sqlite:///{path}", {"DATABASE_SQLITE_BUSY_TIMEOUT": 1, "WTF_CSRF_ENABLED": False}
    )
    with app.app_context():
        db.create_all()

    @app.post("/api/notes")
    def add() -> karaffe.ApiResult:
        db.session.add(Note(text="x"))
        db.session.commit()
        return karaffe.ApiResult({}, status=201)

    app.extensions["karaffe.db.outage"].settle = 0  # the end: at the first success
    client = app.test_client()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    with caplog.at_level(logging.INFO, logger="karaffe.db"):
        statuses = [client.post("/api/notes").status_code for _ in range(5)]
        holder.execute("ROLLBACK")
        statuses += [client.post("/api/notes").status_code for _ in range(2)]
    holder.close()
    assert statuses == [503] * 5 + [201] * 2
    messages = [r.getMessage() for r in caplog.records if r.name == "karaffe.db"]
    assert len(messages) == 2, messages
    assert messages[0] == (
        "the database is unavailable (answering 503 until it is back): "
        "OperationalError: (sqlite3.OperationalError) database is locked"
    )
    assert messages[1].startswith("the database is available again after ")
    assert messages[1].endswith("s (5 failures meanwhile)")
    assert all(r.exc_info is None for r in caplog.records)
    dispose(app)


def test_a_sqlite_error_that_is_no_outage_stays_a_500(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/empty.sqlite", {"PROPAGATE_EXCEPTIONS": False})
    app.add_url_rule("/api/n", "n", lambda: str(db.session.scalars(sa.select(Note)).all()))
    rv = app.test_client().get("/api/n")  # no table: a bug, not an outage
    assert rv.status_code == 500
    testing = build_app(f"sqlite:///{tmp_path}/empty.sqlite")
    testing.add_url_rule("/api/n", "n", lambda: str(db.session.scalars(sa.select(Note)).all()))
    with pytest.raises(sa.exc.OperationalError, match="no such table"):
        testing.test_client().get("/api/n")
    dispose(app)
    dispose(testing)


def test_a_rollback_failing_at_teardown_does_not_fail_the_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(f"sqlite:///{tmp_path}/db.sqlite", {"WTF_CSRF_ENABLED": False})
    with app.app_context():
        db.create_all()

    @app.post("/api/notes")
    def add() -> karaffe.ApiResult:
        db.session.add(Note(text="x"))
        db.session.commit()
        db.session.scalars(sa.select(Note)).all()  # opens a transaction again
        return karaffe.ApiResult({}, status=201)

    def lost(self: t.Any) -> None:
        raise sa.exc.OperationalError("ROLLBACK", {}, ConnectionError("connection lost"))

    monkeypatch.setattr(karaffe.db.Session, "rollback", lost)
    with caplog.at_level(logging.WARNING, logger="karaffe.db"):
        assert app.test_client().post("/api/notes").status_code == 201
    assert (
        "rollback at teardown failed: OperationalError: (builtins.ConnectionError) connection lost"
        in caplog.text
    )
    monkeypatch.undo()
    dispose(app)


# -- what counts as an outage ------------------------------------------------------------


def dbapi(cls: type[sa.exc.DBAPIError], orig: BaseException) -> sa.exc.DBAPIError:
    return cls("SELECT 1", {}, orig)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("exc", "outage"),
    [
        (dbapi(sa.exc.OperationalError, psycopg.OperationalError("connection refused")), True),
        (dbapi(sa.exc.OperationalError, psycopg.errors.AdminShutdown()), True),
        (dbapi(sa.exc.OperationalError, psycopg.errors.CannotConnectNow()), True),
        (dbapi(sa.exc.OperationalError, psycopg.errors.QueryCanceled()), True),
        (dbapi(sa.exc.OperationalError, psycopg.errors.DeadlockDetected()), True),
        (dbapi(sa.exc.OperationalError, psycopg.errors.StatementTooComplex()), False),
        (dbapi(sa.exc.InterfaceError, psycopg.InterfaceError("the connection is closed")), True),
        (dbapi(sa.exc.IntegrityError, psycopg.errors.UniqueViolation()), False),
        (dbapi(sa.exc.ProgrammingError, psycopg.errors.UndefinedTable()), False),
        (dbapi(sa.exc.OperationalError, sqlite3.OperationalError("no such table: x")), False),
        (sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached"), True),
        (sa.exc.DisconnectionError("gone"), True),
        (ValueError("not a database error"), False),
    ],
    ids=lambda v: type(getattr(v, "orig", v)).__name__ if not isinstance(v, bool) else str(v),
)
def test_what_is_an_outage(exc: BaseException, outage: bool) -> None:
    assert is_unavailable(exc) is outage


def test_an_invalidated_connection_is_an_outage_whatever_the_error() -> None:
    exc = sa.exc.DBAPIError("SELECT 1", {}, Exception("ssl error"), connection_invalidated=True)
    assert is_unavailable(exc)


def test_an_outage_raised_on_as_another_error_is_still_one() -> None:
    cause = dbapi(sa.exc.OperationalError, psycopg.errors.AdminShutdown())
    try:
        try:
            raise cause
        except sa.exc.OperationalError as inner:
            raise RuntimeError("loading the user failed") from inner
    except RuntimeError as outer:
        assert is_unavailable(outer)
