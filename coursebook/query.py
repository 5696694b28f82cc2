"""Hot-path queries: Core statements compiled once, executed on the DBAPI cursor.

SQLAlchemy builds and compiles every statement of the read path (dialect-specific
SQL, bind and result type processing). Executing a compiled statement through
``Connection.execute`` adds several times the driver's own time in bookkeeping
(``python -m bench.query_overhead`` measures both); on a path that runs two to
fifteen statements per request, that is most of the request. ``Query`` keeps
SQLAlchemy's compilation and type processors, and hands the SQL straight to the
driver's cursor. The engine's
``before_cursor_execute`` / ``after_cursor_execute`` events still fire (the
statement counter and any instrumentation see every statement), and driver errors
are wrapped as SQLAlchemy's ``DBAPIError`` family exactly as ``execute`` would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import CompoundSelect, Connection, Select
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.compiler import SQLCompiler


@dataclass(slots=True)
class _Compiled:
    compiled: SQLCompiler
    #: Names of expanding (``IN``) parameters: their SQL depends on the list lengths.
    expanding: tuple[str, ...]
    #: Result processors by column position, known once the driver has described the
    #: result (some dialects choose them by the column's type code).
    converters: tuple[tuple[int, Callable[[Any], Any]], ...] | None = None


@dataclass(frozen=True, slots=True)
class _Rendered:
    """SQL and parameter order for one shape of parameters."""

    sql: str
    order: tuple[str, ...] | None
    processors: Mapping[str, Callable[[Any], Any]]


class Query:
    """A statement of the read path, compiled once per dialect."""

    def __init__(self, statement: Select[Any] | CompoundSelect[Any]) -> None:
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
        """The SQL and DBAPI arguments for ``params``."""
        shape = (dialect.name, tuple(len(params[name]) for name in prepared.expanding))
        rendered = self._rendered.get(shape)
        if rendered is None or prepared.expanding:
            state = prepared.compiled.construct_expanded_state(params)
            values: dict[str, Any] = dict(state.parameters)
            order = None if state.positiontup is None else tuple(state.positiontup)
            rendered = _Rendered(state.statement, order, state.processors)
            if not prepared.expanding:
                self._rendered[shape] = rendered
        else:
            values = dict(prepared.compiled.construct_params(params))
        processors = rendered.processors
        for key, processor in processors.items():
            values[key] = processor(values[key])
        if rendered.order is not None and dialect.positional:
            return rendered.sql, tuple(values[key] for key in rendered.order)
        return rendered.sql, values

    def _converters(
        self, dialect: Dialect, description: Any
    ) -> tuple[tuple[int, Callable[[Any], Any]], ...]:
        processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, described[1])
            for column, described in zip(self.statement.selected_columns, description, strict=True)
        ]
        return tuple((i, p) for i, p in enumerate(processors) if p is not None)

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        """Every row for ``params``, as dicts keyed by column label."""
        dialect = conn.dialect
        prepared = self._compile(dialect)
        sql, arguments = self._arguments(dialect, prepared, params)
        cursor = conn.connection.cursor()
        try:
            conn.dispatch.before_cursor_execute(conn, cursor, sql, arguments, None, False)
            cursor.execute(sql, arguments)
            conn.dispatch.after_cursor_execute(conn, cursor, sql, arguments, None, False)
            description = cursor.description
            fetched = cursor.fetchall()
        except dialect.loaded_dbapi.Error as error:
            if dialect.is_disconnect(error, conn.connection.dbapi_connection, cursor):
                conn.invalidate(error)
            raise DBAPIError.instance(
                sql, arguments, error, dialect.loaded_dbapi.Error, dialect=dialect
            ) from error
        finally:
            cursor.close()
        keys = [column[0] for column in description]
        converters = prepared.converters
        if converters is None:
            converters = prepared.converters = self._converters(dialect, description)
        if not converters:
            return [dict(zip(keys, row, strict=True)) for row in fetched]
        result = []
        for row in fetched:
            values = list(row)
            for index, processor in converters:
                values[index] = processor(values[index])
            result.append(dict(zip(keys, values, strict=True)))
        return result
