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

from ..config import Setting
from .backends import Backend, backend_from_url
from .registry import Job, JobDeclarationError, as_job, collect_jobs, default_modules
from .schedule import Schedule

__all__ = ["SETTINGS", "Jobs", "get_jobs", "init_app"]

EXTENSION_KEY = "karaffe.jobs"


def _positive(value: t.Any) -> None:
    if value <= 0:
        raise ValueError(f"must be greater than 0, got {value}")


def _timezone(value: t.Any) -> None:
    Schedule("* * * * *", value)


def _backend_url(value: t.Any) -> None:
    if value is not None and "://" not in value:
        raise ValueError(
            "expected a URL such as redis://..., postgresql://..., sqlite:///path or memory://"
        )


#: The settings of the job system.
SETTINGS: tuple[Setting, ...] = (
    Setting(
        "JOBS_MODULES",
        list,
        [],
        "Modules whose @job functions are scheduled; "
        "empty: the app package's `jobs` module, if it has one.",
    ),
    Setting(
        "JOBS_BACKEND",
        str,
        None,
        "Where schedulers claim ticks and record runs: redis://, postgresql://, "
        "sqlite:/// or memory://. Unset: REDIS_URL, else DATABASE_URL, "
        "else SQLite in the instance folder.",
        check=_backend_url,
    ),
    Setting(
        "JOBS_TIMEZONE",
        str,
        "UTC",
        "Time zone cron expressions are read in, unless a job names its own.",
        check=_timezone,
    ),
    Setting(
        "JOBS_GRACE_SECONDS",
        int,
        60,
        "How late a tick may start and still be on time; "
        "later ticks follow the job's `missed` policy.",
        check=_positive,
    ),
    Setting(
        "JOBS_LEASE_SECONDS",
        int,
        60,
        "A running job's lease, renewed while it runs; "
        "a crashed scheduler's lease expires after it.",
        check=_positive,
    ),
    Setting(
        "JOBS_POLL_SECONDS",
        float,
        1.0,
        "How often the scheduler looks for due ticks.",
        check=_positive,
    ),
    Setting(
        "JOBS_MAX_WORKERS",
        int,
        4,
        "Jobs one scheduler process runs at the same time.",
        check=_positive,
    ),
    Setting(
        "JOBS_HISTORY",
        int,
        100,
        "Runs kept per job for `flask karaffe jobs`.",
        check=_positive,
    ),
)


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
        configured = list(self.app.config.get("JOBS_MODULES") or [])
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
        return job.schedule(self.app.config.get("JOBS_TIMEZONE") or "UTC")

    def grace(self, job: Job) -> timedelta:
        return job.grace or timedelta(seconds=self.app.config.get("JOBS_GRACE_SECONDS", 60))

    def lease(self, job: Job) -> timedelta:
        return job.lease or timedelta(seconds=self.app.config.get("JOBS_LEASE_SECONDS", 60))

    # -- backend ---------------------------------------------------------------

    def backend_url(self) -> str:
        """``JOBS_BACKEND``, else ``REDIS_URL``, else the database, else a
        SQLite file in the instance folder (one machine)."""
        config = self.app.config
        for key in ("JOBS_BACKEND", "REDIS_URL", "DATABASE_URL", "SQLALCHEMY_DATABASE_URI"):
            url = config.get(key)
            if isinstance(url, str) and url and not _in_memory_sqlite(url):
                return url
        os.makedirs(self.app.instance_path, exist_ok=True)
        return f"sqlite:///{os.path.join(self.app.instance_path, 'karaffe-jobs.sqlite3')}"

    def make_backend(self) -> Backend:
        return backend_from_url(self.backend_url(), keep=self.app.config.get("JOBS_HISTORY", 100))

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
    from ..db import declare_settings
    from . import cli

    declare_settings(app, SETTINGS)
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
