"""The database: Flask-SQLAlchemy set up the karaffe way (slide 32).

One session per app context, rolled back when the context ends with work
still uncommitted (a request that fails half-way leaves nothing
half-written), removed on teardown. SQLite by default, in a file under the
instance folder; PostgreSQL (psycopg 3) when ``DATABASE_URL`` says so.
Schema changes go through Alembic with Flask-Migrate (``flask db upgrade``)::

    from karaffe import db as kdb

    class Note(kdb.db.Model):
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str]

    def create_app(config=None):
        app = karaffe.App(__name__)
        app.configure(config)
        kdb.init_app(app)
        return app

A database that cannot be reached is an outage, not a bug: pooled
connections are checked before use (a restarted server costs no request),
and a request that meets an outage (a refused or lost connection, a server
shutting down, an exhausted pool, a locked SQLite file) is answered ``503
Service Unavailable`` with ``Retry-After``, a problem document on API routes
and the app's HTML error page elsewhere, and logged once per outage rather
than once per request (see :func:`is_unavailable`).

Settings (see :class:`DbSettings`): ``DATABASE_URL`` (also read from the plain
``DATABASE_URL`` environment variable), ``DATABASE_ECHO``,
``DATABASE_MIGRATIONS_DIR``, ``DATABASE_SQLITE_BUSY_TIMEOUT``,
``DATABASE_POOL_PRE_PING``, ``DATABASE_CONNECT_TIMEOUT``, ``DATABASE_RETRY_AFTER``.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import logging
import os
import typing as t
import weakref
from collections.abc import Callable, Iterator, Sequence

import sqlalchemy as sa
from flask import Flask, current_app, g, has_request_context
from flask.typing import ResponseReturnValue
from flask_migrate import Migrate
from flask_sqlalchemy import SQLAlchemy
from flask_sqlalchemy.session import Session as FlaskSession
from pydantic import AfterValidator
from sqlalchemy.orm import DeclarativeBase, SessionTransaction
from werkzeug.exceptions import ServiceUnavailable

from ._outage import OutageLog, describe
from .config import ConfigError, Env, PositiveInt, Settings, TypeName

__all__ = [
    "NAMING_CONVENTION",
    "Base",
    "Database",
    "DatabaseUrl",
    "DbSettings",
    "Model",
    "Session",
    "UTCDateTime",
    "after_commit",
    "current_outage",
    "db",
    "init_app",
    "is_flushing",
    "is_unavailable",
    "is_uncommitted",
    "normalize_database_url",
    "render_migration_item",
    "transaction",
]

log = logging.getLogger("karaffe.db")

#: Constraint names Alembic can rely on: the same on every database and every
#: run, so ``flask db migrate`` never sees spurious renames.
NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    """What ``db.Model`` is made from: SQLAlchemy 2 style (``Mapped[...]``
    annotations) with :data:`NAMING_CONVENTION`. Subclass :data:`Model`
    (that is ``db.Model``), not this."""

    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


@sa.event.listens_for(sa.Table, "after_parent_attach")
def _ids_never_reused(table: sa.Table, parent: t.Any) -> None:
    """On SQLite, the tables of karaffe's models are ``AUTOINCREMENT``: a
    deleted row's id is never given to a new row (as PostgreSQL's sequences
    never do), so the URL of a deleted object never names another one."""
    if parent is Base.metadata:
        table.dialect_options["sqlite"]["autoincrement"] = True


class UTCDateTime(sa.types.TypeDecorator[dt.datetime]):
    """A timestamp column that stores UTC and always reads back an aware UTC
    datetime, on SQLite as on PostgreSQL::

        created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime, default=utcnow)

    SQLite keeps no offset and hands timestamps back naive; PostgreSQL's
    ``timestamptz`` hands them back in the connection's time zone. This type
    converts on the way in (any aware datetime becomes UTC) and on the way
    out (a naive value is the UTC it was stored as), so code compares and
    subtracts the values it loads without looking at ``tzinfo``.

    A naive datetime is refused on write (and in a comparison with the
    column) with a ``ValueError``: it may be local time as well as UTC, and
    guessing wrong would shift it silently; pass ``datetime.now(UTC)`` or
    another aware value.

    :param timezone: the column is ``DateTime(timezone=True)``
        (``timestamptz`` on PostgreSQL), the same as ``sa.DateTime(timezone=True)``,
        so switching such a column to this type changes no schema. With
        ``False`` it keeps naive UTC in a ``timestamp`` column.
    """

    impl = sa.DateTime
    cache_ok = True

    def __init__(self, timezone: bool = True) -> None:
        super().__init__(timezone=timezone)
        self.timezone = timezone

    @property
    def python_type(self) -> type[dt.datetime]:
        return dt.datetime

    def process_bind_param(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"naive datetime {value.isoformat()} for a UTCDateTime column: "
                "pass an aware datetime, such as datetime.now(UTC)"
            )
        value = value.astimezone(dt.UTC)
        if not self.timezone or dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(
        self, value: dt.datetime | None, dialect: sa.Dialect
    ) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


def render_migration_item(type_: str, obj: t.Any, autogen_context: t.Any) -> str | t.Literal[False]:
    """Alembic's ``render_item`` hook (set by :class:`Database`): autogenerated
    migrations write a :class:`UTCDateTime` column as the ``sa.DateTime`` it
    is in the database, so they import nothing of karaffe."""
    if type_ == "type" and isinstance(obj, UTCDateTime):
        return f"sa.DateTime(timezone={obj.timezone})"
    return False


_flushing: contextvars.ContextVar[bool] = contextvars.ContextVar("karaffe_flushing", default=False)


def is_flushing() -> bool:
    """Whether the SQL being run now is the unit of work writing a flush.
    The tenancy layer checks those writes in ``before_flush`` instead of
    looking at their SQL."""
    return _flushing.get()


class Session(FlaskSession):
    """The class of ``db.session``'s sessions. It marks its flushes (see
    :func:`is_flushing`); the tenancy layer listens to its events."""

    def flush(self, objects: Sequence[t.Any] | None = None) -> None:
        token = _flushing.set(True)
        new = list(self.new)
        try:
            super().flush(objects)
            if new:
                self.info.setdefault(_INSERTED, weakref.WeakSet()).update(new)
        finally:
            _flushing.reset(token)


_INSERTED = "karaffe.inserted"


@sa.event.listens_for(Session, "after_transaction_end")
def _forget_inserted(session: sa.orm.Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_INSERTED, None)


def is_uncommitted(obj: t.Any, session: sa.orm.Session | None = None) -> bool:
    """Whether ``obj`` was added in the current transaction of ``session``
    (``db.session`` by default) and is not committed yet: pending, or
    flushed but not committed (its row is invisible to other connections)."""
    if session is None:
        session = db.session()
    return obj in session.new or obj in session.info.get(_INSERTED, ())


def normalize_database_url(url: str) -> str:
    """Map the URLs hosting platforms hand out (``postgres://``,
    ``postgresql://``) to SQLAlchemy's psycopg 3 dialect; others unchanged."""
    for scheme in ("postgres://", "postgresql://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def check_database_url(url: str) -> str:
    """``url`` normalized, or ``ValueError`` when SQLAlchemy cannot parse it
    or knows no such database (``postgresq://``)."""
    url = normalize_database_url(url)
    try:
        sa.engine.make_url(url).get_dialect()
    except sa.exc.NoSuchModuleError:
        scheme = url.partition(":")[0]
        raise ValueError(
            f"no database driver for {scheme!r} (postgresql://, sqlite:///path...)"
        ) from None
    except sa.exc.ArgumentError:
        raise ValueError("not a database URL, such as postgresql://user@host/name") from None
    return url


#: A SQLAlchemy database URL, normalized and checked when read.
DatabaseUrl = t.Annotated[str, AfterValidator(check_database_url), TypeName("database URL")]


class DbSettings(Settings):
    """What karaffe's data layer reads from the configuration."""

    title: t.ClassVar[str] = "Database"

    database_url: t.Annotated[DatabaseUrl | None, Env("DATABASE_URL")] = None
    """SQLAlchemy URL of the database; postgres:// and postgresql:// use psycopg 3.
    Default: a SQLite file named after the app in the instance folder."""

    database_echo: bool = False
    """Log every SQL statement (SQLAlchemy's echo)."""

    database_migrations_dir: str | None = None
    """Alembic's migrations directory. Default: `migrations` next to the app's package."""

    database_sqlite_busy_timeout: PositiveInt = 5000
    """Milliseconds SQLite waits for another writer before failing."""

    database_pool_pre_ping: bool = True
    """Test each pooled connection before a request uses it (one round trip),
    so connections a database restart broke are replaced, not failed on.
    Server databases only."""

    database_connect_timeout: PositiveInt = 10
    """Seconds to wait for a new connection to a PostgreSQL server before
    the request is answered 503."""

    database_retry_after: PositiveInt = 5
    """Seconds a client is told to wait (Retry-After) before retrying a
    request answered 503 because the database was unavailable."""


class Database(SQLAlchemy):
    """Flask-SQLAlchemy with karaffe's defaults: the :class:`Model` base, the
    :class:`Session` class, settings, SQLite pragmas, an explicit rollback at
    teardown and Flask-Migrate."""

    #: The Flask-Migrate extension class; ``init_app`` makes one per app.
    migrate_class: type[Migrate] = Migrate

    def __init__(self, **kwargs: t.Any) -> None:
        session_options = dict(kwargs.pop("session_options", None) or {})
        session_options.setdefault("class_", Session)
        kwargs.setdefault("model_class", Base)
        super().__init__(session_options=session_options, **kwargs)

    def init_app(self, app: Flask) -> None:
        """Set the database up for ``app``: call it after ``app.configure``."""
        settings = DbSettings.of(app)
        url = settings.database_url or self.default_url(app)
        app.config.setdefault("SQLALCHEMY_DATABASE_URI", url)
        app.config.setdefault("SQLALCHEMY_ECHO", settings.database_echo)
        app.config["SQLALCHEMY_ENGINE_OPTIONS"] = self.engine_options(
            settings, app.config["SQLALCHEMY_DATABASE_URI"], app.config
        )
        super().init_app(app)
        # Registered after Flask-SQLAlchemy's own teardown, so it runs first
        # (Flask runs teardowns in reverse): roll back, then remove.
        app.teardown_appcontext(self.rollback_uncommitted)
        app.extensions[OUTAGE_KEY] = OutageLog(log, "the database", settle=1.0)
        for cls in UNAVAILABLE_ERRORS:
            app.register_error_handler(cls, answer_unavailable)
        with app.app_context():
            for engine in self.engines.values():
                self.configure_engine(app, engine)
        directory = settings.database_migrations_dir or os.path.join(app.root_path, "migrations")
        render_as_batch = any(e.dialect.name == "sqlite" for e in self._app_engines[app].values())
        self.migrate_class(
            app,
            self,
            directory=directory,
            render_as_batch=render_as_batch,
            compare_type=True,
            render_item=render_migration_item,
        )

    def get_engine(self, bind_key: str | None = None, **kwargs: t.Any) -> sa.Engine:
        """``engines[bind_key]``. The ``env.py`` Flask-Migrate generates calls
        this first; Flask-SQLAlchemy's version warns that it is deprecated,
        which would fail every ``flask db`` command run with warnings as
        errors."""
        return self.engines[bind_key]

    def default_url(self, app: Flask) -> str:
        """The database when none is configured: ``<instance>/<app>.sqlite``."""
        os.makedirs(app.instance_path, exist_ok=True)
        name = app.name.split(".")[0] or "app"
        return "sqlite:///" + os.path.join(app.instance_path, f"{name}.sqlite")

    def engine_options(
        self, settings: DbSettings, url: str | sa.URL, config: t.Mapping[str, t.Any]
    ) -> dict[str, t.Any]:
        """``SQLALCHEMY_ENGINE_OPTIONS`` with karaffe's defaults for ``url``
        added (options the app sets win): server databases get their pooled
        connections pinged before use and, on PostgreSQL, a connect timeout."""
        options = dict(config.get("SQLALCHEMY_ENGINE_OPTIONS") or {})
        backend = sa.engine.make_url(url).get_backend_name()
        if backend == "sqlite":
            return options
        options.setdefault("pool_pre_ping", settings.database_pool_pre_ping)
        if backend == "postgresql":
            connect_args = dict(options.get("connect_args") or {})
            connect_args.setdefault("connect_timeout", settings.database_connect_timeout)
            options["connect_args"] = connect_args
        return options

    def configure_engine(self, app: Flask, engine: sa.Engine) -> None:
        """Per-connection settings. The first statement that succeeds after
        an outage ends it in the log. SQLite gets foreign keys enforced, WAL
        journaling (readers never block the writer) and a busy timeout."""
        outage = app.extensions.get(OUTAGE_KEY)
        if isinstance(outage, OutageLog):

            def after_execute(*args: t.Any) -> None:
                if outage.down:
                    outage.succeeded()

            sa.event.listen(engine, "after_cursor_execute", after_execute)
        if engine.dialect.name != "sqlite":
            return
        busy_timeout = DbSettings.of(app).database_sqlite_busy_timeout
        in_memory = engine.url.database in (None, "", ":memory:")

        def on_connect(dbapi_connection: t.Any, connection_record: t.Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA foreign_keys=ON")
                cursor.execute(f"PRAGMA busy_timeout={busy_timeout}")
                if not in_memory:
                    cursor.execute("PRAGMA journal_mode=WAL")
            finally:
                cursor.close()

        if not sa.event.contains(engine, "connect", on_connect):
            sa.event.listen(engine, "connect", on_connect)

    def rollback_uncommitted(self, exc: BaseException | None = None) -> None:
        """At the end of an app context, undo whatever was not committed,
        explicitly: the error handlers have run by then, so a request that
        failed half-way (even one answered with a handled 4xx/5xx) leaves
        nothing behind."""
        if not self.session.registry.has():
            return
        session = self.session()
        if session.in_transaction() or session.new or session.dirty or session.deleted:
            if session.new or session.dirty or session.deleted or exc is not None:
                log.debug("rolling back uncommitted changes at teardown (error: %r)", exc)
            try:
                session.rollback()
            except sa.exc.SQLAlchemyError as error:
                # The response is made already (and may report a commit): a
                # connection lost by now must not turn it into an error.
                # Closing the session returns the connection to the pool,
                # which discards a broken one.
                log.warning("rollback at teardown failed: %s", describe(error))


#: The application's database: ``db.Model``, ``db.session``, ``db.engine``.
db = Database()

OUTAGE_KEY = "karaffe.db.outage"

#: The exception classes that may mean an outage; :func:`is_unavailable` decides.
UNAVAILABLE_ERRORS: tuple[type[sa.exc.SQLAlchemyError], ...] = (
    sa.exc.OperationalError,
    sa.exc.InterfaceError,
    sa.exc.TimeoutError,
)

#: SQLite's primary result codes that mean "not now" rather than "wrong":
#: BUSY, LOCKED, NOMEM, IOERR, FULL, CANTOPEN, PROTOCOL.
_SQLITE_UNAVAILABLE = {5, 6, 7, 10, 13, 14, 15}


def is_unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) says the
    database cannot be used right now, rather than that a statement is
    wrong: the server refused or lost the connection, is shutting down or
    starting up, cancelled the statement or chose it as a deadlock victim;
    the pool had no connection to give in time; SQLite's file is locked or
    cannot be opened. Such a request may succeed if retried later.

    On PostgreSQL (and other servers) every ``OperationalError`` counts,
    except a program limit (SQLSTATE class 54: "statement too complex"),
    which no retry fixes; on SQLite, whose ``OperationalError`` also reports
    a missing table or a syntax error, only the result codes of a busy or
    unreachable database do.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if _says_unavailable(current):
            return True
        current = current.__cause__
    return False


def _says_unavailable(exc: BaseException) -> bool:
    if isinstance(exc, sa.exc.TimeoutError | sa.exc.DisconnectionError):
        return True
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    if exc.connection_invalidated:
        return True
    if not isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    code = getattr(exc.orig, "sqlite_errorcode", None)
    if code is not None or type(exc.orig).__module__.startswith("sqlite3"):
        return code is not None and code & 0xFF in _SQLITE_UNAVAILABLE
    sqlstate = getattr(exc.orig, "sqlstate", None)
    return not (isinstance(sqlstate, str) and sqlstate.startswith("54"))


def current_outage() -> BaseException | None:
    """The database error the current request was answered 503 for, if any.

    An HTML error page rendered for it must not use the database again (no
    current user's organizations in the layout, say): it would fail the same
    way, or, worse, half-succeed now that the server is back.
    """
    if not has_request_context():
        return None
    return t.cast("BaseException | None", g.get("_karaffe_db_outage"))


def answer_unavailable(exc: Exception) -> ResponseReturnValue:
    """The error handler :meth:`Database.init_app` registers for
    :data:`UNAVAILABLE_ERRORS`: an outage becomes a ``503 Service
    Unavailable`` with ``Retry-After`` (``DATABASE_RETRY_AFTER``), rendered
    like any HTTP error (the app's handlers for 503 first, then a problem on
    API routes, the HTML error page elsewhere). The outage is logged when it
    starts and when the next connection succeeds, not for every request.
    Other errors of those classes (a missing SQLite table...) are raised on,
    to be the 500 of an unhandled exception."""
    if not is_unavailable(exc):
        raise exc
    app = current_app
    g._karaffe_db_outage = exc
    outage = app.extensions.get(OUTAGE_KEY)
    if isinstance(outage, OutageLog):
        outage.failed(exc, doing="answering 503 until it is back")
    else:  # pragma: no cover - init_app sets it
        log.error("database unavailable: %s", describe(exc))
    unavailable = ServiceUnavailable(retry_after=DbSettings.of(app).database_retry_after)
    return app.handle_user_exception(unavailable)


if t.TYPE_CHECKING:

    class Model(Base):
        """``db.Model``, typed for mypy: subclass it for your models."""

        __abstract__ = True

else:
    #: ``db.Model`` under a name type checkers accept as a base class.
    Model = db.Model


def init_app(app: Flask) -> None:
    """Set up :data:`db` for ``app`` (same as ``db.init_app(app)``)."""
    if getattr(app, "configured", True) is False:
        raise ConfigError(
            "call app.configure() before karaffe.db.init_app(app): the database URL "
            "is read from the configuration"
        )
    db.init_app(app)


@contextlib.contextmanager
def transaction() -> Iterator[sa.orm.Session]:
    """Commit the block's work on success, roll it back on error::

    with transaction() as session:
        session.add(note)
    """
    session = db.session()
    try:
        yield session
    except BaseException:
        session.rollback()
        raise
    else:
        session.commit()


# -- after commit ------------------------------------------------------------------

_AFTER_COMMIT = "karaffe.db.after-commit"
_RELEASED = "karaffe.db.savepoint-released"


def after_commit(callback: Callable[[], None], session: sa.orm.Session | None = None) -> None:
    """Call ``callback`` once the current transaction of ``session`` (the
    app's ``db.session`` by default) commits, and never if it rolls back; at
    once when no transaction is open. A rolled-back savepoint drops the
    callbacks registered inside it.

    This is how karaffe's signals about committed changes are sent
    (:data:`karaffe.signals.membership_changed`...): a receiver sees data that
    is visible to every process. A callback that raises is logged; the
    commit has happened and stays."""
    if session is None:
        session = db.session()
    if not session.in_transaction():
        _call(callback)
        return
    trans = session.get_nested_transaction() or session.get_transaction()
    assert trans is not None
    pending = session.info.setdefault(_AFTER_COMMIT, {})
    pending.setdefault(trans, []).append(callback)
    _install_after_commit_hooks()


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:
        log.exception("karaffe.db: a callback after commit failed: %r", callback)


_after_commit_hooks = False


def _install_after_commit_hooks() -> None:
    global _after_commit_hooks
    if not _after_commit_hooks:
        sa.event.listen(sa.orm.Session, "after_commit", _run_after_commit)
        sa.event.listen(sa.orm.Session, "after_transaction_end", _end_transaction)
        _after_commit_hooks = True


def _run_after_commit(session: sa.orm.Session) -> None:
    pending: dict[SessionTransaction, list[Callable[[], None]]] | None = session.info.get(
        _AFTER_COMMIT
    )
    if not pending:
        return
    if session.in_nested_transaction():
        # A savepoint was released: its callbacks join the enclosing
        # transaction when it ends (just after this).
        session.info[_RELEASED] = True
        return
    callbacks = [c for trans in list(pending) for c in pending.pop(trans)]
    for callback in callbacks:
        _call(callback)


def _end_transaction(session: sa.orm.Session, trans: SessionTransaction) -> None:
    pending = session.info.get(_AFTER_COMMIT)
    released = session.info.pop(_RELEASED, False)
    if not pending or trans not in pending:
        return
    callbacks = pending.pop(trans)
    # Only a released savepoint hands its callbacks on; a rolled-back one, or
    # an outermost transaction ending without a commit, drops them.
    if trans.nested and released and trans.parent is not None:
        pending.setdefault(trans.parent, []).extend(callbacks)
