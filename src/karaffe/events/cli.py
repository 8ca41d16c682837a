"""``flask karaffe relay`` / ``karaffe relay``: serve the event relay."""

from __future__ import annotations

import click
from flask import current_app
from flask.cli import AppGroup

from .settings import EventsSettings

__all__ = ["register"]


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


def register(group: AppGroup) -> None:
    """Add the events commands to karaffe's command group."""
    group.add_command(relay_command)
