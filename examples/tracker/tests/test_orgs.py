"""Organization pages: create, members and roles, invitation links, labels,
removing members, leaving."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa
from tracker.models import Invitation, Label

from karaffe.tenancy import Membership, Organization, unscoped


def test_create_organization(login, world, count):
    client = login("erin")
    rv = client.post("/orgs/new", data={"name": "Erin & Co"}, follow_redirects=True)
    assert rv.status_code == 200
    assert b"Erin &amp; Co" in rv.data
    assert b"created. Next: a project." in rv.data
    assert count(Organization, Organization.slug == "erin-co") == 1
    assert count(Membership, Membership.user_id == world.users["erin"], Membership.role == "owner")


@pytest.mark.parametrize(
    ("name", "message"), [("", b"This field is required."), ("n" * 101, b"at most 100 characters")]
)
def test_bad_organization_name_is_refused(login, world, count, name, message):
    rv = login("erin").post("/orgs/new", data={"name": name})
    assert rv.status_code == 422
    assert message in rv.data
    assert count(Organization) == 2


def test_org_page_lists_projects_with_open_counts(login, world):
    rv = login("dave").get("/o/acme/")
    assert rv.status_code == 200
    assert b"Website" in rv.data
    assert b"1 open issues" in rv.data
    assert b"Vault" not in rv.data


def test_nav_lists_only_my_orgs(login, world):
    rv = login("dave").get("/")
    assert b"Acme" in rv.data
    assert b"Globex" not in rv.data


def test_members_page(login, world):
    rv = login("bob").get("/o/acme/members")
    assert rv.status_code == 200
    for name in (b"Alice", b"Bob", b"Dave"):
        assert name in rv.data
    assert b"Create invitation link" in rv.data
    member_view = login("dave").get("/o/acme/members")
    assert b"Create invitation link" not in member_view.data
    assert b'name="role"' not in member_view.data


def test_admin_changes_a_role(login, world, count):
    rv = login("bob").post(
        f"/o/acme/members/{world.users['dave']}/role", data={"role": "admin"}, follow_redirects=True
    )
    assert b"Dave is now admin." in rv.data
    assert count(Membership, Membership.user_id == world.users["dave"], Membership.role == "admin")


def test_member_cannot_change_a_role(login, world, count):
    rv = login("dave").post(f"/o/acme/members/{world.users['bob']}/role", data={"role": "member"})
    assert rv.status_code == 403
    assert count(Membership, Membership.user_id == world.users["bob"], Membership.role == "admin")


@pytest.mark.parametrize(
    ("who", "role", "message"),
    [
        ("alice", "member", b"An organization needs an owner"),
        ("dave", "emperor", b"Role must be one of member, admin, owner."),
    ],
)
def test_refused_role_change_explains_why(login, world, count, who, role, message):
    rv = login("alice").post(
        f"/o/acme/members/{world.users[who]}/role", data={"role": role}, follow_redirects=True
    )
    assert message in rv.data
    assert count(Membership, Membership.role.in_(["emperor"])) == 0
    assert count(Membership, Membership.user_id == world.users["alice"], Membership.role == "owner")


def test_admin_removes_a_member(login, world, count):
    page = login("bob").get("/o/acme/members")
    assert f"/o/acme/members/{world.users['dave']}/remove".encode() in page.data
    assert f"/o/acme/members/{world.users['alice']}/remove".encode() not in page.data
    rv = login("bob").post(f"/o/acme/members/{world.users['dave']}/remove", follow_redirects=True)
    assert b"Dave is no longer a member." in rv.data
    assert count(Membership, Membership.user_id == world.users["dave"]) == 0
    assert login("dave").get("/o/acme/").status_code == 404


@pytest.mark.parametrize(
    ("who", "whom", "status"),
    [("dave", "bob", 403), ("bob", "alice", 403), ("carol", "dave", 404), ("bob", "carol", 404)],
    ids=["member", "admin-removes-owner", "other-org", "not-a-member"],
)
def test_removing_a_member_is_refused(login, world, count, who, whom, status):
    rv = login(who).post(f"/o/acme/members/{world.users[whom]}/remove")
    assert rv.status_code == status
    assert count(Membership) == 4


def _invite(login, who="bob", role="member"):
    rv = login(who).post("/o/acme/invitations", data={"role": role})
    assert rv.status_code == 201
    url = rv.data.split(b'id="invite-url">')[1].split(b"<")[0].decode()
    return url.removeprefix("http://tracker.test")


def test_invitation_link_lets_a_new_user_join(login, world, count):
    path = _invite(login, role="admin")
    erin = login("erin")
    page = erin.get(path)
    assert page.status_code == 200
    assert b"invited you to join <strong>Acme</strong> as admin" in page.data
    rv = erin.post(path, follow_redirects=True)
    assert b"You joined Acme." in rv.data
    assert count(Membership, Membership.user_id == world.users["erin"], Membership.role == "admin")
    # A link works once.
    assert login("carol").get(path).status_code == 404


def test_invitation_page_asks_visitors_to_sign_up(login, world, client):
    path = _invite(login)
    rv = client.get(path)
    assert rv.status_code == 200
    assert b"Sign up to join" in rv.data
    rv = client.post(path)
    assert rv.status_code == 302
    assert "/login" in rv.headers["Location"]


def test_tampered_invitation_is_not_found(login, world, count):
    path = _invite(login)
    rv = login("erin").post(path[:-3] + "xyz")
    assert rv.status_code == 404
    assert count(Membership, Membership.user_id == world.users["erin"]) == 0


def test_expired_invitation_is_gone(app, login, world, count, db):
    path = _invite(login)
    with app.app_context(), unscoped("test: expire the invitation"):
        db.session.execute(
            sa.update(Invitation).values(expires_at=dt.datetime.now(dt.UTC) - dt.timedelta(days=1))
        )
        db.session.commit()
    rv = login("erin").post(path)
    assert rv.status_code == 410
    assert b"expired" in rv.data
    assert count(Membership, Membership.user_id == world.users["erin"]) == 0


def test_member_cannot_create_invitations(login, world, count):
    assert login("dave").post("/o/acme/invitations", data={"role": "member"}).status_code == 403
    assert count(Invitation) == 0


def test_invitation_role_must_be_member_or_admin(login, world, count):
    rv = login("bob").post("/o/acme/invitations", data={"role": "owner"})
    assert rv.status_code == 422
    assert b"Choose a valid option." in rv.data
    assert count(Invitation) == 0


def test_leave_asks_then_leaves(login, world, count):
    client = login("dave")
    assert b"Leave organization" in client.get("/o/acme/leave").data
    rv = client.post("/o/acme/leave", follow_redirects=True)
    assert b"You left Acme." in rv.data
    assert count(Membership, Membership.user_id == world.users["dave"]) == 0
    assert client.get("/o/acme/").status_code == 404


def test_last_owner_cannot_leave(login, world, count):
    rv = login("alice").post("/o/acme/leave", follow_redirects=True)
    assert b"You are the last owner" in rv.data
    assert count(Membership, Membership.user_id == world.users["alice"]) == 1


def test_labels_page(login, world, count):
    client = login("bob")
    rv = client.post("/o/acme/labels", data={"name": "urgent"}, follow_redirects=True)
    assert b"Label \xe2\x80\x9curgent\xe2\x80\x9d added." in rv.data
    rv = client.post("/o/acme/labels", data={"name": "urgent"})
    assert rv.status_code == 422
    assert b"already has a label with that name" in rv.data
    label_id = world.labels["bug"]
    client.post(f"/o/acme/labels/{label_id}/delete")
    assert count(Label, Label.organization_id == world.orgs["acme"]) == 2


def test_member_cannot_manage_labels(login, world, count):
    client = login("dave")
    assert client.post("/o/acme/labels", data={"name": "mine"}).status_code == 403
    assert client.post(f"/o/acme/labels/{world.labels['bug']}/delete").status_code == 403
    assert count(Label) == 3


def test_label_of_another_org_cannot_be_deleted(login, world, count):
    rv = login("alice").post(f"/o/acme/labels/{world.labels['globex-only']}/delete")
    assert rv.status_code == 404
    assert count(Label) == 3


def test_a_second_organization_of_a_name_i_belong_to_is_refused(login, api, world, count):
    from karaffe.tenancy import Organization

    before = count(Organization)
    rv = login("alice").post("/orgs/new", data={"name": "  ACME "})
    assert rv.status_code == 422
    assert (
        "You already belong to an organization named “Acme”: choose another name."
        in rv.get_data(as_text=True)
    )
    rv = api("dave").post("/api/v1/orgs", json={"name": "acme"})  # a member of Acme
    assert rv.status_code == 409
    assert rv.get_json() == {
        "type": "urn:karaffe:problem:conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "You already belong to an organization named “Acme”: choose another name.",
        "errors": [
            {
                "loc": ["body", "name"],
                "msg": "You already belong to an organization named “Acme”: choose another name.",
                "code": "taken",
            }
        ],
    }
    assert count(Organization) == before
    # Someone else may have an Acme of their own: slugs tell them apart.
    rv = api("carol").post("/api/v1/orgs", json={"name": "Acme"})
    assert rv.status_code == 201
    assert rv.get_json()["slug"] == "acme-2"


def test_top_bar_tells_two_organizations_of_one_name_apart(app, login, world, db):
    from karaffe.auth import User
    from karaffe.tenancy import Membership, create_organization, unscoped

    with app.app_context(), unscoped("test: a second Acme that dave joined"):
        other = create_organization("Acme", "acme-2", db.session.get(User, world.users["carol"]))
        db.session.flush()
        db.session.add(
            Membership(organization_id=other.id, user_id=world.users["dave"], role="member")
        )
        db.session.commit()
    page = login("dave").get("/").get_data(as_text=True)
    assert ">Acme (acme)</a>" in page and ">Acme (acme-2)</a>" in page
    assert ">Acme</a>" in login("alice").get("/").get_data(as_text=True)
