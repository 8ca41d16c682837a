"""Counts kept by the database, in the transaction that changes what they
count: a project's open and closed issues, an issue's comments.

Database triggers keep them, not the views: every write counts, whichever
code makes it (a service, the seed's bulk insert, a cascade), and a status
change is counted from the row's real previous value. Two requests closing
the same issue at once count one close: on PostgreSQL the second ``UPDATE``
waits for the first's row lock and then updates the closed row (its old
row, in the statement's transition table, is closed already); on SQLite
writes are serialized anyway.

The cost is one ``UPDATE project`` per statement inserting, deleting or
changing the status of issues (which holds that project row's lock until
the commit), and one ``UPDATE issue`` per statement writing comments (per
row on SQLite). In exchange the open/closed counts of a list
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

#: On PostgreSQL the triggers run once per statement, over its transition
#: tables: a bulk insert of 1,000 issues updates each project row once, not
#: 1,000 times (a row updated n times in one transaction leaves a chain of n
#: versions that every later update walks: quadratic).
_ISSUE_DELTAS = {
    "INSERT": "SELECT project_id, (status = 'open')::int AS opened, "
    "(status = 'closed')::int AS closed FROM new_rows",
    "DELETE": "SELECT project_id, -(status = 'open')::int AS opened, "
    "-(status = 'closed')::int AS closed FROM old_rows",
    "UPDATE": "SELECT o.project_id, -(o.status = 'open')::int AS opened, "
    "-(o.status = 'closed')::int AS closed FROM old_rows o JOIN new_rows n ON n.id = o.id "
    "WHERE o.status IS DISTINCT FROM n.status OR o.project_id IS DISTINCT FROM n.project_id "
    "UNION ALL SELECT n.project_id, (n.status = 'open')::int, (n.status = 'closed')::int "
    "FROM old_rows o JOIN new_rows n ON n.id = o.id "
    "WHERE o.status IS DISTINCT FROM n.status OR o.project_id IS DISTINCT FROM n.project_id",
}


def _apply_issue_deltas(deltas: str) -> str:
    return f"""UPDATE project SET open_issue_count = open_issue_count + d.opened,
      closed_issue_count = closed_issue_count + d.closed
    FROM (SELECT project_id, sum(opened) AS opened, sum(closed) AS closed
          FROM ({deltas}) AS changes GROUP BY project_id) AS d
    WHERE project.id = d.project_id AND (d.opened <> 0 OR d.closed <> 0);"""


POSTGRESQL: dict[str, list[str]] = {
    "issue": [
        f"""CREATE OR REPLACE FUNCTION tracker_issue_counts() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    {_apply_issue_deltas(_ISSUE_DELTAS["INSERT"])}
  ELSIF TG_OP = 'DELETE' THEN
    {_apply_issue_deltas(_ISSUE_DELTAS["DELETE"])}
  ELSE
    {_apply_issue_deltas(_ISSUE_DELTAS["UPDATE"])}
  END IF;
  RETURN NULL;
END $$""",
        """CREATE TRIGGER issue_counts_insert AFTER INSERT ON issue
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tracker_issue_counts()""",
        """CREATE TRIGGER issue_counts_delete AFTER DELETE ON issue
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tracker_issue_counts()""",
        """CREATE TRIGGER issue_counts_update AFTER UPDATE ON issue
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tracker_issue_counts()""",
    ],
    "comment": [
        """CREATE OR REPLACE FUNCTION tracker_comment_count() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE issue SET comment_count = comment_count + d.n
    FROM (SELECT issue_id, count(*) AS n FROM new_rows GROUP BY issue_id) AS d
    WHERE issue.id = d.issue_id;
  ELSE
    UPDATE issue SET comment_count = comment_count - d.n
    FROM (SELECT issue_id, count(*) AS n FROM old_rows GROUP BY issue_id) AS d
    WHERE issue.id = d.issue_id;
  END IF;
  RETURN NULL;
END $$""",
        """CREATE TRIGGER comment_count_insert AFTER INSERT ON comment
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tracker_comment_count()""",
        """CREATE TRIGGER comment_count_delete AFTER DELETE ON comment
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tracker_comment_count()""",
    ],
}


def install(tables: dict[str, sa.Table]) -> None:
    """Create the triggers whenever ``create_all`` creates these tables."""
    for dialect, statements in (("sqlite", SQLITE), ("postgresql", POSTGRESQL)):
        for name, sqls in statements.items():
            for sql in sqls:
                sa.event.listen(tables[name], "after_create", ddl(sql, dialect))
