"""StreamSession, the resume logic shared by the relay and the app's stream:
whatever the interleaving and wherever the client stops, resuming from its
cursor yields exactly what it missed (in order per channel), or an honest reset."""

from __future__ import annotations

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from karaffe.events.brokers import MemoryBroker
from karaffe.events.protocol import Cursor, Position, SSEParser, StreamId, unpack_message
from karaffe.events.session import StreamSession

CHANNELS = ["a", "b", "c"]


def messages(data: bytes) -> list[tuple[str, str, object]]:
    """``(event, channel, data)`` of each SSE message in ``data``."""
    out = []
    for m in SSEParser().feed(data):
        body = orjson.loads(m.data)
        out.append((m.event, body["channel"], body.get("data")))
    return out


def replay(broker: MemoryBroker, session: StreamSession) -> bytes:
    return b"".join(
        session.replay(channel, broker.history(channel, session.after(channel), 10_000))
        for channel in session.channels
    )


@settings(max_examples=80, deadline=None)
@given(
    plan=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=40),
    cut=st.integers(0, 40),
    followed=st.lists(st.sampled_from(CHANNELS), min_size=1, max_size=3, unique=True),
)
def test_resume_from_any_cut_is_exact(plan: list[str], cut: int, followed: list[str]) -> None:
    broker = MemoryBroker(history_size=1000)
    session = StreamSession(followed, Cursor(), broker.positions(followed))
    listener = broker.listen(followed)
    events = [broker.publish(channel, "t", b"%d" % n) for n, channel in enumerate(plan)]
    delivered: list[tuple[str, object]] = []
    for _ in range(min(cut, listener.qsize())):
        channel, payload = listener.get_nowait()
        frame = session.live(channel, *unpack_message(payload))
        assert frame is not None
        delivered += [(ch, data) for _, ch, data in messages(frame)]
    # The browser reconnects with the last id it saw: the session's cursor.
    resumed = StreamSession(followed, Cursor.parse(session.cursor()))
    rest = [(ch, data) for _, ch, data in messages(replay(broker, resumed))]
    for channel in followed:
        expected = [int(e.data) for e in events if e.channel == channel]
        got = [data for ch, data in delivered + rest if ch == channel]
        assert got == expected, "exactly the channel's events, once, in order"


@settings(max_examples=60, deadline=None)
@given(published=st.integers(1, 60), size=st.integers(1, 20), seen=st.integers(0, 60))
def test_resume_beyond_bounded_history_resets_or_is_exact(
    published: int, size: int, seen: int
) -> None:
    broker = MemoryBroker(history_size=size)
    start = broker.positions(["a"])["a"]
    events = [broker.publish("a", "t", b"%d" % n) for n in range(published)]
    seen = min(seen, published)
    epoch = broker.positions(["a"])["a"].epoch
    position = Position(epoch, StreamId.parse(events[seen - 1].id)) if seen else start
    session = StreamSession(["a"], Cursor({"a": position}))
    frames = [(kind, data) for kind, _, data in messages(replay(broker, session))]
    missed = list(range(seen, published))
    if published - size > seen:
        assert frames == [("reset", None)], "the history no longer covers it"
        assert session.positions["a"] == broker.positions(["a"])["a"]
    else:
        assert frames == [("message", n) for n in missed]


def test_a_new_epoch_live_resets_the_reader() -> None:
    session = StreamSession(["a"], Cursor({"a": Position(7, StreamId(10, 0))}))
    frame = session.live("a", "20-0", 8, "t", b"1")
    assert frame is not None
    [message] = SSEParser().feed(frame)
    assert (message.event, orjson.loads(message.data)) == ("reset", {"channel": "a"})
    assert session.positions["a"] == Position(8, StreamId(20, 0))
    assert session.live("a", "20-0", 8, "t", b"1") is None, "already past it"
    assert session.live("a", "21-0", 8, "t", b"2") is not None


def test_events_the_reader_has_are_dropped() -> None:
    session = StreamSession(["a"], Cursor({"a": Position(7, StreamId(10, 5))}))
    assert session.live("a", "10-5", 7, "t", b"1") is None
    assert session.live("a", "9-9", 7, "t", b"1") is None
    assert session.live("a", "10-6", 7, "t", b"1") is not None
