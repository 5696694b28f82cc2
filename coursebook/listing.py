"""List endpoints: the related collections every un-expanded to-many field points at.

Each ``Listing`` names a resource, its filters and its sort orders. Parsing the
query string gives a ``ListQuery`` (filters as SQL conditions, sort, page); the
service runs it under the request's ``Access`` with the same loader and renderer
as the retrieve endpoint. A filter naming a parent (``course_session=ID``) only
matches parents the caller may read, so another provider's ids, or a session an
instructor does not teach, give an empty page rather than a leak.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, exists, select

from coursebook import models as m
from coursebook.access import PROVIDER_ID, Access
from coursebook.errors import invalid
from coursebook.graph import RESOURCES, Resource
from coursebook.models import MAX_ID

MAX_PAGE_SIZE = 100
MAX_PAGE = 1_000_000_000
MAX_IDS = 500

#: Builds a condition on the listed rows from the readable parent ids.
ParentCondition = Callable[[Select[Any]], ColumnElement[bool]]
#: Builds a condition on the listed rows from a parsed value.
ValueCondition = Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True)
class IdsFilter:
    """``name=1,2,3``: rows related to any of these parents (that the caller may read)."""

    name: str
    parent: str
    condition: ParentCondition
    description: str


@dataclass(frozen=True)
class ValueFilter:
    """``name=value``: a choice or a date-time bound."""

    name: str
    parse: Callable[[str, str], Any]
    condition: ValueCondition
    schema: dict[str, Any]
    description: str


Filter = IdsFilter | ValueFilter


@dataclass(frozen=True)
class Listing:
    """A list endpoint: its resource, filters and sort orders."""

    path: str
    resource: Resource
    filters: tuple[Filter, ...]
    sorts: dict[str, tuple[ColumnElement[Any], ...]]
    default_sort: str
    summary: str


@dataclass(frozen=True)
class ListQuery:
    """A parsed list request: conditions, order, page."""

    conditions: tuple[ColumnElement[bool], ...]
    order_by: tuple[ColumnElement[Any], ...]
    page: int
    page_size: int
    #: The filters as parsed values, by name: equal keys select equal rows.
    filter_key: tuple[tuple[str, Hashable], ...] = ()


def parse_ids(name: str, raw: str) -> list[int]:
    """``"1, 2,3"`` -> ``[1, 2, 3]``; 400 naming ``name`` for anything else."""
    items = [item.strip() for item in raw.split(",") if item.strip()]
    if len(items) > MAX_IDS:
        raise invalid(name, f"At most {MAX_IDS} ids.")
    ids = []
    for item in items:
        valid = item.isascii() and item.isdigit() and len(item) <= 19
        if not valid or not 0 < int(item) <= MAX_ID:
            raise invalid(name, f"'{item}' is not a valid id: give comma-separated integers.")
        ids.append(int(item))
    return ids


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_datetime(name: str, raw: str) -> datetime:
    """An ISO 8601 / RFC 3339 date or date-time; without an offset it is UTC."""
    text = _FRACTION.sub(r"\1", raw.strip().upper())
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise invalid(
            name, f"'{raw}' is not a date-time. Use ISO 8601, e.g. 2026-01-05T09:00:00Z."
        ) from None
    try:
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
    except OverflowError:  # an offset pushes it past year 1 or 9999: clamp
        edge = datetime.max if value.year > 1 else datetime.min
        return edge.replace(tzinfo=UTC)


def _choice(*values: str) -> Callable[[str, str], str]:
    def parse(name: str, raw: str) -> str:
        if raw not in values:
            raise invalid(name, f"'{raw}' is not valid. Valid: {', '.join(values)}.")
        return raw

    return parse


def parse_page(raw: str | None, name: str, default: int, maximum: int) -> int:
    """A positive page number or size, within ``maximum``."""
    if raw is None:
        return default
    if not raw.isascii() or not raw.isdigit() or len(raw) > 12 or int(raw) < 1:
        raise invalid(name, f"'{raw}' is not valid: give an integer of at least 1.")
    value = int(raw)
    if value > maximum:
        raise invalid(name, f"{value} is more than the maximum, {maximum}.")
    return value


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


def parse_list_query(listing: Listing, query: dict[str, list[str]], access: Access) -> ListQuery:
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


# -- the three listings ---------------------------------------------------------------

_cs = m.course_sessions
_csi = m.course_session_instructors
_oti = m.offering_type_instructors
_ins = m.instructors
DATE_TIME = {"type": "string", "format": "date-time"}


def _bound(column: ColumnElement[Any], op: str) -> ValueCondition:
    if op == "gte":
        return lambda value: column >= value
    return lambda value: column <= value


def _linked(
    own: ColumnElement[Any], listed: ColumnElement[Any], other: ColumnElement[Any]
) -> ParentCondition:
    """Rows with a link-table row whose ``own`` column is the row and ``other`` a parent."""
    return lambda ids: exists(select(own).where(own == listed, other.in_(ids)))


def _time_filters(column_name: str) -> list[ValueFilter]:
    column = _cs.c[column_name]
    return [
        ValueFilter(
            f"{column_name}_{op}",
            parse_datetime,
            _bound(column, op),
            DATE_TIME,
            f"Sessions with {column_name} {'at or after' if op == 'gte' else 'at or before'} "
            "this date-time (ISO 8601; UTC when no offset).",
        )
        for op in ("gte", "lte")
    ]


COURSE_SESSIONS = Listing(
    path="/api/v2/course_sessions",
    resource=RESOURCES["course_session"],
    filters=(
        IdsFilter(
            "course",
            "course",
            lambda ids: _cs.c.course_id.in_(ids),
            "Sessions of these courses (comma-separated ids).",
        ),
        IdsFilter(
            "venues",
            "venue",
            lambda ids: _cs.c.venue_id.in_(ids),
            "Sessions at these venues (comma-separated ids).",
        ),
        IdsFilter(
            "instructors",
            "instructor",
            _linked(_csi.c.course_session_id, _cs.c.id, _csi.c.instructor_id),
            "Sessions taught by any of these instructors (comma-separated ids).",
        ),
        IdsFilter(
            "offering_types",
            "offering_type",
            lambda ids: _cs.c.course_id.in_(
                select(m.courses.c.id).where(m.courses.c.offering_type_id.in_(ids)).correlate(None)
            ),
            "Sessions of courses of these offering types (comma-separated ids).",
        ),
        ValueFilter(
            "status",
            _choice("active", "cancelled"),
            lambda value: _cs.c.status == value,
            {"type": "string", "enum": ["active", "cancelled"]},
            "Only sessions with this status.",
        ),
        *_time_filters("starts_at"),
        *_time_filters("ends_at"),
    ),
    sorts={
        "starts_at": (_cs.c.starts_at, _cs.c.id),
        "-starts_at": (_cs.c.starts_at.desc(), _cs.c.id.desc()),
        "id": (_cs.c.id,),
        "-id": (_cs.c.id.desc(),),
    },
    default_sort="starts_at",
    summary="List course sessions",
)

INSTRUCTORS = Listing(
    path="/api/v2/instructors",
    resource=RESOURCES["instructor"],
    filters=(
        IdsFilter(
            "course_session",
            "course_session",
            _linked(_csi.c.instructor_id, _ins.c.id, _csi.c.course_session_id),
            "Instructors of these course sessions (comma-separated ids).",
        ),
        IdsFilter(
            "offering_type",
            "offering_type",
            _linked(_oti.c.instructor_id, _ins.c.id, _oti.c.offering_type_id),
            "Instructors of these offering types (comma-separated ids).",
        ),
    ),
    sorts={"id": (_ins.c.id,), "-id": (_ins.c.id.desc(),)},
    default_sort="id",
    summary="List instructors",
)

VENUE_ROOMS = Listing(
    path="/api/v2/venue_rooms",
    resource=RESOURCES["venue_room"],
    filters=(
        IdsFilter(
            "venue",
            "venue",
            lambda ids: m.venue_rooms.c.venue_id.in_(ids),
            "Rooms of these venues (comma-separated ids).",
        ),
    ),
    sorts={"id": (m.venue_rooms.c.id,), "-id": (m.venue_rooms.c.id.desc(),)},
    default_sort="id",
    summary="List venue rooms",
)

LISTINGS = {listing.path: listing for listing in (COURSE_SESSIONS, INSTRUCTORS, VENUE_ROOMS)}
