"""``python -m bench.tracker``: the tracker's issue list under load.

A private PostgreSQL server is started for the run and loaded with the
tracker's seed data (100,000 issues by default, over 3 organizations and 9
projects). The tracker is served by granian's WSGI interface with 2 worker
processes (the production command of ``tracker/wsgi.py``), and wrk loads,
at 32 connections:

- ``GET /api/v1/projects/<id>/issues?status=open&limit=50`` with a bearer
  token: JSON, keyset-paginated (``Link`` header required on every answer);
- ``GET /o/<org>/projects/<id>?status=open``: the HTML issue list page
  (50 issues), with a session cookie;
- ``GET /api/v1/orgs/<org>/issues?q=export&limit=50``: a full-text search
  of the organization's issues, ranked (``Link`` required).

Every answer is checked (status, and ``Link`` for the API); one wrong answer
fails the run. It prints a Markdown table of requests/s and latency (p50,
p99); the target is p99 < 20 ms for the API page.

Everything shares the machine: the two workers, PostgreSQL and wrk. The
numbers are for comparing changes on one machine, not absolute truths.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from karaffe import _servers
from karaffe.auth import User, create_api_token, session_values_for
from karaffe.db import db
from karaffe.sessions import CookieSessionInterface
from karaffe.tenancy import Organization, unscoped

from .wrk import Load, LoadResult, WrongAnswers, run_wrk

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
TARGET_P99_MS = 20.0


def parse_args(argv: t.Sequence[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.tracker", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--issues", type=int, default=100_000, help="issues to load (100000)")
    parser.add_argument("--workers", type=int, default=2, help="granian workers (2)")
    parser.add_argument("--connections", type=int, default=32, help="wrk connections (32)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per load (10)")
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first (2)")
    return parser.parse_args(argv)


def prepare(url: str, issues: int) -> dict[str, str]:
    """Load the data; return what the loads need (paths, credentials)."""
    from tracker import create_app, seed

    app = create_app({"SECRET_KEY": "bench-tracker-secret-key-of-32-chars", "DATABASE_URL": url})
    with app.app_context():
        db.create_all()
        started = time.perf_counter()
        report = seed.seed(orgs=3, issues=issues)
        print(f"loaded {report.issues} issues in {time.perf_counter() - started:.1f}s", flush=True)
        db.session.execute(sa.text("ANALYZE"))
        db.session.commit()
        with unscoped("benchmark set-up"):
            user = db.session.execute(
                sa.select(User).where(User.email == seed.DEMO_LOGIN)
            ).scalar_one()
            org = db.session.execute(
                sa.select(Organization).order_by(Organization.id).limit(1)
            ).scalar_one()
            from tracker.models import Project

            project = db.session.execute(
                sa.select(Project).where(Project.organization_id == org.id).limit(1)
            ).scalar_one()
            _, token = create_api_token(user, "benchmark")
            db.session.commit()
            serializer = CookieSessionInterface().get_signing_serializer(app)
            assert serializer is not None
            cookie = serializer.dumps(session_values_for(user))
            return {
                "api": f"/api/v1/projects/{project.id}/issues?status=open&limit=50",
                "html": f"/o/{org.slug}/projects/{project.id}?status=open",
                "search": f"/api/v1/orgs/{org.slug}/issues?q=export&limit=50",
                "token": token,
                "cookie": str(cookie),
            }


def serve(url: str, workers: int) -> tuple[subprocess.Popen[bytes], str, Path]:
    port = _servers.free_port()
    log = Path(tempfile.mkstemp(prefix="tracker-bench-", suffix=".log")[1])
    env = {
        **os.environ,
        "DATABASE_URL": url,
        "KARAFFE_SECRET_KEY": "bench-tracker-secret-key-of-32-chars",
    }
    argv = [
        str(BIN / "granian"), "--interface", "wsgi", "--workers", str(workers), "--no-ws",
        "--http", "1", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
        "--no-access-log", "tracker.wsgi:app",
    ]  # fmt: skip
    proc = subprocess.Popen(
        argv, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT, start_new_session=True
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"granian exited: {log.read_text()[-2000:]}")
        try:
            urllib.request.urlopen(base + "/welcome", timeout=1).read()
            return proc, base, log
        except OSError:
            if time.monotonic() > deadline:
                stop(proc)
                raise RuntimeError(f"granian did not start: {log.read_text()[-2000:]}") from None
            time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop granian's process group (started by us, by its PID)."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def load(base: str, what: Load, header: str, *, duration: float, connections: int) -> LoadResult:
    """wrk with the credentials header, on both cores like the server; every
    answer is checked by :func:`bench.wrk.wrk_script`'s Lua, and a socket error
    or a timeout fails the run too."""
    name, _, value = header.partition(": ")
    result = run_wrk(
        base, what, duration=duration, connections=connections, threads=2, cpu=None,
        headers={name: value},
    )  # fmt: skip
    if not result.requests or result.socket_errors or result.timeouts:
        raise WrongAnswers(f"{what.path}: {result}")
    return result


def check(base: str, what: Load, header: str) -> None:
    """One request by hand first: a broken set-up fails here, clearly."""
    name, _, value = header.partition(": ")
    request = urllib.request.Request(base + what.path, headers={name: value})
    with urllib.request.urlopen(request, timeout=30) as response:
        if response.status != what.expected_status:
            raise WrongAnswers(f"{what.path} answered {response.status}")
        response.read()


def main(argv: t.Sequence[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    workdir = Path(tempfile.mkdtemp(prefix="tracker-bench-"))
    pg, url, folder = _servers.start_postgres(workdir)
    server = None
    rows = []
    try:
        info = prepare(url, args.issues)
        server, base, _log = serve(url, args.workers)
        loads = [
            ("API: issues, page of 50, status=open",
             Load("GET", info["api"], 200, require_link=True),
             f"Authorization: Bearer {info['token']}"),
            ("HTML: issue list page (50 issues)", Load("GET", info["html"], 200),
             f"Cookie: session={info['cookie']}"),
            ("API: search 'export' in an org, ranked, page of 50",
             Load("GET", info["search"], 200, require_link=True),
             f"Authorization: Bearer {info['token']}"),
        ]  # fmt: skip
        for label, what, header in loads:
            try:
                check(base, what, header)
            except Exception:
                print(_log.read_text()[-3000:], file=sys.stderr)
                raise
            if args.warmup > 0:
                load(base, what, header, duration=args.warmup, connections=args.connections)
            result = load(base, what, header, duration=args.duration, connections=args.connections)
            rows.append((label, result))
    finally:
        if server is not None:
            stop(server)
        _servers.stop(pg)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(workdir, ignore_errors=True)
    print()
    print(
        f"tracker on PostgreSQL, {args.issues:,} issues; granian WSGI, {args.workers} workers;"
        f" wrk {args.connections} connections, {args.duration:.0f}s per row"
    )
    print()
    print("| load | requests/s | p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    for label, result in rows:
        print(f"| {label} | {result.rps:,.0f} | {result.p50_ms:.1f} | {result.p99_ms:.1f} |")
    api_p99 = rows[0][1].p99_ms
    verdict = "meets" if api_p99 < TARGET_P99_MS else "MISSES"
    print(f"\nAPI p99 {api_p99:.1f} ms {verdict} the target of {TARGET_P99_MS:.0f} ms.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
