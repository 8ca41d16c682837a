"""ApiResult serialises pydantic models, dataclasses, dicts and lists."""

from __future__ import annotations

import dataclasses
import datetime as dt
import enum
import json
import uuid

from pydantic import BaseModel

import karaffe
from karaffe.api.result import encode_json


class Color(enum.Enum):
    RED = "red"


class Tag(BaseModel):
    name: str
    created: dt.datetime


@dataclasses.dataclass
class Point:
    x: int
    y: int


def test_pydantic_model_uses_its_serializer() -> None:
    tag = Tag(name="a", created=dt.datetime(2026, 1, 2, tzinfo=dt.UTC))
    assert json.loads(encode_json(tag)) == {"name": "a", "created": "2026-01-02T00:00:00Z"}


def test_models_nested_in_containers_are_serialized() -> None:
    tag = Tag(name="a", created=dt.datetime(2026, 1, 2))
    assert json.loads(encode_json({"tags": [tag]})) == {
        "tags": [{"name": "a", "created": "2026-01-02T00:00:00"}]
    }


def test_dataclasses_uuids_enums_and_dates() -> None:
    value = {
        "point": Point(1, 2),
        "id": uuid.UUID(int=1),
        "color": Color.RED,
        "day": dt.date(2026, 3, 4),
        1: "int keys become strings",
    }
    assert json.loads(encode_json(value)) == {
        "point": {"x": 1, "y": 2},
        "id": "00000000-0000-0000-0000-000000000001",
        "color": "red",
        "day": "2026-03-04",
        "1": "int keys become strings",
    }


def test_non_ascii_is_sent_as_utf8() -> None:
    assert encode_json({"name": "Käffchen ☕"}) == '{"name":"Käffchen ☕"}'.encode()


def test_api_result_is_a_wsgi_application(make_app) -> None:
    from werkzeug.test import Client

    app = make_app()
    with app.test_request_context("/api/x"):
        result = karaffe.ApiResult({"ok": True}, status=202)
        rv = Client(result).get("/")
    assert rv.status_code == 202
    assert rv.get_json() == {"ok": True}


def test_repr_is_short() -> None:
    assert repr(karaffe.ApiResult({"a": 1})) == "<ApiResult 200 {'a': 1}>"
