"""Is Redis answering? A PING on a connection of its own, every second.

A Redis that is stopped (``SIGSTOP``), swapping, or cut off by the network
without a reset does not close the relay's connections: reads just wait.
The health check is what notices: a PING not answered within
:attr:`RedisHealth.timeout` seconds marks Redis unhealthy, and the first one
answered marks it healthy again. The hub drops its subscription when Redis
turns unhealthy and subscribes again (reading what it missed from the
streams) when it is healthy; ``/healthz`` follows.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import typing as t
from collections.abc import Callable

__all__ = ["RedisHealth"]

log = logging.getLogger("karaffe.events.relay")


class RedisHealth:
    """Pings Redis every :attr:`interval` seconds with a client made by
    ``make_client`` (its own connection, never one busy with other work).

    Starts healthy, so that a relay starting next to a working Redis is
    usable at once; the first PING is sent right away.
    """

    #: Seconds between two PINGs.
    interval = 1.0
    #: Seconds a PING may take before Redis counts as unhealthy.
    timeout = 1.0

    def __init__(self, make_client: Callable[[], t.Any]) -> None:
        self.make_client = make_client
        self.up = True
        #: When Redis last turned unhealthy (monotonic), None while healthy.
        self.down_since: float | None = None
        loop = asyncio.get_running_loop()
        self._up: asyncio.Future[None] = loop.create_future()
        self._up.set_result(None)
        self._down: asyncio.Future[None] = loop.create_future()

    def when_up(self) -> asyncio.Future[None]:
        """A future done while (or as soon as) Redis is healthy."""
        return self._up

    def when_down(self) -> asyncio.Future[None]:
        """A future done while (or as soon as) Redis is unhealthy."""
        return self._down

    def set(self, up: bool, why: str = "") -> None:
        """Record the outcome of a check (the hub also reports failures it
        sees itself)."""
        if up == self.up:
            return
        self.up = up
        loop = asyncio.get_running_loop()
        if up:
            log.warning(
                "relay: Redis answers again after %.1f s",
                time.monotonic() - (self.down_since or time.monotonic()),
            )
            self.down_since = None
            self._up.set_result(None)
            self._down = loop.create_future()
        else:
            log.warning("relay: Redis is unhealthy (PING: %s)", why or "no answer")
            self.down_since = time.monotonic()
            self._down.set_result(None)
            self._up = loop.create_future()

    async def run(self) -> None:
        """Check forever (a task of the hub)."""
        client: t.Any = None
        try:
            while True:
                started = time.monotonic()
                try:
                    if client is None:
                        client = self.make_client()
                    async with asyncio.timeout(self.timeout):
                        await client.ping()
                    ok, why = True, ""
                except Exception as exc:
                    ok = False
                    why = (
                        f"no answer within {self.timeout:g} s"
                        if isinstance(exc, TimeoutError)
                        else f"{type(exc).__name__}: {exc}"
                    )
                    # A fresh connection next time: this one may be wedged.
                    await _close(client)
                    client = None
                self.set(ok, why)
                await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))
        finally:
            await _close(client)


async def _close(client: t.Any) -> None:
    if client is not None:
        with contextlib.suppress(Exception):
            async with asyncio.timeout(RedisHealth.timeout):
                await client.aclose()
