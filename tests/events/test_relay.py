"""The relay against a real Redis: auth, live delivery, exact resume, reset,
token expiry, revocation, health and metrics."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator

import httpx
import orjson
import pytest
from relay_harness import RelayThread, Stream, running_relay

import karaffe
from karaffe.events import Events, RedisBroker, TokenSigner
from karaffe.events.protocol import Cursor
from karaffe.events.relay import RelayConfig

pytestmark = pytest.mark.redis

SECRET = "relay-secret"


@pytest.fixture
def prefix() -> str:
    return f"t{uuid.uuid4().hex[:8]}:"


@pytest.fixture(params=["direct", "asgi-send"])
def config(request: pytest.FixtureRequest, redis_url: str, prefix: str) -> RelayConfig:
    """Both ways the relay writes: to uvicorn's transport, and through ASGI ``send``."""
    return RelayConfig(
        secret_key=SECRET,
        redis_url=redis_url,
        prefix=prefix,
        heartbeat=0.5,
        direct_writes=request.param == "direct",
    )


@pytest.fixture
def broker(redis_url: str, prefix: str) -> Iterator[RedisBroker]:
    broker = RedisBroker(redis_url, history_size=50, prefix=prefix)
    yield broker
    broker.close()


@pytest.fixture
def relay(config: RelayConfig) -> Iterator[RelayThread]:
    with running_relay(config) as relay:
        yield relay


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client


@pytest.fixture
def token() -> Callable[..., str]:
    signer = TokenSigner(SECRET)

    def make(*channels: str, user: str = "u1", max_age: int = 600) -> str:
        return signer.sign(user, channels or ["project:1"], max_age=max_age)

    return make


@pytest.fixture
def open_stream(client: httpx.Client, relay: RelayThread) -> Iterator[Callable[..., Stream]]:
    streams: list[Stream] = []

    def open_(params: dict[str, object], headers: dict[str, str] | None = None) -> Stream:
        stream = Stream(client, f"{relay.url}/events/stream", params=params, headers=headers)
        streams.append(stream)
        assert stream.response.status_code == 200, stream.response.read()
        return stream

    yield open_
    for stream in streams:
        stream.close()


def data(message: object) -> object:
    return orjson.loads(message.data)  # type: ignore[attr-defined]


def wait_for_subscribers(relay: RelayThread, n: int) -> None:
    deadline = time.monotonic() + 5
    while len(relay.relay.hub.feeds) < n or any(
        len(f.joining) for f in relay.relay.hub.feeds.values()
    ):
        assert time.monotonic() < deadline, "relay did not subscribe"
        time.sleep(0.01)


# -- refusals ---------------------------------------------------------------------


def problem(response: httpx.Response) -> dict[str, object]:
    assert response.headers["content-type"] == "application/problem+json"
    return orjson.loads(response.read())  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("make_token", "status", "slug"),
    [
        (lambda t: None, 401, "missing-token"),
        (lambda t: "not-a-token", 401, "malformed-token"),
        (lambda t: t()[:-2] + "xx", 401, "tampered-token"),
        (lambda t: TokenSigner("other-app").sign("u1", ["project:1"]), 401, "foreign-token"),
        (lambda t: TokenSigner(SECRET).sign("u1", ["project:1"], max_age=-1), 401, "expired-token"),
        (lambda t: t("project:2"), 403, "channel-forbidden"),
    ],
    ids=["missing", "malformed", "tampered", "foreign", "expired", "forbidden-channel"],
)
def test_bad_tokens_are_refused_with_no_data(
    client: httpx.Client,
    relay: RelayThread,
    token: Callable[..., str],
    make_token: Callable[[Callable[..., str]], str | None],
    status: int,
    slug: str,
) -> None:
    params: dict[str, object] = {"channel": "project:1"}
    value = make_token(token)
    if value is not None:
        params["token"] = value
    response = client.get(f"{relay.url}/events/stream", params=params)
    assert response.status_code == status
    body = problem(response)
    assert body["status"] == status
    assert body["type"] == f"urn:karaffe:problem:{slug}"
    assert body["errors"] == []
    assert "data:" not in response.text


def test_a_refusal_is_the_problem_the_dev_stream_renders(
    client: httpx.Client, relay: RelayThread, token: Callable[..., str]
) -> None:
    app = karaffe.App("karaffe_relay_same_problem")
    Events(app)
    app.configure({"TESTING": True, "SECRET_KEY": SECRET}, environ={})
    tampered = token()[:-2] + "xx"
    response = client.get(f"{relay.url}/events/stream", params={"token": tampered})
    dev = app.test_client().get("/events/stream", query_string={"token": tampered})
    assert (response.status_code, dev.status_code) == (401, 401)
    assert dev.content_type == "application/problem+json"
    assert (
        problem(response)
        == dev.json
        == {
            "type": "urn:karaffe:problem:tampered-token",
            "title": "Tampered channel token",
            "status": 401,
            "detail": "The channel token's signature does not match its content.",
            "errors": [],
        }
    )


def test_refusals_name_the_apps_problem_types(redis_url: str, client: httpx.Client) -> None:
    app = karaffe.App("karaffe_relay_type_base")
    Events(app)
    app.configure(
        {
            "TESTING": True,
            "SECRET_KEY": SECRET,
            "REDIS_URL": redis_url,
            "PROBLEM_TYPE_BASE": "https://errors.example/",
        },
        environ={},
    )
    with running_relay(RelayConfig.from_app(app)) as relay:
        response = client.get(f"{relay.url}/events/stream")
    assert problem(response)["type"] == "https://errors.example/missing-token"


def test_malformed_cursor_is_a_400(
    client: httpx.Client, relay: RelayThread, token: Callable[..., str]
) -> None:
    response = client.get(
        f"{relay.url}/events/stream",
        params={"token": token()},
        headers={"Last-Event-ID": "garbage"},
    )
    assert response.status_code == 400
    assert problem(response) == {
        "type": "urn:karaffe:problem:invalid-cursor",
        "title": "Invalid cursor",
        "status": 400,
        "detail": "cursor segment 0 is malformed: 'garbage'",
        "errors": [],
    }


def test_token_in_a_cookie_is_accepted(
    client: httpx.Client, relay: RelayThread, token: Callable[..., str], broker: RedisBroker
) -> None:
    stream = Stream(
        client, f"{relay.url}/events/stream", headers={"Cookie": f"karaffe_events={token()}"}
    )
    try:
        assert stream.response.status_code == 200
        wait_for_subscribers(relay, 1)
        broker.publish("project:1", "issue.created", b'{"id":1}')
        [message] = stream.read(1)
        assert data(message)["type"] == "issue.created"  # type: ignore[index]
    finally:
        stream.close()


# -- delivery and resume ------------------------------------------------------------


def test_stream_headers(open_stream: Callable[..., Stream], token: Callable[..., str]) -> None:
    stream = open_stream({"token": token()})
    headers = stream.response.headers
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert headers["x-accel-buffering"] == "no"
    assert headers["cache-control"] == "no-store"


def test_live_events_arrive_in_order_with_a_cursor_id(
    open_stream: Callable[..., Stream],
    token: Callable[..., str],
    broker: RedisBroker,
    relay: RelayThread,
) -> None:
    stream = open_stream({"token": token()})
    wait_for_subscribers(relay, 1)
    sent = [broker.publish("project:1", "issue.created", b'{"n":%d}' % n) for n in range(5)]
    messages = stream.read(5)
    assert [data(m) for m in messages] == [
        {"id": e.id, "channel": "project:1", "type": "issue.created", "data": {"n": n}}
        for n, e in enumerate(sent)
    ]
    last = Cursor.parse(messages[-1].id or "").get("project:1")
    assert last is not None and str(last.id) == sent[-1].id


def test_heartbeats_keep_idle_streams_alive(
    open_stream: Callable[..., Stream], token: Callable[..., str], relay: RelayThread
) -> None:
    stream = open_stream({"token": token()})
    wait_for_subscribers(relay, 1)
    deadline = time.monotonic() + 5
    while stream.parser.comments == 0:
        assert time.monotonic() < deadline
        stream.messages.extend(stream.parser.feed(next(stream._chunks)))
    assert stream.parser.comments >= 1


def test_reconnect_with_last_event_id_resumes_exactly(
    open_stream: Callable[..., Stream],
    token: Callable[..., str],
    broker: RedisBroker,
    relay: RelayThread,
) -> None:
    channels = ["project:1", "project:2"]
    tok = token(*channels)
    first = open_stream({"token": tok})
    wait_for_subscribers(relay, 2)
    broker.publish("project:1", "a", b"1")
    broker.publish("project:2", "b", b"2")
    got = first.read(2)
    first.close()
    missed = [broker.publish(channels[n % 2], "m", b"%d" % n) for n in range(6)]
    second = open_stream({"token": tok}, headers={"Last-Event-ID": got[-1].id or ""})
    wait_for_subscribers(relay, 2)
    after = [broker.publish("project:1", "live", b"%d" % n) for n in range(3)]
    received = second.read(9)
    ids = [(data(m)["channel"], data(m)["id"]) for m in received]  # type: ignore[index]
    per_channel = {
        ch: [data(m)["id"] for m in received if data(m)["channel"] == ch]  # type: ignore[index]
        for ch in channels
    }
    assert sorted(ids) == sorted((e.channel, e.id) for e in missed + after)
    assert len(set(ids)) == 9, "no duplicates"
    assert per_channel["project:2"] == [e.id for e in missed if e.channel == "project:2"]
    assert per_channel["project:1"] == [e.id for e in missed + after if e.channel == "project:1"]


def test_cursor_stamped_at_render_time_replays_what_came_before_connect(
    open_stream: Callable[..., Stream],
    token: Callable[..., str],
    broker: RedisBroker,
) -> None:
    from karaffe.events.protocol import encode_cursor

    stamped = encode_cursor(broker.positions(["project:1"]))
    early = broker.publish("project:1", "early", b"1")
    stream = open_stream({"token": token(), "cursor": stamped})
    [message] = stream.read(1)
    assert data(message)["id"] == early.id  # type: ignore[index]


def test_resume_beyond_history_gets_reset(
    open_stream: Callable[..., Stream],
    token: Callable[..., str],
    broker: RedisBroker,
    client: httpx.Client,
    relay: RelayThread,
) -> None:
    from karaffe.events.protocol import encode_cursor

    stamped = encode_cursor(broker.positions(["project:1"]))
    broker.publish("project:1", "first", b"0")
    stale = encode_cursor(broker.positions(["project:1"]))
    for n in range(200):
        broker.publish("project:1", "flood", b"%d" % n)
    stream = open_stream({"token": token(), "cursor": stale})
    [message] = stream.read(1)
    assert message.event == "reset"
    assert data(message) == {"channel": "project:1"}
    head = Cursor.parse(message.id or "").get("project:1")
    assert head == broker.positions(["project:1"])["project:1"]
    assert stamped != stale
    # Counted as it is sent, while the stream is still open.
    assert "karaffe_relay_resets_total 1\n" in client.get(f"{relay.url}/metrics").text


def test_many_connections_share_one_subscription(
    open_stream: Callable[..., Stream],
    token: Callable[..., str],
    broker: RedisBroker,
    relay: RelayThread,
) -> None:
    streams = [open_stream({"token": token()}) for _ in range(5)]
    wait_for_subscribers(relay, 1)
    assert len(relay.relay.hub.feeds) == 1
    event = broker.publish("project:1", "x", b"{}")
    for stream in streams:
        assert data(stream.read(1)[0])["id"] == event.id  # type: ignore[index]


def test_relay_restart_loses_nothing(
    config: RelayConfig,
    client: httpx.Client,
    token: Callable[..., str],
    broker: RedisBroker,
) -> None:
    tok = token()
    with running_relay(config) as relay:
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": tok})
        wait_for_subscribers(relay, 1)
        broker.publish("project:1", "before", b"0")
        [last] = stream.read(1)
        stream.close()
    during = [broker.publish("project:1", "during", b"%d" % n) for n in range(3)]
    with running_relay(config) as relay:
        stream = Stream(
            client,
            f"{relay.url}/events/stream",
            params={"token": tok},
            headers={"Last-Event-ID": last.id or ""},
        )
        wait_for_subscribers(relay, 1)
        after = broker.publish("project:1", "after", b"9")
        got = [data(m)["id"] for m in stream.read(4)]  # type: ignore[index]
        stream.close()
    assert got == [e.id for e in [*during, after]]


# -- token lifetime and revocation ---------------------------------------------------


def test_token_expiry_warns_then_ends_the_stream(
    redis_url: str, prefix: str, client: httpx.Client, token: Callable[..., str]
) -> None:
    config = RelayConfig(secret_key=SECRET, redis_url=redis_url, prefix=prefix, token_notice=1.0)
    with running_relay(config) as relay:
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": token(max_age=2)})
        messages = stream.read_until_end(timeout=6)
        stream.close()
    assert [m.event for m in messages] == ["token-expiring", "auth-expired"]
    assert data(messages[1]) == {"reason": "expired"}


def test_revocation_cuts_open_streams_and_refuses_old_tokens(
    open_stream: Callable[..., Stream],
    client: httpx.Client,
    token: Callable[..., str],
    broker: RedisBroker,
    relay: RelayThread,
) -> None:
    victim = open_stream({"token": token(user="u9")})
    other = open_stream({"token": token(user="u1")})
    wait_for_subscribers(relay, 1)
    old = token(user="u9")
    time.sleep(0.01)
    broker.revoke("u9", time.time())
    messages = victim.read_until_end(timeout=2)
    assert [(m.event, data(m)) for m in messages] == [("auth-expired", {"reason": "revoked"})]
    event = broker.publish("project:1", "still", b"1")
    assert data(other.read(1)[0])["id"] == event.id  # type: ignore[index]
    response = client.get(f"{relay.url}/events/stream", params={"token": old})
    assert response.status_code == 401
    assert problem(response)["type"] == "urn:karaffe:problem:revoked-token"


def test_revoking_a_credential_cuts_only_the_streams_bound_to_it(
    open_stream: Callable[..., Stream],
    client: httpx.Client,
    broker: RedisBroker,
    relay: RelayThread,
) -> None:
    signer = TokenSigner(SECRET)
    laptop = signer.sign("u9", ["project:1"], credential="session:1")
    phone = signer.sign("u9", ["project:1"], credential="session:2")
    ended, kept = open_stream({"token": laptop}), open_stream({"token": phone})
    wait_for_subscribers(relay, 1)
    time.sleep(0.01)
    broker.revoke("u9", time.time(), "session:1")
    assert [m.event for m in ended.read_until_end(timeout=2)] == ["auth-expired"]
    event = broker.publish("project:1", "still", b"1")
    assert data(kept.read(1)[0])["id"] == event.id  # type: ignore[index]
    response = client.get(f"{relay.url}/events/stream", params={"token": laptop})
    assert problem(response)["type"] == "urn:karaffe:problem:revoked-token"
    time.sleep(0.01)  # tokens carry their issue time to the millisecond
    fresh = signer.sign("u9", ["project:1"], credential="session:1")
    open_stream({"token": fresh})


# -- operations ----------------------------------------------------------------------


def test_healthz_and_metrics(
    client: httpx.Client,
    relay: RelayThread,
    open_stream: Callable[..., Stream],
    token: Callable[..., str],
    broker: RedisBroker,
) -> None:
    stream = open_stream({"token": token()})
    wait_for_subscribers(relay, 1)
    broker.publish("project:1", "x", b"1")
    stream.read(1)
    health = client.get(f"{relay.url}/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    client.get(f"{relay.url}/events/stream")
    metrics = client.get(f"{relay.url}/metrics").text
    assert "karaffe_relay_connections 1\n" in metrics
    assert "karaffe_relay_events_in_total 1\n" in metrics
    assert "karaffe_relay_deliveries_total 1\n" in metrics
    assert 'karaffe_relay_refused_total{code="missing-token"} 1\n' in metrics


def test_unknown_path_is_a_404_problem(client: httpx.Client, relay: RelayThread) -> None:
    response = client.get(f"{relay.url}/nope")
    assert response.status_code == 404
    assert problem(response)["type"] == "urn:karaffe:problem:not-found"


def test_cors_allows_listed_origins_only(redis_url: str, prefix: str, client: httpx.Client) -> None:
    config = RelayConfig(
        secret_key=SECRET,
        redis_url=redis_url,
        prefix=prefix,
        cors_origins=["https://app.example"],
    )
    with running_relay(config) as relay:
        url = f"{relay.url}/events/stream"
        allowed = client.options(url, headers={"Origin": "https://app.example"})
        denied = client.options(url, headers={"Origin": "https://evil.example"})
    assert allowed.status_code == 204
    assert allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert allowed.headers["access-control-allow-credentials"] == "true"
    assert "access-control-allow-origin" not in denied.headers


def test_reconnect_churn_keeps_the_subscription(
    client: httpx.Client, relay: RelayThread, token: Callable[..., str], broker: RedisBroker
) -> None:
    for _ in range(5):
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": token()})
        wait_for_subscribers(relay, 1)
        stream.close()
    last = Stream(client, f"{relay.url}/events/stream", params={"token": token()})
    wait_for_subscribers(relay, 1)
    event = broker.publish("project:1", "x", b"1")
    assert data(last.read(1)[0])["id"] == event.id  # type: ignore[index]
    last.close()


def test_unfollowed_channels_are_unsubscribed_after_a_while(
    client: httpx.Client, relay: RelayThread, token: Callable[..., str]
) -> None:
    relay.relay.hub.linger = 0.1
    stream = Stream(client, f"{relay.url}/events/stream", params={"token": token()})
    wait_for_subscribers(relay, 1)
    stream.close()
    deadline = time.monotonic() + 5
    while relay.relay.hub.feeds:
        assert time.monotonic() < deadline, "channel still subscribed"
        time.sleep(0.05)


def test_revocation_reaches_every_relay_process(
    config: RelayConfig, client: httpx.Client, token: Callable[..., str], broker: RedisBroker
) -> None:
    with running_relay(config) as first, running_relay(config) as second:
        streams = [
            Stream(client, f"{relay.url}/events/stream", params={"token": token(user="u5")})
            for relay in (first, second)
        ]
        wait_for_subscribers(first, 1)
        wait_for_subscribers(second, 1)
        broker.revoke("u5", time.time())
        for stream in streams:
            messages = stream.read_until_end(timeout=2.0)
            assert [m.event for m in messages] == ["auth-expired"]
            stream.close()
