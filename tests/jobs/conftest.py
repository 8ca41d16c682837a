"""Fixtures for the jobs tests: a controllable clock, throwaway job packages,
apps with the job system, and every lock backend on a real server."""

from __future__ import annotations

import sys
import textwrap
import typing as t
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from _jobtools import BackendFactory, Clock, at, drop_runs_table

import karaffe
from karaffe import jobs
from karaffe.jobs import Backend, MemoryBackend, RedisBackend, SqlBackend


@pytest.fixture
def clock() -> Clock:
    return Clock(at("2026-01-05 06:59:30"))


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], str]]:
    """Write a throwaway package (a unique name each call) and make it
    importable, also by subprocesses through ``PYTHONPATH`` = ``tmp_path``."""
    names: list[str] = []

    def write(modules: dict[str, str]) -> str:
        name = f"jobpkg_{uuid.uuid4().hex[:8]}"
        root = tmp_path / name
        for relative, source in {"__init__.py": "", **modules}.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source).replace("PKG", name))
        names.append(name)
        return name

    sys.path.insert(0, str(tmp_path))
    yield write
    sys.path.remove(str(tmp_path))
    for module in list(sys.modules):
        if module.split(".")[0] in names:
            del sys.modules[module]


@pytest.fixture
def make_jobs_app() -> Callable[..., karaffe.App]:
    """A configured app with the job system on an in-memory backend."""

    def make(config: dict[str, t.Any] | None = None) -> karaffe.App:
        app = karaffe.App("karaffe_jobs_test")
        jobs.init_app(app)
        app.configure(
            {"TESTING": True, "SECRET_KEY": "s", "JOBS_BACKEND": "memory://", **(config or {})},
            environ={},
        )
        return app

    return make


@pytest.fixture
def unique() -> str:
    """A prefix that keeps this test's jobs apart on shared servers."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        pytest.param("postgres", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
        pytest.param("redis-cluster", marks=pytest.mark.redis),
    ]
)
def backends(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BackendFactory]:
    """Makes backend instances sharing one store, as the schedulers of
    several machines do (each instance has its own connections)."""
    kind = request.param
    made: list[Backend] = []
    shared = MemoryBackend(keep=5)

    def make() -> Backend:
        backend: Backend
        if kind == "memory":
            backend = shared
        elif kind == "sqlite":
            backend = SqlBackend(f"sqlite:///{tmp_path / 'jobs.sqlite3'}", keep=5)
        elif kind == "postgres":
            backend = SqlBackend(request.getfixturevalue("postgres_url"), keep=5)
        elif kind == "redis":
            backend = RedisBackend(request.getfixturevalue("redis_url"), keep=5)
        else:
            url = request.getfixturevalue("redis_cluster_url")
            backend = RedisBackend(url, keep=5, cluster=True)
        made.append(backend)
        return backend

    yield make
    for backend in made:
        backend.close()
    if kind == "postgres":
        drop_runs_table(request.getfixturevalue("postgres_url"))
