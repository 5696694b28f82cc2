"""``fields``: sparse selection, implied expansion, deferred fields by name, errors."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event

from tests.support import Api, Demo, error, get, rich_session


def test_exactly_the_named_fields_in_contract_order(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    body = get(api, demo, session_id, fields="status,id,name")
    assert list(body) == ["id", "name", "status"]


def test_nested_name_implies_expansion(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    plain = get(api, demo, session_id)
    body = get(api, demo, session_id, fields="id,venue.name")
    assert body == {"id": session_id, "venue": {"name": body["venue"]["name"]}}
    full_venue = get(api, demo, session_id, expand="venue")["venue"]
    assert full_venue["id"] == plain["venue"]
    assert body["venue"]["name"] == full_venue["name"]


def test_a_relation_named_alone_stays_whole(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    plain = get(api, demo, session_id)
    assert get(api, demo, session_id, fields="venue") == {"venue": plain["venue"]}
    expanded = get(api, demo, session_id, fields="venue", expand="venue.venue_rooms")
    assert list(expanded) == ["venue"]
    assert expanded["venue"]["id"] == plain["venue"]
    assert isinstance(expanded["venue"]["venue_rooms"], list)


@pytest.mark.parametrize("fields", ["venue,venue.name", "venue.name,venue"])
@pytest.mark.parametrize("expand", ["", "venue"])
def test_a_dotted_name_beside_its_parent_selects_inside_it(
    api: Api, demo: Demo, fields: str, expand: str
) -> None:
    """``fields=venue,venue.name``: the venue, expanded, with its name alone (TeamUp's
    clients name both; the dotted name wins, in either order)."""
    session_id = rich_session(demo, big_course=False)
    full_venue = get(api, demo, session_id, expand="venue")["venue"]
    body = get(api, demo, session_id, fields=fields, expand=expand)
    assert body == {"venue": {"name": full_venue["name"]}}


def test_fields_apply_to_every_element_of_an_array(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    body = get(api, demo, session_id, fields="instructors.name")
    assert body["instructors"]
    assert all(list(i) == ["name"] for i in body["instructors"])


def test_deferred_fields_by_name(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    body = get(
        api,
        demo,
        session_id,
        fields="instructors.icalendar_links,instructors.availability_schedules.name,"
        "course.offering_type.memberships.price",
    )
    for instructor in body["instructors"]:
        assert list(instructor) == ["availability_schedules", "icalendar_links"]
        assert all(set(s) <= {"name"} for s in instructor["availability_schedules"])
    memberships = body["course"]["offering_type"]["memberships"]
    assert memberships
    for membership in memberships:
        assert list(membership) == ["price"]
        price: dict[str, Any] = membership["price"]
        assert price["string"] and price["iso_currency_code"]


def test_unknown_field_lists_the_valid_ones(api: Api, demo: Demo) -> None:
    body = error(api, demo, fields="id,nme")
    message = body["field_errors"]["fields"][0]
    assert message.startswith("'nme' is not a field here. Fields: ")
    assert "attending_count" in message and "starts_at" in message
    nested = error(api, demo, fields="venue.nme")["field_errors"]["fields"][0]
    assert nested.startswith("'venue.nme' is not a field here.")
    assert "venue_rooms" in nested
    no_children = error(api, demo, fields="name.first")["field_errors"]["fields"][0]
    assert no_children.startswith("'name.first' has no nested fields")


def test_fields_beyond_four_expansions_are_refused(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    deep = "course.offering_type.instructors.availability_schedules.name"
    body = get(api, demo, session_id, fields=deep)
    schedules = body["course"]["offering_type"]["instructors"][0]["availability_schedules"]
    assert all(set(s) <= {"name"} for s in schedules)
    too_deep = error(api, demo, fields="course.course_sessions.venue.venue_rooms.venue.id")
    assert too_deep["field_errors"] == {
        "fields": ["You cannot expand more than 4 levels of a property."]
    }


def test_oversized_parameters_are_refused(api: Api, demo: Demo) -> None:
    assert error(api, demo, fields="id," * 3000)["field_errors"]["fields"]
    assert error(api, demo, expand=",".join(["venue"] * 300))["field_errors"]["expand"]


def _cut(full: Any, selection: list[str]) -> Any:
    """``full`` keeping only the dot paths of ``selection`` (what ``fields`` should do)."""
    if isinstance(full, list):
        return [_cut(item, selection) for item in full]
    tree: dict[str, list[str]] = {}
    for path in selection:
        head, _, rest = path.partition(".")
        tree.setdefault(head, [])
        if rest:
            tree[head].append(rest)
    return {
        key: (_cut(value, tree[key]) if tree[key] and value is not None else value)
        for key, value in full.items()
        if key in tree
    }


#: A ``fields`` selection and the ``expand`` whose full response it cuts down.
SELECTIONS = [
    ("id,name,starts_at,venue.name,instructors.name", "venue,instructors"),
    ("attending_count,max_occupancy", ""),
    ("customer_url,instructors", ""),
    (
        "course.offering_type.name,course.offering_type.category.name,venue.timezone",
        "course.offering_type.category,venue",
    ),
    (
        "course.course_sessions.starts_at,course.course_sessions.venue,instructors.permissions",
        "course.course_sessions,instructors",
    ),
]


@pytest.mark.parametrize(("selection", "expand"), SELECTIONS)
def test_sparse_fields_are_the_full_response_cut_down(
    api: Api, demo: Demo, selection: str, expand: str
) -> None:
    """Statements select only what a sparse request reads; the values stay the same."""
    paths = selection.split(",")
    for session_id in demo.manifest["course_sessions"]["main"][::40]:
        full = get(api, demo, session_id, expand=expand)
        assert get(api, demo, session_id, fields=selection) == _cut(full, paths)
    page = {"page_size": "20", "page": "2"}
    full_page = api.get("/api/v2/course_sessions", admin(demo), params={**page, "expand": expand})
    sparse_page = api.get(
        "/api/v2/course_sessions", admin(demo), params={**page, "fields": selection}
    )
    assert sparse_page.json()["results"] == _cut(full_page.json()["results"], paths)


def admin(demo: Demo) -> str:
    return demo.manifest["tokens"]["admin"]


def test_sparse_fields_leave_unread_subqueries_out(api: Api, demo: Demo) -> None:
    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    def offering_type_statements(fields: str) -> list[str]:
        statements.clear()
        get(api, demo, session_id, fields=fields)
        return [s for s in statements if "FROM offering_types" in s]

    session_id = rich_session(demo, big_course=False)
    engine = api.app.engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        sparse = offering_type_statements("course.offering_type.name")
        counted = offering_type_statements("course.offering_type.memberships_count")
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(sparse) == len(counted) == 1
    assert "offering_type_memberships" not in sparse[0] and "dropin_price" not in sparse[0]
    assert "offering_type_memberships" in counted[0]
