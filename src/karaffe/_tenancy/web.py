"""The tenancy part of a web app: the organization of the URL
(:data:`current_org`), role checks, 404 for other organizations' objects."""

from __future__ import annotations

import functools
import typing as t
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask, abort, current_app, g, has_request_context
from werkzeug.exceptions import Forbidden as HTTPForbidden
from werkzeug.exceptions import NotFound as HTTPNotFound
from werkzeug.local import LocalProxy

from ..api.errors import Forbidden, NotFound
from ..auth import get_user, require_user
from ..config import Settings
from ..db import db
from ..ids import is_id
from .context import CrossOrgWrite, current_scope, install_raw_sql_guard
from .models import Membership, Organization, role_rank

__all__ = [
    "Tenancy",
    "TenancySettings",
    "current_org",
    "current_role",
    "get_current_org",
    "get_or_404",
    "init_app",
    "require_role",
]

F = t.TypeVar("F", bound=Callable[..., t.Any])
M = t.TypeVar("M")


class TenancySettings(Settings):
    """What the tenancy layer reads from the configuration."""

    title: t.ClassVar[str] = "Tenancy"

    tenancy_raw_sql: t.Literal["auto", "raise", "warn", "off"] = "auto"
    """SQL bypassing the ORM on org-owned tables outside unscoped(): raise, warn, off,
    or auto (raise in testing and debug, warn otherwise)."""

    tenancy_org_view_args: list[str] = ["org_slug", "org"]
    """URL variables naming the organization by slug; taken out of the view's
    arguments and resolved as current_org."""


_SLUG_KEY = "_karaffe_org_slug"
_ORG_KEY = "_karaffe_org"
_ROLE_KEY = "_karaffe_org_role"
_MISSING = object()


_NOT_FOUND = "The requested resource was not found."


def _not_found() -> t.NoReturn:
    """The answer for a missing object and for another organization's,
    exactly alike."""
    if has_request_context() and getattr(current_app, "is_api_request", lambda: False)():
        raise NotFound(_NOT_FOUND)
    raise HTTPNotFound(_NOT_FOUND)


def get_current_org() -> Organization | None:
    """The organization the code is in: the one of a :func:`for_organization`
    block, else the one named by the request's URL (404 if it does not exist
    or is not available to the user, exactly alike); ``None`` if neither."""
    scope = current_scope()
    if scope.organization_id is not None:
        return db.session.get(Organization, scope.organization_id)
    if not has_request_context():
        return None
    org = g.get(_ORG_KEY, _MISSING)
    if org is _MISSING:
        slug = g.get(_SLUG_KEY)
        if slug is None:
            org = None
        else:
            org = db.session.execute(_org_by_slug, {"slug": slug}).scalar_one_or_none()
            if org is None:
                _not_found()
        setattr(g, _ORG_KEY, org)
    return t.cast("Organization | None", org)


def _require_current_org() -> Organization:
    org = get_current_org()
    if org is None:
        raise RuntimeError(
            "current_org is used outside for_organization() and in a request whose URL "
            "names no organization"
        )
    return org


#: The organization of the request's URL (or of the ``for_organization``
#: block); see :func:`get_current_org`.
current_org: Organization = t.cast(Organization, LocalProxy(_require_current_org))


def current_role() -> str | None:
    """The current user's role in :data:`current_org` (``None`` if none)."""
    role = g.get(_ROLE_KEY, _MISSING)
    if role is _MISSING:
        user = get_user()
        org = get_current_org()
        role = None
        if user is not None and org is not None:
            role = db.session.execute(
                sa.select(Membership.role).where(
                    Membership.user_id == user.id, Membership.organization_id == org.id
                )
            ).scalar_one_or_none()
        setattr(g, _ROLE_KEY, role)
    return t.cast("str | None", role)


def require_role(role: str) -> Callable[[F], F]:
    """Only for users with at least ``role`` in :data:`current_org`::

        @blueprint.post("/<org_slug>/settings")
        @require_role("admin")
        def update_settings(): ...

    Anonymous users get the :func:`karaffe.auth.login_required` answer; an
    unknown or foreign organization 404; a role too low 403 (a problem on
    API routes, Flask's 403 page on HTML ones).
    """
    needed = role_rank(role)

    def decorator(view: F) -> F:
        @functools.wraps(view)
        def wrapper(*args: t.Any, **kwargs: t.Any) -> t.Any:
            require_user()
            org = _require_current_org()
            have = current_role()
            if have is None or role_rank(have) < needed:
                if getattr(current_app, "is_api_request", lambda: False)():
                    raise Forbidden(f"This needs the {role} role in organization {org.slug}.")
                abort(403)
            return view(*args, **kwargs)

        return t.cast(F, wrapper)

    return decorator


def get_or_404(model: type[M], ident: t.Any) -> M:
    """The ``model`` row with primary key ``ident``, through the scoped
    session: another organization's row is a 404 exactly like a missing
    one. (Unlike ``session.get``, it never answers from the identity map.)"""
    if isinstance(ident, int) and not is_id(ident):
        _not_found()  # past the database's range: no such row, and no overflow
    stmt = _by_key.get(model)
    if stmt is None:
        (pk,) = sa.inspect(model).primary_key
        stmt = _by_key[model] = sa.select(model).where(pk == sa.bindparam("ident"))
    row = db.session.execute(stmt, {"ident": ident}).scalar_one_or_none()
    if row is None:
        _not_found()
    return t.cast(M, row)


#: The select of a row by primary key, per model, built once (building a
#: statement costs more than running it); the tenancy filter is added to it
#: at every execution, like to any other.
_by_key: dict[type[t.Any], sa.Select[t.Any]] = {}
#: The select of an organization by slug.
_org_by_slug = sa.select(Organization).where(Organization.slug == sa.bindparam("slug"))


class Tenancy:
    """The tenancy part of an app: organization of the URL, raw SQL guard,
    403 for refused cross-organization writes on HTML routes."""

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        policy: str = TenancySettings.of(app).tenancy_raw_sql
        if policy == "auto":
            policy = "raise" if (app.testing or app.debug) else "warn"
        with app.app_context():
            for engine in db.engines.values():
                install_raw_sql_guard(app, engine, policy)
        app.url_value_preprocessor(self.pull_org_slug)
        app.url_defaults(self.add_org_slug)
        app.before_request(self.resolve_org)
        app.register_error_handler(CrossOrgWrite, self.handle_cross_org_write)
        app.extensions["karaffe.tenancy"] = self

    def view_args(self) -> list[str]:
        return TenancySettings.of().tenancy_org_view_args

    def pull_org_slug(self, endpoint: str | None, values: dict[str, t.Any] | None) -> None:
        """Take the organization slug out of the URL's values."""
        if not values:
            return
        for name in self.view_args():
            if name in values:
                setattr(g, _SLUG_KEY, values.pop(name))
                g._karaffe_org_arg = name
                return

    def add_org_slug(self, endpoint: str, values: dict[str, t.Any]) -> None:
        """``url_for`` fills in the current organization's slug."""
        name = g.get("_karaffe_org_arg")
        slug = g.get(_SLUG_KEY)
        if name is None or slug is None or name in values:
            return
        if current_app.url_map.is_endpoint_expecting(endpoint, name):
            values[name] = slug

    def resolve_org(self) -> None:
        """Resolve the URL's organization before the view for logged-in
        users (a foreign organization is a 404 whatever the view does);
        anonymous requests resolve it on first use, after their 401."""
        if g.get(_SLUG_KEY) is not None and get_user() is not None:
            get_current_org()

    def handle_cross_org_write(self, exc: CrossOrgWrite) -> t.Any:
        if getattr(current_app, "is_api_request", lambda: False)():
            return current_app.handle_api_exception(exc)  # type: ignore[attr-defined]
        return HTTPForbidden()


def init_app(app: Flask) -> Tenancy:
    """Install :class:`Tenancy` on ``app`` and return it."""
    return Tenancy(app)
