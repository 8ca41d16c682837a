"""One subscriber's stream, without I/O: the resume logic shared by the
app's own stream endpoint and the relay.

A :class:`StreamSession` knows the channels of one connection and its
position in each. It turns history reads and live messages into SSE bytes,
tells a reader whose position history no longer covers to reset, and drops
what the reader already has (the same event seen in the replay and live).
"""

from __future__ import annotations

import typing as t
from collections.abc import Sequence

import orjson

from .brokers import History
from .protocol import (
    START,
    Cursor,
    Position,
    StreamId,
    event_frame,
    event_tail,
    frame,
    needs_reset,
)

__all__ = ["StreamSession", "control"]


def control(event: str, data: t.Any, id: str | None = None) -> bytes:
    """A relay event (``reset``, ``token-expiring``, ``auth-expired``,
    ``reconnect``), its data as JSON."""
    return frame(orjson.dumps(data).decode(), event=event, id=id)


class StreamSession:
    """Positions of one connection in each of its ``channels``.

    :param channels: the channels followed, in a fixed order (the cursor's).
    :param cursor: where the reader resumes; channels it does not name start
        at the position given by ``heads`` (live from now).
    :param on_reset: called with the channel whenever a ``reset`` frame is
        made (the relay counts them in its metrics as they are sent).
    """

    __slots__ = ("channels", "on_reset", "positions", "positions_set", "resets")

    def __init__(
        self,
        channels: Sequence[str],
        cursor: Cursor | None = None,
        heads: t.Mapping[str, Position] | None = None,
        on_reset: t.Callable[[str], None] | None = None,
    ) -> None:
        self.channels = tuple(channels)
        self.positions: dict[str, Position] = {}
        #: How many ``reset`` frames this session produced.
        self.resets = 0
        self.on_reset = on_reset
        #: The channels whose position the cursor gave.
        self.positions_set: frozenset[str] = frozenset()
        given = []
        for channel in self.channels:
            found = cursor.get(channel) if cursor is not None else None
            if found is None:
                found = (heads or {}).get(channel, START)
            else:
                given.append(channel)
            self.positions[channel] = found
        if given:
            self.positions_set = frozenset(given)

    def cursor(self) -> str:
        """The current position in every channel: the SSE ``id:``."""
        return "~".join(self.positions[ch].segment(ch) for ch in self.channels)

    def after(self, channel: str) -> StreamId:
        """The id to read the history of ``channel`` after."""
        position = self.positions[channel]
        return position.id

    def reset(self, channel: str, position: Position) -> bytes:
        """The ``reset`` frame telling the reader that what it missed on
        ``channel`` cannot be sent exactly: it reloads that channel's data,
        and the stream goes on from ``position``."""
        self.positions[channel] = position
        self.resets += 1
        if self.on_reset is not None:
            self.on_reset(channel)
        return control("reset", {"channel": channel}, id=self.cursor())

    def replay(self, channel: str, history: History, complete: bool = True) -> bytes:
        """Frames for what ``history`` holds after the reader's position, or
        one ``reset`` frame when it does not hold all of it. ``complete`` is
        false when the read hit its limit: more was missed than is replayed."""
        position = self.positions[channel]
        if not complete or needs_reset(position, history.epoch, history.max_deleted):
            return self.reset(channel, history.head)
        if history.epoch is None:
            return b""
        out = []
        for id, type, data_json in history.entries:
            chunk = self.live(channel, id, history.epoch, type, data_json)
            if chunk:
                out.append(chunk)
        if not history.entries and position.epoch != history.epoch:
            # Position of epoch 0 on a channel whose history has begun (and is whole).
            self.positions[channel] = Position(history.epoch, position.id)
        return b"".join(out)

    def live(self, channel: str, id: str, epoch: int, type: str, data_json: bytes) -> bytes | None:
        """The frame of one event, or ``None`` if the reader has it already."""
        tail = event_tail(id, channel, type, data_json)
        return self.live_encoded(channel, StreamId.parse(id), epoch, tail)

    def live_encoded(self, channel: str, id: StreamId, epoch: int, tail: bytes) -> bytes | None:
        """:meth:`live` for an event whose :func:`event_tail` is encoded
        already (once per channel, by the relay). A new epoch (history lost,
        as when Redis restarted without its data) resets the reader, since
        what it missed is gone."""
        position = self.positions[channel]
        if epoch != position.epoch and position.epoch != 0:
            return self.reset(channel, Position(epoch, id))
        if position.epoch == epoch and id <= position.id:
            return None
        self.positions[channel] = Position(epoch, id)
        return event_frame(self.cursor(), tail)
