"""The hub: one Redis subscription per channel per process, shared by every
connection that follows the channel, and the fan-out of each event to them.

It also keeps the per-second buckets of token deadlines, the heartbeats, the
revocation cache, and the health of Redis; it reads channel histories for
the ASGI app.

**Continuity.** Each channel's feed remembers the last event it delivered.
Whenever the subscription was down (Redis restarted, the network failed,
Redis hung and the health check dropped the connection), the hub subscribes
again and, for every feed, reads the stream from that last event on
(:meth:`Hub._resync`). It sends what was missed, or a ``reset`` to every
connection of the feed when the stream cannot prove that nothing is missing:
the history was trimmed past that event, its epoch changed (Redis lost its
data, or the publisher gave events up), or the event itself is gone while
the history is the same (Redis restarted from an append-only file that had
not kept the last writes: the hub then gives the channel a new epoch, so
that clients resuming from before the lost events anywhere get a ``reset``
too).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing as t
from collections.abc import Awaitable, Callable, Iterable

from ..admission import is_revoked
from ..brokers import (
    READ_SCRIPT,
    History,
    RedisKeys,
    history_from_reply,
    read_args,
    unpack_revocation,
)
from ..protocol import (
    START,
    ZERO,
    Position,
    ProtocolError,
    StreamId,
    comment,
    event_frame,
    event_tail,
    needs_reset,
    unpack_message,
)
from ..session import control
from ..tokens import ChannelGrant
from .config import RelayConfig
from .connection import NO_EARLY, Connection, chunk, write_all
from .health import RedisHealth
from .metrics import Metrics

__all__ = ["ChannelFeed", "Hub", "RedisUnavailable"]

log = logging.getLogger("karaffe.events.relay")

T = t.TypeVar("T")

#: Reads where a feed stands in its channel's history after the hub was away:
#: like :data:`~karaffe.events.brokers.READ_SCRIPT`, plus whether the entry
#: at ``ARGV[1]`` (the last one the feed delivered) is still there.
RESYNC_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
local trimmed = redis.call('GET', KEYS[3])
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local head = false
if #last > 0 then head = last[1][1] end
local present = 0
if ARGV[1] ~= '0-0' then
  present = #redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
end
local entries = redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', ARGV[2])
return {epoch, trimmed, head, entries, present}
"""

#: Gives a channel a new epoch when Redis lost events of its history that a
#: relay delivered: only if the epoch is still ``ARGV[1]`` and the entry
#: ``ARGV[2]`` is still missing (another relay may have done it already).
#: Returns the channel's epoch after the call.
NEW_EPOCH_SCRIPT = """
local epoch = redis.call('GET', KEYS[2])
if not epoch or epoch ~= ARGV[1] then return epoch end
if #redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2]) > 0 then return epoch end
local now = redis.call('TIME')
epoch = now[1] .. string.format('%06d', tonumber(now[2]))
redis.call('SET', KEYS[2], epoch)
return epoch
"""


class RedisUnavailable(Exception):
    """Redis did not answer in time, or the hub is not connected to it."""


class ChannelFeed:
    """The hub's view of one channel: the shared subscription, the last event
    processed, and the connections following it."""

    __slots__ = (
        "due",
        "epoch",
        "fast",
        "idle_since",
        "joining",
        "last",
        "name",
        "pending",
        "ready",
        "slow",
        "start",
        "written_at",
    )

    def __init__(self, name: str) -> None:
        self.name = name
        self.epoch: int | None = None
        #: The last event id processed, None before the first one.
        self.last: StreamId | None = None
        #: The head when the subscription was confirmed (resync starts there).
        self.start: Position | None = None
        #: Whether the subscription is confirmed (and caught up after a
        #: reconnection): joining connections wait for it.
        self.ready = False
        #: One-channel connections in step with the feed: shared bytes.
        self.fast: set[Connection] = set()
        #: Connections that need their own ``id:`` line or dedupe.
        self.slow: set[Connection] = set()
        #: Connections replaying history: live messages are kept for later.
        self.joining: set[Connection] = set()
        #: When the last connection left (monotonic), None while followed.
        self.idle_since: float | None = None
        #: Frames for ``fast`` not written yet: the events that arrived
        #: since the last write, written as one (see ``Hub.flush``).
        self.pending: list[bytes] = []
        #: When the feed last wrote events (the event loop's clock), and,
        #: while it has events to write, by when they are written.
        self.written_at = float("-inf")
        self.due: float | None = None

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow) + len(self.joining)

    @property
    def position(self) -> Position:
        """Where the feed stands: its last event, else where it started."""
        if self.last is not None and self.epoch is not None:
            return Position(self.epoch, self.last)
        return self.start or START


class Hub:
    """Shares Redis subscriptions between connections and fans events out."""

    #: Seconds to wait between attempts to reach Redis again.
    reconnect_delay = 0.2
    #: Redis connections for history reads (the subscription has its own).
    redis_connections = 16
    #: Seconds a read for a connection (history, revocation) may take before
    #: it is given up and tried again once Redis is healthy.
    redis_timeout = 5.0
    #: Events read per call when catching up after a reconnection.
    resync_batch = 1000
    #: Seconds between checks of token deadlines (and heartbeats).
    tick = 0.25
    #: Seconds a channel stays subscribed after its last connection left.
    linger = 30.0
    #: Seconds a looked-up revocation (or its absence) is trusted.
    revocation_cache_ttl = 60.0
    #: Most users (and tokens) remembered by the caches.
    cache_size = 100_000
    #: Seconds each shard's connection is waited on in turn (Redis Cluster).
    shard_poll = 0.005
    #: The health check (a PING every second on its own connection).
    health_class = RedisHealth

    def __init__(self, config: RelayConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.keys = RedisKeys(config.prefix, sharded=config.cluster)
        self.feeds: dict[str, ChannelFeed] = {}
        #: Every open stream, from its first byte (heartbeats, deadlines).
        self.connections: set[Connection] = set()
        self.by_user: dict[str, set[Connection]] = {}
        self.redis: t.Any = None
        self.pubsub: t.Any = None
        self.health: RedisHealth | None = None
        self._read_script: t.Any = None
        self._resync_script: t.Any = None
        self._new_epoch_script: t.Any = None
        self._tasks: list[asyncio.Task[None]] = []
        self._due: dict[tuple[int, str], set[Connection]] = {}
        self._revoked: dict[str, tuple[float | None, float]] = {}
        self._subscribing = asyncio.Lock()
        self._changed: asyncio.Future[None] | None = None
        #: Feeds with events to write (shared ``pending`` frames, or frames
        #: of their connections'), connections with their own ``pending``
        #: frames, and the call that writes them, and when (see flush).
        self._dirty: list[ChannelFeed] = []
        self._dirty_conns: list[Connection] = []
        self._flush_handle: asyncio.Handle | None = None
        self._flush_at = float("-inf")
        self.started = False

    def _client(self, **options: t.Any) -> t.Any:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster

        if self.config.cluster:
            return RedisCluster.from_url(self.config.redis_url, **options)
        return aioredis.Redis.from_url(self.config.redis_url, **options)

    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster

        if self.started:
            return
        self.started = True
        connect_timeout = {"socket_connect_timeout": self.redis_timeout}
        if self.config.cluster:
            self.redis = RedisCluster.from_url(self.config.redis_url, **connect_timeout)
        else:
            # A bounded pool that makes callers wait: a burst of thousands of
            # connecting clients must queue for Redis, not fail.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.config.redis_url,
                max_connections=self.redis_connections,
                timeout=None,
                **connect_timeout,
            )
            self.redis = aioredis.Redis(connection_pool=pool)
        self._read_script = self.redis.register_script(READ_SCRIPT)
        self._resync_script = self.redis.register_script(RESYNC_SCRIPT)
        self._new_epoch_script = self.redis.register_script(NEW_EPOCH_SCRIPT)
        health = self.health = self.health_class(
            lambda: self._client(socket_connect_timeout=health.timeout)
        )
        self._tasks = [
            asyncio.create_task(health.run(), name="karaffe-relay-health"),
            asyncio.create_task(self._read_forever(), name="karaffe-relay-reader"),
            asyncio.create_task(self._beat_forever(), name="karaffe-relay-heartbeat"),
        ]

    async def stop(self) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self.redis is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(self.redis_timeout):
                    await self.redis.aclose()
        self.started = False

    # -- state -------------------------------------------------------------------

    @property
    def available(self) -> bool:
        """Whether Redis is healthy and the hub is subscribed to it."""
        return self.pubsub is not None and (self.health is None or self.health.up)

    def _notify(self) -> None:
        """Wake the connections waiting for the hub's state to change."""
        if self._changed is not None:
            self._changed.set_result(None)
            self._changed = None

    async def until(self, conn: Connection, ready: Callable[[], bool]) -> bool:
        """Wait until ``ready()`` holds, or ``conn`` ends (then False)."""
        while not ready():
            if conn.done.done():
                return False
            if self._changed is None:
                self._changed = asyncio.get_running_loop().create_future()
            await asyncio.wait((self._changed, conn.done), return_when=asyncio.FIRST_COMPLETED)
        return not conn.done.done()

    async def pause(self, conn: Connection) -> None:
        """After a failed read: wait a little, or less if the hub's state
        changes or ``conn`` ends."""
        if self._changed is None:
            self._changed = asyncio.get_running_loop().create_future()
        await asyncio.wait(
            (self._changed, conn.done),
            timeout=self.reconnect_delay,
            return_when=asyncio.FIRST_COMPLETED,
        )

    async def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        """Run one Redis call for a connection: :class:`RedisUnavailable`
        at once when Redis is known to be unhealthy, or when the call fails
        or takes longer than :attr:`redis_timeout`."""
        from redis.exceptions import RedisError

        if self.health is not None and not self.health.up:
            raise RedisUnavailable("Redis is not answering")
        try:
            async with asyncio.timeout(self.redis_timeout):
                return await make()
        except (RedisError, OSError, TimeoutError) as exc:
            raise RedisUnavailable(f"{type(exc).__name__}: {exc}") from exc

    # -- connections ---------------------------------------------------------------

    def add(self, conn: Connection) -> None:
        """Take care of ``conn`` from its first byte: heartbeats, its token's
        deadlines, revocations of its user (also while it waits for Redis)."""
        self.connections.add(conn)
        self.by_user.setdefault(conn.grant.user, set()).add(conn)
        self.add_deadlines(conn)

    async def join(self, conn: Connection) -> bool:
        """Subscribe ``conn``'s channels (sharing existing subscriptions) and
        wait until Redis confirmed them, so that nothing falls between the
        subscription and the history read. False if ``conn`` ended meanwhile."""
        # Subscribing and unsubscribing (see _sweep) take turns, so Redis
        # never sees an UNSUBSCRIBE overtake the SUBSCRIBE of a feed reused.
        async with self._subscribing:
            fresh = []
            for channel in conn.session.channels:
                feed = self.feeds.get(channel)
                if feed is None:
                    feed = self.feeds[channel] = ChannelFeed(channel)
                    fresh.append(feed)
                feed.joining.add(conn)
                feed.idle_since = None
            if fresh and self.pubsub is not None:
                # Without a subscription, the reader subscribes every feed
                # when it connects again.
                await self._subscribe_quietly(
                    self.pubsub, [self.keys.pubsub(f.name) for f in fresh]
                )
        feeds = [self.feeds[channel] for channel in conn.session.channels]
        return await self.until(conn, lambda: all(feed.ready for feed in feeds))

    async def _subscribe_quietly(self, pubsub: t.Any, names: list[str]) -> None:
        from redis.exceptions import RedisError

        try:
            async with asyncio.timeout(self.redis_timeout):
                await self._subscribe(pubsub, names)
        except (RedisError, OSError, TimeoutError) as exc:
            # The subscription is failing: the reader reconnects and
            # subscribes every feed (this one too).
            log.warning("relay could not subscribe (%s: %s)", type(exc).__name__, exc)

    def go_live(self, conn: Connection) -> None:
        """Deliver what arrived during the replay, then switch ``conn`` to
        live delivery (no await in between: nothing can slip through)."""
        # What the fast connections have pending came before ``conn``'s
        # position: written now, it cannot reach ``conn`` as well.
        self.flush()
        session = conn.session
        for channel, sid, epoch, tail in conn.early:
            if tail:
                data = session.live_encoded(channel, sid, epoch, tail)
            else:
                data = session.reset(channel, Position(epoch, sid))
            if data:
                conn.write(data)
        conn.early = NO_EARLY
        for channel in session.channels:
            feed = self.feeds[channel]
            feed.joining.discard(conn)
            if conn.channel is not None and feed.last is not None:
                position = session.positions[channel]
                if position.epoch == feed.epoch and position.id == feed.last:
                    feed.fast.add(conn)
                    continue
            feed.slow.add(conn)

    def leave(self, conn: Connection) -> None:
        for channel in conn.session.channels:
            feed = self.feeds.get(channel)
            if feed is None:
                continue
            feed.fast.discard(conn)
            feed.slow.discard(conn)
            feed.joining.discard(conn)
            if not len(feed):
                # Kept subscribed a while: a reloading page comes right back.
                feed.idle_since = time.monotonic()
        self.connections.discard(conn)
        self.drop_deadlines(conn)
        users = self.by_user.get(conn.grant.user)
        if users is not None:
            users.discard(conn)
            if not users:
                del self.by_user[conn.grant.user]

    async def _sweep(self) -> None:
        """Unsubscribe from channels nobody followed for :attr:`linger` seconds."""
        now = time.monotonic()
        idle = [
            f.name
            for f in self.feeds.values()
            if f.idle_since is not None and now - f.idle_since > self.linger and not len(f)
        ]
        if not idle or not self.available:
            return
        async with self._subscribing:
            gone = [c for c in idle if c in self.feeds and not len(self.feeds[c])]
            for channel in gone:
                del self.feeds[channel]
            if gone and self.pubsub is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(self.redis_timeout):
                        await self._unsubscribe(self.pubsub, [self.keys.pubsub(c) for c in gone])

    # -- reading Redis for connections ---------------------------------------------

    async def history(self, channel: str, after: StreamId, limit: int) -> History:
        """Up to ``limit`` events of ``channel`` after ``after`` (one atomic
        read, see :data:`~karaffe.events.brokers.READ_SCRIPT`), or
        :class:`RedisUnavailable`."""
        script = self._read_script
        reply = await self._call(lambda: script(**read_args(self.keys, channel, after, limit)))
        return history_from_reply(reply)

    async def heads(self, channels: Iterable[str]) -> dict[str, Position]:
        """The current position of each channel (for connections without cursor)."""
        return {c: (await self.history(c, ZERO, 0)).head for c in channels}

    def cached_revocation(
        self, user: str, credential: str | None = None
    ) -> tuple[bool, float | None]:
        """``(known, revoked_at)`` from the cache, without I/O."""
        cached = self._revoked.get(self.keys.revoked(user, credential))
        if cached is not None and cached[1] > time.monotonic():
            return True, cached[0]
        return False, None

    async def revoked_at(self, user: str, credential: str | None = None) -> float | None:
        """When ``user``'s access (or, given, their ``credential``) was last
        revoked, or :class:`RedisUnavailable`. Cached: the revocation channel
        keeps the cache current while the hub listens, and it is emptied (and
        open streams are checked again) whenever the hub reconnects."""
        known, at = self.cached_revocation(user, credential)
        if known:
            return at
        key = self.keys.revoked(user, credential)
        raw = await self._call(lambda: self.redis.get(key))
        at = float(raw) if raw is not None else None
        self._remember_revocation(key, at)
        return at

    async def revocations(self, grant: ChannelGrant) -> tuple[float | None, float | None]:
        """When ``grant``'s user's access, and the credential it is bound to,
        were last revoked (see :meth:`revoked_at`)."""
        user_at = await self.revoked_at(grant.user)
        credential_at = None
        if grant.credential is not None:
            credential_at = await self.revoked_at(grant.user, grant.credential)
        return user_at, credential_at

    def revoked_in_cache(self, grant: ChannelGrant) -> bool:
        """Whether the cache already says that ``grant`` was revoked."""
        ats = [self.cached_revocation(grant.user)[1]]
        if grant.credential is not None:
            ats.append(self.cached_revocation(grant.user, grant.credential)[1])
        return is_revoked(grant, *ats)

    def _remember_revocation(self, key: str, at: float | None) -> None:
        if len(self._revoked) > self.cache_size:
            self._revoked.clear()
        self._revoked[key] = (at, time.monotonic() + self.revocation_cache_ttl)

    # -- the subscription ----------------------------------------------------------

    async def _read_forever(self) -> None:
        """Hold the subscription while Redis is healthy: subscribe (again),
        catch up, and read; drop it when the health check says Redis hangs,
        and start over when Redis answers again."""
        assert self.health is not None
        while True:
            await self.health.when_up()
            attempt = asyncio.create_task(self._read(), name="karaffe-relay-subscription")
            hung = self.health.when_down()
            try:
                await asyncio.wait((attempt, hung), return_when=asyncio.FIRST_COMPLETED)
            finally:
                attempt.cancel()
                await asyncio.wait((attempt,))
            if not attempt.cancelled() and attempt.exception() is not None:
                exc = attempt.exception()
                log.warning("relay lost Redis (%s: %s); reconnecting", type(exc).__name__, exc)
            self.metrics.redis_reconnects += 1
            await asyncio.sleep(self.reconnect_delay)

    async def _read(self) -> None:
        """Subscribe and hand every message to the feeds until the connection
        to Redis fails (or this task is cancelled)."""
        assert self.redis is not None
        pubsub = self.redis.pubsub()
        # On a cluster, shard channels and the revocation broadcast are read
        # by two pub/sub objects; standalone, one connection carries both.
        revocations = self.redis.pubsub() if self.config.cluster else pubsub
        try:
            async with asyncio.timeout(self.redis_timeout):
                if self.config.cluster:
                    # The cluster client learns the slots on its first
                    # command; a pub/sub subscription is none, and fails
                    # with a KeyError (the slot) until something else ran.
                    await self.redis.initialize()
                await revocations.subscribe(self.keys.revocations)
            async with self._subscribing:
                for feed in self.feeds.values():
                    feed.ready = False
                if self.feeds:
                    async with asyncio.timeout(self.redis_timeout):
                        await self._subscribe(pubsub, [self.keys.pubsub(c) for c in self.feeds])
                self.pubsub = pubsub
            self._notify()
            # Revocations may have been missed while disconnected.
            self._revoked.clear()
            if revocations is pubsub:
                await self._pump(pubsub)
            else:
                await asyncio.gather(self._pump(pubsub), self._pump(revocations))
        finally:
            self.pubsub = None
            for feed in self.feeds.values():
                feed.ready = False
            self._notify()
            for each in {id(pubsub): pubsub, id(revocations): revocations}.values():
                with contextlib.suppress(BaseException):
                    async with asyncio.timeout(1.0):
                        await each.aclose()

    async def _subscribe(self, pubsub: t.Any, names: list[str]) -> None:
        if self.config.cluster:
            await pubsub.ssubscribe(*names)
        else:
            await pubsub.subscribe(*names)

    async def _unsubscribe(self, pubsub: t.Any, names: list[str]) -> None:
        if self.config.cluster:
            await pubsub.sunsubscribe(*names)
        else:
            await pubsub.unsubscribe(*names)

    async def _next_message(self, pubsub: t.Any) -> dict[str, t.Any] | None:
        if self.config.cluster and pubsub is self.pubsub:
            # redis-py reads the shards' connections in turn.
            message = await pubsub.get_sharded_message(timeout=self.shard_poll)
            if message is None and not pubsub.node_pubsub_mapping:
                await asyncio.sleep(self.shard_poll)
            return t.cast("dict[str, t.Any] | None", message)
        return t.cast("dict[str, t.Any] | None", await pubsub.get_message(timeout=None))

    async def _pump(self, pubsub: t.Any) -> None:
        while True:
            message = await self._next_message(pubsub)
            if message is None:
                continue
            kind = _text(message["type"])
            name = _text(message["channel"])
            if kind in ("message", "smessage"):
                if name == self.keys.revocations:
                    self._revoke(message["data"])
                else:
                    self._on_message(self.keys.channel_of(name), message["data"])
            elif kind in ("subscribe", "ssubscribe"):
                if name == self.keys.revocations:
                    await self._recheck_revocations()
                    continue
                confirmed = self.feeds.get(self.keys.channel_of(name))
                if confirmed is None or confirmed.ready:
                    continue
                if confirmed.start is None and confirmed.last is None:
                    # A new feed: it starts where the channel stands now.
                    confirmed.start = (await self._script_read(confirmed.name, ZERO, 0)).head
                else:
                    await self._resync(confirmed)
                confirmed.ready = True
                self._notify()

    async def _script_read(self, channel: str, after: StreamId, limit: int) -> History:
        """A history read for the reader itself (its failures end the attempt)."""
        async with asyncio.timeout(self.redis_timeout):
            reply = await self._read_script(**read_args(self.keys, channel, after, limit))
        return history_from_reply(reply)

    # -- continuity ------------------------------------------------------------------

    async def _resync(self, feed: ChannelFeed) -> None:
        """After subscribing again, deliver what was published while the hub
        was not listening, from the stream; or reset the feed's connections
        when the stream cannot prove that it holds all of it."""
        position = feed.position
        while True:
            keys = [
                self.keys.stream(feed.name),
                self.keys.epoch(feed.name),
                self.keys.trimmed(feed.name),
            ]
            async with asyncio.timeout(self.redis_timeout):
                reply = await self._resync_script(
                    keys=keys, args=[str(position.id), self.resync_batch]
                )
            history = history_from_reply(reply[:4])
            if needs_reset(position, history.epoch, history.max_deleted):
                self.reset_feed(feed, history.head, "history trimmed or recreated")
                return
            if history.epoch is None:
                return
            present = bool(reply[4]) or position.id == ZERO
            if not present and position.epoch != 0 and position.id > history.max_deleted:
                # Redis no longer has an event this feed delivered, in the
                # same history: it lost writes (an append-only file that
                # missed the last second). Events may be missing around it,
                # for readers here and everywhere else.
                epoch = await self._new_epoch(feed.name, position)
                self.reset_feed(feed, Position(epoch, history.head.id), "events lost")
                return
            for id, type, data_json in history.entries:
                self._dispatch(feed, StreamId.parse(id), history.epoch, id, type, data_json)
            if len(history.entries) < self.resync_batch:
                return
            position = Position(history.epoch, StreamId.parse(history.entries[-1][0]))

    async def _new_epoch(self, channel: str, lost: Position) -> int:
        """A new epoch for ``channel``'s history (see :data:`NEW_EPOCH_SCRIPT`)."""
        async with asyncio.timeout(self.redis_timeout):
            raw = await self._new_epoch_script(
                keys=[self.keys.stream(channel), self.keys.epoch(channel)],
                args=[str(lost.epoch), str(lost.id)],
            )
        return int(_text(raw)) if raw is not None else 0

    def reset_feed(self, feed: ChannelFeed, position: Position, why: str) -> None:
        """Tell every connection of ``feed`` to reload the channel
        (``reset``), and go on from ``position``."""
        log.warning("relay resets %d stream(s) of %s: %s", len(feed), feed.name, why)
        self.flush()
        channel = feed.name
        for group in (feed.fast, feed.slow):
            for conn in group:
                conn.write(conn.session.reset(channel, position))
        for conn in feed.joining:
            conn.early.append((channel, position.id, position.epoch, b""))
        if position.epoch == 0:
            feed.epoch, feed.last, feed.start = None, None, START
        else:
            feed.epoch, feed.last = position.epoch, position.id

    # -- live messages -----------------------------------------------------------------

    def _on_message(self, channel: str, payload: bytes) -> None:
        feed = self.feeds.get(channel)
        if feed is None:
            return
        try:
            id, epoch, type, data_json = unpack_message(payload)
            sid = StreamId.parse(id)
        except (ProtocolError, UnicodeDecodeError):
            log.warning("relay dropped a malformed message on %s", channel)
            return
        self._dispatch(feed, sid, epoch, id, type, data_json)

    def _dispatch(
        self, feed: ChannelFeed, sid: StreamId, epoch: int, id: str, type: str, data_json: bytes
    ) -> None:
        """Fan one event out to every connection following its channel."""
        if feed.last is not None and epoch == feed.epoch and sid <= feed.last:
            return
        self.metrics.events_in += 1
        if feed.epoch is not None and epoch != feed.epoch:
            # History was recreated: every reader goes through its session (reset).
            self._demote(feed)
        feed.epoch, feed.last = epoch, sid
        if feed.due is None:
            # The first event since the feed last wrote: written at the end of
            # this turn of the loop, or write_interval after that last write.
            feed.due = feed.written_at + self.config.write_interval
            self._dirty.append(feed)
            self._flush_by(feed.due)
        tail = event_tail(id, feed.name, type, data_json)
        channel = feed.name
        if feed.fast:
            # The position of a connection in ``fast`` is the feed's: it is
            # written into its session only when it leaves (see _demote).
            # Encoded once, written with the feed's other events held since
            # its last write (see flush).
            shared = event_frame(Position(epoch, sid).segment(channel), tail)
            feed.pending.append(shared)
        promote = []
        for conn in feed.slow:
            data = conn.session.live_encoded(channel, sid, epoch, tail)
            if data:
                # Its own id line; written with its other frames of this turn.
                pending = conn.pending
                if pending is None:
                    conn.pending = [data]
                    self._dirty_conns.append(conn)
                else:
                    pending.append(data)
                # In step with the feed now (not when this was a duplicate:
                # the connection may be ahead of the feed after a resync).
                if conn.channel is not None:
                    promote.append(conn)
        if promote:
            # The feed's pending frames are not for them: they had this one
            # already (in their own pending frames, written first).
            self.flush()
            for conn in promote:
                feed.slow.discard(conn)
                feed.fast.add(conn)
        for conn in feed.joining:
            conn.early.append((channel, sid, epoch, tail))
        self.metrics.deliveries += len(feed.fast) + len(feed.slow)

    def _demote(self, feed: ChannelFeed) -> None:
        """Move ``feed``'s fast connections to the slow path, giving each its
        position (the feed's), which the fast path does not keep up to date."""
        self.flush()
        if feed.fast and feed.epoch is not None and feed.last is not None:
            position = Position(feed.epoch, feed.last)
            for conn in feed.fast:
                conn.session.positions[feed.name] = position
        feed.slow.update(feed.fast)
        feed.fast.clear()

    def _flush_by(self, due: float) -> None:
        """Flush by ``due`` (the event loop's clock): at the end of this turn
        of the loop if that time has come, else then."""
        loop = asyncio.get_running_loop()
        if self._flush_handle is not None:
            if self._flush_at <= due:
                return
            self._flush_handle.cancel()
        if due <= loop.time():
            self._flush_at = float("-inf")
            self._flush_handle = loop.call_soon(self._flush_now)
        else:
            self._flush_at = due
            self._flush_handle = loop.call_at(due, self._flush_now)

    def _flush_now(self) -> None:
        self._flush_handle = None
        self.flush()

    def flush(self) -> None:
        """Write what the fan-out collected: each connection's own frames,
        then every feed's shared frames to its fast connections. One write
        per connection for all the events collected since the last flush.

        The hub calls it at the end of the turn of the event loop in which a
        feed's first event since its last write came, when that write was
        at least ``RelayConfig.write_interval`` seconds ago (a quiet
        channel's event goes out at once), else that long after it: the
        events of a busy channel go out together, at most that late. And
        before anything else is written to those connections or they change
        paths, so that nothing overtakes what is pending."""
        if self._dirty_conns:
            conns, self._dirty_conns = self._dirty_conns, []
            for conn in conns:
                frames = conn.pending
                conn.pending = None
                if frames:
                    conn.write(frames[0] if len(frames) == 1 else b"".join(frames))
        if self._dirty:
            dirty, self._dirty = self._dirty, []
            now = asyncio.get_running_loop().time()
            for feed in dirty:
                feed.due = None
                feed.written_at = now
                self._flush_feed(feed)

    def _flush_feed(self, feed: ChannelFeed) -> None:
        frames = feed.pending
        if not frames:
            return
        feed.pending = []
        data = frames[0] if len(frames) == 1 else b"".join(frames)
        write_all(feed.fast, data, chunk(data))

    # -- revocation --------------------------------------------------------------------

    def _revoke(self, payload: bytes) -> None:
        revocation = unpack_revocation(payload)
        if revocation is None:
            return
        user, at, credential = revocation
        key = self.keys.revoked(user, credential)
        previous = self._revoked.get(key, (None, 0.0))[0]
        self._revoked[key] = (max(at, previous or 0.0), time.monotonic() + 3600)
        self._cut_revoked(user, at, credential)

    def _cut_revoked(self, user: str, at: float | None, credential: str | None = None) -> None:
        """End ``user``'s streams revoked at ``at``: all of them, or with
        ``credential`` those bound to it."""
        self.flush()
        for conn in list(self.by_user.get(user, ())):
            if credential is not None and conn.grant.credential != credential:
                continue
            if is_revoked(conn.grant, at):
                conn.write(control("auth-expired", {"reason": "revoked"}))
                conn.finish("revoked")

    async def _recheck_revocations(self) -> None:
        """Once subscribed to revocations again, look up every user with an
        open stream, and every credential their streams are bound to: a
        revocation announced while the hub was away was missed."""
        marks: list[tuple[str, str | None]] = [(user, None) for user in self.by_user]
        marks += sorted(
            {
                (user, conn.grant.credential)
                for user, conns in self.by_user.items()
                for conn in conns
                if conn.grant.credential is not None
            }
        )
        for start in range(0, len(marks), 500):
            batch = marks[start : start + 500]
            keys = [self.keys.revoked(user, credential) for user, credential in batch]
            async with asyncio.timeout(self.redis_timeout):
                if self.config.cluster:
                    raws = await asyncio.gather(*(self.redis.get(key) for key in keys))
                else:
                    raws = await self.redis.mget(keys)
            for (user, credential), key, raw in zip(batch, keys, raws, strict=True):
                at = float(raw) if raw is not None else None
                self._remember_revocation(key, at)
                self._cut_revoked(user, at, credential)

    # -- token deadlines and heartbeats ----------------------------------------------------

    def deadlines(self, conn: Connection) -> list[tuple[int, str]]:
        """The whole seconds at which ``conn``'s token needs attention."""
        expires = conn.grant.expires_at
        return [(int(expires - self.config.token_notice), "notice"), (int(expires), "expire")]

    def add_deadlines(self, conn: Connection) -> None:
        """Warn ``conn`` before its token expires and end it at expiry, from
        the hub's ticker: sets of connections per second, not a timer each."""
        now = int(time.time())
        for second, kind in self.deadlines(conn):
            if second < now and kind == "notice":
                self._deadline(conn, kind)
            else:
                self._due.setdefault((max(second, now), kind), set()).add(conn)

    def drop_deadlines(self, conn: Connection) -> None:
        now = int(time.time())
        for second, kind in self.deadlines(conn):
            for key in ((max(second, now), kind), (second, kind)):
                bucket = self._due.get(key)
                if bucket is not None:
                    bucket.discard(conn)

    def _deadline(self, conn: Connection, kind: str) -> None:
        if conn.done.done():
            return
        self.flush()
        if kind == "notice":
            conn.write(control("token-expiring", {"expires_at": conn.grant.expires_at}))
        else:
            conn.write(control("auth-expired", {"reason": "expired"}))
            conn.finish("expired")

    async def _beat_forever(self) -> None:
        beat = comment()
        beat_chunk = chunk(beat)
        next_beat = time.monotonic() + self.config.heartbeat
        while True:
            await asyncio.sleep(self.tick)
            now = time.time()
            # Notices before expiries, so a token expiring now is warned first.
            for key in sorted(
                (k for k in self._due if k[0] <= now), key=lambda k: k[1] != "notice"
            ):
                for conn in self._due.pop(key):
                    self._deadline(conn, key[1])
            if time.monotonic() < next_beat:
                continue
            next_beat = time.monotonic() + self.config.heartbeat
            # Every open stream gets its heartbeat, also one waiting for Redis.
            for conn in list(self.connections):
                if not conn.wrote:
                    conn.write(beat, beat_chunk)
                conn.wrote = False
            await self._sweep()


def _text(raw: t.Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
