"""The hub's fan-out without I/O: events that arrive in one turn of the event
loop reach each connection in one write, encoded once for all of them, and
batching never duplicates, drops or reorders what a connection is sent.

With a write interval, the events of a busy channel are held until that long
after its last write and go out together; a quiet channel's event goes out
at once. The event loop's clock is the test's (``Clock``): no test waits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

from karaffe.events.protocol import Position, StreamId
from karaffe.events.relay import RelayConfig
from karaffe.events.relay.connection import Connection, Message
from karaffe.events.relay.hub import ChannelFeed, Hub
from karaffe.events.relay.metrics import Metrics
from karaffe.events.session import StreamSession
from karaffe.events.tokens import ChannelGrant

EPOCH = 7


class Client:
    """An ASGI ``send`` that records the body of every write."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    async def send(self, message: Message) -> None:
        self.writes.append(message["body"])

    def frames(self) -> list[bytes]:
        return [f for w in self.writes for f in w.split(b"\n\n") if f]

    def ids(self) -> list[str]:
        """The event numbers (``n``) received, in order; ``reset`` frames as "reset"."""
        out = []
        for frame in self.frames():
            if b"event: reset" in frame:
                out.append("reset")
            elif b'"n"' in frame:
                out.append(frame.split(b'"n":')[1].split(b"}")[0].decode())
        return out


def make_hub(write_interval: float = 0.0) -> Hub:
    config = RelayConfig(secret_key="s", redis_url="redis://unused", write_interval=write_interval)
    return Hub(config, Metrics())


def connect(hub: Hub, channels: tuple[str, ...], position: Position | None) -> Client:
    """A connection that replayed up to ``position`` (the feed's, when None)
    and goes live."""
    client = Client()
    grant = ChannelGrant("u", channels, time.time(), time.time() + 600)
    conn = Connection(
        client.send, StreamSession(channels), grant, max_buffer=1 << 20, metrics=hub.metrics
    )
    for channel in channels:
        feed = hub.feeds.setdefault(channel, ChannelFeed(channel))
        feed.joining.add(conn)
        conn.session.positions[channel] = position or feed.position
    hub.add(conn)
    hub.go_live(conn)
    return client


def publish(hub: Hub, channel: str, n: int, epoch: int = EPOCH) -> None:
    feed = hub.feeds[channel]
    hub._dispatch(feed, StreamId(n, 0), epoch, f"{n}-0", "tick", b'{"n":%d}' % n)


def run(test: Callable[[Hub], Awaitable[None]], write_interval: float = 0.0) -> None:
    asyncio.run(test(make_hub(write_interval)))


class Clock:
    """The running event loop's clock, moved by hand: timers scheduled on it
    fire at the first turn of the loop after it passed their time."""

    def __init__(self) -> None:
        self.now = 1000.0
        asyncio.get_running_loop().time = lambda: self.now  # type: ignore[method-assign]

    async def advance(self, seconds: float) -> None:
        self.now += seconds
        # A timer due is run in the turn after the one that finds it due.
        await next_turn()
        await next_turn()


async def next_turn() -> None:
    await asyncio.sleep(0)


def feed_at(hub: Hub, channel: str, n: int) -> None:
    """``channel``'s feed as if it had delivered event ``n`` already."""
    feed = hub.feeds.setdefault(channel, ChannelFeed(channel))
    feed.epoch, feed.last, feed.ready = EPOCH, StreamId(n, 0), True


def test_events_of_one_loop_turn_reach_each_connection_in_one_write() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a, b = connect(hub, ("c",), None), connect(hub, ("c",), None)
        publish(hub, "c", 2)
        publish(hub, "c", 3)
        assert a.writes == b.writes == []
        await next_turn()
        assert len(a.writes) == 1 and a.ids() == ["2", "3"]
        # One bytes object for every connection, not one per connection.
        assert a.writes[0] is b.writes[0]
        assert hub.metrics.deliveries == 4

    run(test)


def test_events_of_separate_turns_are_separate_writes() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        await next_turn()
        publish(hub, "c", 3)
        await next_turn()
        assert len(a.writes) == 2 and a.ids() == ["2", "3"]

    run(test)


def test_each_frame_carries_the_cursor_after_its_event() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        publish(hub, "c", 3)
        await next_turn()
        lines = [f.split(b"\n")[0] for f in a.frames()]
        assert lines == [
            b"id: " + Position(EPOCH, StreamId(n, 0)).segment("c").encode() for n in (2, 3)
        ]

    run(test)


def test_a_connection_going_live_before_the_write_gets_each_event_once() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        live = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        # Replayed up to 1, it was told event 2 while joining, and goes live
        # while event 2 is still pending for the others.
        client = Client()
        grant = ChannelGrant("u", ("c",), time.time(), time.time() + 600)
        conn = Connection(
            client.send, StreamSession(("c",)), grant, max_buffer=1 << 20, metrics=hub.metrics
        )
        conn.session.positions["c"] = Position(EPOCH, StreamId(1, 0))
        conn.early.append(("c", StreamId(2, 0), EPOCH, b'data: {"n":2}\n\n'))
        hub.feeds["c"].joining.add(conn)
        hub.go_live(conn)
        publish(hub, "c", 3)
        await next_turn()
        assert client.ids() == ["2", "3"]
        assert live.ids() == ["2", "3"]

    run(test)


def test_a_connection_catching_up_with_the_feed_gets_each_event_once() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        live = connect(hub, ("c",), None)
        # Behind the feed (a resync delivered event 1 before its replay did).
        behind = connect(hub, ("c",), Position(EPOCH, StreamId(0, 1)))
        assert hub.feeds["c"].slow
        publish(hub, "c", 2)
        publish(hub, "c", 3)
        await next_turn()
        assert not hub.feeds["c"].slow
        assert behind.ids() == ["2", "3"]
        assert live.ids() == ["2", "3"]

    run(test)


def test_a_reset_comes_after_the_pending_events() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        hub.reset_feed(hub.feeds["c"], Position(EPOCH + 1, StreamId(9, 0)), "test")
        await next_turn()
        assert a.ids() == ["2", "reset"]

    run(test)


def test_a_new_epoch_in_the_same_turn_resets_after_the_pending_events() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        publish(hub, "c", 1, epoch=EPOCH + 1)
        publish(hub, "c", 2, epoch=EPOCH + 1)
        await next_turn()
        assert a.ids() == ["2", "reset", "2"]
        assert a.frames()[-1].startswith(
            b"id: " + Position(EPOCH + 1, StreamId(2, 0)).segment("c").encode()
        )

    run(test)


def test_an_event_seen_already_is_not_batched_again() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        publish(hub, "c", 2)
        publish(hub, "c", 1)
        await next_turn()
        assert a.ids() == ["2"]

    run(test)


def test_control_frames_come_after_the_pending_events() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        hub._cut_revoked("u", time.time() + 1)
        await next_turn()
        frames = a.frames()
        assert b'"n":2' in frames[0] and b"event: auth-expired" in frames[1]

    run(test)


def test_several_channels_batch_independently() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        feed_at(hub, "d", 1)
        on_c, on_d = connect(hub, ("c",), None), connect(hub, ("d",), None)
        both = connect(hub, ("c", "d"), None)
        publish(hub, "c", 2)
        publish(hub, "d", 2)
        publish(hub, "c", 3)
        await next_turn()
        assert on_c.ids() == ["2", "3"] and len(on_c.writes) == 1
        assert on_d.ids() == ["2"] and len(on_d.writes) == 1
        # Following two channels, it has its own id lines: in one write too.
        assert both.ids() == ["2", "2", "3"] and len(both.writes) == 1

    run(test)


def test_a_connection_of_several_channels_gets_its_frames_before_a_reset() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        feed_at(hub, "d", 1)
        both = connect(hub, ("c", "d"), None)
        publish(hub, "c", 2)
        publish(hub, "d", 2)
        hub.reset_feed(hub.feeds["c"], Position(EPOCH + 1, StreamId(9, 0)), "test")
        publish(hub, "d", 3)
        await next_turn()
        assert both.ids() == ["2", "2", "reset", "3"]

    run(test)


def test_a_connection_promoted_and_demoted_in_one_turn_keeps_its_order() -> None:
    async def test(hub: Hub) -> None:
        feed_at(hub, "c", 1)
        live = connect(hub, ("c",), None)
        behind = connect(hub, ("c",), Position(EPOCH, StreamId(0, 1)))
        publish(hub, "c", 2)  # behind: its own frame, then the fast path
        publish(hub, "c", 3)  # shared
        publish(hub, "c", 1, epoch=EPOCH + 1)  # a new history: everyone resets
        publish(hub, "c", 2, epoch=EPOCH + 1)
        await next_turn()
        assert behind.ids() == ["2", "3", "reset", "2"]
        assert live.ids() == ["2", "3", "reset", "2"]

    run(test)


def test_a_busy_channel_is_written_at_most_once_per_write_interval() -> None:
    async def test(hub: Hub) -> None:
        clock = Clock()
        feed_at(hub, "c", 1)
        a, b = connect(hub, ("c",), None), connect(hub, ("c",), None)
        publish(hub, "c", 2)
        await next_turn()
        # Quiet until now: at once.
        assert a.ids() == ["2"] and len(a.writes) == 1
        await clock.advance(0.1)
        publish(hub, "c", 3)
        await next_turn()
        await clock.advance(0.1)
        publish(hub, "c", 4)
        await next_turn()
        assert len(a.writes) == 1
        # 0.25 s after the last write, the events held meanwhile, in one write.
        await clock.advance(0.05)
        assert a.ids() == ["2", "3", "4"] and len(a.writes) == 2
        assert a.writes[1] is b.writes[1]
        assert hub.metrics.deliveries == 6

    run(test, write_interval=0.25)


def test_a_channel_quiet_for_the_write_interval_is_written_at_once() -> None:
    async def test(hub: Hub) -> None:
        clock = Clock()
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        await next_turn()
        await clock.advance(0.25)
        publish(hub, "c", 3)
        await next_turn()
        assert a.ids() == ["2", "3"] and len(a.writes) == 2

    run(test, write_interval=0.25)


def test_a_busy_channel_does_not_hold_back_a_quiet_one() -> None:
    async def test(hub: Hub) -> None:
        clock = Clock()
        feed_at(hub, "c", 1)
        feed_at(hub, "d", 1)
        on_c, on_d = connect(hub, ("c",), None), connect(hub, ("d",), None)
        publish(hub, "c", 2)
        await next_turn()
        await clock.advance(0.1)
        publish(hub, "c", 3)
        publish(hub, "d", 2)
        await next_turn()
        assert on_d.ids() == ["2"]
        # Written no later than due (here with d's, earlier), never twice.
        await clock.advance(0.25)
        assert on_c.ids() == ["2", "3"]

    run(test, write_interval=0.25)


def test_held_events_come_before_a_control_frame_and_are_not_written_again() -> None:
    async def test(hub: Hub) -> None:
        clock = Clock()
        feed_at(hub, "c", 1)
        a = connect(hub, ("c",), None)
        publish(hub, "c", 2)
        await next_turn()
        publish(hub, "c", 3)
        hub._cut_revoked("u", time.time() + 1)
        frames = a.frames()
        assert b'"n":3' in frames[1] and b"event: auth-expired" in frames[2]
        await clock.advance(0.25)
        assert a.ids() == ["2", "3"]

    run(test, write_interval=0.25)


def test_a_connection_of_several_channels_gets_held_events_together() -> None:
    async def test(hub: Hub) -> None:
        clock = Clock()
        feed_at(hub, "c", 1)
        feed_at(hub, "d", 1)
        both = connect(hub, ("c", "d"), None)
        publish(hub, "c", 2)
        await next_turn()
        publish(hub, "c", 3)
        publish(hub, "d", 2)
        await next_turn()
        # d was quiet: its event goes now, with c's own frame held so far.
        assert both.ids() == ["2", "3", "2"] and len(both.writes) == 2
        await clock.advance(0.1)
        publish(hub, "c", 4)
        publish(hub, "d", 3)
        await next_turn()
        assert len(both.writes) == 2
        await clock.advance(0.15)
        assert both.ids() == ["2", "3", "2", "4", "3"] and len(both.writes) == 3

    run(test, write_interval=0.25)
