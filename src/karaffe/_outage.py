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

    :param settle: seconds a success must come after the last failure to end
        the outage. Concurrent requests straddle its end (one fails on a
        connection of the dead server while the next succeeds on a new one);
        without a settling time their log would flap.
    """

    def __init__(self, logger: logging.Logger, what: str, *, settle: float = 0.0) -> None:
        self.logger = logger
        self.what = what
        self.settle = settle
        self._lock = threading.Lock()
        self._since: float | None = None
        self._last_failure = 0.0
        self._failures = 0
        self._errors: dict[str, int] = {}

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
        (which may be a bug); the others of the outage at DEBUG only."""
        text = describe(exc)
        now = time.monotonic()
        with self._lock:
            first = self._since is None
            if first:
                self._since = now
            self._last_failure = now
            self._failures += 1
            self._errors[text] = self._errors.get(text, 0) + 1
        context = f" ({doing})" if doing else ""
        if not first:
            self.logger.debug("%s still fails%s: %s", self.what, context, text)
            return
        connection = is_connection_error(exc)
        self.logger.error(
            "%s %s%s: %s",
            self.what, "is unavailable" if connection else "fails", context, text,
            exc_info=None if connection else exc,
        )  # fmt: skip

    def succeeded(self) -> None:
        """End the outage, if there is one, logging how long it lasted."""
        if self._since is None:
            return
        now = time.monotonic()
        with self._lock:
            if self._since is None or now - self._last_failure < self.settle:
                return
            seconds = now - self._since
            failures, kinds = self._failures, len(self._errors)
            self._since, self._failures, self._errors = None, 0, {}
        self.logger.warning(
            "%s is available again after %.1fs (%d failure%s meanwhile%s)",
            self.what, seconds, failures, "" if failures == 1 else "s",
            f", {kinds} kinds of error" if kinds > 1 else "",
        )  # fmt: skip
