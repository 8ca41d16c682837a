"""Users, passwords, login sessions and API tokens (slide 33).

The user of a request is loaded lazily, once, by :func:`get_user` (and the
:data:`current_user` proxy): from ``Authorization: Bearer <token>`` when the
request carries one (API clients), else from the session cookie (browsers)::

    @blueprint.get("/api/me")
    @login_required
    def me() -> ApiResult:
        return ApiResult({"email": current_user.email})

Passwords are hashed with scrypt and compared in constant time. A login
session is a row on the server (:class:`UserSession`) that the signed session
cookie names by a random token: logging out ends it at once for every process,
and changing the password ends every other session of the user. API tokens
are random, shown once, stored as a SHA-256 digest, named, revocable, with a
last-used time, an optional expiry and scopes (a read-only token is refused,
403, on every POST, PUT, PATCH and DELETE). :class:`Auth` installs CSRF protection
for forms (Flask-WTF; requests with a bearer token are exempt, they carry no
ambient credential), safe cookie settings, and a throttle on failed logins.

Ending a credential (a logout, an ended session, a changed password, a revoked
API token, a deactivated account) sends :data:`karaffe.signals.credentials_revoked`
once committed; :mod:`karaffe.events` listens and cuts the live streams
opened with it.
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import hmac
import logging
import re
import secrets
import typing as t
from collections.abc import Callable, Iterable

import sqlalchemy as sa
from flask import (
    Flask,
    abort,
    current_app,
    g,
    has_app_context,
    has_request_context,
    redirect,
    request,
    session,
    url_for,
)
from flask import Response as FlaskResponse
from flask.sessions import (
    SecureCookieSession,
    SecureCookieSessionInterface,
    SessionInterface,
    SessionMixin,
)
from flask_wtf.csrf import CSRFProtect
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column, relationship, validates
from werkzeug.local import LocalProxy
from werkzeug.security import check_password_hash, generate_password_hash

from ._throttle import (
    LoginThrottle,
    LoginThrottled,
    MemoryThrottleStore,
    RedisThrottleStore,
    ThrottleStore,
)
from .api.errors import Forbidden, Unauthorized
from .config import ConfigError, PositiveInt, RedisUrl, Settings
from .db import Model, UTCDateTime, after_commit, current_outage, db, is_uncommitted
from .signals import credentials_revoked, user_changed

__all__ = [
    "TOKEN_SCOPES",
    "ApiToken",
    "Auth",
    "AuthSettings",
    "LoginThrottle",
    "LoginThrottled",
    "MemoryThrottleStore",
    "RedisThrottleStore",
    "ThrottleStore",
    "User",
    "UserSession",
    "authenticate",
    "check_password",
    "create_api_token",
    "current_credential",
    "current_session",
    "current_user",
    "end_other_sessions",
    "end_session",
    "forget_loaded_with_user",
    "get_user",
    "hash_password",
    "init_app",
    "load_with_user",
    "loaded_with_user",
    "login_required",
    "login_user",
    "logout_user",
    "require_user",
    "requires_login",
    "revoke_api_token",
    "rotate_session",
    "safe_next_url",
    "session_values_for",
    "sessions_of",
    "user_changed",
]

log = logging.getLogger("karaffe.auth")

F = t.TypeVar("F", bound=Callable[..., t.Any])


class AuthSettings(Settings):
    """What the auth layer reads from the configuration."""

    title: t.ClassVar[str] = "Users and auth"

    password_hash_method: str = "scrypt:32768:8:1"
    """werkzeug.security method for new password hashes (scrypt:N:r:p)."""

    login_view: str | None = None
    """Endpoint HTML pages behind login_required redirect to, e.g. `auth.login`;
    without one they answer 401."""

    api_token_prefix: str = "kf_"
    """Text every API token starts with (helps secret scanners)."""

    api_token_touch_interval: PositiveInt = 60
    """Seconds between two updates of a token's last_used_at (one write per interval)."""

    login_max_failures_per_account: PositiveInt = 5
    """Failed logins for one email within the window before 429."""

    login_max_failures_per_address: PositiveInt = 20
    """Failed logins from one address within the window before 429."""

    login_throttle_redis_url: RedisUrl | None = None
    """Redis holding the failed-login counters, shared by every worker;
    in process memory when unset."""

    login_throttle_window: PositiveInt = 900
    """Seconds failed logins are counted for; the most a client is told to wait."""

    session_https: bool | None = None
    """The site is served over HTTPS: the session cookie is `Secure` and named
    with the `__Host-` prefix (no subdomain can set or read it). Default: when
    PREFERRED_URL_SCHEME is https."""

    session_idle_timeout: PositiveInt = 30 * 24 * 3600
    """Seconds a login session may go unused before it ends."""

    session_touch_interval: PositiveInt = 60
    """Seconds between two updates of a login session's last-seen time and address."""


def utcnow() -> dt.datetime:
    """The current time, timezone-aware UTC (what every timestamp column stores)."""
    return dt.datetime.now(dt.UTC)


# -- models ------------------------------------------------------------------


class User(Model):
    """A person who can log in. ``email`` is stored lower-cased, so it is
    unique regardless of case."""

    __tablename__ = "user_account"

    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(320), unique=True)
    name: Mapped[str] = mapped_column(sa.String(200), default="")
    password_hash: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    is_active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: When the user proved that ``email`` is theirs (by following a link
    #: mailed to it); ``None`` until then. An app that lets users change their
    #: email sets both together, once the new address is proven.
    email_verified_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)

    api_tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )
    sessions: Mapped[list[UserSession]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("email")
    def _normalize_email(self, key: str, value: str) -> str:
        return normalize_email(value)

    def set_password(self, password: str) -> None:
        """Hash ``password`` with the app's current method and store it.

        When the change commits, every login session of the user ends but the
        current request's own (call :func:`rotate_session` to give that one a
        new id too), and :data:`~karaffe.signals.credentials_revoked` is sent."""
        self.password_hash = hash_password(password)
        sa.inspect(self).info.pop(_REHASHED, None)

    def check_password(self, password: str) -> bool:
        """Whether ``password`` is this user's, in constant time."""
        return self.password_hash is not None and check_password(self.password_hash, password)

    def __repr__(self) -> str:
        return f"<User {self.id} {self.email!r}>"


#: The scopes an API token can have: ``read`` lets it make GET, HEAD and
#: OPTIONS requests, ``write`` every other method. A token with only ``read``
#: is read-only.
TOKEN_SCOPES: tuple[str, ...] = ("read", "write")

#: The methods a token needs only the ``read`` scope for.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class ApiToken(Model):
    """A named, revocable credential for API clients. Only the SHA-256 digest
    of the secret is stored; ``prefix`` (the first characters) identifies it
    in lists without revealing it. ``scopes`` (space-separated, as in OAuth 2)
    says what it may do: see :data:`TOKEN_SCOPES`."""

    __tablename__ = "api_token"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    name: Mapped[str] = mapped_column(sa.String(200))
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    scopes: Mapped[str] = mapped_column(
        sa.String(100), default=" ".join(TOKEN_SCOPES), server_default=" ".join(TOKEN_SCOPES)
    )

    user: Mapped[User] = relationship(back_populates="api_tokens")

    @property
    def scope_set(self) -> frozenset[str]:
        """The token's scopes, as a set."""
        return frozenset((self.scopes or "").split())

    @property
    def is_read_only(self) -> bool:
        """Whether the token may only read (GET, HEAD, OPTIONS)."""
        return "write" not in self.scope_set

    def allows(self, method: str) -> bool:
        """Whether the token's scopes allow a request with HTTP ``method``."""
        needed = "read" if method.upper() in _SAFE_METHODS else "write"
        return needed in self.scope_set

    @property
    def is_expired(self) -> bool:
        return self.expires_at is not None and self.expires_at <= utcnow()

    @property
    def is_revoked(self) -> bool:
        return self.revoked_at is not None

    @property
    def is_usable(self) -> bool:
        return not (self.is_expired or self.is_revoked)

    def __repr__(self) -> str:
        return f"<ApiToken {self.id} {self.name!r} {self.prefix}...>"


class UserSession(Model):
    """A login session: what a browser's session cookie refers to.

    The cookie holds a random token; only its SHA-256 digest is stored, so the
    table does not hold anything a cookie could be made from. A session ends
    (``ended_at``, ``end_reason``) at logout, when the user ends it from
    another session, when the password changes, when the account is
    deactivated, or after ``SESSION_IDLE_TIMEOUT`` seconds unused; an ended
    session is refused on the next request of every process."""

    __tablename__ = "user_session"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("user_account.id", ondelete="CASCADE"), index=True
    )
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    user_agent: Mapped[str] = mapped_column(sa.String(300), default="")
    ip_address: Mapped[str] = mapped_column(sa.String(64), default="")
    ended_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime(), default=None)
    end_reason: Mapped[str | None] = mapped_column(sa.String(40), default=None)

    user: Mapped[User] = relationship(back_populates="sessions")

    @property
    def is_ended(self) -> bool:
        return self.ended_at is not None

    @property
    def credential(self) -> str:
        """How :data:`~karaffe.signals.credentials_revoked` names this session."""
        return f"session:{self.id}"

    def __repr__(self) -> str:
        return f"<UserSession {self.id} user={self.user_id}>"


def normalize_email(email: str) -> str:
    """The form emails are stored and looked up in: trimmed, lower-case."""
    return email.strip().lower()


# -- passwords -----------------------------------------------------------------


def hash_password(password: str, method: str | None = None) -> str:
    """Hash ``password`` (scrypt by default; ``PASSWORD_HASH_METHOD`` of the
    current app, if any) with a random salt."""
    if method is None:
        method = (AuthSettings.of() if _has_app() else AuthSettings()).password_hash_method
    return generate_password_hash(password, method=method)


def check_password(password_hash: str, password: str) -> bool:
    """Whether ``password`` matches ``password_hash``; the digests are
    compared in constant time."""
    try:
        return check_password_hash(password_hash, password)
    except ValueError:
        # An unknown or corrupt hash format never matches.
        return False


def _has_app() -> bool:
    from flask import has_app_context

    return has_app_context()


_DUMMY_HASHES: dict[str, str] = {}


def _dummy_check(password: str) -> None:
    """Spend the time a real check would, so "no such user" and "wrong
    password" cannot be told apart by timing."""
    method = AuthSettings.of().password_hash_method
    if method not in _DUMMY_HASHES:
        _DUMMY_HASHES[method] = generate_password_hash(secrets.token_hex(8), method=method)
    check_password(_DUMMY_HASHES[method], password)


def authenticate(email: str, password: str) -> User | None:
    """The active user with this email and password, or ``None``. Takes the
    same time whether or not the email is known. A hash made with an older
    method is upgraded on success (commit to keep it)."""
    user = db.session.execute(
        sa.select(User).where(User.email == normalize_email(email))
    ).scalar_one_or_none()
    if user is None or user.password_hash is None:
        _dummy_check(password)
        return None
    if not user.check_password(password) or not user.is_active:
        return None
    method = AuthSettings.of().password_hash_method
    if not user.password_hash.startswith(method + "$"):
        # The same password, hashed anew: not a change that ends sessions.
        user.password_hash = hash_password(password, method)
        sa.inspect(user).info[_REHASHED] = True
    return user


# -- API tokens ------------------------------------------------------------------

_TOKEN_SECRET_BYTES = 32
_PREFIX_CHARS = 8


def _token_digest(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_api_token(
    user: User,
    name: str,
    expires_at: dt.datetime | None = None,
    *,
    scopes: Iterable[str] = TOKEN_SCOPES,
) -> tuple[ApiToken, str]:
    """A new token for ``user``, added to the session (commit to keep it),
    and its plaintext: show it once, it cannot be recovered.

    :param expires_at: when it stops working (never by default).
    :param scopes: what it may do, from :data:`TOKEN_SCOPES`: everything by
        default; ``scopes=["read"]`` makes a read-only token.
    :raises ValueError: an unknown scope, or none.
    """
    wanted = set(scopes)
    unknown = wanted - set(TOKEN_SCOPES)
    if unknown or not wanted:
        raise ValueError(
            f"API token scopes must be some of {', '.join(TOKEN_SCOPES)}; got {sorted(wanted)}"
        )
    scheme = AuthSettings.of().api_token_prefix
    plaintext = scheme + secrets.token_urlsafe(_TOKEN_SECRET_BYTES)
    token = ApiToken(
        user=user,
        name=name,
        token_hash=_token_digest(plaintext),
        prefix=plaintext[: len(scheme) + _PREFIX_CHARS],
        expires_at=expires_at,
        scopes=" ".join(scope for scope in TOKEN_SCOPES if scope in wanted),
    )
    db.session.add(token)
    return token, plaintext


def revoke_api_token(token: ApiToken) -> None:
    """Revoke ``token`` from now on (commit to keep it). Revoking twice keeps
    the first time. Once committed, :data:`~karaffe.signals.credentials_revoked`
    is sent for it."""
    if token.revoked_at is None:
        token.revoked_at = utcnow()


_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_\-]{16,200}$")


class _Failure:
    MALFORMED = "The Authorization header must be 'Bearer <token>'."
    INVALID = "The API token is invalid."
    EXPIRED = "The API token has expired."
    REVOKED = "The API token has been revoked."
    INACTIVE = "The account is disabled."


def _load_from_token(header: str) -> User | None:
    scheme, _, credentials = header.partition(" ")
    credentials = credentials.strip()
    if scheme.lower() != "bearer" or not _TOKEN_SHAPE.match(credentials):
        g._karaffe_auth_error = _Failure.MALFORMED
        return None
    # One query for the token, its user and what is loaded with the user.
    row = db.session.execute(
        _loading_statement("token"), {"digest": _token_digest(credentials)}
    ).one_or_none()
    if row is None or not hmac.compare_digest(row[0].token_hash, _token_digest(credentials)):
        g._karaffe_auth_error = _Failure.INVALID
        return None
    token, user = t.cast(ApiToken, row[0]), t.cast(User, row[1])
    if token.is_revoked:
        g._karaffe_auth_error = _Failure.REVOKED
        return None
    if token.is_expired:
        g._karaffe_auth_error = _Failure.EXPIRED
        return None
    if not user.is_active:
        g._karaffe_auth_error = _Failure.INACTIVE
        return None
    _touch(token)
    g._karaffe_api_token = token
    _keep_loaded_with_user(user, row)
    return user


def _touch(token: ApiToken) -> None:
    """Record the token's use, at most once per ``API_TOKEN_TOUCH_INTERVAL``,
    on its own connection and transaction: the request's own work may yet
    be rolled back, the use still happened."""
    now = utcnow()
    last = token.last_used_at
    interval = AuthSettings.of().api_token_touch_interval
    if last is not None and (now - last).total_seconds() < interval:
        return
    table = t.cast(sa.Table, ApiToken.__table__)
    try:
        with db.engine.begin() as connection:
            connection.execute(
                table.update().where(table.c.id == token.id).values(last_used_at=now)
            )
    except sa.exc.OperationalError:
        log.warning("could not record the use of API token %s", token.id, exc_info=True)
        return
    db.session.expire(token, ["last_used_at"])


# -- login sessions -------------------------------------------------------------

#: The key of the login session's token in the session cookie.
_SESSION_TOKEN = "_login"
_SESSION_TOKEN_SHAPE = re.compile(r"^[A-Za-z0-9_\-]{40,64}$")
_UNSET = object()
#: ``InstanceState.info`` key marking a hash upgraded on login (same password).
_REHASHED = "karaffe.auth.rehashed"


def _sessions_table() -> sa.Table:
    return t.cast(sa.Table, UserSession.__table__)


def _client_details() -> dict[str, str]:
    """The user agent and address a session shows in lists."""
    if not has_request_context():
        return {"user_agent": "", "ip_address": ""}
    # From the environ: EnvironHeaders.get raises and catches a KeyError
    # for a missing header.
    agent = request.environ.get("HTTP_USER_AGENT", "")
    return {"user_agent": agent[:300], "ip_address": (request.remote_addr or "")[:64]}


def _open_session(user: User) -> tuple[int, str]:
    """A new login session of ``user``: (its id, the token for the cookie).
    It is written at once on its own transaction; but for a user not
    committed yet (a sign-up), in the request's transaction, so that it
    commits with the user: on its own it would miss the user's row (or wait
    for its lock, on SQLite)."""
    if user.id is None:
        raise ValueError("a login session needs a user with an id: flush or commit it first")
    token = secrets.token_urlsafe(_TOKEN_SECRET_BYTES)
    now = utcnow()
    insert = (
        _sessions_table()
        .insert()
        .values(
            user_id=user.id,
            token_hash=_token_digest(token),
            created_at=now,
            last_seen_at=now,
            **_client_details(),
        )
    )
    if is_uncommitted(user):
        result = db.session.execute(insert)
    else:
        with db.engine.begin() as connection:
            result = connection.execute(insert)
    (session_id,) = t.cast("sa.CursorResult[t.Any]", result).inserted_primary_key or (0,)
    return int(session_id), token


def _end_sessions(where: sa.ColumnElement[bool], reason: str) -> list[tuple[int, int]]:
    """End the open sessions matching ``where`` at once, on their own
    transaction; [(session id, user id)] of those ended."""
    table = _sessions_table()
    condition = sa.and_(where, table.c.ended_at.is_(None))
    with db.engine.begin() as connection:
        ended = [
            (row.id, row.user_id)
            for row in connection.execute(sa.select(table.c.id, table.c.user_id).where(condition))
        ]
        if ended:
            connection.execute(
                table.update()
                .where(table.c.id.in_([session_id for session_id, _ in ended]))
                .values(ended_at=utcnow(), end_reason=reason)
            )
    return ended


def _announce_ended(ended: list[tuple[int, int]], reason: str) -> None:
    """:data:`~karaffe.signals.credentials_revoked` for each ended session."""
    if not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]
    for session_id, user_id in ended:
        credentials_revoked.send(
            app, user_id=user_id, credential=f"session:{session_id}", reason=reason
        )


def current_session() -> UserSession | None:
    """The :class:`UserSession` of the current request, ``None`` when it
    was not authenticated by a login session (nobody, or an API token)."""
    if get_user() is None:
        return None
    record = g.get("_karaffe_login_session")
    if record is None and g.get("_karaffe_session_id") is not None:
        record = g._karaffe_login_session = db.session.get(UserSession, g._karaffe_session_id)
    return t.cast("UserSession | None", record)


def current_credential() -> str | None:
    """How the current request authenticated, as
    :data:`~karaffe.signals.credentials_revoked` names credentials:
    ``"session:<id>"``, ``"api-token:<id>"``, or ``None`` for nobody. Live
    events bind the channel tokens a request hands out to it."""
    if get_user() is None:
        return None
    token = g.get("_karaffe_api_token")
    if token is not None:
        return f"api-token:{token.id}"
    session_id = g.get("_karaffe_session_id")
    return f"session:{session_id}" if session_id is not None else None


def sessions_of(user: User) -> list[UserSession]:
    """The open login sessions of ``user``, most recently seen first."""
    return list(
        db.session.execute(
            sa.select(UserSession)
            .where(UserSession.user_id == user.id, UserSession.ended_at.is_(None))
            .order_by(UserSession.last_seen_at.desc(), UserSession.id.desc())
        ).scalars()
    )


def end_session(user: User, session_id: int) -> bool:
    """End ``user``'s login session ``session_id`` at once (for a "log out
    that device" button); False when the user has no such open session.
    Ending the current request's own session logs it out."""
    table = _sessions_table()
    ended = _end_sessions(sa.and_(table.c.id == session_id, table.c.user_id == user.id), "ended")
    if ended and g.get("_karaffe_session_id") == session_id and has_request_context():
        _forget_login()
    _announce_ended(ended, "session-ended")
    return bool(ended)


def end_other_sessions(user: User) -> int:
    """End every login session of ``user`` but the current request's, at
    once; how many were ended."""
    table = _sessions_table()
    where = table.c.user_id == user.id
    current = g.get("_karaffe_session_id") if has_request_context() else None
    if current is not None:
        where = sa.and_(where, table.c.id != current)
    ended = _end_sessions(where, "ended")
    _announce_ended(ended, "session-ended")
    return len(ended)


def rotate_session() -> None:
    """Give the current login session a new id and token (the old ones end):
    call it when the user's privileges change, such as a new password, so
    that a copy of the cookie taken before is worth nothing after."""
    user = get_user()
    current = g.get("_karaffe_session_id")
    if user is None or current is None:
        raise RuntimeError("rotate_session() in a request without a login session")
    _start_login(user, ended_reason="rotated")


def _start_login(user: User, ended_reason: str) -> None:
    current = g.get("_karaffe_session_id")
    if current is not None:
        ended = _end_sessions(_sessions_table().c.id == current, ended_reason)
        _announce_ended(ended, "session-ended")
    session_id, token = _open_session(user)
    session.clear()
    session[_SESSION_TOKEN] = token
    g._karaffe_user = user
    g._karaffe_session_id = session_id
    g.pop("_karaffe_login_session", None)
    g.pop(_LOADED_KEY, None)
    user_changed.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]


def _forget_login() -> None:
    session.clear()
    g._karaffe_user = None
    g.pop("_karaffe_session_id", None)
    g.pop("_karaffe_login_session", None)
    g.pop(_LOADED_KEY, None)
    user_changed.send(current_app._get_current_object(), user=None)  # type: ignore[attr-defined]


def _load_from_session() -> User | None:
    token = session.get(_SESSION_TOKEN)
    if not isinstance(token, str) or not _SESSION_TOKEN_SHAPE.match(token):
        return None
    # One query for the session, its user and what is loaded with the user:
    # the check costs no more than loading the user did.
    row = db.session.execute(
        _loading_statement("session"), {"digest": _token_digest(token)}
    ).one_or_none()
    if row is None:
        return None
    record, user = t.cast(UserSession, row[0]), t.cast(User, row[1])
    if record.ended_at is not None or not user.is_active:
        return None
    settings = AuthSettings.of()
    now = utcnow()
    idle = (now - record.last_seen_at).total_seconds()
    if idle > settings.session_idle_timeout:
        ended = _end_sessions(_sessions_table().c.id == record.id, "idle")
        _announce_ended(ended, "session-ended")
        return None
    if idle >= settings.session_touch_interval:
        _touch_session(record, now)
    g._karaffe_session_id = record.id
    g._karaffe_login_session = record
    _keep_loaded_with_user(user, row)
    return user


def _touch_session(record: UserSession, now: dt.datetime) -> None:
    """Record the session's use and address, at most once per
    ``SESSION_TOUCH_INTERVAL``, on its own transaction (like API tokens)."""
    table = _sessions_table()
    details = _client_details()
    try:
        with db.engine.begin() as connection:
            connection.execute(
                table.update()
                .where(table.c.id == record.id)
                .values(last_seen_at=now, ip_address=details["ip_address"])
            )
    except sa.exc.OperationalError:
        log.warning("could not record the use of login session %s", record.id, exc_info=True)
        return
    db.session.expire(record, ["last_seen_at", "ip_address"])


# -- what is loaded with the user --------------------------------------------------

#: Columns the query that authenticates a request selects besides the
#: credential and its user: name -> a function of the user's id column that
#: returns a correlated scalar subquery (see :func:`load_with_user`).
_WITH_USER: dict[str, Callable[[sa.ColumnElement[int]], sa.ColumnElement[t.Any]]] = {}
#: The ``g`` key of what they selected for the request's user: (user id, values).
_LOADED_KEY = "_karaffe_loaded_with_user"
#: The authenticating statements, built once (building one costs more than running it).
_loading_statements: dict[str, sa.Select[t.Any]] = {}


def load_with_user(
    name: str, column: Callable[[sa.ColumnElement[int]], sa.ColumnElement[t.Any]]
) -> None:
    """Select ``column(User.id)`` in the very query that authenticates each
    request (its API token or login session, with its user), so that what
    every request needs about its user costs no query of its own: the
    tenancy layer loads the user's organizations this way. ``column`` must
    not name an org-owned *model* (the tenancy filter would apply to it
    before the user is known): use its table. Read the value with
    :func:`loaded_with_user`."""
    _WITH_USER[name] = column
    _loading_statements.clear()


def loaded_with_user(user: User, name: str, default: t.Any = None) -> t.Any:
    """What :func:`load_with_user`'s column ``name`` selected when the
    request authenticated ``user``; ``default`` if it did not (outside a
    request, another user, or after :func:`forget_loaded_with_user`)."""
    if not has_request_context():
        return default
    loaded = g.get(_LOADED_KEY)
    if loaded is None or loaded[0] != user.id:
        return default
    return loaded[1].get(name, default)


def forget_loaded_with_user(name: str) -> None:
    """Drop what ``name`` selected for this request (it changed since)."""
    if has_request_context():
        loaded = g.get(_LOADED_KEY)
        if loaded is not None:
            loaded[1].pop(name, None)


def _loading_statement(kind: str) -> sa.Select[t.Any]:
    """The statement authenticating a request by an API token's or a login
    session's digest (bound as ``digest``): the credential, its user, then
    the columns of :func:`load_with_user` in their order."""
    stmt = _loading_statements.get(kind)
    if stmt is None:
        credential: type[ApiToken | UserSession] = ApiToken if kind == "token" else UserSession
        user_id = t.cast("sa.ColumnElement[int]", User.id)
        extras = [make(user_id) for make in _WITH_USER.values()]
        stmt = _loading_statements[kind] = (
            sa.select(credential, User, *extras)
            .join(User, User.id == credential.user_id)
            .where(credential.token_hash == sa.bindparam("digest"))
        )
    return stmt


def _keep_loaded_with_user(user: User, row: sa.Row[t.Any]) -> None:
    g._karaffe_loaded_with_user = (user.id, dict(zip(_WITH_USER, row[2:], strict=False)))


# -- the current user ------------------------------------------------------------


def is_token_request() -> bool:
    """Whether the current request authenticates with its ``Authorization``
    header: any such header on an API route (only ``Bearer`` tokens are
    accepted; anything else is a 401). Such a request is exempt from CSRF,
    ignores the session cookie and never gets one. HTML routes ignore the
    header: pages and forms authenticate by their session alone."""
    # The environ rather than request.headers, whose ``in`` raises and
    # catches a KeyError for a request without the header (most of them).
    return "HTTP_AUTHORIZATION" in request.environ and _is_api_request()


def _is_api_request() -> bool:
    # A plain Flask app has no HTML/API split: every route accepts tokens.
    return bool(getattr(current_app, "is_api_request", lambda: True)())


def get_user() -> User | None:
    """The user of the current request, loaded on first use and remembered
    in ``g``; ``None`` when nobody is logged in (or outside a request, or
    not loaded yet when the request met a database outage)."""
    from flask import has_request_context

    if not has_request_context():
        return None
    user = g.get("_karaffe_user", _UNSET)
    if user is _UNSET:
        if current_outage() is not None:
            return None  # the 503 page of a database outage: nobody can be loaded
        # The queries that load the user run before anyone's organizations
        # are known: the tenancy layer does not try to load the user again
        # for them (which would run them twice).
        loading = g.get("_karaffe_scope_loading", False)
        g._karaffe_scope_loading = True
        try:
            user = (
                _load_from_token(request.environ["HTTP_AUTHORIZATION"])
                if is_token_request()
                else _load_from_session()
            )
        finally:
            g._karaffe_scope_loading = loading
        g._karaffe_user = user
    return t.cast("User | None", user)


#: The user of the current request (a proxy to :func:`get_user`). It is
#: falsy when nobody is logged in: ``if current_user: ...``.
current_user: User = t.cast(User, LocalProxy(get_user))


def login_user(user: User) -> None:
    """Open a new login session for ``user`` (a :class:`UserSession`, written
    at once) and put its token in the session cookie. The cookie is cleared
    first, so nothing from before the login survives it, and a login
    session the browser had already ends: every login gets a new id.
    Sends :data:`~karaffe.signals.user_changed`."""
    if is_token_request():
        raise RuntimeError("login_user() in a request authenticated by an API token")
    get_user()  # the browser's current login session, if any, is ended below
    _start_login(user, ended_reason="replaced")


def logout_user() -> None:
    """End the login session at once, for every process (its record is
    marked ended), and clear the session cookie; sends
    :data:`~karaffe.signals.credentials_revoked` for it, and
    :data:`~karaffe.signals.user_changed` with ``user=None``."""
    get_user()
    current = g.get("_karaffe_session_id")
    if current is not None:
        ended = _end_sessions(_sessions_table().c.id == current, "logout")
        _announce_ended(ended, "logout")
    _forget_login()


def _unauthorized() -> t.NoReturn:
    app = current_app
    is_api = getattr(app, "is_api_request", lambda: False)()
    detail = g.get("_karaffe_auth_error")
    if is_api or is_token_request():
        challenge = 'Bearer realm="api"'
        if detail is not None:
            challenge += ', error="invalid_token"'
        raise Unauthorized(detail, headers={"WWW-Authenticate": challenge})
    login_view = AuthSettings.of(app).login_view
    if login_view:
        target = request.full_path if request.query_string else request.path
        abort(redirect(url_for(login_view, next=target)))
    abort(401)


#: Set on what :func:`login_required` returns, for :func:`requires_login`.
_LOGIN_REQUIRED = "__karaffe_login_required__"


def login_required(view: F) -> F:
    """Only for logged-in users: others get a 401 problem on API routes (and
    on any request with a bearer token), and a redirect to ``LOGIN_VIEW``
    with ``?next=`` on HTML routes (401 when no login view is configured).

    Decorate a view, or a blueprint's ``before_request`` hook to cover every
    view of the blueprint. Either way it is recorded (:func:`requires_login`):
    the OpenAPI document lists the operation's security schemes and its 401,
    and a write from a client that is not logged in gets this answer before
    any CSRF check."""

    @functools.wraps(view)
    def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
        if get_user() is None:
            _unauthorized()
        return view(*args, **kwargs)

    setattr(wrapper, _LOGIN_REQUIRED, True)
    return t.cast(F, wrapper)


def requires_login(app: Flask, endpoint: str) -> bool:
    """Whether the view of ``endpoint`` is behind :func:`login_required`:
    decorated with it, or in a blueprint (or an app) whose ``before_request``
    hook is."""
    view = app.view_functions.get(endpoint)
    if view is None:
        return False
    if getattr(view, _LOGIN_REQUIRED, False):
        return True
    parts = endpoint.split(".")[:-1]
    scopes: list[str | None] = [None, *(".".join(parts[: i + 1]) for i in range(len(parts)))]
    return any(
        getattr(hook, _LOGIN_REQUIRED, False)
        for scope in scopes
        for hook in app.before_request_funcs.get(scope, ())
    )


def require_user() -> User:
    """The current user, or the same answer as :func:`login_required`."""
    user = get_user()
    if user is None:
        _unauthorized()
    return user


def safe_next_url(target: str | None, default: str = "/") -> str:
    """``target`` if it is a path on this site, else ``default``: for the
    ``next`` parameter of a login form, which must never redirect away."""
    if not target or not target.startswith("/") or target.startswith(("//", "/\\")):
        return default
    return target


# -- the extension ---------------------------------------------------------------


def _check_token_scope() -> None:
    """Refuse a request its API token's scopes do not allow (403), before the
    view runs, on every route that accepts tokens (see
    :func:`is_token_request`): a read-only token writes nothing. A request
    without a route (404, 405) is left alone."""
    token: ApiToken | None = g.get("_karaffe_api_token")
    if token is None or request.url_rule is None or token.allows(request.method):
        return
    if token.is_read_only:
        detail = (
            f"This API token is read-only: {request.method} needs a token with the write scope."
        )
        scope = "write"
    else:
        detail = f"This API token lacks the read scope {request.method} needs."
        scope = "read"
    challenge = f'Bearer realm="api", error="insufficient_scope", scope="{scope}"'
    raise Forbidden(detail, headers={"WWW-Authenticate": challenge})


class KaraffeCSRFProtect(CSRFProtect):  # type: ignore[misc]
    """Flask-WTF's CSRF protection, with two differences:

    - requests that authenticate with an ``Authorization`` header are exempt:
      a browser never adds one on its own, so they cannot be forged cross-site;
    - a write to a view behind :func:`login_required` from a client that is
      not logged in gets the login answer (a 401 problem with
      ``WWW-Authenticate: Bearer`` on API routes, the login page on HTML
      routes), not a CSRF error: there is no login to forge, and a client
      without credentials must learn that it needs some.

    Browsers writing to the API with their session cookie send the token in
    the ``X-CSRFToken`` header (``WTF_CSRF_HEADERS``); forms send the
    ``csrf_token`` field.
    """

    def protect(self, apply_exemptions: bool = False) -> None:
        if is_token_request():
            return
        # What login_required would answer, only sooner: the same for every view.
        endpoint = request.endpoint
        if (
            endpoint
            and request.method in current_app.config["WTF_CSRF_METHODS"]
            and requires_login(current_app, endpoint)
            and get_user() is None
        ):
            _unauthorized()
        super().protect(apply_exemptions)


class TokenAwareSessionInterface(SessionInterface):
    """Wraps the app's session interface: a request authenticated by an API
    token never reads or sets the session cookie."""

    def __init__(self, inner: SessionInterface) -> None:
        self.inner = inner

    def open_session(self, app: Flask, request: t.Any) -> SessionMixin | None:
        if is_token_request():
            # A fresh session that lives for this request only: views may
            # use it, nothing of it is read from or written to a cookie.
            return SecureCookieSession()
        return self.inner.open_session(app, request)

    def is_null_session(self, obj: object) -> bool:
        return self.inner.is_null_session(obj)

    def save_session(self, app: Flask, session: SessionMixin, response: FlaskResponse) -> None:
        if is_token_request():
            return
        self.inner.save_session(app, session, response)


class Auth:
    """The auth part of an app: CSRF, cookies, token requests, throttle.

    :param throttle: the :class:`LoginThrottle` (default: in-memory counters
        with the ``LOGIN_*`` settings).
    """

    #: The CSRF extension class.
    csrf_class: type[CSRFProtect] = KaraffeCSRFProtect

    def __init__(self, app: Flask | None = None, *, throttle: LoginThrottle | None = None) -> None:
        self.throttle = throttle
        self.csrf: CSRFProtect | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        settings = AuthSettings.of(app)
        self.configure_cookie(app, settings)
        if self.throttle is None:
            redis_url = settings.login_throttle_redis_url
            store: ThrottleStore = (
                RedisThrottleStore.from_url(redis_url) if redis_url else MemoryThrottleStore()
            )
            self.throttle = LoginThrottle(
                store,
                max_per_account=settings.login_max_failures_per_account,
                max_per_address=settings.login_max_failures_per_address,
                window=settings.login_throttle_window,
            )
        if not isinstance(app.session_interface, TokenAwareSessionInterface):
            app.session_interface = TokenAwareSessionInterface(
                app.session_interface or SecureCookieSessionInterface()
            )
        self.csrf = self.csrf_class(app)
        app.extensions["karaffe.auth"] = self
        app.before_request(self._load_token_user)
        app.context_processor(lambda: {"current_user": get_user()})

    def configure_cookie(self, app: Flask, settings: AuthSettings) -> None:
        """The session cookie's attributes: ``HttpOnly``, ``SameSite=Lax``
        unless configured otherwise, and with ``SESSION_HTTPS`` (by default
        when ``PREFERRED_URL_SCHEME`` is https) ``Secure`` and a name with the
        ``__Host-`` prefix, which browsers accept only from a secure origin,
        for the whole site, without ``Domain``: no subdomain can plant or
        read it."""
        app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
        if app.config.get("SESSION_COOKIE_SAMESITE") is None:
            app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
        https = settings.session_https
        if https is None:
            https = app.config.get("PREFERRED_URL_SCHEME") == "https"
        if not https:
            app.config.setdefault("SESSION_COOKIE_SECURE", False)
            return
        if app.config.get("SESSION_COOKIE_DOMAIN"):
            raise ConfigError(
                "setting SESSION_COOKIE_DOMAIN cannot be used with SESSION_HTTPS: a __Host- "
                "cookie has no Domain (set SESSION_HTTPS=false and SESSION_COOKIE_SECURE=true "
                "to share the cookie with subdomains)"
            )
        if app.config.get("SESSION_COOKIE_PATH") not in (None, "/"):
            raise ConfigError(
                "setting SESSION_COOKIE_PATH must be / with SESSION_HTTPS: a __Host- cookie "
                "is for the whole site"
            )
        name = app.config.get("SESSION_COOKIE_NAME") or "session"
        if not name.startswith("__Host-"):
            app.config["SESSION_COOKIE_NAME"] = "__Host-" + name
        app.config["SESSION_COOKIE_SECURE"] = True
        app.config["SESSION_COOKIE_PATH"] = "/"

    def _load_token_user(self) -> None:
        # Authenticate token requests before the view runs, so the token's
        # last-use is recorded before the request's own transaction writes.
        # Credentials that do not authenticate are a 401 on every API route,
        # public ones too: never silently anonymous.
        if is_token_request():
            if get_user() is None:
                _unauthorized()
            _check_token_scope()

    def login(self, email: str, password: str, address: str | None = None) -> User:
        """Log in with a password, throttled: :class:`LoginThrottled` (429,
        ``Retry-After``) after too many failures for this email or address;
        :class:`karaffe.Unauthorized` (401) for a wrong password or an
        unknown email, with the same message for both."""
        assert self.throttle is not None
        address = address if address is not None else (request.remote_addr or "unknown")
        self.throttle.check(normalize_email(email), address)
        user = authenticate(email, password)
        if user is None:
            self.throttle.failure(normalize_email(email), address)
            raise Unauthorized("Wrong email or password.")
        self.throttle.success(normalize_email(email), address)
        login_user(user)
        return user


def get_auth(app: Flask | None = None) -> Auth:
    """The :class:`Auth` installed on ``app`` (the current app by default)."""
    target = app or current_app
    return t.cast(Auth, target.extensions["karaffe.auth"])


def init_app(app: Flask, *, throttle: LoginThrottle | None = None) -> Auth:
    """Install :class:`Auth` on ``app`` and return it."""
    return Auth(app, throttle=throttle)


def session_values_for(user: User) -> dict[str, t.Any]:
    """The session entries of a new login of ``user`` (what :func:`login_user`
    stores), for test clients: ``client.session_transaction()``. It opens a
    :class:`UserSession` for it, written at once."""
    return {_SESSION_TOKEN: _open_session(user)[1]}


# -- credentials that end with a change ---------------------------------------------


@event.listens_for(Session, "after_flush")
def _credentials_changed(db_session: Session, flush_context: t.Any) -> None:
    """End what a committed change withdraws: a new password or a
    deactivated account ends the user's sessions (the current request's own
    excepted for a password it changed); a revoked API token and a deleted
    user (whose sessions the database deletes) are announced.
    The sessions end in the flush's own transaction, the signal goes out
    when it commits."""
    changes: list[tuple[int, str | None, str]] = []
    for obj in db_session.dirty:
        if isinstance(obj, User) and obj.id is not None:
            # ``added``, not ``deleted``: the value before is unknown when
            # the attribute was expired (after a commit) when it was set.
            state = sa.inspect(obj)
            if state.attrs.password_hash.history.added and not state.info.pop(_REHASHED, False):
                _end_in_flush(db_session, obj.id, "password-changed", keep_current=True)
                changes.append((obj.id, None, "password-changed"))
            if state.attrs.is_active.history.added and not obj.is_active:
                _end_in_flush(db_session, obj.id, "deactivated", keep_current=False)
                changes.append((obj.id, None, "deactivated"))
        elif (
            isinstance(obj, ApiToken)
            and obj.revoked_at is not None
            and sa.inspect(obj).attrs.revoked_at.history.added
        ):
            changes.append((obj.user_id, f"api-token:{obj.id}", "api-token-revoked"))
    changes.extend(
        (obj.id, None, "deleted")
        for obj in db_session.deleted
        if isinstance(obj, User) and obj.id is not None
    )
    if not changes or not has_app_context():
        return
    app = current_app._get_current_object()  # type: ignore[attr-defined]

    def announce() -> None:
        for user_id, credential, reason in changes:
            credentials_revoked.send(app, user_id=user_id, credential=credential, reason=reason)

    after_commit(announce, db_session)


def _end_in_flush(db_session: Session, user_id: int, reason: str, *, keep_current: bool) -> None:
    table = _sessions_table()
    where = sa.and_(table.c.user_id == user_id, table.c.ended_at.is_(None))
    current = g.get("_karaffe_session_id") if has_request_context() else None
    if keep_current and current is not None:
        where = sa.and_(where, table.c.id != current)
    db_session.connection().execute(
        table.update().where(where).values(ended_at=utcnow(), end_reason=reason)
    )
