"""The Alembic migrations build exactly the schema the models declare, on
SQLite and on PostgreSQL: ``flask db upgrade`` then autogenerate finds
nothing left to do."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade
from tracker import MIGRATIONS, create_app

from karaffe._servers import fresh_database
from karaffe.db import Model, db
from karaffe.tenancy import unscoped


def _app_tables_only(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Leave out tables of models that tests define for themselves (they share
    the one metadata when the whole suite runs in one process)."""
    if type_ != "table":
        return True
    test_tables = {
        table.name
        for mapper in Model.registry.mappers
        if not mapper.class_.__module__.startswith(("tracker", "karaffe"))
        for table in mapper.tables
    }
    return name not in test_tables


def upgrade_and_compare(url: str) -> list[object]:
    app = create_app({"TESTING": True, "SECRET_KEY": "migrations", "DATABASE_URL": url})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS))
        with db.engine.connect() as connection:
            context = MigrationContext.configure(
                connection, opts={"compare_type": True, "include_object": _app_tables_only}
            )
            diff = compare_metadata(context, Model.metadata)
            tables = set(sa.inspect(connection).get_table_names())
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    assert {"issue", "project", "label", "comment", "invitation", "issue_label"} <= tables
    return diff


def test_migrations_match_the_models_on_sqlite(tmp_path):
    assert upgrade_and_compare(f"sqlite:///{tmp_path}/migrated.sqlite") == []


@pytest.mark.postgres
def test_migrations_match_the_models_on_postgresql(postgres_url):
    # A database of its own: other tests create and drop tables in the shared one.
    with fresh_database(postgres_url, "tracker_migrations") as url:
        assert upgrade_and_compare(url) == []


def test_the_accounts_and_labels_revision_goes_down_and_up_keeping_the_rows(tmp_path):
    from flask_migrate import downgrade

    url = f"sqlite:///{tmp_path}/updown.sqlite"
    app = create_app({"TESTING": True, "SECRET_KEY": "migrations", "DATABASE_URL": url})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS), revision="953500b0a7ea")
        with unscoped("test: rows before the migration"), db.engine.begin() as connection:
            connection.execute(sa.text(
                "INSERT INTO user_account (email, name, is_active, created_at) "
                "VALUES ('ann@example.com', 'Ann', 1, '2026-01-01 00:00:00')"
            ))  # fmt: skip
            connection.execute(sa.text(
                "INSERT INTO organization (name, slug, created_at) VALUES ('Acme', 'acme', "
                "'2026-01-01 00:00:00')"
            ))  # fmt: skip
            connection.execute(sa.text(
                "INSERT INTO label (organization_id, name) VALUES (1, 'bug')"
            ))  # fmt: skip
        upgrade(directory=str(MIGRATIONS), revision="5cecbfa73808")
        with unscoped("test: the migrated rows"), db.engine.connect() as connection:
            assert connection.execute(sa.text("SELECT color FROM label")).scalar() == "#6b7280"
            verified = sa.text("SELECT email_verified_at FROM user_account")
            assert connection.execute(verified).scalar() is None
        downgrade(directory=str(MIGRATIONS), revision="953500b0a7ea")
        with unscoped("test: the rows after going down"), db.engine.connect() as connection:
            columns = {c["name"] for c in sa.inspect(connection).get_columns("label")}
            assert "color" not in columns
            assert connection.execute(sa.text("SELECT name FROM label")).scalar() == "bug"
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
