"""``python -m bench.outbox``: what the transactional outbox costs per event.

A transaction inserts one row and publishes N events (1, then 5) through the
app's ``db.session``, then commits, with the Redis broker; on SQLite (a file,
WAL) and on PostgreSQL, both local, with a private Redis (servers started for
the run). Three ways, alternating transaction by transaction:

- *no events*: the transaction alone (the baseline);
- *direct*: ``EVENTS_OUTBOX=false``, what karaffe did before the outbox: the
  events are sent to Redis after the commit;
- *outbox*: ``EVENTS_OUTBOX=true`` (the default with Redis): the events are
  inserted in the transaction, then sent right after the commit under the
  channel's dispatch lock, and their rows deleted.

It prints the median and p99 of a whole transaction (``commit()`` included)
and the cost per event over the baseline; then how fast a sweeper drains a
backlog, and what a write costs while Redis is stopped (SIGSTOP) with and
without the outbox.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
import typing as t
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

import karaffe
from karaffe import _servers
from karaffe import db as kdb
from karaffe.db import Model, db
from karaffe.events import Events, publish
from karaffe.events.outbox import Dispatcher, outbox_table
from karaffe.events.publish import state_for

WAYS = ("no events", "direct", "outbox")
CHANNELS = [f"project:{n}" for n in range(10)]


class BenchOutboxNote(Model):
    __tablename__ = "bench_outbox_note"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(sa.String(100))


def parse_args(argv: t.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox", description=__doc__)
    parser.add_argument("--iterations", type=int, default=1000, help="transactions per way (1000)")
    parser.add_argument("--events", default="1,5", help="events per transaction (1,5)")
    parser.add_argument("--databases", default="sqlite,postgresql", help="sqlite,postgresql (both)")
    parser.add_argument(
        "--backlog", type=int, default=5000, help="events the sweeper drains (5000)"
    )
    parser.add_argument(
        "--stall", type=float, default=5.0, help="seconds Redis stays stopped (5; 0: skip)"
    )
    return parser.parse_args(argv)


def build_app(database_url: str, redis_url: str, outbox: bool, prefix: str) -> karaffe.App:
    app = karaffe.App("bench_outbox")
    Events(app)
    app.configure(
        {
            "SECRET_KEY": "bench-outbox-secret-key-of-32-chars!",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "EVENTS_OUTBOX": outbox,
            "EVENTS_REDIS_PREFIX": prefix,
        },
        environ={},
    )
    kdb.init_app(app)
    return app


def transaction(app: karaffe.App, n: int, events: int) -> float:
    """One transaction, timed in microseconds."""
    start = time.perf_counter_ns()
    with app.app_context():
        db.session.add(BenchOutboxNote(text=f"note {n}"))
        for k in range(events):
            publish(CHANNELS[(n + k) % len(CHANNELS)], "note.created", {"n": n, "k": k})
        db.session.commit()
    return (time.perf_counter_ns() - start) / 1000


def measure(apps: dict[str, karaffe.App], events: int, iterations: int) -> dict[str, list[float]]:
    times: dict[str, list[float]] = {way: [] for way in WAYS}
    warmup = 100
    for step in range(iterations + warmup):
        order = WAYS if step % 2 else tuple(reversed(WAYS))
        for way in order:
            took = transaction(apps[way], step, 0 if way == "no events" else events)
            if step >= warmup:
                times[way].append(took)
    return times


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def drain_rate(app: karaffe.App, backlog: int) -> tuple[float, int]:
    """Events per second a sweeper sends from a backlog of ``backlog`` events
    over the channels; and how many it sent."""
    state_for(app).dispatcher._skip_until = float("inf")  # requests leave it all
    for n in range(backlog // 5):
        transaction(app, n, 5)
    sweeper = Dispatcher(app, state_for(app).broker)
    with app.app_context():
        start = time.perf_counter()
        result = sweeper.drain()
        took = time.perf_counter() - start
        assert sweeper.pending()[0] == 0, "the backlog was not drained"
    state_for(app).dispatcher._skip_until = 0.0
    return result.sent / took, result.sent


def stalled_writes(
    apps: dict[str, karaffe.App], redis_proc: t.Any, seconds: float
) -> dict[str, str]:
    """Writes while Redis is stopped: the outbox way at 20 per second for
    ``seconds``, the direct way once (it waits for redis-py's timeouts)."""
    # Both ways log the broker's failure (the direct way with its traceback).
    logging.getLogger("karaffe.events").setLevel(logging.CRITICAL)
    os.kill(redis_proc.pid, signal.SIGSTOP)
    try:
        outbox: list[float] = []
        start = time.monotonic()
        n = 0
        while time.monotonic() - start < seconds:
            outbox.append(transaction(apps["outbox"], 1_000_000 + n, 1) / 1000)
            n += 1
            time.sleep(max(0.0, start + n / 20 - time.monotonic()))
        direct: list[float] = []
        thread = threading.Thread(
            target=lambda: direct.append(transaction(apps["direct"], 2_000_000, 1) / 1000)
        )
        thread.start()
        thread.join(60)
    finally:
        os.kill(redis_proc.pid, signal.SIGCONT)
    thread.join()
    with apps["outbox"].app_context():
        Dispatcher(apps["outbox"], state_for(apps["outbox"]).broker).drain()
    return {
        "outbox": f"{len(outbox)} writes: median {statistics.median(outbox):.1f} ms, "
        f"max {max(outbox):.0f} ms, {sum(1 for x in outbox if x > 100)} over 100 ms",
        "direct": f"1 write: {direct[0]:.0f} ms" if direct else "1 write: over 60 s",
    }


def run(database: str, database_url: str, redis_url: str, redis_proc: t.Any, args: t.Any) -> None:
    apps = {
        way: build_app(database_url, redis_url, way == "outbox", f"bench-{way}:") for way in WAYS
    }
    with apps["outbox"].app_context():
        db.drop_all()
        db.create_all()
        assert sa.inspect(db.engine).has_table(outbox_table.name)
    try:
        for events in [int(n) for n in args.events.split(",")]:
            times = measure(apps, events, args.iterations)
            base = statistics.median(times["no events"])
            print(f"\n{database}, {events} event(s) per transaction, {args.iterations} each:\n")
            print("| way | median µs | p99 µs | µs per event over the baseline |")
            print("|---|---:|---:|---:|")
            for way in WAYS:
                median = statistics.median(times[way])
                extra = "" if way == "no events" else f"{(median - base) / events:.0f}"
                print(f"| {way} | {median:.0f} | {p99(times[way]):.0f} | {extra} |")
        rate, sent = drain_rate(apps["outbox"], args.backlog)
        print(f"\n{database}: a sweeper drains {sent} held events at {rate:,.0f} events/s")
        if args.stall:
            stalled = stalled_writes(apps, redis_proc, args.stall)
            print(f"\n{database}, Redis stopped for {args.stall:g} s:")
            for way, text in stalled.items():
                print(f"- {way}: {text}")
    finally:
        with apps["outbox"].app_context():
            db.drop_all()
        for app in apps.values():
            state = state_for(app)
            state.broker.close()
            with app.app_context():
                db.session.remove()
                db.engine.dispose()


def main(argv: t.Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="karaffe-bench-outbox-"))
    procs: list[t.Any] = []
    folders = [workdir]
    try:
        redis_proc, redis_url = _servers.start_redis(workdir)
        procs.append(redis_proc)
        for database in args.databases.split(","):
            if database == "sqlite":
                url = f"sqlite:///{workdir}/bench.sqlite"
            else:
                pg_proc, url, folder = _servers.start_postgres(workdir)
                procs.append(pg_proc)
                folders.append(folder)
            run(database, url, redis_url, redis_proc, args)
    finally:
        for proc in procs:
            _servers.stop(proc)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
