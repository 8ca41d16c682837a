"""The app and jobs that the scheduler processes of the fault tests run.

``create_app()`` reads ``FAULTS_BACKEND`` (the jobs backend) and
``FAULTS_EVENTS`` (a file each run appends ``<event> <job> <tick> <pid>``
lines to, with ``O_APPEND``, so lines of several processes never mix).
"""

from __future__ import annotations

import os
import time

import karaffe
import karaffe.jobs
from karaffe.jobs import current_run, job

#: Seconds a run of ``faults.long`` lasts.
LONG_SECONDS = 2.5
#: Its lease: short, so that a killed or stopped scheduler loses it soon.
LONG_LEASE = 2


def record(event: str) -> None:
    run = current_run()
    assert run.tick is not None
    line = f"{event} {run.job.name} {run.tick.isoformat()} {os.getpid()}\n"
    fd = os.open(os.environ["FAULTS_EVENTS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


@job(schedule="* * * * * */2", name="faults.often", lease=4)
def often() -> None:
    """Every two seconds, over at once: no tick may run twice."""
    record("ran")


@job(schedule="* * * * * */6", name="faults.long", lease=LONG_LEASE)
def long() -> None:
    """Every six seconds, for 2.5 s: the run a test kills or stops."""
    record("start")
    time.sleep(LONG_SECONDS)
    record("end")


def create_app() -> karaffe.App:
    app = karaffe.App(__name__)
    karaffe.jobs.init_app(app)
    app.configure(
        {
            "TESTING": True,
            "SECRET_KEY": "faults",
            "JOBS_BACKEND": os.environ["FAULTS_BACKEND"],
            "JOBS_MODULES": [__name__],
            "JOBS_POLL_SECONDS": 0.2,
        },
        environ={},
    )
    return app
