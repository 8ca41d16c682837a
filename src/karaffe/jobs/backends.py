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
  expires, so the job is not blocked forever;
* a run whose lease ran out with no end recorded is marked *abandoned*, by
  the next claim of its job or the next :meth:`Backend.abandon_expired` (every
  scheduler poll); from then on its :meth:`Backend.renew` answers ``False``,
  so the scheduler running it, if it was only stopped, learns that it lost
  the lease. If it still ends, its real outcome is recorded.

Backends (chosen by URL, see :func:`backend_from_url`):

* :class:`RedisBackend` (``redis://``): one Lua script per claim; all of a
  job's keys share a hash tag, so it works on Redis Cluster (``cluster=True``,
  the ``JOBS_REDIS_CLUSTER`` setting: the cluster client).
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
ABANDONED = "abandoned"

#: The reason recorded for a tick skipped because the previous run still held the lease.
OVERLAP_REASON = "overlap: the previous run still holds the lease"

#: The reason recorded for a run marked abandoned (``finished`` is when its lease ran out).
ABANDONED_REASON = "its lease ran out with no end recorded: its scheduler died or was stopped"

#: The reason recorded for a run that ended after it had been marked abandoned.
LATE_END_REASON = "lease lost: it ended after its lease ran out and it was marked abandoned"


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
        the lease was lost: it ran out and the run was marked abandoned
        (which a claim of the job does before another run takes over), or
        the run has ended."""

    @abstractmethod
    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        """Record the outcome of a run and release its lease. A run marked
        abandoned meanwhile gets its outcome too, with :data:`LATE_END_REASON`."""

    def abandon_expired(self, jobs: t.Iterable[str], *, now: datetime) -> list[RunRecord]:
        """Mark the runs of ``jobs`` whose lease ran out by ``now`` with no
        end recorded as :data:`ABANDONED`; returns the records it marked.
        The scheduler calls it on every poll. (The default marks nothing: a
        backend that does not implement it leaves such runs ``running``.)"""
        return []

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
        # job -> token of each running claim -> (its tick, its lease's end)
        self._leases: dict[str, dict[str, tuple[datetime, datetime]]] = {}

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
            self._abandon(job, now)
            runs = self._runs.setdefault(job, [])
            if runs and runs[0].tick >= tick:
                return None
            if skip_reason is None and exclusive and self._leases.get(job):
                skip_reason = OVERLAP_REASON
            status = SKIPPED if skip_reason else RUNNING
            token = new_token()
            record = RunRecord(job, tick, status, now, None, skip_reason, None, host)
            if status == SKIPPED:
                record = replace(record, finished=now)
            else:
                self._leases.setdefault(job, {})[token] = (tick, now + lease)
            runs.insert(0, record)
            del runs[self.keep :]
            return Claim(record, token)

    def _abandon(self, job: str, now: datetime) -> list[RunRecord]:
        leases = self._leases.get(job, {})
        marked = []
        for token, (tick, until) in list(leases.items()):
            if until > now:
                continue
            del leases[token]
            runs = self._runs.get(job, [])
            for index, run in enumerate(runs):
                if run.tick == tick and run.status == RUNNING:
                    runs[index] = replace(
                        run, status=ABANDONED, finished=until, reason=ABANDONED_REASON
                    )
                    marked.append(runs[index])
        if not leases:
            self._leases.pop(job, None)
        return marked

    def abandon_expired(self, jobs: t.Iterable[str], *, now: datetime) -> list[RunRecord]:
        with self._lock:
            return [record for job in jobs for record in self._abandon(job, now)]

    def renew(self, claim: Claim, *, now: datetime, lease: timedelta) -> bool:
        with self._lock:
            leases = self._leases.get(claim.record.job, {})
            if claim.token not in leases:
                return False
            leases[claim.token] = (claim.record.tick, now + lease)
            return True

    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        record = replace(claim.record, status=status, finished=now, error=error)
        job = claim.record.job
        with self._lock:
            runs = self._runs.setdefault(job, [])
            for index, run in enumerate(runs):
                if run.tick == claim.record.tick:
                    if run.status == ABANDONED:
                        record = replace(record, reason=LATE_END_REASON)
                    runs[index] = record
            leases = self._leases.get(job, {})
            leases.pop(claim.token, None)
            if not leases:
                self._leases.pop(job, None)
        return record

    def history(self, job: str, limit: int = 20) -> list[RunRecord]:
        with self._lock:
            return list(self._runs.get(job, [])[:limit])


# -- Redis -------------------------------------------------------------------

# Every script works on one job's keys, which share a hash tag (one slot of a
# Redis Cluster): "ticks" (zset of claimed ticks), "running" (zset: the tick of
# each running claim, scored by the end of its lease) and "run:<tick ms>" (a
# hash per run). The runs whose lease ran out are marked abandoned by
# _ABANDON_EXPIRED, which builds their run keys from ARGV (same slot).
_ABANDON_EXPIRED = """
local function abandon_expired(running, run_prefix, now, reason)
  local expired = redis.call('ZRANGEBYSCORE', running, '-inf', now, 'WITHSCORES')
  local marked = {}
  for i = 1, #expired, 2 do
    local tick, until_ms = expired[i], expired[i + 1]
    local key = run_prefix .. tick
    redis.call('ZREM', running, tick)
    if redis.call('HGET', key, 'status') == 'running' then
      redis.call('HSET', key, 'status', 'abandoned', 'finished', until_ms, 'reason', reason)
      local row = redis.call('HMGET', key, 'started', 'host')
      table.insert(marked, {tick, until_ms, row[1] or '', row[2] or ''})
    end
  end
  return marked
end
"""

# KEYS: 1 running; ARGV: 1 run key prefix, 2 now ms, 3 abandoned reason
_ABANDON = (
    _ABANDON_EXPIRED
    + """
return abandon_expired(KEYS[1], ARGV[1], ARGV[2], ARGV[3])
"""
)

# KEYS: 1 ticks, 2 running, 3 run (hash)
# ARGV: 1 tick ms, 2 now ms, 3 lease ms, 4 token, 5 exclusive, 6 skip reason,
#       7 host, 8 keep, 9 run ttl seconds, 10 overlap reason, 11 run key prefix,
#       12 abandoned reason
_CLAIM = (
    _ABANDON_EXPIRED
    + """
abandon_expired(KEYS[2], ARGV[11], ARGV[2], ARGV[12])
local top = redis.call('ZREVRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if top[2] and tonumber(top[2]) >= tonumber(ARGV[1]) then return false end
local status, reason = 'running', ARGV[6]
if reason ~= '' then
  status = 'skipped'
elseif ARGV[5] == '1' and redis.call('ZCARD', KEYS[2]) > 0 then
  status, reason = 'skipped', ARGV[10]
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[1])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -(tonumber(ARGV[8]) + 1))
redis.call('HSET', KEYS[3], 'status', status, 'reason', reason, 'started', ARGV[2],
           'host', ARGV[7], 'token', ARGV[4])
if status == 'skipped' then redis.call('HSET', KEYS[3], 'finished', ARGV[2]) end
redis.call('EXPIRE', KEYS[3], tonumber(ARGV[9]))
if status == 'running' then
  redis.call('ZADD', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[3]), ARGV[1])
end
return {status, reason}
"""
)

# KEYS: 1 running, 2 run; ARGV: 1 token, 2 tick ms, 3 until ms
_RENEW = """
if not redis.call('ZSCORE', KEYS[1], ARGV[2]) then return 0 end
if redis.call('HGET', KEYS[2], 'token') ~= ARGV[1] then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[2])
return 1
"""

# KEYS: 1 running, 2 run; ARGV: 1 token, 2 status, 3 finished ms, 4 error,
#       5 tick ms, 6 late end reason
_FINISH = """
local reason = redis.call('HGET', KEYS[2], 'reason') or ''
if redis.call('HGET', KEYS[2], 'status') == 'abandoned' then reason = ARGV[6] end
redis.call('HSET', KEYS[2], 'status', ARGV[2], 'finished', ARGV[3], 'error', ARGV[4],
           'reason', reason)
if redis.call('HGET', KEYS[2], 'token') == ARGV[1] then redis.call('ZREM', KEYS[1], ARGV[5]) end
return reason
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
    ``history_ttl``; ``running``, a sorted set of the ticks running now,
    scored by the end of their lease.

    With ``cluster``, ``url`` names a node of a Redis Cluster and the cluster
    client routes each job's calls to the shard holding its slot.
    """

    #: Seconds a run record is kept.
    history_ttl = 30 * 24 * 3600

    #: Seconds to wait for Redis to connect and to answer (the URL's
    #: ``socket_timeout``/``socket_connect_timeout`` win): a Redis that hangs
    #: fails a poll instead of blocking the scheduler, and its leases.
    timeout = 10.0

    def __init__(
        self, url: str, *, prefix: str = "karaffe:jobs", keep: int = 100, cluster: bool = False
    ) -> None:
        import redis
        from redis.cluster import RedisCluster

        factory = RedisCluster.from_url if cluster else redis.Redis.from_url
        self.client: t.Any = factory(
            url, socket_timeout=self.timeout, socket_connect_timeout=self.timeout
        )
        self.cluster = cluster
        self.prefix = prefix
        self.keep = keep
        self._claim = self.client.register_script(_CLAIM)
        self._renew = self.client.register_script(_RENEW)
        self._finish = self.client.register_script(_FINISH)
        self._abandon = self.client.register_script(_ABANDON)

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
                self._key(job, "running"),
                self._key(job, f"run:{tick_ms}"),
            ],
            args=[tick_ms, _ms(now), int(lease.total_seconds() * 1000), token,
                  "1" if exclusive else "0", skip_reason or "", host or "", self.keep,
                  self.history_ttl, OVERLAP_REASON, self._key(job, "run:"), ABANDONED_REASON],
        )  # fmt: skip
        if not result:
            return None
        status, reason = (part.decode() for part in result)
        record = RunRecord(job, utc(tick), status, utc(now), None, reason or None, None, host)
        if status == SKIPPED:
            record = replace(record, finished=utc(now))
        return Claim(record, token)

    def renew(self, claim: Claim, *, now: datetime, lease: timedelta) -> bool:
        job, tick_ms = claim.record.job, _ms(claim.record.tick)
        renewed = self._renew(
            keys=[self._key(job, "running"), self._key(job, f"run:{tick_ms}")],
            args=[claim.token, tick_ms, _ms(now + lease)],
        )
        return bool(renewed)

    def finish(self, claim: Claim, *, now: datetime, status: str, error: str | None) -> RunRecord:
        job, tick_ms = claim.record.job, _ms(claim.record.tick)
        reason = self._finish(
            keys=[self._key(job, "running"), self._key(job, f"run:{tick_ms}")],
            args=[claim.token, status, _ms(now), error or "", tick_ms, LATE_END_REASON],
        )
        reason = reason.decode() if isinstance(reason, bytes) else reason
        return replace(
            claim.record, status=status, finished=utc(now), error=error, reason=reason or None
        )

    def abandon_expired(self, jobs: t.Iterable[str], *, now: datetime) -> list[RunRecord]:
        names = list(jobs)
        calls: list[tuple[list[str], list[str | int]]] = [
            ([self._key(job, "running")], [self._key(job, "run:"), _ms(now), ABANDONED_REASON])
            for job in names
        ]
        if self.cluster:
            # A cluster pipeline cannot carry scripts: one call per job.
            results = [self._abandon(keys=keys, args=args) for keys, args in calls]
        else:
            pipe = self.client.pipeline(transaction=False)
            for keys, args in calls:
                self._abandon(keys=keys, args=args, client=pipe)
            results = pipe.execute()
        records = []
        for job, marked in zip(names, results, strict=True):
            for tick, until, started, host in marked:
                tick_at, finished, started_at = _from_ms(tick), _from_ms(until), _from_ms(started)
                assert tick_at is not None and finished is not None
                records.append(
                    RunRecord(job, tick_at, ABANDONED, started_at or tick_at, finished,
                              ABANDONED_REASON, None, host.decode() or None)
                )  # fmt: skip
        return records

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
        # Pinged connections: a restarted server costs no failed poll.
        options: dict[str, t.Any] = {"pool_pre_ping": True}
        if url.startswith("postgresql"):
            options["connect_args"] = {"connect_timeout": 10}
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
                # Before another run may take over: a run whose lease ran out
                # is abandoned, so that its renew answers False from now on.
                self._abandon(conn, [job], utc(now))
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

    def _abandon(self, conn: t.Any, jobs: list[str], now: datetime) -> list[RunRecord]:
        sa, table = self.sa, self.table
        expired = [table.c.status == RUNNING, table.c.lease_until <= now]
        rows = conn.execute(
            sa.select(table).where(table.c.job.in_(jobs), *expired).order_by(table.c.id)
        ).all()
        marked = []
        for row in rows:
            # The condition again: a renew may have committed since the select.
            done = conn.execute(
                table.update()
                .where(table.c.id == row.id, *expired)
                .values(status=ABANDONED, finished_at=row.lease_until, reason=ABANDONED_REASON)
            )
            if done.rowcount:
                marked.append(
                    RunRecord(row.job, row.tick, ABANDONED, row.started_at, row.lease_until,
                              ABANDONED_REASON, row.error, row.host)
                )  # fmt: skip
        return marked

    def abandon_expired(self, jobs: t.Iterable[str], *, now: datetime) -> list[RunRecord]:
        names = list(jobs)
        if not names:
            return []
        with self.engine.begin() as conn:
            return self._abandon(conn, names, utc(now))

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
        sa, table = self.sa, self.table
        with self.engine.begin() as conn:
            reason = conn.execute(
                sa.select(
                    sa.case((table.c.status == ABANDONED, LATE_END_REASON), else_=table.c.reason)
                ).where(table.c.token == claim.token)
            ).scalar()
            conn.execute(
                table.update()
                .where(table.c.token == claim.token)
                .values(status=status, finished_at=utc(now), lease_until=None)
                .values(error=error, reason=reason)
            )
        return replace(claim.record, status=status, finished=utc(now), error=error, reason=reason)

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


def backend_from_url(url: str, *, keep: int = 100, redis_cluster: bool = False) -> Backend:
    """The backend for ``url``: ``redis://``/``rediss://``/``unix://`` (a
    node of a Redis Cluster with ``redis_cluster``), ``postgresql://``/``sqlite://``
    (any SQLAlchemy URL), or ``memory://``."""
    if url == "memory://":
        return MemoryBackend(keep=keep)
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisBackend(url, keep=keep, cluster=redis_cluster)
    if url.startswith(("postgres", "sqlite")):
        return SqlBackend(url, keep=keep)
    raise ValueError(
        f"no job backend for {url.split('://')[0]!r} URLs: use redis, postgresql or sqlite"
    )
