"""Dates as the pages show them: relative ("3 hours ago") in the text, the
exact time with its time zone in the ``title`` (a tooltip) and in the
``datetime`` attribute of a ``<time>`` element.

Times are stored and shown in UTC, said as such: the server does not know
the reader's zone, and a time without one is a guess.
"""

from __future__ import annotations

import datetime as dt

from markupsafe import Markup

from karaffe.auth import utcnow

__all__ = ["absolute", "relative", "time_tag"]

_UNITS = (
    (365 * 86400, "year"),
    (30 * 86400, "month"),
    (7 * 86400, "week"),
    (86400, "day"),
    (3600, "hour"),
    (60, "minute"),
)


def absolute(value: dt.datetime) -> str:
    """``"1 Dec 2026, 21:30 UTC"``."""
    value = value.astimezone(dt.UTC)
    return f"{value.day} {value:%b %Y, %H:%M} UTC"


def relative(value: dt.datetime, now: dt.datetime | None = None) -> str:
    """``"just now"``, ``"5 minutes ago"``, ``"yesterday"``, ``"3 weeks
    ago"``... (``"in 2 hours"`` for a time ahead of ``now``)."""
    now = now or utcnow()
    seconds = int((now - value).total_seconds())
    ahead = seconds < 0
    seconds = abs(seconds)
    if seconds < 45:
        return "just now"
    for size, unit in _UNITS:
        count = seconds // size
        if count >= 1:
            if unit == "day" and count == 1:
                return "tomorrow" if ahead else "yesterday"
            words = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {words}" if ahead else f"{words} ago"
    return "just now"


def time_tag(value: dt.datetime | None) -> Markup:
    """``<time datetime="..." title="1 Dec 2026, 21:30 UTC">3 hours ago</time>``."""
    if value is None:
        return Markup("")
    # Every part is made here from the datetime (digits, month and unit
    # names, ``:+-,``): nothing to escape, and a list page has one per row.
    utc = value.astimezone(dt.UTC)
    return Markup(
        f'<time datetime="{utc.isoformat(timespec="seconds")}"'
        f' title="{utc.day} {utc:%b %Y, %H:%M} UTC">{relative(value)}</time>'
    )
