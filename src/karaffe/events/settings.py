"""The settings of karaffe's live events, declared by :meth:`Events.init_app
<karaffe.events.Events.init_app>` and read by the relay from the same app."""

from __future__ import annotations

import typing as t

from ..config import Setting, positive

__all__ = ["SETTINGS"]


def _broker_name(value: t.Any) -> None:
    if value not in ("auto", "memory", "redis"):
        raise ValueError(f"must be auto, memory or redis, got {value!r}")


def _non_negative(value: t.Any) -> None:
    if value < 0:
        raise ValueError(f"must not be negative, got {value}")


SETTINGS: tuple[Setting, ...] = (
    Setting(
        "EVENTS_BROKER",
        str,
        "auto",
        "`memory`, `redis`, or `auto`: redis when REDIS_URL is set, else memory.",
        check=_broker_name,
    ),
    Setting(
        "REDIS_URL",
        str,
        None,
        "Redis server for events (and jobs), e.g. redis://127.0.0.1:6379/0.",
        env=("REDIS_URL",),
    ),
    Setting(
        "EVENTS_REDIS_CLUSTER",
        bool,
        False,
        "REDIS_URL is a Redis Cluster: cluster client and sharded pub/sub (SPUBLISH).",
    ),
    Setting(
        "EVENTS_REDIS_PREFIX",
        str,
        "karaffe:events:",
        "Prefix of every Redis key and pub/sub channel of events.",
    ),
    Setting(
        "EVENTS_HISTORY_SIZE",
        int,
        1000,
        "Events kept per channel for resume (approximate with Redis: at least this many).",
        check=positive,
    ),
    Setting(
        "EVENTS_TOKEN_MAX_AGE", int, 600, "Lifetime of channel tokens in seconds.", check=positive
    ),
    Setting(
        "EVENTS_RELAY_URL",
        str,
        None,
        "URL of the relay's stream that browsers connect to; default: the app's /events/stream.",
    ),
    Setting(
        "EVENTS_SERVE_STREAM",
        str,
        "auto",
        "Serve /events/stream from the Flask app: `auto` (with the memory broker), `yes` or `no`.",
    ),
    Setting(
        "EVENTS_COOKIE_NAME",
        str,
        "karaffe_events",
        "Cookie that may carry the channel token when the relay shares the site.",
    ),
    Setting(
        "EVENTS_HEARTBEAT",
        float,
        15.0,
        "Seconds between heartbeat comments on idle streams.",
        check=positive,
    ),
    Setting(
        "EVENTS_RETRY_MS",
        int,
        2000,
        "The `retry:` reconnection delay sent to clients, in milliseconds.",
        check=_non_negative,
    ),
    Setting(
        "EVENTS_TOKEN_NOTICE",
        float,
        60.0,
        "Seconds before a token expires that the relay sends `token-expiring`.",
        check=_non_negative,
    ),
    Setting(
        "EVENTS_CORS_ORIGINS",
        list,
        [],
        "Origins allowed to read the relay's streams cross-site (`*` for any, without cookies).",
    ),
    Setting(
        "EVENTS_MAX_BUFFER",
        int,
        256 * 1024,
        "Bytes a slow client may have pending before the relay cuts it off.",
        check=positive,
    ),
    Setting(
        "EVENTS_REPLAY_LIMIT",
        int,
        10000,
        "Most events replayed per channel on resume; beyond, the client gets `reset`.",
        check=positive,
    ),
    Setting("EVENTS_RELAY_HOST", str, "127.0.0.1", "Address `karaffe relay` listens on."),
    Setting("EVENTS_RELAY_PORT", int, 8001, "Port `karaffe relay` listens on.", check=positive),
)
