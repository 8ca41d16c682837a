"""Which JSON encoder for API responses? ``python -m bench json``.

Times encoding one API response body (a page of 20 records, and a single
record) held as pydantic models, as dicts and as dataclasses, with each
candidate encoder. The records have what real API records have: an int id, a
UUID, text, a float, a timezone-aware datetime, a list of strings, a bool.

It justifies :func:`karaffe.api.result.encode_json` (the first row): a model
goes through its own compiled serializer and everything else through orjson.
Times are the best of several batches, in microseconds per encoded body; the
ratio is to the fastest encoder for that shape (1.00x = fastest).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import operator
import timeit
import typing as t
import uuid
from collections.abc import Callable

import orjson
import pydantic_core
from flask import Flask
from pydantic import BaseModel, TypeAdapter

from karaffe.api.result import encode_json

__all__ = ["ENCODERS", "main", "make_records"]

Encoder = Callable[[t.Any], bytes]


class Record(BaseModel):
    id: int
    uid: uuid.UUID
    name: str
    price: float
    created_at: dt.datetime
    tags: list[str]
    active: bool


@dataclasses.dataclass
class RecordDC:
    id: int
    uid: uuid.UUID
    name: str
    price: float
    created_at: dt.datetime
    tags: list[str]
    active: bool


def make_records(n: int) -> dict[str, t.Any]:
    """``n`` records as models, dicts and dataclasses (a list, or one for ``n == 1``)."""
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    dicts: list[dict[str, t.Any]] = [
        {
            "id": i,
            "uid": uuid.UUID(int=i * 7919),
            "name": f"Record number {i} with a reasonably long name",
            "price": 10 + i * 0.25,
            "created_at": start + dt.timedelta(minutes=i),
            "tags": ["alpha", "beta", f"tag-{i % 5}"],
            "active": i % 2 == 0,
        }
        for i in range(1, n + 1)
    ]
    shapes: dict[str, list[t.Any]] = {
        "models": [Record(**d) for d in dicts],
        "dicts": dicts,
        "dataclasses": [RecordDC(**d) for d in dicts],
    }
    return {k: v[0] for k, v in shapes.items()} if n == 1 else shapes


def _std_default(value: t.Any) -> t.Any:
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    raise TypeError(type(value).__name__)


def _stdlib(value: t.Any) -> bytes:
    return json.dumps(value, default=_std_default, separators=(",", ":")).encode()


_flask = Flask(__name__)


def _flask_provider(value: t.Any) -> bytes:
    # Flask's default provider knows dataclasses, dates and UUIDs, not models;
    # it sorts keys, escapes non-ASCII and writes datetimes as HTTP dates.
    return _flask.json.dumps(value).encode()


_model_dump = operator.methodcaller("model_dump")
_ADAPTERS: dict[str, TypeAdapter[t.Any]] = {
    "models": TypeAdapter(list[Record]),
    "dicts": TypeAdapter(list[dict[str, t.Any]]),
    "dataclasses": TypeAdapter(list[RecordDC]),
    "model": TypeAdapter(Record),
    "dict": TypeAdapter(dict[str, t.Any]),
    "dataclass": TypeAdapter(RecordDC),
}


def _adapter_for(value: t.Any) -> TypeAdapter[t.Any]:
    if isinstance(value, list):
        first = value[0]
        kind = (
            "models"
            if isinstance(first, BaseModel)
            else "dicts"
            if isinstance(first, dict)
            else "dataclasses"
        )
    else:
        kind = (
            "model"
            if isinstance(value, BaseModel)
            else "dict"
            if isinstance(value, dict)
            else "dataclass"
        )
    return _ADAPTERS[kind]


def _type_adapter(value: t.Any) -> bytes:
    return _adapter_for(value).dump_json(value)


def _per_model_serializer(value: t.Any) -> bytes:
    if isinstance(value, BaseModel):
        return value.__pydantic_serializer__.to_json(value)
    if isinstance(value, list) and all(isinstance(v, BaseModel) for v in value):
        return b"[" + b",".join(v.__pydantic_serializer__.to_json(v) for v in value) + b"]"
    raise TypeError("models only")


def _orjson_model_dump(value: t.Any) -> bytes:
    return orjson.dumps(value, default=_model_dump)


#: The candidates, by name. Each raises TypeError for a shape it cannot encode.
ENCODERS: dict[str, Encoder] = {
    "karaffe encode_json": encode_json,
    "orjson (default=model_dump)": _orjson_model_dump,
    "pydantic TypeAdapter.dump_json": _type_adapter,
    "model.__pydantic_serializer__.to_json": _per_model_serializer,
    "pydantic_core.to_json": pydantic_core.to_json,
    "stdlib json (default=...)": _stdlib,
    "flask app.json.dumps": _flask_provider,
}  # fmt: skip


def _check_same(results: dict[str, bytes]) -> None:
    """Every encoder (but Flask's, whose datetimes differ) says the same thing."""
    decoded = {n: json.loads(b) for n, b in results.items() if not n.startswith("flask")}
    reference = next(iter(decoded.values()))
    for name, value in decoded.items():
        if _normalize(value) != _normalize(reference):
            raise AssertionError(f"{name} encodes differently: {results[name][:120]!r}")


def _normalize(value: t.Any) -> t.Any:
    # Timestamps written as "+00:00" or "Z" are the same instant.
    if isinstance(value, list):
        return [_normalize(v) for v in value]
    if isinstance(value, dict):
        return {k: _normalize(v) for k, v in value.items()}
    if isinstance(value, str) and value.endswith("Z"):
        return value[:-1] + "+00:00"
    return value


def measure(size: int, seconds: float) -> dict[str, dict[str, float | None]]:
    """Microseconds per body, for each encoder and shape (None: cannot encode it)."""
    times: dict[str, dict[str, float | None]] = {name: {} for name in ENCODERS}
    for shape, value in make_records(size).items():
        results = {}
        for name, encoder in ENCODERS.items():
            try:
                results[name] = encoder(value)
            except TypeError:
                times[name][shape] = None
                continue
            timer = timeit.Timer(lambda e=encoder, v=value: e(v))  # type: ignore[misc]
            number, _ = timer.autorange()
            number = max(1, int(number * seconds / 0.2 / 5))
            times[name][shape] = min(timer.repeat(repeat=5, number=number)) / number * 1e6
        _check_same(results)
    return times


def table(times: dict[str, dict[str, float | None]]) -> str:
    """A Markdown table: µs per body and the ratio to the column's fastest."""
    shapes = list(next(iter(times.values())).keys())
    best = {s: min(us for v in times.values() if (us := v.get(s)) is not None) for s in shapes}
    lines = ["| encoder | " + " | ".join(shapes) + " |", "|---|" + "---:|" * len(shapes)]
    for name, row in times.items():
        cells = []
        for s in shapes:
            us = row.get(s)
            cells.append("n/a" if us is None else f"{us:.2f} us ({us / best[s]:.2f}x)")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: t.Sequence[str] = ()) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench json", description=__doc__)
    parser.add_argument("--seconds", type=float, default=0.5, help="rough time per cell (0.5)")
    args = parser.parse_args(argv)
    for size, title in ((20, "a page of 20 records"), (1, "one record")):
        print(f"\nEncoding {title} (us per body; ratio to the fastest in the column)\n")
        print(table(measure(size, args.seconds)))
    return 0


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))
