"""The bench API in APIFlask, with its own (marshmallow) schemas."""

from __future__ import annotations

import typing as t

from apiflask import APIFlask, Schema
from apiflask.fields import Float, Integer, List, String
from apiflask.validators import Length, Range, Regexp
from flask import url_for

from .common import ITEMS, PAGE_SIZE, SKU_PATTERN, create_item

app = APIFlask(__name__, title="bench", version="1")


class ItemIn(Schema):
    name = String(required=True, validate=Length(min=1, max=100))
    sku = String(required=True, validate=Regexp(SKU_PATTERN))
    price = Float(required=True, validate=Range(min=0, min_inclusive=False))
    quantity = Integer(required=True, validate=Range(min=0, max=1_000_000))
    tags = List(String(), load_default=list, validate=Length(max=10))


class ItemOut(Schema):
    id = Integer()
    name = String()
    sku = String()
    price = Float()
    quantity = Integer()
    tags = List(String())


class PageQuery(Schema):
    page = Integer(load_default=1, validate=Range(min=1))
    per_page = Integer(load_default=PAGE_SIZE, validate=Range(min=1, max=100))


@app.post("/api/items")
@app.input(ItemIn)
@app.output(ItemOut, status_code=201)
def create(json_data: dict[str, t.Any]) -> t.Any:
    return create_item(**json_data)


@app.get("/api/items")
@app.input(PageQuery, location="query")
@app.output(ItemOut(many=True))
def list_items(query_data: dict[str, int]) -> t.Any:
    page, per_page = query_data["page"], query_data["per_page"]
    start = (page - 1) * per_page
    headers = {}
    if start + per_page < len(ITEMS):
        url = url_for("list_items", page=page + 1, per_page=per_page, _external=True)
        headers["Link"] = f'<{url}>; rel="next"'
    return ITEMS[start : start + per_page], 200, headers
