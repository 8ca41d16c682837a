"""karaffe's response class sends exactly what Flask's sends: the same status
line, the same headers in the same order, the same body, whatever the
response holds; it only skips checking the headers a second time."""

from __future__ import annotations

import typing as t

import pytest
from flask import Response as FlaskResponse
from werkzeug.datastructures import Headers
from werkzeug.test import EnvironBuilder

import karaffe
from karaffe.wrappers import Response


def environ(method: str = "GET") -> dict[str, t.Any]:
    builder = EnvironBuilder("/app/here", base_url="http://example.com/app/", method=method)
    try:
        return builder.get_environ()
    finally:
        builder.close()


def sent(cls: type[FlaskResponse], method: str = "GET", **kwargs: t.Any) -> tuple[t.Any, ...]:
    """What a WSGI server is given: the status, the header list, the body."""
    response = cls(**kwargs)
    started: list[tuple[str, list[tuple[str, str]]]] = []

    def start_response(
        status: str, headers: list[tuple[str, str]], exc_info: t.Any = None
    ) -> t.Any:
        started.append((status, headers))

    body = b"".join(response(environ(method), start_response))
    ((status, headers),) = started
    return status, headers, body


CASES: dict[str, dict[str, t.Any]] = {
    "a JSON body": {"response": b'{"ok":true}', "mimetype": "application/json"},
    "a text body": {"response": "caf\u00e9", "status": 201},
    "extra headers": {"response": b"x", "headers": {"Link": '</a>; rel="next"', "X-A": "1"}},
    "a repeated header": {"response": b"x", "headers": [("Vary", "Cookie"), ("Vary", "Accept")]},
    "a generator body": {"response": (part for part in (b"a", b"b"))},
    "a list body of str and bytes": {"response": ["a", b"b"]},
    "its own Content-Length": {"response": [b"ab"], "headers": {"Content-Length": "2"}},
    "a relative Location": {"response": b"", "status": 302, "headers": {"Location": "/caf\u00e9"}},
    "a Content-Location IRI": {"response": b"x", "headers": {"Content-Location": "/caf\u00e9"}},
    "a lower-case location": {"response": b"", "status": 301, "headers": {"location": "/x y"}},
    "no content": {"response": b"", "status": 204},
    "not modified": {"response": b"x", "status": 304, "headers": {"ETag": '"a"', "Expires": "0"}},
    "an informational status": {"response": b"", "status": 103, "headers": {"Link": "</s.css>"}},
    "an error": {"response": b"{}", "status": 422, "mimetype": "application/problem+json"},
}


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_what_is_sent_is_what_flask_sends(case: str, method: str) -> None:
    kwargs = CASES[case]
    if isinstance(kwargs["response"], t.Generator):
        # A generator is consumed by the first response: each gets its own.
        kwargs = {**kwargs, "response": iter([b"a", b"b"])}
        theirs = sent(FlaskResponse, method, **kwargs)
        kwargs = {**kwargs, "response": iter([b"a", b"b"])}
    else:
        theirs = sent(FlaskResponse, method, **kwargs)
    assert sent(Response, method, **kwargs) == theirs


def test_the_copy_is_a_copy() -> None:
    response = Response(b"x")
    headers = response.get_wsgi_headers(environ())
    headers["X-Later"] = "1"
    assert "X-Later" not in response.headers
    assert headers["Content-Length"] == "1"


def test_headers_of_another_class_go_through_werkzeug() -> None:
    class Tracking(Headers):
        pass

    response = Response(b"x")
    response.headers = Tracking(response.headers)
    headers = response.get_wsgi_headers(environ())
    assert list(headers) == [("Content-Type", "text/html; charset=utf-8"), ("Content-Length", "1")]


def test_a_newline_is_still_refused_where_a_header_is_set() -> None:
    response = Response(b"x")
    with pytest.raises(ValueError, match="newline"):
        response.headers["X-Bad"] = "a\r\nSet-Cookie: b"


def test_karaffe_apps_use_it() -> None:
    app = karaffe.App("wrapped")
    app.add_url_rule("/", "index", lambda: "page")
    rv = app.test_client().get("/")
    assert app.response_class is Response
    assert isinstance(rv, Response)
    assert rv.headers["Content-Length"] == "4"
