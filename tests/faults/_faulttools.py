"""What the fault tests share: the tracker served for real (a werkzeug thread
or granian workers), API writes at a steady rate with what became of each,
scheduler processes, and the figures each case prints."""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import threading
import time
import typing as t
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from karaffe import _servers

ROOT = Path(__file__).resolve().parents[2]
SECRET = "fault-injection-secret-key-0123456789abcdef"


def report(title: str, figures: dict[str, t.Any]) -> None:
    """Print a case's figures (``make chaos`` runs with ``-s``)."""
    width = max(len(name) for name in figures)
    lines = [f"\n== {title}"] + [
        f"   {name.ljust(width)}  {value}" for name, value in figures.items()
    ]
    print("\n".join(lines), flush=True)


def pythonpath() -> str:
    parts = [str(ROOT / "src"), str(ROOT / "examples" / "tracker"), str(Path(__file__).parent)]
    if os.environ.get("PYTHONPATH"):
        parts.append(os.environ["PYTHONPATH"])
    return os.pathsep.join(parts)


# -- the tracker, served ----------------------------------------------------------------


def tracker_config(database_url: str) -> dict[str, t.Any]:
    """Production settings (no TESTING: errors are answered, not raised)."""
    return {"SECRET_KEY": SECRET, "DATABASE_URL": database_url}


def seed_tracker(database_url: str) -> tuple[str, int]:
    """Build the schema and a user, organization, project and API token;
    returns the token and the project's id."""
    from tracker import create_app
    from tracker.models import Project

    from karaffe.auth import User, create_api_token
    from karaffe.db import db
    from karaffe.tenancy import create_organization, unscoped

    app = create_app(tracker_config(database_url))
    with app.app_context(), unscoped("fault test: seeding"):
        db.create_all()
        user = User(name="Writer", email="writer@example.com")
        user.set_password("fault-injection")
        db.session.add(user)
        org = create_organization("Faults", "faults", user)
        db.session.flush()
        project = Project(organization_id=org.id, name="Writes")
        db.session.add(project)
        db.session.flush()
        token = create_api_token(user, "writes")[1]
        project_id = project.id
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()
    return token, project_id


def committed_titles(database_url: str) -> set[str]:
    import sqlalchemy as sa

    from karaffe.db import normalize_database_url

    engine = sa.create_engine(normalize_database_url(database_url))
    try:
        with engine.connect() as conn:
            return set(conn.execute(sa.text("SELECT title FROM issue")).scalars())
    finally:
        engine.dispose()


class CountingHandler(logging.Handler):
    """Collects the messages of a logger (the in-process server's)."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@contextlib.contextmanager
def werkzeug_tracker(database_url: str) -> Iterator[tuple[str, list[str]]]:
    """The tracker in a threaded werkzeug server in this process; yields its
    URL and the messages of ``karaffe.db``."""
    from tracker import create_app

    from karaffe.db import db
    from karaffe.testing import serving

    app = create_app(tracker_config(database_url))
    handler = CountingHandler()
    logger = logging.getLogger("karaffe.db")
    logger.addHandler(handler)
    try:
        with serving(app) as url:
            yield url, handler.messages
    finally:
        logger.removeHandler(handler)
        with app.app_context():
            for engine in db.engines.values():
                engine.dispose()


@contextlib.contextmanager
def granian_tracker(
    database_url: str, workdir: Path, workers: int = 2
) -> Iterator[tuple[str, list[str]]]:
    """The tracker under granian (``workers`` processes), as in production;
    yields its URL and, once it stopped, the lines of its log."""
    binary = Path(sys.executable).parent / "granian"
    if not binary.exists():
        import pytest

        pytest.skip("granian is not installed (pip install granian)")
    port = _servers.free_port()
    log = workdir / "granian.log"
    env = {
        **os.environ,
        "PYTHONPATH": pythonpath(),
        "KARAFFE_SECRET_KEY": SECRET,
        "DATABASE_URL": database_url,
    }
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [str(binary), "--interface", "wsgi", "--workers", str(workers), "--no-ws",
             "--host", "127.0.0.1", "--port", str(port), "tracker.wsgi:app"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=workdir,
        )  # fmt: skip
    lines: list[str] = []
    try:
        _servers._wait_for_port(port, proc, 60, log)  # type: ignore[arg-type]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while httpx.get(f"{url}/welcome").status_code != 200:  # every worker up
            assert time.monotonic() < deadline
            time.sleep(0.2)
        yield url, lines
    finally:
        _servers.stop(proc)  # type: ignore[arg-type]
        lines.extend(log.read_text(errors="replace").splitlines())


# -- writes ------------------------------------------------------------------------------


@dataclass
class Write:
    """One API write and what became of it."""

    n: int
    started: float
    ended: float = 0.0
    status: int | None = None
    retry_after: str | None = None
    error: str | None = None

    @property
    def title(self) -> str:
        return f"fault-{self.n}"


@dataclass
class Outage:
    """When the fault began and when the server accepted queries again."""

    began: float = 0.0
    back: float = 0.0


def write_at_rate(
    url: str, token: str, project_id: int, count: int, rate: float, fault: Callable[[], None],
    fault_after: float, *, first: int = 0,
) -> list[Write]:  # fmt: skip
    """Send ``count`` issue creations at ``rate`` per second (each from its
    own thread: a slow answer delays no other write), calling ``fault`` in a
    thread of its own ``fault_after`` seconds in. Their titles are
    ``fault-<n>``, ``n`` counting from ``first``."""
    writes = [Write(first + i, 0.0) for i in range(count)]
    local = threading.local()
    clients: list[httpx.Client] = []

    def client() -> httpx.Client:
        if not hasattr(local, "client"):
            local.client = httpx.Client(
                base_url=url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=httpx.Timeout(30.0),
            )
            clients.append(local.client)
        return t.cast(httpx.Client, local.client)

    def send(write: Write) -> None:
        write.started = time.monotonic()
        try:
            rv = client().post(f"/api/v1/projects/{project_id}/issues", json={"title": write.title})
            write.status = rv.status_code
            write.retry_after = rv.headers.get("Retry-After")
        except httpx.HTTPError as exc:
            write.error = f"{type(exc).__name__}: {exc}"
        write.ended = time.monotonic()

    faulter = threading.Timer(fault_after, fault)
    start = time.monotonic()
    faulter.start()
    with ThreadPoolExecutor(max_workers=32) as pool:
        for write in writes:
            delay = start + (write.n - first) / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, write)
    faulter.join()
    for each in clients:
        each.close()
    return writes


@dataclass
class WriteFigures:
    writes: list[Write]
    committed: set[str]
    outage: Outage
    figures: dict[str, t.Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        w, committed = self.writes, self.committed
        ok = [x for x in w if x.status == 201]
        failed = [x for x in w if x.status != 201]
        self.committed_5xx = [
            x for x in w if x.title in committed and (x.status is None or x.status >= 500)
        ]
        self.acknowledged_lost = [x for x in ok if x.title not in committed]
        self.not_503 = [x for x in failed if x.status != 503 or not x.retry_after]
        self.after_back = [x for x in failed if x.started >= self.outage.back]
        self.figures = {
            "writes sent": len(w),
            "answered 201": len(ok),
            "answered 503 with Retry-After": sum(
                1 for x in failed if x.status == 503 and x.retry_after
            ),
            "answered otherwise (or not at all)": _tally(self.not_503),
            "outage, fault to back (s)": f"{self.outage.back - self.outage.began:.2f}",
            "writes started during the outage": sum(
                1 for x in w if self.outage.began <= x.started < self.outage.back
            ),
            "committed": len([x for x in w if x.title in committed]),
            "committed but answered 5xx": len(self.committed_5xx),
            "answered 201 but not committed": len(self.acknowledged_lost),
            "errors after PostgreSQL was back": len(self.after_back),
        }


def _tally(writes: list[Write]) -> str:
    counts: dict[str, int] = {}
    for x in writes:
        key = str(x.status) if x.status is not None else (x.error or "?").split(":")[0]
        if x.status == 503:
            key += " without Retry-After"
        counts[key] = counts.get(key, 0) + 1
    return ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "0"


# -- scheduler processes -----------------------------------------------------------------


@dataclass
class SchedulerProcess:
    proc: subprocess.Popen[bytes]
    log: Path
    killed: bool = False

    @property
    def pid(self) -> int:
        return self.proc.pid

    def text(self) -> str:
        return self.log.read_text(errors="replace")


class Schedulers:
    """``flask karaffe scheduler`` processes of the ``faultjobs`` app."""

    def __init__(self, workdir: Path, backend_url: str) -> None:
        self.workdir = workdir
        self.events = workdir / "events.log"
        self.events.touch()
        self.env = {
            **os.environ,
            "PYTHONPATH": pythonpath(),
            "FAULTS_BACKEND": backend_url,
            "FAULTS_EVENTS": str(self.events),
        }
        self.env.pop("FLASK_APP", None)
        self.all: list[SchedulerProcess] = []

    def start(self) -> SchedulerProcess:
        log = self.workdir / f"scheduler-{len(self.all)}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "flask", "--app", "faultjobs:create_app", "karaffe",
                 "scheduler"],
                stdout=out, stderr=subprocess.STDOUT, env=self.env, cwd=self.workdir,
            )  # fmt: skip
        started = SchedulerProcess(proc, log)
        self.all.append(started)
        return started

    def by_pid(self, pid: int) -> SchedulerProcess:
        return next(s for s in self.all if s.pid == pid)

    def event_lines(self) -> list[tuple[str, str, str, int]]:
        rows = []
        for line in self.events.read_text().splitlines():
            event, job, tick, pid = line.split()
            rows.append((event, job, tick, int(pid)))
        return rows

    def wait_for(
        self, event: str, job: str, *, not_ticks: t.Container[str] = (),
        ticks: t.Container[str] | None = None, timeout: float = 60,
    ) -> tuple[str, int]:  # fmt: skip
        """The tick and pid of the first ``event`` of ``job`` whose tick is
        in ``ticks`` (if given) and not in ``not_ticks``."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev, name, tick, pid in self.event_lines():
                if ev != event or name != job or tick in not_ticks:
                    continue
                if ticks is None or tick in ticks:
                    return tick, pid
            time.sleep(0.05)
        raise AssertionError(f"no {event} of {job} within {timeout}s: {self.event_lines()[-10:]}")

    def stop_all(self) -> None:
        for each in self.all:
            if each.proc.poll() is None:
                each.proc.terminate()
        for each in self.all:
            try:
                each.proc.wait(30)
            except subprocess.TimeoutExpired:
                each.proc.kill()
                each.proc.wait()
