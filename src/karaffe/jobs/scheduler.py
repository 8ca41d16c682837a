"""The scheduler: runs every due tick of an app's jobs, exactly once across
all the schedulers sharing a backend.

Each poll, for every scheduled job, the scheduler asks
:func:`~karaffe.jobs.schedule.decide` what is due and, when something is,
claims the tick in the backend (:meth:`~karaffe.jobs.backends.Backend.claim`).
Only the scheduler whose claim succeeds runs the tick, in a worker thread,
and renews the run's lease on every poll until it ends. Start as many
schedulers as you like, on as many machines: they only ever add availability.

Time comes from ``clock``, so tests drive a scheduler through days of ticks
without sleeping.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import typing as t
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_for
from dataclasses import dataclass
from datetime import datetime

from flask import Flask

from .backends import FAILED, SUCCEEDED, Backend, Claim, RunRecord
from .extension import JobsSettings, get_jobs
from .registry import Job
from .runner import JobRunner, RunResult
from .schedule import Action, decide, utcnow

__all__ = ["ScheduledRun", "Scheduler"]

log = logging.getLogger("karaffe.jobs")


@dataclass(frozen=True)
class ScheduledRun:
    """A tick this scheduler claimed: running (``future`` gives the
    :class:`RunRecord` once done) or recorded as skipped (``future`` is None)."""

    job: Job
    claim: Claim
    future: Future[RunRecord] | None

    @property
    def tick(self) -> datetime:
        return self.claim.record.tick

    def result(self, timeout: float | None = None) -> RunRecord:
        """The final record: waits for a running tick to end."""
        return self.claim.record if self.future is None else self.future.result(timeout)


class Scheduler:
    """Runs the scheduled jobs of ``app``.

    :param jobs: the jobs to schedule; by default the app's scheduled jobs.
    :param backend: where ticks are claimed; by default the app's backend.
    :param clock: returns the current aware UTC time.
    :param host: names this scheduler in run records (host name and PID).
    :param max_workers: jobs run at the same time (``JOBS_MAX_WORKERS``).
    """

    #: Runs each job; replace it to change logging or what surrounds a call.
    runner_class: type[JobRunner] = JobRunner

    def __init__(
        self,
        app: Flask,
        *,
        jobs: Iterable[Job] | None = None,
        backend: Backend | None = None,
        clock: Callable[[], datetime] = utcnow,
        host: str | None = None,
        max_workers: int | None = None,
    ) -> None:
        self.app = app
        self.state = get_jobs(app)
        self.jobs = list(self.state.scheduled() if jobs is None else jobs)
        self.backend = backend or self.state.backend
        self.clock = clock
        self.host = host or f"{socket.gethostname()}:{os.getpid()}"
        self.runner = self.runner_class(app, clock=clock)
        workers = max_workers or JobsSettings.of(app).jobs_max_workers
        self.executor = ThreadPoolExecutor(workers, thread_name_prefix="karaffe-job")
        self._lock = threading.Lock()
        self._active: dict[str, tuple[Job, Claim]] = {}
        self._futures: set[Future[RunRecord]] = set()
        # The latest candidate tick already dealt with per job: until the
        # next tick comes, there is no need to ask the backend again.
        self._considered: dict[str, datetime] = {}

    def pending(self, now: datetime) -> list[tuple[Job, Action, datetime, str | None]]:
        """What is due at ``now``: (job, run or skip, tick, reason) per job."""
        due = []
        for job in self.jobs:
            schedule = self.state.schedule_of(job)
            if schedule is None:
                continue
            candidate = schedule.latest(now)
            if self._considered.get(job.name) == candidate:
                continue
            decision = decide(
                schedule,
                now=now,
                last_tick=self.backend.last_tick(job.name),
                missed=job.missed,
                grace=self.state.grace(job),
            )
            if decision is None:
                self._considered[job.name] = candidate
                continue
            if decision.missed and decision.action is Action.RUN:
                log.warning(
                    "job %s: %d tick(s) missed before %s; running once (missed=%s)",
                    job.name, decision.missed, decision.tick.isoformat(), job.missed.value,
                )  # fmt: skip
            due.append((job, decision.action, decision.tick, decision.reason))
        return due

    def run_pending(self, now: datetime | None = None) -> list[ScheduledRun]:
        """Claim every due tick and start the ones this scheduler won.
        Returns the ticks claimed here; the runs go on in worker threads."""
        now = self.clock() if now is None else now
        self.renew_leases(now)
        claimed = []
        for job, action, tick, reason in self.pending(now):
            claim = self.backend.claim(
                job.name,
                tick,
                now=now,
                lease=self.state.lease(job),
                exclusive=not job.overlap,
                skip_reason=reason if action is Action.SKIP else None,
                host=self.host,
            )
            self._considered[job.name] = tick
            if claim is None:
                continue
            if not claim.runs:
                log.warning(
                    "job %s: tick %s skipped (%s)", job.name, tick.isoformat(), claim.record.reason
                )
                claimed.append(ScheduledRun(job, claim, None))
                continue
            with self._lock:
                self._active[claim.token] = (job, claim)
                future = self.executor.submit(self._execute, job, claim)
                self._futures.add(future)
            future.add_done_callback(self._forget)
            claimed.append(ScheduledRun(job, claim, future))
        return claimed

    def _forget(self, future: Future[RunRecord]) -> None:
        with self._lock:
            self._futures.discard(future)

    def _execute(self, job: Job, claim: Claim) -> RunRecord:
        result: RunResult | None = None
        try:
            result = self.runner.run(job, tick=claim.record.tick)
        finally:
            status = SUCCEEDED if result is not None and result.ok else FAILED
            error = "interrupted" if result is None else result.error
            try:
                record = self.backend.finish(claim, now=self.clock(), status=status, error=error)
            except Exception:
                log.exception(
                    "job %s: could not record the end of tick %s; its lease will expire",
                    job.name, claim.record.tick.isoformat(),
                )  # fmt: skip
                raise
            finally:
                with self._lock:
                    self._active.pop(claim.token, None)
        return record

    def renew_leases(self, now: datetime | None = None) -> None:
        """Extend the lease of every run still going in this process."""
        now = self.clock() if now is None else now
        with self._lock:
            active = list(self._active.values())
        for job, claim in active:
            if not self.backend.renew(claim, now=now, lease=self.state.lease(job)):
                log.error(
                    "job %s: lost the lease of tick %s; another run may start",
                    job.name, claim.record.tick.isoformat(),
                )  # fmt: skip

    def wait(self, timeout: float | None = None) -> None:
        """Wait for the runs started so far to end."""
        with self._lock:
            futures = list(self._futures)
        wait_for(futures, timeout)

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Poll every ``JOBS_POLL_SECONDS`` until ``stop`` is set; then wait
        for the running jobs to end."""
        stop = stop or threading.Event()
        interval = JobsSettings.of(self.app).jobs_poll_seconds
        names = ", ".join(job.name for job in self.jobs) or "none"
        log.info("scheduler %s started; jobs: %s", self.host, names)
        while not stop.is_set():
            try:
                self.run_pending()
            except Exception:
                log.exception("scheduler poll failed; retrying in %ss", interval)
            stop.wait(interval)
        log.info("scheduler %s stopping; waiting for running jobs", self.host)
        self.close()

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, let running jobs finish,
        renewing their leases meanwhile."""
        if wait:
            interval = JobsSettings.of(self.app).jobs_poll_seconds
            while True:
                with self._lock:
                    futures = list(self._futures)
                if not futures:
                    break
                wait_for(futures, timeout=interval)
                self.renew_leases()
        self.executor.shutdown(wait=wait)

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()
