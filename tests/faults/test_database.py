"""API writes through the tracker, served for real, while PostgreSQL is
restarted fast or killed.

What must hold: no write that committed is answered 5xx (the client would
retry it: a duplicate), no write answered 201 is lost, every write that met
the outage is a 503 with Retry-After (never a generic 500), and once
PostgreSQL accepts queries again no write fails (pooled connections broken
by the restart are replaced, not used). The outage is logged once when it
starts and once when it ends, per server process.

The short cases (a werkzeug server thread, 150 writes) run in ``make test``;
the ``chaos`` ones (granian with two workers, 500 writes at 20/s, a fast
restart and a kill in the same run) in ``make chaos``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _faulttools import (
    Outage,
    WriteFigures,
    committed_titles,
    granian_tracker,
    report,
    seed_tracker,
    werkzeug_tracker,
    write_at_rate,
)

from karaffe._servers import PostgresServer

pytestmark = pytest.mark.postgres

RATE = 20.0


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[PostgresServer]:
    """A private PostgreSQL this test may restart and kill."""
    server = PostgresServer(tmp_path / "pg")
    server.start()
    try:
        yield server
    finally:
        server.close()


def fault(server: PostgresServer, kind: str, outage: Outage, down: float) -> Callable[[], None]:
    """``restart``: ``pg_ctl restart -m fast``; ``kill``: ``kill -9`` of every
    PostgreSQL process, ``down`` seconds without a server, then a start
    (with crash recovery)."""

    def inject() -> None:
        outage.began = time.monotonic()
        if kind == "restart":
            server.stop("fast")
        else:
            server.kill()
        time.sleep(down)
        server.start()
        outage.back = time.monotonic()

    return inject


def check(figures: WriteFigures) -> None:
    assert figures.committed_5xx == [], "committed writes answered 5xx"
    assert figures.acknowledged_lost == [], "writes answered 201 but not committed"
    assert figures.not_503 == [], "writes that failed otherwise than 503 with Retry-After"
    assert figures.after_back == [], "writes that failed after PostgreSQL was back"


def check_log(log: list[str], outages: int, processes: int) -> None:
    """Each process that met an outage logged it once when it started and
    once when it ended, however many requests it failed; no traceback."""
    starts = [line for line in log if "the database is unavailable" in line]
    ends = [line for line in log if "the database is available again" in line]
    assert 1 <= len(starts) <= outages * processes, log
    assert len(ends) == len(starts), log
    assert "Traceback" not in "\n".join(log)


@pytest.mark.parametrize(("kind", "down"), [("restart", 0.0), ("kill", 1.5)])
def test_api_writes_through_a_postgresql_fault(
    postgres: PostgresServer, kind: str, down: float
) -> None:
    token, project_id = seed_tracker(postgres.url)
    outage = Outage()
    with werkzeug_tracker(postgres.url) as (url, log):
        # Pooled connections first: the restart must break some.
        writes = write_at_rate(
            url, token, project_id, 150, RATE, fault(postgres, kind, outage, down), 2.5
        )
        # Again while no request is in flight: nothing tells the pool that
        # its connections are broken but the ping before each use.
        fault(postgres, kind, Outage(), down)()
        later = write_at_rate(url, token, project_id, 20, RATE, lambda: None, 0, first=150)
    figures = WriteFigures(writes, committed_titles(postgres.url), outage)
    answered = [w.status for w in later]
    report(f"PostgreSQL {kind} during API writes at 20/s (werkzeug thread)", {
        **figures.figures,
        "outage log lines": len(log),
        f"writes after a {kind} while idle, answered 201": f"{answered.count(201)}/{len(later)}",
    })  # fmt: skip
    check(figures)
    if figures.figures["answered 503 with Retry-After"]:
        check_log(log, outages=1, processes=1)
    assert answered == [201] * len(later)


@pytest.mark.chaos
def test_api_writes_through_a_fast_restart_and_a_kill_under_granian(
    postgres: PostgresServer, tmp_path: Path
) -> None:
    token, project_id = seed_tracker(postgres.url)
    restarted, killed = Outage(), Outage()
    restart = fault(postgres, "restart", restarted, 0.0)
    kill = fault(postgres, "kill", killed, 3.0)

    def both() -> None:
        restart()
        time.sleep(8)
        kill()

    with granian_tracker(postgres.url, tmp_path, workers=2) as (url, log):
        writes = write_at_rate(url, token, project_id, 500, RATE, both, 6.0)
    committed = committed_titles(postgres.url)
    # A write belongs to the fault it ended after (or to the first one).
    first = [w for w in writes if w.ended < killed.began]
    second = [w for w in writes if w.ended >= killed.began]
    outage_lines = [line for line in log if "the database is" in line]
    for name, part, outage in (
        ("restarted fast", first, restarted),
        ("killed (kill -9, 3 s down)", second, killed),
    ):
        figures = WriteFigures(part, committed, outage)
        report(f"PostgreSQL {name} during API writes at 20/s (granian, 2 workers)", figures.figures)
        check(figures)
    report("the whole run", {
        "writes": len(writes),
        "answered 201": sum(1 for w in writes if w.status == 201),
        "answered 503 with Retry-After": sum(1 for w in writes if w.status == 503 and w.retry_after),
        "outage log lines (2 workers, 2 outages)": len(outage_lines),
    })  # fmt: skip
    check_log(outage_lines, outages=2, processes=2)
    assert "Traceback" not in "\n".join(log)
