"""Key rotation over real HTTP, configured the way docs/deploy.md tells an operator
to (``KARAFFE_SECRET_KEY_FALLBACKS`` in the environment): a value re-signed with
the whole old key is still accepted; one re-signed with any single character of it
(the forgery a string iterated as keys allowed) is refused, for the session
cookie, channel tokens and pagination cursors alike."""

from __future__ import annotations

import typing as t

import httpx
import pytest
from flask import Flask
from tracker import create_app

from karaffe.events import channel_token
from karaffe.sessions import CookieSessionInterface
from karaffe.signing import CURSOR_SALT, Signer

from .conftest import PASSWORD, World

OLD_KEY = "old-secret-key-of-more-than-32-characters"
ONE_CHARACTER_KEYS = sorted(set(OLD_KEY))


@pytest.fixture
def app(karaffe_config: dict[str, t.Any], monkeypatch: pytest.MonkeyPatch) -> Flask:
    monkeypatch.setenv("KARAFFE_SECRET_KEY_FALLBACKS", OLD_KEY)
    config = {k: v for k, v in karaffe_config.items() if k != "SERVER_NAME"}
    return create_app(config)


@pytest.fixture
def server(live_server: str, world: World) -> str:
    return live_server


def resign(token: str, key: str, salt: str, serializer: t.Any = None) -> str:
    """``token``'s payload signed again with ``key``, as an attacker would."""
    signer = Signer(key, salt=salt, **({"serializer": serializer} if serializer else {}))
    return signer.dumps(signer.loads_unverified(token))


def resign_cursor(cursor: str, key: str) -> str:
    """A page's cursor (its signed token, then the side of the page it goes
    to) with the token signed again with ``key``."""
    token, side = cursor.rsplit(".", 1)
    return f"{resign(token, key, CURSOR_SALT)}.{side}"


def test_fallback_from_the_environment_is_one_key(app: Flask) -> None:
    assert app.config["SECRET_KEY_FALLBACKS"] == [OLD_KEY]


def test_session_cookie_signed_with_one_character_of_the_old_key_is_refused(server: str) -> None:
    with httpx.Client(base_url=server) as browser:
        browser.post("/login", data={"email": "alice@example.com", "password": PASSWORD})
        cookie = browser.cookies["session"]
        assert browser.get("/api/v1/me").status_code == 200
    interface = CookieSessionInterface()
    salt, serializer = interface.salt, interface.serializer
    for key in ONE_CHARACTER_KEYS:
        forged = resign(cookie, key, salt, serializer)
        with httpx.Client(base_url=server, cookies={"session": forged}) as attacker:
            assert attacker.get("/api/v1/me").status_code == 401, key
    rotated = resign(cookie, OLD_KEY, salt, serializer)
    with httpx.Client(base_url=server, cookies={"session": rotated}) as operator:
        assert operator.get("/api/v1/me").status_code == 200


def test_channel_token_signed_with_one_character_of_the_old_key_is_refused(
    app: Flask, server: str, world: World
) -> None:
    from karaffe.signing import CHANNEL_TOKEN_SALT

    channel = f"project:{world.projects['website']}"
    with app.app_context():
        token = channel_token(world.users["alice"], [channel])
    with httpx.Client(base_url=server, timeout=5) as client:
        for key in ONE_CHARACTER_KEYS:
            forged = resign(token, key, CHANNEL_TOKEN_SALT)
            rv = client.get("/events/stream", params={"token": forged, "channel": channel})
            assert rv.status_code == 401, key
            assert "data:" not in rv.text
        rotated = resign(token, OLD_KEY, CHANNEL_TOKEN_SALT)
        with client.stream(
            "GET", "/events/stream", params={"token": rotated, "channel": channel}
        ) as rv:
            assert rv.status_code == 200
            assert rv.headers["content-type"].startswith("text/event-stream")


def test_cursor_signed_with_one_character_of_the_old_key_is_refused(
    server: str, world: World
) -> None:
    headers = {"Authorization": f"Bearer {world.tokens['alice']}"}
    url = f"/api/v1/projects/{world.projects['website']}/issues"
    with httpx.Client(base_url=server, headers=headers) as client:
        first = client.get(url, params={"limit": 1})
        cursor = httpx.URL(first.links["next"]["url"]).params["cursor"]
        for key in ONE_CHARACTER_KEYS:
            rv = client.get(url, params={"limit": 1, "cursor": resign_cursor(cursor, key)})
            assert rv.status_code == 400, key
            assert rv.json()["type"] == "urn:karaffe:problem:invalid-cursor"
        rotated = client.get(url, params={"limit": 1, "cursor": resign_cursor(cursor, OLD_KEY)})
        assert rotated.status_code == 200
