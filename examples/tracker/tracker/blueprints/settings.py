"""The viewer's settings: API tokens (create, list, revoke); sessions (list,
end one or all others) and password."""

from __future__ import annotations

import re
import typing as t

import sqlalchemy as sa
from flask import Blueprint, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from karaffe import auth
from karaffe.auth import ApiToken, create_api_token, login_required, revoke_api_token
from karaffe.db import db

from ..forms import Form
from ..schemas import PasswordChangeIn, TokenIn
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


# -- sessions and password -------------------------------------------------------------

_BROWSERS = [("Edg/", "Edge"), ("OPR/", "Opera"), ("Firefox/", "Firefox"),
             ("Chrome/", "Chrome"), ("Safari/", "Safari"), ("curl/", "curl")]  # fmt: skip
_SYSTEMS = [("Android", "Android"), ("iPhone", "iOS"), ("iPad", "iPadOS"),
            ("Windows", "Windows"), ("Mac OS X", "macOS"), ("Linux", "Linux")]  # fmt: skip


def browser_name(user_agent: str) -> str:
    """A short name for a ``User-Agent``: "Firefox on Linux"."""
    browser = next((name for token, name in _BROWSERS if token in user_agent), None)
    system = next((name for token, name in _SYSTEMS if token in user_agent), None)
    if browser and system:
        return f"{browser} on {system}"
    if browser or system:
        return browser or t.cast(str, system)
    first = re.split(r"[\s/(]", user_agent.strip(), maxsplit=1)[0]
    return first or "Unknown browser"


def _sessions_page(form: Form, status: int = 200) -> ResponseReturnValue:
    current = auth.current_session()
    page = render_template(
        "settings/sessions.html",
        sessions=[
            (
                record,
                browser_name(record.user_agent),
                current is not None and record.id == current.id,
            )
            for record in auth.sessions_of(viewer())
        ],
        form=form,
    )
    return page, status


@blueprint.get("/sessions")
@login_required
def sessions() -> ResponseReturnValue:
    return _sessions_page(Form())


@blueprint.post("/sessions/<id:session_id>/end")
@login_required
def end_session(session_id: int) -> ResponseReturnValue:
    current = auth.current_session()
    if not auth.end_session(viewer(), session_id):
        abort(404)
    if current is not None and current.id == session_id:
        flash("You are logged out.", "info")
        return redirect(url_for("accounts.login"))
    flash("Session ended: that browser is logged out.", "success")
    return redirect(url_for("settings.sessions"))


@blueprint.post("/sessions/end-others")
@login_required
def end_other_sessions() -> ResponseReturnValue:
    count = auth.end_other_sessions(viewer())
    flash(f"{count} other session{'s' if count != 1 else ''} ended.", "success")
    return redirect(url_for("settings.sessions"))


@blueprint.post("/password")
@login_required
def change_password() -> ResponseReturnValue:
    form = Form.from_request(PasswordChangeIn)
    data = form.validate(PasswordChangeIn)
    if data is None:
        return _sessions_page(form, 422)
    user = viewer()
    if not user.check_password(data.current_password):
        form.errors["current_password"] = "This is not your current password."
        return _sessions_page(form, 422)
    user.set_password(data.password)
    # A new session id for this browser; every other session ends on commit.
    auth.rotate_session()
    db.session.commit()
    flash("Password changed: your other sessions are logged out.", "success")
    return redirect(url_for("settings.sessions"))
