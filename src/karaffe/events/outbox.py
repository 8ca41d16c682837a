"""The transactional outbox: an event exists exactly when its data committed.

With the outbox on (``EVENTS_OUTBOX``; ``auto``: with any broker but the
in-process one), :func:`karaffe.events.publish` inside a transaction writes the
event to the ``karaffe_event_outbox`` table in that same transaction, just
before it commits. A rollback (or a rolled-back savepoint) leaves no row; a
commit leaves exactly the rows of its events. A :class:`Dispatcher` then moves
rows to the broker and deletes them:

* **Right after the commit**, in the request: :meth:`Dispatcher.send_committed`
  sends the pending events of the channels the transaction published on,
  waiting at most ``EVENTS_OUTBOX_TIMEOUT`` (0.2 s) for the outbox lock and as
  long again for the broker, which it never retries. When that runs out (the
  broker is down or hung), the request goes on, and the process skips the
  broker for a cooldown (0.5 s, doubling up to 10 s while it keeps failing),
  so that the following requests do not wait at all.
* **Later**, by ``flask karaffe dispatch`` (:meth:`Dispatcher.run`): it sends
  whatever the requests could not, as soon as the broker takes it.

Order and uniqueness. Events go out in the order of their row ids within a
channel, which is the order of publishing within a transaction and the order
of commits for transactions that do not overlap. Every dispatcher, in a
request or in a sweeper, sends a channel's events only while it holds that
channel's dispatch lock, starting from the oldest pending row, and deletes
them in the same critical section once the broker took them:

* PostgreSQL: a transaction-scoped advisory lock per channel. A request
  tries it until its budget runs out; a sweeper takes only the channels
  nobody holds (``pg_try_advisory_xact_lock``), so several sweepers share
  the work.
* SQLite: one writer machine, so one lock for the database, a ``flock`` on
  ``<database>-outbox.lock`` (a thread lock for an in-memory database), taken
  outside SQLite's own transactions, so that a broker that hangs never holds
  the app's writers.

A send that fails may have reached the broker anyway (a reply that timed out
on a Redis that was stopped, not dead, runs when Redis resumes). Its rows are
kept, their ``attempts`` counted, and every event carries its *origin* (the
row's id and creation time) into the broker: events sent again are looked for
by origin first (see :meth:`karaffe.events.Broker.append_many`), so nothing
goes out twice, however the attempts interleave. Only a dispatcher killed
during a send and followed within :attr:`Dispatcher.fresh` seconds could
duplicate its batch.

Nothing is given up on by default. With ``EVENTS_OUTBOX_GIVE_UP``, events
older than that are dropped by the sweeper after it reset their channels
(:meth:`karaffe.events.Broker.reset`): readers get ``reset``, never a silent gap.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
import os
import threading
import time
import typing as t
import weakref
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from flask import Flask

from ..db import UTCDateTime, db
from .brokers import Broker

if t.TYPE_CHECKING:
    from sqlalchemy.orm import Session

__all__ = [
    "TABLE_NAME",
    "Dispatcher",
    "OutboxMissing",
    "OutboxRow",
    "SweepResult",
    "outbox_table",
    "write_outbox",
]

log = logging.getLogger("karaffe.events.outbox")

#: The outbox table's name.
TABLE_NAME = "karaffe_event_outbox"

#: The outbox: one row per committed event not yet taken by the broker. It is
#: declared on ``karaffe.db``'s metadata, so ``db.create_all()`` and Alembic's
#: autogenerate include it; any other database gets it from the migration in
#: ``docs/events.md``.
outbox_table = sa.Table(
    TABLE_NAME,
    db.metadata,
    sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        primary_key=True,
        autoincrement=True,
    ),
    sa.Column("channel", sa.String(200), nullable=False),
    sa.Column("type", sa.String(100), nullable=False),
    sa.Column("data", sa.LargeBinary(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("error", sa.Text()),
    sa.Index(f"ix_{TABLE_NAME}_channel_id", "channel", "id"),
    # Ids never reused, even after the newest rows were deleted.
    sqlite_autoincrement=True,
)

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


class OutboxMissing(RuntimeError):
    """The outbox is on but its table does not exist in the database."""


# -- writing ---------------------------------------------------------------------------

_checked: weakref.WeakKeyDictionary[sa.Engine, bool] = weakref.WeakKeyDictionary()


def write_outbox(
    session: Session, items: Sequence[tuple[str, str, bytes]]
) -> tuple[sa.Engine, list[str]]:
    """Insert ``(channel, type, data_json)`` items into the outbox, in order,
    in ``session``'s current transaction; return the engine written to and
    the channels (for :meth:`Dispatcher.send_committed`)."""
    connection = session.connection(bind_arguments={"clause": _INSERT})
    engine = connection.engine
    if engine not in _checked:
        if not sa.inspect(connection).has_table(TABLE_NAME):
            raise OutboxMissing(
                f"table {TABLE_NAME} does not exist in {engine.url!r}: with EVENTS_OUTBOX on "
                "(the default with Redis), events published in a transaction are written to "
                "it; create it with a migration (docs/events.md, 'The transactional outbox')"
            )
        _checked[engine] = True
    now = dt.datetime.now(dt.UTC)
    connection.execute(
        _INSERT,
        [
            {"channel": channel, "type": type, "data": data, "created_at": now, "attempts": 0}
            for channel, type, data in items
        ],
    )
    return engine, list(dict.fromkeys(channel for channel, _, _ in items))


# -- rows and locks ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One pending event of the outbox."""

    id: int
    channel: str
    type: str
    data: bytes
    created_at: dt.datetime
    attempts: int

    @property
    def origin(self) -> str:
        """Names this event for the broker, unique even across a database
        that was recreated: its row id and creation time (microseconds)."""
        return f"{self.id}.{(self.created_at - _EPOCH) // dt.timedelta(microseconds=1)}"


# The statements of the dispatchers, built once: building a statement costs
# more than running it on a local database.
_c = outbox_table.c
_READ = sa.select(_c.id, _c.channel, _c.type, _c.data, _c.created_at, _c.attempts).order_by(_c.id)
_READ_ALL = _READ.limit(sa.bindparam("limit"))
_READ_CHANNELS = _READ.where(_c.channel.in_(sa.bindparam("channels", expanding=True))).limit(
    sa.bindparam("limit")
)
_DELETE = outbox_table.delete().where(_c.id.in_(sa.bindparam("ids", expanding=True)))
_ATTEMPTED = (
    outbox_table.update()
    .where(_c.id.in_(sa.bindparam("ids", expanding=True)))
    .values(attempts=_c.attempts + 1, error=sa.bindparam("last_error"))
)
_INSERT = outbox_table.insert()


class _Busy(Exception):
    """The dispatch lock was not free in time."""


class _Held:
    """The dispatch lock of some channels (``None``: all of them), and the
    outbox rows it lets a dispatcher read and settle."""

    def __init__(self, connection: sa.Connection, channels: list[str] | None) -> None:
        self.connection = connection
        self.channels = channels

    def _where(self, *criteria: t.Any) -> t.Any:
        if self.channels is not None:
            criteria = (_c.channel.in_(self.channels), *criteria)
        return sa.and_(sa.true(), *criteria)

    @contextlib.contextmanager
    def _step(self) -> Iterator[sa.Connection]:
        """Where one read or write runs: the lock's own transaction."""
        yield self.connection

    def read(self, limit: int) -> list[OutboxRow]:
        """The oldest pending events of the channels held, in id order."""
        with self._step() as connection:
            if self.channels is None:
                rows = connection.execute(_READ_ALL, {"limit": limit})
            else:
                rows = connection.execute(
                    _READ_CHANNELS, {"limit": limit, "channels": self.channels}
                )
            return [
                OutboxRow(id, channel, type, bytes(data), created_at, attempts)
                for id, channel, type, data, created_at, attempts in rows
            ]

    def expired(self, before: dt.datetime) -> list[str]:
        """The channels with events created before ``before``."""
        with self._step() as connection:
            query = (
                sa.select(outbox_table.c.channel)
                .where(self._where(outbox_table.c.created_at < before))
                .distinct()
            )
            return list(connection.execute(query).scalars())

    def drop(self, channels: list[str], before: dt.datetime) -> int:
        with self._step() as connection:
            done = connection.execute(
                outbox_table.delete().where(
                    outbox_table.c.channel.in_(channels), outbox_table.c.created_at < before
                )
            )
            return int(done.rowcount)

    def settle(self, sent: list[int], failed: list[tuple[list[int], str]]) -> None:
        """Delete the rows the broker took; count an attempt on the others."""
        if not sent and not failed:
            return
        with self._step() as connection:
            if sent:
                connection.execute(_DELETE, {"ids": sent})
            for ids, error in failed:
                connection.execute(_ATTEMPTED, {"ids": ids, "last_error": error[:1000]})


class _SqliteHeld(_Held):
    @contextlib.contextmanager
    def _step(self) -> Iterator[sa.Connection]:
        # Short transactions: the lock is a file lock, SQLite's write lock is
        # taken only to settle, never while the broker is being waited for.
        with self.connection.begin():
            yield self.connection

    def settle(self, sent: list[int], failed: list[tuple[list[int], str]]) -> None:
        if not sent and not failed:
            return
        # No fsync for this commit: if a power loss undid it, the rows would
        # be sent again, as possibly sent, found by origin in the broker.
        connection = self.connection
        previous = int(connection.exec_driver_sql("PRAGMA synchronous").scalar() or 2)
        connection.exec_driver_sql("PRAGMA synchronous = NORMAL")
        connection.commit()
        try:
            super().settle(sent, failed)
        finally:
            connection.exec_driver_sql(f"PRAGMA synchronous = {previous}")
            connection.commit()


class _Locks:
    """How dispatchers of one database exclude each other."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine

    def hold(
        self, channels: Sequence[str] | None, wait: float | None, max_channels: int
    ) -> contextlib.AbstractContextManager[_Held | None]:
        """Hold the dispatch lock of ``channels`` (``None``: those with
        pending events that nobody holds, at most ``max_channels``). With
        ``wait`` (seconds), wait that long at most, else raise :class:`_Busy`;
        without, take only what is free (``None`` when nothing is)."""
        raise NotImplementedError


def _advisory_key(channel: str) -> int:
    digest = hashlib.blake2b(f"karaffe.events.outbox:{channel}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


#: Tries the locks of channels (by key), turning ``synchronous_commit`` off.
_TRY_LOCKS = sa.text(
    "SELECT set_config('synchronous_commit', 'off', true), "
    "array(SELECT k FROM unnest(CAST(:keys AS bigint[])) AS k "
    "WHERE pg_try_advisory_xact_lock(k))"
)
#: The channels with pending events, oldest first.
_OLDEST_CHANNELS = (
    sa.select(_c.channel).group_by(_c.channel).order_by(sa.func.min(_c.id)).limit(sa.bindparam("n"))
)


class _PostgresLocks(_Locks):
    """Advisory locks per channel, held by one transaction that reads, sends
    and settles (waiting for the broker in a transaction blocks no writer:
    writers only insert new rows).

    Locks are only ever tried (``pg_try_advisory_xact_lock``); a request that
    finds one taken tries again every 2 ms until its budget runs out. Each
    try also turns off ``synchronous_commit`` for the transaction: if a crash
    undid its commit, the rows would be sent again, as possibly sent, and
    found by origin in the broker. One statement, the first of the
    transaction: nothing is waited for before the lock is held."""

    #: Seconds between two tries of a taken lock.
    retry = 0.002

    @contextlib.contextmanager
    def hold(
        self, channels: Sequence[str] | None, wait: float | None, max_channels: int
    ) -> Iterator[_Held | None]:
        with self.engine.connect() as connection, connection.begin():
            if channels is None:
                wanted = list(connection.execute(_OLDEST_CHANNELS, {"n": max_channels}).scalars())
            else:
                wanted = list(dict.fromkeys(channels))
            held = self._try(connection, wanted)
            if wait is not None:
                deadline = time.monotonic() + wait
                while len(held) < len(wanted):
                    if time.monotonic() >= deadline:
                        raise _Busy()
                    time.sleep(self.retry)
                    held = self._try(connection, wanted)
            yield _Held(connection, held) if held else None

    @staticmethod
    def _try(connection: sa.Connection, channels: list[str]) -> list[str]:
        if not channels:
            return []
        by_key = {_advisory_key(c): c for c in channels}
        got = connection.execute(_TRY_LOCKS, {"keys": list(by_key)}).one()[1]
        return [by_key[k] for k in got]


#: The lock of each in-memory SQLite database (one per engine, in this process).
_memory_locks: weakref.WeakKeyDictionary[sa.Engine, threading.Lock] = weakref.WeakKeyDictionary()
_memory_locks_lock = threading.Lock()


class _SqliteLocks(_Locks):
    """One lock for the database (SQLite has one writer machine): a ``flock``
    next to the database file, or a thread lock for an in-memory database."""

    def __init__(self, engine: sa.Engine) -> None:
        super().__init__(engine)
        database = engine.url.database or ""
        memory = database in ("", ":memory:") or "mode=memory" in database
        self.path = None if memory else os.path.abspath(database) + "-outbox.lock"
        with _memory_locks_lock:
            self._thread_lock = _memory_locks.setdefault(engine, threading.Lock())

    @contextlib.contextmanager
    def hold(
        self, channels: Sequence[str] | None, wait: float | None, max_channels: int
    ) -> Iterator[_Held | None]:
        with self._locked(wait) as locked:
            if not locked:
                if wait is not None:
                    raise _Busy()
                yield None
                return
            with self.engine.connect() as connection:
                yield _SqliteHeld(connection, None if channels is None else list(channels))

    @contextlib.contextmanager
    def _locked(self, wait: float | None) -> Iterator[bool]:
        if self.path is None:
            got = (
                self._thread_lock.acquire(timeout=wait)
                if wait
                else self._thread_lock.acquire(False)
            )
            try:
                yield got
            finally:
                if got:
                    self._thread_lock.release()
            return
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            deadline = time.monotonic() + (wait or 0.0)
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        yield False
                        return
                    time.sleep(0.002)
            yield True
        finally:
            os.close(fd)  # releases the flock


def _locks_for(engine: sa.Engine) -> _Locks:
    name = engine.dialect.name
    if name == "postgresql":
        return _PostgresLocks(engine)
    if name == "sqlite":
        return _SqliteLocks(engine)
    raise OutboxMissing(f"the events outbox supports PostgreSQL and SQLite, not {name}")


# -- dispatching ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SweepResult:
    """What one pass of a dispatcher did: events ``sent``, events ``held``
    (tried, and kept for later: the broker failed), events ``dropped``
    (given up on), whether ``more`` may be pending right away, and the
    broker's ``error`` if it failed."""

    sent: int = 0
    held: int = 0
    dropped: int = 0
    more: bool = False
    error: str | None = None


class Dispatcher:
    """Sends the outbox's events to the broker, in order per channel, each
    once. One per app per process (``EventsState.dispatcher``); thread-safe.

    :param app: the app, for the ``event_published`` signal.
    :param broker: the app's broker; the dispatcher makes its own clients from
        it with :meth:`~karaffe.events.Broker.with_timeout`.
    :param timeout: the budget of a request (``EVENTS_OUTBOX_TIMEOUT``).
    :param sweep_timeout: how long a sweep waits for the broker.
    :param give_up: seconds after which a sweep drops what it could not send
        (resetting the channels), ``None`` for never.
    """

    #: Most events a request sends after its commit (the oldest of its channels).
    request_batch = 100
    #: Most events, and channels, one sweep sends.
    sweep_batch = 500
    sweep_channels = 100
    #: Events created longer ago than this (seconds) are sent as possibly
    #: sent before (a dispatcher may have died mid-send): the broker looks
    #: them up by origin first.
    fresh = 2.0
    #: After a request ran out of time, requests skip the broker this long
    #: (seconds), doubling while it keeps failing, up to ``max_cooldown``.
    cooldown = 0.5
    max_cooldown = 10.0

    def __init__(
        self,
        app: Flask,
        broker: Broker,
        *,
        timeout: float = 0.2,
        sweep_timeout: float = 5.0,
        give_up: float | None = None,
    ) -> None:
        self.app = app
        self.broker = broker
        self.timeout = timeout
        self.sweep_timeout = sweep_timeout
        self.give_up = give_up
        self._lock = threading.Lock()
        self._request_broker: Broker | None = None
        self._sweep_broker: Broker | None = None
        self._locks: weakref.WeakKeyDictionary[sa.Engine, _Locks] = weakref.WeakKeyDictionary()
        self._skip_until = 0.0
        self._next_cooldown = self.cooldown
        # Channels whose events reached the broker but whose rows could not
        # be deleted (the database failed): sent again as possibly sent.
        self._unsettled: dict[str, float] = {}

    # -- brokers and locks

    @property
    def request_broker(self) -> Broker:
        """The broker client of requests: ``timeout``, no retry."""
        if self._request_broker is None:
            with self._lock:
                if self._request_broker is None:
                    self._request_broker = self.broker.with_timeout(self.timeout)
        return self._request_broker

    @property
    def sweep_broker(self) -> Broker:
        """The broker client of sweeps: ``sweep_timeout``, no retry."""
        if self._sweep_broker is None:
            with self._lock:
                if self._sweep_broker is None:
                    self._sweep_broker = self.broker.with_timeout(self.sweep_timeout)
        return self._sweep_broker

    def locks(self, engine: sa.Engine) -> _Locks:
        found = self._locks.get(engine)
        if found is None:
            with self._lock:
                found = self._locks.get(engine)
                if found is None:
                    found = self._locks[engine] = _locks_for(engine)
        return found

    def engine(self) -> sa.Engine:
        """The app's database (the default bind of its Flask-SQLAlchemy);
        needs the app context."""
        ext = self.app.extensions.get("sqlalchemy")
        if ext is None:
            raise RuntimeError("the events outbox needs Flask-SQLAlchemy set up on the app")
        return t.cast(sa.Engine, ext.engine)

    # -- in a request

    def send_committed(self, engine: sa.Engine, channels: Sequence[str]) -> SweepResult:
        """Send the pending events of ``channels`` now that a transaction
        that published on them committed, in at most ``timeout`` for the
        lock and ``timeout`` for the broker. Never raises: what is not sent
        stays in the outbox for the sweeper."""
        if time.monotonic() < self._skip_until:
            return SweepResult(more=True)
        try:
            result = self._pass(
                engine, self.request_broker, channels, wait=self.timeout, limit=self.request_batch
            )
        except _Busy:
            result = SweepResult(more=True, error="the outbox lock stayed busy")
        except Exception as exc:
            result = SweepResult(more=True, error=repr(exc))
        if result.error is None:
            self._next_cooldown = self.cooldown
            return result
        # Requests stop waiting for a broker that failed, for a while.
        cooldown = self._next_cooldown
        self._skip_until = time.monotonic() + cooldown
        self._next_cooldown = min(cooldown * 2, self.max_cooldown)
        log.warning(
            "karaffe.events: events of %s are held in the outbox for `flask karaffe dispatch` "
            "(%s); requests skip the broker for %.1f s",
            ", ".join(channels),
            result.error,
            cooldown,
        )
        return result

    # -- the sweeper

    def sweep(self, engine: sa.Engine | None = None) -> SweepResult:
        """One pass of the sweeper: send the oldest pending events of the
        channels no other dispatcher holds; give up on the too old ones
        first (with ``give_up``). Raises when the database fails."""
        return self._pass(
            engine or self.engine(),
            self.sweep_broker,
            None,
            wait=None,
            limit=self.sweep_batch,
            give_up=self.give_up,
        )

    def drain(self, engine: sa.Engine | None = None) -> SweepResult:
        """Sweep until nothing more can be sent now; the totals."""
        sent = held = dropped = 0
        while True:
            result = self.sweep(engine)
            sent, held, dropped = sent + result.sent, held + result.held, dropped + result.dropped
            if result.error is not None or not result.more:
                return SweepResult(sent, held, dropped, result.more, result.error)

    def pending(self, engine: sa.Engine | None = None) -> tuple[int, dt.datetime | None]:
        """How many events the outbox holds, and when the oldest was created."""
        with (engine or self.engine()).connect() as connection:
            count, oldest = connection.execute(
                sa.select(sa.func.count(), sa.func.min(outbox_table.c.created_at))
            ).one()
        if isinstance(oldest, dt.datetime) and oldest.tzinfo is None:
            oldest = oldest.replace(tzinfo=dt.UTC)
        return int(count), oldest

    def run(self, stop: threading.Event, *, poll: float = 1.0, max_backoff: float = 2.0) -> None:
        """Sweep until ``stop`` is set: at once while there is more, every
        ``poll`` seconds when the outbox is empty, and, while the broker or
        the database fails, every ``max_backoff`` seconds at most."""
        failing_since: float | None = None
        last_report = 0.0
        delay = 0.0
        sent_while_failing = 0
        while not stop.is_set():
            try:
                result = self.sweep()
            except Exception as exc:
                result = SweepResult(error=f"database: {exc!r}")
            now = time.monotonic()
            if result.error is not None:
                if failing_since is None or now - last_report >= 60:
                    held = self._count_quietly()
                    log.warning(
                        "karaffe.events: cannot send the outbox (%s); %s event(s) held, retrying",
                        result.error,
                        "?" if held is None else held,
                    )
                    last_report = now
                if failing_since is None:
                    failing_since = now
                    sent_while_failing = 0
                sent_while_failing += result.sent
                delay = min(max(delay * 2, 0.1), max_backoff)
            else:
                if failing_since is not None:
                    log.warning(
                        "karaffe.events: the outbox is sending again after %.1f s",
                        now - failing_since,
                    )
                    failing_since = None
                delay = 0.0 if result.more else poll
            stop.wait(delay)

    def _count_quietly(self) -> int | None:
        try:
            return self.pending()[0]
        except Exception:
            return None

    # -- one pass

    def _pass(
        self,
        engine: sa.Engine,
        broker: Broker,
        channels: Sequence[str] | None,
        *,
        wait: float | None,
        limit: int,
        give_up: float | None = None,
    ) -> SweepResult:
        started = time.time()
        sent_rows: list[tuple[OutboxRow, str]] = []
        try:
            with self.locks(engine).hold(channels, wait, self.sweep_channels) as held:
                if held is None:
                    return SweepResult()
                dropped = self._give_up(held, broker, give_up) if give_up is not None else 0
                rows = held.read(limit)
                if not rows:
                    return SweepResult(dropped=dropped)
                by_channel: dict[str, list[OutboxRow]] = {}
                for row in rows:
                    by_channel.setdefault(row.channel, []).append(row)
                failed: list[tuple[list[int], str]] = []
                error: str | None = None
                for channel, batch in by_channel.items():
                    try:
                        ids = self._send(broker, channel, batch)
                    except Exception as exc:
                        error = f"{type(exc).__name__}: {exc}"
                        failed.append(([row.id for row in batch], error))
                        if broker.is_unavailable(exc):
                            break  # the other channels are not tried: no attempt to count
                        log.error(
                            "karaffe.events: the broker refused %d event(s) of %s: %s",
                            len(batch),
                            channel,
                            error,
                        )
                    else:
                        sent_rows.extend(zip(batch, ids, strict=True))
                held.settle([row.id for row, _ in sent_rows], failed)
        except Exception:
            # Sent, but maybe not deleted: sent again as possibly sent.
            for row, _ in sent_rows:
                self._unsettled.setdefault(row.channel, started)
            raise
        for row, _ in sent_rows:
            self._unsettled.pop(row.channel, None)
        self._announce(sent_rows)
        held_count = sum(len(ids) for ids, _ in failed)
        return SweepResult(
            sent=len(sent_rows),
            held=held_count,
            dropped=dropped,
            more=len(rows) >= limit,
            error=error,
        )

    def _send(self, broker: Broker, channel: str, batch: list[OutboxRow]) -> list[str]:
        """Send one channel's events; those possibly sent before (an attempt
        failed, or they are old, or their delete failed) are looked up first."""
        now = time.time()
        since: float | None = self._unsettled.get(channel)
        for row in batch:
            created = row.created_at.timestamp()
            if row.attempts or created < now - self.fresh:
                since = created if since is None else min(since, created)
        return broker.append_many(
            [(row.channel, row.type, row.data) for row in batch],
            origins=[row.origin for row in batch],
            resent_since=None if since is None else {channel: since},
        )

    def _give_up(self, held: _Held, broker: Broker, give_up: float) -> int:
        before = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=give_up)
        channels = held.expired(before)
        if not channels:
            return 0
        # Reset first: if the broker cannot, nothing is dropped.
        try:
            broker.reset(channels)
        except Exception as exc:
            log.warning("karaffe.events: cannot reset %s to give up on them: %r", channels, exc)
            return 0
        dropped = held.drop(channels, before)
        log.error(
            "karaffe.events: gave up on %d event(s) older than %s s on %s; their readers get reset",
            dropped,
            give_up,
            ", ".join(channels),
        )
        return dropped

    def _announce(self, sent: list[tuple[OutboxRow, str]]) -> None:
        if not sent:
            return
        from .publish import announce

        sent = sorted(sent, key=lambda pair: pair[0].id)  # publishing order

        announce(
            self.app,
            [id for _, id in sent],
            [(row.channel, row.type, row.data) for row, _ in sent],
        )
