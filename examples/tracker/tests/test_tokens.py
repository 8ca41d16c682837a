"""API tokens: the settings page (POST-redirect-GET, shown once, told apart,
revoked after a confirmation), expiry, and read-only tokens, which read
everything and write nothing."""

from __future__ import annotations

import datetime as dt
import re

import pytest
import sqlalchemy as sa
from tracker.models import Comment, Invitation, Issue, Label, Project

from karaffe.auth import ApiToken
from karaffe.db import db
from karaffe.tenancy import Membership, Organization, unscoped

TOKENS = "/settings/tokens"
WRITES = {"POST", "PUT", "PATCH", "DELETE"}


def shown_token(data: bytes) -> str | None:
    found = re.search(rb'id="new-token">([^<]+)<', data)
    return found.group(1).decode() if found else None


def create(client, **form) -> str:
    """Create a token through the page; return its plaintext."""
    rv = client.post(TOKENS, data={"name": "CI script", **form})
    assert rv.status_code == 303, rv.data
    page = client.get(rv.headers["Location"])
    token = shown_token(page.data)
    assert token is not None
    return token


def newest_token(app) -> ApiToken:
    with app.app_context():
        token = db.session.scalars(sa.select(ApiToken).order_by(ApiToken.id.desc())).first()
        assert token is not None
        db.session.expunge(token)
        return token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# -- creating: POST-redirect-GET, shown once -----------------------------------------------


def test_creating_redirects_and_the_page_shows_the_secret_once(login, world, count):
    browser = login("erin")
    before = count(ApiToken)
    rv = browser.post(TOKENS, data={"name": "CI script"})
    assert rv.status_code == 303
    assert rv.headers["Location"] == TOKENS  # the secret is never in a URL
    assert b"kf_" not in rv.data
    page = browser.get(TOKENS)
    assert page.status_code == 200
    assert page.headers["Cache-Control"] == "no-store"
    token = shown_token(page.data)
    assert token is not None and token.startswith("kf_")
    assert count(ApiToken) == before + 1
    reloaded = browser.get(TOKENS)  # reloading the redirect's target
    assert count(ApiToken) == before + 1
    assert token.encode() not in reloaded.data
    assert b"CI script" in reloaded.data
    with browser.session_transaction() as session:
        assert all(token not in str(value) for value in session.values())


def test_new_token_works_for_the_api(login, world, client):
    token = create(login("erin"), access="write")
    me = client.get("/api/v1/me", headers=bearer(token))
    assert me.get_json()["name"] == "Erin"


def test_invalid_form_creates_nothing_and_keeps_what_was_typed(login, world, count):
    before = count(ApiToken)
    rv = login("erin").post(TOKENS, data={"name": "", "expires": "30", "access": "write"})
    assert rv.status_code == 422
    assert b"This field is required." in rv.data
    assert b'<option value="30" selected>' in rv.data
    assert b'<option value="write" selected>' in rv.data
    rv = login("erin").post(TOKENS, data={"name": "x", "expires": "7", "access": "admin"})
    assert rv.status_code == 422
    assert rv.data.count(b"Choose a valid option.") == 2
    assert count(ApiToken) == before


def test_a_token_cannot_manage_tokens(api, world, count):
    """Pages ignore the Authorization header: a token cannot mint itself a
    successor without its expiry or scopes."""
    before = count(ApiToken)
    for rv in (api("erin").get(TOKENS), api("erin").post(TOKENS, data={"name": "successor"})):
        assert rv.status_code == 302
        assert rv.headers["Location"].startswith("/login")
    assert count(ApiToken) == before


# -- the list: told apart by prefix, access, dates -------------------------------------------


def row_of(data: bytes, prefix: str) -> str:
    rows = re.findall(r"<tr[^>]*>.*?</tr>", data.decode(), re.S)
    (row,) = [r for r in rows if f"{prefix}…" in r]
    return row


def test_list_tells_two_tokens_of_one_name_apart(app, login, world, client):
    browser = login("erin")
    first = create(browser)
    first_prefix = newest_token(app).prefix
    second = create(browser, access="write", expires="never")
    second_prefix = newest_token(app).prefix
    assert first.startswith(first_prefix) and second.startswith(second_prefix)
    assert first_prefix != second_prefix
    assert client.get("/api/v1/me", headers=bearer(first)).status_code == 200
    page = browser.get(TOKENS).data
    assert page.count(b"<td>CI script</td>") == 2
    used, unused = row_of(page, first_prefix), row_of(page, second_prefix)
    assert "Read only" in used and "Read and write" in unused
    assert re.search(r'class="muted last-used"><time datetime=', used)
    assert 'class="muted last-used">Never<' in unused
    assert re.search(r'class="muted created"><time datetime=', unused)
    expires = (dt.datetime.now(dt.UTC) + dt.timedelta(days=90)).strftime("%Y-%m-%d")
    assert expires in used
    assert re.search(r'class="expires"><span class="muted">Never</span>', unused)


@pytest.mark.parametrize(
    ("choice", "days"), [("30", 30), ("90", 90), ("365", 365), ("never", None)]
)
def test_expiry_choices(app, login, world, choice, days):
    create(login("erin"), expires=choice)
    token = newest_token(app)
    if days is None:
        assert token.expires_at is None
    else:
        expected = dt.datetime.now(dt.UTC) + dt.timedelta(days=days)
        assert abs(token.expires_at.replace(tzinfo=dt.UTC) - expected) < dt.timedelta(minutes=1)


def test_expired_token_is_refused_and_marked_expired(app, login, world, client):
    browser = login("erin")
    token = create(browser, expires="30")
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    with app.app_context():
        db.session.execute(
            sa.update(ApiToken)
            .where(ApiToken.id == newest_token(app).id)
            .values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1))
        )
        db.session.commit()
    rv = client.get("/api/v1/me", headers=bearer(token))
    assert rv.status_code == 401
    assert rv.get_json()["detail"] == "The API token has expired."
    assert '<span class="badge expired">Expired</span>' in row_of(
        browser.get(TOKENS).data, newest_token(app).prefix
    )


# -- revoking: after a confirmation --------------------------------------------------------


def test_revoking_goes_through_a_confirmation(app, login, world, client, count):
    browser = login("erin")
    token = create(browser)
    token_id = newest_token(app).id
    url = f"{TOKENS}/{token_id}/revoke"
    page = browser.get(TOKENS).data.decode()
    assert f'href="{url}"' in page
    assert f'action="{url}"' not in page  # no one-click revoke on the list
    confirm = browser.get(url)
    assert confirm.status_code == 200
    assert "Revoke token “CI script”" in confirm.text
    assert f'action="{url}"' in confirm.text
    assert 'href="/settings/tokens"' in confirm.text  # cancel
    assert count(ApiToken, ApiToken.revoked_at.is_not(None)) == 0
    assert client.get("/api/v1/me", headers=bearer(token)).status_code == 200
    rv = browser.post(url)
    assert rv.status_code == 302
    assert "revoked" in browser.get(rv.headers["Location"]).text
    assert count(ApiToken, ApiToken.revoked_at.is_not(None)) == 1
    rv = client.get("/api/v1/me", headers=bearer(token))
    assert rv.status_code == 401
    assert rv.get_json()["detail"] == "The API token has been revoked."
    again = browser.get(url, follow_redirects=True)
    assert "already revoked" in again.text


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_cannot_revoke_someone_elses_token(login, world, count, method):
    rv = login("erin").open(f"{TOKENS}/1/revoke", method=method)  # alice's
    assert rv.status_code == 404
    assert count(ApiToken, ApiToken.revoked_at.is_not(None)) == 0


# -- read-only tokens -----------------------------------------------------------------------


def snapshot(app) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the tracker's data, to show that nothing was written."""
    models = [Organization, Membership, Project, Label, Issue, Comment, Invitation]
    with app.app_context(), unscoped("test: snapshot of every row"):
        result = {}
        for model in models:
            columns = sa.inspect(model).column_attrs
            rows = db.session.scalars(sa.select(model)).all()
            result[model.__name__] = sorted(
                (tuple(getattr(row, c.key) for c in columns) for row in rows), key=repr
            )
        return result


def url_of(rule, world) -> str:
    values = {
        "org_slug": "acme",
        "project_id": world.projects["website"],
        "issue_id": world.issues["first"],
        "issue_key": "WEB-1",
        "label_id": world.labels["bug"],
        "comment_id": 1,
        "user_id": world.users["dave"],
        "tab": "t1",
        "notification_id": 1,
    }
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<(?:\w+:)?{name}>", str(values[name]), path)
    return path


def api_rules(app, methods):
    """Every route of the API (its docs' assets aside) and method in ``methods``."""
    return [
        (rule, method)
        for rule in app.url_map.iter_rules()
        if rule.rule.startswith("/api/v1/") and rule.endpoint != "karaffe_docs.asset"
        for method in sorted(rule.methods & methods)
    ]


@pytest.fixture
def read_only(login, world):
    """A read-only token of alice, who owns Acme: her role allows every write."""
    return create(login("alice"), access="read")


def test_read_only_token_reads_every_api_route(app, world, read_only, client):
    rules = api_rules(app, {"GET"})
    assert len(rules) >= 10
    queries = {"/api/v1/live/token": {"channel": f"project:{world.projects['website']}"}}
    comment = client.post(
        f"/api/v1/issues/{world.issues['first']}/comments",
        headers=bearer(world.tokens["alice"]),
        json={"body": "Something to read"},
    )
    assert comment.get_json()["id"] == 1  # the comment_id url_of uses
    for rule, method in rules:
        rv = client.open(
            url_of(rule, world),
            method=method,
            headers=bearer(read_only),
            query_string=queries.get(rule.rule),
        )
        assert rv.status_code == 200, (rule.rule, rv.data)


def test_read_only_token_is_refused_on_every_api_write(app, world, read_only, client):
    rules = api_rules(app, WRITES)
    assert len(rules) >= 14
    before = snapshot(app)
    for rule, method in rules:
        rv = client.open(
            url_of(rule, world), method=method, headers=bearer(read_only), json={"name": "x"}
        )
        assert rv.status_code == 403, (method, rule.rule, rv.data)
        assert rv.mimetype == "application/problem+json"
        assert rv.get_json()["detail"] == (
            f"This API token is read-only: {method} needs a token with the write scope."
        )
        assert 'error="insufficient_scope"' in rv.headers["WWW-Authenticate"]
    assert snapshot(app) == before


def test_read_only_token_cannot_write_through_the_html_forms_either(
    world, read_only, client, count
):
    before = count(Issue)
    rv = client.post(
        f"/o/acme/projects/{world.projects['website']}/issues/new",
        data={"title": "sneaky"},
        headers=bearer(read_only),
    )
    assert rv.status_code == 302  # to the login page: forms ignore the header
    assert rv.headers["Location"].startswith("/login")
    assert count(Issue) == before


def test_read_and_write_token_writes(login, world, client, count):
    token = create(login("alice"), access="write")
    rv = client.post(
        f"/api/v1/projects/{world.projects['website']}/issues",
        json={"title": "Written with a token"},
        headers=bearer(token),
    )
    assert rv.status_code == 201
    assert count(Issue, Issue.title == "Written with a token") == 1
