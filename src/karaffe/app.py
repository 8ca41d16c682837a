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
import sys
import typing as t
from collections.abc import Mapping

from flask import Flask, Response, request
from flask.typing import ResponseReturnValue
from pydantic import BaseModel
from werkzeug.exceptions import HTTPException
from werkzeug.sansio.response import Response as SansIOResponse
from werkzeug.utils import ImportStringError, find_modules, import_string
from werkzeug.wrappers import Response as BaseResponse

from .api.errors import ApiException, InternalServerError, ProblemFormatter, from_http_exception
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
from .sessions import CookieSessionInterface

__all__ = ["App", "BlueprintImportError"]

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


class App(Flask):
    """A Flask application with karaffe's conventions built in.

    It is plain Flask: everything karaffe adds goes through Flask's own
    extension points (``make_response``, error handlers, ``extensions``).
    """

    #: Renders every API error; replace it to change the envelope everywhere.
    problem_formatter: ProblemFormatter = ProblemFormatter()

    #: Flask's signed-cookie sessions, without their per-request set-up cost.
    session_interface = CookieSessionInterface()

    #: Adds Content-Security-Policy, X-Frame-Options, X-Content-Type-Options,
    #: Referrer-Policy (and HSTS when configured) to every response: a
    #: :class:`karaffe.headers.SecurityHeaders` subclass, or ``None`` for none.
    security_headers_class: type[SecurityHeaders] | None = SecurityHeaders

    def __init__(self, import_name: str, *, env_prefix: str | None = None, **kwargs: t.Any) -> None:
        super().__init__(import_name, **kwargs)
        #: Environment variable prefixes read by :meth:`configure`, in order.
        self.env_prefixes = ["KARAFFE_"]
        app_prefix = env_prefix or f"{import_name.split('.')[0].upper()}_"
        if app_prefix not in self.env_prefixes and app_prefix[0].isalpha():
            self.env_prefixes.append(app_prefix)
        self.configured = False
        self.register_error_handler(ApiException, self.handle_api_exception)
        self.register_error_handler(HTTPException, self.handle_http_exception_for_api)
        self.add_template_filter(htmljson_filter, "htmljson")
        #: The installed :attr:`security_headers_class`, if any.
        self.security_headers = (
            self.security_headers_class(self) if self.security_headers_class else None
        )
        from .cli import cli

        self.cli.add_command(cli)

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
            elif key not in known:
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
                elif key not in known:
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
        response (slide 36); everything else as Flask does."""
        if isinstance(rv, ApiResult):
            return rv.to_response()
        if isinstance(rv, BaseModel):
            return ApiResult(rv).to_response()
        return super().make_response(rv)

    def handle_api_exception(self, exc: ApiException) -> BaseResponse:
        """Render an :class:`ApiException` with :attr:`problem_formatter`."""
        return self.problem_formatter.to_response(exc)

    def handle_http_exception_for_api(
        self, exc: HTTPException
    ) -> BaseResponse | HTTPException | SansIOResponse:
        """On API routes, Werkzeug's HTTP errors (404 for an unknown URL, 405,
        413...) get the problem envelope; on HTML routes they stay HTML."""
        if exc.code is None or not self.is_api_request():
            return exc
        if exc.response is not None:
            return exc.response
        return self.handle_api_exception(from_http_exception(exc))

    def handle_exception(self, e: Exception) -> Response:
        """An unhandled exception on an API route is a 500 problem that reveals
        nothing of the error; it is logged with its traceback as Flask does."""
        propagate = self.config["PROPAGATE_EXCEPTIONS"]
        if propagate is None:
            propagate = self.testing or self.debug
        if propagate or not self.is_api_request():
            return super().handle_exception(e)
        self.log_exception(sys.exc_info())
        return self.finalize_request(
            self.handle_api_exception(InternalServerError()), from_error_handler=True
        )
