"""Declaring jobs with ``@job`` and collecting an app's jobs from modules."""

from __future__ import annotations

import typing as t
from collections.abc import Callable
from datetime import timedelta

import pytest

from karaffe.jobs import (
    Job,
    JobDeclarationError,
    Missed,
    NoContext,
    PerOrganization,
    Unscoped,
    collect_jobs,
    get_job,
    job,
)
from karaffe.jobs.registry import default_modules

Package = Callable[[dict[str, str]], str]


def test_job_records_its_declaration_and_returns_the_function_unchanged() -> None:
    def cleanup() -> str:
        """Remove stale rows.

        More words."""
        return "ok"

    decorated = job(schedule="*/5 * * * *", missed="catch_up", grace=30, lease=120)(cleanup)
    assert decorated is cleanup and cleanup() == "ok"
    declared = get_job(cleanup)
    assert declared == Job(
        func=cleanup,
        name=f"{__name__}.test_job_records_its_declaration_and_returns_the_function_unchanged.<locals>.cleanup",
        cron="*/5 * * * *",
        missed=Missed.CATCH_UP,
        grace=timedelta(seconds=30),
        lease=timedelta(seconds=120),
    )
    assert declared.description == "Remove stale rows."
    assert isinstance(declared.context, NoContext) and not declared.overlap


def test_a_bare_job_decorator_declares_an_unscheduled_job() -> None:
    @job
    def by_hand() -> None:
        pass

    declared = get_job(by_hand)
    assert declared is not None and declared.cron is None and declared.schedule() is None


def test_contexts_are_declared_by_keyword() -> None:
    @job(per_organization=True)
    def per_org() -> None: ...

    @job(unscoped="nightly export")
    def everything() -> None: ...

    assert isinstance(t.cast(Job, get_job(per_org)).context, PerOrganization)
    context = t.cast(Job, get_job(everything)).context
    assert isinstance(context, Unscoped) and context.describe() == "unscoped: nightly export"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"schedule": "every monday"}, "invalid cron expression 'every monday'"),
        ({"missed": "later"}, "missed must be one of 'skip', 'catch_up', got 'later'"),
        ({"timezone": "Atlantis/Capital"}, "unknown time zone 'Atlantis/Capital'"),
        ({"grace": 0}, "grace must be positive, got 0"),
        ({"lease": -5}, "lease must be positive, got -5"),
        ({"unscoped": " "}, "an unscoped job must say why it needs every organization's data"),
        (
            {"per_organization": True, "unscoped": "why"},
            "give at most one of per_organization, unscoped and context",
        ),
    ],
)
def test_bad_declarations_are_refused(options: dict[str, t.Any], message: str) -> None:
    with pytest.raises(JobDeclarationError) as info:
        job(**options)
    assert str(info.value) == message


def test_jobs_are_collected_from_modules_by_name(package: Package) -> None:
    name = package(
        {
            "jobs.py": """
                from karaffe.jobs import job
                from PKG.other import imported

                @job(schedule="0 * * * *")
                def hourly(): ...

                @job(name="custom-name")
                def named(): ...

                def plain(): ...
            """,
            "other.py": """
                from karaffe.jobs import job

                @job
                def imported(): ...
            """,
        }
    )
    jobs = collect_jobs([f"{name}.jobs"])
    assert list(jobs) == [f"{name}.jobs.hourly", "custom-name"]
    both = collect_jobs([f"{name}.jobs", f"{name}.other"])
    assert sorted(both) == sorted([f"{name}.jobs.hourly", "custom-name", f"{name}.other.imported"])


def test_two_jobs_with_one_name_are_refused(package: Package) -> None:
    name = package(
        {
            "a.py": "from karaffe.jobs import job\n@job(name='report')\ndef one(): ...\n",
            "b.py": "from karaffe.jobs import job\n@job(name='report')\ndef two(): ...\n",
        }
    )
    with pytest.raises(JobDeclarationError) as info:
        collect_jobs([f"{name}.a", f"{name}.b"])
    assert str(info.value) == "two jobs are named 'report'"


def test_a_jobs_module_that_fails_to_import_is_named(package: Package) -> None:
    name = package({"jobs.py": "raise KeyError('boom')\n"})
    with pytest.raises(JobDeclarationError) as info:
        collect_jobs([f"{name}.jobs"])
    assert str(info.value) == f"jobs module {name}.jobs failed to import: KeyError: 'boom'"


def test_the_default_jobs_module_is_the_app_packages_jobs_module(package: Package) -> None:
    with_jobs = package({"jobs.py": ""})
    without = package({})
    assert default_modules(f"{with_jobs}.web") == [f"{with_jobs}.jobs"]
    assert default_modules(without) == []
