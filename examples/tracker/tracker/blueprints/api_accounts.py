"""The JSON API's routes for people who cannot log in (yet): ask for a
password reset link, set a new password with one, verify an email with one.

They need no user, and no CSRF token: they act on no ambient credential
(the links' tokens are the credential), so a forged cross-site request could
do nothing its sender could not do directly. Asking for a reset answers the
same whether or not the email has an account; it is throttled like a login.
"""

from __future__ import annotations

import typing as t

from flask import Blueprint, current_app, request
from flask.blueprints import BlueprintSetupState

from karaffe import ApiResult, ValidationFailed, returns, validate
from karaffe.auth import Auth
from karaffe.db import db

from .. import accounts
from ..forms import FieldError
from ..schemas import (
    Accepted,
    EmailVerificationIn,
    PasswordForgottenIn,
    PasswordResetConfirmIn,
)

blueprint = Blueprint("api_accounts", __name__, url_prefix="/api/v1")


@blueprint.record_once
def _exempt_from_csrf(state: BlueprintSetupState) -> None:
    # create_app installs karaffe.auth (and its CSRF protection) before it
    # registers the blueprints; an app without it has no CSRF check to skip.
    installed: Auth | None = state.app.extensions.get("karaffe.auth")
    if installed is not None and installed.csrf is not None:
        installed.csrf.exempt(blueprint)


@blueprint.errorhandler(FieldError)
def field_error(exc: FieldError) -> t.Any:
    """A token that does not work: a 422 located at ``token``."""
    problem = ValidationFailed(errors=[(["body", exc.field], exc.message, exc.code)])
    return t.cast(t.Any, current_app).handle_api_exception(problem)


@blueprint.post("/password-reset")
@validate(body=PasswordForgottenIn)
@returns(Accepted, status=202, errors={429: "Too many links asked for this email or client"})
def request_password_reset(body: PasswordForgottenIn) -> t.Any:
    """Mail a link to choose a new password to the account with ``email``,
    if there is one: the answer is the same either way."""
    accounts.request_password_reset(body.email, request.remote_addr or "unknown")
    db.session.commit()
    return Accepted(detail="If an account uses this email, a link is on its way to it.")


@blueprint.post("/password-reset/confirm")
@validate(body=PasswordResetConfirmIn)
@returns(None, status=204, errors={422: "The link was used, changed or expired"})
def confirm_password_reset(body: PasswordResetConfirmIn) -> t.Any:
    """Set a new password with the token of a reset link (once): every login
    session of the account ends."""
    accounts.reset_password(body.token, body.password)
    db.session.commit()
    return ApiResult(None, status=204)


@blueprint.post("/email-verification/confirm")
@validate(body=EmailVerificationIn)
@returns(
    Accepted,
    errors={409: "Another account took the new email", 422: "The link was changed or expired"},
)
def confirm_email(body: EmailVerificationIn) -> t.Any:
    """Verify an email with the token of a verification link; a new email
    becomes the login."""
    user, outcome = accounts.verify_email(body.token)
    detail = {
        "verified": f"{user.email} is verified.",
        "changed": f"The login is now {user.email}.",
        "already": f"{user.email} was verified already.",
    }[outcome]
    db.session.commit()
    return Accepted(detail=detail)
