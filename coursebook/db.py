"""Engine construction: SQLite in WAL mode by default, PostgreSQL by URL.

JSON columns are decoded with orjson, as responses are encoded. ``local_time`` is the
one SQL function the two dialects spell differently: PostgreSQL has the time-zone
database, and SQLite connections get it from Python's ``zoneinfo``.
"""

from __future__ import annotations

import sqlite3
import threading
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement

#: PostgreSQL's isolation for a request: its statements share the first one's snapshot.
SNAPSHOT = "REPEATABLE READ"


def create_db_engine(url: str, *, pool_size: int = 10) -> Engine:
    """Create the engine for ``url``; SQLite files get WAL, foreign keys and a busy timeout."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            json_deserializer=orjson.loads,
        )
        event.listen(engine, "connect", _configure_sqlite)
        return engine
    return create_engine(
        url,
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_pre_ping=True,
        json_deserializer=orjson.loads,
    )


def _configure_sqlite(dbapi_connection: sqlite3.Connection, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-32768")
    cursor.close()
    dbapi_connection.create_function(SQLITE_LOCAL_TIME, 2, _sqlite_local_time, deterministic=True)


class local_time(FunctionElement[datetime]):
    """``local_time(instant, zone)``: the wall-clock time (naive) of a UTC ``instant`` in
    the IANA time zone named by ``zone``; both are SQL expressions, so each row may have
    its own zone."""

    type = DateTime()
    name = "local_time"
    inherit_cache = True


SQLITE_LOCAL_TIME = "coursebook_local_time"


@compiles(local_time, "postgresql")
def _postgresql_local_time(element: local_time, compiler: SQLCompiler, **kw: Any) -> str:
    instant, zone = element.clauses
    return f"timezone({compiler.process(zone, **kw)}, {compiler.process(instant, **kw)})"


@compiles(local_time, "sqlite")
def _sqlite_call(element: local_time, compiler: SQLCompiler, **kw: Any) -> str:
    return f"{SQLITE_LOCAL_TIME}({compiler.process(element.clauses, **kw)})"


def _sqlite_local_time(stored: str | None, zone: str | None) -> str | None:
    """SQLite's ``local_time``: a stored UTC date-time in ``zone``, written as SQLAlchemy
    stores date-times there; NULL for a zone ``zoneinfo`` does not know (an exception
    here would fail the statement)."""
    if stored is None or zone is None:
        return None
    try:
        local = datetime.fromisoformat(stored).replace(tzinfo=UTC).astimezone(ZoneInfo(zone))
    except (KeyError, ValueError, OverflowError):
        return None
    return local.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")


class StatementCounter:
    """Counts the SQL statements an engine executes (benchmarks and tests read it)."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        event.listen(engine, "before_cursor_execute", self._count)

    def _count(self, *_args: Any) -> None:
        self.count += 1


class Connections:
    """Where each request gets its connection, and the one snapshot it reads.

    PostgreSQL: the engine's pool, checked out and returned per request, with a
    pre-ping so that a restarted server costs no failed request. SQLite: each thread
    keeps one connection for its life. Checking a connection out of SQLAlchemy's pool
    and back costs about as much as a plain retrieve's two statements on a local
    file, and a SQLite connection does not go stale.

    Every statement of a request runs in one read transaction: REPEATABLE READ on
    PostgreSQL, an explicit ``BEGIN`` on SQLite (WAL mode), rolled back when the
    request ends. A response is therefore read from one snapshot: a write committed
    between two of its statements (the session and, say, its instructors) is either
    wholly in it or wholly absent, and the next request sees it. On SQLite it also
    takes the file's read lock once per request rather than once per statement.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.keep = engine.dialect.name == "sqlite"
        self._local = threading.local()
        self._kept: list[Connection] = []
        self._lock = threading.Lock()

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection for one request, as a context manager."""
        if not self.keep:
            return self.engine.connect().execution_options(isolation_level=SNAPSHOT)
        conn: Connection | None = getattr(self._local, "conn", None)
        if conn is None or conn.closed or conn.invalidated:
            stale, conn = conn, self.engine.connect()
            self._local.conn = conn
            with self._lock:
                if stale is not None:
                    self._kept.remove(stale)
                self._kept.append(conn)
            if stale is not None:
                stale.close()
        return _Kept(conn)

    def close(self) -> None:
        """Close the kept connections and dispose of the engine's pool."""
        with self._lock:
            kept, self._kept = self._kept, []
        for conn in kept:
            conn.close()
        self.engine.dispose()


class _Kept:
    """A kept connection lent to one request, inside one read transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        dbapi_connection = self.conn.connection.dbapi_connection
        if dbapi_connection is not None and not dbapi_connection.in_transaction:
            dbapi_connection.execute("BEGIN")
        return self.conn

    def __exit__(self, *_exc: object) -> None:
        dbapi_connection = self.conn.connection.dbapi_connection
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()
        if self.conn.in_transaction():
            self.conn.rollback()
