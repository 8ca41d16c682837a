"""``flask tracker seed`` and ``flask tracker create-schema``."""

from __future__ import annotations

import typing as t

import pytest
import sqlalchemy as sa
from tracker.labels import DEFAULT_LABELS
from tracker.models import Activity, Comment, Issue, Label, Project, issue_labels
from tracker.seed import DEMO_LOGIN, DEMO_PASSWORD

from karaffe.auth import User
from karaffe.db import db
from karaffe.tenancy import Membership, Organization, unscoped


def test_seed_loads_organizations_users_projects_and_issues(app, count):
    result = app.test_cli_runner().invoke(
        args=["tracker", "seed", "--orgs", "2", "--issues", "1200", "--projects-per-org", "2"]
    )
    assert result.exit_code == 0, result.output
    assert "2 organizations, 10 users, 4 projects, 1200 issues" in result.output
    assert f"log in as {DEMO_LOGIN} / {DEMO_PASSWORD}" in result.output
    assert (count(Organization), count(Project), count(Issue)) == (2, 4, 1200)
    assert count(Label) == 2 * len(DEFAULT_LABELS)  # the default set, coloured
    assert 0 < count(Comment) < 1200
    # Every issue is in its project's organization, assigned (if at all) to a member.
    project_org = sa.select(Project.organization_id).where(Project.id == Issue.project_id)
    assert count(Issue, Issue.organization_id != project_org.scalar_subquery()) == 0
    member = sa.select(Membership.id).where(
        Membership.user_id == Issue.assignee_id,
        Membership.organization_id == Issue.organization_id,
    )
    assert count(Issue, Issue.assignee_id.is_not(None), ~member.exists()) == 0
    alice = count(Membership, Membership.user_id == 1)
    assert alice == 2  # the demo login sees every organization


def test_seeded_issues_have_the_timeline_they_would_have_had(app, count):
    result = app.test_cli_runner().invoke(
        args=["tracker", "seed", "--orgs", "1", "--issues", "300"]
    )
    assert result.exit_code == 0, result.output
    # Opened by its author when it was created; closed ones closed when last updated.
    opened = sa.select(Activity.id).where(
        Activity.issue_id == Issue.id,
        Activity.kind == "created",
        Activity.actor_id == Issue.author_id,
        Activity.created_at == Issue.created_at,
        Activity.organization_id == Issue.organization_id,
    )
    assert count(Issue, ~opened.exists()) == 0
    closed = sa.select(Activity.id).where(
        Activity.issue_id == Issue.id,
        Activity.kind == "status",
        Activity.created_at == Issue.updated_at,
    )
    assert count(Issue, Issue.status == "closed", ~closed.exists()) == 0
    assert count(Issue, Issue.status == "open", closed.exists()) == 0
    assert count(Activity) == count(Issue) + count(Issue, Issue.status == "closed")
    with app.app_context(), unscoped("the test picks an issue"):
        issue = db.session.scalars(
            sa.select(Issue).where(Issue.status == "closed").order_by(Issue.id).limit(1)
        ).one()
        issue_id, author = issue.id, issue.author.name
        slug = db.session.get(Organization, issue.organization_id).slug
    client = app.test_client()
    rv = client.post("/login", data={"email": DEMO_LOGIN, "password": DEMO_PASSWORD})
    assert rv.status_code == 302
    page = client.get(f"/o/{slug}/issues/{issue_id}").get_data(as_text=True)
    assert f'<span class="who">{author}</span> opened the issue' in page
    assert "closed the issue" in page


def test_seeding_again_adds_organizations_and_reuses_users(app, count):
    runner = app.test_cli_runner()
    for _ in range(2):
        result = runner.invoke(args=["tracker", "seed", "--orgs", "1", "--issues", "10"])
        assert result.exit_code == 0, result.output
    assert count(Organization) == 2
    assert count(User) == 5
    assert count(Issue) == 20


def test_the_demo_login_works(app, client):
    app.test_cli_runner().invoke(args=["tracker", "seed", "--orgs", "1", "--issues", "5"])
    rv = client.post("/login", data={"email": DEMO_LOGIN, "password": DEMO_PASSWORD})
    assert rv.status_code == 302


def test_seed_refuses_nonsense_counts(app):
    result = app.test_cli_runner().invoke(args=["tracker", "seed", "--orgs", "0"])
    assert result.exit_code == 2
    assert "counts must be positive" in result.output


def test_create_schema(app):
    result = app.test_cli_runner().invoke(args=["tracker", "create-schema"])
    assert result.exit_code == 0
    assert "schema ready" in result.output


@pytest.mark.parametrize(
    "backend",
    [pytest.param("sqlite", id="sqlite"), pytest.param("postgres", marks=pytest.mark.postgres)],
)
def test_seeded_issues_take_ids_no_row_had_and_new_issues_follow(
    backend: str, request: pytest.FixtureRequest, karaffe_config: dict[str, t.Any]
) -> None:
    """The seed allocates the issues' ids itself (to insert them in bulk):
    a second seed, and an issue created afterwards, never take an id that a
    row has or had, and each issue's labels and comments are its own."""
    from tracker import create_app

    from karaffe.db import db
    from karaffe.tenancy import unscoped

    if backend == "postgres":
        karaffe_config = {**karaffe_config, "DATABASE_URL": request.getfixturevalue("postgres_url")}
    app = create_app(karaffe_config)
    runner = app.test_cli_runner()
    with app.app_context():
        db.create_all()
    try:
        first = runner.invoke(args=["tracker", "seed", "--orgs", "1", "--issues", "30"])
        assert first.exit_code == 0, first.output
        with app.app_context(), unscoped("test: deleting the newest seeded issue"):
            newest = db.session.execute(sa.select(sa.func.max(Issue.id))).scalar_one()
            db.session.execute(sa.delete(Issue).where(Issue.id == newest))
            db.session.commit()
        second = runner.invoke(args=["tracker", "seed", "--orgs", "1", "--issues", "30"])
        assert second.exit_code == 0, second.output
        with app.app_context(), unscoped("test: reading the seeded issues"):
            ids = list(db.session.execute(sa.select(Issue.id).order_by(Issue.id)).scalars())
            assert len(ids) == 59 and newest not in ids
            assert ids[29:] == list(range(ids[29], ids[29] + 30))  # the second seed's, in order
            project = db.session.execute(sa.select(Project).limit(1)).scalar_one()
            issue = Issue(organization_id=project.organization_id, project_id=project.id, title="x")
            db.session.add(issue)
            db.session.commit()
            assert issue.id > ids[-1]
            # Labels and comments went to issues of their own organization.
            label_org = sa.select(Label.organization_id).where(Label.id == issue_labels.c.label_id)
            issue_org = sa.select(Issue.organization_id).where(Issue.id == issue_labels.c.issue_id)
            mismatched = db.session.execute(
                sa.select(sa.func.count())
                .select_from(issue_labels)
                .where(label_org.scalar_subquery() != issue_org.scalar_subquery())
            ).scalar_one()
            assert mismatched == 0
            orphans = db.session.execute(
                sa.select(sa.func.count())
                .select_from(Comment)
                .where(~sa.exists().where(Issue.id == Comment.issue_id))
            ).scalar_one()
            assert orphans == 0
    finally:
        with app.app_context():
            db.session.remove()
            db.drop_all()
            db.engine.dispose()
