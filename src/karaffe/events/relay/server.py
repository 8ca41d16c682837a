"""Serving the relay with uvicorn (uvloop and httptools when installed)."""

from __future__ import annotations

import typing as t

if t.TYPE_CHECKING:
    from .app import Relay

__all__ = ["make_server", "serve"]


def serve(relay: Relay, host: str = "127.0.0.1", port: int = 8001, **options: t.Any) -> None:
    """Serve ``relay`` with uvicorn (uvloop and httptools when installed),
    draining the streams on SIGTERM/SIGINT before the server stops. The
    access log stays off: stream URLs carry tokens."""
    server = make_server(relay, host, port, **options)
    server.run()


def make_server(relay: Relay, host: str, port: int, **options: t.Any) -> t.Any:
    """A uvicorn server for ``relay`` that drains it on shutdown."""
    import uvicorn

    class RelayServer(uvicorn.Server):
        async def shutdown(self, sockets: t.Any = None) -> None:
            # uvicorn waits for open responses to finish before the lifespan
            # shutdown; streams never finish, so end them first.
            await relay.drain()
            await super().shutdown(sockets)

    settings: dict[str, t.Any] = {
        "loop": "auto",
        "http": "auto",
        "lifespan": "on",
        "access_log": False,
        "log_level": "info",
        "timeout_graceful_shutdown": 5,
        "proxy_headers": False,
        "server_header": False,
        "backlog": 4096,
    }
    settings.update(options)
    return RelayServer(uvicorn.Config(relay, host=host, port=port, **settings))
