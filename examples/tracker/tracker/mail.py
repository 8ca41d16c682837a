"""The tracker's mail, through Flask-Mailman: the one way it sends any.

The backend and the SMTP server come from :class:`~tracker.settings.TrackerSettings`
(``MAIL_BACKEND``, ``MAIL_SERVER``...), read once when the app is built:
``smtp`` in production, ``console`` in the demo (``make demo``), ``locmem``
in the tests (the messages land in ``app.extensions["mailman"].outbox``)::

    send(message(user.email, "Reset your password", body))

Every message the tracker sends is plain text, built by :func:`message` and
sent by :func:`send`; a message that cannot be sent (the SMTP server is down)
raises :class:`MailError`. Requests never send: they queue their mail in
their transaction (:mod:`tracker.mailqueue`) and a job sends it, retrying
while the server is down.
"""

from __future__ import annotations

import typing as t

from flask import Flask
from flask_mailman import EmailMessage, Mail

from karaffe.config import ConfigError

from .settings import TrackerSettings

__all__ = ["MailError", "TrackerMail", "init_app", "message", "send"]


class MailError(Exception):
    """A message could not be handed to the mail backend."""


class TrackerMail(Mail):  # type: ignore[misc]
    """Flask-Mailman configured from the typed settings rather than from
    whatever ``app.config`` holds."""

    def init_app(self, app: Flask) -> t.Any:
        settings = TrackerSettings.of(app)
        if settings.mail_use_tls and settings.mail_use_ssl:
            raise ConfigError(
                "settings MAIL_USE_TLS and MAIL_USE_SSL exclude each other: STARTTLS on 587 "
                "or TLS from the start on 465"
            )
        if settings.mail_backend == "file" and not settings.mail_file_path:
            raise ConfigError("setting MAIL_BACKEND=file needs MAIL_FILE_PATH, a folder")
        state = self.init_mail(
            {
                "MAIL_BACKEND": settings.mail_backend,
                "MAIL_SERVER": settings.mail_server,
                "MAIL_PORT": settings.mail_port,
                "MAIL_USERNAME": settings.mail_username,
                "MAIL_PASSWORD": settings.mail_password,
                "MAIL_USE_TLS": settings.mail_use_tls,
                "MAIL_USE_SSL": settings.mail_use_ssl,
                "MAIL_TIMEOUT": settings.mail_timeout,
                "MAIL_FILE_PATH": settings.mail_file_path,
                "MAIL_DEFAULT_SENDER": settings.mail_from,
            },
            app.testing,
        )
        app.extensions["mailman"] = state
        return state


#: The extension; :func:`init_app` installs it on an app.
mail = TrackerMail()


def init_app(app: Flask) -> None:
    mail.init_app(app)


def message(to: str, subject: str, body: str) -> EmailMessage:
    """A plain-text message from ``MAIL_FROM`` to ``to``."""
    return EmailMessage(
        subject=subject, body=body, from_email=TrackerSettings.of().mail_from, to=[to]
    )


def send(*messages: EmailMessage) -> int:
    """Hand ``messages`` to the configured backend over one connection; how
    many were sent.

    :raises MailError: the backend failed (an SMTP server that is down,
        refuses the login or the recipient).
    """
    if not messages:
        return 0
    connection = mail.get_connection()
    try:
        return int(connection.send_messages(list(messages)) or 0)
    except Exception as exc:  # smtplib's, socket's and ssl's errors alike
        raise MailError(f"{type(exc).__name__}: {exc}") from exc
