"""Ticks of cron expressions and the missed-tick policy (I/O free)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from _jobtools import at

from karaffe.jobs.schedule import Action, Decision, Missed, Schedule, decide

GRACE = timedelta(seconds=60)
DAILY = Schedule("0 7 * * *")


def test_latest_tick_is_now_when_now_is_a_tick() -> None:
    assert DAILY.latest(at("2026-01-05 07:00")) == at("2026-01-05 07:00")


def test_latest_tick_between_ticks_is_the_previous_one() -> None:
    assert DAILY.latest(at("2026-01-05 06:59:59")) == at("2026-01-04 07:00")
    assert Schedule("*/5 * * * *").latest(at("2026-01-05 07:04:59")) == at("2026-01-05 07:00")


def test_next_tick_is_strictly_after_now() -> None:
    assert DAILY.next(at("2026-01-05 07:00")) == at("2026-01-06 07:00")
    assert DAILY.next(at("2026-01-05 06:00")) == at("2026-01-05 07:00")


def test_six_fields_schedule_seconds() -> None:
    every_ten_seconds = Schedule("* * * * * */10")
    assert every_ten_seconds.latest(at("2026-01-05 07:00:25")) == at("2026-01-05 07:00:20")


def test_schedule_follows_its_time_zone_through_daylight_saving() -> None:
    vienna = Schedule("0 7 * * *", "Europe/Vienna")
    assert vienna.next(at("2026-01-05 00:00")) == at("2026-01-05 06:00")
    assert vienna.next(at("2026-07-05 00:00")) == at("2026-07-05 05:00")


def test_count_between_counts_ticks_strictly_inside() -> None:
    hourly = Schedule("0 * * * *")
    assert hourly.count_between(at("2026-01-05 07:00"), at("2026-01-05 10:00")) == 2
    assert hourly.count_between(at("2026-01-05 07:00"), at("2026-01-05 08:00")) == 0


@pytest.mark.parametrize(
    ("expression", "timezone", "message"),
    [
        ("every day", "UTC", "invalid cron expression 'every day'"),
        ("0 7 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ],
)
def test_bad_schedules_are_refused(expression: str, timezone: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        Schedule(expression, timezone)
    assert str(info.value) == message


def run_decision(now: str, last: str | None, missed: Missed = Missed.SKIP) -> Decision | None:
    return decide(
        DAILY, now=at(now), last_tick=at(last) if last else None, missed=missed, grace=GRACE
    )


def test_a_job_that_never_ran_runs_its_tick_on_time() -> None:
    assert run_decision("2026-01-05 07:00:30", None) == Decision(Action.RUN, at("2026-01-05 07:00"))


@pytest.mark.parametrize("missed", list(Missed))
def test_a_job_that_never_ran_has_missed_nothing_and_waits_for_its_next_tick(
    missed: Missed,
) -> None:
    assert run_decision("2026-01-05 09:00", None, missed) is None


def test_a_claimed_tick_is_not_due_again() -> None:
    assert run_decision("2026-01-05 07:00:30", "2026-01-05 07:00") is None


def test_a_tick_older_than_the_last_claimed_is_not_due() -> None:
    assert run_decision("2026-01-05 07:00:30", "2026-01-06 07:00") is None


def test_the_next_tick_on_time_runs() -> None:
    assert run_decision("2026-01-05 07:00:01", "2026-01-04 07:00") == Decision(
        Action.RUN, at("2026-01-05 07:00")
    )


def test_a_tick_on_time_after_downtime_runs_and_counts_what_was_missed() -> None:
    decision = run_decision("2026-01-05 07:00:10", "2026-01-02 07:00", Missed.SKIP)
    assert decision == Decision(Action.RUN, at("2026-01-05 07:00"), missed=2)


def test_a_late_tick_is_recorded_as_skipped_under_skip() -> None:
    decision = run_decision("2026-01-05 09:30", "2026-01-03 07:00", Missed.SKIP)
    assert decision == Decision(Action.SKIP, at("2026-01-05 07:00"), missed=1)
    assert decision.reason == "missed: 2 tick(s) passed while no scheduler ran"


def test_a_late_tick_runs_once_under_catch_up() -> None:
    decision = run_decision("2026-01-05 09:30", "2026-01-01 07:00", Missed.CATCH_UP)
    assert decision == Decision(Action.RUN, at("2026-01-05 07:00"), missed=3)
    assert decision.reason is None


def test_a_late_tick_just_inside_the_grace_is_on_time() -> None:
    decision = run_decision("2026-01-05 07:01", "2026-01-04 07:00", Missed.SKIP)
    assert decision is not None and decision.action is Action.RUN
    late = run_decision("2026-01-05 07:01:00.000001", "2026-01-04 07:00", Missed.SKIP)
    assert late is not None and late.action is Action.SKIP


def test_counting_missed_ticks_stops_at_a_bound() -> None:
    every_second = Schedule("* * * * * *")
    assert every_second.count_between(at("2026-01-01 00:00"), at("2026-02-01 00:00")) == 10_000
