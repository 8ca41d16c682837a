"""Security headers on every response, with a per-request CSP nonce.

Every :class:`karaffe.App` installs :class:`SecurityHeaders` (its
:attr:`~karaffe.App.security_headers_class`) when it is configured, so a
karaffe app is protected before anyone thinks of it; a plain Flask app gets
the same with ``SecurityHeaders(app)``. Each response carries, unless the view set the
header itself:

``Content-Security-Policy``
    ``default-src 'self'``: scripts, styles, images, fonts and connections
    come from the app's own origin only; no inline script runs unless it
    carries the request's nonce (``<script nonce="{{ csp_nonce() }}">``),
    inline event handlers (``onclick=``) and ``javascript:`` URLs never do;
    no plugins (``object-src 'none'``), no ``<base>`` (``base-uri 'none'``),
    no framing (``frame-ancestors 'none'``), forms post to the app only
    (``form-action 'self'``). The live-updates relay's origin is added to
    ``connect-src`` when ``EVENTS_RELAY_URL`` points elsewhere.
``X-Content-Type-Options: nosniff``
    a script or stylesheet is run only when served as one.
``X-Frame-Options: DENY``
    framing refused for browsers that predate ``frame-ancestors``.
``Referrer-Policy: strict-origin-when-cross-origin``
    other sites see the origin only, never a path or query (which may hold
    a cursor or an invitation token).
``Strict-Transport-Security``
    only when ``HSTS_MAX_AGE`` is set: a site says it itself when it is
    served over HTTPS only.

Change the policy per app with the ``CSP_*``, ``HSTS_*``, ``REFERRER_POLICY``
and ``X_FRAME_OPTIONS`` settings, or subclass :class:`SecurityHeaders` and
override :meth:`~SecurityHeaders.directives` or
:meth:`~SecurityHeaders.headers`; a single view sets its own header to win.

.. versionadded:: 0.1 (issue 10)
"""

from __future__ import annotations

import secrets
import typing as t
import urllib.parse

from flask import Flask, current_app, g, has_request_context
from pydantic import Field
from werkzeug.datastructures import Headers

from .config import Settings

if t.TYPE_CHECKING:
    from werkzeug.wrappers import Response

__all__ = ["SecurityHeaders", "SecurityHeadersSettings", "csp_nonce"]

_NONCE = "_karaffe_csp_nonce"
_NONCE_SLOT = "{nonce}"
#: Where an app keeps its prepared headers (:func:`_prepare`), made on its first response.
_PREPARED = "karaffe.headers.prepared"


class SecurityHeadersSettings(Settings):
    """What the security headers (`karaffe.headers`) read from the configuration."""

    title: t.ClassVar[str] = "Security headers"

    csp_directives: dict[str, str] = {}
    """Content-Security-Policy directives replacing karaffe's, as a JSON object,
    e.g. `{"img-src": "'self' https://images.example.com"}`; an empty value
    drops the directive."""

    csp_report_only: bool = False
    """Send the policy as Content-Security-Policy-Report-Only: browsers report
    what it would block and block nothing (to try a policy out)."""

    x_frame_options: t.Literal["DENY", "SAMEORIGIN"] | None = "DENY"
    """X-Frame-Options; none: not sent (frame-ancestors still applies)."""

    referrer_policy: (
        t.Literal[
            "no-referrer",
            "no-referrer-when-downgrade",
            "origin",
            "origin-when-cross-origin",
            "same-origin",
            "strict-origin",
            "strict-origin-when-cross-origin",
        ]
        | None
    ) = "strict-origin-when-cross-origin"
    """Referrer-Policy; none: not sent."""

    hsts_max_age: t.Annotated[int, Field(ge=0)] = 0
    """Seconds browsers must use HTTPS only (Strict-Transport-Security); 0: not
    sent. Set it when the site is served over HTTPS only, e.g. 31536000."""

    hsts_include_subdomains: bool = False
    """Strict-Transport-Security also covers every subdomain."""


def csp_nonce() -> str:
    """The nonce of the current request, for inline scripts and styles the
    policy allows: ``<script nonce="{{ csp_nonce() }}">``. Made on first use,
    so a response that uses none names none in its policy. Call it before a
    streamed response starts: the header is written when the response is."""
    if not has_request_context():
        raise RuntimeError("csp_nonce() needs a request")
    nonce: str | None = g.get(_NONCE)
    if nonce is None:
        nonce = secrets.token_urlsafe(16)
        setattr(g, _NONCE, nonce)
    return nonce


class SecurityHeaders:
    """Adds the security headers to every response of an app.

    The policy is built once per app, on its first response (when every part
    is installed and configured), then only the nonce changes.
    """

    #: Content-Security-Policy directives before the ``CSP_DIRECTIVES`` setting.
    #: ``{nonce}`` is replaced by the request's nonce, or dropped when the
    #: response used none.
    default_directives: t.ClassVar[dict[str, str]] = {
        "default-src": "'self'",
        "script-src": "'self' 'nonce-{nonce}'",
        "style-src": "'self' 'nonce-{nonce}'",
        "img-src": "'self' data:",
        "font-src": "'self'",
        "connect-src": "'self'",
        "object-src": "'none'",
        "base-uri": "'none'",
        "frame-ancestors": "'none'",
        "form-action": "'self'",
    }

    def __init__(self, app: Flask | None = None) -> None:
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        app.extensions["karaffe.headers"] = self
        # A context processor rather than a Jinja global: it leaves the Jinja
        # environment to be created on first use, as Flask does.
        app.context_processor(_template_context)
        app.after_request(self._after_request)

    # -- what is sent ------------------------------------------------------------

    def directives(self, app: Flask) -> dict[str, str]:
        """The Content-Security-Policy of ``app``, directive by directive:
        :attr:`default_directives`, the relay's origin, then ``CSP_DIRECTIVES``.
        Override to compute it otherwise."""
        directives = dict(self.default_directives)
        relay = _relay_origin(app)
        if relay is not None:
            directives["connect-src"] = f"{directives.get('connect-src', '')} {relay}".strip()
        directives.update(SecurityHeadersSettings.of(app).csp_directives)
        return {name: value for name, value in directives.items() if value.strip()}

    def headers(self, app: Flask) -> dict[str, str]:
        """Every header and its value (the policy with its ``{nonce}`` slots)."""
        settings = SecurityHeadersSettings.of(app)
        policy = "; ".join(f"{name} {value}" for name, value in self.directives(app).items())
        csp_header = (
            "Content-Security-Policy-Report-Only"
            if settings.csp_report_only
            else "Content-Security-Policy"
        )
        headers = {"X-Content-Type-Options": "nosniff"}
        if policy:
            headers[csp_header] = policy
        if settings.x_frame_options:
            headers["X-Frame-Options"] = settings.x_frame_options
        if settings.referrer_policy:
            headers["Referrer-Policy"] = settings.referrer_policy
        if settings.hsts_max_age:
            hsts = f"max-age={settings.hsts_max_age}"
            if settings.hsts_include_subdomains:
                hsts += "; includeSubDomains"
            headers["Strict-Transport-Security"] = hsts
        return headers

    # -- the hook ----------------------------------------------------------------

    def _after_request(self, response: Response) -> Response:
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        prepared = app.extensions.get(_PREPARED)
        if prepared is None:
            prepared = app.extensions[_PREPARED] = _prepare(self.headers(app))
        nonce: str | None = g._get_current_object().get(_NONCE)
        target = response.headers
        # The values were checked once, by _prepare, and a nonce is URL-safe
        # base64: they go into Werkzeug's list as they are, rather than
        # through Headers.add, which checks each value again. One pass over
        # the response's own headers finds those a view set itself.
        items = target._list if type(target) is Headers else None
        present = {key.lower() for key, _ in (target.items() if items is None else items)}
        for name, lower, with_nonce, without_nonce in prepared:
            if lower not in present:
                value = with_nonce.replace(_NONCE_SLOT, nonce) if nonce else without_nonce
                if items is None:
                    target.add(name, value)
                else:
                    items.append((name, value))
        return response


def _template_context() -> dict[str, t.Any]:
    return {"csp_nonce": csp_nonce}


def _prepare(headers: dict[str, str]) -> list[tuple[str, str, str, str]]:
    """Each header (and its lower-case name) with its value for a response
    that used a nonce, and for one that did not (the sources naming the nonce
    left out)."""
    prepared = []
    for name, value in headers.items():
        if "\r" in name or "\n" in name or "\r" in value or "\n" in value:
            raise ValueError(f"the security header {name!r} holds a newline: {value!r}")
        parts = []
        for part in value.split(";"):
            words = [word for word in part.split() if _NONCE_SLOT not in word]
            if words:
                parts.append(" ".join(words))
        prepared.append((name, name.lower(), value, "; ".join(parts)))
    return prepared


def _relay_origin(app: Flask) -> str | None:
    """The origin of ``EVENTS_RELAY_URL`` when live events are installed and
    it is absolute (a path is the app's own origin)."""
    if "karaffe.events" not in app.extensions:
        return None
    from .events.settings import EventsSettings

    url = EventsSettings.of(app).events_relay_url
    if not url:
        return None
    parts = urllib.parse.urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"
