"""Where schedulers agree on who runs a tick: the claim and the run history.

Every backend implements one atomic operation, :meth:`Backend.claim`: *if no
scheduler claimed this job's tick or a later one, claim it*, either to run it
(taking the job's lease) or to record it as skipped. That single
compare-and-set gives the guarantees of the scheduler:

* each tick is claimed once, however many schedulers race for it;
* ticks are claimed in order, so a scheduler with a slow clock never runs a
  tick older than one already run;
* a run holds a *lease* it renews while it runs; a tick that comes while the
  lease is live is recorded as skipped instead of starting a second run
  (unless the job allows overlap), and a lease left by a crashed machine
  expires, so the job is not blocked forever.

Backends (chosen by URL, see :func:`backend_from_url`):

* :class:`RedisBackend` (``redis://``): one Lua script per claim; all of a
  job's keys share a hash tag, so it works on Redis Cluster.
* :class:`SqlBackend` (``postgresql://``, ``sqlite://``): a ``karaffe_job_runs``
  table with a unique ``(job, tick)``; claims of a job are serialized by a
  transaction-scoped advisory lock on PostgreSQL and by ``BEGIN IMMEDIATE`` on
  SQLite (one machine).
* :class:`MemoryBackend` (``memory://``): one process, for tests and
  development.

Lease times are computed from the schedulers' clocks, which must agree to well
within a lease (NTP does); ticks are claimed by value and need no clock sync.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import typing as t
from abc import ABC, abstractmethod
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from .schedule import utc

__all__ = [
    "Backend",
    "Claim",
    "MemoryBackend",
    "RedisBackend",
    "RunRecord",
    "SqlBackend",
    "alembic_include_name",
    "backend_from_url",
]

#: Run statuses, as stored.
RUNNING, SUCCEEDED, FAILED, SKIPPED = "running", "succeeded", "failed", "skipped"

#: The reason recorded for a tick skipped because the previous run still held the lease.
OVERLAP_REASON = "overlap: the previous run still holds the lease"


@dataclass(frozen=True)
class RunRecord:
    """One claimed tick of a job and what became of it."""

    job: str
    tick: datetime
    status: str
    started: datetime
    finished: datetime | None = None
    reason: str | None = None
    error: str | None = None
    host: str | None = None

    @property
    def duration(self) -> timedelta | None:
        return None if self.finished is None else self.finished - self.started


@dataclass(frozen=True)
class Claim:
    """The result of a successful :meth:`Backend.claim`: ``record.status`` is
    ``running`` (run it, holding ``token``'s lease) or ``skipped``."""

    record: RunRecord
    token: str

    @property
    def runs(self) -> bool:
        return self.record.status == RUNNING


def new_token() -> str:
    return secrets.token_hex(12)


class Backend(ABC):
    """Claims ticks and records runs; shared by every scheduler of an app."""

    @abstractmethod
    def claim(
        self,
        job: str,
        tick: datetime,
        *,
        now: datetime,
        lease: timedelta,
        exclusive: bool,
        skip_reason: str | None = None,
        host: str | None = None,
    ) -> Claim | None:
        """Atomically claim ``tick`` of ``job`` unless it or a later tick was
        claimed already (then return ``None``).

        With ``skip_reason`` the tick is recorded as skipped for that reason.
        Otherwise, if ``exclusive`` and another run of the job holds a live
        lease, it is recorded as skipped for :data:`OVERLAP_REASON`; else it
        is recorded as running and its lease lasts until ``now + lease``.
        """

    @abstractmethod
    def renew(self, claim: Claim, *, now: datetime, lease: timedelta) -> bool:
        """Extend a running claim's lease to ``now + lease``; ``False`` when
        the lease was lost (it expired and another run took it)."""

    @abstractmethod
    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        """Record the outcome of a run and release its lease."""

    @abstractmethod
    def history(self, job: str, limit: int = 20) -> list[RunRecord]:
        """The latest claimed ticks of ``job``, newest first."""

    def last_tick(self, job: str) -> datetime | None:
        """The latest tick claimed for ``job``."""
        runs = self.history(job, limit=1)
        return runs[0].tick if runs else None

    def last_runs(self, jobs: t.Iterable[str]) -> dict[str, RunRecord]:
        """The latest record of each of ``jobs`` that has one."""
        found = {}
        for name in jobs:
            runs = self.history(name, limit=1)
            if runs:
                found[name] = runs[0]
        return found

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to release by default
        """Release connections."""


class MemoryBackend(Backend):
    """Claims in this process only: for tests and a single development process."""

    def __init__(self, keep: int = 100) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._runs: dict[str, list[RunRecord]] = {}
        self._leases: dict[str, tuple[str, datetime]] = {}

    def claim(
        self,
        job: str,
        tick: datetime,
        *,
        now: datetime,
        lease: timedelta,
        exclusive: bool,
        skip_reason: str | None = None,
        host: str | None = None,
    ) -> Claim | None:
        tick = utc(tick)
        with self._lock:
            runs = self._runs.setdefault(job, [])
            if runs and runs[0].tick >= tick:
                return None
            held = self._leases.get(job)
            if skip_reason is None and exclusive and held is not None and held[1] > now:
                skip_reason = OVERLAP_REASON
            status = SKIPPED if skip_reason else RUNNING
            token = new_token()
            record = RunRecord(job, tick, status, now, None, skip_reason, None, host)
            if status == SKIPPED:
                record = replace(record, finished=now)
            else:
                self._leases[job] = (token, now + lease)
            runs.insert(0, record)
            del runs[self.keep :]
            return Claim(record, token)

    def renew(self, claim: Claim, *, now: datetime, lease: timedelta) -> bool:
        with self._lock:
            held = self._leases.get(claim.record.job)
            if held is None or held[0] != claim.token:
                return False
            self._leases[claim.record.job] = (claim.token, now + lease)
            return True

    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        record = replace(claim.record, status=status, finished=now, error=error)
        with self._lock:
            runs = self._runs.setdefault(claim.record.job, [])
            for index, run in enumerate(runs):
                if run.tick == claim.record.tick:
                    runs[index] = record
            held = self._leases.get(claim.record.job)
            if held is not None and held[0] == claim.token:
                del self._leases[claim.record.job]
        return record

    def history(self, job: str, limit: int = 20) -> list[RunRecord]:
        with self._lock:
            return list(self._runs.get(job, [])[:limit])


# -- Redis -------------------------------------------------------------------

# KEYS: 1 ticks (zset tick->tick), 2 lease (hash token/until), 3 run (hash)
# ARGV: 1 tick ms, 2 now ms, 3 lease ms, 4 token, 5 exclusive, 6 skip reason,
#       7 host, 8 keep, 9 run ttl seconds
_CLAIM = """
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= tonumber(ARGV[1]) then return false end
local status, reason = 'running', ARGV[6]
if reason ~= '' then
  status = 'skipped'
elseif ARGV[5] == '1' then
  local held = redis.call('HGET', KEYS[2], 'until')
  if held and tonumber(held) > tonumber(ARGV[2]) then
    status, reason = 'skipped', ARGV[10]
  end
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[8]) + 1))
redis.call('HSET', KEYS[3], 'status', status, 'reason', reason, 'started', ARGV[2],
           'host', ARGV[7], 'token', ARGV[4])
if status == 'skipped' then redis.call('HSET', KEYS[3], 'finished', ARGV[2]) end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[9]))
if status == 'running' then
  local until_ms = tonumber(ARGV[2]) + tonumber(ARGV[3])
  redis.call('HSET', KEYS[2], 'token', ARGV[4], 'until', until_ms)
  redis.call('PEXPIRE', KEYS[2], 2 * tonumber(ARGV[3]))
end
return {status, reason}
"""

# KEYS: 1 lease; ARGV: 1 token, 2 until ms, 3 lease ms
_RENEW = """
if redis.call('HGET', KEYS[1], 'token') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'until', ARGV[2])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
"""

# KEYS: 1 lease, 2 run; ARGV: 1 token, 2 status, 3 finished ms, 4 error
_FINISH = """
redis.call('HSET', KEYS[2], 'status', ARGV[2], 'finished', ARGV[3], 'error', ARGV[4])
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1
"""


def _ms(value: datetime) -> int:
    return int(utc(value).timestamp() * 1000)


def _from_ms(value: str | bytes | None) -> datetime | None:
    if value in (None, b"", ""):
        return None
    assert value is not None
    return datetime.fromtimestamp(int(value) / 1000, UTC)


class RedisBackend(Backend):
    """Claims in Redis, atomically by Lua script.

    Keys (all under ``{prefix}:{<job>}``, one hash slot per job): ``ticks``, a
    sorted set of the claimed ticks (the latest is the claim to beat);
    ``run:<tick ms>``, a hash recording one run, expiring after
    ``history_ttl``; ``lease``, the running claim's token and expiry.
    """

    #: Seconds a run record is kept.
    history_ttl = 30 * 24 * 3600

    def __init__(self, url: str, *, prefix: str = "karaffe:jobs", keep: int = 100) -> None:
        import redis

        self.client: t.Any = redis.Redis.from_url(url)
        self.prefix = prefix
        self.keep = keep
        self._claim = self.client.register_script(_CLAIM)
        self._renew = self.client.register_script(_RENEW)
        self._finish = self.client.register_script(_FINISH)

    def _key(self, job: str, part: str) -> str:
        return f"{self.prefix}:{{{job}}}:{part}"

    def claim(
        self,
        job: str,
        tick: datetime,
        *,
        now: datetime,
        lease: timedelta,
        exclusive: bool,
        skip_reason: str | None = None,
        host: str | None = None,
    ) -> Claim | None:
        token = new_token()
        tick_ms = _ms(tick)
        result = self._claim(
            keys=[
                self._key(job, "ticks"),
                self._key(job, "lease"),
                self._key(job, f"run:{tick_ms}"),
            ],
            args=[tick_ms, _ms(now), int(lease.total_seconds() * 1000), token,
                  "1" if exclusive else "0", skip_reason or "", host or "", self.keep,
                  self.history_ttl, OVERLAP_REASON],
        )  # fmt: skip
        if not result:
            return None
        status, reason = (part.decode() for part in result)
        record = RunRecord(job, utc(tick), status, utc(now), None, reason or None, None, host)
        if status == SKIPPED:
            record = replace(record, finished=utc(now))
        return Claim(record, token)

    def renew(self, claim: Claim, *, now: datetime, lease: timedelta) -> bool:
        lease_ms = int(lease.total_seconds() * 1000)
        renewed = self._renew(
            keys=[self._key(claim.record.job, "lease")],
            args=[claim.token, _ms(now) + lease_ms, lease_ms],
        )
        return bool(renewed)

    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        job = claim.record.job
        self._finish(
            keys=[self._key(job, "lease"), self._key(job, f"run:{_ms(claim.record.tick)}")],
            args=[claim.token, status, _ms(now), error or ""],
        )
        return replace(claim.record, status=status, finished=utc(now), error=error)

    def last_tick(self, job: str) -> datetime | None:
        """From the claimed ticks, which outlive the run records."""
        top = self.client.zrevrange(self._key(job, "ticks"), 0, 0)
        return _from_ms(top[0]) if top else None

    def history(self, job: str, limit: int = 20) -> list[RunRecord]:
        ticks = self.client.zrevrange(self._key(job, "ticks"), 0, limit - 1)
        pipe = self.client.pipeline(transaction=False)
        for tick in ticks:
            pipe.hgetall(self._key(job, f"run:{tick.decode()}"))
        records = []
        for tick, raw in zip(ticks, pipe.execute(), strict=True):
            if not raw:
                continue
            data = {k.decode(): v.decode() for k, v in raw.items()}
            tick_at = _from_ms(tick)
            started = _from_ms(data.get("started"))
            assert tick_at is not None and started is not None
            records.append(
                RunRecord(
                    job=job,
                    tick=tick_at,
                    status=data.get("status", RUNNING),
                    started=started,
                    finished=_from_ms(data.get("finished")),
                    reason=data.get("reason") or None,
                    error=data.get("error") or None,
                    host=data.get("host") or None,
                )
            )
        return records

    def close(self) -> None:
        self.client.close()


# -- SQL ---------------------------------------------------------------------


def _advisory_key(job: str) -> int:
    digest = hashlib.blake2b(f"karaffe.jobs:{job}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class SqlBackend(Backend):
    """Claims in a SQL table, ``karaffe_job_runs`` (created when missing).

    :param url: a SQLAlchemy URL; ``postgres://`` and ``postgresql://`` use psycopg 3.
    """

    #: The table's name; set it on a subclass to keep several apps apart.
    table_name = "karaffe_job_runs"

    def __init__(self, url: str, *, keep: int = 100) -> None:
        import sqlalchemy as sa

        from ..db import UTCDateTime, normalize_database_url

        self.sa = sa
        self.keep = keep
        url = normalize_database_url(url)
        self.is_sqlite = url.startswith("sqlite")
        options: dict[str, t.Any] = {"pool_pre_ping": True}
        if self.is_sqlite:
            options = {"connect_args": {"timeout": 30, "check_same_thread": False}}
        self.engine = sa.create_engine(url, **options)
        if self.is_sqlite:
            self._serialize_sqlite_writers()
        metadata = sa.MetaData()
        self.table = sa.Table(
            self.table_name,
            metadata,
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("job", sa.String(200), nullable=False),
            # Naive UTC in the table (timestamp without time zone), aware UTC in Python.
            sa.Column("tick", UTCDateTime(timezone=False), nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("token", sa.String(32), nullable=False),
            sa.Column("started_at", UTCDateTime(timezone=False), nullable=False),
            sa.Column("finished_at", UTCDateTime(timezone=False)),
            sa.Column("lease_until", UTCDateTime(timezone=False)),
            sa.Column("reason", sa.Text),
            sa.Column("error", sa.Text),
            sa.Column("host", sa.String(200)),
            sa.UniqueConstraint("job", "tick", name=f"uq_{self.table_name}_job_tick"),
        )
        self._create_table()

    def _serialize_sqlite_writers(self) -> None:
        """pysqlite's own BEGIN is deferred; take the write lock up front so a
        claim's read and write are one atomic step between processes."""
        sa = self.sa

        def _connect(dbapi_connection: t.Any, record: t.Any) -> None:
            dbapi_connection.isolation_level = None

        def _begin(connection: t.Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

        sa.event.listen(self.engine, "connect", _connect)
        sa.event.listen(self.engine, "begin", _begin)

    def _create_table(self) -> None:
        if self.sa.inspect(self.engine).has_table(self.table_name):
            return
        try:
            with self.engine.begin() as conn:
                if not self.is_sqlite:
                    conn.execute(
                        self.sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": 0x6B617261}
                    )
                self.table.create(conn, checkfirst=True)
        except self.sa.exc.DBAPIError:
            # Another scheduler created it first.
            if not self.sa.inspect(self.engine).has_table(self.table_name):
                raise

    def claim(
        self,
        job: str,
        tick: datetime,
        *,
        now: datetime,
        lease: timedelta,
        exclusive: bool,
        skip_reason: str | None = None,
        host: str | None = None,
    ) -> Claim | None:
        sa, table = self.sa, self.table
        token = new_token()
        try:
            with self.engine.begin() as conn:
                if not self.is_sqlite:
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _advisory_key(job)}
                    )
                last = conn.execute(
                    sa.select(sa.func.max(table.c.tick)).where(table.c.job == job)
                ).scalar()
                if last is not None and last >= utc(tick):
                    return None
                if skip_reason is None and exclusive:
                    held = conn.execute(
                        sa.select(table.c.id)
                        .where(
                            table.c.job == job,
                            table.c.status == RUNNING,
                            table.c.lease_until > utc(now),
                        )
                        .limit(1)
                    ).first()
                    if held is not None:
                        skip_reason = OVERLAP_REASON
                status = SKIPPED if skip_reason else RUNNING
                conn.execute(
                    table.insert().values(
                        job=job,
                        tick=utc(tick),
                        status=status,
                        token=token,
                        started_at=utc(now),
                        finished_at=utc(now) if status == SKIPPED else None,
                        lease_until=utc(now + lease) if status == RUNNING else None,
                        reason=skip_reason,
                        host=host,
                    )
                )
                self._trim(conn, job)
        except sa.exc.IntegrityError:
            return None
        record = RunRecord(job, utc(tick), status, utc(now), None, skip_reason, None, host)
        if status == SKIPPED:
            record = replace(record, finished=utc(now))
        return Claim(record, token)

    def _trim(self, conn: t.Any, job: str) -> None:
        sa, table = self.sa, self.table
        cutoff = conn.execute(
            sa.select(table.c.tick)
            .where(table.c.job == job)
            .order_by(table.c.tick.desc())
            .offset(self.keep)
            .limit(1)
        ).scalar()
        if cutoff is not None:
            conn.execute(table.delete().where(table.c.job == job, table.c.tick <= cutoff))

    def renew(self, claim: Claim, *, now: datetime, lease: timedelta) -> bool:
        table = self.table
        with self.engine.begin() as conn:
            done = conn.execute(
                table.update()
                .where(table.c.token == claim.token, table.c.status == RUNNING)
                .values(lease_until=utc(now + lease))
            )
        return bool(done.rowcount)

    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        table = self.table
        with self.engine.begin() as conn:
            conn.execute(
                table.update()
                .where(table.c.token == claim.token)
                .values(status=status, finished_at=utc(now), lease_until=None, error=error)
            )
        return replace(claim.record, status=status, finished=utc(now), error=error)

    def history(self, job: str, limit: int = 20) -> list[RunRecord]:
        sa, table = self.sa, self.table
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(table)
                .where(table.c.job == job)
                .order_by(table.c.tick.desc())
                .limit(limit)
            ).all()
        return [
            RunRecord(
                job=row.job,
                tick=row.tick,
                status=row.status,
                started=row.started_at,
                finished=row.finished_at,
                reason=row.reason,
                error=row.error,
                host=row.host,
            )
            for row in rows
        ]

    def close(self) -> None:
        self.engine.dispose()


def alembic_include_name(name: str | None, type_: str, parent_names: t.Any) -> bool:
    """An Alembic ``include_name`` hook leaving the job runs table out of
    autogenerated migrations (it lives in the app's database when the jobs
    backend is that database, but belongs to no model)::

        Migrate(app, db, include_name=alembic_include_name)
    """
    return not (type_ == "table" and name == SqlBackend.table_name)


def backend_from_url(url: str, *, keep: int = 100) -> Backend:
    """The backend for ``url``: ``redis://``/``rediss://``/``unix://``,
    ``postgresql://``/``sqlite://`` (any SQLAlchemy URL), or ``memory://``."""
    if url == "memory://":
        return MemoryBackend(keep=keep)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(url, keep=keep)
    if url.startswith(("postgres", "sqlite")):
        return SqlBackend(url, keep=keep)
    raise ValueError(
        f"no job backend for {url.split('://')[0]!r} URLs: use redis, postgresql or sqlite"
    )
