"""HTML escaping: user text such as ``<script>alert(1)</script>`` renders
inert on every page it appears on, in text, attributes and embedded JSON."""

from __future__ import annotations

import json
import re

import pytest
import sqlalchemy as sa
from tracker.models import Comment, Issue, Label, Project

from karaffe.tenancy import Organization, unscoped

XSS = "<script>alert(1)</script>"
QUOTES = "\"'><img src=x onerror=alert(2)>"


@pytest.fixture
def hostile(app, world, db):
    """Every name and text of Acme's data set to markup."""
    with app.app_context(), unscoped("test: hostile names"):
        db.session.execute(
            sa.update(Issue)
            .where(Issue.id == world.issues["first"])
            .values(title=XSS, description=XSS + QUOTES)
        )
        db.session.execute(
            sa.update(Project).where(Project.id == world.projects["website"]).values(name=XSS)
        )
        db.session.execute(sa.update(Label).where(Label.id == world.labels["bug"]).values(name=XSS))
        db.session.execute(
            sa.update(Organization).where(Organization.id == world.orgs["acme"]).values(name=QUOTES)
        )
        db.session.add(
            Comment(
                organization_id=world.orgs["acme"],
                issue_id=world.issues["first"],
                author_id=world.users["bob"],
                body=XSS,
            )
        )
        db.session.commit()
    return world


PAGES = [
    "/",
    "/o/acme/",
    "/o/acme/members",
    "/o/acme/labels",
    "/o/acme/projects/{website}",
    "/o/acme/projects/{website}?status=all&q=script",
    "/o/acme/projects/{website}/edit",
    "/o/acme/projects/{website}/delete",
    "/o/acme/projects/{website}/issues/new",
    "/o/acme/issues/{first}",
    "/o/acme/issues/{first}/edit",
    "/o/acme/issues/{first}/delete",
    # the fragments live pages fetch
    "/o/acme/projects/{website}/row?id={first}&status=all",
    "/o/acme/issues/{first}/parts",
]


@pytest.mark.parametrize("path", PAGES)
def test_markup_in_user_text_is_escaped(login, hostile, path):
    url = path.format(website=hostile.projects["website"], first=hostile.issues["first"])
    rv = login("dave").get(url)
    assert rv.status_code == 200
    page = rv.get_data(as_text=True)
    assert "<script>alert" not in page
    assert "<img src=x" not in page
    # ...and the hostile text is there, escaped: the test saw it.
    shown = ("&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;img src=x", "\\u003cscript")
    assert any(text in page for text in shown)


def test_embedded_json_is_escaped_and_reads_back(login, hostile):
    rv = login("dave").get(f"/o/acme/issues/{hostile.issues['first']}")
    page = rv.get_data(as_text=True)
    raw = re.search(r"data-issue='([^']*)'", page).group(1)
    assert "<" not in raw and ">" not in raw and "'" not in raw
    # The browser decodes the attribute (only &quot; and friends matter), then JSON.
    decoded = json.loads(raw.replace("&#34;", '"').replace("&quot;", '"'))
    assert decoded["title"] == XSS
    assert decoded["description"] == XSS + QUOTES


def test_search_box_echo_is_escaped(login, world):
    rv = login("dave").get(f"/o/acme/projects/{world.projects['website']}?q=%22%3E%3Cscript%3E")
    page = rv.get_data(as_text=True)
    assert '"><script>' not in page
    assert 'value="&#34;&gt;&lt;script&gt;"' in page


def test_api_returns_text_as_data(api, hostile):
    rv = api("dave").get(f"/api/v1/issues/{hostile.issues['first']}")
    assert rv.mimetype == "application/json"
    assert rv.get_json()["title"] == XSS
