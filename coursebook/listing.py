"""List requests: filters, sort and page parsed under the caller's access, and page links.

A list endpoint is a ``Listing`` of the graph. Parsing a request's query string gives
a ``ListQuery`` (filters as SQL conditions, sort, page); the service runs it under
the request's ``Access`` with the same loader and renderer as a retrieve. A filter
naming a parent (``course_session=ID``) only matches parents the caller may read, so
another provider's ids, or a session an instructor does not teach, give an empty
page rather than a leak.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select

from coursebook.access import Access
from coursebook.errors import invalid
from coursebook.fields import PROVIDER_ID, IdsFilter, Listing
from coursebook.graph import RESOURCES
from coursebook.values import parse_ids, parse_page

MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000_000

Query = Mapping[str, list[str]]


@dataclass(frozen=True)
class ListQuery:
    """A parsed list request: conditions, order, page."""

    conditions: tuple[ColumnElement[bool], ...]
    order_by: tuple[ColumnElement[Any], ...]
    page: int
    page_size: int
    #: The filters as parsed values, by name: equal keys select equal rows.
    filter_key: tuple[tuple[str, Hashable], ...] = ()


def readable_ids(parent: str, ids: list[int], access: Access) -> Select[Any]:
    """The ids among ``ids`` of ``parent`` rows the caller may read."""
    resource = RESOURCES[parent]
    statement = resource.statement.with_only_columns(resource.table.c.id).where(
        resource.table.c.id.in_(ids), *access.filters(parent)
    )
    if resource.provider_column is not None:
        statement = statement.where(resource.provider_column == PROVIDER_ID)
    # Never correlate with the listed rows' own FROM (a course list joins courses too).
    return statement.correlate(None)


def parse_list_query(listing: Listing, query: Query, access: Access) -> ListQuery:
    """Filters, sort and page of a list request; 400 for any value that does not parse."""

    def last(name: str) -> str | None:
        values = query.get(name)
        return values[-1] if values else None

    conditions: list[ColumnElement[bool]] = []
    filter_key: list[tuple[str, Hashable]] = []
    for spec in listing.filters:
        raw = last(spec.name)
        if raw is None:
            continue
        if isinstance(spec, IdsFilter):
            ids = parse_ids(spec.name, raw)
            if ids:  # ``course=`` names no course: no filter
                conditions.append(spec.condition(readable_ids(spec.parent, ids, access)))
                filter_key.append((spec.name, tuple(ids)))
        else:
            value = spec.parse(spec.name, raw)
            conditions.append(spec.condition(value))
            filter_key.append((spec.name, value))
    sort = last("sort")
    sort = listing.default_sort if sort is None else sort
    if sort not in listing.sorts:
        raise invalid("sort", f"'{sort}' is not a valid sort. Valid: {', '.join(listing.sorts)}.")
    return ListQuery(
        conditions=tuple(conditions),
        order_by=listing.sorts[sort],
        page=parse_page(last("page"), "page", 1, MAX_PAGE),
        page_size=parse_page(last("page_size"), "page_size", MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        filter_key=tuple(filter_key),
    )


def page_url(base_url: str, listing: Listing, query: Query, page: int) -> str:
    """The absolute URL of ``page`` of ``listing``, keeping every other query parameter."""
    kept = {name: values for name, values in query.items() if name != "page"}
    kept["page"] = [str(page)]
    return f"{base_url}{listing.path}?{urlencode(kept, doseq=True)}"


def envelope(
    base_url: str, listing: Listing, query: Query, parsed: ListQuery, count: int, results: Any
) -> dict[str, Any]:
    """A page as the API answers it: ``count``, ``next``, ``previous``, ``results``."""
    last_page = max(1, -(-count // parsed.page_size))
    page = parsed.page
    return {
        "count": count,
        "next": page_url(base_url, listing, query, page + 1) if page < last_page else None,
        "previous": page_url(base_url, listing, query, min(page - 1, last_page))
        if page > 1
        else None,
        "results": results,
    }
