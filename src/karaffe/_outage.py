"""Outages, told apart from bugs and logged once.

A database or Redis that is down makes every request or poll fail the same
way until it is back. Logging each failure with its traceback buries the
log (and whatever else is in it); logging nothing hides the outage. An
:class:`OutageLog` logs one line when an outage starts, one when it ends
(with how long it lasted and how many failures it cost), and nothing in
between, unless the error changes.
"""

from __future__ import annotations

import logging
import threading
import time

__all__ = ["OutageLog", "describe", "is_connection_error"]


def describe(exc: BaseException) -> str:
    """``exc`` on one line: its class and the first line of its message."""
    lines = str(exc).strip().splitlines()
    # SQLAlchemy appends "(Background on this error at: https://sqlalche.me/...)".
    first = next((line.strip() for line in lines if line.strip()), "")
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says a server (a database, Redis) cannot be used right
    now, rather than that the code or the data is wrong: a refused or lost
    connection, a timeout, a server shutting down or still starting."""
    from .db import is_unavailable

    if is_unavailable(exc):
        return True
    try:
        import redis.exceptions as redis_errors
    except ImportError:  # pragma: no cover - redis is an optional dependency
        pass
    else:
        if isinstance(exc, redis_errors.ConnectionError | redis_errors.TimeoutError):
            return True
    return isinstance(exc, ConnectionError | TimeoutError)


class OutageLog:
    """Logs the start and the end of an outage of ``what``, once each.

    Call :meth:`failed` with each error and :meth:`succeeded` after each
    success; both are cheap when nothing changes, and thread-safe.
    """

    def __init__(self, logger: logging.Logger, what: str) -> None:
        self.logger = logger
        self.what = what
        self._lock = threading.Lock()
        self._since: float | None = None
        self._failures = 0
        self._last = ""

    @property
    def down(self) -> bool:
        """Whether an outage is going on (a failure, no success since)."""
        return self._since is not None

    @property
    def failures(self) -> int:
        """Failures counted in the current outage."""
        return self._failures

    def failed(self, exc: BaseException, *, doing: str = "") -> None:
        """Count a failure. The first of an outage is logged at ERROR: one
        line for a connection error, with the traceback for anything else
        (which may be a bug); later ones only when the error changes."""
        text = describe(exc)
        with self._lock:
            first = self._since is None
            if first:
                self._since = time.monotonic()
            self._failures += 1
            changed = text != self._last
            self._last = text
        if not (first or changed):
            return
        connection = is_connection_error(exc)
        if not first:
            verb = "still fails, now with"
        else:
            verb = "is unavailable" if connection else "fails"
        context = f" ({doing})" if doing else ""
        self.logger.error(
            "%s %s%s: %s", self.what, verb, context, text, exc_info=None if connection else exc
        )

    def succeeded(self) -> None:
        """End the outage, if there is one, logging how long it lasted."""
        if self._since is None:
            return
        with self._lock:
            if self._since is None:
                return
            seconds = time.monotonic() - self._since
            failures = self._failures
            self._since, self._failures, self._last = None, 0, ""
        self.logger.warning(
            "%s is available again after %.1fs (%d failure%s meanwhile)",
            self.what, seconds, failures, "" if failures == 1 else "s",
        )  # fmt: skip
