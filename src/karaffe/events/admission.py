"""Admission of event streams: the one path by which a stream request is let
in, shared by the app's own stream (:mod:`karaffe.events.devstream`) and the
relay (:mod:`karaffe.events.relay`).

A request names a token (``token`` query parameter, else the
``EVENTS_COOKIE_NAME`` cookie), channels (``channel``, repeated; none means
every channel of the token) and a resume position (``Last-Event-ID``, else the
``cursor`` query parameter). Admission takes two steps, so that the one step
that needs the broker can be done synchronously by the dev stream and
asynchronously by the relay, or later, while Redis does not answer:

1. :meth:`Admission.check` needs no I/O: it verifies the token (verified
   tokens are cached, so a reconnect storm does not verify each again),
   checks the channels against it and parses the cursor. It raises the
   :class:`~karaffe.ApiException` to answer with.
2. :meth:`Ticket.check_revocation` is given when the user's access, and the
   credential the token is bound to, were last revoked (the caller asks its
   broker) and refuses tokens issued before.

Every refusal is an :class:`~karaffe.ApiException` (a
:class:`~karaffe.events.tokens.ChannelTokenError` or
:class:`~karaffe.api.errors.InvalidCursor`), rendered as the same problem
document by both servers.
"""

from __future__ import annotations

import time
import typing as t
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs

from ..api.errors import InvalidCursor
from .protocol import Cursor, CursorError
from .tokens import ChannelGrant, RevokedToken, TokenSigner

__all__ = ["Admission", "StreamRequest", "Ticket", "is_revoked"]


def is_revoked(
    grant: ChannelGrant, revoked_at: float | None, credential_revoked_at: float | None = None
) -> bool:
    """Whether a token of ``grant`` is void because its user's access was
    revoked (at ``revoked_at``, ``None`` when never), or the credential it is
    bound to was (at ``credential_revoked_at``), after it was issued."""
    return any(
        at is not None and at >= grant.issued_at for at in (revoked_at, credential_revoked_at)
    )


@dataclass(frozen=True, slots=True)
class StreamRequest:
    """What a stream request asks for, read from the HTTP request."""

    #: The channel token, or ``None`` when the request has none.
    token: str | None
    #: The channels asked for (none: every channel of the token).
    channels: Sequence[str]
    #: The resume cursor, ``""`` when there is none (start live from now).
    cursor: str

    @classmethod
    def from_parts(
        cls,
        query: Mapping[str, Sequence[str]],
        last_event_id: str | None,
        cookie: str | None,
    ) -> StreamRequest:
        """From a parsed query string, the ``Last-Event-ID`` header and the
        token cookie. ``Last-Event-ID`` (sent by a reconnecting
        ``EventSource``) wins over the ``cursor`` of the first connection."""
        tokens, cursors = query.get("token"), query.get("cursor")
        token = (tokens[0] if tokens else None) or cookie
        cursor = last_event_id or (cursors[0] if cursors else "")
        return cls(token or None, list(query.get("channel") or ()), cursor)

    @classmethod
    def from_asgi(cls, scope: Mapping[str, t.Any], cookie_name: str) -> StreamRequest:
        """From an ASGI HTTP ``scope``."""
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        last_event_id = header(scope, b"last-event-id")
        raw_cookie = header(scope, b"cookie")
        return cls.from_parts(
            query,
            last_event_id.decode("latin-1") if last_event_id is not None else None,
            cookie(raw_cookie.decode("latin-1"), cookie_name) if raw_cookie else None,
        )


@dataclass(frozen=True, slots=True)
class Ticket:
    """A request that passed :meth:`Admission.check`: a valid token for these
    channels and a well-formed cursor. Only the revocation check is left."""

    grant: ChannelGrant
    #: The channels followed, in a fixed order (the cursor's).
    channels: tuple[str, ...]
    cursor: Cursor

    @property
    def user(self) -> str:
        """Whose revocation mark to look up."""
        return self.grant.user

    @property
    def credential(self) -> str | None:
        """The credential the token is bound to, whose revocation mark to look
        up too (``None``: none)."""
        return self.grant.credential

    def check_revocation(
        self, revoked_at: float | None, credential_revoked_at: float | None = None
    ) -> None:
        """Raise :class:`~karaffe.events.tokens.RevokedToken` when the user's
        access (at ``revoked_at``) or the token's credential (at
        ``credential_revoked_at``) was revoked after the token was issued."""
        if is_revoked(self.grant, revoked_at, credential_revoked_at):
            raise RevokedToken()


class Admission:
    """Checks stream requests against ``signer``'s tokens.

    :param signer: verifies channel tokens.
    :param cache_size: most verified tokens remembered (0: none). A cached
        token is verified again once past its expiry.
    """

    def __init__(self, signer: TokenSigner, cache_size: int = 100_000) -> None:
        self.signer = signer
        self.cache_size = cache_size
        self._grants: dict[str, ChannelGrant] = {}

    def verify(self, token: str | None) -> ChannelGrant:
        """The grant of ``token`` (cached), or the
        :class:`~karaffe.events.tokens.ChannelTokenError` saying why not."""
        grant = self._grants.get(token) if token else None
        if grant is None or grant.expires_at <= time.time():
            grant = self.signer.verify(token)
            if self.cache_size:
                if len(self._grants) >= self.cache_size:
                    self._grants.clear()
                self._grants[t.cast(str, token)] = grant
        return grant

    def check(self, request: StreamRequest) -> Ticket:
        """Everything but revocation, without I/O: the token, the channels it
        grants, the cursor. Raises the :class:`~karaffe.ApiException` to
        refuse the request with."""
        grant = self.verify(request.token)
        channels = grant.check_channels(request.channels)
        try:
            cursor = Cursor.parse(request.cursor)
        except CursorError as exc:
            raise InvalidCursor(str(exc)) from None
        return Ticket(grant, channels, cursor)


def header(scope: Mapping[str, t.Any], name: bytes) -> bytes | None:
    """The first ``name`` header (lower-case) of an ASGI ``scope``."""
    for key, value in scope.get("headers", ()):
        if key == name:
            return t.cast(bytes, value)
    return None


def cookie(raw: str, name: str) -> str | None:
    """The value of cookie ``name`` in a ``Cookie`` header."""
    for part in raw.split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None
