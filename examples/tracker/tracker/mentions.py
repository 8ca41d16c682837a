"""@mentions: who a ``@handle`` is, and who a text mentions.

A member's handle is the part of their email before the ``@``, lower-cased,
with anything but letters, digits, ``.``, ``_`` and ``-`` dropped
(``Bob.Smith+x@acme.com`` is ``@bob.smithx``). Handles are unique within an
organization: when two members' emails give the same handle, the one who
joined first keeps it and the others get ``-2``, ``-3``... after it, in the
order they joined. A handle names a member of the issue's organization only:
``@someone`` who is not a member stays plain text and mentions nobody.

Handles are derived, not stored: they follow an email change and need no
migration, at the cost of reading the organization's members (one query)
where a text is rendered or written.

:func:`render` is the one way a description or a comment becomes HTML: the
issue page and its fragments, the API's ``description_html`` and
``body_html``, and the Preview (``POST /api/v1/markdown``) all call it, so a
mention reads the same everywhere. It reads the members only when the text
has something that looks like a mention, once per request and organization.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass

import sqlalchemy as sa
from flask import g, url_for
from markupsafe import Markup

from karaffe.auth import User
from karaffe.db import db
from karaffe.tenancy import Membership, Organization

from . import markdown

__all__ = ["Member", "handle_of", "links", "members", "mentioned", "render"]

_DROPPED = re.compile(r"[^a-z0-9._-]+")


@dataclass(frozen=True)
class Member:
    """A member as the mention autocomplete offers them."""

    user_id: int
    name: str
    handle: str


def handle_of(email: str) -> str:
    """The base handle of an email (before uniqueness is applied)."""
    local = email.split("@", 1)[0].lower()
    return _DROPPED.sub("", local).strip("._-") or "user"


def members(org_id: int) -> list[Member]:
    """The members of ``org_id`` with their unique handles, in the order
    they joined (one query)."""
    rows = db.session.execute(
        sa.select(User.id, User.name, User.email)
        .join(Membership, Membership.user_id == User.id)
        .where(Membership.organization_id == org_id)
        .order_by(Membership.id)
    )
    taken: set[str] = set()
    out: list[Member] = []
    pending: list[tuple[int, str, str]] = []
    listed = list(rows)
    # Base handles first, so that "bob-2" as someone's own handle is never
    # taken from them by a second "bob".
    bases = [handle_of(email) for _, _, email in listed]
    counts: dict[str, int] = {}
    for base in bases:
        counts[base] = counts.get(base, 0) + 1
    for (user_id, name, _email), base in zip(listed, bases, strict=True):
        if base not in taken:
            taken.add(base)
            out.append(Member(user_id, name, base))
        else:
            pending.append((user_id, name, base))
    for user_id, name, base in pending:
        n = 2
        while f"{base}-{n}" in taken or f"{base}-{n}" in counts:
            n += 1
        handle = f"{base}-{n}"
        taken.add(handle)
        out.append(Member(user_id, name, handle))
    return out


def ids(org_id: int) -> dict[str, int]:
    """``{handle: user_id}`` of the members of ``org_id``."""
    return {m.handle: m.user_id for m in members(org_id)}


def links(org_slug: str, org_id: int) -> dict[str, str]:
    """``{handle: url}``: where a rendered mention of each member links (the
    organization's member list, at their row)."""
    base = url_for("orgs.members", org_slug=org_slug)
    return {m.handle: f"{base}#member-{m.user_id}" for m in members(org_id)}


def mentioned(text: str | None, handles: t.Mapping[str, int]) -> list[int]:
    """The ids of the members ``text`` mentions (not inside code), in order."""
    return list(dict.fromkeys(handles[h] for h in markdown.mentions(text or "", handles)))


def links_of(org_id: int) -> dict[str, str]:
    """:func:`links` of the organization ``org_id``, read once per request."""
    cache: dict[int, dict[str, str]] = g.setdefault("_tracker_mention_links", {})
    if org_id not in cache:
        org = db.session.get(Organization, org_id)  # the page's: no query
        cache[org_id] = links(org.slug, org_id) if org is not None else {}
    return cache[org_id]


def render(text: str | None, org_id: int) -> Markup:
    """``text`` (Markdown) as safe HTML, each ``@handle`` of a member of
    ``org_id`` a link to them: what the pages, the API and the Preview show."""
    if not markdown.may_mention(text):
        return markdown.render(text)
    return markdown.render(text, links_of(org_id))
