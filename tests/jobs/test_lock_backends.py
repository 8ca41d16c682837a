"""The claim every backend implements, on every backend: in memory, SQLite,
and real PostgreSQL and Redis servers."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from _jobtools import BackendFactory, at

from karaffe.jobs import MemoryBackend, RedisBackend, SqlBackend, backend_from_url
from karaffe.jobs.backends import FAILED, OVERLAP_REASON, RUNNING, SKIPPED, SUCCEEDED

LEASE = timedelta(seconds=60)
T1, T2, T3 = at("2026-01-05 07:00"), at("2026-01-05 07:05"), at("2026-01-05 07:10")


def test_a_tick_is_claimed_once(backends: BackendFactory, unique: str) -> None:
    first, second = backends(), backends()
    claim = first.claim(unique, T1, now=T1, lease=LEASE, exclusive=True, host="a")
    assert claim is not None and claim.runs
    assert claim.record.status == RUNNING and claim.record.tick == T1
    assert second.claim(unique, T1, now=T1, lease=LEASE, exclusive=True, host="b") is None
    assert first.claim(unique, T1, now=T1, lease=LEASE, exclusive=True, host="a") is None


def test_a_tick_older_than_the_last_claimed_is_refused(
    backends: BackendFactory, unique: str
) -> None:
    backend = backends()
    assert backend.claim(unique, T2, now=T2, lease=LEASE, exclusive=False) is not None
    assert backend.claim(unique, T1, now=T2, lease=LEASE, exclusive=False) is None
    assert backend.last_tick(unique) == T2


def test_a_tick_during_a_live_lease_is_recorded_as_skipped(
    backends: BackendFactory, unique: str
) -> None:
    first, second = backends(), backends()
    running = first.claim(unique, T1, now=T1, lease=timedelta(minutes=10), exclusive=True)
    assert running is not None and running.runs
    skipped = second.claim(unique, T2, now=T2, lease=LEASE, exclusive=True, host="b")
    assert skipped is not None and not skipped.runs
    assert skipped.record.status == SKIPPED
    assert skipped.record.reason == OVERLAP_REASON
    assert [r.status for r in first.history(unique)] == [SKIPPED, RUNNING]


def test_an_expired_lease_lets_the_next_tick_run(backends: BackendFactory, unique: str) -> None:
    backend = backends()
    assert backend.claim(unique, T1, now=T1, lease=LEASE, exclusive=True) is not None
    # The machine running T1 died: nothing renews its lease.
    claim = backend.claim(unique, T2, now=T1 + LEASE, lease=LEASE, exclusive=True)
    assert claim is not None and claim.runs


def test_a_job_allowing_overlap_runs_alongside_the_previous_run(
    backends: BackendFactory, unique: str
) -> None:
    backend = backends()
    assert backend.claim(unique, T1, now=T1, lease=LEASE, exclusive=False) is not None
    claim = backend.claim(unique, T2, now=T2 - timedelta(seconds=1), lease=LEASE, exclusive=False)
    assert claim is not None and claim.runs


def test_renewing_keeps_the_lease_past_its_first_expiry(
    backends: BackendFactory, unique: str
) -> None:
    first, second = backends(), backends()
    running = first.claim(unique, T1, now=T1, lease=LEASE, exclusive=True)
    assert running is not None
    assert first.renew(running, now=T1 + timedelta(seconds=50), lease=LEASE)
    claim = second.claim(unique, T2, now=T1 + timedelta(seconds=100), lease=LEASE, exclusive=True)
    assert claim is not None and claim.record.status == SKIPPED


def test_finishing_records_the_outcome_and_releases_the_lease(
    backends: BackendFactory, unique: str
) -> None:
    backend = backends()
    running = backend.claim(unique, T1, now=T1, lease=timedelta(hours=1), exclusive=True, host="h")
    assert running is not None
    done = backend.finish(running, now=T1 + timedelta(seconds=3), status=FAILED, error="E: boom")
    assert done.status == FAILED and done.duration == timedelta(seconds=3)
    assert not backend.renew(running, now=T1 + timedelta(seconds=4), lease=LEASE)
    (record,) = backend.history(unique)
    assert (record.tick, record.status, record.error, record.host) == (T1, FAILED, "E: boom", "h")
    assert record.started == T1 and record.finished == T1 + timedelta(seconds=3)
    after = backend.claim(unique, T2, now=T2, lease=LEASE, exclusive=True)
    assert after is not None and after.runs


def test_a_skip_reason_records_the_tick_as_skipped(backends: BackendFactory, unique: str) -> None:
    backend = backends()
    claim = backend.claim(unique, T1, now=T1, lease=LEASE, exclusive=True, skip_reason="missed")
    assert claim is not None and claim.record.status == SKIPPED
    (record,) = backend.history(unique)
    assert (record.status, record.reason, record.finished) == (SKIPPED, "missed", T1)
    assert backend.claim(unique, T2, now=T2, lease=LEASE, exclusive=True) is not None


def test_history_is_newest_first_and_keeps_the_last_runs(
    backends: BackendFactory, unique: str
) -> None:
    backend = backends()
    ticks = [T1 + timedelta(minutes=i) for i in range(8)]
    for tick in ticks:
        claim = backend.claim(unique, tick, now=tick, lease=LEASE, exclusive=False)
        assert claim is not None
        backend.finish(claim, now=tick, status=SUCCEEDED, error=None)
    assert [r.tick for r in backend.history(unique)] == ticks[::-1][:5]
    assert backend.last_runs([unique, f"{unique}-none"]) == {unique: backend.history(unique)[0]}


def test_racing_claims_of_one_tick_have_one_winner(backends: BackendFactory, unique: str) -> None:
    instances = [backends() for _ in range(4)]
    barrier = threading.Barrier(len(instances))
    wins: list[int] = []

    def race(index: int) -> None:
        barrier.wait()
        for minute in range(10):
            tick = T1 + timedelta(minutes=minute)
            if instances[index].claim(unique, tick, now=tick, lease=LEASE, exclusive=False):
                wins.append(minute)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(instances))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(wins) == list(range(10))


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("memory://", MemoryBackend),
        ("sqlite:///{tmp}/jobs.sqlite3", SqlBackend),
        ("redis://127.0.0.1:1/0", RedisBackend),
    ],
)
def test_the_backend_follows_the_url_scheme(url: str, kind: type, tmp_path: object) -> None:
    backend = backend_from_url(url.format(tmp=tmp_path))
    assert type(backend) is kind
    backend.close()


def test_an_unknown_backend_url_is_refused() -> None:
    with pytest.raises(ValueError) as info:
        backend_from_url("mongodb://db/jobs")
    assert str(info.value) == ("no job backend for 'mongodb' URLs: use redis, postgresql or sqlite")


@pytest.mark.redis
def test_redis_remembers_the_last_tick_after_its_run_record_expired(
    redis_url: str, unique: str
) -> None:
    backend = RedisBackend(redis_url)
    try:
        assert backend.claim(unique, T1, now=T1, lease=LEASE, exclusive=False) is not None
        backend.client.delete(backend._key(unique, f"run:{int(T1.timestamp() * 1000)}"))
        assert backend.history(unique) == []
        assert backend.last_tick(unique) == T1
    finally:
        backend.close()


def test_the_runs_table_is_left_out_of_autogenerated_migrations() -> None:
    from karaffe.jobs.backends import alembic_include_name

    assert not alembic_include_name("karaffe_job_runs", "table", {})
    assert alembic_include_name("issue", "table", {})
    assert alembic_include_name("karaffe_job_runs", "column", {"table_name": "x"})


def test_the_memory_backend_holds_no_more_than_its_history() -> None:
    backend = MemoryBackend(keep=3)
    for minute in range(50):
        tick = T1 + timedelta(minutes=minute)
        claim = backend.claim("nightly", tick, now=tick, lease=LEASE, exclusive=True)
        assert claim is not None
        backend.finish(claim, now=tick, status=SUCCEEDED, error=None)
    assert len(backend.history("nightly", limit=100)) == 3
    # One job's runs, no lease left, nothing kept per claim.
    held = [len(value) for value in vars(backend).values() if isinstance(value, dict)]
    assert sorted(held) == [0, 1]
