"""Use cases behind the routes: retrieve a course session, list a collection."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, bindparam, func, select

from coursebook.access import PROVIDER_ID, Access, Scope
from coursebook.errors import ApiError, not_found
from coursebook.graph import COURSE_SESSION, RenderContext, Resource, select_columns
from coursebook.listing import Listing, ListQuery
from coursebook.loader import Loader
from coursebook.memo import Memo
from coursebook.models import MAX_ID, Id, course_sessions
from coursebook.projection import Projection
from coursebook.query import Query, QueryCache
from coursebook.render import render

PERMITTED = "_permitted"


SESSION_ID = bindparam("session_id", type_=Id)
_retrieve_queries = QueryCache(limit=1024)


def _retrieve_query(scope: Scope, columns: frozenset[str] | None) -> Query:
    """The root query of a retrieve under ``scope`` selecting ``columns``, built once."""
    return _retrieve_queries.get(
        (scope.name, columns),
        lambda: (
            select_columns(COURSE_SESSION.name, columns)
            .add_columns(scope.permitted_condition(COURSE_SESSION.name).label(PERMITTED))
            .where(
                course_sessions.c.id == SESSION_ID,
                course_sessions.c.provider_id == PROVIDER_ID,
                *scope.visible.get(COURSE_SESSION.name, ()),
            )
        ),
    )


def retrieve_course_session(
    conn: Connection,
    access: Access,
    session_id: int,
    projection: Projection,
    *,
    budget: int,
    ctx: RenderContext,
) -> dict[str, Any]:
    """The rendered course session ``session_id``; 404 when not visible, 403 when forbidden."""
    if not 0 < session_id <= MAX_ID:
        raise not_found()
    rows = _retrieve_query(access.scope, projection.columns).rows(
        conn, {**access.params, SESSION_ID.key: session_id}
    )
    if not rows:
        raise not_found()
    row = rows[0]
    if not row[PERMITTED]:
        raise ApiError(
            403, "permission_denied", "You may only read the course sessions you instruct."
        )
    loader = Loader(conn, access, budget, ctx.base_url)
    loader.spend(1, COURSE_SESSION.name)
    level = loader.load(projection, [row], {row["id"]: 1})
    return render(projection, row, level, ctx)


def _provider(resource: Resource) -> tuple[ColumnElement[bool], ...]:
    """The condition keeping ``resource``'s rows to the request's provider."""
    column = resource.provider_column
    return () if column is None else (column == PROVIDER_ID,)


@dataclass(frozen=True)
class Page:
    """One page of a list: the total count and the rendered objects."""

    count: int
    results: list[dict[str, Any]]


def list_resources(
    conn: Connection,
    access: Access,
    listing: Listing,
    query: ListQuery,
    projection: Projection,
    *,
    budget: int,
    ctx: RenderContext,
    memo: Memo | None = None,
) -> Page:
    """A page of ``listing`` under ``access``: count, then rows, then their expansions.

    The count is kept in ``memo`` by listing, access and filters (it does not depend
    on the page), so walking the pages of a large collection counts it once until the
    database changes. The page is chosen on the base table alone (an index walk,
    however deep the page), and only its rows are then read whole, with their joins
    and subqueries.
    """
    resource = listing.resource
    conditions = (*access.filters(resource.name), *query.conditions, *_provider(resource))
    count_key = (
        "count",
        listing.path,
        access.scope.name,
        tuple(sorted(access.params.items())),
        query.filter_key,
    )
    count = None if memo is None else memo.get(count_key)
    if count is None:
        count = conn.execute(
            select(func.count()).select_from(resource.scope_from).where(*conditions),
            access.params,
        ).scalar_one()
        if memo is not None:
            memo[count_key] = count
    offset = (query.page - 1) * query.page_size
    if offset >= count:
        return Page(count, [])
    page_ids = (
        select(resource.table.c.id)
        .select_from(resource.scope_from)
        .where(*conditions)
        .order_by(*query.order_by)
        .limit(query.page_size)
        .offset(offset)
    )
    result = conn.execute(
        select_columns(resource.name, projection.columns)
        .where(resource.table.c.id.in_(page_ids))
        .order_by(*query.order_by),
        access.params,
    )
    keys = tuple(result.keys())
    rows = [dict(zip(keys, row, strict=True)) for row in result.fetchall()]
    loader = Loader(conn, access, budget, ctx.base_url)
    loader.spend(len(rows), resource.name)
    level = loader.load(projection, rows, {row["id"]: 1 for row in rows})
    return Page(count, [render(projection, row, level, ctx) for row in rows])
