"""Password reset and email verification by mailed links, and the profile
page: what a link does once, what it no longer does, and what the pages and
the API answer to every wrong input."""

from __future__ import annotations

import contextlib
import re
import time
import typing as t

import pytest
import sqlalchemy as sa
from flask_mailman.backends import locmem
from tracker import accounts, mailqueue
from tracker.mailqueue import QueuedMail

import karaffe.signing
from karaffe.auth import User, utcnow
from karaffe.db import db as database

from .conftest import PASSWORD
from .test_api import problem

NEW_PASSWORD = "a brand new password"


def link_in(mail: t.Any) -> str:
    """The path of the one link to the app in a mail."""
    (url,) = re.findall(r"http://tracker\.test(/\S+)", mail.body)
    return str(url)


def user_row(app: t.Any, user_id: int) -> User:
    with app.app_context():
        user = database.session.get(User, user_id)
        assert user is not None
        database.session.expunge(user)
        return user


@contextlib.contextmanager
def signed_ago(seconds: float) -> t.Iterator[None]:
    """Tokens signed inside carry a time ``seconds`` ago (they are checked
    against the real clock afterwards)."""
    clock = type("Clock", (), {"time": staticmethod(lambda: time.time() - seconds)})
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(karaffe.signing, "time", clock)  # karaffe's one signer's clock
        yield


def reset_link(app: t.Any, client: t.Any, outbox: list[t.Any], email: str) -> str:
    rv = client.post("/password/forgot", data={"email": email})
    assert rv.status_code == 200
    return link_in(outbox[-1])


# -- asking for a reset ------------------------------------------------------------------


def test_the_login_page_links_to_the_forgotten_password_page(client, world):
    assert b'href="/password/forgot">Forgot your password?</a>' in client.get("/login").data


def test_asking_for_a_reset_reads_the_same_whether_the_account_exists_or_not(client, world, outbox):
    known = client.post("/password/forgot", data={"email": "Alice@Example.com"})
    unknown = client.post("/password/forgot", data={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 200
    assert known.data.replace(b"alice@example.com", b"X") == unknown.data.replace(
        b"nobody@example.com", b"X"
    )
    assert b"If an account uses <strong>alice@example.com</strong>" in known.data
    assert [(m.to, m.subject) for m in outbox] == [
        (["alice@example.com"], "Reset your tracker password")
    ]
    assert "works once" in outbox[0].body


def test_a_deactivated_account_gets_no_reset_mail(app, client, world, outbox):
    with app.app_context():
        user = database.session.get(User, world.users["erin"])
        assert user is not None
        user.is_active = False
        database.session.commit()
    assert client.post("/password/forgot", data={"email": "erin@example.com"}).status_code == 200
    assert outbox == []


@pytest.mark.parametrize(
    ("email", "message"),
    [
        ("", b"This field is required."),
        ("not-an-email", b"Enter an email address, such as name@example.com."),
    ],
)
def test_a_bad_email_is_refused_next_to_the_field(client, world, outbox, email, message):
    rv = client.post("/password/forgot", data={"email": email})
    assert rv.status_code == 422
    assert b'<div class="error" id="e-email">' + message in rv.data
    assert outbox == []


def test_reset_requests_are_throttled_per_email_known_or_not(client, world, outbox):
    for email in ("alice@example.com", "nobody@example.com"):
        for _ in range(3):
            assert client.post("/password/forgot", data={"email": email}).status_code == 200
        refused = client.post("/password/forgot", data={"email": email})
        assert refused.status_code == 429
        assert 0 < int(refused.headers["Retry-After"]) <= 900
        assert b"Too many mails asked for. Try again in 15 minutes." in refused.data
    assert len(outbox) == 3


def test_reset_requests_are_throttled_per_client(app, client, world, outbox):
    for n in range(20):
        assert (
            client.post("/password/forgot", data={"email": f"u{n}@example.com"}).status_code == 200
        )
    assert client.post("/password/forgot", data={"email": "alice@example.com"}).status_code == 429
    assert outbox == []


# -- following the link ------------------------------------------------------------------


def test_the_link_sets_a_new_password_once_and_logs_every_browser_out(
    app, client, login, world, outbox
):
    elsewhere = login("alice")
    assert elsewhere.get("/settings/profile").status_code == 200
    path = reset_link(app, client, outbox, "alice@example.com")
    form = client.get(path)
    assert form.status_code == 200
    assert form.headers["Cache-Control"] == "no-store"
    assert form.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert b"For alice@example.com." in form.data

    rv = client.post(path, data={"password": NEW_PASSWORD})
    assert rv.status_code == 302
    assert rv.headers["Location"] == "/login?email=alice@example.com"
    assert b'value="alice@example.com"' in client.get(rv.headers["Location"]).data

    assert elsewhere.get("/settings/profile").status_code == 302  # logged out
    used = client.post(path, data={"password": "yet another password"})
    assert used.status_code == 404
    assert b"This link is not valid: it was used already, or changed." in used.data
    assert client.get(path).status_code == 404
    assert client.post("/login", data={"email": "alice@example.com",
                                       "password": PASSWORD}).status_code == 401  # fmt: skip
    assert client.post("/login", data={"email": "alice@example.com",
                                       "password": NEW_PASSWORD}).status_code == 302  # fmt: skip


def test_a_new_password_kills_every_older_reset_link(app, client, login, world, outbox):
    first = reset_link(app, client, outbox, "bob@example.com")
    second = reset_link(app, client, outbox, "bob@example.com")
    assert client.post(second, data={"password": NEW_PASSWORD}).status_code == 302
    assert client.post(first, data={"password": "yet another password"}).status_code == 404


def test_changing_the_password_on_the_profile_kills_a_reset_link(app, client, login, world, outbox):
    path = reset_link(app, client, outbox, "bob@example.com")
    login("bob").post(
        "/settings/password", data={"current_password": PASSWORD, "password": NEW_PASSWORD}
    )
    assert client.get(path).status_code == 404


def test_an_expired_link_is_gone(app, client, world, outbox):
    with signed_ago(61 * 60):  # PASSWORD_RESET_MINUTES is 60
        path = reset_link(app, client, outbox, "bob@example.com")
    rv = client.get(path)
    assert rv.status_code == 410
    assert b"This password reset link has expired (it works for 60 minutes)" in rv.data
    assert client.post(path, data={"password": NEW_PASSWORD}).status_code == 410


@pytest.mark.parametrize(
    "token",
    ["nonsense", "a.b.c", "eyJ1IjoxfQ.aaaaaa.bbbbbb", "x" * 600],
)
def test_a_made_up_or_changed_link_is_not_found(client, world, token):
    rv = client.get(f"/password/reset/{token}")
    assert rv.status_code == 404
    assert b"This link is not valid" in rv.data


def test_a_verification_link_is_no_reset_link(app, client, world):
    with app.test_request_context():
        user = database.session.get(User, world.users["bob"])
        assert user is not None
        token = accounts.verification_token(user, user.email)
    assert client.get(f"/password/reset/{token}").status_code == 404


def test_a_short_new_password_is_refused_and_the_link_still_works(app, client, world, outbox):
    path = reset_link(app, client, outbox, "bob@example.com")
    rv = client.post(path, data={"password": "short"})
    assert rv.status_code == 422
    assert b'id="e-password">Password must be at least 8 characters.' in rv.data
    assert client.post(path, data={"password": NEW_PASSWORD}).status_code == 302


def test_following_a_reset_link_verifies_the_address(app, client, world, outbox):
    path = reset_link(app, client, outbox, "bob@example.com")
    client.post(path, data={"password": NEW_PASSWORD})
    assert user_row(app, world.users["bob"]).email_verified_at is not None


# -- the API -----------------------------------------------------------------------------


def test_the_api_answers_a_reset_request_the_same_for_any_email(client, world, outbox):
    known = client.post("/api/v1/password-reset", json={"email": "alice@example.com"})
    unknown = client.post("/api/v1/password-reset", json={"email": "nobody@example.com"})
    assert known.status_code == unknown.status_code == 202
    assert (
        known.get_json()
        == unknown.get_json()
        == {"detail": "If an account uses this email, a link is on its way to it."}
    )
    assert len(outbox) == 1


def test_the_api_throttles_reset_requests(client, world):
    for _ in range(3):
        client.post("/api/v1/password-reset", json={"email": "alice@example.com"})
    rv = client.post("/api/v1/password-reset", json={"email": "alice@example.com"})
    body = problem(rv, 429, "too-many-mails")
    assert body["detail"] == "Too many mails asked for. Try again in 15 minutes."
    assert rv.headers["Retry-After"]


def test_the_api_sets_a_password_with_a_token_once(app, client, world, outbox):
    client.post("/api/v1/password-reset", json={"email": "dave@example.com"})
    token = link_in(outbox[-1]).rsplit("/", 1)[1]
    body = {"token": token, "password": NEW_PASSWORD}
    assert client.post("/api/v1/password-reset/confirm", json=body).status_code == 204
    again = client.post("/api/v1/password-reset/confirm", json=body)
    assert problem(again, 422, "validation-failed")["errors"] == [
        {
            "loc": ["body", "token"],
            "msg": "This link is not valid: it was used already, or changed.",
            "code": "invalid",
        }
    ]


def test_the_api_says_an_expired_token_expired(app, client, world, outbox):
    with signed_ago(3601):  # the link is made when the mail is sent
        client.post("/api/v1/password-reset", json={"email": "dave@example.com"})
        token = link_in(outbox[-1]).rsplit("/", 1)[1]
    rv = client.post(
        "/api/v1/password-reset/confirm", json={"token": token, "password": NEW_PASSWORD}
    )
    assert problem(rv, 422, "validation-failed")["errors"] == [
        {
            "loc": ["body", "token"],
            "msg": "This password reset link has expired (it works for 60 minutes): "
            "ask for a new one.",
            "code": "expired",
        }
    ]


@pytest.mark.parametrize(
    ("url", "body", "loc", "code"),
    [
        ("/api/v1/password-reset", {}, ["body", "email"], "missing"),
        ("/api/v1/password-reset", {"email": "nope"}, ["body", "email"], "string_pattern_mismatch"),
        ("/api/v1/password-reset", {"email": "a@b.co", "x": 1}, ["body", "x"], "extra_forbidden"),
        ("/api/v1/password-reset/confirm", {"token": "t"}, ["body", "password"], "missing"),
        ("/api/v1/password-reset/confirm", {"token": "", "password": NEW_PASSWORD},
         ["body", "token"], "string_too_short"),
        ("/api/v1/password-reset/confirm", {"token": "t", "password": "short"},
         ["body", "password"], "string_too_short"),
        ("/api/v1/password-reset/confirm", {"token": "t", "password": NEW_PASSWORD},
         ["body", "token"], "invalid"),
        ("/api/v1/email-verification/confirm", {"token": "t"}, ["body", "token"], "invalid"),
        ("/api/v1/email-verification/confirm", {}, ["body", "token"], "missing"),
    ],
)  # fmt: skip
def test_bad_account_link_input_gets_a_422_at_the_field(client, world, url, body, loc, code):
    errors = problem(client.post(url, json=body), 422, "validation-failed")["errors"]
    assert [(e["loc"], e["code"]) for e in errors] == [(loc, code)]


def test_the_public_account_routes_need_no_csrf_token(app, client, world, outbox):
    app.config["WTF_CSRF_ENABLED"] = True
    rv = client.post("/api/v1/password-reset", json={"email": "alice@example.com"})
    assert rv.status_code == 202
    assert client.post("/password/forgot", data={"email": "a@b.co"}).status_code == 400


# -- email verification -------------------------------------------------------------------


def test_sign_up_mails_a_verification_link_and_shows_a_banner_until_it_is_followed(
    app, client, db, outbox
):
    rv = client.post(
        "/signup", data={"name": "Zed", "email": "zed@example.com", "password": PASSWORD},
        follow_redirects=True,
    )  # fmt: skip
    assert b"Please verify your email: open the link we sent to zed@example.com." in rv.data
    ((mail),) = outbox
    assert (mail.to, mail.subject) == (["zed@example.com"], "Verify your email for tracker")
    path = link_in(mail)
    assert path.startswith("/verify-email/")
    done = client.get(path, follow_redirects=True)
    assert b"Thank you: zed@example.com is verified." in done.data
    assert b"Please verify your email" not in done.data
    again = client.get(path, follow_redirects=True)
    assert b"zed@example.com was verified already." in again.data


def test_a_verification_link_works_without_being_logged_in(app, client, world):
    with app.test_request_context():
        user = database.session.get(User, world.users["dave"])
        assert user is not None
        token = accounts.verification_token(user, user.email)
    rv = client.get(f"/verify-email/{token}")
    assert rv.status_code == 302
    assert user_row(app, world.users["dave"]).email_verified_at is not None


def test_an_expired_verification_link_is_gone(app, client, world):
    with signed_ago(8 * 86400), app.test_request_context():
        user = database.session.get(User, world.users["dave"])
        assert user is not None
        token = accounts.verification_token(user, user.email)
    rv = client.get(f"/verify-email/{token}")
    assert rv.status_code == 410
    assert b"This verification link has expired (it works for 7 days)" in rv.data


def test_a_new_verification_link_is_sent_on_request(login, world, outbox):
    client = login("dave")
    rv = client.post("/verify-email/resend", follow_redirects=True)
    assert b"We sent a new link to dave@example.com." in rv.data
    assert [m.to for m in outbox] == [["dave@example.com"]]


def test_the_api_tells_whether_the_email_is_verified_and_resends_the_link(app, api, world, outbox):
    assert api("dave").get("/api/v1/me").get_json()["email_verified"] is False
    rv = api("dave").post("/api/v1/me/email/verification")
    assert rv.status_code == 202
    assert rv.get_json() == {"detail": "A link went to dave@example.com."}
    token = link_in(outbox[-1]).rsplit("/", 1)[1]
    confirmed = api("erin").post("/api/v1/email-verification/confirm", json={"token": token})
    assert confirmed.get_json() == {"detail": "dave@example.com is verified."}
    assert api("dave").get("/api/v1/me").get_json()["email_verified"] is True
    again = api("dave").post("/api/v1/me/email/verification")
    assert problem(again, 409, "conflict")["detail"] == "dave@example.com is verified already."


# -- the profile ---------------------------------------------------------------------------


def test_the_profile_page_changes_the_name(login, world):
    client = login("dave")
    page = client.get("/settings/profile")
    assert b'value="Dave"' in page.data
    assert b"Not verified" in page.data
    rv = client.post("/settings/profile", data={"name": "  David  "}, follow_redirects=True)
    assert b"Name saved." in rv.data
    assert b'value="David"' in rv.data
    bad = client.post("/settings/profile", data={"name": " "})
    assert bad.status_code == 422
    assert b'id="e-name">This field is required.' in bad.data


def test_an_email_change_becomes_the_login_once_the_new_address_is_verified(
    app, client, login, world, outbox
):
    dave = login("dave")
    rv = dave.post(
        "/settings/email",
        data={"email": "David@Example.org", "current_password": PASSWORD},
        follow_redirects=True,
    )
    assert b"We sent a link to david@example.org" in rv.data
    assert b"Until then you log in with dave@example.com." in rv.data
    ((mail),) = outbox
    assert (mail.to, mail.subject) == (["david@example.org"], "Confirm your new email for tracker")
    assert user_row(app, world.users["dave"]).email == "dave@example.com"

    path = link_in(mail)
    done = client.get(path, follow_redirects=True)
    assert b"Your email is now david@example.org: log in with it from now on." in done.data
    row = user_row(app, world.users["dave"])
    assert (row.email, row.email_verified_at is not None) == ("david@example.org", True)
    assert client.post("/login", data={"email": "dave@example.com",
                                       "password": PASSWORD}).status_code == 401  # fmt: skip
    assert client.post("/login", data={"email": "david@example.org",
                                       "password": PASSWORD}).status_code == 302  # fmt: skip
    assert client.get(path).status_code == 404  # used


def test_a_newer_email_change_supersedes_an_older_link(app, client, login, world, outbox):
    dave = login("dave")
    for email in ("one@example.org", "two@example.org"):
        dave.post("/settings/email", data={"email": email, "current_password": PASSWORD})
    first, second = (link_in(m) for m in outbox)
    assert client.get(second).status_code == 302
    assert client.get(first).status_code == 404
    assert user_row(app, world.users["dave"]).email == "two@example.org"


def test_an_address_taken_meanwhile_is_not_taken_over(app, client, login, world, outbox):
    login("dave").post(
        "/settings/email", data={"email": "zed@example.com", "current_password": PASSWORD}
    )
    client.post("/signup", data={"name": "Zed", "email": "zed@example.com", "password": PASSWORD})
    rv = client.get(link_in(outbox[0]))
    assert rv.status_code == 409
    assert b"Another account uses this email now: yours stays as it was." in rv.data
    assert user_row(app, world.users["dave"]).email == "dave@example.com"


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        ({"email": "bob@example.com", "current_password": PASSWORD}, "email",
         b"An account with this email exists already."),
        ({"email": "dave@example.com", "current_password": PASSWORD}, "email",
         b"This is your email already."),
        ({"email": "new@example.org", "current_password": "a guess"}, "current_password",
         b"This is not your current password."),
        ({"email": "nope", "current_password": PASSWORD}, "email",
         b"Enter an email address, such as name@example.com."),
        ({"email": "new@example.org"}, "current_password", b"This field is required."),
    ],
)  # fmt: skip
def test_a_bad_email_change_is_refused_next_to_the_field(
    login, world, outbox, data, field, message
):
    rv = login("dave").post("/settings/email", data=data)
    assert rv.status_code == 422
    assert f'id="email-e-{field}">'.encode() + message in rv.data
    assert outbox == []


def test_the_api_changes_the_name_and_starts_an_email_change(app, api, world, outbox):
    rv = api("dave").patch("/api/v1/me", json={"name": "David"})
    assert rv.get_json()["name"] == "David"
    rv = api("dave").post(
        "/api/v1/me/email", json={"email": "david@example.org", "current_password": PASSWORD}
    )
    assert rv.status_code == 202
    assert [m.to for m in outbox] == [["david@example.org"]]
    assert api("dave").get("/api/v1/me").get_json()["email"] == "dave@example.com"


@pytest.mark.parametrize(
    ("method", "url", "body", "status", "slug", "loc", "code"),
    [
        ("patch", "/api/v1/me", {"name": ""}, 422, "validation-failed", ["body", "name"],
         "string_too_short"),
        ("patch", "/api/v1/me", {"name": "D", "email": "x@y.z"}, 422, "validation-failed", ["body", "email"],
         "extra_forbidden"),
        ("post", "/api/v1/me/email", {"email": "bob@example.com", "current_password": PASSWORD},
         409, "conflict", ["body", "email"], "taken"),
        ("post", "/api/v1/me/email", {"email": "dave@example.com", "current_password": PASSWORD},
         422, "validation-failed", ["body", "email"], "unchanged"),
        ("post", "/api/v1/me/email", {"email": "n@example.org", "current_password": "guess"},
         422, "validation-failed", ["body", "current_password"], "wrong"),
        ("put", "/api/v1/me/password", {"current_password": "guess", "password": NEW_PASSWORD},
         422, "validation-failed", ["body", "current_password"], "wrong"),
        ("put", "/api/v1/me/password", {"current_password": PASSWORD, "password": "short"},
         422, "validation-failed", ["body", "password"], "string_too_short"),
    ],
)  # fmt: skip
def test_bad_profile_input_in_the_api_gets_its_exact_error(
    api, world, outbox, method, url, body, status, slug, loc, code
):
    rv = getattr(api("dave"), method)(url, json=body)
    errors = problem(rv, status, slug)["errors"]
    assert [(e["loc"], e["code"]) for e in errors] == [(loc, code)]
    assert outbox == []
    assert api("dave").get("/api/v1/me").get_json()["email"] == "dave@example.com"


def test_the_api_changes_the_password_and_ends_the_login_sessions(app, api, login, world):
    browser = login("dave")
    assert browser.get("/settings/profile").status_code == 200
    rv = api("dave").put(
        "/api/v1/me/password", json={"current_password": PASSWORD, "password": NEW_PASSWORD}
    )
    assert rv.status_code == 204
    assert browser.get("/settings/profile").status_code == 302
    assert api("dave").get("/api/v1/me").status_code == 200  # the token stays


def test_a_mail_server_that_is_down_changes_no_answer_and_the_mail_waits_in_the_queue(
    app, api, client, world, outbox, monkeypatch
):
    def down(self: t.Any, messages: t.Any) -> int:
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(locmem.EmailBackend, "send_messages", down)
    rv = api("dave").post(
        "/api/v1/me/email", json={"email": "david@example.org", "current_password": PASSWORD}
    )
    assert rv.status_code == 202
    assert rv.get_json() == {
        "detail": "A link went to david@example.org: it becomes the login once it is followed."
    }
    assert (
        api("erin").post("/api/v1/password-reset", json={"email": "bob@example.com"}).status_code
        == 202
    )
    rv = client.post(
        "/signup", data={"name": "Zed", "email": "zed@example.com", "password": PASSWORD},
        follow_redirects=True,
    )  # fmt: skip
    assert b"Welcome to tracker, Zed!" in rv.data
    assert b"Please verify your email" in rv.data
    assert outbox == []  # the delivery ran, and failed
    with app.app_context():
        rows = database.session.scalars(sa.select(QueuedMail).order_by(QueuedMail.id)).all()
        assert [(r.recipient, r.attempts, r.claim) for r in rows] == [
            ("david@example.org", 1, None),
            ("bob@example.com", 1, None),
            ("zed@example.com", 1, None),
        ]
        assert all(
            r.last_error == "ConnectionRefusedError: [Errno 111] Connection refused" for r in rows
        )
        assert all(r.next_attempt_at > utcnow() for r in rows)  # retried later
        # The server is back and the retry is due.
        monkeypatch.undo()
        database.session.execute(sa.update(QueuedMail).values(next_attempt_at=utcnow()))
        database.session.commit()
    assert [(m.to, m.subject) for m in outbox] == [
        (["david@example.org"], "Confirm your new email for tracker"),
        (["bob@example.com"], "Reset your tracker password"),
        (["zed@example.com"], "Verify your email for tracker"),
    ]
    with app.app_context():
        assert mailqueue.pending() == 0


def test_new_verification_links_are_throttled_like_resets(api, login, world, outbox):
    for _ in range(3):
        assert api("dave").post("/api/v1/me/email/verification").status_code == 202
    rv = api("dave").post("/api/v1/me/email/verification")
    assert problem(rv, 429, "too-many-mails")["detail"].startswith("Too many mails asked for.")
    page = login("dave").post("/verify-email/resend", follow_redirects=True)
    assert b"Too many mails asked for. Try again in 15 minutes." in page.data
    assert len(outbox) == 3
