"""The application: a Flask subclass that knows karaffe's settings, finds its
blueprints, and turns ``ApiResult`` and ``ApiException`` into responses
(slides 20-23 and 35-37).

An app is built by its own factory, the way the talk recommends::

    def create_app(config=None):
        app = karaffe.App(__name__)
        app.configure(config)
        app.register_blueprints("myapp.blueprints")
        return app
"""

from __future__ import annotations

import logging
import os
import typing as t
from collections.abc import Callable, Mapping

from flask import Flask, current_app, has_request_context, request
from flask.sansio.scaffold import setupmethod
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from werkzeug.datastructures import ImmutableDict
from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map
from werkzeug.utils import ImportStringError, find_modules, import_string
from werkzeug.wrappers import Response as BaseResponse

from .api.errors import ApiException, ProblemFormatter, from_http_exception
from .api.result import ApiResult
from .config import (
    PASSTHROUGH_PREFIXES,
    ConfigError,
    CoreSettings,
    FlaskSettings,
    Settings,
    known_keys,
    parse_loose,
    unknown_key,
)
from .config import _store as _settings_store
from .headers import SecurityHeaders
from .htmljson import htmljson_filter
from .ids import IdConverter
from .sessions import CookieSessionInterface
from .wrappers import Response

if t.TYPE_CHECKING:
    from flask.templating import Environment

__all__ = ["App", "BlueprintImportError", "HtmlErrorHandler"]

#: A function that renders an HTTP error as an HTML page (see :meth:`App.html_errorhandler`).
HtmlErrorHandler = Callable[[HTTPException], ResponseReturnValue]
_H = t.TypeVar("_H", bound=HtmlErrorHandler)

log = logging.getLogger("karaffe")

_DEVELOPMENT_KEY = "karaffe-insecure-development-key"
#: Shortest secret key accepted outside debug and testing.
MIN_SECRET_LENGTH = 32


def _check_secrets(core: CoreSettings) -> None:
    if not core.secret_key:
        raise ConfigError(
            "setting SECRET_KEY is required: set KARAFFE_SECRET_KEY or pass it in config"
        )
    keys = [("SECRET_KEY", core.secret_key)]
    keys += [(f"SECRET_KEY_FALLBACKS[{i}]", k) for i, k in enumerate(core.secret_key_fallbacks)]
    for name, key in keys:
        if len(key) < MIN_SECRET_LENGTH:
            raise ConfigError(
                f"setting {name} is too short: {len(key)} characters, at least "
                f"{MIN_SECRET_LENGTH} outside debug and testing "
                '(python -c "import secrets; print(secrets.token_urlsafe(32))" makes one)'
            )


class BlueprintImportError(ImportError):
    """A module under the blueprints package failed to import."""


class UrlMap(Map):
    """Werkzeug's URL map with karaffe's converters: ``<id:name>`` for row ids
    (:class:`karaffe.ids.IdConverter`)."""

    default_converters = ImmutableDict({**Map.default_converters, "id": IdConverter})


class App(Flask):
    """A Flask application with karaffe's conventions built in.

    It is plain Flask: everything karaffe adds goes through Flask's own
    extension points (``make_response``, error handlers, ``extensions``), and
    an ``App`` that is never configured behaves as a ``Flask`` does: Flask's
    own test suite runs against it (``tests/compat``). The one difference on
    purpose: HTTP errors on API routes render as problem+json.
    """

    url_map_class = UrlMap

    #: Flask's response class, sent without validating its headers a second
    #: time (:class:`karaffe.wrappers.Response`).
    response_class = Response

    #: Renders every API error; replace it to change the envelope everywhere.
    problem_formatter: ProblemFormatter = ProblemFormatter()

    #: Flask's signed-cookie sessions, without their per-request set-up cost.
    session_interface = CookieSessionInterface()

    #: Renders HTTP errors on HTML routes that no error handler answered; set
    #: it with :meth:`html_errorhandler`. ``None`` keeps Werkzeug's pages.
    html_error_handler: HtmlErrorHandler | None = None

    #: Installed by :meth:`configure`, adds Content-Security-Policy,
    #: X-Frame-Options, X-Content-Type-Options, Referrer-Policy (and HSTS when
    #: set) to every response: a :class:`karaffe.headers.SecurityHeaders`
    #: subclass, or ``None`` for none.
    security_headers_class: type[SecurityHeaders] | None = SecurityHeaders

    def __init__(self, import_name: str, *, env_prefix: str | None = None, **kwargs: t.Any) -> None:
        super().__init__(import_name, **kwargs)
        #: Environment variable prefixes read by :meth:`configure`, in order.
        self.env_prefixes = ["KARAFFE_"]
        app_prefix = env_prefix or f"{import_name.split('.')[0].upper()}_"
        if app_prefix not in self.env_prefixes and app_prefix[0].isalpha():
            self.env_prefixes.append(app_prefix)
        self.configured = False
        # A module function rather than the bound method: an app that refers
        # to itself is a reference cycle, and CPython could not free it when
        # its last reference goes. HTTP errors get no handler at all (see
        # make_response), so that the app's own handlers keep Flask's order.
        self.register_error_handler(ApiException, _handle_api_exception)
        #: The installed :attr:`security_headers_class`, once configured.
        self.security_headers: SecurityHeaders | None = None

    # -- configuration -------------------------------------------------------

    def configure(
        self,
        config: Mapping[str, t.Any] | None = None,
        *,
        environ: Mapping[str, str] | None = None,
        defaults: Mapping[str, t.Any] | None = None,
    ) -> None:
        """Load settings: declared defaults < ``defaults`` < environment < ``config``.

        The environment is read under each prefix in :attr:`env_prefixes`
        (``KARAFFE_`` then the app's, such as ``TRACKER_``; the app's wins),
        and some settings also read a conventional name (``DATABASE_URL``).
        Every part's settings (:class:`karaffe.Settings`) are parsed from these
        sources by their type, once, whether the part is set up before or
        after this call. An unknown or malformed value, a malformed URL, or
        outside debug and testing a missing or short secret, raises
        :class:`karaffe.ConfigError` naming it.
        """
        store = _settings_store(self)
        store.explicit = dict(config or {})
        store.defaults = dict(defaults or {})
        store.environ = os.environ if environ is None else environ
        store.prefixes = tuple(self.env_prefixes)
        store.configured = True
        earlier = list(store.resolved)
        store.resolved.clear()
        present = self._refuse_unknown_keys(store)
        FlaskSettings.of(self)
        lenient = bool(self.debug or self.testing)
        if lenient:
            store.defaults = {"SECRET_KEY": _DEVELOPMENT_KEY, **store.defaults}
        core = CoreSettings.of(self)
        if not lenient:
            _check_secrets(core)
        # Every part named by the sources is parsed now, so a bad value stops
        # start-up even when the part is set up later.
        for cls in (*earlier, *present):
            cls.of(self)
        # Here rather than in __init__: an App that is never configured is a
        # Flask, headers included (docs/flask-compatibility.md).
        if self.security_headers is None and self.security_headers_class is not None:
            self.security_headers = self.security_headers_class(self)
        self.configured = True

    def _refuse_unknown_keys(self, store: t.Any) -> list[type[Settings]]:
        """Keys of the mapping, and variables under the app's prefixes, that no
        part declares are refused; the extensions' own keys pass through.
        Returns the Settings classes that the sources set keys of."""
        known = known_keys()
        present: dict[type[Settings], None] = {}
        for key, value in store.explicit.items():
            if key.startswith(PASSTHROUGH_PREFIXES):
                self.config[key] = value
            elif key not in known_keys(key):
                raise unknown_key(key, "the config mapping", known)
            else:
                present[known[key]] = None
        for prefix in store.prefixes:
            for variable, raw in store.environ.items():
                key = variable[len(prefix) :]
                if not variable.startswith(prefix) or key in store.explicit:
                    continue
                if key.startswith(PASSTHROUGH_PREFIXES):
                    self.config[key] = parse_loose(raw)
                elif key not in known_keys(key):
                    raise unknown_key(key, f"environment variable {variable}", known)
                else:
                    present[known[key]] = None
        for cls in set(known.values()):
            if any(n in store.environ for n in cls.conventional_env()):
                present[cls] = None
        return list(present)

    # -- blueprints ----------------------------------------------------------

    def register_blueprints(self, package: str, **options: t.Any) -> list[str]:
        """Register the ``blueprint`` of every module under ``package`` (slide 22).

        Modules are visited in sorted order, recursively, so registration is the
        same on every machine. A module without a ``blueprint`` is skipped; one
        that fails to import stops start-up with :class:`BlueprintImportError`
        naming it. Returns the names of the modules registered.
        """
        registered = []
        for name in sorted(find_modules(package, include_packages=True, recursive=True)):
            try:
                module = import_string(name)
            except Exception as exc:
                cause = exc.exception if isinstance(exc, ImportStringError) else exc
                raise BlueprintImportError(
                    f"blueprint module {name} failed to import: {type(cause).__name__}: {cause}"
                ) from cause
            blueprint = getattr(module, "blueprint", None)
            if blueprint is not None:
                self.register_blueprint(blueprint, **options)
                registered.append(name)
        return registered

    # -- API responses and errors ---------------------------------------------

    def is_api_request(self) -> bool:
        """Whether errors of the current request render as problem+json: its
        path is under one of ``API_PREFIXES``. Override for other rules."""
        path = request.path
        return any(
            path == prefix or path.startswith(prefix.rstrip("/") + "/")
            for prefix in CoreSettings.of(self).api_prefixes
        )

    def make_response(self, rv: ResponseReturnValue | ApiResult | BaseModel) -> BaseResponse:  # type: ignore[override]
        """Turn an :class:`ApiResult` (or a bare pydantic model) into a JSON
        response (slide 36), and an HTTP error into :meth:`http_error_response`;
        everything else as Flask does."""
        if isinstance(rv, ApiResult):
            return rv.to_response(self)
        if isinstance(rv, BaseModel):
            return ApiResult(rv).to_response(self)
        if isinstance(rv, HTTPException) and has_request_context():
            rv = self.http_error_response(rv)
        return super().make_response(rv)

    def handle_api_exception(self, exc: ApiException) -> BaseResponse:
        """Render an :class:`ApiException` with :attr:`problem_formatter`."""
        return self.problem_formatter.to_response(exc)

    def answer_api_exception(
        self, exc: ApiException, view: Callable[..., t.Any]
    ) -> BaseResponse | None:
        """The response to ``exc``, raised in ``view`` (or while its input was
        parsed), without raising it through Flask's exception dispatch; or
        ``None``: raise it.

        :func:`karaffe.validate`'s views call this. It answers only where
        raising would come to the same response: ``view`` is the function
        Flask calls for the request's endpoint (no decorator around it could
        catch the exception), this class dispatches exceptions as Flask does,
        and the handler Flask would pick, looking in the request's blueprints
        and then the app, most specific class first, is karaffe's own
        (:meth:`handle_api_exception`). A handler the app registered for the
        exception's class or one of its bases still wins.
        """
        req = request._get_current_object()  # type: ignore[attr-defined]
        rule = req.url_rule
        if (
            rule is None
            or self.view_functions.get(rule.endpoint) is not view
            or isinstance(exc, HTTPException)
            or type(self).handle_user_exception is not Flask.handle_user_exception
            or self._error_handler_for(type(exc), req.blueprints) is not _handle_api_exception
        ):
            return None
        return self.handle_api_exception(exc)

    def _error_handler_for(
        self, exc_class: type[BaseException], blueprints: list[str]
    ) -> Callable[..., t.Any] | None:
        """The handler Flask's dispatch picks for an exception that is not an
        HTTP error: the blueprints' (innermost first), then the app's; in
        each, the one for the most specific class."""
        for name in (*blueprints, None):
            handlers = self.error_handler_spec.get(name, {}).get(None)
            if handlers:
                for cls in exc_class.__mro__:
                    handler = handlers.get(cls)
                    if handler is not None:
                        return handler
        return None

    def http_error_response(self, exc: HTTPException) -> ResponseReturnValue:
        """What an HTTP error becomes when it reaches :meth:`make_response`:
        no error handler answered it, or one returned it to ask for the
        default, as in Flask. On API routes that is the problem document (a
        500 reveals nothing of its cause); on HTML routes the page of the
        :meth:`html_errorhandler`, else Werkzeug's page. Either way the
        error's own headers (``Retry-After``, ``WWW-Authenticate``,
        ``Allow``) are kept.

        Flask's order is untouched: the app's and its blueprints' error
        handlers (including one for ``Exception``) see every HTTP error first,
        ``TRAP_HTTP_EXCEPTIONS`` raises it, and a handler for 500 receives the
        ``InternalServerError`` of an unhandled exception.
        """
        if exc.code is None or exc.code < 400 or exc.response is not None:
            return exc  # redirects, and abort(response): their response is ready
        if self.is_api_request():
            return self.handle_api_exception(from_http_exception(exc))
        if self.html_error_handler is not None:
            rv = self.ensure_sync(self.html_error_handler)(exc)
            if isinstance(rv, HTTPException):
                return rv  # Werkzeug's page, asked for by returning the error
            # Only the body changes, as for API routes: what the error says
            # in its headers (Retry-After, WWW-Authenticate, Allow) is kept.
            response = super().make_response(rv)
            for name, value in exc.get_headers():
                if name.lower() != "content-type" and name not in response.headers:
                    response.headers[name] = value
            return response
        return exc

    @setupmethod
    def html_errorhandler(self, f: _H) -> _H:
        """Register the function that renders HTTP errors on HTML routes as a
        page, for the errors no error handler answers::

            @app.html_errorhandler
            def error_page(e: HTTPException):
                return render_template("error.html", error=e), e.code

        It is called with the ``HTTPException`` (a 404, the 400 of a bad CSRF
        token, the 500 of an unhandled exception...) and returns what a view
        returns. Returning the exception keeps Werkzeug's page. API routes
        keep their problem documents.
        """
        self.html_error_handler = f
        return f

    def create_jinja_environment(self) -> Environment:
        """Flask's Jinja environment, with the ``htmljson`` filter.

        It is created on first use, as Flask creates it, so that settings such
        as ``TEMPLATES_AUTO_RELOAD`` take effect when set after ``__init__``.
        """
        env = super().create_jinja_environment()
        env.filters["htmljson"] = htmljson_filter
        return env


def _handle_api_exception(exc: ApiException) -> BaseResponse:
    return t.cast(App, current_app).handle_api_exception(exc)
