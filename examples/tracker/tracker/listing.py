"""Issue lists as rows, not ORM objects.

A page of an issue list is one query: the issues' columns, their assignee's
and author's names, and their labels aggregated as JSON by the database
(SQLite's ``json_group_array``, PostgreSQL's ``json_agg``). Each row becomes
a plain dict shaped like :class:`~tracker.schemas.IssueOut`, which the API
serializes and the HTML list renders as it is. No ORM object is built, and
the tenancy filter still applies (it covers the issue and label columns of
an ORM-enabled select).

Which issues make the list (filters, search, order) is
:mod:`tracker.finding`'s business; this module only changes what is
selected for them. A row holds every column a list can be sorted by
(``updated_at``, ``comment_count``, ``id``), so the keyset cursor reads its
key from the row.
"""

from __future__ import annotations

import typing as t

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import aliased

from karaffe import Page
from karaffe.api.result import RawJson
from karaffe.auth import User
from karaffe.db import db
from karaffe.tenancy import Membership

from . import mentions
from .labels import text_color
from .models import Issue, Label, issue_labels

__all__ = [
    "filter_choices",
    "issue_document",
    "issue_documents",
    "issue_rows",
    "issues_json",
]

_ASSIGNEE = aliased(User, name="assignee")
_AUTHOR = aliased(User, name="author")

#: What a row holds besides the labels, in the order of the select.
_COLUMNS = (
    Issue.id,
    Issue.key,
    Issue.number,
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
    Issue.comment_count,
)


def _labels_column(dialect: str) -> sa.ColumnElement[t.Any]:
    """An issue's labels as a JSON array of ``{"id", "name", "color"}`` (a
    correlated subquery; PostgreSQL's aggregate is NULL for none)."""
    fields = ("id", Label.id, "name", Label.name, "color", Label.color)
    if dialect == "sqlite":
        value = sa.func.json_group_array(sa.func.json_object(*fields))
    else:
        value = sa.func.json_agg(sa.func.json_build_object(*fields))
    return (
        sa.select(value)
        .select_from(issue_labels)
        .join(Label, Label.id == issue_labels.c.label_id)
        .where(issue_labels.c.issue_id == Issue.id)
        .scalar_subquery()
        .label("labels")
    )


#: Per dialect: the labels column, and the select of every row without
#: filters. Built once: building them costs more than running the query.
_shapes: dict[str, tuple[sa.ColumnElement[t.Any], sa.Select[t.Any]]] = {}
_ASSIGNEE_ON = _ASSIGNEE.id == Issue.assignee_id
_AUTHOR_ON = _AUTHOR.id == Issue.author_id


def _shape(dialect: str) -> tuple[sa.ColumnElement[t.Any], sa.Select[t.Any]]:
    found: tuple[sa.ColumnElement[t.Any], sa.Select[t.Any]] | None = _shapes.get(dialect)
    if found is None:
        labels = _labels_column(dialect)
        columns: list[t.Any] = [*_COLUMNS, labels]
        base: sa.Select[t.Any] = (
            sa.select(*columns)
            .select_from(Issue)
            .outerjoin(_ASSIGNEE, _ASSIGNEE_ON)
            .outerjoin(_AUTHOR, _AUTHOR_ON)
        )
        found = _shapes[dialect] = (labels, base)
    return found


def issue_rows(issues: sa.Select[Issue]) -> sa.Select[t.Any]:
    """The select of the rows of ``issues`` (a select of :class:`Issue`
    with its filters): columns, names and labels, for :func:`issue_documents`."""
    labels, base = _shape(db.session.get_bind().dialect.name)
    if issues._setup_joins or issues._from_obj or issues._group_by_clauses:
        # A select with joins of its own: keep them, change what it selects.
        columns: list[t.Any] = [*_COLUMNS, labels]
        return (
            issues.with_only_columns(*columns, maintain_column_froms=False)
            .select_from(Issue)
            .outerjoin(_ASSIGNEE, _ASSIGNEE_ON)
            .outerjoin(_AUTHOR, _AUTHOR_ON)
        )
    where = issues.whereclause
    return base if where is None else base.where(where)


def _by_name(labels: t.Any) -> list[dict[str, t.Any]]:
    """The labels of a row as :class:`~tracker.schemas.LabelOut` dicts, by name."""
    if isinstance(labels, str | bytes):
        labels = orjson.loads(labels)
    if not labels:
        return []
    for label in labels:
        label["text_color"] = text_color(label["color"])
    if len(labels) > 1:
        labels.sort(key=_name)
    return t.cast(list[dict[str, t.Any]], labels)


def _name(label: dict[str, t.Any]) -> str:
    return t.cast(str, label["name"])


def _document(r: t.Any) -> dict[str, t.Any]:
    # Unpacked as a tuple, in the order of the select: a row's attributes
    # cost a lookup each.
    (
        id_, key, number, project_id, title, description, status,
        assignee_id, assignee_name, author_id, author_name,
        created_at, updated_at, comment_count, labels,
    ) = r  # fmt: skip
    return {
        "id": id_,
        "key": key,
        "number": number,
        "project_id": project_id,
        "title": title,
        "description": description,
        "status": status,
        "assignee": None if assignee_id is None else {"id": assignee_id, "name": assignee_name},
        "author": None if author_id is None else {"id": author_id, "name": author_name},
        "labels": _by_name(labels),
        "created_at": created_at,
        "updated_at": updated_at,
        "comment_count": comment_count,
    }


def issue_documents(
    page: Page[t.Any], *, description_html_in: int | None = None
) -> Page[dict[str, t.Any]]:
    """Turn the rows of a page of :func:`issue_rows` into
    :class:`~tracker.schemas.IssueOut`-shaped dicts, in place; with
    ``description_html_in`` (the API's: the id of the organization listed),
    each description rendered too, its mentions linked as on the pages (the
    HTML list shows none)."""
    page.items = [_document(r) for r in page.items]
    if description_html_in is not None:
        for document in page.items:
            document["description_html"] = str(
                mentions.render(document["description"], description_html_in)
            )
    return t.cast(Page[dict[str, t.Any]], page)


def issue_document(issue_id: int) -> dict[str, t.Any] | None:
    """One issue as the list shows it (the live list's row), in one query;
    ``None`` when it does not exist or is not the viewer's organization's."""
    row = db.session.execute(issue_rows(sa.select(Issue).where(Issue.id == issue_id))).first()
    return None if row is None else _document(row)


def issues_json(documents: list[dict[str, t.Any]]) -> RawJson:
    """The documents of :func:`issue_documents` as the API's JSON, straight
    from the dicts (timestamps in UTC with ``Z``, as pydantic writes them)."""
    return RawJson(orjson.dumps(documents, option=orjson.OPT_UTC_Z))


def filter_choices(
    org_id: int,
) -> tuple[list[sa.Row[str, int, str]], list[sa.Row[str, int, str]]]:
    """The members and the labels of an organization, each by name, as rows
    with an ``id`` and a ``name``: the assignee, author and label filters of
    a list, in one statement."""
    members: list[sa.Row[str, int, str]] = []
    labels: list[sa.Row[str, int, str]] = []
    for row in db.session.execute(_FILTER_CHOICES, {"org_id": org_id}):
        (labels if row.kind == "label" else members).append(row)
    return members, labels


# The filter choices' select, built once (see _shape): members and labels
# by name (and id: two people may share a name), told apart by their kind.
_FILTER_CHOICES = sa.union_all(
    sa.select(sa.literal_column("'member'", sa.String).label("kind"), User.id, User.name)
    .join(Membership, Membership.user_id == User.id)
    .where(Membership.organization_id == sa.bindparam("org_id")),
    sa.select(sa.literal_column("'label'", sa.String).label("kind"), Label.id, Label.name).where(
        Label.organization_id == sa.bindparam("org_id")
    ),
).order_by(sa.literal_column("name"), sa.literal_column("id"))
