"""Keyset pagination with opaque cursors and ``Link`` headers (slide 47).

A page is found by the sort key of the last row seen, never by an offset, so
page 5,000 costs what page 1 costs and rows inserted meanwhile neither repeat
nor vanish. The cursor carries that key, signed with the app's secret so a
client cannot forge one, and bound to the list it came from: the endpoint, the
URL's path (its arguments), the organization, the other query arguments (the
filters) and the sort order. A cursor from another list is refused (400
``invalid-cursor``, never 500).

::

    @blueprint.get("/items")
    @returns(list[ItemOut], paginated=True)
    def list_items() -> ApiResult:
        page = paginate(select(Item).where(...), order_by=[Item.created_at.desc(), Item.id.desc()])
        return ApiResult(page=page)

The response carries ``Link: <...?cursor=...>; rel="next"`` (and ``prev``,
``first``); ``last`` and ``X-Total-Count`` only with ``with_total=True``,
because ``COUNT(*)`` is what makes big tables slow.

A page costs one signature and one check at most: the cursor it was asked
with is verified once, and its links share one signed token (the page's first
and last keys), each naming which side of the page it goes to.
"""

from __future__ import annotations

import bisect
import datetime as dt
import decimal
import hashlib
import typing as t
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

import orjson
from flask import Flask, Request, current_app, request
from itsdangerous import BadSignature

from ..config import CoreSettings
from ..signing import CURSOR_SALT, Signer, signer_for
from .errors import InvalidCursor, ValidationFailed

if t.TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement
    from werkzeug.datastructures import MultiDict

__all__ = ["Cursor", "CursorCodec", "Page", "paginate", "read_page_args"]

T = t.TypeVar("T")

NEXT = "n"
PREV = "p"


@dataclass(frozen=True)
class Cursor:
    """Where a page starts: after (``NEXT``) or before (``PREV``) ``key``.
    A ``PREV`` cursor with no key means "the last page"."""

    direction: str
    key: tuple[t.Any, ...] | None


#: The types a key value is written as (JSON's own), checked before the rest.
_PLAIN = frozenset({str, int, float, bool, type(None)})


def _encode_value(value: t.Any) -> t.Any:
    if type(value) in _PLAIN:
        return value
    if isinstance(value, dt.datetime):
        return {"dt": value.isoformat()}
    if isinstance(value, dt.date):
        return {"d": value.isoformat()}
    if isinstance(value, uuid.UUID):
        return {"u": str(value)}
    if isinstance(value, decimal.Decimal):
        return {"n": str(value)}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"cannot put a {type(value).__name__} in a cursor")


_DECODERS: dict[str, Callable[[str], t.Any]] = {
    "dt": dt.datetime.fromisoformat,
    "d": dt.date.fromisoformat,
    "u": uuid.UUID,
    "n": decimal.Decimal,
}


def _decode_value(value: t.Any) -> t.Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        return _DECODERS[tag](raw)
    return value


#: The side of a page a link goes to, after its signed part: past the page's
#: last key, before its first, or to the last page of the list.
_LINK_SIDES = {"n": NEXT, "p": PREV, "l": PREV}


class CursorCodec:
    """Turns cursors into opaque, signed strings and back. I/O-free.

    A cursor is ``<token>.<side>``: the token signs the list's scope and the
    keys of a page's first and last rows, the side (``n``, ``p`` or ``l``)
    says which of that page's links it is. The links of one page share one
    token, so a page is signed once (:meth:`dumps_page`); changing the side
    only leads to another page of the same list, which its links lead to
    anyway. Cursors made before this format (``<token>`` alone, signing the
    direction and one key) are still read.

    :param signer: signs the cursors: one with :data:`~karaffe.signing.CURSOR_SALT`
        (:func:`~karaffe.signing.signer_for` the app).
    :param scope: what the cursor is bound to (for :func:`paginate`: the
        list's endpoint, path, query arguments and sort order); a cursor made
        for another scope does not decode.
    """

    def __init__(self, signer: Signer, scope: str | bytes) -> None:
        self.signer = signer
        raw = scope.encode() if isinstance(scope, str) else scope
        self.scope = hashlib.blake2s(raw, digest_size=6).hexdigest()

    def dumps_page(
        self, first: tuple[t.Any, ...] | None, last: tuple[t.Any, ...] | None
    ) -> dict[str, str]:
        """The cursors of a page's links, signed once: ``"n"`` (after ``last``)
        when ``last`` is given, ``"p"`` (before ``first``) when ``first`` is,
        and ``"l"`` (the last page) always."""
        token = self.signer.dumps([self.scope, _encode_key(first), _encode_key(last)])
        sides = {"l": f"{token}.l"}
        if last is not None:
            sides["n"] = f"{token}.n"
        if first is not None:
            sides["p"] = f"{token}.p"
        return sides

    def dumps(self, cursor: Cursor) -> str:
        """One cursor on its own."""
        if cursor.direction == NEXT:
            return self.dumps_page(None, cursor.key)["n"]
        return self.dumps_page(cursor.key, None)["p" if cursor.key is not None else "l"]

    def loads(self, token: str) -> Cursor:
        """Decode ``token`` or raise :class:`InvalidCursor`."""
        try:
            signed, dot, side = token.rpartition(".")
            if dot and side in _LINK_SIDES:
                scope, first, last = self.signer.loads(signed)
                direction = _LINK_SIDES[side]
                key = last if side == "n" else first if side == "p" else None
                valid = side == "l" or key is not None
            else:
                # A cursor made before links shared a token: [scope, direction, key].
                scope, direction, key = self.signer.loads(token)
                valid = direction in (NEXT, PREV) and (key is not None or direction == PREV)
            if scope != self.scope:
                raise InvalidCursor("This cursor belongs to another list, filter or sort order.")
            if not valid or not (key is None or isinstance(key, list)):
                raise ValueError(token)
            return Cursor(direction, None if key is None else tuple(map(_decode_value, key)))
        except InvalidCursor:
            raise
        except (BadSignature, ValueError, TypeError, KeyError):
            raise InvalidCursor("The cursor is malformed or was tampered with.") from None


def _encode_key(key: tuple[t.Any, ...] | None) -> list[t.Any] | None:
    return None if key is None else [_encode_value(v) for v in key]


@dataclass
class Page(t.Generic[T]):
    """One page of results, and what is needed to link to its neighbours."""

    items: list[T]
    limit: int
    next_cursor: str | None = None
    prev_cursor: str | None = None
    last_cursor: str | None = None
    total: int | None = None
    is_first: bool = True
    extra_args: dict[str, str] = field(default_factory=dict)
    #: The request's query arguments but ``cursor``, URL-encoded: what the
    #: links keep (:func:`paginate` sets it; ``None`` reads the current request).
    query: str | None = None

    def _url(self, cursor: str | None, query: str) -> str:
        """``?query`` (the request's other arguments, encoded) with ``cursor``."""
        if cursor is None:
            return "?" + query
        return "?" + query + ("&" if query else "") + "cursor=" + quote(cursor, safe="")

    def links(self) -> dict[str, str]:
        """The ``Link`` relations, as URLs relative to the request URL."""
        query = self.query
        if query is None:
            query = urlencode([(k, v) for k, v in request.args.items(multi=True) if k != "cursor"])
        links: dict[str, str] = {}
        if self.next_cursor is not None:
            links["next"] = self._url(self.next_cursor, query)
        if self.prev_cursor is not None:
            links["prev"] = self._url(self.prev_cursor, query)
        links["first"] = self._url(None, query)
        if self.last_cursor is not None:
            links["last"] = self._url(self.last_cursor, query)
        return links


def read_page_args(default_limit: int | None = None) -> tuple[int, str | None]:
    """``limit`` and ``cursor`` from the query string, checked against the
    app's bounds (422 ``validation-failed`` for a bad ``limit``)."""
    return _page_args(current_app, request, default_limit)


def _page_args(app: Flask, req: Request, default_limit: int | None) -> tuple[int, str | None]:
    settings = CoreSettings.of(app)
    maximum = settings.pagination_max_limit
    limit = default_limit or settings.pagination_default_limit
    raw = _arg(req.args, "limit")
    if raw is not None:
        try:
            limit = int(raw)
        except ValueError:
            raise ValidationFailed(
                errors=[(["query", "limit"], "Input should be a valid integer", "int_parsing")]
            ) from None
        if not 1 <= limit <= maximum:
            raise ValidationFailed(
                errors=[
                    (
                        ["query", "limit"],
                        f"Input should be between 1 and {maximum}",
                        "out_of_range",
                    )
                ]
            )
    return limit, _arg(req.args, "cursor") or None


def _arg(args: MultiDict[str, str], name: str) -> str | None:
    """``args.get(name)``, without its cost for a missing name: Werkzeug's
    ``MultiDict.get`` builds (and catches) an HTTP exception then, which
    costs more than the rest of reading a page's arguments."""
    return args[name] if name in args else None  # noqa: SIM401


#: Query arguments that page through a list without changing which list it is.
_PAGING_ARGS = frozenset({"cursor", "limit"})


def _current_org_id(app: Flask) -> int | None:
    """The id of the organization the request is in, when the app uses
    :mod:`karaffe.tenancy`. Its slug is in the path when the URL names it,
    but not when it comes from elsewhere (a subdomain), and tenancy takes it
    out of the view's arguments either way: it is bound by id."""
    if "karaffe.tenancy" not in app.extensions:
        return None
    from ..tenancy import get_current_org

    org = get_current_org()
    return None if org is None else org.id


@dataclass(slots=True)
class _ListRequest:
    """What :func:`paginate` reads of the current request, read once."""

    app: Flask
    request: Request
    #: What a cursor is bound to, but the sort order (:meth:`binding`).
    identity: list[t.Any]
    #: The query arguments the links keep (:attr:`Page.query`).
    query: str

    @classmethod
    def current(cls) -> _ListRequest:
        # One lookup of each context local; the rest reads the objects.
        app: Flask = current_app._get_current_object()  # type: ignore[attr-defined]
        req: Request = request._get_current_object()  # type: ignore[attr-defined]
        args = list(req.args.items(multi=True))
        filters = sorted((name, value) for name, value in args if name not in _PAGING_ARGS)
        return cls(
            app,
            req,
            [req.endpoint, req.path, _current_org_id(app), filters],
            urlencode([(name, value) for name, value in args if name != "cursor"]),
        )

    def codec(self, scope: str) -> CursorCodec:
        """The codec of this list, sorted as ``scope`` says."""
        return CursorCodec(signer_for(self.app, CURSOR_SALT), self.binding(scope))

    def binding(self, scope: str) -> bytes:
        """What a cursor of the current request is bound to, canonically
        encoded: the endpoint, the path (so the URL's arguments:
        ``/projects/3/issues`` is not ``/projects/2/issues``), the
        organization, every query argument but ``cursor`` and ``limit`` (so a
        filter is part of the list), and ``scope`` (the sort order). Two
        requests get the same binding exactly when they ask for the same
        list, whatever the order of their query arguments.

        The path rather than ``request.view_args``: by the time the view runs,
        URL value preprocessors may have taken arguments out of them
        (tenancy's ``org_slug``) or replaced ids by the objects they name.
        Compact JSON, byte for byte what ``json.dumps(..., separators=(",",
        ":"), ensure_ascii=False)`` wrote before, so that cursors outlive an
        upgrade.
        """
        return orjson.dumps([*self.identity, scope])


def paginate(
    source: Select[t.Any] | Sequence[T],
    *,
    order_by: Sequence[ColumnElement[t.Any]] | None = None,
    key: Callable[[T], tuple[t.Any, ...]] | None = None,
    limit: int | None = None,
    with_total: bool = False,
    session: Session | None = None,
    params: t.Mapping[str, t.Any] | None = None,
) -> Page[t.Any]:
    """Return the page of ``source`` the request's ``cursor`` and ``limit`` ask for.

    :param source: a SQLAlchemy ``select()`` (then give ``order_by``: columns,
        ``.desc()`` allowed, ending in a unique one such as the primary key) or a
        sequence already sorted ascending by ``key``. A select of one model
        (or column) pages its objects (or values); a select of several
        columns pages its rows, which must hold the ``order_by`` columns
        under their names: no ORM object where none is needed.
    :param limit: the default page size for this list (the app's by default).
    :param with_total: also count the rows, for ``X-Total-Count`` and ``rel="last"``.
    :param session: the session to run a select on; Flask-SQLAlchemy's by default.
    :param params: the values of the select's own bind parameters
        (``sa.bindparam("project")``). A select built once (per shape of a
        list's filters) with its values given here is not rebuilt per
        request: the select of each page is kept with it, so SQLAlchemy's
        compiled cache and the tenancy filter reuse their work. A select
        built per request works too, at the price of building its page.
    """
    current = _ListRequest.current()
    limit, token = _page_args(current.app, current.request, limit)
    if order_by is not None:
        return _paginate_select(
            current,
            t.cast("Select[t.Any]", source),
            order_by,
            limit,
            token,
            with_total,
            session,
            params,
        )
    if key is None:
        raise TypeError("paginate() needs order_by= for a select, or key= for a sequence")
    if params is not None:
        raise TypeError("paginate() takes params= for a select only")
    return _paginate_sequence(current, t.cast(Sequence[T], source), key, limit, token, with_total)


def _finish_page(
    rows: list[T],
    keyf: Callable[[T], tuple[t.Any, ...]],
    cursor: Cursor | None,
    limit: int,
    codec: CursorCodec,
    total: int | None,
    query: str,
) -> Page[T]:
    """Turn ``limit + 1`` rows fetched in the cursor's direction into a page,
    its links signed once."""
    more = len(rows) > limit
    rows = rows[:limit]
    backwards = cursor is not None and cursor.direction == PREV
    if backwards:
        rows.reverse()
    has_next = (not backwards and more) or (
        backwards and cursor is not None and cursor.key is not None
    )
    has_prev = (backwards and more) or (not backwards and cursor is not None)
    page: Page[T] = Page(items=rows, limit=limit, total=total, is_first=not has_prev, query=query)
    first = keyf(rows[0]) if rows and has_prev else None
    last = keyf(rows[-1]) if rows and has_next else None
    if first is not None or last is not None or total is not None:
        cursors = codec.dumps_page(first, last)
        page.next_cursor = cursors.get("n")
        page.prev_cursor = cursors.get("p")
        if total is not None:
            page.last_cursor = cursors["l"]
    return page


def _paginate_sequence(
    current: _ListRequest,
    items: Sequence[T],
    key: Callable[[T], tuple[t.Any, ...]],
    limit: int,
    token: str | None,
    with_total: bool,
) -> Page[T]:
    codec = current.codec(f"seq:{getattr(key, '__qualname__', 'key')}")
    cursor = codec.loads(token) if token else None
    if cursor is None:
        rows = list(items[: limit + 1])
    elif cursor.direction == NEXT:
        assert cursor.key is not None
        start = bisect.bisect_right(items, cursor.key, key=key)
        rows = list(items[start : start + limit + 1])
    else:
        end = len(items) if cursor.key is None else bisect.bisect_left(items, cursor.key, key=key)
        rows = list(items[max(0, end - limit - 1) : end])[::-1]
    total = len(items) if with_total else None
    return _finish_page(rows, key, cursor, limit, codec, total, current.query)


#: The bind parameters of a page's select: the page size, and the cursor's
#: key (one per ``order_by`` column). Their values are given at execution.
_LIMIT_PARAM = "karaffe_page_limit"
_KEY_PARAM = "karaffe_page_key_{}"


@dataclass(frozen=True, slots=True)
class _Order:
    """An ``order_by`` read once: its columns (each with whether it is
    descending), and the sort order a cursor is bound to."""

    columns: tuple[tuple[ColumnElement[t.Any], bool], ...]
    scope: str


#: Per ``order_by`` (its columns and directions): the order read from it.
#: ``str(column)`` compiles the column, and a list is asked for in the same
#: order again and again.
_orders: dict[tuple[tuple[ColumnElement[t.Any], bool], ...], _Order] = {}
_ORDERS_SIZE = 1_000


def _order(order_by: Sequence[ColumnElement[t.Any]]) -> _Order:
    from sqlalchemy.sql import operators

    columns = tuple(
        (getattr(clause, "element", clause), getattr(clause, "modifier", None) is operators.desc_op)
        for clause in order_by
    )
    found = _orders.get(columns)
    if found is None:
        if len(_orders) >= _ORDERS_SIZE:
            _orders.clear()
        scope = "sql:" + ",".join(f"{c}{' desc' if d else ''}" for c, d in columns)
        found = _orders[columns] = _Order(columns, scope)
    return found


@dataclass(frozen=True, slots=True)
class _PageSelect:
    """The select of a page of one list in one direction, with the page
    size and the cursor's key as bind parameters."""

    select: Select[t.Any]
    #: A select of one entity or column pages its values; of several, its rows.
    scalars: bool


#: Per select (weakly: one built per request is dropped with it), the
#: selects of its pages, by sort order and direction, and of its count. The
#: same select object is then executed for every page of a list built once
#: (with its values as bind parameters): SQLAlchemy memoizes a statement's
#: cache key on the object, and tenancy scopes a statement once per scope,
#: so neither is recomputed. A fresh ``where``/``order_by``/``limit`` on
#: every request costs a new cache key, most of the cost of a small select.
_page_selects: weakref.WeakKeyDictionary[t.Any, dict[t.Any, t.Any]] = weakref.WeakKeyDictionary()
#: How many sorts and directions one select keeps.
_PAGE_SELECTS_PER_SELECT = 32

#: The kinds of page select: from the start, after a key, before a key, the last page.
_FIRST, _AFTER, _BEFORE, _LAST = "first", "after", "before", "last"


def _page_select(stmt: Select[t.Any], order: _Order, kind: str) -> _PageSelect:
    """``stmt`` ordered, limited and (for ``_AFTER`` and ``_BEFORE``) past
    the cursor's key in the direction of ``kind``; the same object every
    time for the same select, order and kind."""
    per_select = _page_selects.get(stmt)
    if per_select is None:
        per_select = _page_selects[stmt] = {}
    found: _PageSelect | None = per_select.get((order.columns, kind))
    if found is None:
        if len(per_select) >= _PAGE_SELECTS_PER_SELECT:
            per_select.clear()
        found = per_select[(order.columns, kind)] = _build_page_select(stmt, order, kind)
    return found


def _build_page_select(stmt: Select[t.Any], order: _Order, kind: str) -> _PageSelect:
    from sqlalchemy import Integer, and_, bindparam, or_

    backwards = kind in (_BEFORE, _LAST)
    query = stmt
    if kind in (_AFTER, _BEFORE):
        key = [
            bindparam(_KEY_PARAM.format(i), type_=column.type)
            for i, (column, _) in enumerate(order.columns)
        ]
        # (a, b) after (x, y) in mixed directions: a > x OR (a = x AND b > y)...
        branches = []
        for i, (column, desc) in enumerate(order.columns):
            after = (column < key[i]) if desc != backwards else (column > key[i])
            equal = [c == key[j] for j, (c, _) in enumerate(order.columns[:i])]
            branches.append(and_(*equal, after))
        query = query.where(or_(*branches))
    ordering = [(c.asc() if desc == backwards else c.desc()) for c, desc in order.columns]
    query = query.order_by(None).order_by(*ordering).limit(bindparam(_LIMIT_PARAM, type_=Integer()))
    return _PageSelect(query, len(query.column_descriptions) == 1)


def _count_select(stmt: Select[t.Any]) -> Select[t.Any]:
    """``SELECT count(*)`` of the rows of ``stmt``, built once per select."""
    from sqlalchemy import func, select

    per_select = _page_selects.get(stmt)
    if per_select is None:
        per_select = _page_selects[stmt] = {}
    found: Select[t.Any] | None = per_select.get("count")
    if found is None:
        found = per_select["count"] = select(func.count()).select_from(
            stmt.order_by(None).subquery()
        )
    return found


def _paginate_select(
    current: _ListRequest,
    stmt: Select[t.Any],
    order_by: Sequence[ColumnElement[t.Any]],
    limit: int,
    token: str | None,
    with_total: bool,
    session: Session | None,
    params: t.Mapping[str, t.Any] | None,
) -> Page[t.Any]:
    order = _order(order_by)
    codec = current.codec(order.scope)
    cursor = codec.loads(token) if token else None
    values: dict[str, t.Any] = dict(params) if params else {}
    values[_LIMIT_PARAM] = limit + 1
    if cursor is None:
        kind = _FIRST
    elif cursor.key is None:
        kind = _LAST
    else:
        if len(cursor.key) != len(order.columns):
            raise InvalidCursor("The cursor is malformed or was tampered with.")
        kind = _BEFORE if cursor.direction == PREV else _AFTER
        for i, value in enumerate(cursor.key):
            values[_KEY_PARAM.format(i)] = value
    page_select = _page_select(stmt, order, kind)

    if session is None:
        session = current.app.extensions["sqlalchemy"].session
    assert session is not None

    result = session.execute(page_select.select, values)
    rows = list(result.scalars() if page_select.scalars else result)
    total = None
    if with_total:
        total = session.scalar(_count_select(stmt), params)

    names = [str(c.key) for c, _ in order.columns]

    def keyf(row: t.Any) -> tuple[t.Any, ...]:
        return tuple(getattr(row, name) for name in names)

    return _finish_page(rows, keyf, cursor, limit, codec, total, current.query)
