"""Live pages, server side: the fragments live pages fetch are the pages' own
templates, answer for the viewer only, and refuse bad input with an exact
status; presence lines; the token renewal endpoint. (In a browser:
test_browser_live.py.)"""

from __future__ import annotations

import re
import typing as t

import pytest
import sqlalchemy as sa
from tracker.models import Activity

from karaffe.db import db as database
from karaffe.tenancy import unscoped

from .test_api import problem


def row_url(world: t.Any, issue: str | int, query: str = "") -> str:
    ident = world.issues[issue] if isinstance(issue, str) else issue
    return f"/o/acme/projects/{world.projects['website']}/row?id={ident}{query}"


def live_config(html: str) -> dict[str, t.Any]:
    import json

    found = re.search(r'<script id="live-config" type="application/json">(.*?)</script>', html)
    assert found, "no live config in the page"
    return t.cast(dict[str, t.Any], json.loads(found.group(1)))


# -- the list row -------------------------------------------------------------------


def test_the_row_fragment_is_the_row_of_the_list_page(login, world):
    client = login("dave")
    page = client.get(f"/o/acme/projects/{world.projects['website']}").get_data(as_text=True)
    row = client.get(row_url(world, "first")).get_data(as_text=True).strip()
    dave = world.users["dave"]  # its assignee
    assert row.startswith(
        f'<li id="issue-{world.issues["first"]}" data-assignee="{dave}" data-key='
    )
    assert row in page


def test_a_row_that_no_longer_matches_the_list_filters_says_so(login, world):
    client = login("dave")
    client.post(f"/o/acme/issues/{world.issues['first']}/status", data={"status": "closed"})
    open_list = client.get(row_url(world, "first")).get_data(as_text=True)  # open: the default
    assert 'data-match="0"' in open_list
    assert "Closed" in open_list
    every = client.get(row_url(world, "first", "&status=all")).get_data(as_text=True)
    assert "data-match" not in every
    wrong_words = client.get(row_url(world, "first", "&status=all&q=footer"))
    assert 'data-match="0"' in wrong_words.get_data(as_text=True)


def test_the_row_is_keyed_and_matched_by_the_list_sort_and_filters(login, world):
    client = login("dave")
    client.post(f"/o/acme/issues/{world.issues['first']}/comments", data={"body": "Seen"})
    base = f"/o/acme/projects/{world.projects['website']}"
    page = client.get(f"{base}?sort=comments").get_data(as_text=True)
    assert 'data-order="desc" data-sort="comments"' in page
    row = client.get(row_url(world, "first", "&sort=comments")).get_data(as_text=True).strip()
    first, dave = world.issues["first"], world.users["dave"]
    assert row.startswith(f'<li id="issue-{first}" data-assignee="{dave}" data-key="1"')
    assert row in page
    not_mine = client.get(row_url(world, "first", "&author=me")).get_data(as_text=True)
    assert 'data-match="0"' in not_mine  # Bob opened it
    mine = login("bob").get(row_url(world, "first", "&author=me")).get_data(as_text=True)
    assert "data-match" not in mine


def test_a_searched_list_says_so_to_the_live_script(login, world):
    page = login("dave").get(f"/o/acme/projects/{world.projects['website']}?q=login&sort=updated")
    assert 'data-order="desc" data-sort="updated" data-search="1"' in page.get_data(as_text=True)


@pytest.mark.parametrize("ident", ["", "abc", "0", "07", "-3", "9" * 20])
def test_a_row_without_a_valid_id_is_a_400(login, world, ident):
    rv = login("dave").get(f"/o/acme/projects/{world.projects['website']}/row?id={ident}")
    assert rv.status_code == 400
    assert "The id parameter must be an issue id." in rv.get_data(as_text=True)


def test_a_row_of_an_issue_gone_or_elsewhere_is_a_404(login, world):
    client = login("alice")
    assert client.get(row_url(world, "hidden")).status_code == 404  # another organization
    rv = client.post("/o/acme/projects/new", data={"name": "Other"}, follow_redirects=False)
    other = int(rv.headers["Location"].rsplit("/", 1)[1])
    url = f"/o/acme/projects/{other}/row?id={world.issues['first']}"
    assert client.get(url).status_code == 404  # not in this project
    client.post(f"/o/acme/issues/{world.issues['first']}/delete")
    assert client.get(row_url(world, "first")).status_code == 404


def test_fragments_need_a_login(client, world):
    rv = client.get(row_url(world, "first"))
    assert rv.status_code == 302
    assert "/login?next=" in rv.headers["Location"]


# -- the issue page -------------------------------------------------------------------


def test_the_parts_of_the_issue_page_are_its_own_blocks(login, world):
    client = login("dave")
    issue = world.issues["first"]
    page = client.get(f"/o/acme/issues/{issue}").get_data(as_text=True)
    parts = client.get(f"/o/acme/issues/{issue}/parts").get_data(as_text=True)
    ids = re.findall(r'^<[a-z]+ class="[^"]*" id="([a-z-]+)"', parts, re.M)
    assert ids == ["issue-head", "issue-description", "issue-facts"]
    for block in parts.split("\n<")[1:]:
        assert ("<" + block).strip()[:200] in page

    client.post(f"/o/acme/issues/{issue}/status", data={"status": "closed"})
    parts = client.get(f"/o/acme/issues/{issue}/parts").get_data(as_text=True)
    assert "Reopen issue" in parts
    assert '<span class="badge closed">Closed</span>' in parts


def test_a_comment_fragment_is_the_comment_of_the_page(login, api, world):
    client = login("dave")
    issue = world.issues["first"]
    url = f"/api/v1/issues/{issue}/comments"
    comment_id = api("dave").post(url, json={"body": "<b>Same</b> here"}).get_json()["id"]
    page = client.get(f"/o/acme/issues/{issue}").get_data(as_text=True)
    fragment = client.get(f"/o/acme/issues/{issue}/comment?id={comment_id}").get_data(as_text=True)
    assert fragment.strip().startswith(
        f'<div class="comment" id="comment-{comment_id}" data-order='
    )
    assert "&lt;b&gt;Same&lt;/b&gt; here" in fragment
    assert fragment.strip() in page
    other = world.issues["second"]
    assert client.get(f"/o/acme/issues/{other}/comment?id={comment_id}").status_code == 404
    rv = client.get(f"/o/acme/issues/{issue}/comment?id=x")
    assert rv.status_code == 400
    assert "The id parameter must be a comment id." in rv.get_data(as_text=True)


def test_deleting_a_comment_is_announced_to_the_page_and_to_the_list_row(
    api, login, world, captured_events
):
    issue = world.issues["first"]
    comment = api("bob").post(f"/api/v1/issues/{issue}/comments", json={"body": "x"}).get_json()
    assert "1 comment<" in login("dave").get(row_url(world, "first")).get_data(as_text=True)
    captured_events.clear()
    assert api("bob").delete(f"/api/v1/comments/{comment['id']}").status_code == 204
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        (f"issue:{issue}", "comment.deleted", {"id": comment["id"], "issue_id": issue}),
        (
            f"project:{world.projects['website']}",
            "issue.updated",
            {"id": issue, "project_id": world.projects["website"], "status": "open"},
        ),
    ]
    # What the list's row fetches then no longer counts it.
    assert "comment" not in login("dave").get(row_url(world, "first")).get_data(as_text=True)


def test_renaming_recolouring_or_deleting_a_label_is_announced_to_every_project_list(
    api, login, world, captured_events
):
    client = login("alice")
    rv = client.post("/o/acme/projects/new", data={"name": "Mobile"}, follow_redirects=False)
    mobile = int(rv.headers["Location"].rsplit("/", 1)[1])
    captured_events.clear()
    bug = world.labels["bug"]
    assert api("alice").patch(f"/api/v1/labels/{bug}", json={"name": "defect"}).status_code == 200
    assert api("alice").patch(f"/api/v1/labels/{bug}", json={"color": "#000000"}).status_code == 200
    assert api("alice").delete(f"/api/v1/labels/{bug}").status_code == 204
    projects = sorted([world.projects["website"], mobile])
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        (f"project:{p}", f"label.{kind}", {"id": bug})
        for kind in ("updated", "updated", "deleted")
        for p in projects
    ]  # not Globex's project: another organization's label


def test_a_renamed_member_is_announced_to_the_lists_of_their_organizations(
    api, login, world, captured_events
):
    dave = world.users["dave"]
    row = login("alice").get(row_url(world, "first")).get_data(as_text=True)
    assert f'data-assignee="{dave}"' in row and "assigned to Dave" in row
    assert api("dave").patch("/api/v1/me", json={"name": "David"}).status_code == 200
    login("dave").post("/settings/profile", data={"name": "Dave again"})
    api("dave").patch("/api/v1/me", json={"name": "Dave again"})  # no change: not announced
    website = f"project:{world.projects['website']}"  # not Globex's Vault: not his
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        (website, "member.updated", {"id": dave}),
        (website, "member.updated", {"id": dave}),
    ]
    assert "assigned to Dave again" in login("alice").get(row_url(world, "first")).get_data(True)


def test_a_label_saved_unchanged_is_not_announced(api, world, captured_events):
    bug = world.labels["bug"]
    assert api("alice").patch(f"/api/v1/labels/{bug}", json={"name": "bug"}).status_code == 200
    assert captured_events == []


# -- the timeline -----------------------------------------------------------------------


def entry_ids(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<div class="event" id="activity-(\d+)"', html)]


def test_every_change_the_timeline_shows_is_announced_with_its_id(
    api, login, world, captured_events
):
    issue = world.issues["first"]
    alice = api("alice")
    alice.patch(f"/api/v1/issues/{issue}", json={"title": "Login button is green"})
    alice.patch(f"/api/v1/issues/{issue}", json={"status": "closed"})
    alice.patch(f"/api/v1/issues/{issue}", json={"assignee_id": world.users["alice"]})
    alice.patch(f"/api/v1/issues/{issue}", json={"label_ids": [world.labels["ux"]]})
    alice.patch(f"/api/v1/issues/{issue}", json={"description": "Green, please."})
    announced = [e.data for e in captured_events if e.type == "activity.created"]
    assert {e.channel for e in captured_events if e.type == "activity.created"} == {
        f"issue:{issue}"
    }
    page = login("dave").get(f"/o/acme/issues/{issue}").get_data(as_text=True)
    assert [a["id"] for a in announced] == entry_ids(page)  # every entry, in order
    assert all(a["issue_id"] == issue for a in announced)
    said = [
        login("dave").get(f"/o/acme/issues/{issue}/entry?id={a['id']}").get_data(as_text=True)
        for a in announced
    ]
    for fragment, words in zip(
        said,
        [
            "changed the title from “Login button is blue” to “Login button is green”",
            "closed the issue",
            "assigned Alice instead of Dave",
            "added ux and removed bug",
            "edited the description",
        ],
        strict=True,
    ):
        assert words in fragment
        assert fragment.strip() in page  # the page's own entry, byte for byte


def test_a_comment_is_announced_as_a_comment_not_as_an_entry(api, world, captured_events):
    issue = world.issues["first"]
    api("dave").post(f"/api/v1/issues/{issue}/comments", json={"body": "Seen"})
    assert [e.type for e in captured_events if e.channel == f"issue:{issue}"] == ["comment.created"]


def test_the_timeline_is_in_the_order_of_its_data_order(api, login, world):
    issue = world.issues["first"]
    url = f"/api/v1/issues/{issue}/comments"
    api("dave").post(url, json={"body": "One"})
    api("dave").post(url, json={"body": "Closing", "status": "closed"})
    api("alice").patch(f"/api/v1/issues/{issue}", json={"status": "open"})
    api("dave").post(url, json={"body": "Two"})
    page = login("dave").get(f"/o/acme/issues/{issue}").get_data(as_text=True)
    orders = re.findall(r'<div class="(comment|event)" id="[a-z]+-\d+" data-order="([^"]+)"', page)
    assert [kind for kind, _ in orders] == ["comment", "comment", "event", "event", "comment"]
    keys = [key for _, key in orders]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)


@pytest.mark.parametrize("ident", ["", "abc", "0", "07", "9" * 20])
def test_an_entry_without_a_valid_id_is_a_400(login, world, ident):
    rv = login("dave").get(f"/o/acme/issues/{world.issues['first']}/entry?id={ident}")
    assert rv.status_code == 400
    assert "The id parameter must be an activity id." in rv.get_data(as_text=True)


def test_an_entry_of_another_issue_or_a_comment_is_a_404(api, login, world, app):
    first, second = world.issues["first"], world.issues["second"]
    api("alice").patch(f"/api/v1/issues/{first}", json={"status": "closed"})
    api("dave").post(f"/api/v1/issues/{first}/comments", json={"body": "Seen"})
    with app.app_context(), unscoped("test: the activity ids"):
        ids = dict(
            database.session.execute(
                sa.select(Activity.kind, Activity.id).where(Activity.issue_id == first)
            ).all()
        )
    client = login("dave")
    closed = ids["status"]
    assert client.get(f"/o/acme/issues/{first}/entry?id={closed}").status_code == 200
    assert client.get(f"/o/acme/issues/{second}/entry?id={closed}").status_code == 404
    hidden = world.issues["hidden"]
    assert client.get(f"/o/acme/issues/{hidden}/entry?id={closed}").status_code == 404
    # A comment's own row is shown as the comment, not as an entry.
    assert client.get(f"/o/acme/issues/{first}/entry?id={ids['comment']}").status_code == 404


# -- presence ---------------------------------------------------------------------------


def presence(client: t.Any, world: t.Any, tab: str, **extra: str) -> t.Any:
    return client.post(
        f"/o/acme/issues/{world.issues['first']}/presence", data={"tab": tab, **extra}
    )


def test_the_presence_line_names_the_others_viewing_the_issue(login, world, captured_events):
    dave, alice, bob = login("dave"), login("alice"), login("bob")
    assert "also viewing" not in presence(dave, world, "d1").get_data(as_text=True)
    line = presence(alice, world, "a1").get_data(as_text=True)
    assert "Dave is also viewing this issue." in line
    line = presence(bob, world, "b1").get_data(as_text=True)
    assert "Alice and Dave are also viewing this issue." in line
    line = presence(dave, world, "d1", leave="1").get_data(as_text=True)
    line = presence(bob, world, "b1").get_data(as_text=True)
    assert "Alice is also viewing this issue." in line
    announced = [e.data["users"] for e in captured_events if e.type == "presence"]
    alice_id, bob_id, dave_id = (str(world.users[n]) for n in ("alice", "bob", "dave"))
    assert announced == [
        [dave_id],
        sorted([dave_id, alice_id], key=int),
        sorted([dave_id, alice_id, bob_id], key=int),
        sorted([alice_id, bob_id], key=int),
    ]


@pytest.mark.parametrize("tab", ["", "a b", "x" * 65])
def test_a_malformed_tab_id_is_a_422(login, world, tab):
    rv = presence(login("dave"), world, tab)
    assert rv.status_code == 422
    assert "a tab id is 1-64 letters, digits, &#39;_&#39; or &#39;-&#39;" in rv.get_data(
        as_text=True
    )


def test_presence_on_another_organizations_issue_is_a_404(login, world):
    rv = login("dave").post(f"/o/acme/issues/{world.issues['hidden']}/presence", data={"tab": "a"})
    assert rv.status_code == 404


def test_presence_in_the_api_lists_who_has_the_issue_open(api, world, app):
    url = f"/api/v1/issues/{world.issues['first']}/presence"
    assert api("dave").put(url + "/phone-1").get_json() == {
        "users": [{"id": world.users["dave"], "name": "Dave"}],
        "ttl": app.config["EVENTS_PRESENCE_TTL"],
    }
    body = api("alice").put(url + "/laptop").get_json()
    assert [u["name"] for u in body["users"]] == ["Alice", "Dave"]
    assert api("dave").delete(url + "/phone-1").status_code == 204
    assert [u["name"] for u in api("alice").put(url + "/laptop").get_json()["users"]] == ["Alice"]


@pytest.mark.parametrize("tab", ["x" * 65, "a%20b", "%C3%A9"])
def test_presence_in_the_api_names_no_route_for_a_malformed_tab(api, world, tab):
    url = f"/api/v1/issues/{world.issues['first']}/presence/{tab}"
    problem(api("dave").put(url), 404, "not-found")


def test_presence_in_the_api_of_a_hidden_issue_is_a_404(api, world):
    hidden = f"/api/v1/issues/{world.issues['hidden']}/presence/t1"
    problem(api("dave").put(hidden), 404, "not-found")
    problem(api("dave").delete(hidden), 404, "not-found")


def test_the_document_gives_the_tab_pattern(client):
    operation = client.get("/api/v1/openapi.json").get_json()["paths"][
        "/api/v1/issues/{issue_id}/presence/{tab}"
    ]["put"]
    [tab] = [p for p in operation["parameters"] if p["name"] == "tab"]
    assert tab["schema"] == {"type": "string", "pattern": "^[A-Za-z0-9_\\-]{1,64}$"}


# -- the page's configuration and token renewal -------------------------------------------


def test_the_list_page_fetches_rows_with_its_own_filters(login, world):
    client = login("dave")
    url = f"/o/acme/projects/{world.projects['website']}?status=all&q=login&cursor=abc"
    config = live_config(client.get(url, follow_redirects=True).get_data(as_text=True))
    assert config["page"]["row"].endswith("/row?status=all&q=login")
    channels = f"channel=project:{world.projects['website']}&channel=user:{world.users['dave']}"
    assert config["renew"] == f"/api/v1/live/token?{channels}"


def test_the_issue_page_says_how_often_to_heartbeat(login, world, app):
    config = live_config(
        login("dave").get(f"/o/acme/issues/{world.issues['first']}").get_data(as_text=True)
    )
    assert config["page"]["heartbeat"] == app.config["EVENTS_PRESENCE_TTL"] / 3
    assert config["page"]["presence"].endswith("/presence")


def test_a_renewed_token_grants_the_channels_asked_for(api, world, app):
    project, issue = world.projects["website"], world.issues["first"]
    rv = api("dave").get(f"/api/v1/live/token?channel=project:{project}&channel=issue:{issue}")
    assert rv.status_code == 200
    body = rv.get_json()
    assert body["channels"] == [f"project:{project}", f"issue:{issue}"]
    assert body["expires_in"] == app.config["EVENTS_TOKEN_MAX_AGE"]
    assert body["stream"] == "/events/stream"
    grant = app.extensions["karaffe.events"].signer.verify(body["token"])
    assert (grant.user, sorted(grant.channels)) == (
        str(world.users["dave"]),
        sorted(body["channels"]),
    )


@pytest.mark.parametrize(
    "query", ["", "?channel=", "?channel=org:1", "?channel=project:0", "?channel=project:1x"]
)
def test_a_token_for_no_or_a_malformed_channel_is_a_422(api, query):
    body = problem(api("dave").get(f"/api/v1/live/token{query}"), 422, "validation-failed")
    assert body["errors"][0]["loc"][:2] == ["query", "channel"]


def test_a_token_for_a_channel_you_cannot_see_is_a_404(api, world):
    rv = api("dave").get(f"/api/v1/live/token?channel=project:{world.projects['vault']}")
    problem(rv, 404, "not-found")
    rv = api("dave").get(f"/api/v1/live/token?channel=issue:{world.issues['hidden']}")
    problem(rv, 404, "not-found")


def test_a_token_needs_a_user(client, world):
    rv = client.get(f"/api/v1/live/token?channel=project:{world.projects['website']}")
    problem(rv, 401, "unauthorized")
