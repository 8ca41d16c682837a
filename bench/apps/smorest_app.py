# mypy: disallow-untyped-decorators=False
"""The bench API in flask-smorest: a ``MethodView`` resource, marshmallow
schemas, and ``@blp.paginate(Page)`` paging the list, with the blueprint's
documented hook extended to send a ``Link`` header next to ``X-Pagination``."""

from __future__ import annotations

import typing as t

import marshmallow as ma
from flask import Flask, request
from flask.views import MethodView
from flask_smorest import Api, Blueprint, Page  # type: ignore[import-untyped]

from .common import ITEMS, PAGE_SIZE, SKU_PATTERN, create_item


class ItemIn(ma.Schema):
    name = ma.fields.String(required=True, validate=ma.validate.Length(min=1, max=100))
    sku = ma.fields.String(required=True, validate=ma.validate.Regexp(SKU_PATTERN))
    price = ma.fields.Float(required=True, validate=ma.validate.Range(min=0, min_inclusive=False))
    quantity = ma.fields.Integer(required=True, validate=ma.validate.Range(min=0, max=1_000_000))
    tags = ma.fields.List(
        ma.fields.String(), load_default=list, validate=ma.validate.Length(max=10)
    )


class ItemOut(ma.Schema):
    id = ma.fields.Integer()
    name = ma.fields.String()
    sku = ma.fields.String()
    price = ma.fields.Float()
    quantity = ma.fields.Integer()
    tags = ma.fields.List(ma.fields.String())


class LinkedBlueprint(Blueprint):  # type: ignore[misc]
    """A blueprint whose paginated responses also carry ``Link: <...>; rel="next"``."""

    def _set_pagination_metadata(
        self, page_params: t.Any, result: t.Any, headers: t.Any
    ) -> tuple[t.Any, t.Any]:
        result, headers = super()._set_pagination_metadata(page_params, result, headers)
        page, size = page_params.page, page_params.page_size
        if page * size < page_params.item_count:
            headers["Link"] = f'<{request.base_url}?page={page + 1}&page_size={size}>; rel="next"'
        return result, headers


app = Flask(__name__)
app.config.update(API_TITLE="bench", API_VERSION="1", OPENAPI_VERSION="3.0.3")
api = Api(app)
blp = LinkedBlueprint("items", __name__, url_prefix="/api")


@blp.route("/items")
class Items(MethodView):
    @blp.arguments(ItemIn)
    @blp.response(201, ItemOut)
    def post(self, new_item: dict[str, t.Any]) -> t.Any:
        return create_item(**new_item)

    @blp.response(200, ItemOut(many=True))
    @blp.paginate(Page, page_size=PAGE_SIZE)
    def get(self) -> t.Any:
        return ITEMS


api.register_blueprint(blp)
