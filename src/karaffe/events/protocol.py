"""The I/O-free core of karaffe's live events, shared by the Flask publisher,
the brokers and the asyncio relay. Nothing here reads a socket, a clock or a
setting: it turns values into bytes and bytes into values, and is tested once.

- :class:`Event` is the model every part speaks: ``{"id", "channel", "type", "data"}``.
- :func:`frame` / :class:`SSEParser` write and read Server-Sent Events.
- :class:`Cursor` is the resume position of one connection in every channel
  it follows; it is the SSE ``id:``, so the browser's own ``Last-Event-ID``
  resumes exactly where it stopped, for many channels at once.
- :func:`event_tail` encodes an event once per channel; :func:`event_frame`
  puts an ``id:`` line before it (once per channel too for the readers of one
  channel, whose cursor is the channel's position).
"""

from __future__ import annotations

import base64
import hashlib
import re
import typing as t
from dataclasses import dataclass

import orjson

__all__ = [
    "CONTROL_EVENTS",
    "START",
    "ZERO",
    "Cursor",
    "CursorError",
    "Event",
    "Position",
    "ProtocolError",
    "SSEMessage",
    "SSEParser",
    "StreamId",
    "channel_key",
    "comment",
    "dump_data",
    "encode_cursor",
    "envelope",
    "event_frame",
    "event_tail",
    "frame",
    "needs_reset",
    "pack_message",
    "unpack_message",
    "validate_channel",
    "validate_type",
]

#: Channel names: letters, digits and ``_ . : -``, at most 200 characters,
#: so that they are safe in Redis keys, URLs and log lines.
CHANNEL_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,200}")
#: Event types: the same alphabet, at most 100 characters.
TYPE_RE = re.compile(r"[A-Za-z0-9_.:\-]{1,100}")
#: Event types the relay sends itself; an application cannot publish them.
CONTROL_EVENTS = frozenset({"reset", "token-expiring", "auth-expired", "reconnect", "error"})


class ProtocolError(ValueError):
    """A value cannot be encoded or decoded by the events protocol."""


class CursorError(ProtocolError):
    """A resume cursor (``Last-Event-ID`` or ``cursor=``) is malformed."""


def validate_channel(channel: str) -> str:
    """Return ``channel`` or raise :class:`ProtocolError` saying why it is refused."""
    if not isinstance(channel, str) or not CHANNEL_RE.fullmatch(channel):
        raise ProtocolError(f"invalid channel name {channel!r}: use 1-200 of A-Z a-z 0-9 _ . : -")
    return channel


def validate_type(type: str) -> str:
    """Return the event ``type`` or raise :class:`ProtocolError`."""
    if not isinstance(type, str) or not TYPE_RE.fullmatch(type):
        raise ProtocolError(f"invalid event type {type!r}: use 1-100 of A-Z a-z 0-9 _ . : -")
    if type in CONTROL_EVENTS:
        raise ProtocolError(f"event type {type!r} is reserved for the relay")
    return type


# -- stream ids ----------------------------------------------------------------


@dataclass(frozen=True, slots=True, order=True)
class StreamId:
    """A position in one channel's history: a Redis Stream id ``<ms>-<seq>``.

    The memory broker mints ids of the same shape, so every broker orders
    events the same way. ``StreamId(0, 0)`` is "before the first event".
    """

    ms: int
    seq: int

    @classmethod
    def parse(cls, raw: str | bytes) -> StreamId:
        text = raw.decode("ascii") if isinstance(raw, bytes) else raw
        ms, sep, seq = text.partition("-")
        if not sep or not ms.isdigit() or not seq.isdigit():
            raise ProtocolError(f"invalid stream id {text!r}")
        return cls(int(ms), int(seq))

    def __str__(self) -> str:
        return f"{self.ms}-{self.seq}"

    def next(self) -> StreamId:
        """The smallest id after this one (for exclusive range reads)."""
        return StreamId(self.ms, self.seq + 1)


ZERO = StreamId(0, 0)


# -- events --------------------------------------------------------------------


_UNDECODED: t.Any = object()


class Event:
    """One event: ``id`` is its position in the channel's history (monotonic
    per channel), ``type`` says what happened, ``data`` is any JSON value.

    A broker returns the events it published with :meth:`from_json`: their
    ``data`` is decoded from the publisher's JSON only if someone reads it
    (the ``captured_events`` fixture does; publishing does not).
    """

    __slots__ = ("_data", "_json", "channel", "id", "type")
    __match_args__ = ("id", "channel", "type", "data")

    def __init__(self, id: str, channel: str, type: str, data: t.Any) -> None:
        self.id = id
        self.channel = channel
        self.type = type
        self._data = data
        self._json: bytes | None = None

    @classmethod
    def from_json(cls, id: str, channel: str, type: str, data_json: bytes) -> Event:
        """The event whose data is the JSON ``data_json``, decoded on first use."""
        event = cls(id, channel, type, _UNDECODED)
        event._json = data_json
        return event

    @property
    def data(self) -> t.Any:
        if self._data is _UNDECODED:
            self._data = orjson.loads(t.cast(bytes, self._json))
        return self._data

    def to_dict(self) -> dict[str, t.Any]:
        return {"id": self.id, "channel": self.channel, "type": self.type, "data": self.data}

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Event):
            return NotImplemented
        return (self.id, self.channel, self.type, self.data) == (
            other.id,
            other.channel,
            other.type,
            other.data,
        )

    __hash__ = None  # type: ignore[assignment]  # data may be any JSON value

    def __repr__(self) -> str:
        return (
            f"Event(id={self.id!r}, channel={self.channel!r}, type={self.type!r}, "
            f"data={self.data!r})"
        )


def dump_data(data: t.Any) -> bytes:
    """Encode event data as compact JSON (once, at publish time)."""
    try:
        return orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS)
    except TypeError as exc:
        raise ProtocolError(f"event data is not JSON serializable: {exc}") from None


def pack_message(id: str, epoch: int, type: str, data_json: bytes) -> bytes:
    """The pub/sub payload of one event: its ``id``, the channel's ``epoch``,
    its ``type`` and the JSON data, on four lines. The Redis script builds the
    same bytes, since only it knows the id."""
    return b"%s\n%d\n%s\n%s" % (id.encode("ascii"), epoch, type.encode("ascii"), data_json)


def unpack_message(payload: bytes) -> tuple[str, int, str, bytes]:
    """Split a pub/sub payload into ``(id, epoch, type, data_json)``."""
    parts = payload.split(b"\n", 3)
    if len(parts) != 4 or not parts[1].isdigit():
        raise ProtocolError("malformed event message")
    return parts[0].decode("ascii"), int(parts[1]), parts[2].decode("ascii"), parts[3]


def envelope(id: str, channel: str, type: str, data_json: bytes) -> bytes:
    """The JSON an SSE ``data:`` line carries: the :class:`Event` as an object.
    ``data_json`` is spliced in as is: the data is encoded once, by the publisher."""
    return b'{"id":"%s","channel":"%s","type":"%s","data":%s}' % (
        id.encode("ascii"),
        channel.encode("ascii"),
        type.encode("ascii"),
        data_json,
    )


def event_tail(id: str, channel: str, type: str, data_json: bytes) -> bytes:
    """Everything of an event's SSE frame after its ``id:`` line. Encoded once
    per channel and shared by every connection that follows the channel.

    Application events are unnamed SSE messages (``onmessage`` gets them all);
    their type is in the envelope. Named events are the relay's own
    (:data:`CONTROL_EVENTS`)."""
    return b"data: " + envelope(id, channel, type, data_json) + b"\n\n"


def event_frame(cursor: str, tail: bytes) -> bytes:
    """An event's SSE frame: the ``id:`` line carrying the reader's
    :class:`Cursor` after the event, then its :func:`event_tail`."""
    return b"id: " + cursor.encode("ascii") + b"\n" + tail


# -- SSE framing ---------------------------------------------------------------

_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def frame(
    data: str | None = None,
    *,
    event: str | None = None,
    id: str | None = None,
    retry: int | None = None,
) -> bytes:
    """Encode one SSE message. Multi-line ``data`` becomes one ``data:`` line
    per line (the browser joins them with ``\\n``); ``event`` and ``id`` must
    be single lines, ``retry`` is the reconnection delay in milliseconds."""
    out: list[str] = []
    if id is not None:
        if _LINE_BREAK.search(id) or "\0" in id:
            raise ProtocolError("an SSE id cannot contain a line break or NUL")
        out.append(f"id: {id}\n")
    if event is not None:
        if _LINE_BREAK.search(event):
            raise ProtocolError("an SSE event name cannot contain a line break")
        out.append(f"event: {event}\n")
    if retry is not None:
        if retry < 0:
            raise ProtocolError("retry must not be negative")
        out.append(f"retry: {int(retry)}\n")
    if data is not None:
        out.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    if not out:
        raise ProtocolError("an SSE message needs at least one field")
    out.append("\n")
    return "".join(out).encode("utf-8")


def comment(text: str = "") -> bytes:
    """An SSE comment (a heartbeat): ignored by clients, keeps proxies open."""
    return (
        "".join(f":{' ' if line else ''}{line}\n" for line in _LINE_BREAK.split(text)).encode(
            "utf-8"
        )
        + b"\n"
    )


@dataclass(frozen=True, slots=True)
class SSEMessage:
    """A dispatched SSE message, as the browser's EventSource would see it."""

    data: str
    event: str = "message"
    id: str | None = None
    retry: int | None = None


class SSEParser:
    """Incremental SSE parser following the WHATWG algorithm: feed it bytes as
    they arrive, it returns the messages completed so far.

    ``last_event_id`` persists across messages as in the browser.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._first = True
        self._data: list[str] = []
        self._event = ""
        self._retry: int | None = None
        self._has_id = False
        self.last_event_id = ""
        #: Number of comment lines seen (heartbeats).
        self.comments = 0

    def feed(self, chunk: bytes) -> list[SSEMessage]:
        self._buffer += chunk
        if self._first and len(self._buffer) >= 3:
            if self._buffer.startswith(b"\xef\xbb\xbf"):
                self._buffer = self._buffer[3:]
            self._first = False
        messages: list[SSEMessage] = []
        while True:
            match = re.search(rb"\r\n|\r|\n", self._buffer)
            if match is None:
                break
            # A lone CR at the end may be the first half of CRLF: wait for more.
            if match.group() == b"\r" and match.end() == len(self._buffer):
                break
            line = self._buffer[: match.start()].decode("utf-8", "replace")
            self._buffer = self._buffer[match.end() :]
            message = self._line(line)
            if message is not None:
                messages.append(message)
        return messages

    def _line(self, line: str) -> SSEMessage | None:
        if line == "":
            return self._dispatch()
        if line.startswith(":"):
            self.comments += 1
            return None
        name, colon, value = line.partition(":")
        if colon and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        elif name == "id":
            if "\0" not in value:
                self.last_event_id = value
                self._has_id = True
        elif name == "retry" and value.isdigit():
            self._retry = int(value)
        return None

    def _dispatch(self) -> SSEMessage | None:
        data, event, retry = self._data, self._event, self._retry
        self._data, self._event, self._retry = [], "", None
        if not data:
            return None
        return SSEMessage(
            data="\n".join(data),
            event=event or "message",
            id=self.last_event_id or None,
            retry=retry,
        )


# -- resume cursors --------------------------------------------------------------

_B36 = "0123456789abcdefghijklmnopqrstuvwxyz"
_SEGMENT_RE = re.compile(
    r"([A-Za-z0-9_\-]{6})\.([0-9a-z]{1,14})\.([0-9a-z]{1,12})-([0-9a-z]{1,12})"
)


def _b36(n: int) -> str:
    if n == 0:
        return "0"
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_B36[r])
    return "".join(reversed(digits))


def channel_key(channel: str) -> str:
    """Six URL-safe characters naming ``channel`` inside a cursor (a hash, so
    that cursors stay short whatever the channel names are)."""
    digest = hashlib.blake2b(channel.encode("utf-8"), digest_size=6).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:6]


@dataclass(frozen=True, slots=True)
class Position:
    """Where a reader stands in one channel: the ``epoch`` of its history
    (changes when the history is lost or reset; 0 when the channel had none)
    and the id of the last event it has."""

    epoch: int
    id: StreamId

    def segment(self, channel: str) -> str:
        """This position's part of a :class:`Cursor`."""
        return f"{channel_key(channel)}.{_b36(self.epoch)}.{_b36(self.id.ms)}-{_b36(self.id.seq)}"


#: The position of a reader in a channel that never had an event.
START = Position(0, ZERO)


class Cursor:
    """The resume position of one connection in each channel it follows.

    Encoded as ``<key>.<epoch>.<ms>-<seq>`` segments joined by ``~`` (all
    URL-safe, base36 numbers), one per channel, where ``<key>`` is
    :func:`channel_key`. Decoding needs the channel names, which the
    connection knows from its token; segments of channels it no longer
    follows are ignored.
    """

    __slots__ = ("_keys",)

    #: Longest cursor accepted, so a hostile header cannot cost much.
    max_length = 8192

    def __init__(self, positions: t.Mapping[str, Position] | None = None) -> None:
        self._keys: dict[str, Position] = {
            channel_key(ch): pos for ch, pos in (positions or {}).items()
        }

    @classmethod
    def parse(cls, raw: str) -> Cursor:
        """Decode a cursor; raise :class:`CursorError` naming what is wrong."""
        if len(raw) > cls.max_length:
            raise CursorError(f"cursor is longer than {cls.max_length} characters")
        cursor = cls()
        if raw == "":
            return cursor
        for index, segment in enumerate(raw.split("~")):
            match = _SEGMENT_RE.fullmatch(segment)
            if match is None:
                raise CursorError(f"cursor segment {index} is malformed: {segment[:40]!r}")
            key, epoch, ms, seq = match.groups()
            if key in cursor._keys:
                raise CursorError(f"cursor names channel key {key!r} twice")
            cursor._keys[key] = Position(int(epoch, 36), StreamId(int(ms, 36), int(seq, 36)))
        return cursor

    def get(self, channel: str) -> Position | None:
        """The position in ``channel``, or ``None`` when the cursor has none."""
        return self._keys.get(channel_key(channel))

    def encode(self, channels: t.Iterable[str]) -> str:
        """The cursor restricted to ``channels``, in that order (missing ones
        are left out)."""
        parts = []
        for ch in channels:
            key = channel_key(ch)
            pos = self._keys.get(key)
            if pos is not None:
                parts.append(pos.segment(ch))
        return "~".join(parts)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Cursor) and other._keys == self._keys

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._keys.items())))

    def __repr__(self) -> str:
        return f"Cursor({self._keys!r})"


def needs_reset(position: Position, epoch: int | None, max_deleted: StreamId) -> bool:
    """Whether a reader at ``position`` must be told ``event: reset``: the
    channel's history (now at ``epoch``, ``None`` when it has none, and with
    every id up to ``max_deleted`` trimmed) no longer holds all it missed.

    A position of epoch 0 was taken before the channel's first event: all of
    the history is new to it, so it is covered unless anything was trimmed.
    """
    if epoch is None:
        return position.epoch != 0
    if position.epoch == 0:
        return max_deleted != ZERO
    if position.epoch != epoch:
        return True
    return position.id < max_deleted


def encode_cursor(positions: t.Mapping[str, Position]) -> str:
    """Encode ``{channel: position}`` as a cursor string, in mapping order."""
    return "~".join(pos.segment(ch) for ch, pos in positions.items())
