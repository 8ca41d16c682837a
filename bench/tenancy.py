"""``python -m bench.tenancy``: the cost of automatic tenant scoping.

A table of 100,000 rows spread over 100 organizations, on a private
PostgreSQL server started for the run. The same page of 20 rows of one
organization is loaded through the ORM two ways, alternating:

- *scoped*: ``select(Item).order_by(Item.id).limit(20)`` inside
  ``for_organization(org)``: karaffe's ``do_orm_execute`` hook adds the
  organization criteria;
- *by hand*: the same select with ``.where(Item.organization_id == org)``
  written out, inside ``unscoped(...)`` (the hook returns at once).

It prints the median and 99th percentile of each, their ratio (target:
scoped <= 1.1x by hand), and PostgreSQL's plan of the scoped query, which
must use the organization index.
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import sys
import tempfile
import time
import typing as t
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

import karaffe
from karaffe import _servers, auth, tenancy
from karaffe import db as kdb
from karaffe.db import Model, db
from karaffe.tenancy import Organization, OrgOwned, for_organization, unscoped

TARGET = 1.1


class BenchItem(OrgOwned, Model):
    """An org-owned row, with the index a list view of it needs:
    (organization_id, id), so a page of one organization is an index range."""

    __tablename__ = "bench_tenancy_item"
    __table_args__ = (sa.Index("ix_bench_tenancy_item_org_id_id", "organization_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(100))
    body: Mapped[str] = mapped_column(sa.Text)


def parse_args(argv: t.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tenancy", description=__doc__)
    parser.add_argument("--rows", type=int, default=100_000, help="rows in the table (100000)")
    parser.add_argument("--orgs", type=int, default=100, help="organizations (100)")
    parser.add_argument("--page", type=int, default=20, help="rows per query (20)")
    parser.add_argument("--iterations", type=int, default=3000, help="queries per way (3000)")
    parser.add_argument(
        "--database-url", help="use this PostgreSQL database instead of a private server"
    )
    return parser.parse_args(argv)


def build_app(url: str) -> karaffe.App:
    app = karaffe.App("bench_tenancy")
    app.configure(
        {"SECRET_KEY": "bench-tenancy-secret-key-of-32-chars", "DATABASE_URL": url}, environ={}
    )
    kdb.init_app(app)
    auth.init_app(app)
    tenancy.init_app(app)
    return app


def seed(rows: int, orgs: int) -> list[int]:
    with unscoped("benchmark: seed"):
        db.drop_all()
        db.create_all()
        db.session.execute(
            sa.insert(Organization), [{"name": f"Org {n}", "slug": f"org-{n}"} for n in range(orgs)]
        )
        org_ids = list(db.session.scalars(sa.select(Organization.id).order_by(Organization.id)))
        table = t.cast(sa.Table, BenchItem.__table__)
        batch = []
        for n in range(rows):
            batch.append({"organization_id": org_ids[n % orgs], "title": f"item {n}",
                          "body": "lorem ipsum " * 8})  # fmt: skip
            if len(batch) == 10_000:
                db.session.execute(table.insert(), batch)
                batch = []
        if batch:
            db.session.execute(table.insert(), batch)
        db.session.commit()
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        return org_ids


def scoped_query(org_id: int, page: int) -> list[BenchItem]:
    return list(db.session.scalars(sa.select(BenchItem).order_by(BenchItem.id).limit(page)))


def hand_query(org_id: int, page: int) -> list[BenchItem]:
    statement = (
        sa.select(BenchItem)
        .where(BenchItem.organization_id == org_id)
        .order_by(BenchItem.id)
        .limit(page)
    )
    return list(db.session.scalars(statement))


def measure(org_ids: list[int], page: int, iterations: int) -> dict[str, list[float]]:
    """Alternate the two ways, one query each per step, on a random
    organization; returns the durations in microseconds."""
    rng = random.Random(7)
    times: dict[str, list[float]] = {"scoped": [], "by hand": []}
    for step in range(iterations + 200):
        org_id = rng.choice(org_ids)
        for name in ("scoped", "by hand") if step % 2 else ("by hand", "scoped"):
            context = (
                for_organization(org_id) if name == "scoped" else unscoped("benchmark: by hand")
            )
            with context:
                db.session.expunge_all()
                start = time.perf_counter_ns()
                rows = (scoped_query if name == "scoped" else hand_query)(org_id, page)
                elapsed = (time.perf_counter_ns() - start) / 1000
            if len(rows) != page or any(r.organization_id != org_id for r in rows):
                raise SystemExit(f"{name}: wrong rows for organization {org_id}")
            if step >= 200:  # the first 200 warm caches and connections up
                times[name].append(elapsed)
    return times


def explain(org_id: int, page: int) -> list[str]:
    """PostgreSQL's plan of the scoped query, as karaffe sends it."""
    captured: list[tuple[str, t.Any]] = []

    def capture(conn: t.Any, cursor: t.Any, statement: str, params: t.Any, *args: t.Any) -> None:
        captured.append((statement, params))

    sa.event.listen(db.engine, "before_cursor_execute", capture)
    try:
        with for_organization(org_id):
            scoped_query(org_id, page)
    finally:
        sa.event.remove(db.engine, "before_cursor_execute", capture)
    statement, params = captured[-1]
    with unscoped("benchmark: EXPLAIN"), db.engine.connect() as conn:
        driver = conn.connection.dbapi_connection
        assert driver is not None
        cursor = driver.cursor()
        cursor.execute("EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) " + statement, params)
        plan = [row[0] for row in cursor.fetchall()]
        cursor.close()
    return [statement.replace("\n", " "), *plan]


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[98]


def report(times: dict[str, list[float]], plan: list[str], args: argparse.Namespace) -> bool:
    by_hand = statistics.median(times["by hand"])
    print(
        f"\nTenant-scoped select of {args.page} rows from {args.rows:,} rows across "
        f"{args.orgs} organizations (PostgreSQL, {args.iterations} queries each)\n"
    )
    print("| query | median µs | p99 µs | vs by hand |")
    print("|---|---:|---:|---:|")
    for name in ("by hand", "scoped"):
        median = statistics.median(times[name])
        print(f"| {name} | {median:.0f} | {p99(times[name]):.0f} | {median / by_hand:.2f}x |")
    ratio = statistics.median(times["scoped"]) / by_hand
    uses_index = any("ix_bench_tenancy_item_org" in line for line in plan)
    print(f"\nscoped / by hand: {ratio:.3f}x (target <= {TARGET}x): "
          f"{'ok' if ratio <= TARGET else 'MISSED'}")  # fmt: skip
    print(f"plan uses the organization index: {'yes' if uses_index else 'NO'}\n")
    print("EXPLAIN ANALYZE of the scoped query:")
    for line in plan:
        print("    " + line)
    return ratio <= TARGET and uses_index


def main(argv: t.Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="karaffe-bench-tenancy-"))
    proc = None
    folders = [workdir]
    try:
        url = args.database_url
        if url is None:
            proc, url, folder = _servers.start_postgres(workdir)
            folders.append(folder)
        app = build_app(url)
        with app.app_context():
            org_ids = seed(args.rows, args.orgs)
            times = measure(org_ids, args.page, args.iterations)
            plan = explain(org_ids[len(org_ids) // 2], args.page)
            with unscoped("benchmark: clean up"):
                db.session.remove()
                BenchItem.__table__.drop(db.engine)  # type: ignore[attr-defined]
            for engine in db.engines.values():
                engine.dispose()
        ok = report(times, plan, args)
    finally:
        if proc is not None:
            _servers.stop(proc)
        for folder in folders:
            shutil.rmtree(folder, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
