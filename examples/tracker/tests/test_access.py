"""Access that ends, over real HTTP against a running tracker, with the
embedded broker (the app streams itself) and with Redis and two relays: a
member who leaves, is removed, or is lowered from a role, someone whose API
token is revoked or who logs out, loses the live streams that access opened
within a second on every relay, and the old channel token is refused."""

from __future__ import annotations

import json
import re
import threading
import time
import typing as t
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import httpx
import pytest
from flask import Flask
from tracker import create_app

from karaffe._servers import free_port
from karaffe.auth import get_user
from karaffe.events import channel_token
from karaffe.events.protocol import SSEMessage, SSEParser
from karaffe.events.relay import Relay
from karaffe.events.relay import make_server as relay_server

from .conftest import PASSWORD, World

#: How soon an open stream must end once access ends.
WITHIN = 1.0


class RelayThread:
    """``karaffe relay`` for the app, served by uvicorn in a thread."""

    def __init__(self, app: Flask, port: int) -> None:
        self.relay = Relay.from_app(app)
        self.port = port
        self.server = relay_server(
            self.relay, "127.0.0.1", self.port, loop="asyncio", log_level="warning"
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "relay did not start"
            time.sleep(0.02)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/events/stream"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class Tracker:
    """The running tracker, and where its streams are served."""

    url: str
    app: Flask
    relays: list[RelayThread] = field(default_factory=list)

    @property
    def stream_urls(self) -> list[str]:
        """Every place a browser may be streaming from."""
        return [r.url for r in self.relays] or [self.url + "/events/stream"]


@pytest.fixture(params=["memory", pytest.param("relay", marks=pytest.mark.redis)])
def broker(request: pytest.FixtureRequest) -> str:
    return t.cast(str, request.param)


@pytest.fixture
def relay_ports(broker: str) -> list[int]:
    """Ports of the two relays (none with the embedded broker)."""
    return [free_port(), free_port()] if broker == "relay" else []


@pytest.fixture
def app(
    request: pytest.FixtureRequest, relay_ports: list[int], karaffe_config: dict[str, t.Any]
) -> Flask:
    config = {k: v for k, v in karaffe_config.items() if k != "SERVER_NAME"}
    if relay_ports:
        config.update(
            REDIS_URL=request.getfixturevalue("redis_url"),
            EVENTS_REDIS_PREFIX=f"access-{uuid.uuid4().hex[:8]}:",
            # Pages send browsers to the first relay; the test uses both.
            EVENTS_RELAY_URL=f"http://127.0.0.1:{relay_ports[0]}/events/stream",
        )
    return create_app(config)


@pytest.fixture
def tracker(
    app: Flask, live_server: str, relay_ports: list[int], world: World
) -> Iterator[Tracker]:
    running = Tracker(live_server, app)
    try:
        running.relays = [RelayThread(app, port) for port in relay_ports]
        yield running
    finally:
        for relay in running.relays:
            relay.stop()


@pytest.fixture
def browser(tracker: Tracker) -> Iterator[Callable[[str], httpx.Client]]:
    """``browser("dave")``: an HTTP client logged in as that user."""
    clients: list[httpx.Client] = []

    def log_in(name: str) -> httpx.Client:
        # Generous: a page is not timed here, and a loaded machine (two
        # test workers on two cores) can take seconds to answer one.
        client = httpx.Client(base_url=tracker.url, timeout=30.0)
        clients.append(client)
        rv = client.post("/login", data={"email": f"{name}@example.com", "password": PASSWORD})
        assert rv.status_code == 302, rv.text
        return client

    yield log_in
    for client in clients:
        client.close()


def live_config(client: httpx.Client, path: str) -> dict[str, t.Any]:
    """What a page tells its script to follow: stream URL, channels, token, cursor."""
    page = client.get(path)
    assert page.status_code == 200
    found = re.search(r'<script id="live-config" type="application/json">(.*?)</script>', page.text)
    assert found is not None, "the page is not live"
    return t.cast(dict[str, t.Any], json.loads(found.group(1)))


class Stream:
    """An open SSE stream, read on demand."""

    def __init__(self, url: str, config: dict[str, t.Any]) -> None:
        self.client = httpx.Client(timeout=httpx.Timeout(5.0, read=3.0))
        params = {"channel": config["channels"], "token": config["token"]}
        self.channels: list[str] = list(config["channels"])
        self._cm = self.client.stream("GET", url, params=params)
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200, self.response.read()
        self.parser = SSEParser()
        self.chunks = self.response.iter_raw()

    def until_end(self) -> tuple[list[SSEMessage], float]:
        """The messages up to the end of the stream, and when it ended."""
        messages: list[SSEMessage] = []
        for chunk in self.chunks:
            messages.extend(self.parser.feed(chunk))
        return messages, time.monotonic()

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
        self.client.close()


@pytest.fixture
def streams() -> Iterator[Callable[[str, dict[str, t.Any]], Stream]]:
    opened: list[Stream] = []

    def open_(url: str, config: dict[str, t.Any]) -> Stream:
        stream = Stream(url, config)
        opened.append(stream)
        return stream

    yield open_
    for stream in opened:
        stream.close()


def wait_until_live(tracker: Tracker, user_id: int, count: int) -> None:
    """Until each relay holds ``count`` streams of the user (the app's own
    stream listens before it answers)."""
    deadline = time.monotonic() + 5
    for relay in tracker.relays:
        while len(relay.relay.hub.by_user.get(str(user_id), ())) < count:
            assert time.monotonic() < deadline, "the relay did not take the stream"
            time.sleep(0.01)


def assert_cut(stream: Stream, since: float) -> None:
    """The stream ends with ``auth-expired``; before it, only the viewer's
    own channel may speak (the unread count that leaving lowered), never a
    project's."""
    messages, ended = stream.until_end()
    *before, last = [(m.event, json.loads(m.data)) for m in messages]
    assert last == ("auth-expired", {"reason": "revoked"})
    own = [channel for channel in stream.channels if channel.startswith("user:")]
    assert len(own) == 1, stream.channels
    for event, data in before:
        assert (event, data["channel"], data["type"]) == (
            "message",
            own[0],
            "notifications.unread",
        ), data
    assert ended - since < WITHIN, f"the stream ended {ended - since:.2f} s after access did"


def assert_refused(tracker: Tracker, config: dict[str, t.Any]) -> None:
    for url in tracker.stream_urls:
        rv = httpx.get(url, params={"channel": config["channels"], "token": config["token"]})
        assert rv.status_code in (401, 403), rv.text
        assert rv.json()["type"] == "urn:karaffe:problem:revoked-token"
        assert "data:" not in rv.text


def follow(
    tracker: Tracker, streams: Callable[..., Stream], config: dict[str, t.Any], user_id: int
) -> list[Stream]:
    """One stream of ``config`` on every relay (or the app's own)."""
    opened = [streams(url, config) for url in tracker.stream_urls]
    wait_until_live(tracker, user_id, 1)
    return opened


def project_page(world: World) -> str:
    return f"/o/acme/projects/{world.projects['website']}"


def test_a_member_who_leaves_loses_the_stream_and_the_token(
    tracker: Tracker, world: World, browser: Callable[[str], httpx.Client], streams: t.Any
) -> None:
    dave = browser("dave")
    config = live_config(dave, project_page(world))
    opened = follow(tracker, streams, config, world.users["dave"])
    assert dave.delete("/api/v1/orgs/acme/members/me").status_code == 204
    since = time.monotonic()
    for stream in opened:
        assert_cut(stream, since)
    assert_refused(tracker, config)


def test_a_removed_member_loses_the_stream_and_the_token(
    tracker: Tracker, world: World, browser: Callable[[str], httpx.Client], streams: t.Any
) -> None:
    dave = browser("dave")
    config = live_config(dave, project_page(world))
    opened = follow(tracker, streams, config, world.users["dave"])
    removed = browser("alice").post(f"/o/acme/members/{world.users['dave']}/remove")
    assert removed.status_code == 302
    since = time.monotonic()
    for stream in opened:
        assert_cut(stream, since)
    assert_refused(tracker, config)
    assert dave.get(project_page(world)).status_code == 404


def test_a_member_lowered_from_a_role_loses_the_stream_and_the_token(
    tracker: Tracker, world: World, browser: Callable[[str], httpx.Client], streams: t.Any
) -> None:
    bob = browser("bob")
    config = live_config(bob, project_page(world))
    opened = follow(tracker, streams, config, world.users["bob"])
    lowered = browser("alice").put(
        f"/api/v1/orgs/acme/members/{world.users['bob']}/role", json={"role": "member"}
    )
    assert lowered.status_code == 200
    since = time.monotonic()
    for stream in opened:
        assert_cut(stream, since)
    assert_refused(tracker, config)
    # What the lower role still sees, a page hands out again.
    time.sleep(0.01)
    fresh = live_config(bob, project_page(world))
    streams(tracker.stream_urls[0], fresh)


def test_revoking_an_api_token_cuts_the_streams_opened_with_it_only(
    tracker: Tracker, world: World, browser: Callable[[str], httpx.Client], streams: t.Any
) -> None:
    dave = browser("dave")
    page_config = live_config(dave, project_page(world))
    channels = page_config["channels"]
    # A script using the API gets a channel token the way the page does, but
    # for a request authenticated by its API token.
    headers = {"Authorization": f"Bearer {world.tokens['dave']}"}
    with tracker.app.test_request_context("/api/v1/me", headers=headers):
        user = get_user()
        assert user is not None
        script_config = {"channels": channels, "token": channel_token(user, channels)}
    from_script = follow(tracker, streams, script_config, world.users["dave"])
    from_page = [streams(url, page_config) for url in tracker.stream_urls]
    wait_until_live(tracker, world.users["dave"], 2)
    tokens_page = dave.get("/settings/tokens").text
    found = re.search(r'href="/settings/tokens/(\d+)/revoke"', tokens_page)
    assert found is not None
    assert dave.post(f"/settings/tokens/{found.group(1)}/revoke").status_code == 302
    since = time.monotonic()
    for stream in from_script:
        assert_cut(stream, since)
    assert_refused(tracker, script_config)
    # The pages dave has open in his browser go on.
    alice = browser("alice")
    alice.post(f"/api/v1/projects/{world.projects['website']}/issues", json={"title": "Still"})
    for stream in from_page:
        message = _next_event(stream)
        assert json.loads(message.data)["type"] == "issue.created"


def test_logging_out_cuts_that_sessions_streams_and_not_the_others(
    tracker: Tracker, world: World, browser: Callable[[str], httpx.Client], streams: t.Any
) -> None:
    laptop, phone = browser("alice"), browser("alice")
    on_laptop = live_config(laptop, project_page(world))
    on_phone = live_config(phone, project_page(world))
    laptop_streams = follow(tracker, streams, on_laptop, world.users["alice"])
    phone_streams = [streams(url, on_phone) for url in tracker.stream_urls]
    wait_until_live(tracker, world.users["alice"], 2)
    assert laptop.post("/logout").status_code == 302
    since = time.monotonic()
    for stream in laptop_streams:
        assert_cut(stream, since)
    assert_refused(tracker, on_laptop)
    phone.post(f"/api/v1/projects/{world.projects['website']}/issues", json={"title": "Still"})
    for stream in phone_streams:
        assert json.loads(_next_event(stream).data)["type"] == "issue.created"


def _next_event(stream: Stream) -> SSEMessage:
    """The next application event of ``stream`` (heartbeats are comments)."""
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for message in stream.parser.feed(next(stream.chunks)):
            if message.event == "message":
                return message
    raise AssertionError("no event came")
