"""`make prod`: the tracker's production topology on one machine, in one command.

    python deploy/prod.py                    # http://127.0.0.1:8000/
    PORT=9000 python deploy/prod.py

It starts, in order and each once the previous one answers:

1. a private PostgreSQL and Redis (``karaffe._servers``; their data lives in a
   temporary folder and goes when this stops),
2. the schema (``flask --app tracker db upgrade``) and demo data
   (``TRACKER_DEMO_ISSUES``, 3,000 by default; 0 for none),
3. the processes of ``docs/deploy/Procfile``: granian (one worker per core),
   one relay per core (each on its own port; ``RELAYS`` to change), the
   scheduler, and nginx rendered from ``docs/deploy/nginx.conf`` on
   127.0.0.1:$PORT.

Ctrl-C or SIGTERM stops every one of them, by PID, in reverse order. The
variables the Procfile and the proxy configuration read are written to
``RUN_DIR/env`` (printed at start) for running one command by hand.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from string import Template

from karaffe._servers import free_port, start_postgres, start_redis, stop

ROOT = Path(__file__).resolve().parent.parent
#: The configuration a real deployment uses too (docs/deploy.md shows it).
CONF = ROOT / "docs" / "deploy"
BIN = Path(sys.executable).parent


class Stopping(Exception):
    """SIGTERM or SIGINT arrived."""


def _on_signal(signum: int, frame: object) -> None:
    raise Stopping(signal.Signals(signum).name)


def _die_with_parent() -> None:
    """In a child, before exec (Linux): SIGTERM when this supervisor dies, even
    by SIGKILL, so no process outlives it."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def say(message: str) -> None:
    print(f"prod | {message}", flush=True)


def procfile(path: Path) -> list[tuple[str, str]]:
    """The ``name: command`` lines of a Procfile, in order (comments skipped)."""
    entries = []
    for line in path.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_-]+):\s*(.+)$", line)
        if match:
            entries.append((match.group(1), match.group(2)))
    return entries


def expand(command: str, env: dict[str, str]) -> list[str]:
    return shlex.split(Template(command).substitute(env))


def nginx_conf(listen: str, apps: Sequence[str], relays: Sequence[str], run_dir: Path) -> str:
    """``docs/deploy/nginx.conf`` rendered: listening on ``listen``, sending
    ``/events/stream`` to the ``relays`` and the rest to the ``apps``
    (``host:port`` each, one upstream server line per process), its pid file,
    logs and temporary files in ``run_dir``."""

    def servers(addresses: Sequence[str]) -> str:
        return "\n".join(f"        server {address};" for address in addresses)

    return Template((CONF / "nginx.conf").read_text()).safe_substitute(
        LISTEN=listen, APPS=servers(apps), RELAYS=servers(relays), RUN_DIR=str(run_dir)
    )


def wait_port(port: int, proc: subprocess.Popen[bytes], name: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited with {proc.returncode} before listening on {port}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not listen on {port} within {timeout:.0f}s")


def need(binary: str, package: str) -> None:
    if not shutil.which(binary) and not list(Path("/usr/lib/postgresql").glob(f"*/bin/{binary}")):
        raise SystemExit(f"prod: {binary} is not installed (apt-get install {package})")


def main() -> int:
    for binary, package in [("nginx", "nginx"), ("redis-server", "redis-server"),
                            ("initdb", "postgresql")]:  # fmt: skip
        need(binary, package)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    cores = os.cpu_count() or 1
    port = int(os.environ.get("PORT", "8000"))
    relays = int(os.environ.get("RELAYS", cores))
    run_dir = Path(tempfile.mkdtemp(prefix="karaffe-prod-"))
    run_dir.chmod(0o755)  # nginx's workers run as nobody when started by root
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    pg_folder: Path | None = None
    try:
        redis_proc, redis_url = start_redis(run_dir)
        children.append(("redis", redis_proc))
        pg_proc, database_url, pg_folder = start_postgres(run_dir)
        children.append(("postgres", pg_proc))
        say(f"redis {redis_url}, postgres {database_url}")
        env = dict(os.environ)
        env.update(
            PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            KARAFFE_SECRET_KEY=env.get("KARAFFE_SECRET_KEY") or secrets.token_urlsafe(32),
            DATABASE_URL=database_url,
            REDIS_URL=redis_url,
            # The proxy sends /events/stream to the relays: same origin, no CORS.
            KARAFFE_EVENTS_RELAY_URL="/events/stream",
            WEB_CONCURRENCY=str(int(env.get("WEB_CONCURRENCY", cores))),
            APP_PORT=str(free_port()),
            RUN_DIR=str(run_dir),
            # No mail server on this machine: mail (password resets, email
            # verification, digests) goes to the processes' output unless
            # TRACKER_MAIL_BACKEND=smtp and the MAIL_* settings name one.
            TRACKER_MAIL_BACKEND=env.get("TRACKER_MAIL_BACKEND") or "console",
        )
        env.pop("FLASK_DEBUG", None)
        # Read here; the app would refuse it as an unknown TRACKER_ setting.
        issues = int(env.pop("TRACKER_DEMO_ISSUES", "3000"))
        relay_ports = [free_port() for _ in range(relays)]
        (run_dir / "nginx.conf").write_text(
            nginx_conf(
                f"127.0.0.1:{port}",
                [f"127.0.0.1:{env['APP_PORT']}"],
                [f"127.0.0.1:{p}" for p in relay_ports],
                run_dir,
            )
        )
        keys = ["KARAFFE_SECRET_KEY", "DATABASE_URL", "REDIS_URL", "KARAFFE_EVENTS_RELAY_URL",
                "WEB_CONCURRENCY", "APP_PORT", "RUN_DIR", "TRACKER_MAIL_BACKEND"]  # fmt: skip
        (run_dir / "env").write_text("".join(f"{k}={shlex.quote(env[k])}\n" for k in keys))
        (run_dir / "env").chmod(0o600)
        say(f"settings in {run_dir / 'env'}")

        subprocess.run([str(BIN / "flask"), "--app", "tracker", "db", "upgrade"],
                       env=env, cwd=ROOT, check=True)  # fmt: skip
        if issues:
            seed = ["--app", "tracker", "tracker", "seed", "--issues", str(issues)]
            subprocess.run([str(BIN / "flask"), *seed], env=env, cwd=ROOT, check=True,
                           stdout=subprocess.DEVNULL)  # fmt: skip
            say(f"demo data: {issues} issues; log in as alice@example.com / tracker-demo")

        for name, command in procfile(CONF / "Procfile"):
            instances = [{"RELAY_PORT": str(p)} for p in relay_ports] if name == "relay" else [{}]
            for i, extra in enumerate(instances):
                label = f"{name}.{i + 1}" if name == "relay" else name
                proc_env = {**env, **extra}
                # Own process group: Ctrl-C reaches this supervisor only, which
                # then stops the children in order.
                proc = subprocess.Popen(
                    expand(command, proc_env), env=proc_env, cwd=ROOT, start_new_session=True,
                    preexec_fn=_die_with_parent,
                )  # fmt: skip
                children.append((label, proc))
                listen = {"web": env["APP_PORT"], "relay": extra.get("RELAY_PORT"),
                          "proxy": str(port)}.get(name)  # fmt: skip
                if listen:
                    wait_port(int(listen), proc, label)
                say(f"{label} started (pid {proc.pid})")
        say(f"ready: http://127.0.0.1:{port}/ (API docs: /api/v1/docs); Ctrl-C stops everything")
        while True:
            for label, proc in children:
                if proc.poll() is not None:
                    raise RuntimeError(f"{label} exited with {proc.returncode}")
            time.sleep(0.5)
    except Stopping as signum:
        say(f"{signum}: stopping")
        return 0
    except (RuntimeError, subprocess.CalledProcessError) as exc:
        say(f"failed: {exc}")
        return 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        for label, proc in reversed(children):
            stop(proc, timeout=15)
            say(f"{label} stopped (pid {proc.pid})")
        if pg_folder is not None:
            shutil.rmtree(pg_folder, ignore_errors=True)
        shutil.rmtree(run_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
