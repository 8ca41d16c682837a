"""``flask tracker seed`` and ``flask tracker create-schema``."""

from __future__ import annotations

import sqlalchemy as sa
from tracker.labels import DEFAULT_LABELS
from tracker.models import Comment, Issue, Label, Project
from tracker.seed import DEMO_LOGIN, DEMO_PASSWORD

from karaffe.auth import User
from karaffe.tenancy import Membership, Organization


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
