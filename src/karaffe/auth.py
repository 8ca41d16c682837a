"""Users, passwords, login sessions and API tokens (slide 33).

The user of a request is loaded lazily, once, by :func:`get_user` (and the
:data:`current_user` proxy): from ``Authorization: Bearer <token>`` when the
request carries one (API clients), else from the session cookie (browsers)::

    @blueprint.get("/api/me")
    @login_required
    def me() -> ApiResult:
        return ApiResult({"email": current_user.email})

Passwords are hashed with scrypt and compared in constant time. API tokens
are random, shown once, stored as a SHA-256 digest, named, revocable, with a
last-used time, an optional expiry and scopes (a read-only token is refused,
403, on every POST, PUT, PATCH and DELETE). :class:`Auth` installs CSRF protection
for forms (Flask-WTF; requests with a bearer token are exempt, they carry no
ambient credential), safe cookie settings, and a throttle on failed logins.
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
from blinker import Namespace
from flask import Flask, abort, current_app, g, redirect, request, session, url_for
from flask import Response as FlaskResponse
from flask.sessions import (
    SecureCookieSession,
    SecureCookieSessionInterface,
    SessionInterface,
    SessionMixin,
)
from flask_wtf.csrf import CSRFProtect
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
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
from .config import PositiveInt, RedisUrl, Settings
from .db import Model, UTCDateTime, current_outage, db

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
    "authenticate",
    "check_password",
    "create_api_token",
    "current_user",
    "get_user",
    "hash_password",
    "init_app",
    "login_required",
    "login_user",
    "logout_user",
    "require_user",
    "requires_login",
    "revoke_api_token",
    "safe_next_url",
    "session_values_for",
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

    api_tokens: Mapped[list[ApiToken]] = relationship(
        back_populates="user", cascade="all, delete-orphan", passive_deletes=True
    )

    @validates("email")
    def _normalize_email(self, key: str, value: str) -> str:
        return normalize_email(value)

    def set_password(self, password: str) -> None:
        """Hash ``password`` with the app's current method and store it."""
        self.password_hash = hash_password(password)

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
        user.set_password(password)
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
    the first time."""
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
    token = db.session.execute(
        sa.select(ApiToken).where(ApiToken.token_hash == _token_digest(credentials))
    ).scalar_one_or_none()
    if token is None or not hmac.compare_digest(token.token_hash, _token_digest(credentials)):
        g._karaffe_auth_error = _Failure.INVALID
        return None
    if token.is_revoked:
        g._karaffe_auth_error = _Failure.REVOKED
        return None
    if token.is_expired:
        g._karaffe_auth_error = _Failure.EXPIRED
        return None
    user = token.user
    if not user.is_active:
        g._karaffe_auth_error = _Failure.INACTIVE
        return None
    _touch(token)
    g._karaffe_api_token = token
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


# -- the current user ------------------------------------------------------------

_SESSION_USER = "_user_id"
_SESSION_CHECK = "_user_check"
_UNSET = object()


def _session_check(user: User) -> str:
    """Ties a login session to the password it was opened with: changing the
    password logs out every other session."""
    key = str(current_app.secret_key or "").encode()
    return hmac.new(key, (user.password_hash or "").encode(), hashlib.sha256).hexdigest()[:20]


def _load_from_session() -> User | None:
    user_id = session.get(_SESSION_USER)
    if not isinstance(user_id, int):
        return None
    user = db.session.get(User, user_id)
    if user is None or not user.is_active:
        return None
    if not hmac.compare_digest(str(session.get(_SESSION_CHECK, "")), _session_check(user)):
        return None
    return user


def is_token_request() -> bool:
    """Whether the current request authenticates with its ``Authorization``
    header: any such header on an API route (only ``Bearer`` tokens are
    accepted; anything else is a 401). Such a request is exempt from CSRF,
    ignores the session cookie and never gets one. HTML routes ignore the
    header: pages and forms authenticate by their session alone."""
    return "Authorization" in request.headers and _is_api_request()


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
        user = (
            _load_from_token(request.headers["Authorization"])
            if is_token_request()
            else _load_from_session()
        )
        g._karaffe_user = user
    return t.cast("User | None", user)


#: The user of the current request (a proxy to :func:`get_user`). It is
#: falsy when nobody is logged in: ``if current_user: ...``.
current_user: User = t.cast(User, LocalProxy(get_user))


_signals = Namespace()

#: Sent by :func:`login_user` and :func:`logout_user` when the user of the
#: current request changes, with the app as sender and ``user`` (``None``
#: after a logout). Whatever was derived from the previous user for this
#: request (such as the organizations it may see) is to be forgotten::
#:
#:     @user_changed.connect
#:     def forget(app, user):
#:         g.pop("_myapp_permissions", None)
user_changed = _signals.signal("karaffe.user-changed")


def login_user(user: User) -> None:
    """Open a login session for ``user`` in the session cookie. The session
    is cleared first, so nothing from before the login survives it.
    Sends :data:`user_changed`."""
    if is_token_request():
        raise RuntimeError("login_user() in a request authenticated by an API token")
    session.clear()
    session[_SESSION_USER] = user.id
    session[_SESSION_CHECK] = _session_check(user)
    g._karaffe_user = user
    user_changed.send(current_app._get_current_object(), user=user)  # type: ignore[attr-defined]


def logout_user() -> None:
    """End the login session (the whole session is cleared). Sends
    :data:`user_changed` with ``user=None``."""
    session.clear()
    g._karaffe_user = None
    user_changed.send(current_app._get_current_object(), user=None)  # type: ignore[attr-defined]


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
        app.config.setdefault("SESSION_COOKIE_HTTPONLY", True)
        if app.config.get("SESSION_COOKIE_SAMESITE") is None:
            app.config["SESSION_COOKIE_SAMESITE"] = "Lax"
        app.config.setdefault("SESSION_COOKIE_SECURE", False)
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
    """The session entries of a login of ``user`` (what :func:`login_user`
    stores), for test clients: ``client.session_transaction()``."""
    return {_SESSION_USER: user.id, _SESSION_CHECK: _session_check(user)}
