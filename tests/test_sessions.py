"""Cookie sessions: Flask's, minus the per-request set-up cost."""

from __future__ import annotations

import datetime as dt

import flask
from markupsafe import Markup

import karaffe
from karaffe.sessions import CookieSessionInterface
from karaffe.signing import Signer


def make(secret: str | None = "s3cret", fallbacks: list[str] | None = None) -> karaffe.App:
    app = karaffe.App("sessions_test")
    app.configure(
        {"TESTING": True, "SECRET_KEY": secret or "", "SECRET_KEY_FALLBACKS": fallbacks or []}
    )
    if secret is None:
        app.secret_key = None

    @app.post("/login")
    def login() -> str:
        flask.session["user"] = "alice"
        return "ok"

    @app.get("/whoami")
    def whoami() -> str:
        return str(flask.session.get("user"))

    return app


def test_a_request_without_cookie_gets_an_empty_session_and_sets_no_cookie() -> None:
    rv = make().test_client().get("/whoami")
    assert rv.text == "None"
    assert "Set-Cookie" not in rv.headers


def test_a_session_written_is_read_back_from_its_cookie() -> None:
    client = make().test_client()
    assert "session=" in client.post("/login").headers["Set-Cookie"]
    assert client.get("/whoami").text == "alice"


def test_a_session_gives_back_tuples_bytes_markup_and_datetimes_as_flask_does() -> None:
    app = make()
    value = {
        "t": (1, "two"),
        "b": b"\x00\xff",
        "m": Markup("<b>safe</b>"),
        "d": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
    }

    @app.post("/store")
    def store() -> str:
        flask.session["value"] = value
        return "ok"

    @app.get("/load")
    def load() -> str:
        return str(flask.session["value"] == value)

    client = app.test_client()
    client.post("/store")
    assert client.get("/load").text == "True"


def test_a_cookie_signed_with_a_fallback_secret_is_still_read() -> None:
    old = make("old").test_client()
    old.post("/login")
    cookie = old.get_cookie("session")
    assert cookie is not None
    new = make("new", fallbacks=["old"]).test_client()
    new.set_cookie("session", cookie.value)
    assert new.get("/whoami").text == "alice"


def test_a_tampered_cookie_gives_an_empty_session() -> None:
    client = make().test_client()
    client.set_cookie("session", "eyJ1c2VyIjoibWFsbG9yeSJ9.forged.signature")
    assert client.get("/whoami").text == "None"


def test_the_serializer_is_built_once_per_secret() -> None:
    interface = CookieSessionInterface()
    app = make()
    assert interface.get_signing_serializer(app) is interface.get_signing_serializer(app)
    other = interface.get_signing_serializer(make("another"))
    assert other is not interface.get_signing_serializer(app)


def test_without_secret_there_is_no_session() -> None:
    app = make()
    app.secret_key = None
    assert CookieSessionInterface().get_signing_serializer(app) is None
    with app.test_request_context("/"):
        assert CookieSessionInterface().open_session(app, flask.request) is None


def test_a_request_without_cookie_that_leaves_the_session_alone_never_signs(monkeypatch) -> None:
    app = make()

    @app.get("/api/ping")
    def ping() -> str:
        return "pong"

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the signer was used")

    monkeypatch.setattr(Signer, "loads", refuse)
    monkeypatch.setattr(Signer, "dumps", refuse)
    rv = app.test_client().get("/api/ping")
    assert rv.text == "pong"
    assert "Set-Cookie" not in rv.headers
    assert "Vary" not in rv.headers


def test_a_request_without_cookie_that_reads_the_session_varies_on_cookie_as_in_flask() -> None:
    for cls in (karaffe.App, flask.Flask):
        app = cls("sessions_test")
        app.secret_key = "s3cret"
        app.get("/whoami")(lambda: str(flask.session.get("user")))
        rv = app.test_client().get("/whoami")
        assert rv.headers["Vary"] == "Cookie", cls
        assert "Set-Cookie" not in rv.headers


def test_a_request_without_cookie_that_writes_the_session_sets_the_cookie() -> None:
    rv = make().test_client().post("/login")
    assert rv.headers["Set-Cookie"].startswith("session=")
    assert rv.headers["Vary"] == "Cookie"
