"""The relay's ASGI application: streams, health, metrics, CORS."""

from __future__ import annotations

import asyncio
import contextlib
import time
import typing as t
from collections.abc import Awaitable

from ...api.errors import ApiException, NotFound, exception_for_status, problem_document
from ..admission import Admission, StreamRequest, header, is_revoked
from ..protocol import Position
from ..session import StreamSession, control
from ..tokens import TokenSigner
from .config import RelayConfig
from .connection import Connection, Receive, Scope, Send, drive
from .hub import Hub, RedisUnavailable
from .metrics import Metrics

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = ["Relay"]


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
        #: Admits stream requests (verified tokens are cached).
        self.admission = Admission(self.signer, cache_size=self.hub_class.cache_size)
        self.hub = self.hub_class(config, self.metrics)
        self.connections: set[Connection] = set()
        #: Streams let in while Redis did not answer: revocation not checked yet.
        self._unchecked: set[Connection] = set()
        self.closing = False

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
            self._unchecked.discard(conn)
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
        self.hub.flush()
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
            ok = self.hub.started and self.hub.available and not self.closing
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
        origin = header(scope, b"origin")
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

    async def open(self, scope: Scope, send: Send) -> Connection | None:
        """The connection for a stream request, or ``None`` after refusing it.

        Everything but revocation is checked at once, without Redis. The
        revocation mark comes from the cache or Redis; when Redis does not
        answer, the stream starts anyway (heartbeats only) and the mark is
        looked up before any event is sent (see :meth:`replay`): a revoked
        token then ends with ``auth-expired`` instead of a 401.
        """
        if self.closing:
            unavailable = exception_for_status(503)("The relay is shutting down.")
            await self.refuse(send, scope, unavailable)
            return None
        if not self.hub.started:
            await self.hub.start()
        try:
            ticket = self.admission.check(StreamRequest.from_asgi(scope, self.config.cookie_name))
            try:
                ticket.check_revocation(*await self.hub.revocations(ticket.grant))
                checked = True
            except RedisUnavailable:
                checked = False
        except ApiException as exc:
            await self.refuse(send, scope, exc)
            return None
        session = StreamSession(ticket.channels, ticket.cursor, on_reset=self.metrics.count_reset)
        conn = Connection(
            send,
            session,
            ticket.grant,
            max_buffer=self.config.max_buffer,
            metrics=self.metrics,
        )
        if not checked:
            self._unchecked.add(conn)
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
        """Send ``conn`` what it missed, then switch it to live delivery.

        Redis may not answer (it hangs, restarts, or the network fails): the
        stream then waits with its heartbeats, and goes on from where it
        stands once the hub is subscribed again. It never fails for that.
        """
        if not (self.config.direct_writes and conn.use_transport()):
            # Direct writes notice a closed socket themselves; through ASGI,
            # only ``receive`` says the client left.
            self._watch_disconnect(conn, receive)
        hub = self.hub
        session = conn.session
        conn.write(b"retry: %d\n\n" % self.config.retry_ms)
        hub.add(conn)
        if hub.revoked_in_cache(conn.grant):
            # Revoked after open() checked and before add(), when no
            # announcement could find this connection.
            conn.write(control("auth-expired", {"reason": "revoked"}))
            conn.finish("revoked")
            return
        #: Channels with a position (the cursor's, or live from the first
        #: attempt on: events that come after it are kept for the client).
        placed = set(session.positions_set)
        pending = [c for c in session.channels if c in session.positions_set]
        while True:
            if not await hub.until(conn, lambda: hub.available):
                return
            try:
                if conn in self._unchecked:
                    if is_revoked(conn.grant, *await hub.revocations(conn.grant)):
                        conn.write(control("auth-expired", {"reason": "revoked"}))
                        conn.finish("revoked")
                        return
                    self._unchecked.discard(conn)
                if not await hub.join(conn):
                    return
                unknown = []
                for channel in session.channels:
                    if channel in placed:
                        continue
                    # Live from now: where the shared feed stands is exactly
                    # that, since what comes next is collected for this
                    # connection already.
                    feed = hub.feeds[channel]
                    if feed.last is not None and feed.epoch is not None:
                        session.positions[channel] = Position(feed.epoch, feed.last)
                    elif feed.start is not None:
                        session.positions[channel] = feed.start
                    else:
                        unknown.append(channel)
                        continue
                    placed.add(channel)
                if unknown:
                    for channel, head in (await hub.heads(unknown)).items():
                        session.positions[channel] = head
                        placed.add(channel)
                    pending.extend(unknown)
                while pending:
                    channel = pending[0]
                    limit = self.config.replay_limit
                    history = await hub.history(channel, session.after(channel), limit)
                    data = session.replay(channel, history, len(history.entries) < limit)
                    if data:
                        conn.write(data)
                    pending.pop(0)
            except RedisUnavailable:
                await hub.pause(conn)
                continue
            hub.go_live(conn)
            return

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
                drive(receive(), received)

        drive(receive(), received)
