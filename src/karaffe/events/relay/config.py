"""The relay's configuration: what it needs of the app, as one value."""

from __future__ import annotations

import typing as t
from dataclasses import dataclass, field

if t.TYPE_CHECKING:
    from flask import Flask

__all__ = ["RelayConfig"]


@dataclass
class RelayConfig:
    """What the relay needs; :meth:`from_app` reads it from a Flask app's config."""

    secret_key: str
    redis_url: str
    secret_key_fallbacks: list[str] = field(default_factory=list)
    prefix: str = "karaffe:events:"
    token_max_age: int = 600
    heartbeat: float = 15.0
    retry_ms: int = 2000
    token_notice: float = 60.0
    cors_origins: list[str] = field(default_factory=list)
    max_buffer: int = 256 * 1024
    replay_limit: int = 10000
    #: Least seconds between two writes of events to a stream (see ``Hub.flush``).
    write_interval: float = 0.25
    cookie_name: str = "karaffe_events"
    stream_path: str = "/events/stream"
    #: Write straight to uvicorn's transports when possible (else through ``send``).
    direct_writes: bool = True
    #: ``redis_url`` is a Redis Cluster: cluster client, sharded pub/sub.
    cluster: bool = False
    #: The app's ``PROBLEM_TYPE_BASE``: refusals name the same problem types.
    problem_type_base: str = "urn:karaffe:problem:"

    @classmethod
    def from_app(cls, app: Flask) -> RelayConfig:
        from ...config import ConfigError, CoreSettings
        from ..settings import EventsSettings

        core, events = CoreSettings.of(app), EventsSettings.of(app)
        if not core.redis_url:
            raise ConfigError("the relay needs REDIS_URL")
        return cls(
            secret_key=core.secret_key or "",
            redis_url=core.redis_url,
            secret_key_fallbacks=list(core.secret_key_fallbacks),
            prefix=events.events_redis_prefix,
            token_max_age=events.events_token_max_age,
            heartbeat=events.events_heartbeat,
            retry_ms=events.events_retry_ms,
            token_notice=events.events_token_notice,
            cors_origins=list(events.events_cors_origins),
            max_buffer=events.events_max_buffer,
            replay_limit=events.events_replay_limit,
            write_interval=events.events_relay_write_interval,
            cookie_name=events.events_cookie_name,
            cluster=events.events_redis_cluster,
            problem_type_base=core.problem_type_base,
        )
