"""Account links sent by mail: password resets and email verification.

Both are tokens of karaffe's one signer (:mod:`karaffe.signing`), each with
its own salt, so a link made for one never works for the other, nor as an
invitation or a cursor. They carry no secret and are not stored: what makes
each single-use is what it is bound to.

- A **password reset** link carries the user's id and a fingerprint of their
  current password hash (the first 16 hex digits of its SHA-256). Setting a
  new password changes the hash, so the link dies once used, and so does
  every other reset link sent before; it also expires after
  ``PASSWORD_RESET_MINUTES``. Resetting ends every login session of the user
  (:meth:`karaffe.auth.User.set_password`).
- An **email verification** link carries the user's id, the address to
  verify, and the address the account had when the link was made. It works
  only while the account still has that address: for a new address, once it
  becomes the login the link dies; it expires after ``EMAIL_VERIFICATION_DAYS``.

Asking for a reset never tells whether an account exists: the answer is the
same, and so is the work (the request is queued; the account is looked up
when the mail is sent, by :mod:`tracker.mailqueue`), and a mail goes out
only when one does. Requests are throttled per
address asked for and per client, with the login throttle's store and window
(:func:`check_reset_rate`).
"""

from __future__ import annotations

import hashlib
import math

import sqlalchemy as sa
from flask import current_app, url_for
from flask_mailman import EmailMessage
from itsdangerous import BadSignature, SignatureExpired
from werkzeug.exceptions import Conflict

from karaffe import TooManyRequests
from karaffe.auth import AuthSettings, User, get_auth, normalize_email, utcnow
from karaffe.db import db
from karaffe.signing import signer_for

from . import mail, mailqueue
from .forms import FieldError
from .settings import TrackerSettings

__all__ = [
    "EMAIL_VERIFICATION_SALT",
    "PASSWORD_RESET_SALT",
    "ExpiredLink",
    "InvalidLink",
    "TooManyMails",
    "change_email",
    "check_current_password",
    "check_reset_rate",
    "email_taken",
    "password_reset_mail",
    "request_password_reset",
    "reset_password",
    "reset_token",
    "user_for_reset",
    "verification_mail",
    "verification_token",
    "verify_email",
]

#: What password reset links are signed for.
PASSWORD_RESET_SALT = "tracker.password-reset"
#: What email verification links are signed for.
EMAIL_VERIFICATION_SALT = "tracker.email-verification"


_INVALID = "This link is not valid: it was used already, or changed."


class InvalidLink(FieldError):
    """A link that was changed, used already, or superseded (a 404 page, or a
    422 at the ``token`` field of the API)."""

    def __init__(self, message: str = _INVALID) -> None:
        super().__init__("token", message, "invalid")


class ExpiredLink(FieldError):
    """A link older than it may be (a 410 page, or a 422 at ``token``)."""

    def __init__(self, message: str) -> None:
        super().__init__("token", message, "expired")


class TooManyMails(TooManyRequests):
    """Too many account mails asked for; ``Retry-After`` says when to ask again."""

    slug = "too-many-mails"
    title = "Too many mails asked for"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        minutes = max(1, math.ceil(retry_after / 60))
        super().__init__(
            f"Too many mails asked for. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
            headers={"Retry-After": str(retry_after)},
        )


def check_reset_rate(kind: str, account: str, address: str) -> None:
    """Count one mail of ``kind`` asked for ``account`` (an email) from
    ``address``; :class:`TooManyMails` once either has asked too often within
    ``LOGIN_THROTTLE_WINDOW``. Counted whether or not the account exists, so
    the answer says nothing about it."""
    settings = TrackerSettings.of()
    throttle = get_auth().throttle
    assert throttle is not None
    store = throttle.store
    limits = [
        (f"{kind}:account:{normalize_email(account)}", settings.max_reset_requests_per_account),
        (f"{kind}:address:{address}", settings.max_reset_requests_per_address),
    ]
    waits = [left for key, limit in limits for count, left in [store.peek(key)] if count >= limit]
    if waits:
        raise TooManyMails(max(1, math.ceil(max(waits))))
    window = AuthSettings.of().login_throttle_window
    for key, _ in limits:
        store.increment(key, window)


# -- password reset ------------------------------------------------------------------


def _password_fingerprint(user: User) -> str:
    return hashlib.sha256((user.password_hash or "").encode()).hexdigest()[:16]


def reset_token(user: User) -> str:
    """A password reset token for ``user``, valid until their password changes."""
    return signer_for(current_app, PASSWORD_RESET_SALT).dumps(
        {"u": user.id, "p": _password_fingerprint(user)}
    )


def request_password_reset(email: str, address: str) -> None:
    """Queue a reset link for the active account with ``email``, if there is
    one (:func:`tracker.mailqueue.queue_password_reset`), in the current
    transaction: the account is looked up when the mail is sent, out of the
    request, so the request does the same work whether there is one or not.
    Throttled (:class:`TooManyMails`)."""
    check_reset_rate("reset", email, address)
    mailqueue.queue_password_reset(email)


def password_reset_mail(email: str, sender: str) -> EmailMessage | None:
    """The mail with a reset link to the active account with ``email``, or
    ``None`` when there is none; needs a request context (the link's site)."""
    user = db.session.execute(
        sa.select(User).where(User.email == normalize_email(email), User.is_active)
    ).scalar_one_or_none()
    if user is None:
        return None
    minutes = TrackerSettings.of().password_reset_minutes
    link = url_for("accounts.reset_password", token=reset_token(user), _external=True)
    body = (
        f"Hello {user.name or user.email},\n\n"
        "someone (we hope you) asked to reset the password of your tracker account.\n"
        f"Choose a new one here within {minutes} minutes:\n\n  {link}\n\n"
        "The link works once. Setting a new password logs out every browser "
        "logged in to your account.\nIf you did not ask for this, ignore this mail: "
        "your password stays as it is.\n"
    )
    return EmailMessage(
        subject="Reset your tracker password", body=body, from_email=sender, to=[user.email]
    )


def user_for_reset(token: str) -> User:
    """The user a reset token is for, while it works.

    :raises ExpiredLink: older than ``PASSWORD_RESET_MINUTES``.
    :raises InvalidLink: changed, used already (the password changed since),
        or its account is gone or deactivated.
    """
    minutes = TrackerSettings.of().password_reset_minutes
    try:
        data = signer_for(current_app, PASSWORD_RESET_SALT).loads(token, max_age=minutes * 60)
        user_id, fingerprint = int(data["u"]), str(data["p"])
    except SignatureExpired:
        raise ExpiredLink(
            f"This password reset link has expired (it works for {minutes} minutes): "
            "ask for a new one."
        ) from None
    except (BadSignature, KeyError, TypeError, ValueError):
        raise InvalidLink() from None
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or _password_fingerprint(user) != fingerprint:
        raise InvalidLink()
    return user


def reset_password(token: str, password: str) -> User:
    """Set ``password`` for the user of ``token`` (see :func:`user_for_reset`);
    when committed, every login session of theirs ends and the link is dead.
    Following the link proves the address too: it counts as verified."""
    user = user_for_reset(token)
    user.set_password(password)
    if user.email_verified_at is None:
        user.email_verified_at = utcnow()
    db.session.flush()
    return user


# -- email verification ------------------------------------------------------------


def verification_token(user: User, email: str) -> str:
    """A token that verifies ``email`` for ``user`` while their address is
    the one it has now."""
    return signer_for(current_app, EMAIL_VERIFICATION_SALT).dumps(
        {"u": user.id, "e": normalize_email(email), "c": user.email}
    )


def verification_mail(user: User, email: str | None = None) -> EmailMessage:
    """The mail with a verification link for ``email`` (default: the user's
    own address), to that address. Built before the request commits (it
    needs the user's id and name) and queued in its transaction
    (:func:`tracker.mailqueue.queue`)."""
    target = normalize_email(email or user.email)
    days = TrackerSettings.of().email_verification_days
    link = url_for("accounts.verify_email", token=verification_token(user, target), _external=True)
    if target == user.email:
        subject = "Verify your email for tracker"
        intro = "please confirm that this address is yours by opening this link"
    else:
        subject = "Confirm your new email for tracker"
        intro = (
            f"you asked to log in to tracker with this address instead of {user.email}.\n"
            "It becomes your login once you open this link"
        )
    body = (
        f"Hello {user.name or target},\n\n{intro} within {days} days:\n\n  {link}\n\n"
        "If you did not ask for this, ignore this mail.\n"
    )
    return mail.message(target, subject, body)


def verify_email(token: str) -> tuple[User, str]:
    """Apply a verification link: the address it names is verified, and
    becomes the user's login if it is a new one. Returns the user and what
    happened: ``"verified"``, ``"changed"`` or ``"already"`` (verified before).

    :raises ExpiredLink: older than ``EMAIL_VERIFICATION_DAYS``.
    :raises InvalidLink: changed, or the account's address is no longer the
        one the link was made for (a newer change superseded it, or it was used).
    :raises werkzeug.exceptions.Conflict: another account took the new address meanwhile.
    """
    days = TrackerSettings.of().email_verification_days
    try:
        data = signer_for(current_app, EMAIL_VERIFICATION_SALT).loads(token, max_age=days * 86400)
        user_id, email, current = int(data["u"]), str(data["e"]), str(data["c"])
    except SignatureExpired:
        raise ExpiredLink(
            f"This verification link has expired (it works for {days} days): ask for a new one."
        ) from None
    except (BadSignature, KeyError, TypeError, ValueError):
        raise InvalidLink() from None
    user = db.session.get(User, user_id)
    if user is None or not user.is_active or user.email != current:
        raise InvalidLink()
    if email == user.email:
        if user.email_verified_at is not None:
            return user, "already"
        user.email_verified_at = utcnow()
        db.session.flush()
        return user, "verified"
    if email_taken(email, user.id):
        raise Conflict("Another account uses this email now: yours stays as it was.")
    user.email = email
    user.email_verified_at = utcnow()
    db.session.flush()
    return user, "changed"


def check_current_password(user: User, password: str) -> None:
    """:raises FieldError: ``password`` is not ``user``'s (at ``current_password``)."""
    if not user.check_password(password):
        raise FieldError("current_password", "This is not your current password.", "wrong")


def email_taken(email: str, user_id: int | None = None) -> bool:
    """Whether an account other than ``user_id`` has ``email``."""
    stmt = sa.select(User.id).where(User.email == normalize_email(email))
    if user_id is not None:
        stmt = stmt.where(User.id != user_id)
    return db.session.execute(stmt).first() is not None


def change_email(user: User, email: str) -> EmailMessage:
    """Start changing ``user``'s address to ``email``: the mail to send, with
    a link to the new address; the login stays the old one until it is
    followed.

    :raises FieldError: the address is the current one, or another account's.
    """
    email = normalize_email(email)
    if email == user.email:
        raise FieldError("email", "This is your email already.", "unchanged")
    if email_taken(email, user.id):
        raise FieldError("email", "An account with this email exists already.", "taken")
    return verification_mail(user, email)
