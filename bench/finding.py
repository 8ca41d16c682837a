"""``python -m bench.finding``: finding issues at 100,000 issues, in-process.

The tracker's seed data (100,000 issues by default, 3 organizations, 9
projects) is loaded into SQLite and into a private PostgreSQL server; then
API requests are timed in-process (Flask's test client, a bearer token, no
server, no socket): a project's list in each sort order, a filtered list
(its open/closed counts are a grouped ``COUNT``), a search ranked by
relevance and the same search sorted by date, and the key of an issue. Each
row prints p50/p99 and the SQL statements one request runs.

A second table compares the two ways to count a project's open and closed
issues: the counters the triggers keep (what the pages read) against a
``GROUP BY status`` over the ``(project_id, status, id)`` index.

Numbers are for comparing changes on one machine, not absolute truths.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import sqlalchemy as sa

from karaffe import _servers
from karaffe.auth import User, create_api_token
from karaffe.db import db
from karaffe.tenancy import Organization, unscoped


def parse_args(argv: t.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.finding", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--issues", type=int, default=100_000, help="issues to load (100000)")
    parser.add_argument("--runs", type=int, default=200, help="requests per row (200)")
    parser.add_argument("--only", choices=["sqlite", "postgresql"], help="one database only")
    return parser.parse_args(argv)


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def measure(url: str, issues: int, runs: int) -> tuple[float, list[tuple[str, float, float, int]]]:
    """Seed ``url``; time each request ``runs`` times. Returns the seconds
    the seed took and (row, p50 ms, p99 ms, statements per request)."""
    from tracker import create_app, seed
    from tracker.models import Issue, Project

    app = create_app({"SECRET_KEY": "bench-finding-secret-key-of-32-chars", "DATABASE_URL": url})
    with app.app_context():
        db.create_all()
        started = time.perf_counter()
        seed.seed(orgs=3, issues=issues)
        seeded = time.perf_counter() - started
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
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
            key = db.session.execute(
                sa.select(Issue.key).where(Issue.project_id == project.id).limit(1)
            ).scalar_one()
            _, token = create_api_token(user, "benchmark")
            slug, project_id, user_id = org.slug, project.id, user.id
            db.session.commit()
        engine = db.engine
    p = f"/api/v1/projects/{project_id}/issues?limit=50"
    o = f"/api/v1/orgs/{slug}/issues?limit=50"
    rows = [
        ("project list, open, newest (counts: counters)", p + "&status=open"),
        ("project list, open, recently updated", p + "&status=open&sort=updated"),
        ("project list, open, most comments", p + "&status=open&sort=comments"),
        ("project list, assignee (counts: grouped COUNT)", p + f"&assignee={user_id}"),
        ("org list, assigned to me, open", o + "&assignee=me&status=open"),
        ("search 'export' in the org, by relevance", o + "&q=export"),
        ("search 'csv export' in the org, newest", o + "&q=csv+export&sort=created"),
        ("search 'safari login' in a project", p + "&q=safari+login"),
        (f"issue by key ({key})", f"/api/v1/orgs/{slug}/issues/{key}"),
    ]
    statements: list[str] = []

    def count(*args: t.Any) -> None:
        statements.append(args[2])

    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    results = []
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        for label, path in rows:
            for _ in range(5):
                rv = client.get(path, headers=headers)
                if rv.status_code != 200:
                    raise RuntimeError(f"{path}: {rv.status_code} {rv.get_data(as_text=True)}")
            times = []
            for _ in range(runs):
                statements.clear()
                started = time.perf_counter()
                client.get(path, headers=headers)
                times.append((time.perf_counter() - started) * 1000)
            results.append(
                (label, statistics.median(times), _percentile(times, 0.99), len(statements))
            )
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    with app.app_context(), unscoped("benchmark: two ways to count"):
        counters = sa.select(Project.open_issue_count, Project.closed_issue_count).where(
            Project.id == project_id
        )
        grouped = (
            sa.select(Issue.status, sa.func.count())
            .where(Issue.project_id == project_id)
            .group_by(Issue.status)
        )
        for label, stmt in (
            ("counters on the project row", counters),
            ("GROUP BY status", grouped),
        ):
            times = []
            for _ in range(runs):
                started = time.perf_counter()
                db.session.execute(stmt).all()
                times.append((time.perf_counter() - started) * 1000)
            results.append(
                (f"count a project's open/closed: {label}", statistics.median(times),
                 _percentile(times, 0.99), 1)
            )  # fmt: skip
        db.session.remove()
        for e in db.engines.values():
            e.dispose()
    return seeded, results


def report(name: str, issues: int, runs: int, seeded: float, results: list[t.Any]) -> None:
    print()
    print(f"{name}, {issues:,} issues (seeded in {seeded:.1f} s); {runs} requests a row")
    print()
    print("| request | p50 ms | p99 ms | SQL statements |")
    print("|---|---:|---:|---:|")
    for label, p50, p99, n in results:
        print(f"| {label} | {p50:.2f} | {p99:.2f} | {n} |", flush=True)


def main(argv: t.Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="finding-bench-"))
    try:
        if args.only in (None, "sqlite"):
            url = f"sqlite:///{workdir}/finding.sqlite"
            seeded, results = measure(url, args.issues, args.runs)
            report("SQLite", args.issues, args.runs, seeded, results)
        if args.only in (None, "postgresql"):
            pg, url, folder = _servers.start_postgres(workdir)
            try:
                seeded, results = measure(url, args.issues, args.runs)
                report("PostgreSQL", args.issues, args.runs, seeded, results)
            finally:
                _servers.stop(pg)
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
