"""The relay through failures: Redis restarts, SIGTERM-style shutdown, slow clients."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from relay_harness import Stream, running_relay

from karaffe import _servers
from karaffe.events import RedisBroker, TokenSigner
from karaffe.events.relay import RelayConfig

pytestmark = pytest.mark.redis

SECRET = "relay-secret"


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(5.0)) as client:
        yield client


def wait_for_feeds(relay: object, n: int) -> None:
    hub = relay.relay.hub  # type: ignore[attr-defined]
    deadline = time.monotonic() + 5
    while len(hub.feeds) < n or any(f.joining for f in hub.feeds.values()):
        assert time.monotonic() < deadline
        time.sleep(0.01)


def ids(messages: list[object]) -> list[str]:
    return [orjson.loads(m.data)["id"] for m in messages]  # type: ignore[attr-defined]


def publish_when_up(broker: RedisBroker, n: int, type: str) -> list[str]:
    out = []
    for i in range(n):
        for _ in range(100):
            try:
                out.append(broker.publish("project:1", type, b"%d" % i).id)
                break
            except redis.ConnectionError:
                time.sleep(0.05)
    return out


class PrivateRedis:
    """A redis-server this test may stop and restart on the same port."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _servers.free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc, self.url = _servers.start_redis(self.workdir, port=self.port)

    def stop(self, save: bool) -> None:
        assert self.proc is not None
        if save:
            with redis.Redis.from_url(self.url) as r:
                r.save()
        _servers.stop(self.proc)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    if server.proc is not None:
        _servers.stop(server.proc)


def test_redis_restart_with_its_data_loses_and_duplicates_nothing(
    private_redis: PrivateRedis, client: httpx.Client
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    config = RelayConfig(secret_key=SECRET, redis_url=private_redis.url, prefix=prefix)
    broker = RedisBroker(private_redis.url, prefix=prefix)
    token = TokenSigner(SECRET).sign("u1", ["project:1"])
    with running_relay(config) as relay:
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": token})
        wait_for_feeds(relay, 1)
        before = publish_when_up(broker, 3, "before")
        assert ids(stream.read(3)) == before
        private_redis.stop(save=True)
        deadline = time.monotonic() + 5
        while client.get(f"{relay.url}/healthz").status_code != 503:
            assert time.monotonic() < deadline, "relay still reports healthy without Redis"
            time.sleep(0.05)
        private_redis.start()
        after = publish_when_up(broker, 5, "after")
        assert ids(stream.read(5, timeout=10)) == after
        assert client.get(f"{relay.url}/healthz").json() == {"status": "ok"}
        # And a client that reconnects now resumes exactly.
        last_id = stream.parser.last_event_id
        stream.close()
        missed = publish_when_up(broker, 2, "missed")
        again = Stream(
            client,
            f"{relay.url}/events/stream",
            params={"token": token},
            headers={"Last-Event-ID": last_id},
        )
        assert ids(again.read(2)) == missed
        again.close()
    broker.close()


def test_redis_restart_without_its_data_resets_the_channel(
    private_redis: PrivateRedis, client: httpx.Client
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    config = RelayConfig(secret_key=SECRET, redis_url=private_redis.url, prefix=prefix)
    broker = RedisBroker(private_redis.url, prefix=prefix)
    token = TokenSigner(SECRET).sign("u1", ["project:1"])
    with running_relay(config) as relay:
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": token})
        wait_for_feeds(relay, 1)
        before = publish_when_up(broker, 1, "before")
        assert ids(stream.read(1)) == before
        private_redis.stop(save=False)
        private_redis.start()
        publish_when_up(broker, 2, "after")
        [reset] = stream.read(1, timeout=10)
        # What the reset covers (the reader reloads the channel) is not sent;
        # what comes after it is.
        wait_for_feeds(relay, 1)
        later = publish_when_up(broker, 1, "later")
        messages = stream.read(1, timeout=10)
        stream.close()
        metrics = client.get(f"{relay.url}/metrics").text
    broker.close()
    assert reset.event == "reset"
    assert orjson.loads(reset.data) == {"channel": "project:1"}
    assert ids(messages)[-1:] == later
    assert "karaffe_relay_resets_total 1\n" in metrics


def test_shutdown_tells_clients_to_reconnect(redis_url: str, client: httpx.Client) -> None:
    config = RelayConfig(secret_key=SECRET, redis_url=redis_url, prefix="t-shutdown:")
    token = TokenSigner(SECRET).sign("u1", ["project:1"])
    relay = running_relay(config)
    server = relay.__enter__()
    stream = Stream(client, f"{server.url}/events/stream", params={"token": token})
    wait_for_feeds(server, 1)
    relay.__exit__(None, None, None)
    messages = stream.read_until_end()
    stream.close()
    assert [(m.event, m.data) for m in messages] == [("reconnect", "{}")]
    assert not server.thread.is_alive()


@pytest.mark.parametrize("direct_writes", [True, False], ids=["direct", "asgi-send"])
def test_slow_client_is_cut_off_without_slowing_others(
    redis_url: str, client: httpx.Client, direct_writes: bool
) -> None:
    prefix = f"t{uuid.uuid4().hex[:6]}:"
    config = RelayConfig(
        secret_key=SECRET,
        redis_url=redis_url,
        prefix=prefix,
        max_buffer=1024 * 1024,
        direct_writes=direct_writes,
    )
    broker = RedisBroker(redis_url, history_size=20, prefix=prefix)
    token = TokenSigner(SECRET).sign("u1", ["project:1"])
    with running_relay(config) as relay:
        slow = socket.socket()
        slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        slow.connect(("127.0.0.1", relay.port))
        slow.sendall(f"GET /events/stream?token={token} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        fast = Stream(client, f"{relay.url}/events/stream", params={"token": token})
        wait_for_feeds(relay, 1)
        deadline = time.monotonic() + 5
        while len(relay.relay.connections) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        received: list[str] = []
        reader = threading.Thread(
            target=lambda: received.extend(ids(fast.read(300, timeout=30))), daemon=True
        )
        reader.start()
        blob = orjson.dumps("x" * 60_000)
        sent = []
        for _ in range(300):
            sent.append(broker.publish("project:1", "big", blob).id)
            time.sleep(0.002)
        reader.join(30)
        assert received == sent
        assert relay.relay.metrics.drops == 1
        assert len(relay.relay.connections) == 1
        fast.close()
        slow.close()
    broker.close()
