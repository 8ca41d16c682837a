"""The bench API in FastAPI, twice: ``sync_app`` with ``def`` handlers (run in
the thread pool) and ``async_app`` with ``async def`` handlers."""

from __future__ import annotations

import bisect
from typing import Annotated

from fastapi import FastAPI, Query, Request, Response

from .common import ITEMS, PAGE_SIZE, Item, ItemIn, ItemOut, create_item

_ids = [item.id for item in ITEMS]


def _page(request: Request, response: Response, after: int, limit: int) -> list[Item]:
    start = bisect.bisect_right(_ids, after)
    items = ITEMS[start : start + limit]
    if start + limit < len(ITEMS):
        url = request.url.include_query_params(after=items[-1].id, limit=limit)
        response.headers["Link"] = f'<{url}>; rel="next"'
    return items


sync_app = FastAPI(title="bench (sync)")
async_app = FastAPI(title="bench (async)")


@sync_app.post("/api/items", status_code=201, response_model=ItemOut)
def create_sync(body: ItemIn) -> Item:
    return create_item(**body.model_dump())


@sync_app.get("/api/items", response_model=list[ItemOut])
def list_items_sync(
    request: Request,
    response: Response,
    after: int = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
) -> list[Item]:
    return _page(request, response, after, limit)


@async_app.post("/api/items", status_code=201, response_model=ItemOut)
async def create_async(body: ItemIn) -> Item:
    return create_item(**body.model_dump())


@async_app.get("/api/items", response_model=list[ItemOut])
async def list_items_async(
    request: Request,
    response: Response,
    after: int = 0,
    limit: Annotated[int, Query(ge=1, le=100)] = PAGE_SIZE,
) -> list[Item]:
    return _page(request, response, after, limit)
