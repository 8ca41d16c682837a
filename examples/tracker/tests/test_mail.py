"""The tracker's mail goes through Flask-Mailman, configured by the typed
settings: a real SMTP server (aiosmtpd, started here on a free 127.0.0.1
port) receives what the SMTP backend sends; a server that is down is an
error the caller can log; contradictory settings are refused at start-up."""

from __future__ import annotations

import email
import email.policy
import typing as t
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from tracker import create_app, mail

from karaffe._servers import free_port
from karaffe.config import ConfigError


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


def test_a_smtp_server_that_is_down_is_a_mail_error_that_send_or_log_survives(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = smtp_app(tmp_path, free_port())  # nothing listens there
    with app.app_context():
        with pytest.raises(mail.MailError, match="ConnectionRefusedError"):
            mail.send(mail.message("ann@example.com", "Hi", "Hello\n"))
        assert mail.send_or_log(mail.message("ann@example.com", "Hi", "Hello\n")) is False
    assert "mail to [['ann@example.com']] not sent" in caplog.text


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
