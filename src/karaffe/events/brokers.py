"""Brokers: where published events go. One interface, two implementations.

- :class:`MemoryBroker`, the embedded default: history and fan-out inside the
  process, so the Flask development server streams events itself with no
  Redis (``make demo``).
- :class:`RedisBroker` (``EVENTS_BROKER=redis``, ``REDIS_URL``): each event is
  appended to a bounded per-channel Redis Stream and published for live
  fan-out by one Lua script, so both happen or neither; the stream entry id
  is the event id. The relay (:mod:`karaffe.events.relay`) reads the same keys.
"""

from __future__ import annotations

import abc
import queue
import threading
import time
import typing as t
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .protocol import (
    START,
    ZERO,
    Event,
    Position,
    StreamId,
    pack_message,
)

if t.TYPE_CHECKING:
    pass

#: Seconds a revocation is remembered: longer than any channel token lives.
REVOCATION_TTL = 7 * 24 * 3600

__all__ = [
    "REVOCATION_TTL",
    "Broker",
    "History",
    "MemoryBroker",
    "RedisBroker",
    "RedisKeys",
    "pack_revocation",
    "unpack_revocation",
]


@dataclass(frozen=True, slots=True)
class History:
    """The part of a channel's history after some position.

    ``entries`` are ``(id, type, data_json)`` in order; ``epoch`` is the
    history's epoch (``None`` when the channel has none); ``head`` is the
    position after the last event ever added; ``max_deleted`` is the newest
    id trimmed away (``0-0`` when none was).
    """

    entries: list[tuple[str, str, bytes]]
    epoch: int | None
    head: Position
    max_deleted: StreamId


class Broker(abc.ABC):
    """Where :func:`karaffe.events.publish` sends events."""

    @abc.abstractmethod
    def publish_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[Event]:
        """Append and fan out ``(channel, type, data_json)`` items, in order,
        and return the events with their ids (their data decoded only when
        read, see :meth:`Event.from_json <karaffe.events.Event.from_json>`)."""

    def publish(self, channel: str, type: str, data_json: bytes) -> Event:
        return self.publish_many([(channel, type, data_json)])[0]

    @abc.abstractmethod
    def positions(self, channels: Iterable[str]) -> dict[str, Position]:
        """The current head of each channel: a reader at these positions gets
        every event published after this call (a page stamps them at render time)."""

    @abc.abstractmethod
    def history(self, channel: str, after: StreamId, limit: int) -> History:
        """At most ``limit`` entries of ``channel`` after ``after``."""

    @abc.abstractmethod
    def revoke(self, user: str, at: float, credential: str | None = None) -> None:
        """Cut ``user``'s open streams and refuse their tokens issued before
        ``at``; with ``credential``, only those bound to that credential."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections."""


# -- memory ------------------------------------------------------------------------


class _MemoryChannel:
    __slots__ = ("entries", "epoch", "last", "max_deleted")

    def __init__(self, epoch: int, size: int) -> None:
        self.epoch = epoch
        self.entries: deque[tuple[StreamId, str, bytes]] = deque(maxlen=size)
        self.last = ZERO
        self.max_deleted = ZERO


class MemoryBroker(Broker):
    """An in-process broker with a bounded history per channel.

    Readers (the development SSE endpoint) call :meth:`listen` and get a
    queue of ``(channel, payload)`` items; payloads are what Redis pub/sub
    would carry (:func:`~karaffe.events.protocol.pack_message`).
    """

    def __init__(self, history_size: int = 1000) -> None:
        self.history_size = history_size
        self._lock = threading.Lock()
        self._channels: dict[str, _MemoryChannel] = {}
        self._listeners: dict[str, set[queue.SimpleQueue[tuple[str, bytes]]]] = {}
        self._revoked: dict[tuple[str, str | None], float] = {}
        self._next_sweep = 1000
        self._revocation_listeners: set[queue.SimpleQueue[tuple[str, bytes]]] = set()

    def _next_id(self, last: StreamId) -> StreamId:
        ms = int(time.time() * 1000)
        return StreamId(ms, 0) if ms > last.ms else StreamId(last.ms, last.seq + 1)

    def publish_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[Event]:
        events = []
        deliveries: list[tuple[queue.SimpleQueue[tuple[str, bytes]], str, bytes]] = []
        with self._lock:
            for channel, type, data_json in items:
                state = self._channels.get(channel)
                if state is None:
                    state = self._channels[channel] = _MemoryChannel(
                        time.time_ns() // 1000, self.history_size
                    )
                id = self._next_id(state.last)
                if len(state.entries) == state.entries.maxlen:
                    state.max_deleted = state.entries[0][0]
                state.entries.append((id, type, data_json))
                state.last = id
                events.append(Event.from_json(str(id), channel, type, data_json))
                payload = pack_message(str(id), state.epoch, type, data_json)
                deliveries.extend((q, channel, payload) for q in self._listeners.get(channel, ()))
        for q, channel, payload in deliveries:
            q.put((channel, payload))
        return events

    def positions(self, channels: Iterable[str]) -> dict[str, Position]:
        with self._lock:
            out = {}
            for channel in channels:
                state = self._channels.get(channel)
                out[channel] = START if state is None else Position(state.epoch, state.last)
            return out

    def history(self, channel: str, after: StreamId, limit: int) -> History:
        with self._lock:
            state = self._channels.get(channel)
            if state is None:
                return History([], None, START, ZERO)
            entries = [(str(i), ty, d) for i, ty, d in state.entries if i > after][:limit]
            return History(
                entries, state.epoch, Position(state.epoch, state.last), state.max_deleted
            )

    def listen(self, channels: Iterable[str]) -> queue.SimpleQueue[tuple[str, bytes]]:
        """A queue receiving every event published on ``channels`` from now on,
        and ``("", revocation)`` items (:func:`pack_revocation`); :meth:`unlisten` it."""
        q: queue.SimpleQueue[tuple[str, bytes]] = queue.SimpleQueue()
        with self._lock:
            for channel in channels:
                self._listeners.setdefault(channel, set()).add(q)
            self._revocation_listeners.add(q)
        return q

    def unlisten(self, q: queue.SimpleQueue[tuple[str, bytes]]) -> None:
        with self._lock:
            for listeners in self._listeners.values():
                listeners.discard(q)
            self._revocation_listeners.discard(q)

    def revoke(self, user: str, at: float, credential: str | None = None) -> None:
        key = (user, credential)
        with self._lock:
            if len(self._revoked) >= self._next_sweep:
                # One entry per logout: forget those older than any token.
                cutoff = time.time() - REVOCATION_TTL
                self._revoked = {k: v for k, v in self._revoked.items() if v > cutoff}
                self._next_sweep = max(1000, 2 * len(self._revoked))
            self._revoked[key] = max(at, self._revoked.get(key, 0.0))
            listeners = list(self._revocation_listeners)
        payload = pack_revocation(user, at, credential)
        for q in listeners:
            q.put(("", payload))

    def revoked_at(self, user: str, credential: str | None = None) -> float | None:
        """When ``user``'s access (or, given, their ``credential``) was last revoked."""
        with self._lock:
            return self._revoked.get((user, credential))


# -- redis -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RedisKeys:
    """Names of the Redis keys and pub/sub channels, under one ``prefix``.

    The channel name is a hash tag in both keys of a channel, so they live
    in the same Redis Cluster slot and one script can write both. With
    ``sharded`` (Redis Cluster), the pub/sub channel is a shard channel named
    like the stream, so the script can ``SPUBLISH`` to it from that slot.
    """

    prefix: str = "karaffe:events:"
    sharded: bool = False

    def stream(self, channel: str) -> str:
        return f"{self.prefix}{{{channel}}}"

    def epoch(self, channel: str) -> str:
        return f"{self.prefix}{{{channel}}}:epoch"

    def trimmed(self, channel: str) -> str:
        """The newest id trimmed from the channel's stream."""
        return f"{self.prefix}{{{channel}}}:trimmed"

    def pubsub(self, channel: str) -> str:
        if self.sharded:
            return self.stream(channel)
        return f"{self.prefix}{channel}"

    def channel_of(self, pubsub_channel: str) -> str:
        name = pubsub_channel[len(self.prefix) :]
        if self.sharded:
            return name[1:-1]
        return name

    @property
    def revocations(self) -> str:
        """The pub/sub channel announcing revoked users to every relay."""
        return f"{self.prefix}revoke"

    def revoked(self, user: str, credential: str | None = None) -> str:
        """The key holding when ``user``'s access (or one credential) was revoked."""
        if credential is None:
            return f"{self.prefix}revoked:{user}"
        return f"{self.prefix}revoked:{user}:{credential}"


def pack_revocation(user: str, at: float, credential: str | None = None) -> bytes:
    """What announces a revocation to every stream: ``user``, ``at`` and
    ``credential`` (when only one credential is revoked), one per line."""
    lines = [user, repr(at)] if credential is None else [user, repr(at), credential]
    return "\n".join(lines).encode("utf-8")


def unpack_revocation(payload: bytes) -> tuple[str, float, str | None] | None:
    """(user, at, credential) of :func:`pack_revocation`, ``None`` if malformed."""
    user, _, rest = payload.decode("utf-8").partition("\n")
    at_raw, _, credential = rest.partition("\n")
    try:
        at = float(at_raw)
    except ValueError:
        return None
    return user, at, credential or None


#: Appends to the stream, trims it, and publishes, atomically. The epoch is
#: created with the first event (and again after Redis lost its data).
#: Trimming is done here rather than by ``XADD MAXLEN``, in batches of a
#: tenth of the history, because the relay must know exactly which ids are
#: gone: the newest trimmed id is kept in the ``trimmed`` key.
PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[3])
end
local id = redis.call('XADD', KEYS[1], '*', 't', ARGV[2], 'd', ARGV[3])
local size = tonumber(ARGV[4])
local excess = redis.call('XLEN', KEYS[1]) - size
if excess > math.max(1, math.floor(size / 10)) then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  local last = gone[#gone][1]
  local ms, seq = string.match(last, '(%d+)-(%d+)')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  redis.call('SET', KEYS[3], last)
end
local payload = id .. '\\n' .. epoch .. '\\n' .. ARGV[2] .. '\\n' .. ARGV[3]
if ARGV[5] == '1' then
  redis.call('SPUBLISH', ARGV[1], payload)
else
  redis.call('PUBLISH', ARGV[1], payload)
end
return {id, epoch}
"""

#: Reads a channel's epoch, trim mark, head and the entries after an id, in
#: one atomic step (a script: pipelines cannot be transactions on a cluster).
READ_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
local trimmed = redis.call('GET', KEYS[3])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local head = false
if #last > 0 then head = last[1][1] end
local entries = {}
if tonumber(ARGV[2]) > 0 then
  entries = redis.call('XRANGE', KEYS[1], ARGV[1], '+', 'COUNT', ARGV[2])
end
return {epoch, trimmed, head, entries}
"""


def _text(raw: t.Any) -> str | None:
    if raw is None:
        return None
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def history_from_reply(reply: t.Sequence[t.Any]) -> History:
    """Build a :class:`History` from :data:`READ_SCRIPT`'s reply (shared by
    the broker and the relay)."""
    epoch_raw, trimmed_raw, head_raw, entries = reply
    epoch_text, head_text = _text(epoch_raw), _text(head_raw)
    if epoch_text is None or head_text is None:
        return History([], None, START, ZERO)
    epoch = int(epoch_text)
    trimmed = StreamId.parse(_text(trimmed_raw) or "0-0")
    items = []
    for entry_id, fields in entries or []:
        values = dict(zip(fields[::2], fields[1::2], strict=True))
        data = values.get(b"d", values.get("d", b"null"))
        items.append(
            (
                _text(entry_id) or "",
                _text(values.get(b"t", values.get("t"))) or "",
                data if isinstance(data, bytes) else str(data).encode(),
            )
        )
    return History(items, epoch, Position(epoch, StreamId.parse(head_text)), trimmed)


def read_args(keys: RedisKeys, channel: str, after: StreamId, limit: int) -> dict[str, t.Any]:
    """Keys and arguments of :data:`READ_SCRIPT` for one channel."""
    return {
        "keys": [keys.stream(channel), keys.epoch(channel), keys.trimmed(channel)],
        "args": [f"({after}", limit],
    }


class RedisBroker(Broker):
    """Publishes to Redis Streams + pub/sub (see :data:`PUBLISH_SCRIPT`).

    :param url: the ``REDIS_URL``.
    :param history_size: approximate number of events kept per channel.
    :param prefix: prefix of every key and pub/sub channel.
    :param cluster: ``REDIS_URL`` is a Redis Cluster: use the cluster client
        and sharded pub/sub.
    """

    #: The key naming scheme; the relay must use the same.
    keys_class = RedisKeys

    def __init__(
        self,
        url: str,
        history_size: int = 1000,
        prefix: str = "karaffe:events:",
        cluster: bool = False,
    ) -> None:
        import redis
        from redis.cluster import RedisCluster

        self.cluster = cluster
        self.client: t.Any = RedisCluster.from_url(url) if cluster else redis.Redis.from_url(url)
        self.history_size = history_size
        self.keys = self.keys_class(prefix, sharded=cluster)
        self._publish = self.client.register_script(PUBLISH_SCRIPT)
        self._read = self.client.register_script(READ_SCRIPT)

    def _pipeline(self) -> t.Any:
        """A pipeline, or the client itself on a cluster (where scripts
        cannot be pipelined): calls then run one by one."""
        return self.client if self.cluster else self.client.pipeline(transaction=False)

    def publish_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[Event]:
        pipe = self._pipeline()
        results = []
        for channel, type, data_json in items:
            results.append(
                self._publish(
                    keys=[
                        self.keys.stream(channel),
                        self.keys.epoch(channel),
                        self.keys.trimmed(channel),
                    ],
                    args=[
                        self.keys.pubsub(channel),
                        type,
                        data_json,
                        self.history_size,
                        "1" if self.cluster else "0",
                    ],
                    client=pipe,
                )
            )
        if not self.cluster:
            results = pipe.execute()
        return [
            Event.from_json(_text(raw_id) or "", channel, type, data_json)
            for (raw_id, _epoch), (channel, type, data_json) in zip(results, items, strict=True)
        ]

    def _read_many(self, reads: Sequence[tuple[str, StreamId, int]]) -> list[History]:
        pipe = self._pipeline()
        replies = [
            self._read(**read_args(self.keys, channel, after, limit), client=pipe)
            for channel, after, limit in reads
        ]
        if not self.cluster:
            replies = pipe.execute()
        return [history_from_reply(reply) for reply in replies]

    def positions(self, channels: Iterable[str]) -> dict[str, Position]:
        chans = list(channels)
        histories = self._read_many([(c, ZERO, 0) for c in chans])
        return dict(zip(chans, (h.head for h in histories), strict=True))

    def history(self, channel: str, after: StreamId, limit: int) -> History:
        return self._read_many([(channel, after, limit)])[0]

    def revoke(self, user: str, at: float, credential: str | None = None) -> None:
        # Two slots on a cluster: the mark first, so a relay that hears the
        # announcement and looks the user up finds it.
        self.client.set(self.keys.revoked(user, credential), repr(at), ex=REVOCATION_TTL)
        self.client.publish(self.keys.revocations, pack_revocation(user, at, credential))

    def close(self) -> None:
        self.client.close()
