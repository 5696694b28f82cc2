"""List requests: filters, sort and page parsed under the caller's access, and page links.

A list endpoint is a ``Listing`` of the graph. Parsing a request's query string gives
a ``ListQuery`` (filters as SQL conditions, sort, page); the service runs it under
the request's ``Access`` with the same loader and renderer as a retrieve. A filter
naming a parent (``course_session=ID``) only matches parents the caller may read, so
another provider's ids, or a session an instructor does not teach, give an empty
page rather than a leak. A filter given with an empty value is absent, as real
clients send every filter (``venues=&instructors=``).

Pages are Django REST framework's page-number pagination, which TeamUp runs: a
``page_size`` that is no positive integer is the default and one above the maximum is
the maximum; a ``page`` that is no integer, below 1 or past the last is 404 "Invalid
page." (``last`` is the last page); the links keep every query parameter, sorted and
percent-encoded as DRF writes them.
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import ColumnElement, Select, false, or_

from coursebook.access import Access
from coursebook.errors import ApiError, invalid
from coursebook.fields import PROVIDER_ID, IdsFilter, Listing
from coursebook.graph import RESOURCES
from coursebook.values import parse_ids, split_items

#: The query parameters every list endpoint reads besides its filters (and ``expand``,
#: ``fields``, ``format``).
SORT, PAGE, PAGE_SIZE = "sort", "page", "page_size"
#: TeamUp's page size: the default and the maximum.
MAX_PAGE_SIZE = 100
#: The ``page`` that names the last page, whatever its number (DRF's ``last_page_strings``).
LAST_PAGE = "last"
#: In an id filter that declares it, names the parent whose staff profile is the caller's.
ME = "me"

Query = Mapping[str, list[str]]


@dataclass(frozen=True)
class ListQuery:
    """A parsed list request: conditions, order, page."""

    conditions: tuple[ColumnElement[bool], ...]
    order_by: tuple[ColumnElement[Any], ...]
    #: The page asked for; None for the last one.
    page: int | None
    page_size: int
    #: The filters as parsed values, by name: equal keys select equal rows.
    filter_key: tuple[tuple[str, Hashable], ...] = ()


def list_parameters(listing: Listing) -> frozenset[str]:
    """The query parameters a list request of ``listing`` reads, besides ``expand``,
    ``fields`` and ``format``: its filters, the sort and the page."""
    return frozenset({*(spec.name for spec in listing.filters), SORT, PAGE, PAGE_SIZE})


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
    """Filters, sort and page of a list request; 400 for a filter or sort value that does
    not parse, 404 for a page that is no page."""

    def last(name: str) -> str:
        values = query.get(name)
        return values[-1] if values else ""

    conditions: list[ColumnElement[bool]] = []
    filter_key: list[tuple[str, Hashable]] = []
    for spec in listing.filters:
        raw = last(spec.name).strip()
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
    sort = last(SORT).strip() or listing.default_sort
    if sort not in listing.sorts:
        raise invalid(SORT, f"'{sort}' is not a valid sort. Valid: {', '.join(listing.sorts)}.")
    return ListQuery(
        conditions=tuple(conditions),
        order_by=listing.sorts[sort],
        page=parse_page(last(PAGE)),
        page_size=parse_page_size(last(PAGE_SIZE)),
        filter_key=tuple(filter_key),
    )


def invalid_page() -> ApiError:
    """DRF's answer to a page that does not exist, in TeamUp's error body."""
    return ApiError(404, "not_found", "Invalid page.")


def parse_page_size(raw: str) -> int:
    """DRF's page size: a positive integer, at most ``MAX_PAGE_SIZE``; anything else (no
    integer, 0, negative, absent) is the default, ``MAX_PAGE_SIZE``."""
    try:
        size = int(raw)
    except ValueError:
        return MAX_PAGE_SIZE
    return MAX_PAGE_SIZE if size < 1 else min(size, MAX_PAGE_SIZE)


def parse_page(raw: str) -> int | None:
    """DRF's page number: 1 when absent or empty, None for ``last``; 404 when it is no
    integer or is below 1 (whether it is past the last page is known once counted)."""
    if not raw:
        return 1
    if raw == LAST_PAGE:
        return None
    try:
        page = int(raw)
    except ValueError:
        raise invalid_page() from None
    if page < 1:
        raise invalid_page()
    return page


def page_number(requested: int | None, count: int, page_size: int) -> int:
    """The page to answer: ``requested`` (None: the last); 404 past the last page. An
    empty list has one page, empty."""
    last_page = max(1, -(-count // page_size))
    if requested is None:
        return last_page
    if requested > last_page:
        raise invalid_page()
    return requested


def page_url(base_url: str, path: str, query: Query, page: int) -> str:
    """The absolute URL of ``page`` of the list at ``path``, with every query parameter
    of the request kept (empty ones too), sorted by name and percent-encoded as DRF's
    ``replace_query_param`` writes them; page 1 carries no ``page`` (DRF's
    ``remove_query_param``)."""
    kept = {name: values for name, values in query.items() if name != PAGE}
    if page > 1:
        kept[PAGE] = [str(page)]
    encoded = urlencode(sorted(kept.items()), doseq=True)
    return f"{base_url}{path}?{encoded}" if encoded else f"{base_url}{path}"


def envelope(
    base_url: str, path: str, query: Query, page: int, page_size: int, count: int, results: Any
) -> dict[str, Any]:
    """A page as the API answers it: ``count``, ``next``, ``previous``, ``results``."""
    has_next = page * page_size < count
    return {
        "count": count,
        "next": page_url(base_url, path, query, page + 1) if has_next else None,
        "previous": page_url(base_url, path, query, page - 1) if page > 1 else None,
        "results": results,
    }
