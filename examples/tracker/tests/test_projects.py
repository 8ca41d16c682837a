"""Project pages: create, edit, delete, and the issue list with its
filters, search and keyset pagination."""

from __future__ import annotations

import re

import pytest
from tracker.models import Issue, Project

from karaffe.tenancy import unscoped


def test_create_project(login, world, count):
    rv = login("dave").post(
        "/o/acme/projects/new", data={"name": "Mobile", "description": "iOS"}, follow_redirects=True
    )
    assert b"Project \xe2\x80\x9cMobile\xe2\x80\x9d created." in rv.data
    assert count(Project, Project.name == "Mobile") == 1


@pytest.mark.parametrize(
    ("form", "message"),
    [
        ({"name": ""}, b"This field is required."),
        ({"name": "p" * 101}, b"at most 100 characters"),
        ({"name": "ok", "description": "d" * 20_001}, b"at most 20000 characters"),
    ],
)
def test_bad_project_is_refused(login, world, count, form, message):
    rv = login("dave").post("/o/acme/projects/new", data=form)
    assert rv.status_code == 422
    assert message in rv.data
    assert count(Project) == 2


def test_edit_project(login, world, count):
    url = f"/o/acme/projects/{world.projects['website']}/edit"
    client = login("dave")
    assert b'value="Website"' in client.get(url).data
    client.post(url, data={"name": "Web", "description": "new"})
    assert count(Project, Project.name == "Web", Project.description == "new") == 1
    rv = client.post(url, data={"name": ""})
    assert rv.status_code == 422
    assert count(Project, Project.name == "Web") == 1


def test_only_admins_delete_projects(login, world, count):
    url = f"/o/acme/projects/{world.projects['website']}/delete"
    assert login("dave").post(url).status_code == 403
    assert count(Project, Project.id == world.projects["website"]) == 1
    client = login("bob")
    assert b"cannot be undone" in client.get(url).data
    rv = client.post(url, follow_redirects=True)
    assert b"Project \xe2\x80\x9cWebsite\xe2\x80\x9d deleted." in rv.data
    assert count(Project, Project.id == world.projects["website"]) == 0
    assert count(Issue, Issue.project_id == world.projects["website"]) == 0


def test_project_of_another_org_is_not_found(login, world):
    client = login("alice")
    vault = world.projects["vault"]
    assert client.get(f"/o/acme/projects/{vault}").status_code == 404
    assert client.get(f"/o/globex/projects/{vault}").status_code == 404
    assert (
        client.post(f"/o/acme/projects/{vault}/issues/new", data={"title": "x"}).status_code == 404
    )


def titles(data: bytes) -> list[str]:
    return re.findall(r'class="title" href="[^"]+">([^<]+)</a>', data.decode())


def list_url(world, query=""):
    return f"/o/acme/projects/{world.projects['website']}" + (f"?{query}" if query else "")


def test_list_shows_open_issues_by_default(login, world):
    rv = login("dave").get(list_url(world))
    assert titles(rv.data) == ["Login button is blue"]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=all", ["Footer overlaps on phones", "Login button is blue"]),
        ("status=closed", ["Footer overlaps on phones"]),
        ("status=all&q=phones", ["Footer overlaps on phones"]),
        ("status=all&q=nothing+matches", []),
        ("status=all&label=LABEL", ["Footer overlaps on phones"]),
        ("status=all&assignee=DAVE", ["Login button is blue"]),
        ("status=all&assignee=abc", ["Footer overlaps on phones", "Login button is blue"]),
    ],
)
def test_list_filters(login, world, query, expected):
    query = query.replace("LABEL", str(world.labels["ux"])).replace(
        "DAVE", str(world.users["dave"])
    )
    rv = login("dave").get(list_url(world, query))
    assert rv.status_code == 200
    assert titles(rv.data) == expected


@pytest.fixture
def sixty(app, world, db):
    with app.app_context(), unscoped("test: sixty issues"):
        for n in range(60):
            db.session.add(
                Issue(
                    organization_id=world.orgs["acme"],
                    project_id=world.projects["website"],
                    title=f"Bulk issue {n:02d}",
                )
            )
        db.session.commit()


def test_list_pages_with_cursor_links(login, world, sixty):
    client = login("dave")
    first = client.get(list_url(world))
    assert len(titles(first.data)) == 50
    assert b'rel="prev"' not in first.data
    href = re.search(rb'rel="next" href="([^"]+)"', first.data).group(1).decode()
    second = client.get(list_url(world) + href.replace("&amp;", "&"))
    assert len(titles(second.data)) == 11
    assert set(titles(first.data)).isdisjoint(titles(second.data))
    assert b'rel="prev"' in second.data
    assert b'rel="next"' not in second.data


def test_stale_cursor_restarts_at_the_first_page(login, world):
    rv = login("dave").get(list_url(world, "cursor=forged&q=login"), follow_redirects=True)
    assert b"That page link is no longer valid" in rv.data
    assert titles(rv.data) == ["Login button is blue"]


@pytest.mark.parametrize("target", ["other-project", "other-filter"])
def test_cursor_of_another_list_restarts_at_its_first_page(app, db, login, world, sixty, target):
    """A cursor is bound to its project and filters: on another list it is
    stale, and the page starts over instead of failing."""
    with app.app_context(), unscoped("test: a second project"):
        mobile = Project(organization_id=world.orgs["acme"], name="Mobile")
        db.session.add(mobile)
        db.session.flush()
        db.session.add(Issue(organization_id=world.orgs["acme"], project_id=mobile.id, title="M"))
        db.session.commit()
        mobile_id = mobile.id
    client = login("dave")
    first = client.get(list_url(world))
    href = re.search(rb'rel="next" href="([^"]+)"', first.data).group(1).decode()
    cursor = href.replace("&amp;", "&").split("cursor=")[1]
    if target == "other-project":
        expected = f"/o/acme/projects/{mobile_id}"
        url = f"{expected}?cursor={cursor}"
    else:
        url = list_url(world, f"q=bulk&cursor={cursor}")
        expected = list_url(world, "q=bulk")
    rv = client.get(url)
    assert rv.status_code == 302
    assert rv.headers["Location"] == expected
    page = client.get(expected)
    assert b"That page link is no longer valid" in page.data
    own = client.get(list_url(world, f"cursor={cursor}"))
    assert len(titles(own.data)) == 11
