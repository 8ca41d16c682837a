"""Helpers shared by the jobs tests (a module name no other test folder uses)."""

from __future__ import annotations

import typing as t
from datetime import UTC, datetime, timedelta

from karaffe.jobs import Backend


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


def race_in_process(
    url: str, name: str, start: datetime, steps: int, barrier: t.Any, results: t.Any
) -> None:
    """One scheduler process of a race: polls at the same simulated instants
    as its rivals (meeting them at ``barrier`` before each poll) and reports
    the ticks it ran on ``results``."""
    import karaffe
    import karaffe.jobs
    from karaffe.jobs import Scheduler, current_run, get_job, job

    ran: list[str] = []

    # Overlap allowed: only the tick claim may keep a tick from running twice.
    @job(schedule="* * * * *", name=name, overlap=True)
    def every_minute() -> None:
        tick = current_run().tick
        assert tick is not None
        ran.append(tick.isoformat())

    app = karaffe.App("karaffe_jobs_race")
    karaffe.jobs.init_app(app)
    app.configure({"TESTING": True, "SECRET_KEY": "s", "JOBS_BACKEND": url}, environ={})
    declared = get_job(every_minute)
    assert declared is not None
    scheduler = Scheduler(app, jobs=[declared])
    try:
        for step in range(steps):
            barrier.wait(timeout=60)
            for run in scheduler.run_pending(start + step * timedelta(seconds=15)):
                run.result(timeout=60)
    finally:
        scheduler.close()
        scheduler.backend.close()
    results.put(ran)


#: A factory module for throwaway packages: ``create_app(config)``.
FACTORY = """
import karaffe
import karaffe.jobs


def create_app(config=None):
    app = karaffe.App(__name__)
    karaffe.jobs.init_app(app)
    app.configure({"TESTING": True, "SECRET_KEY": "jobs-secret", "JOBS_BACKEND": "memory://",
                   **(config or {})})
    return app
"""

#: Makes backend instances sharing one store (the ``backends`` fixture).
BackendFactory = t.Callable[[], Backend]


def drop_runs_table(url: str) -> None:
    """Leave a shared test database as found: other tests expect only their
    own tables there."""
    from karaffe.jobs import SqlBackend

    backend = SqlBackend(url)
    try:
        with backend.engine.begin() as conn:
            backend.table.drop(conn, checkfirst=True)
    finally:
        backend.close()
