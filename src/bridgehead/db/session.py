"""Engines and sessions. Transactions are opened and committed at the edge (handler or worker loop).

SQLite gets two engines on the same file: reads begin a deferred transaction, writes begin
``BEGIN IMMEDIATE`` so that two writers queue on the lock instead of failing with
SQLITE_BUSY when a read transaction tries to upgrade.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.exc import DisconnectionError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import NullPool

from bridgehead import jsonutil

# The JSON columns (task inputs, outputs, jobs, app documents) through orjson: a listing of 50 tasks
# decodes hundreds of JSON values, and the standard library was a tenth of its time.
JSON_CODEC: dict[str, Any] = {"json_serializer": jsonutil.dumps_text, "json_deserializer": jsonutil.loads}


def _sqlite_engine(url: str, immediate: bool, pool_size: int) -> Engine:
    engine = create_engine(
        url,
        connect_args={"check_same_thread": False, "timeout": 30},
        pool_size=pool_size,
        max_overflow=pool_size * 2,
        **JSON_CODEC,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves below
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


class Database:
    """One place that knows how to open read and write sessions for a URL."""

    def __init__(self, url: str, pool_size: int = 8) -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        if self.is_sqlite:
            self.engine = _sqlite_engine(url, immediate=False, pool_size=pool_size)
            self.write_engine = _sqlite_engine(url, immediate=True, pool_size=pool_size)
            read_engine = self.engine
        else:
            self.engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2, **JSON_CODEC)
            _ping_when_idle(self.engine)
            self.write_engine = self.engine
            # Reads run without BEGIN/COMMIT: at PostgreSQL's READ COMMITTED every statement takes its
            # own snapshot inside a transaction too, so nothing is lost but the COMMIT round trip,
            # one in four of a GET's. The connections are the same pool's.
            read_engine = self.engine.execution_options(isolation_level="AUTOCOMMIT")
        self._write_lock: threading.RLock | None = threading.RLock() if self.is_sqlite else None
        self._file_lock = _SqliteWriterLock(self.engine.url.database) if self.is_sqlite else None
        self._read = sessionmaker(read_engine, expire_on_commit=False)
        self._write = sessionmaker(self.write_engine, expire_on_commit=False)
        for factory in (self._read, self._write):
            event.listen(factory, "loaded_as_persistent", _hold)

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._read() as session, session.begin():
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """A transaction that commits when the block ends and rolls back on any exception.

        On SQLite, writers queue on a Python lock (threads of this process) and then on an ``flock``
        next to the database file (other bridgehead processes: the API processes and the dispatcher of
        ``serve --workers N``). SQLite's own busy handler makes a waiting writer sleep in growing steps
        (up to 100 ms), so under concurrent writes most of the time went to sleeping; a lock hands over
        at once. Anything else writing the file (sqlite3 by hand) still meets SQLite's busy timeout.
        """
        if self._write_lock is None or self._file_lock is None:
            with self._write() as session, session.begin():
                yield session
            return
        with self._write_lock, self._file_lock, self._write() as session, session.begin():
            yield session

    def dispose(self) -> None:
        self.engine.dispose()
        if self.write_engine is not self.engine:
            self.write_engine.dispose()


class _SqliteWriterLock:
    """An exclusive ``flock`` on ``<database>.writer-lock``, re-entrant within the holding thread.

    Callers hold the process's thread lock first, so one thread at a time gets here; the depth count
    lets a nested ``write()`` leave the file locked until the outermost one ends.
    """

    def __init__(self, database: str | None) -> None:
        self.path = f"{database}.writer-lock" if database and database != ":memory:" else None
        self._fd: int | None = None
        self._pid = 0
        self._depth = 0

    def __enter__(self) -> None:
        if self.path is None:
            return
        if self._depth == 0:
            if self._fd is None or self._pid != os.getpid():
                # A forked child opens its own: an inherited descriptor shares the parent's lock.
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
                self._pid = os.getpid()
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        self._depth += 1

    def __exit__(self, *exc: object) -> None:
        if self.path is None or self._fd is None:
            return
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)


# A pooled connection unused for this long is checked with a round trip before it is handed out.
IDLE_PING_S = 5.0


def _ping_when_idle(engine: Engine) -> None:
    """Check connections that sat in the pool a while before use (SQLAlchemy's ``pool_pre_ping`` checks
    every checkout: one round trip more per request, under load a quarter of a GET's).

    A database restarted under a busy pool is still noticed: the first statement on a broken
    connection fails, and SQLAlchemy then invalidates every connection of the pool.
    """

    @event.listens_for(engine, "checkin")
    def _returned(_dbapi_conn: Any, record: Any) -> None:
        record.info["returned"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if time.monotonic() - record.info.get("returned", 0.0) < IDLE_PING_S:
            return
        try:
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SELECT 1")
            dbapi_conn.rollback()
        except Exception as exc:  # the pool replaces the connection and tries again
            raise DisconnectionError(str(exc)) from exc


def _hold(session: Session, instance: object) -> None:
    """Keep each loaded row referenced until its session closes (sessions last one transaction).

    The identity map holds rows weakly, so a project loaded for a permission check and dropped was
    fetched again by the next ``session.get`` of the same row: one SELECT more per request.
    """
    session.info.setdefault("held", []).append(instance)


def single_use_engine(url: str) -> Engine:
    """For short-lived tools (migrations, admin commands): no pooled connections left behind."""
    return create_engine(url, poolclass=NullPool)
