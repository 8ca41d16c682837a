"""Publishing: after commit, never for a rollback, at once outside a transaction."""

from __future__ import annotations

import typing as t
from collections.abc import Callable

import pytest
from flask_sqlalchemy import SQLAlchemy

import karaffe
from karaffe.config import ConfigError
from karaffe.events import Event, Events, MemoryBroker, ProtocolError, RedisBroker, cursor, publish
from karaffe.events.protocol import Cursor, StreamId
from karaffe.events.publish import state_for

App = tuple[karaffe.App, SQLAlchemy]


def history(app: karaffe.App, channel: str) -> list[tuple[str, bytes]]:
    hist = state_for(app).broker.history(channel, StreamId(0, 0), 100)
    return [(type, data) for _, type, data in hist.entries]


def test_publish_outside_a_transaction_goes_out_at_once(events_app: App) -> None:
    app, _ = events_app
    with app.app_context():
        publish("project:1", "issue.created", {"id": 1})
    assert history(app, "project:1") == [("issue.created", b'{"id":1}')]


def test_publish_inside_a_transaction_waits_for_commit(events_app: App, Note: t.Any) -> None:
    app, db = events_app
    with app.app_context():
        db.session.add(Note(text="hello"))
        publish("project:1", "note.created", {"text": "hello"})
        assert history(app, "project:1") == []
        db.session.commit()
        assert history(app, "project:1") == [("note.created", b'{"text":"hello"}')]


def test_rollback_publishes_nothing(events_app: App, Note: t.Any) -> None:
    app, db = events_app
    with app.app_context():
        db.session.add(Note(text="x"))
        publish("project:1", "note.created", {})
        db.session.rollback()
        db.session.commit()
    assert history(app, "project:1") == []


def test_session_closed_without_commit_publishes_nothing(events_app: App, Note: t.Any) -> None:
    app, db = events_app
    with app.app_context():
        db.session.add(Note(text="x"))
        publish("project:1", "note.created", {})
    with app.app_context():
        db.session.commit()
    assert history(app, "project:1") == []


def test_rolled_back_savepoint_drops_only_its_events(events_app: App, Note: t.Any) -> None:
    app, db = events_app
    with app.app_context():
        db.session.add(Note(text="outer"))
        publish("c", "outer", 1)
        savepoint = db.session.begin_nested()
        publish("c", "inner-dropped", 2)
        savepoint.rollback()
        with db.session.begin_nested():
            publish("c", "inner-kept", 3)
        db.session.commit()
    assert history(app, "c") == [("outer", b"1"), ("inner-kept", b"3")]


def test_events_of_one_commit_keep_their_order(events_app: App, Note: t.Any) -> None:
    app, db = events_app
    with app.app_context():
        db.session.add(Note(text="x"))
        for n in range(5):
            publish("c", "n", n)
        db.session.commit()
    assert [d for _, d in history(app, "c")] == [b"0", b"1", b"2", b"3", b"4"]


def test_data_is_encoded_at_publish_time(events_app: App, Note: t.Any) -> None:
    app, db = events_app
    payload: dict[str, t.Any] = {"n": 1}
    with app.app_context():
        db.session.add(Note(text="x"))
        publish("c", "t", payload)
        payload["n"] = 2
        db.session.commit()
    assert history(app, "c") == [("t", b'{"n":1}')]


@pytest.mark.parametrize(
    ("channel", "type", "data", "message"),
    [
        ("bad channel", "t", None, "invalid channel name"),
        ("c", "reset", None, "reserved"),
        ("c", "t", object(), "not JSON serializable"),
    ],
)
def test_bad_events_are_refused_at_publish(
    events_app: App, channel: str, type: str, data: t.Any, message: str
) -> None:
    app, _ = events_app
    with app.app_context(), pytest.raises(ProtocolError, match=message):
        publish(channel, type, data)


def test_publish_without_init_app_says_what_to_do(make_app: Callable[..., karaffe.App]) -> None:
    app = make_app()
    with app.app_context(), pytest.raises(RuntimeError, match=r"Events\(\)\.init_app"):
        publish("c", "t", None)


def test_memory_broker_is_the_default(events_app: App) -> None:
    app, _ = events_app
    assert isinstance(state_for(app).broker, MemoryBroker)


def test_redis_broker_needs_redis_url(make_events_app: Callable[..., App]) -> None:
    app, _ = make_events_app({"EVENTS_BROKER": "redis"})
    with app.app_context(), pytest.raises(ConfigError, match="REDIS_URL is not set"):
        publish("c", "t", None)


def test_redis_broker_needs_redis_url_at_init_on_a_configured_app(
    make_app: Callable[..., karaffe.App],
) -> None:
    app = make_app({"EVENTS_BROKER": "redis"})
    with pytest.raises(ConfigError, match="REDIS_URL is not set"):
        Events(app)


def test_unknown_broker_is_refused(make_events_app: Callable[..., App]) -> None:
    with pytest.raises(ConfigError, match="EVENTS_BROKER"):
        make_events_app({"EVENTS_BROKER": "kafka"})


def test_cursor_stamps_the_current_position(events_app: App) -> None:
    app, _ = events_app
    with app.app_context():
        before = Cursor.parse(cursor(["c", "empty"]))
        publish("c", "t", 1)
        after = Cursor.parse(cursor(["c", "empty"]))
    assert before.get("empty") == after.get("empty")
    position_before, position_after = before.get("c"), after.get("c")
    assert position_before is not None and position_after is not None
    assert position_before.id < position_after.id


@pytest.mark.redis
def test_redis_broker_appends_and_publishes_after_commit(
    make_events_app: Callable[..., App], redis_url: str, Note: t.Any
) -> None:
    import redis

    app, db = make_events_app(
        {"REDIS_URL": redis_url, "EVENTS_REDIS_PREFIX": "test-publish:", "EVENTS_HISTORY_SIZE": 5}
    )
    broker = state_for(app).broker
    assert isinstance(broker, RedisBroker)
    client = redis.Redis.from_url(redis_url)
    pubsub = client.pubsub()
    pubsub.subscribe("test-publish:project:1")
    assert pubsub.get_message(timeout=1)["type"] == "subscribe"  # type: ignore[index]
    with app.app_context():
        db.session.add(Note(text="x"))
        publish("project:1", "note.created", {"n": 1})
        assert pubsub.get_message(timeout=0.2) is None
        db.session.add(Note(text="y"))
        publish("project:1", "never", {})
        db.session.rollback()
        db.session.add(Note(text="x"))
        publish("project:1", "note.created", {"n": 1})
        db.session.commit()
    message = pubsub.get_message(timeout=2)
    assert message is not None
    [entry] = client.xrange("test-publish:{project:1}")
    entry_id = entry[0].decode()
    epoch = int(client.get("test-publish:{project:1}:epoch"))  # type: ignore[arg-type]
    assert message["data"] == f"{entry_id}\n{epoch}\nnote.created\n".encode() + b'{"n":1}'
    # The entry names its origin: the outbox row it was sent from.
    assert entry[1].keys() == {b"t", b"d", b"o"}
    assert (entry[1][b"t"], entry[1][b"d"]) == (b"note.created", b'{"n":1}')
    assert entry[1][b"o"].startswith(b"1.")
    assert pubsub.get_message(timeout=0.2) is None
    pubsub.close()
    client.close()


@pytest.mark.redis
def test_redis_history_is_bounded_and_reports_trimming(redis_url: str) -> None:
    broker = RedisBroker(redis_url, history_size=3, prefix="test-trim:")
    events = [broker.publish("c", "t", b"%d" % n) for n in range(500)]
    assert all(isinstance(e, Event) for e in events)
    hist = broker.history("c", StreamId(0, 0), 1000)
    assert 3 <= len(hist.entries) < 500
    assert hist.entries[-1][0] == events[-1].id
    ids = [e.id for e in events]
    trimmed_up_to = ids.index(str(hist.max_deleted))
    assert [entry[0] for entry in hist.entries] == ids[trimmed_up_to + 1 :]
    assert hist.head.id == StreamId.parse(events[-1].id)
    assert broker.positions(["c"])["c"] == hist.head
    broker.close()


def test_memory_history_is_bounded_and_reports_trimming() -> None:
    broker = MemoryBroker(history_size=3)
    ids = [broker.publish("c", "t", b"%d" % n).id for n in range(10)]
    hist = broker.history("c", StreamId(0, 0), 100)
    assert [entry[0] for entry in hist.entries] == ids[-3:]
    assert str(hist.max_deleted) == ids[-4]
    assert [entry[0] for entry in broker.history("c", StreamId.parse(ids[7]), 100).entries] == ids[
        8:
    ]


def test_captured_events_sees_only_committed_events(
    events_app: App, captured_events: list[Event], Note: t.Any
) -> None:
    app, db = events_app
    with app.app_context():
        db.session.add(Note(text="x"))
        publish("c", "kept", 1)
        db.session.commit()
        db.session.add(Note(text="y"))
        publish("c", "dropped", 2)
        db.session.rollback()
        publish("c", "now", 3)
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        ("c", "kept", 1),
        ("c", "now", 3),
    ]


def test_broker_failure_after_commit_holds_the_event_in_the_outbox(
    make_events_app: Callable[..., App], Note: t.Any, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlalchemy as sa

    from karaffe._servers import free_port
    from karaffe.events.outbox import outbox_table

    app, db = make_events_app({"REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"})
    with app.app_context():
        db.session.add(Note(text="kept"))
        publish("project:1", "note.created", {})
        db.session.commit()
        assert db.session.query(Note).count() == 1
        held = db.session.execute(sa.select(outbox_table.c.channel, outbox_table.c.type)).all()
    assert held == [("project:1", "note.created")]
    [record] = [r for r in caplog.records if r.name == "karaffe.events.outbox"]
    assert record.levelname == "WARNING"
    assert "held in the outbox" in record.message


def test_works_with_karaffe_db_sessions(tmp_path: t.Any) -> None:
    import sqlalchemy as sa

    from karaffe.db import Database
    from karaffe.events import event_published

    app = karaffe.App("karaffe_events_db_test")
    Events(app)
    app.configure(
        {"TESTING": True, "SECRET_KEY": "s", "DATABASE_URL": f"sqlite:///{tmp_path}/db.sqlite"},
        environ={},
    )
    database = Database()
    database.init_app(app)
    sent: list[Event] = []
    with event_published.connected_to(lambda _, event: sent.append(event), sender=app):
        with app.app_context():
            database.session.execute(sa.text("select 1"))
            publish("c", "committed", 1)
            database.session.commit()
        with app.app_context():
            database.session.execute(sa.text("select 1"))
            publish("c", "abandoned", 2)
        with app.app_context():
            database.session.execute(sa.text("select 1"))
            database.session.commit()
    assert [(e.type, e.data) for e in sent] == [("committed", 1)]


def test_redis_broker_without_a_stream_warns_once_at_start(
    make_app: Callable[..., karaffe.App], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("WARNING", logger="karaffe.events")
    Events(make_app({"REDIS_URL": "redis://127.0.0.1:9/0"}))
    warned = [r for r in caplog.records if "live updates are off" in r.getMessage()]
    assert len(warned) == 1
    assert "EVENTS_RELAY_URL" in warned[0].getMessage()


@pytest.mark.parametrize(
    "config",
    [
        {"EVENTS_RELAY_URL": "/events/stream"},
        {"EVENTS_SERVE_STREAM": True},
        {"REDIS_URL": None},
    ],
)
def test_a_reachable_stream_does_not_warn(
    make_app: Callable[..., karaffe.App], caplog: pytest.LogCaptureFixture, config: dict
) -> None:
    caplog.set_level("WARNING", logger="karaffe.events")
    Events(make_app({"REDIS_URL": "redis://127.0.0.1:9/0", **config}))
    assert not [r for r in caplog.records if "live updates are off" in r.getMessage()]
