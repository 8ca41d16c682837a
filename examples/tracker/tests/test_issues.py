"""The issue pages: create, view, edit, close and reopen, delete, comment;
every bad input is refused with a message next to its field, keeps what was
typed, and writes nothing."""

from __future__ import annotations

import pytest
from tracker.models import Comment, Issue

from .conftest import World


def new_issue_url(w: World) -> str:
    return f"/o/acme/projects/{w.projects['website']}/issues/new"


def test_new_issue_form_lists_members_and_labels(login, world):
    rv = login("alice").get(new_issue_url(world))
    assert rv.status_code == 200
    assert b'name="title"' in rv.data
    assert b">Dave</option>" in rv.data
    bug = world.labels["bug"]
    assert f'<input type="checkbox" name="label_ids" value="{bug}">'.encode() in rv.data
    assert f'<span class="chip label label-{bug}">bug</span>'.encode() in rv.data
    assert b"globex-only" not in rv.data


def test_the_edit_form_ticks_the_issues_labels(login, world):
    rv = login("alice").get(f"/o/acme/issues/{world.issues['first']}/edit")
    bug, ux = world.labels["bug"], world.labels["ux"]
    assert f'name="label_ids" value="{bug}" checked>'.encode() in rv.data
    assert f'name="label_ids" value="{ux}">'.encode() in rv.data


def test_create_issue_redirects_to_it(login, world, count):
    client = login("alice")
    rv = client.post(
        new_issue_url(world),
        data={
            "title": "  Add dark mode  ",
            "description": "Please.",
            "assignee_id": str(world.users["dave"]),
            "label_ids": [str(world.labels["bug"]), str(world.labels["ux"])],
        },
    )
    assert rv.status_code == 302
    assert count(Issue, Issue.title == "Add dark mode") == 1
    page = client.get(rv.headers["Location"], follow_redirects=True)
    assert b"Add dark mode" in page.data
    assert b"created." in page.data
    assert b"Dave" in page.data
    assert f'<span class="chip label label-{world.labels["bug"]}">bug</span>'.encode() in page.data


BAD_ISSUES = [
    pytest.param({"title": ""}, "title", b"This field is required.", id="empty title"),
    pytest.param({"title": "   "}, "title", b"This field is required.", id="blank title"),
    pytest.param(
        {"title": "x" * 10_000},
        "title",
        b"Title must be at most 200 characters.",
        id="10000-char title",
    ),
    pytest.param(
        {"title": "ok", "assignee_id": "999999"},
        "assignee_id",
        b"No member of this organization has the id 999999.",
        id="unknown assignee",
    ),
    pytest.param(
        {"title": "ok", "assignee_id": "carol"},
        "assignee_id",
        b"Choose a valid option.",
        id="assignee not a number",
    ),
    pytest.param(
        {"title": "ok", "label_ids": ["globex-only"]},
        "label_ids",
        b"No label of this organization has the id",
        id="label of another org",
    ),
    pytest.param(
        {"title": "ok", "description": "d" * 20_001},
        "description",
        b"Description must be at most 20000 characters.",
        id="description too long",
    ),
]


@pytest.mark.parametrize(("form", "field", "message"), BAD_ISSUES)
def test_bad_issue_is_refused_and_nothing_written(login, world, count, form, field, message):
    if form.get("label_ids") == ["globex-only"]:
        form = {**form, "label_ids": [str(world.labels["globex-only"])]}
    before = count(Issue)
    rv = login("alice").post(new_issue_url(world), data=form)
    assert rv.status_code == 422
    assert message in rv.data
    assert f'id="e-{field}"'.encode() in rv.data
    assert count(Issue) == before


def test_refused_form_keeps_what_was_typed(login, world):
    rv = login("alice").post(
        new_issue_url(world),
        data={"title": "", "description": "My long explanation"},
    )
    assert rv.status_code == 422
    assert b"My long explanation</textarea>" in rv.data


def test_issue_page_shows_details_and_comments(login, world):
    rv = login("dave").get(f"/o/acme/issues/{world.issues['first']}")
    assert rv.status_code == 200
    for text in (b"Login button is blue", b"It should be green.", b"Dave", b"Bob", b"Open"):
        assert text in rv.data


def test_issue_of_another_org_is_not_found(login, world):
    client = login("alice")
    assert client.get(f"/o/acme/issues/{world.issues['hidden']}").status_code == 404
    assert client.get(f"/o/globex/issues/{world.issues['hidden']}").status_code == 404


def test_issue_under_the_wrong_org_url_is_not_found(app, login, world, db):
    # alice is in both organizations, the issue is Globex's: /o/acme/... must not show it.
    from karaffe.tenancy import Membership, unscoped

    with app.app_context(), unscoped("test: alice joins globex"):
        db.session.add(
            Membership(organization_id=world.orgs["globex"], user_id=world.users["alice"])
        )
        db.session.commit()
    client = login("alice")
    assert client.get(f"/o/globex/issues/{world.issues['hidden']}").status_code == 200
    assert client.get(f"/o/acme/issues/{world.issues['hidden']}").status_code == 404


def test_edit_issue(login, world, count):
    client = login("dave")
    url = f"/o/acme/issues/{world.issues['first']}/edit"
    form = client.get(url)
    assert b'value="Login button is blue"' in form.data
    rv = client.post(url, data={"title": "Login button colour", "assignee_id": ""})
    assert rv.status_code == 302
    assert count(Issue, Issue.title == "Login button colour", Issue.assignee_id.is_(None)) == 1


def test_edit_with_empty_title_changes_nothing(login, world, count):
    rv = login("dave").post(f"/o/acme/issues/{world.issues['first']}/edit", data={"title": ""})
    assert rv.status_code == 422
    assert b"This field is required." in rv.data
    assert count(Issue, Issue.title == "Login button is blue") == 1


def test_close_and_reopen(login, world, count):
    client = login("dave")
    url = f"/o/acme/issues/{world.issues['first']}/status"
    rv = client.post(url, data={"status": "closed"}, follow_redirects=True)
    assert b"closed." in rv.data
    assert b"Reopen issue" in rv.data
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "closed") == 1
    rv = client.post(url, data={"status": "open"}, follow_redirects=True)
    assert b"reopened." in rv.data
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "open") == 1


def test_unknown_status_is_refused(login, world, count):
    rv = login("dave").post(
        f"/o/acme/issues/{world.issues['first']}/status",
        data={"status": "deleted"},
        follow_redirects=True,
    )
    assert b"Choose open or closed." in rv.data
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "open") == 1


def test_delete_asks_for_confirmation_then_deletes(login, world, count):
    client = login("bob")  # bob wrote the issue
    url = f"/o/acme/issues/{world.issues['first']}/delete"
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert b"cannot be undone" in confirm.data
    assert count(Issue, Issue.id == world.issues["first"]) == 1
    rv = client.post(url)
    assert rv.status_code == 302
    assert count(Issue, Issue.id == world.issues["first"]) == 0


def test_member_cannot_delete_someone_elses_issue(login, world, count):
    rv = login("dave").post(f"/o/acme/issues/{world.issues['first']}/delete")
    assert rv.status_code == 403
    assert count(Issue, Issue.id == world.issues["first"]) == 1


def test_comment(login, world, count):
    client = login("dave")
    rv = client.post(
        f"/o/acme/issues/{world.issues['first']}/comments",
        data={"body": "Same here"},
        follow_redirects=True,
    )
    assert b"Same here" in rv.data
    assert count(Comment) == 1


@pytest.mark.parametrize(
    ("body", "message"),
    [("", b"This field is required."), ("c" * 10_001, b"at most 10000 characters")],
)
def test_bad_comment_is_refused(login, world, count, body, message):
    rv = login("dave").post(f"/o/acme/issues/{world.issues['first']}/comments", data={"body": body})
    assert rv.status_code == 422
    assert message in rv.data
    assert count(Comment) == 0


def test_pages_need_login(client, world):
    rv = client.get(f"/o/acme/issues/{world.issues['first']}")
    assert rv.status_code == 302
    assert "/login?next=" in rv.headers["Location"]


def test_changes_are_announced_after_commit(login, world, captured_events):
    client = login("dave")
    client.post(new_issue_url(world), data={"title": "Live one"})
    client.post(f"/o/acme/issues/{world.issues['first']}/status", data={"status": "closed"})
    client.post(f"/o/acme/issues/{world.issues['first']}/comments", data={"body": "Done"})
    client.post(new_issue_url(world), data={"title": ""})  # refused: nothing announced
    project = f"project:{world.projects['website']}"
    first = f"issue:{world.issues['first']}"
    got = [(e.channel, e.type) for e in captured_events]
    assert got[0] == (project, "issue.created")
    assert got[2:] == [
        (first, "activity.created"),  # "Dave closed the issue", in its timeline
        (project, "issue.updated"),
        (first, "issue.updated"),
        (first, "comment.created"),
        (project, "issue.updated"),  # its row shows when it was updated
    ]
    assert captured_events[3].data == {
        "id": world.issues["first"],
        "project_id": world.projects["website"],
        "status": "closed",
    }


def test_issue_page_follows_only_its_own_channel_and_the_viewers(login, world):
    page = login("dave").get(f"/o/acme/issues/{world.issues['first']}").get_data(as_text=True)
    assert f'"channels":["issue:{world.issues["first"]}","user:{world.users["dave"]}"]' in page
    assert page.count("karaffe-events.js") == 1
    assert '"token":"' in page
