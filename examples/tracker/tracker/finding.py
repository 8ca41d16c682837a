"""Finding issues: filtered and sorted lists, their open/closed counts,
and search (keys are :mod:`tracker.keys`).

A list is a select of ``Issue`` rows (:func:`issue_select`) paged by
karaffe's signed keyset cursors on ``(sort key, id)``
(:func:`order_for`): rows that tie on the sort key are ordered by id, so a
page never repeats or skips one, and a row inserted, deleted or changed
while someone pages through moves only itself. Sorted by relevance, the
:data:`~tracker.search.MAX_RANKED` best matches are ranked once per page
and paged by ``(score, id)``.

The open/closed counts of an unfiltered list are the counters the
database keeps on the project (:mod:`tracker.counters`): two integers,
whatever the number of issues. A filtered list's counts are one grouped
``COUNT`` of the filtered rows.
"""

from __future__ import annotations

import typing as t
from dataclasses import dataclass

import sqlalchemy as sa

from karaffe import Page, ValidationFailed, paginate
from karaffe.auth import User
from karaffe.db import db

from . import listing, search
from .models import Issue, Project, issue_labels
from .schemas import IssueQuery, OrgIssueQuery

__all__ = ["Counts", "issue_page", "issue_select", "order_for", "status_counts"]

#: The sort orders by a column. Creation order is the id's: ids are given
#: as issues are created, and the list's index ``(project_id, status, id)``
#: serves it.
_SORT_COLUMNS: dict[str, sa.orm.InstrumentedAttribute[t.Any]] = {
    "updated": Issue.updated_at,
    "comments": Issue.comment_count,
}


def sort_of(filters: IssueQuery) -> str:
    """The sort a list uses: as asked, else relevance for a search and
    creation time otherwise."""
    if filters.sort is not None:
        return filters.sort
    return "relevance" if filters.q else "created"


def check(filters: IssueQuery) -> None:
    """422 for filters that do not go together."""
    if filters.sort == "relevance" and not filters.q:
        raise ValidationFailed(
            errors=[(["query", "sort"], "Sorting by relevance needs a search (q).", "needs_q")]
        )


def _user(value: int | str | None, viewer: User) -> int | None:
    return viewer.id if value == "me" else t.cast("int | None", value)


#: The filters' columns, by the name of their bind parameter.
_FILTER_COLUMNS: dict[str, sa.orm.InstrumentedAttribute[t.Any]] = {
    "project_id": Issue.project_id,
    "organization_id": Issue.organization_id,
    "in_project": Issue.project_id,
    "status": Issue.status,
    "assignee_id": Issue.assignee_id,
    "author_id": Issue.author_id,
}


def _filters(
    filters: IssueQuery,
    viewer: User,
    project: Project | None,
    org_id: int | None,
    with_status: bool,
) -> list[tuple[str, t.Any]]:
    """What a list is filtered on but its search, as (name, value) in
    order: ``label_<i>`` for the i-th label, else a key of :data:`_FILTER_COLUMNS`."""
    found: list[tuple[str, t.Any]] = []
    if project is not None:
        found.append(("project_id", project.id))
    if org_id is not None:
        found.append(("organization_id", org_id))
    if isinstance(filters, OrgIssueQuery) and filters.project is not None:
        found.append(("in_project", filters.project))
    if with_status and filters.status not in (None, "all"):
        found.append(("status", filters.status))
    assignee = _user(filters.assignee, viewer)
    if assignee is not None:
        found.append(("assignee_id", assignee))
    author = _user(filters.author, viewer)
    if author is not None:
        found.append(("author_id", author))
    for i, label_id in enumerate(dict.fromkeys(filters.label)):
        found.append((f"label_{i}", label_id))
    return found


def _condition(name: str, value: t.Any) -> sa.ColumnElement[bool]:
    """The condition of the filter ``name`` (:func:`_filters`) on ``value``."""
    if name.startswith("label_"):
        return Issue.id.in_(
            sa.select(issue_labels.c.issue_id).where(issue_labels.c.label_id == value)
        )
    return _FILTER_COLUMNS[name] == value


def issue_select(
    filters: IssueQuery,
    viewer: User,
    *,
    project: Project | None = None,
    org_id: int | None = None,
    with_status: bool = True,
) -> sa.Select[t.Any]:
    """The select of the issues of ``project`` (or of organization
    ``org_id``) matching ``filters``, unordered. ``with_status=False``
    leaves the status filter out (for the counts of both statuses)."""
    stmt = sa.select(Issue)
    for name, value in _filters(filters, viewer, project, org_id, with_status):
        stmt = stmt.where(_condition(name, value))
    if filters.q:
        stmt = stmt.where(search.matching(filters.q, Issue.id))
    return stmt


#: Selects built once per shape of a list (which filters it has, not their
#: values, which are bind parameters) and use: building a select, and
#: SQLAlchemy's cache key of a new one, cost more than running it.
_prepared: dict[tuple[t.Any, ...], sa.Select[t.Any]] = {}
_PREPARED_SIZE = 4_096


def _prepared_select(
    use: str,
    filters: list[tuple[str, t.Any]],
    build: t.Callable[[sa.Select[t.Any]], sa.Select[t.Any]],
) -> sa.Select[t.Any]:
    """``build`` applied to the select of the issues ``filters`` select,
    with their values as bind parameters named as in ``filters``; the same
    object for the same ``use`` and filter names (and database dialect)."""
    shape = (use, db.session.get_bind().dialect.name, *(name for name, _ in filters))
    found = _prepared.get(shape)
    if found is None:
        stmt = sa.select(Issue)
        for name, _ in filters:
            stmt = stmt.where(_condition(name, sa.bindparam(name)))
        if len(_prepared) >= _PREPARED_SIZE:
            _prepared.clear()
        found = _prepared[shape] = build(stmt)
    return found


def order_for(filters: IssueQuery) -> tuple[sa.UnaryExpression[t.Any], ...]:
    """The keyset order of a list sorted by a column: the column, then the
    id, both in the direction asked (creation order: the id alone)."""
    column = _SORT_COLUMNS.get(sort_of(filters))
    columns = (Issue.id,) if column is None else (column, Issue.id)
    if filters.direction == "asc":
        return tuple(c.asc() for c in columns)
    return tuple(c.desc() for c in columns)


def _score_and_newest(row: tuple[float, int]) -> tuple[float, int]:
    return (row[0], -row[1])


def issue_page(
    filters: IssueQuery,
    viewer: User,
    *,
    project: Project | None = None,
    org_id: int | None = None,
    limit: int | None = None,
    description_html: bool = False,
) -> Page[dict[str, t.Any]]:
    """The page of the list the request's cursor asks for, as the dicts of
    :func:`tracker.listing.issue_documents`: one statement for a page sorted
    by a column (the rows hold its sort key); two for relevance (the ranked
    ids, then the page's rows)."""
    check(filters)
    in_org = project.organization_id if project is not None else org_id
    html_org = in_org if description_html else None
    if not filters.q:
        values = _filters(filters, viewer, project, org_id, True)
        stmt = _prepared_select("rows", values, listing.issue_rows)
        rows = paginate(stmt, order_by=order_for(filters), limit=limit, params=dict(values))
        return listing.issue_documents(rows, description_html_in=html_org)
    stmt = issue_select(filters, viewer, project=project, org_id=org_id)
    if sort_of(filters) != "relevance":
        rows = paginate(listing.issue_rows(stmt), order_by=order_for(filters), limit=limit)
        return listing.issue_documents(rows, description_html_in=html_org)
    best = search.ranked(filters.q, stmt, Issue.id)
    page = paginate(best, key=_score_and_newest, limit=limit)
    ids = [issue_id for _, issue_id in page.items]
    found = {
        row.id: row
        for row in db.session.execute(listing.issue_rows(sa.select(Issue).where(Issue.id.in_(ids))))
    }
    page.items = [found[i] for i in ids if i in found]
    return listing.issue_documents(page, description_html_in=html_org)


@dataclass(frozen=True)
class Counts:
    """How many issues of a list are open and closed."""

    open: int
    closed: int


def status_counts(
    filters: IssueQuery, viewer: User, *, project: Project | None = None, org_id: int | None = None
) -> Counts:
    """The open and closed counts of the list ``filters`` select, whatever
    its status filter: the project's (or the organization's projects')
    counters when nothing else filters it, one grouped count otherwise."""
    unfiltered = not (
        filters.assignee
        or filters.author
        or filters.label
        or filters.q
        or (isinstance(filters, OrgIssueQuery) and filters.project)
    )
    if unfiltered and project is not None:
        return Counts(project.open_issue_count, project.closed_issue_count)
    if unfiltered and org_id is not None:
        open_, closed = db.session.execute(
            sa.select(
                sa.func.coalesce(sa.func.sum(Project.open_issue_count), 0),
                sa.func.coalesce(sa.func.sum(Project.closed_issue_count), 0),
            ).where(Project.organization_id == org_id)
        ).one()
        return Counts(int(open_), int(closed))
    if filters.q:
        stmt = _by_status(
            issue_select(filters, viewer, project=project, org_id=org_id, with_status=False)
        )
        rows = db.session.execute(stmt)
    else:
        values = _filters(filters, viewer, project, org_id, False)
        rows = db.session.execute(_prepared_select("counts", values, _by_status), dict(values))
    counts: dict[str, int] = {status: n for status, n in rows}
    return Counts(counts.get("open", 0), counts.get("closed", 0))


def _by_status(stmt: sa.Select[t.Any]) -> sa.Select[t.Any]:
    """How many issues of ``stmt`` have each status."""
    return stmt.with_only_columns(Issue.status, sa.func.count()).group_by(Issue.status)
