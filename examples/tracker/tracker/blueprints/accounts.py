"""Sign up, log in, log out; forgotten passwords and email verification
(the links mailed: see :mod:`tracker.accounts`)."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from werkzeug.exceptions import Conflict

from karaffe import ApiException
from karaffe.auth import (
    User,
    get_auth,
    get_user,
    login_required,
    login_user,
    logout_user,
    safe_next_url,
)
from karaffe.db import db

from .. import accounts, mailqueue
from ..forms import Form, refusal_message
from ..schemas import LoginIn, PasswordForgottenIn, PasswordResetIn, SignupIn
from ..settings import TrackerSettings

blueprint = Blueprint("accounts", __name__)


def _next_url() -> str:
    return safe_next_url(request.args.get("next"), url_for("pages.index"))


@blueprint.route("/signup", methods=["GET", "POST"])
def signup() -> ResponseReturnValue:
    if get_user() is not None:
        return redirect(_next_url())
    form = Form()
    if request.method == "POST":
        form = Form.from_request(SignupIn)
        data = form.validate(SignupIn)
        if data is not None:
            taken = db.session.execute(sa.select(User.id).where(User.email == data.email)).first()
            if taken:
                form.errors["email"] = "An account with this email exists already. Log in?"
            else:
                user = User(name=data.name, email=data.email)
                user.set_password(data.password)
                db.session.add(user)
                db.session.flush()
                # Logged in before the commit, like a login: afterwards the
                # user is expired, and reading it again is a query that a
                # database gone meanwhile would fail after the commit.
                login_user(user)
                name = user.name
                # Sent out of the request once committed (tracker.mailqueue);
                # the banner of every page asks for the link from now on.
                mailqueue.queue(accounts.verification_mail(user))
                db.session.commit()
                flash(f"Welcome to tracker, {name}!", "success")
                return redirect(_next_url())
        return render_template(
            "auth/signup.html", form=form, next_url=request.args.get("next")
        ), 422
    return render_template("auth/signup.html", form=form, next_url=request.args.get("next"))


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    # A reset password leads here with the address filled in.
    form = Form(data={"email": request.args.get("email", "")[:254]})
    if request.method == "POST":
        form = Form.from_request(LoginIn)
        data = form.validate(LoginIn)
        status = 422
        if data is not None:
            try:
                user = get_auth().login(data.email, data.password)
            except ApiException as exc:
                # A wrong password and an unknown email read the same (401);
                # too many failures answer 429 with Retry-After.
                form.errors["__all__"] = refusal_message(
                    exc.slug, exc.message, exc.headers.get("Retry-After")
                )
                status = exc.status
                template = render_template(
                    "auth/login.html", form=form, next_url=request.args.get("next")
                )
                return template, status, exc.headers
            # Read before the commit expires the user: reloading an expired
            # user while the fresh login's tenancy scope is being computed
            # recurses in karaffe's data layer as of this writing.
            name = user.name
            db.session.commit()  # keeps a password hash upgraded by the login
            flash(f"Welcome back, {name}.", "success")
            return redirect(_next_url())
        return render_template(
            "auth/login.html", form=form, next_url=request.args.get("next")
        ), status
    return render_template("auth/login.html", form=form, next_url=request.args.get("next"))


@blueprint.post("/logout")
def logout() -> ResponseReturnValue:
    logout_user()
    flash("You are logged out.", "info")
    return redirect(url_for("pages.index"))


def _address() -> str:
    return request.remote_addr or "unknown"


@blueprint.route("/password/forgot", methods=["GET", "POST"])
def forgot_password() -> ResponseReturnValue:
    """Ask for a reset link. The answer is the same whether the email has an
    account or not (the mail says it, not the page)."""
    form = Form()
    if request.method == "GET":
        return render_template("auth/forgot.html", form=form)
    form = Form.from_request(PasswordForgottenIn)
    data = form.validate(PasswordForgottenIn)
    if data is None:
        return render_template("auth/forgot.html", form=form), 422
    try:
        accounts.request_password_reset(data.email, _address())
        db.session.commit()
    except accounts.TooManyMails as exc:
        form.errors["__all__"] = exc.message
        return render_template("auth/forgot.html", form=form), 429, exc.headers
    minutes = TrackerSettings.of().password_reset_minutes
    return render_template("auth/forgot_sent.html", email=data.email, minutes=minutes)


def _link_error(exc: accounts.InvalidLink | accounts.ExpiredLink) -> ResponseReturnValue:
    status = 410 if isinstance(exc, accounts.ExpiredLink) else 404
    return render_template("auth/link_error.html", message=exc.message), status


@blueprint.route("/password/reset/<token>", methods=["GET", "POST"])
def reset_password(token: str) -> ResponseReturnValue:
    """The page a reset link opens: a new password, once."""
    try:
        user = accounts.user_for_reset(token)
    except (accounts.InvalidLink, accounts.ExpiredLink) as exc:
        return _link_error(exc)
    form = Form()
    if request.method == "POST":
        form = Form.from_request(PasswordResetIn)
        data = form.validate(PasswordResetIn)
        if data is not None:
            email = user.email
            accounts.reset_password(token, data.password)
            if get_user() is not None:
                logout_user()  # whoever was logged in here logs in with the new password
            db.session.commit()
            flash("Your password is changed, and every browser is logged out: log in.", "success")
            return redirect(url_for("accounts.login", email=email))
        return render_template("auth/reset.html", form=form, email=user.email), 422
    response = render_template("auth/reset.html", form=form, email=user.email)
    # The URL holds the token: no cache keeps the page (the site's referrer
    # policy already sends other sites the origin only).
    return response, 200, {"Cache-Control": "no-store"}


@blueprint.get("/verify-email/<token>")
def verify_email(token: str) -> ResponseReturnValue:
    """The page a verification link opens: the address is verified (and
    becomes the login, for a new one)."""
    try:
        user, outcome = accounts.verify_email(token)
    except (accounts.InvalidLink, accounts.ExpiredLink) as exc:
        return _link_error(exc)
    except Conflict as exc:
        return render_template("auth/link_error.html", message=exc.description), 409
    email = user.email
    db.session.commit()
    messages = {
        "verified": f"Thank you: {email} is verified.",
        "changed": f"Your email is now {email}: log in with it from now on.",
        "already": f"{email} was verified already.",
    }
    flash(messages[outcome], "success")
    return redirect(url_for("pages.index"))


@blueprint.post("/verify-email/resend")
@login_required
def resend_verification() -> ResponseReturnValue:
    user = get_user()
    assert user is not None
    if user.email_verified_at is not None:
        flash(f"{user.email} is verified already.", "info")
        return redirect(url_for("settings.profile"))
    try:
        accounts.check_reset_rate("verify", user.email, _address())
    except accounts.TooManyMails as exc:
        flash(exc.message, "error")
        return redirect(url_for("settings.profile")), 303
    email = user.email
    mailqueue.queue(accounts.verification_mail(user))
    db.session.commit()
    flash(f"We sent a new link to {email}.", "success")
    return redirect(url_for("settings.profile"))
