"""The viewer's settings: the profile (name, email, password); API tokens
(create, list, revoke); login sessions (list, end one or all others).

A new email becomes the login only once the link mailed to it is followed
(:mod:`tracker.accounts`); until then the old one stays.

Creating a token is POST-redirect-GET: the POST stores the new secret in the
session, the page the redirect leads to shows it once and forgets it, so a
reload creates nothing and shows the secret no more (and the secret never
appears in a URL). Revoking goes through a confirmation page.
"""

from __future__ import annotations

import datetime as dt
import re
import typing as t

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

from karaffe import auth
from karaffe.auth import ApiToken, create_api_token, login_required, revoke_api_token, utcnow
from karaffe.db import db

from .. import accounts, mailqueue, services
from ..forms import FieldError, Form
from ..schemas import EmailChangeIn, PasswordChangeIn, ProfileIn, TokenIn
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


# -- sessions -------------------------------------------------------------

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


def _sessions_page() -> ResponseReturnValue:
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
    )
    return page


@blueprint.get("/sessions")
@login_required
def sessions() -> ResponseReturnValue:
    return _sessions_page()


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


# -- the profile -----------------------------------------------------------------------


def _profile_page(forms: dict[str, Form] | None = None, status: int = 200) -> ResponseReturnValue:
    user = viewer()
    forms = forms or {}
    page = render_template(
        "settings/profile.html",
        user=user,
        name_form=forms.get("name") or Form(data={"name": user.name}),
        email_form=forms.get("email") or Form(),
        password_form=forms.get("password") or Form(),
    )
    return page, status


@blueprint.get("/profile")
@login_required
def profile() -> ResponseReturnValue:
    return _profile_page()


@blueprint.post("/profile")
@login_required
def change_name() -> ResponseReturnValue:
    form = Form.from_request(ProfileIn)
    data = form.validate(ProfileIn)
    if data is None:
        return _profile_page({"name": form}, 422)
    services.rename(viewer(), data.name)
    db.session.commit()
    flash("Name saved.", "success")
    return redirect(url_for("settings.profile"))


_S = t.TypeVar("_S", EmailChangeIn, PasswordChangeIn)


def _with_current_password(schema: type[_S]) -> tuple[Form, _S | None]:
    """The posted form of ``schema``, and its data once it is valid and its
    current password is the viewer's (``None``: the form holds the errors)."""
    form = Form.from_request(schema)
    data = form.validate(schema)
    if data is not None:
        try:
            accounts.check_current_password(viewer(), data.current_password)
        except FieldError as exc:
            form.add_error(exc)
            return form, None
    return form, data


@blueprint.post("/email")
@login_required
def change_email() -> ResponseReturnValue:
    """Send a link to the new address; it becomes the login once followed."""
    form, data = _with_current_password(EmailChangeIn)
    if data is None:
        return _profile_page({"email": form}, 422)
    user = viewer()
    try:
        message = accounts.change_email(user, data.email)
    except FieldError as exc:
        form.add_error(exc)
        return _profile_page({"email": form}, 422)
    current = user.email
    mailqueue.queue(message)  # sent out of the request once committed
    db.session.commit()
    flash(
        f"We sent a link to {data.email}: it becomes your login once you open it. "
        f"Until then you log in with {current}.",
        "success",
    )
    return redirect(url_for("settings.profile"))


@blueprint.post("/password")
@login_required
def change_password() -> ResponseReturnValue:
    form, data = _with_current_password(PasswordChangeIn)
    if data is None:
        return _profile_page({"password": form}, 422)
    viewer().set_password(data.password)
    # A new session id for this browser; every other session ends on commit.
    auth.rotate_session()
    db.session.commit()
    flash("Password changed: your other sessions are logged out.", "success")
    return redirect(url_for("settings.profile"))
