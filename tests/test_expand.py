"""``expand``: every expandable and deferred field, depth, errors and the budget."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select

from coursebook import models as m
from coursebook.demo import FULL_EXPANSION
from coursebook.settings import Settings
from tests.support import Api, Demo, error, get, in_process, rich_session


def test_full_expansion_holds_every_relation(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    plain = get(api, demo, session_id)
    body = get(api, demo, session_id, expand=FULL_EXPANSION)

    venue = body["venue"]
    assert venue["object"] == "venue" and venue["id"] == plain["venue"]
    assert venue["venue_rooms"] and all(r["venue"] == venue["id"] for r in venue["venue_rooms"])

    with demo.engine.connect() as conn:
        instructor_ids = set(
            conn.execute(
                select(m.course_session_instructors.c.instructor_id).where(
                    m.course_session_instructors.c.course_session_id == session_id
                )
            ).scalars()
        )
        session_count = conn.execute(
            select(func.count()).where(m.course_sessions.c.course_id == plain["course"])
        ).scalar_one()
    assert {i["id"] for i in body["instructors"]} == instructor_ids
    for instructor in body["instructors"]:
        assert instructor["object"] == "instructor"
        assert all(
            s["instructor"] == instructor["id"] for s in instructor["availability_schedules"]
        )
        links = instructor["icalendar_links"]
        assert links["link"].startswith(api.base_url + "/ical/instructors/")
        assert links["webcal_url"].startswith("webcal://")

    course = body["course"]
    assert course["id"] == plain["course"]
    assert len(course["course_sessions"]) == session_count
    assert session_id in {s["id"] for s in course["course_sessions"]}
    offering_type = course["offering_type"]
    assert offering_type["category"]["object"] == "offering_type_category"
    assert offering_type["memberships"] and offering_type["registration_timelines"]
    assert len(offering_type["memberships"]) == offering_type["memberships_count"]
    assert all(
        a["offering_type"] == offering_type["id"]
        for a in offering_type["availability_schedule_offering_types"]
    )
    assert all("availability_schedules" in i for i in offering_type["instructors"])


@pytest.mark.parametrize(
    ("path", "kind"),
    [
        ("venue", "venue"),
        ("instructors", ["instructor"]),
        ("course", "course"),
        ("venue.venue_rooms", ["venue_room"]),
        ("venue.venue_rooms.venue", "venue"),
        ("course.offering_type", "offering_type"),
        ("course.course_sessions", ["course_session"]),
        ("course.offering_type.category", "offering_type_category"),
        ("course.offering_type.instructors", ["instructor"]),
        ("course.course_sessions.venue.venue_rooms", ["venue_room"]),
    ],
)
def test_each_expandable_field_becomes_its_object(
    api: Api, demo: Demo, path: str, kind: str | list[str]
) -> None:
    body = get(api, demo, rich_session(demo, big_course=False), expand=path)
    node: Any = body
    for name in path.split("."):
        node = node[name]
        if isinstance(node, list):
            assert node, f"{name} should not be empty in the demo data"
            node = node[0]
    expected = kind[0] if isinstance(kind, list) else kind
    assert node["object"] == expected


def test_prefixes_are_expanded_and_defaults_kept(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    body = get(api, demo, session_id, expand="course.offering_type")
    assert isinstance(body["course"], dict)
    assert isinstance(body["course"]["offering_type"], dict)
    assert isinstance(body["venue"], int)
    assert isinstance(body["instructors"], str)
    assert body["course"]["course_sessions"].endswith(f"course={body['course']['id']}")
    offering_type = body["course"]["offering_type"]
    for deferred in (
        "memberships",
        "registration_timelines",
        "availability_schedule_offering_types",
    ):
        assert deferred not in offering_type
    assert isinstance(offering_type["instructors"], str)


def test_deferred_fields_only_when_asked(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    plain = get(api, demo, session_id, expand="instructors")
    assert all("availability_schedules" not in i for i in plain["instructors"])
    assert all("icalendar_links" not in i for i in plain["instructors"])
    asked = get(api, demo, session_id, expand="instructors.icalendar_links")
    assert all("icalendar_links" in i for i in asked["instructors"])
    assert all("availability_schedules" not in i for i in asked["instructors"])


def test_settings_objects_expand_to_themselves(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    plain = get(api, demo, session_id, expand="course.offering_type")
    expanded = get(
        api,
        demo,
        session_id,
        expand="course.offering_type.appointment_settings,"
        "course.offering_type.room_rental_settings",
    )
    assert expanded == plain
    settings = plain["course"]["offering_type"]["appointment_settings"]
    assert 5 <= settings["duration"] <= 1440
    assert isinstance(settings["default_venue_rooms"], list)


def test_empty_items_and_repeats_are_harmless(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    clean = get(api, demo, session_id, expand="venue,course")
    assert get(api, demo, session_id, expand=",venue,,course,venue,") == clean


def test_four_levels_is_the_limit(api: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=False)
    body = get(
        api, demo, session_id, expand="course.offering_type.instructors.availability_schedules"
    )
    assert "availability_schedules" in body["course"]["offering_type"]["instructors"][0]
    too_deep = error(api, demo, expand="course.course_sessions.venue.venue_rooms.venue")
    assert too_deep["field_errors"] == {
        "expand": ["You cannot expand more than 4 levels of a property."]
    }


def test_unknown_names_list_what_can_be_expanded(api: Api, demo: Demo) -> None:
    assert error(api, demo, expand="venu")["field_errors"] == {
        "expand": ["'venu' cannot be expanded here. Expandable: course, instructors, venue."]
    }
    nested = error(api, demo, expand="course.offering_type.nope")["field_errors"]["expand"][0]
    assert nested.startswith("'course.offering_type.nope' cannot be expanded here.")
    assert "appointment_settings" in nested and "memberships" in nested
    plain_field = error(api, demo, expand="name")["field_errors"]["expand"][0]
    assert plain_field.startswith("'name' cannot be expanded here.")
    assert error(api, demo, expand="venue..venue_rooms")["field_errors"]["expand"]


@pytest.fixture(scope="module")
def small_budget(shared_demo: Demo) -> Iterator[Api]:
    with in_process(Settings(database_url=shared_demo.url, max_expanded_objects=120)) as client:
        yield client


def test_expansion_budget_names_the_collection(small_budget: Api, demo: Demo) -> None:
    session_id = rich_session(demo, big_course=True)
    token = demo.manifest["tokens"]["admin"]
    path = f"/api/v2/course_sessions/{session_id}"
    response = small_budget.get(path, token, params={"expand": "course.course_sessions"})
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "parameter_invalid"
    message = body["field_errors"]["expand"][0]
    course_id = small_budget.get(path, token).json()["course"]
    assert f"/api/v2/course_sessions?course={course_id}" in message
    assert "120" in message
    # The same expansion through ``fields`` is held to the same budget.
    response = small_budget.get(path, token, params={"fields": "course.course_sessions.id"})
    assert response.status_code == 400
    # Within the budget, nothing is cut.
    assert small_budget.get(path, token, params={"expand": "venue.venue_rooms"}).status_code == 200


def test_budget_counts_objects_rendered_not_rows(demo: Demo) -> None:
    session_id = rich_session(demo, big_course=True)
    token = demo.manifest["tokens"]["admin"]
    with demo.engine.connect() as conn:
        course_id = conn.execute(
            select(m.course_sessions.c.course_id).where(m.course_sessions.c.id == session_id)
        ).scalar_one()
        sessions = conn.execute(
            select(func.count()).where(m.course_sessions.c.course_id == course_id)
        ).scalar_one()
    # Root, course, the sessions, and one venue object per session: 2 + 2 * sessions.
    needed = 2 + 2 * sessions
    path = f"/api/v2/course_sessions/{session_id}"
    params = {"expand": "course.course_sessions.venue", "fields": "course.course_sessions.venue.id"}
    for budget, status in ((needed, 200), (needed - 1, 400)):
        with in_process(Settings(database_url=demo.url, max_expanded_objects=budget)) as client:
            assert client.get(path, token, params=params).status_code == status


def test_statement_count_is_fixed_whatever_the_rows(api: Api, demo: Demo) -> None:
    token = demo.manifest["tokens"]["admin"]
    path = "/api/v2/course_sessions/{}"
    big = rich_session(demo, big_course=True)
    small = rich_session(demo, big_course=False)
    big_count, big_body = api.statements(path.format(big), token, {"expand": FULL_EXPANSION})
    small_count, small_body = api.statements(path.format(small), token, {"expand": FULL_EXPANSION})
    assert len(big_body["course"]["course_sessions"]) >= 200
    assert len(small_body["course"]["course_sessions"]) < len(big_body["course"]["course_sessions"])
    # A plain retrieve's statement (the session, beside the write count that says the
    # memo is current), then on SQLite one statement per expanded relation: venue,
    # venue_rooms, instructors, their schedules, course, offering_type, category, its
    # instructors, their schedules, memberships, timelines, schedule links, sessions;
    # on PostgreSQL one per level of them (four).
    relations = 13 if api.backend == "sqlite" else 4
    assert big_count == small_count == api.plain_statements + relations
    plain_count, _ = api.statements(path.format(big), token, {})
    assert plain_count == api.plain_statements


def test_statement_count_with_many_instructors(api: Api, demo: Demo) -> None:
    """A course's 200 sessions and all their instructors still cost one statement a level."""
    token = demo.manifest["tokens"]["admin"]
    session_id = rich_session(demo, big_course=True)
    count, body = api.statements(
        f"/api/v2/course_sessions/{session_id}",
        token,
        {"expand": "course.course_sessions.instructors.availability_schedules"},
    )
    instructors = {i["id"] for s in body["course"]["course_sessions"] for i in s["instructors"]}
    assert len(instructors) > 1
    assert count == api.plain_statements + 4
