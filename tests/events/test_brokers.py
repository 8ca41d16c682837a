"""Both brokers: bytes passed through, events of the outbox never appended
twice, and a reset that every reader of the old history notices."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import orjson
import pytest
import redis

from karaffe.events import MemoryBroker, RedisBroker
from karaffe.events.brokers import Broker
from karaffe.events.protocol import ZERO, Position, needs_reset


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "memory":
        yield MemoryBroker(100)
        return
    url = request.getfixturevalue("redis_url")
    made = RedisBroker(url, 100, prefix=f"t{uuid.uuid4().hex[:8]}:")
    yield made
    made.close()


@pytest.fixture
def redis_broker(redis_url: str) -> Iterator[RedisBroker]:
    made = RedisBroker(redis_url, 100, prefix=f"t{uuid.uuid4().hex[:8]}:")
    yield made
    made.close()


def test_append_many_passes_the_data_through_undecoded(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(data: bytes) -> None:
        raise AssertionError("the broker decoded the data")

    monkeypatch.setattr(orjson, "loads", refuse)
    data = [b'{"n":1}', b"[1,2]", b'"\\u00e9"']
    ids = broker.append_many([("a", "t", data[0]), ("b", "t", data[1]), ("a", "u", data[2])])
    assert len(ids) == 3 and ids[0] < ids[2]
    assert [(i, d) for i, _, d in broker.history("a", ZERO, 10).entries] == [
        (ids[0], data[0]),
        (ids[2], data[2]),
    ]
    assert broker.history("b", ZERO, 10).entries == [(ids[1], "t", data[1])]


def test_publish_many_still_returns_decoded_events(broker: Broker) -> None:
    [event] = broker.publish_many([("c", "t", b'{"n":1}')])
    assert (event.channel, event.type, event.data) == ("c", "t", {"n": 1})


def test_a_reset_makes_every_reader_of_the_old_history_reset(broker: Broker) -> None:
    broker.append_many([("c", "t", b"1"), ("c", "t", b"2")])
    before = broker.positions(["c"])
    broker.reset(["c"])
    after = broker.history("c", ZERO, 10)
    assert after.epoch is not None and after.epoch != before["c"].epoch
    assert needs_reset(before["c"], after.epoch, after.max_deleted)
    # A reader that started before the channel had events missed them too.
    assert needs_reset(Position(0, ZERO), after.epoch, after.max_deleted)
    # A reader positioned now does not, and new events reach it.
    now = broker.positions(["c"])["c"]
    [new] = broker.append_many([("c", "t", b"3")])
    later = broker.history("c", now.id, 10)
    assert not needs_reset(now, later.epoch, later.max_deleted)
    assert [entry[0] for entry in later.entries] == [new]


@pytest.mark.redis
def test_redis_resent_events_found_by_origin_are_not_appended_twice(
    redis_broker: RedisBroker,
) -> None:
    items = [("c", "t", b"1"), ("c", "t", b"2")]
    start = time.time()
    first = redis_broker.append_many(items, origins=["1.10", "2.10"])
    # Sent again (the first attempt timed out, but ran), with a third event.
    again = redis_broker.append_many(
        [*items, ("c", "t", b"3")], origins=["1.10", "2.10", "3.10"], resent_since={"c": start}
    )
    assert again[:2] == first
    entries = redis_broker.history("c", ZERO, 10).entries
    assert [d for _, _, d in entries] == [b"1", b"2", b"3"]


@pytest.mark.redis
def test_redis_a_first_attempt_run_late_skips_what_a_resend_appended(
    redis_broker: RedisBroker,
) -> None:
    # A first attempt that timed out stayed in Redis' socket buffer; the
    # resend ran first, and the first attempt runs after it.
    resent = redis_broker.append_many(
        [("c", "t", b"1"), ("c", "t", b"2")],
        origins=["1.10", "2.10"],
        resent_since={"c": time.time()},
    )
    late = redis_broker.append_many([("c", "t", b"1")], origins=["1.10"])
    assert late == resent[:1]
    assert [d for _, _, d in redis_broker.history("c", ZERO, 10).entries] == [b"1", b"2"]
    ttl = redis_broker.client.ttl(redis_broker.keys.resent("c"))
    assert 0 < ttl <= 3600


@pytest.mark.redis
def test_redis_first_sends_check_nothing_and_store_the_origin(redis_broker: RedisBroker) -> None:
    redis_broker.append_many([("c", "t", b"1")], origins=["1.10"])
    [(_, fields)] = redis_broker.client.xrange(redis_broker.keys.stream("c"))
    assert fields == {b"t": b"t", b"d": b"1", b"o": b"1.10"}
    assert not redis_broker.client.exists(redis_broker.keys.resent("c"))


@pytest.mark.redis
def test_redis_origins_in_the_history_before_resent_since_are_not_looked_at(
    redis_broker: RedisBroker,
) -> None:
    # The look-up covers the time since the first attempt (less the clock
    # skew allowance), not the whole history.
    redis_broker.clock_skew = 0.0
    redis_broker.append_many([("c", "t", b"old")], origins=["1.10"])
    time.sleep(0.01)
    redis_broker.append_many(
        [("c", "t", b"new")], origins=["1.10"], resent_since={"c": time.time()}
    )
    assert [d for _, _, d in redis_broker.history("c", ZERO, 10).entries] == [b"old", b"new"]


@pytest.mark.redis
def test_redis_scripts_reload_after_a_script_flush(redis_broker: RedisBroker) -> None:
    redis_broker.append_many([("a", "t", b"1"), ("b", "t", b"1")])
    redis_broker.client.script_flush()
    ids = redis_broker.append_many([("a", "t", b"2"), ("b", "t", b"2")])
    assert len(ids) == 2
    redis_broker.client.script_flush()
    assert redis_broker.append_many([("a", "t", b"3")])


@pytest.mark.redis
def test_redis_with_timeout_keeps_the_configuration_and_never_retries(
    redis_broker: RedisBroker,
) -> None:
    quick = redis_broker.with_timeout(0.25)
    assert isinstance(quick, RedisBroker) and quick is not redis_broker
    assert (quick.keys, quick.history_size) == (redis_broker.keys, redis_broker.history_size)
    kwargs = quick.client.connection_pool.connection_kwargs
    assert kwargs["socket_timeout"] == kwargs["socket_connect_timeout"] == 0.25
    assert kwargs["retry"].get_retries() == 0
    [id] = quick.append_many([("c", "t", b"1")])
    assert redis_broker.history("c", ZERO, 10).entries[0][0] == id
    quick.close()
    assert redis_broker.is_unavailable(redis.TimeoutError())
    assert redis_broker.is_unavailable(redis.ConnectionError())
    assert not redis_broker.is_unavailable(redis.ResponseError("WRONGTYPE"))
