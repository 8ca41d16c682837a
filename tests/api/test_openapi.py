"""The OpenAPI 3.1 document is generated from declared routes, validates
against the OpenAPI schema, and documents errors with the very model that
renders them; the docs page needs no network."""

from __future__ import annotations

import re
import typing as t
from unittest import mock

import pytest
from flask import Blueprint
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel, BeforeValidator, Field

import karaffe
from karaffe.api.errors import Problem


class IssueIn(BaseModel):
    title: str = Field(min_length=1, max_length=200, description="What is wrong.")


class IssueOut(BaseModel):
    id: int
    title: str


class IssueFilter(BaseModel):
    status: t.Literal["open", "closed"] = "open"
    label: list[str] = []


@pytest.fixture
def app(make_app):
    app = make_app()
    bp = Blueprint("issues", __name__, url_prefix="/api/v1/issues")

    @bp.post("")
    @karaffe.validate(body=IssueIn)
    @karaffe.returns(IssueOut, status=201)
    def create(body: IssueIn) -> dict[str, t.Any]:
        """Create an issue.

        The title must not be empty.
        """
        return {"id": 1, "title": body.title}

    @bp.get("")
    @karaffe.validate(query=IssueFilter)
    @karaffe.returns(list[IssueOut], paginated=True)
    def index(query: IssueFilter) -> karaffe.ApiResult:
        """List issues."""
        return karaffe.ApiResult([])

    @bp.get("/<int:issue_id>")
    @karaffe.returns(IssueOut, errors={404: "No such issue"})
    def show(issue_id: int) -> dict[str, t.Any]:
        return {"id": issue_id, "title": "x"}

    @bp.get("/plain")
    def plain() -> karaffe.ApiResult:
        return karaffe.ApiResult({})

    app.register_blueprint(bp)
    app.add_url_rule("/about", "about", lambda: "html page")
    karaffe.ApiDocs(title="Test API", version="2.0").init_app(app)
    return app


@pytest.fixture
def document(app) -> dict[str, t.Any]:
    rv = app.test_client().get("/openapi.json")
    assert rv.status_code == 200
    return rv.get_json()


def test_document_validates_against_the_openapi_31_schema(document) -> None:
    assert document["openapi"] == "3.1.0"
    validate_openapi(document)


def test_only_api_routes_are_documented(document) -> None:
    assert set(document["paths"]) == {
        "/api/v1/issues",
        "/api/v1/issues/{issue_id}",
        "/api/v1/issues/plain",
    }


def test_operation_comes_from_the_view(document) -> None:
    create = document["paths"]["/api/v1/issues"]["post"]
    assert create["summary"] == "Create an issue."
    assert create["description"] == "The title must not be empty."
    assert create["tags"] == ["issues"]
    assert create["requestBody"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IssueIn"
    }
    assert create["responses"]["201"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/IssueOut"
    }
    assert set(create["responses"]) == {"201", "400", "413", "415", "422"}
    assert "security" not in create  # no login_required: anyone may call it


def test_body_schema_keeps_constraints(document) -> None:
    schema = document["components"]["schemas"]["IssueIn"]
    assert schema["properties"]["title"]["maxLength"] == 200
    assert schema["properties"]["title"]["description"] == "What is wrong."


def test_query_model_becomes_parameters_and_paginated_adds_limit_cursor_and_link(document) -> None:
    index = document["paths"]["/api/v1/issues"]["get"]
    params = {p["name"]: p for p in index["parameters"]}
    assert set(params) == {"status", "label", "limit", "cursor"}
    assert params["status"]["schema"]["enum"] == ["open", "closed"]
    assert params["limit"]["schema"]["maximum"] == 100
    headers = index["responses"]["200"]["headers"]
    assert headers["Link"] == {"$ref": "#/components/headers/Link"}
    assert index["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/IssueOut"},
    }
    assert "400" in index["responses"]  # a bad cursor


def test_path_parameters_are_typed_and_404_documented(document) -> None:
    show = document["paths"]["/api/v1/issues/{issue_id}"]["get"]
    assert show["parameters"] == [
        {
            "name": "issue_id",
            "in": "path",
            "required": True,
            "schema": {"type": "integer", "minimum": 0},  # what Werkzeug's int matches
        }
    ]
    assert show["responses"]["404"] == {
        "description": "No such issue",
        "content": {
            "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
        },
    }


def test_error_schema_is_the_model_that_renders_errors(app, document) -> None:
    schema = document["components"]["schemas"]["Problem"]
    assert schema["required"] == ["type", "title", "status", "detail"]
    assert set(schema["properties"]) == set(Problem.model_fields)
    for path, item in document["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                if int(status) >= 400:
                    assert response["content"] == {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    }, (path, method, status)
    body = app.test_client().post("/api/v1/issues", json={"title": ""}).get_json()
    Problem.model_validate(body, strict=True)
    assert set(body) == set(schema["properties"])


def test_replaced_envelope_is_what_gets_documented(make_app) -> None:
    class Oops(BaseModel):
        oops: str

    class OopsFormatter(karaffe.ProblemFormatter):
        model = Oops

        def render(self, exc: karaffe.ApiException) -> BaseModel:
            return Oops(oops=exc.message)

    app = make_app()
    app.problem_formatter = OopsFormatter()
    app.add_url_rule("/api/x", "x", lambda: karaffe.ApiResult({}))
    karaffe.ApiDocs().init_app(app)
    document = app.test_client().get("/openapi.json").get_json()
    assert "Oops" in document["components"]["schemas"]
    assert "Problem" not in document["components"]["schemas"]
    validate_openapi(document)


def test_docs_under_a_prefix_document_only_that_prefix(make_app) -> None:
    app = make_app()
    app.add_url_rule("/api/v1/a", "a", lambda: karaffe.ApiResult({}))
    app.add_url_rule("/api/v2/b", "b", lambda: karaffe.ApiResult({}))
    karaffe.ApiDocs(url_prefix="/api/v1", name="v1_docs").init_app(app)
    document = app.test_client().get("/api/v1/openapi.json").get_json()
    assert set(document["paths"]) == {"/api/v1/a"}


def test_docs_page_loads_only_assets_the_app_serves(app) -> None:
    client = app.test_client()
    page = client.get("/docs")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "http://" not in html and "https://" not in html
    assets = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert len(assets) == 3
    for asset in assets:
        rv = client.get(asset)
        assert rv.status_code == 200, asset
        assert len(rv.data) > 20
    assert 'data-spec="/openapi.json"' in html


def test_unknown_docs_asset_is_404(app) -> None:
    assert app.test_client().get("/docs/assets/nope.js").status_code == 404


# -- a document a client can trust -----------------------------------------------------

#: Every keyword a schema in the document may use: JSON Schema 2020-12's and
#: the OpenAPI 3.1 additions. pydantic's own names ("gt", "le"...) are not.
STANDARD_KEYWORDS = {
    "$ref", "$defs", "$schema", "$id", "$anchor", "$comment",
    "type", "enum", "const", "title", "description", "default", "examples", "example",
    "deprecated", "readOnly", "writeOnly", "format",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else",
    "properties", "required", "additionalProperties", "patternProperties",
    "propertyNames", "minProperties", "maxProperties", "unevaluatedProperties",
    "dependentRequired", "dependentSchemas",
    "items", "prefixItems", "contains", "minItems", "maxItems", "uniqueItems",
    "minContains", "maxContains", "unevaluatedItems",
    "minLength", "maxLength", "pattern", "contentEncoding", "contentMediaType",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
    "discriminator", "xml", "externalDocs",
}  # fmt: skip

#: Keywords whose value maps names (of properties, definitions) to schemas.
_NAMED_SCHEMAS = {"properties", "patternProperties", "$defs", "dependentSchemas"}


def keywords_of(schema: t.Any) -> set[str]:
    """Every keyword used in ``schema`` and the schemas inside it."""
    if isinstance(schema, list):
        return set().union(*map(keywords_of, schema)) if schema else set()
    if not isinstance(schema, dict):
        return set()
    found = set(schema)
    for key, value in schema.items():
        if key in _NAMED_SCHEMAS:
            found |= set().union(*map(keywords_of, value.values())) if value else set()
        elif key not in ("enum", "const", "default", "examples", "example", "required"):
            found |= keywords_of(value)
    return found


def all_schemas(document: dict[str, t.Any]) -> list[t.Any]:
    schemas = list(document["components"]["schemas"].values())
    for item in document["paths"].values():
        for operation in item.values():
            schemas += [p["schema"] for p in operation.get("parameters", [])]
            for content in operation.get("requestBody", {}).get("content", {}).values():
                schemas.append(content["schema"])
            for response in operation["responses"].values():
                for content in response.get("content", {}).values():
                    schemas.append(content["schema"])
                for header in response.get("headers", {}).values():
                    schemas.append(header.get("schema", {}))
    return schemas


def _not_bool(value: t.Any) -> t.Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not an id")
    return value


#: A constraint after a validator: pydantic writes it as "gt" on its own.
Id = t.Annotated[int, BeforeValidator(_not_bool), Field(gt=0, le=2**63 - 1)]


class Filter(BaseModel):
    owner: Id | None = Field(None, description="An owner id.")
    page_size: t.Annotated[int, BeforeValidator(_not_bool), Field(ge=1, lt=500)] = 10


class Move(BaseModel):
    to: Id
    position: t.Annotated[float, BeforeValidator(_not_bool), Field(multiple_of=0.5)] = 1.0


@pytest.fixture
def secured(make_app: t.Callable[..., karaffe.App]) -> karaffe.App:
    """An app with karaffe.auth (CSRF on): public and login-only views."""
    from karaffe import auth

    app = make_app({"WTF_CSRF_ENABLED": True})
    auth.init_app(app)
    bp = Blueprint("boxes", __name__, url_prefix="/api/boxes")

    @bp.get("")
    @karaffe.validate(query=Filter)
    @karaffe.returns(list[IssueOut], paginated=True, with_total=True)
    def index(query: Filter) -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate([], key=lambda i: (i,), with_total=True))

    @bp.post("/<int:box_id>/move")
    @auth.login_required
    @karaffe.validate(body=Move)
    @karaffe.returns(IssueOut, errors=(403, 409))
    def move(box_id: int, body: Move) -> dict[str, t.Any]:
        return {"id": box_id, "title": "x"}

    @bp.delete("/<int:box_id>")
    @karaffe.returns(None, status=204, errors={409: "The box is not empty"})
    @auth.login_required
    def delete(box_id: int) -> karaffe.ApiResult:
        return karaffe.ApiResult(None, status=204)

    private = Blueprint("private", __name__, url_prefix="/api/private")
    private.before_request(auth.login_required(lambda: None))

    @private.get("/<slug>")
    @karaffe.returns(IssueOut)
    def show(slug: str) -> dict[str, t.Any]:
        return {"id": 1, "title": slug}

    app.register_blueprint(bp)
    app.register_blueprint(private)
    karaffe.ApiDocs(title="Boxes", url_prefix="/api").init_app(app)
    return app


@pytest.fixture
def secured_document(secured: karaffe.App) -> dict[str, t.Any]:
    document = secured.test_client().get("/api/openapi.json").get_json()
    validate_openapi(document)
    return t.cast(dict[str, t.Any], document)


def test_no_operation_has_a_default_response(document, secured_document) -> None:
    for doc in (document, secured_document):
        for item in doc["paths"].values():
            for operation in item.values():
                assert "default" not in operation["responses"]
                assert all(status.isdigit() for status in operation["responses"])


def test_schemas_use_standard_keywords_only(document, secured_document) -> None:
    for doc in (document, secured_document):
        used = keywords_of(all_schemas(doc))
        assert used <= STANDARD_KEYWORDS, used - STANDARD_KEYWORDS


def test_constraints_after_a_validator_keep_their_json_schema_names(secured_document) -> None:
    move = secured_document["components"]["schemas"]["Move"]["properties"]
    assert move["to"] == {
        "type": "integer",
        "exclusiveMinimum": 0,
        "maximum": 2**63 - 1,
        "title": "To",
    }
    assert move["position"]["multipleOf"] == 0.5
    params = {p["name"]: p for p in secured_document["paths"]["/api/boxes"]["get"]["parameters"]}
    assert params["page_size"]["schema"] == {
        "type": "integer", "minimum": 1, "exclusiveMaximum": 500, "default": 10
    }  # fmt: skip


def test_a_query_parameter_that_may_be_left_out_is_not_nullable(secured_document) -> None:
    params = {p["name"]: p for p in secured_document["paths"]["/api/boxes"]["get"]["parameters"]}
    assert params["owner"] == {
        "name": "owner",
        "in": "query",
        "required": False,
        "description": "An owner id.",
        "schema": {"type": "integer", "exclusiveMinimum": 0, "maximum": 2**63 - 1},
    }


def test_security_schemes_are_declared(secured: karaffe.App, secured_document) -> None:
    assert secured_document["components"]["securitySchemes"] == {
        "bearerAuth": {"type": "http", "scheme": "bearer", "description": mock.ANY},
        "sessionCookie": {
            "type": "apiKey", "in": "cookie", "name": "session", "description": mock.ANY
        },
        "csrfToken": {
            "type": "apiKey", "in": "header", "name": "X-CSRFToken", "description": mock.ANY
        },
    }  # fmt: skip


def test_login_required_views_declare_security_and_401(secured_document) -> None:
    paths = secured_document["paths"]
    move = paths["/api/boxes/{box_id}/move"]["post"]
    delete = paths["/api/boxes/{box_id}"]["delete"]
    show = paths["/api/private/{slug}"]["get"]
    write = [{"bearerAuth": ["write"]}, {"sessionCookie": [], "csrfToken": []}]
    assert move["security"] == write
    assert delete["security"] == write
    assert show["security"] == [{"bearerAuth": ["read"]}, {"sessionCookie": []}]  # no CSRF
    for operation in (move, delete, show):
        unauthorized = operation["responses"]["401"]
        assert unauthorized["headers"] == {
            "WWW-Authenticate": {"$ref": "#/components/headers/WWW-Authenticate"}
        }
    assert "CSRF" in move["responses"]["400"]["description"]
    assert "CSRF" in delete["responses"]["400"]["description"]
    assert "read-only" in delete["responses"]["403"]["description"]
    assert "400" not in show["responses"] and "403" not in show["responses"]
    index = paths["/api/boxes"]["get"]
    assert "security" not in index and "401" not in index["responses"]


def test_each_operation_lists_the_statuses_it_can_answer(secured_document) -> None:
    paths = secured_document["paths"]
    statuses = {
        (path, method): set(operation["responses"])
        for path, item in paths.items()
        for method, operation in item.items()
    }
    assert statuses == {
        ("/api/boxes", "get"): {"200", "400", "422"},
        ("/api/boxes/{box_id}/move", "post"): {
            "200", "400", "401", "403", "404", "409", "413", "415", "422"
        },
        ("/api/boxes/{box_id}", "delete"): {"204", "400", "401", "403", "404", "409"},
        ("/api/private/{slug}", "get"): {"200", "401", "404"},
    }  # fmt: skip
    delete = paths["/api/boxes/{box_id}"]["delete"]["responses"]
    assert delete["409"]["description"] == "The box is not empty"
    assert "content" not in delete["204"]
    move = paths["/api/boxes/{box_id}/move"]["post"]["responses"]
    assert move["403"]["description"] == "With an API token: a read-only one. Forbidden."
    slug = paths["/api/private/{slug}"]["get"]["parameters"][0]
    assert slug["schema"] == {"type": "string", "pattern": "^[^/]{1,}$"}


def test_total_count_is_documented_only_where_it_is_sent(document, secured_document) -> None:
    counted = secured_document["paths"]["/api/boxes"]["get"]["responses"]["200"]["headers"]
    assert counted == {
        "Link": {"$ref": "#/components/headers/Link"},
        "X-Total-Count": {"$ref": "#/components/headers/X-Total-Count"},
    }
    uncounted = document["paths"]["/api/v1/issues"]["get"]["responses"]["200"]["headers"]
    assert uncounted == {"Link": {"$ref": "#/components/headers/Link"}}


def test_headers_documented_are_the_headers_sent(secured: karaffe.App, app) -> None:
    rv = secured.test_client().get("/api/boxes")
    assert rv.headers["X-Total-Count"] == "0"
    assert "Link" in rv.headers
    rv = app.test_client().get("/api/v1/issues")
    assert "X-Total-Count" not in rv.headers


def test_a_page_that_disagrees_with_its_declaration_is_an_error(make_app) -> None:
    app = make_app()

    @app.get("/api/counted")
    @karaffe.returns(list[int], paginated=True)
    def counted() -> karaffe.ApiResult:
        return karaffe.ApiResult(page=karaffe.paginate([1], key=lambda i: (i,), with_total=True))

    with pytest.raises(TypeError, match="with_total=False"):
        app.test_client().get("/api/counted")


def test_without_csrf_there_is_no_csrf_scheme(make_app) -> None:
    from karaffe import auth

    app = make_app({"WTF_CSRF_ENABLED": False})
    auth.init_app(app)

    @app.post("/api/notes")
    @auth.login_required
    def notes() -> karaffe.ApiResult:
        return karaffe.ApiResult({})

    karaffe.ApiDocs().init_app(app)
    document = app.test_client().get("/openapi.json").get_json()
    assert set(document["components"]["securitySchemes"]) == {"bearerAuth", "sessionCookie"}
    operation = document["paths"]["/api/notes"]["post"]
    assert operation["security"] == [{"bearerAuth": ["write"]}, {"sessionCookie": []}]
    assert set(operation["responses"]) == {"200", "401", "403"}


def test_docs_page_gives_the_csrf_token_to_its_script(secured: karaffe.App) -> None:
    client = secured.test_client()
    html = client.get("/api/docs").get_data(as_text=True)
    assert '<meta name="csrf-header" content="X-CSRFToken">' in html
    assert len(re.findall(r'<meta name="csrf-token" content="[^"]+">', html)) == 1
    script = client.get("/api/docs/assets/docs-init.js").get_data(as_text=True)
    assert "requestInterceptor" in script and 'meta("csrf-token")' in script
    assert "<script>" not in html  # no inline script: the page runs under the CSP


def test_docs_page_without_csrf_has_no_token(app) -> None:
    assert "csrf" not in app.test_client().get("/docs").get_data(as_text=True)


def test_links_lead_from_a_created_object_to_the_operations_on_it(make_app) -> None:
    app = make_app()
    bp = Blueprint("notes", __name__, url_prefix="/api/notes")

    @bp.post("")
    @karaffe.validate(body=IssueIn)
    @karaffe.returns(IssueOut, status=201, links={"note_id": "id"})
    def create(body: IssueIn) -> dict[str, t.Any]:
        return {"id": 1, "title": body.title}

    @bp.get("/<int:note_id>")
    @karaffe.returns(IssueOut)
    def show(note_id: int) -> dict[str, t.Any]:
        return {"id": note_id, "title": "x"}

    @bp.delete("/<int:note_id>")
    @karaffe.returns(None, status=204)
    def delete(note_id: int) -> karaffe.ApiResult:
        return karaffe.ApiResult(None, status=204)

    app.register_blueprint(bp)
    karaffe.ApiDocs().init_app(app)
    document = app.test_client().get("/openapi.json").get_json()
    validate_openapi(document)
    assert document["paths"]["/api/notes"]["post"]["responses"]["201"]["links"] == {
        "notes_delete_delete": {
            "operationId": "notes_delete_delete",
            "parameters": {"note_id": "$response.body#/id"},
        },
        "notes_show_get": {
            "operationId": "notes_show_get",
            "parameters": {"note_id": "$response.body#/id"},
        },
    }
    assert "links" not in document["paths"]["/api/notes/{note_id}"]["get"]["responses"]["200"]
