"""Row ids bounded to what the database can hold: 1 to 2**63 - 1.

A number past a signed 64-bit integer cannot be a row id; passed on to the
database it is an ``OverflowError`` on SQLite and a ``NumericValueOutOfRange`` on
PostgreSQL, so a 500. karaffe stops it at the edge instead:

- in a URL, the ``id`` converter (``/projects/<id:project_id>``, registered on
  every :class:`karaffe.App`) does not match it, so the URL is a 404, exactly
  like a missing row;
- in a body, a query string or a form, the :data:`Id` field type refuses it with
  a 422 naming the field.
"""

from __future__ import annotations

import typing as t

from pydantic import BeforeValidator, Field
from pydantic_core import PydanticCustomError
from werkzeug.routing import BaseConverter

__all__ = ["MAX_ID", "Id", "IdConverter", "is_id"]

#: The largest id a database row can have (a signed 64-bit integer).
MAX_ID = 2**63 - 1


def is_id(value: t.Any) -> bool:
    """Whether ``value`` is an int in the range of row ids."""
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_ID


def _not_bool(value: t.Any) -> t.Any:
    """JSON ``true`` is not the id 1."""
    if isinstance(value, bool):
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    return value


#: The id of a row in a body, query or form field: an integer from 1 to
#: :data:`MAX_ID` (``"12"`` from a form or query string is fine, ``true`` is not).
Id = t.Annotated[int, BeforeValidator(_not_bool), Field(ge=1, le=MAX_ID)]


def _at_most(limit: int) -> str:
    """A regex matching exactly the decimal numbers 1 to ``limit``, without
    leading zeros. (Werkzeug checks a rule's method before its converters, so
    a bound checked in ``to_python`` would turn 2**63 into a 405 on routes
    with several methods; in the regex it is a plain 404.)"""
    digits = str(limit)
    shorter = f"[1-9][0-9]{{0,{len(digits) - 2}}}" if len(digits) > 1 else ""
    same_length = []
    for i, digit in enumerate(digits):
        low = 1 if i == 0 else 0
        if int(digit) > low:
            rest = len(digits) - i - 1
            same_length.append(f"{digits[:i]}[{low}-{int(digit) - 1}][0-9]{{{rest}}}")
    same_length.append(digits)
    return "(?:" + "|".join(p for p in [shorter, *same_length] if p) + ")"


class IdConverter(BaseConverter):
    """``<id:name>``: a row id in a URL, 1 to :data:`MAX_ID` without leading
    zeros; anything else does not match (so the URL is a 404)."""

    regex = _at_most(MAX_ID)
    part_isolating = True

    def to_python(self, value: str) -> int:
        return int(value)

    def to_url(self, value: t.Any) -> str:
        return str(int(value))
