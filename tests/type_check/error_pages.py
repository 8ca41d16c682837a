"""Checked by mypy (``make lint``), never run: HTML error pages registered
with ``App.html_errorhandler`` type-check with what Flask's views return."""

from __future__ import annotations

from flask import render_template
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

import karaffe

app = karaffe.App(__name__)


@app.html_errorhandler
def error_page(e: HTTPException) -> tuple[str, int]:
    return render_template("error.html", error=e), e.code or 500


def plain_page(e: HTTPException) -> str:
    return f"{e.code} {e.name}"


def werkzeugs_page(e: HTTPException) -> HTTPException | Response:
    return e if e.code != 418 else Response("I'm a teapot", 418)


app.html_errorhandler(plain_page)
app.html_errorhandler(werkzeugs_page)
page: str = plain_page(HTTPException())  # the decorator keeps the function's type
