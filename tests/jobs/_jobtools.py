"""Helpers shared by the jobs tests (a module name no other test folder uses)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta


class Clock:
    """A clock the test moves by hand: ``clock()`` is the current time."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> datetime:
        self.now += timedelta(**delta)
        return self.now

    def set(self, value: datetime) -> datetime:
        self.now = value
        return value


def at(text: str) -> datetime:
    """``at("2026-01-05 07:00")`` as an aware UTC datetime."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC)
