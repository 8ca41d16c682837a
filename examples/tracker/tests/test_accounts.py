"""Sign up, log in, log out, and CSRF on every form (API tokens: test_tokens)."""

from __future__ import annotations

import pytest

from karaffe.auth import User

from .conftest import PASSWORD


def test_start_page_welcomes_visitors(client, db):
    rv = client.get("/")
    assert rv.status_code == 200
    assert b"Create an account" in rv.data


def test_sign_up_logs_in(client, db, count):
    rv = client.post(
        "/signup",
        data={"name": "Zoe", "email": " Zoe@Example.com ", "password": "long enough"},
        follow_redirects=True,
    )
    assert rv.status_code == 200
    assert b"Welcome to tracker, Zoe!" in rv.data
    assert b"Hello, Zoe" in rv.data
    assert count(User, User.email == "zoe@example.com") == 1


@pytest.mark.parametrize(
    ("form", "field", "message"),
    [
        ({"name": "", "email": "a@b.co", "password": "long enough"}, "name", b"This field is required."),
        ({"name": "Zoe", "email": "not-an-email", "password": "long enough"}, "email", b"Enter an email address, such as name@example.com."),
        ({"name": "Zoe", "email": "a@b.co", "password": "short"}, "password", b"Password must be at least 8 characters."),
        ({"name": "Zoe", "email": "alice@example.com", "password": "long enough"}, "email", b"exists already"),
        ({"name": "n" * 101, "email": "a@b.co", "password": "long enough"}, "name", b"Name must be at most 100 characters."),
    ],
)  # fmt: skip
def test_bad_sign_up_is_refused(client, world, count, form, field, message):
    before = count(User)
    rv = client.post("/signup", data=form)
    assert rv.status_code == 422
    assert message in rv.data
    assert f'id="e-{field}"'.encode() in rv.data
    assert count(User) == before
    # What was typed stays, except the password.
    if form["name"] and len(form["name"]) < 100:
        assert f'value="{form["name"]}"'.encode() in rv.data
    assert form["password"].encode() not in rv.data


def test_log_in_and_out(client, world):
    rv = client.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert rv.status_code == 302
    assert b"Hello, Alice" in client.get("/").data
    rv = client.post("/logout", follow_redirects=True)
    assert b"You are logged out." in rv.data
    assert b"Create an account" in rv.data


def test_log_in_follows_next_but_only_on_this_site(client, world):
    data = {"email": "alice@example.com", "password": PASSWORD}
    rv = client.post("/login?next=/o/acme/", data=data)
    assert rv.headers["Location"] == "/o/acme/"
    client.post("/logout")
    rv = client.post("/login?next=https://evil.example/", data=data)
    assert rv.headers["Location"] == "/"


@pytest.mark.parametrize(
    ("email", "password"),
    [("alice@example.com", "wrong password"), ("nobody@example.com", PASSWORD)],
)
def test_wrong_credentials_read_the_same(client, world, email, password):
    rv = client.post("/login", data={"email": email, "password": password})
    assert rv.status_code == 401
    assert b"Wrong email or password." in rv.data
    assert email.encode() in rv.data  # the email is kept
    assert b"Hello" not in client.get("/").data


def test_too_many_failed_logins_are_throttled(client, world):
    for _ in range(5):
        client.post("/login", data={"email": "alice@example.com", "password": "nope"})
    rv = client.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
    assert rv.status_code == 429
    assert b"Too many attempts; try again in 15 minutes." in rv.data
    assert b"seconds" not in rv.data
    assert int(rv.headers["Retry-After"]) > 0


def test_form_messages_are_worded_for_people():
    from tracker.forms import Form, wait_words

    assert wait_words(898) == "15 minutes"
    assert wait_words(61) == "2 minutes"
    assert wait_words(1) == "1 second"
    assert wait_words(7200) == "2 hours"
    error = {"type": "string_too_short", "loc": ("password",), "msg": "x", "ctx": {"min_length": 8}}
    assert Form.message(error) == "Password must be at least 8 characters."
    error = {"type": "string_too_long", "loc": ("body",), "msg": "x", "ctx": {"max_length": 10}}
    assert Form.message(error) == "Comment must be at most 10 characters."
    assert Form.message({"type": "unheard_of", "loc": ("x",), "msg": "Pydantic's"}) == "Pydantic's"


def test_empty_login_form_shows_field_errors(client, world):
    rv = client.post("/login", data={"email": "", "password": ""})
    assert rv.status_code == 422
    assert rv.data.count(b"This field is required.") == 2


@pytest.fixture
def csrf_app(app):
    app.config["WTF_CSRF_ENABLED"] = True
    return app


def test_forms_without_csrf_token_are_refused(csrf_app, login, world, count):
    from tracker.models import Issue

    before = count(Issue)
    rv = login("alice").post(
        f"/o/acme/projects/{world.projects['website']}/issues/new", data={"title": "forged"}
    )
    assert rv.status_code == 400
    assert b"CSRF" in rv.data
    assert count(Issue) == before


def test_forms_carry_the_csrf_token(csrf_app, login, world):
    client = login("alice")
    page = client.get(f"/o/acme/projects/{world.projects['website']}/issues/new")
    token = page.data.split(b'name="csrf_token" value="')[1].split(b'"')[0].decode()
    rv = client.post(
        f"/o/acme/projects/{world.projects['website']}/issues/new",
        data={"title": "real", "csrf_token": token},
    )
    assert rv.status_code == 302
