"""The transactional outbox, against real databases and a real Redis: an
event exists exactly when its data committed, reaches Redis after an outage,
in order per channel and once, and a request never waits on Redis for more
than its budget."""

from __future__ import annotations

import random
import threading
import time
import typing as t
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from outbox_harness import Item, PrivateRedis, build_app, close_app, held, stream

import karaffe
from karaffe._servers import free_port, fresh_database
from karaffe.events import Event, publish
from karaffe.events.brokers import Broker, MemoryBroker
from karaffe.events.outbox import Dispatcher, OutboxMissing, outbox_table
from karaffe.events.protocol import ZERO, needs_reset
from karaffe.events.publish import state_for

App = tuple[karaffe.App, SQLAlchemy]
MakeApp = Callable[..., App]


@pytest.fixture(scope="module")
def pg_database(postgres_url: str) -> Iterator[str]:
    """A database of this module's own: other tests create and drop tables
    in the shared one."""
    with fresh_database(postgres_url, "outbox") as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/outbox.sqlite"
    return t.cast(str, request.getfixturevalue("pg_database"))


@pytest.fixture
def make(database_url: str) -> Iterator[MakeApp]:
    """``make(config)``: an app on the test's database; closed (and its
    tables dropped) after the test."""
    made: list[App] = []

    def build(config: dict[str, t.Any] | None = None) -> App:
        app, db = build_app(database_url, config)
        made.append((app, db))
        return app, db

    yield build
    for index, (app, db) in enumerate(made):
        close_app(app, db, drop=index == 0)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    server = PrivateRedis(tmp_path)
    server.start()
    yield server
    server.close()


def down() -> dict[str, t.Any]:
    """A Redis that refuses connections: every attempt fails at once."""
    return {"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}


def write(app: karaffe.App, db: SQLAlchemy, name: str, *events: tuple[str, str, t.Any]) -> None:
    """Commit one ``Item`` and publish ``events`` in its transaction."""
    with app.app_context():
        db.session.add(Item(name=name))
        for channel, type, data in events:
            publish(channel, type, data)
        db.session.commit()


# -- an event exists exactly when its data committed -------------------------------------


def test_committed_events_are_in_the_outbox_and_rolled_back_ones_are_not(make: MakeApp) -> None:
    app, db = make(down())
    with app.app_context():
        db.session.add(Item(name="kept"))
        publish("c", "kept", 1)
        publish("d", "kept", 2)
        db.session.commit()
        db.session.add(Item(name="rolled back"))
        publish("c", "rolled-back", 3)
        db.session.rollback()
    with app.app_context():
        db.session.add(Item(name="abandoned"))
        publish("c", "abandoned", 4)  # the app context ends without a commit
    assert [row[:3] for row in held(app, db)] == [("c", "kept", b"1"), ("d", "kept", b"2")]
    with app.app_context():
        assert db.session.scalars(sa.select(Item.name)).all() == ["kept"]


def test_savepoints_keep_the_events_of_what_they_keep(make: MakeApp) -> None:
    app, db = make(down())
    with app.app_context():
        db.session.add(Item(name="outer"))
        publish("c", "outer", 1)
        savepoint = db.session.begin_nested()
        db.session.add(Item(name="inner-dropped"))
        publish("c", "inner-dropped", 2)
        savepoint.rollback()
        with db.session.begin_nested():
            db.session.add(Item(name="inner-kept"))
            publish("c", "inner-kept", 3)
            with db.session.begin_nested():
                publish("c", "innermost", 4)
        publish("c", "last", 5)
        db.session.commit()
    assert [(ty, d) for _, ty, d, _ in held(app, db)] == [
        ("outer", b"1"),
        ("inner-kept", b"3"),
        ("innermost", b"4"),
        ("last", b"5"),
    ]


def test_a_commit_that_fails_leaves_no_event(make: MakeApp) -> None:
    app, db = make(down())
    write(app, db, "taken")
    with app.app_context():
        db.session.add(Item(name="taken"))  # unique: the flush in commit fails
        publish("c", "duplicate", 1)
        with pytest.raises(sa.exc.IntegrityError):
            db.session.commit()
        db.session.rollback()
        db.session.add(Item(name="next"))
        publish("c", "next", 2)
        db.session.commit()
    assert [ty for _, ty, _, _ in held(app, db)] == ["next"]


def test_without_the_outbox_table_the_commit_fails_and_says_why(database_url: str) -> None:
    app, db = build_app(database_url, down())
    with app.app_context():
        outbox_table.drop(db.engine)
        db.session.add(Item(name="x"))
        publish("c", "t", 1)
        with pytest.raises(OutboxMissing, match=r"karaffe_event_outbox does not exist.*migration"):
            db.session.commit()
        db.session.rollback()
        assert db.session.scalars(sa.select(Item.name)).all() == []
    close_app(app, db)


def test_outside_a_transaction_an_event_goes_out_at_once_without_the_outbox(
    make: MakeApp, redis_url: str
) -> None:
    app, db = make({"REDIS_URL": redis_url})
    with app.app_context():
        publish("c", "now", 1)
    assert [e.type for e in stream(app, "c")] == ["now"]
    assert held(app, db) == []


# -- the broker up: sent right after the commit ---------------------------------------------


@pytest.mark.redis
def test_events_go_out_right_after_the_commit_in_order_and_leave_the_outbox(
    make: MakeApp, redis_url: str
) -> None:
    app, db = make({"REDIS_URL": redis_url})
    with captured_events_of(app) as captured:
        write(app, db, "a", ("c", "one", {"n": 1}), ("d", "two", [2]), ("c", "three", "3"))
        write(app, db, "b", ("c", "four", None))
    entries = stream(app, "c")
    assert [(e.type, e.data) for e in entries] == [
        ("one", b'{"n":1}'),
        ("three", b'"3"'),
        ("four", b"null"),
    ]
    assert [e.row for e in entries] == sorted(e.row for e in entries)
    assert [e.type for e in stream(app, "d")] == ["two"]
    assert held(app, db) == []
    assert [(e.channel, e.type, e.data) for e in captured] == [
        ("c", "one", {"n": 1}),
        ("d", "two", [2]),
        ("c", "three", "3"),
        ("c", "four", None),
    ]
    assert [e.id for e in captured if e.channel == "c"] == [e.id for e in entries]


class captured_events_of:
    """The events ``app`` announces (``event_published``) inside the block."""

    def __init__(self, app: karaffe.App) -> None:
        self.app = app
        self.events: list[Event] = []

    def __enter__(self) -> list[Event]:
        from karaffe.events import event_published

        self._context = event_published.connected_to(self._record, sender=self.app)
        self._context.__enter__()
        return self.events

    def _record(self, sender: t.Any, event: Event, **_: t.Any) -> None:
        self.events.append(event)

    def __exit__(self, *exc: object) -> None:
        self._context.__exit__(None, None, None)


# -- the broker down: held, then sent in order ---------------------------------------------------


@pytest.mark.redis
def test_redis_down_at_commit_the_write_answers_and_the_events_follow_in_order(
    make: MakeApp, private_redis: PrivateRedis
) -> None:
    app, db = make({"REDIS_URL": private_redis.url})
    write(app, db, "before", ("c", "before", 0))
    private_redis.kill()
    started = time.monotonic()
    for n in range(5):
        write(app, db, f"during-{n}", ("c", "during", n), ("d", "during", n))
    took = time.monotonic() - started
    assert [ty for _, ty, _, _ in held(app, db)] == ["during"] * 10
    private_redis.start()  # without its data: a new history (readers reset)
    # Requests skip the broker for a moment after it failed: the sweeper sends.
    dispatcher = state_for(app).dispatcher
    with app.app_context():
        result = dispatcher.drain()
    assert (result.sent, result.error) == (10, None)
    write(app, db, "after", ("c", "after", 9))
    with app.app_context():
        dispatcher.drain()
    assert [(e.type, e.data) for e in stream(app, "c")] == [
        *[("during", b"%d" % n) for n in range(5)],
        ("after", b"9"),
    ]
    assert [e.data for e in stream(app, "d")] == [b"%d" % n for n in range(5)]
    assert held(app, db) == []
    print(f"\n5 writes with Redis down took {took * 1000:.0f} ms in all")


@pytest.mark.redis
def test_redis_stopped_the_request_returns_before_redis_resumes_and_the_event_goes_out_once(
    make: MakeApp, private_redis: PrivateRedis
) -> None:
    app, db = make({"REDIS_URL": private_redis.url})
    write(app, db, "warm", ("c", "warm", 0))  # connections made, scripts loaded
    private_redis.pause()
    try:
        done = threading.Event()
        took: list[float] = []

        def request() -> None:
            started = time.monotonic()
            write(app, db, "stalled", ("c", "stalled", 1))
            took.append(time.monotonic() - started)
            done.set()

        threading.Thread(target=request, daemon=True).start()
        # Redis stays stopped: the request must come back on its own.
        assert done.wait(5), "the request waited on a stopped Redis"
    finally:
        private_redis.resume()
    # The attempt that timed out was in Redis' socket buffer: it runs now, and
    # the sweeper's resend finds it by origin instead of appending it again.
    time.sleep(0.2)
    with app.app_context():
        result = state_for(app).dispatcher.drain()
    assert result.error is None
    assert [e.type for e in stream(app, "c")] == ["warm", "stalled"]
    assert held(app, db) == []
    print(f"\nrequest latency with Redis stopped: {took[0] * 1000:.0f} ms")


class FlakyBroker(Broker):
    """Wraps a broker: runs each call, then may fail it anyway (a reply that
    timed out); or refuses one channel outright."""

    def __init__(self, inner: Broker, *, lose_replies: int = 0, refuse: str | None = None) -> None:
        self.inner = inner
        self.lose_replies = lose_replies
        self.refuse = refuse
        self.calls: list[list[str]] = []

    def append_many(self, items: t.Any, **kwargs: t.Any) -> list[str]:
        if self.refuse is not None and any(c == self.refuse for c, _, _ in items):
            raise redis.ResponseError("WRONGTYPE Operation against a key holding the wrong kind")
        ids = self.inner.append_many(items, **kwargs)
        self.calls.append(ids)
        if self.lose_replies:
            self.lose_replies -= 1
            raise redis.TimeoutError("Timeout reading from socket")
        return ids

    def positions(self, channels: t.Any) -> t.Any:
        return self.inner.positions(channels)

    def history(self, channel: str, after: t.Any, limit: int) -> t.Any:
        return self.inner.history(channel, after, limit)

    def revoke(self, user: str, at: float, credential: str | None = None) -> None:
        self.inner.revoke(user, at, credential)

    def reset(self, channels: t.Any) -> None:
        self.inner.reset(channels)

    def is_unavailable(self, exc: Exception) -> bool:
        return self.inner.is_unavailable(exc)


@pytest.mark.redis
def test_a_send_whose_reply_was_lost_is_not_sent_twice(make: MakeApp, redis_url: str) -> None:
    app, db = make({"REDIS_URL": redis_url})
    dispatcher = state_for(app).dispatcher
    flaky = FlakyBroker(dispatcher.request_broker, lose_replies=1)
    dispatcher._request_broker = flaky
    write(app, db, "a", ("c", "one", 1), ("c", "two", 2))
    assert [a for _, _, _, a in held(app, db)] == [1, 1]  # ran, but not known to have
    write(app, db, "b", ("c", "three", 3))  # skips the broker: it just failed
    dispatcher._skip_until = 0.0
    write(app, db, "c", ("c", "four", 4))  # sends all of c, in order
    assert [e.type for e in stream(app, "c")] == ["one", "two", "three", "four"]
    assert held(app, db) == []
    assert flaky.calls[1][:2] == flaky.calls[0]  # the same entries, found by origin


@pytest.mark.redis
def test_a_refused_channel_does_not_hold_the_others(make: MakeApp, redis_url: str) -> None:
    app, db = make({"REDIS_URL": redis_url})
    dispatcher = state_for(app).dispatcher
    dispatcher._request_broker = FlakyBroker(dispatcher.request_broker, refuse="poison")
    dispatcher._sweep_broker = FlakyBroker(dispatcher.sweep_broker, refuse="poison")
    write(app, db, "a", ("poison", "x", 1), ("good", "y", 2))
    dispatcher._skip_until = 0.0
    write(app, db, "b", ("later", "z", 3))
    with app.app_context():
        result = dispatcher.drain()
    assert result.error is not None and "WRONGTYPE" in result.error
    assert [e.type for e in stream(app, "good")] == ["y"]
    assert [e.type for e in stream(app, "later")] == ["z"]
    assert [(c, a) for c, _, _, a in held(app, db)] == [("poison", 2)]


@pytest.mark.redis
def test_giving_up_resets_the_channel_so_no_reader_misses_it_silently(
    make: MakeApp, redis_url: str
) -> None:
    app, db = make({"REDIS_URL": redis_url, "EVENTS_OUTBOX_GIVE_UP": 0.2})
    broker = state_for(app).broker
    write(app, db, "first", ("poison", "seen", 0))
    reader = broker.positions(["poison"])["poison"]
    dispatcher = state_for(app).dispatcher
    dispatcher._request_broker = FlakyBroker(dispatcher.request_broker, refuse="poison")
    dispatcher._sweep_broker = FlakyBroker(dispatcher.sweep_broker, refuse="poison")
    write(app, db, "lost", ("poison", "lost", 1), ("fine", "kept", 2))
    with app.app_context():
        assert dispatcher.drain().dropped == 0  # not yet too old
        time.sleep(0.3)
        result = dispatcher.drain()
    assert result.dropped == 1
    assert held(app, db) == []
    history = broker.history("poison", reader.id, 10)
    assert history.epoch != reader.epoch
    assert needs_reset(reader, history.epoch, history.max_deleted)
    assert [e.type for e in stream(app, "fine")] == ["kept"]


class BlockingBroker(FlakyBroker):
    """Holds every call until released: a sweeper stuck on a hung broker."""

    def __init__(self, inner: Broker) -> None:
        super().__init__(inner)
        self.entered = threading.Event()
        self.release = threading.Event()

    def append_many(self, items: t.Any, **kwargs: t.Any) -> list[str]:
        self.entered.set()
        assert self.release.wait(30)
        return super().append_many(items, **kwargs)


@pytest.mark.redis
def test_a_request_does_not_wait_for_a_channel_a_stuck_sweeper_holds(
    make: MakeApp, redis_url: str
) -> None:
    app, db = make({"REDIS_URL": redis_url})
    state = state_for(app)
    state.dispatcher._skip_until = float("inf")
    write(app, db, "held", ("c", "held", 0))
    state.dispatcher._skip_until = 0.0
    stuck = BlockingBroker(state.broker)
    sweeper = Dispatcher(app, stuck)

    def sweep() -> None:
        with app.app_context():
            sweeper.sweep()

    thread = threading.Thread(target=sweep)
    thread.start()
    try:
        assert stuck.entered.wait(10)
        # The sweeper holds c's lock while it waits for the broker: the
        # request tries for its budget, then leaves its event to the sweeper.
        write(app, db, "next", ("c", "next", 1))
        assert [ty for _, ty, _, _ in held(app, db)] == ["held", "next"]
        assert state.dispatcher._skip_until > time.monotonic()
    finally:
        stuck.release.set()
        thread.join(10)
    with app.app_context():
        state.dispatcher.drain()
    assert [e.type for e in stream(app, "c")] == ["held", "next"]


# -- several dispatchers at once ----------------------------------------------------------------------


class SlowBroker(FlakyBroker):
    """Takes a random moment per call, so that dispatchers interleave."""

    def append_many(self, items: t.Any, **kwargs: t.Any) -> list[str]:
        time.sleep(random.random() * 0.005)
        return super().append_many(items, **kwargs)


def assert_in_order_and_once(app: karaffe.App, channels: list[str], expected: int) -> int:
    """Per channel, the outbox rows arrived in increasing id order, each once."""
    total = 0
    for channel in channels:
        rows = [e.row for e in stream(app, channel)]
        assert rows == sorted(set(rows)), f"{channel}: out of order or twice: {rows}"
        total += len(rows)
    assert total == expected
    return total


@pytest.mark.redis
def test_racing_sweepers_send_each_event_once_in_order(make: MakeApp, redis_url: str) -> None:
    app, db = make({"REDIS_URL": redis_url})
    state_for(app).dispatcher._skip_until = float("inf")  # requests leave it all
    channels = [f"c{n}" for n in range(6)]
    for n in range(60):
        write(app, db, f"i{n}", *[(channels[(n + k) % 6], "e", n) for k in range(3)])
    assert len(held(app, db)) == 180
    errors: list[BaseException] = []
    sent: list[int] = []

    def sweep() -> None:
        # A dispatcher of its own, as in another process; small batches, so
        # that the sweepers interleave.
        dispatcher = Dispatcher(app, SlowBroker(state_for(app).broker.with_timeout(5)))
        dispatcher.sweep_batch = 7
        mine = 0
        try:
            with app.app_context():
                while held(app, db):
                    result = dispatcher.sweep()
                    mine += result.sent
                    if not result.sent:
                        time.sleep(0.001)
        except BaseException as exc:
            errors.append(exc)
        sent.append(mine)

    threads = [threading.Thread(target=sweep) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not errors
    assert_in_order_and_once(app, channels, 180)
    assert sum(sent) == 180 and sum(1 for n in sent if n) >= 2, sent


@pytest.mark.redis
def test_requests_and_sweepers_racing_keep_each_channel_in_order(
    make: MakeApp, redis_url: str
) -> None:
    app, db = make({"REDIS_URL": redis_url})
    state = state_for(app)
    state.dispatcher._request_broker = SlowBroker(state.dispatcher.request_broker)
    channels = [f"r{n}" for n in range(4)]
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(channel: str) -> None:
        # One writer per channel: its commits are ordered, so are its events.
        try:
            for n in range(25):
                write(app, db, f"{channel}-{n}", (channel, "e", n), ("shared", channel, n))
        except BaseException as exc:
            errors.append(exc)

    def sweeper() -> None:
        dispatcher = Dispatcher(app, SlowBroker(state.broker.with_timeout(5)))
        try:
            with app.app_context():
                while not stop.is_set():
                    dispatcher.sweep()
        except BaseException as exc:
            errors.append(exc)

    sweepers = [threading.Thread(target=sweeper) for _ in range(2)]
    writers = [threading.Thread(target=writer, args=(c,)) for c in channels]
    for thread in sweepers + writers:
        thread.start()
    for thread in writers:
        thread.join(60)
    stop.set()
    for thread in sweepers:
        thread.join(60)
    with app.app_context():
        state.dispatcher.drain()
    assert not errors
    assert_in_order_and_once(app, channels, 100)
    shared = stream(app, "shared")
    assert len({e.row for e in shared}) == len(shared) == 100
    for channel in channels:
        mine = [int(e.data) for e in shared if e.type == channel]
        assert mine == list(range(25))


# -- the sweeper process ----------------------------------------------------------------------------


@pytest.mark.redis
def test_the_sweeper_sends_what_requests_left_once_redis_is_back(
    make: MakeApp, private_redis: PrivateRedis
) -> None:
    app, db = make({"REDIS_URL": private_redis.url, "EVENTS_OUTBOX_POLL": 0.05})
    dispatcher = state_for(app).dispatcher
    stop = threading.Event()

    def run() -> None:
        with app.app_context():
            dispatcher.run(stop, poll=0.05, max_backoff=0.2)

    sweeper = threading.Thread(target=run)
    sweeper.start()
    try:
        private_redis.kill()
        for n in range(5):
            write(app, db, f"i{n}", ("c", "e", n))
        private_redis.start()
        deadline = time.monotonic() + 10
        while held(app, db):
            assert time.monotonic() < deadline, "the sweeper did not send the held events"
            time.sleep(0.05)
    finally:
        stop.set()
        sweeper.join(10)
    assert [e.data for e in stream(app, "c")] == [b"%d" % n for n in range(5)]


@pytest.mark.redis
def test_flask_karaffe_dispatch_once(make: MakeApp, private_redis: PrivateRedis) -> None:
    app, db = make({"REDIS_URL": private_redis.url})
    private_redis.kill()
    write(app, db, "a", ("c", "e", 1))
    runner = app.test_cli_runner()
    result = runner.invoke(args=["karaffe", "dispatch", "--once"])
    assert result.exit_code == 1
    assert "sent 0 event(s)" in result.output
    private_redis.start()
    result = runner.invoke(args=["karaffe", "dispatch", "--once"])
    assert result.exit_code == 0, result.output
    assert "sent 1 event(s)" in result.output
    assert [e.data for e in stream(app, "c")] == [b"1"]


# -- the in-process broker: no outbox, no extra process ----------------------------------------------


def test_the_memory_broker_sends_after_commit_without_the_outbox(make: MakeApp) -> None:
    app, db = make()
    state = state_for(app)
    assert isinstance(state.broker, MemoryBroker) and not state.outbox
    write(app, db, "a", ("c", "e", 1))
    assert [d for _, _, d in state.broker.history("c", ZERO, 10).entries] == [b"1"]
    assert held(app, db) == []
    result = app.test_cli_runner().invoke(args=["karaffe", "dispatch"])
    assert result.exit_code == 2
    assert "the outbox is off" in result.output


def test_the_memory_broker_with_the_outbox_forced_on_sends_in_the_request(make: MakeApp) -> None:
    app, db = make({"EVENTS_OUTBOX": True})
    state = state_for(app)
    write(app, db, "a", ("c", "e", 1), ("c", "e", 2))
    assert [d for _, _, d in state.broker.history("c", ZERO, 10).entries] == [b"1", b"2"]
    assert held(app, db) == []


def test_the_tracker_as_make_demo_runs_it_needs_no_outbox(tmp_path: Path) -> None:
    from tracker import create_app

    # SQLite and the in-process broker: events go out after commit, in the
    # process; no dispatcher, no extra process.
    app = create_app(
        {"TESTING": True, "SECRET_KEY": "demo", "DATABASE_URL": f"sqlite:///{tmp_path}/t.sqlite"}
    )
    state = state_for(app)
    assert isinstance(state.broker, MemoryBroker)
    assert not state.outbox
