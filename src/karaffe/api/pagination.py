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
"""

from __future__ import annotations

import bisect
import datetime as dt
import decimal
import hashlib
import json
import typing as t
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from urllib.parse import quote, urlencode

from flask import current_app, request
from itsdangerous import BadSignature

from ..config import CoreSettings
from ..signing import CURSOR_SALT, Signer, signer_for
from .errors import InvalidCursor, ValidationFailed

if t.TYPE_CHECKING:
    from sqlalchemy import Select
    from sqlalchemy.orm import Session
    from sqlalchemy.sql.elements import ColumnElement

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


def _encode_value(value: t.Any) -> t.Any:
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


def _decode_value(value: t.Any) -> t.Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, raw),) = value.items()
        decoders: dict[str, Callable[[str], t.Any]] = {
            "dt": dt.datetime.fromisoformat,
            "d": dt.date.fromisoformat,
            "u": uuid.UUID,
            "n": decimal.Decimal,
        }
        return decoders[tag](raw)
    return value


class CursorCodec:
    """Turns cursors into opaque, signed strings and back. I/O-free.

    :param signer: signs the cursors: one with :data:`~karaffe.signing.CURSOR_SALT`
        (:func:`~karaffe.signing.signer_for` the app).
    :param scope: what the cursor is bound to (for :func:`paginate`: the
        list's endpoint, path, query arguments and sort order); a cursor made
        for another scope does not decode.
    """

    def __init__(self, signer: Signer, scope: str) -> None:
        self.signer = signer
        self.scope = hashlib.blake2s(scope.encode(), digest_size=6).hexdigest()

    def dumps(self, cursor: Cursor) -> str:
        key = None if cursor.key is None else [_encode_value(v) for v in cursor.key]
        return self.signer.dumps([self.scope, cursor.direction, key])

    def loads(self, token: str) -> Cursor:
        """Decode ``token`` or raise :class:`InvalidCursor`."""
        try:
            scope, direction, key = self.signer.loads(token)
            if scope != self.scope:
                raise InvalidCursor("This cursor belongs to another list, filter or sort order.")
            if direction not in (NEXT, PREV) or not (key is None or isinstance(key, list)):
                raise ValueError(direction)
            if key is None and direction == NEXT:
                raise ValueError(direction)
            return Cursor(direction, None if key is None else tuple(map(_decode_value, key)))
        except InvalidCursor:
            raise
        except (BadSignature, ValueError, TypeError, KeyError):
            raise InvalidCursor("The cursor is malformed or was tampered with.") from None


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

    def _url(self, cursor: str | None, query: str) -> str:
        """``?query`` (the request's other arguments, encoded) with ``cursor``."""
        if cursor is None:
            return "?" + query
        return "?" + query + ("&" if query else "") + "cursor=" + quote(cursor, safe="")

    def links(self) -> dict[str, str]:
        """The ``Link`` relations, as URLs relative to the request URL."""
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
    settings = CoreSettings.of()
    maximum = settings.pagination_max_limit
    limit = default_limit or settings.pagination_default_limit
    raw = request.args.get("limit")
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
    return limit, request.args.get("cursor") or None


#: Query arguments that page through a list without changing which list it is.
_PAGING_ARGS = frozenset({"cursor", "limit"})


def _current_org_id() -> int | None:
    """The id of the organization the request is in, when the app uses
    :mod:`karaffe.tenancy`. Its slug is in the path when the URL names it,
    but not when it comes from elsewhere (a subdomain), and tenancy takes it
    out of the view's arguments either way: it is bound by id."""
    if "karaffe.tenancy" not in current_app.extensions:
        return None
    from ..tenancy import get_current_org

    org = get_current_org()
    return None if org is None else org.id


def _list_binding(scope: str) -> str:
    """What a cursor of the current request is bound to, canonically encoded:
    the endpoint, the path (so the URL's arguments: ``/projects/3/issues`` is
    not ``/projects/2/issues``), the organization, every query argument but
    ``cursor`` and ``limit`` (so a filter is part of the list), and ``scope``
    (the sort order). Two requests get the same binding exactly when they ask
    for the same list, whatever the order of their query arguments.

    The path rather than ``request.view_args``: by the time the view runs,
    URL value preprocessors may have taken arguments out of them (tenancy's
    ``org_slug``) or replaced ids by the objects they name.
    """
    query = sorted(
        (name, value) for name, value in request.args.items(multi=True) if name not in _PAGING_ARGS
    )
    binding = [request.endpoint, request.path, _current_org_id(), query, scope]
    return json.dumps(binding, separators=(",", ":"), ensure_ascii=False)


def _codec(scope: str) -> CursorCodec:
    """The codec of the current request's list, sorted as ``scope`` says."""
    return CursorCodec(signer_for(current_app, CURSOR_SALT), _list_binding(scope))


def paginate(
    source: Select[t.Any] | Sequence[T],
    *,
    order_by: Sequence[ColumnElement[t.Any]] | None = None,
    key: Callable[[T], tuple[t.Any, ...]] | None = None,
    limit: int | None = None,
    with_total: bool = False,
    session: Session | None = None,
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
    """
    limit, token = read_page_args(limit)
    if order_by is not None:
        return _paginate_select(
            t.cast("Select[t.Any]", source), order_by, limit, token, with_total, session
        )
    if key is None:
        raise TypeError("paginate() needs order_by= for a select, or key= for a sequence")
    return _paginate_sequence(t.cast(Sequence[T], source), key, limit, token, with_total)


def _finish_page(
    rows: list[T],
    keyf: Callable[[T], tuple[t.Any, ...]],
    cursor: Cursor | None,
    limit: int,
    codec: CursorCodec,
    total: int | None,
) -> Page[T]:
    """Turn ``limit + 1`` rows fetched in the cursor's direction into a page."""
    more = len(rows) > limit
    rows = rows[:limit]
    backwards = cursor is not None and cursor.direction == PREV
    if backwards:
        rows.reverse()
    has_next = (not backwards and more) or (
        backwards and cursor is not None and cursor.key is not None
    )
    has_prev = (backwards and more) or (not backwards and cursor is not None)
    page: Page[T] = Page(items=rows, limit=limit, total=total, is_first=not has_prev)
    if rows and has_next:
        page.next_cursor = codec.dumps(Cursor(NEXT, keyf(rows[-1])))
    if rows and has_prev:
        page.prev_cursor = codec.dumps(Cursor(PREV, keyf(rows[0])))
    if total is not None:
        page.last_cursor = codec.dumps(Cursor(PREV, None))
    return page


def _paginate_sequence(
    items: Sequence[T],
    key: Callable[[T], tuple[t.Any, ...]],
    limit: int,
    token: str | None,
    with_total: bool,
) -> Page[T]:
    codec = _codec(f"seq:{getattr(key, '__qualname__', 'key')}")
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
    return _finish_page(rows, key, cursor, limit, codec, len(items) if with_total else None)


def _paginate_select(
    stmt: Select[t.Any],
    order_by: Sequence[ColumnElement[t.Any]],
    limit: int,
    token: str | None,
    with_total: bool,
    session: Session | None,
) -> Page[t.Any]:
    from sqlalchemy import and_, func, or_, select
    from sqlalchemy.sql import operators

    columns = []
    for clause in order_by:
        modifier = getattr(clause, "modifier", None)
        element = getattr(clause, "element", clause)
        columns.append((element, modifier is operators.desc_op))
    scope = "sql:" + ",".join(f"{c}{' desc' if d else ''}" for c, d in columns)
    codec = _codec(scope)
    cursor = codec.loads(token) if token else None
    if cursor is not None and cursor.key is not None and len(cursor.key) != len(columns):
        raise InvalidCursor("The cursor is malformed or was tampered with.")
    backwards = cursor is not None and cursor.direction == PREV

    if session is None:
        session = current_app.extensions["sqlalchemy"].session
    assert session is not None

    query = stmt
    if cursor is not None and cursor.key is not None:
        # (a, b) after (x, y) in mixed directions: a > x OR (a = x AND b > y)...
        branches = []
        for i, (column, desc) in enumerate(columns):
            after = (column < cursor.key[i]) if desc != backwards else (column > cursor.key[i])
            equal = [c == cursor.key[j] for j, (c, _) in enumerate(columns[:i])]
            branches.append(and_(*equal, after))
        query = query.where(or_(*branches))
    ordering = [(c.asc() if desc == backwards else c.desc()) for c, desc in columns]
    query = query.order_by(None).order_by(*ordering).limit(limit + 1)

    result = session.execute(query)
    # A select of one entity or column pages its values; of several columns, its rows.
    rows = list(result.scalars() if len(query.column_descriptions) == 1 else result)
    total = None
    if with_total:
        total = session.scalar(select(func.count()).select_from(stmt.order_by(None).subquery()))

    def keyf(row: t.Any) -> tuple[t.Any, ...]:
        return tuple(getattr(row, str(c.key)) for c, _ in columns)

    return _finish_page(rows, keyf, cursor, limit, codec, total)
