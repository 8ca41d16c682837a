"""The job system of an app: its settings, its jobs and its backend."""

from __future__ import annotations

import typing as t
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import karaffe
import karaffe.jobs
from karaffe.config import ConfigError
from karaffe.jobs import MemoryBackend, RedisBackend, SqlBackend, get_jobs, job


def configured(config: dict[str, t.Any], environ: dict[str, str] | None = None) -> karaffe.App:
    app = karaffe.App("karaffe_jobs_ext_test")
    karaffe.jobs.init_app(app)
    app.configure({"TESTING": True, "SECRET_KEY": "s", **config}, environ=environ or {})
    return app


def test_settings_have_documented_defaults() -> None:
    app = configured({})
    assert {k: app.config[k] for k in app.config if k.startswith("JOBS_")} == {
        "JOBS_MODULES": [],
        "JOBS_BACKEND": None,
        "JOBS_REDIS_CLUSTER": False,
        "JOBS_TIMEZONE": "UTC",
        "JOBS_GRACE_SECONDS": 60,
        "JOBS_LEASE_SECONDS": 60,
        "JOBS_POLL_SECONDS": 1.0,
        "JOBS_MAX_WORKERS": 4,
        "JOBS_HISTORY": 100,
    }


def test_settings_are_read_from_the_environment() -> None:
    app = configured(
        {}, {"KARAFFE_JOBS_TIMEZONE": "Europe/Vienna", "KARAFFE_JOBS_GRACE_SECONDS": "5"}
    )
    assert (app.config["JOBS_TIMEZONE"], app.config["JOBS_GRACE_SECONDS"]) == ("Europe/Vienna", 5)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"JOBS_TIMEZONE": "Moon/Base"},
            "setting JOBS_TIMEZONE (from the config mapping) is invalid: expected str: unknown time zone 'Moon/Base'",
        ),
        (
            {"JOBS_GRACE_SECONDS": 0},
            "setting JOBS_GRACE_SECONDS (from the config mapping) is invalid: expected int > 0: must be greater than 0, got 0",
        ),
        (
            {"JOBS_BACKEND": "localhost:6379"},
            "setting JOBS_BACKEND (from the config mapping) is invalid: expected str or none: expected a URL such as redis://..., postgresql://..., sqlite:///path or memory://",
        ),
    ],
)
def test_bad_settings_are_refused_at_start_up(config: dict[str, t.Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        configured(config)
    assert str(info.value) == message


def test_an_app_configured_before_the_job_system_still_reads_the_environment() -> None:
    app = karaffe.App("karaffe_jobs_late_test")
    app.configure({"TESTING": True, "SECRET_KEY": "s"}, environ={"KARAFFE_JOBS_MAX_WORKERS": "9"})
    assert get_jobs(app) is get_jobs(app)
    assert app.config["JOBS_MAX_WORKERS"] == 9


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"JOBS_BACKEND": "memory://", "REDIS_URL": "redis://r/0"}, "memory://"),
        ({"REDIS_URL": "redis://r/0", "DATABASE_URL": "postgresql://db/app"}, "redis://r/0"),
        ({"DATABASE_URL": "postgresql://db/app"}, "postgresql+psycopg://db/app"),
        ({"SQLALCHEMY_DATABASE_URI": "sqlite://"}, "sqlite:///{instance}/karaffe-jobs.sqlite3"),
        ({}, "sqlite:///{instance}/karaffe-jobs.sqlite3"),
    ],
)
def test_the_backend_comes_from_the_app_configuration(
    config: dict[str, t.Any], expected: str, tmp_path: Path
) -> None:
    app = karaffe.App("karaffe_jobs_url_test", instance_path=str(tmp_path / "instance"))
    karaffe.jobs.init_app(app)
    app.configure({"TESTING": True, "SECRET_KEY": "s", **config}, environ={})
    assert get_jobs(app).backend_url() == expected.format(instance=tmp_path / "instance")


def test_the_default_backend_is_sqlite_in_the_instance_folder(tmp_path: Path) -> None:
    app = karaffe.App("karaffe_jobs_sqlite_test", instance_path=str(tmp_path / "instance"))
    app.configure({"TESTING": True, "SECRET_KEY": "s"}, environ={})
    backend = get_jobs(app).backend
    assert isinstance(backend, SqlBackend)
    assert (tmp_path / "instance" / "karaffe-jobs.sqlite3").exists()
    backend.close()


@pytest.mark.redis
def test_jobs_redis_cluster_makes_a_cluster_backend_that_claims_on_every_shard(
    redis_cluster_url: str,
) -> None:
    app = configured({"REDIS_URL": redis_cluster_url}, {"KARAFFE_JOBS_REDIS_CLUSTER": "true"})
    backend = get_jobs(app).backend
    assert isinstance(backend, RedisBackend) and backend.cluster
    # Four job names on each of the three shards (random names could miss one).
    run = uuid.uuid4().hex[:8]
    by_shard: dict[str, list[str]] = {}
    for n in range(1000):
        name = f"cluster-{run}-{n}"
        shard = backend.client.get_node_from_key(backend._key(name, "ticks")).name
        if len(by_shard.setdefault(shard, [])) < 4:
            by_shard[shard].append(name)
        if len(by_shard) == 3 and all(len(v) == 4 for v in by_shard.values()):
            break
    assert sorted(len(v) for v in by_shard.values()) == [4, 4, 4], by_shard
    names = [name for shard_names in by_shard.values() for name in shard_names]
    tick = datetime(2026, 1, 5, 7, tzinfo=UTC)
    lease = timedelta(seconds=60)
    for name in names:
        assert backend.claim(name, tick, now=tick, lease=lease, exclusive=True) is not None
        assert backend.claim(name, tick, now=tick, lease=lease, exclusive=True) is None
    marked = backend.abandon_expired(names, now=tick + lease)
    assert sorted(r.job for r in marked) == sorted(names)
    assert {backend.history(n)[0].status for n in names} == {"abandoned"}
    backend.close()


def test_jobs_defined_elsewhere_are_added_by_hand(
    make_jobs_app: Callable[..., karaffe.App],
) -> None:
    app = make_jobs_app()
    state = get_jobs(app)
    assert isinstance(state.backend, MemoryBackend)

    @job(schedule="0 * * * *", name="hourly")
    def hourly() -> None: ...

    @job(name="manual")
    def manual() -> None: ...

    state.add(hourly)
    state.add(manual)
    assert sorted(state.jobs) == ["hourly", "manual"]
    assert [j.name for j in state.scheduled()] == ["hourly"]
