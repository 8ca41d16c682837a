"""The tracker's jobs (slide 30): found by ``flask karaffe jobs`` (the
``tracker.jobs`` module is the default of ``JOBS_MODULES``) and run by
``flask karaffe scheduler``, or by hand::

    flask --app tracker karaffe run-job tracker.jobs.send_daily_digest

Each job names whose data it acts on: the digest acts as each user in turn
(seeing exactly what that user sees in the web app), purging invitations is
explicitly unscoped, and purging API tokens touches no organization's data.

Mail goes to the backend named by ``MAIL_BACKEND``: ``console`` (the default,
standard output), ``file:DIRECTORY`` (one ``.eml`` file per message), or any
``module:Class`` with a ``send(message)`` method.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import sys
import typing as t
from collections.abc import Iterable
from email.message import EmailMessage
from pathlib import Path

import sqlalchemy as sa
from flask import Flask, current_app
from werkzeug.utils import import_string

from karaffe import tenancy
from karaffe.auth import ApiToken, AuthSettings, User, UserSession, utcnow
from karaffe.db import db
from karaffe.jobs import ActingAs, current_run, job, progress

from .models import Comment, Invitation, Issue, Project
from .settings import TrackerSettings

__all__ = [
    "ConsoleMail",
    "FileMail",
    "MailBackend",
    "mail_backend",
    "purge_ended_sessions",
    "purge_expired_invitations",
    "purge_expired_tokens",
    "send_daily_digest",
    "trim_event_history",
]

log = logging.getLogger("tracker.jobs")

# -- mail ------------------------------------------------------------------------


class MailBackend(t.Protocol):
    def send(self, message: EmailMessage) -> None: ...


class ConsoleMail:
    """Writes each message to standard output (development)."""

    def __init__(self, stream: t.TextIO | None = None) -> None:
        self.stream = stream

    def send(self, message: EmailMessage) -> None:
        out = self.stream or sys.stdout
        out.write(f"{message.as_string()}\n{'-' * 72}\n")
        out.flush()


class FileMail:
    """Writes each message to its own ``.eml`` file in ``directory``."""

    _counter = itertools.count(1)

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def send(self, message: EmailMessage) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        stamp = utcnow().strftime("%Y%m%dT%H%M%S%f")
        path = self.directory / f"{stamp}-{next(self._counter):06d}.eml"
        path.write_bytes(bytes(message))


def mail_backend(app: Flask | None = None) -> MailBackend:
    """The backend ``MAIL_BACKEND`` names."""
    spec = TrackerSettings.of(app).mail_backend
    if spec == "console":
        return ConsoleMail()
    if spec.startswith("file:"):
        return FileMail(spec[len("file:") :])
    if ":" in spec:
        return t.cast(MailBackend, import_string(spec.replace(":", "."))())
    raise ValueError(f"MAIL_BACKEND {spec!r}: use console, file:DIRECTORY or module:Class")


# -- the daily digest ----------------------------------------------------------------


def _active_users() -> Iterable[User]:
    return db.session.scalars(sa.select(User).where(User.is_active).order_by(User.id))


def _window_end() -> dt.datetime:
    """The digest covers the day before its tick (or before now, by hand)."""
    try:
        tick = current_run().tick
    except LookupError:
        tick = None
    return tick or utcnow()


def digest_for(user: User, start: dt.datetime, end: dt.datetime) -> EmailMessage | None:
    """The digest of what happened in ``user``'s organizations between
    ``start`` and ``end``, or ``None`` when nothing did. Called acting as
    ``user``: the queries see only their organizations."""
    created = list(
        db.session.scalars(
            sa.select(Issue)
            .where(Issue.created_at > start, Issue.created_at <= end)
            .order_by(Issue.project_id, Issue.id)
        )
    )
    updated = list(
        db.session.scalars(
            sa.select(Issue)
            .where(Issue.updated_at > start, Issue.updated_at <= end, Issue.created_at <= start)
            .order_by(Issue.project_id, Issue.id)
        )
    )
    comments: list[tuple[Comment, Issue]] = [
        (comment, issue)
        for comment, issue in db.session.execute(
            sa.select(Comment, Issue)
            .join(Issue, Issue.id == Comment.issue_id)
            .where(Comment.created_at > start, Comment.created_at <= end)
            .where(sa.or_(Comment.author_id.is_(None), Comment.author_id != user.id))
            .order_by(Issue.project_id, Issue.id, Comment.id)
        )
    ]
    if not (created or updated or comments):
        return None
    project_ids = {i.project_id for i in created + updated} | {i.project_id for _, i in comments}
    projects = {
        p.id: p.name
        for p in db.session.scalars(sa.select(Project).where(Project.id.in_(project_ids)))
    }
    lines = [f"Hello {user.name or user.email},", "", f"activity until {end:%Y-%m-%d %H:%M} UTC:"]
    for title, issues in (("New issues", created), ("Updated issues", updated)):
        if issues:
            lines += ["", f"{title}:"]
            lines += [
                f"  [{projects.get(i.project_id, '?')}] {i.key} {i.title} ({i.status})"
                for i in issues
            ]
    if comments:
        lines += ["", "New comments:"]
        for comment, issue in comments:
            author = comment.author.email if comment.author else "someone"
            lines.append(f"  [{projects.get(issue.project_id, '?')}] {issue.key} {author}:")
            lines.append(
                f"    {comment.body.strip().splitlines()[0][:200] if comment.body else ''}"
            )
    count = len(created) + len(updated) + len(comments)
    message = EmailMessage()
    message["Subject"] = f"tracker: {count} update{'s' if count != 1 else ''} in your projects"
    message["From"] = TrackerSettings.of().mail_from
    message["To"] = user.email
    message.set_content("\n".join(lines) + "\n")
    return message


@job(schedule="0 7 * * *", missed="catch_up", context=ActingAs(_active_users))
def send_daily_digest() -> bool:
    """Mail each user the issue activity of the last day in their organizations."""
    user_id = tenancy.current_scope().user_id
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None:
        return False
    end = _window_end()
    message = digest_for(user, end - dt.timedelta(days=1), end)
    if message is None:
        return False
    mail_backend().send(message)
    log.info("digest sent to user %s", user.id)
    return True


# -- purging ---------------------------------------------------------------------


def _cutoff() -> dt.datetime:
    return utcnow() - dt.timedelta(days=TrackerSettings.of().purge_after_days)


@job(schedule="17 3 * * *")
def purge_expired_tokens() -> int:
    """Delete API tokens that expired or were revoked ``PURGE_AFTER_DAYS`` ago.

    API tokens belong to users, not organizations: this job needs no tenant
    context, and would be refused if it touched organization data.
    """
    cutoff = _cutoff()
    deleted = db.session.execute(
        sa.delete(ApiToken).where(
            sa.or_(ApiToken.expires_at <= cutoff, ApiToken.revoked_at <= cutoff)
        )
    )
    db.session.commit()
    count = int(getattr(deleted, "rowcount", 0) or 0)
    log.info("purged %d expired or revoked API token(s)", count)
    return count


@job(schedule="29 3 * * *")
def purge_ended_sessions() -> int:
    """Delete login sessions that ended ``PURGE_AFTER_DAYS`` ago, or that went
    unused that long past ``SESSION_IDLE_TIMEOUT`` (they ended then). Like
    API tokens, sessions belong to users: no tenant context."""
    cutoff = _cutoff()
    idle = dt.timedelta(seconds=AuthSettings.of().session_idle_timeout)
    deleted = db.session.execute(
        sa.delete(UserSession).where(
            sa.or_(UserSession.ended_at <= cutoff, UserSession.last_seen_at <= cutoff - idle)
        )
    )
    db.session.commit()
    count = int(getattr(deleted, "rowcount", 0) or 0)
    log.info("purged %d ended login session(s)", count)
    return count


@job(schedule="23 3 * * *", unscoped="purge expired invitations of every organization")
def purge_expired_invitations() -> int:
    """Delete invitations nobody accepted that expired ``PURGE_AFTER_DAYS`` ago."""
    deleted = db.session.execute(
        sa.delete(Invitation).where(
            Invitation.accepted_at.is_(None), Invitation.expires_at <= _cutoff()
        )
    )
    db.session.commit()
    count = int(getattr(deleted, "rowcount", 0) or 0)
    log.info("purged %d expired invitation(s)", count)
    return count


# -- event history ---------------------------------------------------------------

#: Trims one channel's stream to the entries at or after ARGV[1], always
#: keeping the newest (the relay reads a channel's position from it), and
#: records the newest id trimmed away as the events broker's publish script
#: does, so the relay tells a client resuming from a trimmed id what it missed.
_TRIM_SCRIPT = """
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last == 0 then return 0 end
local minid = ARGV[1]
local gone = redis.call('XREVRANGE', KEYS[1], '(' .. minid, '-', 'COUNT', 1)
if #gone == 0 then return 0 end
if gone[1][1] == last[1][1] then
  minid = last[1][1]
  gone = redis.call('XREVRANGE', KEYS[1], '(' .. minid, '-', 'COUNT', 1)
  if #gone == 0 then return 0 end
end
local removed = redis.call('XTRIM', KEYS[1], 'MINID', minid)
redis.call('SET', KEYS[2], gone[1][1])
return removed
"""


@job(schedule="41 3 * * *")
def trim_event_history() -> int:
    """Drop live-update events older than ``EVENT_HISTORY_DAYS`` from Redis
    (keeping each channel's newest event).

    The broker bounds each channel's history by count when publishing; a
    channel that went quiet would keep its last events forever. Events carry
    no organization rows, so no tenant context is needed. With the in-process
    broker (development) there is nothing shared to trim.
    """
    state = current_app.extensions.get("karaffe.events")
    broker = getattr(state, "broker", None) if state is not None else None
    keys = getattr(broker, "keys", None)
    client = getattr(broker, "client", None)
    if broker is None or keys is None or client is None:
        log.info("no Redis event broker configured: no event history to trim")
        return 0
    days = TrackerSettings.of().event_history_days
    cutoff_ms = int((utcnow() - dt.timedelta(days=days)).timestamp() * 1000)
    trim = client.register_script(_TRIM_SCRIPT)
    prefix = f"{keys.prefix}{{"
    streams = sorted(client.scan_iter(match=f"{prefix}*}}", _type="STREAM"))
    removed = 0
    for key in progress(streams, label="trimming event history"):
        channel = key.decode()[len(prefix) : -1]
        removed += int(
            trim(keys=[keys.stream(channel), keys.trimmed(channel)], args=[f"{cutoff_ms}-0"])
        )
    log.info(
        "trimmed %d event(s) older than %d day(s) from %d channel(s)", removed, days, len(streams)
    )
    return removed
