"""Running one job by import name in an app built from config (slide 30)."""

from __future__ import annotations

import importlib
import logging
import typing as t
from collections.abc import Callable

import pytest
from _jobtools import FACTORY

import karaffe
from karaffe.jobs import (
    JobFailed,
    JobImportError,
    JobRunner,
    NotAJob,
    current_run,
    job,
    run_job,
)
from karaffe.jobs.registry import as_job
from karaffe.jobs.runner import resolve_factory, resolve_job

Package = Callable[[dict[str, str]], str]

JOBS = """
from flask import current_app, g
from karaffe.jobs import current_run

SEEN = []

def greet(*args):
    SEEN.append((current_app.config["APPLICATION_ROOT"], args, current_run().job.name))
    return "done"

def explode():
    raise ValueError("the answer is not 42")

NOT_CALLABLE = 42
"""


@pytest.fixture
def app_package(package: Package) -> str:
    return package(
        {
            "__init__.py": FACTORY + "\nfrom karaffe import Settings\n",
            "jobs.py": JOBS,
            "broken.py": "raise RuntimeError('cannot import me')\n",
        }
    )


def test_run_job_builds_the_app_from_config_and_runs_inside_its_context(app_package: str) -> None:
    result = run_job(
        f"{app_package}.jobs.greet",
        {"APPLICATION_ROOT": "/x"},
        args=("a", "b"),
        factory=f"{app_package}:create_app",
    )
    assert result.ok and result.value == "done" and result.error is None
    seen = importlib.import_module(f"{app_package}.jobs").SEEN
    assert seen == [("/x", ("a", "b"), f"{app_package}.jobs.greet")]


def test_a_failing_job_raises_job_failed_with_the_error_logged(
    app_package: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs")
    with pytest.raises(JobFailed) as info:
        run_job(f"{app_package}.jobs.explode", factory=f"{app_package}:create_app")
    result = info.value.result
    assert not result.ok and result.outcome == "failed"
    assert result.error == "ValueError: the answer is not 42"
    assert (
        str(info.value)
        == f"job {app_package}.jobs.explode failed: ValueError: the answer is not 42"
    )
    assert isinstance(result.exceptions[0], ValueError)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0] == f"job {app_package}.jobs.explode started (no tenant context)"
    assert messages[-1].startswith(f"job {app_package}.jobs.explode failed in ")
    assert messages[-1].endswith("s: ValueError: the answer is not 42")
    assert any(r.exc_info for r in caplog.records if r.levelno == logging.ERROR)


def test_a_run_logs_its_start_end_and_duration(
    make_jobs_app: Callable[..., karaffe.App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.jobs")

    @job(name="tidy")
    def tidy() -> int:
        return 3

    result = JobRunner(make_jobs_app()).run(as_job(tidy))
    assert (result.ok, result.value, result.outcome) == (True, 3, "succeeded")
    assert result.finished >= result.started and result.duration.total_seconds() >= 0
    start, end = (r.getMessage() for r in caplog.records)
    assert start == "job tidy started (no tenant context)"
    assert end.startswith("job tidy succeeded in ") and end.endswith("s")


@pytest.mark.parametrize(
    ("name", "error", "message"),
    [
        ("PKG.jobs.missing", JobImportError, "cannot import job 'PKG.jobs.missing': ImportError: "),
        ("PKG.nowhere.job", JobImportError, "cannot import job 'PKG.nowhere.job': "),
        (
            "PKG.broken.job",
            JobImportError,
            "cannot import job 'PKG.broken.job': its module raised RuntimeError: cannot import me",
        ),
        ("PKG.jobs.NOT_CALLABLE", NotAJob, "job 'PKG.jobs.NOT_CALLABLE' is a int, not a callable"),
        ("", JobImportError, "no job named: give an import name such as myapp.jobs.cleanup"),
    ],
)
def test_a_bad_import_name_is_a_clear_error(
    app_package: str, name: str, error: type[Exception], message: str
) -> None:
    name, message = name.replace("PKG", app_package), message.replace("PKG", app_package)
    with pytest.raises(error) as info:
        resolve_job(name)
    assert str(info.value).startswith(message)


def test_the_factory_is_found_by_module_or_module_and_name(app_package: str) -> None:
    module = importlib.import_module(app_package)
    assert resolve_factory(app_package) is module.create_app
    assert resolve_factory(f"{app_package}:create_app") is module.create_app


def test_a_module_without_a_factory_is_refused(app_package: str) -> None:
    with pytest.raises(JobImportError) as info:
        resolve_factory(f"{app_package}.jobs")
    assert (
        str(info.value) == f"module '{app_package}.jobs' has no create_app or make_app app factory"
    )
    with pytest.raises(NotAJob) as not_factory:
        resolve_factory(f"{app_package}.jobs:NOT_CALLABLE")
    assert str(not_factory.value) == (
        f"{app_package}.jobs:NOT_CALLABLE is not an app factory (a create_app(config) function)"
    )


def test_run_job_needs_a_factory_or_an_app() -> None:
    with pytest.raises(TypeError):
        run_job(lambda: None)


def test_current_run_outside_a_job_is_an_error() -> None:
    with pytest.raises(LookupError):
        current_run()


def test_run_job_runs_a_function_in_a_given_app(make_jobs_app: Callable[..., karaffe.App]) -> None:
    app = make_jobs_app()

    def whoami() -> t.Any:
        from flask import current_app

        return current_app.name

    assert run_job(whoami, app=app).value == app.name
