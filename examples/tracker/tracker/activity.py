"""The activity of issues, and the notifications made of it.

The services call :func:`record` for every change to an issue, in the same
transaction as the change: the row is the issue page's timeline entry, and
:func:`record` derives from it, at once, who is notified and why:

- ``mentioned``: the change's text (a description, a comment) ``@mentions``
  them (see :mod:`tracker.mentions`);
- ``assigned``: the change assigned the issue to them;
- ``watching``: a comment or a status change on an issue they watch.

One notification per person per change (mentioned beats assigned beats
watching), never to whoever made it. Authors, assignees, commenters and the
people mentioned start watching the issue, unless they unwatched it.

After the commit each person notified gets their new unread count on their
own channel, ``user:<id>`` (:mod:`karaffe.events`): the header's counter
follows it. So does everyone whose count drops without their reading: the
services announce it when they delete an issue or a project with unread
notifications, and when someone leaves or is removed from an organization
(its notifications stop counting).
"""

from __future__ import annotations

import typing as t

import sqlalchemy as sa

from karaffe.auth import User, utcnow
from karaffe.db import db
from karaffe.tenancy import Membership, unscoped

from . import live
from .models import Activity, Comment, Issue, Notification, Watch

__all__ = [
    "UNREAD_COUNT_COLUMN",
    "mark_read",
    "record",
    "set_watching",
    "timeline",
    "unread_count",
    "user_channel",
    "watching",
]

#: Kinds whose watchers are notified.
WATCHED_KINDS = frozenset({"comment", "status"})
#: Kinds the issue page's timeline shows as an entry of their own, which a
#: live page appends as they happen (a comment is shown as the comment; an
#: issue is created before anyone has its page open).
LIVE_KINDS = frozenset({"title", "description", "status", "assignee", "labels"})
_STRENGTH = {"mentioned": 3, "assigned": 2, "watching": 1}


def user_channel(user_id: int) -> str:
    """The live channel of one user's own events (their unread count)."""
    return f"user:{user_id}"


def record(
    issue: Issue,
    actor: User,
    kind: str,
    detail: dict[str, t.Any] | None = None,
    *,
    mentions: t.Iterable[int] = (),
    assigned: int | None = None,
    watchers: t.Iterable[int] = (),
) -> Activity:
    """Record that ``actor`` changed ``issue`` (``kind``, ``detail``), and
    notify: ``mentions`` (user ids), ``assigned`` (whom the issue was just
    assigned to) and, for a comment or status, those watching. ``watchers``
    (with the mentioned and the assignee) start watching, unless they chose
    not to."""
    mentioned = list(dict.fromkeys(mentions))
    activity = Activity(
        organization_id=issue.organization_id,
        issue_id=issue.id,
        actor_id=actor.id,
        kind=kind,
        detail={**(detail or {}), **({"mentions": mentioned} if mentioned else {})},
    )
    db.session.add(activity)
    db.session.flush()
    watches = {
        w.user_id: w for w in db.session.scalars(sa.select(Watch).where(Watch.issue_id == issue.id))
    }
    reasons: dict[int, str] = {}

    def give(user_id: int, reason: str) -> None:
        if user_id != actor.id and _STRENGTH[reason] > _STRENGTH.get(reasons.get(user_id, ""), 0):
            reasons[user_id] = reason

    if kind in WATCHED_KINDS and not activity.detail.get("edited"):
        for user_id, watch in watches.items():
            if watch.watching:
                give(user_id, "watching")
    if assigned is not None:
        give(assigned, "assigned")
    for user_id in mentioned:
        give(user_id, "mentioned")
    now = utcnow()
    db.session.add_all(
        Notification(
            organization_id=issue.organization_id,
            user_id=user_id,
            activity_id=activity.id,
            issue_id=issue.id,
            reason=reason,
            created_at=now,
        )
        for user_id, reason in reasons.items()
    )
    start = [*watchers, *mentioned, *([assigned] if assigned is not None else [])]
    for user_id in dict.fromkeys(start):
        if user_id not in watches:
            watches[user_id] = Watch(
                organization_id=issue.organization_id, issue_id=issue.id, user_id=user_id
            )
            db.session.add(watches[user_id])
    db.session.flush()
    announce_unread(list(reasons))
    if kind in LIVE_KINDS:
        live.activity_added(activity)
    return activity


def unread_counts(user_ids: t.Sequence[int]) -> dict[int, int]:
    """The unread counts of ``user_ids`` across all their organizations (one
    query). Notifications of an organization someone left do not count: the
    same number as their inbox shows."""
    if not user_ids:
        return {}
    with unscoped("counting the unread notifications of the people just notified"):
        rows = db.session.execute(
            sa.select(Notification.user_id, sa.func.count())
            .join(
                Membership,
                sa.and_(
                    Membership.organization_id == Notification.organization_id,
                    Membership.user_id == Notification.user_id,
                ),
            )
            .where(Notification.user_id.in_(user_ids), Notification.read_at.is_(None))
            .group_by(Notification.user_id)
        )
        counts = {user_id: n for user_id, n in rows}
    return {user_id: counts.get(user_id, 0) for user_id in user_ids}


def unread_readers(*, issue_id: int | None = None, project_id: int | None = None) -> list[int]:
    """Who has unread notifications of ``issue_id``, or of any issue of
    ``project_id``: their count drops when it is deleted, so call this before
    deleting, and :func:`announce_unread` after."""
    stmt = sa.select(Notification.user_id).where(Notification.read_at.is_(None)).distinct()
    if issue_id is not None:
        stmt = stmt.where(Notification.issue_id == issue_id)
    if project_id is not None:
        stmt = stmt.where(
            Notification.issue_id.in_(sa.select(Issue.id).where(Issue.project_id == project_id))
        )
    return sorted(db.session.scalars(stmt))


def announce_unread(user_ids: t.Sequence[int]) -> None:
    """Publish each user's unread count on their channel (sent after commit)."""
    if not user_ids or not live.enabled():
        return
    from karaffe.events import publish

    for user_id, unread in unread_counts(user_ids).items():
        publish(user_channel(user_id), "notifications.unread", {"unread": unread})


def unread_count(user: User) -> int:
    """``user``'s unread notifications, in the organizations the current
    scope (theirs) sees."""
    return int(db.session.execute(_UNREAD_COUNT, {"user_id": user.id}).scalar_one())


#: Built once: every page's header shows the count.
_UNREAD_COUNT = (
    sa.select(sa.func.count())
    .select_from(Notification)
    .where(Notification.user_id == sa.bindparam("user_id"), Notification.read_at.is_(None))
)

#: The same count as a column (of the header's one statement, see
#: :func:`tracker.services.header_links`), for the ``user_id`` parameter.
UNREAD_COUNT_COLUMN = _UNREAD_COUNT.scalar_subquery().label("unread")


def inbox(user: User, unread_only: bool = False) -> sa.Select[Notification]:
    """The select of ``user``'s notifications (unordered: pagination orders
    it newest first); each row comes with its activity, actor and issue."""
    stmt = sa.select(Notification).where(Notification.user_id == user.id)
    if unread_only:
        stmt = stmt.where(Notification.read_at.is_(None))
    return stmt


#: The order of the inbox: newest first.
INBOX_ORDER = (Notification.id.desc(),)


def mark_read(user: User, notification_id: int | None = None) -> int:
    """Mark one of ``user``'s notifications read, or all of them; how many
    were unread. The new count goes to their channel."""
    stmt = sa.update(Notification).where(
        Notification.user_id == user.id, Notification.read_at.is_(None)
    )
    if notification_id is not None:
        stmt = stmt.where(Notification.id == notification_id)
    result = db.session.execute(
        stmt.values(read_at=utcnow()), execution_options={"synchronize_session": False}
    )
    changed = int(getattr(result, "rowcount", 0) or 0)
    if changed:
        announce_unread([user.id])
    return changed


def get_notification(user: User, notification_id: int) -> Notification | None:
    """``user``'s notification ``notification_id``, or ``None``: another's
    is as missing as one that does not exist."""
    return db.session.execute(
        sa.select(Notification).where(
            Notification.id == notification_id, Notification.user_id == user.id
        )
    ).scalar_one_or_none()


def watching(issue: Issue, user: User) -> bool:
    """Whether ``user`` watches ``issue``."""
    return bool(
        db.session.execute(
            sa.select(Watch.watching).where(Watch.issue_id == issue.id, Watch.user_id == user.id)
        ).scalar_one_or_none()
    )


def set_watching(issue: Issue, user: User, on: bool) -> None:
    """Watch or unwatch ``issue``; an unwatch is remembered (automatic
    watching will not undo it)."""
    watch = db.session.execute(
        sa.select(Watch).where(Watch.issue_id == issue.id, Watch.user_id == user.id)
    ).scalar_one_or_none()
    if watch is None:
        watch = Watch(organization_id=issue.organization_id, issue_id=issue.id, user_id=user.id)
        db.session.add(watch)
    watch.watching = on
    db.session.flush()


def timeline(issue: Issue) -> list[Activity]:
    """``issue``'s activity, oldest first, with each actor (one query)."""
    return list(
        db.session.scalars(
            sa.select(Activity).where(Activity.issue_id == issue.id).order_by(Activity.id)
        )
    )


def timeline_key(row: Comment | Activity) -> str:
    """Where an entry sorts in the issue's timeline, as a string that sorts
    the same way (a live page inserts entries by it, ``data-order``): by
    time, a comment before another change of the same instant, then by id."""
    rank = 0 if isinstance(row, Comment) else 1
    return f"{row.created_at:%Y%m%d%H%M%S%f}-{rank}-{row.id:020d}"


def get_entry(issue: Issue, activity_id: int) -> Activity | None:
    """The timeline entry ``activity_id`` of ``issue`` (a change the
    timeline shows as such, not a comment), or ``None``."""
    return db.session.execute(
        sa.select(Activity).where(
            Activity.id == activity_id,
            Activity.issue_id == issue.id,
            Activity.kind != "comment",
        )
    ).scalar_one_or_none()


def activity_of(issue: Issue) -> sa.Select[Activity]:
    """The select of ``issue``'s activity (pagination orders it)."""
    return sa.select(Activity).where(Activity.issue_id == issue.id)


def _names(names: t.Iterable[str]) -> str:
    return ", ".join(names)


def describe(row: Activity) -> str:
    """What ``row`` did, as the timeline, the inbox and the digest say it
    after the actor's name: ``"closed the issue"``."""
    d = row.detail or {}
    if row.kind == "created":
        return "opened the issue"
    if row.kind == "title":
        return f"changed the title from “{d.get('from', '')}” to “{d.get('to', '')}”"
    if row.kind == "description":
        return "edited the description"
    if row.kind == "status":
        return "closed the issue" if d.get("to") == "closed" else "reopened the issue"
    if row.kind == "assignee":
        new, old = d.get("to"), d.get("from")
        if new is None:
            return f"unassigned {old['name'] if old else 'the issue'}"
        return f"assigned {new['name']}" + (f" instead of {old['name']}" if old else "")
    if row.kind == "labels":
        parts = []
        if d.get("added"):
            parts.append(f"added {_names(d['added'])}")
        if d.get("removed"):
            parts.append(f"removed {_names(d['removed'])}")
        return " and ".join(parts) or "changed the labels"
    if row.kind == "comment":
        return "edited a comment" if d.get("edited") else "commented"
    return row.kind


#: Why a notification came, as the inbox says it.
REASONS = {"mentioned": "mentioned you", "assigned": "assigned to you", "watching": "watching"}
