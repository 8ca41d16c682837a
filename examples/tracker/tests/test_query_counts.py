"""How many SQL statements a page runs, pinned: an N+1 cannot creep in.

The pages are filled first: 60 issues, most with labels, an assignee and
comments, by several authors, so that any query per row, per label, per
user or per comment would show in the count. Each count is taken on a
second request (the first records the credential's use, at most once a
minute) with a SQLAlchemy event listener, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import typing as t
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient
from tracker.models import Comment, Issue, issue_labels

from karaffe.db import db as database
from karaffe.tenancy import unscoped

from .conftest import ApiClient, World


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def karaffe_config(request: pytest.FixtureRequest, tmp_path: t.Any) -> dict[str, t.Any]:
    url = f"sqlite:///{tmp_path}/tracker.sqlite"
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    return {
        "TESTING": True,
        "SECRET_KEY": "tracker-test-secret",
        "DATABASE_URL": url,
        "WTF_CSRF_ENABLED": False,
        "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
        "SERVER_NAME": "tracker.test",
    }


@pytest.fixture
def busy(app: Flask, world: World) -> World:
    """60 more open issues in Acme's website project: labels (none, one or
    both), assignees and authors among Acme's members, and 0 to 4 comments
    each; the busiest issue has 12 comments by three people."""
    users = [world.users[name] for name in ("alice", "bob", "dave")]
    labels = [world.labels["bug"], world.labels["ux"]]
    with app.app_context(), unscoped("test fixture: a busy project"):
        for n in range(60):
            issue = Issue(
                organization_id=world.orgs["acme"],
                project_id=world.projects["website"],
                title=f"Issue number {n}",
                assignee_id=None if n % 4 == 0 else users[n % 3],
                author_id=users[(n + 1) % 3],
            )
            database.session.add(issue)
            database.session.flush()
            if n % 3:
                database.session.execute(
                    sa.insert(issue_labels),
                    [{"issue_id": issue.id, "label_id": label} for label in labels[: n % 3]],
                )
            for k in range(12 if n == 59 else n % 5):
                database.session.add(
                    Comment(
                        organization_id=world.orgs["acme"],
                        issue_id=issue.id,
                        author_id=users[k % 3],
                        body=f"Comment {k}",
                    )
                )
            world.issues[f"busy-{n}"] = issue.id
        database.session.commit()
    return world


@pytest.fixture
def statements(app: Flask) -> Callable[[Callable[[], t.Any]], tuple[t.Any, list[str]]]:
    """``statements(call)``: what ``call()`` returned, and the SQL it ran."""

    def run(call: Callable[[], t.Any]) -> tuple[t.Any, list[str]]:
        seen: list[str] = []

        def executed(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
            seen.append(statement)

        with app.app_context():
            engine = database.engine
        sa.event.listen(engine, "before_cursor_execute", executed)
        try:
            rv = call()
        finally:
            sa.event.remove(engine, "before_cursor_execute", executed)
        return rv, seen

    return run


@pytest.fixture
def counted(
    statements: Callable[[Callable[[], t.Any]], tuple[t.Any, list[str]]],
) -> Callable[[FlaskClient | ApiClient, str], tuple[t.Any, list[str]]]:
    """``counted(client, path)``: GET it once, then again while counting."""

    def get(client: FlaskClient | ApiClient, path: str) -> tuple[t.Any, list[str]]:
        assert client.get(path).status_code == 200
        rv, seen = statements(lambda: client.get(path))
        assert rv.status_code == 200
        return rv, seen

    return get


def test_an_api_page_of_50_issues_is_three_statements(
    api: Callable[[str], ApiClient], busy: World, counted: t.Any
) -> None:
    path = f"/api/v1/projects/{busy.projects['website']}/issues?status=open&limit=50"
    rv, seen = counted(api("alice"), path)
    assert len(rv.get_json()) == 50
    assert "next" in rv.headers["Link"]
    # The token with its user and their organizations; the project; the issues.
    assert len(seen) == 3, seen


def test_the_next_api_page_is_three_statements_too(
    api: Callable[[str], ApiClient], busy: World, counted: t.Any
) -> None:
    client = api("bob")
    first = client.get(f"/api/v1/projects/{busy.projects['website']}/issues?limit=25")
    link = first.headers["Link"].split(";")[0].strip("<>")
    rv, seen = counted(client, link.removeprefix("http://tracker.test"))
    assert len(rv.get_json()) == 25
    assert len(seen) == 3, seen


@pytest.mark.parametrize("sort", ["created", "updated", "comments"])
def test_an_api_page_sorted_by_any_column_is_three_statements(
    api: Callable[[str], ApiClient], busy: World, counted: t.Any, sort: str
) -> None:
    """The rows hold every sort column: the cursor reads its key from them."""
    client = api("alice")
    path = f"/api/v1/projects/{busy.projects['website']}/issues?limit=20&sort={sort}"
    link = client.get(path).headers["Link"].split(";")[0].strip("<>")
    rv, seen = counted(client, link.removeprefix("http://tracker.test"))
    assert len(rv.get_json()) == 20
    assert len(seen) == 3, seen


def test_a_filtered_api_page_adds_one_grouped_count(
    api: Callable[[str], ApiClient], busy: World, counted: t.Any
) -> None:
    label = busy.labels["bug"]
    path = f"/api/v1/projects/{busy.projects['website']}/issues?assignee=me&label={label}"
    rv, seen = counted(api("bob"), path)
    assert rv.get_json() and int(rv.headers["X-Open-Count"]) > 0
    # The three of any page, and the open/closed counts of what the filters
    # select (an unfiltered list reads the project's counters, no statement).
    assert len(seen) == 4, seen


def test_a_search_by_relevance_ranks_then_selects_the_page(
    api: Callable[[str], ApiClient], busy: World, counted: t.Any
) -> None:
    path = f"/api/v1/projects/{busy.projects['website']}/issues?q=number&limit=20"
    rv, seen = counted(api("alice"), path)
    assert len(rv.get_json()) == 20
    # The token, the project; the ranked ids of the matches, then the
    # page's rows (a page of a ranked sequence, not of a select); the counts.
    assert len(seen) == 5, seen


def test_an_api_page_says_what_each_issue_says(
    api: Callable[[str], ApiClient], busy: World
) -> None:
    """The list's rows, made without ORM objects, are the issue's own documents."""
    client = api("alice")
    page = client.get(f"/api/v1/projects/{busy.projects['website']}/issues?limit=50").get_json()
    assert any(len(issue["labels"]) == 2 for issue in page)
    assert any(issue["assignee"] is None for issue in page)
    for issue in page:
        assert client.get(f"/api/v1/issues/{issue['id']}").get_json() == issue


def test_the_html_issue_list_is_six_statements(
    login: Callable[[str], FlaskClient], busy: World, counted: t.Any
) -> None:
    path = f"/o/acme/projects/{busy.projects['website']}"
    rv, seen = counted(login("dave"), path)
    page = rv.get_data(as_text=True)
    assert page.count('class="title"') == 50
    assert "Issue number 59" in page and "assigned to Alice" in page
    # The login session with its user and their organizations; the
    # organization of the URL; the project; the issues; the members and the
    # labels (for the filters, one statement); the viewer's organizations
    # with their roles (for the menu, and whether they may manage the
    # project) and their unread notifications (the header's count), one
    # statement.
    assert len(seen) == 6, seen


def test_an_issue_page_is_ten_statements_whatever_its_comments(
    login: Callable[[str], FlaskClient], busy: World, counted: t.Any
) -> None:
    page = f"/o/acme/issues/{busy.issues['busy-59']}"
    rv, seen = counted(login("alice"), page)
    assert rv.get_data(as_text=True).count('class="comment"') == 12
    # The login session with its user and their organizations; the
    # organization; the issue with its people; its labels; its project; its
    # comments with their authors; its activity with the actors; the
    # viewer's watch; the viewer's role here (what they may edit); the
    # viewer's organizations and unread notifications (the header's menu and
    # count, one statement).
    assert len(seen) == 10, seen
    # With an @handle in a text, the organization's members too (the
    # mention links), once for all of them.
    mention = {"body": "@bob and @dave, look"}
    assert login("bob").post(page + "/comments", data=mention).status_code == 302
    rv, seen = counted(login("alice"), page)
    assert rv.get_data(as_text=True).count('class="mention"') == 2
    assert len(seen) == 11, seen


def test_an_issue_list_with_joins_of_its_own_keeps_them(app: Flask, busy: World) -> None:
    """:func:`tracker.listing.issue_rows` on a select that joins another
    table selects its rows without losing the join (or its condition)."""
    from tracker import listing
    from tracker.models import Project

    from karaffe import paginate
    from karaffe.tenancy import for_organization

    def titles(stmt: sa.Select[t.Any]) -> list[str]:
        with app.test_request_context("/?limit=100"):
            page = listing.issue_documents(paginate(stmt, order_by=[Issue.id.desc()]))
            return [issue["title"] for issue in page.items]

    with app.app_context(), for_organization(busy.orgs["acme"]):
        plain = sa.select(Issue).where(Issue.title.like("Issue number 5%"))
        joined = plain.join(Project, Project.id == Issue.project_id).where(
            Project.name == "Website"
        )
        elsewhere = plain.join(Project, Project.id == Issue.project_id).where(
            Project.name == "Vault"
        )
        expected = [f"Issue number {n}" for n in range(59, 49, -1)] + ["Issue number 5"]
        assert titles(listing.issue_rows(plain)) == expected
        assert titles(listing.issue_rows(joined)) == expected
        assert titles(listing.issue_rows(elsewhere)) == []


def test_only_admins_see_the_delete_link_of_the_list(
    login: Callable[[str], FlaskClient], busy: World
) -> None:
    """Whether the viewer may manage the project comes from the menu's
    organizations and roles, not a query of its own: still right."""
    path = f"/o/acme/projects/{busy.projects['website']}"
    delete = f"/o/acme/projects/{busy.projects['website']}/delete"
    assert delete in login("bob").get(path).get_data(as_text=True)  # admin
    assert delete not in login("dave").get(path).get_data(as_text=True)  # member
