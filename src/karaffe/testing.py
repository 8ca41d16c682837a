"""karaffe's pytest plugin (slide 57), registered by entry point.

Point it at your factory in ``pyproject.toml``::

    [tool.pytest.ini_options]
    karaffe_app = "myapp:create_app"

and every test gets ``app`` (built with :func:`karaffe_config`, which you may
override in your ``conftest.py``) and ``client``::

    def test_welcome_view(client):
        rv = client.get("/welcome")
        assert "set-cookie" not in rv.headers
        assert b"Welcome" in rv.data
        assert rv.status_code == 200

It also starts real servers for tests that need them: ``redis_url`` and
``postgres_url`` (see :mod:`karaffe._servers`).
"""

from __future__ import annotations

import contextlib
import threading
import typing as t
from collections.abc import Iterator

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.utils import import_string

from . import _servers

__all__ = [
    "app",
    "captured_events",
    "client",
    "db",
    "karaffe_config",
    "leak_sweep",
    "live_server",
    "login_as",
    "postgres_url",
    "redis_url",
    "serving",
]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "karaffe_app",
        "Import name of the app factory for the app fixture, e.g. myapp:create_app",
        default="",
    )


@pytest.fixture
def karaffe_config(tmp_path: t.Any) -> dict[str, t.Any]:
    """The config mapping the ``app`` fixture passes to the factory: testing
    mode, a secret, and a SQLite database of the test's own (never the
    instance folder's). Override it (or extend it) in your ``conftest.py``."""
    return {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key",
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{tmp_path}/test.sqlite",
    }


@pytest.fixture
def app(request: pytest.FixtureRequest, karaffe_config: dict[str, t.Any]) -> Iterator[Flask]:
    """The app built by the factory named by the ``karaffe_app`` ini option."""
    target = str(request.config.getini("karaffe_app"))
    if not target:
        raise pytest.UsageError(
            'set karaffe_app = "yourpackage:create_app" in the pytest configuration, '
            "or define an app fixture"
        )
    factory = import_string(target.replace(":", "."))
    yield factory(karaffe_config)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client for ``app``."""
    return app.test_client()


@contextlib.contextmanager
def serving(app: Flask) -> Iterator[str]:
    """Serve ``app`` over real HTTP on 127.0.0.1 (a free port, a server thread)
    for the ``with`` block; yields its base URL, such as ``http://127.0.0.1:41234``."""
    from werkzeug.serving import make_server

    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    """The ``app`` fixture served over real HTTP (see :func:`serving`): its base URL."""
    with serving(app) as url:
        yield url


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server for this test session: ``REDIS_URL`` if set, else a
    private ``redis-server`` on a free port, stopped at the end."""
    with _servers.redis(tmp_path_factory.mktemp("redis")) as url:
        yield url


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A PostgreSQL database for this test session: ``DATABASE_URL`` if it is
    a PostgreSQL URL, else a private server (``initdb`` + ``postgres``) on a
    free port, stopped at the end."""
    with _servers.postgres(tmp_path_factory.mktemp("postgres")) as url:
        yield url


@pytest.fixture
def db(app: Flask) -> Iterator[t.Any]:
    """``karaffe.db.db`` with every table created on ``app``'s database,
    all dropped after the test. Use it inside ``app.app_context()``; org-owned
    rows are seeded inside ``unscoped("...")`` (nothing is visible otherwise)."""
    from .db import db as database

    with app.app_context():
        database.create_all()
    try:
        yield database
    finally:
        with app.app_context():
            database.session.remove()
            database.drop_all()


@pytest.fixture
def login_as(app: Flask, client: FlaskClient) -> t.Callable[..., FlaskClient]:
    """``login_as(user)`` logs ``client`` (or the client given as second
    argument) in as ``user`` (a ``User`` or its id) through the session
    cookie, exactly as ``karaffe.auth.login_user`` would; returns the client."""
    import sqlalchemy as sa

    from .auth import User, session_values_for
    from .db import db as database

    def login(user: t.Any, on: FlaskClient | None = None) -> FlaskClient:
        target = on or client
        user_id = user if isinstance(user, int) else sa.inspect(user).identity[0]
        with app.app_context():
            loaded = database.session.get(User, user_id)
            if loaded is None:
                raise LookupError(f"no user with id {user_id}")
            values = session_values_for(loaded)
        with target.session_transaction() as session:
            session.clear()
            session.update(values)
        return target

    return login


@pytest.fixture
def leak_sweep(app: Flask, db: t.Any) -> t.Callable[..., t.Any]:
    """``leak_sweep(seed, **options)`` calls every route of ``app`` as a
    member of one organization on another's objects and fails on any
    response revealing the other's data (see :mod:`karaffe._leaksweep`);
    returns the report."""
    import functools

    from ._leaksweep import sweep_for_leaks

    return functools.partial(sweep_for_leaks, app)


@pytest.fixture
def captured_events(app: Flask) -> Iterator[list[t.Any]]:
    """The :class:`karaffe.events.Event` objects ``app`` sends to its broker
    during the test, in order: only what was committed (see
    :func:`karaffe.events.publish`)."""
    from .events.publish import event_published

    captured: list[t.Any] = []

    def record(sender: Flask, event: t.Any, **_: t.Any) -> None:
        captured.append(event)

    with event_published.connected_to(record, sender=app):
        yield captured
