"""The account mail queue: mail is written in the request's transaction and
sent by a job, out of the request.

A request never talks to the mail server. It adds rows to the ``mail_queue``
table in its own transaction (:func:`queue`, :func:`queue_password_reset`),
so a rolled-back sign-up queues nothing and a committed one cannot lose its
mail, whatever happens to the process or the SMTP server afterwards. The job
``tracker.jobs.deliver_mail`` (every 5 seconds, run by
``flask karaffe scheduler``; by a thread of the demo) calls :func:`deliver`:

* it claims the due rows (one ``UPDATE``: a row is claimed by one delivery
  at a time, for :data:`CLAIM` seconds; a delivery that died is taken over
  when the claim runs out), then sends them over one connection, deleting
  each row once the server took its mail;
* a mail the server refused alone (a refused recipient) is retried later
  when the refusal is temporary (a 4xx reply), and dropped, with an error
  logged, when it is permanent (a 5xx reply: no such mailbox, say): retrying
  a mail the server will never take would only fill the log;
  a server that is down or fails ends the run: every claimed row not sent is
  retried later, after 10 s, then 20 s, 40 s... at most an hour
  (:func:`backoff`). A failure is logged each time.

A password reset queues the *request*, not the mail: the row holds the email
asked for and the site's address, and the delivery looks the account up and
writes the link (:func:`tracker.accounts.password_reset_mail`), or deletes the
row when no active account has that email. So "forgot password" does the same
work, in the same time, for an email with an account and one without (one
insert and one commit); only the mail server learns the difference.

Delivery is at least once: a delivery killed after the server took a mail
and before its row was deleted sends it again when the claim runs out.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import secrets
import smtplib
from dataclasses import dataclass

import sqlalchemy as sa
from flask import current_app, request
from flask_mailman import EmailMessage
from sqlalchemy.orm import Mapped, mapped_column

from karaffe.auth import normalize_email, utcnow
from karaffe.db import Model, UTCDateTime, db

from . import mail
from .settings import TrackerSettings

__all__ = [
    "CLAIM",
    "Delivery",
    "QueuedMail",
    "backoff",
    "deliver",
    "is_permanent",
    "pending",
    "queue",
    "queue_password_reset",
]

log = logging.getLogger("tracker.mail")

#: Seconds a delivery holds the rows it claimed.
CLAIM = 600
#: Most rows one delivery claims.
BATCH = 100
#: The first retry's delay and the longest, in seconds.
FIRST_RETRY = 10
MAX_RETRY = 3600

#: The kinds of rows: a mail written by the request, or a password reset
#: asked for (the mail is written by the delivery).
MESSAGE = "message"
PASSWORD_RESET = "password-reset"

#: Errors of one message that leave the connection usable.
_MESSAGE_ERRORS = (smtplib.SMTPRecipientsRefused, smtplib.SMTPDataError, smtplib.SMTPSenderRefused)


def is_permanent(error: smtplib.SMTPException) -> bool:
    """Whether the server refused a message for good (RFC 5321: a 5yz reply;
    for refused recipients, every recipient's reply)."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in error.recipients.values()]
        return bool(codes) and all(500 <= code < 600 for code in codes)
    code = getattr(error, "smtp_code", 0)
    return 500 <= code < 600


class QueuedMail(Model):
    """A mail not sent yet (or a password reset not mailed yet)."""

    __tablename__ = "mail_queue"
    __table_args__ = (sa.Index("ix_mail_queue_next_attempt_at", "next_attempt_at", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(20))
    sender: Mapped[str] = mapped_column(sa.String(254))
    recipient: Mapped[str] = mapped_column(sa.String(254))
    subject: Mapped[str] = mapped_column(sa.String(200), default="")
    body: Mapped[str] = mapped_column(sa.Text(), default="")
    #: The site's address a password reset link is made on (the request's).
    url_root: Mapped[str | None] = mapped_column(sa.String(500))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    next_attempt_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    attempts: Mapped[int] = mapped_column(default=0)
    last_error: Mapped[str | None] = mapped_column(sa.Text())
    #: Names the delivery that claimed the row; ``None`` while it waits.
    claim: Mapped[str | None] = mapped_column(sa.String(32))


def queue(*messages: EmailMessage) -> None:
    """Add ``messages`` (built by :func:`tracker.mail.message`) to the queue
    in the current transaction: they go out once it commits, never if it
    rolls back."""
    for message in messages:
        for recipient in message.to:
            db.session.add(
                QueuedMail(
                    kind=MESSAGE,
                    sender=message.from_email,
                    recipient=recipient,
                    subject=message.subject,
                    body=message.body,
                )
            )


def queue_password_reset(email: str) -> None:
    """Queue a password reset for ``email`` in the current transaction, in a
    request (the link is made on its site address): the delivery mails the
    link if an active account has that email, and nothing otherwise."""
    db.session.add(
        QueuedMail(
            kind=PASSWORD_RESET,
            sender=TrackerSettings.of().mail_from,
            recipient=normalize_email(email),
            url_root=request.url_root,
        )
    )


def backoff(attempts: int) -> dt.timedelta:
    """How long a row waits after its ``attempts``-th failed attempt."""
    return dt.timedelta(seconds=min(FIRST_RETRY * 2 ** max(attempts - 1, 0), MAX_RETRY))


@dataclass(frozen=True)
class Delivery:
    """What one :func:`deliver` did: mails ``sent``, rows ``failed`` (kept
    for a retry), password resets ``dropped`` (no such account), mails
    ``rejected`` for good by the server (deleted), and the error that ended
    the run early, if one did."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    error: str | None = None
    rejected: int = 0


def _claim(now: dt.datetime, limit: int) -> list[QueuedMail]:
    token = secrets.token_hex(16)
    due = (
        sa.select(QueuedMail.id)
        .where(QueuedMail.next_attempt_at <= now)
        .order_by(QueuedMail.next_attempt_at, QueuedMail.id)
        .limit(limit)
    )
    db.session.execute(
        sa.update(QueuedMail)
        .where(QueuedMail.id.in_(due.scalar_subquery()), QueuedMail.next_attempt_at <= now)
        .values(claim=token, next_attempt_at=now + dt.timedelta(seconds=CLAIM))
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return list(
        db.session.scalars(
            sa.select(QueuedMail).where(QueuedMail.claim == token).order_by(QueuedMail.id)
        )
    )


def _message(row: QueuedMail) -> EmailMessage | None:
    if row.kind == PASSWORD_RESET:
        from .accounts import password_reset_mail

        with current_app.test_request_context("/", base_url=row.url_root):
            return password_reset_mail(row.recipient, row.sender)
    return EmailMessage(
        subject=row.subject, body=row.body, from_email=row.sender, to=[row.recipient]
    )


def _failed(row: QueuedMail, error: str) -> None:
    row.attempts += 1
    row.last_error = error[:1000]
    row.claim = None
    row.next_attempt_at = utcnow() + backoff(row.attempts)
    log.warning(
        "mail %s to %s not sent (attempt %d, next in %d s): %s",
        row.id,
        row.recipient,
        row.attempts,
        backoff(row.attempts).total_seconds(),
        error,
    )


def deliver(limit: int = BATCH) -> Delivery:
    """Send the due mail of the queue (at most ``limit`` rows), once each;
    needs the app context."""
    rows = _claim(utcnow(), limit)
    if not rows:
        return Delivery()
    sent = failed = dropped = rejected = 0
    error: str | None = None
    connection = mail.mail.get_connection()
    try:
        for index, row in enumerate(rows):
            message = _message(row)
            if message is None:
                db.session.delete(row)
                db.session.commit()
                dropped += 1
                continue
            try:
                connection.send_messages([message])
            except _MESSAGE_ERRORS as exc:
                if is_permanent(exc):
                    log.error(
                        "mail %s to %s rejected for good, not retried: %s: %s",
                        row.id,
                        row.recipient,
                        type(exc).__name__,
                        exc,
                    )
                    db.session.delete(row)
                    rejected += 1
                else:
                    _failed(row, f"{type(exc).__name__}: {exc}")
                    failed += 1
                db.session.commit()
                continue
            except Exception as exc:  # the server is down, hung or hung up
                error = f"{type(exc).__name__}: {exc}"
                for unsent in rows[index:]:
                    _failed(unsent, error)
                db.session.commit()
                failed += len(rows) - index
                break
            db.session.delete(row)
            db.session.commit()
            sent += 1
    finally:
        # A connection that failed may fail to close too.
        with contextlib.suppress(Exception):
            connection.close()
    return Delivery(sent, failed, dropped, error, rejected)


def pending() -> int:
    """How many rows the queue holds."""
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(QueuedMail)) or 0)
