"""What every bench app serves: the same items, the same input and output shapes.

The workload is a small catalogue API:

* ``POST /api/items`` takes a JSON body of five validated fields and answers
  201 with the created item (an ``id`` plus the five fields). The item is
  assigned an id but not kept, so that every round of every app pages through
  the very same 10,000 items.
* ``GET /api/items`` answers a page of 20 items, sorted by id, with a
  ``Link: <...>; rel="next"`` header; each app pages in its own idiom
  (signed cursors, ``?after=``, page numbers).
* ``POST /api/items`` with :data:`INVALID_BODY` fails validation on four fields.

The pydantic models here are shared by the apps built on pydantic (karaffe,
Flask + pydantic, FastAPI); the marshmallow apps declare the same constraints
in their own schemas.
"""

from __future__ import annotations

import itertools
import typing as t
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "INVALID_BODY",
    "ITEMS",
    "ITEM_COUNT",
    "PAGE_SIZE",
    "SKU_PATTERN",
    "VALID_BODY",
    "Item",
    "ItemIn",
    "ItemOut",
    "create_item",
    "item_key",
]

#: How many items the page endpoint pages through.
ITEM_COUNT = 10_000
#: Items per page when the client does not ask for another size.
PAGE_SIZE = 20
#: A stock-keeping unit: three capitals, a dash, four digits.
SKU_PATTERN = r"^[A-Z]{3}-[0-9]{4}$"


@dataclass(frozen=True, slots=True)
class Item:
    """A stored item, as an ORM row would be: a plain object with attributes."""

    id: int
    name: str
    sku: str
    price: float
    quantity: int
    tags: tuple[str, ...]


class ItemIn(BaseModel):
    """The body of ``POST /api/items``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100)
    sku: str = Field(pattern=SKU_PATTERN)
    price: float = Field(gt=0)
    quantity: int = Field(ge=0, le=1_000_000)
    tags: list[str] = Field(default_factory=list, max_length=10)


class ItemOut(BaseModel):
    """An item as the API shows it."""

    id: int
    name: str
    sku: str
    price: float
    quantity: int
    tags: list[str]


def _make_items() -> list[Item]:
    return [
        Item(
            id=i,
            name=f"Item {i}",
            sku=f"ITM-{i % 10_000:04d}",
            price=round(1 + i * 0.01, 2),
            quantity=i % 100,
            tags=("bench", f"group-{i % 7}"),
        )
        for i in range(1, ITEM_COUNT + 1)
    ]


#: The items, sorted by id (1 to 10,000).
ITEMS: list[Item] = _make_items()

_ids = itertools.count(ITEM_COUNT + 1)


def create_item(name: str, sku: str, price: float, quantity: int, tags: t.Iterable[str]) -> Item:
    """Make a new item with the next id (not stored: see the module docstring)."""
    return Item(next(_ids), name, sku, price, quantity, tuple(tags))


def item_key(item: Item) -> tuple[int]:
    """The sort key of :data:`ITEMS`."""
    return (item.id,)


#: A body every app accepts (201).
VALID_BODY: dict[str, t.Any] = {
    "name": "Espresso cup",
    "sku": "CUP-0042",
    "price": 12.5,
    "quantity": 3,
    "tags": ["kitchen", "porcelain"],
}

#: A body every app refuses (422): four of the five fields are wrong.
INVALID_BODY: dict[str, t.Any] = {
    "name": "",
    "sku": "cup",
    "price": -1,
    "quantity": "many",
    "tags": ["kitchen"],
}
