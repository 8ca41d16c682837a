"""The App class: blueprint discovery (slide 22), the response converter
(slide 36), the contained app (slide 23), HTML vs API errors, and behaving
as a Flask does (the compatibility job in tests/compat runs Flask's own suite;
the cases it caught are pinned here too)."""

from __future__ import annotations

import gc
import logging
import sys
import textwrap
import typing as t
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from flask import Blueprint, Flask, abort, got_request_exception, request
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException, NotFound

import karaffe


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Callable[[str, dict[str, str]], str]]:
    """Write a throwaway package of blueprint modules and make it importable."""
    names: list[str] = []

    def write(name: str, modules: dict[str, str]) -> str:
        root = tmp_path / name
        for relative, source in {"__init__.py": "", **modules}.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(textwrap.dedent(source))
        names.append(name)
        return name

    sys.path.insert(0, str(tmp_path))
    yield write
    sys.path.remove(str(tmp_path))
    for module in list(sys.modules):
        if module.split(".")[0] in names:
            del sys.modules[module]


BLUEPRINT = """
from flask import Blueprint
blueprint = Blueprint("{name}", __name__)

@blueprint.get("/{name}")
def index():
    return "{name}"
"""


def test_register_blueprints_finds_every_module_in_sorted_order(make_app, package) -> None:
    pkg = package(
        "bp_sorted",
        {
            "zeta.py": BLUEPRINT.format(name="zeta"),
            "alpha.py": BLUEPRINT.format(name="alpha"),
            "helpers.py": "VALUE = 1\n",
            "nested/__init__.py": "",
            "nested/inner.py": BLUEPRINT.format(name="inner"),
        },
    )
    app = make_app()
    registered = app.register_blueprints(pkg)
    assert registered == ["bp_sorted.alpha", "bp_sorted.nested.inner", "bp_sorted.zeta"]
    assert list(app.blueprints) == ["alpha", "inner", "zeta"]
    client = app.test_client()
    assert client.get("/inner").data == b"inner"


def test_module_that_fails_to_import_stops_start_up_naming_it(make_app, package) -> None:
    pkg = package(
        "bp_broken",
        {"good.py": BLUEPRINT.format(name="good"), "broken.py": "import does_not_exist_anywhere\n"},
    )
    with pytest.raises(karaffe.BlueprintImportError) as info:
        make_app().register_blueprints(pkg)
    assert str(info.value) == (
        "blueprint module bp_broken.broken failed to import: "
        "ModuleNotFoundError: No module named 'does_not_exist_anywhere'"
    )


def test_missing_blueprint_package_is_an_import_error(make_app) -> None:
    with pytest.raises(ImportError):
        make_app().register_blueprints("no_such_package_for_karaffe")


def test_view_returning_api_result_becomes_json(make_app) -> None:
    app = make_app()

    @app.get("/api/thing")
    def thing() -> karaffe.ApiResult:
        return karaffe.ApiResult({"name": "mug"}, status=201, headers={"X-Thing": "1"})

    rv = app.test_client().get("/api/thing")
    assert rv.status_code == 201
    assert rv.mimetype == "application/json"
    assert rv.get_json() == {"name": "mug"}
    assert rv.headers["X-Thing"] == "1"


def test_view_returning_a_pydantic_model_becomes_json(make_app) -> None:
    class Mug(BaseModel):
        name: str

    app = make_app()
    app.add_url_rule("/api/mug", "mug", lambda: Mug(name="blue"))
    assert app.test_client().get("/api/mug").get_json() == {"name": "blue"}


def test_next_page_becomes_a_link_header_relative_to_the_request(make_app) -> None:
    app = make_app()

    @app.get("/api/items")
    def items() -> karaffe.ApiResult:
        return karaffe.ApiResult([1, 2], next_page="?page=2")

    rv = app.test_client().get("/api/items?page=1")
    assert rv.headers["Link"] == '<http://localhost/api/items?page=2>; rel="next"'


def test_html_routes_keep_html_errors(make_app) -> None:
    app = make_app()
    rv = app.test_client().get("/missing")
    assert rv.status_code == 404
    assert rv.mimetype == "text/html"


def test_unknown_api_url_is_a_problem(make_app) -> None:
    rv = make_app().test_client().get("/api/missing")
    assert rv.status_code == 404
    assert rv.mimetype == "application/problem+json"
    assert rv.get_json() == {
        "type": "urn:karaffe:problem:not-found",
        "title": "Not found",
        "status": 404,
        "detail": "The requested URL was not found on the server.",
        "errors": [],
    }


def test_api_crash_is_a_500_problem_without_internals(make_app, caplog) -> None:
    app = make_app({"PROPAGATE_EXCEPTIONS": False})

    @app.get("/api/crash")
    def crash() -> str:
        raise RuntimeError("database password is hunter2")

    with caplog.at_level(logging.ERROR):
        rv = app.test_client().get("/api/crash")
    assert rv.status_code == 500
    assert rv.get_json() == {
        "type": "urn:karaffe:problem:internal-server-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "Internal server error",
        "errors": [],
    }
    assert b"hunter2" not in rv.data and b"Traceback" not in rv.data
    assert "hunter2" in caplog.text  # logged for the operator, not sent to the client


def test_html_crash_keeps_flask_500_page(make_app) -> None:
    app = make_app({"PROPAGATE_EXCEPTIONS": False})

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("boom")

    rv = app.test_client().get("/crash")
    assert rv.status_code == 500
    assert rv.mimetype == "text/html"


def test_exceptions_propagate_in_testing_so_tests_see_them(make_app) -> None:
    app = make_app()

    @app.get("/api/crash")
    def crash() -> str:
        raise RuntimeError("visible to the test")

    with pytest.raises(RuntimeError, match="visible to the test"):
        app.test_client().get("/api/crash")


def test_api_prefixes_setting_decides_which_routes_are_api(make_app) -> None:
    app = make_app({"API_PREFIXES": ["/v2"]})
    assert app.test_client().get("/v2/missing").mimetype == "application/problem+json"
    assert app.test_client().get("/api/missing").mimetype == "text/html"


def test_prefix_match_is_per_path_segment(make_app) -> None:
    rv = make_app().test_client().get("/apiary")
    assert rv.mimetype == "text/html"


def test_htmljson_filter_is_available_in_templates(make_app) -> None:
    app = make_app()
    with app.app_context():
        rendered = app.jinja_env.from_string("{{ v|htmljson }}").render(v="</script>")
    assert rendered == '"\\u003c/script\\u003e"'


class ContainedApp:
    """The contained app of slide 23: a plain object that owns the Flask app
    and is the WSGI callable."""

    def __init__(self, config: dict[str, t.Any]) -> None:
        self.flask_app = karaffe.App("contained")
        self.flask_app.configure(config, environ={})
        self.flask_app.contained = self  # type: ignore[attr-defined]
        bp = Blueprint("hello", __name__)
        bp.add_url_rule("/hello", "hello", lambda: "hello from the contained app")
        self.flask_app.register_blueprint(bp)

    def __call__(self, environ: dict[str, t.Any], start_response: t.Any) -> t.Any:
        return self.flask_app(environ, start_response)


def test_contained_app_is_the_wsgi_callable() -> None:
    from werkzeug.test import Client

    contained = ContainedApp({"TESTING": True, "SECRET_KEY": "x"})
    assert isinstance(contained.flask_app, Flask)
    assert contained.flask_app.contained is contained  # type: ignore[attr-defined]
    rv = Client(contained).get("/hello")
    assert rv.status_code == 200
    assert rv.get_data() == b"hello from the contained app"


# -- a karaffe App is a Flask ------------------------------------------------


def test_app_is_freed_when_its_last_reference_goes() -> None:
    # Like Flask's test_app_freed_on_zero_refcount: no reference cycle, so
    # CPython frees an app (and what hangs on it) without the cycle collector.
    gc.disable()
    try:
        app = karaffe.App("freed")
        configured = karaffe.App("freed")
        configured.configure({"SECRET_KEY": "x" * 32}, environ={})
        refs = [weakref.ref(app), weakref.ref(configured)]
        del app, configured
        assert [ref() for ref in refs] == [None, None]
    finally:
        gc.enable()


@pytest.mark.parametrize("path", ["/form", "/api/form"])
@pytest.mark.parametrize(
    ("debug", "trap"), [(False, True), (True, None)], ids=["trap-setting", "debug"]
)
def test_trap_bad_request_errors_raises_the_key_error(path, debug, trap) -> None:
    app = karaffe.App("trap")
    app.config.update(DEBUG=debug, TRAP_BAD_REQUEST_ERRORS=trap, TESTING=True)
    app.add_url_rule(path, "form", lambda: request.form["missing"])
    with pytest.raises(KeyError, match="missing"):
        app.test_client().get(path)


@pytest.mark.parametrize("path", ["/missing", "/api/missing"])
def test_trap_http_exceptions_raises_on_html_and_api_routes(make_app, path) -> None:
    app = make_app({"TRAP_HTTP_EXCEPTIONS": True})
    with pytest.raises(NotFound):
        app.test_client().get(path)


@pytest.mark.parametrize("value", [True, False])
def test_templates_auto_reload_set_after_init_applies(value) -> None:
    app = karaffe.App("templates")
    app.config["TEMPLATES_AUTO_RELOAD"] = value
    assert app.jinja_env.auto_reload is value


def test_templates_auto_reload_follows_debug_by_default(make_app) -> None:
    assert make_app().jinja_env.auto_reload is False
    assert make_app({"DEBUG": True}).jinja_env.auto_reload is True
    assert make_app({"TEMPLATES_AUTO_RELOAD": True}).jinja_env.auto_reload is True


@pytest.mark.parametrize("path", ["/gone", "/api/gone"])
def test_user_errorhandler_for_exception_receives_http_exceptions(make_app, path) -> None:
    app = make_app()
    app.add_url_rule(path, "gone", lambda: abort(410))
    seen: list[Exception] = []

    @app.errorhandler(Exception)
    def everything(e: Exception) -> tuple[str, int]:
        seen.append(e)
        return "handled by the app", 299

    rv = app.test_client().get(path)
    assert (rv.status_code, rv.data) == (299, b"handled by the app")
    assert [type(e).__name__ for e in seen] == ["Gone"]


def test_blueprint_errorhandler_for_exception_receives_http_exceptions(make_app) -> None:
    app = make_app()
    bp = Blueprint("items", __name__, url_prefix="/api/items")
    bp.add_url_rule("/<int:n>", "item", lambda n: abort(404))
    bp.register_error_handler(Exception, lambda e: ("blueprint handler", 299))
    app.register_blueprint(bp)
    assert app.test_client().get("/api/items/1").data == b"blueprint handler"


def test_handler_returning_the_http_exception_gets_the_default_rendering(make_app) -> None:
    app = make_app()
    app.add_url_rule("/api/gone", "api_gone", lambda: abort(410))
    app.add_url_rule("/gone", "gone", lambda: abort(410))

    @app.errorhandler(Exception)
    def pass_http_errors_through(e: Exception) -> t.Any:
        if isinstance(e, HTTPException):
            return e  # as in Flask's docs: "the default"
        return "other", 500

    client = app.test_client()
    assert client.get("/api/gone").mimetype == "application/problem+json"
    assert client.get("/gone").mimetype == "text/html"


def test_user_500_handler_receives_unhandled_exceptions_on_api_routes(make_app) -> None:
    app = make_app({"PROPAGATE_EXCEPTIONS": False})

    @app.get("/api/crash")
    def crash() -> str:
        raise RuntimeError("boom")

    @app.errorhandler(500)
    def server_error(e: HTTPException) -> tuple[str, int]:
        original = e.original_exception  # type: ignore[attr-defined]
        return f"handled {type(original).__name__}", 500

    app.logger.disabled = True
    rv = app.test_client().get("/api/crash")
    assert (rv.status_code, rv.data) == (500, b"handled RuntimeError")


def test_got_request_exception_is_sent_for_crashes_on_api_routes(make_app) -> None:
    # Error reporters (Sentry's Flask integration...) listen to this signal.
    app = make_app({"PROPAGATE_EXCEPTIONS": False})

    @app.get("/api/crash")
    def crash() -> str:
        raise RuntimeError("boom")

    sent: list[BaseException] = []

    def record(sender: Flask, exception: BaseException, **extra: t.Any) -> None:
        sent.append(exception)

    app.logger.disabled = True
    with got_request_exception.connected_to(record, app):
        assert app.test_client().get("/api/crash").status_code == 500
    assert [str(e) for e in sent] == ["boom"]


def test_api_exception_handler_can_be_replaced_by_the_app(make_app) -> None:
    app = make_app()

    @app.get("/api/refuse")
    def refuse() -> str:
        raise karaffe.Conflict("taken")

    app.register_error_handler(karaffe.ApiException, lambda e: ({"oops": e.message}, e.status))
    rv = app.test_client().get("/api/refuse")
    assert (rv.status_code, rv.get_json()) == (409, {"oops": "taken"})


def test_redirects_and_ready_responses_on_api_routes_stay_as_they_are(make_app) -> None:
    app = make_app()
    app.add_url_rule("/api/things/", "things", lambda: "things")
    app.add_url_rule("/api/teapot", "teapot", lambda: abort(app.response_class("tea", 418)))
    client = app.test_client()
    assert client.get("/api/things").status_code == 308  # strict slashes redirect
    rv = client.get("/api/teapot")
    assert (rv.status_code, rv.data, rv.mimetype) == (418, b"tea", "text/html")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/missing"),
        ("delete", "/api/only-get"),
        ("get", "/api/gone"),
        ("get", "/api/crash"),
    ],
)
def test_without_api_prefixes_errors_render_exactly_as_in_flask(make_app, method, path) -> None:
    # problem+json on API routes is a difference on purpose; API_PREFIXES=[]
    # turns it off (docs/flask-compatibility.md).
    def routes(app: Flask) -> Flask:
        app.config.update(SECRET_KEY="x", PROPAGATE_EXCEPTIONS=False)
        app.logger.disabled = True
        app.add_url_rule("/api/only-get", "only_get", lambda: "x")
        app.add_url_rule("/api/gone", "gone", lambda: abort(410))
        app.add_url_rule("/api/crash", "crash", lambda: 1 / 0)
        return app

    class NoHeaders(karaffe.App):  # the other difference on purpose, turned off too
        security_headers_class = None

    app = NoHeaders("same")
    app.configure({"TESTING": True, "API_PREFIXES": []}, environ={})
    flask_rv = getattr(routes(Flask("same")).test_client(), method)(path)
    app_rv = getattr(routes(app).test_client(), method)(path)
    assert (app_rv.status, app_rv.headers, app_rv.data) == (
        flask_rv.status,
        flask_rv.headers,
        flask_rv.data,
    )


# -- the HTML error hook -----------------------------------------------------


@pytest.fixture
def paged_app(make_app) -> karaffe.App:
    """An app whose HTML errors render with an ``html_errorhandler``."""
    app = make_app({"PROPAGATE_EXCEPTIONS": False})

    @app.html_errorhandler
    def error_page(e: HTTPException) -> tuple[str, int]:
        return f"<h1>{e.code} {e.name}</h1>", e.code or 500

    @app.get("/crash")
    def crash() -> str:
        raise RuntimeError("boom")

    app.add_url_rule("/form", "form", lambda: request.form["missing"], methods=["POST"])
    return app


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("get", "/missing", 404, b"<h1>404 Not Found</h1>"),
        ("delete", "/crash", 405, b"<h1>405 Method Not Allowed</h1>"),
        ("post", "/form", 400, b"<h1>400 Bad Request</h1>"),
        ("get", "/crash", 500, b"<h1>500 Internal Server Error</h1>"),
    ],
)
def test_html_errorhandler_renders_http_errors_on_html_routes(
    paged_app, method, path, status, body
) -> None:
    paged_app.logger.disabled = True
    rv = getattr(paged_app.test_client(), method)(path)
    assert (rv.status_code, rv.data) == (status, body)


def test_html_errorhandler_leaves_api_routes_their_problems(paged_app) -> None:
    rv = paged_app.test_client().get("/api/missing")
    assert rv.mimetype == "application/problem+json"


def test_html_errorhandler_comes_after_the_apps_error_handlers(paged_app) -> None:
    paged_app.register_error_handler(404, lambda e: ("the app's own 404", 404))
    assert paged_app.test_client().get("/missing").data == b"the app's own 404"


def test_html_errorhandler_returning_the_exception_keeps_werkzeugs_page(make_app) -> None:
    app = make_app()
    app.html_errorhandler(lambda e: e)
    rv = app.test_client().get("/missing")
    assert rv.status_code == 404
    assert b"The requested URL was not found" in rv.data


def test_html_errorhandler_is_refused_after_the_first_request(paged_app) -> None:
    paged_app.test_client().get("/missing")
    with pytest.raises(AssertionError, match="html_errorhandler"):
        paged_app.html_errorhandler(lambda e: e)
