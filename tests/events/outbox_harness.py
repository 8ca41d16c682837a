"""What the outbox tests share: an app on SQLite or PostgreSQL with the outbox
table, a private Redis they may kill, stop and restart, and readers of the
outbox and of the streams."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import typing as t
import uuid
from pathlib import Path

import redis
import sqlalchemy as sa
from flask_sqlalchemy import SQLAlchemy
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

import karaffe
from karaffe import _servers
from karaffe.db import normalize_database_url
from karaffe.events import Events, RedisBroker
from karaffe.events.outbox import outbox_table
from karaffe.events.publish import EventsState, state_for

__all__ = [
    "Base",
    "Entry",
    "Item",
    "PrivateRedis",
    "build_app",
    "close_app",
    "held",
    "stream",
]


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "outbox_test_item"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100), unique=True)


def build_app(
    database_url: str, config: dict[str, t.Any] | None = None
) -> tuple[karaffe.App, SQLAlchemy]:
    """An app with Events and a database holding ``Item`` and the outbox."""
    app = karaffe.App("karaffe_outbox_test")
    Events(app)
    app.configure(
        {
            "TESTING": True,
            "SECRET_KEY": "outbox-secret",
            "SQLALCHEMY_DATABASE_URI": normalize_database_url(database_url),
            "EVENTS_REDIS_PREFIX": f"t{uuid.uuid4().hex[:8]}:",
            **(config or {}),
        },
        environ={},
    )
    db = SQLAlchemy(model_class=Base)
    db.init_app(app)
    with app.app_context():
        db.create_all()
        outbox_table.create(db.engine, checkfirst=True)
    return app, db


def close_app(app: karaffe.App, db: SQLAlchemy, *, drop: bool = True) -> None:
    state: EventsState = app.extensions["karaffe.events"]
    dispatcher = state._dispatcher
    brokers = [state._broker]
    if dispatcher is not None:
        brokers += [dispatcher._request_broker, dispatcher._sweep_broker]
    for broker in brokers:
        if broker is not None:
            broker.close()
    with app.app_context():
        db.session.remove()
        if drop:
            Base.metadata.drop_all(db.engine)
            outbox_table.drop(db.engine, checkfirst=True)
        db.engine.dispose()


def held(app: karaffe.App, db: SQLAlchemy) -> list[tuple[str, str, bytes, int]]:
    """The outbox's rows: ``(channel, type, data, attempts)`` in id order."""
    with app.app_context(), db.engine.connect() as connection:
        rows = connection.execute(
            sa.select(
                outbox_table.c.channel,
                outbox_table.c.type,
                outbox_table.c.data,
                outbox_table.c.attempts,
            ).order_by(outbox_table.c.id)
        )
        return [(c, ty, bytes(d), a) for c, ty, d, a in rows]


class Entry(t.NamedTuple):
    id: str
    type: str
    data: bytes
    origin: str | None

    @property
    def row(self) -> int:
        """The outbox row id the entry was sent from."""
        assert self.origin is not None
        return int(self.origin.split(".")[0])


def stream(app: karaffe.App, channel: str) -> list[Entry]:
    """The entries of ``channel``'s Redis Stream, with their origins."""
    broker = state_for(app).broker
    assert isinstance(broker, RedisBroker)
    entries = broker.client.xrange(broker.keys.stream(channel))
    return [
        Entry(
            id.decode(),
            fields[b"t"].decode(),
            fields[b"d"],
            fields[b"o"].decode() if b"o" in fields else None,
        )
        for id, fields in entries
    ]


class PrivateRedis:
    """A redis-server a test may kill (-9), stop (SIGSTOP), resume and
    restart on the same port, always stopped in the end by its PID."""

    def __init__(self, workdir: Path, *, appendonly: bool = False) -> None:
        self.workdir = workdir
        self.port = _servers.free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _servers._skip("redis-server is not installed (apt-get install redis-server)")
        assert binary is not None
        log = self.workdir / f"redis-{self.port}.log"
        persistence = (
            ["--appendonly", "yes", "--appendfsync", "always"]
            if self.appendonly
            else ["--appendonly", "no"]
        )
        self.proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             *persistence, "--dir", str(self.workdir), "--logfile", str(log)],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
        )  # fmt: skip
        log.touch()
        _servers._wait_for_port(self.port, self.proc, 10, log)
        with redis.Redis.from_url(self.url) as client:
            while client.info("persistence").get("loading"):
                pass

    def kill(self) -> None:
        """SIGKILL: no shutdown, no save."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def pause(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        os.kill(self.proc.pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGCONT)
            _servers.stop(self.proc)
