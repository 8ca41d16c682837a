"""The HTTP servers the bench apps run on, and running one safely.

Each server runs one worker process pinned to one core (``taskset``), on
127.0.0.1 and a free port, in its own process group; it is stopped by its PID
(SIGTERM to that group, SIGKILL after a grace period) whatever happens,
including Ctrl-C and failures.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import typing as t
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["SERVERS", "RunningServer", "Server", "ServerFailed", "free_port", "serve"]

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


class ServerFailed(RuntimeError):
    """A server did not start, or died."""


@dataclass(frozen=True)
class Server:
    """How to serve an app with one worker: ``command`` is formatted with
    ``{bin}`` (the virtualenv's bin directory), ``{target}`` and ``{port}``."""

    name: str
    interface: str
    command: tuple[str, ...]
    #: Shown in the report: the production command this row measures.
    doc: str = ""

    def argv(self, target: str, port: int) -> list[str]:
        values = {"bin": str(BIN), "target": target, "port": str(port)}
        return [part.format(**values) for part in self.command]


SERVERS: dict[str, Server] = {
    server.name: server
    for server in (
        Server(
            "gunicorn",
            "wsgi",
            (
                "{bin}/gunicorn", "--workers", "1", "--worker-class", "sync",
                "--bind", "127.0.0.1:{port}", "--log-level", "warning", "{target}",
            ),
            doc="gunicorn --workers N --worker-class sync APP",
        ),
        Server(
            "granian",
            "wsgi",
            (
                "{bin}/granian", "--interface", "wsgi", "--workers", "1", "--no-ws", "--http", "1",
                "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
                "--no-access-log", "{target}",
            ),
            doc="granian --interface wsgi --workers N --no-ws APP",
        ),
        Server(
            "uvicorn",
            "asgi",
            (
                "{bin}/uvicorn", "--workers", "1", "--loop", "uvloop", "--http", "httptools",
                "--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning",
                "--no-access-log", "{target}",
            ),
            doc="uvicorn --workers N --loop uvloop --http httptools APP",
        ),
        Server(
            "granian-asgi",
            "asgi",
            (
                "{bin}/granian", "--interface", "asgi", "--workers", "1", "--loop", "uvloop",
                "--no-ws", "--http", "1", "--host", "127.0.0.1", "--port", "{port}",
                "--log-level", "warning", "--no-access-log", "{target}",
            ),
            doc="granian --interface asgi --workers N --loop uvloop APP",
        ),
    )
}  # fmt: skip

#: The servers used when ``--servers`` is not given.
DEFAULT_SERVERS = ("gunicorn", "granian", "uvicorn")


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class RunningServer:
    server: Server
    process: subprocess.Popen[bytes]
    port: int
    log: t.IO[bytes]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        self.log.flush()
        self.log.seek(0)
        return "\n".join(self.log.read().decode(errors="replace").splitlines()[-lines:])

    def cpu_seconds(self) -> float:
        """CPU time (user + system) used so far by the server's processes: the
        measure of its work that other processes on a shared core do not skew."""
        ticks = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rpartition(")")[2].split()
            except OSError:
                continue  # the process ended meanwhile
            if int(fields[2]) == self.process.pid:  # its process group
                ticks += int(fields[11]) + int(fields[12])
        return ticks / os.sysconf("SC_CLK_TCK")

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise ServerFailed(
                f"{self.server.name} exited with {self.process.returncode}:\n{self.log_tail()}"
            )


def _wait_ready(running: RunningServer, probe: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        running.check_alive()
        try:
            with urllib.request.urlopen(running.base_url + probe, timeout=2) as rv:
                if rv.status == 200:
                    return
        except (OSError, urllib.error.URLError):
            pass
        if time.monotonic() > deadline:
            raise ServerFailed(
                f"{running.server.name} did not answer {probe} within {timeout:.0f} s:\n"
                f"{running.log_tail()}"
            )
        time.sleep(0.1)


def _stop(process: subprocess.Popen[bytes], grace: float = 5.0) -> None:
    """SIGTERM the server's process group (its workers too), SIGKILL if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(grace)
    # Workers outlive a master killed hard; the group is gone once they are.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


@contextlib.contextmanager
def serve(
    server: Server, target: str, *, cpu: str = "0", probe: str = "/", timeout: float = 30.0
) -> Iterator[RunningServer]:
    """Run ``target`` on ``server`` pinned to ``cpu``; yield once ``probe`` answers 200."""
    port = free_port()
    argv = ["taskset", "-c", cpu, *server.argv(target, port)]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            argv, cwd=REPO, env=env, stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        running = RunningServer(server, process, port, log)
        try:
            _wait_ready(running, probe, timeout)
            yield running
        finally:
            _stop(process)
