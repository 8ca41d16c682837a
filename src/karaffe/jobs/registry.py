"""Declaring jobs: the ``@job`` decorator and the registry an app schedules.

``@job`` only records: it attaches a :class:`Job` to the function and returns
the function unchanged, so it stays an ordinary callable that tests and
``flask karaffe run-job`` call directly. The registry of an app is built by
importing the modules named by the ``JOBS_MODULES`` setting and collecting the
decorated functions in them, in a deterministic order.
"""

from __future__ import annotations

import importlib.util
import inspect
import typing as t
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta

from croniter import croniter
from werkzeug.utils import import_string

from .context import JobContext, NoContext, PerOrganization, Unscoped
from .schedule import Missed, Schedule

__all__ = ["Job", "JobDeclarationError", "collect_jobs", "get_job", "job"]

F = t.TypeVar("F", bound=Callable[..., t.Any])

#: The attribute ``@job`` sets on a function.
JOB_ATTRIBUTE = "__karaffe_job__"


class JobDeclarationError(ValueError):
    """A ``@job`` declaration or the set of an app's jobs is invalid."""


@dataclass(frozen=True)
class Job:
    """A declared job: the function and how and when it runs.

    :param func: the function; it is called with the arguments of the run.
    :param name: unique name, by default ``module.qualname`` (its import name).
    :param cron: cron expression, or ``None`` for a job only run by hand.
    :param timezone: time zone of ``cron``; ``None`` uses ``JOBS_TIMEZONE``.
    :param overlap: whether a tick may start while the previous run of this
        job still runs; by default it may not, and the tick is skipped.
    :param missed: policy for ticks missed while no scheduler ran.
    :param grace: how late a tick may start and still count as on time;
        ``None`` uses ``JOBS_GRACE_SECONDS``.
    :param lease: how long a run holds its lease between renewals; ``None``
        uses ``JOBS_LEASE_SECONDS``.
    :param context: whose data the job acts on (:mod:`karaffe.jobs.context`).
    """

    func: Callable[..., t.Any] = field(repr=False, compare=False)
    name: str
    cron: str | None = None
    timezone: str | None = None
    overlap: bool = False
    missed: Missed = Missed.SKIP
    grace: timedelta | None = None
    lease: timedelta | None = None
    context: JobContext = field(default_factory=NoContext, compare=False)

    @property
    def description(self) -> str:
        """The first line of the function's docstring."""
        doc = inspect.getdoc(self.func) or ""
        return doc.strip().splitlines()[0] if doc.strip() else ""

    def schedule(self, default_timezone: str = "UTC") -> Schedule | None:
        """The job's :class:`Schedule`, or ``None`` for an unscheduled job."""
        if self.cron is None:
            return None
        return Schedule(self.cron, self.timezone or default_timezone)


def _seconds(value: float | timedelta | None, what: str) -> timedelta | None:
    if value is None:
        return None
    delta = value if isinstance(value, timedelta) else timedelta(seconds=value)
    if delta <= timedelta(0):
        raise JobDeclarationError(f"{what} must be positive, got {value!r}")
    return delta


@t.overload
def job(func: F, /) -> F: ...
@t.overload
def job(
    *,
    schedule: str | None = ...,
    name: str | None = ...,
    timezone: str | None = ...,
    overlap: bool = ...,
    missed: Missed | str = ...,
    grace: float | timedelta | None = ...,
    lease: float | timedelta | None = ...,
    per_organization: bool = ...,
    unscoped: str | None = ...,
    context: JobContext | None = ...,
) -> Callable[[F], F]: ...
def job(
    func: F | None = None,
    /,
    *,
    schedule: str | None = None,
    name: str | None = None,
    timezone: str | None = None,
    overlap: bool = False,
    missed: Missed | str = Missed.SKIP,
    grace: float | timedelta | None = None,
    lease: float | timedelta | None = None,
    per_organization: bool = False,
    unscoped: str | None = None,
    context: JobContext | None = None,
) -> F | Callable[[F], F]:
    """Declare a job; the function is returned unchanged.

    ::

        @job(schedule="*/5 * * * *")
        def refresh_feeds(): ...

        @job(schedule="0 3 * * *", unscoped="expired tokens of every organization")
        def purge_tokens(): ...

        @job(schedule="0 7 * * *", per_organization=True, missed="catch_up")
        def weekly_report(): ...

    ``per_organization=True`` is :class:`PerOrganization`, ``unscoped=reason``
    is :class:`Unscoped`, ``context=`` takes any :class:`JobContext`; at most
    one of them. Without one the job runs with no tenant context, so it cannot
    read or write organization data.
    """
    contexts = [c for c in (per_organization or None, unscoped, context) if c is not None]
    if len(contexts) > 1:
        raise JobDeclarationError("give at most one of per_organization, unscoped and context")
    if schedule is not None and not croniter.is_valid(schedule):
        raise JobDeclarationError(f"invalid cron expression {schedule!r}")
    try:
        missed_policy = Missed(missed)
    except ValueError:
        choices = ", ".join(repr(m.value) for m in Missed)
        raise JobDeclarationError(f"missed must be one of {choices}, got {missed!r}") from None
    if timezone is not None:
        try:
            Schedule("* * * * *", timezone)
        except ValueError as exc:
            raise JobDeclarationError(str(exc)) from None
    job_context: JobContext
    if per_organization:
        job_context = PerOrganization()
    elif unscoped is not None:
        try:
            job_context = Unscoped(unscoped)
        except ValueError as exc:
            raise JobDeclarationError(str(exc)) from None
    else:
        job_context = context or NoContext()
    grace_delta = _seconds(grace, "grace")
    lease_delta = _seconds(lease, "lease")

    def decorate(f: F) -> F:
        declared = Job(
            func=f,
            name=name or f"{f.__module__}.{f.__qualname__}",
            cron=schedule,
            timezone=timezone,
            overlap=overlap,
            missed=missed_policy,
            grace=grace_delta,
            lease=lease_delta,
            context=job_context,
        )
        setattr(f, JOB_ATTRIBUTE, declared)
        return f

    return decorate(func) if func is not None else decorate


def get_job(func: Callable[..., t.Any]) -> Job | None:
    """The :class:`Job` declared on ``func`` by ``@job``, if any."""
    # Static lookup: a module's globals include proxies (``current_app``)
    # whose attributes cannot be read outside a context.
    declared = inspect.getattr_static(func, JOB_ATTRIBUTE, None)
    return declared if isinstance(declared, Job) else None


def as_job(func: Callable[..., t.Any], name: str | None = None) -> Job:
    """``func``'s declaration, or an unscheduled job with no context."""
    declared = get_job(func)
    if declared is not None:
        return declared
    qualname = getattr(func, "__qualname__", type(func).__name__)
    return Job(func=func, name=name or f"{getattr(func, '__module__', '?')}.{qualname}")


def default_modules(import_name: str) -> list[str]:
    """The default of ``JOBS_MODULES``: the ``jobs`` module of the app's
    top-level package, when there is one (``tracker.jobs`` for ``tracker``)."""
    candidate = f"{import_name.split('.')[0]}.jobs"
    try:
        found = importlib.util.find_spec(candidate) is not None
    except (ImportError, ValueError):
        found = False
    return [candidate] if found else []


def collect_jobs(modules: Iterable[str]) -> dict[str, Job]:
    """Import ``modules`` and collect their ``@job`` functions by name.

    Modules are visited in the given order and each module's jobs in
    definition order; two jobs with one name are refused.
    """
    jobs: dict[str, Job] = {}
    for module_name in modules:
        try:
            module = import_string(module_name)
        except Exception as exc:
            raise JobDeclarationError(
                f"jobs module {module_name} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        for value in vars(module).values():
            declared = get_job(value)
            if declared is None or declared.func.__module__ != module.__name__:
                continue
            other = jobs.get(declared.name)
            if other is not None and other.func is not declared.func:
                raise JobDeclarationError(f"two jobs are named {declared.name!r}")
            jobs[declared.name] = declared
    return jobs
