"""karaffe.auth: passwords, login sessions, API tokens, CSRF, cookies and
the login throttle. Every refusal is checked with its exact status and body."""

from __future__ import annotations

import datetime as dt
import hashlib
import re
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from datalayer import FAST_HASH, build_app, dispose
from flask import request, session
from flask.testing import FlaskClient
from flask_wtf.csrf import generate_csrf

import karaffe
from karaffe import auth
from karaffe.auth import (
    ApiToken,
    LoginThrottle,
    LoginThrottled,
    MemoryThrottleStore,
    RedisThrottleStore,
    User,
    UserSession,
    authenticate,
    check_password,
    create_api_token,
    current_credential,
    current_session,
    current_user,
    end_other_sessions,
    end_session,
    get_user,
    hash_password,
    login_required,
    login_user,
    logout_user,
    revoke_api_token,
    rotate_session,
    sessions_of,
    user_changed,
)
from karaffe.db import db
from karaffe.sessions import CookieSessionInterface
from karaffe.signals import credentials_revoked

PASSWORD = "correct horse battery staple"


def problem(status: int, slug: str, title: str, detail: str) -> dict[str, t.Any]:
    return {
        "type": f"urn:karaffe:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": [],
    }


@pytest.fixture
def app(tmp_path: Path) -> Iterator[karaffe.App]:
    app = build_app(f"sqlite:///{tmp_path}/auth.sqlite", {"LOGIN_VIEW": "login_form"})

    @app.get("/api/me")
    @login_required
    def api_me() -> karaffe.ApiResult:
        return karaffe.ApiResult({"id": current_user.id, "email": current_user.email})

    @app.post("/api/things")
    @login_required
    def api_things() -> karaffe.ApiResult:
        session["touched"] = True
        return karaffe.ApiResult({"created": True}, status=201)

    @app.get("/me")
    @login_required
    def html_me() -> str:
        return f"Hello {current_user.email}"

    @app.get("/login")
    def login_form() -> str:
        return generate_csrf()

    @app.post("/login")
    def login() -> str:
        auth.get_auth().login(request.form["email"], request.form["password"])
        db.session.commit()
        return "logged in"

    @app.post("/logout")
    def logout() -> str:
        logout_user()
        return "logged out"

    @app.post("/password")
    @login_required
    def change_password() -> str:
        current_user.set_password(request.form["password"])
        rotate_session()
        db.session.commit()
        return "changed"

    @app.get("/sessions")
    @login_required
    def list_sessions() -> karaffe.ApiResult:
        mine = current_session()
        return karaffe.ApiResult(
            [
                {"id": s.id, "agent": s.user_agent, "address": s.ip_address,
                 "current": mine is not None and s.id == mine.id}
                for s in sessions_of(current_user)
            ]
        )  # fmt: skip

    @app.post("/sessions/<int:session_id>/end")
    @login_required
    def end_one(session_id: int) -> str:
        return "ended" if end_session(current_user, session_id) else "none"

    @app.post("/sessions/end-others")
    @login_required
    def end_others() -> str:
        return str(end_other_sessions(current_user))

    @app.get("/api/credential")
    @login_required
    def credential() -> str:
        return str(current_credential())

    with app.app_context():
        db.create_all()
        alice = User(email="Alice@Example.org", name="Alice")
        alice.set_password(PASSWORD)
        bob = User(email="bob@example.org", name="Bob", is_active=False)
        bob.set_password(PASSWORD)
        db.session.add_all([alice, bob])
        db.session.commit()
    yield app
    with app.app_context():
        db.session.remove()
        db.drop_all()
    dispose(app)


@pytest.fixture
def client(app: karaffe.App) -> FlaskClient:
    return app.test_client()


def user(app: karaffe.App, email: str) -> User:
    with app.app_context():
        found = db.session.execute(sa.select(User).where(User.email == email)).scalar_one()
        db.session.expunge(found)
        return found


def new_token(app: karaffe.App, **kwargs: t.Any) -> tuple[int, str]:
    with app.app_context():
        alice = db.session.execute(sa.select(User).where(User.id == 1)).scalar_one()
        token, plaintext = create_api_token(alice, "ci", **kwargs)
        db.session.commit()
        return token.id, plaintext


def csrf_login(client: FlaskClient, email: str = "alice@example.org", password: str = PASSWORD):  # type: ignore[no-untyped-def]
    token = client.get("/login").text
    return client.post("/login", data={"email": email, "password": password, "csrf_token": token})


# -- passwords ---------------------------------------------------------------------


def test_password_hash_is_scrypt_salted_and_checks() -> None:
    first, second = hash_password("s3cret", FAST_HASH), hash_password("s3cret", FAST_HASH)
    assert first.startswith("scrypt:1024:8:1$")
    assert first != second
    assert check_password(first, "s3cret")
    assert not check_password(first, "s3cret ")


def test_default_password_hash_is_scrypt_with_current_parameters() -> None:
    assert hash_password("x").startswith("scrypt:32768:8:1$")


def test_corrupt_password_hash_never_matches() -> None:
    assert not check_password("md5$nope$nope", "x")
    assert not check_password("", "x")


def test_authenticate_accepts_the_right_password_in_any_email_case(app: karaffe.App) -> None:
    with app.app_context():
        found = authenticate(" ALICE@example.ORG ", PASSWORD)
        assert found is not None and found.email == "alice@example.org"


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("alice@example.org", "wrong"),
        ("nobody@example.org", PASSWORD),
        ("bob@example.org", PASSWORD),
        ("alice@example.org", ""),
    ],
    ids=["wrong-password", "unknown-user", "inactive-user", "empty-password"],
)
def test_authenticate_refuses(app: karaffe.App, email: str, password: str) -> None:
    with app.app_context():
        assert authenticate(email, password) is None


def test_authenticate_upgrades_an_outdated_hash(app: karaffe.App) -> None:
    with app.app_context():
        alice = db.session.get(User, 1)
        assert alice is not None
        alice.password_hash = hash_password(PASSWORD, "scrypt:2048:8:1")
        db.session.commit()
        assert authenticate("alice@example.org", PASSWORD) is alice
        assert alice.password_hash.startswith(FAST_HASH + "$")


def test_emails_are_unique_regardless_of_case(app: karaffe.App) -> None:
    with app.app_context():
        db.session.add(User(email="ALICE@example.org"))
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()


# -- login sessions ------------------------------------------------------------------


def test_login_with_csrf_token_opens_a_session(client: FlaskClient) -> None:
    rv = csrf_login(client)
    assert rv.status_code == 200
    assert client.get("/api/me").json == {"id": 1, "email": "alice@example.org"}
    assert client.get("/me").text == "Hello alice@example.org"


def test_login_without_csrf_token_is_refused(client: FlaskClient) -> None:
    rv = client.post("/login", data={"email": "alice@example.org", "password": PASSWORD})
    assert rv.status_code == 400
    assert "The CSRF token is missing." in rv.text
    assert client.get("/api/me").status_code == 401


def test_api_post_with_session_cookie_but_no_csrf_token_is_refused(client: FlaskClient) -> None:
    csrf_login(client)
    rv = client.post("/api/things", json={})
    assert rv.status_code == 400
    assert rv.json == problem(400, "bad-request", "Bad request", "The CSRF token is missing.")


def test_api_post_with_session_cookie_and_csrf_header_is_accepted(client: FlaskClient) -> None:
    csrf_login(client)
    token = client.get("/login").text
    rv = client.post("/api/things", json={}, headers={"X-CSRFToken": token})
    assert rv.status_code == 201


def test_api_post_with_a_csrf_header_of_another_session_is_refused(
    app: karaffe.App, client: FlaskClient
) -> None:
    csrf_login(client)
    client.get("/login")  # this session's own token exists too
    other = app.test_client()
    rv = client.post("/api/things", json={}, headers={"X-CSRFToken": other.get("/login").text})
    assert rv.status_code == 400
    assert rv.json["detail"] == "The CSRF tokens do not match."


@pytest.mark.parametrize("cookie", [False, True])
def test_api_write_without_credentials_is_401_before_csrf(
    client: FlaskClient, cookie: bool
) -> None:
    """No token, no login (with or without a session cookie that holds only a
    CSRF token): the client is told to authenticate, not that a CSRF token is
    missing."""
    if cookie:
        client.get("/login")
        assert client.get_cookie("session") is not None
    rv = client.post("/api/things", json={})
    assert rv.status_code == 401
    assert rv.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "Authentication required"
    )


def test_html_write_without_login_goes_to_the_login_page_before_csrf(
    app: karaffe.App, client: FlaskClient
) -> None:
    @app.post("/notes")
    @login_required
    def notes() -> str:
        return "noted"

    rv = client.post("/notes", data={})
    assert rv.status_code == 302
    assert rv.headers["Location"] == "/login?next=/notes"


def test_write_to_a_public_view_keeps_csrf(app: karaffe.App, client: FlaskClient) -> None:
    rv = client.post("/logout", data={})
    assert rv.status_code == 400
    assert "The CSRF token is missing." in rv.text


def test_login_required_on_a_blueprint_hook_is_recorded(app: karaffe.App) -> None:
    from flask import Blueprint

    from karaffe.auth import requires_login

    bp = Blueprint("private", __name__, url_prefix="/api/private")
    bp.before_request(login_required(lambda: None))
    bp.add_url_rule("/notes", "notes", lambda: karaffe.ApiResult({}), methods=["POST"])
    app.register_blueprint(bp)
    assert requires_login(app, "private.notes")
    assert requires_login(app, "api_things")
    assert not requires_login(app, "logout")
    assert not requires_login(app, "nowhere")
    rv = app.test_client().post("/api/private/notes", json={})
    assert rv.status_code == 401
    assert rv.headers["WWW-Authenticate"] == 'Bearer realm="api"'


def test_login_with_a_wrong_password_is_refused(client: FlaskClient) -> None:
    rv = csrf_login(client, password="wrong")
    assert rv.status_code == 401
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "Wrong email or password."
    )
    assert client.get("/api/me").status_code == 401


def test_login_of_an_unknown_user_gets_the_same_answer(client: FlaskClient) -> None:
    rv = csrf_login(client, email="nobody@example.org")
    assert rv.status_code == 401
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "Wrong email or password."
    )


def test_logout_ends_the_session(client: FlaskClient) -> None:
    csrf_login(client)
    token = client.get("/login").text
    assert client.post("/logout", data={"csrf_token": token}).text == "logged out"
    assert client.get("/api/me").status_code == 401


def cookie_of(client: FlaskClient) -> str:
    cookie = client.get_cookie("session")
    assert cookie is not None
    return cookie.value


def browser(app: karaffe.App, cookie: str) -> FlaskClient:
    """Another client sending ``cookie``, as a copy of it would be sent."""
    other = app.test_client()
    other.set_cookie("session", cookie)
    return other


def session_token(app: karaffe.App, cookie: str) -> str:
    """The login session's token in a session cookie."""
    serializer = CookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return t.cast(str, serializer.loads(cookie)["_login"])


def open_sessions(app: karaffe.App) -> list[UserSession]:
    with app.app_context():
        rows = db.session.execute(
            sa.select(UserSession).where(UserSession.ended_at.is_(None)).order_by(UserSession.id)
        ).scalars()
        found = list(rows)
        db.session.expunge_all()
        return found


@pytest.fixture
def revoked(app: karaffe.App) -> Iterator[list[dict[str, t.Any]]]:
    """What :data:`credentials_revoked` announced during the test."""
    seen: list[dict[str, t.Any]] = []

    def record(sender: karaffe.App, **kwargs: t.Any) -> None:
        seen.append(kwargs)

    with credentials_revoked.connected_to(record, sender=app):
        yield seen


def test_a_cookie_kept_from_before_logout_is_refused(client: FlaskClient, app: karaffe.App) -> None:
    csrf_login(client)
    kept = cookie_of(client)
    client.post("/logout", data={"csrf_token": client.get("/login").text})
    assert browser(app, kept).get("/api/me").status_code == 401
    assert browser(app, kept).get("/me").status_code == 302


def test_logout_ends_the_session_on_every_process(app: karaffe.App, tmp_path: Path) -> None:
    other_process = build_app(f"sqlite:///{tmp_path}/auth.sqlite", {"LOGIN_VIEW": "login_form"})
    other_process.add_url_rule("/api/me", view_func=app.view_functions["api_me"])
    client = app.test_client()
    csrf_login(client)
    kept = cookie_of(client)
    assert browser(other_process, kept).get("/api/me").status_code == 200
    client.post("/logout", data={"csrf_token": client.get("/login").text})
    assert browser(other_process, kept).get("/api/me").status_code == 401
    dispose(other_process)


def test_logout_announces_the_session_it_ended(
    client: FlaskClient, revoked: list[dict[str, t.Any]]
) -> None:
    csrf_login(client)
    credential = client.get("/api/credential").text
    client.post("/logout", data={"csrf_token": client.get("/login").text})
    assert revoked == [{"user_id": 1, "credential": credential, "reason": "logout"}]


def test_the_session_is_a_server_record_holding_only_a_digest_of_the_token(
    app: karaffe.App, client: FlaskClient
) -> None:
    client.environ_base.update(HTTP_USER_AGENT="Firefox/130", REMOTE_ADDR="10.0.0.7")
    csrf_login(client)
    token = session_token(app, cookie_of(client))
    (record,) = open_sessions(app)
    assert record.user_id == 1
    assert record.token_hash == hashlib.sha256(token.encode()).hexdigest()
    assert token not in (record.token_hash, str(record.id))
    assert (record.user_agent, record.ip_address) == ("Firefox/130", "10.0.0.7")
    assert client.get("/api/credential").text == f"session:{record.id}"


def test_every_login_gets_a_new_session_id_and_ends_the_browsers_previous_one(
    app: karaffe.App, client: FlaskClient
) -> None:
    csrf_login(client)
    first = cookie_of(client)
    csrf_login(client)
    second = cookie_of(client)
    assert session_token(app, first) != session_token(app, second)
    assert browser(app, first).get("/api/me").status_code == 401
    assert client.get("/api/me").status_code == 200
    assert len(open_sessions(app)) == 1


def test_a_cookie_from_before_login_does_not_become_logged_in(
    app: karaffe.App, client: FlaskClient
) -> None:
    client.get("/login")  # an anonymous session with a CSRF token
    planted = cookie_of(client)
    csrf_login(client)
    assert browser(app, planted).get("/api/me").status_code == 401


def test_changing_the_password_ends_other_sessions(app: karaffe.App, client: FlaskClient) -> None:
    csrf_login(client)
    with app.app_context():
        alice = db.session.get(User, 1)
        assert alice is not None
        alice.set_password("a new one")
        db.session.commit()
    assert client.get("/api/me").status_code == 401


def test_a_password_changed_in_a_request_ends_the_other_sessions_and_the_old_id(
    app: karaffe.App, client: FlaskClient, revoked: list[dict[str, t.Any]]
) -> None:
    phone = app.test_client()
    csrf_login(phone)
    csrf_login(client)
    before = cookie_of(client)
    token = client.get("/login").text
    assert client.post("/password", data={"password": "new one", "csrf_token": token}).text == (
        "changed"
    )
    assert phone.get("/api/me").status_code == 401
    assert client.get("/api/me").status_code == 200
    assert browser(app, before).get("/api/me").status_code == 401
    assert len(open_sessions(app)) == 1
    assert {"user_id": 1, "credential": None, "reason": "password-changed"} in revoked


def test_a_password_change_rolled_back_ends_nothing(
    app: karaffe.App, client: FlaskClient, revoked: list[dict[str, t.Any]]
) -> None:
    csrf_login(client)
    with app.app_context():
        alice = db.session.get(User, 1)
        assert alice is not None
        alice.set_password("a new one")
        db.session.flush()
        db.session.rollback()
    assert client.get("/api/me").status_code == 200
    assert revoked == []


def test_a_hash_upgraded_at_login_ends_no_session(app: karaffe.App, client: FlaskClient) -> None:
    phone = app.test_client()
    csrf_login(phone)
    with app.app_context():
        db.session.execute(
            sa.update(User).values(password_hash=hash_password(PASSWORD, "scrypt:2048:8:1"))
        )
        db.session.commit()
    csrf_login(client)
    assert phone.get("/api/me").status_code == 200


def test_sessions_are_listed_and_one_can_be_ended_from_another(
    app: karaffe.App, client: FlaskClient, revoked: list[dict[str, t.Any]]
) -> None:
    phone = app.test_client()
    phone.environ_base.update(HTTP_USER_AGENT="Phone", REMOTE_ADDR="10.0.0.9")
    csrf_login(phone)
    client.environ_base.update(HTTP_USER_AGENT="Laptop")
    csrf_login(client)
    listed = client.get("/sessions").json
    assert [(s["agent"], s["current"]) for s in listed] == [("Laptop", True), ("Phone", False)]
    assert listed[1]["address"] == "10.0.0.9"
    token = client.get("/login").text
    phone_id = listed[1]["id"]
    assert client.post(f"/sessions/{phone_id}/end", data={"csrf_token": token}).text == "ended"
    assert phone.get("/api/me").status_code == 401
    assert client.get("/api/me").status_code == 200
    assert revoked == [
        {"user_id": 1, "credential": f"session:{phone_id}", "reason": "session-ended"}
    ]
    again = client.post(f"/sessions/{phone_id}/end", data={"csrf_token": token})
    assert again.text == "none"


def test_a_user_cannot_end_someone_elses_session(app: karaffe.App, client: FlaskClient) -> None:
    with app.app_context():
        db.session.execute(sa.update(User).values(is_active=True))
        db.session.commit()
    other = app.test_client()
    csrf_login(other, email="bob@example.org")
    (bobs,) = open_sessions(app)
    csrf_login(client)
    token = client.get("/login").text
    assert client.post(f"/sessions/{bobs.id}/end", data={"csrf_token": token}).text == "none"
    assert other.get("/api/me").status_code == 200


def test_ending_all_other_sessions_keeps_this_one(app: karaffe.App, client: FlaskClient) -> None:
    others = [app.test_client() for _ in range(2)]
    for other in others:
        csrf_login(other)
    csrf_login(client)
    token = client.get("/login").text
    assert client.post("/sessions/end-others", data={"csrf_token": token}).text == "2"
    assert [o.get("/api/me").status_code for o in others] == [401, 401]
    assert client.get("/api/me").status_code == 200


def test_a_session_unused_for_the_idle_timeout_ends(app: karaffe.App, client: FlaskClient) -> None:
    csrf_login(client)
    with app.app_context():
        long_ago = dt.datetime.now(dt.UTC) - dt.timedelta(days=31)
        db.session.execute(sa.update(UserSession).values(last_seen_at=long_ago))
        db.session.commit()
    assert client.get("/api/me").status_code == 401
    assert open_sessions(app) == []


def test_last_seen_is_written_at_most_once_per_interval(
    app: karaffe.App, client: FlaskClient
) -> None:
    csrf_login(client)
    (record,) = open_sessions(app)
    client.get("/api/me")
    assert open_sessions(app)[0].last_seen_at == record.last_seen_at
    with app.app_context():
        earlier = record.last_seen_at - dt.timedelta(minutes=5)
        db.session.execute(sa.update(UserSession).values(last_seen_at=earlier))
        db.session.commit()
    client.get("/api/me")
    assert open_sessions(app)[0].last_seen_at > record.last_seen_at


def test_deactivated_user_is_logged_out(app: karaffe.App, client: FlaskClient) -> None:
    csrf_login(client)
    with app.app_context():
        db.session.execute(sa.update(User).values(is_active=False))
        db.session.commit()
    assert client.get("/api/me").status_code == 401


def test_deactivating_an_account_ends_its_sessions_and_announces_it(
    app: karaffe.App, client: FlaskClient, revoked: list[dict[str, t.Any]]
) -> None:
    csrf_login(client)
    with app.app_context():
        alice = db.session.get(User, 1)
        assert alice is not None
        alice.is_active = False
        db.session.commit()
    assert open_sessions(app) == []
    assert revoked == [{"user_id": 1, "credential": None, "reason": "deactivated"}]


def test_session_cookie_is_httponly_and_samesite_lax(client: FlaskClient) -> None:
    rv = csrf_login(client)
    cookie = rv.headers["Set-Cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=Lax" in cookie
    assert "Secure" not in cookie


def test_session_cookie_is_secure_when_configured(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/s.sqlite", {"SESSION_COOKIE_SECURE": True})

    @app.get("/set")
    def set_something() -> str:
        session["x"] = 1
        return "ok"

    assert "Secure" in app.test_client().get("/set").headers["Set-Cookie"]
    dispose(app)


@pytest.mark.parametrize(
    "config",
    [{"SESSION_HTTPS": True}, {"PREFERRED_URL_SCHEME": "https"}],
    ids=["setting", "scheme"],
)
def test_session_cookie_for_https_is_secure_with_the_host_prefix(
    tmp_path: Path, config: dict[str, t.Any]
) -> None:
    app = build_app(f"sqlite:///{tmp_path}/s.sqlite", config)

    @app.get("/set")
    def set_something() -> str:
        session["x"] = 1
        return "ok"

    cookie = app.test_client().get("/set", base_url="https://localhost").headers["Set-Cookie"]
    assert cookie.startswith("__Host-session=")
    assert "; Secure" in cookie and "; Path=/" in cookie and "Domain" not in cookie
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    dispose(app)


def test_https_session_cookie_refuses_a_domain(tmp_path: Path) -> None:
    with pytest.raises(karaffe.ConfigError, match="SESSION_COOKIE_DOMAIN cannot be used"):
        build_app(
            f"sqlite:///{tmp_path}/s.sqlite",
            {"SESSION_HTTPS": True, "SESSION_COOKIE_DOMAIN": "example.org"},
        )


def test_get_user_loads_once_per_request(app: karaffe.App) -> None:
    with app.app_context():
        alice = db.session.get(User, 1)
        assert alice is not None
        with app.test_request_context("/"):
            login_user(alice)
            assert get_user() is alice
            assert current_user
            logout_user()
            assert get_user() is None
            assert not current_user


def test_login_and_logout_send_user_changed(app: karaffe.App) -> None:
    sent: list[tuple[object, User | None]] = []

    def record(sender: object, user: User | None, **extra: object) -> None:
        sent.append((sender, user))

    with app.app_context():
        alice = db.session.get(User, 1)
        with app.test_request_context("/"), user_changed.connected_to(record):
            login_user(alice)  # type: ignore[arg-type]
            logout_user()
    assert sent == [(app, alice), (app, None)]


def test_get_user_outside_a_request_is_none(app: karaffe.App) -> None:
    with app.app_context():
        assert get_user() is None


def test_login_required_html_redirects_to_the_login_view(client: FlaskClient) -> None:
    rv = client.get("/me?tab=1")
    assert rv.status_code == 302
    assert rv.headers["Location"] == "/login?next=/me?tab%3D1"


def test_login_required_html_without_login_view_is_401(tmp_path: Path) -> None:
    app = build_app(f"sqlite:///{tmp_path}/n.sqlite")

    @app.get("/private")
    @login_required
    def private() -> str:
        return "secret"

    rv = app.test_client().get("/private")
    assert rv.status_code == 401
    assert "secret" not in rv.text
    dispose(app)


def test_login_required_api_is_a_401_problem(client: FlaskClient) -> None:
    rv = client.get("/api/me")
    assert rv.status_code == 401
    assert rv.headers["WWW-Authenticate"] == 'Bearer realm="api"'
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "Authentication required"
    )


@pytest.mark.parametrize(
    ("target", "expected"),
    [("/projects?x=1", "/projects?x=1"), ("//evil.example", "/"), ("https://evil.example", "/"),
     ("/\\evil.example", "/"), ("", "/"), (None, "/")],
)  # fmt: skip
def test_safe_next_url_stays_on_the_site(target: str | None, expected: str) -> None:
    assert auth.safe_next_url(target) == expected


# -- API tokens ------------------------------------------------------------------------


def test_api_token_is_random_shown_once_and_stored_hashed(app: karaffe.App) -> None:
    token_id, plaintext = new_token(app)
    _, other = new_token(app)
    assert plaintext != other
    assert re.fullmatch(r"kf_[A-Za-z0-9_\-]{43}", plaintext)
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None
        assert token.token_hash == hashlib.sha256(plaintext.encode()).hexdigest()
        assert plaintext not in (token.token_hash, token.prefix)
        assert plaintext.startswith(token.prefix) and len(token.prefix) == 11
        assert token.name == "ci" and token.last_used_at is None


def test_revoking_a_token_announces_it_once_committed(
    app: karaffe.App, revoked: list[dict[str, t.Any]]
) -> None:
    token_id, _ = new_token(app)
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None
        revoke_api_token(token)
        db.session.flush()
        assert revoked == []
        db.session.commit()
    assert revoked == [
        {"user_id": 1, "credential": f"api-token:{token_id}", "reason": "api-token-revoked"}
    ]


def test_a_token_request_names_its_token_as_credential(
    app: karaffe.App, client: FlaskClient
) -> None:
    token_id, plaintext = new_token(app)
    rv = client.get("/api/credential", headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.text == f"api-token:{token_id}"


def test_bearer_token_authenticates_api_requests(app: karaffe.App, client: FlaskClient) -> None:
    token_id, plaintext = new_token(app)
    rv = client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.status_code == 200
    assert rv.json == {"id": 1, "email": "alice@example.org"}
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None and token.last_used_at is not None


def test_token_request_is_exempt_from_csrf_and_never_sets_a_cookie(
    app: karaffe.App, client: FlaskClient
) -> None:
    _, plaintext = new_token(app)
    rv = client.post("/api/things", json={}, headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.status_code == 201
    assert "Set-Cookie" not in rv.headers
    assert client.get_cookie("session") is None


def test_token_request_ignores_the_session_cookie(app: karaffe.App, client: FlaskClient) -> None:
    csrf_login(client)
    rv = client.get("/api/me", headers={"Authorization": "Bearer kf_unknownunknownunknown"})
    assert rv.status_code == 401


INVALID = 'Bearer realm="api", error="invalid_token"'


@pytest.mark.parametrize(
    "header",
    ["Token abcdefabcdefabcdef", "Bearer", "Bearer short", "Bearer kf_abc!def$ghi%jkl^mno",
     "bearer"],
)  # fmt: skip
def test_malformed_authorization_header_is_refused(client: FlaskClient, header: str) -> None:
    rv = client.get("/api/me", headers={"Authorization": header})
    assert rv.status_code == 401
    assert rv.headers["WWW-Authenticate"] == INVALID
    assert rv.json == problem(
        401,
        "unauthorized",
        "Authentication required",
        "The Authorization header must be 'Bearer <token>'.",
    )


def test_unknown_token_is_refused(client: FlaskClient) -> None:
    rv = client.get("/api/me", headers={"Authorization": "Bearer kf_" + "x" * 43})
    assert rv.status_code == 401
    assert rv.headers["WWW-Authenticate"] == INVALID
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "The API token is invalid."
    )


def test_expired_token_is_rejected(app: karaffe.App, client: FlaskClient) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    _, plaintext = new_token(app, expires_at=past)
    rv = client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.status_code == 401
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "The API token has expired."
    )


def test_token_before_its_expiry_is_accepted(app: karaffe.App, client: FlaskClient) -> None:
    future = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    _, plaintext = new_token(app, expires_at=future)
    assert (
        client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"}).status_code == 200
    )


def test_revoked_token_is_rejected(app: karaffe.App, client: FlaskClient) -> None:
    token_id, plaintext = new_token(app)
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None
        revoke_api_token(token)
        first = token.revoked_at
        revoke_api_token(token)
        assert token.revoked_at == first
        db.session.commit()
    rv = client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.status_code == 401
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "The API token has been revoked."
    )


def test_token_of_a_disabled_account_is_rejected(app: karaffe.App, client: FlaskClient) -> None:
    _, plaintext = new_token(app)
    with app.app_context():
        db.session.execute(sa.update(User).values(is_active=False))
        db.session.commit()
    rv = client.get("/api/me", headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.status_code == 401
    assert rv.json == problem(
        401, "unauthorized", "Authentication required", "The account is disabled."
    )


def test_tokens_have_every_scope_by_default(app: karaffe.App) -> None:
    token_id, _ = new_token(app)
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None
        assert token.scopes == "read write"
        assert not token.is_read_only
        assert token.allows("DELETE") and token.allows("get")


def test_scopes_are_stored_in_a_fixed_order(app: karaffe.App) -> None:
    token_id, _ = new_token(app, scopes=["write", "read", "write"])
    with app.app_context():
        token = db.session.get(ApiToken, token_id)
        assert token is not None and token.scopes == "read write"


@pytest.mark.parametrize("scopes", [[], ["admin"], ["read", "delete"], "read"])
def test_unknown_or_no_scopes_are_refused(app: karaffe.App, scopes: t.Any) -> None:
    with pytest.raises(ValueError, match="API token scopes must be some of read, write"):
        new_token(app, scopes=scopes)


def test_read_only_token_reads(app: karaffe.App, client: FlaskClient) -> None:
    _, plaintext = new_token(app, scopes=["read"])
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.get("/api/me", headers=headers).status_code == 200
    assert client.head("/api/me", headers=headers).status_code == 200
    assert client.options("/api/me", headers=headers).status_code == 200


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_read_only_token_cannot_write(app: karaffe.App, client: FlaskClient, method: str) -> None:
    """Refused before the view runs, whatever the view would do."""
    written = []
    app.add_url_rule(
        "/api/anything", "anything", lambda: written.append(1) or "written", methods=[method]
    )
    _, plaintext = new_token(app, scopes=["read"])
    rv = client.open(
        "/api/anything", method=method, headers={"Authorization": f"Bearer {plaintext}"}
    )
    assert rv.status_code == 403
    assert rv.json == problem(
        403,
        "forbidden",
        "Forbidden",
        f"This API token is read-only: {method} needs a token with the write scope.",
    )
    assert rv.headers["WWW-Authenticate"] == (
        'Bearer realm="api", error="insufficient_scope", scope="write"'
    )
    assert "Set-Cookie" not in rv.headers
    assert written == []


def test_write_only_token_cannot_read(app: karaffe.App, client: FlaskClient) -> None:
    _, plaintext = new_token(app, scopes=["write"])
    headers = {"Authorization": f"Bearer {plaintext}"}
    rv = client.get("/api/me", headers=headers)
    assert rv.status_code == 403
    assert rv.json is not None
    assert rv.json["detail"] == "This API token lacks the read scope GET needs."
    assert client.post("/api/things", headers=headers).status_code == 201


def test_read_only_token_gets_404_and_405_as_usual(app: karaffe.App, client: FlaskClient) -> None:
    _, plaintext = new_token(app, scopes=["read"])
    headers = {"Authorization": f"Bearer {plaintext}"}
    assert client.post("/api/nowhere", headers=headers).status_code == 404
    assert client.delete("/api/me", headers=headers).status_code == 405


def test_scope_check_comes_after_authentication(app: karaffe.App, client: FlaskClient) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
    _, plaintext = new_token(app, scopes=["read"], expires_at=past)
    rv = client.post("/api/things", headers={"Authorization": f"Bearer {plaintext}"})
    assert rv.status_code == 401
    assert rv.json is not None and rv.json["detail"] == "The API token has expired."


def test_last_used_is_written_at_most_once_per_interval(
    app: karaffe.App, client: FlaskClient
) -> None:
    token_id, plaintext = new_token(app)
    headers = {"Authorization": f"Bearer {plaintext}"}
    client.get("/api/me", headers=headers)
    with app.app_context():
        first = db.session.get(ApiToken, token_id).last_used_at  # type: ignore[union-attr]
    client.get("/api/me", headers=headers)
    with app.app_context():
        assert db.session.get(ApiToken, token_id).last_used_at == first  # type: ignore[union-attr]
        db.session.execute(
            sa.update(ApiToken).values(last_used_at=first - dt.timedelta(minutes=5))  # type: ignore[operator]
        )
        db.session.commit()
    client.get("/api/me", headers=headers)
    with app.app_context():
        later = db.session.get(ApiToken, token_id).last_used_at  # type: ignore[union-attr]
        assert later is not None and later > first  # type: ignore[operator]


# -- throttle ------------------------------------------------------------------------------


def test_repeated_failed_logins_for_an_account_are_throttled(client: FlaskClient) -> None:
    for _ in range(5):
        assert csrf_login(client, password="wrong").status_code == 401
    rv = csrf_login(client)  # even the right password, now
    assert rv.status_code == 429
    retry_after = int(rv.headers["Retry-After"])
    assert 1 <= retry_after <= 900
    assert rv.json == problem(
        429,
        "too-many-failed-logins",
        "Too many failed logins",
        f"Too many failed logins. Try again in {retry_after} seconds.",
    )


def test_failed_logins_from_one_address_are_throttled_across_accounts(
    app: karaffe.App, client: FlaskClient
) -> None:
    auth.get_auth(app).throttle = LoginThrottle(max_per_account=100, max_per_address=3)
    for n in range(3):
        assert csrf_login(client, email=f"user{n}@example.org").status_code == 401
    rv = csrf_login(client, email="someone-else@example.org")
    assert rv.status_code == 429
    other = app.test_client()
    other.environ_base["REMOTE_ADDR"] = "10.1.2.3"
    assert csrf_login(other).status_code == 200


def test_successful_login_clears_the_account_counter(client: FlaskClient) -> None:
    for _ in range(4):
        csrf_login(client, password="wrong")
    assert csrf_login(client).status_code == 200
    for _ in range(4):
        assert csrf_login(client, password="wrong").status_code == 401


def test_throttle_window_expires() -> None:
    now = [1000.0]
    throttle = LoginThrottle(
        MemoryThrottleStore(clock=lambda: now[0]), max_per_account=2, max_per_address=50, window=60
    )
    throttle.failure("a@x", "1.1.1.1")
    now[0] += 10
    throttle.failure("a@x", "1.1.1.1")
    with pytest.raises(LoginThrottled) as caught:
        throttle.check("a@x", "1.1.1.1")
    assert caught.value.retry_after == 50
    assert caught.value.headers == {"Retry-After": "50"}
    throttle.check("b@x", "2.2.2.2")
    now[0] += 50
    throttle.check("a@x", "1.1.1.1")


def test_memory_store_sweeps_expired_keys() -> None:
    now = [0.0]
    store = MemoryThrottleStore(clock=lambda: now[0], max_keys=2)
    store.increment("a", 10)
    store.increment("b", 10)
    now[0] = 20
    store.increment("c", 10)
    assert store.peek("a") == (0, 0.0)
    assert len(store._counts) == 1


@pytest.mark.redis
def test_redis_store_shares_counters_between_workers(redis_url: str) -> None:
    prefix = f"karaffe-test:{id(object())}:"
    workers = [
        LoginThrottle(RedisThrottleStore.from_url(redis_url, prefix=prefix),
                      max_per_account=3, max_per_address=100, window=60)
        for _ in range(2)
    ]  # fmt: skip
    workers[0].failure("a@x", "1.1.1.1")
    workers[1].failure("a@x", "1.1.1.1")
    workers[0].check("a@x", "1.1.1.1")
    workers[1].failure("a@x", "1.1.1.1")
    with pytest.raises(LoginThrottled) as caught:
        workers[0].check("a@x", "1.1.1.1")
    assert 1 <= caught.value.retry_after <= 60
    workers[1].success("a@x", "1.1.1.1")
    workers[0].check("a@x", "1.1.1.1")
    assert workers[0].store.peek("login:address:1.1.1.1")[0] == 3


@pytest.mark.redis
def test_redis_store_counts_within_a_window(redis_url: str) -> None:
    store = RedisThrottleStore.from_url(redis_url, prefix=f"karaffe-test:{id(object())}:")
    assert store.peek("k") == (0, 0.0)
    assert store.increment("k", 60)[0] == 1
    count, left = store.increment("k", 60)
    assert count == 2 and 0 < left <= 60
    store.client.persist(store.prefix + "k")  # a counter that lost its expiry gets it back
    assert 0 < store.increment("k", 60)[1] <= 60
    store.reset("k")
    assert store.peek("k") == (0, 0.0)


@pytest.mark.redis
def test_auth_uses_redis_for_counters_when_configured(tmp_path: Path, redis_url: str) -> None:
    app = build_app(f"sqlite:///{tmp_path}/r.sqlite", {"LOGIN_THROTTLE_REDIS_URL": redis_url})
    throttle = auth.get_auth(app).throttle
    assert throttle is not None and isinstance(throttle.store, RedisThrottleStore)
    dispose(app)
