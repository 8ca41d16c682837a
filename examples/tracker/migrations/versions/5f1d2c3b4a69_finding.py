"""finding: project keys and issue numbers, open/closed and comment counters,
full-text search (PostgreSQL tsvector + GIN, SQLite FTS5), sort indexes

Revision ID: 5f1d2c3b4a69
Revises: d5a2f0c8e417
Create Date: 2026-12-01 22:30:00

Existing rows are backfilled: every project gets a key made from its name
(unique in its organization), its issues the numbers 1, 2... in id order,
the counters their counts, and the search index every issue's text.

On SQLite, ``project.key``, ``issue.number`` and ``issue.key`` are added
``NOT NULL`` with a default ('' or 0) that nothing relies on (SQLite cannot
add a ``NOT NULL`` column without one, and rebuilding the tables would
lose their ``AUTOINCREMENT``). The triggers' SQL is a copy of
tracker.counters and tracker.search at this revision.
"""

import re
import unicodedata

import sqlalchemy as sa
from alembic import op

from karaffe.tenancy import unscoped

# revision identifiers, used by Alembic.
revision = "5f1d2c3b4a69"
down_revision = "d5a2f0c8e417"
branch_labels = None
depends_on = None

COUNTERS_SQLITE = {
    "issue": [
        "CREATE TRIGGER issue_counts_insert AFTER INSERT ON issue BEGIN\n"
        "  UPDATE project SET open_issue_count = open_issue_count + (NEW.status = "
        "'open'),\n"
        "    closed_issue_count = closed_issue_count + (NEW.status = 'closed')\n"
        "  WHERE id = NEW.project_id;\n"
        "END",
        "CREATE TRIGGER issue_counts_update AFTER UPDATE OF status, project_id ON issue\n"
        "WHEN OLD.status IS NOT NEW.status OR OLD.project_id IS NOT NEW.project_id BEGIN\n"
        "  UPDATE project SET open_issue_count = open_issue_count - (OLD.status = "
        "'open'),\n"
        "    closed_issue_count = closed_issue_count - (OLD.status = 'closed')\n"
        "  WHERE id = OLD.project_id;\n"
        "  UPDATE project SET open_issue_count = open_issue_count + (NEW.status = "
        "'open'),\n"
        "    closed_issue_count = closed_issue_count + (NEW.status = 'closed')\n"
        "  WHERE id = NEW.project_id;\n"
        "END",
        "CREATE TRIGGER issue_counts_delete AFTER DELETE ON issue BEGIN\n"
        "  UPDATE project SET open_issue_count = open_issue_count - (OLD.status = "
        "'open'),\n"
        "    closed_issue_count = closed_issue_count - (OLD.status = 'closed')\n"
        "  WHERE id = OLD.project_id;\n"
        "END",
    ],
    "comment": [
        "CREATE TRIGGER comment_count_insert AFTER INSERT ON comment BEGIN\n"
        "  UPDATE issue SET comment_count = comment_count + 1 WHERE id = NEW.issue_id;\n"
        "END",
        "CREATE TRIGGER comment_count_delete AFTER DELETE ON comment BEGIN\n"
        "  UPDATE issue SET comment_count = comment_count - 1 WHERE id = OLD.issue_id;\n"
        "END",
    ],
}

COUNTERS_POSTGRESQL = {
    "issue": [
        "CREATE OR REPLACE FUNCTION tracker_issue_counts() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        "    UPDATE project SET open_issue_count = open_issue_count + d.opened,\n"
        "      closed_issue_count = closed_issue_count + d.closed\n"
        "    FROM (SELECT project_id, sum(opened) AS opened, sum(closed) AS closed\n"
        "          FROM (SELECT project_id, (status = 'open')::int AS opened, (status = "
        "'closed')::int AS closed FROM new_rows) AS changes GROUP BY project_id) AS d\n"
        "    WHERE project.id = d.project_id AND (d.opened <> 0 OR d.closed <> 0);\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        "    UPDATE project SET open_issue_count = open_issue_count + d.opened,\n"
        "      closed_issue_count = closed_issue_count + d.closed\n"
        "    FROM (SELECT project_id, sum(opened) AS opened, sum(closed) AS closed\n"
        "          FROM (SELECT project_id, -(status = 'open')::int AS opened, -(status = "
        "'closed')::int AS closed FROM old_rows) AS changes GROUP BY project_id) AS d\n"
        "    WHERE project.id = d.project_id AND (d.opened <> 0 OR d.closed <> 0);\n"
        "  ELSE\n"
        "    UPDATE project SET open_issue_count = open_issue_count + d.opened,\n"
        "      closed_issue_count = closed_issue_count + d.closed\n"
        "    FROM (SELECT project_id, sum(opened) AS opened, sum(closed) AS closed\n"
        "          FROM (SELECT o.project_id, -(o.status = 'open')::int AS opened, "
        "-(o.status = 'closed')::int AS closed FROM old_rows o JOIN new_rows n ON n.id = "
        "o.id WHERE o.status IS DISTINCT FROM n.status OR o.project_id IS DISTINCT FROM "
        "n.project_id UNION ALL SELECT n.project_id, (n.status = 'open')::int, (n.status = "
        "'closed')::int FROM old_rows o JOIN new_rows n ON n.id = o.id WHERE o.status IS "
        "DISTINCT FROM n.status OR o.project_id IS DISTINCT FROM n.project_id) AS changes "
        "GROUP BY project_id) AS d\n"
        "    WHERE project.id = d.project_id AND (d.opened <> 0 OR d.closed <> 0);\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $$",
        "CREATE TRIGGER issue_counts_insert AFTER INSERT ON issue\n"
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
        "tracker_issue_counts()",
        "CREATE TRIGGER issue_counts_delete AFTER DELETE ON issue\n"
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "
        "tracker_issue_counts()",
        "CREATE TRIGGER issue_counts_update AFTER UPDATE ON issue\n"
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows\n"
        "FOR EACH STATEMENT EXECUTE FUNCTION tracker_issue_counts()",
    ],
    "comment": [
        "CREATE OR REPLACE FUNCTION tracker_comment_count() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        "    UPDATE issue SET comment_count = comment_count + d.n\n"
        "    FROM (SELECT issue_id, count(*) AS n FROM new_rows GROUP BY issue_id) AS d\n"
        "    WHERE issue.id = d.issue_id;\n"
        "  ELSE\n"
        "    UPDATE issue SET comment_count = comment_count - d.n\n"
        "    FROM (SELECT issue_id, count(*) AS n FROM old_rows GROUP BY issue_id) AS d\n"
        "    WHERE issue.id = d.issue_id;\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $$",
        "CREATE TRIGGER comment_count_insert AFTER INSERT ON comment\n"
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
        "tracker_comment_count()",
        "CREATE TRIGGER comment_count_delete AFTER DELETE ON comment\n"
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "
        "tracker_comment_count()",
    ],
}

SEARCH_SQLITE = {
    "issue": [
        "CREATE VIRTUAL TABLE IF NOT EXISTS issue_fts USING fts5(title, description, "
        "comments, tokenize = 'porter unicode61 remove_diacritics 2')",
        "CREATE TRIGGER issue_fts_insert AFTER INSERT ON issue BEGIN\n"
        "  INSERT INTO issue_fts (rowid, title, description, comments)\n"
        "  VALUES (NEW.id, NEW.title, NEW.description, '');\n"
        "END",
        "CREATE TRIGGER issue_fts_update AFTER UPDATE OF title, description ON issue "
        "BEGIN\n"
        "  UPDATE issue_fts SET title = NEW.title, description = NEW.description WHERE "
        "rowid = NEW.id;\n"
        "END",
        "CREATE TRIGGER issue_fts_delete AFTER DELETE ON issue BEGIN\n"
        "  DELETE FROM issue_fts WHERE rowid = OLD.id;\n"
        "END",
    ],
    "comment": [
        "CREATE TRIGGER comment_fts_insert AFTER INSERT ON comment BEGIN\n"
        "  UPDATE issue_fts SET comments = coalesce(\n"
        "    (SELECT group_concat(body, ' ') FROM comment WHERE issue_id = "
        "NEW.issue_id), '')\n"
        "  WHERE rowid = NEW.issue_id;\n"
        "END",
        "CREATE TRIGGER comment_fts_update AFTER UPDATE OF body ON comment BEGIN\n"
        "  UPDATE issue_fts SET comments = coalesce(\n"
        "    (SELECT group_concat(body, ' ') FROM comment WHERE issue_id = "
        "NEW.issue_id), '')\n"
        "  WHERE rowid = NEW.issue_id;\n"
        "END",
        "CREATE TRIGGER comment_fts_delete AFTER DELETE ON comment BEGIN\n"
        "  UPDATE issue_fts SET comments = coalesce(\n"
        "    (SELECT group_concat(body, ' ') FROM comment WHERE issue_id = "
        "OLD.issue_id), '')\n"
        "  WHERE rowid = OLD.issue_id;\n"
        "END",
    ],
}

SEARCH_POSTGRESQL = {
    "issue": [
        "ALTER TABLE issue ADD COLUMN search_vector tsvector",
        "CREATE INDEX ix_issue_search_vector ON issue USING gin (search_vector)",
        "CREATE OR REPLACE FUNCTION tracker_issue_search() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  NEW.search_vector := tracker_issue_document(NEW.id, NEW.title, "
        "NEW.description);\n"
        "  RETURN NEW;\n"
        "END $$",
        "CREATE TRIGGER issue_search BEFORE INSERT OR UPDATE OF title, description ON "
        "issue\n"
        "FOR EACH ROW EXECUTE FUNCTION tracker_issue_search()",
    ],
    "comment": [
        "CREATE OR REPLACE FUNCTION tracker_issue_document(\n"
        "  issue_id integer, title text, description text) RETURNS tsvector\n"
        "LANGUAGE sql STABLE AS $$\n"
        "  SELECT setweight(to_tsvector('english', coalesce(title, '')), 'A')\n"
        "    || setweight(to_tsvector('english', coalesce(description, '')), 'B')\n"
        "    || setweight(to_tsvector('english', coalesce(\n"
        "         (SELECT string_agg(body, ' ' ORDER BY id) FROM comment WHERE "
        "comment.issue_id = $1),\n"
        "         '')), 'C')\n"
        "$$",
        "CREATE OR REPLACE FUNCTION tracker_comment_search() RETURNS trigger\n"
        "LANGUAGE plpgsql AS $$\n"
        "BEGIN\n"
        "  IF TG_OP = 'INSERT' THEN\n"
        "    UPDATE issue SET search_vector = tracker_issue_document(id, title, "
        "description)\n"
        "    WHERE id IN (SELECT issue_id FROM new_rows);\n"
        "  ELSIF TG_OP = 'DELETE' THEN\n"
        "    UPDATE issue SET search_vector = tracker_issue_document(id, title, "
        "description)\n"
        "    WHERE id IN (SELECT issue_id FROM old_rows);\n"
        "  ELSE\n"
        "    UPDATE issue SET search_vector = tracker_issue_document(id, title, "
        "description)\n"
        "    WHERE id IN (SELECT issue_id FROM old_rows UNION SELECT issue_id FROM "
        "new_rows);\n"
        "  END IF;\n"
        "  RETURN NULL;\n"
        "END $$",
        "CREATE TRIGGER comment_search_insert AFTER INSERT ON comment\n"
        "REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION "
        "tracker_comment_search()",
        "CREATE TRIGGER comment_search_delete AFTER DELETE ON comment\n"
        "REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION "
        "tracker_comment_search()",
        "CREATE TRIGGER comment_search_update AFTER UPDATE ON comment\n"
        "REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows\n"
        "FOR EACH STATEMENT EXECUTE FUNCTION tracker_comment_search()",
    ],
}

INDEXES = [
    ("project", "ix_project_organization_key", ["organization_id", "key"], True),
    ("issue", "ix_issue_project_number", ["project_id", "number"], True),
    (
        "issue",
        "ix_issue_project_status_updated",
        ["project_id", "status", "updated_at", "id"],
        False,
    ),
    ("issue", "ix_issue_author_id", ["author_id"], False),
]


def _key_for(name, taken):
    """tracker.keys.project_key_for at this revision."""
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    parts = re.findall(r"[A-Za-z0-9]+", ascii_name)
    letters = "".join(parts).upper()
    base = "".join(p[0] for p in parts).upper()[:4] if len(parts) > 1 else letters[:3]
    if not base or not base[0].isalpha():
        base = ("P" + letters)[:3]
    base = base.ljust(2, "X")
    key, n = base, 1
    while key in taken:
        n += 1
        key = f"{base[: 10 - len(str(n))]}{n}"
    return key


def upgrade():
    with unscoped("migration: backfilling every organization's keys and counts"):
        _upgrade()


def _upgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    # SQLite cannot add a NOT NULL column without a default (see above).
    required = {"nullable": False, "server_default": "0"} if sqlite else {"nullable": True}
    required_text = {"nullable": False, "server_default": ""} if sqlite else {"nullable": True}
    counter = {"nullable": False, "server_default": "0"}
    op.add_column("project", sa.Column("key", sa.String(length=10), **required_text))
    op.add_column("project", sa.Column("last_issue_number", sa.Integer(), **counter))
    op.add_column("project", sa.Column("open_issue_count", sa.Integer(), **counter))
    op.add_column("project", sa.Column("closed_issue_count", sa.Integer(), **counter))
    op.add_column("issue", sa.Column("number", sa.Integer(), **required))
    op.add_column("issue", sa.Column("key", sa.String(length=21), **required_text))
    op.add_column("issue", sa.Column("comment_count", sa.Integer(), **counter))

    taken = {}
    for project_id, org_id, name in bind.execute(
        sa.text("SELECT id, organization_id, name FROM project ORDER BY id")
    ):
        keys = taken.setdefault(org_id, set())
        key = _key_for(name, keys)
        keys.add(key)
        bind.execute(
            sa.text("UPDATE project SET key = :key WHERE id = :id"), {"key": key, "id": project_id}
        )
    op.execute(
        "UPDATE issue SET number = numbered.n FROM (SELECT id, row_number() "
        "OVER (PARTITION BY project_id ORDER BY id) AS n FROM issue) AS numbered "
        "WHERE issue.id = numbered.id"
    )
    op.execute(
        "UPDATE issue SET key = (SELECT project.key FROM project "
        "WHERE project.id = issue.project_id) || '-' || CAST(number AS VARCHAR(20))"
    )
    op.execute(
        "UPDATE issue SET comment_count = "
        "(SELECT count(*) FROM comment WHERE comment.issue_id = issue.id)"
    )
    mine = "FROM issue WHERE issue.project_id = project.id"
    op.execute(
        f"UPDATE project SET last_issue_number = coalesce((SELECT max(number) {mine}), 0), "
        f"open_issue_count = (SELECT count(*) {mine} AND status = 'open'), "
        f"closed_issue_count = (SELECT count(*) {mine} AND status = 'closed')"
    )
    if not sqlite:
        op.alter_column("project", "key", nullable=False)
        op.alter_column("issue", "number", nullable=False)
        op.alter_column("issue", "key", nullable=False)
    for table, name, columns, unique in INDEXES:
        op.create_index(name, table, columns, unique=unique)

    for statements in (
        (COUNTERS_SQLITE, SEARCH_SQLITE) if sqlite else (COUNTERS_POSTGRESQL, SEARCH_POSTGRESQL)
    ):
        for table in ("issue", "comment"):
            for sql in statements[table]:
                op.execute(sql)
    if sqlite:
        op.execute(
            "INSERT INTO issue_fts (rowid, title, description, comments) "
            "SELECT id, title, description, coalesce((SELECT group_concat(body, ' ') "
            "FROM comment WHERE comment.issue_id = issue.id), '') FROM issue"
        )
    else:
        op.execute(
            "UPDATE issue SET search_vector = tracker_issue_document(id, title, description)"
        )


def downgrade():
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        for trigger in (
            "issue_counts_insert", "issue_counts_update", "issue_counts_delete",
            "comment_count_insert", "comment_count_delete",
            "issue_fts_insert", "issue_fts_update", "issue_fts_delete",
            "comment_fts_insert", "comment_fts_update", "comment_fts_delete",
        ):  # fmt: skip
            op.execute(f"DROP TRIGGER IF EXISTS {trigger}")
        op.execute("DROP TABLE IF EXISTS issue_fts")
    else:
        for trigger, table in (
            ("issue_counts_insert", "issue"), ("issue_counts_delete", "issue"),
            ("issue_counts_update", "issue"), ("issue_search", "issue"),
            ("comment_count_insert", "comment"), ("comment_count_delete", "comment"),
            ("comment_search_insert", "comment"), ("comment_search_delete", "comment"),
            ("comment_search_update", "comment"),
        ):  # fmt: skip
            op.execute(f"DROP TRIGGER IF EXISTS {trigger} ON {table}")
        for function in (
            "tracker_issue_counts()", "tracker_comment_count()", "tracker_issue_search()",
            "tracker_comment_search()", "tracker_issue_document(integer, text, text)",
        ):  # fmt: skip
            op.execute(f"DROP FUNCTION IF EXISTS {function}")
        op.execute("DROP INDEX IF EXISTS ix_issue_search_vector")
        op.execute("ALTER TABLE issue DROP COLUMN IF EXISTS search_vector")
    for table, name, _, _ in reversed(INDEXES):
        op.drop_index(name, table_name=table)
    for table, column in (
        ("issue", "comment_count"), ("issue", "key"), ("issue", "number"),
        ("project", "closed_issue_count"), ("project", "open_issue_count"),
        ("project", "last_issue_number"), ("project", "key"),
    ):  # fmt: skip
        op.execute(f'ALTER TABLE {table} DROP COLUMN "{column}"')
