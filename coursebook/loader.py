"""Batched loading: one SELECT per expanded relation and level, however many rows (on
PostgreSQL, one SELECT per level: every relation of the level in one round trip).

The loader receives a compiled ``Projection`` and the request's ``Access`` decision;
it never reads the request. Every object a response will render is counted against
the expansion budget while loading, so an oversized request fails before rendering.

Statements are built once per (relation, access scope, columns read) with bound
parameters and kept: a request only supplies the keys, so SQLAlchemy neither
rebuilds nor re-keys them on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Integer,
    ScalarSelect,
    Select,
    any_,
    bindparam,
    cast,
    select,
)
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.types import Float, NullType, Numeric, TypeEngine

from coursebook.access import Access, Scope
from coursebook.errors import ApiError
from coursebook.fields import (
    PROVIDER_ID,
    ForeignKey,
    Many,
    Relation,
    Row,
    Through,
    ToMany,
    ToOne,
    select_columns,
)
from coursebook.graph import RESOURCES
from coursebook.memo import NO_MEMO, VERSION, WRITE_COUNT, Memo
from coursebook.models import Id
from coursebook.projection import Projection
from coursebook.query import Query, QueryCache, row_builder

PARENT = "_parent"
KEYS: BindParameter[Any] = bindparam("keys", expanding=True)
LIMIT = bindparam("limit", type_=Integer)

_queries = QueryCache(limit=2048)


def relation_query(relation: Relation, scope: Scope, columns: frozenset[str]) -> Query:
    """The query loading ``relation``'s targets under ``scope`` (cached).

    It selects ``columns`` of the target, takes the parent keys as ``keys`` and, for
    to-many relations, a row ``limit``.
    """
    return _queries.get(
        (id(relation), scope.name, columns),
        lambda: _relation_statement(relation, scope, columns),
    )


def _relation_statement(
    relation: Relation,
    scope: Scope,
    columns: frozenset[str],
    keys: Callable[[ColumnElement[Any]], ColumnElement[bool]] = lambda column: column.in_(KEYS),
    limit: BindParameter[Any] | ScalarSelect[Any] = LIMIT,
) -> Select[Any]:
    """``relation``'s targets under ``scope``: ``columns`` of them, the ones whose key
    ``keys`` accepts (``IN`` the expanding ``keys`` parameter), at most ``limit`` rows
    for a to-many relation."""
    target = RESOURCES[relation.target]
    table = target.table
    match relation:
        case Many(link=ForeignKey(column)):
            columns = columns | {column}  # the loader groups rows by it
    statement = (
        select_columns(target, columns)
        .order_by(*target.order_by)
        .where(*scope.filters(target.name))
    )
    if target.provider_column is not None:
        statement = statement.where(target.provider_column == PROVIDER_ID)
    match relation:
        case ToOne():
            return statement.where(keys(table.c.id))
        case Many(link=Through(link, parent, child)):
            return (
                statement.add_columns(link.c[parent].label(PARENT))
                .join(link, link.c[child] == table.c.id)
                .where(keys(link.c[parent]))
                .limit(limit)
            )
        case Many(link=ForeignKey(column)):
            return statement.where(keys(table.c[column])).limit(limit)
    raise TypeError(f"{relation.name}: not a relation the loader knows")


class _Fetch(NamedTuple):
    """One relation's targets to read for a level: their keys, and a row limit for a
    to-many relation."""

    relation: Relation
    child: Projection
    keys: list[Any]
    limit: int | None


class RowsOf(ColumnElement[Any]):
    """A statement's rows as one array of row values (PostgreSQL's
    ``ARRAY(SELECT t FROM (...) AS t)``), each row typed as its columns are."""

    type = NullType()
    inherit_cache = False

    def __init__(self, statement: Select[Any]) -> None:
        self.statement = statement


@compiles(RowsOf, "postgresql")
def _rows_of(element: RowsOf, compiler: SQLCompiler, **kw: Any) -> str:
    inner = compiler.process(element.statement, asfrom=True, **_inner(kw))
    return f"ARRAY(SELECT t FROM ({inner}) AS t)"


def _inner(kw: dict[str, Any]) -> dict[str, Any]:
    """The compiler's keywords, without those that describe the enclosing column."""
    outer = ("within_columns_clause", "add_to_result_map", "within_label_clause")
    return {key: value for key, value in kw.items() if key not in outer}


class LevelQuery(NamedTuple):
    """PostgreSQL: one statement reading every relation of a level, and for each of
    them the function turning one of its row values into a row dict."""

    query: Query
    rows: tuple[Callable[[Sequence[Any]], dict[str, Any]], ...]


_levels: dict[tuple[Any, ...], LevelQuery] = {}


def _opaque(value: ColumnElement[Any]) -> ScalarSelect[Any]:
    """``value`` as a subquery, ``(SELECT value)``: the planner sees a value it cannot
    look into, in every plan of the statement.

    PostgreSQL plans a prepared statement's first executions for their parameters'
    values (custom plans), then keeps a generic plan only if its estimate is no worse
    than theirs. With the keys in view, a custom plan of a level statement expects a
    key or two where the generic one must guess, so it stays custom, and every request
    plans it again: on the large dataset that planning cost more than running the
    statement, and R2 read a third fewer requests a second than with generic plans.
    With the keys and limits behind subqueries, both plans are the same, and the
    generic one is kept after the fifth execution.
    """
    return select(value).scalar_subquery()


def _any_of(name: str) -> Callable[[ColumnElement[Any]], ColumnElement[bool]]:
    """A key condition taking its keys as one array parameter, ``name``: ``= ANY(...)``
    (``_opaque``)."""
    # Cast, so that ``ANY`` takes the array's elements: ``ANY ((SELECT ...))`` would
    # compare with the subquery's rows (one: the array).
    keys = cast(_opaque(bindparam(name, type_=ARRAY(Id))), ARRAY(Id))

    def condition(column: ColumnElement[Any]) -> ColumnElement[bool]:
        return column == any_(keys)

    return condition


def level_query(fetches: Sequence[_Fetch], scope: Scope, dialect: Dialect) -> LevelQuery:
    """The statement reading ``fetches`` in one round trip (cached by their relations,
    columns and scope): each relation's rows as one array column (``RowsOf``), its
    keys bound as one array (one SQL text whatever their number), and the write count
    beside them (``Memo.observe``)."""
    key = (scope.name, tuple((id(f.relation), f.child.columns) for f in fetches))
    found = _levels.get(key)
    if found is not None:
        return found
    branches = [
        _relation_statement(
            f.relation,
            scope,
            f.child.columns,
            keys=_any_of(f"keys_{n}"),
            limit=_opaque(bindparam(f"limit_{n}", type_=Integer)),
        )
        for n, f in enumerate(fetches)
    ]
    statement = select(
        *[RowsOf(branch).label(f"rows_{n}") for n, branch in enumerate(branches)],
        WRITE_COUNT.label(VERSION),
    )
    found = LevelQuery(Query(statement), tuple(_row_builder(b, dialect) for b in branches))
    if len(_levels) >= 1024:
        _levels.clear()
    _levels[key] = found
    return found


def _type_code(column_type: TypeEngine[Any]) -> int | None:
    """The PostgreSQL type a column of ``column_type`` has, where its result processor
    asks (numbers: the driver gives ``float`` or ``Decimal`` by type); a row value does
    not describe its fields as a statement's result does."""
    if isinstance(column_type, Float):
        return FLOAT8
    if isinstance(column_type, Numeric):
        return NUMERIC
    return None


#: PostgreSQL's type codes of ``double precision`` and ``numeric``.
FLOAT8, NUMERIC = 701, 1700


def _row_builder(
    statement: Select[Any], dialect: Dialect
) -> Callable[[Sequence[Any]], dict[str, Any]]:
    """A function from one of ``statement``'s row values to its dict, as ``Query`` makes
    for a statement's own rows."""
    return row_builder(
        [
            (str(column.key), column.type, _type_code(column.type))
            for column in statement.selected_columns
        ],
        dialect,
    )


def _parent_key(relation: Relation) -> str:
    """The key of a loaded to-many row that holds its parent's id."""
    match relation:
        case Many(link=ForeignKey(column)):
            return column
    return PARENT


#: Each relation's parent key, worked out once (by the relation's identity).
_PARENT_KEYS = {
    id(relation): _parent_key(relation)
    for resource in RESOURCES.values()
    for relation in resource.relations
}


class Loaded(NamedTuple):
    """One relation's rows for a level: by target id (to-one) or by parent id (to-many),
    and the relations loaded below them, in the order of the projection's children."""

    rows: dict[Any, Any]
    children: tuple[Loaded, ...]


class ExpansionTooLarge(ApiError):
    """Raised when a response would hold more objects than the budget allows."""


def load(
    conn: Connection,
    access: Access,
    projection: Projection,
    rows: Sequence[Row],
    *,
    budget: int,
    base_url: str,
    memo: Memo = NO_MEMO,
) -> tuple[Loaded, ...]:
    """Every relation ``projection`` expands below its own ``rows``, level by level.

    The rows are read first, a level at a time (``_Loader.read``): on SQLite one
    statement per relation, on PostgreSQL one per level (``level_query``), which also
    shows ``memo`` the write count it read. Then they are put together, relation by
    relation: the rows themselves count against the budget (one object each), then every
    object loaded below them, as many times as it will be rendered.
    """
    if not projection.children and len(rows) <= budget:
        return ()
    loader = _Loader(conn, access, budget, base_url, memo, room=max(budget - len(rows), 0) + 1)
    if reads_count_per_level(conn):
        loader.read(projection, rows)
    loader.spend(len(rows), projection.resource.name)
    return loader.level(projection, rows, {row["id"]: 1 for row in rows})


def reads_count_per_level(conn: Connection) -> bool:
    """Whether a level of relations is read in one statement with the write count
    (PostgreSQL: a round trip each, so a snapshot's BEGIN would cost one more), rather
    than a statement per relation, which needs the object's snapshot (SQLite)."""
    return conn.dialect.name == "postgresql"


class _Loader:
    """The state of one request's loading: where, for whom, and the budget spent."""

    __slots__ = ("access", "base_url", "budget", "conn", "memo", "read_rows", "rendered", "room")

    def __init__(
        self,
        conn: Connection,
        access: Access,
        budget: int,
        base_url: str,
        memo: Memo,
        *,
        room: int,
    ) -> None:
        self.conn = conn
        self.access = access
        self.budget = budget
        self.base_url = base_url
        self.memo = memo
        #: The most rows a to-many relation reads: one more than the budget has room
        #: for after the top rows, enough to tell that a response would be too large.
        self.room = room
        self.rendered = 0
        #: The rows read ahead for each relation of the projection (``read``), by its
        #: dotted path.
        self.read_rows: dict[str, list[dict[str, Any]]] = {}

    def read(self, projection: Projection, rows: Sequence[Row]) -> None:
        """Read the rows of every relation below ``rows`` ahead, a level at a time, each
        level in one statement (PostgreSQL: ``level_query``). Without it, ``_relation``
        reads each relation's rows as it puts them together (SQLite)."""
        room = self.room
        frontier: list[tuple[str, Projection, Sequence[Row]]] = [("", projection, rows)]
        while frontier:
            wanted: list[tuple[str, _Fetch]] = []
            for path, parent, parent_rows in frontier:
                for relation, child in parent.children:
                    if isinstance(relation, ToOne):
                        key = relation.key
                        keys = {row[key] for row in parent_rows if row[key] is not None}
                        fetch = _Fetch(relation, child, sorted(keys), None)
                    else:
                        ids = {row["id"] for row in parent_rows}
                        fetch = _Fetch(relation, child, sorted(ids), room)
                    wanted.append((f"{path}{relation.name}", fetch))
            frontier = []
            for (path, fetch), loaded in zip(
                wanted, self._read_level([f for _, f in wanted]), strict=True
            ):
                self.read_rows[path] = loaded
                if fetch.child.children:
                    if not isinstance(fetch.relation, ToOne):  # each target once
                        loaded = list({row["id"]: row for row in reversed(loaded)}.values())
                    frontier.append((path + ".", fetch.child, loaded))

    def _read_level(self, fetches: list[_Fetch]) -> list[list[dict[str, Any]]]:
        """The rows of each of ``fetches`` (none for one without keys), in one statement
        that also reads the write count."""
        read: list[list[dict[str, Any]]] = [[] for _ in fetches]
        live = [(n, fetch) for n, fetch in enumerate(fetches) if fetch.keys]
        if not live:
            return read
        scope = self.access.scope
        level = level_query([fetch for _, fetch in live], scope, self.conn.dialect)
        params: dict[str, Any] = dict(self.access.params)
        for m, (_, fetch) in enumerate(live):
            params[f"keys_{m}"] = fetch.keys
            if fetch.limit is not None:
                params[f"limit_{m}"] = fetch.limit
        (row,) = level.query.rows(self.conn, params)
        self.memo.observe(row[VERSION])
        for m, (n, _) in enumerate(live):
            make_row = level.rows[m]
            read[n] = [make_row(value) for value in row[f"rows_{m}"]]
        return read

    def level(
        self, projection: Projection, rows: Sequence[Row], counts: dict[Any, int], path: str = ""
    ) -> tuple[Loaded, ...]:
        """Put together every relation ``projection`` expands below ``rows``.

        ``counts`` says how many times each row (by id) is rendered, so that the budget
        counts objects in the response, not rows in the database.
        """
        if not projection.children:
            return ()
        return tuple(
            [
                self._relation(relation, child, rows, counts, f"{path}{relation.name}")
                for relation, child in projection.children
            ]
        )

    def spend(self, objects: int, path: str, url: str | None = None) -> None:
        """Count ``objects`` more against the budget; 400 naming ``url`` past it."""
        self.rendered += objects
        if self.rendered > self.budget:
            hint = f" Page through {self.base_url}{url} instead." if url else ""
            raise ExpansionTooLarge(
                400,
                "parameter_invalid",
                field_errors={
                    "expand": [
                        f"Expanding '{path}' would put more than {self.budget} objects "
                        f"in one response.{hint}"
                    ]
                },
            )

    def _fetch(
        self, relation: Relation, child: Projection, keys: set[Any], limit: int | None
    ) -> list[dict[str, Any]]:
        """``relation``'s targets for ``keys``, at most ``limit`` rows, in a statement
        of their own (SQLite: the request's snapshot keeps them consistent)."""
        if not keys:
            return []
        params: dict[str, Any] = {**self.access.params, KEYS.key: sorted(keys)}
        if limit is not None:
            params[LIMIT.key] = limit
        return relation_query(relation, self.access.scope, child.columns).rows(self.conn, params)

    def _relation(
        self,
        relation: Relation,
        child: Projection,
        rows: Sequence[Row],
        counts: dict[Any, int],
        path: str,
    ) -> Loaded:
        child_counts: dict[Any, int] = defaultdict(int)
        if isinstance(relation, ToOne):
            key = relation.key
            loaded = self.read_rows.get(path)
            if loaded is None:
                keys = {row[key] for row in rows if row[key] is not None}
                loaded = self._fetch(relation, child, keys, None)
            by_id = {row["id"]: row for row in loaded}
            for row in rows:
                if row[key] in by_id:
                    child_counts[row[key]] += counts[row["id"]]
            self.spend(sum(child_counts.values()), path)
            return Loaded(by_id, self.level(child, loaded, child_counts, path + "."))

        parent_key = _PARENT_KEYS[id(relation)]
        loaded = self.read_rows.get(path)
        if loaded is None:
            loaded = self._fetch(relation, child, {row["id"] for row in rows}, self.room)
        by_parent: dict[Any, list[Row]] = defaultdict(list)
        unique: dict[Any, Row] = {}
        for row in loaded:
            by_parent[row[parent_key]].append(row)
            unique.setdefault(row["id"], row)
            child_counts[row["id"]] += counts[row[parent_key]]
        objects = max(sum(child_counts.values()), len(loaded))
        url = None
        if (
            self.rendered + objects > self.budget
            and isinstance(relation, ToMany)
            and len(rows) == 1
        ):
            url = relation.path(rows[0])  # one parent: its related collection can be paged
        self.spend(objects, path, url)
        return Loaded(by_parent, self.level(child, list(unique.values()), child_counts, path + "."))
