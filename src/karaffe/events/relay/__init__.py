"""The relay: a pure ASGI application that streams events to browsers (SSE).

Run it with ``karaffe relay`` (uvicorn, uvloop, httptools) or any ASGI server.
It is built to hold tens of thousands of connections on one process:

- **One Redis subscription per channel per process**, shared by all its
  connections (:class:`Hub`); a connection may follow many channels.
- **Encode once per channel**: an event's SSE bytes are built once; a
  connection that follows one channel gets the very same bytes object, one
  that follows several adds only its own ``id:`` line.
- **No task per delivery**: the hub writes to every connection while it
  handles the Redis message. Under uvicorn it writes the shared HTTP chunk
  straight to the socket's transport; under any other server it calls the
  ASGI ``send`` and drives it from the event loop's callbacks without a
  task, later events piling up in the connection's buffer and going out as
  one coalesced write. A connection with more than ``EVENTS_MAX_BUFFER``
  bytes unsent is cut off: it resumes later, it never slows the others.
- **Exact resume**: subscribe first, then replay each channel's history
  after the client's cursor (``XRANGE``), then go live, dropping what the
  replay already sent (:class:`~karaffe.events.session.StreamSession`).
  After a Redis outage the hub re-subscribes and reads what it missed from
  the streams, so nothing published meanwhile is lost; when the streams
  cannot prove that, the clients get ``reset``: never a silent gap.
- **Redis Cluster**: with ``cluster=True``, sharded pub/sub on shard
  channels in each channel's slot.

Endpoints: ``/events/stream`` (``GET``), ``/healthz``, ``/metrics``.

The parts, each its own module:

- :mod:`.config`: :class:`RelayConfig`, what the relay needs of the app;
- :mod:`.metrics`: :class:`Metrics`, the Prometheus counters;
- :mod:`.connection`: :class:`Connection`, one client and how bytes reach it;
- :mod:`.hub`: :class:`Hub`, the shared subscriptions, the fan-out, and
  continuity after Redis was away (catch up from the streams, or ``reset``);
- :mod:`.health`: :class:`RedisHealth`, a PING every second, so that a hung
  Redis is noticed (``/healthz`` 503) and ridden out;
- :mod:`.app`: :class:`Relay`, the ASGI application;
- :mod:`.server`: :func:`serve` / :func:`make_server`, uvicorn.

Admission (token, channels, cursor, revocation) is
:mod:`karaffe.events.admission`, shared with the app's own stream.
"""

from __future__ import annotations

from .app import Relay
from .config import RelayConfig
from .connection import Connection
from .health import RedisHealth
from .hub import ChannelFeed, Hub
from .metrics import Metrics
from .server import make_server, serve

__all__ = [
    "ChannelFeed",
    "Connection",
    "Hub",
    "Metrics",
    "RedisHealth",
    "Relay",
    "RelayConfig",
    "make_server",
    "serve",
]
