"""The job system of one app: its settings, its jobs and its backend.

``init_app(app)`` declares the ``JOBS_*`` settings (before or after
``app.configure``: they are read from the environment either way) and stores
a :class:`Jobs` in ``app.extensions["karaffe.jobs"]``. The CLI commands call
:func:`get_jobs`, which does the same on an app that did not.
"""

from __future__ import annotations

import os
import typing as t
from collections.abc import Callable
from datetime import timedelta

from flask import Flask
from pydantic import AfterValidator, TypeAdapter

from ..config import CoreSettings, PositiveFloat, PositiveInt, RedisUrl, Settings
from ..db import DbSettings, check_database_url
from .backends import Backend, backend_from_url
from .registry import Job, JobDeclarationError, as_job, collect_jobs, default_modules
from .schedule import Schedule

__all__ = ["Jobs", "JobsSettings", "get_jobs", "init_app"]

EXTENSION_KEY = "karaffe.jobs"


def _timezone(value: str) -> str:
    Schedule("* * * * *", value)
    return value


def _backend_url(value: str) -> str:
    scheme = value.partition("://")[0]
    if not scheme or "://" not in value:
        raise ValueError(
            "expected a URL such as redis://..., postgresql://..., sqlite:///path or memory://"
        )
    if scheme == "memory":
        return value
    if scheme in ("redis", "rediss", "unix"):
        return TypeAdapter(RedisUrl).validate_python(value)
    return check_database_url(value)


class JobsSettings(Settings):
    """The settings of the job system."""

    title: t.ClassVar[str] = "Jobs"

    jobs_modules: list[str] = []
    """Modules whose @job functions are scheduled (a JSON array or comma-separated);
    empty: the app package's `jobs` module, if it has one."""

    jobs_backend: t.Annotated[str | None, AfterValidator(lambda v: v and _backend_url(v))] = None
    """Where schedulers claim ticks and record runs: redis://, postgresql://,
    sqlite:/// or memory://. Unset: REDIS_URL, else DATABASE_URL,
    else SQLite in the instance folder."""

    jobs_redis_cluster: bool = False
    """The jobs backend (JOBS_BACKEND, else REDIS_URL) is a Redis Cluster: use the cluster
    client (each job's keys share a hash slot)."""

    jobs_timezone: t.Annotated[str, AfterValidator(_timezone)] = "UTC"
    """Time zone cron expressions are read in, unless a job names its own."""

    jobs_grace_seconds: PositiveInt = 60
    """How late a tick may start and still be on time;
    later ticks follow the job's `missed` policy."""

    jobs_lease_seconds: PositiveInt = 60
    """A running job's lease, renewed while it runs;
    a crashed scheduler's lease expires after it."""

    jobs_poll_seconds: PositiveFloat = 1.0
    """How often the scheduler looks for due ticks."""

    jobs_max_workers: PositiveInt = 4
    """Jobs one scheduler process runs at the same time."""

    jobs_history: PositiveInt = 100
    """Runs kept per job for `flask karaffe jobs`."""


class Jobs:
    """The jobs of one app and the backend its schedulers share.

    Subclass it and pass an instance to :func:`init_app` to change how the
    backend is built (:meth:`make_backend`) or where jobs come from.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self._jobs: dict[str, Job] | None = None
        self._extra: dict[str, Job] = {}
        self._backend: Backend | None = None

    # -- jobs ------------------------------------------------------------------

    @property
    def modules(self) -> list[str]:
        """The modules searched for ``@job`` functions."""
        configured = JobsSettings.of(self.app).jobs_modules
        return configured or default_modules(self.app.import_name)

    @property
    def jobs(self) -> dict[str, Job]:
        """Every job of the app by name: those in :attr:`modules`, then those
        added with :meth:`add`. Imported once, on first use."""
        if self._jobs is None:
            found = collect_jobs(self.modules)
            for name, extra in self._extra.items():
                if name in found and found[name].func is not extra.func:
                    raise JobDeclarationError(f"two jobs are named {name!r}")
                found[name] = extra
            self._jobs = found
        return self._jobs

    def add(self, func: Callable[..., t.Any] | Job) -> Job:
        """Register a job defined outside :attr:`modules`; returns its :class:`Job`."""
        declared = func if isinstance(func, Job) else as_job(func)
        self._extra[declared.name] = declared
        if self._jobs is not None:
            self._jobs[declared.name] = declared
        return declared

    def scheduled(self) -> list[Job]:
        """The jobs that have a schedule, by name."""
        return [job for name, job in sorted(self.jobs.items()) if job.cron is not None]

    def schedule_of(self, job: Job) -> Schedule | None:
        return job.schedule(JobsSettings.of(self.app).jobs_timezone)

    def grace(self, job: Job) -> timedelta:
        return job.grace or timedelta(seconds=JobsSettings.of(self.app).jobs_grace_seconds)

    def lease(self, job: Job) -> timedelta:
        return job.lease or timedelta(seconds=JobsSettings.of(self.app).jobs_lease_seconds)

    # -- backend ---------------------------------------------------------------

    def backend_url(self) -> str:
        """``JOBS_BACKEND``, else ``REDIS_URL``, else the database, else a
        SQLite file in the instance folder (one machine)."""
        candidates = (
            JobsSettings.of(self.app).jobs_backend,
            CoreSettings.of(self.app).redis_url,
            DbSettings.of(self.app).database_url,
            self.app.config.get("SQLALCHEMY_DATABASE_URI"),
        )
        for url in candidates:
            if isinstance(url, str) and url and not _in_memory_sqlite(url):
                return url
        os.makedirs(self.app.instance_path, exist_ok=True)
        return f"sqlite:///{os.path.join(self.app.instance_path, 'karaffe-jobs.sqlite3')}"

    def make_backend(self) -> Backend:
        settings = JobsSettings.of(self.app)
        return backend_from_url(
            self.backend_url(),
            keep=settings.jobs_history,
            redis_cluster=settings.jobs_redis_cluster,
        )

    @property
    def backend(self) -> Backend:
        """The backend, built on first use."""
        if self._backend is None:
            self._backend = self.make_backend()
        return self._backend


def _in_memory_sqlite(url: str) -> bool:
    return url.startswith("sqlite") and (
        url.rstrip("/") in ("sqlite:", "sqlite+pysqlite:") or ":memory:" in url
    )


def init_app(app: Flask, jobs: Jobs | None = None) -> Jobs:
    """Set up the job system on ``app``: declare its settings and add its
    commands (``run-job``, ``jobs``, ``scheduler``) to ``flask karaffe``."""
    from . import cli

    JobsSettings.of(app)
    state = jobs or Jobs(app)
    app.extensions[EXTENSION_KEY] = state
    cli.init_app(app)
    return state


def get_jobs(app: Flask) -> Jobs:
    """The :class:`Jobs` of ``app``, set up with the defaults if needed."""
    state = app.extensions.get(EXTENSION_KEY)
    if isinstance(state, Jobs):
        return state
    return init_app(app)
