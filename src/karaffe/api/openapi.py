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
from importlib import resources
from pathlib import Path

from flask import Blueprint, Flask, current_app, render_template_string, send_from_directory
from flask.typing import ResponseReturnValue
from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import JsonSchemaMode, models_json_schema

from ..config import CoreSettings
from ..ids import MAX_ID
from .errors import ProblemFormatter
from .result import ApiResult
from .validation import EndpointSpec, endpoint_spec

if t.TYPE_CHECKING:
    from werkzeug.routing import Rule

__all__ = ["ApiDocs"]

_REF = "#/components/schemas/{model}"
_CONVERTER_SCHEMAS: dict[str, dict[str, t.Any]] = {
    "IntegerConverter": {"type": "integer"},
    "FloatConverter": {"type": "number"},
    "UUIDConverter": {"type": "string", "format": "uuid"},
    "IdConverter": {"type": "integer", "minimum": 1, "maximum": MAX_ID},
}
_PARAM = re.compile(r"<(?:[^:<>]+:)?([^<>]+)>")

_DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ title }}</title>
<link rel="stylesheet" href="{{ url_for(endpoint + '.asset', filename='swagger-ui.css') }}">
</head><body><div id="docs"></div>
<script src="{{ url_for(endpoint + '.asset', filename='swagger-ui-bundle.js') }}"></script>
<script src="{{ url_for(endpoint + '.asset', filename='docs-init.js') }}"
  data-spec="{{ url_for(endpoint + '.spec') }}"></script>
</body></html>
"""

_DOCS_INIT = """(function () {
  var spec = document.currentScript.getAttribute("data-spec");
  window.ui = SwaggerUIBundle({ url: spec, dom_id: "#docs", deepLinking: true });
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
        return render_template_string(_DOCS_PAGE, title=self.title, endpoint=self.name)

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

        refs, defs = models_json_schema(list(wanted), ref_template=_REF)
        schemas: dict[str, t.Any] = dict(defs.get("$defs", {}))
        for endpoint, adapter in adapters:
            schema = adapter.json_schema(ref_template=_REF, mode="serialization")
            schemas.update(schema.pop("$defs", {}))
            refs[(endpoint, "serialization")] = schema  # type: ignore[index]

        paths: dict[str, dict[str, t.Any]] = {}
        for rule, method, spec, view in operations:
            path = _PARAM.sub(r"{\1}", rule.rule)
            operation = self._operation(app, rule, method, spec, view, refs)
            paths.setdefault(path, {})[method.lower()] = operation

        document: dict[str, t.Any] = {
            "openapi": "3.1.0",
            "info": {"title": self.title, "version": self.version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "responses": {
                    "Problem": {
                        "description": "An error, as an RFC 9457 problem document.",
                        "content": {
                            formatter.mimetype: {"schema": refs[(problem_model, "serialization")]}
                        },
                    }
                },
                "headers": {
                    "Link": {
                        "description": 'RFC 8288 links to the "next", "prev" and "first" pages '
                        '(and "last" when counted).',
                        "schema": {"type": "string"},
                    },
                    "X-Total-Count": {
                        "description": "The number of items in the whole list, when counted.",
                        "schema": {"type": "integer"},
                    },
                },
            },
        }
        if self.description:
            document["info"]["description"] = self.description
        return document

    def _operation(
        self,
        app: Flask,
        rule: Rule,
        method: str,
        spec: EndpointSpec | None,
        view: t.Callable[..., t.Any],
        refs: dict[t.Any, t.Any],
    ) -> dict[str, t.Any]:
        doc = (view.__doc__ or "").strip()
        summary, _, description = doc.partition("\n")
        operation: dict[str, t.Any] = {
            "operationId": f"{rule.endpoint}.{method.lower()}".replace(".", "_"),
            "responses": {},
        }
        if summary:
            operation["summary"] = summary.strip()
        if description.strip():
            operation["description"] = _dedent(description)
        if "." in rule.endpoint:
            operation["tags"] = [rule.endpoint.split(".")[0]]

        parameters: list[dict[str, t.Any]] = []
        for name in rule.arguments:
            converter = rule._converters.get(name)
            schema = _CONVERTER_SCHEMAS.get(type(converter).__name__, {"type": "string"})
            parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
        responses = operation["responses"]
        problem = {"$ref": "#/components/responses/Problem"}
        validation_status = str(CoreSettings.of(app).validation_error_status)

        if spec is not None and spec.query is not None:
            schema = spec.query.model_json_schema(ref_template=_REF)
            schema.pop("$defs", None)
            required = set(schema.get("required", []))
            for name, prop in schema.get("properties", {}).items():
                parameters.append(
                    {
                        "name": name,
                        "in": "query",
                        "required": name in required,
                        "schema": prop,
                        **({"description": prop["description"]} if "description" in prop else {}),
                    }
                )
            responses[validation_status] = problem
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
                        "maximum": CoreSettings.of(app).pagination_max_limit,
                        "default": CoreSettings.of(app).pagination_default_limit,
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
            responses["400"] = problem
            responses[validation_status] = problem
        if parameters:
            operation["parameters"] = parameters

        if spec is not None and spec.body is not None:
            operation["requestBody"] = {
                "required": True,
                "content": {"application/json": {"schema": refs[(spec.body, "validation")]}},
            }
            for status in ("400", "413", "415", validation_status):
                responses[status] = problem

        status = str(spec.status if spec is not None else 200)
        success: dict[str, t.Any] = {
            "description": spec.description if spec and spec.description else "Success."
        }
        if spec is not None and spec.response is not None and status != "204":
            key = spec.response if isinstance(spec.response, type) else rule.endpoint
            schema = refs[(key, "serialization")]
            success["content"] = {"application/json": {"schema": schema}}
        if spec is not None and spec.paginated:
            success["headers"] = {
                "Link": {"$ref": "#/components/headers/Link"},
                "X-Total-Count": {"$ref": "#/components/headers/X-Total-Count"},
            }
        responses[status] = success
        if rule.arguments:
            responses.setdefault("404", problem)
        if spec is not None:
            for code in spec.extra_responses:
                responses[str(code)] = problem
        responses["default"] = problem
        operation["responses"] = dict(sorted(responses.items()))
        return operation


def _dedent(text: str) -> str:
    import textwrap

    return textwrap.dedent(text).strip()
