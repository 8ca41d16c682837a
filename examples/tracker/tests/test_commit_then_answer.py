"""A committed write is answered as a success, even if the database goes away
the moment after the commit.

Every write route of the tracker is called once, successfully, while any
statement run after the request's commit fails as a lost connection would.
A view that reads a model after ``commit()`` (an expired ``issue.id`` for
the ``Location`` header, a page rendered from the database) then answers
5xx for a write that happened: the client retries, and the issue exists
twice. The autouse ``no_sql_after_commit`` fixture checks the same for
every other test of the tracker.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest
import sqlalchemy as sa
from flask import Flask, g, has_request_context
from flask.testing import FlaskClient
from tracker import accounts
from tracker.models import Issue

from karaffe.auth import ApiToken, User
from karaffe.db import db as database
from karaffe.tenancy import unscoped

from .conftest import PASSWORD, ApiClient, World

WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}


@dataclass
class Clients:
    world: World
    api: Callable[[str], ApiClient]
    login: Callable[[str], FlaskClient]
    app: Flask

    def token_of(self, name: str) -> int:
        with self.app.app_context():
            stmt = sa.select(ApiToken.id).where(ApiToken.user_id == self.world.users[name])
            return int(database.session.execute(stmt).scalars().first())


def _invitation_path(c: Clients) -> str:
    rv = c.api("alice").post("/api/v1/orgs/acme/invitations", json={"role": "member"})
    assert rv.status_code == 201, rv.data
    url = rv.get_json()["url"]
    return "/invitations/" + url.rsplit("/invitations/", 1)[1]


def _other_session(c: Clients) -> int:
    """The id of another login session of bob's."""
    from karaffe.auth import UserSession

    c.login("bob")
    with c.app.app_context():
        stmt = sa.select(sa.func.max(UserSession.id)).where(
            UserSession.user_id == c.world.users["bob"]
        )
        return int(database.session.execute(stmt).scalar_one())


def _reset_token(c: Clients, name: str = "bob") -> str:
    with c.app.test_request_context():
        user = database.session.get(User, c.world.users[name])
        assert user is not None
        return accounts.reset_token(user)


def _verification_token(c: Clients, name: str = "bob", email: str | None = None) -> str:
    with c.app.test_request_context():
        user = database.session.get(User, c.world.users[name])
        assert user is not None
        return accounts.verification_token(user, email or user.email)


def _comment(c: Clients) -> int:
    rv = c.api("bob").post(f"/api/v1/issues/{c.world.issues['first']}/comments", json={"body": "x"})
    assert rv.status_code == 201, rv.data
    return int(rv.get_json()["id"])


def _notification(c: Clients) -> int:
    """The id of a notification of bob's (alice mentions him)."""
    _mention = {"body": "@bob have a look"}
    rv = c.api("alice").post(f"/api/v1/issues/{c.world.issues['first']}/comments", json=_mention)
    assert rv.status_code == 201, rv.data
    return int(c.api("bob").get("/api/v1/notifications").get_json()[0]["id"])


#: One successful call of each write route: (endpoint, call, expected status).
# fmt: off
CASES: list[tuple[str, Callable[[Clients], t.Any], int]] = [
    ("api_v1.create_org", lambda c: c.api("alice").post("/api/v1/orgs", json={"name": "Initech"}), 201),
    ("api_v1.create_invitation", lambda c: c.api("alice").post("/api/v1/orgs/acme/invitations", json={}), 201),
    ("api_v1.create_label", lambda c: c.api("alice").post("/api/v1/orgs/acme/labels", json={"name": "perf"}), 201),
    ("api_v1.change_role", lambda c: c.api("alice").put(f"/api/v1/orgs/acme/members/{c.world.users['dave']}/role", json={"role": "admin"}), 200),
    ("api_v1.leave_org", lambda c: c.api("dave").delete("/api/v1/orgs/acme/members/me"), 204),
    ("api_v1.update_label", lambda c: c.api("alice").patch(f"/api/v1/labels/{c.world.labels['ux']}", json={"color": "#123456"}), 200),
    ("api_v1.delete_label", lambda c: c.api("alice").delete(f"/api/v1/labels/{c.world.labels['ux']}"), 204),
    ("api_v1.create_project", lambda c: c.api("alice").post("/api/v1/orgs/acme/projects", json={"name": "App"}), 201),
    ("api_v1.update_project", lambda c: c.api("alice").patch(f"/api/v1/projects/{c.world.projects['website']}", json={"name": "Site"}), 200),
    ("api_v1.delete_project", lambda c: c.api("alice").delete(f"/api/v1/projects/{c.world.projects['website']}"), 204),
    ("api_v1.create_issue", lambda c: c.api("bob").post(f"/api/v1/projects/{c.world.projects['website']}/issues", json={"title": "New", "label_ids": [c.world.labels["bug"]]}), 201),
    ("api_v1.update_issue", lambda c: c.api("bob").patch(f"/api/v1/issues/{c.world.issues['first']}", json={"status": "closed"}), 200),
    ("api_v1.delete_issue", lambda c: c.api("bob").delete(f"/api/v1/issues/{c.world.issues['first']}"), 204),
    ("api_v1.create_comment", lambda c: c.api("bob").post(f"/api/v1/issues/{c.world.issues['first']}/comments", json={"body": "Same here."}), 201),
    ("api_v1.delete_comment", lambda c: c.api("bob").delete(f"/api/v1/comments/{_comment(c)}"), 204),
    ("api_v1.update_comment", lambda c: c.api("bob").patch(f"/api/v1/comments/{_comment(c)}", json={"body": "Edited"}), 200),
    ("api_v1.render_markdown", lambda c: c.api("bob").post("/api/v1/markdown", json={"text": "**hi**"}), 200),
    ("accounts.signup", lambda c: c.app.test_client().post("/signup", data={"name": "Zed", "email": "zed@example.com", "password": PASSWORD}), 302),
    ("accounts.login", lambda c: c.app.test_client().post("/login", data={"email": "bob@example.com", "password": PASSWORD}), 302),
    ("accounts.logout", lambda c: c.login("bob").post("/logout"), 302),
    ("orgs.new", lambda c: c.login("alice").post("/orgs/new", data={"name": "Initech"}), 302),
    ("orgs.invite", lambda c: c.login("alice").post("/o/acme/invitations", data={"role": "member"}), 201),
    ("orgs.invitation", lambda c: c.login("erin").post(_invitation_path(c)), 302),
    ("orgs.change_role", lambda c: c.login("alice").post(f"/o/acme/members/{c.world.users['dave']}/role", data={"role": "admin"}), 302),
    ("orgs.leave", lambda c: c.login("dave").post("/o/acme/leave"), 302),
    ("orgs.labels", lambda c: c.login("alice").post("/o/acme/labels", data={"name": "perf"}), 302),
    ("orgs.edit_label", lambda c: c.login("alice").post(f"/o/acme/labels/{c.world.labels['ux']}/edit", data={"name": "ux", "color": "#123456"}), 302),
    ("orgs.delete_label", lambda c: c.login("alice").post(f"/o/acme/labels/{c.world.labels['ux']}/delete"), 302),
    ("projects.new", lambda c: c.login("alice").post("/o/acme/projects/new", data={"name": "App"}), 302),
    ("projects.edit", lambda c: c.login("alice").post(f"/o/acme/projects/{c.world.projects['website']}/edit", data={"name": "Site"}), 302),
    ("projects.delete", lambda c: c.login("alice").post(f"/o/acme/projects/{c.world.projects['website']}/delete"), 302),
    ("issues.new", lambda c: c.login("bob").post(f"/o/acme/projects/{c.world.projects['website']}/issues/new", data={"title": "New", "label_ids": [str(c.world.labels["bug"])]}), 302),
    ("issues.edit", lambda c: c.login("bob").post(f"/o/acme/issues/{c.world.issues['first']}/edit", data={"title": "Renamed", "label_ids": [str(c.world.labels["ux"])]}), 302),
    ("issues.set_status", lambda c: c.login("bob").post(f"/o/acme/issues/{c.world.issues['first']}/status", data={"status": "closed"}), 302),
    ("issues.delete", lambda c: c.login("bob").post(f"/o/acme/issues/{c.world.issues['first']}/delete"), 302),
    ("issues.presence", lambda c: c.login("bob").post(f"/o/acme/issues/{c.world.issues['first']}/presence", data={"tab": "t1"}), 200),
    ("api_v1.issue_presence", lambda c: c.api("bob").put(f"/api/v1/issues/{c.world.issues['first']}/presence/t1"), 200),
    ("api_v1.leave_issue_presence", lambda c: c.api("bob").delete(f"/api/v1/issues/{c.world.issues['first']}/presence/t1"), 204),
    ("issues.comment", lambda c: c.login("bob").post(f"/o/acme/issues/{c.world.issues['first']}/comments", data={"body": "Same here."}), 302),
    ("issues.edit_comment", lambda c: c.login("bob").post(f"/o/acme/comments/{_comment(c)}/edit", data={"body": "Edited"}), 302),
    ("issues.delete_comment", lambda c: c.login("bob").post(f"/o/acme/comments/{_comment(c)}/delete"), 302),
    ("settings.tokens", lambda c: c.login("bob").post("/settings/tokens", data={"name": "laptop"}), 303),
    ("settings.end_session", lambda c: c.login("bob").post(f"/settings/sessions/{_other_session(c)}/end"), 302),
    ("settings.end_other_sessions", lambda c: c.login("bob").post("/settings/sessions/end-others"), 302),
    ("settings.change_password", lambda c: c.login("bob").post("/settings/password", data={"current_password": PASSWORD, "password": "a brand new password"}), 302),
    ("orgs.remove_member", lambda c: c.login("alice").post(f"/o/acme/members/{c.world.users['dave']}/remove"), 302),
    ("api_v1.remove_member", lambda c: c.api("alice").delete(f"/api/v1/orgs/acme/members/{c.world.users['dave']}"), 204),
    ("api_v1.update_me", lambda c: c.api("bob").patch("/api/v1/me", json={"name": "Robert"}), 200),
    ("api_v1.change_email", lambda c: c.api("bob").post("/api/v1/me/email", json={"email": "rob@example.com", "current_password": PASSWORD}), 202),
    ("api_v1.resend_verification", lambda c: c.api("bob").post("/api/v1/me/email/verification"), 202),
    ("api_v1.change_password", lambda c: c.api("bob").put("/api/v1/me/password", json={"current_password": PASSWORD, "password": "a brand new password"}), 204),
    ("api_accounts.request_password_reset", lambda c: c.app.test_client().post("/api/v1/password-reset", json={"email": "bob@example.com"}), 202),
    ("api_accounts.confirm_password_reset", lambda c: c.app.test_client().post("/api/v1/password-reset/confirm", json={"token": _reset_token(c), "password": "a brand new password"}), 204),
    ("api_accounts.confirm_email", lambda c: c.app.test_client().post("/api/v1/email-verification/confirm", json={"token": _verification_token(c, email="rob@example.com")}), 200),
    ("accounts.forgot_password", lambda c: c.app.test_client().post("/password/forgot", data={"email": "bob@example.com"}), 200),
    ("accounts.reset_password", lambda c: c.app.test_client().post(f"/password/reset/{_reset_token(c)}", data={"password": "a brand new password"}), 302),
    ("accounts.resend_verification", lambda c: c.login("bob").post("/verify-email/resend"), 302),
    ("settings.change_name", lambda c: c.login("bob").post("/settings/profile", data={"name": "Robert"}), 302),
    ("settings.change_email", lambda c: c.login("bob").post("/settings/email", data={"email": "rob@example.com", "current_password": PASSWORD}), 302),
    ("api_v1.watch", lambda c: c.api("dave").put(f"/api/v1/issues/{c.world.issues['first']}/watch"), 200),
    ("api_v1.unwatch", lambda c: c.api("dave").delete(f"/api/v1/issues/{c.world.issues['first']}/watch"), 200),
    ("api_v1.mark_read", lambda c: c.api("bob").post(f"/api/v1/notifications/{_notification(c)}/read"), 200),
    ("api_v1.mark_all_read", lambda c: c.api("bob").post("/api/v1/notifications/read") if _notification(c) else None, 200),
    ("notifications.watch", lambda c: c.login("dave").post(f"/o/acme/issues/{c.world.issues['first']}/watch", data={"watching": "1"}), 303),
    ("notifications.mark_read", lambda c: c.login("bob").post(f"/notifications/{_notification(c)}/read", data={"open": "1"}), 303),
    ("notifications.mark_all_read", lambda c: c.login("bob").post("/notifications/read") if _notification(c) else None, 303),
    ("settings.revoke_token", lambda c: c.login("bob").post(f"/settings/tokens/{c.token_of('bob')}/revoke"), 302),
]
# fmt: on


@pytest.fixture
def database_gone_after_commit(app: Flask) -> Iterator[list[str]]:
    """Every statement a request runs after its commit fails as if the
    server had gone away; returns the statements that were refused."""
    refused: list[str] = []

    def committed(session: t.Any) -> None:
        if has_request_context():
            g._test_committed = True

    def execute(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        if has_request_context() and g.get("_test_committed"):
            refused.append(statement)
            raise sa.exc.OperationalError(
                statement, {}, ConnectionError("server closed the connection")
            )

    with app.app_context():
        engine = database.engine
    sa.event.listen(database.session, "after_commit", committed)
    sa.event.listen(engine, "before_cursor_execute", execute)
    try:
        yield refused
    finally:
        sa.event.remove(engine, "before_cursor_execute", execute)
        sa.event.remove(database.session, "after_commit", committed)


def test_every_write_route_has_a_case(app: Flask) -> None:
    writes = {
        rule.endpoint
        for rule in app.url_map.iter_rules()
        if rule.methods and rule.methods & WRITE_METHODS
    }
    assert writes == {endpoint for endpoint, _, _ in CASES}


@pytest.mark.parametrize(("endpoint", "call", "status"), CASES, ids=[c[0] for c in CASES])
def test_a_committed_write_is_answered_as_a_success(
    app: Flask,
    world: World,
    api: Callable[[str], ApiClient],
    login: Callable[[str], FlaskClient],
    database_gone_after_commit: list[str],
    endpoint: str,
    call: Callable[[Clients], t.Any],
    status: int,
    no_sql_after_commit: list[str],
) -> None:
    rv = call(Clients(world, api, login, app))
    assert rv.status_code == status, rv.data[:500]
    assert database_gone_after_commit == []
    assert no_sql_after_commit == []


def test_the_issue_created_is_in_the_database(
    app: Flask, world: World, api: Callable[[str], ApiClient], database_gone_after_commit: list[str]
) -> None:
    rv = api("bob").post(
        f"/api/v1/projects/{world.projects['website']}/issues", json={"title": "Once"}
    )
    assert rv.status_code == 201
    assert rv.headers["Location"] == f"/api/v1/issues/{rv.get_json()['id']}"
    with app.app_context(), unscoped("test: the row written"):
        titles = database.session.execute(sa.select(Issue.title).where(Issue.title == "Once")).all()
    assert len(titles) == 1
