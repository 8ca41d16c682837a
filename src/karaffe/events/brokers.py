"""Brokers: where published events go. One interface, two implementations.

- :class:`MemoryBroker`, the embedded default: history and fan-out inside the
  process, so the Flask development server streams events itself with no
  Redis (``make demo``).
- :class:`RedisBroker` (``EVENTS_BROKER=redis``, ``REDIS_URL``): each event is
  appended to a bounded per-channel Redis Stream and published for live
  fan-out by one Lua script, so both happen or neither; the stream entry id
  is the event id. The relay (:mod:`karaffe.events.relay`) reads the same keys.

A broker takes the event data as the JSON bytes :func:`karaffe.events.publish`
encoded, and passes them through: nothing is decoded on the way to Redis.
"""

from __future__ import annotations

import abc
import queue
import threading
import time
import typing as t
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .presence import PresenceSet
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
    def append_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        origins: Sequence[str] | None = None,
        resent_since: Mapping[str, float] | None = None,
    ) -> list[str]:
        """Append and fan out ``(channel, type, data_json)`` items, in order,
        and return their ids. ``data_json`` is stored and sent as it is.

        The transactional outbox names where each item comes from: ``origins``
        (one string per item, unique for all time), and, for the channels whose
        items may have reached the broker already (an earlier attempt that
        timed out may have run after all), ``resent_since``: the time (the
        caller's ``time.time()``) of the first of those attempts. An item whose
        origin the broker has since then is not appended twice: its existing
        id is returned. A broker that cannot receive an item without
        acknowledging it (the memory broker) may ignore both.
        """

    def publish_many(self, items: Sequence[tuple[str, str, bytes]]) -> list[Event]:
        """:meth:`append_many`, returning the events (for tests and tools):
        their data is decoded only when read, see
        :meth:`Event.from_json <karaffe.events.Event.from_json>`."""
        ids = self.append_many(items)
        return [
            Event.from_json(id, channel, type, data_json)
            for id, (channel, type, data_json) in zip(ids, items, strict=True)
        ]

    def publish(self, channel: str, type: str, data_json: bytes) -> Event:
        return self.publish_many([(channel, type, data_json)])[0]

    @abc.abstractmethod
    def reset(self, channels: Iterable[str]) -> None:
        """Start a new history (epoch) on each of ``channels``: every reader
        that had a position in the old one gets ``reset``. Called when events
        of a channel are given up on, so that no reader misses them silently."""

    def is_unavailable(self, exc: Exception) -> bool:
        """Whether ``exc``, raised by this broker, means it cannot be reached
        (rather than that it refused these events): a dispatcher then stops
        trying other channels until later."""
        return False

    def with_timeout(self, seconds: float) -> Broker:
        """A broker with the same configuration that waits at most
        ``seconds`` for each reply and never retries by itself (the outbox's
        dispatcher decides what happens next). This one when it never waits."""
        return self

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

    def presence(
        self, channel: str, entry: str, ttl: float, *, leave: bool = False
    ) -> tuple[list[str], list[str]]:
        """Record a heartbeat of ``entry`` on ``channel`` (present for ``ttl``
        seconds from now), or its goodbye with ``leave``, dropping expired
        entries; returns the entries before and after, sorted (see
        :mod:`karaffe.events.presence`)."""
        raise NotImplementedError(f"{type(self).__name__} keeps no presence")

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
        self._presence: dict[str, PresenceSet] = {}
        self._next_presence_sweep = 1000

    def _next_id(self, last: StreamId) -> StreamId:
        ms = int(time.time() * 1000)
        return StreamId(ms, 0) if ms > last.ms else StreamId(last.ms, last.seq + 1)

    def append_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        origins: Sequence[str] | None = None,
        resent_since: Mapping[str, float] | None = None,
    ) -> list[str]:
        # In the process: an item is never received without being acknowledged,
        # so origins need no checking.
        ids = []
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
                ids.append(str(id))
                payload = pack_message(str(id), state.epoch, type, data_json)
                deliveries.extend((q, channel, payload) for q in self._listeners.get(channel, ()))
        for q, channel, payload in deliveries:
            q.put((channel, payload))
        return ids

    def reset(self, channels: Iterable[str]) -> None:
        with self._lock:
            for channel in channels:
                state = self._channels.get(channel)
                if state is None:
                    state = self._channels[channel] = _MemoryChannel(0, self.history_size)
                state.epoch = max(time.time_ns() // 1000, state.epoch + 1)
                state.max_deleted = state.last

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

    def presence(
        self, channel: str, entry: str, ttl: float, *, leave: bool = False
    ) -> tuple[list[str], list[str]]:
        now = time.time()
        with self._lock:
            entries = self._presence.setdefault(channel, PresenceSet())
            before = entries.entries()
            if leave:
                entries.leave(entry, now)
            else:
                entries.touch(entry, now, ttl)
            after = entries.entries()
            if not after:
                del self._presence[channel]
            # Channels nobody heartbeats any more: swept now and then, so
            # that their sets do not stay forever.
            if len(self._presence) >= self._next_presence_sweep:
                for name, found in list(self._presence.items()):
                    found.expire(now)
                    if not found.expires:
                        del self._presence[name]
                self._next_presence_sweep = max(1000, 2 * len(self._presence))
        return before, after

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

    def resent(self, channel: str) -> str:
        """The origins of the channel's events that the outbox sent again,
        with their ids (a hash, kept for an hour after the last resend)."""
        return f"{self.prefix}{{{channel}}}:resent"

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

    def presence(self, channel: str) -> str:
        """The sorted set of the entries present on the channel (score: the
        millisecond their presence expires)."""
        return f"{self.prefix}{{{channel}}}:presence"

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


#: Appends events of one channel to its stream, trims it, and publishes them,
#: atomically. The epoch is created with the first event (and again after
#: Redis lost its data). Trimming is done here rather than by ``XADD MAXLEN``,
#: in batches of a tenth of the history, because the relay must know exactly
#: which ids are gone: the newest trimmed id is kept in the ``trimmed`` key.
#:
#: An event from the outbox carries its origin (field ``o`` of the entry).
#: ``ARGV[4]`` is empty for events sent for the first time; for events that
#: may have been appended already (an attempt timed out, but Redis may have
#: run it, even later than the retry), it is the stream id from which to look
#: for their origins: those found are not appended again, and every origin
#: resent is remembered in the ``resent`` hash, so that the late run of an
#: earlier attempt finds them too.
#:
#: KEYS: stream, epoch, trimmed, resent. ARGV: pub/sub channel, history size,
#: ``1`` to SPUBLISH, resent-since id or empty, then type, data and origin
#: (or empty) of each event. Returns the epoch and the ids.
PUBLISH_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
if not epoch then
  local now = redis.call('TIME')
  epoch = now[1] .. string.format('%06d', tonumber(now[2]))
  redis.call('SET', KEYS[2], epoch)
  redis.call('DEL', KEYS[3])
end
local since = ARGV[4]
local seen = {}
if since ~= '' then
  for _, entry in ipairs(redis.call('XRANGE', KEYS[1], since, '+')) do
    local fields = entry[2]
    for i = 1, #fields, 2 do
      if fields[i] == 'o' then seen[fields[i + 1]] = entry[1] end
    end
  end
end
local resent = since ~= '' or redis.call('EXISTS', KEYS[4]) == 1
local command = 'PUBLISH'
if ARGV[3] == '1' then command = 'SPUBLISH' end
local ids = {}
for i = 5, #ARGV, 3 do
  local kind, data, origin = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local id = false
  if origin ~= '' and resent then
    id = seen[origin] or redis.call('HGET', KEYS[4], origin)
  end
  if not id then
    if origin == '' then
      id = redis.call('XADD', KEYS[1], '*', 't', kind, 'd', data)
    else
      id = redis.call('XADD', KEYS[1], '*', 't', kind, 'd', data, 'o', origin)
    end
    redis.call(command, ARGV[1], id .. '\\n' .. epoch .. '\\n' .. kind .. '\\n' .. data)
  end
  if since ~= '' and origin ~= '' then
    redis.call('HSET', KEYS[4], origin, id)
  end
  ids[#ids + 1] = id
end
if since ~= '' then
  redis.call('EXPIRE', KEYS[4], 3600)
end
local size = tonumber(ARGV[2])
local excess = redis.call('XLEN', KEYS[1]) - size
if excess > math.max(1, math.floor(size / 10)) then
  local gone = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', excess)
  local last = gone[#gone][1]
  local ms, seq = string.match(last, '(%d+)-(%d+)')
  redis.call('XTRIM', KEYS[1], 'MINID', ms .. '-' .. (tonumber(seq) + 1))
  redis.call('SET', KEYS[3], last)
end
return {epoch, ids}
"""

#: Starts a new epoch on a channel, marking everything before as gone, so
#: that every reader with a position in the old history gets ``reset``.
#: KEYS: stream, epoch, trimmed. Returns the new epoch.
RESET_SCRIPT = """
local now = redis.call('TIME')
local epoch = now[1] .. string.format('%06d', tonumber(now[2]))
local old = redis.call('GET', KEYS[2])
if old and tonumber(old) >= tonumber(epoch) then
  epoch = string.format('%d', tonumber(old) + 1)
end
redis.call('SET', KEYS[2], epoch)
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if #last > 0 then
  redis.call('SET', KEYS[3], last[1][1])
end
return epoch
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


#: A heartbeat (or, with ARGV[3] = 1, a goodbye) of one presence entry, on
#: Redis' clock so that app servers whose clocks differ agree: drop the
#: expired entries, add or remove this one, and let the key expire with its
#: last entry (never sooner than any entry). KEYS: the presence set.
#: ARGV: entry, ttl in milliseconds, ``1`` to leave. Returns the entries
#: before and after.
PRESENCE_SCRIPT = """
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local ttl = tonumber(ARGV[2])
local before = redis.call('ZRANGE', KEYS[1], 0, -1)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if ARGV[3] == '1' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ms + ttl, ARGV[1])
  if redis.call('PTTL', KEYS[1]) < ttl then redis.call('PEXPIRE', KEYS[1], ttl) end
end
return {before, redis.call('ZRANGE', KEYS[1], 0, -1)}
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
    :param timeout: seconds to wait for Redis (to connect, and for each
        reply), with no retry; ``None``: redis-py's defaults.
    """

    #: The key naming scheme; the relay must use the same.
    keys_class = RedisKeys
    #: Seconds by which this machine's clock and Redis' may disagree: an
    #: event resent is looked for from that much before its first attempt.
    clock_skew = 5.0

    def __init__(
        self,
        url: str,
        history_size: int = 1000,
        prefix: str = "karaffe:events:",
        cluster: bool = False,
        *,
        timeout: float | None = None,
    ) -> None:
        import redis
        from redis.backoff import NoBackoff
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        self.url = url
        self.cluster = cluster
        self.timeout = timeout
        options: dict[str, t.Any] = {}
        if timeout is not None:
            options = {
                "socket_timeout": timeout,
                "socket_connect_timeout": timeout,
                "retry": Retry(NoBackoff(), 0),
            }
        factory = RedisCluster.from_url if cluster else redis.Redis.from_url
        self.client: t.Any = factory(url, **options)
        self.history_size = history_size
        self.keys = self.keys_class(prefix, sharded=cluster)
        self._publish = self.client.register_script(PUBLISH_SCRIPT)
        self._reset = self.client.register_script(RESET_SCRIPT)
        self._read = self.client.register_script(READ_SCRIPT)
        self._presence = self.client.register_script(PRESENCE_SCRIPT)

    def with_timeout(self, seconds: float) -> RedisBroker:
        return type(self)(
            self.url, self.history_size, self.keys.prefix, self.cluster, timeout=seconds
        )

    def is_unavailable(self, exc: Exception) -> bool:
        from redis.exceptions import ConnectionError, TimeoutError

        return isinstance(exc, (ConnectionError, TimeoutError, OSError))

    def _pipeline(self) -> t.Any:
        """A pipeline, or the client itself on a cluster (where scripts
        cannot be pipelined): calls then run one by one."""
        return self.client if self.cluster else self.client.pipeline(transaction=False)

    def _run(self, script: t.Any, calls: Sequence[tuple[list[str], list[t.Any]]]) -> list[t.Any]:
        """Run ``script`` once per ``(keys, args)``: one call is one round
        trip (``EVALSHA``, loading the script if Redis lost it); several are
        pipelined, except on a cluster."""
        if len(calls) == 1 or self.cluster:
            return [script(keys=keys, args=args) for keys, args in calls]
        from redis.exceptions import NoScriptError

        for attempt in range(2):
            pipe = self.client.pipeline(transaction=False)
            for keys, args in calls:
                pipe.evalsha(script.sha, len(keys), *keys, *args)
            try:
                return t.cast(list[t.Any], pipe.execute())
            except NoScriptError:
                # Not run: Redis lost its scripts (a restart). Load and redo.
                if attempt:
                    raise
                self.client.script_load(script.script)
        raise AssertionError("unreachable")

    def append_many(
        self,
        items: Sequence[tuple[str, str, bytes]],
        *,
        origins: Sequence[str] | None = None,
        resent_since: Mapping[str, float] | None = None,
    ) -> list[str]:
        if origins is not None and len(origins) != len(items):
            raise ValueError("append_many: one origin per item")
        by_channel: dict[str, list[int]] = {}
        for index, item in enumerate(items):
            by_channel.setdefault(item[0], []).append(index)
        calls = []
        for channel, indexes in by_channel.items():
            since = (resent_since or {}).get(channel)
            args: list[t.Any] = [
                self.keys.pubsub(channel),
                self.history_size,
                "1" if self.cluster else "0",
                "" if since is None else f"{max(0, int((since - self.clock_skew) * 1000))}-0",
            ]
            for index in indexes:
                _, type, data_json = items[index]
                args += [type, data_json, origins[index] if origins is not None else ""]
            keys = [
                self.keys.stream(channel),
                self.keys.epoch(channel),
                self.keys.trimmed(channel),
                self.keys.resent(channel),
            ]
            calls.append((keys, args))
        replies = self._run(self._publish, calls)
        ids = [""] * len(items)
        for indexes, (_epoch, raw_ids) in zip(by_channel.values(), replies, strict=True):
            for index, raw_id in zip(indexes, raw_ids, strict=True):
                ids[index] = _text(raw_id) or ""
        return ids

    def reset(self, channels: Iterable[str]) -> None:
        calls: list[tuple[list[str], list[t.Any]]] = [
            ([self.keys.stream(c), self.keys.epoch(c), self.keys.trimmed(c)], [])
            for c in dict.fromkeys(channels)
        ]
        if calls:
            self._run(self._reset, calls)

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

    def presence(
        self, channel: str, entry: str, ttl: float, *, leave: bool = False
    ) -> tuple[list[str], list[str]]:
        before, after = self._presence(
            keys=[self.keys.presence(channel)],
            args=[entry, max(1, int(ttl * 1000)), "1" if leave else "0"],
        )
        return sorted(_text(e) or "" for e in before), sorted(_text(e) or "" for e in after)

    def close(self) -> None:
        self.client.close()
