"""``compile_projection``: expand and fields to a projection, validated before any
database work; pure, cached, and reading only the columns it renders."""

from __future__ import annotations

import pytest

from coursebook.errors import ApiError
from coursebook.fields import Relation
from coursebook.graph import RESOURCES
from coursebook.projection import MAX_DEPTH, MAX_ITEMS, Projection, compile_projection


def names(projection: Projection) -> list[str]:
    return [field.name for field in projection.fields]


def children(projection: Projection) -> dict[str, Projection]:
    return {relation.name: child for relation, child in projection.children}


def refused(expand: str = "", fields: str = "") -> ApiError:
    with pytest.raises(ApiError) as caught:
        compile_projection("course_session", expand, fields)
    assert caught.value.status == 400
    assert caught.value.code == "parameter_invalid"
    return caught.value


def test_no_parameters_render_every_field_but_the_deferred_ones_and_load_nothing() -> None:
    projection = compile_projection("course_session", "", "")
    resource = RESOURCES["course_session"]
    assert names(projection) == [f.name for f in resource.fields if not f.deferred]
    assert projection.children == ()


def test_the_same_parameters_give_the_same_projection() -> None:
    first = compile_projection("course_session", "venue", "")
    assert compile_projection("course_session", "venue", "") is first
    assert compile_projection("course_session", "course", "") is not first


def test_expand_loads_each_level_of_a_path() -> None:
    projection = compile_projection("course_session", "course.offering_type.category", "")
    course = children(projection)["course"]
    offering_type = children(course)["offering_type"]
    assert list(children(offering_type)) == ["category"]
    assert children(children(offering_type)["category"]) == {}


def test_children_follow_field_order_whatever_order_expand_names_them() -> None:
    projection = compile_projection("course_session", "course,instructors,venue", "")
    assert list(children(projection)) == ["venue", "instructors", "course"]


def test_a_deferred_field_is_rendered_and_loaded_only_when_named() -> None:
    plain = compile_projection("instructor", "", "")
    assert "availability_schedules" not in names(plain)
    named = compile_projection("instructor", "availability_schedules", "")
    assert "availability_schedules" in names(named)
    assert list(children(named)) == ["availability_schedules"]


def test_fields_select_at_every_level_and_imply_the_expansion() -> None:
    projection = compile_projection("course_session", "", "id,venue.name,instructors.name")
    assert names(projection) == ["id", "venue", "instructors"]
    assert names(children(projection)["venue"]) == ["name"]
    assert names(children(projection)["instructors"]) == ["name"]


def test_columns_are_what_the_fields_read() -> None:
    projection = compile_projection("course_session", "", "name,venue.name")
    assert projection.columns == {"id", "course_name", "venue_id"}
    assert children(projection)["venue"].columns == {"id", "name"}


def test_a_computed_field_adds_its_reads() -> None:
    projection = compile_projection("course_session", "", "customer_url")
    assert projection.columns == {"id", "provider_id", "provider_slug"}


def test_walk_names_each_level_by_its_path() -> None:
    projection = compile_projection("course_session", "course.offering_type,venue", "")
    assert [path for path, _node in projection.walk()] == [
        "",
        "venue",
        "course",
        "course.offering_type",
    ]


def test_an_unknown_expansion_names_what_is_valid() -> None:
    error = refused(expand="venue.nope")
    assert error.field_errors == {
        "expand": ["'venue.nope' cannot be expanded here. Expandable: venue_rooms."]
    }


def test_a_plain_field_cannot_be_expanded() -> None:
    error = refused(expand="name")
    assert "'name' cannot be expanded here" in error.field_errors["expand"][0]


def test_an_unknown_field_names_the_fields_of_its_level() -> None:
    error = refused(fields="venue.bogus")
    message = error.field_errors["fields"][0]
    assert message.startswith("'venue.bogus' is not a field here. Fields: address, archived,")


def test_a_plain_field_has_no_nested_fields() -> None:
    error = refused(fields="name.first")
    assert error.field_errors["fields"][0].startswith(
        "'name.first' has no nested fields: 'name' is not expandable."
    )


def test_expansion_is_at_most_four_levels_deep() -> None:
    compile_projection(
        "course_session", "course.offering_type.instructors.availability_schedules", ""
    )
    error = refused(expand="course.course_sessions.course.offering_type.category")
    assert error.field_errors == {
        "expand": [f"You cannot expand more than {MAX_DEPTH} levels of a property."]
    }


@pytest.mark.parametrize("raw", ["venue..venue_rooms", ".venue", "venue."])
def test_empty_names_are_refused(raw: str) -> None:
    assert "has an empty name in it" in refused(expand=raw).field_errors["expand"][0]


def test_too_many_items_are_refused() -> None:
    error = refused(fields=",".join(["id"] * (MAX_ITEMS + 1)))
    assert error.field_errors == {"fields": [f"'fields' names more than {MAX_ITEMS} items."]}


def test_every_child_is_a_relation_of_its_parent() -> None:
    projection = compile_projection(
        "course_session", "venue.venue_rooms,instructors,course.offering_type.memberships", ""
    )
    for _path, node in projection.walk():
        for relation, child in node.children:
            assert isinstance(relation, Relation)
            assert relation in node.resource.fields
            assert child.resource is RESOURCES[relation.target]


@pytest.mark.parametrize(
    "fields", ["venue,venue.name", "venue.name,venue", "venue,venue.name,venue"]
)
def test_a_dotted_name_beside_its_parent_wins(fields: str) -> None:
    projection = compile_projection("course_session", "", fields)
    assert names(projection) == ["venue"]
    assert names(children(projection)["venue"]) == ["name"]


def test_a_parent_named_alone_is_not_expanded() -> None:
    projection = compile_projection("course_session", "", "venue")
    assert names(projection) == ["venue"]
    assert projection.children == ()
