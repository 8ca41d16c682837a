"""The Authorization header over real HTTP: on API routes only ``Bearer <token>``
authenticates and anything else is a 401 with ``WWW-Authenticate: Bearer``; HTML
routes ignore the header, so the login and sign-up forms work whatever a client
sends, write exactly what they should, and never answer 500."""

from __future__ import annotations

import typing as t

import httpx
import pytest

from karaffe.auth import User

from .conftest import PASSWORD, World

HEADERS = [
    "Basic YWxpY2VAZXhhbXBsZS5jb206cGFzc3dvcmQ=",
    "Bearer",
    "Bearer  two words",
    "Bearer kf_not-a-real-token",
    "Bearer kf_" + "x" * 43,
    "Digest username=alice",
    "Token abc",
    "garbage",
    "",
]


@pytest.fixture
def server(live_server: str, world: World) -> str:
    return live_server


@pytest.fixture
def karaffe_config(karaffe_config: dict[str, t.Any]) -> dict[str, t.Any]:
    return {k: v for k, v in karaffe_config.items() if k != "SERVER_NAME"}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/api/v1/me"),
        ("GET", "/api/v1/orgs"),
        ("POST", "/api/v1/orgs"),
        ("GET", "/api/v1/openapi.json"),
    ],
)
def test_api_request_with_credentials_that_do_not_authenticate_is_a_401(
    server: str, method: str, path: str
) -> None:
    for header in HEADERS:
        rv = httpx.request(method, server + path, headers={"Authorization": header}, json={})
        assert rv.status_code == 401, (header, rv.text)
        assert rv.headers["WWW-Authenticate"].startswith("Bearer")
        assert rv.headers["Content-Type"] == "application/problem+json"
        assert rv.json()["status"] == 401
        assert "set-cookie" not in rv.headers


def test_api_request_with_a_valid_bearer_token_is_served(server: str, world: World) -> None:
    for scheme in ("Bearer", "bearer", "BEARER"):
        rv = httpx.get(
            f"{server}/api/v1/me", headers={"Authorization": f"{scheme} {world.tokens['alice']}"}
        )
        assert rv.status_code == 200
        assert rv.json()["email"] == "alice@example.com"


def test_html_login_ignores_the_authorization_header(server: str, world: World) -> None:
    for header in [*HEADERS, f"Bearer {world.tokens['alice']}"]:
        with httpx.Client(base_url=server, headers={"Authorization": header}) as browser:
            rv = browser.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
            assert rv.status_code == 302, (header, rv.text)
            assert "session" in browser.cookies
            assert browser.get("/").status_code == 200


def test_html_sign_up_ignores_the_authorization_header_and_creates_one_account(
    server: str, world: World, count: t.Callable[..., int]
) -> None:
    for number, header in enumerate([*HEADERS, f"Bearer {world.tokens['alice']}"]):
        email = f"new-{number}@example.com"
        with httpx.Client(base_url=server, headers={"Authorization": header}) as browser:
            rv = browser.post(
                "/signup", data={"name": "New", "email": email, "password": "long enough"}
            )
            assert rv.status_code == 302, (header, rv.text)
            assert "session" in browser.cookies
        assert count(User, User.email == email) == 1


def test_html_page_with_a_bearer_token_and_no_session_goes_to_login(
    server: str, world: World
) -> None:
    rv = httpx.get(
        f"{server}/o/acme/", headers={"Authorization": f"Bearer {world.tokens['alice']}"}
    )
    assert rv.status_code == 302
    assert "/login" in rv.headers["Location"]
