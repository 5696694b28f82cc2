"""Read results kept per database connection until the database changes.

SQLite tells each connection, through ``PRAGMA data_version``, whether any other
connection (in this process or another) has committed since it last asked. A
request asks once, first; when the answer moved, everything this connection
remembered is dropped before anything is read from it. So a memo can never serve
a revoked token or a count from before a write: the check and the drop happen in
the same request that would have used them. The service's own connections never
write, so every change is another connection's and is seen.

PostgreSQL offers no such cheap, exact signal, so there ``memo`` returns ``None``
and every request reads the database (docs/architecture.md, "Connections and the
memo").

What goes in: authenticated principals by token digest, access decisions by token
and headers, and list counts by (listing, access, filters). Never a rendered
session: those are read per request.
"""

from __future__ import annotations

from collections.abc import Hashable
from typing import Any

from sqlalchemy import Connection, Integer, column, text

from coursebook.query import Query

#: Where a pooled connection keeps its memo (SQLAlchemy's per-connection ``info``).
INFO_KEY = "coursebook.memo"
#: A memo holding more entries than this starts again empty (many distinct tokens or
#: filter combinations between two writes).
MAX_ENTRIES = 10_000

_DATA_VERSION = Query(text("PRAGMA data_version").columns(column("data_version", Integer)))

Memo = dict[Hashable, Any]


def memo(conn: Connection) -> Memo | None:
    """``conn``'s memo, emptied if the database changed since it was last asked.

    ``None`` where the backend cannot tell (anything but SQLite): callers then read.
    """
    if conn.dialect.name != "sqlite":
        return None
    version = _DATA_VERSION.rows(conn, {})[0]["data_version"]
    info = conn.connection.info
    held: tuple[int, Memo] | None = info.get(INFO_KEY)
    if held is None or held[0] != version or len(held[1]) > MAX_ENTRIES:
        held = info[INFO_KEY] = (version, {})
    return held[1]
