"""The data format: one record kind per object, in the API's own shape, declared once.

A provider's data moves in and out as newline-delimited JSON, one object a line, each
with TeamUp's ``object`` name and its ``id`` and fields named as the API serves them
(references by id). Each ``Kind`` says which table its records fill and how each field
maps to columns; its JSON Schema is derived from that table's columns (type, length,
nullability, defaults) and from the resource graph's schema of the same field (enums,
ranges, descriptions), so it is never written by hand. ``transfer.py`` reads and writes
records with these declarations; ``docs/data-format.md`` publishes the schemas.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from functools import cache
from typing import Any, NamedTuple
from zoneinfo import available_timezones

import fastjsonschema
from sqlalchemy import JSON, BigInteger, Boolean, Date, DateTime, Float, Integer, String, Table
from sqlalchemy import Column as SqlColumn

from coursebook import models as m
from coursebook.fields import Column as ColumnField
from coursebook.fields import DateTime as DateTimeField
from coursebook.fields import ValueObject
from coursebook.graph import (
    APPOINTMENT_SETTINGS,
    LOCAL_TIME,
    PHYSICAL_ADDRESS,
    PRICE,
    RESOURCES,
    ROOM_RENTAL_SETTINGS,
    STAFF_PERMISSIONS,
    WEEKDAYS,
)
from coursebook.values import minor_to_amount

#: Keys a field's graph schema lends a record's schema; the rest (examples, formats of
#: the zoned date-times the API writes) describe responses, not records.
LENT_KEYS = ("enum", "minimum", "maximum", "pattern", "description", "title", "default")
#: The range of a 32-bit INTEGER column (PostgreSQL's ``integer``).
INT32 = {"minimum": -(2**31), "maximum": 2**31 - 1}
ID_RANGE = {"minimum": 1, "maximum": m.MAX_ID}
ATTENDANCE_STATUSES = ("registered", "attended", "waitlisted", "cancelled", "no_show")
TIMEZONES = frozenset(available_timezones())


class Invalid(ValueError):
    """A value a schema admits but the database cannot hold; ``path`` says where."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


Row = Mapping[Any, Any]
#: A field's value in a record, from a row of its table.
Dump = Callable[[Row], Any]
#: Puts a record's value of a field into the columns of a row.
Load = Callable[[Any, dict[str, Any]], None]


# -- values: how a record's value maps to columns -----------------------------------------


def utc_stamp(value: datetime) -> str:
    """A stored instant as a record writes it: RFC 3339 in UTC (``Z``)."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    return value.isoformat("T", "seconds" if not value.microsecond else "microseconds") + "Z"


def parse_stamp(path: str, text: str) -> datetime:
    """An instant from a record: RFC 3339 with an offset (``Z`` or ``+01:00``), as UTC."""
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise Invalid(path, f"{text!r} is not an RFC 3339 date-time") from None
    if value.tzinfo is None:
        raise Invalid(path, f"{text!r} has no UTC offset (add Z or +HH:MM)")
    return value.astimezone(UTC)


def parse_day(path: str, text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise Invalid(path, f"{text!r} is not a date (YYYY-MM-DD)") from None


def parse_amount(path: str, text: str) -> int:
    """``"14.00"`` -> 1400 minor units; more than two decimals cannot be kept."""
    try:
        minor = Decimal(text) * 100
    except InvalidOperation:
        raise Invalid(path, f"{text!r} is not an amount such as 14.00") from None
    if minor != minor.to_integral_value() or not -(2**31) <= minor < 2**31:
        raise Invalid(path, f"{text!r} is not an amount of at most two decimals in range")
    return int(minor)


# -- fields of a record ------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    """A record key: its schema, and how its value is dumped from and loaded into a row."""

    name: str
    schema: dict[str, Any]
    dump: Dump
    load: Load
    required: bool
    #: (column, target kind) of each reference the field holds.
    references: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class IdList:
    """A to-many reference kept in a link table: the record's list is the whole set."""

    name: str
    table: Table
    parent: str
    child: str
    target: str
    description: str

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": "array",
            "items": {"type": "integer", **ID_RANGE},
            "uniqueItems": True,
            "default": [],
            "description": self.description,
        }


@dataclass(frozen=True)
class Nested:
    """An object kept in a table of its own, keyed by the record's id (an address)."""

    name: str
    table: Table
    key: str
    fields: tuple[Field, ...]
    description: str

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "type": ["object", "null"],
            "properties": {f.name: f.schema for f in self.fields},
            "required": [f.name for f in self.fields if f.required],
            "additionalProperties": False,
            "default": None,
            "description": self.description,
        }


@dataclass(frozen=True)
class KeptCount:
    """A count the database keeps on the row from ``child``'s rows (by triggers): a
    record may give it alone, for a source that knows only the count; where the
    database holds ``child`` rows of the record, they decide it."""

    column: str
    child: Table
    key: str
    #: The condition on ``child``'s rows that counts one.
    counts: Callable[[Table], Any]


Check = Callable[[dict[str, Any]], None]


@dataclass(frozen=True, eq=False)
class Kind:
    """A record kind: TeamUp's object name, the table it fills and its fields."""

    object: str
    table: Table
    fields: tuple[Field, ...]
    description: str
    lists: tuple[IdList, ...] = ()
    nested: Nested | None = None
    kept: KeptCount | None = None
    #: The chain of (column, table) from this table to the one holding ``provider_id``:
    #: empty when this table holds it; None for a kind no provider owns (users).
    owner: tuple[tuple[str, Table], ...] | None = ()
    #: What a row must meet beyond each value's own schema (a session ends after it starts).
    check: Check | None = None

    @property
    def schema(self) -> dict[str, Any]:
        """The JSON Schema of one record of this kind."""
        properties: dict[str, Any] = {"object": {"const": self.object}}
        properties.update({f.name: f.schema for f in self.fields})
        if self.nested is not None:
            properties[self.nested.name] = self.nested.schema
        properties.update({x.name: x.schema for x in self.lists})
        return {
            "title": self.object,
            "description": self.description,
            "type": "object",
            "properties": properties,
            "required": ["object", *(f.name for f in self.fields if f.required)],
            "additionalProperties": False,
        }

    @property
    def references(self) -> Iterator[tuple[str, str, str]]:
        """(record key, column, target kind) of every to-one reference."""
        for f in self.fields:
            for column, target in f.references:
                yield f.name, column, target


def column_schema(column: SqlColumn[Any], *, reference: bool = False) -> dict[str, Any]:
    """What a column can hold, as JSON Schema: type, length, range, nullability."""
    kind = column.type
    schema: dict[str, Any]
    if isinstance(kind, Boolean):
        schema = {"type": "boolean"}
    elif reference or column.primary_key or isinstance(kind, BigInteger):
        schema = {"type": "integer", **ID_RANGE}
    elif isinstance(kind, Integer):
        schema = {"type": "integer", **INT32}
    elif isinstance(kind, Float):
        schema = {"type": "number"}
    elif isinstance(kind, DateTime):
        schema = {"type": "string", "format": "date-time"}
    elif isinstance(kind, Date):
        schema = {"type": "string", "format": "date"}
    elif isinstance(kind, String):
        schema = {"type": "string"}
        if kind.length is not None:
            schema["maxLength"] = kind.length
    elif isinstance(kind, JSON):
        return {}
    else:
        raise TypeError(f"{column}: no record schema for {kind!r}")
    if column.nullable:
        schema["type"] = [schema["type"], "null"]
    return schema


def _merged(base: dict[str, Any], graph: Mapping[str, Any] | None) -> dict[str, Any]:
    """The column's schema, with what the graph's schema of the same value adds."""
    if not graph:
        return dict(base)
    if not base:  # a JSON column: the graph says what it holds
        return {key: value for key, value in graph.items() if key != "examples"}
    schema = {**base, **{key: graph[key] for key in LENT_KEYS if key in graph}}
    if "enum" in schema and isinstance(base["type"], list) and None not in schema["enum"]:
        schema["enum"] = [*schema["enum"], None]
    for bound, pick in (("minimum", max), ("maximum", min)):
        if bound in base and bound in graph:
            schema[bound] = pick(base[bound], graph[bound])
    return schema


def _default(column: SqlColumn[Any]) -> tuple[bool, Any]:
    """Whether a record may leave the column's key out, and the value it then stands for."""
    if column.default is not None and column.default.is_scalar:
        return True, column.default.arg  # type: ignore[attr-defined]
    if column.server_default is not None:
        return True, int(str(column.server_default.arg))  # type: ignore[attr-defined]
    return bool(column.nullable), None


def plain(
    name: str,
    table: Table,
    column: str | None = None,
    *,
    graph: Mapping[str, Any] | None = None,
    schema: Mapping[str, Any] | None = None,
    parse: Callable[[str, Any], Any] | None = None,
    dump: Callable[[Any], Any] | None = None,
    target: str | None = None,
) -> Field:
    """A record key held in one column of ``table`` (the key's name, unless ``column``)."""
    col = table.c[column or name]
    merged = _merged(column_schema(col, reference=target is not None), graph)
    merged.update(schema or {})
    optional, default = _default(col)
    if optional:
        merged.setdefault("default", default)
    key = col.name

    def dump_row(row: Row) -> Any:
        value = row[key]
        return value if dump is None or value is None else dump(value)

    def load_row(value: Any, out: dict[str, Any]) -> None:
        out[key] = value if parse is None or value is None else parse(name, value)

    references = ((key, target),) if target else ()
    return Field(name, merged, dump_row, load_row, not optional, references)


def _described(f: Field, **extra: Any) -> Field:
    return Field(f.name, {**f.schema, **extra}, f.dump, f.load, f.required, f.references)


def stamp(name: str, table: Table, column: str | None = None) -> Field:
    """An instant: any offset in, UTC out (the API writes it at the venue's offset)."""
    return _described(
        plain(name, table, column, parse=parse_stamp, dump=utc_stamp),
        description="An instant, RFC 3339 with an offset; an export writes it in UTC (Z).",
    )


def day(name: str, table: Table) -> Field:
    return plain(name, table, parse=parse_day, dump=date.isoformat)


def amount(name: str, table: Table, column: str) -> Field:
    """An amount of the provider's currency as a decimal string (``"14.00"``)."""
    f = plain(name, table, column, parse=parse_amount, dump=minor_to_amount)
    schema = {
        "type": "string",
        "pattern": r"^-?[0-9]{1,8}(\.[0-9]{1,2})?$",
        "description": "An amount in the provider's currency, written as the API writes "
        "an offering type's dropin_price.",
    }
    return Field(f.name, schema, f.dump, f.load, f.required)


def ref(name: str, table: Table, column: str, target: str, **kw: Any) -> Field:
    """The id of a record of kind ``target``, in the file or already in the database."""
    return plain(name, table, column, target=target, **kw)


def group(name: str, parts: Mapping[str, Field], value: ValueObject) -> Field:
    """An object whose keys are columns (permissions, settings), nested as the API nests it."""
    graph = value.schema.get("properties", {})
    properties = {key: _merged(f.schema, graph.get(key)) for key, f in parts.items()}
    schema = {
        "type": "object",
        "properties": properties,
        "required": [key for key, f in parts.items() if f.required],
        "additionalProperties": False,
    }

    def dump_row(row: Row) -> dict[str, Any]:
        return {key: f.dump(row) for key, f in parts.items()}

    def load_row(value: Any, out: dict[str, Any]) -> None:
        for key, f in parts.items():
            f.load(value.get(key), out)

    references = tuple(r for f in parts.values() for r in f.references)
    return Field(name, schema, dump_row, load_row, True, references)


def ranges_of(day_name: str) -> Field:
    """``default_monday``...: one weekday's ranges, kept with the others in ``weekly_ranges``."""
    schema = {
        "type": "array",
        "items": {
            "type": "object",
            "required": ["start", "end"],
            "properties": {"start": LOCAL_TIME, "end": LOCAL_TIME},
            "additionalProperties": False,
        },
        "maxItems": 48,
        "default": [],
    }

    def dump_row(row: Row) -> list[dict[str, str]]:
        return [{"start": s, "end": e} for s, e in row["weekly_ranges"].get(day_name, [])]

    def load_row(value: Any, out: dict[str, Any]) -> None:
        ranges = out.setdefault("weekly_ranges", {})
        ranges[day_name] = [[span["start"], span["end"]] for span in value]

    return Field(f"default_{day_name}", schema, dump_row, load_row, False)


def as_in_graph(kind: str, table: Table, *names: str, **columns: str) -> tuple[Field, ...]:
    """Plain fields the resource graph serves under these names (``columns``: key ->
    column, where they differ), with what the graph says of each."""
    resource = RESOURCES[kind]
    found: list[Field] = []
    for name in names:
        served = resource.field(name)
        graph = served.schema if isinstance(served, ColumnField | DateTimeField) else None
        found.append(plain(name, table, columns.get(name), graph=graph))
    return tuple(found)


def provider_of(table: Table) -> Field:
    return _described(
        ref("provider", table, "provider_id", "provider"),
        description="The provider the record belongs to: the file's one provider.",
    )


def _timezone(path: str, value: str) -> str:
    if value not in TIMEZONES:
        raise Invalid(path, f"{value!r} is not an IANA time zone (e.g. Europe/London)")
    return value


def _id(table: Table) -> Field:
    return plain("id", table)


def _session_times(row: dict[str, Any]) -> None:
    if row["ends_at"] < row["starts_at"]:
        raise Invalid("ends_at", "ends before the session starts (starts_at)")


# -- the kinds, in the order a file is written: each after the kinds it refers to ---------

_p, _u, _img, _sp, _cp = m.providers, m.users, m.images, m.staff_profiles, m.customer_profiles
_v, _vr, _ins, _avs = m.venues, m.venue_rooms, m.instructors, m.availability_schedules
_cat, _ms, _ot = m.offering_type_categories, m.memberships, m.offering_types
_asot, _rt = m.availability_schedule_offering_types, m.registration_timelines
_c, _cs, _att = m.courses, m.course_sessions, m.attendances

PROVIDER = Kind(
    "provider",
    _p,
    (
        _id(_p),
        plain("name", _p),
        plain("slug", _p, schema={"pattern": "^[a-z0-9][a-z0-9-]*$"}),
        plain("timezone", _p, parse=_timezone),
        plain("currency_code", _p, schema={"pattern": "^[A-Z]{3}$"}),
        plain("currency_symbol", _p),
        plain(
            "currency_symbol_position",
            _p,
            graph=PRICE.schema["properties"]["currency_symbol_position"],
        ),
    ),
    "The studio: its time zone and currency. A file holds exactly one.",
)
USER = Kind(
    "user",
    _u,
    (_id(_u), plain("email", _u, schema={"pattern": "^[^@\\s]+@[^@\\s]+$"}), plain("name", _u)),
    "A person with a staff or customer profile at the provider. Users are shared by "
    "providers: an import never changes one that another provider also has.",
    owner=None,
)
IMAGE = Kind(
    "image",
    _img,
    (
        _id(_img),
        provider_of(_img),
        plain("url", _img),
        plain("original_width", _img),
        plain("original_height", _img),
        plain("profile", _img, "profile_id"),
        ref("user", _img, "user_id", "user"),
        stamp("created_at", _img),
    ),
    "An uploaded image: a venue room's thumbnail, a category's, offering type's or "
    "registration timeline's image.",
)
STAFF = Kind(
    "staff",
    _sp,
    (
        _id(_sp),
        provider_of(_sp),
        ref("user", _sp, "user_id", "user"),
        group(
            "permissions",
            {name: plain(name, _sp) for name in m.PERMISSION_NAMES},
            STAFF_PERMISSIONS,
        ),
    ),
    "A staff profile: a user's permissions at the provider (an instructor's "
    "`permissions`). What a user token may read follows from them; tokens are never "
    "part of a file.",
)
CUSTOMER = Kind(
    "customer",
    _cp,
    (_id(_cp), provider_of(_cp), ref("user", _cp, "user_id", "user"), plain("name", _cp)),
    "A customer profile: a user as the provider's customer.",
)
VENUE = Kind(
    "venue",
    _v,
    (
        *as_in_graph("venue", _v, "id"),
        provider_of(_v),
        *as_in_graph("venue", _v, "name", "description", "address"),
        _described(
            plain("timezone", _v, graph=RESOURCES["venue"].by_name["timezone"].schema),
            description="IANA time zone name.",
        ),
        *as_in_graph(
            "venue",
            _v,
            "video_url",
            "zoom_user",
            "venue_type",
            "lat",
            "lng",
            "archived",
            "is_online",
            "video_url_type",
        ),
    ),
    "A venue, with its physical address as the API nests it.",
    nested=Nested(
        "physical_address",
        m.physical_addresses,
        "venue_id",
        tuple(
            plain(key, m.physical_addresses, graph=PHYSICAL_ADDRESS.schema["properties"][key])
            for key in PHYSICAL_ADDRESS.keys
        ),
        "The street address of a physical venue; null for an online one.",
    ),
)
VENUE_ROOM = Kind(
    "venue_room",
    _vr,
    (
        *as_in_graph("venue_room", _vr, "id"),
        ref("venue", _vr, "venue_id", "venue"),
        *as_in_graph("venue_room", _vr, "status", "name"),
        ref("thumbnail", _vr, "thumbnail_id", "image"),
    ),
    "A room of a venue; its thumbnail is an image record.",
    owner=(("venue_id", _v),),
)
INSTRUCTOR = Kind(
    "instructor",
    _ins,
    (
        _id(_ins),
        provider_of(_ins),
        ref("staff", _ins, "staff_profile_id", "staff"),
        *as_in_graph("instructor", _ins, "name", "picture_url", "description"),
        _described(
            plain("icalendar_key", _ins),
            description="The secret part of the instructor's iCalendar feed URL (icalendar_links).",
        ),
    ),
    "An instructor: a staff profile that teaches. Its permissions are its staff record's.",
)
AVAILABILITY_SCHEDULE = Kind(
    "availability_schedule",
    _avs,
    (
        _id(_avs),
        ref("instructor", _avs, "instructor_id", "instructor"),
        *as_in_graph("availability_schedule", _avs, "name"),
        ref("venue", _avs, "venue_id", "venue"),
        *[ranges_of(name) for name in WEEKDAYS],
        *as_in_graph("availability_schedule", _avs, "schedule_type"),
        _described(
            plain("is_default", _avs),
            description="A boolean here; the API writes it as the string true or false.",
        ),
    ),
    "An instructor's weekly availability.",
    owner=(("instructor_id", _ins),),
)
CATEGORY = Kind(
    "offering_type_category",
    _cat,
    (
        _id(_cat),
        provider_of(_cat),
        *as_in_graph("offering_type_category", _cat, "name"),
        ref("image", _cat, "image_id", "image"),
        *as_in_graph("offering_type_category", _cat, "color"),
    ),
    "A category of offering types.",
)
MEMBERSHIP = Kind(
    "membership",
    _ms,
    (
        _id(_ms),
        provider_of(_ms),
        *as_in_graph(
            "membership", _ms, "type", "name", "description", "begin_on_first_registration"
        ),
        day("start_date", _ms),
        day("expiration_date", _ms),
        *as_in_graph("membership", _ms, "duration", "duration_unit"),
        amount("one_time_fee", _ms, "one_time_fee_minor"),
        amount("price", _ms, "price_minor"),
        *as_in_graph(
            "membership",
            _ms,
            "use_prorate",
            "category",
            "is_dropin",
            "for_sale",
            "allow_repeat_purchases",
            "visible_to_customers",
            "purchasable_only_by_provider",
            "new_customers_only",
            "penalty_system",
            "is_draft",
            "incomplete_reasons",
            "shareable",
        ),
        _described(
            plain("active_member_count", _ms),
            description="Kept by the database: counted from the file's customer_membership "
            "records where there are any for the membership, else taken as given.",
        ),
    ),
    "A membership the provider sells.",
    kept=KeptCount(
        "active_member_count", m.customer_memberships, "membership_id", lambda t: t.c.active
    ),
)


def _settings(prefix: str, value: ValueObject, extra: Mapping[str, Field]) -> dict[str, Field]:
    base = {key: plain(key, _ot, prefix + key) for key in value.keys if key not in extra}
    return {key: extra.get(key) or base[key] for key in value.keys}


OFFERING_TYPE = Kind(
    "offering_type",
    _ot,
    (
        _id(_ot),
        provider_of(_ot),
        *as_in_graph("offering_type", _ot, "name", "description"),
        ref("category", _ot, "category_id", "offering_type_category"),
        ref("image", _ot, "image_id", "image"),
        *as_in_graph(
            "offering_type",
            _ot,
            "allows_dropins",
            "background_color",
            "cancellation_notice_interval",
            "customer_visibility",
        ),
        amount("dropin_price", _ot, "dropin_price_minor"),
        *as_in_graph(
            "offering_type",
            _ot,
            "has_active_schedules",
            "is_draft",
            "max_allowed_age",
            "min_allowed_age",
            "order",
            "registrations_close_interval",
            "registrations_open_interval",
            "schedule_type",
            "status",
            "waitlist_max",
        ),
        group(
            "appointment_settings",
            _settings(
                "appointment_",
                APPOINTMENT_SETTINGS,
                {
                    "default_venue": ref(
                        "default_venue", _ot, "appointment_default_venue_id", "venue"
                    ),
                    "default_venue_rooms": plain(
                        "default_venue_rooms",
                        _ot,
                        "appointment_default_venue_room_ids",
                        graph=APPOINTMENT_SETTINGS.schema["properties"]["default_venue_rooms"],
                    ),
                },
            ),
            APPOINTMENT_SETTINGS,
        ),
        group(
            "room_rental_settings",
            _settings("room_rental_", ROOM_RENTAL_SETTINGS, {}),
            ROOM_RENTAL_SETTINGS,
        ),
    ),
    "An offering type (a class), with its settings; its instructors and the memberships "
    "that include it are lists of ids.",
    lists=(
        IdList(
            "instructors",
            m.offering_type_instructors,
            "offering_type_id",
            "instructor_id",
            "instructor",
            "Ids of the instructors who teach it.",
        ),
        IdList(
            "memberships",
            m.offering_type_memberships,
            "offering_type_id",
            "membership_id",
            "membership",
            "Ids of the memberships that include it.",
        ),
    ),
)
AVAILABILITY_SCHEDULE_OFFERING_TYPE = Kind(
    "availability_schedule_offering_type",
    _asot,
    (
        _id(_asot),
        ref("offering_type", _asot, "offering_type_id", "offering_type"),
        ref("availability_schedule", _asot, "availability_schedule_id", "availability_schedule"),
        *as_in_graph(
            "availability_schedule_offering_type",
            _asot,
            "venue_rooms",
            venue_rooms="venue_room_ids",
        ),
    ),
    "Which rooms an availability schedule offers an offering type in.",
    owner=(("offering_type_id", _ot),),
)
REGISTRATION_TIMELINE = Kind(
    "registration_timeline",
    _rt,
    (
        _id(_rt),
        ref("offering_type", _rt, "offering_type_id", "offering_type"),
        *as_in_graph("registration_timeline", _rt, "name", "audience_type"),
        ref("thumbnail", _rt, "thumbnail_id", "image"),
    ),
    "When and to whom an offering type's registration opens.",
    owner=(("offering_type_id", _ot),),
)
CUSTOMER_MEMBERSHIP = Kind(
    "customer_membership",
    m.customer_memberships,
    (
        _id(m.customer_memberships),
        ref("customer", m.customer_memberships, "customer_profile_id", "customer"),
        ref("membership", m.customer_memberships, "membership_id", "membership"),
        plain("active", m.customer_memberships),
        day("starts_on", m.customer_memberships),
        day("ends_on", m.customer_memberships),
    ),
    "A membership a customer holds: what customer mode's membership rules read.",
    owner=(("customer_profile_id", _cp),),
)
COURSE = Kind(
    "course",
    _c,
    (
        _id(_c),
        provider_of(_c),
        ref("offering_type", _c, "offering_type_id", "offering_type"),
        *as_in_graph("course", _c, "name", "published"),
    ),
    "A course: a run of sessions of one offering type.",
)
COURSE_SESSION = Kind(
    "course_session",
    _cs,
    (
        _id(_cs),
        provider_of(_cs),
        ref("course", _cs, "course_id", "course"),
        ref("venue", _cs, "venue_id", "venue"),
        stamp("starts_at", _cs),
        stamp("ends_at", _cs),
        *as_in_graph("course_session", _cs, "status", "max_occupancy"),
        _described(
            plain("attending_count", _cs),
            description="Kept by the database: counted from the file's attendance records "
            "where there are any for the session, else taken as given.",
        ),
    ),
    "A course session; its instructors are a list of ids.",
    lists=(
        IdList(
            "instructors",
            m.course_session_instructors,
            "course_session_id",
            "instructor_id",
            "instructor",
            "Ids of the instructors who teach it.",
        ),
    ),
    kept=KeptCount(
        "attending_count",
        _att,
        "course_session_id",
        lambda t: t.c.status.in_(m.ATTENDING_STATUSES),
    ),
    check=_session_times,
)
ATTENDANCE = Kind(
    "attendance",
    _att,
    (
        _id(_att),
        ref("course_session", _att, "course_session_id", "course_session"),
        ref("customer", _att, "customer_profile_id", "customer"),
        plain("status", _att, schema={"enum": list(ATTENDANCE_STATUSES)}),
        stamp("created_at", _att),
    ),
    "A customer's attendance of a session: what its attending_count and occupancy come from.",
    owner=(("course_session_id", _cs),),
)

#: Every kind, in the order an export writes them (each after what it refers to).
KINDS: dict[str, Kind] = {
    kind.object: kind
    for kind in (
        PROVIDER,
        USER,
        IMAGE,
        STAFF,
        CUSTOMER,
        VENUE,
        VENUE_ROOM,
        INSTRUCTOR,
        AVAILABILITY_SCHEDULE,
        CATEGORY,
        MEMBERSHIP,
        OFFERING_TYPE,
        AVAILABILITY_SCHEDULE_OFFERING_TYPE,
        REGISTRATION_TIMELINE,
        CUSTOMER_MEMBERSHIP,
        COURSE,
        COURSE_SESSION,
        ATTENDANCE,
    )
}


# -- reading and writing one record ---------------------------------------------------------


@cache
def validator(kind: Kind) -> Callable[[Any], Any]:
    """``kind``'s schema compiled (fastjsonschema): checks a record and fills its defaults."""
    return fastjsonschema.compile(kind.schema, formats={"date-time": _rfc3339, "date": _date})


def _rfc3339(text: str) -> bool:
    try:
        return datetime.fromisoformat(text).tzinfo is not None
    except ValueError:
        return False


def _date(text: str) -> bool:
    try:
        date.fromisoformat(text)
    except ValueError:
        return False
    return len(text) == 10


class Loaded(NamedTuple):
    """One record as rows: its table's, its nested object's, and its lists' ids (a
    tuple, not a dataclass: an import makes millions)."""

    row: dict[str, Any]
    nested: dict[str, Any] | None
    lists: tuple[list[int], ...]


def load(kind: Kind, record: dict[str, Any]) -> Loaded:
    """The rows of a record its schema has validated (defaults filled in); ``Invalid``
    for what the schema cannot say (a time zone, an amount, times in order)."""
    row: dict[str, Any] = {}
    for name, put in _loads(kind):
        put(record.get(name), row)
    nested = None
    if kind.nested is not None and (value := record.get(kind.nested.name)) is not None:
        nested = {kind.nested.key: row["id"]}
        for f in kind.nested.fields:
            f.load(value.get(f.name), nested)
    if kind.check is not None:
        kind.check(row)
    if not kind.lists:
        return Loaded(row, nested, ())
    return Loaded(row, nested, tuple(record.get(x.name) or [] for x in kind.lists))


@cache
def _loads(kind: Kind) -> tuple[tuple[str, Load], ...]:
    """Each field's record key and load, looked up once per kind rather than per record."""
    return tuple((f.name, f.load) for f in kind.fields)


def dump(kind: Kind, row: Row, nested: Row | None, lists: tuple[list[int], ...]) -> dict[str, Any]:
    """The record of a row (with its nested object's row and its lists' ids), keys in
    declaration order so that the same data always writes the same bytes."""
    record: dict[str, Any] = {"object": kind.object}
    for f in kind.fields:
        record[f.name] = f.dump(row)
    if kind.nested is not None:
        record[kind.nested.name] = (
            None if nested is None else {f.name: f.dump(nested) for f in kind.nested.fields}
        )
    for id_list, ids in zip(kind.lists, lists, strict=True):
        record[id_list.name] = ids
    return record
