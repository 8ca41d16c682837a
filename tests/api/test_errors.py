"""Every API error renders the same RFC 9457 envelope; the envelope is replaceable."""

from __future__ import annotations

import pytest
from flask import abort
from pydantic import BaseModel
from werkzeug.datastructures import WWWAuthenticate
from werkzeug.exceptions import RequestedRangeNotSatisfiable, TooManyRequests, Unauthorized

import karaffe
from karaffe.api import errors


def problem(slug: str, title: str, status: int, detail: str, errors: list | None = None) -> dict:
    return {
        "type": f"urn:karaffe:problem:{slug}",
        "title": title,
        "status": status,
        "detail": detail,
        "errors": errors or [],
    }


@pytest.mark.parametrize(
    ("exc", "slug", "title", "status"),
    [
        (karaffe.ApiException, "bad-request", "Bad request", 400),
        (karaffe.MalformedJson, "malformed-json", "Malformed JSON", 400),
        (karaffe.InvalidCursor, "invalid-cursor", "Invalid cursor", 400),
        (karaffe.Unauthorized, "unauthorized", "Authentication required", 401),
        (karaffe.Forbidden, "forbidden", "Forbidden", 403),
        (karaffe.NotFound, "not-found", "Not found", 404),
        (karaffe.MethodNotAllowed, "method-not-allowed", "Method not allowed", 405),
        (karaffe.Conflict, "conflict", "Conflict", 409),
        (karaffe.PayloadTooLarge, "payload-too-large", "Payload too large", 413),
        (karaffe.UnsupportedMediaType, "unsupported-media-type", "Unsupported media type", 415),
        (karaffe.ValidationFailed, "validation-failed", "Validation failed", 422),
        (karaffe.TooManyRequests, "too-many-requests", "Too many requests", 429),
        (karaffe.InternalServerError, "internal-server-error", "Internal server error", 500),
        (karaffe.ServiceUnavailable, "service-unavailable", "Service unavailable", 503),
    ],
)
def test_each_exception_has_a_stable_type_and_status(make_app, exc, slug, title, status) -> None:
    app = make_app()

    @app.get("/api/fail")
    def fail() -> str:
        raise exc("It went wrong.")

    rv = app.test_client().get("/api/fail")
    assert rv.status_code == status
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json() == problem(slug, title, status, "It went wrong.")


def test_the_problem_document_needs_no_app_given_the_type_base(make_app) -> None:
    exc = karaffe.Conflict("Taken.", errors=[(["body", "slug"], "Already used", "taken")])
    outside = errors.problem_document(exc, type_base="https://errors.example/")
    app = make_app({"PROBLEM_TYPE_BASE": "https://errors.example/"})
    with app.app_context():
        assert app.problem_formatter.render(exc) == outside
    assert outside.model_dump() == {
        "type": "https://errors.example/conflict",
        "title": "Conflict",
        "status": 409,
        "detail": "Taken.",
        "errors": [{"loc": ["body", "slug"], "msg": "Already used", "code": "taken"}],
    }


def test_message_defaults_to_title_and_errors_and_headers_are_sent(make_app) -> None:
    app = make_app()

    @app.get("/api/slow-down")
    def slow_down() -> str:
        raise karaffe.TooManyRequests(
            errors=[(["body", "email"], "Too many attempts", "throttled")],
            headers={"Retry-After": "30"},
        )

    rv = app.test_client().get("/api/slow-down")
    assert rv.headers["Retry-After"] == "30"
    assert rv.get_json() == problem(
        "too-many-requests",
        "Too many requests",
        429,
        "Too many requests",
        [{"loc": ["body", "email"], "msg": "Too many attempts", "code": "throttled"}],
    )


def test_a_subclass_is_three_lines(make_app) -> None:
    class QuotaExceeded(karaffe.ApiException):
        status = 403
        slug = "quota-exceeded"
        title = "Quota exceeded"

    app = make_app()
    app.add_url_rule("/api/q", "q", lambda: (_ for _ in ()).throw(QuotaExceeded()))
    assert app.test_client().get("/api/q").get_json() == problem(
        "quota-exceeded", "Quota exceeded", 403, "Quota exceeded"
    )


@pytest.mark.parametrize(
    ("code", "slug", "title", "detail"),
    [
        (400, "bad-request", "Bad request", "The browser (or proxy) sent a request that this server could not understand."),
        (401, "unauthorized", "Authentication required", "The server could not verify that you are authorized to access the URL requested."),
        (403, "forbidden", "Forbidden", "You don't have the permission to access the requested resource."),
        (404, "not-found", "Not found", "The requested URL was not found on the server."),
        (409, "conflict", "Conflict", "A conflict happened while processing the request."),
        (413, "payload-too-large", "Payload too large", "The data value transmitted exceeds the capacity limit."),
        (415, "unsupported-media-type", "Unsupported media type", "The server does not support the media type transmitted in the request."),
        (422, "validation-failed", "Validation failed", "The request was well-formed but was unable to be followed due to semantic errors."),
        (429, "too-many-requests", "Too many requests", "This user has exceeded an allotted request count."),
        (500, "internal-server-error", "Internal server error", "Internal server error"),
        (418, "http-418", "HTTP error 418", "This server is a teapot, not a coffee machine."),
    ],
)  # fmt: skip
def test_werkzeug_http_errors_on_api_routes_get_the_envelope(
    make_app, code, slug, title, detail
) -> None:
    app = make_app()

    @app.get("/api/abort")
    def aborting() -> str:
        abort(code)

    rv = app.test_client().get("/api/abort")
    assert rv.status_code == code
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json() == problem(slug, title, code, detail)


def test_method_not_allowed_lists_allowed_methods(make_app) -> None:
    app = make_app()
    app.add_url_rule("/api/only-get", "only_get", lambda: "x")
    rv = app.test_client().delete("/api/only-get")
    assert rv.status_code == 405
    assert set(rv.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert rv.get_json()["type"] == "urn:karaffe:problem:method-not-allowed"


@pytest.mark.parametrize(
    ("exc", "header", "value"),
    [
        (TooManyRequests(retry_after=30), "Retry-After", "30"),
        (Unauthorized(www_authenticate=WWWAuthenticate("bearer")), "WWW-Authenticate", "Bearer"),
        (RequestedRangeNotSatisfiable(length=10), "Content-Range", "bytes */10"),
    ],
)
def test_werkzeug_http_errors_keep_their_headers_on_api_routes(
    make_app, exc, header, value
) -> None:
    app = make_app()

    @app.get("/api/refuse")
    def refuse() -> str:
        raise exc

    rv = app.test_client().get("/api/refuse")
    assert rv.status_code == exc.code
    assert rv.mimetype == "application/problem+json"
    assert rv.headers[header] == value


def test_too_large_body_is_a_413_problem(make_app) -> None:
    app = make_app({"MAX_CONTENT_LENGTH": 10})

    @app.post("/api/upload")
    def upload() -> str:
        from flask import request

        return str(len(request.get_data()))

    rv = app.test_client().post("/api/upload", data=b"x" * 11)
    assert rv.status_code == 413
    assert rv.get_json()["type"] == "urn:karaffe:problem:payload-too-large"


def test_problem_type_base_is_configurable(make_app) -> None:
    app = make_app({"PROBLEM_TYPE_BASE": "https://errors.example.com/"})
    rv = app.test_client().get("/api/missing")
    assert rv.get_json()["type"] == "https://errors.example.com/not-found"


def test_validation_status_switch_picks_400(make_app) -> None:
    app = make_app({"VALIDATION_ERROR_STATUS": 400})
    app.add_url_rule("/api/v", "v", lambda: (_ for _ in ()).throw(karaffe.ValidationFailed("bad")))
    rv = app.test_client().get("/api/v")
    assert rv.status_code == 400
    assert rv.get_json() == problem("validation-failed", "Validation failed", 400, "bad")


class Envelope(BaseModel):
    code: str
    message: str


class MyFormatter(karaffe.ProblemFormatter):
    model = Envelope
    mimetype = "application/json"

    def render(self, exc: karaffe.ApiException) -> BaseModel:
        return Envelope(code=exc.slug, message=exc.message)


def test_envelope_is_replaced_in_one_place(make_app) -> None:
    app = make_app()
    app.problem_formatter = MyFormatter()
    rv = app.test_client().get("/api/missing")
    assert rv.status_code == 404
    assert rv.mimetype == "application/json"
    assert rv.get_json() == {
        "code": "not-found",
        "message": "The requested URL was not found on the server.",
    }


def test_exception_for_unknown_status_is_generic_and_cached() -> None:
    first = errors.exception_for_status(451)
    assert first.status == 451 and first.slug == "http-451"
    assert errors.exception_for_status(451) is first


def model_body(exc: karaffe.ApiException) -> bytes:
    """The problem document as the model writes it: what every body must equal."""
    return errors.problem_document(exc).model_dump_json().encode()


@pytest.mark.parametrize(
    "exc",
    [
        karaffe.NotFound("No such project."),
        karaffe.ValidationFailed.of_items(
            [
                {
                    "loc": ["body", "name"],
                    "msg": 'Say "hi" \\ or \u00e9t\u00e9\n\t\x01',
                    "code": "c",
                },
                {
                    "loc": ["query", "tags", 3],
                    "msg": "\u2028 \u4e2d \U0001f600 </script>",
                    "code": "x",
                },
            ],
            status=422,
        ),
        karaffe.ValidationFailed.of_items([], status=422),
        karaffe.Conflict("Taken.", errors=[(["body", "slug"], "Already used", "taken")]),
    ],
    ids=["no-errors", "escapes-and-unicode", "no-items", "items-given"],
)
def test_the_default_formatter_sends_the_models_bytes(make_app, exc) -> None:
    app = make_app()
    with app.test_request_context("/api/x"):
        response = app.problem_formatter.to_response(exc)
        assert response.get_data() == model_body(exc)
    assert response.mimetype == "application/problem+json"
    assert response.status_code == exc.status


def test_a_validation_failure_of_items_is_the_same_exception_as_of_error_items(make_app) -> None:
    items = [
        {"loc": ["body", "title"], "msg": "Field required", "code": "missing"},
        {
            "loc": ["body", "tags", 0],
            "msg": "Input should be a valid string",
            "code": "string_type",
        },
        {"loc": ["body", "title"], "msg": "Too long", "code": "string_too_long"},
    ]
    app = make_app()
    with app.app_context():
        lazy = karaffe.ValidationFailed.of_items([dict(item) for item in items])
        eager = karaffe.ValidationFailed(
            errors=[(item["loc"], item["msg"], item["code"]) for item in items]
        )
    assert lazy.status == eager.status == 422
    assert lazy.message == eager.message == "2 inputs are invalid: body.title, body.tags.0."
    assert str(lazy) == str(eager)
    assert lazy.errors == eager.errors
    assert all(isinstance(e, karaffe.ErrorItem) for e in lazy.errors)
    assert lazy.errors is lazy.errors  # made once


def test_errors_set_on_a_validation_failure_are_the_ones_rendered(make_app) -> None:
    app = make_app()
    with app.test_request_context("/api/x"):
        exc = karaffe.ValidationFailed.of_items(
            [{"loc": ["body", "a"], "msg": "Bad", "code": "bad"}]
        )
        exc.errors = [karaffe.ErrorItem(loc=["body", "b"], msg="Worse", code="worse")]
        body = app.problem_formatter.to_response(exc).get_json()
    assert body["errors"] == [{"loc": ["body", "b"], "msg": "Worse", "code": "worse"}]
    assert body["detail"] == "1 input is invalid: body.a."
