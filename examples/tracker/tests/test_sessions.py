"""Sessions that end, over real HTTP against a running tracker: a cookie kept
from before logout is worth nothing, a new password logs out every other
browser, a session can be ended from the settings page, and every login gets
a new session id."""

from __future__ import annotations

import re
import typing as t
from collections.abc import Callable, Iterator

import httpx
import pytest
from flask import Flask
from tracker import create_app

from karaffe.sessions import CookieSessionInterface

from .conftest import PASSWORD, World

FIREFOX = "Mozilla/5.0 (X11; Linux x86_64; rv:130.0) Gecko/20100101 Firefox/130.0"
PHONE = (
    "Mozilla/5.0 (Linux; Android 14) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/129.0 Mobile Safari/537.36"
)


@pytest.fixture
def app(karaffe_config: dict[str, t.Any]) -> Flask:
    return create_app({k: v for k, v in karaffe_config.items() if k != "SERVER_NAME"})


@pytest.fixture
def server(live_server: str, world: World) -> str:
    return live_server


@pytest.fixture
def browser(server: str) -> Iterator[Callable[..., httpx.Client]]:
    """``browser(agent=...)``: an HTTP client with its own cookies."""
    clients: list[httpx.Client] = []

    def open_(agent: str = FIREFOX, cookie: str | None = None) -> httpx.Client:
        client = httpx.Client(base_url=server, headers={"User-Agent": agent}, timeout=10)
        if cookie is not None:
            # As the server set it (host-only), so that a new one replaces it.
            client.cookies.set("session", cookie, domain=httpx.URL(server).host)
        clients.append(client)
        return client

    yield open_
    for client in clients:
        client.close()


def log_in(client: httpx.Client, email: str = "alice@example.com", password: str = PASSWORD) -> str:
    """Log ``client`` in through the login form; its session cookie after."""
    rv = client.post("/login", data={"email": email, "password": password})
    assert rv.status_code == 302, rv.text
    return client.cookies["session"]


def session_token(app: Flask, cookie: str) -> str:
    """The login session's token the cookie carries (its id, as the server knows it)."""
    serializer = CookieSessionInterface().get_signing_serializer(app)
    assert serializer is not None
    return t.cast(str, serializer.loads(cookie)["_login"])


def session_rows(page: str) -> list[tuple[int, str, bool]]:
    """(id, browser, whether it is this session) of each row of the sessions page."""
    rows = re.findall(r"<tr(?: class=\"current\")?>(.*?)</tr>", page, re.S)
    found = []
    for row in rows:
        action = re.search(r'action="/settings/sessions/(\d+)/end"', row)
        if action is None:
            continue
        browser = re.search(r"<td title=\"[^\"]*\">([^<]*)", row)
        assert browser is not None
        found.append((int(action.group(1)), browser.group(1).strip(), "this session" in row))
    return found


def test_a_cookie_kept_from_before_logout_gets_401_on_the_api_and_a_login_redirect_on_a_page(
    browser: Callable[..., httpx.Client],
) -> None:
    alice = browser()
    kept = log_in(alice)
    assert alice.get("/api/v1/me").status_code == 200
    assert alice.post("/logout").status_code == 302
    replay = browser(cookie=kept)
    assert replay.get("/api/v1/me").status_code == 401
    page = replay.get("/o/acme/")
    assert page.status_code == 302
    assert page.headers["location"] == "/login?next=/o/acme/"


def test_after_a_password_change_another_sessions_cookie_is_refused_and_this_one_continues(
    browser: Callable[..., httpx.Client],
) -> None:
    laptop, phone = browser(), browser(PHONE)
    log_in(phone)
    before = log_in(laptop)
    changed = laptop.post(
        "/settings/password", data={"current_password": PASSWORD, "password": "a new secret"}
    )
    assert changed.status_code == 302
    assert phone.get("/api/v1/me").status_code == 401
    assert laptop.get("/api/v1/me").status_code == 200
    # The changing browser got a new session id: a copy of its old cookie is refused.
    assert browser(cookie=before).get("/api/v1/me").status_code == 401
    assert browser().post("/login", data={"email": "alice@example.com",
                                          "password": PASSWORD}).status_code == 401  # fmt: skip
    log_in(browser(), password="a new secret")


def test_a_password_change_needs_the_current_password(
    browser: Callable[..., httpx.Client],
) -> None:
    laptop, phone = browser(), browser(PHONE)
    log_in(phone)
    log_in(laptop)
    refused = laptop.post(
        "/settings/password", data={"current_password": "a guess", "password": "a new secret"}
    )
    assert refused.status_code == 422
    assert "This is not your current password." in refused.text
    assert phone.get("/api/v1/me").status_code == 200


def test_the_settings_page_lists_sessions_and_ends_the_one_chosen(
    browser: Callable[..., httpx.Client],
) -> None:
    laptop, phone = browser(), browser(PHONE)
    log_in(phone)
    log_in(laptop)
    page = laptop.get("/settings/sessions").text
    rows = session_rows(page)
    assert [(name, current) for _, name, current in rows] == [
        ("Firefox on Linux", True),
        ("Chrome on Android", False),
    ]
    assert "127.0.0.1" in page
    phone_id = rows[1][0]
    ended = laptop.post(f"/settings/sessions/{phone_id}/end")
    assert ended.status_code == 302
    assert phone.get("/api/v1/me").status_code == 401
    assert phone.get("/settings/sessions").headers["location"].startswith("/login")
    assert laptop.get("/api/v1/me").status_code == 200
    assert [name for _, name, _ in session_rows(laptop.get("/settings/sessions").text)] == [
        "Firefox on Linux"
    ]


def test_ending_all_other_sessions_keeps_this_one(browser: Callable[..., httpx.Client]) -> None:
    others = [browser(PHONE), browser()]
    for other in others:
        log_in(other)
    laptop = browser()
    log_in(laptop)
    assert laptop.post("/settings/sessions/end-others").status_code == 302
    assert [other.get("/api/v1/me").status_code for other in others] == [401, 401]
    assert laptop.get("/api/v1/me").status_code == 200


def test_nobody_ends_someone_elses_session(browser: Callable[..., httpx.Client]) -> None:
    bob = browser()
    log_in(bob, "bob@example.com")
    (bobs_id, _, _) = session_rows(bob.get("/settings/sessions").text)[0]
    alice = browser()
    log_in(alice)
    assert alice.post(f"/settings/sessions/{bobs_id}/end").status_code == 404
    assert bob.get("/api/v1/me").status_code == 200


def test_the_session_id_changes_at_login(app: Flask, browser: Callable[..., httpx.Client]) -> None:
    client = browser()
    first = log_in(client)
    second = log_in(client)
    assert session_token(app, first) != session_token(app, second)
    # The browser's earlier session ended with the new login.
    assert browser(cookie=first).get("/api/v1/me").status_code == 401
    # A session someone planted before the login is not the one logged in.
    mallory = browser()
    planted = log_in(mallory, "erin@example.com")
    victim = browser(cookie=planted)
    after = log_in(victim)
    assert session_token(app, after) != session_token(app, planted)
    assert victim.get("/api/v1/me").json()["email"] == "alice@example.com"
    assert mallory.get("/api/v1/me").status_code == 401
