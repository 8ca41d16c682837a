"""The app's own SSE endpoint, for the embedded (memory) broker.

With no Redis, the Flask development server streams events itself at
``/events/stream`` with the same protocol as the relay (tokens, cursors,
``reset``, heartbeats, token expiry), one thread per connection. It is meant
for development and small deployments; production runs ``karaffe relay``.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, current_app, request

from ..api.errors import (
    ApiException,
    InvalidCursor,
    NotFound,
    ProblemFormatter,
    exception_for_status,
)
from .brokers import MemoryBroker, unpack_revocation
from .protocol import Cursor, CursorError, comment, unpack_message
from .session import StreamSession, control
from .settings import EventsSettings
from .tokens import ChannelGrant, ChannelTokenError, RevokedToken, is_revoked

__all__ = ["make_blueprint", "stream"]

#: Headers of every stream response.
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


def make_blueprint() -> Blueprint:
    """The ``karaffe_events`` blueprint: the static JS client and the stream."""
    bp = Blueprint(
        "karaffe_events",
        __name__,
        static_folder=str(Path(__file__).with_name("static")),
        static_url_path="/events/static",
    )
    bp.add_url_rule("/events/stream", "stream", stream)
    return bp


def _refuse(exc: ApiException) -> Response:
    """The app's problem response for ``exc`` (this route is not under the
    API prefixes, and the app may be a plain Flask app)."""
    formatter = getattr(current_app, "problem_formatter", None) or ProblemFormatter()
    return formatter.to_response(exc)


def stream() -> Response:
    """``GET /events/stream?channel=...&token=...&cursor=...``."""
    from .publish import state_for

    state = state_for()
    broker = state.broker
    if not state.serves_stream:
        return _refuse(NotFound("Events are streamed by the relay (EVENTS_RELAY_URL)."))
    if not isinstance(broker, MemoryBroker):
        not_implemented = exception_for_status(501)
        return _refuse(not_implemented("The app streams with the memory broker only."))
    settings = EventsSettings.of()
    token = request.args.get("token") or request.cookies.get(settings.events_cookie_name)
    try:
        grant = state.signer.verify(token)
        channels = grant.check_channels(request.args.getlist("channel"))
        if _revoked(broker, grant):
            raise RevokedToken()
    except ChannelTokenError as exc:
        return _refuse(exc)
    raw_cursor = request.headers.get("Last-Event-ID") or request.args.get("cursor") or ""
    try:
        cursor = Cursor.parse(raw_cursor)
    except CursorError as exc:
        return _refuse(InvalidCursor(str(exc)))
    listener = broker.listen(channels)
    if _revoked(broker, grant):
        # Revoked between the check and listening: no announcement will come.
        broker.unlisten(listener)
        return _refuse(RevokedToken())
    session = StreamSession(channels, cursor, broker.positions(channels))
    body = _generate(
        broker,
        listener,
        session,
        grant,
        heartbeat=settings.events_heartbeat,
        retry=settings.events_retry_ms,
        notice=settings.events_token_notice,
        limit=settings.events_replay_limit,
    )
    return Response(body, mimetype="text/event-stream", headers=STREAM_HEADERS)


def _generate(
    broker: MemoryBroker,
    listener: queue.SimpleQueue[tuple[str, bytes]],
    session: StreamSession,
    grant: ChannelGrant,
    *,
    heartbeat: float,
    retry: int,
    notice: float,
    limit: int,
) -> Iterator[bytes]:
    try:
        yield b"retry: %d\n\n" % retry
        for channel in session.channels:
            history = broker.history(channel, session.after(channel), limit)
            chunk = session.replay(channel, history, complete=len(history.entries) < limit)
            if chunk:
                yield chunk
        warned = False
        while True:
            now = time.time()
            if now >= grant.expires_at:
                yield control("auth-expired", {"reason": "expired"})
                return
            if not warned and now >= grant.expires_at - notice:
                warned = True
                yield control("token-expiring", {"expires_at": grant.expires_at})
            wait = min(heartbeat, max(0.01, grant.expires_at - now))
            if not warned:
                wait = min(wait, max(0.01, grant.expires_at - notice - now))
            try:
                channel, payload = listener.get(timeout=wait)
            except queue.Empty:
                yield comment()
                continue
            if channel == "":
                if _revokes(payload, grant):
                    yield control("auth-expired", {"reason": "revoked"})
                    return
                continue
            id, epoch, type, data_json = unpack_message(payload)
            out = session.live(channel, id, epoch, type, data_json)
            if out:
                yield out
    finally:
        broker.unlisten(listener)


def _revoked(broker: MemoryBroker, grant: ChannelGrant) -> bool:
    """Whether ``grant``'s user, or its credential, was revoked since it was issued."""
    credential_at = broker.revoked_at(grant.user, grant.credential) if grant.credential else None
    return is_revoked(grant, broker.revoked_at(grant.user), credential_at)


def _revokes(payload: bytes, grant: ChannelGrant) -> bool:
    """Whether the revocation in ``payload`` ends the stream of ``grant``."""
    revocation = unpack_revocation(payload)
    if revocation is None:
        return False
    user, at, credential = revocation
    if user != grant.user or grant.issued_at > at:
        return False
    return credential is None or credential == grant.credential
