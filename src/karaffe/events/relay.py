"""The relay: a pure ASGI application that streams events to browsers (SSE).

Run it with ``karaffe relay`` (uvicorn, uvloop, httptools) or any ASGI server.
It is built to hold tens of thousands of connections on one process:

- **One Redis subscription per channel per process**, shared by all its
  connections (:class:`Hub`); a connection may follow many channels.
- **Encode once per channel**: an event's SSE bytes are built once; a
  connection that follows one channel gets the very same bytes object, one
  that follows several adds only its own ``id:`` line.
- **No task per delivery**: the hub writes to every connection while it
  handles the Redis message. Under uvicorn it writes the shared HTTP chunk
  straight to the socket's transport; under any other server it calls the
  ASGI ``send`` and drives it from the event loop's callbacks without a
  task, later events piling up in the connection's buffer and going out as
  one coalesced write. A connection with more than ``EVENTS_MAX_BUFFER``
  bytes unsent is cut off: it resumes later, it never slows the others.
- **Exact resume**: subscribe first, then replay each channel's history
  after the client's cursor (``XRANGE``), then go live, dropping what the
  replay already sent (:class:`~karaffe.events.session.StreamSession`).
  After a Redis outage the hub re-subscribes and reads what it missed from
  the streams, so nothing published meanwhile is lost.
- **Redis Cluster**: with ``cluster=True``, sharded pub/sub on shard
  channels in each channel's slot.

Endpoints: ``/events/stream`` (``GET``), ``/healthz``, ``/metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing as t
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from ..api.errors import (
    ApiException,
    InvalidCursor,
    NotFound,
    exception_for_status,
    problem_document,
)
from .brokers import (
    READ_SCRIPT,
    History,
    RedisKeys,
    history_from_reply,
    read_args,
    unpack_revocation,
)
from .protocol import START, ZERO, Cursor, CursorError, Position, StreamId, comment, event_tail
from .session import StreamSession, control
from .tokens import ChannelGrant, ChannelTokenError, RevokedToken, TokenSigner, is_revoked

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = ["Connection", "Hub", "Metrics", "Relay", "RelayConfig", "make_server", "serve"]

log = logging.getLogger("karaffe.events.relay")

Scope = dict[str, t.Any]
Message = dict[str, t.Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


@dataclass
class RelayConfig:
    """What the relay needs; :meth:`from_app` reads it from a Flask app's config."""

    secret_key: str
    redis_url: str
    secret_key_fallbacks: list[str] = field(default_factory=list)
    prefix: str = "karaffe:events:"
    token_max_age: int = 600
    heartbeat: float = 15.0
    retry_ms: int = 2000
    token_notice: float = 60.0
    cors_origins: list[str] = field(default_factory=list)
    max_buffer: int = 256 * 1024
    replay_limit: int = 10000
    cookie_name: str = "karaffe_events"
    stream_path: str = "/events/stream"
    #: Write straight to uvicorn's transports when possible (else through ``send``).
    direct_writes: bool = True
    #: ``redis_url`` is a Redis Cluster: cluster client, sharded pub/sub.
    cluster: bool = False
    #: The app's ``PROBLEM_TYPE_BASE``: refusals name the same problem types.
    problem_type_base: str = "urn:karaffe:problem:"

    @classmethod
    def from_app(cls, app: Flask) -> RelayConfig:
        from ..config import ConfigError, CoreSettings
        from .settings import EventsSettings

        core, events = CoreSettings.of(app), EventsSettings.of(app)
        if not core.redis_url:
            raise ConfigError("the relay needs REDIS_URL")
        return cls(
            secret_key=core.secret_key or "",
            redis_url=core.redis_url,
            secret_key_fallbacks=list(core.secret_key_fallbacks),
            prefix=events.events_redis_prefix,
            token_max_age=events.events_token_max_age,
            heartbeat=events.events_heartbeat,
            retry_ms=events.events_retry_ms,
            token_notice=events.events_token_notice,
            cors_origins=list(events.events_cors_origins),
            max_buffer=events.events_max_buffer,
            replay_limit=events.events_replay_limit,
            cookie_name=events.events_cookie_name,
            cluster=events.events_redis_cluster,
            problem_type_base=core.problem_type_base,
        )


class Metrics:
    """Counters exposed at ``/metrics`` in Prometheus' text format."""

    def __init__(self) -> None:
        self.connections = 0
        self.connections_total = 0
        self.events_in = 0
        self.deliveries = 0
        self.drops = 0
        self.resets = 0
        self.refused: dict[str, int] = {}
        self.redis_reconnects = 0

    def render(self, channels: int) -> bytes:
        lines = [
            "# TYPE karaffe_relay_connections gauge",
            f"karaffe_relay_connections {self.connections}",
            "# TYPE karaffe_relay_connections_total counter",
            f"karaffe_relay_connections_total {self.connections_total}",
            "# TYPE karaffe_relay_channels gauge",
            f"karaffe_relay_channels {channels}",
            "# TYPE karaffe_relay_events_in_total counter",
            f"karaffe_relay_events_in_total {self.events_in}",
            "# TYPE karaffe_relay_deliveries_total counter",
            f"karaffe_relay_deliveries_total {self.deliveries}",
            "# TYPE karaffe_relay_slow_client_drops_total counter",
            f"karaffe_relay_slow_client_drops_total {self.drops}",
            "# TYPE karaffe_relay_resets_total counter",
            f"karaffe_relay_resets_total {self.resets}",
            "# TYPE karaffe_relay_redis_reconnects_total counter",
            f"karaffe_relay_redis_reconnects_total {self.redis_reconnects}",
            "# TYPE karaffe_relay_refused_total counter",
        ]
        lines.extend(
            f'karaffe_relay_refused_total{{code="{code}"}} {n}'
            for code, n in sorted(self.refused.items())
        )
        return ("\n".join(lines) + "\n").encode()


def _drive(
    awaitable: Awaitable[t.Any], done: Callable[[t.Any, BaseException | None], None]
) -> bool:
    """Run ``coro`` without a task: step it now, and again from the event
    loop whenever the future it waits on completes. Returns True when it
    finished at once (``done`` was called already)."""
    loop = asyncio.get_running_loop()
    coro = awaitable.__await__()

    def step(_: t.Any = None) -> bool:
        try:
            waited = coro.send(None)
        except StopIteration as stop:
            done(stop.value, None)
            return True
        except BaseException as exc:
            done(None, exc)
            return True
        if waited is None:
            loop.call_soon(step)
        else:
            waited._asyncio_future_blocking = False
            waited.add_done_callback(step)
        return False

    return step()


#: What a live connection holds in ``early``: never appended to.
_NO_EARLY: list[tuple[str, StreamId, int, bytes]] = []


def chunk(data: bytes) -> bytes:
    """``data`` as one HTTP/1.1 chunk (computed once per event for the
    connections written to directly)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


class Connection:
    """One SSE client: its channels and positions, its pending bytes.

    Two ways to write: through the ASGI ``send`` (any server), driven without
    a task, or, when the server is uvicorn and the response is chunked,
    straight to the socket's transport (:meth:`use_transport`), which is
    what uvicorn's ``send`` does after its checks, minus a coroutine per write.
    """

    __slots__ = (
        "_buffer",
        "_buffered",
        "_sending",
        "channel",
        "done",
        "early",
        "grant",
        "hub",
        "send",
        "session",
        "transport",
        "wrote",
    )

    def __init__(self, hub: Hub, send: Send, session: StreamSession, grant: ChannelGrant) -> None:
        self.hub = hub
        self.send = send
        self.session = session
        self.grant = grant
        #: The only channel, for connections that follow one (fast path).
        self.channel = session.channels[0] if len(session.channels) == 1 else None
        #: Live messages that arrived while the history was replayed.
        self.early: list[tuple[str, StreamId, int, bytes]] = []
        self._buffer: list[bytes] | None = None
        self._buffered = 0
        self._sending = False
        self.wrote = False
        #: The socket's transport when writing directly (see :meth:`use_transport`).
        self.transport: asyncio.WriteTransport | None = None
        #: Resolved with the reason the stream ends.
        self.done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    def use_transport(self) -> bool:
        """Write straight to the transport if ``send`` is uvicorn's and the
        response started chunked; True if so."""
        cycle = getattr(self.send, "__self__", None)
        transport = getattr(cycle, "transport", None)
        if (
            transport is not None
            and getattr(cycle, "chunked_encoding", None) is True
            and getattr(cycle, "response_started", False)
            and hasattr(transport, "get_write_buffer_size")
        ):
            self.transport = transport
            return True
        return False

    def write(self, data: bytes, chunked: bytes | None = None) -> None:
        """Send ``data`` to the client (``chunked`` is ``chunk(data)`` when
        the caller has it): at once, or after what is in flight."""
        if self.done.done():
            return
        self.wrote = True
        transport = self.transport
        if transport is not None:
            if transport.is_closing():
                self.finish("disconnect")
                return
            transport.write(chunked if chunked is not None else chunk(data))
            if transport.get_write_buffer_size() > self.hub.config.max_buffer:
                self.cut()
            return
        if self._sending:
            if self._buffer is None:
                self._buffer = []
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered > self.hub.config.max_buffer:
                self.cut()
            return
        self._sending = True
        message = {"type": "http.response.body", "body": data, "more_body": True}
        _drive(self.send(message), self._sent)

    def _sent(self, _: t.Any, error: BaseException | None) -> None:
        self._sending = False
        if error is not None:
            self.finish("error")
            return
        if self._buffer:
            data = b"".join(self._buffer)
            self._buffer = None
            self._buffered = 0
            self.write(data)

    def cut(self) -> None:
        """Drop a client that does not read fast enough; it resumes later
        from its cursor."""
        self.hub.metrics.drops += 1
        self.finish("slow")
        if self.transport is not None:
            self.transport.abort()

    @property
    def idle(self) -> bool:
        """Whether nothing is waiting to be written to the client."""
        if self.transport is not None:
            return self.transport.get_write_buffer_size() == 0
        return not self._sending and not self._buffer

    def finish(self, reason: str) -> None:
        """End the stream (the handler completes the response)."""
        if not self.done.done():
            self.done.set_result(reason)


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
        conn.early = _NO_EARLY
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

    async def revoked_at(self, user: str, credential: str | None = None) -> float | None:
        """When ``user``'s access (or, given, their ``credential``) was last
        revoked. Cached: the revocation channel keeps the cache current while
        the hub listens, and it is emptied whenever the hub reconnects."""
        now = time.monotonic()
        key = self.keys.revoked(user, credential)
        cached = self._revoked.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        assert self.redis is not None
        raw = await self.redis.get(key)
        at = float(raw) if raw is not None else None
        if len(self._revoked) > self.cache_size:
            self._revoked.clear()
        self._revoked[key] = (at, now + self.revocation_cache_ttl)
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
        parts = payload.split(b"\n", 3)
        if len(parts) != 4:
            log.warning("relay dropped a malformed message on %s", channel)
            return
        id = parts[0].decode("ascii")
        self._dispatch(
            feed, StreamId.parse(id), int(parts[1]), id, parts[2].decode("ascii"), parts[3]
        )

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
        revocation = unpack_revocation(payload)
        if revocation is None:
            return
        user, at, credential = revocation
        key = self.keys.revoked(user, credential)
        previous = self._revoked.get(key, (None, 0.0))[0]
        self._revoked[key] = (max(at, previous or 0.0), time.monotonic() + 3600)
        for conn in list(self.by_user.get(user, ())):
            if conn.grant.issued_at > at:
                continue
            if credential is None or conn.grant.credential == credential:
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


class Relay:
    """The ASGI application. ``Relay(RelayConfig(...))`` or
    :meth:`from_app`; mount it on any ASGI server."""

    #: The class of the shared subscription hub.
    hub_class = Hub

    def __init__(self, config: RelayConfig) -> None:
        self.config = config
        self.metrics = Metrics()
        self.signer = TokenSigner(
            config.secret_key, config.secret_key_fallbacks, config.token_max_age
        )
        self.hub = self.hub_class(config, self.metrics)
        self.connections: set[Connection] = set()
        #: Verified tokens: a reconnect storm does not verify each again.
        self._grants: dict[str, ChannelGrant] = {}
        self.closing = False
        self._start_lock: asyncio.Lock | None = None

    @classmethod
    def from_app(cls, app: Flask) -> Relay:
        return cls(RelayConfig.from_app(app))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The ASGI entry point. A stream is handled right here rather than in
        a method it awaits: every suspended coroutine frame costs memory for
        each open connection."""
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                await self.lifespan(receive, send)
            return
        if scope["path"] != self.config.stream_path or scope["method"] != "GET":
            await self.http(scope, receive, send)
            return
        conn = await self.open(scope, send)
        if conn is None:
            return
        self.connections.add(conn)
        self.metrics.connections += 1
        self.metrics.connections_total += 1
        try:
            await self.replay(conn, receive)
            if await conn.done in ("expired", "revoked", "shutdown"):
                await self._complete(conn, send)
        finally:
            self.hub.leave(conn)
            self.metrics.resets += conn.session.resets
            self.connections.discard(conn)
            self.metrics.connections -= 1

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def startup(self) -> None:
        await self.hub.start()

    async def drain(self, grace: float = 2.0) -> None:
        """Tell every client to reconnect (to another process, with its
        cursor) and end the streams; wait up to ``grace`` seconds for them."""
        self.closing = True
        for conn in list(self.connections):
            conn.write(control("reconnect", {}))
            conn.finish("shutdown")
        deadline = time.monotonic() + grace
        while self.connections and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    async def shutdown(self) -> None:
        """Drain and stop (the ASGI lifespan shutdown)."""
        await self.drain()
        await self.hub.stop()

    # -- HTTP ---------------------------------------------------------------------------

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Every HTTP request but a stream: CORS preflight, health, metrics."""
        path = scope["path"]
        method = scope["method"]
        if path == self.config.stream_path and method == "OPTIONS":
            await self.respond(send, 204, b"", headers=self.cors_headers(scope, preflight=True))
        elif path == "/healthz":
            ok = self.hub.started and self.hub.pubsub is not None and not self.closing
            body = b'{"status":"ok"}' if ok else b'{"status":"unavailable"}'
            await self.respond(send, 200 if ok else 503, body, b"application/json")
        elif path == "/metrics":
            body = self.metrics.render(len(self.hub.feeds))
            await self.respond(send, 200, body, b"text/plain; version=0.0.4")
        else:
            not_found = NotFound("No such endpoint.")
            await self.respond(send, 404, self.problem(not_found), b"application/problem+json")

    async def respond(
        self,
        send: Send,
        status: int,
        body: bytes,
        content_type: bytes = b"text/plain",
        headers: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        head = [(b"content-type", content_type), (b"content-length", b"%d" % len(body))]
        await send(
            {"type": "http.response.start", "status": status, "headers": head + (headers or [])}
        )
        await send({"type": "http.response.body", "body": body})

    def cors_headers(self, scope: Scope, preflight: bool = False) -> list[tuple[bytes, bytes]]:
        """CORS headers for an allowed ``Origin`` (``EVENTS_CORS_ORIGINS``)."""
        allowed = self.config.cors_origins
        if not allowed:
            return []
        origin = _header(scope, b"origin")
        if origin is None:
            return []
        out: list[tuple[bytes, bytes]] = [(b"vary", b"origin")]
        if origin.decode("latin-1") in allowed:
            out += [
                (b"access-control-allow-origin", origin),
                (b"access-control-allow-credentials", b"true"),
            ]
        elif "*" in allowed:
            out.append((b"access-control-allow-origin", b"*"))
        else:
            return out
        if preflight:
            out += [
                (b"access-control-allow-methods", b"GET, OPTIONS"),
                (b"access-control-allow-headers", b"last-event-id, cache-control"),
                (b"access-control-max-age", b"600"),
            ]
        return out

    def problem(self, exc: ApiException) -> bytes:
        """The problem document of ``exc``, as the app's formatter renders it
        by default (there is no Flask app here to ask)."""
        body = problem_document(exc, type_base=self.config.problem_type_base)
        return body.model_dump_json().encode()

    def refuse(self, send: Send, scope: Scope, exc: ApiException) -> Awaitable[None]:
        """Answer a stream request with the problem ``exc``, counted by its slug."""
        self.metrics.refused[exc.slug] = self.metrics.refused.get(exc.slug, 0) + 1
        return self.respond(
            send,
            exc.status,
            self.problem(exc),
            b"application/problem+json",
            self.cors_headers(scope),
        )

    async def authorize(self, scope: Scope) -> tuple[ChannelGrant, tuple[str, ...]]:
        """The grant and the channels of a stream request, or
        :class:`ChannelTokenError`."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = (query.get("token") or [None])[0] or _cookie(scope, self.config.cookie_name)
        grant = self._grants.get(token) if token else None
        if grant is None or grant.expires_at <= time.time():
            grant = self.signer.verify(token)
            if len(self._grants) > self.hub.cache_size:
                self._grants.clear()
            self._grants[t.cast(str, token)] = grant
        channels = grant.check_channels(query.get("channel", []))
        if await self.revoked_since(grant):
            raise RevokedToken()
        return grant, channels

    async def revoked_since(self, grant: ChannelGrant) -> bool:
        """Whether ``grant``'s user, or its credential, was revoked since it was issued."""
        user_at = await self.hub.revoked_at(grant.user)
        credential_at = None
        if grant.credential is not None:
            credential_at = await self.hub.revoked_at(grant.user, grant.credential)
        return is_revoked(grant, user_at, credential_at)

    async def open(self, scope: Scope, send: Send) -> Connection | None:
        """The connection for a stream request, or ``None`` after refusing it."""
        if self.closing:
            unavailable = exception_for_status(503)("The relay is shutting down.")
            await self.refuse(send, scope, unavailable)
            return None
        if not self.hub.started:
            await self.hub.start()
        try:
            grant, channels = await self.authorize(scope)
        except ChannelTokenError as exc:
            await self.refuse(send, scope, exc)
            return None
        raw = _header(scope, b"last-event-id")
        if raw is None:
            query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
            raw = (query.get("cursor") or [""])[0].encode("latin-1")
        try:
            cursor = Cursor.parse(raw.decode("latin-1"))
        except CursorError as exc:
            await self.refuse(send, scope, InvalidCursor(str(exc)))
            return None
        conn = Connection(self.hub, send, StreamSession(channels, cursor), grant)
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [*self.stream_headers, *self.cors_headers(scope)],
            }
        )
        return conn

    #: Headers of every stream response.
    stream_headers: t.ClassVar[list[tuple[bytes, bytes]]] = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"cache-control", b"no-store"),
        (b"x-accel-buffering", b"no"),
    ]

    async def replay(self, conn: Connection, receive: Receive) -> None:
        """Send ``conn`` what it missed, then switch it to live delivery."""
        if not (self.config.direct_writes and conn.use_transport()):
            # Direct writes notice a closed socket themselves; through ASGI,
            # only ``receive`` says the client left.
            self._watch_disconnect(conn, receive)
        session = conn.session
        conn.write(b"retry: %d\n\n" % self.config.retry_ms)
        await self.hub.join(conn)
        if await self.revoked_since(conn.grant):
            # Revoked between the check in authorize() and the join, when no
            # announcement could find this connection.
            conn.write(control("auth-expired", {"reason": "revoked"}))
            conn.finish("revoked")
            return
        replay = list(session.positions_set)
        unknown = []
        for channel in session.channels:
            if channel in session.positions_set:
                continue
            # Live from now: where the shared feed stands is exactly that,
            # since what comes next is collected for this connection already.
            feed = self.hub.feeds[channel]
            if feed.last is not None and feed.epoch is not None:
                session.positions[channel] = Position(feed.epoch, feed.last)
            elif feed.start is not None:
                session.positions[channel] = feed.start
            else:
                unknown.append(channel)
        if unknown:
            for channel, head in (await self.hub.heads(unknown)).items():
                session.positions[channel] = head
            replay.extend(unknown)
        for channel in session.channels:
            if channel not in replay:
                continue
            history = await self.hub.history(
                channel, session.after(channel), self.config.replay_limit
            )
            complete = len(history.entries) < self.config.replay_limit
            data = session.replay(channel, history, complete)
            if data:
                conn.write(data)
        self.hub.go_live(conn)
        self.hub.add_deadlines(conn)

    async def _complete(self, conn: Connection, send: Send, timeout: float = 2.0) -> None:
        """Let queued frames go out, then end the response cleanly."""
        deadline = time.monotonic() + timeout
        while not conn.idle and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        if conn.idle:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    send({"type": "http.response.body", "body": b"", "more_body": False}),
                    max(0.01, deadline - time.monotonic()),
                )

    def _watch_disconnect(self, conn: Connection, receive: Receive) -> None:
        """Notice the client going away, without a task: drive ``receive``
        from the event loop until it says ``http.disconnect``."""

        def received(message: t.Any, error: BaseException | None) -> None:
            if error is not None or message.get("type") == "http.disconnect":
                conn.finish("disconnect")
            elif not conn.done.done():
                _drive(receive(), received)

        _drive(receive(), received)


def _text(raw: t.Any) -> str:
    return raw.decode() if isinstance(raw, bytes) else str(raw)


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return t.cast(bytes, value)
    return None


def _cookie(scope: Scope, name: str) -> str | None:
    raw = _header(scope, b"cookie")
    if raw is None:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


def serve(relay: Relay, host: str = "127.0.0.1", port: int = 8001, **options: t.Any) -> None:
    """Serve ``relay`` with uvicorn (uvloop and httptools when installed),
    draining the streams on SIGTERM/SIGINT before the server stops. The
    access log stays off: stream URLs carry tokens."""
    server = make_server(relay, host, port, **options)
    server.run()


def make_server(relay: Relay, host: str, port: int, **options: t.Any) -> t.Any:
    """A uvicorn server for ``relay`` that drains it on shutdown."""
    import uvicorn

    class RelayServer(uvicorn.Server):
        async def shutdown(self, sockets: t.Any = None) -> None:
            # uvicorn waits for open responses to finish before the lifespan
            # shutdown; streams never finish, so end them first.
            await relay.drain()
            await super().shutdown(sockets)

    settings: dict[str, t.Any] = {
        "loop": "auto",
        "http": "auto",
        "lifespan": "on",
        "access_log": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 5,
        "proxy_headers": False,
        "server_header": False,
        "backlog": 4096,
    }
    settings.update(options)
    return RelayServer(uvicorn.Config(relay, host=host, port=port, **settings))
