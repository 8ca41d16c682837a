"""The settings of karaffe's live events, read by :meth:`Events.init_app
<karaffe.events.Events.init_app>` and by the relay from the same app."""

from __future__ import annotations

import typing as t

from pydantic import Field

from ..config import PositiveFloat, PositiveInt, Settings

__all__ = ["EventsSettings"]


class EventsSettings(Settings):
    """The settings of live events (the broker is ``REDIS_URL``, a core setting)."""

    title: t.ClassVar[str] = "Live events"

    events_broker: t.Literal["auto", "memory", "redis"] = "auto"
    """`memory`, `redis`, or `auto`: redis when REDIS_URL is set, else memory."""

    events_redis_cluster: bool = False
    """REDIS_URL is a Redis Cluster: cluster client and sharded pub/sub (SPUBLISH)."""

    events_redis_prefix: str = "karaffe:events:"
    """Prefix of every Redis key and pub/sub channel of events."""

    events_history_size: PositiveInt = 1000
    """Events kept per channel for resume (approximate with Redis: at least this many)."""

    events_token_max_age: PositiveInt = 600
    """Lifetime of channel tokens in seconds."""

    events_relay_url: str | None = None
    """URL of the relay's stream that browsers connect to; default: the app's /events/stream."""

    events_serve_stream: t.Literal["auto"] | bool = "auto"
    """Serve /events/stream from the Flask app: `auto` (with the memory broker), true or false."""

    events_cookie_name: str = "karaffe_events"
    """Cookie that may carry the channel token when the relay shares the site."""

    events_heartbeat: PositiveFloat = 15.0
    """Seconds between heartbeat comments on idle streams."""

    events_retry_ms: t.Annotated[int, Field(ge=0)] = 2000
    """The `retry:` reconnection delay sent to clients, in milliseconds."""

    events_token_notice: t.Annotated[float, Field(ge=0)] = 60.0
    """Seconds before a token expires that the relay sends `token-expiring`."""

    events_cors_origins: list[str] = []
    """Origins allowed to read the relay's streams cross-site (`*` for any, without cookies)."""

    events_max_buffer: PositiveInt = 256 * 1024
    """Bytes a slow client may have pending before the relay cuts it off."""

    events_relay_write_interval: t.Annotated[float, Field(ge=0)] = 0.25
    """Least seconds between two writes of events to a relay stream: events that come
    sooner are held (at most this long) and written together, one `send` for several;
    the first event after a quiet moment goes out at once. 0: write every event at once."""

    events_replay_limit: PositiveInt = 10000
    """Most events replayed per channel on resume; beyond, the client gets `reset`."""

    events_relay_host: str = "127.0.0.1"
    """Address `karaffe relay` listens on."""

    events_relay_port: t.Annotated[int, Field(gt=0, lt=65536)] = 8001
    """Port `karaffe relay` listens on."""

    events_presence_ttl: PositiveFloat = 30.0
    """Seconds a page stays present on a channel after its last heartbeat (pages
    send one every third of it): a closed tab or a dead process leaves nothing longer."""

    events_outbox: t.Literal["auto"] | bool = "auto"
    """Write the events published in a transaction to the `karaffe_event_outbox` table,
    in that transaction (a transactional outbox): `auto` with any broker but memory."""

    events_outbox_timeout: PositiveFloat = 0.2
    """Seconds a request waits after its commit for the outbox lock, and for the broker,
    to send its events; what it cannot send, `flask karaffe dispatch` sends."""

    events_outbox_poll: PositiveFloat = 1.0
    """Seconds between two looks of `flask karaffe dispatch` at an empty outbox."""

    events_outbox_sweep_timeout: PositiveFloat = 5.0
    """Seconds `flask karaffe dispatch` waits for the broker to take a batch of events."""

    events_outbox_give_up: PositiveFloat | None = None
    """Seconds after which an event the broker has still not taken is dropped and its
    channel reset (its readers get `reset`). Default: never give up."""
