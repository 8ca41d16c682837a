"""The relay's counters, exposed at ``/metrics`` in Prometheus' text format."""

from __future__ import annotations

__all__ = ["Metrics"]


class Metrics:
    """Counters of one relay process. Every part that does something counted
    is handed this object (the hub, each connection, the ASGI app)."""

    def __init__(self) -> None:
        self.connections = 0
        self.connections_total = 0
        self.events_in = 0
        self.deliveries = 0
        self.drops = 0
        #: ``reset`` frames sent, counted when each is written.
        self.resets = 0
        self.refused: dict[str, int] = {}
        self.redis_reconnects = 0

    def count_reset(self, channel: str) -> None:
        """Count one ``reset`` frame (a :class:`~karaffe.events.session.StreamSession` hook)."""
        self.resets += 1

    def render(self, channels: int) -> bytes:
        lines = [
            "# TYPE karaffe_relay_connections gauge",
            f"karaffe_relay_connections {self.connections}",
            "# TYPE karaffe_relay_connections_total counter",
            f"karaffe_relay_connections_total {self.connections_total}",
            "# TYPE karaffe_relay_channels gauge",
            f"karaffe_relay_channels {channels}",
            "# TYPE karaffe_relay_events_in_total counter",
            f"karaffe_relay_events_in_total {self.events_in}",
            "# TYPE karaffe_relay_deliveries_total counter",
            f"karaffe_relay_deliveries_total {self.deliveries}",
            "# TYPE karaffe_relay_slow_client_drops_total counter",
            f"karaffe_relay_slow_client_drops_total {self.drops}",
            "# TYPE karaffe_relay_resets_total counter",
            f"karaffe_relay_resets_total {self.resets}",
            "# TYPE karaffe_relay_redis_reconnects_total counter",
            f"karaffe_relay_redis_reconnects_total {self.redis_reconnects}",
            "# TYPE karaffe_relay_refused_total counter",
        ]
        lines.extend(
            f'karaffe_relay_refused_total{{code="{code}"}} {n}'
            for code, n in sorted(self.refused.items())
        )
        return ("\n".join(lines) + "\n").encode()
