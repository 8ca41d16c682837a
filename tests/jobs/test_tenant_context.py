"""Whose data a job acts on: a job that touches organization data without
naming its context is refused; declared contexts see exactly their data."""

from __future__ import annotations

import logging
import typing as t
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from datalayer import Crate, Note, build_app, dispose

import karaffe
import karaffe.jobs
from karaffe import tenancy
from karaffe.auth import User
from karaffe.db import db
from karaffe.jobs import ActingAs, JobRunner, MissingJobContext, RunResult, current_run, job
from karaffe.jobs.registry import as_job


@pytest.fixture
def app(tmp_path: Path) -> Iterator[karaffe.App]:
    app = build_app(f"sqlite:///{tmp_path}/tenants.sqlite")
    karaffe.jobs.init_app(app)
    with app.app_context():
        db.create_all()
        with tenancy.unscoped("seed the test organizations"):
            alice = User(email="alice@example.com")
            acme = tenancy.create_organization("Acme", "acme", owner=alice)
            globex = tenancy.create_organization("Globex", "globex")
            db.session.add_all(
                [
                    Crate(label="acme-1", organization=acme),
                    Crate(label="acme-2", organization=acme),
                    Crate(label="globex-1", organization=globex),
                    User(email="bob@example.com"),
                ]
            )
            db.session.commit()
    yield app
    with app.app_context():
        db.drop_all()
    dispose(app)


def crate_labels() -> list[str]:
    return sorted(db.session.scalars(sa.select(Crate.label)))


def run(app: karaffe.App, func: Callable[..., t.Any]) -> RunResult:
    declared = karaffe.jobs.get_job(func)
    return JobRunner(app).run(declared or as_job(func))


def test_a_job_reading_org_data_without_a_context_is_refused(app: karaffe.App) -> None:
    @job(name="count_crates")
    def count_crates() -> int:
        return len(crate_labels())

    result = run(app, count_crates)
    assert not result.ok
    assert isinstance(result.exceptions[0], MissingJobContext)
    assert result.error == (
        "MissingJobContext: job count_crates read Crate rows without naming whose data it acts "
        "on: declare @job(per_organization=True), @job(unscoped='why') or @job(context=...), "
        "or enter tenancy.for_organization(...) in the job"
    )


def test_a_job_writing_org_data_without_a_context_is_refused(app: karaffe.App) -> None:
    with app.app_context(), tenancy.unscoped("find acme's id"):
        acme_id = db.session.scalars(
            sa.select(tenancy.Organization.id).filter_by(slug="acme")
        ).one()

    def add_crate() -> None:
        db.session.add(Crate(label="sneaky", organization_id=acme_id))
        db.session.commit()

    result = run(app, add_crate)
    assert not result.ok
    assert isinstance(result.exceptions[0], tenancy.CrossOrgWrite)
    with app.app_context(), tenancy.unscoped("check nothing was written"):
        assert "sneaky" not in crate_labels()


def test_a_job_without_a_context_may_use_data_no_organization_owns(app: karaffe.App) -> None:
    def write_note() -> int:
        db.session.add(Note(text="hello"))
        db.session.commit()
        return len(db.session.scalars(sa.select(Note)).all())

    assert run(app, write_note).value == 1


def test_a_job_may_name_its_organization_itself(app: karaffe.App) -> None:
    def acme_only() -> list[str]:
        with tenancy.unscoped("find acme"):
            acme = db.session.scalars(sa.select(tenancy.Organization).filter_by(slug="acme")).one()
        with tenancy.for_organization(acme):
            return crate_labels()

    assert run(app, acme_only).value == ["acme-1", "acme-2"]


def test_a_per_organization_job_runs_once_in_each_organization(app: karaffe.App) -> None:
    @job(per_organization=True)
    def labels() -> tuple[str, list[str]]:
        return current_run().scope, crate_labels()

    result = run(app, labels)
    assert result.ok
    assert sorted(result.value) == [
        ("organization acme", ["acme-1", "acme-2"]),
        ("organization globex", ["globex-1"]),
    ]


def test_one_organization_failing_does_not_stop_the_others(app: karaffe.App) -> None:
    seen: list[str] = []

    @job(per_organization=True)
    def fragile() -> None:
        labels = crate_labels()
        if labels == ["acme-1", "acme-2"]:
            raise RuntimeError("acme is broken")
        seen.extend(labels)

    result = run(app, fragile)
    assert not result.ok
    assert result.error == "organization acme: RuntimeError: acme is broken"
    assert seen == ["globex-1"]


def test_an_unscoped_job_sees_every_organization_and_its_reason_is_logged(
    app: karaffe.App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.tenancy")

    @job(name="audit", unscoped="audit every crate")
    def audit() -> list[str]:
        return crate_labels()

    assert run(app, audit).value == ["acme-1", "acme-2", "globex-1"]
    assert any("job audit: audit every crate" in r.getMessage() for r in caplog.records)


def test_a_job_acting_as_each_user_sees_what_they_may_see(app: karaffe.App) -> None:
    @job(context=ActingAs(lambda: db.session.scalars(sa.select(User).order_by(User.email))))
    def per_user() -> tuple[str, list[str]]:
        return current_run().scope, crate_labels()

    result = run(app, per_user)
    assert result.ok
    assert result.value == [
        ("user alice@example.com", ["acme-1", "acme-2"]),
        ("user bob@example.com", []),
    ]


COUNT_JOBS = """
import sqlalchemy as sa
from datalayer import Crate
from karaffe.db import db

def labels():
    print(",".join(sorted(db.session.scalars(sa.select(Crate.label)))))
"""


@pytest.fixture
def labels_job(package: t.Callable[[dict[str, str]], str]) -> str:
    return f"{package({'jobs.py': COUNT_JOBS})}.jobs.labels"


def run_job_cli(app: karaffe.App, *args: str) -> t.Any:
    return app.test_cli_runner().invoke(args=["karaffe", "run-job", *args])


def test_run_job_refuses_a_job_touching_org_data_without_a_context(
    app: karaffe.App, labels_job: str
) -> None:
    result = run_job_cli(app, labels_job)
    assert result.exit_code == 1
    assert result.stderr.startswith(
        f"Error: job {labels_job} failed: MissingJobContext: job {labels_job} read Crate rows "
        "without naming whose data it acts on"
    )
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("organization", "labels"), [("acme", "acme-1,acme-2"), ("globex", "globex-1")]
)
def test_run_job_in_one_organization(
    app: karaffe.App, labels_job: str, organization: str, labels: str
) -> None:
    result = run_job_cli(app, labels_job, "--organization", organization)
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{labels}\n"


def test_run_job_in_an_organization_by_id(app: karaffe.App, labels_job: str) -> None:
    with app.app_context(), tenancy.unscoped("test: globex's id"):
        globex = db.session.scalar(sa.select(tenancy.Organization.id).filter_by(slug="globex"))
    result = run_job_cli(app, labels_job, "--organization", str(globex))
    assert (result.exit_code, result.stdout) == (0, "globex-1\n")


def test_run_job_unscoped_names_its_reason(
    app: karaffe.App, labels_job: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="karaffe.tenancy")
    result = run_job_cli(app, labels_job, "--unscoped", "count every crate")
    assert (result.exit_code, result.stdout) == (0, "acme-1,acme-2,globex-1\n")
    assert any(f"job {labels_job}: count every crate" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--organization", "initech"), "Error: no organization 'initech'\n"),
        (
            ("--unscoped", " "),
            "Error: an unscoped job must say why it needs every organization's data\n",
        ),
        (
            ("--organization", "acme", "--unscoped", "x"),
            "Error: give --organization or --unscoped, not both\n",
        ),
    ],
)
def test_run_job_refuses_a_bad_context_with_exit_2(
    app: karaffe.App, labels_job: str, args: tuple[str, ...], message: str
) -> None:
    result = run_job_cli(app, labels_job, *args)
    assert (result.exit_code, result.stderr) == (2, message)
