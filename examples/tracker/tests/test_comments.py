"""Comments: add (optionally closing or reopening the issue in the same
write), edit and delete, by their author or an organization admin, in the
JSON API and in the pages. Every wrong input has its exact answer."""

from __future__ import annotations

import pytest
from tracker.models import Comment, Issue

from .test_api import problem

NOT_FOUND = {
    "type": "urn:karaffe:problem:not-found",
    "title": "Not found",
    "status": 404,
    "detail": "The requested resource was not found.",
    "errors": [],
}


def forbidden(verb: str) -> dict[str, object]:
    return {
        "type": "urn:karaffe:problem:forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": f"Only the comment's author or an organization admin can {verb} it.",
        "errors": [],
    }


def invalid(field: str, msg: str, code: str) -> dict[str, object]:
    return {
        "type": "urn:karaffe:problem:validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": f"1 input is invalid: {'.'.join(['body', field] if field else ['body'])}.",
        "errors": [{"loc": ["body", field] if field else ["body"], "msg": msg, "code": code}],
    }


@pytest.fixture
def comment_id(api, world) -> int:
    """A comment by dave (a member) on Acme's first issue."""
    rv = api("dave").post(
        f"/api/v1/issues/{world.issues['first']}/comments", json={"body": "On it"}
    )
    assert rv.status_code == 201
    return int(rv.get_json()["id"])


def comment_body(app, comment_id):
    from karaffe.db import db
    from karaffe.tenancy import unscoped

    with app.app_context(), unscoped("test: read a comment"):
        comment = db.session.get(Comment, comment_id)
        return None if comment is None else (comment.body, comment.edited_at)


# -- API ------------------------------------------------------------------------------------


def test_author_edits_own_comment(api, app, comment_id):
    rv = api("dave").patch(f"/api/v1/comments/{comment_id}", json={"body": "Done, **fixed**"})
    assert rv.status_code == 200
    body = rv.get_json()
    assert body["body"] == "Done, **fixed**"
    assert body["body_html"] == "<p>Done, <strong>fixed</strong></p>"
    assert body["edited_at"] is not None
    assert comment_body(app, comment_id)[0] == "Done, **fixed**"


def test_saving_the_same_text_is_not_an_edit(api, comment_id):
    rv = api("dave").patch(f"/api/v1/comments/{comment_id}", json={"body": "On it"})
    assert rv.status_code == 200
    assert rv.get_json()["edited_at"] is None


def test_admin_edits_and_deletes_any_comment(api, app, comment_id):
    rv = api("bob").patch(f"/api/v1/comments/{comment_id}", json={"body": "[moderated]"})
    assert rv.status_code == 200
    assert api("alice").delete(f"/api/v1/comments/{comment_id}").status_code == 204
    assert comment_body(app, comment_id) is None


def test_someone_elses_comment_is_403_for_a_member(api, app, world):
    url = f"/api/v1/issues/{world.issues['first']}/comments"
    bobs = api("bob").post(url, json={"body": "Admin words"}).get_json()["id"]
    rv = api("dave").patch(f"/api/v1/comments/{bobs}", json={"body": "Rewritten"})
    assert problem(rv, 403, "forbidden") == forbidden("edit")
    rv = api("dave").delete(f"/api/v1/comments/{bobs}")
    assert problem(rv, 403, "forbidden") == forbidden("delete")
    assert comment_body(app, bobs) == ("Admin words", None)


@pytest.mark.parametrize("method", ["GET", "PATCH", "DELETE"])
def test_another_organizations_comment_is_404(api, app, comment_id, method):
    rv = api("carol").open(method, f"/api/v1/comments/{comment_id}", json={"body": "x"})
    assert problem(rv, 404, "not-found") == NOT_FOUND
    assert comment_body(app, comment_id) == ("On it", None)


def test_missing_comment_is_404(api, world):
    rv = api("dave").patch("/api/v1/comments/999999", json={"body": "x"})
    assert problem(rv, 404, "not-found") == NOT_FOUND


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"body": "   "}, invalid("body", "String should have at least 1 character", "string_too_short")),
        ({"body": "x" * 10_001}, invalid("body", "String should have at most 10000 characters", "string_too_long")),
        ({"body": None}, invalid("body", "Input should be a valid string", "string_type")),
        ({}, invalid("body", "Field required", "missing")),
        ({"body": "x", "status": "closed"}, invalid("status", "Extra inputs are not permitted", "extra_forbidden")),
        ([], invalid("", "Input should be an object", "model_type")),
    ],
)  # fmt: skip
def test_bad_edits_are_422(api, app, comment_id, sent, expected):
    rv = api("dave").patch(f"/api/v1/comments/{comment_id}", json=sent)
    assert problem(rv, 422, "validation-failed") == expected
    assert comment_body(app, comment_id) == ("On it", None)


@pytest.mark.parametrize(
    ("sent", "expected"),
    [
        ({"body": "x", "status": "done"}, invalid("status", "Input should be 'open' or 'closed'", "literal_error")),
        ({"status": "closed"}, invalid("body", "Field required", "missing")),
        ({"body": "", "status": "closed"}, invalid("body", "String should have at least 1 character", "string_too_short")),
    ],
)  # fmt: skip
def test_bad_close_with_comment_is_422_and_changes_nothing(api, world, count, sent, expected):
    rv = api("dave").post(f"/api/v1/issues/{world.issues['first']}/comments", json=sent)
    assert problem(rv, 422, "validation-failed") == expected
    assert count(Comment) == 0
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "open") == 1


def test_close_with_comment_is_one_write_and_one_event(api, world, count, captured_events):
    url = f"/api/v1/issues/{world.issues['first']}/comments"
    rv = api("dave").post(url, json={"body": "Fixed in 2.1", "status": "closed"})
    assert rv.status_code == 201
    comment = rv.get_json()
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "closed") == 1
    # The status change is an entry of the timeline too.
    assert [(e.channel, e.type) for e in captured_events] == [
        (f"issue:{world.issues['first']}", "activity.created"),
        (f"project:{world.projects['website']}", "issue.updated"),
        (f"issue:{world.issues['first']}", "issue.updated"),
    ]
    assert captured_events[2].data == {
        "id": world.issues["first"],
        "project_id": world.projects["website"],
        "status": "closed",
        "comment_id": comment["id"],
    }


def test_reopen_with_comment(api, world, count):
    url = f"/api/v1/issues/{world.issues['second']}/comments"
    rv = api("dave").post(url, json={"body": "Still happens", "status": "open"})
    assert rv.status_code == 201
    assert count(Issue, Issue.id == world.issues["second"], Issue.status == "open") == 1


def test_comment_with_the_status_the_issue_has_is_just_a_comment(api, world, captured_events):
    url = f"/api/v1/issues/{world.issues['first']}/comments"
    assert api("dave").post(url, json={"body": "+1", "status": "open"}).status_code == 201
    issue = f"issue:{world.issues['first']}"
    assert [e.type for e in captured_events if e.channel == issue] == ["comment.created"]
    # The project's list hears of it too: the row shows the comment count.
    assert [e.type for e in captured_events if e.channel != issue] == ["issue.updated"]


def test_edits_and_deletes_are_announced(api, world, comment_id, captured_events):
    api("dave").patch(f"/api/v1/comments/{comment_id}", json={"body": "Edited"})
    api("dave").delete(f"/api/v1/comments/{comment_id}")
    channel = f"issue:{world.issues['first']}"
    ids = {"id": comment_id, "issue_id": world.issues["first"]}
    # The list's row hears of both: it shows the comment count, and whether
    # the issue still matches a search.
    row = (
        f"project:{world.projects['website']}",
        "issue.updated",
        {"id": world.issues["first"], "project_id": world.projects["website"], "status": "open"},
    )
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        (channel, "comment.updated", ids),
        row,
        (channel, "comment.deleted", ids),
        row,
    ]


def test_openapi_documents_the_comment_routes(api, world):
    spec = api("dave").get("/api/v1/openapi.json").get_json()
    assert set(spec["paths"]["/api/v1/comments/{comment_id}"]) >= {"get", "patch", "delete"}
    patch = spec["paths"]["/api/v1/comments/{comment_id}"]["patch"]
    assert {"200", "403", "404", "422"} <= set(patch["responses"])
    comment_out = spec["components"]["schemas"]["CommentOut"]["properties"]
    assert {"body", "body_html", "edited_at"} <= set(comment_out)
    assert "description_html" in spec["components"]["schemas"]["IssueOut"]["properties"]
    assert "/api/v1/markdown" in spec["paths"]


# -- pages ---------------------------------------------------------------------------------


def issue_page(client, world, name="first"):
    return client.get(f"/o/acme/issues/{world.issues[name]}").get_data(as_text=True)


def test_issue_page_offers_edit_and_delete_only_where_allowed(login, api, world, comment_id):
    url = f"/api/v1/issues/{world.issues['first']}/comments"
    bobs = api("bob").post(url, json={"body": "Admin words"}).get_json()["id"]
    dave = issue_page(login("dave"), world)
    assert f"/o/acme/comments/{comment_id}/edit" in dave
    assert f"/o/acme/comments/{bobs}/edit" not in dave
    assert f"/o/acme/comments/{bobs}/delete" not in dave
    bob = issue_page(login("bob"), world)
    assert f"/o/acme/comments/{comment_id}/edit" in bob
    assert f"/o/acme/comments/{comment_id}/delete" in bob


def test_a_member_is_not_offered_delete_on_someone_elses_issue(login, world):
    issue = world.issues["first"]  # by bob
    assert f"/o/acme/issues/{issue}/delete" not in issue_page(login("dave"), world)
    assert f"/o/acme/issues/{issue}/delete" in issue_page(login("bob"), world)
    assert f"/o/acme/issues/{issue}/delete" in issue_page(login("alice"), world)  # owner
    # ...and a URL typed by hand is refused before confirming, not after.
    assert login("dave").get(f"/o/acme/issues/{issue}/delete").status_code == 403


def test_edit_comment_page(login, api, app, world, comment_id):
    client = login("dave")
    form = client.get(f"/o/acme/comments/{comment_id}/edit")
    assert form.status_code == 200
    assert ">On it</textarea>" in form.get_data(as_text=True)
    key = api("dave").get(f"/api/v1/issues/{world.issues['first']}").get_json()["key"]
    assert f'/o/acme/issues/{world.issues["first"]}">{key}</a>' in form.get_data(as_text=True)
    rv = client.post(f"/o/acme/comments/{comment_id}/edit", data={"body": "  "})
    assert rv.status_code == 422
    assert "This field is required." in rv.get_data(as_text=True)
    rv = client.post(f"/o/acme/comments/{comment_id}/edit", data={"body": "Done *now*"})
    assert rv.status_code == 302
    assert rv.headers["Location"].endswith(
        f"/o/acme/issues/{world.issues['first']}#comment-{comment_id}"
    )
    assert comment_body(app, comment_id)[0] == "Done *now*"
    page = issue_page(client, world)
    assert "<p>Done <em>now</em></p>" in page
    assert "edited <time" in page


def test_someone_elses_comment_pages_are_403_for_a_member(login, api, world):
    url = f"/api/v1/issues/{world.issues['first']}/comments"
    bobs = api("bob").post(url, json={"body": "Admin words"}).get_json()["id"]
    client = login("dave")
    for path in (f"/o/acme/comments/{bobs}/edit", f"/o/acme/comments/{bobs}/delete"):
        assert client.get(path).status_code == 403
        assert client.post(path, data={"body": "x"}).status_code == 403


def test_another_organizations_comment_pages_are_404(login, comment_id):
    client = login("carol")
    assert client.get(f"/o/globex/comments/{comment_id}/edit").status_code == 404
    assert client.get(f"/o/acme/comments/{comment_id}/edit").status_code == 404


def test_delete_comment_after_confirming(login, app, world, comment_id):
    client = login("dave")
    confirm = client.get(f"/o/acme/comments/{comment_id}/delete")
    assert "Delete this comment?" in confirm.get_data(as_text=True)
    assert comment_body(app, comment_id) is not None
    rv = client.post(f"/o/acme/comments/{comment_id}/delete")
    assert rv.status_code == 302
    assert comment_body(app, comment_id) is None


def test_close_with_comment_from_the_page(login, world, count):
    client = login("dave")
    rv = client.post(
        f"/o/acme/issues/{world.issues['first']}/comments",
        data={"body": "Fixed", "status": "closed"},
    )
    assert rv.status_code == 302
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "closed") == 1
    assert count(Comment, Comment.body == "Fixed") == 1
    page = issue_page(client, world)
    assert "Comment added; issue #" in page and "closed." in page
    assert "Reopen with comment" in page


def test_close_with_nothing_written_only_closes(login, world, count):
    client = login("dave")
    rv = client.post(
        f"/o/acme/issues/{world.issues['first']}/comments", data={"body": " ", "status": "closed"}
    )
    assert rv.status_code == 302
    assert count(Issue, Issue.id == world.issues["first"], Issue.status == "closed") == 1
    assert count(Comment) == 0


def test_preview_without_javascript_saves_nothing(login, world, count):
    client = login("dave")
    rv = client.post(
        f"/o/acme/issues/{world.issues['first']}/comments",
        data={"body": "**bold** <script>x</script>", "preview": "1"},
    )
    assert rv.status_code == 200
    page = rv.get_data(as_text=True)
    assert (
        '<div class="md-preview markdown" aria-live="polite"><p><strong>bold</strong> &lt;script&gt;'
        in page
    )
    assert "**bold** &lt;script&gt;x&lt;/script&gt;</textarea>" in page  # kept for editing
    assert count(Comment) == 0
    rv = client.post(
        f"/o/acme/projects/{world.projects['website']}/issues/new",
        data={"title": "Draft", "description": "# Heading", "preview": "1"},
    )
    assert rv.status_code == 200
    assert "<h1>Heading</h1>" in rv.get_data(as_text=True)
    assert count(Issue, Issue.title == "Draft") == 0


def test_a_bad_status_from_the_comment_form_is_shown(login, world, count):
    rv = login("dave").post(
        f"/o/acme/issues/{world.issues['first']}/comments", data={"body": "x", "status": "done"}
    )
    assert rv.status_code == 422
    assert '<div class="error" role="alert">Choose a valid option.</div>' in rv.get_data(True)
    assert count(Comment) == 0
