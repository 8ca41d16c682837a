"""Failed-login throttling: counters per account and per address.

A fixed window per key: the first failure opens it, ``window`` seconds
later it closes and the count starts over. Success on an account clears that
account's counter (not the address's: one right guess must not reset a
credential-stuffing run from the same address).

The counters live in a :class:`ThrottleStore`; :class:`MemoryThrottleStore`
is per process. With several workers, plug a shared store (Redis...) that
implements the three methods.
"""

from __future__ import annotations

import math
import threading
import time
import typing as t
from collections.abc import Callable

from .api.errors import TooManyRequests

__all__ = [
    "LoginThrottle",
    "LoginThrottled",
    "MemoryThrottleStore",
    "RedisThrottleStore",
    "ThrottleStore",
]


class LoginThrottled(TooManyRequests):
    """Too many failed logins; ``retry_after`` is in seconds (also sent as
    the ``Retry-After`` header)."""

    slug = "too-many-failed-logins"
    title = "Too many failed logins"

    def __init__(self, retry_after: int) -> None:
        self.retry_after = retry_after
        super().__init__(
            f"Too many failed logins. Try again in {retry_after} seconds.",
            headers={"Retry-After": str(retry_after)},
        )


class ThrottleStore(t.Protocol):
    """Where counters live. Keys are opaque strings."""

    def increment(self, key: str, window: int) -> tuple[int, float]:
        """Count one more for ``key``; returns the count and the seconds
        left until its window closes (a new window opens if none is open)."""

    def peek(self, key: str) -> tuple[int, float]:
        """The count and seconds left for ``key``; ``(0, 0)`` if none."""

    def reset(self, key: str) -> None:
        """Forget ``key``."""


class MemoryThrottleStore:
    """Counters in this process's memory, thread-safe, expired lazily.

    :param clock: a monotonic clock in seconds (tests pass their own).
    :param max_keys: beyond this many keys, expired ones are swept.
    """

    def __init__(
        self, clock: Callable[[], float] = time.monotonic, max_keys: int = 100_000
    ) -> None:
        self.clock = clock
        self.max_keys = max_keys
        self._counts: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def increment(self, key: str, window: int) -> tuple[int, float]:
        now = self.clock()
        with self._lock:
            count, closes = self._counts.get(key, (0, 0.0))
            if closes <= now:
                count, closes = 0, now + window
            count += 1
            self._counts[key] = (count, closes)
            if len(self._counts) > self.max_keys:
                self._sweep(now)
            return count, closes - now

    def peek(self, key: str) -> tuple[int, float]:
        now = self.clock()
        with self._lock:
            count, closes = self._counts.get(key, (0, 0.0))
        if closes <= now:
            return 0, 0.0
        return count, closes - now

    def reset(self, key: str) -> None:
        with self._lock:
            self._counts.pop(key, None)

    def _sweep(self, now: float) -> None:
        for key in [k for k, (_, closes) in self._counts.items() if closes <= now]:
            del self._counts[key]


class LoginThrottle:
    """Refuses logins once an account or an address has failed too often.

    :param store: the counters.
    :param max_per_account: failures for one email within ``window``.
    :param max_per_address: failures from one client address within ``window``.
    :param window: seconds failures are counted for.
    """

    #: The exception raised when a login is refused.
    exception_class: type[LoginThrottled] = LoginThrottled

    def __init__(
        self,
        store: ThrottleStore | None = None,
        *,
        max_per_account: int = 5,
        max_per_address: int = 20,
        window: int = 900,
    ) -> None:
        self.store: ThrottleStore = store if store is not None else MemoryThrottleStore()
        self.max_per_account = max_per_account
        self.max_per_address = max_per_address
        self.window = window

    def keys(self, account: str, address: str) -> list[tuple[str, int]]:
        """The counters a login touches, with their limits."""
        return [
            (f"login:account:{account}", self.max_per_account),
            (f"login:address:{address}", self.max_per_address),
        ]

    def check(self, account: str, address: str) -> None:
        """Raise :class:`LoginThrottled` if either counter is at its limit."""
        waits = [
            left
            for key, limit in self.keys(account, address)
            for count, left in [self.store.peek(key)]
            if count >= limit
        ]
        if waits:
            raise self.exception_class(max(1, math.ceil(max(waits))))

    def failure(self, account: str, address: str) -> None:
        """Count a failed login against both the account and the address."""
        for key, _ in self.keys(account, address):
            self.store.increment(key, self.window)

    def success(self, account: str, address: str) -> None:
        """A successful login clears the account's counter."""
        self.store.reset(self.keys(account, address)[0][0])


_INCREMENT = """
local count = redis.call('INCR', KEYS[1])
if count == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[1]) end
local left = redis.call('PTTL', KEYS[1])
if left < 0 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
  left = tonumber(ARGV[1])
end
return {count, left}
"""


class RedisThrottleStore:
    """Counters in Redis, shared by every worker and machine. Each key is a
    counter expiring with its window, incremented atomically (one Lua call).

    :param client: a ``redis.Redis`` client.
    :param prefix: put before every key.
    """

    def __init__(self, client: t.Any, prefix: str = "karaffe:throttle:") -> None:
        self.client = client
        self.prefix = prefix
        self._increment = client.register_script(_INCREMENT)

    @classmethod
    def from_url(cls, url: str, **kwargs: t.Any) -> RedisThrottleStore:
        """A store on the Redis server at ``url``."""
        import redis

        return cls(redis.Redis.from_url(url), **kwargs)

    def increment(self, key: str, window: int) -> tuple[int, float]:
        count, left_ms = self._increment(keys=[self.prefix + key], args=[window * 1000])
        return int(count), int(left_ms) / 1000

    def peek(self, key: str) -> tuple[int, float]:
        pipe = self.client.pipeline(transaction=False)
        pipe.get(self.prefix + key)
        pipe.pttl(self.prefix + key)
        raw, left_ms = pipe.execute()
        if raw is None or left_ms is None or int(left_ms) <= 0:
            return 0, 0.0
        return int(raw), int(left_ms) / 1000

    def reset(self, key: str) -> None:
        self.client.delete(self.prefix + key)
