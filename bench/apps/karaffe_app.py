"""The bench API in karaffe: ``@validate``, ``@returns``, ``paginate``, ``ApiResult``."""

from __future__ import annotations

import typing as t

from flask import Blueprint

from karaffe import ApiResult, App, paginate, returns, validate

from .common import ITEMS, Item, ItemIn, ItemOut, create_item, item_key

blueprint = Blueprint("items", __name__, url_prefix="/api")


# Flask's route typing wants a response value; karaffe's @returns makes one of an Item.
@blueprint.post("/items")  # type: ignore[type-var]
@validate(body=ItemIn)
@returns(ItemOut, status=201)
def create(body: ItemIn) -> Item:
    return create_item(**body.model_dump())


@blueprint.get("/items")
@returns(list[ItemOut], paginated=True)
def list_items() -> ApiResult:
    return ApiResult(page=paginate(ITEMS, key=item_key))


def create_app(config: t.Mapping[str, t.Any] | None = None) -> App:
    app = App(__name__)
    app.configure({"SECRET_KEY": "karaffe-bench-not-secret-but-32-chars-long", **(config or {})})
    app.register_blueprint(blueprint)
    return app


app = create_app()
