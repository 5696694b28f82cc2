"""List requests: filters, sort and page parsed under the caller's access, and page links.

A list endpoint is a ``Listing`` of the graph. Parsing a request's query string gives
a ``ListQuery`` (filters as SQL conditions, sort, page); the service runs it under
the request's ``Access`` with the same loader and renderer as a retrieve. A filter
naming a parent (``course_session=ID``) only matches parents the caller may read, so
another provider's ids, or a session an instructor does not teach, give an empty
page rather than a leak. A filter given with an empty value is absent, as real
clients send every filter (``venues=&instructors=``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, false, or_

from coursebook.access import Access
from coursebook.errors import invalid
from coursebook.fields import PROVIDER_ID, IdsFilter, Listing
from coursebook.graph import RESOURCES
from coursebook.values import parse_ids, parse_page, split_items

#: The query parameters every list endpoint reads besides its filters.
SORT, PAGE, PAGE_SIZE = "sort", "page", "page_size"
MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000_000
#: In an id filter that declares it, names the parent whose staff profile is the caller's.
ME = "me"

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


def readable(parent: str, named: ColumnElement[bool], access: Access) -> Select[Any]:
    """The ids of the ``parent`` rows meeting ``named`` that the caller may read."""
    resource = RESOURCES[parent]
    statement = resource.statement.with_only_columns(resource.table.c.id).where(
        named, *access.filters(parent)
    )
    if resource.provider_column is not None:
        statement = statement.where(resource.provider_column == PROVIDER_ID)
    # Never correlate with the listed rows' own FROM (a course list joins courses too).
    return statement.correlate(None)


def ids_condition(
    spec: IdsFilter, raw: str, access: Access
) -> tuple[ColumnElement[bool], Hashable] | None:
    """The condition of an id filter and its key; None when ``raw`` names no parent.

    ``me``, where the filter declares it, names the parent whose staff profile is the
    caller's at this provider: nothing, for a caller who has none.
    """
    items = split_items(raw)
    me = spec.me is not None and ME in items
    ids = parse_ids(spec.name, [item for item in items if not (me and item == ME)])
    if not ids and not me:
        return None
    own = access.staff_profile_id if me else None
    named: list[ColumnElement[bool]] = [RESOURCES[spec.parent].table.c.id.in_(ids)] if ids else []
    if own is not None and spec.me is not None:
        named.append(spec.me == own)
    key = (tuple(ids), own)
    if not named:  # only ``me``, and the caller has no staff profile here
        return false(), key
    return spec.condition(readable(spec.parent, or_(*named), access)), key


def parse_list_query(listing: Listing, query: Query, access: Access) -> ListQuery:
    """Filters, sort and page of a list request; 400 for any value that does not parse."""

    def last(name: str) -> str:
        values = query.get(name)
        return values[-1].strip() if values else ""

    conditions: list[ColumnElement[bool]] = []
    filter_key: list[tuple[str, Hashable]] = []
    for spec in listing.filters:
        raw = last(spec.name)
        if not raw:
            continue
        if isinstance(spec, IdsFilter):
            found = ids_condition(spec, raw, access)
            if found is None:
                continue
            condition, key = found
        else:
            value = spec.parse(spec.name, raw)
            if value is None:
                continue
            condition, key = spec.condition(value), value
        conditions.append(condition)
        filter_key.append((spec.name, key))
    sort = last(SORT) or listing.default_sort
    if sort not in listing.sorts:
        raise invalid(SORT, f"'{sort}' is not a valid sort. Valid: {', '.join(listing.sorts)}.")
    return ListQuery(
        conditions=tuple(conditions),
        order_by=listing.sorts[sort],
        page=parse_page(last(PAGE) or None, PAGE, 1, MAX_PAGE),
        page_size=parse_page(last(PAGE_SIZE) or None, PAGE_SIZE, MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        filter_key=tuple(filter_key),
    )


def page_url(base_url: str, listing: Listing, query: Query, page: int) -> str:
    """The absolute URL of ``page`` of ``listing``, keeping every other query parameter."""
    kept = {name: values for name, values in query.items() if name != PAGE}
    kept[PAGE] = [str(page)]
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
