"""The tracker's jobs (slide 30): found by ``flask karaffe jobs`` (the
``tracker.jobs`` module is the default of ``JOBS_MODULES``) and run by
``flask karaffe scheduler``, or by hand::

    flask --app tracker karaffe run-job tracker.jobs.send_daily_digest

Each job names whose data it acts on: the digest acts as each user in turn
(seeing exactly what that user sees in the web app) and mails their unread
notifications of the day (:mod:`tracker.activity`), purging invitations is
explicitly unscoped, and purging API tokens touches no organization's data.

Mail goes through :mod:`tracker.mail` (Flask-Mailman, ``MAIL_BACKEND``); the
mail requests write (password resets, email verification) is queued in the
database and sent by :func:`deliver_mail`, every 5 seconds
(:mod:`tracker.mailqueue`).
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
from collections.abc import Iterable

import sqlalchemy as sa
from flask import current_app
from flask_mailman import EmailMessage

from karaffe import tenancy
from karaffe.auth import ApiToken, AuthSettings, User, UserSession, utcnow
from karaffe.db import db
from karaffe.jobs import ActingAs, current_run, job, progress

from . import activity, mail, mailqueue
from .models import Invitation, Notification, Project
from .settings import TrackerSettings

__all__ = [
    "deliver_mail",
    "purge_ended_sessions",
    "purge_expired_invitations",
    "purge_expired_tokens",
    "send_daily_digest",
    "trim_event_history",
]

log = logging.getLogger("tracker.jobs")

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
    """The digest of ``user``'s notifications of the day (``start`` to
    ``end``) still unread when it is built, or ``None`` when there are none:
    what they read in the app is not mailed again. Called acting as
    ``user``: the queries see only their organizations (a notification of
    one they left is not sent)."""
    unread = list(
        db.session.scalars(
            sa.select(Notification)
            .where(
                Notification.user_id == user.id,
                Notification.read_at.is_(None),
                Notification.created_at > start,
                Notification.created_at <= end,
            )
            .order_by(Notification.id)
        )
    )
    if not unread:
        return None
    project_ids = {n.issue.project_id for n in unread}
    projects = {
        p.id: p.name
        for p in db.session.scalars(sa.select(Project).where(Project.id.in_(project_ids)))
    }
    count = len(unread)
    plural = "s" if count != 1 else ""
    lines = [
        f"Hello {user.name or user.email},",
        "",
        f"{count} unread notification{plural} until {end:%Y-%m-%d %H:%M} UTC:",
    ]
    for _, group in itertools.groupby(unread, key=lambda n: n.issue_id):
        items = list(group)
        issue = items[0].issue
        lines += ["", f"[{projects.get(issue.project_id, '?')}] {issue.key} {issue.title}"]
        for n in items:
            actor = n.activity.actor.name if n.activity.actor else "someone"
            lines.append(
                f"  {actor} {activity.describe(n.activity)} ({activity.REASONS[n.reason]})"
            )
    lines += ["", "Read them in your inbox: the digest leaves out what you have read."]
    subject = f"tracker: {count} unread notification{plural}"
    return mail.message(user.email, subject, "\n".join(lines) + "\n")


@job(schedule="0 7 * * *", missed="catch_up", context=ActingAs(_active_users))
def send_daily_digest() -> bool:
    """Mail each user their notifications of the last day they have not read."""
    user_id = tenancy.current_scope().user_id
    user = db.session.get(User, user_id) if user_id is not None else None
    if user is None:
        return False
    end = _window_end()
    message = digest_for(user, end - dt.timedelta(days=1), end)
    if message is None:
        return False
    mail.send(message)
    log.info("digest sent to user %s", user.id)
    return True


# -- the account mail queue -----------------------------------------------------------


@job(schedule="* * * * * */5")
def deliver_mail() -> int:
    """Send the account mail requests queued (tracker.mailqueue); retry what failed."""
    sent = 0
    while True:
        result = mailqueue.deliver()
        sent += result.sent
        if result.error is not None or result.sent + result.failed + result.dropped < (
            mailqueue.BATCH
        ):
            break
    if sent:
        log.info("%d queued mail(s) sent", sent)
    return sent


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
