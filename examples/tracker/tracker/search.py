"""Full-text search over issues: their title, description and comments.

One interface, :func:`matching` (a condition on ``Issue``) and :func:`ranked`
(the best matches, best first), with an implementation per database:

- **PostgreSQL**: a ``tsvector`` column ``issue.search_vector`` with a GIN
  index, weighted title (A) > description (B) > comments (C), English
  stemming, ranked by ``ts_rank_cd``;
- **SQLite**: an FTS5 table ``issue_fts`` (``rowid`` = the issue's id) with the
  same three columns, Porter stemming, ranked by ``bm25`` with the weights
  10, 4 and 1.

Triggers keep both in step with ``issue`` and ``comment`` in the transaction
that writes them (a comment's text is searchable as soon as it is committed,
whichever code wrote it). The column, index and table are not in the
models' metadata (each exists on one database only): :func:`install` creates
them with ``create_all``, the migration with its own copy of this SQL, and
:func:`is_search_object` tells Alembic's autogenerate to leave them alone.

A query is split into words (letters and digits); an issue matches when it
has every word, each as a prefix (``log`` finds "login"), after stemming
("crashing" finds "crash"). PostgreSQL drops English stop words ("the")
from a query; SQLite keeps them.
"""

from __future__ import annotations

import re
import typing as t

import sqlalchemy as sa

from karaffe.db import db

__all__ = ["MAX_RANKED", "POSTGRESQL", "SQLITE", "install", "is_search_object", "matching"]

#: At most this many matches are ranked (and so paged through) by relevance;
#: sorted by a column, a search pages through every match.
MAX_RANKED = 1000
#: Words of a query that count (more are ignored).
MAX_WORDS = 8

SQLITE: dict[str, list[str]] = {
    "issue": [
        "CREATE VIRTUAL TABLE IF NOT EXISTS issue_fts USING fts5("
        "title, description, comments, tokenize = 'porter unicode61 remove_diacritics 2')",
        """CREATE TRIGGER issue_fts_insert AFTER INSERT ON issue BEGIN
  INSERT INTO issue_fts (rowid, title, description, comments)
  VALUES (NEW.id, NEW.title, NEW.description, '');
END""",
        """CREATE TRIGGER issue_fts_update AFTER UPDATE OF title, description ON issue BEGIN
  UPDATE issue_fts SET title = NEW.title, description = NEW.description WHERE rowid = NEW.id;
END""",
        """CREATE TRIGGER issue_fts_delete AFTER DELETE ON issue BEGIN
  DELETE FROM issue_fts WHERE rowid = OLD.id;
END""",
    ],
    "comment": [
        f"""CREATE TRIGGER comment_fts_{event} AFTER {event.upper()}{of} ON comment BEGIN
  UPDATE issue_fts SET comments = coalesce(
    (SELECT group_concat(body, ' ') FROM comment WHERE issue_id = {row}.issue_id), '')
  WHERE rowid = {row}.issue_id;
END"""
        for event, of, row in (
            ("insert", "", "NEW"),
            ("update", " OF body", "NEW"),
            ("delete", "", "OLD"),
        )
    ],
}

#: The document of an issue: its title, description and comments, weighted.
_PG_DOCUMENT = """CREATE OR REPLACE FUNCTION tracker_issue_document(
  issue_id integer, title text, description text) RETURNS tsvector
LANGUAGE sql STABLE AS $$
  SELECT setweight(to_tsvector('english', coalesce(title, '')), 'A')
    || setweight(to_tsvector('english', coalesce(description, '')), 'B')
    || setweight(to_tsvector('english', coalesce(
         (SELECT string_agg(body, ' ' ORDER BY id) FROM comment WHERE comment.issue_id = $1),
         '')), 'C')
$$"""

POSTGRESQL: dict[str, list[str]] = {
    "issue": [
        "ALTER TABLE issue ADD COLUMN search_vector tsvector",
        "CREATE INDEX ix_issue_search_vector ON issue USING gin (search_vector)",
        """CREATE OR REPLACE FUNCTION tracker_issue_search() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  NEW.search_vector := tracker_issue_document(NEW.id, NEW.title, NEW.description);
  RETURN NEW;
END $$""",
        """CREATE TRIGGER issue_search BEFORE INSERT OR UPDATE OF title, description ON issue
FOR EACH ROW EXECUTE FUNCTION tracker_issue_search()""",
    ],
    "comment": [
        _PG_DOCUMENT,  # an SQL function: its tables must exist
        """CREATE OR REPLACE FUNCTION tracker_comment_search() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    UPDATE issue SET search_vector = tracker_issue_document(id, title, description)
    WHERE id IN (SELECT issue_id FROM new_rows);
  ELSIF TG_OP = 'DELETE' THEN
    UPDATE issue SET search_vector = tracker_issue_document(id, title, description)
    WHERE id IN (SELECT issue_id FROM old_rows);
  ELSE
    UPDATE issue SET search_vector = tracker_issue_document(id, title, description)
    WHERE id IN (SELECT issue_id FROM old_rows UNION SELECT issue_id FROM new_rows);
  END IF;
  RETURN NULL;
END $$""",
        """CREATE TRIGGER comment_search_insert AFTER INSERT ON comment
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION tracker_comment_search()""",
        """CREATE TRIGGER comment_search_delete AFTER DELETE ON comment
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION tracker_comment_search()""",
        """CREATE TRIGGER comment_search_update AFTER UPDATE ON comment
REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
FOR EACH STATEMENT EXECUTE FUNCTION tracker_comment_search()""",
    ],
}


def install(tables: dict[str, sa.Table]) -> None:
    """Create the search column, index, table and triggers whenever
    ``create_all`` creates these tables (and drop the FTS5 table with
    ``issue``: it is not part of the metadata)."""
    for dialect, statements in (("sqlite", SQLITE), ("postgresql", POSTGRESQL)):
        for name, sqls in statements.items():
            for sql in sqls:
                sa.event.listen(tables[name], "after_create", ddl(sql, dialect))
    sa.event.listen(tables["issue"], "before_drop", ddl("DROP TABLE IF EXISTS issue_fts", "sqlite"))


def _per_row_inserts() -> list[str]:
    return [sql for sql in SQLITE["issue"] + SQLITE["comment"] if " AFTER INSERT " in sql]


def defer_indexing() -> int:
    """Stop indexing inserted issues and comments row by row, until
    :func:`index_deferred`, in the same transaction: for bulk inserts of new
    issues with their comments (the demo data), indexed then in one
    statement, four times faster on SQLite. Returns where to start. (On
    PostgreSQL rows are indexed as they come either way.)"""
    if _dialect() != "sqlite":
        return 0
    last = db.session.execute(sa.text("SELECT coalesce(max(id), 0) FROM issue")).scalar_one()
    for sql in _per_row_inserts():
        db.session.execute(sa.text(f"DROP TRIGGER {sql.split()[2]}"))
    return int(last)


def index_deferred(after: int) -> None:
    """Index the issues inserted since :func:`defer_indexing` returned
    ``after`` (ids above it), with their comments, and index rows one by one
    again."""
    if _dialect() != "sqlite":
        return
    db.session.execute(
        sa.text(
            "INSERT INTO issue_fts (rowid, title, description, comments) "
            "SELECT id, title, description, coalesce((SELECT group_concat(body, ' ') "
            "FROM comment WHERE comment.issue_id = issue.id), '') FROM issue WHERE id > :after"
        ),
        {"after": after},
    )
    for sql in _per_row_inserts():
        db.session.execute(sa.text(sql))


def is_search_object(name: str | None, type_: str) -> bool:
    """Whether a reflected table, column or index is one of search's own,
    which autogenerate must not drop (they are not in the metadata)."""
    if name is None:
        return False
    if type_ == "table":
        return name == "issue_fts" or name.startswith("issue_fts_")
    return name in ("search_vector", "ix_issue_search_vector")


def words(query: str) -> list[str]:
    """The words of ``query`` that a search looks for."""
    return re.findall(r"\w+", query)[:MAX_WORDS]


# -- the queries ----------------------------------------------------------------------

_fts = sa.table("issue_fts", sa.column("rowid", sa.Integer), sa.column("issue_fts"))
_vector: sa.ColumnElement[t.Any] = sa.literal_column("issue.search_vector")

#: The id column of the issues searched (``Issue.id``).
IdColumn = sa.ColumnElement[int] | sa.orm.QueryableAttribute[int]


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def ddl(sql: str, dialect: str) -> sa.ExecutableDDLElement:
    """``sql`` as DDL run on ``dialect`` only."""
    return sa.DDL(sql).execute_if(dialect=dialect)  # type: ignore[no-untyped-call]


def _fts_query(found: list[str]) -> str:
    """An FTS5 query: every word, as a quoted prefix (no operator syntax
    reaches FTS5 from the user)."""
    return " ".join(f'"{word}"*' for word in found)


def _ts_query(found: list[str]) -> sa.ColumnElement[t.Any]:
    """A PostgreSQL ``tsquery``: every word, as a prefix. ``\\w+`` words hold
    none of to_tsquery's operators."""
    return sa.func.to_tsquery("english", " & ".join(f"{word}:*" for word in found))


def matching(query: str, issue_id: IdColumn) -> sa.ColumnElement[bool]:
    """The condition "the issue whose id is ``issue_id`` matches ``query``".
    A query without words matches nothing."""
    found = words(query)
    if not found:
        return sa.false()
    if _dialect() == "postgresql":
        return _vector.op("@@")(_ts_query(found))
    return issue_id.in_(
        sa.select(_fts.c.rowid).where(_fts.c.issue_fts.op("MATCH")(_fts_query(found)))
    )


def ranked(query: str, stmt: sa.Select[t.Any], issue_id: IdColumn) -> list[tuple[float, int]]:
    """The :data:`MAX_RANKED` best matches of ``query`` among the rows of
    ``stmt`` (a select of issues, filtered), as ``(score, id)`` with the
    best first: a lower score is a better match, equal scores newest first."""
    found = words(query)
    if not found:
        return []
    if _dialect() == "postgresql":
        score: sa.ColumnElement[float] = -sa.func.ts_rank_cd(_vector, _ts_query(found))
        ranking = stmt.where(_vector.op("@@")(_ts_query(found)))
    else:
        score = sa.func.bm25(sa.literal_column("issue_fts"), 10.0, 4.0, 1.0)
        ranking = stmt.join(_fts, _fts.c.rowid == issue_id).where(
            _fts.c.issue_fts.op("MATCH")(_fts_query(found))
        )
    ranked_ids: sa.Select[t.Any] = (
        ranking.with_only_columns(score.label("score"), issue_id)  # type: ignore[assignment]
        .order_by(None)
        .order_by(sa.literal_column("score"), issue_id.desc())
        .limit(MAX_RANKED)
    )
    rows = [(float(s), int(i)) for s, i in db.session.execute(ranked_ids)]
    rows.sort(key=lambda row: (row[0], -row[1]))
    return rows
