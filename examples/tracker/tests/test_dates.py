"""Dates on the pages: relative in the text, exact with its zone in the tooltip."""

from __future__ import annotations

import datetime as dt

import pytest
from tracker.dates import absolute, relative, time_tag

NOW = dt.datetime(2026, 12, 1, 21, 30, tzinfo=dt.UTC)


@pytest.mark.parametrize(
    ("seconds_ago", "text"),
    [
        (10, "just now"),
        (60, "1 minute ago"),
        (3599, "59 minutes ago"),
        (3600, "1 hour ago"),
        (3 * 3600 + 59, "3 hours ago"),
        (86400, "yesterday"),
        (2 * 86400, "2 days ago"),
        (8 * 86400, "1 week ago"),
        (65 * 86400, "2 months ago"),
        (800 * 86400, "2 years ago"),
        (-2 * 3600, "in 2 hours"),
        (-86400, "tomorrow"),
    ],
)
def test_relative_dates_read_like_speech(seconds_ago, text):
    assert relative(NOW - dt.timedelta(seconds=seconds_ago), NOW) == text


def test_time_tag_carries_the_exact_time_and_its_zone():
    other_zone = NOW.astimezone(dt.timezone(dt.timedelta(hours=-5)))
    assert absolute(other_zone) == "1 Dec 2026, 21:30 UTC"
    tag = str(time_tag(NOW))
    assert tag.startswith(
        '<time datetime="2026-12-01T21:30:00+00:00" title="1 Dec 2026, 21:30 UTC">'
    )
    assert str(time_tag(None)) == ""
