"""The resource graph, declared once: value objects, resources and list endpoints.

Each resource lists its fields in the contract's order, in the language of
``fields.py``. A to-many field names the list endpoint (and filter) its related
collection is, so resources are declared after the listings they point at; to-one
relations name their target, which may come later. Query parsing, loading,
rendering, access and the OpenAPI document all read these declarations.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, exists, func, or_, select

from coursebook import models as m
from coursebook.db import local_time
from coursebook.fields import (
    BOOL,
    CUSTOMER_PROFILE_ID,
    DOUBLE,
    INT,
    INT32_RANGE,
    MINUTES,
    RELATED_COLLECTION,
    STR,
    ZONED_DATE_TIME,
    Computed,
    Constant,
    Customers,
    Deferred,
    ForeignKey,
    IdsFilter,
    Listing,
    ParentCondition,
    RenderContext,
    Resource,
    Row,
    Through,
    ValueCondition,
    ValueFilter,
    ValueObject,
    attr,
    computed,
    date_time,
    deferred_many,
    enum_schema,
    int32,
    nullable_schema,
    obj,
    ref,
    to_many,
    to_one,
)
from coursebook.values import (
    Bound,
    choices,
    iso_date,
    local_datetime,
    minor_to_amount,
    parse_bound,
)

SEE, HIDDEN = Customers.SEE, Customers.HIDDEN

#: The row key holding each key of a value object (``ValueObject.build``).
Columns = dict[str, str]

# -- value objects ----------------------------------------------------------------------


def _image(row: Row, _ctx: RenderContext, columns: Columns) -> dict[str, Any] | None:
    if row[columns["id"]] is None:
        return None
    return {key: row[column] for key, column in columns.items()}


IMAGE = ValueObject(
    "Image",
    {
        "type": "object",
        "properties": {
            "id": {"type": "integer", "examples": [13314]},
            "url": {"type": "string", "format": "uri"},
            "original_width": {"type": "number", "examples": [64]},
            "original_height": {"type": "integer", "examples": [64]},
        },
    },
    ("id", "url", "original_width", "original_height"),
    _image,
)


def _thumbnail(row: Row, _ctx: RenderContext, columns: Columns) -> dict[str, Any] | None:
    if (image_id := row[columns["id"]]) is None:
        return None
    return {
        "id": image_id,
        "object": "image",
        "url": row[columns["url"]],
        "profile": row[columns["profile_id"]],
        "original_width": row[columns["original_width"]],
        "original_height": row[columns["original_height"]],
        "user": row[columns["user_id"]],
        "created_at": local_datetime(row[columns["created_at"]], row[columns["zone"]]),
    }


THUMBNAIL = ValueObject(
    "Thumbnail",
    {
        "type": "object",
        "required": ["id", "object", "url", "created_at"],
        "properties": {
            "id": INT,
            "object": enum_schema("image"),
            "url": {"type": "string", "format": "uri"},
            "profile": {"type": ["integer", "null"]},
            "original_width": int32({"type": ["integer", "null"]}),
            "original_height": int32({"type": ["integer", "null"]}),
            "user": {"type": ["integer", "null"]},
            "created_at": ZONED_DATE_TIME,
        },
    },
    ("id", "url", "profile_id", "original_width", "original_height", "user_id", "created_at"),
    _thumbnail,
    zoned=True,
)

_ADDRESS_KEYS = ("street", "street_secondary", "city", "region", "postal_code", "country")


def _physical_address(row: Row, _ctx: RenderContext, columns: Columns) -> dict[str, Any] | None:
    if row[columns["street"]] is None:
        return None
    address = {key: row[columns[key]] for key in _ADDRESS_KEYS}
    for key in ("lat", "lng"):
        if (value := row[columns[key]]) is not None:
            address[key] = value
    return address


PHYSICAL_ADDRESS = ValueObject(
    "PhysicalAddress",
    {
        "type": "object",
        "required": list(_ADDRESS_KEYS),
        "properties": {
            "street": STR,
            "street_secondary": nullable_schema(STR),
            "city": STR,
            "region": STR,
            "postal_code": STR,
            "country": STR,
            "lat": DOUBLE,
            "lng": DOUBLE,
        },
    },
    (*_ADDRESS_KEYS, "lat", "lng"),
    _physical_address,
)


def _price(row: Row, _ctx: RenderContext, columns: Columns) -> dict[str, Any]:
    minor = row[columns["minor"]]
    symbol = row[columns["currency_symbol"]]
    position = row[columns["currency_symbol_position"]]
    amount = minor_to_amount(minor)
    return {
        "decimal": minor / 100,
        "string": f"{symbol}{amount}" if position == "before" else f"{amount} {symbol}",
        "iso_currency_code": row[columns["currency_code"]].lower(),
        "currency_symbol": symbol,
        "currency_symbol_position": position,
    }


#: An amount in minor units (``minor``) in the provider's currency.
PRICE = ValueObject(
    "Price",
    {
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
            "currency_symbol_position": enum_schema("before", "after"),
        },
    },
    ("minor", "currency_code", "currency_symbol", "currency_symbol_position"),
    _price,
)


def _permissions(row: Row, ctx: RenderContext, columns: Columns) -> dict[str, bool]:
    if ctx.redact_permissions:
        return {}
    return {name: bool(row[column]) for name, column in columns.items()}


STAFF_PERMISSIONS = ValueObject(
    "StaffPermissions",
    {"type": "object", "properties": {name: BOOL for name in m.PERMISSION_NAMES}},
    m.PERMISSION_NAMES,
    _permissions,
)

_INCREMENTS: dict[str, Any] = {"enum": [None, 15, 30, 45, 60]}
_SETTINGS_KEYS = ("duration", "buffer_before", "buffer_after", "start_time_increments")


def _settings_schema(*extra: tuple[str, dict[str, Any]], required: list[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "required": required,
        "properties": {
            "duration": {**MINUTES, "minimum": 5, "maximum": 1440},
            "buffer_before": {**MINUTES, "minimum": 0, "maximum": 1440, "default": 0},
            "buffer_after": {**MINUTES, "minimum": 0, "maximum": 1440, "default": 0},
            "start_time_increments": _INCREMENTS,
            **dict(extra),
        },
    }


def _as_is(row: Row, _ctx: RenderContext, columns: Columns) -> dict[str, Any]:
    return {key: row[column] for key, column in columns.items()}


APPOINTMENT_SETTINGS = ValueObject(
    "AppointmentSettings",
    _settings_schema(
        ("default_venue", INT),
        ("default_venue_rooms", {"type": "array", "items": INT}),
        required=["duration", "default_venue", "default_venue_rooms"],
    ),
    (*_SETTINGS_KEYS, "default_venue", "default_venue_rooms"),
    _as_is,
)

ROOM_RENTAL_SETTINGS = ValueObject(
    "RoomRentalSettings",
    _settings_schema(("room_uniformity", BOOL), required=["duration", "room_uniformity"]),
    (*_SETTINGS_KEYS, "room_uniformity"),
    _as_is,
)

LOCAL_TIME: dict[str, Any] = {
    "type": "string",
    "pattern": "^([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]$",
    "description": "Local wall-clock time of day, HH:MM:SS, no offset.",
}

#: Schemas of values that are not built from columns of their own.
PLAIN_SCHEMAS: dict[str, dict[str, Any]] = {
    "RelatedCollection": {
        "type": "string",
        "description": "A URL to a collection of related resources.",
        "examples": ["https://goteamup.com/api/v2/related_collection"],
    },
    "Minutes": {**MINUTES},
    "Int32": {"type": "integer", **INT32_RANGE},
    # The contract says ``format: time``, which RFC 3339 defines with a UTC offset; these
    # are wall-clock times in the venue's zone with no offset (SEMANTICS.md section 12),
    # so the document states the shape by pattern (docs/contract/allowed_differences.yaml).
    "TimeRange": {
        "type": "object",
        "required": ["start", "end"],
        "properties": {"start": LOCAL_TIME, "end": LOCAL_TIME},
    },
}

VALUE_OBJECTS = (
    IMAGE,
    THUMBNAIL,
    PHYSICAL_ADDRESS,
    PRICE,
    STAFF_PERMISSIONS,
    APPOINTMENT_SETTINGS,
    ROOM_RENTAL_SETTINGS,
)


def _with_image(table: Any, image_key: str, *extra: ColumnElement[Any]) -> Select[Any]:
    """``table``'s rows with the image its ``image_key`` column points at (``img_*``)."""
    image = m.images.alias(f"{table.name}_image")
    return select(table, *extra, *IMAGE.columns(image, "img_")).select_from(
        table.outerjoin(image, image.c.id == table.c[image_key])
    )


# -- availability, memberships, timelines, categories (leaves of the graph) ---------------

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
_TIME_RANGES: dict[str, Any] = {"type": "array", "items": ref("TimeRange")}
_RANGES = ("weekly_ranges",)


def _weekday(day: str) -> Computed:
    def get(row: Row, _ctx: RenderContext) -> list[dict[str, str]]:
        return [{"start": start, "end": end} for start, end in row["weekly_ranges"].get(day, [])]

    return computed(f"default_{day}", _TIME_RANGES, get, _RANGES, required=False)


def _has_availability(row: Row, _ctx: RenderContext) -> str:
    return "true" if any(row["weekly_ranges"].get(day) for day in WEEKDAYS) else "false"


AVAILABILITY_SCHEDULE = Resource(
    name="availability_schedule",
    title="AvailabilitySchedule",
    table=m.availability_schedules,
    statement=select(m.availability_schedules),
    fields=(
        attr("id", INT),
        Constant(
            name="object",
            schema={
                "description": "The page lists [null] as the only value (quirk).",
                "enum": [None],
            },
            value=None,
        ),
        attr("name", {"type": "string", "maxLength": 32}, required=False, omit_if_none=True),
        attr("venue", {"type": ["integer", "null"]}, key="venue_id", required=False),
        *[_weekday(day) for day in WEEKDAYS],
        attr(
            "schedule_type",
            {"type": "string", "enum": ["IU", "RRTL", "GC"], "default": "IU"},
            required=False,
        ),
        attr("instructor", INT, key="instructor_id"),
        computed(
            "is_default",
            {"type": "string", "description": "Typed as a string on the page (quirk)."},
            lambda row, _ctx: "true" if row["is_default"] else "false",
            ("is_default",),
        ),
        computed(
            "has_availability",
            {"type": "string", "description": "Typed as a string on the page (quirk)."},
            _has_availability,
            _RANGES,
        ),
    ),
    order_by=(m.availability_schedules.c.id,),
    customer_rows=(),
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
        attr("venue_rooms", {"type": "array", "items": INT}, key="venue_room_ids", required=False),
    ),
    order_by=(_asot.c.id,),
    customer_rows=(),
)

_ms = m.memberships
_CURRENCY = ("currency_code", "currency_symbol", "currency_symbol_position")


def _price_field(name: str, minor: str) -> Computed:
    return PRICE.field(name, renamed={"minor": minor})


def _membership_url(name: str, schema: dict[str, Any], template: str) -> Computed:
    return computed(
        name, schema, lambda row, ctx: ctx.base_url + template.format(id=row["id"]), ("id",)
    )


def _date(name: str) -> Computed:
    return computed(
        name,
        {"type": ["string", "null"], "format": "date"},
        lambda row, _ctx: iso_date(row[name]),
        (name,),
        required=False,
    )


MEMBERSHIP = Resource(
    name="membership",
    title="Membership",
    table=_ms,
    statement=select(_ms, *[m.providers.c[key] for key in _CURRENCY]).select_from(
        _ms.join(m.providers, m.providers.c.id == _ms.c.provider_id)
    ),
    fields=(
        attr("id", INT),
        obj("membership"),
        attr("type", enum_schema("pack", "recurring_plan", "prepaid_plan")),
        attr("name", STR),
        attr("description", STR),
        attr("begin_on_first_registration", BOOL),
        _date("start_date"),
        _date("expiration_date"),
        attr("duration", INT),
        attr(
            "duration_unit",
            {"type": "string", "enum": ["days", "weeks", "months"], "default": "days"},
            required=False,
        ),
        _price_field("one_time_fee", "one_time_fee_minor"),
        _price_field("price", "price_minor"),
        _price_field("display_price", "price_minor"),
        attr("use_prorate", BOOL),
        attr("category", INT),
        attr("is_dropin", BOOL),
        attr("for_sale", BOOL),
        computed(
            "has_active_members",
            BOOL,
            lambda row, _ctx: row["active_member_count"] > 0,
            ("active_member_count",),
        ),
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
        _membership_url(
            "allotment", {"type": "string", "format": "uri"}, "/api/v2/memberships/{id}/allotment"
        ),
        _membership_url("plans", RELATED_COLLECTION, "/api/v2/membership_plans?membership={id}"),
        _membership_url("terms", RELATED_COLLECTION, "/api/v2/membership_terms?membership={id}"),
        attr("is_draft", BOOL),
        attr("incomplete_reasons", {"type": "array", "items": STR}),
        attr("shareable", BOOL, required=False),
    ),
    order_by=(_ms.c.id,),
    provider_column=_ms.c.provider_id,
    customer_rows=(_ms.c.visible_to_customers.is_(True), _ms.c.is_draft.is_(False)),
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
            enum_schema(
                "everyone",
                "business_only",
                "membership_holders",
                "specific_memberships",
                "specific_customers",
                "private_url",
            ),
        ),
        IMAGE.field("thumbnail", "img_", nullable=True),
    ),
    order_by=(_rt.c.id,),
    customer_rows=(),
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
        IMAGE.field("image", "img_", nullable=True),
        attr("color", STR),
    ),
    order_by=(_cat.c.id,),
    provider_column=_cat.c.provider_id,
    customer_rows=(),
)

# -- instructors ----------------------------------------------------------------------------

_sp = m.staff_profiles


def _icalendar_links(row: Row, ctx: RenderContext) -> dict[str, str]:
    link = f"{ctx.base_url}/ical/instructors/{row['id']}/{row['icalendar_key']}.ics"
    return {"link": link, "webcal_url": "webcal" + link[link.index("://") :]}


INSTRUCTOR = Resource(
    name="instructor",
    title="Instructor",
    table=m.instructors,
    statement=select(m.instructors, *STAFF_PERMISSIONS.columns(_sp, "perm_")).select_from(
        m.instructors.join(_sp, _sp.c.id == m.instructors.c.staff_profile_id)
    ),
    fields=(
        attr("id", INT),
        obj("instructor"),
        attr("name", STR),
        attr("picture_url", STR),
        attr("description", STR),
        STAFF_PERMISSIONS.field("permissions", "perm_"),
        attr("staff", INT, key="staff_profile_id"),
        deferred_many(
            "availability_schedules",
            AVAILABILITY_SCHEDULE,
            ForeignKey("instructor_id"),
            customers=HIDDEN,
        ),
        Deferred(
            name="icalendar_links",
            schema={
                "type": "object",
                "required": ["link", "webcal_url"],
                "properties": {
                    "link": {"type": "string", "format": "uri"},
                    "webcal_url": {"type": "string", "format": "uri"},
                },
            },
            get=_icalendar_links,
            reads=("id", "icalendar_key"),
        ),
        Constant(
            name="integrations",
            schema={"type": "array", "description": "Item type is undefined on the page (quirk)."},
            value=[],
        ),
    ),
    order_by=(m.instructors.c.id,),
    provider_column=m.instructors.c.provider_id,
    customer_rows=(),
)

_cs = m.course_sessions
_csi = m.course_session_instructors
_oti = m.offering_type_instructors
_ins = m.instructors


def _linked(
    own: ColumnElement[Any], listed: ColumnElement[Any], other: ColumnElement[Any]
) -> ParentCondition:
    """Rows with a link-table row whose ``own`` column is the row and ``other`` a parent."""
    return lambda ids: exists(select(own).where(own == listed, other.in_(ids)))


INSTRUCTORS = Listing(
    path="/api/v2/instructors",
    resource=INSTRUCTOR,
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

# -- venues and rooms ---------------------------------------------------------------------

_thumb = m.images.alias("thumbnail")
_vr = m.venue_rooms

VENUE_ROOM = Resource(
    name="venue_room",
    title="VenueRoom",
    table=_vr,
    statement=select(_vr, *THUMBNAIL.columns(_thumb, "thumb_")).select_from(
        _vr.join(m.venues, m.venues.c.id == _vr.c.venue_id).outerjoin(
            _thumb, _thumb.c.id == _vr.c.thumbnail_id
        )
    ),
    fields=(
        attr("id", INT),
        obj("venue_room"),
        attr("status", enum_schema("active", "archived")),
        attr("name", {"type": "string", "maxLength": 64}),
        to_one("venue", "venue", "venue_id", customers=SEE),
        THUMBNAIL.field("thumbnail", "thumb_", required=False, omit_if_none=True),
    ),
    order_by=(_vr.c.id,),
    provider_column=m.venues.c.provider_id,
    customer_rows=(),
    zone=m.venues.c.timezone,
)

VENUE_ROOMS = Listing(
    path="/api/v2/venue_rooms",
    resource=VENUE_ROOM,
    filters=(
        IdsFilter(
            "venue",
            "venue",
            lambda ids: _vr.c.venue_id.in_(ids),
            "Rooms of these venues (comma-separated ids).",
        ),
    ),
    sorts={"id": (_vr.c.id,), "-id": (_vr.c.id.desc(),)},
    default_sort="id",
    summary="List venue rooms",
)

_pa = m.physical_addresses

VENUE = Resource(
    name="venue",
    title="Venue",
    table=m.venues,
    statement=select(m.venues, *PHYSICAL_ADDRESS.columns(_pa, "pa_")).select_from(
        m.venues.outerjoin(_pa, _pa.c.venue_id == m.venues.c.id)
    ),
    fields=(
        attr("id", INT),
        obj("venue"),
        attr("name", {"type": "string", "maxLength": 200}),
        attr("description", nullable_schema(STR), required=False),
        attr("address", STR),
        PHYSICAL_ADDRESS.field("physical_address", "pa_", nullable=True, required=False),
        attr("timezone", {"type": "string", "maxLength": 250}),
        attr("video_url", nullable_schema(STR), required=False),
        attr("zoom_user", INT),
        attr("venue_type", enum_schema("physical", "online")),
        to_many("venue_rooms", VENUE_ROOMS, "venue", ForeignKey("venue_id"), customers=SEE),
        attr("lat", DOUBLE),
        attr("lng", DOUBLE),
        attr("archived", BOOL),
        attr("is_online", BOOL),
        attr("video_url_type", enum_schema("static", "zoom"), required=False, omit_if_none=True),
    ),
    order_by=(m.venues.c.id,),
    provider_column=m.venues.c.provider_id,
    customer_rows=(),
)

# -- course sessions ----------------------------------------------------------------------

_SESSION_URL_READS = ("provider_id", "provider_slug", "id")


def _session_url(name: str, audience: str) -> Computed:
    return computed(
        name,
        STR,
        lambda row, _ctx: (
            f"/p/{row['provider_id']}-{row['provider_slug']}/{audience}course_sessions/{row['id']}"
        ),
        _SESSION_URL_READS,
    )


def customer_may_book() -> ColumnElement[bool]:
    """Offering types a customer may see: live, and public or, for membership holders,
    linked to an active membership the customer holds."""
    ot = m.offering_types
    holds_membership = exists(
        select(m.customer_memberships.c.id)
        .join(
            m.offering_type_memberships,
            m.offering_type_memberships.c.membership_id == m.customer_memberships.c.membership_id,
        )
        .where(
            m.offering_type_memberships.c.offering_type_id == ot.c.id,
            m.customer_memberships.c.customer_profile_id == CUSTOMER_PROFILE_ID,
            m.customer_memberships.c.active.is_(True),
        )
    )
    return and_(
        ot.c.is_draft.is_(False),
        or_(
            ot.c.customer_visibility == "public",
            and_(ot.c.customer_visibility == "membership_holders", holds_membership),
        ),
    )


def customer_visible_sessions() -> ColumnElement[bool]:
    """Sessions a customer may see: published course, live offering type they may book."""
    ot = m.offering_types
    visible_courses = (
        select(m.courses.c.id)
        .join(ot, ot.c.id == m.courses.c.offering_type_id)
        .where(m.courses.c.published.is_(True), customer_may_book())
    )
    return _cs.c.course_id.in_(visible_courses.correlate(None))


#: Where a session takes place: its venue's zone; an online venue is no place, so its
#: sessions are in their provider's zone (docs/contract/SEMANTICS.md section 7).
_session_zone = case(
    (m.venues.c.venue_type == "online", m.providers.c.timezone), else_=m.venues.c.timezone
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
        _cs.join(m.courses, m.courses.c.id == _cs.c.course_id)
        .join(m.providers, m.providers.c.id == _cs.c.provider_id)
        .join(m.venues, m.venues.c.id == _cs.c.venue_id)
    ),
    fields=(
        attr("id", INT),
        obj("course_session"),
        attr("name", {**nullable_schema(STR), "title": "Course Name"}, key="course_name"),
        date_time("starts_at"),
        date_time("ends_at"),
        attr("status", enum_schema("active", "cancelled")),
        attr("attending_count", INT),
        attr(
            "max_occupancy",
            {
                "type": ["integer", "null"],
                "description": "None and 0 both represent unlimited occupancy.",
            },
        ),
        to_one("venue", "venue", "venue_id", customers=SEE),
        to_many(
            "instructors",
            INSTRUCTORS,
            "course_session",
            Through(_csi, "course_session_id", "instructor_id"),
            customers=SEE,
        ),
        to_one("course", "course", "course_id", customers=SEE),
        _session_url("customer_url", "c/"),
        _session_url("provider_url", ""),
    ),
    order_by=(_cs.c.starts_at, _cs.c.id),
    provider_column=_cs.c.provider_id,
    customer_rows=(customer_visible_sessions(),),
    zone=_session_zone,
)

#: A date-time filter's value: RFC 3339 (seconds may be left out), a plain date, or
#: nothing (the filter is then absent).
DATE_TIME_FILTER: dict[str, Any] = {
    "type": "string",
    "anyOf": [{"format": "date-time"}, {"format": "date"}, {"maxLength": 0}],
}
#: More than any UTC offset a time zone has had (Python's tzinfo requires less).
ANY_OFFSET = timedelta(days=1)


def _compare(expression: ColumnElement[Any], upper: bool) -> ValueCondition:
    """Rows whose ``expression`` is within a ``Bound``: at or after it, or (``upper``)
    at or before it (before it, for the midnight ending a plain date)."""

    def condition(bound: Bound) -> ColumnElement[bool]:
        if not upper:
            return expression >= bound.at
        return expression <= bound.at if bound.inclusive else expression < bound.at

    return condition


def _shifted(value: datetime, delta: timedelta) -> datetime:
    """``value + delta``, held at the edge of time rather than past it."""
    try:
        return value + delta
    except OverflowError:
        return (datetime.max if delta > timedelta(0) else datetime.min).replace(tzinfo=value.tzinfo)


def _venue_zone() -> ColumnElement[str]:
    """The IANA time zone of the listed session's venue."""
    venues = m.venues
    return (
        select(venues.c.timezone).where(venues.c.id == _cs.c.venue_id).correlate(_cs)
    ).scalar_subquery()


def _local_start(upper: bool) -> ValueCondition:
    """Sessions whose start, as a wall-clock time in their venue's zone, is within a
    ``Bound`` of local time.

    The exact test (``local_time``, per row) runs only for starts within a day of the
    bound read as UTC: an earlier or later start is in or out whatever its zone, and
    that part is a range of the provider's start index.
    """
    exact = _compare(local_time(_cs.c.starts_at, _venue_zone()), upper)
    start = _cs.c.starts_at

    def condition(bound: Bound) -> ColumnElement[bool]:
        as_utc = bound.at.replace(tzinfo=UTC)
        earliest, latest = _shifted(as_utc, -ANY_OFFSET), _shifted(as_utc, ANY_OFFSET)
        if upper:
            return and_(start < latest, or_(start < earliest, exact(bound)))
        return and_(start >= earliest, or_(start >= latest, exact(bound)))

    return condition


def _time_filters(
    name: str, column: ColumnElement[Any], what: str, deprecated_for: str | None = None
) -> list[ValueFilter]:
    """``name_gte`` and ``name_lte``: sessions whose ``column`` (an instant) is within."""
    notes = {
        False: "at or after this date-time (RFC 3339, UTC when no offset).",
        True: "at or before this date-time (RFC 3339, UTC when no offset); a plain date "
        "covers that whole day, in UTC.",
    }
    return [
        ValueFilter(
            f"{name}_{op}",
            partial(parse_bound, upper=upper),
            _compare(column, upper),
            DATE_TIME_FILTER,
            f"Deprecated: use {deprecated_for}_{op}."
            if deprecated_for
            else f"Sessions {what} {notes[upper]}",
            deprecated=deprecated_for is not None,
        )
        for op, upper in (("gte", False), ("lte", True))
    ]


def _local_time_filters() -> list[ValueFilter]:
    """``local_starts_at_gte`` / ``_lte``: starts as wall-clock times in the venue's zone."""
    notes = {
        False: "at or after this local time",
        True: "at or before this local time (a plain date covers that whole local day)",
    }
    return [
        ValueFilter(
            f"local_starts_at_{op}",
            partial(parse_bound, upper=upper, local=True),
            _local_start(upper),
            DATE_TIME_FILTER,
            f"Sessions starting {notes[upper]} in their venue's time zone, e.g. "
            "2026-04-30T06:30:00. An offset, if any, is disregarded.",
        )
        for op, upper in (("gte", False), ("lte", True))
    ]


def _choice_filter(
    name: str, conditions: dict[str, ColumnElement[bool]], description: str
) -> ValueFilter:
    """``name=a,b``: rows meeting the condition of any of the named choices."""
    return ValueFilter(
        name,
        choices(*conditions),
        lambda values: or_(*(conditions[value] for value in values)),
        {"type": "array", "items": {"type": "string", "enum": ["", *conditions]}},
        description,
    )


def _occupancy() -> dict[str, ColumnElement[bool]]:
    """What each ``occupancy_status`` means, from the kept ``attending_count`` (registered
    or attended), ``max_occupancy`` (None or 0: unlimited, never full) and waitlisted
    attendances."""
    count, limit = _cs.c.attending_count, _cs.c.max_occupancy
    waitlisted = select(m.attendances.c.id).where(
        m.attendances.c.course_session_id == _cs.c.id, m.attendances.c.status == "waitlisted"
    )
    return {
        "full": and_(limit > 0, count >= limit),
        "not_full": or_(limit.is_(None), limit <= 0, count < limit),
        "has_registrations": count > 0,
        "has_waitlist": exists(waitlisted.correlate(_cs)),
        "empty": count == 0,
    }


_by_start = (_cs.c.starts_at, _cs.c.id)
_by_start_descending = (_cs.c.starts_at.desc(), _cs.c.id.desc())

COURSE_SESSIONS = Listing(
    path="/api/v2/course_sessions",
    resource=COURSE_SESSION,
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
            "Sessions taught by any of these instructors (comma-separated ids); `me` is the "
            "caller's own instructor, and matches nothing for a caller who has none.",
            me=_ins.c.staff_profile_id,
        ),
        IdsFilter(
            "offering_types",
            "offering_type",
            lambda ids: _cs.c.course_id.in_(
                select(m.courses.c.id).where(m.courses.c.offering_type_id.in_(ids)).correlate(None)
            ),
            "Sessions of courses of these offering types (comma-separated ids).",
        ),
        _choice_filter(
            "status",
            {status: _cs.c.status == status for status in ("active", "cancelled")},
            "Sessions with any of these statuses (comma-separated).",
        ),
        *_time_filters("starts_at", _cs.c.starts_at, "starting"),
        *_time_filters("ends_at", _cs.c.ends_at, "ending"),
        *_local_time_filters(),
        *_time_filters("start", _cs.c.starts_at, "starting", deprecated_for="starts_at"),
        _choice_filter(
            "occupancy_status",
            _occupancy(),
            "Sessions in any of these states (comma-separated): `full` (a limit, reached), "
            "`not_full`, `has_registrations` (someone registered or attended), "
            "`has_waitlist` (someone waitlisted), `empty` (nobody registered).",
        ),
    ),
    sorts={
        "start": _by_start,
        "-start": _by_start_descending,
        "starts_at": _by_start,
        "-starts_at": _by_start_descending,
        "id": (_cs.c.id,),
        "-id": (_cs.c.id.desc(),),
    },
    default_sort="start",
    summary="List course sessions",
)

# -- offering types and courses -----------------------------------------------------------

_ot = m.offering_types
_memberships_count = (
    select(func.count())
    .where(m.offering_type_memberships.c.offering_type_id == _ot.c.id)
    .scalar_subquery()
)


def _memberships_summary(row: Row, _ctx: RenderContext) -> str:
    count = row["memberships_count"]
    if count == 0:
        return "Not included in any membership"
    return f"Included in {count} membership{'s' if count != 1 else ''}"


def _has_pricing(row: Row, _ctx: RenderContext) -> bool:
    return bool(row["dropin_price_minor"] > 0 or row["memberships_count"] > 0)


def _settings(name: str, value: ValueObject, prefix: str, **renamed: str) -> Computed:
    """One of the offering type's settings objects, marked expandable (quirk)."""
    field = value.field(name, prefix, renamed=renamed, marked_expandable=True)
    note = "Both oneOf branches on the page are this same object."
    return replace(field, schema={**field.schema, "description": note})


OFFERING_TYPE = Resource(
    name="offering_type",
    title="OfferingType",
    table=_ot,
    statement=_with_image(_ot, "image_id", _memberships_count.label("memberships_count")),
    fields=(
        attr("allows_dropins", BOOL),
        _settings(
            "appointment_settings",
            APPOINTMENT_SETTINGS,
            "appointment_",
            default_venue="appointment_default_venue_id",
            default_venue_rooms="appointment_default_venue_room_ids",
        ),
        attr("background_color", STR),
        attr("cancellation_notice_interval", {**MINUTES, "default": 0}, required=False),
        to_one(
            "category",
            "offering_type_category",
            "category_id",
            customers=SEE,
            schema={"type": ["integer", "null"]},
        ),
        attr("customer_visibility", enum_schema("public", "membership_holders", "private")),
        attr("description", nullable_schema(STR), required=False),
        computed(
            "dropin_price",
            STR,
            lambda row, _ctx: minor_to_amount(row["dropin_price_minor"]),
            ("dropin_price_minor",),
        ),
        attr("has_active_schedules", BOOL),
        computed("has_pricing", BOOL, _has_pricing, ("dropin_price_minor", "memberships_count")),
        attr("id", INT),
        IMAGE.field("image", "img_", nullable=True),
        to_many(
            "instructors",
            INSTRUCTORS,
            "offering_type",
            Through(_oti, "offering_type_id", "instructor_id"),
            customers=SEE,
        ),
        attr("is_draft", BOOL),
        attr(
            "max_allowed_age",
            {
                **int32({"type": ["integer", "null"]}),
                "description": "Can be no older than this many years to register",
            },
            required=False,
        ),
        attr("memberships_count", INT),
        computed(
            "memberships_summary_description",
            STR,
            _memberships_summary,
            ("memberships_count",),
        ),
        attr(
            "min_allowed_age",
            {
                **int32({"type": ["integer", "null"]}),
                "description": "Must be at least this many years old to register",
            },
            required=False,
        ),
        attr("name", {"type": "string", "maxLength": 256}),
        obj("offering_type"),
        attr("order", int32({"type": ["integer", "null"]}), required=False),
        attr("registrations_close_interval", {**MINUTES, "default": 0}, required=False),
        attr("registrations_open_interval", {**MINUTES, "default": 0}, required=False),
        _settings("room_rental_settings", ROOM_RENTAL_SETTINGS, "room_rental_"),
        attr("schedule_type", STR),
        attr("status", enum_schema("active", "archived", "unknown")),
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
            AVAILABILITY_SCHEDULE_OFFERING_TYPE,
            ForeignKey("offering_type_id"),
            customers=HIDDEN,
        ),
        deferred_many(
            "memberships",
            MEMBERSHIP,
            Through(m.offering_type_memberships, "offering_type_id", "membership_id"),
            customers=SEE,
        ),
        deferred_many(
            "registration_timelines",
            REGISTRATION_TIMELINE,
            ForeignKey("offering_type_id"),
            customers=SEE,
        ),
    ),
    order_by=(_ot.c.id,),
    provider_column=_ot.c.provider_id,
    customer_rows=(customer_may_book(),),
)

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
        to_one("offering_type", "offering_type", "offering_type_id", customers=SEE),
        attr("published", BOOL, required=False),
        to_many(
            "course_sessions",
            COURSE_SESSIONS,
            "course",
            ForeignKey("course_id"),
            customers=SEE,
        ),
    ),
    order_by=(m.courses.c.id,),
    provider_column=m.courses.c.provider_id,
    customer_rows=(),
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

LISTINGS: tuple[Listing, ...] = (COURSE_SESSIONS, INSTRUCTORS, VENUE_ROOMS)

#: Schemas of the value objects fields embed (not resources: nothing loads them alone).
VALUE_SCHEMAS: dict[str, dict[str, Any]] = {
    **PLAIN_SCHEMAS,
    **{value.title: value.schema for value in VALUE_OBJECTS},
}
