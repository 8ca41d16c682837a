"""Checked by mypy (``make lint``), never run: idiomatic karaffe views type-check
under Flask's own route typing."""

from __future__ import annotations

from flask import Blueprint
from pydantic import BaseModel

from karaffe import ApiResult, paginate, returns, validate

blueprint = Blueprint("typed", __name__)


class ItemIn(BaseModel):
    name: str


class ItemOut(BaseModel):
    id: int
    name: str


@blueprint.post("/api/items")
@validate(body=ItemIn)
@returns(ItemOut, status=201)
def create(body: ItemIn) -> dict[str, object]:
    return {"id": 1, "name": body.name}


@blueprint.get("/api/items")
@returns(list[ItemOut], paginated=True)
def index() -> ApiResult:
    return ApiResult(page=paginate([{"id": 1}], key=lambda item: (item["id"],)))


@blueprint.get("/api/plain")
def plain() -> ApiResult:
    return ApiResult({"ok": True})
