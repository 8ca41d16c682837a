"""tracker: karaffe's reference application, laid out the way the talk recommends.

``create_app(config)`` builds it (slide 21): settings first, then karaffe's
parts (database, auth, tenancy, API docs, events when available), then every
blueprint under ``tracker.blueprints`` (slide 22), then the tracker's own
template helpers and error pages.
"""

from __future__ import annotations

import typing as t
from collections.abc import Mapping
from pathlib import Path

import karaffe
import karaffe.jobs
from karaffe import auth, db, tenancy
from karaffe.events import Events

from . import mail, mailqueue, web  # noqa: F401 (mailqueue: its table)
from .settings import TrackerSettings

__all__ = ["MIGRATIONS", "TrackerSettings", "create_app"]

#: Alembic's migrations (``flask --app tracker db upgrade``), next to the package.
MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def create_app(config: Mapping[str, t.Any] | None = None) -> karaffe.App:
    """Build the tracker app (slide 21).

    :param config: settings overriding the environment and the defaults,
        e.g. ``{"DATABASE_URL": "sqlite:///tracker.db", "SECRET_KEY": "..."}``.
    """
    app = karaffe.App(__name__)
    app.configure(
        config,
        defaults={"LOGIN_VIEW": "accounts.login", "DATABASE_MIGRATIONS_DIR": str(MIGRATIONS)},
    )
    TrackerSettings.of(app)
    mail.init_app(app)
    db.init_app(app)
    auth.init_app(app)
    tenancy.init_app(app)
    karaffe.jobs.init_app(app)
    Events(app)
    app.register_blueprints("tracker.blueprints")
    karaffe.ApiDocs(
        title="tracker API",
        version="1.0",
        url_prefix="/api/v1",
        description="Organizations, projects, issues and comments. Authenticate with "
        "`Authorization: Bearer <token>` (create one on the API tokens page), or, in a "
        "browser, with the login session: writes then send its CSRF token in the "
        "`X-CSRFToken` header (this page does).",
    ).init_app(app)
    web.init_app(app)
    from . import cli

    cli.init_app(app)
    return app
