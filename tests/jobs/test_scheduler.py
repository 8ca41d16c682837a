"""The scheduler: due ticks run once, overruns are not started twice, missed
ticks follow the job's policy, and schedulers racing on real PostgreSQL and
Redis servers run every tick exactly once. Time is a controllable clock."""

from __future__ import annotations

import logging
import multiprocessing
import re
import threading
import typing as t
from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from _jobtools import Clock, at, drop_runs_table, race_in_process

import karaffe
from karaffe.jobs import Backend, Job, MemoryBackend, Scheduler, current_run, job
from karaffe.jobs.backends import FAILED, LATE_END_REASON, OVERLAP_REASON, SKIPPED, SUCCEEDED


def declared(func: Callable[..., t.Any], **options: t.Any) -> Job:
    job(**options)(func)
    found = func.__karaffe_job__  # type: ignore[attr-defined]
    assert isinstance(found, Job)
    return found


class Recorder:
    """A job function that records the tick of each call."""

    def __init__(self) -> None:
        self.ticks: list[datetime] = []
        self.lock = threading.Lock()
        self.__name__ = self.__qualname__ = "recorder"
        self.__module__ = __name__

    def __call__(self) -> None:
        with self.lock:
            tick = current_run().tick
            assert tick is not None
            self.ticks.append(tick)


@pytest.fixture
def scheduler_for(
    make_jobs_app: Callable[..., karaffe.App], clock: Clock
) -> t.Iterator[Callable[..., Scheduler]]:
    made: list[Scheduler] = []

    def make(
        *jobs: Job, backend: Backend | None = None, app: karaffe.App | None = None
    ) -> Scheduler:
        scheduler = Scheduler(
            app or make_jobs_app(), jobs=jobs, backend=backend or MemoryBackend(), clock=clock
        )
        made.append(scheduler)
        return scheduler

    yield make
    for scheduler in made:
        scheduler.close()


def run_all(scheduler: Scheduler, now: datetime | None = None) -> list[tuple[datetime, str]]:
    runs = scheduler.run_pending(now)
    return [(run.tick, run.result(timeout=10).status) for run in runs]


def test_a_due_tick_runs_once_however_often_the_scheduler_polls(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    recorder = Recorder()
    scheduler = scheduler_for(declared(recorder, schedule="0 7 * * *"))
    assert run_all(scheduler) == []
    clock.set(at("2026-01-05 07:00:00"))
    assert run_all(scheduler) == [(at("2026-01-05 07:00"), SUCCEEDED)]
    for _ in range(3):
        clock.advance(seconds=20)
        assert run_all(scheduler) == []
    assert recorder.ticks == [at("2026-01-05 07:00")]


def test_every_tick_runs_in_order_through_a_simulated_day(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    recorder = Recorder()
    scheduler = scheduler_for(declared(recorder, schedule="*/15 * * * *"))
    clock.set(at("2026-01-05 00:00:01"))
    while clock.now < at("2026-01-06 00:00"):
        run_all(scheduler)
        clock.advance(seconds=40)
    assert recorder.ticks == [at("2026-01-05 00:00") + timedelta(minutes=15 * i) for i in range(96)]


def test_an_overrunning_job_is_not_started_twice(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[datetime] = []

    def slow() -> None:
        tick = current_run().tick
        assert tick is not None
        calls.append(tick)
        started.set()
        assert release.wait(10)

    backend = MemoryBackend()
    first = scheduler_for(declared(slow, schedule="*/5 * * * *"), backend=backend)
    second = scheduler_for(declared(slow, schedule="*/5 * * * *"), backend=backend)
    clock.set(at("2026-01-05 07:00:01"))
    (running,) = first.run_pending()
    assert started.wait(10)
    clock.set(at("2026-01-05 07:04:59"))
    assert first.run_pending() == [] and second.run_pending() == []
    clock.set(at("2026-01-05 07:05:01"))
    (skipped,) = second.run_pending()
    assert (skipped.tick, skipped.result().status) == (at("2026-01-05 07:05"), SKIPPED)
    assert skipped.result().reason == OVERLAP_REASON
    release.set()
    assert running.result(timeout=10).status == SUCCEEDED
    clock.set(at("2026-01-05 07:10:00"))
    assert run_all(second) == [(at("2026-01-05 07:10"), SUCCEEDED)]
    assert calls == [at("2026-01-05 07:00"), at("2026-01-05 07:10")]


def test_a_running_job_keeps_its_lease_while_the_scheduler_polls(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    started, release = threading.Event(), threading.Event()
    calls: list[int] = []

    def slow() -> None:
        calls.append(1)
        started.set()
        assert release.wait(10)

    backend = MemoryBackend()
    slow_job = declared(slow, schedule="*/5 * * * *", lease=60)
    first = scheduler_for(slow_job, backend=backend)
    other = scheduler_for(slow_job, backend=backend)
    clock.set(at("2026-01-05 07:00:00"))
    (running,) = first.run_pending()
    try:
        assert started.wait(10)
        later: list[tuple[datetime, str]] = []
        # Twelve minutes of polls; only the renewals keep the 60 s lease alive.
        for _ in range(24):
            clock.advance(seconds=30)
            later += run_all(first) + run_all(other)
        assert later == [(at("2026-01-05 07:05"), SKIPPED), (at("2026-01-05 07:10"), SKIPPED)]
        assert calls == [1]
    finally:
        release.set()
    assert running.result(timeout=10).status == SUCCEEDED


def test_a_job_allowing_overlap_starts_while_the_previous_run_goes_on(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    release = threading.Event()
    count = threading.Semaphore(0)

    def slow() -> None:
        count.release()
        assert release.wait(10)

    scheduler = scheduler_for(declared(slow, schedule="*/5 * * * *", overlap=True))
    clock.set(at("2026-01-05 07:00:00"))
    first = scheduler.run_pending()
    clock.set(at("2026-01-05 07:05:00"))
    second = scheduler.run_pending()
    assert count.acquire(timeout=10) and count.acquire(timeout=10)
    release.set()
    assert [r.result(timeout=10).status for r in first + second] == [SUCCEEDED, SUCCEEDED]


def test_ticks_missed_during_downtime_are_skipped_under_skip(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    recorder = Recorder()
    backend = MemoryBackend()
    hourly = declared(recorder, schedule="0 * * * *", missed="skip")
    clock.set(at("2026-01-05 07:00:00"))
    assert run_all(scheduler_for(hourly, backend=backend)) == [(at("2026-01-05 07:00"), SUCCEEDED)]
    # Every scheduler was down from 07:30 to 10:20.
    clock.set(at("2026-01-05 10:20:00"))
    restarted = scheduler_for(hourly, backend=backend)
    assert run_all(restarted) == [(at("2026-01-05 10:00"), SKIPPED)]
    (record,) = backend.history(hourly.name, limit=1)
    assert record.reason == "missed: 3 tick(s) passed while no scheduler ran"
    clock.set(at("2026-01-05 10:40:00"))
    assert run_all(restarted) == []
    clock.set(at("2026-01-05 11:00:00"))
    assert run_all(restarted) == [(at("2026-01-05 11:00"), SUCCEEDED)]
    assert recorder.ticks == [at("2026-01-05 07:00"), at("2026-01-05 11:00")]


def test_ticks_missed_during_downtime_are_caught_up_once_under_catch_up(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    recorder = Recorder()
    backend = MemoryBackend()
    hourly = declared(recorder, schedule="0 * * * *", missed="catch_up")
    clock.set(at("2026-01-05 07:00:00"))
    run_all(scheduler_for(hourly, backend=backend))
    clock.set(at("2026-01-05 10:20:00"))
    restarted = scheduler_for(hourly, backend=backend)
    assert run_all(restarted) == [(at("2026-01-05 10:00"), SUCCEEDED)]
    clock.set(at("2026-01-05 10:50:00"))
    assert run_all(restarted) == []
    clock.set(at("2026-01-05 11:00:00"))
    assert run_all(restarted) == [(at("2026-01-05 11:00"), SUCCEEDED)]
    assert recorder.ticks == [
        at("2026-01-05 07:00"),
        at("2026-01-05 10:00"),
        at("2026-01-05 11:00"),
    ]


def test_a_failing_job_is_recorded_as_failed_and_the_next_tick_still_runs(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    def broken() -> None:
        raise RuntimeError("disk full")

    backend = MemoryBackend()
    scheduler = scheduler_for(declared(broken, schedule="*/5 * * * *"), backend=backend)
    clock.set(at("2026-01-05 07:00:00"))
    (run,) = scheduler.run_pending()
    record = run.result(timeout=10)
    assert (record.status, record.error) == (FAILED, "RuntimeError: disk full")
    clock.set(at("2026-01-05 07:05:00"))
    assert run_all(scheduler) == [(at("2026-01-05 07:05"), FAILED)]


def test_the_app_schedules_the_jobs_of_its_jobs_modules(
    make_jobs_app: Callable[..., karaffe.App],
    package: Callable[[dict[str, str]], str],
    clock: Clock,
) -> None:
    name = package(
        {
            "jobs.py": """
                from karaffe.jobs import job

                CALLS = []

                @job(schedule="0 7 * * *")
                def report():
                    CALLS.append("report")

                def helper():
                    pass
            """
        }
    )
    app = make_jobs_app({"JOBS_MODULES": [f"{name}.jobs"]})
    clock.set(at("2026-01-05 07:00:05"))
    with Scheduler(app, clock=clock) as scheduler:
        assert [j.name for j in scheduler.jobs] == [f"{name}.jobs.report"]
        assert run_all(scheduler) == [(at("2026-01-05 07:00"), SUCCEEDED)]
    import importlib

    assert importlib.import_module(f"{name}.jobs").CALLS == ["report"]


def race(schedulers: list[Scheduler], start: datetime, steps: int, step: timedelta) -> None:
    """Drive every scheduler through the same instants, in threads that
    meet at a barrier before each poll so that their claims collide."""
    barrier = threading.Barrier(len(schedulers))
    errors: list[BaseException] = []

    def drive(scheduler: Scheduler) -> None:
        try:
            for i in range(steps):
                barrier.wait(timeout=30)
                for run in scheduler.run_pending(start + i * step):
                    run.result(timeout=30)
        except BaseException as exc:
            errors.append(exc)
            barrier.abort()

    threads = [threading.Thread(target=drive, args=(s,)) for s in schedulers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_two_schedulers_racing_run_every_tick_exactly_once(
    server: str,
    request: pytest.FixtureRequest,
    make_jobs_app: Callable[..., karaffe.App],
    unique: str,
) -> None:
    url = request.getfixturevalue("postgres_url" if server == "postgres" else "redis_url")
    every_minute, every_five = Recorder(), Recorder()
    jobs = [
        declared(every_minute, schedule="* * * * *", name=f"{unique}.minutely", overlap=True),
        declared(every_five, schedule="*/5 * * * *", name=f"{unique}.five"),
    ]
    schedulers = [
        Scheduler(make_jobs_app({"JOBS_BACKEND": url}), jobs=jobs, host=f"machine-{i}")
        for i in range(2)
    ]
    start = at("2026-01-05 07:00:00")
    try:
        race(schedulers, start, steps=240, step=timedelta(seconds=15))
        history = schedulers[0].backend.history(f"{unique}.minutely", limit=60)
    finally:
        for scheduler in schedulers:
            scheduler.close()
            scheduler.backend.close()
        if server == "postgres":
            drop_runs_table(url)
    minutes = [start + timedelta(minutes=i) for i in range(60)]
    assert every_minute.ticks == minutes
    assert every_five.ticks == minutes[::5]
    assert sorted(r.tick for r in history) == minutes
    assert {r.status for r in history} == {SUCCEEDED}
    assert {r.host for r in history} <= {"machine-0", "machine-1"}


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ],
)
def test_two_scheduler_processes_racing_run_every_tick_exactly_once(
    server: str, request: pytest.FixtureRequest, unique: str
) -> None:
    url = request.getfixturevalue("postgres_url" if server == "postgres" else "redis_url")
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(2), context.Queue()
    start = at("2026-01-05 07:00:00")
    processes = [
        context.Process(
            target=race_in_process, args=(url, f"{unique}.proc", start, 120, barrier, results)
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    try:
        ran = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=30)
            if process.is_alive():
                process.kill()
        if server == "postgres":
            drop_runs_table(url)
    assert [p.exitcode for p in processes] == [0, 0]
    ticks = sorted(ran[0] + ran[1])
    assert ticks == [(start + timedelta(minutes=i)).isoformat() for i in range(30)]


def test_a_job_interrupted_by_a_base_exception_is_recorded_as_failed(
    scheduler_for: Callable[..., Scheduler], clock: Clock
) -> None:
    def leaves() -> None:
        raise SystemExit(3)

    backend = MemoryBackend()
    declared_job = declared(leaves, schedule="*/5 * * * *")
    scheduler = scheduler_for(declared_job, backend=backend)
    clock.set(at("2026-01-05 07:00:00"))
    (run,) = scheduler.run_pending()
    with pytest.raises(SystemExit):
        run.result(timeout=10)
    (record,) = backend.history(declared_job.name)
    assert (record.status, record.error) == (FAILED, "interrupted")
    clock.set(at("2026-01-05 07:05:00"))
    assert [r.claim.runs for r in scheduler.run_pending()] == [True]


# -- lost leases, abandoned runs, outages --------------------------------------------


@pytest.fixture(autouse=True)
def karaffe_jobs_logs() -> None:
    """Alembic's env.py (run by the migration tests) disables every logger
    its logging config does not name; these tests read karaffe.jobs's."""
    logging.getLogger("karaffe.jobs").disabled = False


def slow_job(lease: int = 60) -> tuple[Job, threading.Event, threading.Event]:
    started, release = threading.Event(), threading.Event()

    def slow() -> None:
        started.set()
        assert release.wait(10)

    return declared(slow, schedule="*/5 * * * *", lease=lease), started, release


def messages(caplog: pytest.LogCaptureFixture, text: str) -> list[str]:
    return [r.getMessage() for r in caplog.records if text in r.getMessage()]


def test_a_scheduler_stopped_past_its_lease_learns_it_lost_it_and_says_so_once(
    scheduler_for: Callable[..., Scheduler], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    declared_job, started, release = slow_job()
    backend = MemoryBackend()
    stopped, other = (
        scheduler_for(declared_job, backend=backend),
        scheduler_for(declared_job, backend=backend),
    )
    clock.set(at("2026-01-05 07:00:01"))
    (run,) = stopped.run_pending()
    assert started.wait(10)
    clock.set(at("2026-01-05 07:01:30"))  # "stopped" did not poll for 89 s
    assert other.run_pending() == []
    (abandoned,) = messages(caplog, "is abandoned")
    assert abandoned.startswith(
        f"job {declared_job.name}: the run of tick 2026-01-05T07:00:00+00:00 on "
    )
    assert abandoned.endswith(
        ": its lease ran out with no end recorded: its scheduler died or was stopped"
    )
    for _ in range(3):
        stopped.run_pending()
    (lost,) = messages(caplog, "lost the lease")
    assert (
        lost
        == f"job {declared_job.name}: lost the lease of tick 2026-01-05T07:00:00+00:00; another run may start meanwhile"
    )
    release.set()
    record = run.result(timeout=10)
    assert (record.status, record.reason) == (SUCCEEDED, LATE_END_REASON)
    assert backend.history(declared_job.name)[0].status == SUCCEEDED
    assert len(messages(caplog, "lost the lease")) == 1


def test_a_run_ending_before_its_scheduler_polls_again_still_reports_its_lost_lease(
    scheduler_for: Callable[..., Scheduler], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    declared_job, started, release = slow_job()
    backend = MemoryBackend()
    stopped, other = (
        scheduler_for(declared_job, backend=backend),
        scheduler_for(declared_job, backend=backend),
    )
    clock.set(at("2026-01-05 07:00:01"))
    (run,) = stopped.run_pending()
    assert started.wait(10)
    clock.set(at("2026-01-05 07:02:00"))
    other.run_pending()
    release.set()  # "stopped" resumes: its job ends before its next poll
    assert run.result(timeout=10).reason == LATE_END_REASON
    assert len(messages(caplog, "lost the lease")) == 1


class FlakyBackend(MemoryBackend):
    """A backend that can be taken down: every call raises ConnectionError."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.error: Exception = ConnectionError(
            "Error 111 connecting to 127.0.0.1:6379. Connection refused."
        )

    def _check(self) -> None:
        if self.down:
            raise self.error

    def claim(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        self._check()
        return super().claim(*args, **kwargs)

    def renew(self, *args: t.Any, **kwargs: t.Any) -> bool:
        self._check()
        return super().renew(*args, **kwargs)

    def finish(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        self._check()
        return super().finish(*args, **kwargs)

    def history(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        self._check()
        return super().history(*args, **kwargs)

    def abandon_expired(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
        self._check()
        return super().abandon_expired(*args, **kwargs)


def test_the_end_of_a_run_during_an_outage_is_recorded_when_the_backend_is_back(
    scheduler_for: Callable[..., Scheduler], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs")
    declared_job, started, release = slow_job()
    backend = FlakyBackend()
    scheduler = scheduler_for(declared_job, backend=backend)
    clock.set(at("2026-01-05 07:00:01"))
    (run,) = scheduler.run_pending()
    assert started.wait(10)
    backend.down = True
    clock.set(at("2026-01-05 07:00:30"))
    release.set()
    assert run.result(timeout=10).status == SUCCEEDED  # as it ended, though not recorded yet
    with pytest.raises(ConnectionError):
        scheduler.run_pending()
    backend.down = False
    clock.set(at("2026-01-05 07:00:50"))
    assert scheduler.run_pending() == []
    (record,) = backend.history(declared_job.name)
    assert (record.status, record.finished, record.reason) == (
        SUCCEEDED,
        at("2026-01-05 07:00:30"),
        None,
    )
    assert messages(caplog, "could not be recorded") == [
        f"job {declared_job.name}: tick 2026-01-05T07:00:00+00:00 succeeded, but that could not be "
        "recorded (ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused.); "
        "retrying at every poll"
    ]
    assert len(messages(caplog, "is recorded now")) == 1


@pytest.mark.parametrize("connection", [True, False], ids=["connection-error", "other-error"])
def test_an_outage_is_logged_when_it_starts_and_when_it_ends_not_at_every_poll(
    make_jobs_app: Callable[..., karaffe.App], caplog: pytest.LogCaptureFixture, connection: bool
) -> None:
    backend = FlakyBackend()
    if not connection:
        backend.error = ValueError("unexpected reply")
    app = make_jobs_app({"JOBS_POLL_SECONDS": 0.01})
    scheduler = Scheduler(app, jobs=[declared(Recorder(), schedule="* * * * *")], backend=backend)
    stop = threading.Event()
    thread = threading.Thread(target=scheduler.run_forever, args=(stop,))
    backend.down = True
    thread.start()
    try:
        assert poll_until(lambda: scheduler.outage.failures >= 10)
        backend.down = False
        assert poll_until(lambda: not scheduler.outage.down)
    finally:
        stop.set()
        thread.join(10)
    logged = [
        r for r in caplog.records if r.name == "karaffe.jobs" and "jobs backend" in r.getMessage()
    ]
    assert len(logged) == 2, [r.getMessage() for r in logged]
    start, end = logged
    if connection:
        assert start.getMessage() == (
            "the jobs backend is unavailable (polls retried every 0.01s): "
            "ConnectionError: Error 111 connecting to 127.0.0.1:6379. Connection refused."
        )
        assert start.exc_info is None
    else:
        assert (
            start.getMessage()
            == "the jobs backend fails (polls retried every 0.01s): ValueError: unexpected reply"
        )
        assert start.exc_info is not None  # maybe a bug: its traceback, once
    assert end.getMessage().startswith("the jobs backend is available again after ")
    assert re.search(r"s \(\d\d+ failures meanwhile\)$", end.getMessage())


def poll_until(condition: Callable[[], bool], timeout: float = 10) -> bool:
    deadline = threading.Event()
    for _ in range(int(timeout / 0.01)):
        if condition():
            return True
        deadline.wait(0.01)
    return condition()


def test_a_renewal_racing_the_end_of_a_run_is_no_lost_lease(
    scheduler_for: Callable[..., Scheduler], clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    schedulers: list[Scheduler] = []

    class RacingBackend(MemoryBackend):
        def finish(self, *args: t.Any, **kwargs: t.Any) -> t.Any:
            record = super().finish(*args, **kwargs)
            schedulers[0].renew_leases()  # the poll thread, just after the end was recorded
            return record

    scheduler = scheduler_for(declared(Recorder(), schedule="0 7 * * *"), backend=RacingBackend())
    schedulers.append(scheduler)
    clock.set(at("2026-01-05 07:00:00"))
    assert run_all(scheduler) == [(at("2026-01-05 07:00"), SUCCEEDED)]
    assert messages(caplog, "lost the lease") == []
