"""The welcome page of the talk's view test (slide 57)."""

from __future__ import annotations

from flask import Blueprint

blueprint = Blueprint("welcome", __name__)


@blueprint.get("/welcome")
def welcome() -> str:
    return "<!doctype html><title>tracker</title><h1>Welcome to tracker</h1>"
