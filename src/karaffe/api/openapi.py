"""OpenAPI 3.1 from the routes and their declared models, and offline docs.

::

    ApiDocs(title="Tracker API", version="1.0", url_prefix="/api/v1").init_app(app)

serves ``/api/v1/openapi.json`` and an interactive page at ``/api/v1/docs``
whose scripts and styles the app serves itself (Swagger UI, from the
``flask-swagger-ui`` package), so the docs work with no network.

Every route under the docs' ``url_prefix`` (or declared with
:func:`karaffe.validate` / :func:`karaffe.returns`) is documented. Error
responses reference one ``Problem`` component built from the app's
``problem_formatter.model``: the schema that is documented is the class that
renders every error.
"""

from __future__ import annotations

import re
import typing as t
from dataclasses import dataclass
from http import HTTPStatus
from importlib import resources
from pathlib import Path

from flask import Blueprint, Flask, current_app, render_template_string, send_from_directory
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import (
    GenerateJsonSchema,
    JsonSchemaMode,
    JsonSchemaValue,
    models_json_schema,
)
from werkzeug.routing.converters import (
    AnyConverter,
    FloatConverter,
    IntegerConverter,
    UnicodeConverter,
    UUIDConverter,
)

from ..config import CoreSettings
from ..ids import MAX_ID, IdConverter
from .errors import ProblemFormatter
from .result import ApiResult
from .validation import EndpointSpec, endpoint_spec

if t.TYPE_CHECKING:
    from werkzeug.routing import Rule

__all__ = ["ApiDocs", "StandardJsonSchema"]

_REF = "#/components/schemas/{model}"
_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
{%- if csrf_header %}
<meta name="csrf-token" content="{{ csrf_token() }}">
<meta name="csrf-header" content="{{ csrf_header }}">
{%- endif %}
<title>{{ title }}</title>
<link rel="stylesheet" href="{{ url_for(endpoint + '.asset', filename='swagger-ui.css') }}">
</head><body><div id="docs"></div>
<script src="{{ url_for(endpoint + '.asset', filename='swagger-ui-bundle.js') }}"></script>
<script src="{{ url_for(endpoint + '.asset', filename='docs-init.js') }}"
  data-spec="{{ url_for(endpoint + '.spec') }}"></script>
</body></html>
"""

# A file, not an inline script, so the page runs under a Content-Security-Policy
# without 'unsafe-inline'. Writes made with the browser's login session carry
# the CSRF token from the page's meta tag; a bearer token set with "Authorize"
# is sent by Swagger UI itself (and then the session is not used at all).
_DOCS_INIT = """(function () {
  "use strict";
  var spec = document.currentScript.getAttribute("data-spec");
  function meta(name) {
    var node = document.querySelector('meta[name="' + name + '"]');
    return node ? node.getAttribute("content") : null;
  }
  var csrfToken = meta("csrf-token");
  var csrfHeader = meta("csrf-header");
  var safe = { GET: true, HEAD: true, OPTIONS: true, TRACE: true };
  window.ui = SwaggerUIBundle({
    url: spec,
    dom_id: "#docs",
    deepLinking: true,
    validatorUrl: null,
    requestInterceptor: function (request) {
      var method = (request.method || "GET").toUpperCase();
      if (csrfToken && csrfHeader && !safe[method]) {
        request.headers = request.headers || {};
        request.headers[csrfHeader] = csrfToken;
      }
      return request;
    }
  });
})();
"""


def _swagger_dist() -> Path:
    return Path(str(resources.files("flask_swagger_ui"))) / "dist"


class ApiDocs:
    """The OpenAPI document and docs page for an app (or part of one).

    :param title: the API's title.
    :param version: the API's version (``info.version``).
    :param url_prefix: where ``openapi.json`` and ``docs`` are served, and which
        routes are documented: those under it (all API routes when empty).
    :param description: Markdown shown at the top of the docs.
    :param name: the blueprint name, when an app has several ``ApiDocs``.
    """

    def __init__(
        self,
        title: str = "API",
        version: str = "1.0",
        *,
        url_prefix: str = "",
        description: str | None = None,
        name: str = "karaffe_docs",
        app: Flask | None = None,
    ) -> None:
        self.title, self.version, self.description = title, version, description
        self.url_prefix = url_prefix.rstrip("/")
        self.name = name
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        bp = Blueprint(self.name, __name__, url_prefix=self.url_prefix or None)
        bp.add_url_rule("/openapi.json", "spec", self._spec_view)
        bp.add_url_rule("/docs", "docs", self._docs_view)
        bp.add_url_rule("/docs/assets/<path:filename>", "asset", self._asset_view)
        app.register_blueprint(bp)
        app.extensions.setdefault("karaffe.docs", []).append(self)

    # -- views ------------------------------------------------------------------

    def _spec_view(self) -> ResponseReturnValue:
        cache = current_app.extensions.setdefault("karaffe.docs.cache", {})
        if self.name not in cache or current_app.debug:
            cache[self.name] = self.spec(current_app)
        return ApiResult(cache[self.name])

    def _docs_view(self) -> ResponseReturnValue:
        csrf_header = _csrf_header(current_app)
        csrf_token: t.Callable[[], str] | None = None
        if csrf_header is not None:
            from flask_wtf.csrf import generate_csrf

            csrf_token = generate_csrf
        return render_template_string(
            _DOCS_PAGE,
            title=self.title,
            endpoint=self.name,
            csrf_header=csrf_header,
            csrf_token=csrf_token,
        )

    def _asset_view(self, filename: str) -> ResponseReturnValue:
        if filename == "docs-init.js":
            return current_app.response_class(_DOCS_INIT, mimetype="text/javascript")
        return send_from_directory(_swagger_dist(), filename, max_age=3600)

    # -- the document -------------------------------------------------------------

    def documents(self, app: Flask, rule: Rule) -> bool:
        """Whether ``rule`` belongs in this document. Override to choose."""
        if rule.endpoint.startswith(self.name + ".") or rule.endpoint == "static":
            return False
        if self.url_prefix:
            return rule.rule.startswith(self.url_prefix + "/")
        view = app.view_functions.get(rule.endpoint)
        if view is not None and endpoint_spec(view) is not None:
            return True
        prefixes = CoreSettings.of(app).api_prefixes
        return any(rule.rule.startswith(p.rstrip("/") + "/") for p in prefixes)

    def spec(self, app: Flask) -> dict[str, t.Any]:
        """Build the OpenAPI 3.1 document for ``app``."""
        formatter: ProblemFormatter = getattr(app, "problem_formatter", ProblemFormatter())
        problem_model = formatter.model
        operations: list[tuple[Rule, str, EndpointSpec | None, t.Callable[..., t.Any]]] = []
        wanted: dict[tuple[type[BaseModel], JsonSchemaMode], None] = {
            (problem_model, "serialization"): None
        }
        adapters: list[tuple[str, TypeAdapter[t.Any]]] = []
        for rule in sorted(app.url_map.iter_rules(), key=lambda r: (r.rule, r.endpoint)):
            if not self.documents(app, rule):
                continue
            view = app.view_functions[rule.endpoint]
            spec = endpoint_spec(view)
            for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
                operations.append((rule, method, spec, view))
            if spec is None:
                continue
            for model in (spec.body, spec.query, spec.path):
                if model is not None:
                    wanted[(model, "validation")] = None
            if isinstance(spec.response, type) and issubclass(spec.response, BaseModel):
                wanted[(spec.response, "serialization")] = None
            elif spec.response is not None:
                adapters.append((rule.endpoint, TypeAdapter(spec.response)))

        refs, defs = models_json_schema(
            list(wanted), ref_template=_REF, schema_generator=StandardJsonSchema
        )
        schemas: dict[str, t.Any] = dict(defs.get("$defs", {}))
        for endpoint, adapter in adapters:
            schema = adapter.json_schema(
                ref_template=_REF, mode="serialization", schema_generator=StandardJsonSchema
            )
            schemas.update(schema.pop("$defs", {}))
            refs[(endpoint, "serialization")] = schema  # type: ignore[index]
        # Which operations take each URL argument, for the links of responses.
        takers: dict[str, list[str]] = {}
        for rule, method, _spec, _view in operations:
            for name in sorted(rule.arguments):
                takers.setdefault(name, []).append(_operation_id(rule, method))
        context = _Context(
            app=app,
            refs=refs,
            schemas=schemas,
            takers=takers,
            problem={formatter.mimetype: {"schema": refs[(problem_model, "serialization")]}},
            schemes=self.security_schemes(app),
        )
        paths: dict[str, dict[str, t.Any]] = {}
        for rule, method, spec, view in operations:
            path = _PARAM.sub(r"{\1}", rule.rule)
            operation = self._operation(context, rule, method, spec, view)
            paths.setdefault(path, {})[method.lower()] = operation

        components: dict[str, t.Any] = {
            "schemas": schemas,
            "headers": {
                "Link": {
                    "description": 'RFC 8288 links to the "first" page, the "next" and "prev" '
                    'ones when there are, and the "last" one when counted.',
                    "required": True,
                    "schema": {"type": "string"},
                },
                "X-Total-Count": {
                    "description": "The number of items in the whole list.",
                    "required": True,
                    "schema": {"type": "integer", "minimum": 0},
                },
                "WWW-Authenticate": {
                    "description": "How to authenticate: `Bearer realm=...`.",
                    "required": True,
                    "schema": {"type": "string"},
                },
                "Retry-After": {
                    "description": "Seconds to wait before trying again.",
                    "schema": {"type": "integer", "minimum": 0},
                },
            },
        }
        if context.schemes:
            components["securitySchemes"] = context.schemes
        document: dict[str, t.Any] = {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": components,
        }
        if self.description:
            document["info"]["description"] = self.description
        return document

    # -- security -----------------------------------------------------------------

    def security_schemes(self, app: Flask) -> dict[str, dict[str, t.Any]]:
        """``components.securitySchemes``: the ways of authenticating that the
        app has. With :mod:`karaffe.auth` installed: ``bearerAuth`` (an API
        token), ``sessionCookie`` (a browser's login), and with CSRF
        protection on, ``csrfToken`` (the header session writes need).
        Override to describe other schemes (and :meth:`security` to use them)."""
        if "karaffe.auth" not in app.extensions:
            return {}
        schemes: dict[str, dict[str, t.Any]] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "An API token: `Authorization: Bearer <token>`. A request "
                "with a token ignores the session cookie and needs no CSRF token. Reads "
                "need its `read` scope, writes its `write` scope (a read-only token gets "
                "403).",
            },
            "sessionCookie": {
                "type": "apiKey",
                "in": "cookie",
                "name": app.config.get("SESSION_COOKIE_NAME") or "session",
                "description": "The login session of a browser, set when logging in "
                "on the site; the browser sends it by itself.",
            },
        }
        csrf_header = _csrf_header(app)
        if csrf_header is not None:
            schemes["csrfToken"] = {
                "type": "apiKey",
                "in": "header",
                "name": csrf_header,
                "description": "The CSRF token of the login session, which writes made "
                "with the session cookie must send (the docs page sends it by itself).",
            }
        return schemes

    def security(self, app: Flask, rule: Rule, method: str) -> list[dict[str, list[str]]] | None:
        """The operation's ``security``: ``None`` for an operation anyone may
        call; for a view behind :func:`karaffe.auth.login_required`, a bearer
        token or the session cookie (and for a write, with its CSRF token)."""
        if "karaffe.auth" not in app.extensions:
            return None
        from ..auth import requires_login

        if not requires_login(app, rule.endpoint):
            return None
        session: dict[str, list[str]] = {"sessionCookie": []}
        if _csrf_header(app) is not None and method in _csrf_methods(app):
            session["csrfToken"] = []
        return [{"bearerAuth": [_token_scope(method)]}, session]

    # -- one operation --------------------------------------------------------------

    def _operation(
        self,
        context: _Context,
        rule: Rule,
        method: str,
        spec: EndpointSpec | None,
        view: t.Callable[..., t.Any],
    ) -> dict[str, t.Any]:
        app = context.app
        summary, description = _summary(view.__doc__ or "")
        operation: dict[str, t.Any] = {"operationId": _operation_id(rule, method)}
        if summary:
            operation["summary"] = summary
        if description:
            operation["description"] = description
        if "." in rule.endpoint:
            operation["tags"] = [rule.endpoint.split(".")[0]]
        core = CoreSettings.of(app)
        validation_status = core.validation_error_status
        errors = _Errors()

        parameters: list[dict[str, t.Any]] = []
        path_model = context.model_schema(spec.path) if spec and spec.path else {}
        for name in rule.arguments:
            schema = _converter_schema(rule._converters.get(name))
            schema.update(_parameter_schema(path_model.get("properties", {}).get(name, {})))
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        if rule.arguments:
            errors.add(404, "Not found.", default=True)
        if spec is not None and spec.path is not None:
            errors.add(validation_status, "Invalid URL arguments.")

        if spec is not None and spec.query is not None:
            query = context.model_schema(spec.query)
            required = set(query.get("required", []))
            for name, prop in query.get("properties", {}).items():
                parameter = {
                    "name": name,
                    "in": "query",
                    "required": name in required,
                    "schema": _parameter_schema(prop),
                }
                if "description" in prop:
                    parameter["description"] = prop["description"]
                parameters.append(parameter)
            errors.add(validation_status, "Invalid query parameters.")
        if spec is not None and spec.paginated:
            parameters.append(
                {
                    "name": "limit",
                    "in": "query",
                    "required": False,
                    "description": "Items per page.",
                    "schema": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": core.pagination_max_limit,
                        "default": core.pagination_default_limit,
                    },
                }
            )
            parameters.append(
                {
                    "name": "cursor",
                    "in": "query",
                    "required": False,
                    "description": "Where the page starts: copy it from a Link header.",
                    "schema": {"type": "string"},
                }
            )
            errors.add(400, "The cursor is not one this list gave.")
            errors.add(validation_status, "`limit` out of range.")
        if parameters:
            operation["parameters"] = parameters

        if spec is not None and spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {
                    "application/json": {"schema": context.refs[(spec.body, "validation")]}
                },
            }
            errors.add(400, "The body is not well-formed JSON.")
            errors.add(413, f"The body is larger than {core.max_content_length} bytes.")
            errors.add(415, "The body is not sent as `application/json`.")
            errors.add(validation_status, "Invalid body: one `errors` entry per field.")

        security = self.security(app, rule, method)
        if security is not None:
            operation["security"] = security
            errors.add(401, "No credentials, or ones that are not valid (any longer).")
            if any("csrfToken" in requirement for requirement in security):
                errors.add(400, "With the session cookie: the CSRF token is missing or wrong.")
            if any("write" in requirement.get("bearerAuth", ()) for requirement in security):
                errors.add(403, "With an API token: a read-only one.")

        status = str(spec.status if spec is not None else 200)
        success: dict[str, t.Any] = {
            "description": spec.description if spec and spec.description else "Success."
        }
        if spec is not None and spec.response is not None and status != "204":
            key = spec.response if isinstance(spec.response, type) else rule.endpoint
            success["content"] = {
                "application/json": {"schema": context.refs[(key, "serialization")]}
            }
        if spec is not None and spec.paginated:
            success["headers"] = {"Link": {"$ref": "#/components/headers/Link"}}
            if spec.with_total:
                success["headers"]["X-Total-Count"] = {"$ref": "#/components/headers/X-Total-Count"}
        if spec is not None and spec.links:
            success["links"] = self._links(context, spec.links, operation["operationId"])
        responses: dict[str, t.Any] = {status: success}
        if spec is not None:
            for code, reason in spec.extra_responses.items():
                errors.add(code, reason or _reason_phrase(code))
        for code, reasons in errors.items():
            response: dict[str, t.Any] = {
                "description": " ".join(reasons),
                "content": context.problem,
            }
            if code == 401:
                response["headers"] = {
                    "WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}
                }
            elif code in (429, 503):
                response["headers"] = {"Retry-After": {"$ref": "#/components/headers/Retry-After"}}
            responses[str(code)] = response
        operation["responses"] = dict(sorted(responses.items()))
        return operation

    def _links(
        self, context: _Context, provided: dict[str, str], source: str
    ) -> dict[str, dict[str, t.Any]]:
        """OpenAPI links from a response to the operations taking the URL
        arguments it gives values for."""
        links: dict[str, dict[str, t.Any]] = {}
        for argument, pointer in sorted(provided.items()):
            for target in context.takers.get(argument, ()):
                if target == source:
                    continue
                link = links.setdefault(target, {"operationId": target, "parameters": {}})
                link["parameters"][argument] = f"$response.body#/{pointer}"
        return links


def _operation_id(rule: Rule, method: str) -> str:
    return f"{rule.endpoint}.{method.lower()}".replace(".", "_")


@dataclass
class _Context:
    """What every operation of one document is built with."""

    app: Flask
    refs: dict[t.Any, t.Any]
    schemas: dict[str, t.Any]
    takers: dict[str, list[str]]
    problem: dict[str, t.Any]
    schemes: dict[str, dict[str, t.Any]]

    def model_schema(self, model: type[BaseModel]) -> dict[str, t.Any]:
        """The JSON schema of a query or path model itself (its properties
        become parameters), not a reference to it."""
        ref = self.refs[(model, "validation")]
        if "$ref" in ref:
            return t.cast(dict[str, t.Any], self.schemas[ref["$ref"].rsplit("/", 1)[1]])
        return t.cast(dict[str, t.Any], ref)


class _Errors:
    """The error statuses of one operation, with the reasons for each."""

    def __init__(self) -> None:
        self._reasons: dict[int, list[str]] = {}
        self._defaults: set[int] = set()

    def add(self, status: int, reason: str, *, default: bool = False) -> None:
        """Add a reason; a ``default`` one gives way to any other for its status."""
        reasons = self._reasons.setdefault(status, [])
        if status in self._defaults:
            reasons.clear()
            self._defaults.discard(status)
        elif default and reasons:
            return
        if default:
            self._defaults.add(status)
        if reason not in reasons:
            reasons.append(reason)

    def items(self) -> t.Iterator[tuple[int, list[str]]]:
        return iter(sorted(self._reasons.items()))


class StandardJsonSchema(GenerateJsonSchema):
    """pydantic's JSON schema, with standard keywords only.

    pydantic 2 writes a numeric constraint that follows a validator in
    ``Annotated`` under its Python name (``Annotated[int, BeforeValidator(f),
    Field(gt=0)]`` gives ``"gt": 0``), a keyword no JSON Schema tool knows, so
    clients would not see the bound. It is renamed here to its JSON Schema
    keyword (``exclusiveMinimum``).
    """

    _KEYWORDS: t.ClassVar[dict[str, str]] = {
        "gt": "exclusiveMinimum",
        "ge": "minimum",
        "lt": "exclusiveMaximum",
        "le": "maximum",
        "multiple_of": "multipleOf",
    }

    def generate_inner(self, schema: t.Any) -> JsonSchemaValue:
        json_schema = super().generate_inner(schema)
        updates = schema.get("metadata", {}).get("pydantic_js_updates") or {}
        for name in self._KEYWORDS.keys() & updates.keys():
            if name in json_schema:
                json_schema[self._KEYWORDS[name]] = json_schema.pop(name)
        return json_schema


def _csrf_header(app: Flask) -> str | None:
    """The header CSRF tokens are read from, when CSRF protection is on."""
    if "csrf" not in app.extensions or not app.config.get("WTF_CSRF_ENABLED", True):
        return None
    headers = app.config.get("WTF_CSRF_HEADERS") or ["X-CSRFToken"]
    return str(headers[0])


def _token_scope(method: str) -> str:
    """The API token scope a request with ``method`` needs (see
    :data:`karaffe.auth.TOKEN_SCOPES`)."""
    return "read" if method in ("GET", "HEAD", "OPTIONS") else "write"


def _csrf_methods(app: Flask) -> t.Collection[str]:
    return t.cast(t.Collection[str], app.config.get("WTF_CSRF_METHODS") or ())


def _converter_schema(converter: t.Any) -> dict[str, t.Any]:
    """The JSON schema of what a URL converter matches."""
    if isinstance(converter, IdConverter):
        return {"type": "integer", "minimum": 1, "maximum": MAX_ID}
    if isinstance(converter, IntegerConverter | FloatConverter):
        schema: dict[str, t.Any] = {
            "type": "integer" if isinstance(converter, IntegerConverter) else "number"
        }
        if not converter.signed:
            schema["minimum"] = 0
        if converter.min is not None:
            schema["minimum"] = converter.min
        if converter.max is not None:
            schema["maximum"] = converter.max
        return schema
    if isinstance(converter, UUIDConverter):
        return {"type": "string", "format": "uuid"}
    if isinstance(converter, UnicodeConverter | AnyConverter):
        return {"type": "string", "pattern": f"^{converter.regex}$"}
    return {"type": "string"}


def _parameter_schema(prop: dict[str, t.Any]) -> dict[str, t.Any]:
    """A model property as the schema of a query or path parameter: a
    parameter that is left out is how "none" is sent, so ``null`` is dropped
    from the types it may take, and with it the ``None`` default."""
    schema = {k: v for k, v in prop.items() if k not in ("title", "description")}
    options = schema.get("anyOf")
    if options is not None:
        kept = [option for option in options if option != {"type": "null"}]
        if len(kept) < len(options):
            schema.pop("anyOf")
            if len(kept) == 1:
                schema = {**kept[0], **schema}
            else:
                schema["anyOf"] = kept
    if schema.get("default", 0) is None:
        schema.pop("default")
    return schema


def _summary(doc: str) -> tuple[str, str]:
    """The first paragraph of a docstring (one line), and the rest."""
    text = _dedent(doc)
    first, _, rest = text.partition("\n\n")
    return " ".join(first.split()), rest.strip()


def _reason_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase + "."
    except ValueError:
        return f"HTTP {status}."


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip()
