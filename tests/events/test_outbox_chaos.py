"""The outbox under fault injection (``make chaos``): writes at 20 per
second while Redis is killed (-9) and restarted with its AOF, or stopped
(SIGSTOP) for a while, with a sweeper running. Nothing may be lost, sent
twice or out of order, and no write may wait on Redis. Each test prints its
figures; ``CHAOS_SECONDS`` (default 12) sets how long the writes go on and
``CHAOS_STALL`` (default 10) how long Redis stays stopped."""

from __future__ import annotations

import os
import statistics
import threading
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path

import pytest
from outbox_harness import Item, PrivateRedis, build_app, close_app, held, stream

import karaffe
from karaffe._servers import fresh_database
from karaffe.events import publish
from karaffe.events.outbox import Dispatcher
from karaffe.events.publish import state_for

pytestmark = [pytest.mark.chaos, pytest.mark.redis]

RATE = 20.0
SECONDS = float(os.environ.get("CHAOS_SECONDS", "12"))
STALL = float(os.environ.get("CHAOS_STALL", "10"))
CHANNELS = [f"project:{n}" for n in range(1, 5)]


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path}/chaos.sqlite"
        return
    with fresh_database(request.getfixturevalue("postgres_url"), "chaos") as url:
        yield url


@pytest.fixture
def aof_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path, appendonly=True)
    server.start()
    yield server
    server.close()


class Load:
    """Writes at ``RATE`` per second, one event per write on one of
    ``CHANNELS`` in turn, and a sweeper (a dispatcher of its own, as
    ``flask karaffe dispatch`` would be) running meanwhile."""

    def __init__(self, app: karaffe.App, db: t.Any) -> None:
        self.app, self.db = app, db
        self.latencies: list[float] = []
        #: Time spent sending after the commit, per write: what the outbox adds.
        self.dispatching: list[float] = []
        self.stop = threading.Event()
        dispatcher = state_for(app).dispatcher
        send = dispatcher.send_committed

        def timed(*args: t.Any, **kwargs: t.Any) -> t.Any:
            started = time.monotonic()
            try:
                return send(*args, **kwargs)
            finally:
                self.dispatching.append(time.monotonic() - started)

        dispatcher.send_committed = timed  # type: ignore[method-assign]
        self.sweeper = Dispatcher(app, state_for(app).broker, sweep_timeout=2.0)
        self._thread = threading.Thread(target=self._sweep)

    def _sweep(self) -> None:
        with self.app.app_context():
            self.sweeper.run(self.stop, poll=0.2, max_backoff=0.5)

    def __enter__(self) -> Load:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(30)
        if self.sweeper._sweep_broker is not None:
            self.sweeper._sweep_broker.close()

    def write(self, n: int) -> None:
        started = time.monotonic()
        with self.app.app_context():
            self.db.session.add(Item(name=f"item-{n}"))
            publish(CHANNELS[n % len(CHANNELS)], "issue.created", {"n": n})
            self.db.session.commit()
        self.latencies.append(time.monotonic() - started)

    def run(self, seconds: float, during: t.Callable[[float], None]) -> int:
        """Write for ``seconds``, calling ``during(elapsed)`` between writes."""
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < seconds:
            during(elapsed)
            self.write(n)
            n += 1
            time.sleep(max(0.0, start + n / RATE - time.monotonic()))
        return n

    def wait_drained(self, timeout: float = 60) -> float:
        started = time.monotonic()
        while held(self.app, self.db):
            assert time.monotonic() - started < timeout, "the outbox was not drained"
            time.sleep(0.05)
        return time.monotonic() - started

    def check(self, written: int) -> dict[str, t.Any]:
        """Every event once, in order per channel; the figures."""
        received = 0
        for channel in CHANNELS:
            numbers = [int(e.data[5:-1]) for e in stream(self.app, channel)]
            expected = [n for n in range(written) if CHANNELS[n % len(CHANNELS)] == channel]
            assert numbers == expected, f"{channel}: {numbers} != {expected}"
            received += len(numbers)
        ordered = sorted(self.latencies)
        return {
            "written": written,
            "in Redis": received,
            "p50 ms": round(statistics.median(ordered) * 1000, 1),
            "p99 ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 1),
            "max ms": round(ordered[-1] * 1000, 1),
        }


def report(capsys: pytest.CaptureFixture[str], title: str, figures: dict[str, t.Any]) -> None:
    with capsys.disabled():
        print(f"\n{title}: " + ", ".join(f"{k} {v}" for k, v in figures.items()))


def test_redis_killed_and_restarted_with_its_aof_under_load(
    database_url: str, aof_redis: PrivateRedis, capsys: pytest.CaptureFixture[str]
) -> None:
    app, db = build_app(database_url, {"REDIS_URL": aof_redis.url})
    events: dict[str, float] = {}

    def during(elapsed: float) -> None:
        if "killed" not in events and elapsed >= SECONDS / 4:
            aof_redis.kill()
            events["killed"] = time.monotonic()
        if "restarted" not in events and elapsed >= SECONDS / 2:
            aof_redis.start()
            events["restarted"] = time.monotonic()

    try:
        with Load(app, db) as load:
            written = load.run(SECONDS, during)
            drained = load.wait_drained()
            figures = load.check(written)
    finally:
        close_app(app, db, drop=False)
    figures["Redis down s"] = round(events["restarted"] - events["killed"], 1)
    figures["held events drained s after the writes"] = round(drained, 2)
    report(capsys, f"kill -9 + AOF restart ({database_url.split(':')[0]})", figures)


def test_redis_stopped_under_load(
    database_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    server = PrivateRedis(tmp_path)
    server.start()
    app, db = build_app(database_url, {"REDIS_URL": server.url})
    events: dict[str, float] = {}
    seconds = max(SECONDS, STALL + 4)

    def during(elapsed: float) -> None:
        if "stopped" not in events and elapsed >= 2:
            server.pause()
            events["stopped"] = time.monotonic()
        if "resumed" not in events and elapsed >= 2 + STALL:
            server.resume()
            events["resumed"] = time.monotonic()

    try:
        with Load(app, db) as load:
            written = load.run(seconds, during)
            drained = load.wait_drained()
            stalled = load.latencies[int(2 * RATE) : int((2 + STALL) * RATE)]
            sending = load.dispatching[int(2 * RATE) : int((2 + STALL) * RATE)]
            figures = load.check(written)
    finally:
        server.close()
        close_app(app, db, drop=False)
    figures["Redis stopped s"] = STALL
    figures["max ms while stopped"] = round(max(stalled) * 1000, 1)
    figures["writes > 100 ms while stopped"] = sum(1 for x in stalled if x > 0.1)
    figures["max ms sending after commit while stopped"] = round(max(sending) * 1000, 1)
    figures["sends > 100 ms while stopped"] = sum(1 for x in sending if x > 0.1)
    figures["held events drained s after the writes"] = round(drained, 2)
    report(capsys, f"SIGSTOP ({database_url.split(':')[0]})", figures)
    # No write waits on Redis beyond the budget: the lock, then the broker.
    assert max(stalled) < 2.0
