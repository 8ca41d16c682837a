"""Sign up, log in, log out."""

from __future__ import annotations

import sqlalchemy as sa
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue

from karaffe import ApiException
from karaffe.auth import User, get_auth, get_user, login_user, logout_user, safe_next_url
from karaffe.db import db

from ..forms import Form, refusal_message
from ..schemas import LoginIn, SignupIn

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
                flash(f"Welcome to tracker, {user.name}!", "success")
                db.session.commit()
                return redirect(_next_url())
        return render_template(
            "auth/signup.html", form=form, next_url=request.args.get("next")
        ), 422
    return render_template("auth/signup.html", form=form, next_url=request.args.get("next"))


@blueprint.route("/login", methods=["GET", "POST"])
def login() -> ResponseReturnValue:
    form = Form()
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
