"""Development runner (slides 24-26): the tracker on SQLite with no services,
with the debugger and the reloader.

    python examples/tracker/devapp.py            # what `make demo` runs
    flask --app examples/tracker/devapp.py run --debug
    flask --app examples/tracker/devapp.py karaffe jobs    # any command, on the demo's data

Whichever way it starts, it first brings the schema up to date (the
migrations), so no command meets an empty database. Served (``make demo``,
``flask ... run``), it also loads demo data on the first run (a few
organizations, users, projects and a few thousand issues) with a progress bar;
later runs reuse the data. Mail (password resets, email verification) is
queued by the requests and printed to the terminal by a thread that runs the
delivery job. ``DATABASE_URL`` points it elsewhere (PostgreSQL too),
``PORT`` changes the port (5000, Flask's default).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import click
import sqlalchemy as sa
from flask_migrate import stamp, upgrade
from tracker import create_app, seed
from tracker.jobs import deliver_mail

from karaffe.db import db
from karaffe.jobs import MemoryBackend, Scheduler, get_job

HERE = Path(__file__).resolve().parent
#: Demo issues to load on the first run. Read (and removed) before the app is
#: built, which would refuse it as an unknown ``TRACKER_`` setting.
DEMO_ISSUES = int(os.environ.pop("TRACKER_DEMO_ISSUES", "3000"))

app = create_app(
    {
        "DEBUG": True,
        "SECRET_KEY": os.environ.get("KARAFFE_SECRET_KEY", "tracker-development-key"),
        "DATABASE_URL": os.environ.get(
            "DATABASE_URL", f"sqlite:///{HERE / 'instance' / 'tracker-demo.sqlite'}"
        ),
        # Mail (password resets, email verification) is printed to the terminal.
        "MAIL_BACKEND": os.environ.get("TRACKER_MAIL_BACKEND", "console"),
    }
)


def prepare(load: bool = True) -> None:
    """Create the schema and (with ``load``) the demo data unless it is there already."""
    (HERE / "instance").mkdir(exist_ok=True)
    with app.app_context():
        tables = set(sa.inspect(db.engine).get_table_names())
        if "issue" in tables and "alembic_version" not in tables:
            stamp()  # made by `flask tracker seed` (create_all): already current
        else:
            upgrade()  # the migrations in examples/tracker/migrations
        if not load:
            return
        if seed.has_data():
            click.echo(" * tracker demo: reusing the data already in the database")
            return
        issues = DEMO_ISSUES
        with click.progressbar(length=issues, label=" * loading demo data", show_pos=True) as bar:
            seed.seed(orgs=3, issues=issues, progress=bar.update)


_delivery_lock = threading.Lock()
_delivery: list[Scheduler] = []


@app.before_request
def deliver_mail_in_the_background() -> None:
    """The demo runs no `flask karaffe scheduler`: the process that serves
    (the reloader's child) runs the job that sends queued mail
    (``tracker.jobs.deliver_mail``, every 5 seconds) in a thread of its own,
    started with the first request. The mail is printed to the terminal."""
    if _delivery:
        return
    with _delivery_lock:
        if _delivery:
            return
        job = get_job(deliver_mail)
        assert job is not None
        scheduler = Scheduler(app, jobs=[job], backend=MemoryBackend())
        _delivery.append(scheduler)
    threading.Thread(target=scheduler.run_forever, name="mail-delivery", daemon=True).start()


def _serving() -> bool:
    """Whether ``flask ... run`` is loading this module (it loads the app
    inside its own command; other commands load it while looking themselves up)."""
    ctx = click.get_current_context(silent=True)
    return ctx is not None and ctx.info_name == "run"


if __name__ != "__main__" and os.environ.get("WERKZEUG_RUN_MAIN") != "true":
    # Loaded by `flask --app examples/tracker/devapp.py ...`: the schema first
    # (the reloader's child finds it made by its parent).
    prepare(load=_serving())

if __name__ == "__main__":
    port = int(os.environ.get("PORT", "5000"))
    # The reloader runs this file again in a child process: prepare once.
    if os.environ.get("WERKZEUG_RUN_MAIN") != "true":
        prepare()
        click.echo(f" * tracker demo: http://127.0.0.1:{port}/")
        click.echo(f" * log in as {seed.DEMO_LOGIN} / password {seed.DEMO_PASSWORD}")
        click.echo(f" * API docs: http://127.0.0.1:{port}/api/v1/docs")
    app.run(host="127.0.0.1", port=port, debug=True, use_reloader=True)
