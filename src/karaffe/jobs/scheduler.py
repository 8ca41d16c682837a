"""The scheduler: runs every due tick of an app's jobs, exactly once across
all the schedulers sharing a backend.

Each poll, for every scheduled job, the scheduler asks
:func:`~karaffe.jobs.schedule.decide` what is due and, when something is,
claims the tick in the backend (:meth:`~karaffe.jobs.backends.Backend.claim`).
Only the scheduler whose claim succeeds runs the tick, in a worker thread,
and renews the run's lease on every poll until it ends. Start as many
schedulers as you like, on as many machines: they only ever add availability.

Every poll also marks the runs whose lease ran out with no end recorded
(their scheduler died or was stopped) as abandoned, and logs each once; a
scheduler that finds it lost the lease of a run of its own logs that once.
When the backend cannot be reached, polls fail: the outage is logged when it
starts and when a poll succeeds again, not at every poll, and the end of a
run that could not be recorded meanwhile is recorded then.

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
from dataclasses import dataclass, replace
from datetime import datetime

from flask import Flask

from .._outage import OutageLog, describe
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
        # Runs of this process whose lease is renewed: going on, or ended
        # but not recorded yet (the backend was down).
        self._active: dict[str, tuple[Job, Claim]] = {}
        # Runs whose lease was lost (logged once, no longer renewed).
        self._lost: set[str] = set()
        # Runs whose end is being recorded: a renewal that fails now only
        # says that the run has ended.
        self._finishing: set[str] = set()
        # Ends to record once the backend is back: token -> (job, record).
        self._unrecorded: dict[str, tuple[Job, Claim, RunRecord]] = {}
        self._futures: set[Future[RunRecord]] = set()
        #: Logs an outage of the backend once when it starts and once when it ends.
        self.outage = OutageLog(log, "the jobs backend")
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
        """Renew the leases of this process's runs, record the ends that
        could not be recorded, mark expired runs abandoned, then claim every
        due tick and start the ones this scheduler won. Returns the ticks
        claimed here; the runs go on in worker threads."""
        now = self.clock() if now is None else now
        self.renew_leases(now)
        self.record_unrecorded()
        self.abandon_expired(now)
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
            ended = replace(claim.record, status=status, finished=self.clock(), error=error)
            record = self._record_end(job, claim, ended)
        return record

    def _record_end(self, job: Job, claim: Claim, ended: RunRecord) -> RunRecord:
        """Record how a run ended; if the backend cannot be reached, keep the
        run's lease and record its end at a later poll."""
        assert ended.finished is not None
        with self._lock:
            lost = claim.token in self._lost
        if not lost:
            # A run that ends before the next poll would never learn that it
            # lost its lease (its scheduler was stopped past it, say).
            try:
                held = self.backend.renew(claim, now=ended.finished, lease=self.state.lease(job))
            except Exception:
                held = True  # unknown: the backend is down, and finish will say so
            if not held:
                self._lease_lost(job, claim)
        with self._lock:
            self._finishing.add(claim.token)
        try:
            record = self.backend.finish(
                claim, now=ended.finished, status=ended.status, error=ended.error
            )
        except Exception as exc:
            with self._lock:
                self._finishing.discard(claim.token)
                first = claim.token not in self._unrecorded
                self._unrecorded[claim.token] = (job, claim, ended)
            if first:
                log.warning(
                    "job %s: tick %s %s, but that could not be recorded (%s); "
                    "retrying at every poll",
                    job.name, claim.record.tick.isoformat(), ended.status, describe(exc),
                )  # fmt: skip
            return ended
        self._forget_run(claim)
        return record

    def _forget_run(self, claim: Claim) -> None:
        with self._lock:
            for tokens in (self._unrecorded, self._active):
                tokens.pop(claim.token, None)
            self._lost.discard(claim.token)
            self._finishing.discard(claim.token)

    def record_unrecorded(self) -> None:
        """Record the ends of runs that could not be recorded when they
        ended (the backend was down); raises if it still cannot be reached."""
        with self._lock:
            pending = list(self._unrecorded.values())
        for job, claim, ended in pending:
            assert ended.finished is not None
            with self._lock:
                self._finishing.add(claim.token)
            try:
                self.backend.finish(
                    claim, now=ended.finished, status=ended.status, error=ended.error
                )
            except Exception:
                with self._lock:
                    self._finishing.discard(claim.token)
                raise
            log.info(
                "job %s: the end of tick %s (%s) is recorded now",
                job.name, claim.record.tick.isoformat(), ended.status,
            )  # fmt: skip
            self._forget_run(claim)

    def _lease_lost(self, job: Job, claim: Claim) -> None:
        with self._lock:
            if claim.token in self._lost:
                return
            self._lost.add(claim.token)
            running = claim.token not in self._unrecorded
        log.error(
            "job %s: lost the lease of tick %s; %s",
            job.name, claim.record.tick.isoformat(),
            "another run may start meanwhile" if running else "it has ended",
        )  # fmt: skip

    def renew_leases(self, now: datetime | None = None) -> None:
        """Extend the lease of every run still going in this process; a lease
        found lost is logged once and no longer renewed."""
        now = self.clock() if now is None else now
        with self._lock:
            skip = self._lost | self._finishing
            active = [item for token, item in self._active.items() if token not in skip]
        for job, claim in active:
            if not self.backend.renew(claim, now=now, lease=self.state.lease(job)):
                with self._lock:
                    # Its end was recorded meanwhile: the lease is released, not lost.
                    ended = claim.token in self._finishing or claim.token not in self._active
                if not ended:
                    self._lease_lost(job, claim)

    def abandon_expired(self, now: datetime | None = None) -> list[RunRecord]:
        """Mark the runs of this scheduler's jobs whose lease ran out with no
        end recorded as abandoned (whichever scheduler ran them); logs each."""
        now = self.clock() if now is None else now
        marked = self.backend.abandon_expired([job.name for job in self.jobs], now=now)
        for record in marked:
            log.warning(
                "job %s: the run of tick %s%s is abandoned: %s",
                record.job, record.tick.isoformat(),
                f" on {record.host}" if record.host else "", record.reason,
            )  # fmt: skip
        return marked

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
            except Exception as exc:
                self.outage.failed(exc, doing=f"polls retried every {interval}s")
            else:
                self.outage.succeeded()
            stop.wait(interval)
        log.info("scheduler %s stopping; waiting for running jobs", self.host)
        self.close()

    def close(self, wait: bool = True) -> None:
        """Stop accepting work; with ``wait``, let running jobs finish,
        renewing their leases meanwhile, and try once more to record the
        ends that could not be recorded."""
        if wait:
            interval = JobsSettings.of(self.app).jobs_poll_seconds
            while True:
                with self._lock:
                    futures = list(self._futures)
                if not futures:
                    break
                wait_for(futures, timeout=interval)
                try:
                    self.renew_leases()
                except Exception as exc:
                    self.outage.failed(exc, doing="waiting for the running jobs")
        self.executor.shutdown(wait=wait)
        if self._unrecorded:
            try:
                self.record_unrecorded()
            except Exception as exc:
                log.error(
                    "%d run end(s) could not be recorded (%s); those runs will be marked "
                    "abandoned when their lease runs out",
                    len(self._unrecorded), describe(exc),
                )  # fmt: skip

    def __enter__(self) -> Scheduler:
        return self

    def __exit__(self, *exc_info: t.Any) -> None:
        self.close()
