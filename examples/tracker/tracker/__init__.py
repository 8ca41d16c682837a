"""tracker: karaffe's reference application, laid out the way the talk recommends."""

from __future__ import annotations

import typing as t
from collections.abc import Mapping

import karaffe


def create_app(config: Mapping[str, t.Any] | None = None) -> karaffe.App:
    """Build the tracker app (slide 21): settings, then blueprints, then parts."""
    app = karaffe.App(__name__)
    app.configure(config)
    app.register_blueprints("tracker.blueprints")
    karaffe.ApiDocs(title="tracker API", version="1.0").init_app(app)
    return app
