"""Presence: entries expire by themselves, in the I/O-free set, in both
brokers and in Redis' own keys; the users present are announced only when
they change."""

from __future__ import annotations

import time
import typing as t
import uuid
from collections.abc import Iterator

import pytest
import redis

from karaffe.events import MemoryBroker, RedisBroker
from karaffe.events.brokers import Broker
from karaffe.events.presence import PresenceSet, entry, gone, here, users_of

# -- the I/O-free part ---------------------------------------------------------------


def test_an_entry_is_present_until_its_heartbeat_is_ttl_old() -> None:
    found = PresenceSet()
    found.touch("1/a", now=100.0, ttl=30.0)
    found.touch("2/b", now=110.0, ttl=30.0)
    assert found.expire(129.9) == []
    assert found.expire(130.0) == ["1/a"]
    assert found.entries() == ["2/b"]


def test_a_heartbeat_extends_an_entry_and_a_goodbye_removes_it() -> None:
    found = PresenceSet()
    found.touch("1/a", now=100.0, ttl=30.0)
    found.touch("1/a", now=125.0, ttl=30.0)
    assert found.expire(150.0) == []
    found.leave("1/a", now=151.0)
    assert found.entries() == []


def test_touching_drops_the_entries_expired_meanwhile() -> None:
    found = PresenceSet()
    found.touch("1/a", now=100.0, ttl=10.0)
    found.touch("2/b", now=200.0, ttl=10.0)
    assert found.entries() == ["2/b"]


def test_users_are_distinct_and_sorted_like_numbers() -> None:
    assert users_of(["10/a", "9/b", "10/c", "bob/x"]) == ["9", "10", "bob"]


@pytest.mark.parametrize("tab", ["", "a/b", "x" * 65, "tab id", "é"])
def test_a_malformed_tab_id_is_refused(tab: str) -> None:
    with pytest.raises(ValueError, match="tab id"):
        entry(7, tab)


def test_an_entry_names_the_user_and_the_tab() -> None:
    class User:
        id = 7

    assert entry(User(), "k3-x_9") == "7/k3-x_9"


# -- the brokers ---------------------------------------------------------------------


@pytest.fixture(params=["memory", pytest.param("redis", marks=pytest.mark.redis)])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "memory":
        yield MemoryBroker(100)
        return
    made = RedisBroker(request.getfixturevalue("redis_url"), 100, f"p{uuid.uuid4().hex[:8]}:")
    yield made
    made.close()


def test_a_broker_returns_the_entries_before_and_after(broker: Broker) -> None:
    assert broker.presence("issue:1", "1/a", 30) == ([], ["1/a"])
    assert broker.presence("issue:1", "2/b", 30) == (["1/a"], ["1/a", "2/b"])
    assert broker.presence("issue:1", "1/a", 30) == (["1/a", "2/b"], ["1/a", "2/b"])
    assert broker.presence("issue:1", "1/a", 30, leave=True) == (["1/a", "2/b"], ["2/b"])
    assert broker.presence("issue:2", "1/a", 30) == ([], ["1/a"])


def test_a_broker_forgets_an_entry_whose_heartbeats_stopped(broker: Broker) -> None:
    """The next heartbeat on the channel sees it go (and so announces it)."""
    broker.presence("issue:1", "2/b", 30)
    broker.presence("issue:1", "1/closed-tab", 0.2)
    time.sleep(0.3)
    before, after = broker.presence("issue:1", "2/b", 30)
    assert (before, after) == (["1/closed-tab", "2/b"], ["2/b"])


def test_a_goodbye_of_an_unknown_entry_changes_nothing(broker: Broker) -> None:
    assert broker.presence("issue:1", "1/a", 30, leave=True) == ([], [])


@pytest.mark.redis
def test_redis_lets_a_presence_key_expire_with_its_last_entry(redis_url: str) -> None:
    """No leak when every tab died and nobody heartbeats the channel again."""
    made = RedisBroker(redis_url, 100, f"p{uuid.uuid4().hex[:8]}:")
    client = redis.Redis.from_url(redis_url)
    key = made.keys.presence("issue:9")
    made.presence("issue:9", "1/a", 1.0)
    made.presence("issue:9", "2/b", 0.1)  # a shorter entry never shortens the key's life
    assert 500 < t.cast(int, client.pttl(key)) <= 1000
    time.sleep(1.1)
    assert client.exists(key) == 0
    made.close()
    client.close()


def test_the_memory_broker_drops_channels_left_empty() -> None:
    made = MemoryBroker(100)
    made.presence("issue:1", "1/a", 30)
    made.presence("issue:1", "1/a", 30, leave=True)
    assert made._presence == {}


# -- announcing ---------------------------------------------------------------------


def test_presence_is_announced_when_the_users_change(
    app: t.Any, captured_events: list[t.Any]
) -> None:
    with app.app_context():
        assert here("issue:1", 1, "a").users == ["1"]
        assert here("issue:1", 2, "b").users == ["1", "2"]
        assert here("issue:1", 2, "b").changed is False  # a heartbeat
        assert here("issue:1", 2, "c").changed is False  # a second tab of the same user
        assert gone("issue:1", 2, "b").changed is False  # one tab of 2 is still open
        assert gone("issue:1", 2, "c").users == ["1"]
    assert [(e.channel, e.type, e.data) for e in captured_events] == [
        ("issue:1", "presence", {"users": ["1"]}),
        ("issue:1", "presence", {"users": ["1", "2"]}),
        ("issue:1", "presence", {"users": ["1"]}),
    ]
