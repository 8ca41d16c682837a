"""Running one job (slide 30): build the app from config, enter its app
context and the job's security context, call the function, log the outcome.

::

    from karaffe.jobs import run_job

    run_job("tracker.jobs.purge_expired_tokens", {"DATABASE_URL": ...},
            factory="tracker:create_app")

The same as ``flask --app tracker karaffe run-job tracker.jobs.purge_expired_tokens``.
"""

from __future__ import annotations

import contextvars
import logging
import time
import typing as t
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from flask import Flask
from werkzeug.utils import ImportStringError, import_string

from ..cli import find_app_factory
from .registry import Job, as_job
from .schedule import utcnow

__all__ = [
    "JobError",
    "JobFailed",
    "JobImportError",
    "JobRunner",
    "NotAJob",
    "RunInfo",
    "RunResult",
    "current_run",
    "resolve_factory",
    "resolve_job",
    "run_job",
]

log = logging.getLogger("karaffe.jobs")

AppFactory = Callable[[Mapping[str, t.Any] | None], Flask]


class JobError(Exception):
    """Base class of the errors of this module::

    JobError
    ├── JobImportError   the import name names nothing importable
    ├── NotAJob          it names something that cannot be called
    └── JobFailed        the job ran and raised (``.result`` says how)
    """


class JobImportError(JobError):
    """The job's (or the factory's) import name cannot be imported."""


class NotAJob(JobError):
    """The import name resolves to something that is not callable."""


class JobFailed(JobError):
    """The job raised; :attr:`result` holds the outcome of the run."""

    def __init__(self, result: RunResult) -> None:
        super().__init__(f"job {result.job} failed: {result.error}")
        self.result = result


@dataclass(frozen=True)
class RunInfo:
    """What a running job can learn about its run, through :func:`current_run`."""

    job: Job
    #: The scheduled tick this run is for; ``None`` when run by hand.
    tick: datetime | None
    #: The scope of this call: ``"organization acme"``, ``""`` for a single call.
    scope: str
    started: datetime


_current_run: contextvars.ContextVar[RunInfo] = contextvars.ContextVar("karaffe_job_run")


def current_run() -> RunInfo:
    """The run of the job calling this (its tick, its scope); raises
    ``LookupError`` outside a job."""
    return _current_run.get()


@dataclass(frozen=True)
class RunResult:
    """The outcome of one run of a job."""

    job: str
    ok: bool
    started: datetime
    finished: datetime
    #: Measured with a monotonic clock.
    duration: timedelta
    #: ``"ExceptionType: message"`` of each failed call, joined; ``None`` on success.
    error: str | None = None
    #: What the function returned (a list, one per scope, for a job called per scope).
    value: t.Any = None
    exceptions: list[BaseException] = field(default_factory=list, repr=False)

    @property
    def outcome(self) -> str:
        return "succeeded" if self.ok else "failed"


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


class JobRunner:
    """Runs jobs of one app. Subclass it to change what surrounds a call
    (:meth:`call`) or how runs are reported (:meth:`log_start`, :meth:`log_end`)."""

    #: The logger start and end lines go to.
    logger: logging.Logger = log

    def __init__(self, app: Flask, *, clock: Callable[[], datetime] = utcnow) -> None:
        self.app = app
        self.clock = clock

    def run(
        self,
        job: Job,
        args: Sequence[t.Any] = (),
        kwargs: Mapping[str, t.Any] | None = None,
        *,
        tick: datetime | None = None,
    ) -> RunResult:
        """Run ``job`` once (once per scope of its context); never raises for
        an error of the job, which is logged and returned in the result."""
        started, start = self.clock(), time.perf_counter()
        self.log_start(job, tick)
        values: list[t.Any] = []
        failures: list[tuple[str, BaseException]] = []
        with self.app.app_context():
            try:
                for scope in job.context.scopes(job.name):
                    try:
                        values.append(self.call(job, scope.label, scope.enter, args, kwargs, tick))
                    except Exception as exc:
                        failures.append((scope.label, exc))
                        self.logger.error(
                            "job %s failed%s: %s",
                            job.name,
                            f" for {scope.label}" if scope.label else "",
                            _describe(exc),
                            exc_info=exc,
                        )
            except Exception as exc:  # entering the context itself failed
                failures.append(("", exc))
                self.logger.error("job %s: %s", job.name, _describe(exc), exc_info=exc)
        error = "; ".join(
            f"{label}: {_describe(e)}" if label else _describe(e) for label, e in failures
        )
        result = RunResult(
            job=job.name,
            ok=not failures,
            started=started,
            finished=self.clock(),
            duration=timedelta(seconds=time.perf_counter() - start),
            error=error or None,
            value=values[0] if len(values) == 1 and not failures else values or None,
            exceptions=[e for _, e in failures],
        )
        self.log_end(result)
        return result

    def call(
        self,
        job: Job,
        label: str,
        scope: t.ContextManager[t.Any],
        args: Sequence[t.Any],
        kwargs: Mapping[str, t.Any] | None,
        tick: datetime | None,
    ) -> t.Any:
        """One call of the function: in a fresh app context (its own database
        session, so one organization's failure cannot leak into the next),
        inside its security context."""
        token = _current_run.set(RunInfo(job, tick, label, self.clock()))
        try:
            with self.app.app_context(), scope:
                return job.func(*args, **(kwargs or {}))
        finally:
            _current_run.reset(token)

    def log_start(self, job: Job, tick: datetime | None) -> None:
        for_tick = f" for tick {tick.isoformat()}" if tick else ""
        self.logger.info("job %s started%s (%s)", job.name, for_tick, job.context.describe())

    def log_end(self, result: RunResult) -> None:
        seconds = result.duration.total_seconds()
        if result.ok:
            self.logger.info("job %s succeeded in %.3fs", result.job, seconds)
        else:
            self.logger.error("job %s failed in %.3fs: %s", result.job, seconds, result.error)


def resolve_job(import_name: str) -> Callable[..., t.Any]:
    """The callable named ``import_name`` (``pkg.module.func`` or ``pkg.module:func``).

    :raises JobImportError: nothing importable has that name.
    :raises NotAJob: it is not callable.
    """
    if not import_name or not import_name.strip():
        raise JobImportError("no job named: give an import name such as myapp.jobs.cleanup")
    try:
        func = import_string(import_name)
    except ImportStringError as exc:
        cause = exc.exception
        raise JobImportError(
            f"cannot import job {import_name!r}: {type(cause).__name__}: {cause}"
        ) from None
    except Exception as exc:
        raise JobImportError(
            f"cannot import job {import_name!r}: its module raised {_describe(exc)}"
        ) from exc
    if not callable(func):
        raise NotAJob(f"job {import_name!r} is a {type(func).__name__}, not a callable")
    return t.cast(Callable[..., t.Any], func)


def resolve_factory(spec: str | AppFactory) -> AppFactory:
    """An app factory from ``"module:create_app"``, or ``"module"`` (its
    ``create_app`` or ``make_app``, as Flask looks for them)."""
    if callable(spec):
        return spec
    try:
        return find_app_factory(spec)
    except ImportError as exc:
        raise JobImportError(str(exc)) from None
    except TypeError as exc:
        raise NotAJob(str(exc)) from None


def run_job(
    import_name: str | Callable[..., t.Any],
    config: Mapping[str, t.Any] | None = None,
    args: Sequence[t.Any] = (),
    *,
    factory: str | AppFactory | None = None,
    app: Flask | None = None,
    kwargs: Mapping[str, t.Any] | None = None,
) -> RunResult:
    """Run a job by import name in an app built by ``factory(config)`` (slide 30).

    :param import_name: ``"pkg.jobs.func"``, or the function itself.
    :param config: passed to the factory.
    :param args: positional arguments of the job.
    :param factory: the app factory or its import name (``"tracker:create_app"``).
    :param app: an app already built, instead of ``factory`` and ``config``.
    :returns: the :class:`RunResult` of a successful run.
    :raises JobImportError, NotAJob: the job cannot be found or called.
    :raises JobFailed: the job raised; the error was logged.
    """
    func = resolve_job(import_name) if isinstance(import_name, str) else import_name
    if app is None:
        if factory is None:
            raise TypeError("run_job needs a factory (or an app) to build the app with")
        app = resolve_factory(factory)(config)
    name = import_name if isinstance(import_name, str) else None
    result = JobRunner(app).run(as_job(func, name=name), args, kwargs)
    if not result.ok:
        raise JobFailed(result)
    return result
