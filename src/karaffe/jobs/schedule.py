"""When a job is due: cron expressions and the missed-tick policy, free of I/O.

A *tick* is one instant a cron expression names (``07:00`` every day for
``"0 7 * * *"``). The scheduler asks :func:`decide` what to do about a job at
``now`` given the latest tick anyone has claimed for it; the answer depends
only on its arguments, so it is tested without a clock, a database or threads.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter

__all__ = ["Action", "Decision", "Missed", "Schedule", "decide", "utc", "utcnow"]

#: Stop counting missed ticks here: a ``* * * * *`` job down for a year would
#: otherwise cost half a million iterations to report "many".
MAX_COUNTED_MISSES = 10_000


def utcnow() -> datetime:
    """The default clock: an aware UTC datetime."""
    return datetime.now(UTC)


def utc(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; a naive value is taken to be UTC."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Missed(enum.StrEnum):
    """What a job does about ticks that passed while no scheduler ran it."""

    #: Drop them; the job next runs at its next tick on time.
    SKIP = "skip"
    #: Run once as soon as a scheduler is back, however many ticks were missed.
    CATCH_UP = "catch_up"


class Action(enum.StrEnum):
    RUN = "run"
    #: Record the tick as skipped, so that it is consumed exactly once too.
    SKIP = "skip"


@dataclass(frozen=True)
class Decision:
    """What to do about one job now: claim ``tick`` to run it, or to record
    it as skipped. ``missed`` counts the earlier ticks nobody ran."""

    action: Action
    tick: datetime
    missed: int = 0

    @property
    def reason(self) -> str | None:
        if self.action is Action.SKIP:
            return f"missed: {self.missed + 1} tick(s) passed while no scheduler ran"
        return None


class Schedule:
    """A cron expression (five fields, or six with seconds) in a time zone.

    Ticks come back as aware UTC datetimes; the expression is read in
    ``timezone`` so ``"0 7 * * *"`` in ``Europe/Vienna`` follows daylight saving.
    """

    def __init__(self, expression: str, timezone: str | tzinfo = "UTC") -> None:
        if not croniter.is_valid(expression):
            raise ValueError(f"invalid cron expression {expression!r}")
        self.expression = expression
        if isinstance(timezone, str):
            try:
                timezone = ZoneInfo(timezone)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {timezone!r}") from None
        self.timezone: tzinfo = timezone

    def __repr__(self) -> str:
        return f"Schedule({self.expression!r}, {self.timezone!s})"

    def _iter(self, start: datetime) -> croniter:
        return croniter(self.expression, utc(start).astimezone(self.timezone))

    def latest(self, now: datetime) -> datetime:
        """The latest tick at or before ``now``."""
        before = self._iter(now).get_prev(datetime)
        after = self._iter(before).get_next(datetime)
        return utc(after if after <= now else before)

    def next(self, now: datetime) -> datetime:
        """The first tick strictly after ``now``."""
        return utc(self._iter(now).get_next(datetime))

    def count_between(self, start: datetime, end: datetime) -> int:
        """How many ticks lie strictly between ``start`` and ``end`` (capped
        at :data:`MAX_COUNTED_MISSES`)."""
        it = self._iter(start)
        count = 0
        while count < MAX_COUNTED_MISSES:
            if utc(it.get_next(datetime)) >= end:
                break
            count += 1
        return count


def decide(
    schedule: Schedule,
    *,
    now: datetime,
    last_tick: datetime | None,
    missed: Missed,
    grace: timedelta,
) -> Decision | None:
    """What a scheduler should do about a job at ``now``.

    The candidate is the latest tick at or before ``now``. Nothing is due when
    it was already claimed (``last_tick`` is at or after it). A tick is on time
    when ``now`` is within ``grace`` of it; a late tick runs under
    :attr:`Missed.CATCH_UP` (once, for all the missed ticks together) and is
    recorded as skipped under :attr:`Missed.SKIP`. A job that never ran has
    missed nothing: it starts at its first tick that is on time.
    """
    tick = schedule.latest(now)
    if last_tick is not None and utc(last_tick) >= tick:
        return None
    late = now - tick > grace
    if last_tick is None:
        return None if late else Decision(Action.RUN, tick)
    skipped = schedule.count_between(last_tick, tick)
    if not late:
        return Decision(Action.RUN, tick, missed=skipped)
    if missed is Missed.CATCH_UP:
        return Decision(Action.RUN, tick, missed=skipped)
    return Decision(Action.SKIP, tick, missed=skipped)
