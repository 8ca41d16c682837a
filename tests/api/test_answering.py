"""A declared view's API errors are answered where they are raised, without
Flask's exception dispatch; the handlers an app registers still come first,
in Flask's order, and a decorator around the view still sees the exception."""

from __future__ import annotations

import functools
import typing as t

import flask
import pytest
from flask import Blueprint, abort
from pydantic import BaseModel, Field

import karaffe
from karaffe.api.errors import ApiException

INVALID = {"name": "", "price": -1}
PROBLEM = {
    "type": "urn:karaffe:problem:validation-failed",
    "title": "Validation failed",
    "status": 422,
    "detail": "2 inputs are invalid: body.name, body.price.",
    "errors": [
        {
            "loc": ["body", "name"],
            "msg": "String should have at least 1 character",
            "code": "string_too_short",
        },
        {"loc": ["body", "price"], "msg": "Input should be greater than 0", "code": "greater_than"},
    ],
}


class ItemIn(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)


def items_blueprint() -> Blueprint:
    bp = Blueprint("items", __name__, url_prefix="/api/items")

    @bp.post("")
    @karaffe.validate(body=ItemIn)
    def create(body: ItemIn) -> karaffe.ApiResult:
        return karaffe.ApiResult({"name": body.name}, status=201)

    @bp.get("")
    def page() -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate([(1,), (2,)], key=lambda row: row))

    @bp.get("/paged")
    @karaffe.returns(list[int], paginated=True)
    def paged() -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate([1, 2, 3], key=lambda n: (n,)))

    @bp.get("/taken")
    @karaffe.returns(dict[str, str])
    def taken() -> t.Any:
        raise karaffe.Conflict("The name is taken.")

    return bp


@pytest.fixture
def app(make_app) -> karaffe.App:
    app = make_app()
    app.register_blueprint(items_blueprint())
    return app


def without_dispatch(app: karaffe.App) -> karaffe.App:
    """``app``, failing any request that goes through Flask's exception dispatch."""

    def refuse(exc: Exception) -> t.NoReturn:
        raise AssertionError(f"dispatched through Flask: {exc!r}")

    app.handle_user_exception = refuse  # type: ignore[method-assign]
    return app


@pytest.mark.parametrize(
    ("request_args", "status", "slug"),
    [
        ({"json": INVALID}, 422, "validation-failed"),
        ({"data": "{", "content_type": "application/json"}, 400, "malformed-json"),
        ({"data": "x", "content_type": "text/plain"}, 415, "unsupported-media-type"),
    ],
    ids=["invalid", "malformed", "not-json"],
)
def test_a_bad_input_is_answered_without_flasks_exception_dispatch(
    app, request_args, status, slug
) -> None:
    rv = without_dispatch(app).test_client().post("/api/items", **request_args)
    assert rv.status_code == status
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json()["type"] == f"urn:karaffe:problem:{slug}"


def test_the_answer_is_the_problem_flasks_dispatch_gives(app) -> None:
    rv = without_dispatch(app).test_client().post("/api/items", json=INVALID)
    assert rv.get_json() == PROBLEM


@pytest.mark.parametrize(
    ("path", "status", "slug"),
    [
        ("/api/items/paged?cursor=forged", 400, "invalid-cursor"),
        ("/api/items/paged?limit=0", 422, "validation-failed"),
        ("/api/items/taken", 409, "conflict"),
    ],
)
def test_an_api_exception_of_a_declared_view_is_answered_without_dispatch(
    app, path, status, slug
) -> None:
    rv = without_dispatch(app).test_client().get(path)
    assert rv.status_code == status
    assert rv.get_json()["type"] == f"urn:karaffe:problem:{slug}"


def test_an_undeclared_views_api_exception_goes_through_flask(app) -> None:
    seen: list[Exception] = []
    dispatch = app.handle_user_exception

    def spy(exc: Exception) -> t.Any:
        seen.append(exc)
        return dispatch(exc)

    app.handle_user_exception = spy  # type: ignore[method-assign]
    rv = app.test_client().get("/api/items?cursor=forged")
    assert rv.status_code == 400
    assert [type(e) for e in seen] == [karaffe.InvalidCursor]


def mine(exc: Exception) -> tuple[str, int]:
    return f"mine: {type(exc).__name__}", 418


def on_app(cls: type[Exception]) -> t.Callable[[karaffe.App, Blueprint], None]:
    return lambda app, bp: app.register_error_handler(cls, mine)


def on_blueprint(cls: type[Exception]) -> t.Callable[[karaffe.App, Blueprint], None]:
    return lambda app, bp: bp.register_error_handler(cls, mine)


@pytest.mark.parametrize(
    "register",
    [
        on_app(karaffe.ValidationFailed),
        on_app(ApiException),
        on_blueprint(karaffe.ValidationFailed),
        on_blueprint(ApiException),
        on_blueprint(Exception),
    ],
    ids=[
        "app-ValidationFailed",
        "app-ApiException",
        "blueprint-ValidationFailed",
        "blueprint-ApiException",
        "blueprint-Exception",
    ],
)
def test_the_apps_handlers_still_win(make_app, register) -> None:
    app = make_app()
    bp = items_blueprint()
    register(app, bp)
    app.register_blueprint(bp)
    rv = app.test_client().post("/api/items", json=INVALID)
    assert (rv.status_code, rv.text) == (418, "mine: ValidationFailed")


def test_an_apps_handler_for_exception_comes_after_karaffes_as_in_flask(make_app) -> None:
    """Flask picks the most specific class on the app: ``ApiException``'s."""
    app = make_app()
    app.register_error_handler(Exception, mine)
    app.register_blueprint(items_blueprint())
    rv = app.test_client().post("/api/items", json=INVALID)
    assert rv.get_json() == PROBLEM


def test_a_handler_for_the_status_code_is_for_http_errors(make_app) -> None:
    """``errorhandler(422)`` receives HTTP errors (``abort(422)``), as in
    Flask; a ``ValidationFailed`` is not one, and renders its problem, as it
    did when it went through Flask's dispatch."""
    app = make_app()
    app.register_error_handler(422, mine)
    app.register_blueprint(items_blueprint())
    app.add_url_rule("/api/abort", "abort", lambda: abort(422))
    client = app.test_client()
    assert client.get("/api/abort").text == "mine: UnprocessableEntity"
    assert client.post("/api/items", json=INVALID).get_json() == PROBLEM


def test_a_decorator_around_the_view_still_sees_the_exception(make_app) -> None:
    app = make_app()

    def catching(view: t.Callable[..., t.Any]) -> t.Callable[..., t.Any]:
        @functools.wraps(view)
        def outer(*args: t.Any, **kwargs: t.Any) -> t.Any:
            try:
                return view(*args, **kwargs)
            except karaffe.ValidationFailed as exc:
                return mine(exc)

        return outer

    @app.post("/api/wrapped")
    @catching
    @karaffe.validate(body=ItemIn)
    def wrapped(body: ItemIn) -> dict[str, str]:
        return {"name": body.name}

    rv = app.test_client().post("/api/wrapped", json=INVALID)
    assert (rv.status_code, rv.text) == (418, "mine: ValidationFailed")


def test_an_app_class_that_dispatches_otherwise_gets_the_exception() -> None:
    seen: list[Exception] = []

    class Logging(karaffe.App):
        def handle_user_exception(self, e: Exception) -> t.Any:
            seen.append(e)
            return super().handle_user_exception(e)

    app = Logging("logging_app")
    app.configure({"TESTING": True, "SECRET_KEY": "test-secret"}, environ={})
    app.register_blueprint(items_blueprint())
    rv = app.test_client().post("/api/items", json=INVALID)
    assert rv.get_json() == PROBLEM
    assert [type(e) for e in seen] == [karaffe.ValidationFailed]


def test_an_app_class_that_renders_api_errors_otherwise_is_used() -> None:
    class Plain(karaffe.App):
        def handle_api_exception(self, exc: ApiException) -> t.Any:
            return self.response_class(exc.message, status=exc.status, mimetype="text/plain")

    app = Plain("plain_app")
    app.configure({"TESTING": True, "SECRET_KEY": "test-secret"}, environ={})
    app.register_blueprint(items_blueprint())
    rv = without_dispatch(app).test_client().post("/api/items", json=INVALID)
    assert (rv.status_code, rv.text) == (422, PROBLEM["detail"])


def test_a_plain_flask_app_dispatches_as_before() -> None:
    app = flask.Flask("plain_flask")
    app.register_error_handler(ApiException, lambda exc: (exc.message, exc.status))
    app.register_blueprint(items_blueprint())
    rv = app.test_client().post("/api/items", json=INVALID)
    assert (rv.status_code, rv.text) == (422, PROBLEM["detail"])
