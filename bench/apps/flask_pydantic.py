"""The bench API in plain Flask with pydantic, written by hand the careful way:
the body is parsed and validated in one step (``model_validate_json``) and the
response serialized by pydantic, with no extension in between."""

from __future__ import annotations

import bisect

from flask import Flask, Response, request
from pydantic import TypeAdapter, ValidationError

from .common import ITEMS, PAGE_SIZE, ItemIn, ItemOut, create_item

app = Flask(__name__)

_item_list = TypeAdapter(list[ItemOut])
_ids = [item.id for item in ITEMS]


def _json(body: bytes | str, status: int, headers: dict[str, str] | None = None) -> Response:
    return app.response_class(body, status=status, headers=headers, mimetype="application/json")


@app.post("/api/items")
def create() -> Response:
    try:
        body = ItemIn.model_validate_json(request.get_data())
    except ValidationError as exc:
        return _json(exc.json(include_url=False, include_input=False), 422)
    item = create_item(**body.model_dump())
    return _json(ItemOut.model_validate(item, from_attributes=True).model_dump_json(), 201)


@app.get("/api/items")
def list_items() -> Response:
    after = request.args.get("after", 0, type=int)
    limit = request.args.get("limit", PAGE_SIZE, type=int)
    if not 1 <= limit <= 100:
        return _json(b'{"detail": "limit must be between 1 and 100"}', 422)
    start = bisect.bisect_right(_ids, after)
    items = ITEMS[start : start + limit]
    headers = {}
    if start + limit < len(ITEMS):
        headers["Link"] = f'<{request.base_url}?after={items[-1].id}&limit={limit}>; rel="next"'
    body = _item_list.dump_json(_item_list.validate_python(items, from_attributes=True))
    return _json(body, 200, headers)
