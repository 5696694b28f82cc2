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
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BindParameter, Connection, Integer, Select, bindparam

from coursebook.access import PROVIDER_ID, Access, Scope
from coursebook.errors import ApiError
from coursebook.graph import RESOURCES, Field, Row, select_columns
from coursebook.projection import Projection
from coursebook.query import Query, QueryCache

PARENT = "_parent"
KEYS: BindParameter[Any] = bindparam("keys", expanding=True)
LIMIT = bindparam("limit", type_=Integer)

_queries = QueryCache(limit=2048)


def relation_query(
    relation_field: Field, scope: Scope, columns: frozenset[str] | None = None
) -> Query:
    """The query loading ``relation_field``'s targets under ``scope`` (cached).

    It selects ``columns`` of the target (all for None), takes the parent keys as
    ``keys`` and, for to-many relations, a row ``limit``.
    """
    return _queries.get(
        (id(relation_field), scope.name, columns),
        lambda: _relation_statement(relation_field, scope, columns),
    )


def _relation_statement(
    relation_field: Field, scope: Scope, columns: frozenset[str] | None
) -> Select[Any]:
    relation = relation_field.relation
    assert relation is not None
    target = RESOURCES[relation.target]
    table = target.table
    if columns is not None and relation.foreign_key is not None:
        columns = columns | {relation.foreign_key}  # the loader groups rows by it
    statement = (
        select_columns(target.name, columns)
        .order_by(*target.order_by)
        .where(*scope.filters(target.name))
    )
    if target.provider_column is not None:
        statement = statement.where(target.provider_column == PROVIDER_ID)
    if not relation.many:
        return statement.where(table.c.id.in_(KEYS))
    if relation.through is not None:
        link = relation.through.table
        return (
            statement.add_columns(link.c[relation.through.parent].label(PARENT))
            .join(link, link.c[relation.through.child] == table.c.id)
            .where(link.c[relation.through.parent].in_(KEYS))
            .limit(LIMIT)
        )
    assert relation.foreign_key is not None
    return statement.where(table.c[relation.foreign_key].in_(KEYS)).limit(LIMIT)


@dataclass(slots=True)
class Level:
    """The rows of one projection level's relations, keyed by the parent they hang off."""

    children: dict[str, Related] = field(default_factory=dict)


@dataclass(slots=True)
class Related:
    """Loaded rows of one relation: by parent id (to-many) or by target id (to-one)."""

    projection: Projection
    many: bool
    rows: dict[Any, Any]
    level: Level
    #: Rendered objects by id, filled as rendering first meets each (see ``render``).
    rendered: dict[Any, Any] = field(default_factory=dict)


class ExpansionTooLarge(ApiError):
    """Raised when a response would hold more objects than the budget allows."""


@dataclass
class Loader:
    """Loads the relations a projection expands, level by level, for one request."""

    conn: Connection
    access: Access
    budget: int
    base_url: str
    rendered: int = 0

    def load(
        self, projection: Projection, rows: Sequence[Row], counts: dict[Any, int], path: str = ""
    ) -> Level:
        """Load every relation ``projection`` expands below ``rows``.

        ``counts`` says how many times each row (by id) is rendered, so that the budget
        counts objects in the response, not rows in the database.
        """
        level = Level()
        for relation_field, child in projection.children:
            level.children[relation_field.name] = self._load_relation(
                relation_field, child, rows, counts, f"{path}{relation_field.name}"
            )
        return level

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
        self, relation_field: Field, child: Projection, keys: set[Any], limit: int | None
    ) -> list[dict[str, Any]]:
        if not keys:
            return []
        params: dict[str, Any] = {**self.access.params, KEYS.key: sorted(keys)}
        if limit is not None:
            params[LIMIT.key] = limit
        query = relation_query(relation_field, self.access.scope, child.columns)
        return query.rows(self.conn, params)

    def _load_relation(
        self,
        relation_field: Field,
        child: Projection,
        rows: Sequence[Row],
        counts: dict[Any, int],
        path: str,
    ) -> Related:
        relation = relation_field.relation
        assert relation is not None
        child_counts: dict[Any, int] = defaultdict(int)
        if not relation.many:
            assert relation.key is not None
            keys = {row[relation.key] for row in rows if row[relation.key] is not None}
            loaded = self._fetch(relation_field, child, keys, None)
            by_id = {row["id"]: row for row in loaded}
            for row in rows:
                if row[relation.key] in by_id:
                    child_counts[row[relation.key]] += counts[row["id"]]
            self.spend(sum(child_counts.values()), path)
            return Related(child, False, by_id, self.load(child, loaded, child_counts, path + "."))

        parent_key = PARENT if relation.through is not None else relation.foreign_key
        assert parent_key is not None
        url = None
        if relation_field.collection is not None and len(rows) == 1:
            url = relation_field.collection(rows[0])
        # Never fetch more rows than the budget could still render.
        remaining = max(self.budget - self.rendered, 0)
        loaded = self._fetch(relation_field, child, {row["id"] for row in rows}, remaining + 1)
        by_parent: dict[Any, list[Row]] = defaultdict(list)
        unique: dict[Any, Row] = {}
        for row in loaded:
            by_parent[row[parent_key]].append(row)
            unique.setdefault(row["id"], row)
            child_counts[row["id"]] += counts[row[parent_key]]
        self.spend(max(sum(child_counts.values()), len(loaded)), path, url)
        level = self.load(child, list(unique.values()), child_counts, path + ".")
        return Related(child, True, by_parent, level)
