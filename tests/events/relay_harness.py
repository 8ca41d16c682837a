"""Run the relay on a real port in a thread, and read its streams with httpx."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import typing as t
from collections.abc import Iterator

import httpx

from karaffe._servers import free_port
from karaffe.events.protocol import SSEMessage, SSEParser
from karaffe.events.relay import Relay, RelayConfig, make_server


class RelayThread:
    """A relay served by uvicorn in a background thread."""

    def __init__(self, config: RelayConfig, port: int | None = None) -> None:
        self.relay = Relay(config)
        self.port = port or free_port()
        self.server = make_server(
            self.relay, "127.0.0.1", self.port, loop="asyncio", log_level="warning"
        )
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.loop: asyncio.AbstractEventLoop | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RelayThread:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("relay did not start")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@contextlib.contextmanager
def running_relay(config: RelayConfig, port: int | None = None) -> Iterator[RelayThread]:
    relay = RelayThread(config, port).start()
    try:
        yield relay
    finally:
        relay.stop()


class Stream:
    """One SSE connection, read on demand."""

    def __init__(self, client: httpx.Client, url: str, **kwargs: t.Any) -> None:
        self._cm = client.stream("GET", url, **kwargs)
        self.response = self._cm.__enter__()
        self.parser = SSEParser()
        self._chunks = self.response.iter_raw()
        self.messages: list[SSEMessage] = []

    def read(self, n: int = 1, timeout: float = 5.0) -> list[SSEMessage]:
        """The next ``n`` messages (fails when they do not come in time)."""
        deadline = time.monotonic() + timeout
        while len(self.messages) < n:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {n} messages, got {self.messages!r}")
            try:
                chunk = next(self._chunks)
            except StopIteration:
                break
            self.messages.extend(self.parser.feed(chunk))
        out, self.messages = self.messages[:n], self.messages[n:]
        return out

    def read_until_end(self, timeout: float = 5.0) -> list[SSEMessage]:
        deadline = time.monotonic() + timeout
        for chunk in self._chunks:
            self.messages.extend(self.parser.feed(chunk))
            if time.monotonic() > deadline:
                raise AssertionError("stream did not end")
        out, self.messages = self.messages, []
        return out

    def close(self) -> None:
        self._cm.__exit__(None, None, None)
