"""The "live updates are off" warning comes from the processes that serve the
tracker's pages, once each, and from none of the processes that only build
the same app to run a command: the relay, the outbox's dispatcher, the
scheduler, a ``flask`` command. Every process is real, started as
docs/deploy/Procfile starts it, and stopped by PID."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from karaffe._servers import free_port, stop

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
WARNING = "live updates are off"
#: Upper bound for the six processes to have built the app (seconds, all of
#: them together): each takes a few seconds of CPU, which a loaded machine
#: may give them only slowly.
STARTUP = 240.0

pytestmark = pytest.mark.redis


@pytest.fixture
def env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """A production environment with a Redis broker and no EVENTS_RELAY_URL:
    the wiring the warning is about."""
    paths = [str(ROOT / "src"), str(ROOT / "examples" / "tracker"), os.environ.get("PYTHONPATH")]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(p for p in paths if p),
        "KARAFFE_SECRET_KEY": "wiring-test-secret-key-0123456789abcdef",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'tracker.sqlite'}",
        "REDIS_URL": redis_url,
        "KARAFFE_JOBS_POLL_SECONDS": "0.2",
    }
    for key in ("FLASK_APP", "FLASK_DEBUG", "KARAFFE_EVENTS_RELAY_URL", "EVENTS_RELAY_URL"):
        env.pop(key, None)
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "tracker", "tracker", "create-schema"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert WARNING not in done.stdout + done.stderr  # a flask command
    return env


class Process:
    """One process of the topology, its output in a file."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path) -> None:
        self.name = name
        self.log = workdir / f"{name}.log"
        with self.log.open("wb") as out:
            # A process group of its own: granian's worker goes with it.
            self.proc = subprocess.Popen(
                argv, env=env, cwd=workdir, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip

    def stop(self) -> None:
        """SIGTERM (SIGKILL if it lingers), then SIGKILL whatever is left of
        its group (a worker of a server killed before it could stop it)."""
        stop(self.proc)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)

    def output(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[list[Process]]:
    started: list[Process] = []
    yield started
    for each in started:
        each.stop()


def wait_until_serving(url: str, process: Process, deadline: float) -> None:
    """Until ``url`` answers (the server's worker has built the app), at the
    latest until ``deadline`` (``time.monotonic()``)."""
    while time.monotonic() < deadline:
        assert process.proc.poll() is None, process.output()
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise AssertionError(f"{process.name} did not answer {url}: {process.output()[-2000:]}")


def wait_for_line(process: Process, text: str, deadline: float) -> None:
    while text not in process.output():
        assert process.proc.poll() is None, process.output()
        assert time.monotonic() < deadline, f"{process.name}: {process.output()[-2000:]}"
        time.sleep(0.1)


@pytest.mark.timeout(STARTUP + 300)
def test_only_a_misconfigured_process_serving_pages_warns_that_live_updates_are_off(
    env: dict[str, str], processes: list[Process], tmp_path: Path
) -> None:
    flask, granian = str(BIN / "flask"), str(BIN / "granian")
    ports = {name: free_port() for name in ("web", "wired", "relay", "dev")}

    def start(name: str, argv: list[str], **extra: str) -> Process:
        process = Process(name, argv, {**env, **extra}, tmp_path)
        processes.append(process)
        return process

    def web(port: int) -> list[str]:
        return [granian, "--interface", "wsgi", "--workers", "1", "--host", "127.0.0.1",
                "--port", str(port), "--no-access-log", "tracker.wsgi:app"]  # fmt: skip

    ready_by = time.monotonic() + STARTUP
    misconfigured = start("web", web(ports["web"]))
    wired = start("wired", web(ports["wired"]), KARAFFE_EVENTS_RELAY_URL="/events/stream")
    relay = start("relay", [flask, "--app", "tracker", "karaffe", "relay", "--host",
                            "127.0.0.1", "--port", str(ports["relay"])])  # fmt: skip
    dispatcher = start("dispatcher", [flask, "--app", "tracker", "karaffe", "dispatch"])
    scheduler = start("scheduler", [flask, "--app", "tracker", "karaffe", "scheduler"])
    dev = start("dev", [flask, "--app", "tracker", "run", "--no-reload", "--port",
                        str(ports["dev"])])  # fmt: skip

    wait_until_serving(f"http://127.0.0.1:{ports['web']}/welcome", misconfigured, ready_by)
    wait_until_serving(f"http://127.0.0.1:{ports['wired']}/welcome", wired, ready_by)
    wait_until_serving(f"http://127.0.0.1:{ports['relay']}/healthz", relay, ready_by)
    wait_until_serving(f"http://127.0.0.1:{ports['dev']}/welcome", dev, ready_by)
    wait_for_line(dispatcher, "dispatching the events outbox", ready_by)
    # The scheduler has built the app and its jobs once it logs its start.
    wait_for_line(scheduler, "karaffe.jobs", ready_by)
    for each in processes:
        each.stop()
    counts = {each.name: each.output().count(WARNING) for each in processes}

    assert counts == {
        "web": 1,
        "wired": 0,
        "relay": 0,
        "dispatcher": 0,
        "scheduler": 0,
        "dev": 1,
    }, {each.name: each.output()[-1500:] for each in processes}
    assert "EVENTS_RELAY_URL" in misconfigured.output()
