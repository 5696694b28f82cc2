"""Hot-path queries: Core statements compiled once, executed on the DBAPI cursor.

SQLAlchemy builds and compiles every statement of the read path (dialect-specific
SQL, bind and result type processing). Executing a compiled statement through
``Connection.execute`` adds several times the driver's own time in bookkeeping
(``python -m bench.query_overhead`` measures both); on a path that runs two to
fifteen statements per request, that is most of the request. ``Query`` keeps
SQLAlchemy's compilation and type processors, and hands the SQL straight to the
driver's cursor: per shape of parameters (the lengths of its ``IN`` lists) it keeps
the SQL and a generated function building the DBAPI arguments, and it builds result
dicts with another, one per statement. The engine's
``before_cursor_execute`` / ``after_cursor_execute`` events still fire (the
statement counter and any instrumentation see every statement), and driver errors
are wrapped as SQLAlchemy's ``DBAPIError`` family exactly as ``execute`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import CompoundSelect, Connection, Select, TextualSelect
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import TypeEngine
from sqlalchemy.util import await_only

from coursebook.generated import define
from coursebook.metrics import TALLY

#: Where a DBAPI argument comes from: a constant of the statement (already
#: processed), a caller's parameter, one item of a caller's list (``IN``), or, for
#: positional drivers, every item of the list in a row.
STATIC, PARAM, ITEM, ITEMS = 0, 1, 2, 3

#: One step of an argument plan: kind, constant or parameter name, bind processor,
#: argument name (named-style drivers), list index (``ITEM``).
Step = tuple[int, Any, Callable[[Any], Any] | None, str, int]


@dataclass(slots=True)
class _Compiled:
    compiled: SQLCompiler
    #: Names of expanding (``IN``) parameters: their SQL depends on the list lengths.
    expanding: tuple[str, ...]
    #: Builds a result row's dict (labels as keys, values through the result
    #: processors), made once the driver has described the result: some dialects
    #: choose processors by the column's type code.
    make_row: Callable[[Sequence[Any]], dict[str, Any]] | None = None


@dataclass(frozen=True, slots=True)
class _Rendered:
    """SQL for one shape of parameters (list lengths), and how to build its arguments."""

    sql: str
    #: The DBAPI arguments for a caller's parameters: the argument plan, as one
    #: generated function (``_argument_builder``).
    arguments: Callable[[Mapping[str, Any]], Any]


def _argument_builder(plan: Sequence[Step], positional: bool) -> Callable[[Mapping[str, Any]], Any]:
    """A function from a caller's parameters to the DBAPI arguments ``plan`` describes:
    a tuple for a positional driver, a dict by argument name otherwise. Generated from
    the plan (names of the statement's parameters, never request input), so a call
    does no more than its expressions: no loop over the plan, no test of each kind."""
    namespace: dict[str, Any] = {}
    parts: list[str] = []
    for number, (kind, source, processor, name, index) in enumerate(plan):
        if kind == STATIC:
            namespace[f"s{number}"] = source
            expression = f"s{number}"
        elif kind == ITEMS:
            expression = f"params[{source!r}]"
            if processor is not None:
                namespace[f"p{number}"] = processor
                expression = f"map(p{number}, {expression})"
            parts.append(f"*{expression}")
            continue
        else:
            expression = f"params[{source!r}]" if kind == PARAM else f"params[{source!r}][{index}]"
            if processor is not None:
                namespace[f"p{number}"] = processor
                expression = f"p{number}({expression})"
        parts.append(expression if positional else f"{name!r}: {expression}")
    if positional:
        body = f"({', '.join(parts)},)" if parts else "()"
    else:
        body = "{" + ", ".join(parts) + "}"
    source = f"def arguments(params):\n    return {body}\n"
    builder: Callable[[Mapping[str, Any]], Any] = define(
        source, "arguments", namespace, "arguments"
    )
    return builder


def _render(prepared: _Compiled, dialect: Dialect, params: Mapping[str, Any]) -> _Rendered:
    """Render the SQL for the list lengths of ``params`` and plan its arguments."""
    state = prepared.compiled.construct_expanded_state(params)
    # The expanded state holds the processors of IN-list items only; the compiled
    # statement's own map (what ``Connection.execute`` uses) holds every other one.
    # (A sequence of processors is for tuple-typed binds, which no statement here has.)
    compiled_processors = cast(
        Mapping[str, Callable[[Any], Any]], prepared.compiled._bind_processors
    )
    processors = {**compiled_processors, **state.processors}
    positional = state.positiontup is not None and bool(dialect.positional)
    names = list(state.positiontup or ()) if positional else list(state.parameters)
    expanded = {
        f"{base}_{index + 1}": (base, index)
        for base in prepared.expanding
        for index in range(len(params[base]))
    }
    plan: list[Step] = []
    for name in names:
        processor = processors.get(name)
        if name in expanded:
            base, index = expanded[name]
            if positional and plan and plan[-1][0] == ITEMS and plan[-1][1] == base:
                continue  # the whole list is already planned here
            if positional and index == 0:
                plan.append((ITEMS, base, processor, name, 0))
            else:
                plan.append((ITEM, base, processor, name, index))
        elif name in params and name not in prepared.expanding:
            plan.append((PARAM, name, processor, name, 0))
        else:
            value = state.parameters[name]
            plan.append((STATIC, value if processor is None else processor(value), None, name, 0))
    return _Rendered(state.statement, _argument_builder(plan, positional))


class Query:
    """A statement of the read path, compiled once per dialect."""

    def __init__(self, statement: Select[Any] | CompoundSelect[Any] | TextualSelect) -> None:
        self.statement = statement
        self._compiled: dict[str, _Compiled] = {}
        self._rendered: dict[tuple[str, tuple[int, ...]], _Rendered] = {}

    def _compile(self, dialect: Dialect) -> _Compiled:
        found = self._compiled.get(dialect.name)
        if found is None:
            compiled = self.statement.compile(dialect=dialect)
            assert isinstance(compiled, SQLCompiler)
            expanding = tuple(name for name, bind in compiled.binds.items() if bind.expanding)
            found = _Compiled(compiled, expanding)
            self._compiled[dialect.name] = found
        return found

    def _arguments(
        self, dialect: Dialect, prepared: _Compiled, params: Mapping[str, Any]
    ) -> tuple[str, Any]:
        """The SQL and DBAPI arguments for ``params``.

        The SQL and the function building the arguments are made once per shape (the
        lengths of the ``IN`` lists); a call only fills in the caller's values.
        """
        expanding = prepared.expanding
        shape = (
            dialect.name,
            tuple([len(params[name]) for name in expanding]) if expanding else (),
        )
        rendered = self._rendered.get(shape)
        if rendered is None:
            rendered = self._rendered[shape] = _render(prepared, dialect, params)
        return rendered.sql, rendered.arguments(params)

    def _row_maker(
        self, dialect: Dialect, description: Any
    ) -> Callable[[Sequence[Any]], dict[str, Any]]:
        """A function from a DBAPI row to its dict (``row_builder``), as the driver
        described the result: labels and type codes."""
        return row_builder(
            [
                (str(described[0]), column.type, described[1])
                for column, described in zip(
                    self.statement.selected_columns, description, strict=True
                )
            ],
            dialect,
        )

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row for ``params``, as dicts keyed by column label."""
        dialect = conn.dialect
        prepared = self._compile(dialect)
        sql, arguments = self._arguments(dialect, prepared, params)
        dbapi_connection = conn.connection.dbapi_connection
        assert dbapi_connection is not None
        # Counted here rather than by an engine event: with a listener, every statement
        # pays for SQLAlchemy's dispatch of two events, several microseconds.
        TALLY.statements += 1
        if dialect.is_async:
            return self._fetch(conn, dbapi_connection, prepared, sql, arguments)
        cursor = dbapi_connection.cursor()
        # SQLAlchemy's own test for listeners (``Connection._execute_context``).
        events = conn._has_events or conn.engine._has_events
        try:
            if events:
                conn.dispatch.before_cursor_execute(conn, cursor, sql, arguments, None, False)
            cursor.execute(sql, arguments)
            if events:
                conn.dispatch.after_cursor_execute(conn, cursor, sql, arguments, None, False)
            fetched = cursor.fetchall()
            make_row = prepared.make_row
            if make_row is None:
                make_row = prepared.make_row = self._row_maker(dialect, cursor.description)
        except dialect.loaded_dbapi.Error as error:
            raise _wrapped(conn, error, dbapi_connection, cursor, sql, arguments) from error
        finally:
            cursor.close()
        return [make_row(row) for row in fetched]

    def _fetch(
        self, conn: Connection, adapted: Any, prepared: _Compiled, sql: str, arguments: Any
    ) -> list[dict[str, Any]]:
        """``rows`` on asyncpg: the statement straight on the driver's connection.

        SQLAlchemy's asyncpg adapter emulates a DBAPI cursor around each statement (a
        lock, a prepared-statement cache of its own, a cursor description and a status
        parse per call); asyncpg keeps prepared statements itself. Errors are translated
        by the adapter, so they reach the caller as from ``Connection.execute``.
        """
        dialect = conn.dialect
        driver = adapted._connection
        events = conn._has_events or conn.engine._has_events
        try:
            if events:
                conn.dispatch.before_cursor_execute(conn, None, sql, arguments, None, False)
            make_row = prepared.make_row
            if make_row is None:
                statement = await_only(driver.prepare(sql))
                described = [(a.name, a.type.oid) for a in statement.get_attributes()]
                make_row = prepared.make_row = self._row_maker(dialect, described)
            records = await_only(driver.fetch(sql, *arguments))
            if events:
                conn.dispatch.after_cursor_execute(conn, None, sql, arguments, None, False)
        except Exception as raw:
            try:
                adapted._handle_exception(raw)
            except dialect.loaded_dbapi.Error as error:
                raise _wrapped(conn, error, adapted, None, sql, arguments) from error
            raise
        return [make_row(record) for record in records]


def _wrapped(
    conn: Connection, error: Any, dbapi_connection: Any, cursor: Any, sql: str, arguments: Any
) -> StatementError:
    """A driver error as ``Connection.execute`` raises it: SQLAlchemy's ``DBAPIError``
    family, the connection invalidated when the error says it was lost."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(error, dbapi_connection, cursor)
    if lost:
        conn.invalidate(error)
    wrapped: StatementError = DBAPIError.instance(
        sql,
        arguments,
        error,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
    return wrapped


def row_builder(
    columns: Sequence[tuple[str, TypeEngine[Any], Any]], dialect: Dialect
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function from a row (a sequence of values) to its dict, given each column's
    label, type and the driver's type code: one dict display, result processors inline
    (generated once, ``generated.define``)."""
    namespace: dict[str, Any] = {}
    items = []
    for index, (label, column_type, type_code) in enumerate(columns):
        processor = column_type.dialect_impl(dialect).result_processor(dialect, type_code)
        value = f"row[{index}]"
        if processor is not None:
            namespace[f"p{index}"] = processor
            value = f"p{index}({value})"
        items.append(f"{label!r}: {value}")
    source = f"def make_row(row):\n    return {{{', '.join(items)}}}"
    maker: Callable[[Sequence[Any]], dict[str, Any]] = define(
        source, "make_row", namespace, "row builder"
    )
    return maker


class QueryCache:
    """Queries built on first use and kept by key.

    Keys include a projection's columns, and distinct ``fields`` selections make
    distinct queries: past ``limit`` entries the cache starts again empty, so memory
    stays bounded whatever requests arrive.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._queries: dict[Hashable, Query] = {}

    def get(self, key: Hashable, build: Callable[[], Select[Any]]) -> Query:
        """The query for ``key``, made from ``build()`` the first time."""
        query = self._queries.get(key)
        if query is None:
            if len(self._queries) >= self.limit:
                self._queries.clear()
            query = self._queries[key] = Query(build())
        return query
