"""The resource graph's declarations are complete: every relation has a customer rule,
every field's reads are selected, every computed field needs no more than it declares,
and every date-time is written in its resource's zone."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select

from coursebook import models as m
from coursebook.access import CUSTOMER
from coursebook.fields import (
    ZONE,
    Computed,
    Customers,
    IdsFilter,
    Relation,
    RenderContext,
    Resource,
    ToMany,
    ToOne,
    date_time,
    reads,
    select_columns,
)
from coursebook.graph import LISTINGS, RESOURCES, VALUE_SCHEMAS
from tests.support import Demo

RELATIONS = [
    pytest.param(resource, relation, id=f"{resource.name}.{relation.name}")
    for resource in RESOURCES.values()
    for relation in resource.relations
]
COMPUTED = [
    pytest.param(resource, field, id=f"{resource.name}.{field.name}")
    for resource in RESOURCES.values()
    for field in resource.fields
    if isinstance(field, Computed)
]


@pytest.mark.parametrize(("resource", "relation"), RELATIONS)
def test_every_relation_says_what_customers_see(resource: Resource, relation: Relation) -> None:
    assert relation.customers is not None, (
        f"{resource.name}.{relation.name} has no customer rule: declare customers=SEE "
        "(rows filtered as the target declares) or customers=HIDDEN (a 400 in customer mode)"
    )


def test_customer_scope_is_what_the_graph_declares() -> None:
    hidden = {
        (resource.name, relation.name)
        for resource in RESOURCES.values()
        for relation in resource.relations
        if relation.customers is Customers.HIDDEN
    }
    assert CUSTOMER.hidden_fields == hidden
    assert hidden == {
        ("instructor", "availability_schedules"),
        ("offering_type", "availability_schedule_offering_types"),
    }
    assert set(CUSTOMER.visible) == {"course_session", "membership", "offering_type"}


@pytest.mark.parametrize(("resource", "relation"), RELATIONS)
def test_relations_point_at_declared_resources(resource: Resource, relation: Relation) -> None:
    target = RESOURCES[relation.target]
    if isinstance(relation, ToOne):
        assert relation.key in {c.key for c in resource.statement.selected_columns}
    if isinstance(relation, ToMany):
        assert relation.listing in LISTINGS
        assert relation.listing.resource is target
        assert relation.filter in relation.listing.filters
        assert relation.filter.parent == resource.name


def test_id_filters_name_declared_parents() -> None:
    for listing in LISTINGS:
        for spec in listing.filters:
            if isinstance(spec, IdsFilter):
                assert spec.parent in RESOURCES, f"{listing.path}?{spec.name}"


@pytest.mark.parametrize("resource", RESOURCES.values(), ids=lambda r: r.name)
def test_every_field_reads_columns_its_statement_selects(resource: Resource) -> None:
    wanted = frozenset(key for field in resource.fields for key in reads(field)) | {"id"}
    statement = select_columns(resource, wanted)
    assert {column.key for column in statement.selected_columns} == wanted


def _rows(demo: Demo, resource: Resource) -> list[dict[str, Any]]:
    with demo.engine.connect() as conn:
        result = conn.execute(resource.statement.limit(200), {"access_customer_profile_id": 0})
        return [dict(row) for row in result.mappings()]


@pytest.mark.parametrize(("resource", "field"), COMPUTED)
@pytest.mark.parametrize("redact", [False, True])
def test_computed_fields_need_only_what_they_declare(
    demo: Demo, resource: Resource, field: Computed, redact: bool
) -> None:
    rows = _rows(demo, resource)
    assert rows, f"the demo has no {resource.name}"
    ctx = RenderContext("http://testserver", redact)
    for row in rows:
        cut = {key: row[key] for key in field.reads}
        assert field.get(cut, ctx) == field.get(row, ctx)


def _holds_date_time(schema: Any) -> bool:
    """``schema`` has a ``date-time`` somewhere, value objects' schemas included."""
    if isinstance(schema, dict):
        if schema.get("format") == "date-time":
            return True
        target = schema.get("$ref", "").rpartition("/")[2]
        if target in VALUE_SCHEMAS and _holds_date_time(VALUE_SCHEMAS[target]):
            return True
        return any(_holds_date_time(value) for value in schema.values())
    if isinstance(schema, list):
        return any(_holds_date_time(item) for item in schema)
    return False


def test_the_graph_holds_these_date_times() -> None:
    found = {
        f"{resource.name}.{field.name}"
        for resource in RESOURCES.values()
        for field in resource.fields
        if not isinstance(field, Relation) and _holds_date_time(field.schema)
    }
    assert found == {
        "course_session.starts_at",
        "course_session.ends_at",
        "venue_room.thumbnail",
    }


@pytest.mark.parametrize("resource", RESOURCES.values(), ids=lambda r: r.name)
def test_every_date_time_is_written_in_its_resources_zone(resource: Resource) -> None:
    for field in resource.fields:
        if not isinstance(field, Relation) and _holds_date_time(field.schema):
            assert ZONE in reads(field), f"{resource.name}.{field.name} does not read its zone"
            assert resource.zone is not None
            assert ZONE in {c.key for c in resource.statement.selected_columns}


def test_a_resource_with_date_times_must_declare_their_zone() -> None:
    with pytest.raises(TypeError, match=r"image: created_at hold date-times: declare the zone"):
        Resource(
            name="image",
            title="Image",
            table=m.images,
            statement=select(m.images),
            fields=(date_time("created_at"),),
            order_by=(m.images.c.id,),
            customer_rows=(),
        )
