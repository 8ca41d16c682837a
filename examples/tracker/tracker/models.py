"""The tracker's data: projects, issues, labels, comments and invitations.

Every model here is :class:`~karaffe.tenancy.OrgOwned`: it carries its
organization's id, and karaffe's tenancy layer filters every ORM query to the
organizations of whoever the code acts for. The views never write
``WHERE organization_id = ...`` themselves; they could not forget it.

An issue and its comments repeat their project's ``organization_id`` on
purpose: the filter works on each table alone, without joins.
"""

from __future__ import annotations

import datetime as dt
import typing as t

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from karaffe.auth import User, utcnow
from karaffe.db import Model, UTCDateTime
from karaffe.tenancy import OrgOwned

from .labels import text_color

__all__ = [
    "ACTIVITY_KINDS",
    "Activity",
    "Comment",
    "Invitation",
    "Issue",
    "Label",
    "Notification",
    "Project",
    "Watch",
    "issue_labels",
]

#: Which labels an issue has. Not org-owned itself: it is only ever reached
#: through an issue or a label, which are.
issue_labels = sa.Table(
    "issue_label",
    Model.metadata,
    sa.Column("issue_id", sa.ForeignKey("issue.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("label_id", sa.ForeignKey("label.id", ondelete="CASCADE"), primary_key=True),
    sa.Index("ix_issue_label_label_id", "label_id", "issue_id"),
)


class Project(OrgOwned, Model):
    """A set of issues inside an organization.

    ``key`` (``BIL``) prefixes its issues' keys (``BIL-123``); it is unique in
    the organization and never changes, so a key once shared keeps naming the
    same issue. ``last_issue_number`` numbers its issues; the open and closed
    counts are kept by database triggers (:mod:`tracker.counters`).
    """

    __tablename__ = "project"
    __table_args__ = (
        sa.Index("ix_project_organization_key", "organization_id", "key", unique=True),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    key: Mapped[str] = mapped_column(sa.String(10))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_issue_number: Mapped[int] = mapped_column(default=0, server_default="0")
    open_issue_count: Mapped[int] = mapped_column(default=0, server_default="0")
    closed_issue_count: Mapped[int] = mapped_column(default=0, server_default="0")

    def __repr__(self) -> str:
        return f"<Project {self.id} {self.name!r}>"


class Label(OrgOwned, Model):
    """A tag for issues, shared by the projects of an organization."""

    __tablename__ = "label"
    __table_args__ = (sa.UniqueConstraint("organization_id", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(50))
    #: The background, ``#rrggbb`` (see :mod:`tracker.labels`).
    color: Mapped[str] = mapped_column(sa.String(7), default="#6b7280", server_default="#6b7280")

    @property
    def text_color(self) -> str:
        """Black or white, whichever reads better on :attr:`color`."""
        return text_color(self.color)

    def __repr__(self) -> str:
        return f"<Label {self.id} {self.name!r} {self.color}>"


class Issue(OrgOwned, Model):
    """Something to do in a project: open until someone closes it.

    ``number`` counts the project's issues (unique in the project) and
    ``key`` is the project's key with it (``BIL-123``), stored so that a list
    names its issues without a join.
    ``comment_count`` is kept by a database trigger (:mod:`tracker.counters`).
    """

    __tablename__ = "issue"
    __table_args__ = (
        # The issue list: a project's issues, by status, newest first.
        sa.Index("ix_issue_project_status_id", "project_id", "status", "id"),
        sa.Index("ix_issue_project_id_id", "project_id", "id"),
        sa.Index("ix_issue_assignee_id", "assignee_id"),
        # A project's list by last update (keyset on updated_at, id). Creation
        # order is the id's; by comment count, a project's rows are sorted.
        sa.Index("ix_issue_project_status_updated", "project_id", "status", "updated_at", "id"),
        # "My issues": created by someone, across an organization's projects.
        sa.Index("ix_issue_author_id", "author_id"),
        sa.Index("ix_issue_project_number", "project_id", "number", unique=True),
        sa.CheckConstraint("status IN ('open', 'closed')", name="status"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("project.id", ondelete="CASCADE"))
    number: Mapped[int]
    key: Mapped[str] = mapped_column(sa.String(21))
    title: Mapped[str] = mapped_column(sa.String(200))
    description: Mapped[str] = mapped_column(sa.Text, default="")
    status: Mapped[str] = mapped_column(sa.String(10), default="open")
    assignee_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    author_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    comment_count: Mapped[int] = mapped_column(default=0, server_default="0")

    project: Mapped[Project] = relationship()
    assignee: Mapped[User | None] = relationship(foreign_keys=[assignee_id], lazy="joined")
    author: Mapped[User | None] = relationship(foreign_keys=[author_id], lazy="joined")
    labels: Mapped[list[Label]] = relationship(
        secondary=issue_labels, lazy="selectin", order_by=Label.name
    )

    def __repr__(self) -> str:
        return f"<Issue {self.id} {self.key} {self.status} {self.title[:30]!r}>"


class Comment(OrgOwned, Model):
    """A remark on an issue."""

    __tablename__ = "comment"

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(sa.ForeignKey("issue.id", ondelete="CASCADE"), index=True)
    author_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    body: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: When its text last changed, ``None`` if never.
    edited_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    author: Mapped[User | None] = relationship(lazy="joined")

    def __repr__(self) -> str:
        return f"<Comment {self.id} on {self.issue_id}>"


class Invitation(OrgOwned, Model):
    """An invitation to join an organization with a role. The link carries
    its id signed with the app's secret and expires; the row makes it
    single-use and lets an admin see who joined through it."""

    __tablename__ = "invitation"

    id: Mapped[int] = mapped_column(primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(20), default="member")
    created_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())
    accepted_by_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    accepted_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    created_by: Mapped[User | None] = relationship(foreign_keys=[created_by_id])


#: What an :class:`Activity` row records.
ACTIVITY_KINDS = ("created", "title", "description", "status", "assignee", "labels", "comment")


class Activity(OrgOwned, Model):
    """One change to an issue, by whom and when: the issue page's timeline,
    and what notifications are made of (see :mod:`tracker.activity`).

    ``detail`` is small JSON whose shape depends on ``kind``: ``{"from":
    "open", "to": "closed"}`` for a status or a title; ``{"from": {"id", "name"},
    "to": ...}`` for an assignee (names as they were); ``{"added": [...],
    "removed": [...]}`` (label names) for labels; ``{"comment_id": 7}`` for a
    comment. ``"mentions"`` lists the ids of the members the change mentioned.
    """

    __tablename__ = "issue_activity"
    __table_args__ = (
        sa.Index("ix_issue_activity_issue_id_id", "issue_id", "id"),
        sa.CheckConstraint(
            "kind IN ('created', 'title', 'description', 'status', 'assignee', 'labels', "
            "'comment')",
            name="kind",
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(sa.ForeignKey("issue.id", ondelete="CASCADE"))
    actor_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="SET NULL"), default=None
    )
    kind: Mapped[str] = mapped_column(sa.String(20))
    detail: Mapped[dict[str, t.Any]] = mapped_column(sa.JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)

    actor: Mapped[User | None] = relationship(lazy="joined")

    @property
    def mentions(self) -> list[int]:
        return [int(i) for i in self.detail.get("mentions", ())]

    def __repr__(self) -> str:
        return f"<Activity {self.id} {self.kind} on {self.issue_id}>"


class Watch(OrgOwned, Model):
    """Whether a user follows an issue. A row with ``watching`` false is an
    explicit unwatch: automatic watching (commenting, being mentioned...)
    does not undo it."""

    __tablename__ = "issue_watch"
    __table_args__ = (sa.UniqueConstraint("issue_id", "user_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    issue_id: Mapped[int] = mapped_column(sa.ForeignKey("issue.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    watching: Mapped[bool] = mapped_column(default=True)


class Notification(OrgOwned, Model):
    """An :class:`Activity` that concerns a user, and why: ``mentioned``,
    ``assigned`` or ``watching``. Unread until ``read_at``."""

    __tablename__ = "notification"
    __table_args__ = (
        sa.UniqueConstraint("user_id", "activity_id"),
        # The inbox (newest first) and the unread count of one user.
        sa.Index("ix_notification_user_id_id", "user_id", "id"),
        sa.Index("ix_notification_user_id_read_at", "user_id", "read_at"),
        sa.CheckConstraint("reason IN ('mentioned', 'assigned', 'watching')", name="reason"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("user_account.id", ondelete="CASCADE"))
    activity_id: Mapped[int] = mapped_column(
        sa.ForeignKey("issue_activity.id", ondelete="CASCADE"), index=True
    )
    issue_id: Mapped[int] = mapped_column(sa.ForeignKey("issue.id", ondelete="CASCADE"), index=True)
    reason: Mapped[str] = mapped_column(sa.String(20))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    read_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    activity: Mapped[Activity] = relationship(lazy="joined")
    issue: Mapped[Issue] = relationship(lazy="joined")

    @property
    def read(self) -> bool:
        return self.read_at is not None

    def __repr__(self) -> str:
        return f"<Notification {self.id} {self.reason} for {self.user_id}>"


def _install_triggers() -> None:
    from . import counters, keys, search

    del keys  # imported for its insert hooks

    tables = {
        "issue": t.cast(sa.Table, Issue.__table__),
        "comment": t.cast(sa.Table, Comment.__table__),
    }
    counters.install(tables)
    search.install(tables)


_install_triggers()
