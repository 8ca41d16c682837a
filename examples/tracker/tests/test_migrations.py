"""The Alembic migrations build exactly the schema the models declare, on
SQLite and on PostgreSQL: ``flask db upgrade`` then autogenerate finds
nothing left to do."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import downgrade, upgrade
from tracker import MIGRATIONS, create_app
from tracker.search import is_search_object

from karaffe._servers import fresh_database
from karaffe.db import Model, db
from karaffe.tenancy import unscoped


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
    with fresh_database(postgres_url, "tracker_migrations") as url:
        assert upgrade_and_compare(url) == []


#: Rows of a database from before the finding revision: two organizations
#: whose projects would get the same key, issues, comments.
_OLD_ROWS = """
INSERT INTO organization (id, name, slug, created_at) VALUES
  (1, 'Acme', 'acme', '2026-01-01 00:00:00+00'), (2, 'Globex', 'globex', '2026-01-01 00:00:00+00');
INSERT INTO project (id, name, description, created_at, organization_id) VALUES
  (1, 'Billing', '', '2026-01-01 00:00:00+00', 1), (2, 'Billing v2', '', '2026-01-01 00:00:00+00', 1),
  (3, 'Bill', '', '2026-01-01 00:00:00+00', 1), (4, 'Billing', '', '2026-01-01 00:00:00+00', 2);
INSERT INTO issue (id, project_id, title, description, status, created_at, updated_at, organization_id) VALUES
  (10, 1, 'Invoice total wrong', 'rounding', 'open', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 1),
  (11, 4, 'Refunds', '', 'closed', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 2),
  (12, 1, 'Tax rates', '', 'closed', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 1),
  (13, 1, 'Currency', '', 'open', '2026-01-01 00:00:00+00', '2026-01-01 00:00:00+00', 1);
INSERT INTO comment (id, issue_id, body, created_at, organization_id) VALUES
  (1, 12, 'The VAT table is outdated', '2026-01-01 00:00:00+00', 1),
  (2, 12, 'Also the sales tax', '2026-01-01 00:00:00+00', 1);
"""


def backfill(url: str) -> None:
    """Upgrade a database holding rows to the finding revision: keys,
    numbers, counters and the search index are filled in for them, and new
    rows carry on from there."""
    app = create_app({"TESTING": True, "SECRET_KEY": "migrations", "DATABASE_URL": url})
    with app.app_context(), unscoped("test: rows of every organization, in SQL"):
        upgrade(directory=str(MIGRATIONS), revision="953500b0a7ea")
        with db.engine.begin() as connection:
            for statement in _OLD_ROWS.split(";"):
                if statement.strip():
                    connection.execute(sa.text(statement))
        upgrade(directory=str(MIGRATIONS))
        with db.engine.begin() as connection:
            projects = connection.execute(
                sa.text(
                    "SELECT id, key, last_issue_number, open_issue_count, closed_issue_count "
                    "FROM project ORDER BY id"
                )
            ).all()
            issues = connection.execute(
                sa.text("SELECT id, number, key, comment_count FROM issue ORDER BY id")
            ).all()
            connection.execute(
                sa.text(
                    "INSERT INTO issue (project_id, title, description, status, created_at, "
                    "updated_at, organization_id, number, key) VALUES (1, 'New', '', 'open', "
                    "'2026-02-01 00:00:00+00', '2026-02-01 00:00:00+00', 1, 4, 'BIL-4')"
                )
            )
            counts = connection.execute(
                sa.text("SELECT open_issue_count FROM project WHERE id = 1")
            ).scalar_one()
            if connection.dialect.name == "postgresql":
                found = (
                    connection.execute(
                        sa.text(
                            "SELECT id FROM issue WHERE search_vector @@ to_tsquery('english', 'vat')"
                        )
                    )
                    .scalars()
                    .all()
                )
            else:
                found = (
                    connection.execute(
                        sa.text("SELECT rowid FROM issue_fts WHERE issue_fts MATCH 'vat'")
                    )
                    .scalars()
                    .all()
                )
        db.session.remove()
        for engine in db.engines.values():
            engine.dispose()
    assert [tuple(p) for p in projects] == [
        (1, "BIL", 3, 2, 1),
        (2, "BV", 0, 0, 0),
        (3, "BIL2", 0, 0, 0),
        (4, "BIL", 1, 0, 1),
    ]
    assert [tuple(i) for i in issues] == [
        (10, 1, "BIL-1", 0),
        (11, 1, "BIL-1", 0),
        (12, 2, "BIL-2", 2),
        (13, 3, "BIL-3", 0),
    ]
    assert counts == 3  # the triggers count rows inserted after the upgrade
    assert found == [12]  # a comment's words find its issue


def test_the_finding_revision_backfills_existing_rows_on_sqlite(tmp_path):
    backfill(f"sqlite:///{tmp_path}/old.sqlite")


@pytest.mark.postgres
def test_the_finding_revision_backfills_existing_rows_on_postgresql(postgres_url):
    with fresh_database(postgres_url, "tracker_backfill") as url:
        backfill(url)


def test_the_accounts_and_labels_revision_goes_down_and_up_keeping_the_rows(tmp_path):
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
