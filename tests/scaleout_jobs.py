"""The job that the scale-out test's schedulers run (``JOBS_MODULES=scaleout_jobs``).

Every second, each run appends ``<tick> <pid>`` to the file named by
``SCALEOUT_TICKS``, with ``O_APPEND``, so the lines of several processes never mix.
"""

from __future__ import annotations

import os

from karaffe.jobs import current_run, job


@job(schedule="* * * * * *", name="scaleout.every_second")
def every_second() -> None:
    tick = current_run().tick
    assert tick is not None
    line = f"{tick.isoformat()} {os.getpid()}\n"
    fd = os.open(os.environ["SCALEOUT_TICKS"], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)
