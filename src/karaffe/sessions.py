"""Cookie sessions that cost nothing on requests that carry no cookie.

Flask's :class:`~flask.sessions.SecureCookieSessionInterface` builds a new
signing serializer on every request (deriving keys and probing its JSON
serializer) and parses the ``Cookie`` header even when there is none. An API
client rarely sends cookies, so karaffe keeps one serializer per set of secret
keys and hands out an empty session straight away when there is no cookie.
Sessions read and written are exactly Flask's.
"""

from __future__ import annotations

import typing as t

from flask.sessions import SecureCookieSession, SecureCookieSessionInterface

if t.TYPE_CHECKING:
    from flask import Flask, Request
    from itsdangerous import URLSafeTimedSerializer

__all__ = ["CookieSessionInterface"]


class CookieSessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the serializer built once per secret."""

    #: How many sets of secret keys to remember a serializer for.
    max_cached: int = 8

    def __init__(self) -> None:
        self._serializers: dict[tuple[t.Any, ...], URLSafeTimedSerializer] = {}

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        if not app.secret_key:
            return None
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        serializer = self._serializers.get(keys)
        if serializer is None:
            serializer = super().get_signing_serializer(app)
            assert serializer is not None
            if len(self._serializers) >= self.max_cached:
                self._serializers.clear()
            self._serializers[keys] = serializer
        return serializer

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.environ.get("HTTP_COOKIE"):
            return self.session_class() if app.secret_key else None
        return super().open_session(app, request)
