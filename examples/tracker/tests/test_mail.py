"""The tracker's mail goes through Flask-Mailman, configured by the typed
settings: a real SMTP server (aiosmtpd, started here on a free 127.0.0.1
port) receives what the SMTP backend sends; a server that is down is an
error; account mail waits in the queue until the server is up, and arrives
once; contradictory settings are refused at start-up."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import threading
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiosmtpd.controller import Controller
from tracker import create_app, mail, mailqueue
from tracker.jobs import deliver_mail
from tracker.mailqueue import QueuedMail

from karaffe._servers import free_port, fresh_database
from karaffe.auth import utcnow
from karaffe.config import ConfigError
from karaffe.db import db
from karaffe.jobs import run_job


@dataclass
class Inbox:
    """What the SMTP server received: one parsed message per delivery."""

    envelopes: list[tuple[str, list[str], email.message.EmailMessage]] = field(default_factory=list)

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        self.envelopes.append((envelope.mail_from, list(envelope.rcpt_tos), parsed))
        return "250 Message accepted for delivery"


@pytest.fixture
def smtp_server() -> Iterator[tuple[int, Inbox]]:
    """An SMTP server on a free 127.0.0.1 port, stopped after the test."""
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield port, inbox
    finally:
        controller.stop()


def smtp_app(tmp_path: Path, port: int, **extra: t.Any) -> t.Any:
    return create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "mail-test",
            "DATABASE_URL": f"sqlite:///{tmp_path}/mail.sqlite",
            "MAIL_BACKEND": "smtp",
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": port,
            "MAIL_FROM": "tracker@example.org",
            "MAIL_TIMEOUT": 5,
            **extra,
        }
    )


def test_the_smtp_backend_delivers_to_a_real_smtp_server(
    tmp_path: Path, smtp_server: tuple[int, Inbox]
) -> None:
    port, inbox = smtp_server
    app = smtp_app(tmp_path, port)
    with app.app_context():
        sent = mail.send(
            mail.message("ann@example.com", "Grüße from tracker", "Hello Ann,\nsee you.\n"),
            mail.message("bob@example.com", "Second", "Hello Bob\n"),
        )
    assert sent == 2
    assert [(sender, rcpt) for sender, rcpt, _ in inbox.envelopes] == [
        ("tracker@example.org", ["ann@example.com"]),
        ("tracker@example.org", ["bob@example.com"]),
    ]
    first = inbox.envelopes[0][2]
    assert first["Subject"] == "Grüße from tracker"
    assert first["From"] == "tracker@example.org"
    assert first.get_content() == "Hello Ann,\r\nsee you.\r\n"  # SMTP lines end in CRLF


def test_a_smtp_server_that_is_down_is_a_mail_error(tmp_path: Path) -> None:
    app = smtp_app(tmp_path, free_port())  # nothing listens there
    with app.app_context(), pytest.raises(mail.MailError, match="ConnectionRefusedError"):
        mail.send(mail.message("ann@example.com", "Hi", "Hello\n"))


def test_account_mail_queued_while_the_smtp_server_is_down_arrives_once_it_is_up(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    app = smtp_app(tmp_path, port, WTF_CSRF_ENABLED=False, SERVER_NAME="tracker.test")
    with app.app_context():
        db.create_all()
    client = app.test_client()
    rv = client.post(
        "/signup", data={"name": "Zed", "email": "zed@example.com", "password": "a long password"}
    )
    assert rv.status_code == 302
    for asked in ("zed@example.com", "nobody@example.com"):
        assert client.post("/password/forgot", data={"email": asked}).status_code == 200
    run_job(deliver_mail, app=app)  # nothing listens on the port yet
    with app.app_context():
        rows = db.session.scalars(sa.select(QueuedMail).order_by(QueuedMail.id)).all()
        assert [(r.kind, r.recipient, r.attempts) for r in rows] == [
            ("message", "zed@example.com", 1),
            ("password-reset", "zed@example.com", 1),
            ("password-reset", "nobody@example.com", 1),
        ]
        assert "ConnectionRefusedError" in (rows[0].last_error or "")
    assert "not sent (attempt 1, next in 10 s): ConnectionRefusedError" in caplog.text

    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        run_job(deliver_mail, app=app)  # the retry is not due yet
        assert inbox.envelopes == []
        with app.app_context():  # ten seconds later
            db.session.execute(sa.update(QueuedMail).values(next_attempt_at=utcnow()))
            db.session.commit()
        run_job(deliver_mail, app=app)
        run_job(deliver_mail, app=app)  # nothing is sent twice
    finally:
        controller.stop()
    assert [(rcpt, m["Subject"]) for _, rcpt, m in inbox.envelopes] == [
        (["zed@example.com"], "Verify your email for tracker"),
        (["zed@example.com"], "Reset your tracker password"),
    ]
    reset = inbox.envelopes[1][2].get_content()
    assert "http://tracker.test/password/reset/" in reset
    with app.app_context():
        assert mailqueue.pending() == 0  # the unknown email's request is gone, unsent


@dataclass
class PickyInbox(Inbox):
    """An SMTP server that refuses some recipients: ``gone@`` for good (550),
    ``busy@`` for now (450)."""

    async def handle_RCPT(
        self, server: t.Any, session: t.Any, envelope: t.Any, address: str, options: t.Any
    ) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 No such mailbox"
        if address.startswith("busy@"):
            return "450 4.2.1 Mailbox busy, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def test_a_mail_refused_for_good_is_dropped_and_one_refused_for_now_is_retried(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    inbox = PickyInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    app = smtp_app(tmp_path, port)
    try:
        with app.app_context():
            db.create_all()
            mailqueue.queue(
                mail.message("gone@example.com", "Hi", "Hello\n"),
                mail.message("busy@example.com", "Hi", "Hello\n"),
                mail.message("ann@example.com", "Hi", "Hello\n"),
            )
            db.session.commit()
            done = mailqueue.deliver()
            assert (done.sent, done.failed, done.rejected, done.error) == (1, 1, 1, None)
            rows = db.session.scalars(sa.select(QueuedMail)).all()
            assert [(r.recipient, r.attempts) for r in rows] == [("busy@example.com", 1)]
            assert "450" in (rows[0].last_error or "")
    finally:
        controller.stop()
    assert [rcpt for _, rcpt, _ in inbox.envelopes] == [["ann@example.com"]]
    assert "to gone@example.com rejected for good, not retried" in caplog.text
    assert "to busy@example.com not sent (attempt 1, next in 10 s)" in caplog.text


def test_only_replies_in_the_5xx_class_are_permanent() -> None:
    import smtplib

    def refused(*codes: int) -> smtplib.SMTPRecipientsRefused:
        return smtplib.SMTPRecipientsRefused({f"r{c}@x": (c, b"no") for c in codes})

    assert mailqueue.is_permanent(refused(550))
    assert mailqueue.is_permanent(refused(550, 553))
    assert not mailqueue.is_permanent(refused(550, 450))  # one may still arrive
    assert not mailqueue.is_permanent(refused(421))
    assert not mailqueue.is_permanent(refused())
    assert mailqueue.is_permanent(smtplib.SMTPDataError(554, b"rejected"))
    assert not mailqueue.is_permanent(smtplib.SMTPDataError(451, b"try later"))
    assert mailqueue.is_permanent(smtplib.SMTPSenderRefused(553, b"no", "a@b"))
    assert not mailqueue.is_permanent(smtplib.SMTPSenderRefused(600, b"?", "a@b"))


def test_mail_queued_in_a_transaction_that_rolls_back_is_not_sent(
    app: t.Any, outbox: list[t.Any]
) -> None:
    with app.app_context():
        mailqueue.queue(mail.message("ann@example.com", "Hi", "Hello\n"))
        db.session.rollback()
        mailqueue.queue(mail.message("bob@example.com", "Hi", "Hello\n"))
        db.session.commit()
    assert [m.to for m in outbox] == [["bob@example.com"]]


def test_a_row_another_delivery_claimed_waits_until_its_claim_runs_out(
    app: t.Any, outbox: list[t.Any]
) -> None:
    with app.app_context():
        mailqueue.queue(mail.message("ann@example.com", "Hi", "Hello\n"))
        db.session.commit()
        # A delivery claimed it, then its process died before sending.
        db.session.execute(
            sa.update(QueuedMail).values(
                claim="a" * 32, next_attempt_at=utcnow() + dt.timedelta(seconds=60)
            )
        )
        db.session.commit()
        assert mailqueue.deliver() == mailqueue.Delivery()
        db.session.execute(sa.update(QueuedMail).values(next_attempt_at=utcnow()))
        db.session.commit()
    assert [m.to for m in outbox] == [["ann@example.com"]]


@pytest.mark.postgres
def test_two_deliveries_at_once_on_postgresql_send_each_mail_once(postgres_url: str) -> None:
    with fresh_database(postgres_url, "tracker_mail_queue") as url:
        app = create_app(
            {
                "TESTING": True,
                "SECRET_KEY": "mail-test",
                "DATABASE_URL": url,
                "MAIL_BACKEND": "locmem",
            }
        )
        recipients = [f"user{n}@example.com" for n in range(40)]
        with app.app_context():
            db.create_all()
            mailqueue.queue(*(mail.message(to, "Hi", "Hello\n") for to in recipients))
            db.session.commit()
        app.extensions["mailman"].outbox = []
        start = threading.Barrier(2)
        results: list[mailqueue.Delivery] = []

        def delivery() -> None:
            with app.app_context():
                start.wait()
                results.append(mailqueue.deliver())
                db.session.remove()

        threads = [threading.Thread(target=delivery) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        sent = [m.to[0] for m in app.extensions["mailman"].outbox]
        assert sorted(sent) == sorted(recipients)  # each once, whoever sent it
        assert sum(r.sent for r in results) == 40
        with app.app_context():
            assert mailqueue.pending() == 0
            db.engine.dispose()


def test_the_retries_back_off_to_an_hour() -> None:
    assert [mailqueue.backoff(n).total_seconds() for n in (1, 2, 3, 9, 10, 50)] == [
        10,
        20,
        40,
        2560,
        3600,
        3600,
    ]


def test_the_locmem_backend_keeps_the_mail_for_tests(app: t.Any, outbox: list[t.Any]) -> None:
    with app.app_context():
        assert mail.send(mail.message("ann@example.com", "Hi", "Hello\n")) == 1
    assert [(m.to, m.subject, m.from_email) for m in outbox] == [
        (["ann@example.com"], "Hi", "tracker@localhost")
    ]


def test_starttls_and_tls_from_the_start_exclude_each_other(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAIL_USE_TLS and MAIL_USE_SSL exclude each other"):
        smtp_app(tmp_path, 587, MAIL_USE_TLS=True, MAIL_USE_SSL=True)


def test_the_file_backend_needs_a_folder(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAIL_BACKEND=file needs MAIL_FILE_PATH"):
        smtp_app(tmp_path, 25, MAIL_BACKEND="file")


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="MAIL_BACKEND"):
        smtp_app(tmp_path, 25, MAIL_BACKEND="carrier-pigeon")
