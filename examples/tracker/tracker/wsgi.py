"""The production entry point: the app configured from the environment.

    KARAFFE_SECRET_KEY=... DATABASE_URL=postgresql://... \\
        granian --interface wsgi --workers 4 --host 0.0.0.0 --port 8000 tracker.wsgi:app

(``gunicorn -w 4 tracker.wsgi:app`` is the conservative alternative.) The
schema comes from ``flask --app tracker db upgrade`` or, for a first try,
``flask --app tracker tracker create-schema``.
"""

from __future__ import annotations

from . import create_app

app = create_app()
