"""Every page of the tracker carries karaffe's security headers, and no page
needs the policy loosened: no inline script without the nonce, no inline
event handler, no inline style, no ``javascript:`` URL."""

from __future__ import annotations

import re
import typing as t

import pytest
import sqlalchemy as sa
from flask import Flask
from tracker import accounts, services
from tracker.models import Activity, Comment

from karaffe.auth import ApiToken, User
from karaffe.db import db as database
from karaffe.events import channel_token, cursor
from karaffe.tenancy import unscoped

from .conftest import World

POLICY = {
    "default-src": "'self'",
    "script-src": "'self'",
    "style-src": "'self'",
    "img-src": "'self' data:",
    "font-src": "'self'",
    "connect-src": "'self'",
    "object-src": "'none'",
    "base-uri": "'none'",
    "frame-ancestors": "'none'",
    "form-action": "'self'",
}

#: Values for the URL variables of the walk, filled from the world.
URL_VALUES: dict[str, t.Callable[[World], t.Any]] = {
    "org_slug": lambda w: "acme",
    "project_id": lambda w: w.projects["website"],
    "issue_id": lambda w: w.issues["first"],
    "issue_key": lambda w: "WEB-1",
    "label_id": lambda w: w.labels["bug"],
    "user_id": lambda w: w.users["dave"],
}
#: Pages for people not logged in that send the logged-in walk elsewhere.
FOR_VISITORS = {"accounts.signup"}
#: Pages that send to another page (an issue key or a search to its issue or list).
REDIRECTS = {"finding.by_key", "finding.search"}
#: GET routes that act and redirect: following a verification link.
REDIRECTING = {"accounts.verify_email"}
FILES = {
    "static": "tracker.css",
    "karaffe_events.static": "karaffe-events.js",
    "karaffe_docs.asset": "swagger-ui-bundle.js",
}


def policy_of(header: str) -> dict[str, str]:
    directives = (part.strip().split(" ", 1) for part in header.split(";"))
    return {d[0]: d[1] if len(d) > 1 else "" for d in directives}


def assert_security_headers(rv: t.Any, url: str) -> None:
    headers = rv.headers
    assert headers["X-Content-Type-Options"] == "nosniff", url
    assert headers["X-Frame-Options"] == "DENY", url
    assert headers["Referrer-Policy"] == "strict-origin-when-cross-origin", url
    assert "Strict-Transport-Security" not in headers, url  # not configured for HTTPS
    policy = policy_of(headers["Content-Security-Policy"])
    nonces = re.findall(r"'nonce-([^']+)'", policy.get("script-src", ""))
    for name in ("script-src", "style-src"):
        policy[name] = re.sub(r" 'nonce-[^']+'", "", policy[name])
    assert policy == POLICY, url
    body = rv.get_data(as_text=True) if rv.mimetype == "text/html" else ""
    assert_no_inline_code(body, nonces, url)


def assert_no_inline_code(html: str, nonces: list[str], url: str) -> None:
    """What the policy would block must not be on the page at all."""
    for tag in re.findall(r"<script\b[^>]*>", html):
        if "src=" in tag or 'type="application/json"' in tag:
            continue
        assert nonces and f'nonce="{nonces[0]}"' in tag, f"{url}: inline script {tag}"
    handlers = re.findall(r"<[^>]*\son[a-z]+\s*=", html)
    assert not handlers, f"{url}: inline event handler {handlers}"
    assert not re.search(r"<[^>]*\sstyle\s*=", html), f"{url}: inline style"
    assert "javascript:" not in html.lower(), url


def get_routes(app: Flask) -> list[t.Any]:
    return sorted(
        (rule for rule in app.url_map.iter_rules() if "GET" in (rule.methods or ())),
        key=lambda rule: rule.rule,
    )


def url_for_rule(app: Flask, rule: t.Any, world: World, extra: dict[str, t.Any]) -> str:
    values = {}
    for name in rule.arguments:
        if name == "filename":
            values[name] = FILES[rule.endpoint]
        elif name in extra:
            values[name] = extra[name]
        else:
            values[name] = URL_VALUES[name](world)
    with app.test_request_context():
        from flask import url_for

        return url_for(rule.endpoint, **values)


@pytest.fixture
def invitation_token(app: Flask, world: World) -> str:
    with app.app_context(), unscoped("test: an invitation to open"):
        alice = database.session.get(User, world.users["alice"])
        assert alice is not None
        _, token = services.create_invitation(world.orgs["acme"], alice, "member")
        database.session.commit()
    return token


def test_every_get_route_sends_the_security_headers(
    app: Flask, world: World, login: t.Any, invitation_token: str
) -> None:
    """Logged in as an owner, every GET route (HTML pages, API, docs, static
    files, the event stream) answers 200 with the headers; pages hold no
    code the policy would block."""
    client = login("alice")
    with app.app_context(), unscoped("test: a stream token"):
        alice = database.session.get(User, world.users["alice"])
        channels = [f"project:{world.projects['website']}"]
        stream = {"channel": channels, "token": channel_token(alice, channels)}
        stream["cursor"] = cursor(channels)
        token_id = database.session.execute(
            sa.select(ApiToken.id).where(ApiToken.user_id == world.users["alice"])
        ).scalar_one()
        comment = Comment(
            organization_id=world.orgs["acme"],
            issue_id=world.issues["first"],
            author_id=world.users["alice"],
            body="A comment to edit",
        )
        entry = Activity(
            organization_id=world.orgs["acme"],
            issue_id=world.issues["first"],
            actor_id=world.users["alice"],
            kind="status",
            detail={"from": "open", "to": "closed"},
        )
        database.session.add_all([comment, entry])
        database.session.commit()
        comment_id, entry_id = comment.id, entry.id
    with app.test_request_context():
        alice = database.session.get(User, world.users["alice"])
        assert alice is not None
        links = {
            "accounts.reset_password": accounts.reset_token(alice),
            "accounts.verify_email": accounts.verification_token(alice, alice.email),
        }
    queries = {
        "demo.add_numbers": {"a": 1, "b": 2},
        "karaffe_events.stream": stream,
        "projects.row": {"id": world.issues["first"]},
        "issues.comment_fragment": {"id": comment_id},
        "issues.entry_fragment": {"id": entry_id},
        "api_v1.live_token": {"channel": channels},
    }
    walked = []
    for rule in get_routes(app):
        token = links.get(rule.endpoint, invitation_token)
        extra = {"token": token, "token_id": token_id, "comment_id": comment_id}
        url = url_for_rule(app, rule, world, extra)
        rv = client.get(url, query_string=queries.get(rule.endpoint), buffered=False)
        expected = 302 if rule.endpoint in FOR_VISITORS | REDIRECTS | REDIRECTING else 200
        assert rv.status_code == expected, (url, rv.status_code, rv.get_data(as_text=True)[:300])
        assert_security_headers(rv, url)
        rv.close()
        walked.append(rule.endpoint)
    assert {"pages.index", "issues.show", "karaffe_docs.docs", "api_v1.list_issues"} <= set(walked)


@pytest.mark.parametrize(
    "url", ["/", "/login", "/signup", "/welcome", "/api/v1/docs", "/api/v1/me", "/nowhere"]
)
def test_anonymous_pages_and_errors_send_the_security_headers(client: t.Any, url: str) -> None:
    rv = client.get(url)
    assert rv.status_code in (200, 302, 401, 404)
    assert_security_headers(rv, url)
