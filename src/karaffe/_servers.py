"""Real Redis and PostgreSQL servers for tests, started on a free port and
always stopped. Used by the ``redis_url`` and ``postgres_url`` fixtures.

``REDIS_URL`` / ``DATABASE_URL`` in the environment win: then nothing is started.
:class:`RedisCluster` starts a Redis Cluster of several shards (one primary
each, no replicas) for the tests and the scale-out test that need one.
When no server binary is installed the test is skipped with the reason, which
``.ci/run`` prevents by installing Debian's packages.
"""

from __future__ import annotations

import contextlib
import glob
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "PostgresServer",
    "RedisCluster",
    "RedisServer",
    "free_port",
    "postgres",
    "redis",
    "start_redis_cluster",
    "stop",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError(
        f"server did not listen on {port} within {timeout}s: {log.read_text()[-2000:]}"
    )


def stop(proc: subprocess.Popen[bytes], timeout: float = 10) -> None:
    """Stop ``proc`` by its PID: SIGTERM, then SIGKILL if it lingers."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _skip(reason: str) -> None:
    """Skip on a developer's machine without the server; fail in CI, where
    ``.ci/run`` installs it, so a skipped test can never hide there."""
    import pytest

    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def start_redis(workdir: Path, port: int | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Start a private ``redis-server``; returns the process and its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        _skip("redis-server is not installed (apt-get install redis-server)")
    assert binary is not None
    port = port or free_port()
    log = workdir / f"redis-{port}.log"
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir), "--logfile", str(log)],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.touch()
    _wait_for_port(port, proc, 10, log)
    return proc, f"redis://127.0.0.1:{port}/0"


@contextlib.contextmanager
def redis(workdir: Path) -> Iterator[str]:
    url = os.environ.get("REDIS_URL")
    if url:
        yield url
        return
    proc, url = start_redis(workdir)
    try:
        yield url
    finally:
        stop(proc)


class RedisServer:
    """A private ``redis-server`` that a test controls: stopped, killed and
    started again on the same port (with no persistence: it restarts empty)."""

    def __init__(self, workdir: Path, *, port: int | None = None) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.proc, self.url = start_redis(self.workdir, port=self.port)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def restart(self, *, save: bool = True, down: float = 0) -> None:
        """Stop it (saving its data first, unless not ``save``), wait
        ``down`` seconds, and start it again with that data."""
        if save and self.proc is not None and self.proc.poll() is None:
            import redis as redis_client

            with redis_client.Redis.from_url(self.url) as client:
                client.save()
        self.stop()
        time.sleep(down)
        self.start()


def cluster_port() -> int:
    """A free port whose cluster bus port (10000 higher) is free too."""
    for _ in range(200):
        port = random.randint(20000, 45000)
        try:
            for candidate in (port, port + 10000):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", candidate))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class RedisCluster:
    """A private Redis Cluster: ``shards`` redis-server processes, one
    primary each and no replica, the 16,384 slots spread over them by
    ``redis-cli --cluster create``. :meth:`stop` stops every node by PID.

    :attr:`url` names the first node; cluster clients find the others from it.
    """

    def __init__(self, workdir: Path, shards: int = 3) -> None:
        self.workdir = workdir
        self.shards = shards
        self.ports: list[int] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self, timeout: float = 20) -> RedisCluster:
        server, cli = shutil.which("redis-server"), shutil.which("redis-cli")
        if server is None or cli is None:
            _skip("redis-server and redis-cli are needed for a cluster (apt-get install redis)")
        assert server is not None and cli is not None
        try:
            for _ in range(self.shards):
                port = cluster_port()
                folder = self.workdir / f"node-{port}"
                folder.mkdir(parents=True, exist_ok=True)
                log = folder / "redis.log"
                log.touch()
                proc = subprocess.Popen(
                    [server, "--port", str(port), "--bind", "127.0.0.1",
                     "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                     "--save", "", "--appendonly", "no", "--dir", str(folder),
                     "--logfile", str(log)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                )  # fmt: skip
                self.procs.append(proc)
                self.ports.append(port)
                _wait_for_port(port, proc, timeout, log)
            subprocess.run(
                [cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                 "--cluster-replicas", "0", "--cluster-yes"],
                check=True, capture_output=True, timeout=timeout,
            )  # fmt: skip
            deadline = time.monotonic() + timeout
            while not self._ready(cli):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the Redis Cluster on {self.ports} did not become ready")
                time.sleep(0.05)
        except BaseException:
            self.stop()
            raise
        return self

    def _ready(self, cli: str) -> bool:
        """Every node answers ``cluster_state:ok`` (each knows all the slots)."""
        for port in self.ports:
            info = subprocess.run(
                [cli, "-p", str(port), "cluster", "info"], capture_output=True, timeout=5
            ).stdout
            if b"cluster_state:ok" not in info:
                return False
        return True

    def stop(self) -> None:
        for proc in self.procs:
            stop(proc)


def start_redis_cluster(workdir: Path, shards: int = 3) -> RedisCluster:
    """Start a private Redis Cluster of ``shards`` primaries (see :class:`RedisCluster`)."""
    return RedisCluster(workdir, shards).start()


def _pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)
    return candidates[0] if candidates else None


def _postgres_ids() -> tuple[int | None, int | None]:
    """initdb refuses to run as root: then run PostgreSQL as the ``postgres`` user."""
    if os.geteuid() != 0:
        return None, None
    import pwd

    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        _skip("running as root and there is no postgres user to run PostgreSQL as")
        raise
    return user.pw_uid, user.pw_gid


class PostgresServer:
    """A private PostgreSQL cluster that a test controls: started on a free
    port (or ``port``), stopped fast, killed, and started again on the same
    port and data, as a fault test needs.

    The server runs in a process group of its own, so :meth:`kill` takes the
    postmaster and every backend down at once, as a crash of the machine
    would. Commits are synchronous unless ``durable=False``: a killed server
    then keeps every commit it acknowledged (``fsync`` stays off, the
    operating system does not crash).
    """

    def __init__(self, workdir: Path, *, port: int | None = None, durable: bool = True) -> None:
        initdb, postgres_bin = _pg_bin("initdb"), _pg_bin("postgres")
        if initdb is None or postgres_bin is None:
            _skip("PostgreSQL is not installed (apt-get install postgresql)")
        assert initdb is not None and postgres_bin is not None
        self.binary = postgres_bin
        self.uid, self.gid = _postgres_ids()
        if self.uid is not None:
            # The postgres user cannot enter root's private temp folders (pytest's
            # are mode 0700): give it a folder of its own.
            workdir = Path(tempfile.mkdtemp(prefix="karaffe-pg-"))
            os.chown(workdir, self.uid, self.gid or -1)
        self.workdir = workdir
        self.data = workdir / "data"
        subprocess.run(
            [initdb, "-D", str(self.data), "-U", "postgres", "-A", "trust", "--no-sync",
             "-E", "UTF8"],
            check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, user=self.uid,
            group=self.gid,
        )  # fmt: skip
        self.port = port or free_port()
        self.log = workdir / "postgres.log"
        self.log.touch()
        if self.uid is not None:
            os.chown(self.log, self.uid, self.gid or -1)
        self.durable = durable
        self.proc: subprocess.Popen[bytes] | None = None
        self._created = False

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``karaffe_test`` database."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/karaffe_test"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self, timeout: float = 30) -> None:
        """Start it (again) on its port and data; returns once it accepts
        connections to its database."""
        options = ["-c", "fsync=off", "-c", "full_page_writes=off", "-c", "max_connections=200"]
        if not self.durable:
            options += ["-c", "synchronous_commit=off"]
        self.proc = subprocess.Popen(
            [self.binary, "-D", str(self.data), "-p", str(self.port), "-h", "127.0.0.1",
             "-k", str(self.workdir), *options],
            stdout=self.log.open("ab"), stderr=subprocess.STDOUT, user=self.uid, group=self.gid,
            start_new_session=True,
        )  # fmt: skip
        _wait_for_port(self.port, self.proc, timeout, self.log)
        if not self._created:
            self._createdb(timeout)
            self._created = True
        self.wait_ready(timeout)

    def _createdb(self, timeout: float) -> None:
        createdb = _pg_bin("createdb") or "createdb"
        deadline = time.monotonic() + timeout
        while True:
            done = subprocess.run(
                [createdb, "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                 "karaffe_test"],
                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            )  # fmt: skip
            if done.returncode == 0 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if done.returncode != 0:
            self.stop()
            raise RuntimeError(f"createdb failed: {done.stderr.decode()}")

    def wait_ready(self, timeout: float = 30) -> None:
        """Wait until a new connection can run a query (after a start, the
        server refuses connections while it recovers)."""
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(
                    f"host=127.0.0.1 port={self.port} user=postgres dbname=karaffe_test",
                    connect_timeout=2,
                ) as conn:
                    conn.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self, mode: str = "fast", timeout: float = 30) -> None:
        """Shut it down as ``pg_ctl stop -m MODE`` does: ``smart`` waits for
        the clients to leave, ``fast`` disconnects them and rolls their
        transactions back, ``immediate`` quits without a checkpoint."""
        signals = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signals[mode])
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """``kill -9`` the postmaster and every backend at once (a crash)."""
        proc = self.proc
        if proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()

    def restart(self, mode: str = "fast") -> None:
        """``pg_ctl restart -m MODE``: stop, then start on the same port and data."""
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Stop it and remove its folder."""
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def start_postgres(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start a private PostgreSQL cluster; returns the process, the URL of its
    ``karaffe_test`` database, and the folder to remove once it is stopped."""
    server = PostgresServer(workdir, durable=False)
    server.start()
    assert server.proc is not None
    return server.proc, server.url, server.workdir


@contextlib.contextmanager
def postgres(workdir: Path) -> Iterator[str]:
    url = os.environ.get("DATABASE_URL", "")
    if url.startswith(("postgres://", "postgresql")):
        from .db import normalize_database_url

        yield normalize_database_url(url)
        return
    proc, url, folder = start_postgres(workdir)
    try:
        yield url
    finally:
        stop(proc)
        shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def fresh_database(server_url: str, prefix: str = "test") -> Iterator[str]:
    """A new, empty database on the PostgreSQL server of ``server_url``,
    dropped (its connections closed) on exit: for a test whose tables must not
    meet the ones other tests create and drop in the shared database."""
    import uuid

    import sqlalchemy as sa

    from .db import normalize_database_url

    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    server = sa.make_url(normalize_database_url(server_url))
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
        try:
            yield server.set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as connection:
                connection.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
    finally:
        admin.dispose()
