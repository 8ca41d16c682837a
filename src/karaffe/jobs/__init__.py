"""Jobs: the talk's cron runner (slide 30), with schedules that run once
across machines.

* :func:`run_job` / ``flask karaffe run-job``: run a function by import name in
  an app built from config, inside its app context and security context.
* :func:`job`: declare a schedule (cron), an overlap rule, a missed-tick
  policy and whose data the job acts on.
* :class:`Scheduler` / ``flask karaffe scheduler``: run due ticks, each exactly
  once across every scheduler sharing the backend (Redis, PostgreSQL, SQLite).
* :func:`progress`: a progress bar on a terminal, log lines elsewhere.

See ``docs/jobs.md``.
"""

from __future__ import annotations

from .backends import (
    Backend,
    Claim,
    MemoryBackend,
    RedisBackend,
    RunRecord,
    SqlBackend,
    backend_from_url,
)
from .context import (
    ActingAs,
    ForOrganization,
    JobContext,
    MissingJobContext,
    NoContext,
    PerOrganization,
    Unscoped,
)
from .extension import Jobs, JobsSettings, get_jobs, init_app
from .progress import progress
from .registry import Job, JobDeclarationError, collect_jobs, get_job, job
from .runner import (
    JobError,
    JobFailed,
    JobImportError,
    JobRunner,
    NotAJob,
    RunInfo,
    RunResult,
    current_run,
    run_job,
)
from .schedule import Missed, Schedule
from .scheduler import ScheduledRun, Scheduler

__all__ = [
    "ActingAs",
    "Backend",
    "Claim",
    "ForOrganization",
    "Job",
    "JobContext",
    "JobDeclarationError",
    "JobError",
    "JobFailed",
    "JobImportError",
    "JobRunner",
    "Jobs",
    "JobsSettings",
    "MemoryBackend",
    "Missed",
    "MissingJobContext",
    "NoContext",
    "NotAJob",
    "PerOrganization",
    "RedisBackend",
    "RunInfo",
    "RunRecord",
    "RunResult",
    "Schedule",
    "ScheduledRun",
    "Scheduler",
    "SqlBackend",
    "Unscoped",
    "backend_from_url",
    "collect_jobs",
    "current_run",
    "get_job",
    "get_jobs",
    "init_app",
    "job",
    "progress",
    "run_job",
]
