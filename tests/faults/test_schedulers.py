"""Two scheduler processes on one backend, while one is killed (``kill -9``)
in the middle of a run, one is stopped (``SIGSTOP``) past its lease, and the
backend itself goes away for a while.

What must hold: each tick runs at most once; the killed run is marked
abandoned; the stopped run is marked abandoned, its scheduler logs once that
it lost the lease, and its outcome is recorded when it ends; no run is left
``running`` in the history; each scheduler logs the backend outage once when
it starts and once when it ends, with no traceback.

The short case (PostgreSQL, one kill, one stop, a 2 s outage) runs in
``make test``; the ``chaos`` ones (PostgreSQL and Redis, three of each and a
5 s outage) in ``make chaos``.
"""

from __future__ import annotations

import itertools
import os
import re
import signal
import time
import typing as t
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _faulttools import Schedulers, report

from karaffe._servers import PostgresServer, RedisServer
from karaffe.jobs import backend_from_url
from karaffe.jobs.backends import ABANDONED, LATE_END_REASON, RUNNING, SKIPPED, SUCCEEDED

#: At least this long, longer than faultjobs.LONG_LEASE (2 s) and a poll: the
#: lease runs out; then until the other scheduler has marked the run abandoned.
STOP_SECONDS = 4.0
#: Upper bound of each wait for something a scheduler does (seconds): what is
#: waited for usually takes a few, but a scheduler may get no CPU for a while
#: on a loaded machine.
PATIENCE = 90.0


class Backend(t.NamedTuple):
    url: str
    take_down: Callable[[float], None]


@pytest.fixture
def postgres_backend(tmp_path: Path) -> Iterator[Backend]:
    server = PostgresServer(tmp_path / "pg")
    server.start()

    def take_down(seconds: float) -> None:
        server.stop("fast")
        time.sleep(seconds)
        server.start()

    try:
        yield Backend(server.url, take_down)
    finally:
        server.close()


@pytest.fixture
def redis_backend(tmp_path: Path) -> Iterator[Backend]:
    server = RedisServer(tmp_path)
    server.start()
    try:
        yield Backend(server.url, lambda seconds: server.restart(save=True, down=seconds))
    finally:
        server.stop()


def pid_of(host: str | None) -> int:
    assert host is not None
    return int(host.rsplit(":", 1)[1])


def logged_ticks(text: str, pattern: str) -> set[tuple[str, str]]:
    """(job, tick) of each log line matching ``pattern`` (with those groups)."""
    return {(m["job"], m["tick"]) for m in re.finditer(pattern, text)}


def until(condition: Callable[[], bool], what: str) -> None:
    """Wait for ``condition``, at most PATIENCE seconds."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        assert time.monotonic() < deadline, f"not within {PATIENCE:.0f} s: {what}"
        time.sleep(0.1)


def abandoned_in_logs(schedulers: Schedulers) -> set[tuple[str, str]]:
    """(job, tick) of each run a scheduler logged as abandoned so far."""
    return logged_ticks(
        "\n".join(each.text() for each in schedulers.all),
        r"job (?P<job>\S+): the run of tick (?P<tick>\S+) on \S+ is abandoned",
    )


def runs_left_to(backend: Backend, pids: set[int]) -> list[t.Any]:
    """Runs still ``running`` in the history on a scheduler of ``pids``."""
    store = backend_from_url(backend.url)
    try:
        return [
            r
            for job in ("faults.often", "faults.long")
            for r in store.history(job, limit=1000)
            if r.status == RUNNING and pid_of(r.host) in pids
        ]
    finally:
        store.close()


def run_scenario(backend: Backend, workdir: Path, cycles: int, outage: float) -> dict[str, t.Any]:
    schedulers = Schedulers(workdir, backend.url)
    schedulers.start(), schedulers.start()
    killed: list[str] = []
    stopped: list[str] = []
    seen: set[str] = set()
    outage_began = outage_back = 0.0
    try:
        for _ in range(cycles):
            tick, pid = schedulers.wait_for("start", "faults.long", not_ticks=seen)
            seen.add(tick)
            victim = schedulers.by_pid(pid)
            os.kill(pid, signal.SIGKILL)
            victim.proc.wait()
            victim.killed = True
            killed.append(tick)
            schedulers.start()  # two schedulers again

            tick, pid = schedulers.wait_for("start", "faults.long", not_ticks=seen)
            seen.add(tick)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(STOP_SECONDS)
            # Resumed only once the other scheduler has seen the lease run out.
            until(
                lambda tick=tick: ("faults.long", tick) in abandoned_in_logs(schedulers),
                f"the stopped run of {tick} marked abandoned",
            )
            os.kill(pid, signal.SIGCONT)
            stopped.append(tick)
            schedulers.wait_for("end", "faults.long", ticks={tick}, timeout=PATIENCE)

        # Right after a run of the long job ended, the backend goes away.
        tick, _ = schedulers.wait_for("start", "faults.long", not_ticks=seen)
        seen.add(tick)
        schedulers.wait_for("end", "faults.long", ticks={tick})
        outage_began = time.monotonic()
        backend.take_down(outage)
        outage_back = time.monotonic()
        # Until each scheduler is back, the killed scheduler's runs are
        # abandoned (the lease of faults.often is 4 s) and a tick of each job
        # ran after the outage.
        for each in schedulers.all:
            if not each.killed:
                until(
                    lambda each=each: "the jobs backend is available again" in each.text(),
                    f"scheduler {each.pid} back after the outage",
                )
        before = {tick for _, _, tick, _ in schedulers.event_lines()}
        schedulers.wait_for("ran", "faults.often", not_ticks=before, timeout=PATIENCE)
        tick, _ = schedulers.wait_for("start", "faults.long", not_ticks=before, timeout=PATIENCE)
        schedulers.wait_for("end", "faults.long", ticks={tick}, timeout=PATIENCE)
        until(
            lambda: not runs_left_to(backend, {s.pid for s in schedulers.all if s.killed}),
            "the killed scheduler's runs marked abandoned",
        )
    finally:
        schedulers.stop_all()

    store = backend_from_url(backend.url)
    try:
        history = {job: store.history(job, limit=1000) for job in ("faults.often", "faults.long")}
    finally:
        store.close()
    events = schedulers.event_lines()
    logs = {each.pid: each.text() for each in schedulers.all}
    everything = "\n".join(logs.values())
    killed_pids = {each.pid for each in schedulers.all if each.killed}

    ran_twice = {
        job: [tick for tick, n in Counter(tick for ev, name, tick, _ in events
                                          if name == job and ev in ("ran", "start")).items() if n > 1]
        for job in history
    }  # fmt: skip
    records = [r for runs in history.values() for r in runs]
    abandoned = {(r.job, r.tick.isoformat()) for r in records if r.status == ABANDONED}
    late = {(r.job, r.tick.isoformat()) for r in records if r.reason == LATE_END_REASON}
    lost_logged = logged_ticks(
        everything, r"job (?P<job>\S+): lost the lease of tick (?P<tick>\S+);"
    )
    abandoned_logged = logged_ticks(
        everything, r"job (?P<job>\S+): the run of tick (?P<tick>\S+) on \S+ is abandoned"
    )
    still_running = [r for r in records if r.status == RUNNING]
    often = history["faults.often"]
    claimed = sorted(r.tick for r in often)
    gaps = sum(
        round((later - earlier).total_seconds() / 2) - 1
        for earlier, later in itertools.pairwise(claimed)
    )
    survivors = [each for each in schedulers.all if not each.killed]
    unavailable = {pid: logs[pid].count("the jobs backend is unavailable") for pid in logs}
    available = {pid: logs[pid].count("the jobs backend is available again") for pid in logs}

    figures = {
        "scheduler processes (killed)": f"{len(schedulers.all)} ({len(killed_pids)})",
        "faults.often ticks claimed": len(often),
        "  ran / skipped / abandoned": "{} / {} / {}".format(
            *(
                sum(1 for r in often if r.status in s)
                for s in ((SUCCEEDED,), (SKIPPED,), (ABANDONED,))
            )
        ),
        "  missed (no scheduler could claim)": gaps,
        "ticks run twice": sum(len(v) for v in ran_twice.values()),
        "runs killed mid-run / marked abandoned": f"{len(killed)} / {sum(1 for j, tick in abandoned if j == 'faults.long' and tick in killed)}",
        "runs stopped past the lease / lease loss logged": f"{len(stopped)} / {sum(1 for j, tick in lost_logged if tick in stopped)}",
        "  ended after being abandoned (outcome kept)": len(late),
        "abandoned runs logged": f"{len(abandoned_logged)} of {len(abandoned | late)}",
        "runs left 'running'": len(still_running),
        f"backend outage of {outage:.0f}s (down to back, s)": f"{outage_back - outage_began:.1f}",
        "  'unavailable' / 'available again' lines per surviving scheduler": ", ".join(
            f"{unavailable[s.pid]}/{available[s.pid]}" for s in survivors
        ),
        "tracebacks in the logs": everything.count("Traceback"),
    }

    assert ran_twice == {"faults.often": [], "faults.long": []}
    assert {("faults.long", tick) for tick in killed} <= abandoned
    assert all(pid_of(r.host) in killed_pids for r in records if r.status == ABANDONED)
    for tick in stopped:
        (record,) = [r for r in history["faults.long"] if r.tick.isoformat() == tick]
        assert (record.status, record.reason) == (SUCCEEDED, LATE_END_REASON)
    assert {("faults.long", tick) for tick in stopped} <= lost_logged
    assert lost_logged == late, "every lost lease is logged, and only those"
    assert abandoned_logged == abandoned | late, "every abandoned run is logged once marked"
    assert still_running == []
    for each in survivors:
        assert (unavailable[each.pid], available[each.pid]) == (1, 1), each.text()[-3000:]
    assert "Traceback" not in everything
    return figures


@pytest.mark.postgres
def test_schedulers_killed_stopped_and_cut_off_on_postgresql(
    postgres_backend: Backend, tmp_path: Path
) -> None:
    figures = run_scenario(postgres_backend, tmp_path, cycles=1, outage=2.0)
    report(
        "two schedulers on PostgreSQL: a kill -9, a SIGSTOP past the lease, a 2 s outage", figures
    )


@pytest.mark.chaos
@pytest.mark.parametrize("kind", [
    pytest.param("postgres", marks=pytest.mark.postgres),
    pytest.param("redis", marks=pytest.mark.redis),
])  # fmt: skip
def test_schedulers_killed_and_stopped_again_and_again(
    kind: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    backend: Backend = request.getfixturevalue(f"{kind}_backend")
    figures = run_scenario(backend, tmp_path, cycles=3, outage=5.0)
    report(
        f"two schedulers on {kind}: three kill -9, three SIGSTOP past the lease, a 5 s outage",
        figures,
    )
