"""The relay when Redis hangs or crashes: never a silent gap, never a trace.

Redis is a private ``redis-server`` that these tests stop (``SIGSTOP``),
resume, kill (``SIGKILL``) and restart from its append-only file. Short
versions run with the suite; the long ones (``-m chaos``) print their figures.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import threading
import time
import typing as t
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import orjson
import pytest
import redis
from relay_harness import RelayThread, Stream, running_relay

from karaffe import _servers
from karaffe.events import RedisBroker, TokenSigner
from karaffe.events.protocol import SSEMessage
from karaffe.events.relay import RelayConfig

pytestmark = pytest.mark.redis

SECRET = "chaos-secret"


class AofRedis:
    """A redis-server with an append-only file, on a port it keeps across
    restarts, that the test may stop, resume, kill and restart."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.port = _servers.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            pytest.skip("redis-server is not installed")
        log = self.workdir / "redis.log"
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "yes", "--appendfsync", "everysec", "--dir", str(self.workdir),
             "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while True:
            try:
                with redis.Redis.from_url(self.url) as r:
                    r.ping()
                return
            except redis.ConnectionError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.05)

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, sig)

    def kill(self) -> None:
        """``kill -9``: no shutdown, nothing saved but what the AOF has."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)
        self.proc = None

    def fsync_always(self) -> None:
        """From now on until a restart, each write is in the append-only file
        (and on disk) before Redis acknowledges it."""
        with redis.Redis.from_url(self.url) as r:
            r.execute_command("CONFIG", "SET", "appendfsync", "always")
            r.ping()

    def snapshot(self) -> Path:
        """A copy of the append-only files as they are now."""
        self.fsync_always()
        copy = self.workdir.parent / f"{self.workdir.name}-aof-{uuid.uuid4().hex[:6]}"
        shutil.copytree(self.workdir / "appendonlydir", copy)
        return copy

    def restore(self, copy: Path) -> None:
        shutil.rmtree(self.workdir / "appendonlydir")
        shutil.copytree(copy, self.workdir / "appendonlydir")

    def close(self) -> None:
        if self.proc is not None:
            self.signal(signal.SIGCONT)
            self.kill()


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[AofRedis]:
    server = AofRedis(tmp_path / "redis")
    server.workdir.mkdir()
    server.start()
    yield server
    server.close()


class RelayLog(logging.Handler):
    """Every record of the relay's and uvicorn's loggers, with tracebacks."""

    names = ("karaffe.events.relay", "uvicorn", "uvicorn.error", "uvicorn.asgi")

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


@pytest.fixture
def relay_log() -> Iterator[RelayLog]:
    handler = RelayLog()
    for name in RelayLog.names:
        logging.getLogger(name).addHandler(handler)
    yield handler
    for name in RelayLog.names:
        logging.getLogger(name).removeHandler(handler)


def assert_no_trace(log: RelayLog) -> None:
    assert "Exception in ASGI application" not in log.text, log.text
    assert "Traceback" not in log.text, log.text


class Reader:
    """Reads one stream in a thread: its messages, and its heartbeats over time."""

    def __init__(self, client: httpx.Client, url: str, **kwargs: t.Any) -> None:
        self.stream = Stream(client, url, **kwargs)
        assert self.stream.response.status_code == 200, self.stream.response.read()
        self.messages: list[SSEMessage] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            for chunk in self.stream._chunks:
                self.messages.extend(self.stream.parser.feed(chunk))
        except BaseException as exc:  # the stream is closed at the end of the test
            self.error = exc

    @property
    def heartbeats(self) -> int:
        return self.stream.parser.comments

    def events(self) -> list[SSEMessage]:
        return [m for m in self.messages if m.event in ("message", "reset")]

    def wait_for(self, last_id: str, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not any(ids_of([m]) == [last_id] for m in self.messages[-5:]):
            assert time.monotonic() < deadline, f"{last_id} not received: {self.messages[-3:]}"
            assert self.error is None, self.error
            time.sleep(0.05)

    def close(self) -> None:
        self.stream.close()


def ids_of(messages: list[SSEMessage]) -> list[str]:
    return [orjson.loads(m.data)["id"] for m in messages if m.event == "message"]


def resets_in(messages: list[SSEMessage]) -> int:
    return sum(1 for m in messages if m.event == "reset")


def assert_no_silent_gap(messages: list[SSEMessage], acked: list[str]) -> None:
    """Every event in ``acked`` order, each once; events may be skipped only
    right after a ``reset`` (the reader reloads), never silently."""
    at, after_reset = -1, False
    for m in messages:
        if m.event == "reset":
            after_reset = True
            continue
        if m.event != "message":
            continue
        index = acked.index(orjson.loads(m.data)["id"])
        if after_reset:
            assert index > at, f"went back to {acked[index]}"
        else:
            assert index == at + 1, f"silent gap: {acked[at + 1 : index]} never arrived"
        at, after_reset = index, False
    assert at == len(acked) - 1, f"missing at the end: {acked[at + 1 :]}"


def healthz(client: httpx.Client, relay: RelayThread) -> int:
    return client.get(f"{relay.url}/healthz").status_code


def wait_health(client: httpx.Client, relay: RelayThread, status: int, timeout: float) -> float:
    started = time.monotonic()
    while healthz(client, relay) != status:
        assert time.monotonic() - started < timeout, f"/healthz never answered {status}"
        time.sleep(0.05)
    return time.monotonic() - started


def wait_live(relay: RelayThread, connections: int) -> None:
    """Until ``connections`` streams are live: in a feed's fast or slow set
    (a stream counted in ``hub.connections`` may still be looking up its
    revocation, before it joins any feed)."""
    hub = relay.relay.hub
    deadline = time.monotonic() + 20
    while (
        len({c for f in hub.feeds.values() for c in (*f.fast, *f.slow)}) < connections
        or any(not f.ready or f.joining for f in hub.feeds.values())
        or not hub.feeds
    ):
        assert time.monotonic() < deadline, "streams did not go live"
        time.sleep(0.02)


def metric(client: httpx.Client, relay: RelayThread, name: str) -> int:
    for line in client.get(f"{relay.url}/metrics").text.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError(name)


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=httpx.Timeout(10.0)) as client:
        yield client


def relay_config(url: str) -> RelayConfig:
    return RelayConfig(
        secret_key=SECRET, redis_url=url, prefix=f"c{uuid.uuid4().hex[:6]}:", heartbeat=0.5
    )


@pytest.mark.parametrize(
    "stall",
    [pytest.param(3.0, id="3s"), pytest.param(45.0, id="45s", marks=pytest.mark.chaos)],
)
def test_a_hung_redis_is_ridden_out(
    stall: float, aof_redis: AofRedis, client: httpx.Client, relay_log: RelayLog
) -> None:
    config = relay_config(aof_redis.url)
    broker = RedisBroker(aof_redis.url, prefix=config.prefix)
    signer = TokenSigner(SECRET)
    url_ = "/events/stream"
    acked: list[str] = []
    with running_relay(config) as relay:
        before = Reader(client, relay.url + url_, params={"token": signer.sign("u1", ["p:1"])})
        wait_live(relay, 1)
        acked += [broker.publish("p:1", "before", b"%d" % n).id for n in range(3)]
        before.wait_for(acked[-1])
        aof_redis.signal(signal.SIGSTOP)
        stalled = time.monotonic()
        try:
            # Published while Redis hangs: the publisher waits (no timeout,
            # so no retry that would publish twice), Redis takes them when
            # it resumes.
            during: list[str] = []
            patient = RedisBroker(
                f"{aof_redis.url}?socket_timeout={stall + 30}", prefix=config.prefix
            )
            publisher = threading.Thread(
                target=lambda: during.extend(
                    patient.publish("p:1", "during", b"%d" % n).id for n in range(5)
                ),
                daemon=True,
            )
            publisher.start()
            to_503 = wait_health(client, relay, 503, timeout=stall + 5)
            # A new stream while Redis hangs (another user: nothing cached).
            new = Reader(client, relay.url + url_, params={"token": signer.sign("u2", ["p:1"])})
            beats = (before.heartbeats, new.heartbeats)
            time.sleep(max(0.0, stall - (time.monotonic() - stalled)))
            beats_during = (before.heartbeats - beats[0], new.heartbeats - beats[1])
            assert healthz(client, relay) == 503
        finally:
            aof_redis.signal(signal.SIGCONT)
        to_200 = wait_health(client, relay, 200, timeout=60)
        publisher.join(15)
        patient.close()
        assert len(during) == 5
        acked += during
        wait_live(relay, 2)
        after = [broker.publish("p:1", "after", b"%d" % n).id for n in range(5)]
        acked += after
        before.wait_for(acked[-1])
        new.wait_for(acked[-1])
        resets_metric = metric(client, relay, "karaffe_relay_resets_total")
        before.close()
        new.close()
    broker.close()
    print(
        f"\nRedis stopped {stall:.0f} s: /healthz 503 after {to_503:.1f} s, 200 again "
        f"{to_200:.1f} s after SIGCONT; heartbeats during the stall: open stream "
        f"{beats_during[0]}, stream opened during it {beats_during[1]}; events: "
        f"{len(ids_of(before.messages))} and {len(ids_of(new.messages))} delivered, "
        f"resets {resets_in(before.messages)} + {resets_in(new.messages)} (metric {resets_metric})"
    )
    assert to_503 < 4
    assert min(beats_during) >= 1
    # Redis lost nothing: every event, in order, and no reset.
    assert ids_of(before.messages) == acked
    assert resets_in(before.messages) == 0
    # Connected during the stall: live from when Redis answered, no gap.
    assert ids_of(new.messages) == acked[acked.index(ids_of(new.messages)[0]) :]
    assert set(after) <= set(ids_of(new.messages))
    assert resets_metric == resets_in(before.messages) + resets_in(new.messages)
    assert_no_trace(relay_log)


def test_redis_killed_and_restarted_from_its_aof_resumes_exactly(
    aof_redis: AofRedis, client: httpx.Client, relay_log: RelayLog
) -> None:
    config = relay_config(aof_redis.url)
    broker = RedisBroker(aof_redis.url, prefix=config.prefix)
    token = TokenSigner(SECRET).sign("u1", ["p:1"])
    # Every acknowledged write in the file before its reply, as the test
    # assumes: with ``everysec``, Redis holds back writing the AOF for up to
    # 2 s while a slow fsync runs (a busy disk), and kill -9 then loses
    # events it acknowledged.
    aof_redis.fsync_always()
    with running_relay(config) as relay:
        live = Reader(client, f"{relay.url}/events/stream", params={"token": token})
        wait_live(relay, 1)
        acked = [broker.publish("p:1", "before", b"%d" % n).id for n in range(5)]
        live.wait_for(acked[-1])
        aof_redis.kill()
        wait_health(client, relay, 503, timeout=30)
        aof_redis.start()
        wait_health(client, relay, 200, timeout=60)
        acked += [broker.publish("p:1", "after", b"%d" % n).id for n in range(5)]
        live.wait_for(acked[-1])
        resets = metric(client, relay, "karaffe_relay_resets_total")
        live.close()
    broker.close()
    assert ids_of(live.messages) == acked
    assert resets == resets_in(live.messages) == 0
    assert_no_trace(relay_log)


def test_redis_restarted_from_an_aof_that_lost_the_last_writes_resets_every_reader(
    aof_redis: AofRedis, client: httpx.Client, relay_log: RelayLog
) -> None:
    """Redis acknowledged events, the relay delivered them, then Redis came
    back from an append-only file without them (the machine crashed before
    they reached the disk). A reader that had them, and one that left before
    them, must both be told ``reset``: the second would otherwise resume
    after the lost events as if nothing were missing."""
    config = relay_config(aof_redis.url)
    broker = RedisBroker(aof_redis.url, prefix=config.prefix)
    token = TokenSigner(SECRET).sign("u1", ["p:1"])
    stream_url = ""
    with running_relay(config) as relay:
        stream_url = f"{relay.url}/events/stream"
        live = Reader(client, stream_url, params={"token": token})
        wait_live(relay, 1)
        kept = [broker.publish("p:1", "kept", b"%d" % n).id for n in range(3)]
        live.wait_for(kept[-1])
        left_at = live.messages[-1].id
        on_disk = aof_redis.snapshot()
        lost = [broker.publish("p:1", "lost", b"%d" % n).id for n in range(3)]
        live.wait_for(lost[-1])
        aof_redis.kill()
        aof_redis.restore(on_disk)
        aof_redis.start()
        with redis.Redis.from_url(aof_redis.url) as r:
            assert r.xlen(f"{config.prefix}{{p:1}}") == len(kept), "the last writes are gone"
        wait_health(client, relay, 200, timeout=60)
        wait_live(relay, 1)
        new = [broker.publish("p:1", "new", b"%d" % n).id for n in range(3)]
        live.wait_for(new[-1])
        # A reader that left after the kept events comes back now.
        back = Reader(
            client, stream_url, params={"token": token}, headers={"Last-Event-ID": left_at}
        )
        deadline = time.monotonic() + 10
        while not back.messages:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        resets = metric(client, relay, "karaffe_relay_resets_total")
        live.close()
        back.close()
    broker.close()
    print(
        f"\nRedis restarted without its last {len(lost)} writes: the open stream got "
        f"{ids_of(live.messages).__len__()} events and {resets_in(live.messages)} reset; "
        f"the returning reader got {[m.event for m in back.messages]}"
    )
    assert_no_silent_gap(live.events(), [*kept, *lost, *new])
    assert resets_in(live.messages) == 1
    assert [m.event for m in back.events()][:1] == ["reset"], "silent gap for the returning reader"
    assert resets == resets_in(live.messages) + resets_in(back.messages)
    assert_no_trace(relay_log)
