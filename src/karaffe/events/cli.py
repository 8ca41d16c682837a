"""``flask karaffe relay`` / ``karaffe relay``: serve the event relay, added to
the app's ``flask karaffe`` group by :class:`karaffe.events.Events`."""

from __future__ import annotations

import click
from flask import Flask, current_app

from ..cli import command_group
from .settings import EventsSettings

__all__ = ["init_app", "relay_command"]


@click.command("relay")
@click.option("--host", default=None, help="Address to listen on (EVENTS_RELAY_HOST).")
@click.option("--port", type=int, default=None, help="Port to listen on (EVENTS_RELAY_PORT).")
@click.option("--log-level", default="info", show_default=True, help="uvicorn's log level.")
def relay_command(host: str | None, port: int | None, log_level: str) -> None:
    """Stream events to browsers (SSE) from Redis, with the app's secret and settings.

    One process serves tens of thousands of connections; run one per core
    behind a load balancer. SIGTERM tells clients to reconnect, then stops.
    """
    from .relay import Relay, serve

    settings = EventsSettings.of(current_app)
    relay = Relay.from_app(current_app)
    serve(
        relay,
        host or settings.events_relay_host,
        port or settings.events_relay_port,
        log_level=log_level,
    )


def init_app(app: Flask) -> None:
    """Add the events commands to the app's ``flask karaffe`` group."""
    command_group(app).add_command(relay_command)
