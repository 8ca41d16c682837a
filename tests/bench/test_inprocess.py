"""``python -m bench inprocess`` calls every bench app, WSGI and ASGI alike,
with requests that get the answers the foundation benchmark checks: what it
times is the work of a correct answer. No timings here."""

from __future__ import annotations

import json

import pytest

from bench.apps import APPS, BenchApp
from bench.apps.common import PAGE_SIZE
from bench.check import check_created
from bench.inprocess import prepared_calls

DEPTH = 3


@pytest.mark.parametrize("bench_app", APPS, ids=lambda a: a.name)
def test_the_prepared_calls_get_the_benchmarks_answers(bench_app: BenchApp) -> None:
    calls = prepared_calls(bench_app, depth=DEPTH)
    status, body = calls["post"]()
    assert status.startswith("201")
    check_created(201, body)
    for _ in range(2):  # the same page each time: the environ (or scope) is reused
        status, body = calls["page"]()
        assert status.startswith("200")
        ids = [item["id"] for item in json.loads(body)]
        assert ids == list(range(1 + DEPTH * PAGE_SIZE, 1 + (DEPTH + 1) * PAGE_SIZE))
    status, body = calls["invalid"]()
    assert status.startswith(str(bench_app.invalid_status))
