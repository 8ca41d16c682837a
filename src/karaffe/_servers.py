"""Real Redis and PostgreSQL servers for tests, started on a free port and
always stopped. Used by the ``redis_url`` and ``postgres_url`` fixtures.

``REDIS_URL`` / ``DATABASE_URL`` in the environment win: then nothing is started.
When no server binary is installed the test is skipped with the reason, which
``.ci/run`` prevents by installing Debian's packages.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = ["free_port", "postgres", "redis", "stop"]


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


def start_postgres(workdir: Path) -> tuple[subprocess.Popen[bytes], str, Path]:
    """Start a private PostgreSQL cluster; returns the process, the URL of its
    ``karaffe_test`` database, and the folder to remove once it is stopped."""
    initdb, postgres_bin = _pg_bin("initdb"), _pg_bin("postgres")
    if initdb is None or postgres_bin is None:
        _skip("PostgreSQL is not installed (apt-get install postgresql)")
    assert initdb is not None and postgres_bin is not None
    uid, gid = _postgres_ids()
    if uid is not None:
        # The postgres user cannot enter root's private temp folders (pytest's
        # are mode 0700): give it a folder of its own.
        workdir = Path(tempfile.mkdtemp(prefix="karaffe-pg-"))
        os.chown(workdir, uid, gid or -1)
    data = workdir / "data"
    subprocess.run(
        [initdb, "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync", "-E", "UTF8"],
        check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, user=uid, group=gid,
    )  # fmt: skip
    port = free_port()
    log = workdir / "postgres.log"
    log.touch()
    if uid is not None:
        os.chown(log, uid, gid or -1)
    proc = subprocess.Popen(
        [postgres_bin, "-D", str(data), "-p", str(port), "-h", "127.0.0.1", "-k", str(workdir),
         "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
         "-c", "max_connections=200"],
        stdout=log.open("ab"), stderr=subprocess.STDOUT, user=uid, group=gid,
    )  # fmt: skip
    _wait_for_port(port, proc, 30, log)
    createdb = _pg_bin("createdb") or "createdb"
    deadline = time.monotonic() + 30
    while True:
        done = subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "karaffe_test"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
        )  # fmt: skip
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    if done.returncode != 0:
        stop(proc)
        raise RuntimeError(f"createdb failed: {done.stderr.decode()}")
    return proc, f"postgresql+psycopg://postgres@127.0.0.1:{port}/karaffe_test", workdir


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
