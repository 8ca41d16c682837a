"""The tracker's own settings (environment: ``TRACKER_<KEY>`` or ``KARAFFE_<KEY>``)."""

from __future__ import annotations

import typing as t

from pydantic import Field

from karaffe import Settings
from karaffe.config import PositiveInt

__all__ = ["TrackerSettings"]


class TrackerSettings(Settings):
    """What the tracker's pages and jobs read from the configuration."""

    title: t.ClassVar[str] = "tracker"

    invitation_days: PositiveInt = 7
    """Days an invitation link works."""

    issues_per_page: PositiveInt = 50
    """Issues per page of the HTML issue list."""

    mail_backend: t.Literal["smtp", "console", "file", "locmem", "dummy"] = "smtp"
    """Where mail goes (Flask-Mailman's backends): smtp (production), console
    (standard output: the demo), file (one file per message in MAIL_FILE_PATH),
    locmem (a list in memory: tests) or dummy (nowhere)."""

    mail_from: str = "tracker@localhost"
    """Sender of the tracker's mail."""

    mail_server: str = "localhost"
    """The SMTP server's host name."""

    mail_port: PositiveInt = 25
    """The SMTP server's port (587 for STARTTLS submission, 465 for TLS)."""

    mail_username: str | None = None
    """The SMTP login, if the server wants one."""

    mail_password: str | None = None
    """The SMTP password of MAIL_USERNAME."""

    mail_use_tls: bool = False
    """Upgrade the SMTP connection with STARTTLS (port 587)."""

    mail_use_ssl: bool = False
    """Connect to the SMTP server over TLS from the start (port 465); not with MAIL_USE_TLS."""

    mail_timeout: PositiveInt = 10
    """Seconds to wait for the SMTP server before giving up on a message."""

    mail_file_path: str | None = None
    """The folder of the file backend."""

    password_reset_minutes: PositiveInt = 60
    """Minutes a password reset link works (it also dies once used)."""

    email_verification_days: PositiveInt = 7
    """Days an email verification link works."""

    max_reset_requests_per_account: PositiveInt = 3
    """Password reset mails for one email address within LOGIN_THROTTLE_WINDOW before 429."""

    max_reset_requests_per_address: PositiveInt = 20
    """Password reset requests from one client address within LOGIN_THROTTLE_WINDOW before 429."""

    purge_after_days: t.Annotated[int, Field(ge=0)] = 7
    """Days expired or revoked API tokens, expired invitations and ended login sessions
    stay before purging."""

    event_history_days: t.Annotated[int, Field(ge=0)] = 7
    """Days of live-update history kept for clients that reconnect."""
