"""The viewer's settings: API tokens (create, list, revoke)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from karaffe.auth import ApiToken, create_api_token, login_required, revoke_api_token
from karaffe.db import db

from ..forms import Form
from ..schemas import TokenIn
from ..web import viewer

blueprint = Blueprint("settings", __name__, url_prefix="/settings")


def _tokens() -> list[ApiToken]:
    return list(
        db.session.execute(
            sa.select(ApiToken)
            .where(ApiToken.user_id == viewer().id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id.desc())
        ).scalars()
    )


@blueprint.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> ResponseReturnValue:
    form = Form()
    if request.method == "POST":
        form = Form.from_request(TokenIn)
        data = form.validate(TokenIn)
        if data is None:
            return render_template("settings/tokens.html", form=form, tokens=_tokens()), 422
        token, plaintext = create_api_token(viewer(), data.name)
        db.session.commit()
        # The secret is shown on this one response and never stored in clear.
        page = render_template(
            "settings/tokens.html",
            form=Form(),
            tokens=_tokens(),
            new_token=plaintext,
            new_token_name=token.name,
        )
        return page, 201, {"Cache-Control": "no-store"}
    return render_template("settings/tokens.html", form=form, tokens=_tokens())


@blueprint.post("/tokens/<id:token_id>/revoke")
@login_required
def revoke_token(token_id: int) -> ResponseReturnValue:
    token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == viewer().id)
    ).scalar_one_or_none()
    if token is None:
        abort(404)
    revoke_api_token(token)
    db.session.commit()
    flash(f"Token “{token.name}” revoked.", "success")
    return redirect(url_for("settings.tokens"))
