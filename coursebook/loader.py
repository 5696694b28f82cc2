"""Batched loading: one SELECT per expanded relation and level, however many rows.

The loader receives a compiled ``Projection`` and the request's ``Access`` decision;
it never reads the request. Every object a response will render is counted against
the expansion budget while loading, so an oversized request fails before rendering.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import ColumnElement, Connection, Select

from coursebook.access import Access
from coursebook.errors import ApiError
from coursebook.graph import RESOURCES, Field, Resource, Row
from coursebook.projection import Projection

PARENT = "_parent"


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


class ExpansionTooLarge(ApiError):
    """Raised when a response would hold more objects than the budget allows."""


@dataclass
class Loader:
    """Loads the relations a projection expands, level by level, for one request."""

    conn: Connection
    access: Access
    budget: int
    base_url: str
    statements: int = 0
    rendered: int = 0

    def fetch(self, resource: Resource, statement: Select[Any]) -> list[Row]:
        """Run a resource's statement under the access filters for that resource."""
        if resource.provider_column is not None:
            statement = statement.where(resource.provider_column == self.access.provider_id)
        statement = statement.where(*self.access.filters(resource.name))
        self.statements += 1
        return list(self.conn.execute(statement).mappings())

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
        target = RESOURCES[relation.target]
        table = target.table
        statement = target.statement.order_by(*target.order_by)
        child_counts: dict[Any, int] = defaultdict(int)
        if not relation.many:
            assert relation.key is not None
            keys = {row[relation.key] for row in rows if row[relation.key] is not None}
            loaded = self._fetch_in(target, statement, table.c.id, keys)
            by_id = {row["id"]: row for row in loaded}
            for row in rows:
                if row[relation.key] in by_id:
                    child_counts[row[relation.key]] += counts[row["id"]]
            self.spend(sum(child_counts.values()), path)
            return Related(child, False, by_id, self.load(child, loaded, child_counts, path + "."))

        if relation.through is not None:
            link = relation.through.table
            statement = statement.add_columns(link.c[relation.through.parent].label(PARENT)).join(
                link, link.c[relation.through.child] == table.c.id
            )
            parent_column: ColumnElement[Any] = link.c[relation.through.parent]
            parent_key = PARENT
        else:
            assert relation.foreign_key is not None
            parent_column = table.c[relation.foreign_key]
            parent_key = relation.foreign_key
        url = None
        if relation_field.collection is not None and len(rows) == 1:
            url = relation_field.collection(rows[0])
        # Never fetch more rows than the budget could still render.
        remaining = max(self.budget - self.rendered, 0)
        loaded = self._fetch_in(
            target, statement.limit(remaining + 1), parent_column, {row["id"] for row in rows}
        )
        by_parent: dict[Any, list[Row]] = defaultdict(list)
        unique: dict[Any, Row] = {}
        for row in loaded:
            by_parent[row[parent_key]].append(row)
            unique.setdefault(row["id"], row)
            child_counts[row["id"]] += counts[row[parent_key]]
        self.spend(max(sum(child_counts.values()), len(loaded)), path, url)
        level = self.load(child, list(unique.values()), child_counts, path + ".")
        return Related(child, True, by_parent, level)

    def _fetch_in(
        self,
        resource: Resource,
        statement: Select[Any],
        column: ColumnElement[Any],
        keys: set[Any],
    ) -> list[Row]:
        if not keys:
            return []
        return self.fetch(resource, statement.where(column.in_(sorted(keys))))
