"""Issue lists as rows, not ORM objects.

A page of an issue list is one query: the issues' columns, their assignee's
and author's names, and their labels aggregated as JSON by the database
(SQLite's ``json_group_array``, PostgreSQL's ``json_agg``). Each row becomes
a plain dict shaped like :class:`~tracker.schemas.IssueOut`, which the API
serializes and the HTML list renders as it is. No ORM object is built, and
the tenancy filter still applies (it covers the issue and label columns of
an ORM-enabled select).

Which issues make the list (filters, search, order) is
:func:`tracker.services.issue_list`'s business; this module only changes
what is selected for them.
"""

from __future__ import annotations

import typing as t

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import aliased

from karaffe import Page
from karaffe.auth import User
from karaffe.db import db

from .models import Issue, Label, issue_labels

__all__ = ["issue_documents", "issue_rows"]

_ASSIGNEE = aliased(User, name="assignee")
_AUTHOR = aliased(User, name="author")

#: What a row holds besides the labels, in the order of the select.
_COLUMNS = (
    Issue.id,
    Issue.project_id,
    Issue.title,
    Issue.description,
    Issue.status,
    Issue.assignee_id,
    _ASSIGNEE.name.label("assignee_name"),
    Issue.author_id,
    _AUTHOR.name.label("author_name"),
    Issue.created_at,
    Issue.updated_at,
)


def _labels_column(dialect: str) -> sa.ColumnElement[t.Any]:
    """An issue's labels as a JSON array of ``{"id", "name"}`` (a correlated
    subquery; PostgreSQL's aggregate is NULL for none)."""
    if dialect == "sqlite":
        value = sa.func.json_group_array(sa.func.json_object("id", Label.id, "name", Label.name))
    else:
        value = sa.func.json_agg(sa.func.json_build_object("id", Label.id, "name", Label.name))
    return (
        sa.select(value)
        .select_from(issue_labels)
        .join(Label, Label.id == issue_labels.c.label_id)
        .where(issue_labels.c.issue_id == Issue.id)
        .scalar_subquery()
        .label("labels")
    )


def issue_rows(issues: sa.Select[Issue]) -> sa.Select[t.Any]:
    """The select of the rows of ``issues`` (a select of :class:`Issue`
    with its filters): columns, names and labels, for :func:`issue_documents`."""
    columns: list[t.Any] = [*_COLUMNS, _labels_column(db.session.get_bind().dialect.name)]
    return (
        issues.with_only_columns(*columns, maintain_column_froms=False)
        .select_from(Issue)
        .outerjoin(_ASSIGNEE, _ASSIGNEE.id == Issue.assignee_id)
        .outerjoin(_AUTHOR, _AUTHOR.id == Issue.author_id)
    )


def _by_name(labels: t.Any) -> list[dict[str, t.Any]]:
    if isinstance(labels, str | bytes):
        labels = orjson.loads(labels)
    return sorted(labels or (), key=lambda label: t.cast(str, label["name"]))


def issue_documents(page: Page[t.Any]) -> Page[dict[str, t.Any]]:
    """Turn the rows of a page of :func:`issue_rows` into
    :class:`~tracker.schemas.IssueOut`-shaped dicts, in place."""
    page.items = [
        {
            "id": r.id,
            "project_id": r.project_id,
            "title": r.title,
            "description": r.description,
            "status": r.status,
            "assignee": None
            if r.assignee_id is None
            else {"id": r.assignee_id, "name": r.assignee_name},
            "author": None if r.author_id is None else {"id": r.author_id, "name": r.author_name},
            "labels": _by_name(r.labels),
            "created_at": r.created_at,
            "updated_at": r.updated_at,
        }
        for r in page.items
    ]
    return t.cast(Page[dict[str, t.Any]], page)
