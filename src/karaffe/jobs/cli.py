"""``flask karaffe run-job``, ``flask karaffe jobs`` and ``flask karaffe scheduler``.

Which app: Flask's ``--app`` (or ``FLASK_APP``), as for every ``flask``
command; the ``karaffe`` console script takes ``--app`` too. With
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
import json
import logging
import runpy
import signal
import threading
import tomllib
import typing as t
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import click
from flask import Flask
from flask.cli import NoAppException, ScriptInfo, prepare_import

from ..config import ConfigError
from .context import ForOrganization, JobContext, Unscoped
from .extension import get_jobs
from .registry import JobDeclarationError, as_job
from .runner import JobError, JobRunner, resolve_factory, resolve_job
from .schedule import utcnow
from .scheduler import Scheduler

__all__ = ["jobs_command", "load_config_file", "run_job_command", "scheduler_command"]

log = logging.getLogger("karaffe.jobs")


class UsageFailure(click.ClickException):
    """A job, factory or config that cannot be used: exit code 2."""

    exit_code = 2


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


def load_config_file(path: str | Path) -> dict[str, t.Any]:
    """Settings from a file, by extension: ``.json`` (an object), ``.toml``
    (top-level keys), or ``.py`` (its UPPERCASE names, like Flask's
    ``from_pyfile``)."""
    path = Path(path)
    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
            if not isinstance(data, dict):
                raise UsageFailure(f"config file {path}: expected a JSON object")
            return data
        if path.suffix == ".toml":
            return tomllib.loads(path.read_text())
        if path.suffix == ".py":
            namespace = runpy.run_path(str(path))
            return {k: v for k, v in namespace.items() if k.isupper()}
    except UsageFailure:
        raise
    except OSError as exc:
        raise UsageFailure(f"cannot read config file {path}: {exc.strerror}") from None
    except Exception as exc:
        raise UsageFailure(f"config file {path} is invalid: {type(exc).__name__}: {exc}") from None
    raise UsageFailure(f"config file {path}: use a .py, .json or .toml file")


def load_app(factory: str | None, config_file: str | None) -> Flask:
    """The app for a command: see the module docstring."""
    config = load_config_file(config_file) if config_file else None
    info = click.get_current_context().ensure_object(ScriptInfo)
    try:
        if factory is None and config is None:
            return info.load_app()
        if factory is None:
            factory = _factory_from_app_path(info.app_import_path)
        return resolve_factory(factory)(config)
    except (JobError, ConfigError, NoAppException) as exc:
        raise UsageFailure(str(exc)) from None


def _factory_from_app_path(app_path: str | None) -> str:
    if not app_path:
        raise UsageFailure(
            "--config needs the app factory: pass --app or --factory module:create_app"
        )
    path, _, attr = app_path.partition(":")
    if "(" in attr:
        raise UsageFailure(
            "--config cannot be combined with a call in --app; use --factory module:func"
        )
    module = prepare_import(path)
    return f"{module}:{attr}" if attr else module


_factory_option = click.option(
    "--factory",
    metavar="MODULE:FUNC",
    help="App factory called with the config (default: the one --app names).",
)
_config_option = click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False),
    help="Settings file (.py, .json or .toml) passed to the app factory.",
)


@click.command("run-job", context_settings={"ignore_unknown_options": True})
@click.argument("import_name")
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
@_config_option
@_factory_option
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
@_config_option
@_factory_option
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
@_config_option
@_factory_option
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


def register(group: click.Group) -> None:
    """Add the job commands to ``group``."""
    for command in (run_job_command, jobs_command, scheduler_command):
        group.add_command(command)
