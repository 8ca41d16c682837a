"""Against a real three-shard Redis Cluster: sharded pub/sub and resume."""

from __future__ import annotations

import time

import httpx
import orjson
import pytest
from relay_harness import Stream, running_relay

from karaffe.events import RedisBroker, TokenSigner
from karaffe.events.relay import RelayConfig

pytestmark = pytest.mark.redis

SECRET = "cluster-secret"
CHANNELS = ["project:1", "project:2", "project:3", "project:4"]


def test_channels_on_every_shard_stream_and_resume(redis_cluster_url: str) -> None:
    broker = RedisBroker(redis_cluster_url, prefix="c:", cluster=True)
    config = RelayConfig(secret_key=SECRET, redis_url=redis_cluster_url, prefix="c:", cluster=True)
    token = TokenSigner(SECRET).sign("u1", CHANNELS)
    slots = {broker.client.keyslot(broker.keys.stream(c)) for c in CHANNELS}
    nodes = {broker.client.get_node_from_key(broker.keys.stream(c)).name for c in CHANNELS}
    assert len(slots) == len(CHANNELS) and len(nodes) > 1, "channels span shards"
    with httpx.Client(timeout=5.0) as client, running_relay(config) as relay:
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": token})
        deadline = time.monotonic() + 5
        while len(relay.relay.hub.feeds) < 4 or not all(
            f.ready and not f.joining for f in relay.relay.hub.feeds.values()
        ):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        sent = [broker.publish(c, "x", b"%d" % n) for n, c in enumerate(CHANNELS)]
        got = stream.read(4)
        assert sorted((m := orjson.loads(x.data))["channel"] + m["id"] for x in got) == sorted(
            e.channel + e.id for e in sent
        )
        last = got[-1].id or ""
        stream.close()
        missed = [broker.publish(c, "y", b"%d" % n) for n, c in enumerate(CHANNELS)]
        again = Stream(
            client,
            f"{relay.url}/events/stream",
            params={"token": token},
            headers={"Last-Event-ID": last},
        )
        replayed = again.read(4)
        again.close()
    assert sorted((m := orjson.loads(x.data))["channel"] + m["id"] for x in replayed) == sorted(
        e.channel + e.id for e in missed
    )
    broker.close()


def test_revocation_reaches_the_relay_on_a_cluster(redis_cluster_url: str) -> None:
    broker = RedisBroker(redis_cluster_url, prefix="r:", cluster=True)
    config = RelayConfig(secret_key=SECRET, redis_url=redis_cluster_url, prefix="r:", cluster=True)
    token = TokenSigner(SECRET).sign("u2", ["project:1"])
    with httpx.Client(timeout=5.0) as client, running_relay(config) as relay:
        stream = Stream(client, f"{relay.url}/events/stream", params={"token": token})
        deadline = time.monotonic() + 5
        while not relay.relay.hub.by_user.get("u2"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        broker.revoke("u2", time.time())
        messages = stream.read_until_end(timeout=3)
        stream.close()
    assert [m.event for m in messages] == ["auth-expired"]
    broker.close()


def test_a_fresh_relay_on_a_cluster_subscribes_before_any_stream_opens(
    redis_cluster_url: str,
) -> None:
    # The cluster client learns its slots on its first command; the relay's
    # first is the revocations subscription, which must not fail for it.
    config = RelayConfig(secret_key=SECRET, redis_url=redis_cluster_url, prefix="f:", cluster=True)
    with httpx.Client(timeout=5.0) as client, running_relay(config) as relay:
        deadline = time.monotonic() + 5
        while client.get(f"{relay.url}/healthz").status_code != 200:
            assert time.monotonic() < deadline, "the relay never subscribed"
            time.sleep(0.05)
        assert relay.relay.metrics.redis_reconnects == 0
