"""Cross-tenant isolation: every route of the app, called by a member of one
organization on another organization's objects, answers 404 or 403 and
reveals nothing, and nothing of the other organization changes."""

from __future__ import annotations

from tracker.models import Activity, Comment, Issue, Label, Notification, Project

from karaffe._leaksweep import Seeded
from karaffe.auth import User, create_api_token
from karaffe.db import db
from karaffe.tenancy import Organization


def seed(org: Organization, owner: User) -> Seeded:
    """One of everything in ``org``, each with a name only it has."""
    tag = org.slug.replace("-", "")
    # A key of its own too (keys are unique per organization only).
    project = Project(
        organization_id=org.id,
        name=f"Project of {tag}",
        key=("K" + tag[-9:]).upper(),
        description=f"About {tag}",
    )
    label = Label(organization_id=org.id, name=f"label{tag}")
    db.session.add_all([project, label])
    db.session.flush()
    issue = Issue(
        organization_id=org.id,
        project_id=project.id,
        title=f"Issue of {tag}",
        description=f"Details of {tag}",
        author_id=owner.id,
        assignee_id=owner.id,
        labels=[label],
    )
    db.session.add(issue)
    db.session.flush()
    comment = Comment(
        organization_id=org.id, issue_id=issue.id, author_id=owner.id, body=f"Comment of {tag}"
    )
    db.session.add(comment)
    token, _ = create_api_token(owner, f"Token of {tag}")
    db.session.flush()
    activity = Activity(organization_id=org.id, issue_id=issue.id, actor_id=None, kind="comment",
                        detail={"comment_id": comment.id})  # fmt: skip
    db.session.add(activity)
    db.session.flush()
    notification = Notification(organization_id=org.id, user_id=owner.id, issue_id=issue.id,
                                activity_id=activity.id, reason="watching")  # fmt: skip
    db.session.add(notification)
    db.session.flush()
    return Seeded(
        secrets=[project.name, issue.title, f"Details of {tag}", comment.body, label.name],
        url_values={
            "project_id": project.id,
            "issue_id": issue.id,
            "issue_key": issue.key,
            "label_id": label.id,
            "comment_id": comment.id,
            "user_id": owner.id,
            "token_id": token.id,
            "notification_id": notification.id,
        },
    )


ALLOWED = {
    # Routes that are not about an organization's data at all.
    "pages.index",
    "welcome.welcome",
    "demo.add_numbers",
}


def test_no_route_reveals_or_changes_another_orgs_data(app, leak_sweep):
    report = leak_sweep(
        seed,
        json_body={"title": "attack", "name": "attack", "body": "attack", "role": "owner"},
        form_body={"title": "attack", "name": "attack", "body": "attack", "role": "owner"},
        url_values={"token": "not-a-token", "filename": "swagger-ui.css", "tab": "t1"},
        # Logging out half-way would make every later probe a mere redirect.
        # Login sessions belong to users, not organizations (test_sessions.py).
        skip_endpoints=("static", "accounts.logout", "settings.end_session"),
    )
    assert report.leaks == []
    assert report.changed_tables == []
    assert report.unswept == []
    assert report.controls_with_own_data > 5
    # Every attack on another organization's objects was refused as missing
    # or forbidden (routes whose URL names no object of an org excepted).
    endpoints = {rule.rule: rule.endpoint for rule in app.url_map.iter_rules()}
    refused = {404, 403}
    for probe in report.probes:
        if probe.kind == "control":
            continue
        rule = next(
            (r for r in endpoints if _matches(r, probe.url)),
            None,
        )
        touches_other_org = any(var in (rule or "") for var in ("org_slug", "_id>"))
        if touches_other_org:
            assert probe.status in refused, str(probe)


def _matches(rule: str, url: str) -> bool:
    import re

    pattern = re.sub(r"<(?:[^:<>]+:)?[^<>]+>", "[^/]+", rule)
    return re.fullmatch(pattern, url.split("?")[0]) is not None


def test_a_member_of_both_orgs_cannot_cross_them_through_urls(app, login, world, db):
    """Being in Globex does not make Globex's issue reachable under /o/acme/."""
    from karaffe.tenancy import Membership, unscoped

    with app.app_context(), unscoped("test: dave joins globex"):
        db.session.add(
            Membership(organization_id=world.orgs["globex"], user_id=world.users["dave"])
        )
        db.session.commit()
    client = login("dave")
    hidden, vault = world.issues["hidden"], world.projects["vault"]
    for url in (
        f"/o/acme/issues/{hidden}",
        f"/o/acme/issues/{hidden}/edit",
        f"/o/acme/projects/{vault}",
        f"/o/acme/projects/{vault}/issues/new",
        f"/o/acme/labels/{world.labels['globex-only']}/delete",
    ):
        method = "post" if url.endswith("delete") else "get"
        assert getattr(client, method)(url).status_code == 404, url
