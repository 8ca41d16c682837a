"""Cookie sessions that cost nothing on requests that carry no cookie.

Flask's :class:`~flask.sessions.SecureCookieSessionInterface` builds a new
signing serializer on every request (deriving keys and probing its JSON
serializer) and parses the ``Cookie`` header even when there is none. An API
client rarely sends cookies, so karaffe signs with the one signer
(:func:`karaffe.signing.signer_for`, built once per set of secret keys, salt
:data:`~karaffe.signing.SESSION_SALT`) and hands out an empty session straight
away when there is no cookie; at the end of such a request, if nothing read
or wrote the session, nothing is saved and no setting is read. Sessions hold
what Flask's hold: values go through Flask's tagged JSON, so tuples, bytes,
``Markup`` and datetimes come back as they went in.
"""

from __future__ import annotations

import typing as t

from flask.sessions import SecureCookieSession, SecureCookieSessionInterface, SessionMixin

from .signing import SESSION_SALT, Signer, signer_for

if t.TYPE_CHECKING:
    from flask import Flask, Request, Response

__all__ = ["CookieSessionInterface"]


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, signed by :class:`karaffe.signing.Signer`.

    :attr:`salt` and :attr:`serializer` are used as Flask uses them;
    ``digest_method`` and ``key_derivation`` are not (the signer's are
    HMAC-SHA256 and HMAC).
    """

    salt = SESSION_SALT

    # Flask types this as returning its URLSafeTimedSerializer; it calls only
    # ``dumps(value)`` and ``loads(cookie, max_age=...)`` on it, which a Signer has.
    def get_signing_serializer(self, app: Flask) -> Signer | None:  # type: ignore[override]
        if not app.secret_key:
            return None
        return signer_for(app, self.salt, serializer=self.serializer)

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.environ.get("HTTP_COOKIE"):
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)

    def save_session(self, app: Flask, session: SessionMixin, response: Response) -> None:
        # Empty, never read nor written (an API client's, which sent no
        # cookie): Flask would add nothing to the response, after reading
        # the seven cookie settings. Read or written, it goes to Flask.
        if not session and not session.modified and not session.accessed:
            return
        super().save_session(app, session, response)
