"""Read results kept per database connection until the database changes.

SQLite tells each connection, through ``PRAGMA data_version``, whether any other
connection (in this process or another) has committed since it last asked. A
request asks once, first; when the answer moved, everything this connection
remembered is dropped before anything is read from it. So a memo can never serve
a revoked token or a count from before a write: the check and the drop happen in
the same request that would have used them. The service's own connections never
write, so every change is another connection's and is seen.

PostgreSQL offers no such cheap, exact signal, so there ``memo`` returns a memo
that keeps nothing and every request reads the database (docs/architecture.md, "Connections and the
memo").

What goes in: authenticated principals by token digest, access decisions by token
and headers, and list counts by (listing, access, filters). Never a rendered
session: those are read per request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection, Integer, column, text

from coursebook.metrics import TALLY
from coursebook.query import Query

#: Where a pooled connection keeps its memo (SQLAlchemy's per-connection ``info``).
INFO_KEY = "coursebook.memo"
#: A memo holding more entries than this starts again empty (many distinct tokens or
#: filter combinations between two writes).
MAX_ENTRIES = 10_000

_DATA_VERSION = Query(text("PRAGMA data_version").columns(column("data_version", Integer)))

T = TypeVar("T")


class Memo:
    """Values remembered by key until the database changes."""

    __slots__ = ("entries", "version")

    def __init__(self, version: int | None) -> None:
        self.version = version
        self.entries: dict[Hashable, Any] = {}

    def get(self, key: Hashable, compute: Callable[..., T], *args: Any) -> T:
        """The value kept for ``key``, else ``compute(*args)`` kept. An exception from
        ``compute`` keeps nothing (an unknown token is looked up again)."""
        try:
            value: T = self.entries[key]
        except KeyError:
            TALLY.memo_misses += 1
            value = self.entries[key] = compute(*args)
        else:
            TALLY.memo_hits += 1
        return value


class _Forgetful(Memo):
    """A memo that keeps nothing: where the database gives no change signal."""

    __slots__ = ()

    def get(self, key: Hashable, compute: Callable[..., T], *args: Any) -> T:
        return compute(*args)


NO_MEMO: Memo = _Forgetful(None)


def memo(conn: Connection) -> Memo:
    """``conn``'s memo, emptied if the database changed since it was last asked.

    ``NO_MEMO`` where the backend cannot tell (anything but SQLite): callers then read.
    """
    if conn.dialect.name != "sqlite":
        return NO_MEMO
    version = _DATA_VERSION.rows(conn, {})[0]["data_version"]
    info = conn.connection.info
    held: Memo | None = info.get(INFO_KEY)
    if held is None or held.version != version or len(held.entries) > MAX_ENTRIES:
        held = info[INFO_KEY] = Memo(version)
    return held
