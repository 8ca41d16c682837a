"""Alternating rounds: every app on every server it speaks, every endpoint, again.

Each round starts each (app, server) pair afresh, checks its answers over HTTP
(:mod:`bench.check`), walks its ``Link`` headers to the middle of the list
(which also warms it up), then loads each endpoint with wrk. Every other round
runs the pairs in reverse order, so slow drift of a shared machine does not
favour whoever runs first.
"""

from __future__ import annotations

import json
import os
import sys
import time
import typing as t
import urllib.error
import urllib.request
from dataclasses import dataclass

from .apps import BenchApp
from .apps.common import INVALID_BODY, PAGE_SIZE, VALID_BODY
from .check import BadAnswer, check_created, check_page
from .servers import RunningServer, Server, serve
from .wrk import Load, LoadResult, run_wrk

__all__ = ["ENDPOINTS", "Measurement", "Options", "run"]

#: The endpoints measured, in table order.
ENDPOINTS = ("post", "page", "invalid")


@dataclass(frozen=True)
class Options:
    duration: float = 5.0
    rounds: int = 3
    connections: int = 32
    warmup: float = 1.0
    #: How many ``rel="next"`` links to follow to find the page that is loaded.
    page_depth: int = 250
    server_cpu: str = "0"
    wrk_cpu: str = "1"


@dataclass(frozen=True)
class Measurement:
    app: str
    server: str
    endpoint: str
    round: int
    result: LoadResult
    #: CPU seconds the server used while under load.
    server_cpu: float
    #: The machine's 1-minute load average afterwards (2 = both cores busy).
    load_average: float

    @property
    def rps_per_cpu(self) -> float:
        """Requests per CPU-second of the server: its throughput had it had
        the core to itself, which other processes on a shared machine skew far
        less than they skew req/s."""
        return self.result.requests / self.server_cpu if self.server_cpu else 0.0


def _fetch(base_url: str, path: str, body: t.Any = None) -> tuple[int, bytes, str | None]:
    """Status, body and ``Link`` header (servers differ in its case) of one request."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(base_url + path, data=data, method="POST" if data else "GET")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as rv:
            return rv.status, rv.read(), rv.headers.get("Link")
    except urllib.error.HTTPError as err:
        return err.code, err.read(), err.headers.get("Link")


def preflight(running: RunningServer, app: BenchApp, depth: int) -> str:
    """Check the three answers once over HTTP; return the path of the page
    ``depth`` links away from the first (the one wrk will load)."""
    base = running.base_url
    check_created(*_fetch(base, "/api/items", VALID_BODY)[:2])
    status = _fetch(base, "/api/items", INVALID_BODY)[0]
    if status != app.invalid_status:
        raise BadAnswer(f"{app.name}: the invalid body got {status}, expected {app.invalid_status}")
    path = "/api/items"
    for page in range(depth + 1):
        link = check_page(*_fetch(base, path), first_id=1 + page * PAGE_SIZE)
        if page == depth:
            return path
        if link is None:
            raise BadAnswer(f"{app.name}: the list ended after {page + 1} pages")
        path = link
    raise AssertionError("unreachable")


def loads_for(app: BenchApp, page_path: str) -> dict[str, Load]:
    return {
        "post": Load("POST", "/api/items", 201, json.dumps(VALID_BODY)),
        "page": Load("GET", page_path, 200, require_link=True),
        "invalid": Load("POST", "/api/items", app.invalid_status, json.dumps(INVALID_BODY)),
    }


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run(
    pairs: t.Sequence[tuple[BenchApp, Server]],
    options: Options,
    endpoints: t.Sequence[str] = ENDPOINTS,
) -> list[Measurement]:
    """Measure every pair on every endpoint, ``options.rounds`` times."""
    measurements: list[Measurement] = []
    for round_ in range(1, options.rounds + 1):
        order = list(pairs) if round_ % 2 else list(reversed(pairs))
        for app, server in order:
            with serve(server, app.target, cpu=options.server_cpu, probe="/api/items") as running:
                page_path = preflight(running, app, options.page_depth)
                loads = loads_for(app, page_path)
                for endpoint in endpoints:
                    load = loads[endpoint]
                    if options.warmup > 0:
                        run_wrk(running.base_url, load, duration=options.warmup,
                                connections=options.connections, cpu=options.wrk_cpu)  # fmt: skip
                    cpu_before = running.cpu_seconds()
                    result = run_wrk(
                        running.base_url, load, duration=options.duration,
                        connections=options.connections, cpu=options.wrk_cpu,
                    )  # fmt: skip
                    cpu = running.cpu_seconds() - cpu_before
                    running.check_alive()
                    measurements.append(
                        Measurement(app.name, server.name, endpoint, round_, result, cpu,
                                    os.getloadavg()[0])
                    )  # fmt: skip
                    _say(
                        f"round {round_}/{options.rounds}  {app.name:<15} {server.name:<12}"
                        f" {endpoint:<8} {result.rps:>9,.0f} req/s  p99 {result.p99_ms:6.1f} ms"
                        f"  {measurements[-1].rps_per_cpu:>9,.0f} req/CPU-s"
                        + (
                            f"  ({result.socket_errors} socket errors)"
                            if result.socket_errors
                            else ""
                        )
                    )
            time.sleep(0.2)
    return measurements
