"""Security headers: on every response of every karaffe app by default, with a
nonce per request for the inline scripts a page needs, and changed per app by
settings or by a subclass."""

from __future__ import annotations

import re
import typing as t

import pytest
from flask import Flask, render_template_string

import karaffe
from karaffe.headers import SecurityHeaders, csp_nonce

STRICT = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'; form-action 'self'"
)


def with_routes(app: Flask) -> Flask:
    app.add_url_rule("/page", "page", lambda: "<p>page</p>")
    app.add_url_rule("/api/thing", "thing", lambda: karaffe.ApiResult({"ok": True}))

    @app.get("/inline")
    def inline() -> str:
        return render_template_string(
            '<script nonce="{{ csp_nonce() }}">go()</script><script nonce="{{ csp_nonce() }}">'
        )

    @app.get("/own")
    def own() -> tuple[str, int, dict[str, str]]:
        return "framed", 200, {"X-Frame-Options": "SAMEORIGIN"}

    return app


@pytest.fixture
def app(make_app: t.Callable[..., karaffe.App]) -> Flask:
    return with_routes(make_app())


@pytest.mark.parametrize("url", ["/page", "/api/thing", "/nowhere", "/api/nowhere"])
def test_every_response_gets_the_headers(app: Flask, url: str) -> None:
    rv = app.test_client().get(url)
    assert rv.headers["Content-Security-Policy"] == STRICT
    assert rv.headers["X-Content-Type-Options"] == "nosniff"
    assert rv.headers["X-Frame-Options"] == "DENY"
    assert rv.headers["Referrer-Policy"] == "strict-origin-when-cross-origin"
    assert "Strict-Transport-Security" not in rv.headers


def test_a_server_error_gets_the_headers_too(make_app: t.Callable[..., karaffe.App]) -> None:
    app = make_app({"PROPAGATE_EXCEPTIONS": False})

    @app.get("/api/boom")
    def boom() -> str:
        raise RuntimeError("boom")

    rv = app.test_client().get("/api/boom")
    assert rv.status_code == 500
    assert rv.headers["Content-Security-Policy"] == STRICT


def test_the_nonce_is_fresh_per_request_and_named_only_when_used(app: Flask) -> None:
    client = app.test_client()
    first, second = client.get("/inline"), client.get("/inline")
    nonces = []
    for rv in (first, second):
        (nonce,) = set(re.findall(r'nonce="([^"]+)"', rv.get_data(as_text=True)))
        policy = rv.headers["Content-Security-Policy"]
        assert f"script-src 'self' 'nonce-{nonce}';" in policy
        assert f"style-src 'self' 'nonce-{nonce}';" in policy
        assert len(nonce) >= 22  # 128 bits
        nonces.append(nonce)
    assert nonces[0] != nonces[1]
    assert "nonce" not in client.get("/page").headers["Content-Security-Policy"]


def test_csp_nonce_outside_a_request_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="needs a request"):
        csp_nonce()


def test_a_header_the_view_sets_wins(app: Flask) -> None:
    rv = app.test_client().get("/own")
    assert rv.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert rv.headers["Content-Security-Policy"] == STRICT


def test_settings_change_the_policy(make_app: t.Callable[..., karaffe.App]) -> None:
    app = with_routes(
        make_app(
            {
                "CSP_DIRECTIVES": {"img-src": "'self' https://img.example.com", "font-src": ""},
                "X_FRAME_OPTIONS": None,
                "REFERRER_POLICY": "no-referrer",
                "HSTS_MAX_AGE": 31536000,
                "HSTS_INCLUDE_SUBDOMAINS": True,
            }
        )
    )
    rv = app.test_client().get("/page")
    policy = rv.headers["Content-Security-Policy"]
    assert "img-src 'self' https://img.example.com;" in policy
    assert "font-src" not in policy
    assert "X-Frame-Options" not in rv.headers
    assert rv.headers["Referrer-Policy"] == "no-referrer"
    assert rv.headers["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_settings_come_from_the_environment_too() -> None:
    app = karaffe.App("envapp")
    app.configure(
        {"TESTING": True},
        environ={
            "KARAFFE_CSP_DIRECTIVES": '{"frame-ancestors": "\'self\'"}',
            "KARAFFE_CSP_REPORT_ONLY": "true",
            "KARAFFE_HSTS_MAX_AGE": "600",
        },
    )
    rv = with_routes(app).test_client().get("/page")
    assert "Content-Security-Policy" not in rv.headers
    assert "frame-ancestors 'self';" in rv.headers["Content-Security-Policy-Report-Only"]
    assert rv.headers["Strict-Transport-Security"] == "max-age=600"


def test_a_relay_elsewhere_is_allowed_to_connect(make_app: t.Callable[..., karaffe.App]) -> None:
    from karaffe.events import Events

    app = make_app({"EVENTS_RELAY_URL": "https://relay.example.com:8443/events/stream"})
    Events(app)
    with_routes(app)
    policy = app.test_client().get("/page").headers["Content-Security-Policy"]
    assert "connect-src 'self' https://relay.example.com:8443;" in policy


def test_a_relay_on_the_same_origin_adds_nothing(make_app: t.Callable[..., karaffe.App]) -> None:
    from karaffe.events import Events

    app = make_app({"EVENTS_RELAY_URL": "/relay/stream"})
    Events(app)
    with_routes(app)
    policy = app.test_client().get("/page").headers["Content-Security-Policy"]
    assert "connect-src 'self';" in policy


def test_a_subclass_changes_the_policy_for_its_app() -> None:
    class WithCdn(SecurityHeaders):
        default_directives: t.ClassVar[dict[str, str]] = {
            **SecurityHeaders.default_directives,
            "script-src": "'self' https://cdn.example.com 'nonce-{nonce}'",
        }

        def headers(self, app: Flask) -> dict[str, str]:
            return {**super().headers(app), "Cross-Origin-Opener-Policy": "same-origin"}

    class CdnApp(karaffe.App):
        security_headers_class = WithCdn

    app = CdnApp("cdnapp")
    app.configure({"TESTING": True}, environ={})
    rv = with_routes(app).test_client().get("/page")
    assert "script-src 'self' https://cdn.example.com;" in rv.headers["Content-Security-Policy"]
    assert rv.headers["Cross-Origin-Opener-Policy"] == "same-origin"


def test_an_app_can_go_without() -> None:
    class Bare(karaffe.App):
        security_headers_class = None

    app = Bare("bare")
    app.configure({"TESTING": True}, environ={})
    rv = with_routes(app).test_client().get("/page")
    assert "Content-Security-Policy" not in rv.headers
    assert "X-Content-Type-Options" not in rv.headers


def test_an_app_that_is_never_configured_is_a_flask() -> None:
    app = karaffe.App("unconfigured")
    app.add_url_rule("/", "index", lambda: "plain")
    assert "Content-Security-Policy" not in app.test_client().get("/").headers


def test_configuring_twice_installs_them_once(make_app: t.Callable[..., karaffe.App]) -> None:
    app = make_app()
    app.configure({"TESTING": True}, environ={})
    app.add_url_rule("/", "index", lambda: "page")
    assert app.after_request_funcs[None].count(app.security_headers._after_request) == 1  # type: ignore[union-attr]


def test_a_plain_flask_app_can_have_them() -> None:
    app = Flask("plain")
    SecurityHeaders(app)
    app.add_url_rule("/", "index", lambda: "plain")
    rv = app.test_client().get("/")
    assert rv.headers["Content-Security-Policy"] == STRICT
    assert rv.headers["X-Frame-Options"] == "DENY"
