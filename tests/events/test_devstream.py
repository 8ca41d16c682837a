"""The app's own stream (embedded broker): same protocol as the relay."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from pydantic import BaseModel
from relay_harness import Stream
from werkzeug.serving import make_server

import karaffe
from karaffe._servers import free_port
from karaffe.events import Events, TokenSigner, channel_token, publish, revoke

SECRET = "dev-secret"


@pytest.fixture
def dev_app() -> karaffe.App:
    app = karaffe.App("karaffe_devstream_test")
    Events(app)
    app.configure({"TESTING": True, "SECRET_KEY": SECRET, "EVENTS_HEARTBEAT": 0.2}, environ={})
    return app


@pytest.fixture
def base_url(dev_app: karaffe.App) -> Iterator[str]:
    port = free_port()
    server = make_server("127.0.0.1", port, dev_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    server.shutdown()
    thread.join(5)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client


def token_for(app: karaffe.App, *channels: str, user: str = "u1") -> str:
    with app.app_context():
        return channel_token(user, channels or ["project:1"])


def test_stream_delivers_committed_events_and_resumes(
    dev_app: karaffe.App, base_url: str, client: httpx.Client
) -> None:
    token = token_for(dev_app)
    stream = Stream(client, f"{base_url}/events/stream", params={"token": token})
    assert stream.response.headers["x-accel-buffering"] == "no"
    with dev_app.app_context():
        publish("project:1", "issue.created", {"n": 1})
    [first] = stream.read(1)
    assert orjson.loads(first.data)["data"] == {"n": 1}
    stream.close()
    with dev_app.app_context():
        publish("project:1", "issue.created", {"n": 2})
        publish("project:1", "issue.created", {"n": 3})
    again = Stream(
        client,
        f"{base_url}/events/stream",
        params={"token": token},
        headers={"Last-Event-ID": first.id or ""},
    )
    assert [orjson.loads(m.data)["data"]["n"] for m in again.read(2)] == [2, 3]
    again.close()


@pytest.mark.parametrize(
    ("params", "status", "slug"),
    [
        ({}, 401, "missing-token"),
        ({"token": "nope"}, 401, "malformed-token"),
        ({"token": TokenSigner("other").sign("u1", ["project:1"])}, 401, "foreign-token"),
        ({"channel": "project:2"}, 403, "channel-forbidden"),
        ({"cursor": "garbage"}, 400, "invalid-cursor"),
    ],
)
def test_bad_requests_are_refused(
    dev_app: karaffe.App,
    base_url: str,
    client: httpx.Client,
    params: dict[str, str],
    status: int,
    slug: str,
) -> None:
    if "channel" in params or "cursor" in params:
        params = {**params, "token": token_for(dev_app)}
    response = client.get(f"{base_url}/events/stream", params=params)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["type"] == f"urn:karaffe:problem:{slug}"


def test_refusals_use_the_apps_problem_formatter(dev_app: karaffe.App) -> None:
    class Envelope(BaseModel):
        error: str

    class Formatter(karaffe.ProblemFormatter):
        model = Envelope

        def render(self, exc: karaffe.ApiException) -> BaseModel:
            return Envelope(error=exc.slug)

    dev_app.problem_formatter = Formatter()
    response = dev_app.test_client().get("/events/stream", query_string={"token": "nope"})
    assert (response.status_code, response.json) == (401, {"error": "malformed-token"})


def test_revocation_ends_the_stream(
    dev_app: karaffe.App, base_url: str, client: httpx.Client
) -> None:
    token = token_for(dev_app, user="u7")
    stream = Stream(client, f"{base_url}/events/stream", params={"token": token})
    with dev_app.app_context():
        revoke("u7")
    messages = stream.read_until_end()
    stream.close()
    assert [(m.event, orjson.loads(m.data)) for m in messages] == [
        ("auth-expired", {"reason": "revoked"})
    ]
    refused = client.get(f"{base_url}/events/stream", params={"token": token})
    assert refused.json()["type"] == "urn:karaffe:problem:revoked-token"


def test_revoking_a_credential_ends_only_its_streams(
    dev_app: karaffe.App, base_url: str, client: httpx.Client
) -> None:
    with dev_app.app_context():
        laptop = channel_token("u7", ["project:1"], credential="session:1")
        phone = channel_token("u7", ["project:1"], credential="session:2")
    ended = Stream(client, f"{base_url}/events/stream", params={"token": laptop})
    kept = Stream(client, f"{base_url}/events/stream", params={"token": phone})
    with dev_app.app_context():
        revoke("u7", credential="session:1")
        publish("project:1", "issue.created", {"n": 1})
    assert [m.event for m in ended.read_until_end()] == ["auth-expired"]
    assert orjson.loads(kept.read(1)[0].data)["data"] == {"n": 1}
    ended.close()
    kept.close()
    refused = client.get(f"{base_url}/events/stream", params={"token": laptop})
    assert refused.json()["type"] == "urn:karaffe:problem:revoked-token"


def test_a_token_issued_after_a_revocation_is_accepted(
    dev_app: karaffe.App, base_url: str, client: httpx.Client
) -> None:
    with dev_app.app_context():
        revoke("u7")
    time.sleep(0.01)  # tokens carry their issue time to the millisecond
    fresh = token_for(dev_app, user="u7")
    stream = Stream(client, f"{base_url}/events/stream", params={"token": fresh})
    assert stream.response.status_code == 200
    stream.close()


def test_js_client_is_served(base_url: str, client: httpx.Client) -> None:
    response = client.get(f"{base_url}/events/static/karaffe-events.js")
    assert response.status_code == 200
    assert "KaraffeEvents" in response.text


def test_stream_is_a_404_when_the_relay_serves_it() -> None:
    app = karaffe.App("karaffe_devstream_off")
    Events(app)
    app.configure({"TESTING": True, "SECRET_KEY": SECRET, "EVENTS_SERVE_STREAM": "no"}, environ={})
    response = app.test_client().get("/events/stream")
    assert response.status_code == 404
    assert response.json == {
        "type": "urn:karaffe:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "Events are streamed by the relay (EVENTS_RELAY_URL).",
        "errors": [],
    }
