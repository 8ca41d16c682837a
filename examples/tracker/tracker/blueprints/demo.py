"""The demo API of slide 38, kept as a documented example."""

from __future__ import annotations

from flask import Blueprint, request

from karaffe import ApiException, ApiResult

blueprint = Blueprint("demo", __name__, url_prefix="/api/demo")


@blueprint.get("/add")
def add_numbers() -> ApiResult:
    """Add two integers: ``/api/demo/add?a=1&b=2`` answers ``{"sum": 3}``."""
    a = request.args.get("a", type=int)
    b = request.args.get("b", type=int)
    if a is None or b is None:
        raise ApiException("Numbers must be integers")
    return ApiResult({"sum": a + b})
