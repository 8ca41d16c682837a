"""The bench apps: the same API written idiomatically in karaffe and each peer.

:data:`APPS` lists them; ``target`` is what a server is given
(``module:attribute``), ``interface`` decides which servers run it.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["APPS", "BenchApp", "by_name"]


@dataclass(frozen=True)
class BenchApp:
    """One implementation of the bench API."""

    #: Short name, used by ``--only`` and in the table.
    name: str
    #: ``module:attribute`` of the WSGI or ASGI callable.
    target: str
    #: ``"wsgi"`` or ``"asgi"``.
    interface: str
    #: The status this app answers an invalid body with.
    invalid_status: int = 422


APPS: tuple[BenchApp, ...] = (
    BenchApp("karaffe", "bench.apps.karaffe_app:app", "wsgi"),
    BenchApp("flask-pydantic", "bench.apps.flask_pydantic:app", "wsgi"),
    BenchApp("apiflask", "bench.apps.apiflask_app:app", "wsgi"),
    BenchApp("flask-smorest", "bench.apps.smorest_app:app", "wsgi"),
    BenchApp("fastapi-sync", "bench.apps.fastapi_app:sync_app", "asgi"),
    BenchApp("fastapi-async", "bench.apps.fastapi_app:async_app", "asgi"),
)


def by_name(names: str | None) -> tuple[BenchApp, ...]:
    """The apps named in a comma-separated list (all of them for ``None``)."""
    if not names:
        return APPS
    wanted = [n.strip() for n in names.split(",") if n.strip()]
    known = {app.name: app for app in APPS}
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ValueError(f"unknown app(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return tuple(app for app in APPS if app.name in wanted)
