"""The start page: a welcome for visitors, the viewer's work for members."""

from __future__ import annotations

from flask import Blueprint, render_template

from karaffe.auth import get_user

from .. import services

blueprint = Blueprint("pages", __name__)


@blueprint.get("/")
def index() -> str:
    user = get_user()
    if user is None:
        return render_template("index.html")
    return render_template("dashboard.html", assigned=services.assigned_to(user))
