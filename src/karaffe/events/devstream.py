"""The app's own SSE endpoint, for the embedded (memory) broker.

With no Redis, the Flask development server streams events itself at
``/events/stream`` with the same protocol as the relay (tokens, cursors,
``reset``, heartbeats, token expiry), one thread per connection. It is meant
for development and small deployments; production runs ``karaffe relay``.
"""

from __future__ import annotations

import queue
import time
import typing as t
from collections.abc import Iterator
from pathlib import Path

from flask import Blueprint, Response, current_app, request

from ..api.errors import ApiException, NotFound, ProblemFormatter, exception_for_status
from .admission import Admission, StreamRequest, is_revoked
from .brokers import Broker, MemoryBroker, unpack_revocation
from .protocol import comment, unpack_message
from .session import StreamSession, control
from .settings import EventsSettings
from .tokens import ChannelGrant, RevokedToken, TokenSigner

__all__ = ["StreamSource", "make_blueprint"]

#: Headers of every stream response.
STREAM_HEADERS = {
    "Cache-Control": "no-store",
    "X-Accel-Buffering": "no",
}


class StreamSource(t.Protocol):
    """What the stream needs of the app's events state
    (:class:`karaffe.events.publish.EventsState` is one)."""

    @property
    def broker(self) -> Broker: ...

    @property
    def signer(self) -> TokenSigner: ...

    @property
    def serves_stream(self) -> bool: ...


def make_blueprint(source: StreamSource) -> Blueprint:
    """The ``karaffe_events`` blueprint: the static JS client and the stream
    of the app whose events state is ``source``."""
    bp = Blueprint(
        "karaffe_events",
        __name__,
        static_folder=str(Path(__file__).with_name("static")),
        static_url_path="/events/static",
    )
    bp.add_url_rule("/events/stream", "stream", lambda: stream(source))
    return bp


def _refuse(exc: ApiException) -> Response:
    """The app's problem response for ``exc`` (this route is not under the
    API prefixes, and the app may be a plain Flask app)."""
    formatter = getattr(current_app, "problem_formatter", None) or ProblemFormatter()
    return formatter.to_response(exc)


def stream(source: StreamSource) -> Response:
    """``GET /events/stream?channel=...&token=...&cursor=...``."""
    broker = source.broker
    if not source.serves_stream:
        return _refuse(NotFound("Events are streamed by the relay (EVENTS_RELAY_URL)."))
    if not isinstance(broker, MemoryBroker):
        not_implemented = exception_for_status(501)
        return _refuse(not_implemented("The app streams with the memory broker only."))
    settings = EventsSettings.of()
    asked = StreamRequest.from_parts(
        request.args.to_dict(flat=False),
        request.headers.get("Last-Event-ID"),
        request.cookies.get(settings.events_cookie_name),
    )
    try:
        ticket = Admission(source.signer, cache_size=0).check(asked)
        ticket.check_revocation(*_revocations(broker, ticket.grant))
    except ApiException as exc:
        return _refuse(exc)
    channels = ticket.channels
    listener = broker.listen(channels)
    if is_revoked(ticket.grant, *_revocations(broker, ticket.grant)):
        # Revoked between the check and listening: no announcement will come.
        broker.unlisten(listener)
        return _refuse(RevokedToken())
    session = StreamSession(channels, ticket.cursor, broker.positions(channels))
    body = _generate(
        broker,
        listener,
        session,
        ticket.grant,
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


def _revocations(broker: MemoryBroker, grant: ChannelGrant) -> tuple[float | None, float | None]:
    """When ``grant``'s user's access, and the credential it is bound to, were
    last revoked (``None``: never)."""
    credential_at = broker.revoked_at(grant.user, grant.credential) if grant.credential else None
    return broker.revoked_at(grant.user), credential_at


def _revokes(payload: bytes, grant: ChannelGrant) -> bool:
    """Whether the revocation in ``payload`` ends the stream of ``grant``."""
    revocation = unpack_revocation(payload)
    if revocation is None:
        return False
    user, at, credential = revocation
    if user != grant.user or (credential is not None and credential != grant.credential):
        return False
    return is_revoked(grant, at)
