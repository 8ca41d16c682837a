"""``flask karaffe run-job``, ``flask karaffe jobs`` and ``flask karaffe scheduler``,
added to the app's ``flask karaffe`` group by :func:`karaffe.jobs.init_app`.

Which app (:func:`karaffe.cli.load_app`): Flask's ``--app`` (or ``FLASK_APP``),
as for every ``flask`` command; the ``karaffe`` console script takes ``--app`` too. With
``--config FILE`` the app is built by its factory with that file's settings
(``create_app(config)``, slide 30): the factory is ``--factory module:func``,
else the one ``--app`` names (``--app tracker`` finds ``tracker.create_app``).

Exit codes: 0 success; 1 the job failed (the error is printed and logged);
2 the job, the factory or the config cannot be used (bad import name, not
callable, unreadable config file, invalid setting).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import signal
import threading
import typing as t
from collections.abc import Iterator
from datetime import datetime

import click
from flask import Flask

from ..cli import (
    UsageFailure,
    command_group,
    config_option,
    factory_option,
    load_app,
    load_config_file,
)
from .context import ForOrganization, JobContext, Unscoped
from .extension import get_jobs
from .registry import JobDeclarationError, as_job
from .runner import JobError, JobRunner, resolve_job
from .schedule import utcnow
from .scheduler import Scheduler

__all__ = [
    "init_app",
    "jobs_command",
    "load_config_file",
    "run_job_command",
    "scheduler_command",
]

log = logging.getLogger("karaffe.jobs")


class _ClickHandler(logging.Handler):
    """Log lines to the current click standard error (CliRunner swaps it)."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            click.echo(self.format(record), err=True)
        except Exception:  # pragma: no cover - logging must never raise
            self.handleError(record)


@contextlib.contextmanager
def _job_logging(app: Flask) -> Iterator[None]:
    """Unless logging is configured already, show on standard error the INFO
    lines of the jobs machinery, of tenancy (unscoped access is audited) and
    of the app's own package, and warnings from everything else."""
    root = logging.getLogger()
    if root.handlers:
        yield
        return
    shown = ("karaffe.jobs", "karaffe.tenancy", app.import_name.split(".")[0])
    handler = _ClickHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(
        lambda record: record.levelno >= logging.WARNING or record.name.startswith(shown)
    )
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@click.command("run-job", context_settings={"ignore_unknown_options": True})
@click.argument("import_name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@config_option
@factory_option
@click.option(
    "--organization",
    metavar="SLUG|ID",
    help="Run inside this organization's tenant context, instead of the job's own.",
)
@click.option(
    "--unscoped",
    metavar="REASON",
    help="Run with every organization's data, for the reason given (it is logged).",
)
def run_job_command(
    import_name: str,
    args: tuple[str, ...],
    config_file: str | None,
    factory: str | None,
    organization: str | None,
    unscoped: str | None,
) -> None:
    """Run the job IMPORT_NAME (pkg.module.func) once, inside the app context.

    Arguments after -- are passed to the job as strings. Exits 1 when the
    job fails, 2 when it cannot be found or called.
    """
    if organization is not None and unscoped is not None:
        raise UsageFailure("give --organization or --unscoped, not both")
    try:
        func = resolve_job(import_name)
        context: JobContext | None = Unscoped(unscoped) if unscoped is not None else None
    except (JobError, ValueError) as exc:
        raise UsageFailure(str(exc)) from None
    app = load_app(factory, config_file)
    if organization is not None:
        context = ForOrganization(organization)
        try:
            with app.app_context():
                context.resolve()
        except LookupError as exc:
            raise UsageFailure(str(exc.args[0])) from None
    declared = as_job(func, name=import_name)
    if context is not None:
        declared = dataclasses.replace(declared, context=context)
    with _job_logging(app):
        result = JobRunner(app).run(declared, args)
    if not result.ok:
        raise click.ClickException(f"job {result.job} failed: {result.error}")


def _when(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S") if value else "-"


@click.command("jobs")
@config_option
@factory_option
def jobs_command(config_file: str | None, factory: str | None) -> None:
    """List the app's jobs with their schedule, next run and last run (UTC)."""
    app = load_app(factory, config_file)
    state = get_jobs(app)
    try:
        jobs = sorted(state.jobs.values(), key=lambda job: job.name)
    except JobDeclarationError as exc:
        raise UsageFailure(str(exc)) from None
    if not jobs:
        click.echo(f"no jobs found (searched: {', '.join(state.modules) or 'nothing'})")
        return
    now = utcnow()
    last_runs = state.backend.last_runs(job.name for job in jobs)
    rows = [("JOB", "SCHEDULE", "CONTEXT", "NEXT RUN", "LAST RUN")]
    for job in jobs:
        schedule = state.schedule_of(job)
        last = last_runs.get(job.name)
        last_text = "-"
        if last is not None:
            last_text = f"{_when(last.tick)} {last.status}"
            if last.duration is not None and last.status != "skipped":
                last_text += f" in {last.duration.total_seconds():.1f}s"
            if last.error or last.reason:
                last_text += f" ({last.error or last.reason})"
        rows.append(
            (
                job.name,
                f"{job.cron} {job.timezone or ''}".strip() if job.cron else "by hand",
                job.context.describe(),
                _when(schedule.next(now)) if schedule else "-",
                last_text,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]))


@click.command("scheduler")
@click.option("--once", is_flag=True, help="Run the ticks due now, wait for them and exit.")
@config_option
@factory_option
def scheduler_command(once: bool, config_file: str | None, factory: str | None) -> None:
    """Run the app's scheduled jobs; start one on every machine you like,
    each tick runs once. Stops on SIGINT/SIGTERM after running jobs end."""
    app = load_app(factory, config_file)
    with _job_logging(app):
        try:
            scheduler = Scheduler(app)
        except JobDeclarationError as exc:
            raise UsageFailure(str(exc)) from None
        if once:
            with scheduler:
                runs = scheduler.run_pending()
                records = [run.result() for run in runs]
            failed = [r for r in records if r.status == "failed"]
            if failed:
                raise click.ClickException(
                    "; ".join(f"job {r.job} failed: {r.error}" for r in failed)
                )
            return
        stop = threading.Event()

        def request_stop(signum: int, frame: t.Any) -> None:
            stop.set()

        previous = {
            sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)
        }
        try:
            scheduler.run_forever(stop)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def init_app(app: Flask) -> None:
    """Add the job commands to the app's ``flask karaffe`` group."""
    group = command_group(app)
    for command in (run_job_command, jobs_command, scheduler_command):
        group.add_command(command)
