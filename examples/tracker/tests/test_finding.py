"""Finding issues, on SQLite and on a private PostgreSQL: sort orders paged by
keyset cursors, open/closed and comment counts, several labels, ``me``, the
organization's issue list, full-text search, and per-project issue keys."""

from __future__ import annotations

import datetime as dt
import threading
import typing as t
import uuid

import pytest
import sqlalchemy as sa
from tracker.models import Comment, Issue, Project

from karaffe.db import db as database
from karaffe.db import normalize_database_url
from karaffe.tenancy import unscoped

from .conftest import World


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def karaffe_config(request: pytest.FixtureRequest, karaffe_config: dict[str, t.Any]) -> t.Any:
    """Every test here runs on SQLite and on PostgreSQL (a database of its own)."""
    if request.param == "sqlite":
        yield karaffe_config
        return
    server = normalize_database_url(request.getfixturevalue("postgres_url"))
    name = f"tracker_finding_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    try:
        yield {**karaffe_config, "DATABASE_URL": url}
    finally:
        with admin.connect() as connection:
            connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


def issues_url(world: World, query: str = "") -> str:
    return f"/api/v1/projects/{world.projects['website']}/issues" + (f"?{query}" if query else "")


def org_issues_url(query: str = "") -> str:
    return "/api/v1/orgs/acme/issues" + (f"?{query}" if query else "")


def next_link(rv: t.Any) -> str | None:
    for part in rv.headers.get("Link", "").split(", "):
        if 'rel="next"' in part:
            return part.split(">")[0].lstrip("<")
    return None


def walk(client: t.Any, url: str, between: t.Callable[[int], None] | None = None) -> list[dict]:
    """Every item of a list, following its next links (``between(n)`` runs
    after page ``n``)."""
    items: list[dict] = []
    pages = 0
    while url:
        rv = client.get(url)
        assert rv.status_code == 200, rv.get_json()
        items += rv.get_json()
        pages += 1
        if between is not None:
            between(pages)
        url = next_link(rv) or ""
    return items


def add_issues(app: t.Any, world: World, count: int, **fields: t.Any) -> list[int]:
    with app.app_context(), unscoped("test: many issues"):
        issues = [
            Issue(
                organization_id=world.orgs["acme"],
                project_id=world.projects["website"],
                title=fields.get("title", f"Issue number {n}"),
                description=fields.get("description", ""),
                **{k: v for k, v in fields.items() if k not in ("title", "description")},
            )
            for n in range(count)
        ]
        database.session.add_all(issues)
        database.session.commit()
        return [issue.id for issue in issues]


def set_column(app: t.Any, ids: list[int], **values: t.Any) -> None:
    with app.app_context(), unscoped("test: rows changing"):
        database.session.execute(sa.update(Issue).where(Issue.id.in_(ids)).values(**values))
        database.session.commit()


# -- sorting and paging ---------------------------------------------------------------


SAME_TIME = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


@pytest.mark.parametrize("sort", ["created", "updated", "comments"])
@pytest.mark.parametrize("direction", ["asc", "desc"])
def test_pages_of_every_sort_hold_every_row_once_when_rows_tie(app, api, world, sort, direction):
    ids = add_issues(app, world, 23, created_at=SAME_TIME, updated_at=SAME_TIME)
    set_column(app, ids[5:12], created_at=SAME_TIME + dt.timedelta(days=1))
    set_column(app, ids[5:12], updated_at=SAME_TIME - dt.timedelta(days=1))
    with app.app_context(), unscoped("test: comments"):
        for issue_id in ids[8:15]:
            database.session.add(
                Comment(organization_id=world.orgs["acme"], issue_id=issue_id, body="same")
            )
        database.session.commit()
    items = walk(api("alice"), issues_url(world, f"limit=4&sort={sort}&direction={direction}"))
    got = [i["id"] for i in items]
    assert len(got) == len(set(got)) == 25
    # Creation order is the id's (created_at was changed behind its back).
    field = {"created": "id", "updated": "updated_at", "comments": "comment_count"}[sort]
    keys = [(i[field], i["id"]) for i in items]
    assert keys == sorted(keys, reverse=direction == "desc")


def test_pages_neither_skip_nor_repeat_rows_that_change_between_pages(app, api, world):
    """Sorted by last update, newest first: while a reader pages through,
    issues are created, deleted and updated. Every issue that existed from
    start to end and was not itself changed is listed exactly once; the new
    ones are not (they sort before the page being read)."""
    ids = add_issues(app, world, 30)
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    with app.app_context(), unscoped("test: spread updates, with ties"):
        for n, issue_id in enumerate(ids):
            database.session.execute(
                sa.update(Issue)
                .where(Issue.id == issue_id)
                .values(updated_at=base + dt.timedelta(hours=n // 3))
            )
        database.session.commit()
    changed: set[int] = set()

    def meanwhile(page: int) -> None:
        if page == 1:
            add_issues(app, world, 3)  # newer than everything: on no later page
        if page == 2:
            gone = ids[10]
            with app.app_context(), unscoped("test: a deletion"):
                database.session.execute(sa.delete(Issue).where(Issue.id == gone))
                database.session.commit()
            changed.add(gone)
        if page == 3:
            moved = ids[2]  # an old issue updated now: moves to the top
            set_column(app, [moved], updated_at=dt.datetime.now(dt.UTC))
            changed.add(moved)

    items = walk(api("alice"), issues_url(world, "limit=5&sort=updated"), between=meanwhile)
    got = [i["id"] for i in items]
    stable = (set(ids) | {world.issues["first"], world.issues["second"]}) - changed
    assert len(got) == len(set(got))
    assert stable <= set(got)


def test_a_cursor_of_one_sort_is_refused_by_another(api, world, app):
    add_issues(app, world, 5)
    client = api("alice")
    rv = client.get(issues_url(world, "limit=2&sort=updated"))
    cursor = next_link(rv).split("cursor=")[1]
    rv = client.get(issues_url(world, f"limit=2&sort=comments&cursor={cursor}"))
    assert rv.status_code == 400
    assert rv.get_json()["type"].endswith("invalid-cursor")


@pytest.mark.parametrize(
    ("query", "errors"),
    [
        (
            "sort=priority",
            [
                {
                    "loc": ["query", "sort"],
                    "msg": "Input should be 'created', 'updated', 'comments' or 'relevance'",
                    "code": "literal_error",
                }
            ],
        ),
        (
            "direction=up",
            [
                {
                    "loc": ["query", "direction"],
                    "msg": "Input should be 'asc' or 'desc'",
                    "code": "literal_error",
                }
            ],
        ),
        (
            "sort=relevance",
            [
                {
                    "loc": ["query", "sort"],
                    "msg": "Sorting by relevance needs a search (q).",
                    "code": "needs_q",
                }
            ],
        ),
        (
            "assignee=bob",
            [
                {
                    "loc": ["query", "assignee"],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "code": "int_parsing",
                }
            ],
        ),
        (
            "author=0",
            [
                {
                    "loc": ["query", "author"],
                    "msg": "Input should be greater than or equal to 1",
                    "code": "greater_than_equal",
                }
            ],
        ),
        (
            "label=x",
            [
                {
                    "loc": ["query", "label", 0],
                    "msg": "Input should be a valid integer, unable to parse string as an integer",
                    "code": "int_parsing",
                }
            ],
        ),
        (
            "&".join(f"label={n}" for n in range(1, 12)),
            [
                {
                    "loc": ["query", "label"],
                    "msg": "List should have at most 10 items after validation, not 11",
                    "code": "too_long",
                }
            ],
        ),
    ],
)
def test_bad_sort_or_filter_is_a_422_naming_it(api, world, query, errors):
    rv = api("alice").get(issues_url(world, query))
    assert rv.status_code == 422
    assert rv.get_json()["errors"] == errors


def test_the_organizations_list_refuses_a_bad_project_filter(api, world):
    rv = api("alice").get(org_issues_url("project=abc"))
    assert rv.status_code == 422
    assert rv.get_json()["errors"] == [
        {
            "loc": ["query", "project"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "code": "int_parsing",
        }
    ]


# -- counts ---------------------------------------------------------------------------


def counts_of(rv: t.Any) -> tuple[int, int]:
    return int(rv.headers["X-Open-Count"]), int(rv.headers["X-Closed-Count"])


def project_counters(app: t.Any, project_id: int) -> tuple[int, int]:
    with app.app_context(), unscoped("test: counters"):
        project = database.session.get(Project, project_id)
        assert project is not None
        return project.open_issue_count, project.closed_issue_count


def test_open_and_closed_counts_follow_creation_status_changes_and_deletion(app, api, world):
    client = api("alice")
    assert counts_of(client.get(issues_url(world))) == (1, 1)
    created = client.post(issues_url(world), json={"title": "Counted"}).get_json()
    assert counts_of(client.get(issues_url(world))) == (2, 1)
    client.patch(f"/api/v1/issues/{created['id']}", json={"status": "closed"})
    client.patch(f"/api/v1/issues/{created['id']}", json={"status": "closed"})  # no change
    client.patch(f"/api/v1/issues/{created['id']}", json={"title": "Renamed"})
    assert counts_of(client.get(issues_url(world))) == (1, 2)
    client.delete(f"/api/v1/issues/{world.issues['first']}")
    assert counts_of(client.get(issues_url(world))) == (0, 2)
    assert project_counters(app, world.projects["website"]) == (0, 2)
    project = client.get(f"/api/v1/projects/{world.projects['website']}").get_json()
    assert (project["open_issue_count"], project["closed_issue_count"]) == (0, 2)


def test_counts_of_a_filtered_list_count_what_the_filters_select(api, world, app):
    add_issues(app, world, 4, assignee_id=world.users["dave"])
    add_issues(app, world, 2, assignee_id=world.users["dave"], status="closed")
    client = api("dave")
    rv = client.get(issues_url(world, "assignee=me&status=closed"))
    assert counts_of(rv) == (5, 2)
    assert len(rv.get_json()) == 2
    assert counts_of(client.get(org_issues_url())) == (1 + 4, 1 + 2)


def test_comment_counts_follow_comments_added_and_deleted(api, world):
    client = api("alice")
    url = f"/api/v1/issues/{world.issues['first']}"
    one = client.post(url + "/comments", json={"body": "one"}).get_json()
    client.post(url + "/comments", json={"body": "two"})
    assert client.get(url).get_json()["comment_count"] == 2
    client.delete(f"/api/v1/comments/{one['id']}")
    assert client.get(url).get_json()["comment_count"] == 1


def test_deleting_a_project_with_issues_and_comments_works(api, world):
    client = api("alice")
    client.post(f"/api/v1/issues/{world.issues['first']}/comments", json={"body": "bye"})
    assert client.delete(f"/api/v1/projects/{world.projects['website']}").status_code == 204


# -- filters ----------------------------------------------------------------------------


def test_several_labels_select_the_issues_with_all_of_them(api, world):
    client = api("alice")
    bug, ux = world.labels["bug"], world.labels["ux"]
    both = client.post(issues_url(world), json={"title": "Both", "label_ids": [bug, ux]})
    only_bug = client.post(issues_url(world), json={"title": "Bug", "label_ids": [bug]})
    titles = [
        i["title"] for i in client.get(issues_url(world, f"label={bug}&label={ux}")).get_json()
    ]
    assert titles == ["Both"]
    titles = [i["title"] for i in client.get(issues_url(world, f"label={bug}")).get_json()]
    assert titles == ["Bug", "Both", "Login button is blue"]
    assert both.status_code == only_bug.status_code == 201


def test_me_is_the_caller_as_assignee_and_as_author(api, world):
    assigned = api("dave").get(org_issues_url("assignee=me&status=open")).get_json()
    assert [i["title"] for i in assigned] == ["Login button is blue"]
    created = api("bob").get(org_issues_url("author=me")).get_json()
    assert [i["title"] for i in created] == ["Login button is blue"]
    assert api("carol").get(org_issues_url("author=me")).status_code == 404


def test_the_organizations_list_spans_its_projects_and_never_another_orgs(api, world):
    client = api("alice")
    other = client.post("/api/v1/orgs/acme/projects", json={"name": "Mobile app"}).get_json()
    client.post(f"/api/v1/projects/{other['id']}/issues", json={"title": "Crash on start"})
    titles = [i["title"] for i in client.get(org_issues_url()).get_json()]
    assert titles == ["Crash on start", "Footer overlaps on phones", "Login button is blue"]
    only = client.get(org_issues_url(f"project={other['id']}")).get_json()
    assert [i["key"] for i in only] == ["MA-1"]
    assert "Globex launch codes" not in str(client.get(org_issues_url("q=launch")).get_json())


# -- search ---------------------------------------------------------------------------


def search(client: t.Any, q: str, extra: str = "") -> list[str]:
    rv = client.get(org_issues_url(f"q={q}" + extra))
    assert rv.status_code == 200, rv.get_json()
    return [i["title"] for i in rv.get_json()]


def test_search_finds_titles_descriptions_and_comments_best_first(api, world):
    client = api("alice")
    a = client.post(issues_url(world), json={"title": "Printer jams", "description": "paper"})
    b = client.post(issues_url(world), json={"title": "Paper tray", "description": "printer"})
    c = client.post(issues_url(world), json={"title": "Coffee machine"}).get_json()
    client.post(f"/api/v1/issues/{c['id']}/comments", json={"body": "The printer is next to it"})
    assert a.status_code == b.status_code == 201
    assert search(client, "printer") == ["Printer jams", "Paper tray", "Coffee machine"]
    # Both words in each, one in the title and one in the description: a tie, newest first.
    assert search(client, "printer paper") == ["Paper tray", "Printer jams"]


def test_search_stems_takes_prefixes_and_ignores_operators(api, world):
    client = api("alice")
    client.post(issues_url(world), json={"title": "App crashes when uploading photos"})
    assert search(client, "crash") == ["App crashes when uploading photos"]
    assert search(client, "upload") == ["App crashes when uploading photos"]
    assert search(client, "phot") == ["App crashes when uploading photos"]
    assert search(client, "Footer") == ["Footer overlaps on phones"]
    for hostile in [
        '"',
        "*",
        "NEAR(zq",
        "zq:xv",
        "!(",
        "-zq",
        "%27",
        "zq*",
        "_",
        "__zq__",
        "²",
        "ǅ",
        "zq" * 100,
        "%00zq",
    ]:
        assert search(client, hostile) == [], hostile


def test_search_follows_edits_and_comments_at_once(api, world):
    client = api("alice")
    url = f"/api/v1/issues/{world.issues['first']}"
    assert search(client, "turquoise") == []
    client.patch(url, json={"description": "Make it turquoise."})
    assert search(client, "turquoise") == ["Login button is blue"]
    client.patch(url, json={"description": "", "title": "Login button colour"})
    assert search(client, "turquoise") == []
    assert search(client, "colour") == ["Login button colour"]
    comment = client.post(url + "/comments", json={"body": "magenta maybe"}).get_json()
    assert search(client, "magenta") == ["Login button colour"]
    client.delete(f"/api/v1/comments/{comment['id']}")
    assert search(client, "magenta") == []


def test_search_pages_by_relevance_and_can_sort_by_a_column(api, world, app):
    add_issues(app, world, 7, title="Timeout in sync")
    client = api("alice")
    by_rank = walk(client, org_issues_url("q=timeout&limit=3"))
    assert len({i["id"] for i in by_rank}) == len(by_rank) == 7
    newest = [
        i["id"] for i in client.get(org_issues_url("q=timeout&sort=created&limit=100")).get_json()
    ]
    assert newest == sorted(newest, reverse=True)


def test_project_list_search_uses_the_index(api, world):
    rv = api("alice").get(issues_url(world, "q=green"))  # in the description only
    assert [i["title"] for i in rv.get_json()] == ["Login button is blue"]


# -- keys -----------------------------------------------------------------------------


def test_issues_are_numbered_per_project_and_named_by_key(api, world):
    client = api("alice")
    first = client.get(f"/api/v1/issues/{world.issues['first']}").get_json()
    assert (first["key"], first["number"]) == ("WEB-1", 1)
    created = client.post(issues_url(world), json={"title": "Third"}).get_json()
    assert (created["key"], created["number"]) == ("WEB-3", 3)
    client.delete(f"/api/v1/issues/{created['id']}")
    again = client.post(issues_url(world), json={"title": "Fourth"}).get_json()
    assert again["key"] == "WEB-4"  # a deleted issue's number is not reused
    assert client.get("/api/v1/orgs/acme/issues/web-4").get_json()["id"] == again["id"]


def test_an_unknown_or_foreign_key_is_a_404(api, world):
    client = api("alice")
    for key in ("WEB-99", "VAU-1"):
        rv = client.get(f"/api/v1/orgs/acme/issues/{key}")
        assert rv.status_code == 404
        assert rv.get_json()["detail"] == "No issue of this organization has that key."
    assert api("carol").get("/api/v1/orgs/acme/issues/WEB-1").status_code == 404


def test_project_keys_are_made_from_names_or_chosen_and_unique(api, world):
    client = api("alice")
    made = client.post("/api/v1/orgs/acme/projects", json={"name": "Website"}).get_json()
    assert made["key"] == "WEB2"
    chosen = client.post("/api/v1/orgs/acme/projects", json={"name": "Billing", "key": "bil"})
    assert chosen.get_json()["key"] == "BIL"
    taken = client.post("/api/v1/orgs/acme/projects", json={"name": "Bills", "key": "BIL"})
    assert taken.status_code == 409
    assert taken.get_json()["errors"] == [
        {
            "loc": ["body", "key"],
            "msg": "Another project of this organization has this key.",
            "code": "taken",
        }
    ]
    bad = client.post("/api/v1/orgs/acme/projects", json={"name": "X", "key": "1AB"})
    assert bad.status_code == 422
    assert bad.get_json()["errors"][0]["loc"] == ["body", "key"]
    patch = client.patch(f"/api/v1/projects/{made['id']}", json={"key": "NEW"})
    assert patch.status_code == 422
    assert patch.get_json()["errors"] == [
        {"loc": ["body", "key"], "msg": "Extra inputs are not permitted", "code": "extra_forbidden"}
    ]


@pytest.mark.postgres
@pytest.mark.parametrize("karaffe_config", ["postgresql"], indirect=True)
def test_issues_created_at_the_same_moment_get_different_numbers(app, world):
    """Eight threads, each with its own connection, create issues in one
    project at once: on PostgreSQL they really run concurrently (SQLite
    serializes writers)."""
    from tracker.schemas import IssueIn
    from tracker.services import create_issue

    from karaffe.auth import User

    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def create(n: int) -> None:
        try:
            with app.app_context(), unscoped("test: concurrent creations"):
                project = database.session.get(Project, world.projects["website"])
                user = database.session.get(User, world.users["alice"])
                assert project is not None and user is not None
                start.wait()
                for k in range(5):
                    create_issue(project, user, IssueIn(title=f"Thread {n} issue {k}"))
                    database.session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with app.app_context(), unscoped("test: numbers"):
        numbers = (
            database.session.execute(
                sa.select(Issue.number).where(Issue.project_id == world.projects["website"])
            )
            .scalars()
            .all()
        )
    assert sorted(numbers) == list(range(1, 43))
    assert project_counters(app, world.projects["website"]) == (41, 1)


@pytest.mark.postgres
@pytest.mark.parametrize("karaffe_config", ["postgresql"], indirect=True)
def test_an_issue_closed_twice_at_the_same_moment_is_counted_once(app, world):
    """Eight threads close the same open issue at once, each in its own
    transaction: the counters move by one close, not eight."""
    from tracker.schemas import IssuePatch
    from tracker.services import update_issue

    from karaffe.auth import User

    before = project_counters(app, world.projects["website"])
    start = threading.Barrier(8)
    errors: list[BaseException] = []

    def close() -> None:
        try:
            with app.app_context(), unscoped("test: concurrent closes"):
                issue = database.session.get(Issue, world.issues["first"])
                user = database.session.get(User, world.users["alice"])
                assert issue is not None and user is not None
                start.wait()
                update_issue(issue, user, IssuePatch(status="closed"))
                database.session.commit()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=close) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    assert before == (1, 1)
    assert project_counters(app, world.projects["website"]) == (0, 2)


# -- HTML ---------------------------------------------------------------------------------


def test_the_header_search_jumps_to_a_key_or_lists_matches(login, world):
    client = login("alice")
    rv = client.get("/o/acme/search?q=web-2")
    assert rv.status_code == 302
    assert rv.headers["Location"].endswith(f"/o/acme/issues/{world.issues['second']}")
    rv = client.get("/o/acme/search?q=footer")
    assert rv.headers["Location"].endswith("/o/acme/issues?q=footer&status=all")
    page = client.get(rv.headers["Location"]).get_data(as_text=True)
    assert "Footer overlaps on phones" in page and "WEB-2" in page
    assert (
        client.get("/o/acme/issues/WEB-1")
        .headers["Location"]
        .endswith(f"/o/acme/issues/{world.issues['first']}")
    )
    assert client.get("/o/acme/issues/WEB-9").status_code == 404
    assert 'action="/o/acme/search"' in client.get("/").get_data(as_text=True)


def test_my_issues_page_lists_the_viewers_issues_across_projects(login, world):
    page = login("dave").get("/o/acme/issues?assignee=me").get_data(as_text=True)
    assert "Assigned to me" in page and "Login button is blue" in page
    assert "Footer overlaps" not in page
    page = login("alice").get("/o/acme/issues?author=me&status=all").get_data(as_text=True)
    assert "Created by me" in page and "Footer overlaps on phones" in page


def test_project_page_shows_counts_keys_and_keeps_filters(login, world):
    client = login("alice")
    url = f"/o/acme/projects/{world.projects['website']}"
    page = client.get(url).get_data(as_text=True)
    assert 'data-count="open">1</strong> Open' in page
    assert 'data-count="closed">1</strong> Closed' in page
    assert "WEB-1" in page
    bug, ux = world.labels["bug"], world.labels["ux"]
    page = client.get(f"{url}?status=all&label={bug}&label={ux}").get_data(as_text=True)
    assert "No issues match." in page
    page = client.get(f"{url}?status=all&sort=comments&direction=asc&label=x").get_data(
        as_text=True
    )
    assert '<option value="comments" selected>' in page
    # Relevance without a search falls back to the default order, not an error.
    assert client.get(f"{url}?sort=relevance").status_code == 200
