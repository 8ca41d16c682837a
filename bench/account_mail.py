"""``python -m bench.account_mail``: what a "forgot password" request costs,
for an email with an account and one without, by mail backend.

The tracker (SQLite, in process, the Flask test client) answers
``POST /password/forgot`` the same for both emails. The request queues the
reset (tracker.mailqueue) and the job ``tracker.jobs.deliver_mail`` sends the
mail, for a known email only, out of the request: after the timed requests,
the job is run until the queue is empty and the mails it sent are counted.
With Flask-Mailman's ``locmem`` backend a mail costs next to nothing; with
``smtp`` it is a connection and a conversation with a local SMTP server
(aiosmtpd, started for the run on a free 127.0.0.1 port). The difference
between the two rows of one backend is what a stopwatch could tell an
attacker (docs/tracker.md, "Mail out of the request"). Requests alternate
between the two emails; the throttle's limits are raised for the run.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import typing as t
from pathlib import Path

from aiosmtpd.controller import Controller
from tracker import create_app, mailqueue
from tracker.jobs import deliver_mail

from karaffe._servers import free_port
from karaffe.auth import User
from karaffe.db import db
from karaffe.jobs import run_job


class _Sink:
    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: t.Any, session: t.Any, envelope: t.Any) -> str:
        self.received += 1
        return "250 OK"


def _app(folder: Path, backend: str, port: int) -> t.Any:

    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "bench-account-mail",
            "DATABASE_URL": f"sqlite:///{folder}/{backend}.sqlite",
            "WTF_CSRF_ENABLED": False,
            "PASSWORD_HASH_METHOD": "pbkdf2:sha256:1000",
            "MAIL_BACKEND": backend,
            "MAIL_SERVER": "127.0.0.1",
            "MAIL_PORT": port,
            "MAX_RESET_REQUESTS_PER_ACCOUNT": 1_000_000,
            "MAX_RESET_REQUESTS_PER_ADDRESS": 1_000_000,
        }
    )
    with app.app_context():
        db.create_all()
        user = User(name="Ann", email="ann@example.com")
        user.set_password("correct horse battery")
        db.session.add(user)
        db.session.commit()
    return app


def measure(app: t.Any, requests: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Milliseconds per request by email: wall-clock, and CPU of this thread."""
    client = app.test_client()
    times: dict[str, list[float]] = {"known": [], "unknown": []}
    cpu: dict[str, list[float]] = {"known": [], "unknown": []}
    for n in range(requests * 2 + 20):
        kind = "known" if n % 2 == 0 else "unknown"
        email = "ann@example.com" if kind == "known" else "nobody@example.com"
        start, start_cpu = time.perf_counter(), time.thread_time()
        rv = client.post("/password/forgot", data={"email": email})
        elapsed, elapsed_cpu = time.perf_counter() - start, time.thread_time() - start_cpu
        assert rv.status_code == 200, rv.status_code
        if n >= 20:  # warm-up
            times[kind].append(elapsed * 1000)
            cpu[kind].append(elapsed_cpu * 1000)
    return times, cpu


def deliver(app: t.Any) -> int:
    """Run the delivery job until the queue is empty; the mails it sent."""
    sent = 0
    while True:
        sent += int(run_job(deliver_mail, app=app).value)
        with app.app_context():
            if mailqueue.pending() == 0:
                return sent


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="per email and backend")
    args = parser.parse_args(argv)
    port = free_port()
    sink = _Sink()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with tempfile.TemporaryDirectory() as folder:
            print(f"POST /password/forgot, {args.requests} requests per row, in process (ms)")
            print("| backend | email | p50 | p99 | CPU p50 |")
            print("|---|---|---|---|---|")
            sent = []
            for backend in ("locmem", "smtp"):
                app = _app(Path(folder), backend, port)
                times, cpu = measure(app, args.requests)
                sent.append(f"{backend} {deliver(app)}")
                for kind, values in times.items():
                    values.sort()
                    p50 = statistics.median(values)
                    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
                    cpu_p50 = statistics.median(cpu[kind])
                    print(f"| {backend} | {kind} | {p50:.2f} | {p99:.2f} | {cpu_p50:.2f} |")
            print(f"mails sent by the delivery job afterwards: {', '.join(sent)}", end="")
            print(f" (the SMTP server received {sink.received})")
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
