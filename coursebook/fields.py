"""The field language: resources, their fields by kind, value objects and list endpoints.

A field's kind is its type (as Django REST framework's field classes are), so the
stages that read the graph (``projection``, ``loader``, ``render``, ``openapi``)
``match`` on it instead of working out which optional attribute applies:

- ``Column``: the row's column, as it is or through a conversion;
- ``DateTime``: the row's date-time column, written at the offset of its resource's zone;
- ``Constant``: always the same value (the ``object`` field);
- ``Computed``: a getter over the row, with the row keys it reads (required: a
  level loads only the columns its fields read);
- ``Deferred``: a computed value rendered only when asked for by name;
- ``ToOne``: the target's id until expanded, then the target object;
- ``ToMany``: the URL of a list endpoint filtered to the row until expanded, then the
  objects; it names the ``Listing`` and filter it points at;
- ``DeferredMany``: related objects rendered only when asked for by name.

Relations also say what customer mode does with them (``Customers``); resources say
which of their rows a customer may see, and the zone their date-times are written in.
``graph.py`` declares the resources in this language.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache, partial
from typing import Any, ClassVar, NamedTuple

from sqlalchemy import ColumnElement, FromClause, Select, Table, bindparam

from coursebook import models as m


class RenderContext(NamedTuple):
    """What rendering needs beyond the rows: where absolute links point, what is hidden."""

    base_url: str
    redact_permissions: bool = False


Row = Mapping[Any, Any]
Getter = Callable[[Row, RenderContext], Any]

#: Bound parameters of the access conditions; a request's ``Access.params`` gives their
#: values, so that every statement is built once and reused.
PROVIDER_ID = bindparam("access_provider_id", type_=m.Id)
STAFF_PROFILE_ID = bindparam("access_staff_profile_id", type_=m.Id)
CUSTOMER_PROFILE_ID = bindparam("access_customer_profile_id", type_=m.Id)

Conditions = tuple[ColumnElement[bool], ...]

#: The row key holding the IANA zone name a resource's date-times are written in: the
#: resource declares it once (``Resource.zone``) and its statement selects it as this key.
ZONE = "zone"


class Customers(enum.Enum):
    """What customer mode does with a relation (``docs/access.md``)."""

    #: Loaded as for staff, keeping only the target rows a customer may see.
    SEE = "see"
    #: Not available in customer mode: asking for it is a 400.
    HIDDEN = "hidden"


# -- field kinds ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class Field:
    """What every field has: its name, its JSON Schema, and how it is written."""

    name: str
    schema: dict[str, Any]
    required: bool = True
    omit_if_none: bool = False

    @property
    def expandable(self) -> bool:
        """``expand`` accepts the name."""
        return False

    @property
    def deferred(self) -> bool:
        """Rendered only when ``expand`` or ``fields`` names it."""
        return False


@dataclass(frozen=True, slots=True, kw_only=True)
class Column(Field):
    """The row's ``column``, as it is."""

    column: str


@dataclass(frozen=True, slots=True, kw_only=True)
class DateTime(Field):
    """The row's date-time ``column`` at the offset its resource's zone has at that instant
    (``values.local_datetime``); None stays None."""

    column: str


@dataclass(frozen=True, slots=True, kw_only=True)
class Constant(Field):
    """Always ``value``."""

    value: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class Computed(Field):
    """``get(row, ctx)``, reading only the row keys in ``reads``."""

    get: Getter
    reads: tuple[str, ...]
    #: The contract marks a few plain objects expandable (quirk): ``expand`` accepts the
    #: name and changes nothing.
    marked_expandable: bool = False

    @property
    def expandable(self) -> bool:
        return self.marked_expandable


@dataclass(frozen=True, slots=True, kw_only=True)
class Deferred(Computed):
    """A computed value rendered only when asked for by name."""

    required: bool = False

    @property
    def deferred(self) -> bool:
        return True


class ForeignKey(NamedTuple):
    """A to-many relation whose targets hold the parent's id in ``column``."""

    column: str


class Through(NamedTuple):
    """A to-many relation stored in a link table."""

    table: Table
    parent: str
    child: str


Link = ForeignKey | Through


@dataclass(frozen=True, slots=True, kw_only=True)
class Relation(Field):
    """A field whose value is another resource's object(s), loaded in one batch a level."""

    #: The related resource's name (a name, not the object: relations form cycles).
    target: str
    #: What customer mode does with it; ``tests/test_graph.py`` fails on a None.
    customers: Customers | None = None
    many: ClassVar[bool]


@dataclass(frozen=True, slots=True, kw_only=True)
class ToOne(Relation):
    """The id in the row's ``key`` until expanded, then the object it names."""

    key: str
    many: ClassVar[bool] = False

    @property
    def expandable(self) -> bool:
        return True


@dataclass(frozen=True, slots=True, kw_only=True)
class Many(Relation):
    """A relation to any number of objects, stored as ``link`` says."""

    link: Link
    many: ClassVar[bool] = True


@dataclass(frozen=True, slots=True, kw_only=True)
class ToMany(Many):
    """The related collection's URL until expanded, then the objects."""

    listing: Listing
    filter: IdsFilter

    @property
    def expandable(self) -> bool:
        return True

    def path(self, row: Row) -> str:
        """The related collection of ``row``: its list endpoint, filtered to it."""
        return f"{self.listing.path}?{self.filter.name}={row['id']}"


@dataclass(frozen=True, slots=True, kw_only=True)
class DeferredMany(Many):
    """Related objects rendered only when asked for by name."""

    required: bool = False

    @property
    def deferred(self) -> bool:
        return True


def reads(field: Field) -> tuple[str, ...]:
    """The row keys rendering ``field`` un-expanded reads."""
    match field:
        case Column(column=column) | ToOne(key=column):
            return (column,)
        case DateTime(column=column):
            return (column, ZONE)
        case Computed(reads=keys):
            return keys
        case Many():
            return ("id",)
        case Constant():
            return ()
    raise TypeError(f"{type(field).__name__} is not a field kind")


# -- value objects ----------------------------------------------------------------------

#: Builds a value object from a row: ``build(row, ctx, columns=...)``, where ``columns``
#: names the row key holding each of the object's keys; None when there is no object.
Build = Callable[..., Any]


@dataclass(frozen=True)
class ValueObject:
    """An object a field embeds (an address, an image, a price), declared once.

    ``keys`` are the values it is built from, ``build`` makes it from a row that holds
    them, ``schema`` is its OpenAPI schema (published as
    ``#/components/schemas/<title>``). A statement selects the keys with ``columns``; a
    resource's field reads them with ``field``. An object holding date-times is
    ``zoned``: they are written in the zone of the resource embedding it, which its
    field also reads (as ``columns["zone"]``).
    """

    title: str
    schema: dict[str, Any]
    keys: tuple[str, ...]
    build: Build
    zoned: bool = False

    def columns(self, source: FromClause, prefix: str) -> list[ColumnElement[Any]]:
        """``source``'s columns of the keys, labelled ``prefix + key``."""
        return [source.c[key].label(prefix + key) for key in self.keys]

    def field(
        self,
        name: str,
        prefix: str = "",
        *,
        renamed: Mapping[str, str] | None = None,
        nullable: bool = False,
        required: bool = True,
        omit_if_none: bool = False,
        marked_expandable: bool = False,
    ) -> Computed:
        """A field holding this object, read from the row keys ``prefix + key``
        (or ``renamed[key]``)."""
        renamed = renamed or {}
        columns = {key: renamed.get(key, prefix + key) for key in self.keys}
        if self.zoned:
            columns["zone"] = ZONE
        schema = ref(self.title)
        return Computed(
            name=name,
            schema=nullable_schema(schema) if nullable else schema,
            get=partial(self.build, columns=columns),
            reads=tuple(columns.values()),
            required=required,
            omit_if_none=omit_if_none,
            marked_expandable=marked_expandable,
        )


# -- resources and list endpoints ------------------------------------------------------


@dataclass(frozen=True, eq=False)
class Resource:
    """A resource: its fields in the contract's order and the statement that loads its rows."""

    name: str
    title: str
    table: Table
    statement: Select[Any]
    fields: tuple[Field, ...]
    order_by: tuple[ColumnElement[Any], ...]
    provider_column: ColumnElement[Any] | None = None
    #: The rows of the provider a customer may see (``()``: all of them).
    customer_rows: Conditions = field(kw_only=True)
    #: The IANA zone name its date-times are written in, an expression over the
    #: statement's FROM; the statement selects it as ``ZONE``. Required with date-times.
    zone: ColumnElement[str] | None = field(default=None, kw_only=True)
    by_name: dict[str, Field] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {f.name: f for f in self.fields})
        if self.zone is not None:
            zoned = self.statement.add_columns(self.zone.label(ZONE))
            object.__setattr__(self, "statement", zoned)
        elif zoned_fields := [f.name for f in self.fields if ZONE in reads(f)]:
            raise TypeError(
                f"{self.name}: {', '.join(zoned_fields)} hold date-times: declare the zone "
                "they are written in (zone=)"
            )

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
    def relations(self) -> tuple[Relation, ...]:
        return tuple(f for f in self.fields if isinstance(f, Relation))

    @property
    def expandable_names(self) -> list[str]:
        """Names ``expand`` accepts here: expandable and deferred fields."""
        return sorted(f.name for f in self.fields if f.expandable or f.deferred)

    @property
    def field_names(self) -> list[str]:
        """Every field name, deferred ones included."""
        return sorted(self.by_name)


@lru_cache(maxsize=1024)
def select_columns(resource: Resource, columns: frozenset[str]) -> Select[Any]:
    """``resource``'s statement selecting only ``columns``.

    The FROM clause stays whole, so the rows are the same; only the columns (and the
    subqueries behind them) are left out.
    """
    statement = resource.statement
    kept = [column for column in statement.selected_columns if column.key in columns]
    missing = columns - {column.key for column in kept}
    if missing:
        raise LookupError(f"{resource.name} does not select {', '.join(sorted(missing))}")
    return statement.with_only_columns(*kept, maintain_column_froms=True)


#: Builds a condition on the listed rows from the readable parent ids.
ParentCondition = Callable[[Select[Any]], ColumnElement[bool]]
#: Builds a condition on the listed rows from a parsed value.
ValueCondition = Callable[[Any], ColumnElement[bool]]


@dataclass(frozen=True)
class IdsFilter:
    """``name=1,2,3``: rows related to any of these parents (that the caller may read)."""

    name: str
    #: The parent resource's name.
    parent: str
    condition: ParentCondition
    description: str
    #: The parent's column holding a staff profile id, when ``me`` may name the parent
    #: whose staff profile is the caller's (``instructors=me``).
    me: ColumnElement[Any] | None = None


@dataclass(frozen=True)
class ValueFilter:
    """``name=value``: choices or a date-time bound.

    ``parse(name, raw)`` gives the value, or None when ``raw`` names nothing (``,``);
    an array ``schema`` says the value is comma-separated.
    """

    name: str
    parse: Callable[[str, str], Any]
    condition: ValueCondition
    schema: dict[str, Any]
    description: str
    deprecated: bool = False


Filter = IdsFilter | ValueFilter


@dataclass(frozen=True, eq=False)
class Listing:
    """A list endpoint: its path, resource, filters and sort orders.

    The path is declared here once: the route table routes it, related-collection
    URLs and page links are built from it.
    """

    path: str
    resource: Resource
    filters: tuple[Filter, ...]
    sorts: dict[str, tuple[ColumnElement[Any], ...]]
    default_sort: str
    summary: str

    @property
    def name(self) -> str:
        """The collection's name: the last segment of its path."""
        return self.path.rsplit("/", 1)[1]

    def ids_filter(self, name: str) -> IdsFilter:
        """The id filter called ``name``; ``LookupError`` naming the valid ones."""
        for spec in self.filters:
            if spec.name == name and isinstance(spec, IdsFilter):
                return spec
        names = ", ".join(s.name for s in self.filters if isinstance(s, IdsFilter))
        raise LookupError(f"{self.path} has no id filter '{name}'; it has: {names}")


# -- schema helpers ---------------------------------------------------------------------

INT: dict[str, Any] = {"type": "integer"}
BOOL: dict[str, Any] = {"type": "boolean"}
STR: dict[str, Any] = {"type": "string"}
DOUBLE: dict[str, Any] = {"type": "number", "format": "double"}
INT32_RANGE: dict[str, Any] = {"minimum": -2147483648, "maximum": 2147483647}
MINUTES: dict[str, Any] = {"type": "integer", "description": "The duration in minutes."}
RELATED_COLLECTION: dict[str, Any] = {"$ref": "#/components/schemas/RelatedCollection"}


def nullable_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` that also admits null."""
    kind = schema.get("type")
    if isinstance(kind, str):
        return {**schema, "type": [kind, "null"]}
    return {"oneOf": [{"type": "null"}, schema]}


def ref(title: str) -> dict[str, Any]:
    return {"$ref": f"#/components/schemas/{title}"}


def enum_schema(*values: Any, kind: str | None = "string") -> dict[str, Any]:
    return {"type": kind, "enum": list(values)} if kind else {"enum": list(values)}


def int32(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, **INT32_RANGE}


# -- field declarations ------------------------------------------------------------------


#: A date-time as the API writes it, in its resource's zone (``values.local_datetime``).
ZONED_DATE_TIME: dict[str, Any] = {
    "type": "string",
    "format": "date-time",
    "description": "RFC 3339 in whole seconds, at the UTC offset that the venue's time zone "
    "(an online venue's provider's) has at that instant, Z when it is zero: "
    "2026-03-30T06:30:00+01:00.",
}


def attr(
    name: str,
    schema: dict[str, Any],
    key: str | None = None,
    *,
    required: bool = True,
    omit_if_none: bool = False,
) -> Column:
    """A field read from the row key ``key`` (default: the field's name)."""
    return Column(
        name=name,
        schema=schema,
        column=key or name,
        required=required,
        omit_if_none=omit_if_none,
    )


def date_time(name: str, key: str | None = None) -> DateTime:
    """A required date-time field read from the row key ``key`` (default: its name)."""
    return DateTime(name=name, schema=ZONED_DATE_TIME, column=key or name)


def obj(name: str) -> Constant:
    """The ``object`` field: the resource's type name."""
    return Constant(name="object", schema=enum_schema(name), value=name)


def computed(
    name: str,
    schema: dict[str, Any],
    get: Getter,
    reads: tuple[str, ...],
    *,
    required: bool = True,
    omit_if_none: bool = False,
) -> Computed:
    """A field computed from the row keys ``reads``."""
    return Computed(
        name=name,
        schema=schema,
        get=get,
        reads=reads,
        required=required,
        omit_if_none=omit_if_none,
    )


def to_one(
    name: str, target: str, key: str, customers: Customers, schema: dict[str, Any] | None = None
) -> ToOne:
    """An expandable to-one field: the id until expanded, then the object."""
    return ToOne(name=name, schema=schema or INT, target=target, key=key, customers=customers)


def to_many(
    name: str, listing: Listing, filter_name: str, link: Link, customers: Customers
) -> ToMany:
    """An expandable to-many field: ``listing`` filtered by ``filter_name`` to the row,
    as a URL until expanded."""
    return ToMany(
        name=name,
        schema=RELATED_COLLECTION,
        target=listing.resource.name,
        link=link,
        listing=listing,
        filter=listing.ids_filter(filter_name),
        customers=customers,
    )


def deferred_many(name: str, target: Resource, link: Link, customers: Customers) -> DeferredMany:
    """A deferred list of objects, loaded only when asked for by ``expand`` or ``fields``."""
    return DeferredMany(
        name=name,
        schema={"type": "array", "items": ref(target.title)},
        target=target.name,
        link=link,
        customers=customers,
    )
