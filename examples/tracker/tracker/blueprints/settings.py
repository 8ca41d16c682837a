"""The viewer's settings: API tokens (create, list, revoke).

Creating a token is POST-redirect-GET: the POST stores the new secret in the
session, the page the redirect leads to shows it once and forgets it, so a
reload creates nothing and shows the secret no more (and the secret never
appears in a URL). Revoking goes through a confirmation page.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    flash,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.typing import ResponseReturnValue

from karaffe.auth import ApiToken, create_api_token, login_required, revoke_api_token, utcnow
from karaffe.db import db

from ..forms import Form
from ..schemas import TokenIn
from ..web import viewer

blueprint = Blueprint("settings", __name__, url_prefix="/settings")

#: Session key of a token just created, until the page shows it once.
_NEW_TOKEN = "tracker.new_token"

#: The scopes of each choice of the form's "access" field.
_SCOPES = {"read": ["read"], "write": ["read", "write"]}


def _tokens() -> list[ApiToken]:
    return list(
        db.session.execute(
            sa.select(ApiToken)
            .where(ApiToken.user_id == viewer().id, ApiToken.revoked_at.is_(None))
            .order_by(ApiToken.id.desc())
        ).scalars()
    )


def _own_token(token_id: int) -> ApiToken:
    """The viewer's token ``token_id`` (404 for anyone else's)."""
    token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == viewer().id)
    ).scalar_one_or_none()
    if token is None:
        abort(404)
    return token


def _page(form: Form, new_token: dict[str, str] | None = None) -> str:
    return render_template("settings/tokens.html", form=form, tokens=_tokens(), new_token=new_token)


@blueprint.route("/tokens", methods=["GET", "POST"])
@login_required
def tokens() -> ResponseReturnValue:
    if request.method == "POST":
        form = Form.from_request(TokenIn)
        data = form.validate(TokenIn)
        if data is None:
            return _page(form), 422
        expires_at = None
        if data.expires != "never":
            expires_at = utcnow() + dt.timedelta(days=int(data.expires))
        token, plaintext = create_api_token(
            viewer(), data.name, expires_at, scopes=_SCOPES[data.access]
        )
        # Read before the commit: the token is expired by it (see api_v1).
        session[_NEW_TOKEN] = {"id": token.id, "name": token.name, "token": plaintext}
        db.session.commit()
        return redirect(url_for("settings.tokens"), 303)
    new_token = session.pop(_NEW_TOKEN, None)
    defaults = TokenIn.model_fields
    form = Form(data={"expires": defaults["expires"].default, "access": defaults["access"].default})
    response = make_response(_page(form, new_token))
    # The page may hold a secret: no cache, back button or proxy keeps it.
    response.headers["Cache-Control"] = "no-store"
    return response


@blueprint.route("/tokens/<id:token_id>/revoke", methods=["GET", "POST"])
@login_required
def revoke_token(token_id: int) -> ResponseReturnValue:
    token = _own_token(token_id)
    if token.is_revoked:
        flash(f"Token “{token.name}” is already revoked.", "info")
        return redirect(url_for("settings.tokens"))
    if request.method == "GET":
        return render_template(
            "confirm.html",
            heading=f"Revoke token “{token.name}” ({token.prefix}…)?",
            message="Every script that uses it is refused from now on. This cannot be undone.",
            button="Revoke token",
            cancel_url=url_for("settings.tokens"),
        )
    revoke_api_token(token)
    name = token.name
    db.session.commit()
    flash(f"Token “{name}” revoked.", "success")
    return redirect(url_for("settings.tokens"))
