"""Project and issue keys: ``BIL`` for the Billing project, ``BIL-123`` for
its 123rd issue.

A project's key is unique in its organization and never changes; an issue's
number is unique in its project. Both are given when the row is inserted,
whatever code inserts it through the ORM (a service, a test, the demo data):

- a project without a key gets one made from its name;
- an issue gets the next number of its project from
  ``UPDATE project SET last_issue_number = last_issue_number + 1 ...
  RETURNING``, in the inserting transaction. On PostgreSQL the ``UPDATE``
  holds the project row's lock until the commit, so two issues created at the
  same moment wait for each other and never get the same number; SQLite
  serializes writers anyway. A unique index on ``(project_id, number)``
  backs it.

URLs keep using ids (``/o/acme/issues/7``): an id stays valid however
projects are renamed or issues moved, and every link, cursor and live
channel already names ids. A key is a name for people: it is shown
wherever an issue is named, and ``/o/acme/issues/BIL-123`` (or the search
box) redirects to the id's URL.
"""

from __future__ import annotations

import re
import typing as t
import unicodedata

import sqlalchemy as sa
from flask import Blueprint
from flask.blueprints import BlueprintSetupState
from sqlalchemy.orm import Mapper, object_session
from werkzeug.exceptions import NotFound
from werkzeug.routing import BaseConverter

from karaffe.db import db

from .models import Issue, Project

__all__ = [
    "ISSUE_KEY",
    "IssueKeyConverter",
    "find_by_key",
    "get_by_key",
    "key_urls",
    "parse_key",
    "project_key_for",
]

#: An issue key as typed: a project key, a dash, a number (``bil-7`` too).
ISSUE_KEY = re.compile(r"^\s*([A-Za-z][A-Za-z0-9]{1,9})-([1-9][0-9]{0,17})\s*$")


class IssueKeyConverter(BaseConverter):
    """``<issue_key:key>`` in a URL: ``BIL-123`` (any case); never an id."""

    regex = r"[A-Za-z][A-Za-z0-9]{1,9}-[1-9][0-9]{0,17}"
    part_isolating = True


def key_urls(blueprint: Blueprint) -> None:
    """Let ``blueprint``'s routes use ``<issue_key:...>``: the converter is
    added to the app the blueprint is registered on, before its routes."""

    def add_converter(state: BlueprintSetupState) -> None:
        state.app.url_map.converters.setdefault("issue_key", IssueKeyConverter)

    blueprint.record_once(add_converter)


def parse_key(text: str) -> tuple[str, int] | None:
    """``("BIL", 123)`` for ``"BIL-123"`` (or ``" bil-123 "``); ``None``
    when ``text`` is not an issue key."""
    found = ISSUE_KEY.match(text)
    if found is None:
        return None
    return found.group(1).upper(), int(found.group(2))


def find_by_key(text: str, org_id: int | None = None) -> list[Issue]:
    """The issues (visible to the current scope, of ``org_id`` if given)
    whose key ``text`` is: none, or one per organization."""
    parsed = parse_key(text)
    if parsed is None:
        return []
    stmt = (
        sa.select(Issue)
        .join(Project, Project.id == Issue.project_id)
        .where(Project.key == parsed[0], Issue.number == parsed[1])
    )
    if org_id is not None:
        stmt = stmt.where(Issue.organization_id == org_id)
    return list(db.session.execute(stmt.order_by(Issue.id)).scalars())


def get_by_key(text: str, org_id: int) -> Issue:
    """The issue of organization ``org_id`` with key ``text``; else 404."""
    found = find_by_key(text, org_id)
    if not found:
        raise NotFound("No issue of this organization has that key.")
    return found[0]


def project_key_for(name: str, taken: t.Collection[str]) -> str:
    """A key for a project named ``name`` that is not ``taken``: the
    initials of a name of several words (``Design system`` -> ``DS``), else
    its first three letters (``Billing`` -> ``BIL``); then ``2``, ``3``... if
    needed."""
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


_projects = t.cast(sa.Table, Project.__table__)


@sa.event.listens_for(Project, "before_insert")
def _give_project_key(mapper: Mapper[Project], connection: sa.Connection, project: Project) -> None:
    if project.key:
        return
    taken = set(
        connection.execute(
            sa.select(_projects.c.key).where(_projects.c.organization_id == project.organization_id)
        ).scalars()
    )
    session = object_session(project)
    if session is not None:  # projects of the same flush, keyed just before
        taken |= {
            p.key
            for p in session.new
            if isinstance(p, Project) and p.key and p.organization_id == project.organization_id
        }
    project.key = project_key_for(project.name, taken)


@sa.event.listens_for(Issue, "before_insert")
def _give_issue_number(mapper: Mapper[Issue], connection: sa.Connection, issue: Issue) -> None:
    if issue.number:
        return
    number, key = connection.execute(
        sa.update(_projects)
        .where(_projects.c.id == issue.project_id)
        .values(last_issue_number=_projects.c.last_issue_number + 1)
        .returning(_projects.c.last_issue_number, _projects.c.key)
    ).one()
    issue.number = number
    issue.key = f"{key}-{number}"
