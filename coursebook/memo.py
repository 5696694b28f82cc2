"""Read results kept between requests until the database changes.

A worker keeps one memo per database connection it reads through (``Shared``),
stamped with the database's write count when its entries were read. The statements a
request runs anyway read the count beside their data (the token's, the session's, a
page's, a level of relations'), and hand it to ``Memo.observe``: a count that differs
from the memo's means something was written since, and the request is read again from
the start on a fresh memo (``Stale``; ``service._reading``), inside one snapshot. So
what a worker remembers is trusted only when a statement of the same request, in the
same snapshot as its data, shows that nothing changed since it was read: a token
revoked or a permission changed fails or applies on the next request, and a warm plain
retrieve is one statement.

The count (``WRITE_COUNT``) is each dialect's own:

- SQLite: ``pragma_data_version()``, which moves whenever another connection (in this
  process or another) commits. The service's own connections never write, so every
  change is another connection's and is seen. It costs no write anything.
- PostgreSQL has no such signal, so it counts its own writes: a statement trigger on
  every table adds one to the single row of ``data_version`` in the writing
  transaction (migration 0006), so the new count commits, and becomes visible, exactly
  with the write, on every worker of every host.

What goes in: authenticated principals by token digest, access decisions by token
and headers, and list counts by (listing, access, filters). Never a rendered
session: those are read per request.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from sqlalchemy import Connection, Integer, select
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ColumnElement

from coursebook.metrics import TALLY
from coursebook.models import data_version
from coursebook.query import Query

#: A memo holding more entries than this starts again empty (many distinct tokens or
#: filter combinations between two writes).
MAX_ENTRIES = 10_000
#: What a statement labels the write count it read beside its data.
VERSION = "_data_version"


class _WriteCount(ColumnElement[int]):
    """The database's write count, as a column any statement can add: what the
    statement's snapshot shows of it (``Memo.observe``)."""

    type = Integer()
    inherit_cache = True


@compiles(_WriteCount)
def _counted(_element: _WriteCount, compiler: SQLCompiler, **kw: Any) -> str:
    """PostgreSQL: the row the triggers of migration 0006 add to."""
    counted = select(data_version.c.version).where(data_version.c.id == 1).scalar_subquery()
    return compiler.process(counted, **kw)


@compiles(_WriteCount, "sqlite")
def _sqlite_data_version(_element: _WriteCount, _compiler: SQLCompiler, **_kw: Any) -> str:
    """SQLite: the connection's ``data_version``, as of the statement's snapshot."""
    return "(SELECT data_version FROM pragma_data_version())"


WRITE_COUNT = _WriteCount()
_WRITE_COUNT = Query(select(WRITE_COUNT.label(VERSION)))

T = TypeVar("T")


class Stale(Exception):
    """A statement showed the database changed after the memo's entries were read: the
    request is to be read again on a fresh memo."""


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

    def observe(self, version: int | None) -> None:
        """A statement of the request read the write count ``version``."""

    def confirm(self, conn: Connection) -> None:
        """Check the memo against the database when no statement of the request read the
        write count (a request answered 404): one statement."""


class _Versioned(Memo):
    """A memo trusted while the write count has not moved."""

    __slots__ = ()

    def observe(self, version: int | None) -> None:
        """Raise ``Stale`` when ``version`` is not the count the entries were read at.

        A fresh memo (no count yet) takes the first count a statement shows it; its
        entries are then read at that count or the request is read again.
        """
        if self.version is None:
            self.version = version
        elif version != self.version:
            raise Stale

    def confirm(self, conn: Connection) -> None:
        self.observe(_WRITE_COUNT.rows(conn, {})[0][VERSION])


class _Forgetful(Memo):
    """A memo that keeps nothing (commands and tests that read outside a request)."""

    __slots__ = ()

    def get(self, key: Hashable, compute: Callable[..., T], *args: Any) -> T:
        return compute(*args)


NO_MEMO: Memo = _Forgetful(None)


class Shared:
    """The memo of a connection's reads: on PostgreSQL, the worker's, shared by its
    concurrent requests; on SQLite, the kept connection's (its ``data_version`` is its
    own).

    ``current`` is replaced by an empty memo when a request finds it stale (or full);
    a request keeps the memo it started with, so one that began before the change
    finds it stale too (and one that began after a newer memo was put in place finds
    that one stale, if it read an older count: the memo follows whatever count the
    requests show it, and trusts none it was not shown).
    """

    __slots__ = ("current",)

    def __init__(self) -> None:
        self.current: Memo = _Versioned(None)

    def get(self) -> Memo:
        """The memo for a request starting now."""
        held = self.current
        if len(held.entries) > MAX_ENTRIES:
            held = self.current = _Versioned(None)
        return held

    def renew(self) -> Memo:
        """A fresh memo, for a request read again after its memo proved stale; it is
        the current one from now on."""
        held = self.current = _Versioned(None)
        return held
