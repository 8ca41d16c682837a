"""Counts kept by the database, in the transaction that changes what they
count: a project's open and closed issues, an issue's comments.

Database triggers keep them, not the views: every write counts, whichever
code makes it (a service, the seed's bulk insert, a cascade), and a status
change is counted from the row's real previous value. Two requests closing
the same issue at once count one close: on PostgreSQL the second ``UPDATE``
waits for the first's row lock and then sees ``OLD.status = 'closed'``; on
SQLite writes are serialized anyway.

The cost is one ``UPDATE project`` per issue inserted, deleted or changing
status (which holds that project row's lock until the commit), and one
``UPDATE issue`` per comment. In exchange the open/closed counts of a list
are two integers read with the project, whatever the number of issues.

:func:`install` attaches the triggers to ``create_all`` (tests, new
databases); the migration that introduced them carries the same SQL.
"""

from __future__ import annotations

import sqlalchemy as sa

from .search import ddl

__all__ = ["POSTGRESQL", "SQLITE", "install"]

#: Statements run after the ``issue`` table is created, then after ``comment``.
SQLITE: dict[str, list[str]] = {
    "issue": [
        """CREATE TRIGGER issue_counts_insert AFTER INSERT ON issue BEGIN
  UPDATE project SET open_issue_count = open_issue_count + (NEW.status = 'open'),
    closed_issue_count = closed_issue_count + (NEW.status = 'closed')
  WHERE id = NEW.project_id;
END""",
        """CREATE TRIGGER issue_counts_update AFTER UPDATE OF status, project_id ON issue
WHEN OLD.status IS NOT NEW.status OR OLD.project_id IS NOT NEW.project_id BEGIN
  UPDATE project SET open_issue_count = open_issue_count - (OLD.status = 'open'),
    closed_issue_count = closed_issue_count - (OLD.status = 'closed')
  WHERE id = OLD.project_id;
  UPDATE project SET open_issue_count = open_issue_count + (NEW.status = 'open'),
    closed_issue_count = closed_issue_count + (NEW.status = 'closed')
  WHERE id = NEW.project_id;
END""",
        """CREATE TRIGGER issue_counts_delete AFTER DELETE ON issue BEGIN
  UPDATE project SET open_issue_count = open_issue_count - (OLD.status = 'open'),
    closed_issue_count = closed_issue_count - (OLD.status = 'closed')
  WHERE id = OLD.project_id;
END""",
    ],
    "comment": [
        """CREATE TRIGGER comment_count_insert AFTER INSERT ON comment BEGIN
  UPDATE issue SET comment_count = comment_count + 1 WHERE id = NEW.issue_id;
END""",
        """CREATE TRIGGER comment_count_delete AFTER DELETE ON comment BEGIN
  UPDATE issue SET comment_count = comment_count - 1 WHERE id = OLD.issue_id;
END""",
    ],
}

POSTGRESQL: dict[str, list[str]] = {
    "issue": [
        """CREATE OR REPLACE FUNCTION tracker_issue_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP IN ('UPDATE', 'DELETE') THEN
    UPDATE project SET open_issue_count = open_issue_count - (OLD.status = 'open')::int,
      closed_issue_count = closed_issue_count - (OLD.status = 'closed')::int
    WHERE id = OLD.project_id;
  END IF;
  IF TG_OP IN ('INSERT', 'UPDATE') THEN
    UPDATE project SET open_issue_count = open_issue_count + (NEW.status = 'open')::int,
      closed_issue_count = closed_issue_count + (NEW.status = 'closed')::int
    WHERE id = NEW.project_id;
  END IF;
  RETURN NULL;
END $$""",
        """CREATE TRIGGER issue_counts AFTER INSERT OR DELETE ON issue
FOR EACH ROW EXECUTE FUNCTION tracker_issue_counts()""",
        """CREATE TRIGGER issue_counts_update AFTER UPDATE OF status, project_id ON issue
FOR EACH ROW WHEN (OLD.status IS DISTINCT FROM NEW.status
  OR OLD.project_id IS DISTINCT FROM NEW.project_id)
EXECUTE FUNCTION tracker_issue_counts()""",
    ],
    "comment": [
        """CREATE OR REPLACE FUNCTION tracker_comment_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE issue SET comment_count = comment_count + 1 WHERE id = NEW.issue_id;
  ELSE
    UPDATE issue SET comment_count = comment_count - 1 WHERE id = OLD.issue_id;
  END IF;
  RETURN NULL;
END $$""",
        """CREATE TRIGGER comment_count AFTER INSERT OR DELETE ON comment
FOR EACH ROW EXECUTE FUNCTION tracker_comment_count()""",
    ],
}


def install(tables: dict[str, sa.Table]) -> None:
    """Create the triggers whenever ``create_all`` creates these tables."""
    for dialect, statements in (("sqlite", SQLITE), ("postgresql", POSTGRESQL)):
        for name, sqls in statements.items():
            for sql in sqls:
                sa.event.listen(tables[name], "after_create", ddl(sql, dialect))
