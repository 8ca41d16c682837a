"""Scale-out, watched: the production topology of docs/deploy/ with its
processes doubled, on real servers that the test starts and stops by PID.

A private PostgreSQL, a three-shard Redis Cluster, two tracker processes
(granian, as the Procfile's ``web`` line runs it, each on its own port), two
relays, two schedulers and the outbox's dispatcher (their Procfile lines),
and nginx from docs/deploy/nginx.conf rendered as ``make prod`` renders it
(both apps and both relays upstream) in front, on one port. It proves that:

- an event committed through app A reaches a stream that nginx gave to relay B;
- relay B killed (SIGKILL), the stream reconnects through nginx with its
  ``Last-Event-ID``, lands on relay A, and gets every event committed
  meanwhile through app A and app B exactly once, in order: the event ids
  the client saw over both connections are exactly the channel's history in
  the cluster;
- two schedulers on the cluster run each tick of an every-second job once.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import typing as t
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import orjson
import pytest

from deploy.prod import CONF, expand, nginx_conf, procfile
from karaffe._servers import free_port, fresh_database, stop
from karaffe.events import RedisBroker, TokenSigner
from karaffe.events.protocol import SSEMessage, SSEParser, encode_cursor
from karaffe.jobs import RedisBackend

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
SECRET = "scale-out-test-secret-key-0123456789abcdef"
JOB = "scaleout.every_second"

pytestmark = [pytest.mark.redis, pytest.mark.postgres]


def need(binary: str) -> None:
    if not shutil.which(binary):
        # As the real-server fixtures: skipped on a developer machine, never in CI.
        (pytest.fail if os.environ.get("CI") else pytest.skip)(
            f"{binary} is not installed (make prod and .ci/run install it)"
        )


class Topology:
    """The processes of docs/deploy/Procfile, each started from its line
    with its own variables, its output in a file of ``run_dir``."""

    def __init__(self, run_dir: Path, env: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.env = env
        self.lines = dict(procfile(CONF / "Procfile"))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def start(self, label: str, line: str, **extra: str) -> None:
        env = {**self.env, **extra}
        with (self.run_dir / f"{label}.log").open("wb") as out:
            self.procs[label] = subprocess.Popen(
                expand(self.lines[line], env), env=env, cwd=ROOT, stdout=out,
                stderr=subprocess.STDOUT,
            )  # fmt: skip

    def log(self, label: str) -> str:
        return (self.run_dir / f"{label}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {label}\n{self.log(label)[-1500:]}" for label in self.procs)

    def wait_http(self, label: str, url: str, timeout: float = 90) -> None:
        """Until ``url`` answers 200 (a granian worker has built the app)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.procs[label].poll() is None, f"{label} exited:\n{self.log(label)}"
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url, timeout=5).status_code == 200:
                    return
            time.sleep(0.1)
        raise AssertionError(f"{label} did not answer {url}:\n{self.logs()}")

    def stop_all(self) -> None:
        for proc in reversed(self.procs.values()):
            stop(proc, timeout=15)


class Stream:
    """One event stream read as a browser's EventSource reads it."""

    def __init__(self, client: httpx.Client, url: str, headers: dict[str, str]) -> None:
        self._cm = client.stream("GET", url, headers=headers)
        self.response = self._cm.__enter__()
        assert self.response.status_code == 200, self.response.read()
        self.parser = SSEParser()
        self._chunks = self.response.iter_raw()
        self.pending: list[SSEMessage] = []
        self.ended = False

    def _more(self) -> None:
        try:
            self.pending.extend(self.parser.feed(next(self._chunks)))
        except (StopIteration, httpx.RemoteProtocolError):
            # The upstream relay died: nginx ends the response mid-stream.
            self.ended = True

    def read(self, n: int, timeout: float = 20) -> list[SSEMessage]:
        deadline = time.monotonic() + timeout
        while len(self.pending) < n and not self.ended:
            assert time.monotonic() < deadline, f"expected {n} messages: {self.pending}"
            self._more()
        out, self.pending = self.pending[:n], self.pending[n:]
        assert len(out) == n, f"the stream ended after {out}"
        return out

    def read_to_end(self, timeout: float = 20) -> list[SSEMessage]:
        deadline = time.monotonic() + timeout
        while not self.ended:
            assert time.monotonic() < deadline, "the stream did not end"
            self._more()
        out, self.pending = self.pending, []
        return out

    def close(self) -> None:
        with contextlib.suppress(httpx.HTTPError):
            self._cm.__exit__(None, None, None)


def seed(database_url: str) -> tuple[str, int, int]:
    """The schema, and a user with an organization, a project and an API
    token: returns the token, the user's id and the project's id."""
    from tracker import create_app
    from tracker.models import Project

    from karaffe.auth import User, create_api_token
    from karaffe.db import db
    from karaffe.tenancy import create_organization, unscoped

    app = create_app({"SECRET_KEY": SECRET, "DATABASE_URL": database_url, "REDIS_URL": None})
    with app.app_context(), unscoped("scale-out test: seeding"):
        db.create_all()
        user = User(name="Scaler", email="scaler@example.com")
        user.set_password("scale-out-password")
        db.session.add(user)
        org = create_organization("Scale", "scale", user)
        db.session.flush()
        project = Project(organization_id=org.id, name="Out")
        db.session.add(project)
        db.session.flush()
        token = create_api_token(user, "scale-out")[1]
        ids = user.id, project.id
        db.session.commit()
        for engine in db.engines.values():
            engine.dispose()
    return token, *ids


def relay_connections(port: int) -> int:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    match = re.search(r"^karaffe_relay_connections (\d+)$", text, re.M)
    assert match, text
    return int(match.group(1))


def app_events(messages: list[SSEMessage]) -> list[dict[str, t.Any]]:
    """The application events of ``messages``; a control event (``reset``,
    ``reconnect``...) would mean the relay could not resume exactly."""
    assert [m.event for m in messages] == ["message"] * len(messages), messages
    return [orjson.loads(m.data) for m in messages]


@pytest.fixture
def database_url(postgres_url: str) -> Iterator[str]:
    """A database of the test's own on the session's private PostgreSQL
    (other tests create and drop tables in the shared one)."""
    with fresh_database(postgres_url, "scaleout") as url:
        yield url


@pytest.fixture
def run_dir() -> Iterator[Path]:
    # Not pytest's private temporary folder: nginx's workers run as nobody
    # when the test runs as root, and need to enter it.
    folder = Path(tempfile.mkdtemp(prefix="karaffe-scaleout-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def test_two_apps_two_relays_and_two_schedulers_behind_nginx_on_a_redis_cluster(
    redis_cluster_url: str, database_url: str, run_dir: Path
) -> None:
    for binary in ("nginx", "redis-server", "redis-cli"):
        need(binary)
    began = time.monotonic()
    topology: Topology | None = None
    broker = RedisBroker(redis_cluster_url, cluster=True)
    clients = contextlib.ExitStack()
    try:
        ticks_file = run_dir / "ticks"
        ticks_file.touch()
        ticks_file.chmod(0o666)
        port = free_port()
        web = {"a": free_port(), "b": free_port()}
        relays = {"a": free_port(), "b": free_port()}
        (run_dir / "nginx.conf").write_text(
            nginx_conf(
                f"127.0.0.1:{port}",
                [f"127.0.0.1:{p}" for p in web.values()],
                [f"127.0.0.1:{p}" for p in relays.values()],
                run_dir,
            )
        )
        paths = [str(ROOT / "src"), str(ROOT / "examples" / "tracker"), str(ROOT / "tests"),
                 os.environ.get("PYTHONPATH")]  # fmt: skip
        env = {
            **os.environ,
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
            "PYTHONPATH": os.pathsep.join(p for p in paths if p),
            "KARAFFE_SECRET_KEY": SECRET,
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_cluster_url,
            "KARAFFE_EVENTS_REDIS_CLUSTER": "true",
            "KARAFFE_JOBS_REDIS_CLUSTER": "true",
            "KARAFFE_EVENTS_RELAY_URL": "/events/stream",
            "KARAFFE_JOBS_MODULES": "scaleout_jobs",
            "KARAFFE_JOBS_POLL_SECONDS": "0.2",
            "SCALEOUT_TICKS": str(ticks_file),
            "WEB_CONCURRENCY": "1",
            "RUN_DIR": str(run_dir),
        }
        for key in ("FLASK_APP", "FLASK_DEBUG"):
            env.pop(key, None)
        topology = Topology(run_dir, env)
        for name in ("a", "b"):
            topology.start(f"web-{name}", "web", APP_PORT=str(web[name]))
            topology.start(f"relay-{name}", "relay", RELAY_PORT=str(relays[name]))
        topology.start("scheduler-1", "scheduler")
        topology.start("scheduler-2", "scheduler")
        topology.start("proxy", "proxy")
        # While they start: the schema and a user with a project. The
        # dispatcher polls the outbox table, so it starts once it exists.
        api_token, user_id, project_id = seed(database_url)
        channel = f"project:{project_id}"
        topology.start("dispatcher", "dispatcher")
        for name in ("a", "b"):
            topology.wait_http(f"web-{name}", f"http://127.0.0.1:{web[name]}/welcome")
            topology.wait_http(f"relay-{name}", f"http://127.0.0.1:{relays[name]}/healthz")
        topology.wait_http("proxy", f"http://127.0.0.1:{port}/welcome")

        started = time.monotonic() - began
        apps = {
            name: clients.enter_context(
                httpx.Client(
                    base_url=f"http://127.0.0.1:{p}",
                    headers={"Authorization": f"Bearer {api_token}"},
                    timeout=30,
                )
            )
            for name, p in web.items()
        }

        def write(app: str, title: str) -> int:
            rv = apps[app].post(f"/api/v1/projects/{project_id}/issues", json={"title": title})
            assert rv.status_code == 201, rv.text
            return int(rv.json()["id"])

        # A stream through nginx, from the position a page would render.
        token = TokenSigner(SECRET).sign(user_id, [channel])
        position = encode_cursor(broker.positions([channel]))
        client = clients.enter_context(
            httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
        )
        url = f"/events/stream?token={quote(token)}"
        first = Stream(client, f"{url}&cursor={quote(position)}", {})
        assert first.response.headers["server"] == "nginx"
        deadline = time.monotonic() + 10
        while True:
            held = {name: relay_connections(p) for name, p in relays.items()}
            if sum(held.values()) == 1:
                break
            assert time.monotonic() < deadline, held
            time.sleep(0.05)
        # Whichever relay nginx chose is "B" from here on.
        b = next(n for n, count in held.items() if count == 1)
        a = "b" if b == "a" else "a"

        # 1. Committed through app A, delivered by relay B.
        created = [write("a", "through app A")]
        (event,) = app_events(first.read(1))
        assert (event["channel"], event["type"], event["data"]["id"]) == (
            channel,
            "issue.created",
            created[0],
        )
        seen = [event["id"]]

        # 2. Relay B dies; events are committed through both apps meanwhile.
        killed = time.monotonic()
        topology.procs[f"relay-{b}"].send_signal(signal.SIGKILL)
        topology.procs[f"relay-{b}"].wait()
        assert first.read_to_end() == []
        last_event_id = first.parser.last_event_id
        first.close()
        meanwhile = [write(app, f"while relay B is down {n}") for n, app in enumerate("abbaab")]
        created += meanwhile

        # 3. The client reconnects through nginx with its Last-Event-ID.
        second = Stream(client, url, {"Last-Event-ID": last_event_id})
        replayed = app_events(second.read(len(meanwhile)))
        assert [e["data"]["id"] for e in replayed] == meanwhile
        resumed = time.monotonic() - killed
        assert relay_connections(relays[a]) == 1  # it landed on relay A
        # Nothing twice: the next message is the next event.
        created.append(write("b", "after the reconnect"))
        (after,) = app_events(second.read(1))
        assert after["data"]["id"] == created[-1]
        second.close()
        seen += [e["id"] for e in replayed] + [after["id"]]
        history = [entry[0].decode() for entry in broker.client.xrange(broker.keys.stream(channel))]
        assert seen == history, "every event once, in order, none missing"
        assert len(seen) == len(created) == 8

        # 4. Two schedulers, one cluster: every tick ran, and ran once.
        deadline = time.monotonic() + 30
        while len(ticks_file.read_text().splitlines()) < 3:  # they ran since the start
            assert time.monotonic() < deadline, topology.logs()
            time.sleep(0.1)
        schedulers = [topology.procs[label] for label in ("scheduler-1", "scheduler-2")]
        for proc in schedulers:
            assert proc.poll() is None, topology.logs()
            proc.send_signal(signal.SIGTERM)
        for proc in schedulers:
            proc.wait(30)
        runs = [line.split() for line in ticks_file.read_text().splitlines()]
        ran = Counter(tick for tick, _ in runs)
        by_process = Counter(pid for _, pid in runs)
        jobs = RedisBackend(redis_cluster_url, cluster=True)
        claimed = {
            r.tick.isoformat() for r in jobs.history(JOB, limit=1000) if r.status != "skipped"
        }
        jobs.close()
        print(
            f"\nscale-out: topology up in {started:.1f}s; relay B killed, {len(meanwhile)} "
            f"writes, client resumed on relay A: {resumed:.2f}s"
            f"\nscale-out: {len(ran)} ticks of {JOB} run by two schedulers "
            f"({', '.join(f'{n} by pid {pid}' for pid, n in sorted(by_process.items()))})"
        )
        assert len(ran) >= 3, topology.logs()
        assert max(ran.values()) == 1, [tick for tick, n in ran.items() if n > 1]
        assert set(ran) == claimed
    finally:
        clients.close()
        broker.close()
        if topology is not None:
            topology.stop_all()
