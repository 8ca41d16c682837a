"""Keyset pagination: opaque signed cursors, Link headers, bounded limits, and
every walk visits each item exactly once."""

from __future__ import annotations

import datetime as dt
import gc
import re
import typing as t
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import request
from flask_sqlalchemy import SQLAlchemy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Row, String, bindparam, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import karaffe
from karaffe.api import pagination
from karaffe.api.pagination import NEXT, Cursor, CursorCodec
from karaffe.signing import CURSOR_SALT, Signer

LINK = re.compile(r'<([^>]+)>; rel="(\w+)"')


def links(rv) -> dict[str, str]:
    return {rel: url for url, rel in LINK.findall(rv.headers.get("Link", ""))}


def relative(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


ITEMS = [{"id": i, "name": f"item {i}"} for i in range(1, 51)]


def by_id(item: dict[str, t.Any]) -> tuple[int]:
    return (item["id"],)


@pytest.fixture
def app(make_app):
    app = make_app({"PAGINATION_DEFAULT_LIMIT": 10, "PAGINATION_MAX_LIMIT": 20})

    @app.get("/api/items")
    @karaffe.returns(list[dict[str, t.Any]], paginated=True)
    def items() -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate(ITEMS, key=by_id))

    @app.get("/api/counted")
    def counted() -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate(ITEMS, key=by_id, with_total=True, limit=15))

    @app.get("/api/other")
    def other() -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate(ITEMS, key=by_id))

    return app


def walk(client, url: str, rel: str = "next") -> list[list[int]]:
    pages = []
    while url:
        rv = client.get(url)
        assert rv.status_code == 200, rv.get_json()
        pages.append([item["id"] for item in rv.get_json()])
        url = relative(links(rv)[rel]) if rel in links(rv) else ""
    return pages


def test_first_page_uses_default_limit_and_links_next_and_first(app) -> None:
    rv = app.test_client().get("/api/items")
    assert [i["id"] for i in rv.get_json()] == list(range(1, 11))
    assert set(links(rv)) == {"next", "first"}
    assert links(rv)["first"] == "http://localhost/api/items"
    assert "X-Total-Count" not in rv.headers


def test_walking_next_visits_every_item_once_in_order(app) -> None:
    pages = walk(app.test_client(), "/api/items?limit=7")
    assert [i for page in pages for i in page] == list(range(1, 51))
    assert [len(p) for p in pages] == [7] * 7 + [1]


def test_walking_prev_from_the_middle_goes_back_to_the_start(app) -> None:
    client = app.test_client()
    rv = client.get("/api/items?limit=10")
    for _ in range(3):
        rv = client.get(relative(links(rv)["next"]))
    assert [i["id"] for i in rv.get_json()] == list(range(31, 41))
    back = walk(client, relative(links(rv)["prev"]), rel="prev")
    assert back == [list(range(21, 31)), list(range(11, 21)), list(range(1, 11))]


def test_prev_page_links_forward_again(app) -> None:
    client = app.test_client()
    second = client.get(relative(links(client.get("/api/items"))["next"]))
    first = client.get(relative(links(second)["prev"]))
    assert [i["id"] for i in first.get_json()] == list(range(1, 11))
    assert "prev" not in links(first)
    again = client.get(relative(links(first)["next"]))
    assert again.get_json() == second.get_json()


def test_last_and_total_only_when_asked_for(app) -> None:
    client = app.test_client()
    rv = client.get("/api/counted")
    assert rv.headers["X-Total-Count"] == "50"
    assert set(links(rv)) == {"next", "first", "last"}
    last = client.get(relative(links(rv)["last"]))
    assert [i["id"] for i in last.get_json()] == list(range(36, 51))
    assert "next" not in links(last)
    assert "prev" in links(last)


def test_repeated_query_parameters_survive_into_links(app) -> None:
    rv = app.test_client().get("/api/items?label=a&label=b&limit=5")
    query = parse_qs(urlsplit(links(rv)["next"]).query)
    assert query["label"] == ["a", "b"]
    assert query["limit"] == ["5"]
    assert len(query["cursor"]) == 1


@pytest.mark.parametrize(
    ("limit", "msg", "code"),
    [
        ("0", "Input should be between 1 and 20", "out_of_range"),
        ("21", "Input should be between 1 and 20", "out_of_range"),
        ("-3", "Input should be between 1 and 20", "out_of_range"),
        ("ten", "Input should be a valid integer", "int_parsing"),
    ],
)
def test_limit_out_of_bounds_is_422(app, limit, msg, code) -> None:
    rv = app.test_client().get(f"/api/items?limit={limit}")
    assert rv.status_code == 422
    assert rv.get_json() == {
        "type": "urn:karaffe:problem:validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "1 input is invalid: query.limit.",
        "errors": [{"loc": ["query", "limit"], "msg": msg, "code": code}],
    }


INVALID = {
    "type": "urn:karaffe:problem:invalid-cursor",
    "title": "Invalid cursor",
    "status": 400,
    "detail": "The cursor is malformed or was tampered with.",
    "errors": [],
}


@pytest.mark.parametrize("cursor", ["garbage", "a.b", "W10.x", "%00", "x" * 500])
def test_forged_cursor_is_400(app, cursor) -> None:
    rv = app.test_client().get("/api/items", query_string={"cursor": cursor})
    assert rv.status_code == 400
    assert rv.get_json() == INVALID


def test_tampered_cursor_is_400(app) -> None:
    client = app.test_client()
    cursor = parse_qs(urlsplit(links(client.get("/api/items"))["next"]).query)["cursor"][0]
    payload, rest = cursor.split(".", 1)
    # The first character: the last may hold base64 padding bits.
    tampered = ("A" if payload[0] != "A" else "B") + payload[1:] + "." + rest
    rv = client.get("/api/items", query_string={"cursor": tampered})
    assert rv.status_code == 400
    assert rv.get_json() == INVALID


def test_cursor_from_another_list_is_400(app) -> None:
    client = app.test_client()
    next_url = links(client.get("/api/items"))["next"]
    cursor = parse_qs(urlsplit(next_url).query)["cursor"][0]
    rv = client.get("/api/other", query_string={"cursor": cursor})
    assert rv.status_code == 400
    assert rv.get_json() == {
        **INVALID,
        "detail": "This cursor belongs to another list, filter or sort order.",
    }


def next_cursor(rv) -> str:
    return parse_qs(urlsplit(links(rv)["next"]).query)["cursor"][0]


@pytest.fixture
def shelves(make_app):
    """The same endpoint for several lists: one per shelf (a URL argument),
    filtered by ``colour``, sorted by ``sort``."""
    app = make_app({"PAGINATION_DEFAULT_LIMIT": 10})

    @app.get("/api/shelves/<int:shelf_id>/items")
    def shelf_items(shelf_id: int) -> karaffe.ApiResult:
        items = [i for i in ITEMS if i["id"] % 7 != shelf_id]
        if request.args.get("sort") == "name":
            return karaffe.ApiResult(page=karaffe.paginate(items, key=by_name))
        return karaffe.ApiResult(page=karaffe.paginate(items, key=by_id))

    return app


def by_name(item: dict[str, t.Any]) -> tuple[str, int]:
    return (item["name"], item["id"])


@pytest.mark.parametrize(
    ("source", "target"),
    [
        ("/api/shelves/1/items", "/api/shelves/2/items"),  # another URL argument
        ("/api/shelves/1/items?colour=red", "/api/shelves/1/items?colour=blue"),  # filter
        ("/api/shelves/1/items?colour=red", "/api/shelves/1/items"),  # filter dropped
        ("/api/shelves/1/items", "/api/shelves/1/items?colour=red"),  # filter added
        ("/api/shelves/1/items", "/api/shelves/1/items?sort=name"),  # sort order
    ],
)
def test_cursor_is_bound_to_url_arguments_filters_and_sort(shelves, source, target) -> None:
    client = shelves.test_client()
    cursor = next_cursor(client.get(source))
    sep = "&" if "?" in target else "?"
    rv = client.get(f"{target}{sep}cursor={cursor}")
    assert rv.status_code == 400
    assert rv.get_json()["type"] == "urn:karaffe:problem:invalid-cursor"
    own = client.get(f"{source}{'&' if '?' in source else '?'}cursor={cursor}")
    assert own.status_code == 200


def test_cursor_survives_a_new_limit_and_reordered_query_arguments(shelves) -> None:
    client = shelves.test_client()
    cursor = next_cursor(client.get("/api/shelves/1/items?colour=red&size=big&size=small"))
    rv = client.get(f"/api/shelves/1/items?size=big&cursor={cursor}&limit=3&colour=red&size=small")
    assert rv.status_code == 200
    assert len(rv.get_json()) == 3


def test_cursor_signed_with_another_secret_is_400(app) -> None:
    codec = CursorCodec(Signer("someone-elses-secret", salt=CURSOR_SALT), "items|seq:by_id")
    rv = app.test_client().get(
        "/api/items", query_string={"cursor": codec.dumps(Cursor(NEXT, (3,)))}
    )
    assert rv.status_code == 400


def test_cursor_signed_with_a_fallback_secret_still_works(make_app) -> None:
    old = make_app({"SECRET_KEY": "old"})
    new = make_app({"SECRET_KEY": "new", "SECRET_KEY_FALLBACKS": ["old"]})
    for app in (old, new):
        app.add_url_rule(
            "/api/items",
            "items",
            lambda: karaffe.ApiResult(page=karaffe.paginate(ITEMS, key=by_id)),
        )
    next_url = links(old.test_client().get("/api/items"))["next"]
    rv = new.test_client().get(relative(next_url))
    assert rv.status_code == 200
    assert rv.get_json()[0]["id"] == 21


def test_cursor_codec_round_trips_typed_values() -> None:
    codec = CursorCodec(Signer("k", salt=CURSOR_SALT), "scope")
    key = (dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC), dt.date(2026, 1, 2), "x", 3, None)
    assert codec.loads(codec.dumps(Cursor(NEXT, key))) == Cursor(NEXT, key)


def test_cursor_is_opaque(app) -> None:
    cursor = parse_qs(urlsplit(links(app.test_client().get("/api/items"))["next"]).query)["cursor"][
        0
    ]
    assert "10" not in cursor.split(".")[0] or not cursor.startswith("[")


def test_paginate_needs_a_key_or_an_order(app) -> None:
    with app.test_request_context("/api/items"), pytest.raises(TypeError, match="needs order_by="):
        karaffe.paginate(ITEMS)


@given(
    n=st.integers(min_value=0, max_value=60),
    limit=st.integers(min_value=1, max_value=20),
)
@settings(
    max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
def test_any_walk_forward_then_back_is_exact(make_app, n: int, limit: int) -> None:
    items = [{"id": i * 3} for i in range(n)]
    app = make_app({"PAGINATION_MAX_LIMIT": 20})
    app.add_url_rule(
        "/api/x", "x", lambda: karaffe.ApiResult(page=karaffe.paginate(items, key=by_id))
    )
    client = app.test_client()
    forward = walk(client, f"/api/x?limit={limit}")
    assert [i for p in forward for i in p] == [i["id"] for i in items]
    assert all(len(p) == limit for p in forward[:-1])
    if len(forward) > 1:
        rv = client.get(f"/api/x?limit={limit}")
        while "next" in links(rv):
            rv = client.get(relative(links(rv)["next"]))
        back = walk(client, relative(links(rv)["prev"]), rel="prev") if "prev" in links(rv) else []
        assert [i for p in reversed(back) for i in p] + [i["id"] for i in rv.get_json()] == [
            i["id"] for i in items
        ]


# -- SQLAlchemy selects ---------------------------------------------------------


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "ticket"
    id: Mapped[int] = mapped_column(primary_key=True)
    priority: Mapped[int]
    title: Mapped[str] = mapped_column(String(50))
    created: Mapped[dt.datetime]


def ticket_app(make_app, url: str):
    app = make_app({"SQLALCHEMY_DATABASE_URI": url, "PAGINATION_MAX_LIMIT": 50})
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)

    @app.get("/api/tickets")
    def tickets() -> karaffe.ApiResult:
        stmt = select(Ticket).where(Ticket.title != "hidden")
        page = karaffe.paginate(
            stmt, order_by=[Ticket.priority.desc(), Ticket.created, Ticket.id], with_total=True
        )
        return karaffe.ApiResult([{"id": t.id} for t in page.items], page=page)

    base = dt.datetime(2026, 1, 1)
    with app.app_context():
        Base.metadata.drop_all(db.engine)
        Base.metadata.create_all(db.engine)
        db.session.add_all(
            Ticket(
                id=i,
                priority=i % 4,
                title="hidden" if i % 10 == 0 else f"t{i}",
                created=base + dt.timedelta(minutes=i % 7),
            )
            for i in range(1, 101)
        )
        db.session.commit()
        expected = [
            t.id
            for t in db.session.scalars(
                select(Ticket)
                .where(Ticket.title != "hidden")
                .order_by(Ticket.priority.desc(), Ticket.created, Ticket.id)
            )
        ]
    return app, expected


def check_select_walks(app, expected: list[int]) -> None:
    client = app.test_client()
    pages = walk(client, "/api/tickets?limit=7")
    assert [i for p in pages for i in p] == expected
    rv = client.get("/api/tickets?limit=7")
    assert rv.headers["X-Total-Count"] == str(len(expected))
    last = client.get(relative(links(rv)["last"]))
    back = walk(client, relative(links(last)["prev"]), rel="prev")
    assert [i for p in reversed(back) for i in p] + [i["id"] for i in last.get_json()] == expected


def test_select_pagination_with_mixed_directions_on_sqlite(make_app, tmp_path) -> None:
    app, expected = ticket_app(make_app, f"sqlite:///{tmp_path}/t.db")
    assert len(expected) == 90
    check_select_walks(app, expected)


@pytest.mark.postgres
def test_select_pagination_with_mixed_directions_on_postgres(make_app, postgres_url) -> None:
    app, expected = ticket_app(make_app, postgres_url)
    try:
        check_select_walks(app, expected)
    finally:
        # The database is shared by the session's tests: leave it as found.
        with app.app_context():
            engine = app.extensions["sqlalchemy"].engine
            Base.metadata.drop_all(engine)
            engine.dispose()


def test_a_select_of_columns_pages_its_rows(make_app, tmp_path) -> None:
    app, expected = ticket_app(make_app, f"sqlite:///{tmp_path}/t.db")

    @app.get("/api/ticket-rows")
    def ticket_rows() -> karaffe.ApiResult:
        stmt = select(Ticket.id, Ticket.title).where(Ticket.title != "hidden")
        page = karaffe.paginate(stmt, order_by=[Ticket.id.desc()], limit=20)
        assert all(isinstance(row, Row) for row in page.items)
        return karaffe.ApiResult([{"id": r.id, "title": r.title} for r in page.items], page=page)

    client = app.test_client()
    pages = walk(client, "/api/ticket-rows")
    assert [i for p in pages for i in p] == sorted(expected, reverse=True)
    first = client.get("/api/ticket-rows").get_json()[0]
    assert first == {"id": 99, "title": "t99"}


@pytest.mark.parametrize("form", ["links", "before links shared a token"])
def test_select_cursor_with_wrong_arity_is_400(make_app, tmp_path, form) -> None:
    app, _ = ticket_app(make_app, f"sqlite:///{tmp_path}/t.db")
    client = app.test_client()
    cursor = parse_qs(urlsplit(links(client.get("/api/tickets"))["next"]).query)["cursor"][0]
    signer = Signer(app.config["SECRET_KEY"], salt=CURSOR_SALT)
    token, side = cursor.rsplit(".", 1)
    scope, first, last = signer.loads(token)
    assert (side, first) == ("n", None)
    if form == "links":
        forged = signer.dumps([scope, first, last[:1]]) + ".n"
    else:
        forged = signer.dumps([scope, "n", last[:1]])
    rv = client.get("/api/tickets", query_string={"cursor": forged})
    assert rv.status_code == 400
    assert rv.get_json() == INVALID


@pytest.mark.parametrize(
    ("cursor", "ids"),
    [
        # Made by karaffe before a page's links shared one token: [scope, direction, key].
        (
            "WyIyYmMyMmY0YWM4YzAiLCJuIixbMTBdXQ.aw8-hA.vZJujZ4DqgaxOcxTADhR_-pfWPYLlWkAdADajDLxzdA",
            range(11, 21),
        ),
        (
            "WyIyYmMyMmY0YWM4YzAiLCJwIixbMzFdXQ.aw8-hA.BB536R7DFpku--B_hbwvbqnuNveufEkJDcttUkloXCo",
            range(21, 31),
        ),
    ],
    ids=["next", "prev"],
)
def test_a_cursor_made_before_links_shared_a_token_still_pages(app, cursor, ids) -> None:
    rv = app.test_client().get("/api/items", query_string={"cursor": cursor})
    assert rv.status_code == 200
    assert [i["id"] for i in rv.get_json()] == list(ids)


def test_a_page_is_signed_once_and_its_cursor_checked_once(app, monkeypatch) -> None:
    client = app.test_client()
    second = relative(links(client.get("/api/counted"))["next"])
    calls: list[str] = []
    for name in ("dumps", "loads"):
        method = getattr(Signer, name)
        monkeypatch.setattr(
            Signer,
            name,
            lambda self, *a, _m=method, _n=name, **k: calls.append(_n) or _m(self, *a, **k),
        )
    rv = client.get(second)
    assert set(links(rv)) == {"next", "prev", "first", "last"}
    assert calls == ["loads", "dumps"]


def test_a_pages_links_share_one_token_and_lead_only_to_its_neighbours(app) -> None:
    client = app.test_client()
    middle = client.get(relative(links(client.get("/api/items"))["next"]))
    rels = links(middle)
    cursors = {rel: parse_qs(urlsplit(rels[rel]).query)["cursor"][0] for rel in ("next", "prev")}
    assert cursors["next"].rsplit(".", 1)[0] == cursors["prev"].rsplit(".", 1)[0]
    # Another side of the same token is another link of the same page.
    swapped = cursors["next"].rsplit(".", 1)[0] + ".p"
    assert client.get("/api/items", query_string={"cursor": swapped}).get_json() == (
        client.get(relative(rels["prev"])).get_json()
    )


def test_a_side_the_token_has_no_key_for_is_400(app) -> None:
    first_page = app.test_client().get("/api/items")
    token = parse_qs(urlsplit(links(first_page)["next"]).query)["cursor"][0].rsplit(".", 1)[0]
    rv = app.test_client().get("/api/items", query_string={"cursor": token + ".p"})
    assert rv.status_code == 400
    assert rv.get_json() == INVALID


# -- a select built once ----------------------------------------------------------

#: The tickets of at least a priority, built once for every request: its
#: value is a bind parameter, given to paginate() as ``params``.
AT_LEAST = select(Ticket).where(Ticket.priority >= bindparam("min_priority"))


def at_least_app(make_app, tmp_path):
    app, _ = ticket_app(make_app, f"sqlite:///{tmp_path}/t.db")

    @app.get("/api/urgent")
    def urgent() -> karaffe.ApiResult:
        minimum = int(request.args.get("min", "0"))
        page = karaffe.paginate(
            AT_LEAST,
            order_by=[Ticket.priority.desc(), Ticket.created, Ticket.id],
            params={"min_priority": minimum},
            with_total=True,
        )
        return karaffe.ApiResult([{"id": t.id} for t in page.items], page=page)

    with app.app_context():
        session = app.extensions["sqlalchemy"].session
        expected = {
            minimum: [
                t.id
                for t in session.scalars(
                    select(Ticket)
                    .where(Ticket.priority >= minimum)
                    .order_by(Ticket.priority.desc(), Ticket.created, Ticket.id)
                )
            ]
            for minimum in (0, 2, 3)
        }
    return app, expected


def test_a_select_built_once_pages_with_each_requests_values(make_app, tmp_path) -> None:
    app, expected = at_least_app(make_app, tmp_path)
    client = app.test_client()
    # Alternating values: each request's page is of its own value, never of
    # the value the select's pages were first run with.
    for minimum in (3, 0, 2, 3, 0):
        pages = walk(client, f"/api/urgent?min={minimum}&limit=7")
        assert [i for p in pages for i in p] == expected[minimum]
        rv = client.get(f"/api/urgent?min={minimum}&limit=7")
        assert rv.headers["X-Total-Count"] == str(len(expected[minimum]))
        last = client.get(relative(links(rv)["last"]))
        back = (
            walk(client, relative(links(last)["prev"]), rel="prev") if "prev" in links(last) else []
        )
        walked = [i for p in reversed(back) for i in p] + [i["id"] for i in last.get_json()]
        assert walked == expected[minimum]


def test_a_cursor_of_one_value_does_not_page_another(make_app, tmp_path) -> None:
    app, _ = at_least_app(make_app, tmp_path)
    client = app.test_client()
    cursor = parse_qs(urlsplit(links(client.get("/api/urgent?min=2&limit=7"))["next"]).query)
    rv = client.get("/api/urgent", query_string={"min": "0", "cursor": cursor["cursor"][0]})
    assert rv.status_code == 400
    assert rv.get_json() == {
        **INVALID,
        "detail": "This cursor belongs to another list, filter or sort order.",
    }


def test_the_pages_of_a_select_built_per_request_are_not_kept(make_app, tmp_path) -> None:
    app, _ = ticket_app(make_app, f"sqlite:///{tmp_path}/t.db")
    client = app.test_client()
    gc.collect()
    before = len(pagination._page_selects)
    rv = client.get("/api/tickets?limit=7")
    client.get(relative(links(rv)["next"]))
    gc.collect()
    assert len(pagination._page_selects) == before


def test_params_are_for_a_select(app) -> None:
    with app.test_request_context("/api/items"), pytest.raises(TypeError, match="params="):
        karaffe.paginate(ITEMS, key=by_id, params={"a": 1})
