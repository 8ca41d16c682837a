"""The hub: one Redis subscription per channel per process, shared by every
connection that follows the channel, and the fan-out of each event to them.

It also keeps the per-second buckets of token deadlines, the heartbeats, and
the revocation cache; it reads channel histories for the ASGI app.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing as t
from collections.abc import Iterable

from ..brokers import READ_SCRIPT, History, RedisKeys, history_from_reply, read_args
from ..protocol import (
    START,
    ZERO,
    Position,
    ProtocolError,
    StreamId,
    comment,
    event_tail,
    unpack_message,
)
from ..session import control
from .config import RelayConfig
from .connection import NO_EARLY, Connection, chunk
from .metrics import Metrics

__all__ = ["ChannelFeed", "Hub"]

log = logging.getLogger("karaffe.events.relay")


class ChannelFeed:
    """The hub's view of one channel: the shared subscription, the last event
    processed, and the connections following it."""

    __slots__ = ("epoch", "fast", "idle_since", "joining", "last", "name", "ready", "slow", "start")

    def __init__(self, name: str) -> None:
        self.name = name
        self.epoch: int | None = None
        #: The last event id processed, None before the first one.
        self.last: StreamId | None = None
        #: The head when the subscription was confirmed (resync starts there).
        self.start: Position | None = None
        self.ready = asyncio.Event()
        #: One-channel connections in step with the feed: shared bytes.
        self.fast: set[Connection] = set()
        #: Connections that need their own ``id:`` line or dedupe.
        self.slow: set[Connection] = set()
        #: Connections replaying history: live messages are kept for later.
        self.joining: set[Connection] = set()
        #: When the last connection left (monotonic), None while followed.
        self.idle_since: float | None = None

    def __len__(self) -> int:
        return len(self.fast) + len(self.slow) + len(self.joining)


class Hub:
    """Shares Redis subscriptions between connections and fans events out."""

    #: Seconds to wait between attempts to reach Redis again.
    reconnect_delay = 0.2
    #: Redis connections for history reads (the subscription has its own).
    redis_connections = 16
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

    def __init__(self, config: RelayConfig, metrics: Metrics) -> None:
        self.config = config
        self.metrics = metrics
        self.keys = RedisKeys(config.prefix, sharded=config.cluster)
        self.feeds: dict[str, ChannelFeed] = {}
        self.by_user: dict[str, set[Connection]] = {}
        self.redis: t.Any = None
        self.pubsub: t.Any = None
        self._read_script: t.Any = None
        self._reader: asyncio.Task[None] | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._due: dict[tuple[int, str], set[Connection]] = {}
        self._revoked: dict[str, tuple[float | None, float]] = {}
        self._subscribing = asyncio.Lock()
        self._connected = asyncio.Event()
        self.started = False

    async def start(self) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster

        if self.started:
            return
        self.started = True
        if self.config.cluster:
            self.redis = RedisCluster.from_url(self.config.redis_url)
        else:
            # A bounded pool that makes callers wait: a burst of thousands of
            # connecting clients must queue for Redis, not fail.
            pool = aioredis.BlockingConnectionPool.from_url(
                self.config.redis_url, max_connections=self.redis_connections, timeout=None
            )
            self.redis = aioredis.Redis(connection_pool=pool)
        self._read_script = self.redis.register_script(READ_SCRIPT)
        self._reader = asyncio.create_task(self._read_forever(), name="karaffe-relay-reader")
        self._heartbeat = asyncio.create_task(self._beat_forever(), name="karaffe-relay-heartbeat")

    async def stop(self) -> None:
        for task in (self._reader, self._heartbeat):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        if self.pubsub is not None:
            with contextlib.suppress(Exception):
                await self.pubsub.aclose()
        if self.redis is not None:
            await self.redis.aclose()
        self.started = False

    # -- subscriptions -------------------------------------------------------------

    async def join(self, conn: Connection) -> None:
        """Subscribe ``conn``'s channels (sharing existing subscriptions) and
        wait until Redis confirmed them, so that nothing falls between the
        subscription and the history read."""
        pubsub = await self._pubsub()
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
            self.by_user.setdefault(conn.grant.user, set()).add(conn)
            if fresh:
                await self._subscribe(pubsub, [self.keys.pubsub(f.name) for f in fresh])
        for channel in conn.session.channels:
            await self.feeds[channel].ready.wait()

    def go_live(self, conn: Connection) -> None:
        """Deliver what arrived during the replay, then switch ``conn`` to
        live delivery (no await in between: nothing can slip through)."""
        for channel, sid, epoch, tail in conn.early:
            data = conn.session.live_encoded(channel, sid, epoch, tail)
            if data:
                conn.write(data)
        conn.early = NO_EARLY
        for channel in conn.session.channels:
            feed = self.feeds[channel]
            feed.joining.discard(conn)
            if conn.channel is not None and feed.last is not None:
                position = conn.session.positions[channel]
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
        if not idle or self.pubsub is None:
            return
        async with self._subscribing:
            gone = [c for c in idle if c in self.feeds and not len(self.feeds[c])]
            for channel in gone:
                del self.feeds[channel]
            if gone and self.pubsub is not None:
                with contextlib.suppress(Exception):
                    await self._unsubscribe(self.pubsub, [self.keys.pubsub(c) for c in gone])

    async def _pubsub(self) -> t.Any:
        """The subscription connection, once the hub is connected to Redis."""
        while self.pubsub is None:
            await self._connected.wait()
        return self.pubsub

    # -- reading Redis ------------------------------------------------------------

    async def history(self, channel: str, after: StreamId, limit: int) -> History:
        """Up to ``limit`` events of ``channel`` after ``after`` (one atomic
        read, see :data:`~karaffe.events.brokers.READ_SCRIPT`)."""
        assert self._read_script is not None
        reply = await self._read_script(**read_args(self.keys, channel, after, limit))
        return history_from_reply(reply)

    async def heads(self, channels: Iterable[str]) -> dict[str, Position]:
        """The current position of each channel (for connections without cursor)."""
        return {c: (await self.history(c, ZERO, 0)).head for c in channels}

    async def revoked_at(self, user: str) -> float | None:
        """When ``user``'s access was last revoked. Cached: the revocation
        channel keeps the cache current while the hub listens, and it is
        emptied whenever the hub reconnects."""
        now = time.monotonic()
        cached = self._revoked.get(user)
        if cached is not None and cached[1] > now:
            return cached[0]
        assert self.redis is not None
        raw = await self.redis.get(self.keys.revoked(user))
        at = float(raw) if raw is not None else None
        if len(self._revoked) > self.cache_size:
            self._revoked.clear()
        self._revoked[user] = (at, now + self.revocation_cache_ttl)
        return at

    async def _read_forever(self) -> None:
        first = True
        while True:
            try:
                await self._read(resync=not first)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("relay lost Redis (%s: %s); reconnecting", type(exc).__name__, exc)
            first = False
            self.metrics.redis_reconnects += 1
            await asyncio.sleep(self.reconnect_delay)

    async def _read(self, resync: bool) -> None:
        """Subscribe (again) and hand every message to the feeds until the
        connection to Redis fails."""
        assert self.redis is not None
        pubsub = self.redis.pubsub()
        # On a cluster, shard channels and the revocation broadcast are read
        # by two pub/sub objects; standalone, one connection carries both.
        revocations = self.redis.pubsub() if self.config.cluster else pubsub
        try:
            for feed in self.feeds.values():
                feed.ready.clear()
            await revocations.subscribe(self.keys.revocations)
            if self.feeds:
                await self._subscribe(pubsub, [self.keys.pubsub(c) for c in self.feeds])
            self.pubsub = pubsub
            self._connected.set()
            # Revocations may have been missed while disconnected.
            self._revoked.clear()
            pending_resync = set(self.feeds) if resync else set()
            if revocations is pubsub:
                await self._pump(pubsub, pending_resync)
            else:
                await asyncio.gather(
                    self._pump(pubsub, pending_resync), self._pump(revocations, set())
                )
        finally:
            self.pubsub = None
            self._connected.clear()
            for each in {id(pubsub): pubsub, id(revocations): revocations}.values():
                with contextlib.suppress(Exception):
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

    async def _pump(self, pubsub: t.Any, pending_resync: set[str]) -> None:
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
            elif kind in ("subscribe", "ssubscribe") and name != self.keys.revocations:
                channel = self.keys.channel_of(name)
                confirmed = self.feeds.get(channel)
                if confirmed is None:
                    continue
                if channel in pending_resync:
                    pending_resync.discard(channel)
                    await self._resync(confirmed)
                elif confirmed.start is None and confirmed.last is None:
                    confirmed.start = (await self.heads([channel]))[channel]
                confirmed.ready.set()

    async def _resync(self, feed: ChannelFeed) -> None:
        """After re-subscribing, deliver what was published while the hub
        was not listening (from the stream, so nothing is lost)."""
        after = feed.last if feed.last is not None else (feed.start or START).id
        while True:
            history = await self.history(feed.name, after, 1000)
            if history.epoch is None:
                return
            if feed.epoch is not None and history.epoch != feed.epoch and after != ZERO:
                # A new history: all of it is new to the readers.
                after = ZERO
                continue
            for id, type, data_json in history.entries:
                self._dispatch(feed, StreamId.parse(id), history.epoch or 0, id, type, data_json)
            if len(history.entries) < 1000:
                return
            after = StreamId.parse(history.entries[-1][0])

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
        tail = event_tail(id, feed.name, type, data_json)
        channel = feed.name
        if feed.fast:
            # The position of a connection in ``fast`` is the feed's: it is
            # written into its session only when it leaves (see _demote).
            shared = b"id: " + Position(epoch, sid).segment(channel).encode("ascii") + b"\n" + tail
            shared_chunk = chunk(shared)
            for conn in feed.fast:
                conn.write(shared, shared_chunk)
        promote = []
        for conn in feed.slow:
            data = conn.session.live_encoded(channel, sid, epoch, tail)
            if data:
                conn.write(data)
            if conn.channel is not None:
                promote.append(conn)
        for conn in promote:
            feed.slow.discard(conn)
            feed.fast.add(conn)
        for conn in feed.joining:
            conn.early.append((channel, sid, epoch, tail))
        self.metrics.deliveries += len(feed.fast) + len(feed.slow)

    def _demote(self, feed: ChannelFeed) -> None:
        """Move ``feed``'s fast connections to the slow path, giving each its
        position (the feed's), which the fast path does not keep up to date."""
        if feed.fast and feed.epoch is not None and feed.last is not None:
            position = Position(feed.epoch, feed.last)
            for conn in feed.fast:
                conn.session.positions[feed.name] = position
        feed.slow.update(feed.fast)
        feed.fast.clear()

    def _revoke(self, payload: bytes) -> None:
        user, _, at_raw = payload.decode("utf-8").partition("\n")
        try:
            at = float(at_raw)
        except ValueError:
            return
        previous = self._revoked.get(user, (None, 0.0))[0]
        self._revoked[user] = (max(at, previous or 0.0), time.monotonic() + 3600)
        for conn in list(self.by_user.get(user, ())):
            if conn.grant.issued_at <= at:
                conn.write(control("auth-expired", {"reason": "revoked"}))
                conn.finish("revoked")

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
            await self._sweep()
            next_beat = time.monotonic() + self.config.heartbeat
            seen: set[Connection] = set()
            for feed in list(self.feeds.values()):
                for group in (feed.fast, feed.slow):
                    for conn in list(group):
                        if conn in seen:
                            continue
                        seen.add(conn)
                        if not conn.wrote:
                            conn.write(beat, beat_chunk)
                        conn.wrote = False


def _text(raw: t.Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)
