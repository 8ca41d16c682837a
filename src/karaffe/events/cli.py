"""``flask karaffe relay`` and ``flask karaffe dispatch`` (also ``karaffe
relay`` / ``karaffe dispatch``): the event relay and the outbox's sweeper,
added to the app's ``flask karaffe`` group by :class:`karaffe.events.Events`."""

from __future__ import annotations

import signal
import threading
import types

import click
from flask import Flask, current_app
from flask.cli import with_appcontext

from ..cli import UsageFailure, command_group
from .settings import EventsSettings

__all__ = ["dispatch_command", "init_app", "relay_command"]


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


@click.command("dispatch")
@click.option("--once", is_flag=True, help="Send what can be sent now, then exit.")
@with_appcontext
def dispatch_command(once: bool) -> None:
    """Send the events of the transactional outbox to the broker.

    Requests send their own events right after their commit; this process
    sends what they could not (the broker was down or hung), as soon as the
    broker takes it, in order per channel, each event once. Run one, or a
    few for availability: they share the channels. SIGTERM or SIGINT ends it
    after the batch in flight. With --once, the exit status is 1 when events
    are still held.
    """
    from .publish import state_for

    state = state_for(current_app)
    if not state.outbox:
        raise UsageFailure(
            "the outbox is off (EVENTS_OUTBOX, or the in-process memory broker): "
            "events are sent after commit, there is nothing to dispatch"
        )
    dispatcher = state.dispatcher
    if once:
        result = dispatcher.drain()
        click.echo(f"sent {result.sent} event(s), dropped {result.dropped}, held {result.held}")
        if result.error is not None:
            click.echo(f"the broker failed: {result.error}", err=True)
            raise SystemExit(1)
        return
    stop = threading.Event()

    def on_signal(signum: int, frame: types.FrameType | None) -> None:
        stop.set()

    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, on_signal)
    click.echo("dispatching the events outbox (SIGTERM or Ctrl+C to stop)", err=True)
    dispatcher.run(stop, poll=EventsSettings.of(current_app).events_outbox_poll)


def init_app(app: Flask) -> None:
    """Add the events commands to the app's ``flask karaffe`` group."""
    group = command_group(app)
    group.add_command(relay_command)
    group.add_command(dispatch_command)
