"""Batched loading: one SELECT per expanded relation and level, however many rows.

The loader receives a compiled ``Projection`` and the request's ``Access`` decision;
it never reads the request. Every object a response will render is counted against
the expansion budget while loading, so an oversized request fails before rendering.

Statements are built once per (relation, access scope, columns read) with bound
parameters and kept: a request only supplies the keys, so SQLAlchemy neither
rebuilds nor re-keys them on the hot path.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any, NamedTuple

from sqlalchemy import BindParameter, Connection, Integer, Select, bindparam

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
from coursebook.projection import Projection
from coursebook.query import Query, QueryCache

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


def _relation_statement(relation: Relation, scope: Scope, columns: frozenset[str]) -> Select[Any]:
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
            return statement.where(table.c.id.in_(KEYS))
        case Many(link=Through(link, parent, child)):
            return (
                statement.add_columns(link.c[parent].label(PARENT))
                .join(link, link.c[child] == table.c.id)
                .where(link.c[parent].in_(KEYS))
                .limit(LIMIT)
            )
        case Many(link=ForeignKey(column)):
            return statement.where(table.c[column].in_(KEYS)).limit(LIMIT)
    raise TypeError(f"{relation.name}: not a relation the loader knows")


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
) -> tuple[Loaded, ...]:
    """Every relation ``projection`` expands below its own ``rows``, level by level.

    The rows themselves count against the budget (one object each), then every object
    loaded below them, as many times as it will be rendered.
    """
    if not projection.children and len(rows) <= budget:
        return ()
    loader = _Loader(conn, access, budget, base_url)
    loader.spend(len(rows), projection.resource.name)
    return loader.level(projection, rows, {row["id"]: 1 for row in rows})


class _Loader:
    """The state of one request's loading: where, for whom, and the budget spent."""

    __slots__ = ("access", "base_url", "budget", "conn", "rendered")

    def __init__(self, conn: Connection, access: Access, budget: int, base_url: str) -> None:
        self.conn = conn
        self.access = access
        self.budget = budget
        self.base_url = base_url
        self.rendered = 0

    def level(
        self, projection: Projection, rows: Sequence[Row], counts: dict[Any, int], path: str = ""
    ) -> tuple[Loaded, ...]:
        """Load every relation ``projection`` expands below ``rows``.

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
        if not keys:
            return []
        params: dict[str, Any] = {**self.access.params, KEYS.key: sorted(keys)}
        if limit is not None:
            params[LIMIT.key] = limit
        query = relation_query(relation, self.access.scope, child.columns)
        return query.rows(self.conn, params)

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
            keys = {row[key] for row in rows if row[key] is not None}
            loaded = self._fetch(relation, child, keys, None)
            by_id = {row["id"]: row for row in loaded}
            for row in rows:
                if row[key] in by_id:
                    child_counts[row[key]] += counts[row["id"]]
            self.spend(sum(child_counts.values()), path)
            return Loaded(by_id, self.level(child, loaded, child_counts, path + "."))

        parent_key = _PARENT_KEYS[id(relation)]
        # Never fetch more rows than the budget could still render.
        remaining = max(self.budget - self.rendered, 0)
        loaded = self._fetch(relation, child, {row["id"] for row in rows}, remaining + 1)
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
