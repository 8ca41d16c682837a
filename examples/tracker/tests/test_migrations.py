"""The Alembic migrations build exactly the schema the models declare, on
SQLite and on PostgreSQL: ``flask db upgrade`` then autogenerate finds
nothing left to do."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from tracker import MIGRATIONS, create_app
from tracker.search import is_search_object

from karaffe.db import Model, db, normalize_database_url


def _app_tables_only(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    """Leave out tables of models that tests define for themselves (they share
    the one metadata when the whole suite runs in one process), and the
    search index's own objects (not in the metadata: tracker.search)."""
    if reflected and is_search_object(name, type_):
        return False
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
    """Upgrade an empty database to the head, down one revision and up again
    (the last revision's downgrade works), then compare with the models."""
    app = create_app({"TESTING": True, "SECRET_KEY": "migrations", "DATABASE_URL": url})
    with app.app_context():
        upgrade(directory=str(MIGRATIONS))
        downgrade(directory=str(MIGRATIONS), revision="-1")
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
    name = f"tracker_migrations_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(normalize_database_url(postgres_url), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        url = sa.make_url(normalize_database_url(postgres_url)).set(database=name)
        assert upgrade_and_compare(url.render_as_string(hide_password=False)) == []
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
