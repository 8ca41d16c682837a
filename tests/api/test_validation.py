"""Declared bodies, queries and paths are validated into pydantic models, and
every kind of bad input gets a precise problem."""

from __future__ import annotations

import dataclasses
import json
import typing as t

import pytest
from flask import Blueprint
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ConfigDict, Field

import karaffe
from karaffe.api.validation import endpoint_spec


class ItemIn(BaseModel):
    name: str = Field(min_length=1, max_length=50)
    price: float = Field(gt=0)
    quantity: int = Field(ge=0)
    tags: list[str] = []
    active: bool = True


class ItemOut(BaseModel):
    id: int
    name: str


class ItemFilter(BaseModel):
    status: t.Literal["open", "closed"] = "open"
    label: list[str] = []
    limit: int | None = None


class StrictFilter(BaseModel):
    model_config = ConfigDict(extra="forbid")
    q: str = ""


class ItemPath(BaseModel):
    item_id: int = Field(ge=1)


@dataclasses.dataclass
class Row:
    id: int
    name: str
    secret: str = "not for the client"


@pytest.fixture
def app(make_app):
    app = make_app()
    bp = Blueprint("items", __name__, url_prefix="/api/items")

    @bp.post("")
    @karaffe.validate(body=ItemIn)
    @karaffe.returns(ItemOut, status=201)
    def create(body: ItemIn) -> dict[str, t.Any]:
        return {"id": 7, "name": body.name}

    @bp.get("")
    @karaffe.returns(list[ItemOut])
    @karaffe.validate(query=ItemFilter)
    def search(query: ItemFilter) -> list[Row]:
        return [Row(1, f"{query.status}:{','.join(query.label)}")]

    @bp.get("/strict")
    @karaffe.validate(query=StrictFilter)
    def strict(query: StrictFilter) -> dict[str, str]:
        return {"q": query.q}

    @bp.get("/<int:item_id>")
    @karaffe.validate(path=ItemPath)
    def show(path: ItemPath) -> karaffe.ApiResult:
        return karaffe.ApiResult({"id": path.item_id})

    @bp.delete("/<int:item_id>")
    @karaffe.returns(None, status=204)
    def delete(item_id: int) -> karaffe.ApiResult:
        return karaffe.ApiResult(status=204)

    app.register_blueprint(bp)
    return app


VALID = {"name": "mug", "price": 4.5, "quantity": 3}


def problem_of(rv) -> dict[str, t.Any]:
    assert rv.mimetype == "application/problem+json"
    return rv.get_json()


def test_valid_body_reaches_the_view_as_a_model(app) -> None:
    rv = app.test_client().post("/api/items", json=VALID)
    assert rv.status_code == 201
    assert rv.get_json() == {"id": 7, "name": "mug"}


def test_json_with_charset_and_vendor_json_types_are_accepted(app) -> None:
    client = app.test_client()
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json"):
        rv = client.post(
            "/api/items", data=b'{"name":"a","price":1,"quantity":0}', content_type=content_type
        )
        assert rv.status_code == 201, content_type


def test_malformed_json_is_400(app) -> None:
    rv = app.test_client().post("/api/items", data=b'{"name": ', content_type="application/json")
    assert rv.status_code == 400
    assert problem_of(rv) == {
        "type": "urn:karaffe:problem:malformed-json",
        "title": "Malformed JSON",
        "status": 400,
        "detail": "The request body is not valid JSON: EOF while parsing a value at line 1 column 9.",
        "errors": [],
    }


def test_empty_body_is_malformed_json(app) -> None:
    rv = app.test_client().post("/api/items", data=b"", content_type="application/json")
    assert rv.status_code == 400
    assert problem_of(rv)["type"] == "urn:karaffe:problem:malformed-json"


def test_wrong_content_type_is_415(app) -> None:
    rv = app.test_client().post(
        "/api/items", data="name=mug", content_type="application/x-www-form-urlencoded"
    )
    assert rv.status_code == 415
    assert problem_of(rv) == {
        "type": "urn:karaffe:problem:unsupported-media-type",
        "title": "Unsupported media type",
        "status": 415,
        "detail": "Expected a JSON body (application/json), got application/x-www-form-urlencoded.",
        "errors": [],
    }


def test_missing_content_type_is_415(app) -> None:
    rv = app.test_client().post("/api/items", data=b"{}")
    assert rv.status_code == 415
    assert (
        problem_of(rv)["detail"] == "Expected a JSON body (application/json), got no Content-Type."
    )


def test_too_large_body_is_413(make_app) -> None:
    app = make_app({"MAX_CONTENT_LENGTH": 64})

    @app.post("/api/items")
    @karaffe.validate(body=ItemIn)
    def create(body: ItemIn) -> dict[str, str]:
        return {"name": body.name}

    rv = app.test_client().post("/api/items", json={**VALID, "name": "x" * 100})
    assert rv.status_code == 413
    assert problem_of(rv)["type"] == "urn:karaffe:problem:payload-too-large"


def test_invalid_fields_get_one_entry_each(app) -> None:
    rv = app.test_client().post("/api/items", json={"name": "", "price": -1, "tags": "x"})
    assert rv.status_code == 422
    assert problem_of(rv) == {
        "type": "urn:karaffe:problem:validation-failed",
        "title": "Validation failed",
        "status": 422,
        "detail": "4 inputs are invalid: body.name, body.price, body.quantity, body.tags.",
        "errors": [
            {
                "loc": ["body", "name"],
                "msg": "String should have at least 1 character",
                "code": "string_too_short",
            },
            {
                "loc": ["body", "price"],
                "msg": "Input should be greater than 0",
                "code": "greater_than",
            },
            {"loc": ["body", "quantity"], "msg": "Field required", "code": "missing"},
            {"loc": ["body", "tags"], "msg": "Input should be a valid array", "code": "list_type"},
        ],
    }


def test_wrong_types_are_reported_per_field(app) -> None:
    rv = app.test_client().post(
        "/api/items", json={**VALID, "quantity": "three", "active": "maybe"}
    )
    assert rv.status_code == 422
    assert [(e["loc"], e["code"]) for e in problem_of(rv)["errors"]] == [
        (["body", "quantity"], "int_parsing"),
        (["body", "active"], "bool_parsing"),
    ]


def test_nested_list_item_errors_carry_their_index(app) -> None:
    rv = app.test_client().post("/api/items", json={**VALID, "tags": ["ok", 5]})
    assert problem_of(rv)["errors"] == [
        {"loc": ["body", "tags", 1], "msg": "Input should be a valid string", "code": "string_type"}
    ]


def test_body_that_is_not_an_object_is_422(app) -> None:
    rv = app.test_client().post("/api/items", json=[1, 2])
    assert rv.status_code == 422
    assert problem_of(rv)["errors"] == [
        {"loc": ["body"], "msg": "Input should be an object", "code": "model_type"}
    ]


def test_rejected_values_are_not_echoed_back(app) -> None:
    rv = app.test_client().post("/api/items", json={**VALID, "price": "hunter2-password"})
    assert b"hunter2" not in rv.data


def test_validation_status_can_be_400(make_app) -> None:
    app = make_app({"VALIDATION_ERROR_STATUS": 400})

    @app.post("/api/items")
    @karaffe.validate(body=ItemIn)
    def create(body: ItemIn) -> dict[str, str]:
        return {}

    rv = app.test_client().post("/api/items", json={})
    assert rv.status_code == 400
    assert problem_of(rv)["status"] == 400
    assert problem_of(rv)["type"] == "urn:karaffe:problem:validation-failed"


def test_query_is_parsed_with_repeated_parameters(app) -> None:
    rv = app.test_client().get("/api/items?status=closed&label=a&label=b")
    assert rv.status_code == 200
    assert rv.get_json() == [{"id": 1, "name": "closed:a,b"}]


def test_response_model_drops_fields_it_does_not_declare(app) -> None:
    rv = app.test_client().get("/api/items")
    assert rv.get_json() == [{"id": 1, "name": "open:"}]
    assert b"not for the client" not in rv.data


def test_bad_query_value_is_422_located_in_query(app) -> None:
    rv = app.test_client().get("/api/items?status=pending&limit=ten")
    assert rv.status_code == 422
    assert problem_of(rv)["errors"] == [
        {
            "loc": ["query", "status"],
            "msg": "Input should be 'open' or 'closed'",
            "code": "literal_error",
        },
        {
            "loc": ["query", "limit"],
            "msg": "Input should be a valid integer, unable to parse string as an integer",
            "code": "int_parsing",
        },
    ]


def test_unknown_query_parameters_are_refused_when_the_model_forbids_extras(app) -> None:
    client = app.test_client()
    assert client.get("/api/items/strict?q=x").get_json() == {"q": "x"}
    rv = client.get("/api/items/strict?q=x&qq=y")
    assert rv.status_code == 422
    assert problem_of(rv)["errors"] == [
        {"loc": ["query", "qq"], "msg": "Extra inputs are not permitted", "code": "extra_forbidden"}
    ]


def test_path_model_validates_url_arguments(app) -> None:
    client = app.test_client()
    assert client.get("/api/items/5").get_json() == {"id": 5}
    rv = client.get("/api/items/0")
    assert rv.status_code == 422
    assert problem_of(rv)["errors"] == [
        {
            "loc": ["path", "item_id"],
            "msg": "Input should be greater than or equal to 1",
            "code": "greater_than_equal",
        }
    ]


def test_no_content_result_has_an_empty_body(app) -> None:
    rv = app.test_client().delete("/api/items/3")
    assert rv.status_code == 204
    assert rv.data == b""


def test_spec_is_recorded_whatever_the_decorator_order(app) -> None:
    create = endpoint_spec(app.view_functions["items.create"])
    search = endpoint_spec(app.view_functions["items.search"])
    assert create is not None and search is not None
    assert (create.body, create.response, create.status) == (ItemIn, ItemOut, 201)
    assert (search.query, search.response) == (ItemFilter, list[ItemOut])


def test_undecorated_views_have_no_spec(app) -> None:
    assert endpoint_spec(lambda: None) is None


def test_views_stay_plain_flask_functions(app) -> None:
    view = app.view_functions["items.create"]
    assert view.__name__ == "create"
    assert view.__doc__ is None


@given(
    body=st.binary(max_size=200)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
        lambda c: (
            st.lists(c, max_size=3)
            | st.dictionaries(
                st.sampled_from(["name", "price", "quantity", "tags", "active", "x"]), c, max_size=5
            )
        ),
        max_leaves=10,
    ).map(lambda v: json.dumps(v).encode()),
    content_type=st.sampled_from(
        ["application/json", "text/plain", "", "application/x+json", "multipart/form-data"]
    ),
    query=st.dictionaries(
        st.sampled_from(["status", "label", "limit", "zz"]), st.text(max_size=5), max_size=3
    ),
)
@settings(
    max_examples=150, suppress_health_check=[HealthCheck.function_scoped_fixture], deadline=None
)
def test_no_bad_input_produces_a_server_error(
    app, body: bytes, content_type: str, query: dict[str, str]
) -> None:
    client = app.test_client()
    rv = client.post("/api/items", data=body, content_type=content_type, query_string=query)
    assert rv.status_code in {201, 400, 413, 415, 422}
    if rv.status_code != 201:
        assert rv.mimetype == "application/problem+json"
        assert rv.get_json()["status"] == rv.status_code
    rv = client.get("/api/items", query_string=query)
    assert rv.status_code in {200, 422}
