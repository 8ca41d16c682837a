"""Progress of long jobs: a bar on a terminal, log lines everywhere else.

::

    from karaffe.jobs import progress

    for issue in progress(issues, total=count, label="reindexing issues"):
        reindex(issue)

Under a scheduler or in a container the output is not a terminal, and a bar
would fill the logs with carriage returns; there the same loop logs a line
every ``log_every`` percent (or every ``log_every_items`` items when the total
is unknown) and one at the end.
"""

from __future__ import annotations

import logging
import sys
import typing as t
from collections.abc import Iterable, Iterator

import click

__all__ = ["progress"]

log = logging.getLogger("karaffe.jobs.progress")

T = t.TypeVar("T")


def progress(
    iterable: Iterable[T],
    total: int | None = None,
    label: str = "progress",
    *,
    log_every: int = 10,
    log_every_items: int = 1000,
    file: t.TextIO | None = None,
    logger: logging.Logger | None = None,
) -> Iterator[T]:
    """Yield from ``iterable``, reporting progress.

    :param total: the number of items; taken from ``len(iterable)`` when it has one.
    :param label: what is being done, shown on the bar and in log lines.
    :param log_every: percent between log lines when ``total`` is known.
    :param log_every_items: items between log lines when it is not.
    :param file: where a bar would go (standard error); a bar is drawn only
        when it is a terminal.
    :param logger: where log lines go (``karaffe.jobs.progress``).
    """
    if total is None and isinstance(iterable, t.Sized):
        total = len(iterable)
    out = sys.stderr if file is None else file
    if out.isatty():
        with click.progressbar(iterable, length=total, label=label, file=out) as bar:
            yield from bar
        return
    yield from _logged(iterable, total, label, log_every, log_every_items, logger or log)


def _logged(
    iterable: Iterable[T],
    total: int | None,
    label: str,
    log_every: int,
    log_every_items: int,
    logger: logging.Logger,
) -> Iterator[T]:
    done = 0
    next_percent = log_every
    for item in iterable:
        yield item
        done += 1
        if total:
            percent = done * 100 // total
            if percent >= next_percent and done < total:
                logger.info("%s: %d/%d (%d%%)", label, done, total, percent)
                next_percent = (percent // log_every + 1) * log_every
        elif done % log_every_items == 0:
            logger.info("%s: %d done", label, done)
    if total:
        logger.info("%s: %d/%d done", label, done, total)
    else:
        logger.info("%s: %d done", label, done)
