"""Channel tokens: a short-lived, signed permission to subscribe to channels.

The Flask app decides who may follow which channel and hands the page a token
(:func:`karaffe.events.channel_token`); the relay, which shares only the
app's secret, verifies it without a database. Tokens are signed by
:class:`karaffe.signing.Signer` (itsdangerous) with ``SECRET_KEY``;
``SECRET_KEY_FALLBACKS`` are still accepted while keys rotate.

Errors are :class:`karaffe.ApiException` subclasses, so a refused stream gets
the same problem document as any API error, its ``type`` ending in the slug::

    ChannelTokenError            401 invalid-token
    ├── MissingToken             401 missing-token
    ├── MalformedToken           401 malformed-token
    ├── TamperedToken            401 tampered-token    (our key, bad signature)
    ├── ForeignToken             401 foreign-token     (signed by another secret)
    ├── ExpiredToken             401 expired-token
    ├── RevokedToken             401 revoked-token     (access or credential revoked since)
    └── ChannelForbidden         403 channel-forbidden (valid, but not for that channel)
"""

from __future__ import annotations

import time
import typing as t
from collections.abc import Iterable
from dataclasses import dataclass

from itsdangerous import BadData, BadSignature

from ..api.errors import ApiException
from ..signing import CHANNEL_TOKEN_SALT, Signer
from .protocol import ProtocolError, validate_channel

__all__ = [
    "ChannelForbidden",
    "ChannelGrant",
    "ChannelTokenError",
    "ExpiredToken",
    "ForeignToken",
    "MalformedToken",
    "MissingToken",
    "RevokedToken",
    "TamperedToken",
    "TokenSigner",
]


class ChannelTokenError(ApiException):
    """A channel token cannot be used. The class says why; ``detail`` (the
    problem's ``detail``) never contains the token."""

    status = 401
    slug = "invalid-token"
    title = "Invalid channel token"
    #: The ``detail`` when none is given.
    detail: str = "The channel token is invalid."

    def __init__(self, detail: str | None = None) -> None:
        super().__init__(detail or type(self).detail)
        self.detail = self.message


class MissingToken(ChannelTokenError):
    slug = "missing-token"
    title = "Channel token required"
    detail = "A channel token is required (cookie or `token` query parameter)."


class MalformedToken(ChannelTokenError):
    slug = "malformed-token"
    title = "Malformed channel token"
    detail = "The channel token is malformed."


class TamperedToken(ChannelTokenError):
    slug = "tampered-token"
    title = "Tampered channel token"
    detail = "The channel token's signature does not match its content."


class ForeignToken(ChannelTokenError):
    slug = "foreign-token"
    title = "Foreign channel token"
    detail = "The channel token was not issued by this application."


class ExpiredToken(ChannelTokenError):
    slug = "expired-token"
    title = "Expired channel token"
    detail = "The channel token has expired; fetch a new one."


class RevokedToken(ChannelTokenError):
    slug = "revoked-token"
    title = "Revoked channel token"
    detail = "Access was revoked after this channel token was issued."


class ChannelForbidden(ChannelTokenError):
    status = 403
    slug = "channel-forbidden"
    title = "Channel not granted"
    detail = "The channel token does not grant this channel."


@dataclass(frozen=True, slots=True)
class ChannelGrant:
    """What a valid token allows: ``user`` may follow ``channels`` until
    ``expires_at`` (Unix seconds); it was issued at ``issued_at``, to a
    request authenticated by ``credential`` (such as ``"session:12"``; ``None``
    when not bound to one), whose revocation ends it too."""

    user: str
    channels: tuple[str, ...]
    issued_at: float
    expires_at: float
    credential: str | None = None

    def check_channels(self, requested: Iterable[str]) -> tuple[str, ...]:
        """The requested channels if the grant covers them all, else
        :class:`ChannelForbidden`. Requesting none means all granted ones."""
        wanted = tuple(dict.fromkeys(requested))
        if not wanted or wanted == self.channels:
            # The grant's own tuple: connections of one token share it.
            return self.channels
        allowed = set(self.channels)
        for channel in wanted:
            if channel not in allowed:
                raise ChannelForbidden(f"The channel token does not grant channel {channel!r}.")
        return wanted


class TokenSigner:
    """Signs and verifies channel tokens.

    Each token carries the id of the key that signed it (``k``), so that a
    bad signature under one of our keys' ids (a changed token) is told from a
    token another application signed.

    :param secret_key: the current secret (signs new tokens).
    :param fallbacks: older secrets still accepted (key rotation): a sequence,
        never a single string.
    :param max_age: default lifetime of new tokens, in seconds.
    """

    #: Separates karaffe's tokens from anything else signed with the same secret.
    salt = CHANNEL_TOKEN_SALT
    #: Longest token accepted.
    max_length = 8192

    def __init__(
        self,
        secret_key: str | bytes,
        fallbacks: Iterable[str | bytes] | None = (),
        max_age: int = 600,
    ) -> None:
        self.signer = Signer(secret_key, fallbacks, salt=self.salt)
        self.key_id = self.signer.key_ids[0]
        self.known_key_ids = frozenset(self.signer.key_ids)
        self.max_age = max_age

    def sign(
        self,
        user: str | int,
        channels: Iterable[str],
        *,
        max_age: int | None = None,
        now: float | None = None,
        credential: str | None = None,
    ) -> str:
        """A token letting ``user`` follow ``channels`` for ``max_age`` seconds,
        bound to ``credential`` when given (revoking it ends the token)."""
        issued = time.time() if now is None else now
        chans = list(dict.fromkeys(validate_channel(c) for c in channels))
        if not chans:
            raise ValueError("a channel token needs at least one channel")
        lifetime = self.max_age if max_age is None else max_age
        payload = {
            "u": str(user),
            "c": chans,
            "i": round(issued, 3),
            "e": round(issued + lifetime, 3),
            "k": self.key_id,
        }
        if credential is not None:
            payload["a"] = credential
        return self.signer.dumps(payload)

    def verify(self, token: str | None, *, now: float | None = None) -> ChannelGrant:
        """Return the :class:`ChannelGrant` of ``token`` or raise the
        :class:`ChannelTokenError` that says what is wrong with it."""
        if not token:
            raise MissingToken()
        if len(token) > self.max_length or "." not in token:
            raise MalformedToken()
        try:
            claims, valid = self.signer.loads(token), True
        except BadSignature:
            try:
                claims, valid = self.signer.loads_unverified(token), False
            except BadData:
                raise MalformedToken() from None
        grant = self._grant(claims)
        if not valid:
            raise TamperedToken() if claims["k"] in self.known_key_ids else ForeignToken()
        current = time.time() if now is None else now
        if current >= grant.expires_at:
            raise ExpiredToken()
        return grant

    def _grant(self, payload: t.Any) -> ChannelGrant:
        if not isinstance(payload, dict):
            raise MalformedToken()
        user, channels = payload.get("u"), payload.get("c")
        issued, expires = payload.get("i"), payload.get("e")
        credential = payload.get("a")
        if (
            not isinstance(user, str)
            or not isinstance(channels, list)
            or not channels
            or not all(isinstance(i, int | float) for i in (issued, expires))
            or not isinstance(payload.get("k"), str)
            or not isinstance(credential, str | None)
        ):
            raise MalformedToken()
        try:
            chans = tuple(validate_channel(c) for c in channels)
        except ProtocolError:
            raise MalformedToken() from None
        return ChannelGrant(
            user, chans, float(t.cast(float, issued)), float(t.cast(float, expires)), credential
        )
