"""Shared fixtures for karaffe's own tests; the public ones live in karaffe.testing."""

from __future__ import annotations

import typing as t
from collections.abc import Callable, Iterator

import pytest

import karaffe
from karaffe import _servers


@pytest.fixture
def make_app() -> Callable[..., karaffe.App]:
    """Build a configured karaffe app for a test; routes are added by the test."""

    def make(config: dict[str, t.Any] | None = None, **kwargs: t.Any) -> karaffe.App:
        app = karaffe.App("karaffe_test_app", **kwargs)
        app.configure({"TESTING": True, "SECRET_KEY": "test-secret", **(config or {})}, environ={})
        return app

    return make


@pytest.fixture(scope="session")
def redis_cluster_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A three-shard Redis Cluster for this test session (three private
    redis-server processes, stopped by PID at the end): its first node's URL."""
    cluster = _servers.start_redis_cluster(tmp_path_factory.mktemp("cluster"), shards=3)
    try:
        yield cluster.url
    finally:
        cluster.stop()
