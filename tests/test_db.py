"""karaffe.db: settings, SQLite pragmas, one session per app context,
rollback of half-done work, migrations on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import logging
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path

import flask_migrate
import pytest
import sqlalchemy as sa
from datalayer import BACKENDS, Note, build_app, database_url, dispose
from flask import request

import karaffe
from karaffe import db as kdb
from karaffe.db import db, normalize_database_url


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return database_url(request, tmp_path)


@pytest.fixture
def app(url: str) -> Iterator[karaffe.App]:
    app = build_app(url, {"PROPAGATE_EXCEPTIONS": False, "WTF_CSRF_ENABLED": False})

    @app.post("/api/notes")
    def add_notes() -> karaffe.ApiResult:
        db.session.add(Note(text="first"))
        db.session.flush()
        db.session.add(Note(text="second"))
        db.session.flush()
        if request.args.get("fail") == "handled":
            raise karaffe.Conflict("Stopped half-way.")
        db.session.commit()
        return karaffe.ApiResult({"ok": True}, status=201)

    yield app
    dispose(app)


def note_count(app: karaffe.App) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(Note)) or 0


# -- settings ----------------------------------------------------------------------


def configured(config: dict[str, t.Any] | None = None, environ: dict[str, str] | None = None,
               instance: Path | None = None) -> karaffe.App:  # fmt: skip
    app = karaffe.App("karaffe_db_settings", instance_path=str(instance) if instance else None)
    app.configure({"TESTING": True, **(config or {})}, environ=environ or {})
    return app


def test_database_url_defaults_to_a_sqlite_file_in_the_instance_folder(tmp_path: Path) -> None:
    app = configured(instance=tmp_path / "instance")
    kdb.init_app(app)
    expected = f"sqlite:///{tmp_path}/instance/karaffe_db_settings.sqlite"
    assert app.config["SQLALCHEMY_DATABASE_URI"] == expected
    assert (tmp_path / "instance").is_dir()
    dispose(app)


def test_database_url_is_read_from_the_plain_environment_variable(tmp_path: Path) -> None:
    app = configured(environ={"DATABASE_URL": f"sqlite:///{tmp_path}/env.sqlite"})
    assert app.config["DATABASE_URL"] == f"sqlite:///{tmp_path}/env.sqlite"


def test_prefixed_environment_variable_wins_over_the_plain_one(tmp_path: Path) -> None:
    app = configured(
        environ={"DATABASE_URL": "sqlite:///plain.sqlite", "KARAFFE_DATABASE_URL": "sqlite://"}
    )
    assert app.config["DATABASE_URL"] == "sqlite://"


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("postgres://u:p@h:5432/d", "postgresql+psycopg://u:p@h:5432/d"),
        ("postgresql://u@h/d", "postgresql+psycopg://u@h/d"),
        ("postgresql+psycopg://u@h/d", "postgresql+psycopg://u@h/d"),
        ("sqlite:///x.sqlite", "sqlite:///x.sqlite"),
    ],
)
def test_postgres_urls_use_psycopg_3(given: str, expected: str) -> None:
    assert normalize_database_url(given) == expected


def test_init_app_after_configure_reads_settings_declared_late(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"postgres://late@localhost/{tmp_path.name}"
    app = karaffe.App("karaffe_db_late")
    app.configure({"TESTING": True}, environ={"DATABASE_URL": url})
    settings = kdb.DbSettings.of(app)
    assert settings.database_url == f"postgresql+psycopg://late@localhost/{tmp_path.name}"
    assert app.config["DATABASE_URL"] == settings.database_url
    assert app.config["DATABASE_SQLITE_BUSY_TIMEOUT"] == 5000


def test_init_app_before_configure_is_refused() -> None:
    app = karaffe.App("karaffe_db_early")
    with pytest.raises(karaffe.ConfigError, match=r"call app.configure\(\) before"):
        kdb.init_app(app)


def test_sqlite_enforces_foreign_keys_and_uses_wal(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/fk.sqlite")
    with app.app_context():
        assert db.session.execute(sa.text("PRAGMA foreign_keys")).scalar() == 1
        assert db.session.execute(sa.text("PRAGMA journal_mode")).scalar() == "wal"
        assert db.session.execute(sa.text("PRAGMA busy_timeout")).scalar() == 5000
    dispose(app)


def test_constraint_names_follow_the_naming_convention() -> None:
    crate = db.metadata.tables["karaffe_test_crate"]
    names = {c.name for c in crate.constraints} | {i.name for i in crate.indexes}
    assert names == {
        "pk_karaffe_test_crate",
        "fk_karaffe_test_crate_organization_id_organization",
        "ix_karaffe_test_crate_organization_id",
    }
    assert "uq_user_account_email" in {
        c.name for c in db.metadata.tables["user_account"].constraints
    }


# -- sessions ------------------------------------------------------------------------


def test_one_session_per_app_context_removed_at_teardown(app: karaffe.App) -> None:
    with app.app_context():
        first = db.session()
        assert db.session() is first
        with app.app_context():
            assert db.session() is not first
    with app.app_context():
        assert not db.session.registry.has()


def test_uncommitted_work_is_rolled_back_when_the_context_ends(app: karaffe.App) -> None:
    with app.app_context():
        db.create_all()
    with app.app_context():
        db.session.add(Note(text="never committed"))
        db.session.flush()
    assert note_count(app) == 0
    with app.app_context():
        db.drop_all()


@pytest.mark.parametrize("failure", ["handled", "unhandled"])
def test_a_request_failing_half_way_leaves_nothing_written(app: karaffe.App, failure: str) -> None:
    with app.app_context():
        db.create_all()
    try:
        if failure == "unhandled":
            app.view_functions["add_notes"] = _failing_view
        rv = app.test_client().post(f"/api/notes?fail={failure}")
        if failure == "handled":
            assert rv.status_code == 409
            assert rv.json == {
                "type": "urn:karaffe:problem:conflict",
                "title": "Conflict",
                "status": 409,
                "detail": "Stopped half-way.",
                "errors": [],
            }
        else:
            assert rv.status_code == 500
            assert rv.json is not None and rv.json["detail"] == "Internal server error"
        assert note_count(app) == 0
    finally:
        with app.app_context():
            db.drop_all()


def _failing_view() -> karaffe.ApiResult:
    db.session.add(Note(text="first"))
    db.session.flush()
    db.session.add(Note(text="second"))
    db.session.flush()
    raise RuntimeError("the disk is on fire")


def test_a_request_that_commits_keeps_its_work(app: karaffe.App) -> None:
    with app.app_context():
        db.create_all()
    try:
        app.view_functions["add_notes"] = _committing_view
        rv = app.test_client().post("/api/notes")
        assert rv.status_code == 201
        assert note_count(app) == 2
    finally:
        with app.app_context():
            db.drop_all()


def _committing_view() -> karaffe.ApiResult:
    db.session.add_all([Note(text="first"), Note(text="second")])
    db.session.commit()
    return karaffe.ApiResult({"ok": True}, status=201)


def test_transaction_commits_on_success_and_rolls_back_on_error(app: karaffe.App) -> None:
    with app.app_context():
        db.create_all()
        with kdb.transaction() as session:
            session.add(Note(text="kept"))
        with pytest.raises(ValueError), kdb.transaction() as session:
            session.add(Note(text="dropped"))
            session.flush()
            raise ValueError("no")
        assert [n.text for n in db.session.scalars(sa.select(Note))] == ["kept"]
        db.session.remove()
        db.drop_all()


# -- UTC timestamps -------------------------------------------------------------------

PARIS_NOON = dt.datetime(2026, 3, 1, 12, 0, tzinfo=dt.timezone(dt.timedelta(hours=1)))


@pytest.fixture
def stamps(url: str) -> Iterator[tuple[sa.Engine, sa.Table]]:
    """A table of UTCDateTime columns, with and without a time zone in the database."""
    engine = sa.create_engine(normalize_database_url(url))
    table = sa.Table(
        f"karaffe_test_stamp_{uuid.uuid4().hex[:8]}",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("aware", kdb.UTCDateTime()),
        sa.Column("naive", kdb.UTCDateTime(timezone=False)),
    )
    table.create(engine)
    yield engine, table
    table.drop(engine)
    engine.dispose()


def test_utc_datetime_reads_back_the_same_instant_as_aware_utc(
    stamps: tuple[sa.Engine, sa.Table],
) -> None:
    engine, table = stamps
    with engine.begin() as connection:
        if engine.dialect.name == "postgresql":
            # The connection's zone must not leak into what is read back.
            connection.execute(sa.text("SET TIME ZONE 'America/New_York'"))
        connection.execute(table.insert().values(id=1, aware=PARIS_NOON, naive=PARIS_NOON))
        row = connection.execute(sa.select(table.c.aware, table.c.naive)).one()
        found = connection.execute(
            sa.select(table.c.id).where(table.c.aware == PARIS_NOON.astimezone(dt.UTC))
        ).scalar()
    expected = dt.datetime(2026, 3, 1, 11, 0, tzinfo=dt.UTC)
    for value in row:
        assert value == expected
        assert value.tzinfo is dt.UTC
    assert found == 1


def test_utc_datetime_refuses_a_naive_datetime(stamps: tuple[sa.Engine, sa.Table]) -> None:
    engine, table = stamps
    with engine.begin() as connection, pytest.raises(sa.exc.StatementError) as info:
        connection.execute(table.insert().values(id=1, aware=dt.datetime(2026, 3, 1, 12)))
    assert isinstance(info.value.orig, ValueError)
    assert "naive datetime 2026-03-01T12:00:00 for a UTCDateTime column" in str(info.value)


def test_utc_datetime_without_time_zone_stores_the_utc_wall_time(
    stamps: tuple[sa.Engine, sa.Table],
) -> None:
    engine, table = stamps
    with engine.begin() as connection:
        connection.execute(table.insert().values(id=1, naive=PARIS_NOON))
        stored = connection.execute(sa.text(f"SELECT naive FROM {table.name}")).scalar_one()
    assert str(stored).startswith("2026-03-01 11:00:00")


def test_migrations_write_utc_datetime_as_the_datetime_it_is_in_the_database() -> None:
    assert kdb.render_migration_item("type", kdb.UTCDateTime(), None) == (
        "sa.DateTime(timezone=True)"
    )
    assert kdb.render_migration_item("type", kdb.UTCDateTime(timezone=False), None) == (
        "sa.DateTime(timezone=False)"
    )
    assert kdb.render_migration_item("type", sa.DateTime(), None) is False


# -- migrations -----------------------------------------------------------------------


@pytest.fixture
def keep_logging() -> Iterator[None]:
    """Alembic's env.py runs logging.config.fileConfig, which disables every
    logger it does not name; undo that for the tests that follow."""
    loggers = [
        logger for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]  # fmt: skip
    disabled = {logger.name: logger.disabled for logger in loggers}
    root = logging.getLogger()
    root_level, root_handlers = root.level, list(root.handlers)
    yield
    for logger in loggers:
        logger.disabled = disabled[logger.name]
    root.setLevel(root_level)
    root.handlers[:] = root_handlers


@pytest.mark.usefixtures("keep_logging")
def test_flask_db_upgrade_builds_the_schema(app: karaffe.App, tmp_path: Path) -> None:
    directory = str(tmp_path / "migrations")
    with app.app_context():
        db.drop_all()
        flask_migrate.init(directory)
        flask_migrate.migrate(directory, message="initial")
        flask_migrate.upgrade(directory)
        inspector = sa.inspect(db.engine)
        tables = set(inspector.get_table_names())
        assert {"user_account", "api_token", "organization", "membership"} <= tables
        assert {"karaffe_test_crate", "karaffe_test_bottle", "karaffe_test_note"} <= tables
        indexes = {i["name"] for i in inspector.get_indexes("karaffe_test_crate")}
        assert "ix_karaffe_test_crate_organization_id" in indexes
        # A second autogenerate finds nothing to do (and writes no revision):
        # the constraint names are stable.
        flask_migrate.migrate(directory, message="nothing")
        assert len(list((tmp_path / "migrations" / "versions").glob("*.py"))) == 1
        flask_migrate.downgrade(directory, revision="base")
        assert set(sa.inspect(db.engine).get_table_names()) <= {"alembic_version"}
        db.session.remove()
        with db.engine.begin() as connection:
            connection.execute(sa.text("DROP TABLE IF EXISTS alembic_version"))


# -- after commit ---------------------------------------------------------------------


@pytest.fixture
def schema(app: karaffe.App) -> Iterator[None]:
    with app.app_context():
        db.create_all()
    yield
    with app.app_context():
        db.drop_all()


def test_after_commit_runs_once_the_transaction_commits(app: karaffe.App, schema: None) -> None:
    calls: list[str] = []
    with app.app_context():
        db.session.add(Note(text="x"))
        kdb.after_commit(lambda: calls.append("committed"))
        db.session.flush()
        assert calls == []
        db.session.commit()
        assert calls == ["committed"]
        db.session.add(Note(text="y"))
        db.session.commit()
    assert calls == ["committed"]


def test_after_commit_never_runs_for_a_rollback(app: karaffe.App, schema: None) -> None:
    calls: list[str] = []
    with app.app_context():
        db.session.add(Note(text="x"))
        kdb.after_commit(lambda: calls.append("rolled back"))
        db.session.rollback()
        db.session.commit()
    with app.app_context():
        db.session.add(Note(text="x"))
        kdb.after_commit(lambda: calls.append("left uncommitted"))
    assert calls == []


def test_after_commit_drops_what_a_rolled_back_savepoint_registered(
    app: karaffe.App, schema: None
) -> None:
    calls: list[str] = []
    with app.app_context():
        db.session.add(Note(text="x"))
        with db.session.begin_nested() as kept:
            kdb.after_commit(lambda: calls.append("kept"))
        assert kept is not None
        savepoint = db.session.begin_nested()
        kdb.after_commit(lambda: calls.append("dropped"))
        savepoint.rollback()
        db.session.commit()
    assert calls == ["kept"]


def test_after_commit_outside_a_transaction_runs_at_once(app: karaffe.App, schema: None) -> None:
    calls: list[str] = []
    with app.app_context():
        kdb.after_commit(lambda: calls.append("now"))
        assert calls == ["now"]


def test_a_failing_after_commit_callback_is_logged_and_the_commit_stays(
    app: karaffe.App, schema: None, caplog: pytest.LogCaptureFixture
) -> None:
    def fail() -> None:
        raise RuntimeError("receiver broke")

    with app.app_context():
        db.session.add(Note(text="kept"))
        kdb.after_commit(fail)
        db.session.commit()
    assert note_count(app) == 1
    assert "a callback after commit failed" in caplog.text
