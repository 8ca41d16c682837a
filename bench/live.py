"""``python -m bench.live``: what one live change costs a viewer of the tracker.

A live page that hears an event fetches the fragment it shows (a list row,
the issue page's parts, a comment, another entry of its activity) instead
of reloading the page; presence is one small POST every ten seconds. This
times those requests in-process
(Flask's test client, no server, no socket) against the pages they spare,
on SQLite with the tracker's seed data (10,000 issues by default), logged
in with a session cookie, and prints a Markdown table: median and p99 in
milliseconds, the size of the answer, and SQL queries per request.

The numbers are for comparing changes on one machine, not absolute truths.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import typing as t
from pathlib import Path

import sqlalchemy as sa


def parse_args(argv: t.Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.live", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--issues", type=int, default=10_000, help="issues to seed (10000)")
    parser.add_argument("--requests", type=int, default=500, help="requests per URL (500)")
    return parser.parse_args(argv)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main(argv: t.Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from tracker import create_app, seed
    from tracker.models import Activity, Comment, Issue, Project

    from karaffe.db import db
    from karaffe.tenancy import unscoped

    with tempfile.TemporaryDirectory() as tmp:
        app = create_app(
            {
                "SECRET_KEY": "bench-live-secret-key-of-32-characters!",
                "DATABASE_URL": f"sqlite:///{Path(tmp) / 'live.sqlite'}",
                "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
                "WTF_CSRF_ENABLED": False,
            }
        )
        with app.app_context():
            db.create_all()
            seed.seed(orgs=1, issues=args.issues, users_per_org=4)
            with unscoped("bench: what to fetch"):
                project = db.session.execute(sa.select(Project).limit(1)).scalar_one()
                issue_id = db.session.execute(
                    sa.select(sa.func.max(Issue.id)).where(
                        Issue.project_id == project.id, Issue.status == "open"
                    )
                ).scalar_one()
                comment_id = db.session.execute(sa.select(sa.func.max(Comment.id))).scalar_one()
                comment = db.session.get(Comment, comment_id)
                assert comment is not None
                comment_issue = comment.issue_id
                slug = "acme-robotics"
                project_id = project.id
        client = app.test_client()
        client.post("/login", data={"email": seed.DEMO_LOGIN, "password": seed.DEMO_PASSWORD})
        base = f"/o/{slug}"
        # A change of the timeline other than a comment: closed and reopened.
        for status in ("closed", "open"):
            client.post(f"{base}/issues/{issue_id}/status", data={"status": status})
        with app.app_context(), unscoped("bench: the entry to fetch"):
            entry_id = db.session.execute(
                sa.select(sa.func.max(Activity.id)).where(Activity.issue_id == issue_id)
            ).scalar_one()
        cases: list[tuple[str, str, str, dict[str, t.Any]]] = [
            ("the issue list page (50 rows)", "GET", f"{base}/projects/{project_id}", {}),
            ("a row of it", "GET", f"{base}/projects/{project_id}/row?id={issue_id}", {}),
            ("the issue page", "GET", f"{base}/issues/{issue_id}", {}),
            ("its head, description and facts", "GET", f"{base}/issues/{issue_id}/parts", {}),
            ("a comment", "GET", f"{base}/issues/{comment_issue}/comment?id={comment_id}", {}),
            (
                "an entry of its activity",
                "GET",
                f"{base}/issues/{issue_id}/entry?id={entry_id}",
                {},
            ),
            (
                "a presence heartbeat",
                "POST",
                f"{base}/issues/{issue_id}/presence",
                {"data": {"tab": "bench"}},
            ),
        ]
        print(f"{args.issues:,} issues, SQLite, {args.requests} requests each, in-process\n")
        queries = 0

        def count(*_: t.Any) -> None:
            nonlocal queries
            queries += 1

        with app.app_context():
            sa.event.listen(db.engine, "before_cursor_execute", count)
        print("| request | p50 ms | p99 ms | bytes | SQL queries |")
        print("|---|---:|---:|---:|---:|")
        for name, method, url, kwargs in cases:
            times: list[float] = []
            size = 0
            queries = 0
            for _ in range(args.requests):
                started = time.perf_counter()
                rv = client.open(url, method=method, **kwargs)
                times.append((time.perf_counter() - started) * 1000)
                if rv.status_code != 200:
                    raise SystemExit(f"{method} {url} answered {rv.status_code}")
                size = len(rv.get_data())
            print(
                f"| {name} | {statistics.median(times):.2f} | {percentile(times, 0.99):.2f} "
                f"| {size:,} | {queries / args.requests:g} |"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
