"""``python -m bench.tracker_pages``: the tracker's list paths in-process.

The tracker on SQLite (a file in a temporary folder), loaded with the seed
data (10,000 issues by default: 3 organizations, 9 projects, labels and
comments). Each page is called through the app's WSGI callable with a
prepared environ, no server and no socket, as a logged-in user:

- ``api``: ``GET /api/v1/projects/<id>/issues?status=open&limit=50`` with a
  bearer token (JSON, 50 issues, a ``Link`` header);
- ``html``: ``GET /o/<org>/projects/<id>?status=open``, the HTML issue list
  (50 issues), with the session cookie;
- ``issue``: ``GET /o/<org>/issues/<id>``, an issue's page with its comments.

For each page: the SQL statements one request runs (counted with a
SQLAlchemy event listener, after a first request that records the
credential's use), and milliseconds per request, the best of five batches,
in CPU time of the process (the app and SQLite) and in wall-clock time. On
a machine shared with other work, compare the CPU figures.
``--profile api`` prints where the time of one page goes (cProfile).

Targets (issue 14): the API page in at most 3 statements and 1.5 ms; the HTML
list page in 4 ms. The table is printed and written to
``bench/results/tracker-pages.md``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import shutil
import tempfile
import time
import typing as t
from pathlib import Path

import sqlalchemy as sa
from werkzeug.test import EnvironBuilder

from karaffe.auth import User, create_api_token, session_values_for
from karaffe.db import db
from karaffe.sessions import CookieSessionInterface
from karaffe.tenancy import Organization, unscoped

from .inprocess import WsgiCall, wsgi_call

RESULTS = Path(__file__).resolve().parent / "results"
SECRET = "bench-tracker-secret-key-of-32-chars"

#: page -> (most statements, most milliseconds); None: no target.
TARGETS: dict[str, tuple[int | None, float | None]] = {
    "api": (3, 1.5),
    "html": (None, 4.0),
    "issue": (None, None),
}


def parse_args(argv: t.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracker_pages", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--issues", type=int, default=10_000, help="issues to load (10000)")
    parser.add_argument("--seconds", type=float, default=1.0, help="time per page (1)")
    parser.add_argument("--only", default="api,html,issue", help="pages: api,html,issue")
    parser.add_argument("--profile", choices=sorted(TARGETS), help="profile one page instead")
    parser.add_argument(
        "--output", type=Path, default=RESULTS / "tracker-pages.md", help="(%(default)s)"
    )
    return parser.parse_args(argv)


def _caller(wsgi: t.Any, path: str, headers: dict[str, str]) -> WsgiCall:
    builder = EnvironBuilder(path=path, headers=headers, base_url="http://127.0.0.1:8000")
    try:
        return wsgi_call(wsgi, builder.get_environ())
    finally:
        builder.close()


def prepare(url: str, issues: int) -> tuple[t.Any, dict[str, WsgiCall]]:
    """Build and load the app; return it and a call per page."""
    from tracker import create_app, seed
    from tracker.models import Issue, Project

    app = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": url})
    with app.app_context():
        db.create_all()
        seed.seed(orgs=3, issues=issues)
        with unscoped("benchmark set-up"):
            user = db.session.execute(
                sa.select(User).where(User.email == seed.DEMO_LOGIN)
            ).scalar_one()
            org = db.session.execute(
                sa.select(Organization).order_by(Organization.id).limit(1)
            ).scalar_one()
            project = db.session.execute(
                sa.select(Project).where(Project.organization_id == org.id).limit(1)
            ).scalar_one()
            # The issue of the project with the most comments.
            issue_id = db.session.execute(
                sa.text(
                    "SELECT issue_id FROM comment WHERE organization_id = :org"
                    " GROUP BY issue_id ORDER BY count(*) DESC, issue_id LIMIT 1"
                ),
                {"org": org.id},
            ).scalar_one()
            assert db.session.get(Issue, issue_id) is not None
            _, token = create_api_token(user, "benchmark")
            db.session.commit()
            serializer = CookieSessionInterface().get_signing_serializer(app)
            assert serializer is not None
            cookie = str(serializer.dumps(session_values_for(user)))
            slug, project_id = org.slug, project.id
    bearer = {"Authorization": f"Bearer {token}"}
    browser = {"Cookie": f"session={cookie}"}
    calls = {
        "api": _caller(app, f"/api/v1/projects/{project_id}/issues?status=open&limit=50", bearer),
        "html": _caller(app, f"/o/{slug}/projects/{project_id}?status=open", browser),
        "issue": _caller(app, f"/o/{slug}/issues/{issue_id}", browser),
    }
    return app, calls


def statements(app: t.Any, call: WsgiCall) -> tuple[int, list[str]]:
    """The SQL statements one call runs."""
    seen: list[str] = []

    def executed(conn: t.Any, cursor: t.Any, statement: str, *args: t.Any) -> None:
        seen.append(statement)

    with app.app_context():
        engine = db.engine
    sa.event.listen(engine, "before_cursor_execute", executed)
    try:
        status, body = call()
    finally:
        sa.event.remove(engine, "before_cursor_execute", executed)
    if not status.startswith("200"):
        raise SystemExit(f"page answered {status}: {body[:300]!r}")
    return len(seen), seen


def time_call(call: WsgiCall, seconds: float) -> tuple[float, float]:
    """Microseconds per call, wall-clock and CPU (this process's: the app
    and SQLite), each the best of five batches. On a machine shared with
    other work the CPU time moves far less than the wall-clock time."""
    n, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds / 6 or n < 3:
        call()
        n += 1
    wall = cpu = float("inf")
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        for _ in range(n):
            call()
        wall = min(wall, (time.perf_counter() - start) / n)
        cpu = min(cpu, (time.process_time() - start_cpu) / n)
    return wall * 1e6, cpu * 1e6


def _verdict(page: str, queries: int, us: float) -> str:
    """Against the targets, on CPU time (what the page costs, not how busy
    the machine was)."""
    most_queries, most_ms = TARGETS[page]
    parts = []
    if most_queries is not None:
        met = queries <= most_queries
        parts.append(f"<= {most_queries} queries: {'met' if met else 'NOT met'}")
    if most_ms is not None:
        parts.append(f"<= {most_ms:g} ms: {'met' if us / 1000 <= most_ms else 'NOT met'}")
    return "; ".join(parts)


def main(argv: t.Sequence[str] | None = None) -> int:
    import sys

    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="tracker-pages-"))
    try:
        app, calls = prepare(f"sqlite:///{workdir}/tracker.sqlite", args.issues)
        for call in calls.values():
            call()  # records the credential's use: not part of every request
        if args.profile:
            call = calls[args.profile]
            for _ in range(50):
                call()
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(500):
                call()
            profiler.disable()
            pstats.Stats(profiler).sort_stats("cumulative").print_stats(50)
            pstats.Stats(profiler).sort_stats("tottime").print_stats(30)
            return 0
        rows = []
        for page in [p for p in args.only.split(",") if p]:
            count, _ = statements(app, calls[page])
            wall, cpu = time_call(calls[page], args.seconds)
            rows.append((page, count, wall, cpu))
            print(f"{page}: {count} queries, {cpu / 1000:.2f} ms CPU", flush=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    load = os.getloadavg()[0]
    lines = [
        f"tracker pages in-process on SQLite, {args.issues:,} issues; best of five batches;"
        f" load average (1 min) at the end: {load:.1f}",
        "",
        "| page | queries | CPU ms per request | wall ms per request | target (on CPU ms) |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {p} | {q} | {cpu / 1000:.2f} | {wall / 1000:.2f} | {_verdict(p, q, cpu)} |"
            for p, q, wall, cpu in rows
        ),
    ]
    text = "\n".join(lines) + "\n"
    print()
    print(text)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text)
    print(f"(written to {args.output})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
