"""What a correct answer of a bench app looks like, checked before it is timed.

I/O-free: the runner feeds it responses fetched over HTTP, the smoke tests
(``tests/bench/``) responses from each framework's test client.
"""

from __future__ import annotations

import json
import re
import typing as t
from urllib.parse import urlsplit

from .apps.common import ITEM_COUNT, PAGE_SIZE, VALID_BODY

__all__ = ["BadAnswer", "check_created", "check_page", "next_link"]

_NEXT = re.compile(r'<([^>]*)>\s*;\s*rel="?next"?')


class BadAnswer(AssertionError):
    """A bench app answered something other than what the API promises."""


def next_link(link_header: str | None) -> str | None:
    """The path and query of the ``rel="next"`` target in a ``Link`` header."""
    match = _NEXT.search(link_header or "")
    if match is None:
        return None
    url = urlsplit(match.group(1))
    return f"{url.path}?{url.query}" if url.query else url.path


def _json(body: bytes | str) -> t.Any:
    try:
        return json.loads(body)
    except ValueError as exc:
        raise BadAnswer(f"the body is not JSON: {body[:200]!r}") from exc


def check_created(status: int, body: bytes | str) -> dict[str, t.Any]:
    """A 201 whose body is :data:`VALID_BODY` plus a new ``id``."""
    if status != 201:
        raise BadAnswer(f"POST answered {status}, expected 201: {body[:200]!r}")
    item = _json(body)
    rest = {k: v for k, v in item.items() if k != "id"}
    if rest != VALID_BODY or not isinstance(item.get("id"), int) or item["id"] <= ITEM_COUNT:
        raise BadAnswer(f"POST answered an unexpected item: {item!r}")
    return t.cast(dict[str, t.Any], item)


def check_page(
    status: int, body: bytes | str, link_header: str | None, first_id: int
) -> str | None:
    """A 200 with :data:`PAGE_SIZE` items from ``first_id`` on, in id order,
    and (unless it is the last page) a ``Link`` to the next; returns that link."""
    if status != 200:
        raise BadAnswer(f"GET answered {status}, expected 200: {body[:200]!r}")
    items = _json(body)
    if not isinstance(items, list):
        raise BadAnswer(f"GET answered a {type(items).__name__}, expected a list of items")
    expected = list(range(first_id, min(first_id + PAGE_SIZE, ITEM_COUNT + 1)))
    got = [item.get("id") for item in items]
    if got != expected:
        raise BadAnswer(f"GET answered ids {got[:3]}..., expected {expected[:3]}...")
    link = next_link(link_header)
    if link is None and expected[-1] != ITEM_COUNT:
        raise BadAnswer(f'GET answered no Link: <...>; rel="next" (got {link_header!r})')
    return link
