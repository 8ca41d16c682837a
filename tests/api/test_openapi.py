"""The OpenAPI 3.1 document is generated from declared routes, validates
against the OpenAPI schema, and documents errors with the very model that
renders them; the docs page needs no network."""

from __future__ import annotations

import re
import typing as t

import pytest
from flask import Blueprint
from openapi_spec_validator import validate as validate_openapi
from pydantic import BaseModel, Field

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
    assert set(create["responses"]) == {"201", "400", "413", "415", "422", "default"}


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
        {"name": "issue_id", "in": "path", "required": True, "schema": {"type": "integer"}}
    ]
    assert show["responses"]["404"] == {"$ref": "#/components/responses/Problem"}


def test_error_schema_is_the_model_that_renders_errors(app, document) -> None:
    schema = document["components"]["schemas"]["Problem"]
    assert schema["required"] == ["type", "title", "status", "detail"]
    assert set(schema["properties"]) == set(Problem.model_fields)
    problem = document["components"]["responses"]["Problem"]
    assert problem["content"] == {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}
    }
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
