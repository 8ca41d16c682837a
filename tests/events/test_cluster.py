"""Against a real three-shard Redis Cluster: sharded pub/sub and resume."""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import httpx
import orjson
import pytest
from relay_harness import Stream, running_relay

from karaffe import _servers
from karaffe.events import RedisBroker, TokenSigner
from karaffe.events.relay import RelayConfig

pytestmark = pytest.mark.redis

SECRET = "cluster-secret"
CHANNELS = ["project:1", "project:2", "project:3", "project:4"]


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture(scope="module")
def cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """Three redis-server processes joined into a cluster, stopped by PID."""
    server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if server is None or cli is None:
        pytest.skip("redis-server and redis-cli are needed for a cluster")
    assert server is not None and cli is not None
    procs: list[subprocess.Popen[bytes]] = []
    ports = []
    try:
        for _ in range(3):
            port = cluster_port()
            workdir = tmp_path_factory.mktemp(f"cluster{port}")
            procs.append(
                subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--save", "", "--appendonly", "no", "--dir", str(workdir),
                     "--logfile", str(workdir / "redis.log")],
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )
            )  # fmt: skip
            ports.append(port)
        for port in ports:
            deadline = time.monotonic() + 10
            while subprocess.run([cli, "-p", str(port), "ping"], capture_output=True).returncode:
                assert time.monotonic() < deadline, "cluster node did not start"
                time.sleep(0.05)
        subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports),
             "--cluster-replicas", "0", "--cluster-yes"],
            check=True, capture_output=True,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while (
            b"cluster_state:ok"
            not in subprocess.run(
                [cli, "-p", str(ports[0]), "cluster", "info"], capture_output=True
            ).stdout
        ):
            assert time.monotonic() < deadline, "cluster did not become ready"
            time.sleep(0.1)
        yield f"redis://127.0.0.1:{ports[0]}/0"
    finally:
        for proc in procs:
            _servers.stop(proc)


def test_channels_on_every_shard_stream_and_resume(cluster_url: str) -> None:
    broker = RedisBroker(cluster_url, prefix="c:", cluster=True)
    config = RelayConfig(secret_key=SECRET, redis_url=cluster_url, prefix="c:", cluster=True)
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


def test_revocation_reaches_the_relay_on_a_cluster(cluster_url: str) -> None:
    broker = RedisBroker(cluster_url, prefix="r:", cluster=True)
    config = RelayConfig(secret_key=SECRET, redis_url=cluster_url, prefix="r:", cluster=True)
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
