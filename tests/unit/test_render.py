"""Rendering: plans from field kinds, compiled functions with their source in
tracebacks, and related objects rendered once per response and shared."""

from __future__ import annotations

import traceback
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from coursebook.fields import ZONE, DateTime, RenderContext, attr, date_time, obj
from coursebook.graph import COURSE_SESSION, INSTRUCTOR, THUMBNAIL, VENUE, VENUE_ROOM
from coursebook.loader import Loaded
from coursebook.projection import compile_projection
from coursebook.render import Kind, compile_renderer, plan_step, render, render_one, renderer

CTX = RenderContext("http://testserver")


def session_row(**changes: Any) -> dict[str, Any]:
    row = {
        "id": 5,
        "course_name": "Yoga",
        "starts_at": datetime(2026, 7, 2, 9, 30, tzinfo=UTC),
        "ends_at": datetime(2026, 7, 2, 10, 30, 59, 999999),
        "status": "active",
        "attending_count": 3,
        "max_occupancy": None,
        "venue_id": 7,
        "course_id": 8,
        "provider_id": 1,
        "provider_slug": "studio",
        "zone": "America/New_York",
    }
    return {**row, **changes}


@pytest.mark.parametrize(
    ("field", "loaded", "kind"),
    [
        (COURSE_SESSION.by_name["status"], False, Kind.COLUMN),
        (COURSE_SESSION.by_name["starts_at"], False, Kind.DATE_TIME),
        (VENUE_ROOM.by_name["thumbnail"], False, Kind.VALUE),
        (COURSE_SESSION.by_name["object"], False, Kind.CONSTANT),
        (COURSE_SESSION.by_name["customer_url"], False, Kind.VALUE),
        (COURSE_SESSION.by_name["venue"], False, Kind.COLUMN),
        (COURSE_SESSION.by_name["venue"], True, Kind.ONE),
        (COURSE_SESSION.by_name["instructors"], False, Kind.COLLECTION),
        (COURSE_SESSION.by_name["instructors"], True, Kind.MANY),
        (INSTRUCTOR.by_name["availability_schedules"], True, Kind.MANY),
        (VENUE.by_name["video_url_type"], False, Kind.COLUMN),
    ],
)
def test_each_kind_of_field_has_its_step(field: Any, loaded: bool, kind: Kind) -> None:
    step = plan_step(field, loaded)
    assert step.kind is kind
    assert step.name == field.name


def test_a_deferred_relation_renders_only_loaded() -> None:
    with pytest.raises(TypeError, match="renders only when loaded"):
        plan_step(INSTRUCTOR.by_name["availability_schedules"], False)


def test_a_plain_session_renders_in_contract_order() -> None:
    projection = compile_projection("course_session", "", "")
    body = render_one(projection, session_row(), (), CTX)
    assert list(body) == [f.name for f in COURSE_SESSION.fields]
    assert body["starts_at"] == "2026-07-02T05:30:00-04:00"
    assert body["ends_at"] == "2026-07-02T06:30:59-04:00"
    assert body["instructors"] == "http://testserver/api/v2/instructors?course_session=5"
    assert body["customer_url"] == "/p/1-studio/c/course_sessions/5"
    assert body["venue"] == 7


def test_date_times_alone_read_their_zone() -> None:
    projection = compile_projection("course_session", "", "starts_at")
    assert projection.columns == {"id", "starts_at", ZONE}
    row = {"id": 5, "starts_at": datetime(2026, 1, 2, 9, 30), ZONE: "Asia/Kolkata"}
    assert render_one(projection, row, (), CTX) == {"starts_at": "2026-01-02T15:00:00+05:30"}


def test_a_thumbnail_is_in_its_rooms_zone() -> None:
    projection = compile_projection("venue_room", "", "thumbnail")
    assert ZONE in projection.columns
    row: dict[str, Any] = {f"thumb_{key}": None for key in THUMBNAIL.keys}
    row |= {
        "id": 3,
        "thumb_id": 9,
        "thumb_created_at": datetime(2026, 7, 1, 12, 0),
        ZONE: "Europe/London",
    }
    (body,) = render(projection, [row], (), CTX)
    assert body["thumbnail"]["created_at"] == "2026-07-01T13:00:00+01:00"


def test_a_date_time_that_may_be_none() -> None:
    for omit in (False, True):
        projection = compile_projection("course_session", "", "id")
        field = DateTime(name="at", schema={}, column="at", omit_if_none=omit)
        plain = replace(projection, fields=(field,), columns=frozenset({"at", ZONE}))
        function = compile_renderer(plain).function
        assert function({"at": None, ZONE: "UTC"}, (), CTX) == ({} if omit else {"at": None})
        written = function({"at": datetime(2026, 1, 2), ZONE: "UTC"}, (), CTX)
        assert written == {"at": "2026-01-02T00:00:00Z"}


def test_omitted_when_none_means_absent() -> None:
    projection = compile_projection("venue", "", "id,video_url_type")
    function = renderer(projection).function
    assert function({"id": 1, "video_url_type": None}, (), CTX) == {"id": 1}
    assert function({"id": 1, "video_url_type": "zoom"}, (), CTX) == {
        "id": 1,
        "video_url_type": "zoom",
    }


def test_the_same_projection_compiles_once() -> None:
    projection = compile_projection("course_session", "venue", "")
    assert renderer(projection) is renderer(projection)


def test_a_related_object_is_rendered_once_per_response_and_shared() -> None:
    projection = compile_projection("course_session", "", "id,venue.id,venue.name")
    venue = {"id": 7, "name": "Hall"}
    level = (Loaded({7: venue}, ()),)
    first, second = render(projection, [session_row(), session_row(id=6)], level, CTX)
    assert first["venue"] == {"id": 7, "name": "Hall"}
    assert first["venue"] is second["venue"]
    (again,) = render(projection, [session_row()], level, CTX)
    assert again["venue"] is not first["venue"]  # another response renders its own


def test_a_missing_related_object_renders_as_none() -> None:
    projection = compile_projection("course_session", "", "id,venue.name")
    body = render_one(projection, session_row(), (Loaded({}, ()),), CTX)
    assert body == {"id": 5, "venue": None}


def test_to_many_relations_render_their_rows_by_parent() -> None:
    projection = compile_projection("course_session", "", "id,instructors.name")
    rows = {5: [{"id": 1, "name": "Ann"}, {"id": 2, "name": "Bo"}]}
    (body,) = render(projection, [session_row()], (Loaded(rows, ()),), CTX)
    assert body == {"id": 5, "instructors": [{"name": "Ann"}, {"name": "Bo"}]}


def test_tracebacks_through_generated_code_show_its_source() -> None:
    projection = compile_projection("course_session", "", "id,status")
    with pytest.raises(KeyError) as caught:
        render_one(projection, {"id": 1}, (), CTX)
    printed = "".join(traceback.format_exception(caught.value))
    assert "render_course_session" in printed
    assert "'status': row['status']," in printed


def test_field_declarations_make_their_kinds() -> None:
    assert plan_step(attr("x", {}), False).kind is Kind.COLUMN
    assert plan_step(date_time("x"), False).kind is Kind.DATE_TIME
    assert plan_step(obj("thing"), False).value == "thing"
