"""Engine construction: SQLite in WAL mode by default, PostgreSQL by URL.

JSON columns are decoded with orjson, as responses are encoded. ``local_time`` is the
one SQL function the two dialects spell differently: PostgreSQL has the time-zone
database, and SQLite connections get it from Python's ``zoneinfo``.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import threading
from collections import deque
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson
from sqlalchemy import Connection, DateTime, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.pool import NullPool
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.util import await_only

from coursebook.settings import Settings

logger = logging.getLogger("coursebook")

#: What begins a request's snapshot on PostgreSQL: its statements from then on read
#: the database as of the first one, and never write.
BEGIN_SNAPSHOT = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
#: Where a pooled connection notes that its request began a snapshot.
SNAPSHOT_KEY = "coursebook.snapshot"
#: Transaction control touches no table: the statement counter leaves it out.
TRANSACTION_CONTROL = ("BEGIN", "ROLLBACK", "COMMIT")


def create_serving_engine(settings: Settings) -> Engine:
    """The engine requests read through.

    SQLite: ``create_db_engine``'s, run on the event loop (a statement is an in-process
    index probe). PostgreSQL: asyncpg under SQLAlchemy's asyncio support, so that a
    worker serves other requests while one waits for the server. The engine returned is
    the sync facade of an ``AsyncEngine``: code using it runs inside ``greenlet_spawn``,
    and each statement suspends its greenlet, not the worker. Every wait is bounded:
    connecting, each statement (the driver cancels it) and the pool (``Connections``,
    which keeps the connections: SQLAlchemy's pool is not used, so it is a ``NullPool``).
    Connections are in autocommit; a request that needs a snapshot begins it.
    """
    parsed = make_url(settings.database_url)
    if parsed.get_backend_name() == "sqlite":
        return create_db_engine(settings.database_url, pool_size=settings.database_pool_size)
    statement_ms = int(settings.database_statement_timeout * 1000)
    engine = create_async_engine(
        parsed.set(drivername="postgresql+asyncpg"),
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        json_deserializer=orjson.loads,
        connect_args={
            "timeout": settings.database_connect_timeout,
            "command_timeout": settings.database_statement_timeout,
            # The server gives up too, so a slow statement costs it nothing past the bound.
            "server_settings": {"statement_timeout": str(statement_ms)},
        },
    )
    return engine.sync_engine


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

    def _count(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if not statement.startswith(TRANSACTION_CONTROL):
            self.count += 1


class Connections:
    """Where each request gets its connection, and the one snapshot it reads.

    Connections are kept, not pooled per request: checking one out of SQLAlchemy's pool
    and back (events, reset, the fairy's bookkeeping) costs about as much as a plain
    retrieve's statement.

    SQLite: each thread keeps one connection for its life (a SQLite connection does not
    go stale), and every request's statements run in one read transaction, an explicit
    ``BEGIN`` rolled back when the request ends: one snapshot, and the file's read lock
    taken once.

    PostgreSQL: up to ``size`` connections opened as requests need them and kept,
    lent to one request at a time (``_Lent``): a request finding none free waits for
    one, at most ``wait`` seconds (then ``PoolTimeout``: a 503). Connections are in
    autocommit and not pinged: a dead one is found on use, dropped, and the read made
    again on another (``service._reading``). A request that reads more than one
    statement begins its snapshot first (``snapshot``). Either way a write committed
    between two of a response's statements (the session and, say, its instructors) is
    wholly in it or wholly absent, and the next request sees it.
    """

    def __init__(self, engine: Engine, *, size: int = 10, wait: float = 3.0) -> None:
        self.engine = engine
        self.keep = engine.dialect.name == "sqlite"
        self.size = size
        self.wait = wait
        database = engine.url.database if self.keep else None
        #: The SQLite file, whose identity each request compares with its connection's.
        self.path = database if database and database != ":memory:" else None
        self._local = _Thread()
        #: The event loop requests are served on, and its thread (``serve_on``).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._kept: list[Connection] = []
        self._lock = threading.Lock()
        #: PostgreSQL: connections open and free, how many are open, who waits for one.
        self._free: list[Connection] = []
        self._open = 0
        self._waiting: deque[asyncio.Future[Connection | None]] = deque()

    def connect(self) -> AbstractContextManager[Connection]:
        """A connection for one request, as a context manager.

        SQLite: the thread's kept connection, unless the file at the database's path is
        no longer the one it opened (replaced, as a restore from a backup does): then a
        new one, on the new file, with an empty memo. A deleted file raises
        ``FileNotFoundError`` (a 503), rather than letting SQLite create an empty one.
        """
        if not self.keep:
            return _Lent(self)
        conn = self._local.conn
        if conn is None or conn.closed or conn.invalidated or self._replaced(conn):
            conn = self._reopen(conn)
        return _Kept(conn)

    @property
    def opened(self) -> int:
        """PostgreSQL connections open now, lent or free."""
        return self._open

    @property
    def in_use(self) -> int:
        """PostgreSQL connections lent to requests now."""
        return self._open - len(self._free)

    def _take(self) -> Connection:
        """A free connection, a new one while fewer than ``size`` are open, or the next
        one returned (run in the request's greenlet: waiting suspends it)."""
        if self._free:
            return self._free.pop()
        if self._open < self.size:
            self._open += 1
            try:
                return self.engine.connect()
            except BaseException:
                self._open -= 1
                raise
        waiter = asyncio.get_running_loop().create_future()
        self._waiting.append(waiter)
        try:
            given: Connection | None = await_only(
                asyncio.wait_for(asyncio.shield(waiter), self.wait)
            )
        except BaseException as error:
            # Given up (the wait's bound, or the request cancelled): a connection handed
            # over at that very moment goes to the next in line, never astray.
            if waiter.done() and not waiter.cancelled():
                self._give_back(waiter.result())
            else:
                waiter.cancel()
            if waiter in self._waiting:
                self._waiting.remove(waiter)
            if isinstance(error, TimeoutError):
                raise PoolTimeout(f"no connection free within {self.wait:g} s") from None
            raise
        if given is not None:
            return given
        # None: a connection was dropped, and its place is this request's to open. When
        # that fails too (the server still away), the place passes on: kept, it would be
        # lost for good, and a worker that lost all ``size`` would wait out every request.
        try:
            return self.engine.connect()
        except BaseException:
            self._give_back(None)
            raise

    def _give_back(self, conn: Connection | None) -> None:
        """Return ``conn`` (None: a dropped connection's place) to the next waiter, or
        keep it free."""
        while self._waiting:
            waiter = self._waiting.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        if conn is None:
            self._open -= 1
        else:
            self._free.append(conn)

    def _replaced(self, conn: Connection) -> bool:
        """Whether the database's path names another file than ``conn`` opened: one
        ``stat``, against the identity noted at connection (kept beside it, in the
        thread's own state: reaching ``conn.info`` costs as much as the ``stat``).

        On an event loop the answer holds for the rest of the loop's turn. A request
        is read from its socket in a turn's I/O phase, before any callback of that
        turn runs, so every request whose database work runs in a turn arrived before
        the first ``stat`` of that turn: a file replaced before a request was sent is
        seen by it. Under load a turn serves many requests, and a system call costs
        several microseconds more on a busy request path than in a tight loop (the
        caches it evicts), so this saves most of them their ``stat``. The turn ends
        with the callback ``call_soon`` queues now, which runs before the requests of
        the next turn's I/O phase do.
        """
        if self.path is None:
            return False
        local = self._local
        if local.checked and self._loop is not None:
            return False
        found = os.stat(self.path)
        loop = self._loop
        if loop is not None and threading.get_ident() == self._loop_thread:
            local.checked = True
            loop.call_soon(_uncheck, local)
        return (found.st_dev, found.st_ino) != local.identity

    def serve_on(self, loop: asyncio.AbstractEventLoop | None) -> None:
        """Requests are served on ``loop`` in this thread from now on (None: no more), so
        ``_replaced`` may keep its answer for the rest of each of its turns. Without one
        (commands, a test that starts no lifespan) every call asks. Passed in once, as
        ``asyncio.get_running_loop`` asks the kernel for the process id on each call
        (Python 3.11)."""
        self._loop = loop
        self._loop_thread = threading.get_ident() if loop is not None else None
        self._local.checked = False  # a turn of a loop that stopped says nothing now

    def _reopen(self, stale: Connection | None) -> Connection:
        """A new kept connection for this thread, in place of ``stale``."""
        identity = None if self.path is None else _file_identity(self.path)
        conn = self.engine.connect()
        self._local.identity = identity
        self._local.conn = conn
        with self._lock:
            if stale is not None:
                self._kept.remove(stale)
            self._kept.append(conn)
        if stale is not None:
            if not stale.closed and not stale.invalidated:
                # Its DBAPI connection reads the old file: closed, never pooled again.
                stale.invalidate()
            stale.close()
        return conn

    def close(self) -> None:
        """Close the kept connections and dispose of the engine's pool."""
        with self._lock:
            kept, self._kept = self._kept, []
        kept += self._free
        self._free = []
        for conn in kept:
            conn.close()
        self.engine.dispose()


class _Thread(threading.local):
    """A thread's kept SQLite connection, the identity of the file it opened, and
    whether that identity was checked in the event loop's current turn."""

    conn: Connection | None = None
    identity: tuple[int, int] | None = None
    checked = False


def _uncheck(local: _Thread) -> None:
    """End a loop turn's answer to ``Connections._replaced``."""
    local.checked = False


def _file_identity(path: str) -> tuple[int, int]:
    """The device and inode of the file at ``path``; ``FileNotFoundError`` when none."""
    found = os.stat(path)
    return found.st_dev, found.st_ino


class _Kept:
    """A kept SQLite connection lent to one request.

    Like PostgreSQL's (``_Lent``), it is in autocommit: a request that reads one
    statement pays no BEGIN and no ROLLBACK, and one that reads several asks for a
    snapshot first (``snapshot``), which is rolled back here when the request ends.
    """

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def __enter__(self) -> Connection:
        return self.conn

    def __exit__(self, *_exc: object) -> None:
        dbapi_connection = self.conn.connection.dbapi_connection
        if dbapi_connection is not None and dbapi_connection.in_transaction:
            dbapi_connection.rollback()
        if self.conn.in_transaction():
            self.conn.rollback()


class _Lent:
    """A kept PostgreSQL connection lent to one request, in autocommit.

    A request that reads one statement (a plain retrieve, whose token the memo or one
    statement before gives) needs no transaction, so it pays no BEGIN and no ROLLBACK
    round trip; one that reads several asks for a snapshot first (``snapshot``), which
    is rolled back here when the request ends. A connection found dead (invalidated)
    is closed, not lent again.
    """

    __slots__ = ("conn", "connections")

    def __init__(self, connections: Connections) -> None:
        self.connections = connections

    def __enter__(self) -> Connection:
        self.conn = self.connections._take()
        return self.conn

    def __exit__(self, *_exc: object) -> None:
        conn: Connection | None = self.conn
        try:
            if conn is not None and not conn.invalidated and conn.info.pop(SNAPSHOT_KEY, False):
                conn.exec_driver_sql("ROLLBACK")
        except Exception:
            logger.warning("A connection failed to end its snapshot: dropped")
            if conn is not None and not conn.invalidated:
                conn.invalidate()
        finally:
            if conn is not None and (conn.invalidated or conn.closed):
                conn.close()
                conn = None
            self.connections._give_back(conn)


def snapshot(conn: Connection) -> None:
    """Make the rest of the request's statements read one snapshot of the database.

    A transaction begins now (SQLite: a deferred one, a read transaction from its
    first statement; PostgreSQL: REPEATABLE READ); its first statement fixes the
    snapshot, and a write committed after it is absent from every statement after.
    """
    if conn.dialect.name == "sqlite":
        dbapi_connection = conn.connection.dbapi_connection
        if dbapi_connection is not None and not dbapi_connection.in_transaction:
            dbapi_connection.execute("BEGIN")
        return
    if conn.info.get(SNAPSHOT_KEY):
        return
    conn.exec_driver_sql(BEGIN_SNAPSHOT)
    conn.info[SNAPSHOT_KEY] = True
