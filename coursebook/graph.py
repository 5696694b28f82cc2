"""The resource graph, declared once.

Each resource lists its fields in the contract's order. A field knows its JSON
Schema, how to read its value off a loaded row, and whether it is expandable or
deferred; a relation field also knows how to batch-load what it points at. Query
parsing (``projection``), loading (``loader``), rendering (``render``) and the
OpenAPI document all read this one declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, FromClause, Select, Table, func, select

from coursebook import models as m


class RenderContext(NamedTuple):
    """What rendering needs beyond the rows: where absolute links point, what is hidden."""

    base_url: str
    redact_permissions: bool = False


Row = Mapping[Any, Any]
Getter = Callable[[Row, RenderContext], Any]


@dataclass(frozen=True, slots=True)
class Through:
    """A to-many relation stored in a link table."""

    table: Table
    parent: str
    child: str


@dataclass(frozen=True, slots=True)
class Relation:
    """How to batch-load the object(s) a relation field points at."""

    target: str
    many: bool
    #: to-one: the parent row's key holding the target id.
    key: str | None = None
    #: to-many by foreign key: the child table's column holding the parent id.
    foreign_key: str | None = None
    #: to-many through a link table.
    through: Through | None = None


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a resource, in contract order."""

    name: str
    schema: dict[str, Any]
    #: Computes the value from the row; None where ``column``, ``constant`` or a loaded
    #: relation gives it.
    get: Getter | None
    required: bool = True
    omit_if_none: bool = False
    expandable: bool = False
    deferred: bool = False
    relation: Relation | None = None
    #: The related-collection path of an un-expanded to-many relation, for messages.
    collection: Callable[[Row], str] | None = None
    #: Set when the value is the row's column of that name (through ``convert`` when
    #: set, which is never called with None), so that rendering reads it directly.
    column: str | None = None
    convert: Callable[[Any], Any] | None = None
    #: Set when the value is always this (the ``object`` field).
    constant: str | None = None
    #: The row keys a getter reads, where declared: a level whose fields all say what
    #: they read loads only those columns (see ``Projection.columns``).
    reads: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Resource:
    """A resource: its fields and the statement that loads its rows."""

    name: str
    title: str
    table: Table
    statement: Select[Any]
    fields: tuple[Field, ...]
    order_by: tuple[ColumnElement[Any], ...]
    provider_column: ColumnElement[Any] | None = None
    by_name: dict[str, Field] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})

    @property
    def scope_from(self) -> FromClause:
        """The least FROM that counting rows needs: the table, joined to the table holding
        the provider column when that is another one."""
        column = self.provider_column
        if column is None or column.table is self.table:
            return self.table
        return self.table.join(column.table)

    def field(self, name: str) -> Field | None:
        """The field called ``name``, if this resource has one."""
        return self.by_name.get(name)

    @property
    def expandable_names(self) -> list[str]:
        """Names ``expand`` accepts here: expandable and deferred fields."""
        return sorted(f.name for f in self.fields if f.expandable or f.deferred)

    @property
    def field_names(self) -> list[str]:
        """Every field name, deferred ones included."""
        return sorted(self.by_name)


# -- value conversions --------------------------------------------------------------


def iso_datetime(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and ``Z``, as TeamUp writes date-times."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat(timespec="milliseconds") + "Z"


def iso_date(value: date | None) -> str | None:
    return None if value is None else value.isoformat()


def minor_to_amount(minor: int) -> str:
    """``4500`` -> ``"45.00"``."""
    sign = "-" if minor < 0 else ""
    whole, cents = divmod(abs(minor), 100)
    return f"{sign}{whole}.{cents:02d}"


def price(minor: int, row: Row) -> dict[str, Any]:
    """A price object in the provider's currency (``row`` carries the currency columns)."""
    amount = minor_to_amount(minor)
    symbol = row["currency_symbol"]
    before = row["currency_symbol_position"] == "before"
    return {
        "decimal": minor / 100,
        "string": f"{symbol}{amount}" if before else f"{amount} {symbol}",
        "iso_currency_code": row["currency_code"].lower(),
        "currency_symbol": symbol,
        "currency_symbol_position": row["currency_symbol_position"],
    }


def _const(value: Any) -> Getter:
    return lambda _row, _ctx: value


def datetime_attr(name: str) -> Field:
    """A required date-time field read from the row key ``name``."""
    return Field(
        name,
        {"type": "string", "format": "date-time"},
        None,
        column=name,
        convert=iso_datetime,
    )


def _flag_string(key: str) -> Getter:
    return lambda row, _ctx: "true" if row[key] else "false"


def _image(prefix: str) -> Getter:
    def get(row: Row, _ctx: RenderContext) -> dict[str, Any] | None:
        if row[f"{prefix}id"] is None:
            return None
        return {
            "id": row[f"{prefix}id"],
            "url": row[f"{prefix}url"],
            "original_width": row[f"{prefix}original_width"],
            "original_height": row[f"{prefix}original_height"],
        }

    return get


def _collection_url(path: str, parameter: str, key: str = "id") -> Getter:
    return lambda row, ctx: f"{ctx.base_url}{path}?{parameter}={row[key]}"


def _collection_path(path: str, parameter: str, key: str = "id") -> Callable[[Row], str]:
    return lambda row: f"{path}?{parameter}={row[key]}"


# -- schema helpers -----------------------------------------------------------------

INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
STR: dict[str, Any] = {"type": "string"}
DOUBLE: dict[str, Any] = {"type": "number", "format": "double"}
INT32_RANGE: dict[str, Any] = {"minimum": -2147483648, "maximum": 2147483647}
MINUTES: dict[str, Any] = {"type": "integer", "description": "The duration in minutes."}
RELATED_COLLECTION: dict[str, Any] = {"$ref": "#/components/schemas/RelatedCollection"}
# The contract says ``format: time``, which RFC 3339 defines with a UTC offset; these are
# wall-clock times in the venue's zone with no offset (SEMANTICS.md section 12), so the
# document states the shape by pattern (see docs/contract/allowed_differences.yaml).
LOCAL_TIME: dict[str, Any] = {
    "type": "string",
    "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
    "description": "Local wall-clock time of day, HH:MM:SS, no offset.",
}


def nullable(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also admits null."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"oneOf": [{"type": "null"}, schema]}


def ref(title: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{title}"}


def enum(*values: Any, kind: str | None = "string") -> dict[str, Any]:
    return {"type": kind, "enum": list(values)} if kind else {"enum": list(values)}


def obj(name: str) -> Field:
    """The ``object`` field: the resource's type name."""
    return Field("object", enum(name), None, constant=name)


def attr(name: str, schema: dict[str, Any], key: str | None = None, **options: Any) -> Field:
    """A plain field read from the row key ``key`` (default: the field's name)."""
    return Field(name, schema, None, column=key or name, **options)


def to_one(name: str, target: str, key: str, schema: dict[str, Any] | None = None) -> Field:
    """An expandable to-one field: the id until expanded, then the object."""
    return Field(
        name,
        schema or INT,
        None,
        expandable=True,
        relation=Relation(target=target, many=False, key=key),
        column=key,
    )


def to_many(
    name: str,
    target: str,
    path: str,
    parameter: str,
    *,
    foreign_key: str | None = None,
    through: Through | None = None,
) -> Field:
    """An expandable to-many field: a related-collection URL until expanded."""
    return Field(
        name,
        RELATED_COLLECTION,
        _collection_url(path, parameter),
        expandable=True,
        relation=Relation(target=target, many=True, foreign_key=foreign_key, through=through),
        collection=_collection_path(path, parameter),
        reads=("id",),
    )


def deferred_many(
    name: str, target: str, *, foreign_key: str | None = None, through: Through | None = None
) -> Field:
    """A deferred list of objects, loaded only when asked for by ``expand`` or ``fields``."""
    return Field(
        name,
        {"type": "array", "items": ref(RESOURCE_TITLES[target])},
        None,
        required=False,
        deferred=True,
        relation=Relation(target=target, many=True, foreign_key=foreign_key, through=through),
    )


def _with_image(table: Table, image_key: str, *extra: ColumnElement[Any]) -> Select[Any]:
    """``table``'s rows with the image its ``image_key`` column points at (``img_*``)."""
    image = m.images.alias(f"{table.name}_image")
    return select(
        table,
        *extra,
        image.c.id.label("img_id"),
        image.c.url.label("img_url"),
        image.c.original_width.label("img_original_width"),
        image.c.original_height.label("img_original_height"),
    ).select_from(table.outerjoin(image, image.c.id == table.c[image_key]))


def _currency_columns() -> list[ColumnElement[Any]]:
    return [
        m.providers.c.currency_code,
        m.providers.c.currency_symbol,
        m.providers.c.currency_symbol_position,
    ]


RESOURCE_TITLES = {
    "course_session": "CourseSession",
    "venue": "Venue",
    "venue_room": "VenueRoom",
    "instructor": "Instructor",
    "availability_schedule": "AvailabilitySchedule",
    "course": "Course",
    "offering_type": "OfferingType",
    "offering_type_category": "OfferingTypeCategory",
    "membership": "Membership",
    "registration_timeline": "RegistrationTimeline",
    "availability_schedule_offering_type": "AvailabilityScheduleOfferingType",
}

# -- course session -----------------------------------------------------------------

_cs = m.course_sessions

SESSION_URL_READS = ("provider_id", "provider_slug", "id")


def _session_url(audience: str) -> Getter:
    return lambda row, _ctx: (
        f"/p/{row['provider_id']}-{row['provider_slug']}/{audience}course_sessions/{row['id']}"
    )


COURSE_SESSION = Resource(
    name="course_session",
    title="CourseSession",
    table=_cs,
    statement=select(
        _cs,
        m.courses.c.name.label("course_name"),
        m.providers.c.slug.label("provider_slug"),
    ).select_from(
        _cs.join(m.courses, m.courses.c.id == _cs.c.course_id).join(
            m.providers, m.providers.c.id == _cs.c.provider_id
        )
    ),
    fields=(
        attr("id", INT),
        obj("course_session"),
        attr("name", {**nullable(STR), "title": "Course Name"}, key="course_name"),
        datetime_attr("starts_at"),
        datetime_attr("ends_at"),
        attr("status", enum("active", "cancelled")),
        attr("attending_count", INT),
        attr(
            "max_occupancy",
            {
                "type": ["integer", "null"],
                "description": "None and 0 both represent unlimited occupancy.",
            },
        ),
        to_one("venue", "venue", "venue_id"),
        to_many(
            "instructors",
            "instructor",
            "/api/v2/instructors",
            "course_session",
            through=Through(m.course_session_instructors, "course_session_id", "instructor_id"),
        ),
        to_one("course", "course", "course_id"),
        Field("customer_url", STR, _session_url("c/"), reads=SESSION_URL_READS),
        Field("provider_url", STR, _session_url(""), reads=SESSION_URL_READS),
    ),
    order_by=(_cs.c.starts_at, _cs.c.id),
    provider_column=_cs.c.provider_id,
)

# -- venue and rooms ----------------------------------------------------------------

_pa = m.physical_addresses
_PHYSICAL_ADDRESS_KEYS = ("street", "street_secondary", "city", "region", "postal_code", "country")


_ADDRESS_COLUMNS = tuple((key, f"pa_{key}") for key in _PHYSICAL_ADDRESS_KEYS)


def _physical_address(row: Row, _ctx: RenderContext) -> dict[str, Any] | None:
    if row["pa_street"] is None:
        return None
    address = {key: row[column] for key, column in _ADDRESS_COLUMNS}
    for key, column in (("lat", "pa_lat"), ("lng", "pa_lng")):
        if row[column] is not None:
            address[key] = row[column]
    return address


VENUE = Resource(
    name="venue",
    title="Venue",
    table=m.venues,
    statement=select(
        m.venues,
        *[_pa.c[key].label(f"pa_{key}") for key in (*_PHYSICAL_ADDRESS_KEYS, "lat", "lng")],
    ).select_from(m.venues.outerjoin(_pa, _pa.c.venue_id == m.venues.c.id)),
    fields=(
        attr("id", INT),
        obj("venue"),
        attr("name", {"type": "string", "maxLength": 200}),
        attr("description", nullable(STR), required=False),
        attr("address", STR),
        Field(
            "physical_address",
            nullable(ref("PhysicalAddress")),
            _physical_address,
            required=False,
        ),
        attr("timezone", {"type": "string", "maxLength": 250}),
        attr("video_url", nullable(STR), required=False),
        attr("zoom_user", INT),
        attr("venue_type", enum("physical", "online")),
        to_many(
            "venue_rooms", "venue_room", "/api/v2/venue_rooms", "venue", foreign_key="venue_id"
        ),
        attr("lat", DOUBLE),
        attr("lng", DOUBLE),
        attr("archived", BOOL),
        attr("is_online", BOOL),
        attr("video_url_type", enum("static", "zoom"), required=False, omit_if_none=True),
    ),
    order_by=(m.venues.c.id,),
    provider_column=m.venues.c.provider_id,
)

_thumb = m.images.alias("thumbnail")


def _thumbnail(row: Row, _ctx: RenderContext) -> dict[str, Any] | None:
    if row["thumb_id"] is None:
        return None
    return {
        "id": row["thumb_id"],
        "object": "image",
        "url": row["thumb_url"],
        "profile": row["thumb_profile_id"],
        "original_width": row["thumb_original_width"],
        "original_height": row["thumb_original_height"],
        "user": row["thumb_user_id"],
        "created_at": iso_datetime(row["thumb_created_at"]),
    }


VENUE_ROOM = Resource(
    name="venue_room",
    title="VenueRoom",
    table=m.venue_rooms,
    statement=select(
        m.venue_rooms,
        *[
            _thumb.c[key].label(f"thumb_{key}")
            for key in (
                "id",
                "url",
                "profile_id",
                "original_width",
                "original_height",
                "user_id",
                "created_at",
            )
        ],
    ).select_from(
        m.venue_rooms.join(m.venues, m.venues.c.id == m.venue_rooms.c.venue_id).outerjoin(
            _thumb, _thumb.c.id == m.venue_rooms.c.thumbnail_id
        )
    ),
    fields=(
        attr("id", INT),
        obj("venue_room"),
        attr("status", enum("active", "archived")),
        attr("name", {"type": "string", "maxLength": 64}),
        to_one("venue", "venue", "venue_id"),
        Field("thumbnail", ref("Thumbnail"), _thumbnail, required=False, omit_if_none=True),
    ),
    order_by=(m.venue_rooms.c.id,),
    provider_column=m.venues.c.provider_id,
)

# -- instructors --------------------------------------------------------------------

_sp = m.staff_profiles


_PERMISSION_COLUMNS = tuple((name, f"perm_{name}") for name in m.PERMISSION_NAMES)


def _permissions(row: Row, ctx: RenderContext) -> dict[str, bool]:
    if ctx.redact_permissions:
        return {}
    return {name: bool(row[column]) for name, column in _PERMISSION_COLUMNS}


def _icalendar_links(row: Row, ctx: RenderContext) -> dict[str, str]:
    link = f"{ctx.base_url}/ical/instructors/{row['id']}/{row['icalendar_key']}.ics"
    return {"link": link, "webcal_url": "webcal" + link[link.index("://") :]}


INSTRUCTOR = Resource(
    name="instructor",
    title="Instructor",
    table=m.instructors,
    statement=select(
        m.instructors,
        *[_sp.c[name].label(f"perm_{name}") for name in m.PERMISSION_NAMES],
    ).select_from(m.instructors.join(_sp, _sp.c.id == m.instructors.c.staff_profile_id)),
    fields=(
        attr("id", INT),
        obj("instructor"),
        attr("name", STR),
        attr("picture_url", STR),
        attr("description", STR),
        Field("permissions", ref("StaffPermissions"), _permissions),
        attr("staff", INT, key="staff_profile_id"),
        deferred_many(
            "availability_schedules", "availability_schedule", foreign_key="instructor_id"
        ),
        Field(
            "icalendar_links",
            {
                "type": "object",
                "required": ["link", "webcal_url"],
                "properties": {
                    "link": {"type": "string", "format": "uri"},
                    "webcal_url": {"type": "string", "format": "uri"},
                },
            },
            _icalendar_links,
            required=False,
            deferred=True,
        ),
        Field(
            "integrations",
            {"type": "array", "description": "Item type is undefined on the page (quirk)."},
            _const([]),
        ),
    ),
    order_by=(m.instructors.c.id,),
    provider_column=m.instructors.c.provider_id,
)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_RANGES: dict[str, Any] = {"type": "array", "items": ref("TimeRange")}


def _weekday(day: str) -> Getter:
    def get(row: Row, _ctx: RenderContext) -> list[dict[str, str]]:
        return [{"start": start, "end": end} for start, end in row["weekly_ranges"].get(day, [])]

    return get


def _has_availability(row: Row, _ctx: RenderContext) -> str:
    return "true" if any(row["weekly_ranges"].get(day) for day in WEEKDAYS) else "false"


AVAILABILITY_SCHEDULE = Resource(
    name="availability_schedule",
    title="AvailabilitySchedule",
    table=m.availability_schedules,
    statement=select(m.availability_schedules),
    fields=(
        attr("id", INT),
        Field(
            "object",
            {"description": "The page lists [null] as the only value (quirk).", "enum": [None]},
            _const(None),
        ),
        attr("name", {"type": "string", "maxLength": 32}, required=False, omit_if_none=True),
        attr("venue", {"type": ["integer", "null"]}, key="venue_id", required=False),
        *[Field(f"default_{day}", _TIME_RANGES, _weekday(day), required=False) for day in WEEKDAYS],
        attr(
            "schedule_type",
            {"type": "string", "enum": ["IU", "RRTL", "GC"], "default": "IU"},
            required=False,
        ),
        attr("instructor", INT, key="instructor_id"),
        Field(
            "is_default",
            {"type": "string", "description": "Typed as a string on the page (quirk)."},
            _flag_string("is_default"),
        ),
        Field(
            "has_availability",
            {"type": "string", "description": "Typed as a string on the page (quirk)."},
            _has_availability,
        ),
    ),
    order_by=(m.availability_schedules.c.id,),
)

# -- courses and offering types -----------------------------------------------------

COURSE = Resource(
    name="course",
    title="Course",
    table=m.courses,
    statement=select(m.courses),
    fields=(
        attr("id", INT),
        obj("course"),
        attr(
            "name",
            {"type": ["string", "null"], "maxLength": 256, "title": "Course Name"},
            required=False,
        ),
        to_one("offering_type", "offering_type", "offering_type_id"),
        attr("published", BOOL, required=False),
        to_many(
            "course_sessions",
            "course_session",
            "/api/v2/course_sessions",
            "course",
            foreign_key="course_id",
        ),
    ),
    order_by=(m.courses.c.id,),
    provider_column=m.courses.c.provider_id,
)

_ot = m.offering_types
_memberships_count = (
    select(func.count())
    .where(m.offering_type_memberships.c.offering_type_id == _ot.c.id)
    .scalar_subquery()
)

_INCREMENTS: dict[str, Any] = {"enum": [None, 15, 30, 45, 60]}


def _duration_schema() -> dict[str, Any]:
    return {**MINUTES, "minimum": 5, "maximum": 1440}


def _buffer_schema() -> dict[str, Any]:
    return {**MINUTES, "minimum": 0, "maximum": 1440, "default": 0}


def _appointment_settings(row: Row, _ctx: RenderContext) -> dict[str, Any]:
    return {
        "duration": row["appointment_duration"],
        "buffer_before": row["appointment_buffer_before"],
        "buffer_after": row["appointment_buffer_after"],
        "start_time_increments": row["appointment_start_time_increments"],
        "default_venue": row["appointment_default_venue_id"],
        "default_venue_rooms": row["appointment_default_venue_room_ids"],
    }


def _room_rental_settings(row: Row, _ctx: RenderContext) -> dict[str, Any]:
    return {
        "duration": row["room_rental_duration"],
        "buffer_before": row["room_rental_buffer_before"],
        "buffer_after": row["room_rental_buffer_after"],
        "start_time_increments": row["room_rental_start_time_increments"],
        "room_uniformity": row["room_rental_room_uniformity"],
    }


def _memberships_summary(row: Row, _ctx: RenderContext) -> str:
    count = row["memberships_count"]
    if count == 0:
        return "Not included in any membership"
    return f"Included in {count} membership{'s' if count != 1 else ''}"


def _has_pricing(row: Row, _ctx: RenderContext) -> bool:
    return bool(row["dropin_price_minor"] > 0 or row["memberships_count"] > 0)


def _int_range(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, **INT32_RANGE}


OFFERING_TYPE = Resource(
    name="offering_type",
    title="OfferingType",
    table=_ot,
    statement=_with_image(_ot, "image_id", _memberships_count.label("memberships_count")),
    fields=(
        attr("allows_dropins", BOOL),
        Field(
            "appointment_settings",
            {
                "$ref": "#/components/schemas/AppointmentSettings",
                "description": "Both oneOf branches on the page are this same object.",
            },
            _appointment_settings,
            expandable=True,
        ),
        attr("background_color", STR),
        attr("cancellation_notice_interval", {**MINUTES, "default": 0}, required=False),
        to_one(
            "category",
            "offering_type_category",
            "category_id",
            schema={"type": ["integer", "null"]},
        ),
        attr("customer_visibility", enum("public", "membership_holders", "private")),
        attr("description", nullable(STR), required=False),
        Field("dropin_price", STR, lambda row, _ctx: minor_to_amount(row["dropin_price_minor"])),
        attr("has_active_schedules", BOOL),
        Field("has_pricing", BOOL, _has_pricing),
        attr("id", INT),
        Field("image", nullable(ref("Image")), _image("img_")),
        to_many(
            "instructors",
            "instructor",
            "/api/v2/instructors",
            "offering_type",
            through=Through(m.offering_type_instructors, "offering_type_id", "instructor_id"),
        ),
        attr("is_draft", BOOL),
        attr(
            "max_allowed_age",
            {
                **_int_range({"type": ["integer", "null"]}),
                "description": "Can be no older than this many years to register",
            },
            required=False,
        ),
        attr("memberships_count", INT),
        Field("memberships_summary_description", STR, _memberships_summary),
        attr(
            "min_allowed_age",
            {
                **_int_range({"type": ["integer", "null"]}),
                "description": "Must be at least this many years old to register",
            },
            required=False,
        ),
        attr("name", {"type": "string", "maxLength": 256}),
        obj("offering_type"),
        attr("order", _int_range({"type": ["integer", "null"]}), required=False),
        attr("registrations_close_interval", {**MINUTES, "default": 0}, required=False),
        attr("registrations_open_interval", {**MINUTES, "default": 0}, required=False),
        Field(
            "room_rental_settings",
            {
                "$ref": "#/components/schemas/RoomRentalSettings",
                "description": "Both oneOf branches on the page are this same object.",
            },
            _room_rental_settings,
            expandable=True,
        ),
        attr("schedule_type", STR),
        attr("status", enum("active", "archived", "unknown")),
        attr(
            "waitlist_max",
            {
                "type": ["integer", "null"],
                "minimum": 0,
                "maximum": 65535,
                "title": "Waitlist maximum",
            },
            required=False,
        ),
        deferred_many(
            "availability_schedule_offering_types",
            "availability_schedule_offering_type",
            foreign_key="offering_type_id",
        ),
        deferred_many(
            "memberships",
            "membership",
            through=Through(m.offering_type_memberships, "offering_type_id", "membership_id"),
        ),
        deferred_many(
            "registration_timelines", "registration_timeline", foreign_key="offering_type_id"
        ),
    ),
    order_by=(_ot.c.id,),
    provider_column=_ot.c.provider_id,
)

_cat = m.offering_type_categories

OFFERING_TYPE_CATEGORY = Resource(
    name="offering_type_category",
    title="OfferingTypeCategory",
    table=_cat,
    statement=_with_image(_cat, "image_id"),
    fields=(
        attr("id", INT),
        obj("offering_type_category"),
        attr("name", {"type": "string", "maxLength": 256, "title": "Category Name"}),
        Field("image", nullable(ref("Image")), _image("img_")),
        attr("color", STR),
    ),
    order_by=(_cat.c.id,),
    provider_column=_cat.c.provider_id,
)

_asot = m.availability_schedule_offering_types

AVAILABILITY_SCHEDULE_OFFERING_TYPE = Resource(
    name="availability_schedule_offering_type",
    title="AvailabilityScheduleOfferingType",
    table=_asot,
    statement=select(_asot),
    fields=(
        attr("offering_type", INT, key="offering_type_id"),
        attr("availability_schedule", INT, key="availability_schedule_id"),
        attr(
            "venue_rooms",
            {"type": "array", "items": INT},
            key="venue_room_ids",
            required=False,
        ),
    ),
    order_by=(_asot.c.id,),
)

_ms = m.memberships


def _price(key: str) -> Getter:
    return lambda row, _ctx: price(row[key], row)


def _membership_url(template: str) -> Getter:
    return lambda row, ctx: ctx.base_url + template.format(id=row["id"])


PRICE = ref("Price")

MEMBERSHIP = Resource(
    name="membership",
    title="Membership",
    table=_ms,
    statement=select(_ms, *_currency_columns()).select_from(
        _ms.join(m.providers, m.providers.c.id == _ms.c.provider_id)
    ),
    fields=(
        attr("id", INT),
        obj("membership"),
        attr("type", enum("pack", "recurring_plan", "prepaid_plan")),
        attr("name", STR),
        attr("description", STR),
        attr("begin_on_first_registration", BOOL),
        Field(
            "start_date",
            {"type": ["string", "null"], "format": "date"},
            lambda row, _ctx: iso_date(row["start_date"]),
            required=False,
        ),
        Field(
            "expiration_date",
            {"type": ["string", "null"], "format": "date"},
            lambda row, _ctx: iso_date(row["expiration_date"]),
            required=False,
        ),
        attr("duration", INT),
        attr(
            "duration_unit",
            {"type": "string", "enum": ["days", "weeks", "months"], "default": "days"},
            required=False,
        ),
        Field("one_time_fee", PRICE, _price("one_time_fee_minor")),
        Field("price", PRICE, _price("price_minor")),
        Field("display_price", PRICE, _price("price_minor")),
        attr("use_prorate", BOOL),
        attr("category", INT),
        attr("is_dropin", BOOL),
        attr("for_sale", BOOL),
        Field("has_active_members", BOOL, lambda row, _ctx: row["active_member_count"] > 0),
        attr("active_member_count", INT),
        attr(
            "allow_repeat_purchases",
            {
                **BOOL,
                "description": "Whether customers can purchase this membership multiple times.",
            },
        ),
        attr(
            "visible_to_customers",
            {**BOOL, "description": "Whether this membership is visible to customers."},
        ),
        attr(
            "purchasable_only_by_provider",
            {**BOOL, "description": "Whether only the provider can purchase this membership."},
        ),
        attr(
            "new_customers_only",
            {**BOOL, "description": "Whether only new customers can purchase this membership."},
        ),
        attr("penalty_system", {"type": ["integer", "null"]}, required=False),
        Field(
            "allotment",
            {"type": "string", "format": "uri"},
            _membership_url("/api/v2/memberships/{id}/allotment"),
        ),
        Field(
            "plans", RELATED_COLLECTION, _membership_url("/api/v2/membership_plans?membership={id}")
        ),
        Field(
            "terms", RELATED_COLLECTION, _membership_url("/api/v2/membership_terms?membership={id}")
        ),
        attr("is_draft", BOOL),
        attr("incomplete_reasons", {"type": "array", "items": STR}),
        attr("shareable", BOOL, required=False),
    ),
    order_by=(_ms.c.id,),
    provider_column=_ms.c.provider_id,
)

_rt = m.registration_timelines

REGISTRATION_TIMELINE = Resource(
    name="registration_timeline",
    title="RegistrationTimeline",
    table=_rt,
    statement=_with_image(_rt, "thumbnail_id"),
    fields=(
        attr("id", INT),
        obj("registration_timeline"),
        attr("name", {"type": ["string", "null"], "maxLength": 256}, required=False),
        attr(
            "audience_type",
            enum(
                "everyone",
                "business_only",
                "membership_holders",
                "specific_memberships",
                "specific_customers",
                "private_url",
            ),
        ),
        Field("thumbnail", nullable(ref("Image")), _image("img_")),
    ),
    order_by=(_rt.c.id,),
)

RESOURCES: dict[str, Resource] = {
    resource.name: resource
    for resource in (
        COURSE_SESSION,
        VENUE,
        VENUE_ROOM,
        INSTRUCTOR,
        AVAILABILITY_SCHEDULE,
        COURSE,
        OFFERING_TYPE,
        OFFERING_TYPE_CATEGORY,
        AVAILABILITY_SCHEDULE_OFFERING_TYPE,
        MEMBERSHIP,
        REGISTRATION_TIMELINE,
    )
}


@lru_cache(maxsize=1024)
def select_columns(resource_name: str, columns: frozenset[str] | None) -> Select[Any]:
    """``resource_name``'s statement selecting only ``columns`` (every one for None).

    The FROM clause stays whole, so the rows are the same; only the columns (and the
    subqueries behind them) are left out.
    """
    statement = RESOURCES[resource_name].statement
    if columns is None:
        return statement
    kept = [column for column in statement.selected_columns if column.key in columns]
    missing = columns - {column.key for column in kept}
    if missing:
        raise LookupError(f"{resource_name} does not select {', '.join(sorted(missing))}")
    return statement.with_only_columns(*kept, maintain_column_froms=True)


def _settings_schema(*extra: tuple[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": {
            "duration": _duration_schema(),
            "buffer_before": _buffer_schema(),
            "buffer_after": _buffer_schema(),
            "start_time_increments": _INCREMENTS,
            **dict(extra),
        },
    }


#: Schemas of the value objects fields embed (not resources: nothing loads them alone).
VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    "RelatedCollection": {
        "type": "string",
        "description": "A URL to a collection of related resources.",
        "examples": ["https://goteamup.com/api/v2/related_collection"],
    },
    "Minutes": {**MINUTES},
    "Int32": {"type": "integer", **INT32_RANGE},
    "PhysicalAddress": {
        "type": "object",
        "required": list(_PHYSICAL_ADDRESS_KEYS),
        "properties": {
            "street": STR,
            "street_secondary": nullable(STR),
            "city": STR,
            "region": STR,
            "postal_code": STR,
            "country": STR,
            "lat": DOUBLE,
            "lng": DOUBLE,
        },
    },
    "Thumbnail": {
        "type": "object",
        "required": ["id", "object", "url", "created_at"],
        "properties": {
            "id": INT,
            "object": enum("image"),
            "url": {"type": "string", "format": "uri"},
            "profile": {"type": ["integer", "null"]},
            "original_width": _int_range({"type": ["integer", "null"]}),
            "original_height": _int_range({"type": ["integer", "null"]}),
            "user": {"type": ["integer", "null"]},
            "created_at": {"type": "string", "format": "date-time"},
        },
    },
    "Image": {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "examples": [13314]},
            "url": {"type": "string", "format": "uri"},
            "original_width": {"type": "number", "examples": [64]},
            "original_height": {"type": "integer", "examples": [64]},
        },
    },
    "StaffPermissions": {
        "type": "object",
        "properties": {name: BOOL for name in m.PERMISSION_NAMES},
    },
    "TimeRange": {
        "type": "object",
        "required": ["start", "end"],
        "properties": {"start": LOCAL_TIME, "end": LOCAL_TIME},
    },
    "AppointmentSettings": _settings_schema(
        ("default_venue", INT),
        ("default_venue_rooms", {"type": "array", "items": INT}),
        required=["duration", "default_venue", "default_venue_rooms"],
    ),
    "RoomRentalSettings": _settings_schema(
        ("room_uniformity", BOOL), required=["duration", "room_uniformity"]
    ),
    "Price": {
        "type": "object",
        "properties": {
            "decimal": {"type": "number"},
            "string": {
                "type": "string",
                "minLength": 1,
                "description": "The price as a string.",
                "examples": ["£45"],
            },
            "iso_currency_code": {"type": "string", "minLength": 1, "examples": ["gbp"]},
            "currency_symbol": {"type": "string", "minLength": 1, "examples": ["£"]},
            "currency_symbol_position": enum("before", "after"),
        },
    },
}
