"""Time (and profile) a WSGI bench app in-process, without a server or a socket.

``python -m bench inprocess [--only karaffe,flask-pydantic] [--profile karaffe:page]``
calls each app's WSGI callable directly with a prepared environ (an ASGI app's
callable with a prepared scope, on a uvloop event loop): the cost of the
framework and the view alone, in CPU microseconds per request (the best
of many short batches, so that other processes on a shared machine barely
move it), steady enough to compare one change to ``src/karaffe`` with the
next. ``--profile`` prints
the top of a cProfile of one app and endpoint.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
import typing as t

import orjson
from werkzeug.test import EnvironBuilder
from werkzeug.utils import import_string

from .apps import APPS, BenchApp, by_name
from .apps.common import INVALID_BODY, PAGE_SIZE, VALID_BODY
from .check import check_page

__all__ = ["AsgiCall", "main", "prepared_calls"]

WsgiCall = t.Callable[[], tuple[str, bytes]]


def _environ(method: str, path: str, body: t.Any = None) -> dict[str, t.Any]:
    builder = EnvironBuilder(path=path, method=method, json=body, base_url="http://127.0.0.1:8000")
    try:
        return builder.get_environ()
    finally:
        builder.close()


def wsgi_call(wsgi: t.Any, environ: dict[str, t.Any]) -> WsgiCall:
    """A call of ``wsgi`` with (a copy of) ``environ`` and its body, answering
    the status and the body; what every in-process benchmark times."""
    body = environ["wsgi.input"].read()
    status: list[str] = []

    def start_response(s: str, headers: t.Any, exc_info: t.Any = None) -> None:
        status.append(s)

    def call() -> tuple[str, bytes]:
        env = dict(environ)
        env["wsgi.input"] = io.BytesIO(body)
        status.clear()
        rv = wsgi(env, start_response)
        try:
            out = b"".join(rv)
        finally:
            if hasattr(rv, "close"):
                rv.close()
        return status[0], out

    return call


def _page_path(wsgi: t.Any, depth: int) -> str:
    client = wsgi.test_client()
    path = "/api/items"
    for page in range(depth):
        rv = client.get(path)
        link = check_page(rv.status_code, rv.data, rv.headers.get("Link"), 1 + page * PAGE_SIZE)
        assert link is not None
        path = link
    return path


class AsgiCall:
    """One request to an ASGI app, made in-process with a prepared scope: the
    app's own work, without a server. Calling it runs one request on the
    bench's event loop; :meth:`batch` runs several in one coroutine, so that
    the loop's own start-up is not what :func:`time_call` measures."""

    #: The process's CPU clock: ``def`` handlers run on the thread pool.
    clock = staticmethod(time.process_time)

    def __init__(
        self, asgi: t.Any, loop: asyncio.AbstractEventLoop, method: str, path: str, body: t.Any
    ) -> None:
        self.asgi = asgi
        self.loop = loop
        raw = orjson.dumps(body) if body is not None else b""
        route, _, query = path.partition("?")
        headers = [(b"host", b"127.0.0.1:8000")]
        if body is not None:
            headers += [(b"content-type", b"application/json")]
            headers += [(b"content-length", str(len(raw)).encode())]
        self.scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": route,
            "raw_path": route.encode(),
            "query_string": query.encode(),
            "root_path": "",
            "headers": headers,
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.body = raw

    async def _one(self) -> tuple[str, bytes, dict[str, str]]:
        sent: list[dict[str, t.Any]] = []
        received = False

        async def receive() -> dict[str, t.Any]:
            nonlocal received
            if received:
                return {"type": "http.disconnect"}
            received = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: dict[str, t.Any]) -> None:
            sent.append(message)

        await self.asgi(dict(self.scope), receive, send)
        start = sent[0]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in start["headers"]}
        body = b"".join(m.get("body", b"") for m in sent[1:])
        return str(start["status"]), body, headers

    async def _many(self, n: int) -> None:
        for _ in range(n):
            await self._one()

    def __call__(self) -> tuple[str, bytes]:
        status, body, _ = self.loop.run_until_complete(self._one())
        return status, body

    def with_headers(self) -> tuple[str, bytes, dict[str, str]]:
        return self.loop.run_until_complete(self._one())

    def batch(self, n: int) -> None:
        self.loop.run_until_complete(self._many(n))


def _asgi_page_path(asgi: t.Any, loop: asyncio.AbstractEventLoop, depth: int) -> str:
    path = "/api/items"
    for page in range(depth):
        status, body, headers = AsgiCall(asgi, loop, "GET", path, None).with_headers()
        link = check_page(int(status), body, headers.get("link"), 1 + page * PAGE_SIZE)
        assert link is not None
        path = link
    return path


def prepared_calls(app: BenchApp, depth: int = 250) -> dict[str, WsgiCall]:
    """For a bench app, a no-argument call per endpoint: through its WSGI
    callable, or its ASGI one on an event loop of the bench's."""
    target = import_string(app.target.replace(":", "."))
    if app.interface == "asgi":
        loop = _event_loop()
        return {
            "post": AsgiCall(target, loop, "POST", "/api/items", VALID_BODY),
            "page": AsgiCall(target, loop, "GET", _asgi_page_path(target, loop, depth), None),
            "invalid": AsgiCall(target, loop, "POST", "/api/items", INVALID_BODY),
        }
    return {
        "post": wsgi_call(target, _environ("POST", "/api/items", VALID_BODY)),
        "page": wsgi_call(target, _environ("GET", _page_path(target, depth))),
        "invalid": wsgi_call(target, _environ("POST", "/api/items", INVALID_BODY)),
    }


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop, as the servers run ASGI apps on (asyncio's without it)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


def time_call(call: WsgiCall, seconds: float, batch: int = 20) -> float:
    """CPU microseconds per call: the best of many short batches of ``batch``
    calls, timed with the thread's CPU clock. On a shared machine a process
    is descheduled (which the CPU clock ignores) and shares its core's caches
    (which it does not); a batch of a few milliseconds that ran alone is what
    the best of them measures."""
    clock = getattr(call, "clock", time.thread_time)
    many = getattr(call, "batch", None)
    if many is None:

        def many(n: int) -> None:
            for _ in range(n):
                call()

    many(batch)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = clock()
        many(batch)
        best = min(best, (clock() - start) / batch)
    return best * 1e6


def main(argv: t.Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench inprocess", description=__doc__)
    parser.add_argument("--only", help="comma-separated WSGI apps (default: all WSGI apps)")
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--profile", help="APP:ENDPOINT to profile, e.g. karaffe:page")
    args = parser.parse_args(argv)
    if args.profile:
        name, endpoint = args.profile.split(":")
        call = prepared_calls(by_name(name)[0])[endpoint]
        for _ in range(200):
            call()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(5000):
            call()
        profiler.disable()
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(45)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return 0
    apps = by_name(args.only) if args.only else APPS
    print(f"{'app':<16}{'endpoint':<10}{'CPU us/request':>16}")
    for app in apps:
        for endpoint, call in prepared_calls(app).items():
            status, body = call()
            expected = {"post": "201", "page": "200", "invalid": str(app.invalid_status)}
            assert status.startswith(expected[endpoint]), (app.name, endpoint, status, body[:200])
            print(f"{app.name:<16}{endpoint:<10}{time_call(call, args.seconds):>16.1f}")
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
