"""The JSON API under /api/v1: every route, its permissions, and every kind
of bad input answered with the right status, a clear problem document, and
nothing written."""

from __future__ import annotations

import re

import pytest
from openapi_spec_validator import validate as validate_openapi
from tracker.models import Comment, Invitation, Issue, Label, Project

from karaffe.tenancy import Membership

VALIDATION = "urn:karaffe:problem:validation-failed"


def problem(rv, status, slug):
    assert rv.status_code == status, rv.data
    assert rv.mimetype == "application/problem+json"
    body = rv.get_json()
    assert body["type"] == f"urn:karaffe:problem:{slug}"
    assert body["status"] == status
    return body


# -- authentication ----------------------------------------------------------------


def test_every_route_needs_a_user(client, world):
    rv = client.get(f"/api/v1/projects/{world.projects['website']}/issues")
    body = problem(rv, 401, "unauthorized")
    assert "Bearer" in rv.headers["WWW-Authenticate"]
    assert body["title"] == "Authentication required"


def test_a_bad_token_is_refused(client, world):
    rv = client.get("/api/v1/me", headers={"Authorization": "Bearer kf_not-a-real-token-at-all"})
    assert problem(rv, 401, "unauthorized")["detail"] == "The API token is invalid."


def test_me(api, world):
    rv = api("alice").get("/api/v1/me")
    assert rv.status_code == 200
    assert rv.get_json() == {
        "id": world.users["alice"],
        "name": "Alice",
        "email": "alice@example.com",
        "email_verified": False,
    }


def test_session_cookie_works_too(login, world):
    assert login("alice").get("/api/v1/me").get_json()["name"] == "Alice"


# -- organizations -------------------------------------------------------------------


def test_list_orgs_shows_only_mine_with_role(api, world):
    rv = api("bob").get("/api/v1/orgs")
    assert rv.get_json() == [
        {"id": world.orgs["acme"], "name": "Acme", "slug": "acme", "role": "admin"}
    ]


def test_create_org(api, world, count):
    rv = api("erin").post("/api/v1/orgs", json={"name": "Erin's Shop"})
    assert rv.status_code == 201
    assert rv.get_json()["slug"] == "erin-s-shop"
    assert rv.get_json()["role"] == "owner"
    assert count(Membership, Membership.user_id == world.users["erin"]) == 1


def test_create_org_with_taken_slug_gets_another(api, world):
    rv = api("erin").post("/api/v1/orgs", json={"name": "ACME"})
    assert rv.get_json()["slug"] == "acme-2"


def test_get_org_and_members(api, world):
    assert api("dave").get("/api/v1/orgs/acme").get_json()["role"] == "member"
    members = api("dave").get("/api/v1/orgs/acme/members").get_json()
    assert [(m["user"]["name"], m["role"]) for m in members] == [
        ("Alice", "owner"),
        ("Bob", "admin"),
        ("Dave", "member"),
    ]
    assert "email" not in members[0]["user"]


def test_change_role(api, world, count):
    url = f"/api/v1/orgs/acme/members/{world.users['dave']}/role"
    rv = api("bob").put(url, json={"role": "admin"})
    assert rv.status_code == 200
    assert rv.get_json()["role"] == "admin"
    assert count(Membership, Membership.user_id == world.users["dave"], Membership.role == "admin")


def test_member_cannot_change_roles(api, world, count):
    rv = api("dave").put(
        f"/api/v1/orgs/acme/members/{world.users['bob']}/role", json={"role": "member"}
    )
    assert problem(rv, 403, "forbidden")["detail"] == "Only an organization admin can do this."
    assert count(Membership, Membership.user_id == world.users["bob"], Membership.role == "admin")


def test_only_owners_make_owners(api, world):
    rv = api("bob").put(
        f"/api/v1/orgs/acme/members/{world.users['dave']}/role", json={"role": "owner"}
    )
    assert problem(rv, 403, "forbidden")["detail"] == "Only an owner can make or unmake owners."


def test_last_owner_cannot_step_down_or_leave(api, world, count):
    rv = api("alice").put(
        f"/api/v1/orgs/acme/members/{world.users['alice']}/role", json={"role": "admin"}
    )
    assert problem(rv, 409, "conflict")["detail"].startswith("An organization needs an owner")
    rv = api("alice").delete("/api/v1/orgs/acme/members/me")
    assert problem(rv, 409, "conflict")["detail"].startswith("You are the last owner")
    assert count(Membership, Membership.user_id == world.users["alice"]) == 1


def test_member_leaves(api, world, count):
    assert api("dave").delete("/api/v1/orgs/acme/members/me").status_code == 204
    assert count(Membership, Membership.user_id == world.users["dave"]) == 0
    assert api("dave").get("/api/v1/orgs/acme").status_code == 404


def test_admin_removes_a_member(api, world, count):
    rv = api("bob").delete(f"/api/v1/orgs/acme/members/{world.users['dave']}")
    assert rv.status_code == 204
    assert count(Membership, Membership.user_id == world.users["dave"]) == 0
    assert api("dave").get("/api/v1/orgs/acme").status_code == 404


def test_removing_an_owner_or_oneself_is_refused(api, world, count):
    rv = api("bob").delete(f"/api/v1/orgs/acme/members/{world.users['alice']}")
    assert problem(rv, 403, "forbidden")["detail"] == "Only an owner can remove an owner."
    rv = api("bob").delete(f"/api/v1/orgs/acme/members/{world.users['bob']}")
    assert problem(rv, 409, "conflict")["detail"] == "To leave the organization, use Leave."
    rv = api("dave").delete(f"/api/v1/orgs/acme/members/{world.users['bob']}")
    assert rv.status_code == 403
    assert count(Membership) == 4


def test_unknown_role_is_refused(api, world):
    rv = api("alice").put(
        f"/api/v1/orgs/acme/members/{world.users['dave']}/role", json={"role": "king"}
    )
    body = problem(rv, 422, "validation-failed")
    assert body["errors"][0]["loc"] == ["body", "role"]


def test_invitation_link(api, world, count, app):
    rv = api("bob").post("/api/v1/orgs/acme/invitations", json={"role": "admin"})
    assert rv.status_code == 201
    body = rv.get_json()
    assert body["url"].startswith("http://tracker.test/invitations/")
    assert body["role"] == "admin"
    assert count(Invitation) == 1


def test_member_cannot_invite(api, world, count):
    rv = api("dave").post("/api/v1/orgs/acme/invitations", json={})
    problem(rv, 403, "forbidden")
    assert count(Invitation) == 0


# -- labels and projects ----------------------------------------------------------------


def test_labels(api, world, count):
    assert [lbl["name"] for lbl in api("dave").get("/api/v1/orgs/acme/labels").get_json()] == [
        "bug",
        "ux",
    ]
    rv = api("bob").post("/api/v1/orgs/acme/labels", json={"name": "docs"})
    assert rv.status_code == 201
    rv = api("bob").post("/api/v1/orgs/acme/labels", json={"name": "docs"})
    body = problem(rv, 409, "conflict")  # fine input, but the name is taken
    assert body["errors"] == [
        {
            "loc": ["body", "name"],
            "msg": "This organization already has a label with that name.",
            "code": "taken",
        }
    ]
    assert api("bob").delete(f"/api/v1/labels/{world.labels['bug']}").status_code == 204
    assert count(Label, Label.organization_id == world.orgs["acme"]) == 2


def test_projects_crud(api, world, count):
    client = api("dave")
    assert [p["name"] for p in client.get("/api/v1/orgs/acme/projects").get_json()] == ["Website"]
    rv = client.post("/api/v1/orgs/acme/projects", json={"name": "App", "description": "Mobile"})
    assert rv.status_code == 201
    project_id = rv.get_json()["id"]
    rv = client.patch(f"/api/v1/projects/{project_id}", json={"name": "iOS app"})
    assert rv.get_json()["name"] == "iOS app"
    assert rv.get_json()["description"] == "Mobile"
    assert client.get(f"/api/v1/projects/{project_id}").get_json()["name"] == "iOS app"
    # Deleting a project is for admins.
    problem(client.delete(f"/api/v1/projects/{project_id}"), 403, "forbidden")
    assert api("bob").delete(f"/api/v1/projects/{project_id}").status_code == 204
    assert count(Project, Project.id == project_id) == 0


# -- issues --------------------------------------------------------------------------


def issues_url(world, project="website"):
    return f"/api/v1/projects/{world.projects[project]}/issues"


def test_create_issue(api, world, count):
    rv = api("dave").post(
        issues_url(world),
        json={
            "title": "Crash on save",
            "assignee_id": world.users["bob"],
            "label_ids": [world.labels["bug"]],
        },
    )
    assert rv.status_code == 201
    body = rv.get_json()
    assert body["title"] == "Crash on save"
    assert body["status"] == "open"
    assert body["assignee"] == {"id": world.users["bob"], "name": "Bob"}
    assert body["author"] == {"id": world.users["dave"], "name": "Dave"}
    assert body["labels"] == [
        {"id": world.labels["bug"], "name": "bug", "color": "#d73a4a", "text_color": "#000000"}
    ]
    assert body["created_at"].endswith("Z")
    assert rv.headers["Location"].endswith(f"/api/v1/issues/{body['id']}")
    assert count(Issue, Issue.title == "Crash on save") == 1


BAD_BODIES = [
    pytest.param({}, ["body", "title"], "missing", id="no title"),
    pytest.param({"title": ""}, ["body", "title"], "string_too_short", id="empty title"),
    pytest.param({"title": "x" * 10_000}, ["body", "title"], "string_too_long", id="10000 chars"),
    pytest.param({"title": 42}, ["body", "title"], "string_type", id="title not a string"),
    pytest.param({"title": "t", "assignee_id": "bob"}, ["body", "assignee_id"], "int_parsing", id="assignee not int"),
    pytest.param({"title": "t", "assignee_id": 999999}, ["body", "assignee_id"], "unknown", id="unknown assignee"),
    pytest.param({"title": "t", "label_ids": "bug"}, ["body", "label_ids"], "list_type", id="labels not a list"),
    pytest.param({"title": "t", "label_ids": ["LABEL:globex-only"]}, ["body", "label_ids"], "unknown", id="label of another org"),
    pytest.param({"title": "t", "label_ids": [999999]}, ["body", "label_ids"], "unknown", id="unknown label"),
    pytest.param({"title": "t", "status": "open"}, ["body", "status"], "extra_forbidden", id="unknown field"),
    pytest.param([{"title": "t"}], ["body"], "model_type", id="array body"),
]  # fmt: skip


@pytest.mark.parametrize(("body", "loc", "code"), BAD_BODIES)
def test_bad_issue_body_is_refused_and_nothing_written(api, world, count, body, loc, code):
    if isinstance(body, dict) and body.get("label_ids") == ["LABEL:globex-only"]:
        body = {**body, "label_ids": [world.labels["globex-only"]]}
    before = count(Issue)
    rv = api("alice").post(issues_url(world), json=body)
    problem_body = problem(rv, 422, "validation-failed")
    assert [e["loc"] for e in problem_body["errors"]] == [loc]
    assert problem_body["errors"][0]["code"] == code
    assert problem_body["errors"][0]["msg"]
    assert count(Issue) == before


def test_label_of_another_org_names_the_id(api, world):
    rv = api("alice").post(
        issues_url(world), json={"title": "t", "label_ids": [world.labels["globex-only"]]}
    )
    msg = rv.get_json()["errors"][0]["msg"]
    assert msg == f"No label of this organization has the id {world.labels['globex-only']}."
    assert "globex-only" not in rv.get_data(as_text=True)


def test_malformed_json_is_a_400(api, world, count):
    rv = api("alice").post(
        issues_url(world), data='{"title": "x",', headers={"Content-Type": "application/json"}
    )
    body = problem(rv, 400, "malformed-json")
    assert body["detail"].startswith("The request body is not valid JSON")
    assert count(Issue) == 3


def test_form_body_is_a_415(api, world, count):
    rv = api("alice").post(issues_url(world), data={"title": "x"})
    problem(rv, 415, "unsupported-media-type")
    assert count(Issue) == 3


def test_issue_in_another_org_is_not_found(api, world, count):
    client = api("alice")
    hidden = world.issues["hidden"]
    for rv in (
        client.get(f"/api/v1/issues/{hidden}"),
        client.patch(f"/api/v1/issues/{hidden}", json={"status": "closed"}),
        client.delete(f"/api/v1/issues/{hidden}"),
        client.get(f"/api/v1/issues/{hidden}/comments"),
        client.post(f"/api/v1/issues/{hidden}/comments", json={"body": "hi"}),
        client.post(issues_url(world, "vault"), json={"title": "sneaky"}),
        client.get(issues_url(world, "vault")),
    ):
        body = problem(rv, 404, "not-found")
        assert "Globex" not in rv.get_data(as_text=True)
        assert body["detail"] == "The requested resource was not found."
    assert count(Issue, Issue.id == hidden, Issue.status == "open") == 1
    assert count(Comment) == 0
    assert count(Issue, Issue.title == "sneaky") == 0


def test_unknown_issue_is_not_found(api, world):
    problem(api("alice").get("/api/v1/issues/987654"), 404, "not-found")


def test_patch_issue_closes_reassigns_and_relabels(api, world, count):
    url = f"/api/v1/issues/{world.issues['first']}"
    rv = api("dave").patch(url, json={"status": "closed", "assignee_id": None, "label_ids": []})
    assert rv.status_code == 200
    body = rv.get_json()
    assert (body["status"], body["assignee"], body["labels"]) == ("closed", None, [])
    assert body["title"] == "Login button is blue"
    rv = api("dave").patch(url, json={"status": "open"})
    assert rv.get_json()["status"] == "open"


@pytest.mark.parametrize(
    ("body", "loc", "code"),
    [
        ({"status": "done"}, ["body", "status"], "literal_error"),
        ({"title": None}, ["body", "title"], "null"),
        ({"title": ""}, ["body", "title"], "string_too_short"),
        ({"label_ids": None}, ["body", "label_ids"], "null"),
        ({"assignee_id": 999999}, ["body", "assignee_id"], "unknown"),
        ({"assignee_id": True}, ["body", "assignee_id"], "int_type"),
        ({"assignee_id": -1}, ["body", "assignee_id"], "greater_than_equal"),
        ({"assignee_id": 2**63}, ["body", "assignee_id"], "less_than_equal"),
        ({"label_ids": [2**63]}, ["body", "label_ids", 0], "less_than_equal"),
    ],
)
def test_bad_patch_changes_nothing(api, world, count, body, loc, code):
    rv = api("dave").patch(f"/api/v1/issues/{world.issues['first']}", json=body)
    errors = problem(rv, 422, "validation-failed")["errors"]
    assert (errors[0]["loc"], errors[0]["code"]) == (loc, code)
    assert (
        count(
            Issue,
            Issue.id == world.issues["first"],
            Issue.status == "open",
            Issue.title == "Login button is blue",
            Issue.assignee_id == world.users["dave"],
        )
        == 1
    )


def test_delete_issue_permissions(api, world, count):
    problem(api("dave").delete(f"/api/v1/issues/{world.issues['first']}"), 403, "forbidden")
    assert api("alice").delete(f"/api/v1/issues/{world.issues['first']}").status_code == 204
    assert count(Issue, Issue.id == world.issues["first"]) == 0


def test_comments(api, world, count):
    url = f"/api/v1/issues/{world.issues['first']}/comments"
    rv = api("dave").post(url, json={"body": "On it"})
    assert rv.status_code == 201
    comment_id = rv.get_json()["id"]
    assert [c["body"] for c in api("alice").get(url).get_json()] == ["On it"]
    problem(api("alice").post(url, json={"body": ""}), 422, "validation-failed")
    assert api("bob").delete(f"/api/v1/comments/{comment_id}").status_code == 204  # an admin
    assert count(Comment) == 0


# -- lists -----------------------------------------------------------------------------


@pytest.fixture
def many(app, world, db):
    """25 more open issues in Website, alternately assigned to dave and bob."""
    from karaffe.tenancy import unscoped

    with app.app_context(), unscoped("test: many issues"):
        for n in range(25):
            db.session.add(
                Issue(
                    organization_id=world.orgs["acme"],
                    project_id=world.projects["website"],
                    title=f"Issue number {n}",
                    assignee_id=world.users["dave" if n % 2 else "bob"],
                )
            )
        db.session.commit()


def test_issue_list_pages_through_everything_once(api, world, many):
    client = api("alice")
    url = issues_url(world) + "?limit=10"
    seen = []
    pages = 0
    while url:
        rv = client.get(url)
        assert rv.status_code == 200
        seen += [issue["id"] for issue in rv.get_json()]
        pages += 1
        links = rv.headers.get("Link", "")
        nxt = [part for part in links.split(", ") if 'rel="next"' in part]
        url = nxt[0].split(">")[0].lstrip("<") if nxt else None
    assert pages == 3
    assert len(seen) == 27 == len(set(seen))
    assert seen == sorted(seen, reverse=True)


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("status=closed", 1),
        ("status=open", 26),
        ("status=all", 27),  # what the page links to
        ("", 27),
        ("q=footer", 1),
        ("q=FOOTER+phones", 1),
        ("q=number+1", 11),  # every word, as a prefix: "number" and "1" (1, 10-19)
        ("q=100%25", 0),
    ],
)
def test_issue_list_filters(api, world, many, query, expected):
    rv = api("alice").get(issues_url(world) + f"?limit=100&{query}")
    assert len(rv.get_json()) == expected


def test_issue_list_filters_by_assignee_and_label(api, world, many):
    client = api("alice")
    dave = client.get(issues_url(world) + f"?limit=100&assignee={world.users['dave']}").get_json()
    assert len(dave) == 13
    bug = client.get(issues_url(world) + f"?label={world.labels['bug']}").get_json()
    assert [i["title"] for i in bug] == ["Login button is blue"]


@pytest.mark.parametrize(
    ("query", "loc"),
    [
        ("status=done", ["query", "status"]),
        ("assignee=bob", ["query", "assignee"]),
        ("label=1.5", ["query", "label", 0]),
        ("limit=0", ["query", "limit"]),
        ("limit=1000", ["query", "limit"]),
        ("q=" + "w" * 201, ["query", "q"]),
    ],
)
def test_bad_list_query_is_refused(api, world, query, loc):
    rv = api("alice").get(issues_url(world) + "?" + query)
    assert problem(rv, 422, "validation-failed")["errors"][0]["loc"] == loc


def test_tampered_cursor_is_refused(api, world):
    rv = api("alice").get(issues_url(world) + "?cursor=abc")
    problem(rv, 400, "invalid-cursor")


@pytest.fixture
def mobile(app, world, db):
    """A second Acme project, with as many issues as Website has with ``many``."""
    from karaffe.tenancy import unscoped

    with app.app_context(), unscoped("test: a second project"):
        project = Project(organization_id=world.orgs["acme"], name="Mobile")
        db.session.add(project)
        db.session.flush()
        for n in range(27):
            db.session.add(
                Issue(organization_id=world.orgs["acme"], project_id=project.id, title=f"M{n}")
            )
        db.session.commit()
        return project.id


def next_cursor(rv):
    nxt = [part for part in rv.headers["Link"].split(", ") if 'rel="next"' in part]
    return nxt[0].split("cursor=")[1].split(">")[0]


@pytest.mark.parametrize(
    "target",
    [
        "/api/v1/projects/MOBILE/issues?limit=10",  # another project's list
        "/api/v1/projects/WEBSITE/issues?limit=10&status=open",  # another filter
        "/api/v1/issues/FIRST/comments?limit=10",  # another endpoint
    ],
)
def test_cursor_of_another_list_is_refused(api, world, many, mobile, target):
    client = api("alice")
    source = issues_url(world) + "?limit=10"
    cursor = next_cursor(client.get(source))
    target = (
        target.replace("MOBILE", str(mobile))
        .replace("WEBSITE", str(world.projects["website"]))
        .replace("FIRST", str(world.issues["first"]))
    )
    body = problem(client.get(f"{target}&cursor={cursor}"), 400, "invalid-cursor")
    assert body["detail"] == "This cursor belongs to another list, filter or sort order."
    own = client.get(f"{source}&cursor={cursor}")
    assert own.status_code == 200
    assert len(own.get_json()) == 10


def test_cursor_survives_changes_to_the_object_its_url_names(api, world, many):
    """Bound to the URL, not to the project the view receives in its place."""
    client = api("alice")
    source = issues_url(world) + "?limit=10"
    cursor = next_cursor(client.get(source))
    project = f"/api/v1/projects/{world.projects['website']}"
    assert client.patch(project, json={"name": "Renamed"}).status_code == 200
    rv = client.get(f"{source}&cursor={cursor}")
    assert rv.status_code == 200
    assert len(rv.get_json()) == 10


# -- documentation ----------------------------------------------------------------------


def test_openapi_document_is_valid_and_complete(client, world):
    rv = client.get("/api/v1/openapi.json")
    assert rv.status_code == 200
    spec = rv.get_json()
    validate_openapi(spec)
    paths = spec["paths"]
    assert "/api/v1/projects/{project_id}/issues" in paths
    assert {"get", "post"} <= set(paths["/api/v1/projects/{project_id}/issues"])
    assert {"get", "patch", "delete"} <= set(paths["/api/v1/issues/{issue_id}"])
    assert "IssueOut" in spec["components"]["schemas"]


def test_docs_page_is_served(client, world):
    rv = client.get("/api/v1/docs")
    assert rv.status_code == 200
    assert b"swagger-ui" in rv.data


def test_list_page_status_links_work_in_the_api(api, login, world):
    """The page and the API speak one vocabulary: every ``status`` the
    page's filter offers is accepted by the API, with the same issues."""
    page = login("alice").get(f"/o/acme/projects/{world.projects['website']}").get_data(True)
    offered = re.findall(
        r'<option value="(\w+)"', page.split('id="status"')[1].split("</select>")[0]
    )
    assert offered == ["open", "closed", "all"]
    for status in offered:
        html = login("alice").get(f"/o/acme/projects/{world.projects['website']}?status={status}")
        shown = re.findall(r"/o/acme/issues/(\d+)\"", html.get_data(True))
        listed = api("alice").get(issues_url(world) + f"?status={status}").get_json()
        assert [int(i) for i in shown] == [issue["id"] for issue in listed], status
