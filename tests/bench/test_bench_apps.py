"""Every bench app answers the bench API correctly, so that ``make bench``
never times an app that is broken. No timings here: those are ``bench/``'s."""

from __future__ import annotations

import asyncio
import json
import typing as t
from dataclasses import dataclass

import httpx
import pytest
from werkzeug.utils import import_string

from bench.apps import APPS, BenchApp
from bench.apps.common import INVALID_BODY, PAGE_SIZE, VALID_BODY
from bench.check import BadAnswer, check_created, check_page, next_link


@dataclass
class Answer:
    status: int
    body: bytes
    headers: t.Mapping[str, str]


class Client:
    """One interface over Flask's test client and httpx calling an ASGI app."""

    def __init__(self, bench_app: BenchApp) -> None:
        self.target = import_string(bench_app.target.replace(":", "."))
        self.asgi = bench_app.interface == "asgi"

    def request(self, method: str, path: str, body: t.Any = None) -> Answer:
        if not self.asgi:
            rv = self.target.test_client().open(path, method=method, json=body)
            return Answer(rv.status_code, rv.data, rv.headers)
        return asyncio.run(self._asgi(method, path, body))

    async def _asgi(self, method: str, path: str, body: t.Any) -> Answer:
        transport = httpx.ASGITransport(app=self.target)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
            rv = await client.request(method, path, json=body)
        return Answer(rv.status_code, rv.content, rv.headers)

    def get(self, path: str) -> Answer:
        return self.request("GET", path)

    def post(self, path: str, body: t.Any) -> Answer:
        return self.request("POST", path, body)


@pytest.fixture(params=APPS, ids=[a.name for a in APPS])
def bench_app(request: pytest.FixtureRequest) -> BenchApp:
    return t.cast(BenchApp, request.param)


@pytest.fixture
def client(bench_app: BenchApp) -> Client:
    return Client(bench_app)


def test_valid_body_is_created(client: Client) -> None:
    rv = client.post("/api/items", VALID_BODY)
    item = check_created(rv.status, rv.body)
    assert rv.headers["Content-Type"].startswith("application/json")
    assert item["id"] > 10_000


def test_invalid_body_is_refused_naming_each_bad_field(client: Client, bench_app: BenchApp) -> None:
    rv = client.post("/api/items", INVALID_BODY)
    assert rv.status == bench_app.invalid_status
    assert "json" in rv.headers["Content-Type"]
    for field in ("name", "sku", "price", "quantity"):
        assert field.encode() in rv.body


def test_first_page_has_twenty_items_and_a_next_link(client: Client) -> None:
    rv = client.get("/api/items")
    link = check_page(rv.status, rv.body, rv.headers.get("Link"), first_id=1)
    assert link is not None and link.startswith("/api/items?")


def test_following_next_links_walks_the_items_in_order(client: Client) -> None:
    path: str | None = "/api/items"
    for page in range(5):
        assert path is not None
        rv = client.get(path)
        path = check_page(rv.status, rv.body, rv.headers.get("Link"), first_id=1 + page * PAGE_SIZE)


def test_karaffe_invalid_body_is_a_problem_with_one_error_per_field() -> None:
    client = Client(next(a for a in APPS if a.name == "karaffe"))
    rv = client.post("/api/items", INVALID_BODY)
    assert rv.headers["Content-Type"] == "application/problem+json"
    problem = json.loads(rv.body)
    assert problem["status"] == 422
    assert [e["loc"] for e in problem["errors"]] == [
        ["body", "name"],
        ["body", "sku"],
        ["body", "price"],
        ["body", "quantity"],
    ]


def test_check_page_refuses_a_page_without_next_link() -> None:
    body = "[" + ",".join(f'{{"id": {i}}}' for i in range(1, 21)) + "]"
    with pytest.raises(BadAnswer, match="no Link"):
        check_page(200, body, None, first_id=1)


def test_check_page_refuses_a_wrong_page() -> None:
    body = "[" + ",".join(f'{{"id": {i}}}' for i in range(2, 22)) + "]"
    with pytest.raises(BadAnswer, match="expected"):
        check_page(200, body, '</x?after=21>; rel="next"', first_id=1)


def test_check_created_refuses_another_status() -> None:
    with pytest.raises(BadAnswer, match="expected 201"):
        check_created(200, b"{}")


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ('<http://h:1/api/items?after=20&limit=20>; rel="next"', "/api/items?after=20&limit=20"),
        ('</a?c=1>; rel="prev", </a?c=2>; rel="next"', "/a?c=2"),
        ('</a?c=1>; rel="first"', None),
        (None, None),
    ],
)
def test_next_link_reads_the_next_relation(header: str | None, expected: str | None) -> None:
    assert next_link(header) == expected
