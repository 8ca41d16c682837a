"""Time (and profile) a WSGI bench app in-process, without a server or a socket.

``python -m bench inprocess [--only karaffe,flask-pydantic] [--profile karaffe:page]``
calls each app's WSGI callable directly with a prepared environ: the cost of
the framework and the view alone, in CPU microseconds per request (the best
of many short batches, so that other processes on a shared machine barely
move it), steady enough to compare one change to ``src/karaffe`` with the
next. ``--profile`` prints
the top of a cProfile of one app and endpoint.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import time
import typing as t

from werkzeug.test import EnvironBuilder
from werkzeug.utils import import_string

from .apps import APPS, BenchApp, by_name
from .apps.common import INVALID_BODY, PAGE_SIZE, VALID_BODY
from .check import check_page

__all__ = ["main", "prepared_calls"]

WsgiCall = t.Callable[[], tuple[str, bytes]]


def _environ(method: str, path: str, body: t.Any = None) -> dict[str, t.Any]:
    builder = EnvironBuilder(path=path, method=method, json=body, base_url="http://127.0.0.1:8000")
    try:
        return builder.get_environ()
    finally:
        builder.close()


def _caller(wsgi: t.Any, environ: dict[str, t.Any]) -> WsgiCall:
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


def prepared_calls(app: BenchApp, depth: int = 250) -> dict[str, WsgiCall]:
    """For a WSGI bench app, a no-argument call per endpoint."""
    wsgi = import_string(app.target.replace(":", "."))
    return {
        "post": _caller(wsgi, _environ("POST", "/api/items", VALID_BODY)),
        "page": _caller(wsgi, _environ("GET", _page_path(wsgi, depth))),
        "invalid": _caller(wsgi, _environ("POST", "/api/items", INVALID_BODY)),
    }


def time_call(call: WsgiCall, seconds: float, batch: int = 20) -> float:
    """CPU microseconds per call: the best of many short batches of ``batch``
    calls, timed with the thread's CPU clock. On a shared machine a process
    is descheduled (which the CPU clock ignores) and shares its core's caches
    (which it does not); a batch of a few milliseconds that ran alone is what
    the best of them measures."""
    for _ in range(batch):
        call()
    best = float("inf")
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        start = time.thread_time()
        for _ in range(batch):
            call()
        best = min(best, (time.thread_time() - start) / batch)
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
    apps = [a for a in (by_name(args.only) if args.only else APPS) if a.interface == "wsgi"]
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
