"""``flask --app tracker tracker ...``: the tracker's own commands."""

from __future__ import annotations

import time

import click
from flask import Flask
from flask.cli import AppGroup

from karaffe.db import db

from . import seed as seeding

#: ``flask tracker``: registered by :func:`init_app`.
cli = AppGroup("tracker", help="The tracker's commands: create the schema, load data.")


@cli.command("create-schema")
def create_schema() -> None:
    """Create the tables that do not exist yet (development and tests;
    production uses ``flask db upgrade``)."""
    db.create_all()
    click.echo("schema ready")


@cli.command("seed")
@click.option("--orgs", default=3, show_default=True, help="Organizations to create.")
@click.option("--issues", default=3_000, show_default=True, help="Issues, over all projects.")
@click.option("--users-per-org", default=5, show_default=True)
@click.option("--projects-per-org", default=3, show_default=True)
@click.option("--random-seed", default=38, show_default=True, help="Same seed, same data.")
def seed_command(
    orgs: int, issues: int, users_per_org: int, projects_per_org: int, random_seed: int
) -> None:
    """Create the schema if needed and bulk-load organizations, users,
    projects, labels, issues and comments."""
    if orgs < 1 or issues < 0 or users_per_org < 1 or projects_per_org < 1:
        raise click.BadParameter("counts must be positive")
    db.create_all()
    started = time.perf_counter()
    with click.progressbar(length=issues, label="Inserting issues", show_pos=True) as bar:
        report = seeding.seed(
            orgs=orgs,
            issues=issues,
            users_per_org=users_per_org,
            projects_per_org=projects_per_org,
            seed_value=random_seed,
            progress=bar.update,
        )
    elapsed = time.perf_counter() - started
    click.echo(
        f"{len(report.organizations)} organizations, {len(report.users)} users, "
        f"{report.projects} projects, {report.issues} issues, {report.comments} comments "
        f"in {elapsed:.1f}s"
    )
    click.echo(f"log in as {seeding.DEMO_LOGIN} / {seeding.DEMO_PASSWORD}")


def init_app(app: Flask) -> None:
    app.cli.add_command(cli)
