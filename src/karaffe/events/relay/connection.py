"""One SSE client of the relay, and how bytes reach it without a task."""

from __future__ import annotations

import asyncio
import typing as t
from collections.abc import Awaitable, Callable, Iterable

from ..protocol import StreamId
from ..session import StreamSession
from ..tokens import ChannelGrant
from .metrics import Metrics

__all__ = ["Connection", "Message", "Receive", "Scope", "Send", "chunk", "drive", "write_all"]

Scope = dict[str, t.Any]
Message = dict[str, t.Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def drive(awaitable: Awaitable[t.Any], done: Callable[[t.Any, BaseException | None], None]) -> bool:
    """Run ``awaitable`` without a task: step it now, and again from the event
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
NO_EARLY: list[tuple[str, StreamId, int, bytes]] = []


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

    :param send: the ASGI ``send`` of the response (started already).
    :param session: the client's positions (see :class:`StreamSession`).
    :param grant: its channel token's grant.
    :param max_buffer: unsent bytes past which the client is cut off.
    :param metrics: counts slow clients cut off.
    """

    __slots__ = (
        "_buffer",
        "_buffered",
        "_sending",
        "channel",
        "done",
        "early",
        "grant",
        "max_buffer",
        "metrics",
        "pending",
        "send",
        "session",
        "transport",
        "wrote",
    )

    def __init__(
        self,
        send: Send,
        session: StreamSession,
        grant: ChannelGrant,
        *,
        max_buffer: int,
        metrics: Metrics,
    ) -> None:
        self.send = send
        self.session = session
        self.grant = grant
        self.max_buffer = max_buffer
        self.metrics = metrics
        #: The only channel, for connections that follow one (fast path).
        self.channel = session.channels[0] if len(session.channels) == 1 else None
        #: Live messages that arrived while the history was replayed: an
        #: event ``(channel, id, epoch, tail)``, or a reset of the channel's
        #: feed ``(channel, id, epoch, b"")`` (see ``Hub.reset_feed``).
        self.early: list[tuple[str, StreamId, int, bytes]] = []
        #: Frames of its own (an ``id:`` line for each of its channels)
        #: that the hub writes at the end of the event loop's turn.
        self.pending: list[bytes] | None = None
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
            if transport.get_write_buffer_size() > self.max_buffer:
                self.cut()
            return
        if self._sending:
            if self._buffer is None:
                self._buffer = []
            self._buffer.append(data)
            self._buffered += len(data)
            if self._buffered > self.max_buffer:
                self.cut()
            return
        self._sending = True
        message = {"type": "http.response.body", "body": data, "more_body": True}
        drive(self.send(message), self._sent)

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
        self.metrics.drops += 1
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


def write_all(conns: Iterable[Connection], data: bytes, chunked: bytes) -> None:
    """:meth:`Connection.write` of the same ``data`` (``chunked`` is
    ``chunk(data)``) to every one of ``conns``: the fan-out's loop, with the
    common case (an open transport) inline, one call less per connection."""
    for conn in conns:
        transport = conn.transport
        if transport is None or transport.is_closing() or conn.done.done():
            conn.write(data, chunked)
            continue
        conn.wrote = True
        transport.write(chunked)
        if transport.get_write_buffer_size() > conn.max_buffer:
            conn.cut()
