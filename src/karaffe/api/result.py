"""``ApiResult`` (slides 35 and 47): what an API view returns.

A view returns ``ApiResult(value, status=200, headers=None, next_page=None)``;
:meth:`karaffe.App.make_response` turns it into a JSON response. ``value`` may be
a pydantic model, a dataclass, a dict, a list of any of those, or anything else
:func:`encode_json` understands.
"""

from __future__ import annotations

import functools
import typing as t
from collections.abc import Mapping
from urllib.parse import quote
from urllib.parse import urljoin as url_join  # werkzeug.urls.url_join (slide 47) left Werkzeug 3

import orjson
from flask import Flask, Request, Response, current_app, request
from pydantic import BaseModel
from pydantic_core import to_json, to_jsonable_python

if t.TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

    from .pagination import Page

__all__ = ["ApiResult", "RawJson", "encode_json"]

_OPTIONS = orjson.OPT_NON_STR_KEYS


def _fallback(value: t.Any) -> t.Any:
    return to_jsonable_python(value)


class RawJson(bytes):
    """JSON that is already encoded (by a response model's serializer); sent as is."""


def encode_json(value: t.Any) -> bytes:
    """Serialize ``value`` to compact UTF-8 JSON.

    A pydantic model goes through its own compiled serializer; everything else
    through orjson, which handles dicts, lists, dataclasses, datetimes, UUIDs
    and enums natively and asks pydantic for what remains (models nested in a
    list, for example). A list of models goes to pydantic's serializer whole.
    ``python -m bench json`` measures these choices.
    """
    if isinstance(value, RawJson):
        return value
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    if isinstance(value, list) and value and isinstance(value[0], BaseModel):
        # A page of models: pydantic's serializer in one pass is about twice as
        # fast as orjson calling back into pydantic for each item.
        return to_json(value)
    return orjson.dumps(value, default=_fallback, option=_OPTIONS)


# What get_current_url leaves unquoted in a path.
_PATH_SAFE = "!$&'()*+,/:;=@%"


def _request_uri(req: Request) -> str:
    """The request's URL without its query, as an ASCII URI: what a header
    carries (``request.base_url`` is an IRI, and costs a round trip to make)."""
    root = quote(req.root_path.rstrip("/"), safe=_PATH_SAFE)
    return f"{req.scheme}://{req.host}{root}/{_quoted_path(req.path)}"


@functools.lru_cache(maxsize=256)
def _quoted_path(path: str) -> str:
    """A request path as :func:`_request_uri` writes it; the same list's pages
    ask for the same path again and again."""
    return quote(path.lstrip("/"), safe=_PATH_SAFE)


def _resolve(req: Request, base: str, url: str) -> str:
    """``url`` resolved against the request URL (slide 47's ``url_join``);
    ``base`` is :func:`_request_uri`, which is all a ``?query`` needs."""
    if url.startswith("?"):
        return base + url if len(url) > 1 else base
    return url_join(req.url, url)


class ApiResult:
    """A JSON API response in the making.

    :param value: the body.
    :param status: the HTTP status code.
    :param headers: extra response headers.
    :param next_page: a URL, usually relative such as ``"?cursor=abc"``, of the
        next page; sent as ``Link: <url>; rel="next"`` resolved against the
        request URL (slide 47).
    :param page: a :class:`karaffe.Page`; its ``next``, ``prev``, ``first`` (and,
        when counted, ``last``) links and total go into the headers, its items
        into the body when ``value`` is omitted.
    """

    #: The media type of every API response.
    mimetype = "application/json"

    def __init__(
        self,
        value: t.Any = None,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
        next_page: str | None = None,
        *,
        page: Page[t.Any] | None = None,
    ) -> None:
        if value is None and page is not None:
            value = page.items
        self.value = value
        self.status = status
        self.headers = dict(headers or {})
        self.next_page = next_page
        self.page = page

    def links(self) -> dict[str, str]:
        """The ``Link`` relations of this response, relative or absolute."""
        links = self.page.links() if self.page is not None else {}
        if self.next_page is not None:
            links["next"] = self.next_page
        return links

    def to_response(self, app: Flask | None = None, req: Request | None = None) -> Response:
        """The JSON response. ``app`` and ``req`` are the current app and
        request, looked up when not given (:class:`karaffe.App` gives them)."""
        if app is None:
            app = current_app._get_current_object()  # type: ignore[attr-defined]
            assert app is not None
        body = b"" if self.status == 204 else encode_json(self.value)
        rv = app.response_class(body, status=self.status, mimetype=self.mimetype)
        if self.headers:
            rv.headers.update(self.headers)
        links = self.links()
        if links:
            if req is None:
                req = request._get_current_object()  # type: ignore[attr-defined]
                assert req is not None
            base = _request_uri(req)
            rv.headers["Link"] = ", ".join(
                f'<{_resolve(req, base, url)}>; rel="{rel}"' for rel, url in links.items()
            )
        if self.page is not None and self.page.total is not None:
            rv.headers["X-Total-Count"] = str(self.page.total)
        return rv

    def __call__(
        self, environ: WSGIEnvironment, start_response: StartResponse
    ) -> t.Iterable[bytes]:
        """Make an ``ApiResult`` a WSGI application, so that type checkers accept
        it wherever Flask accepts a view's return value. :class:`karaffe.App`
        converts it before this is ever called."""
        return self.to_response()(environ, start_response)

    def __repr__(self) -> str:
        return f"<ApiResult {self.status} {self.value!r:.60}>"
