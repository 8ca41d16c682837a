"""Activity, @mentions, watching and notifications (issue 13): one activity
table written by the services with each change; notifications derived from
it for the people mentioned, assigned, or watching, never the actor."""

from __future__ import annotations

import json
import typing as t

import pytest
import sqlalchemy as sa
from tracker import mentions
from tracker.models import Activity, Notification, Watch

from karaffe.db import db as database
from karaffe.tenancy import unscoped


def _issue_url(world: t.Any, name: str = "first") -> str:
    return f"/api/v1/issues/{world.issues[name]}"


def notifications_of(app: t.Any, user_id: int) -> list[tuple[str, str]]:
    with app.app_context(), unscoped("test: reading notifications"):
        rows = database.session.execute(
            sa.select(Notification.reason, Activity.kind)
            .join(Activity, Activity.id == Notification.activity_id)
            .where(Notification.user_id == user_id)
            .order_by(Notification.id)
        )
        return [(reason, kind) for reason, kind in rows]


# -- the activity table -----------------------------------------------------------------


def test_every_change_to_an_issue_is_one_activity_row(api, world, app):
    alice = api("alice")
    created = alice.post(
        f"/api/v1/projects/{world.projects['website']}/issues", json={"title": "Typo"}
    )
    assert created.status_code == 201
    issue = created.get_json()["id"]
    patch = {
        "title": "Typo on the home page",
        "status": "closed",
        "assignee_id": world.users["dave"],
        "label_ids": [world.labels["bug"]],
    }
    assert alice.patch(f"/api/v1/issues/{issue}", json=patch).status_code == 200
    assert alice.post(f"/api/v1/issues/{issue}/comments", json={"body": "Done."}).status_code == 201
    page = alice.get(f"/api/v1/issues/{issue}/activity")
    assert page.status_code == 200
    rows = page.get_json()
    assert [r["kind"] for r in rows] == [
        "created", "title", "status", "assignee", "labels", "comment"
    ]  # fmt: skip
    assert all(r["actor"] == {"id": world.users["alice"], "name": "Alice"} for r in rows)
    assert rows[1]["detail"] == {"from": "Typo", "to": "Typo on the home page"}
    assert rows[2]["detail"] == {"from": "open", "to": "closed"}
    assert rows[3]["detail"] == {"from": None, "to": {"id": world.users["dave"], "name": "Dave"}}
    assert rows[4]["detail"] == {"added": ["bug"], "removed": []}
    assert set(rows[5]["detail"]) == {"comment_id"}


def test_the_activity_list_pages_with_cursors(api, world):
    alice = api("alice")
    url = _issue_url(world)
    for n in range(5):
        alice.post(f"{url}/comments", json={"body": f"note {n}"})
    first = alice.get(f"{url}/activity?limit=2")
    assert first.status_code == 200 and len(first.get_json()) == 2
    assert 'rel="next"' in first.headers["Link"]
    seen = [r["id"] for r in first.get_json()]
    next_url = first.headers["Link"].split(";")[0].strip("<>")
    second = alice.get(next_url)
    assert second.get_json()[0]["id"] > seen[-1]


def test_another_organizations_issue_activity_is_not_found(api, world):
    response = api("alice").get(f"{_issue_url(world, 'hidden')}/activity")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404


def test_a_bad_activity_cursor_is_a_400(api, world):
    response = api("alice").get(f"{_issue_url(world)}/activity?cursor=nonsense")
    assert response.status_code == 400
    assert response.content_type == "application/problem+json"


def test_the_issue_page_interleaves_comments_and_changes_oldest_first(api, login, world):
    alice = api("alice")
    url = _issue_url(world)
    alice.post(f"{url}/comments", json={"body": "First remark"})
    alice.patch(url, json={"status": "closed"})
    alice.post(f"{url}/comments", json={"body": "Second remark"})
    html = login("bob").get(f"/o/acme/issues/{world.issues['first']}").get_data(as_text=True)
    first, closed, second = (
        html.index("First remark"),
        html.index("closed the issue"),
        html.index("Second remark"),
    )
    assert first < closed < second


# -- handles and mentions ---------------------------------------------------------------


def test_handles_are_the_email_before_the_at_unique_per_organization(app, world):
    with app.app_context(), unscoped("test: handles"):
        from karaffe.auth import User
        from karaffe.tenancy import Membership

        twin = User(name="Other Bob", email="bob@elsewhere.com")
        database.session.add(twin)
        database.session.flush()
        database.session.add(
            Membership(organization_id=world.orgs["acme"], user=twin, role="member")
        )
        database.session.flush()
        handles = {m.handle: m.user_id for m in mentions.members(world.orgs["acme"])}
    assert handles == {
        "alice": world.users["alice"],
        "bob": world.users["bob"],
        "dave": world.users["dave"],
        "bob-2": twin.id,
    }
    assert mentions.handle_of("Bob.Smith+x@acme.com") == "bob.smithx"


def test_a_mention_links_to_the_member_and_notifies_them(api, login, world, app):
    response = api("alice").post(
        f"{_issue_url(world)}/comments", json={"body": "@dave can you look? cc @carol `@bob`"}
    )
    assert response.status_code == 201
    page = login("bob").get(f"/o/acme/issues/{world.issues['first']}").get_data(as_text=True)
    assert f'<a class="mention" href="/o/acme/members#member-{world.users["dave"]}"' in page
    # carol is not a member of Acme: plain text; `@bob` is code: no mention.
    assert "cc @carol" in page
    assert ("mentioned", "comment") in notifications_of(app, world.users["dave"])
    assert notifications_of(app, world.users["carol"]) == []
    assert ("mentioned", "comment") not in notifications_of(app, world.users["bob"])


def test_a_mention_renders_the_same_on_the_page_in_the_api_and_in_the_preview(api, login, world):
    text = "@dave can you look? cc @carol `@bob` <b>@alice</b>"
    alice = api("alice")
    comment = alice.post(f"{_issue_url(world)}/comments", json={"body": text}).get_json()
    issue = alice.patch(_issue_url(world), json={"description": text}).get_json()
    dave = f'<a class="mention" href="/o/acme/members#member-{world.users["dave"]}"'
    expected = (
        f'<p>{dave} target="_blank" rel="nofollow noopener">@dave</a> can you look? cc @carol '
        "<code>@bob</code> &lt;b&gt;"
        f'<a class="mention" href="/o/acme/members#member-{world.users["alice"]}" '
        'target="_blank" rel="nofollow noopener">@alice</a>&lt;/b&gt;</p>'
    )
    preview = alice.post("/api/v1/markdown", json={"text": text, "org": "acme"})
    assert preview.status_code == 200
    assert preview.get_json() == {"html": expected}
    assert comment["body_html"] == expected
    assert issue["description_html"] == expected
    assert alice.get(f"/api/v1/comments/{comment['id']}").get_json()["body_html"] == expected
    listed = alice.get(f"/api/v1/projects/{world.projects['website']}/issues?q=carol").get_json()
    assert [i["description_html"] for i in listed if i["id"] == issue["id"]] == [expected]
    in_org = alice.get("/api/v1/orgs/acme/issues?q=carol").get_json()
    assert [i["description_html"] for i in in_org if i["id"] == issue["id"]] == [expected]
    page = login("bob").get(f"/o/acme/issues/{world.issues['first']}").get_data(as_text=True)
    assert page.count(expected) == 2  # the description and the comment
    # The form's own Preview (no JavaScript) too.
    form = login("bob").post(
        f"/o/acme/issues/{world.issues['first']}/comments", data={"body": text, "preview": "1"}
    )
    assert form.status_code == 200 and expected in form.get_data(as_text=True)


def test_the_preview_without_an_organization_links_no_mention(api, world):
    preview = api("alice").post("/api/v1/markdown", json={"text": "@dave"})
    assert preview.get_json() == {"html": "<p>@dave</p>"}


@pytest.mark.parametrize("org", ["globex", "no-such-org"])
def test_the_preview_in_an_organization_not_yours_is_a_404(api, world, org):
    preview = api("dave").post("/api/v1/markdown", json={"text": "@alice", "org": org})
    assert preview.status_code == 404
    assert preview.get_json()["detail"] == "No organization of yours has this slug."


def test_a_mention_in_a_new_description_notifies(api, world, app):
    response = api("bob").post(
        f"/api/v1/projects/{world.projects['website']}/issues",
        json={"title": "Help", "description": "Hey @alice and @bob"},
    )
    assert response.status_code == 201
    assert notifications_of(app, world.users["alice"]) == [("mentioned", "created")]
    assert notifications_of(app, world.users["bob"]) == []  # never the actor


def test_editing_a_description_notifies_only_the_newly_mentioned(api, world, app):
    url = _issue_url(world)
    api("bob").patch(url, json={"description": "@alice"})
    api("bob").patch(url, json={"description": "@alice and @dave"})
    assert notifications_of(app, world.users["alice"]) == [("mentioned", "description")]
    assert ("mentioned", "description") in notifications_of(app, world.users["dave"])


def test_mentionable_lists_members_by_handle_or_name(api, world):
    response = api("alice").get("/api/v1/orgs/acme/mentionable?q=@da")
    assert response.status_code == 200
    assert response.get_json() == [{"id": world.users["dave"], "name": "Dave", "handle": "dave"}]
    everyone = api("alice").get("/api/v1/orgs/acme/mentionable").get_json()
    assert sorted(m["handle"] for m in everyone) == ["alice", "bob", "dave"]


def test_mentionable_of_another_organization_is_not_found(api):
    response = api("alice").get("/api/v1/orgs/globex/mentionable?q=c")
    assert response.status_code == 404


def test_a_too_long_mention_query_is_a_422(api):
    response = api("alice").get("/api/v1/orgs/acme/mentionable?q=" + "a" * 61)
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["loc"] == ["query", "q"]
    assert error["code"] == "string_too_long"


# -- notifications ------------------------------------------------------------------------


def test_assigning_notifies_the_assignee_not_the_actor(api, world, app):
    api("alice").patch(_issue_url(world, "second"), json={"assignee_id": world.users["bob"]})
    assert notifications_of(app, world.users["bob"]) == [("assigned", "assignee")]
    assert notifications_of(app, world.users["alice"]) == []
    api("alice").patch(_issue_url(world, "second"), json={"assignee_id": world.users["alice"]})
    assert notifications_of(app, world.users["alice"]) == []


def test_commenters_watch_and_hear_of_later_comments_and_status(api, world, app):
    url = _issue_url(world)
    api("dave").post(f"{url}/comments", json={"body": "I can reproduce."})
    api("alice").post(f"{url}/comments", json={"body": "Fixed.", "status": "closed"})
    assert notifications_of(app, world.users["dave"]) == [
        ("watching", "comment"),
        ("watching", "status"),
    ]
    # alice was not watching before she commented; she is now.
    assert notifications_of(app, world.users["alice"]) == []
    api("dave").patch(url, json={"status": "open"})
    assert notifications_of(app, world.users["alice"]) == [("watching", "status")]


def test_unwatching_stops_notifications_and_commenting_does_not_undo_it(api, world, app):
    url = _issue_url(world)
    dave = api("dave")
    assert dave.put(f"{url}/watch").get_json() == {"watching": True}
    assert dave.delete(f"{url}/watch").get_json() == {"watching": False}
    dave.post(f"{url}/comments", json={"body": "mine"})
    assert dave.get(f"{url}/watch").get_json() == {"watching": False}
    api("alice").post(f"{url}/comments", json={"body": "theirs"})
    assert notifications_of(app, world.users["dave"]) == []


def test_watching_another_organizations_issue_is_not_found(api, world):
    response = api("alice").put(f"{_issue_url(world, 'hidden')}/watch")
    assert response.status_code == 404
    assert response.get_json()["title"] == "Not found"


def test_the_inbox_lists_marks_read_one_and_all(api, world):
    alice, bob = api("alice"), api("bob")
    for n in range(3):
        alice.post(f"{_issue_url(world)}/comments", json={"body": f"@bob look {n}"})
    assert bob.get("/api/v1/notifications/unread").get_json() == {"unread": 3}
    listed = bob.get("/api/v1/notifications")
    assert listed.status_code == 200
    items = listed.get_json()
    assert [n["reason"] for n in items] == ["mentioned"] * 3
    newest = items[0]
    assert newest["issue"]["id"] == world.issues["first"]
    assert newest["activity"]["kind"] == "comment" and newest["read"] is False
    one = bob.post(f"/api/v1/notifications/{newest['id']}/read")
    assert one.status_code == 200 and one.get_json() == {"marked": 1}
    again = bob.post(f"/api/v1/notifications/{newest['id']}/read")
    assert again.get_json() == {"marked": 0}
    assert [n["read"] for n in bob.get("/api/v1/notifications?unread=true").get_json()] == [
        False,
        False,
    ]
    assert bob.post("/api/v1/notifications/read").get_json() == {"marked": 2}
    assert bob.get("/api/v1/notifications/unread").get_json() == {"unread": 0}


def test_someone_elses_notification_is_not_found(api, world):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@bob hi"})
    (mine,) = api("bob").get("/api/v1/notifications").get_json()
    response = api("dave").post(f"/api/v1/notifications/{mine['id']}/read")
    assert response.status_code == 404
    assert response.get_json()["status"] == 404
    assert api("bob").get("/api/v1/notifications/unread").get_json() == {"unread": 1}


def test_a_bad_unread_filter_is_a_422(api):
    response = api("bob").get("/api/v1/notifications?unread=maybe")
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["loc"] == ["query", "unread"]


def test_notifications_of_an_organization_left_are_hidden(api, world, app):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@dave bye"})
    assert api("dave").get("/api/v1/notifications/unread").get_json() == {"unread": 1}
    assert api("dave").delete("/api/v1/orgs/acme/members/me").status_code == 204
    assert api("dave").get("/api/v1/notifications").get_json() == []
    assert api("dave").get("/api/v1/notifications/unread").get_json() == {"unread": 0}


def test_the_header_counts_only_the_organizations_still_joined(api, login, world):
    """The header's menu and unread count are read together: leaving an
    organization drops it from both on the next page, and with no
    organization left the count is 0."""
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@dave bye"})
    page = login("dave").get("/notifications").get_data(as_text=True)
    assert 'id="unread-count" aria-label="1 unread">1<' in page
    assert '<a href="/o/acme/">Acme</a>' in page
    assert api("dave").delete("/api/v1/orgs/acme/members/me").status_code == 204
    page = login("dave").get("/notifications").get_data(as_text=True)
    assert 'id="unread-count" aria-label="0 unread" hidden>0<' in page
    assert 'href="/o/acme/"' not in page


def test_the_inbox_page_shows_the_unread_count_and_marks_read(api, login, world):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@bob see this"})
    bob = login("bob")
    page = bob.get("/notifications").get_data(as_text=True)
    assert 'id="unread-count" aria-label="1 unread"' in page
    assert "mentioned you" in page and "Alice</span> commented" in page
    key = api("bob").get(f"/api/v1/issues/{world.issues['first']}").get_json()["key"]
    assert f'<button class="link title" type="submit">{key} ' in page  # BIL-12, not #12
    (notification,) = api("bob").get("/api/v1/notifications").get_json()
    opened = bob.post(f"/notifications/{notification['id']}/read", data={"open": "1"})
    assert opened.status_code == 303
    assert opened.headers["Location"].endswith(f"/o/acme/issues/{world.issues['first']}")
    page = bob.get("/notifications").get_data(as_text=True)
    assert 'aria-label="0 unread" hidden' in page


def test_mark_read_never_redirects_to_another_site(api, login, world):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@bob see this"})
    (notification,) = api("bob").get("/api/v1/notifications").get_json()
    response = login("bob").post(
        f"/notifications/{notification['id']}/read", data={"next": "//evil.example/"}
    )
    assert response.headers["Location"] == "/notifications"


def test_the_watch_button_watches_and_unwatches(login, world, app):
    dave = login("dave")
    issue = world.issues["second"]
    assert "Watch</button>" in dave.get(f"/o/acme/issues/{issue}").get_data(as_text=True)
    assert dave.post(f"/o/acme/issues/{issue}/watch", data={"watching": "1"}).status_code == 303
    assert "Unwatch</button>" in dave.get(f"/o/acme/issues/{issue}").get_data(as_text=True)
    with app.app_context(), unscoped("test"):
        watch = database.session.scalars(sa.select(Watch).where(Watch.issue_id == issue)).one()
        assert watch.watching is True


def test_the_members_page_shows_handles(login, world):
    page = login("alice").get("/o/acme/members").get_data(as_text=True)
    assert f'id="member-{world.users["dave"]}"' in page and "@dave" in page


# -- the live unread count ----------------------------------------------------------------


def test_a_mention_publishes_the_new_unread_count_on_the_users_own_channel(
    api, world, captured_events
):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@bob and @dave"})
    counts = [(e.channel, e.data) for e in captured_events if e.type == "notifications.unread"]
    assert sorted(counts) == sorted(
        [
            (f"user:{world.users['bob']}", {"unread": 1}),
            (f"user:{world.users['dave']}", {"unread": 1}),
        ]
    )
    captured_events.clear()
    assert api("bob").post("/api/v1/notifications/read").status_code == 200
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        (f"user:{world.users['bob']}", "notifications.unread", {"unread": 0})
    ]


def _unread_events(captured_events: t.Any) -> list[tuple[str, t.Any]]:
    return sorted((e.channel, e.data) for e in captured_events if e.type == "notifications.unread")


def test_deleting_an_issue_recounts_the_unread_of_whoever_it_notified(
    api, login, world, captured_events
):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@bob and @dave"})
    api("alice").post(f"{_issue_url(world, 'second')}/comments", json={"body": "@bob again"})
    assert 'aria-label="2 unread"' in login("bob").get("/notifications").get_data(as_text=True)
    captured_events.clear()
    assert api("alice").delete(_issue_url(world)).status_code == 204
    assert _unread_events(captured_events) == [
        (f"user:{world.users['bob']}", {"unread": 1}),
        (f"user:{world.users['dave']}", {"unread": 0}),
    ]
    # The next page counts the same.
    page = login("bob").get("/notifications").get_data(as_text=True)
    assert 'id="unread-count" aria-label="1 unread">1<' in page
    page = login("dave").get("/notifications").get_data(as_text=True)
    assert 'id="unread-count" aria-label="0 unread" hidden>0<' in page


def test_deleting_a_project_recounts_the_unread_of_whoever_its_issues_notified(
    api, world, captured_events
):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@dave look"})
    captured_events.clear()
    project = api("alice").get(_issue_url(world)).get_json()["project_id"]
    assert api("alice").delete(f"/api/v1/projects/{project}").status_code == 204
    assert _unread_events(captured_events) == [(f"user:{world.users['dave']}", {"unread": 0})]
    assert api("dave").get("/api/v1/notifications/unread").get_json() == {"unread": 0}


def test_deleting_an_issue_nobody_has_unread_news_of_publishes_no_count(
    api, world, captured_events
):
    assert api("alice").delete(_issue_url(world)).status_code == 204
    assert _unread_events(captured_events) == []


@pytest.mark.parametrize("how", ["removed", "left"])
def test_losing_access_recounts_the_unread_live(api, login, world, captured_events, how):
    api("alice").post(f"{_issue_url(world)}/comments", json={"body": "@dave bye"})
    captured_events.clear()
    if how == "removed":
        gone = api("alice").delete(f"/api/v1/orgs/acme/members/{world.users['dave']}")
    else:
        gone = api("dave").delete("/api/v1/orgs/acme/members/me")
    assert gone.status_code == 204
    assert _unread_events(captured_events) == [(f"user:{world.users['dave']}", {"unread": 0})]
    page = login("dave").get("/notifications").get_data(as_text=True)
    assert 'id="unread-count" aria-label="0 unread" hidden>0<' in page


def test_nothing_is_published_when_nothing_was_unread(api, world, captured_events):
    assert api("bob").post("/api/v1/notifications/read").get_json() == {"marked": 0}
    assert captured_events == []


def test_the_token_renewal_grants_the_viewers_own_channel(login, world, app):
    from karaffe.events.publish import state_for

    mine = f"user:{world.users['bob']}"
    response = login("bob").get(f"/api/v1/live/token?channel={mine}")
    assert response.status_code == 200
    with app.app_context():
        grant = state_for().signer.verify(response.get_json()["token"])
    assert grant.channels == (mine,)
    assert grant.user == str(world.users["bob"])


def test_the_token_renewal_refuses_someone_elses_channel(api, world):
    response = api("bob").get(f"/api/v1/live/token?channel=user:{world.users['alice']}")
    assert response.status_code == 404
    assert response.get_json()["detail"] == "You can follow only your own user channel."


@pytest.mark.parametrize("path", ["/notifications", "/o/acme/", "/settings/profile"])
def test_every_page_follows_the_viewers_channel_for_the_count_in_one_script(login, world, path):
    page = login("dave").get(path).get_data(as_text=True)
    config = page.split('<script id="live-config" type="application/json">')[1]
    config = json.loads(config.split("</script>")[0])
    mine = f"user:{world.users['dave']}"
    assert config["channels"] == [mine]
    assert config["renew"] == f"/api/v1/live/token?channel={mine}"
    assert config["page"] == {}
    assert page.count("karaffe-events.js") == 1 and page.count("live.js") == 1


# -- queries per page ----------------------------------------------------------------------


def queries_of(app, client, path: str) -> int:
    """How many SQL statements a GET of ``path`` runs."""
    statements: list[str] = []

    def executed(conn, cursor, statement, *args):
        statements.append(statement)

    with app.app_context():
        engine = database.engine
    sa.event.listen(engine, "before_cursor_execute", executed)
    try:
        assert client.get(path).status_code == 200
    finally:
        sa.event.remove(engine, "before_cursor_execute", executed)
    return len(statements)


def test_the_issue_page_costs_the_same_queries_with_a_long_timeline(api, login, world, app):
    url, page = _issue_url(world), f"/o/acme/issues/{world.issues['first']}"
    # One mention: the page reads the members once, for all of its mentions.
    api("dave").post(f"{url}/comments", json={"body": "@bob first"})
    bob = login("bob")
    bob.get(page)  # warm: the login session's first use
    short = queries_of(app, bob, page)
    for n in range(12):
        api(("alice", "dave")[n % 2]).post(f"{url}/comments", json={"body": f"@bob note {n}"})
        api("alice").patch(url, json={"status": ("closed", "open")[n % 2]})
    api("alice").patch(url, json={"assignee_id": world.users["alice"]})
    assert queries_of(app, bob, page) == short


def test_the_inbox_costs_the_same_queries_for_two_or_twenty_notifications(api, login, world, app):
    url = _issue_url(world)
    for n in range(2):
        api("alice").post(f"{url}/comments", json={"body": f"@bob {n}"})
    bob = login("bob")
    bob.get("/notifications")
    few = queries_of(app, bob, "/notifications")
    for n in range(18):
        api(("alice", "dave")[n % 2]).post(
            f"{_issue_url(world, ('first', 'second')[n % 2])}/comments", json={"body": f"@bob {n}"}
        )
    assert queries_of(app, bob, "/notifications") == few


def test_a_bad_activity_limit_is_a_422(api, world):
    response = api("alice").get(f"{_issue_url(world)}/activity?limit=0")
    assert response.status_code == 422
    (error,) = response.get_json()["errors"]
    assert error["loc"] == ["query", "limit"]


def test_titles_and_names_are_inert_in_the_timeline_and_the_inbox(api, login, world):
    url = _issue_url(world)
    api("alice").patch(url, json={"title": "<script>alert(1)</script>"})
    api("alice").post(f"{url}/comments", json={"body": "@bob <img src=x onerror=alert(1)>"})
    issue_page = login("bob").get(f"/o/acme/issues/{world.issues['first']}").get_data(as_text=True)
    inbox = login("bob").get("/notifications").get_data(as_text=True)
    for html in (issue_page, inbox):
        assert "<script>alert(1)</script>" not in html
        assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in inbox


def test_editing_a_comment_notifies_only_the_newly_mentioned(api, world, app):
    url = _issue_url(world)
    api("dave").post(f"{url}/comments", json={"body": "watching this"})
    comment = api("alice").post(f"{url}/comments", json={"body": "@bob look"}).get_json()
    before = notifications_of(app, world.users["dave"])
    edited = api("alice").patch(
        f"/api/v1/comments/{comment['id']}", json={"body": "@bob @dave look"}
    )
    assert edited.status_code == 200
    assert notifications_of(app, world.users["bob"]) == [("mentioned", "comment")]
    assert notifications_of(app, world.users["dave"]) == [*before, ("mentioned", "comment")]
    (last,) = api("dave").get("/api/v1/notifications?limit=1").get_json()
    assert last["activity"]["detail"]["edited"] is True
