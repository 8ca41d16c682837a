"""The baseline: the relay most people write first (about 60 lines).

One Redis subscription fanned out to a per-connection ``asyncio.Queue``; each
connection's task wakes for every event and writes it. No resume, no auth.
Run: ``python -m bench.naive_relay --port 8101 --redis-url redis://...``.
"""

from __future__ import annotations

import argparse
import asyncio
import typing as t

import redis.asyncio as aioredis
import uvicorn

CHANNEL = "bench"
queues: set[asyncio.Queue[bytes]] = set()


async def fan_out(url: str) -> None:
    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.subscribe(CHANNEL)
    async for message in pubsub.listen():
        if message["type"] == "message":
            frame = b"data: " + message["data"] + b"\n\n"
            for queue in queues:
                queue.put_nowait(frame)


def make_app(url: str) -> t.Callable[..., t.Awaitable[None]]:
    async def app(scope: dict[str, t.Any], receive: t.Any, send: t.Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            reader = asyncio.get_running_loop().create_task(fan_out(url))
            await send({"type": "lifespan.startup.complete"})
            await receive()
            reader.cancel()
            await send({"type": "lifespan.shutdown.complete"})
            return
        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-store")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            queue.put_nowait(None)

        watcher = asyncio.ensure_future(watch())
        queues.add(queue)  # type: ignore[arg-type]
        try:
            while (frame := await queue.get()) is not None:
                await send({"type": "http.response.body", "body": frame, "more_body": True})
        finally:
            queues.discard(queue)  # type: ignore[arg-type]
            watcher.cancel()

    return app


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    args = parser.parse_args()
    uvicorn.run(make_app(args.redis_url), host="127.0.0.1", port=args.port, loop="uvloop",
                http="httptools", access_log=False, log_level="warning", backlog=4096)  # fmt: skip


if __name__ == "__main__":
    main()
