"""Live updates (slides 58-60): Flask publishes events of committed data to a
broker (through a transactional outbox with Redis, sent after the commit and
by ``karaffe dispatch``); the relay (``karaffe relay``) streams them to
browsers over Server-Sent Events; signed channel tokens say who may follow what.

See ``docs/events.md``. The public API::

    from karaffe.events import Events, publish, channel_token, cursor, revoke

    events = Events(app)                      # or Events().init_app(app)
    publish("project:7", "issue.created", {"id": 12})
    token = channel_token(current_user, ["project:7"])
"""

from __future__ import annotations

from .brokers import Broker, MemoryBroker, RedisBroker
from .protocol import Cursor, CursorError, Event, ProtocolError
from .publish import Events, channel_token, cursor, event_published, publish, revoke, stream_url
from .tokens import (
    ChannelForbidden,
    ChannelGrant,
    ChannelTokenError,
    ExpiredToken,
    ForeignToken,
    MalformedToken,
    MissingToken,
    RevokedToken,
    TamperedToken,
    TokenSigner,
)

__all__ = [
    "Broker",
    "ChannelForbidden",
    "ChannelGrant",
    "ChannelTokenError",
    "Cursor",
    "CursorError",
    "Event",
    "Events",
    "ExpiredToken",
    "ForeignToken",
    "MalformedToken",
    "MemoryBroker",
    "MissingToken",
    "ProtocolError",
    "RedisBroker",
    "RevokedToken",
    "TamperedToken",
    "TokenSigner",
    "channel_token",
    "cursor",
    "event_published",
    "publish",
    "revoke",
    "stream_url",
]
