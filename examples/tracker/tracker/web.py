"""What every HTML page shares: the viewer and their organizations in the
templates, the CSRF field, HTML error pages, and small view helpers."""

from __future__ import annotations

import re
import typing as t
from collections.abc import Callable, Sequence
from urllib.parse import urlencode

from flask import abort, current_app, flash, g, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_wtf.csrf import generate_csrf
from markupsafe import Markup
from werkzeug.exceptions import HTTPException, NotFound

import karaffe
from karaffe import InvalidCursor, Page, ValidationFailed, paginate
from karaffe.auth import User, get_user, require_user
from karaffe.db import current_outage
from karaffe.tenancy import get_current_org

from . import activity, dates, mentions, services

if t.TYPE_CHECKING:
    import sqlalchemy as sa

T = t.TypeVar("T")


def viewer() -> User:
    """The logged-in user (views behind ``login_required`` only)."""
    return require_user()


def in_current_org(org_id: int) -> None:
    """404 unless an object of ``org_id`` belongs to the organization of the
    URL: ``/o/acme/issues/7`` must not show issue 7 of another organization,
    even one the viewer is also a member of."""
    org = get_current_org()
    if org is None or org.id != org_id:
        raise NotFound()


def html_page(stmt: sa.Select[t.Any], order_by: t.Sequence[t.Any], limit: int) -> Page[t.Any]:
    """:func:`karaffe.paginate` for an HTML list: the same signed cursors and
    links as the API. A stale or hand-edited cursor or limit redirects to the
    first page instead of failing."""
    return html_page_of(lambda: paginate(stmt, order_by=order_by, limit=limit))


def html_page_of(make: Callable[[], Page[T]]) -> Page[T]:
    """The page ``make()`` paginates, for an HTML list: a stale or
    hand-edited cursor or limit redirects to the first page instead of
    failing."""
    try:
        return make()
    except (InvalidCursor, ValidationFailed):
        args = [(k, v) for k, v in request.args.items(multi=True) if k not in ("cursor", "limit")]
        flash("That page link is no longer valid; here is the first page.", "info")
        abort(redirect(request.path + ("?" + urlencode(args) if args else "")))


def list_url(**changes: t.Any) -> str:
    """The current list's URL with some arguments changed (``None`` drops
    one), back on its first page."""
    args = [(k, v) for k, v in request.args.items(multi=True) if k not in changes and k != "cursor"]
    args += [(k, v) for k, v in changes.items() if v is not None]
    return request.path + ("?" + urlencode(args) if args else "")


def csrf_field() -> Markup:
    """The hidden CSRF input every form posts (``{{ csrf_field() }}``)."""
    if not current_app.config.get("WTF_CSRF_ENABLED", True):
        return Markup("")
    return Markup('<input type="hidden" name="csrf_token" value="{}">').format(generate_csrf())


def live_script(live: dict[str, int] | None = None) -> Markup:
    """The script tags that keep a page live, its header's unread count and
    whatever else ``live`` names (see :mod:`tracker.live`); the base
    template renders them once, with the page's ``live``."""
    from . import live as live_updates

    return live_updates.script(live)


class _Lazy(Sequence[t.Any]):
    """A list loaded when a template first reads it: fragments that live
    pages fetch (no top bar) then cost no query for it."""

    def __init__(self, load: t.Callable[[], list[t.Any]]) -> None:
        self._load = load
        self._items: list[t.Any] | None = None

    def _loaded(self) -> list[t.Any]:
        if self._items is None:
            self._items = self._load()
        return self._items

    @t.overload
    def __getitem__(self, index: int) -> t.Any: ...
    @t.overload
    def __getitem__(self, index: slice) -> list[t.Any]: ...
    def __getitem__(self, index: int | slice) -> t.Any:
        return self._loaded()[index]

    def __len__(self) -> int:
        return len(self._loaded())


def _header() -> tuple[list[dict[str, t.Any]], int]:
    """The viewer's organizations with their role in each (the menu of
    every page) and their unread count, loaded together (one statement),
    once per request and user, at first use: when the page renders, after
    its writes, so the header shows what they changed (a view reads them
    only to render: :func:`viewer_role`). Nothing for nobody."""
    user = get_user()
    if user is None:
        return [], 0
    loaded = g.get("_tracker_header")
    if loaded is None or loaded[0] != user.id:
        orgs, unread = services.header_links(user)
        # Two organizations of one name (joined by invitation: creating one
        # is refused) are told apart by their slugs.
        names = [" ".join(org["name"].casefold().split()) for org in orgs]
        # Each one's page, from one URL built for all: the tracker's slugs
        # (services.slugify) are the same in a URL; url_for quotes any other.
        prefix, suffix = _org_url_parts()
        for org, name in zip(orgs, names, strict=True):
            org["label"] = (
                f"{org['name']} ({org['slug']})" if names.count(name) > 1 else org["name"]
            )
            slug = org["slug"]
            org["url"] = (
                f"{prefix}{slug}{suffix}"
                if _URL_SAFE_SLUG.fullmatch(slug)
                else url_for("orgs.show", org_slug=slug)
            )
        loaded = g._tracker_header = (user.id, orgs, unread)
    return t.cast(list[dict[str, t.Any]], loaded[1]), t.cast(int, loaded[2])


_URL_SAFE_SLUG = re.compile(r"[a-z0-9-]+")


def _org_url_parts() -> tuple[str, str]:
    """An organization's page's URL around its slug: ``("/o/", "/")``."""
    marker = "org-slug-marker"
    before, _, after = url_for("orgs.show", org_slug=marker).partition(marker)
    return before, after


def viewer_orgs() -> list[dict[str, t.Any]]:
    """The viewer's organizations by name, as ``{"id", "name", "slug",
    "role", "label", "url"}`` (the menu's; see :func:`_header`)."""
    return _header()[0]


def viewer_unread() -> int:
    """The viewer's unread notifications (the header's; see :func:`_header`)."""
    return _header()[1]


def viewer_role(org_id: int) -> str | None:
    """The viewer's role in ``org_id``, from :func:`viewer_orgs` (no query
    of its own on a page that shows the menu anyway)."""
    return next((org["role"] for org in viewer_orgs() if org["id"] == org_id), None)


def template_context() -> dict[str, t.Any]:
    if current_outage() is not None:
        # The 503 page of a database outage: nothing that needs the database.
        return {"viewer": None, "viewer_orgs": [], "unread": lambda: 0, "search_org": lambda: None}
    user = get_user()
    if user is None:
        return {"viewer": None, "viewer_orgs": [], "unread": lambda: 0, "search_org": lambda: None}
    # All load when the top bar reads them: fragments that live pages fetch
    # (no top bar) cost no query for them.
    orgs = _Lazy(viewer_orgs)
    return {
        "viewer": user,
        "viewer_orgs": orgs,
        "unread": viewer_unread,
        "search_org": lambda: _search_org(orgs),
    }


def _search_org(orgs: Sequence[dict[str, t.Any]]) -> str | None:
    """The slug of the organization the header's search box searches: the
    page's, else the viewer's first."""
    try:
        org = get_current_org()
    except HTTPException:  # the page is the 404 of an organization not the viewer's
        org = None
    if org is not None:
        return org.slug
    return t.cast("str | None", orgs[0]["slug"]) if orgs else None


def error_page(exc: HTTPException) -> ResponseReturnValue:
    """The tracker's page for an HTTP error on an HTML route (API routes keep
    their problem documents)."""
    code = exc.code or 500  # always set: karaffe passes errors of 400 and up
    try:
        body = render_template(
            "errors/error.html", code=code, name=exc.name, description=exc.description
        )
    except Exception:  # an error page must never fail: fall back to Werkzeug's
        current_app.logger.exception("error page failed to render")
        return exc
    return body, code, dict(exc.get_headers())


def init_app(app: karaffe.App) -> None:
    app.context_processor(template_context)
    app.add_template_global(csrf_field)
    app.add_template_global(list_url)
    app.add_template_global(live_script)
    app.add_template_filter(mentions.render, "markdown")
    app.add_template_global(dates.time_tag)
    app.add_template_global(activity.timeline_key)
    app.html_errorhandler(error_page)
