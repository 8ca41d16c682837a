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

    mail_backend: str = "console"
    """Where mail goes: console, file:DIRECTORY, or module:Class with send(message)."""

    mail_from: str = "tracker@localhost"
    """Sender of the tracker's mail."""

    purge_after_days: t.Annotated[int, Field(ge=0)] = 7
    """Days expired or revoked API tokens, expired invitations and ended login sessions
    stay before purging."""

    event_history_days: t.Annotated[int, Field(ge=0)] = 7
    """Days of live-update history kept for clients that reconnect."""
